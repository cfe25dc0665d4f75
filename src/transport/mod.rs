//! How distctl reaches a node: one multiplexed OpenSSH master per node per
//! invocation ([`ssh`]), or a plain local shell for the built-in node
//! ([`local`]). Everything above this module sees one [`NodeSession`] type and
//! shell command lines built with [`crate::transport::shell`].
//!
//! The transport knows nothing of chunks, CSV or progress bars.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::cluster::inventory::Node;

pub mod deadline;
pub mod local;
pub mod shell;
pub mod ssh;

/// sshd's default `MaxSessions` is 10: stay below it on every master.
pub const CHANNELS_PER_NODE: usize = 8;

/// Capacity asked for every pipe to and from a command (Linux's default is
/// 64 KiB, so a 1 MiB write took 16 wake-ups of each side; 1 MiB is the
/// unprivileged `pipe-max-size`).
pub const PIPE_SIZE: i32 = 1 << 20;

/// Widen a pipe to [`PIPE_SIZE`]; a refusal (a lower `pipe-max-size`, a
/// pipe-user quota) keeps it as it was, which only costs speed.
pub fn widen_pipe(pipe: &impl std::os::fd::AsRawFd) {
    // SAFETY: fcntl on a descriptor the caller owns; no memory is passed.
    unsafe { libc::fcntl(pipe.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_SIZE) };
}

/// One non-blocking splice(2) of up to `len` bytes from `from` to `to`, one
/// of them a pipe; an offset, where given, is read and advanced for a file
/// side. The bytes move inside the kernel, never through our memory.
pub fn splice(
    from: &impl std::os::fd::AsRawFd,
    from_offset: Option<&mut i64>,
    to: &impl std::os::fd::AsRawFd,
    to_offset: Option<&mut i64>,
    len: usize,
) -> std::io::Result<usize> {
    let as_ptr = |o: Option<&mut i64>| o.map_or(std::ptr::null_mut(), |o| o as *mut i64);
    // SAFETY: both descriptors are open for the call; the offsets are
    // locals of the caller the kernel reads and advances; no user memory
    // holds the bytes.
    let n = unsafe {
        libc::splice(
            from.as_raw_fd(),
            as_ptr(from_offset),
            to.as_raw_fd(),
            as_ptr(to_offset),
            len,
            libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
        )
    };
    if n < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// A live connection to one node. Cheap to share (`Arc`) between tasks.
pub struct NodeSession {
    pub node: Node,
    /// How long the connection took to come up (zero for the local node).
    pub connect_time: Duration,
    /// The connection rode a master an earlier invocation left up (`--persist`).
    pub warm: bool,
    /// Leave the master up when this session closes (`--persist`).
    persist: bool,
    conn: Conn,
    channels: Arc<Semaphore>,
    /// The quickest channel open so far, in microseconds (`u64::MAX`: none
    /// yet): see [`NodeSession::round_trip`].
    quickest_open: AtomicU64,
}

enum Conn {
    Ssh(Arc<openssh::Session>),
    Local,
}

/// Why a node could not be reached, in one line for people.
#[derive(Debug, Clone)]
pub struct ConnectError {
    pub node: String,
    pub reason: String,
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.node, self.reason)
    }
}

impl std::error::Error for ConnectError {}

/// The first problem of this machine's own (out of file descriptors or
/// memory...) met while connecting to a node or opening a channel to it. It
/// is no node's fault, whichever node it happened with: per-node commands
/// stop on it rather than blame the node.
static LOCAL_PROBLEM: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Keep `err` as [`local_problem`] when a cause in it is this machine's own
/// resource problem.
pub(crate) fn note_local(err: &(dyn std::error::Error + 'static)) {
    if let Some(io) = crate::exit::local_in(err) {
        let _ = LOCAL_PROBLEM.set(io.to_string());
    }
}

/// The error that stops a per-node command once [`note_local`] has met a
/// local problem.
pub fn local_problem() -> Option<anyhow::Error> {
    LOCAL_PROBLEM
        .get()
        .map(|cause| crate::exit::local_stop("a node", cause))
}

pub type BoxRead = Pin<Box<dyn AsyncRead + Send>>;
pub type BoxWrite = Pin<Box<dyn AsyncWrite + Send>>;
/// The pipe into a command's stdin (the ssh master reads its far end): a
/// plain pipe, so `run` can splice file pages into it.
pub type ChannelIn = tokio::net::unix::pipe::Sender;

/// The pipe a command's stdout comes back on (the ssh master writes its far
/// end): a plain pipe, so `run` can splice results straight into the output.
pub type ChannelOut = tokio::net::unix::pipe::Receiver;

/// Our end of a command's stdout pipe, widened to [`PIPE_SIZE`].
fn channel_out(fd: std::io::Result<std::os::fd::OwnedFd>) -> Result<ChannelOut> {
    let fd = fd.context("no stdout pipe")?;
    widen_pipe(&fd);
    ChannelOut::from_owned_fd(fd).context("the stdout pipe")
}

/// Our end of a command's stdin pipe, widened to [`PIPE_SIZE`].
fn channel_in(fd: std::io::Result<std::os::fd::OwnedFd>) -> Result<ChannelIn> {
    let fd = fd.context("no stdin pipe")?;
    widen_pipe(&fd);
    ChannelIn::from_owned_fd(fd).context("the stdin pipe")
}

/// A command started on a node with all three standard streams piped.
pub struct RemoteProcess {
    pub stdin: Option<ChannelIn>,
    pub stdout: Option<ChannelOut>,
    pub stderr: BoxRead,
    child: ChildImpl,
    _channel: OwnedSemaphorePermit,
}

enum ChildImpl {
    Ssh(openssh::Child<Arc<openssh::Session>>),
    Local(tokio::process::Child),
}

/// Exit of a remote command: its code, or `None` when it was killed by a
/// signal or the connection went away before it reported one.
pub type ExitCode = Option<i32>;

impl RemoteProcess {
    /// The stdout pipe as a plain reader (empty once taken).
    pub fn take_stdout(&mut self) -> BoxRead {
        match self.stdout.take() {
            Some(o) => Box::pin(o),
            None => Box::pin(tokio::io::empty()),
        }
    }

    pub async fn wait(self) -> Result<ExitCode> {
        match self.child {
            ChildImpl::Ssh(child) => match child.wait().await {
                Ok(status) => Ok(status.code()),
                Err(openssh::Error::RemoteProcessTerminated) => Ok(None),
                Err(e) => Err(anyhow::Error::new(e).context("lost the connection")),
            },
            ChildImpl::Local(mut child) => Ok(child.wait().await?.code()),
        }
    }
}

/// Everything a finished command printed.
#[derive(Debug)]
pub struct CommandOutput {
    pub code: ExitCode,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl CommandOutput {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// Why the command failed, in one line: its last stderr line, else how it ended.
    pub fn failure_reason(&self) -> String {
        let line = self.stderr_line();
        if !line.is_empty() {
            return line;
        }
        match self.code {
            Some(code) => format!("exit status {code}"),
            None => "killed, or the connection was lost".to_string(),
        }
    }

    /// The last non-empty stderr line, for one-line error messages.
    pub fn stderr_line(&self) -> String {
        String::from_utf8_lossy(&self.stderr)
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .trim()
            .to_string()
    }
}

/// The master said the node refused a new session (`MaxSessions`).
fn channel_refused(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<openssh::Error>(),
            Some(openssh::Error::SshMux(
                openssh_mux_client::Error::RequestFailure(_)
            ))
        )
    })
}

impl NodeSession {
    /// The built-in local node: no SSH, commands run under `sh -c` in `$HOME`.
    pub fn local(node: Node) -> NodeSession {
        NodeSession {
            node,
            connect_time: Duration::ZERO,
            warm: false,
            persist: false,
            conn: Conn::Local,
            channels: Arc::new(Semaphore::new(64)),
            quickest_open: AtomicU64::new(u64::MAX),
        }
    }

    pub fn is_local(&self) -> bool {
        matches!(self.conn, Conn::Local)
    }

    /// The master's control socket, so other ssh-based tools (rsync) can ride
    /// the same connection with `ssh -S`. `None` for the local node.
    pub fn control_socket(&self) -> Option<&std::path::Path> {
        match &self.conn {
            Conn::Ssh(session) => Some(session.control_socket()),
            Conn::Local => None,
        }
    }

    /// Start a shell command line on the node (stdin, stdout, stderr piped).
    /// The line is interpreted by the node's login shell: quote every word
    /// with [`crate::transport::shell::quote`]. Waits while the node already has
    /// [`CHANNELS_PER_NODE`] commands open.
    ///
    /// A channel the node refuses while no other of this session's is open
    /// is asked for again, a few times over ~0.6 s: an sshd that allows one
    /// session (`MaxSessions 1`) still counts the last command's until its
    /// channel is closed, a moment after its exit status has arrived, so
    /// the next command can be refused for no lasting reason. A refusal
    /// beside channels of ours is the caller's to handle (the scheduler
    /// learns from it how many the node allows).
    pub async fn spawn(&self, cmdline: &str) -> Result<RemoteProcess> {
        let session = match &self.conn {
            Conn::Ssh(session) => session,
            Conn::Local => {
                let permit = self.channels.clone().acquire_owned().await?;
                return local::spawn(cmdline, permit);
            }
        };
        let mut wait = Duration::from_millis(20);
        loop {
            let permit = self.channels.clone().acquire_owned().await?;
            let alone = self.channels.available_permits() + 1 == CHANNELS_PER_NODE;
            let start = Instant::now();
            match ssh::spawn(session, cmdline, permit).await {
                Ok(process) => {
                    let micros = start.elapsed().as_micros().try_into().unwrap_or(u64::MAX);
                    self.quickest_open.fetch_min(micros, Ordering::Relaxed);
                    return Ok(process);
                }
                Err(e) if alone && channel_refused(&e) && wait <= Duration::from_millis(320) => {
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The node's round trip as its quickest channel open so far measured
    /// it: the master answers a new session once the node has confirmed
    /// the channel, one round trip, plus the time both ends took to be
    /// scheduled (which is why the quickest counts). `None` for the local
    /// node and before the first command.
    pub fn round_trip(&self) -> Option<Duration> {
        let micros = self.quickest_open.load(Ordering::Relaxed);
        (micros != u64::MAX).then(|| Duration::from_micros(micros))
    }

    /// Run a command to completion, feeding it `input`, and capture its
    /// output, within `--step-timeout` ([`deadline::StepTimedOut`] past it).
    pub async fn run(&self, cmdline: &str, input: Option<&[u8]>) -> Result<CommandOutput> {
        self.run_within(cmdline, input, deadline::step_timeout())
            .await
    }

    /// [`NodeSession::run`] with its own bound (a command that waits on
    /// purpose, like a metrics sample over an interval). Past it the command
    /// is abandoned: its channel closes, which ends it on the node.
    pub async fn run_within(
        &self,
        cmdline: &str,
        input: Option<&[u8]>,
        bound: Duration,
    ) -> Result<CommandOutput> {
        match tokio::time::timeout(bound, self.run_unbounded(cmdline, input)).await {
            Ok(r) => r,
            Err(_) => Err(deadline::StepTimedOut { after: bound }.into()),
        }
    }

    async fn run_unbounded(&self, cmdline: &str, input: Option<&[u8]>) -> Result<CommandOutput> {
        let mut proc = self.spawn(cmdline).await?;
        let mut stdin = proc.stdin.take();
        let write = async {
            if let (Some(w), Some(data)) = (stdin.as_mut(), input) {
                w.write_all(data).await?;
                w.shutdown().await?;
            }
            drop(stdin);
            Ok::<_, std::io::Error>(())
        };
        let mut out = Vec::new();
        let mut err = Vec::new();
        let (w, o, e) = tokio::join!(
            write,
            async {
                match proc.stdout.as_mut() {
                    Some(o) => o.read_to_end(&mut out).await,
                    None => Ok(0),
                }
            },
            proc.stderr.read_to_end(&mut err)
        );
        // A command that exits without reading all its input is not an error here.
        let _ = w;
        o.context("reading remote stdout")?;
        e.context("reading remote stderr")?;
        let code = proc.wait().await?;
        Ok(CommandOutput {
            code,
            stdout: out,
            stderr: err,
        })
    }

    /// Round trip of one trivial command over the open connection.
    pub async fn ping(&self) -> Result<Duration> {
        let start = Instant::now();
        let out = self.run("exit 0", None).await?;
        if !out.success() {
            anyhow::bail!("'exit 0' failed on the node: {}", out.stderr_line());
        }
        Ok(start.elapsed())
    }

    /// Close the master connection (the local node has none); a persistent
    /// one is left up for the next invocation.
    pub async fn close(self) {
        if let Conn::Ssh(session) = self.conn {
            if let Ok(session) = Arc::try_unwrap(session) {
                if self.persist {
                    let _ = session.detach();
                } else {
                    let _ = session.close().await;
                }
            }
        }
    }
}

/// Connects to nodes: owns the short control directory that holds the
/// per-node master sockets and generated ssh configs for this invocation.
///
/// `--fanout` is enforced here, once for every command: at most `fanout`
/// handshakes are under way at a time. A node that is connected holds no
/// permit, so every connected node can work at once.
pub struct Connector {
    control_dir: tempfile::TempDir,
    pub fanout: usize,
    pub server_alive: Duration,
    /// `--persist`: keep every master up this long (zero: none), over each
    /// node's own `persist`.
    pub persist: Option<Duration>,
    handshakes: HandshakeLimit,
}

/// How many handshakes run at once: at most `--fanout`, fewer while
/// handshakes slow down. A busy controller (2 cores, a hundred key
/// exchanges) makes every handshake slower the more run together, until
/// some time out although their nodes are fine; so, like TCP's congestion
/// window, the limit starts low, grows by one with every handshake that is
/// about as fast as the fastest seen, and shrinks by a quarter when one
/// takes over four times that (and over a second).
struct HandshakeLimit {
    max: usize,
    permits: Semaphore,
    state: std::sync::Mutex<LimitState>,
}

#[derive(Debug)]
struct LimitState {
    /// The current limit (permits handed out plus available, minus debt).
    limit: usize,
    /// Permits to take out of circulation as they come back (shrinking).
    debt: usize,
    fastest: Option<Duration>,
}

impl HandshakeLimit {
    fn new(max: usize) -> HandshakeLimit {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let start = max.min((4 * cores).max(8));
        HandshakeLimit {
            max,
            permits: Semaphore::new(start),
            state: std::sync::Mutex::new(LimitState {
                limit: start,
                debt: 0,
                fastest: None,
            }),
        }
    }

    async fn acquire(&self) {
        self.permits
            .acquire()
            .await
            .expect("semaphore closed")
            .forget();
    }

    /// A handshake ended after `took` (`ok`: it completed; a failure says
    /// nothing of the controller's load and only hands its permit back).
    fn release(&self, took: Duration, ok: bool) {
        let mut s = self.state.lock().expect("handshake limit");
        if ok {
            let fastest = *s.fastest.get_or_insert(took);
            if took < fastest {
                s.fastest = Some(took);
            }
            if took > fastest * 4 && took > Duration::from_secs(1) {
                let shrink = (s.limit / 4).max(1).min(s.limit.saturating_sub(2));
                s.limit -= shrink;
                s.debt += shrink;
            } else if took <= fastest * 2 && s.limit < self.max {
                s.limit += 1;
                self.permits.add_permits(1);
            }
        }
        if s.debt > 0 {
            s.debt -= 1;
        } else {
            self.permits.add_permits(1);
        }
    }

    #[cfg(test)]
    fn limit(&self) -> usize {
        self.state.lock().unwrap().limit
    }
}

/// Control directories of the live connectors, so that the immediate exit
/// of a second signal can still shut their masters down.
static LIVE_CONTROL_DIRS: std::sync::Mutex<Vec<std::path::PathBuf>> =
    std::sync::Mutex::new(Vec::new());

/// Shut down every ssh master still listening in a live control directory
/// (the exit path that runs no destructors).
pub fn exit_all_masters() {
    let dirs = LIVE_CONTROL_DIRS.lock().unwrap_or_else(|e| e.into_inner());
    for d in dirs.iter() {
        ssh::kill_handshakes_in(d);
        ssh::exit_masters_in(d);
    }
}

impl Drop for Connector {
    /// Sessions are normally closed before their connector goes; any master
    /// still up (an error or a signal dropped things in another order) is
    /// shut down now, while its socket still exists, rather than left to
    /// idle out after `ControlPersist`, and a handshake still under way (its
    /// connect dropped by a signal) is stopped, with what its ssh started.
    fn drop(&mut self) {
        let dir = self.control_dir.path();
        ssh::kill_handshakes_in(dir);
        ssh::exit_masters_in(dir);
        LIVE_CONTROL_DIRS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|d| d != dir);
    }
}

impl Connector {
    /// `ServerAliveInterval`: a frozen node is noticed within twice this.
    pub const SERVER_ALIVE: Duration = Duration::from_secs(5);

    pub fn new(fanout: usize) -> Result<Connector> {
        let control_dir = ssh::control_dir()?;
        LIVE_CONTROL_DIRS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(control_dir.path().to_path_buf());
        Ok(Connector {
            control_dir,
            fanout: fanout.max(1),
            server_alive: Self::SERVER_ALIVE,
            persist: None,
            handshakes: HandshakeLimit::new(fanout.max(1)),
        })
    }

    /// Open one connection per node, at most `fanout` handshakes at a time.
    /// Results come back in the order of `nodes`; a failed node never holds
    /// up the others.
    pub async fn connect_all(&self, nodes: &[Node]) -> Vec<Result<Arc<NodeSession>, ConnectError>> {
        let tasks = nodes
            .iter()
            .enumerate()
            .map(|(i, node)| async move { self.connect(i, node).await.map(Arc::new) });
        futures::future::join_all(tasks).await
    }

    /// Connect to one node (`index` is its place in the selection, which
    /// names its control socket), waiting while `fanout` other handshakes of
    /// this connector are under way.
    pub async fn connect(&self, index: usize, node: &Node) -> Result<NodeSession, ConnectError> {
        if node.local {
            return Ok(NodeSession::local(node.clone()));
        }
        self.handshakes.acquire().await;
        // connect_timeout counts from here: a node waiting for its turn
        // behind other handshakes is not late.
        let start = Instant::now();
        let persist = match self.persist {
            Some(d) => (!d.is_zero()).then_some(d),
            None => node.persist,
        };
        let connected = ssh::connect(
            self.control_dir.path(),
            index,
            node,
            self.server_alive,
            persist,
        )
        .await;
        // A warm master needed no key exchange: no news of the load.
        let handshake = matches!(&connected, Ok((_, false)));
        self.handshakes.release(start.elapsed(), handshake);
        let (session, warm) = connected?;
        Ok(NodeSession {
            node: node.clone(),
            connect_time: start.elapsed(),
            warm,
            persist: persist.is_some(),
            conn: Conn::Ssh(Arc::new(session)),
            channels: Arc::new(Semaphore::new(CHANNELS_PER_NODE)),
            quickest_open: AtomicU64::new(u64::MAX),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::HandshakeLimit;
    use std::time::Duration;

    #[test]
    fn the_handshake_limit_grows_while_fast_shrinks_when_slow_and_stays_within_fanout() {
        let ms = Duration::from_millis;
        let l = HandshakeLimit::new(64);
        let start = l.limit();
        assert!((8..=64).contains(&start));
        for _ in 0..200 {
            l.release(ms(100), true);
        }
        assert_eq!(l.limit(), 64, "never above --fanout");
        l.release(ms(2000), true);
        assert_eq!(l.limit(), 48);
        for _ in 0..20 {
            l.release(ms(3000), true);
        }
        assert_eq!(l.limit(), 2, "never below two");
        l.release(ms(5000), false);
        assert_eq!(l.limit(), 2, "a failure is no measure of load");
        let one = HandshakeLimit::new(1);
        one.release(ms(10), true);
        assert_eq!(one.limit(), 1);
    }
}
