//! SSH through the system OpenSSH client (`openssh` crate, native mux): so
//! `~/.ssh/config`, ProxyJump, ssh-agent and known_hosts work as with `ssh`.

use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use openssh::{ControlPersist, KnownHosts, SessionBuilder, Stdio};
use tokio::sync::OwnedSemaphorePermit;

use super::{ChildImpl, ConnectError, RemoteProcess};
use crate::cluster::inventory::{check_host, HostKeyChecking, Jump, Node};

/// A fresh short directory for control sockets: the socket path must stay
/// under 108 bytes, so never under a deep `$TMPDIR` or the project tree. It
/// lives in a private runtime directory (`$XDG_RUNTIME_DIR/distctl`, else
/// `/tmp/distctl-<uid>`) that is checked to be ours before anything goes in.
pub fn control_dir() -> Result<tempfile::TempDir> {
    let uid = unsafe { libc::geteuid() };
    let base = runtime_base(std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from), uid);
    private_dir(&base, uid)?;
    tempfile::Builder::new()
        .prefix("c")
        .tempdir_in(&base)
        .context("creating the ssh control directory")
}

/// `$XDG_RUNTIME_DIR/distctl` when that directory is absolute, ours, not
/// writable by others and short enough for socket paths; else `/tmp/distctl-<uid>`.
fn runtime_base(xdg: Option<PathBuf>, uid: u32) -> PathBuf {
    use std::os::unix::fs::MetadataExt;
    if let Some(x) = xdg.filter(|x| x.is_absolute() && x.as_os_str().len() < 40) {
        if let Ok(m) = std::fs::symlink_metadata(&x) {
            if m.is_dir() && m.uid() == uid && m.mode() & 0o022 == 0 {
                return x.join("distctl");
            }
        }
    }
    PathBuf::from(format!("/tmp/distctl-{uid}"))
}

/// Make `dir` (mode 0700) or accept an existing one only when it is a real
/// directory (not a symlink) owned by `uid`; a too-open mode of our own
/// directory is tightened through a descriptor opened without following links.
fn private_dir(dir: &Path, uid: u32) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e).with_context(|| format!("creating {}", dir.display())),
    }
    let refuse = |why: String| {
        anyhow::anyhow!(
            "refusing the control directory {}: {why} (remove it, or set XDG_RUNTIME_DIR to a private directory)",
            dir.display()
        )
    };
    let m =
        std::fs::symlink_metadata(dir).with_context(|| format!("checking {}", dir.display()))?;
    if m.file_type().is_symlink() {
        return Err(refuse("it is a symbolic link".into()));
    }
    if !m.is_dir() {
        return Err(refuse("it is not a directory".into()));
    }
    if m.uid() != uid {
        return Err(refuse(format!("it is owned by uid {}, not {uid}", m.uid())));
    }
    if m.mode() & 0o077 != 0 {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
            .open(dir)
            .with_context(|| format!("opening {}", dir.display()))?;
        let fm = f.metadata()?;
        if fm.ino() != m.ino() || fm.uid() != uid {
            return Err(refuse("it changed while being checked".into()));
        }
        f.set_permissions(std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("making {} private", dir.display()))?;
    }
    Ok(())
}

/// The generated `-F` config for one node: the node's own `ssh_options`
/// first (first value wins in ssh_config), then the user's and the system's
/// config as plain `ssh` would read them, then distctl's defaults, which apply
/// only where nothing above set the option.
fn config_text(node: &Node, server_alive: Duration) -> Result<String, String> {
    let mut s = format!("# distctl: generated for node {:?}\n", node.name);
    // What the inventory says of this node comes first, so it wins as `-o`
    // would; the file alone then reproduces distctl's connection (the
    // diagnosis below runs plain `ssh -F N.conf HOST` on it).
    // It applies to the node only: a ProxyJump host, read with this same
    // file, must neither get the node's port and key nor jump to itself.
    check_host(&node.host)?;
    let _ = writeln!(s, "Host {}", node.host);
    if node.jump.is_some() {
        let _ = writeln!(s, "ProxyJump {}", jump_alias(node));
    }
    if let Some(port) = node.port {
        let _ = writeln!(s, "Port {port}");
    }
    if let Some(user) = &node.user {
        let _ = writeln!(s, "User {}", config_word(user)?);
    }
    if let Some(key) = &node.identity_file {
        let _ = writeln!(s, "IdentityFile {}", config_path(key)?);
    }
    if let Some(kh) = &node.known_hosts_file {
        let _ = writeln!(s, "UserKnownHostsFile {}", config_path(kh)?);
    }
    let _ = writeln!(s, "StrictHostKeyChecking {}", checking(node).1);
    let _ = writeln!(
        s,
        "ConnectTimeout {}",
        node.connect_timeout.as_secs().max(1)
    );
    for opt in &node.ssh_options {
        let _ = writeln!(s, "{opt}");
    }
    if node.host_key_checking == HostKeyChecking::Off && node.known_hosts_file.is_none() {
        s.push_str("UserKnownHostsFile /dev/null\nLogLevel ERROR\n");
    }
    if let Some(jump) = &node.jump {
        jump_block(&mut s, node, jump)?;
    }
    s.push_str("Match all\nInclude ~/.ssh/config\nInclude /etc/ssh/ssh_config\n");
    s.push_str("Match all\n");
    // Dead or frozen nodes must end the master instead of hanging it forever.
    let _ = writeln!(s, "ServerAliveInterval {}", server_alive.as_secs().max(1));
    s.push_str("ServerAliveCountMax 2\n");
    // aes128-gcm is the fastest cipher on hosts with AES-NI (~1.7x chacha20 here).
    s.push_str("Ciphers ^aes128-gcm@openssh.com\n");
    Ok(s)
}

/// The jump hop's own `Host` name: unique, so that a jump host and a node at
/// the same address (two sshds on 127.0.0.1) never read each other's block.
fn jump_alias(node: &Node) -> String {
    let safe: String = node
        .jump
        .as_ref()
        .map(|j| j.name.as_str())
        .unwrap_or_default()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("distctl-jump.{safe}")
}

/// The jump hop's settings under its alias: its own address, port, user,
/// identity, known_hosts and host-key policy. The `ssh -W` that ProxyJump
/// starts reads this same file (ssh passes `-F` on).
fn jump_block(s: &mut String, node: &Node, jump: &Jump) -> Result<(), String> {
    check_host(&jump.host).map_err(|e| format!("jump {e}"))?;
    let _ = writeln!(s, "Host {}", jump_alias(node));
    let _ = writeln!(s, "HostName {}", jump.host);
    // Known hosts hold the jump host under its real address, not the alias.
    let key_name = match jump.port {
        Some(p) if p != 22 => format!("[{}]:{p}", jump.host),
        _ => jump.host.clone(),
    };
    let _ = writeln!(s, "HostKeyAlias {}", config_word(&key_name)?);
    if let Some(port) = jump.port {
        let _ = writeln!(s, "Port {port}");
    }
    if let Some(user) = &jump.user {
        let _ = writeln!(s, "User {}", config_word(user)?);
    }
    if let Some(key) = &jump.identity_file {
        let _ = writeln!(s, "IdentityFile {}", config_path(key)?);
    }
    if let Some(kh) = &jump.known_hosts_file {
        let _ = writeln!(s, "UserKnownHostsFile {}", config_path(kh)?);
    }
    let checking = match jump.host_key_checking {
        HostKeyChecking::Strict => "yes",
        HostKeyChecking::AcceptNew => "accept-new",
        HostKeyChecking::Off => "no",
    };
    let _ = writeln!(s, "StrictHostKeyChecking {checking}");
    if jump.host_key_checking == HostKeyChecking::Off && jump.known_hosts_file.is_none() {
        s.push_str("UserKnownHostsFile /dev/null\n");
    }
    let _ = writeln!(
        s,
        "ConnectTimeout {}",
        node.connect_timeout.as_secs().max(1)
    );
    s.push_str("BatchMode yes\n");
    Ok(())
}

/// Host-key checking as the builder and as ssh_config spell it.
fn checking(node: &Node) -> (KnownHosts, &'static str) {
    match node.host_key_checking {
        HostKeyChecking::Strict => (KnownHosts::Strict, "yes"),
        HostKeyChecking::AcceptNew => (KnownHosts::Add, "accept-new"),
        HostKeyChecking::Off => (KnownHosts::Accept, "no"),
    }
}

/// One ssh_config argument, double-quoted; a value ssh_config cannot carry
/// (a quote or a line break) is refused rather than mangled.
fn config_word(v: &str) -> Result<String, String> {
    if v.contains(['"', '\n', '\r']) {
        return Err(format!("{v:?} cannot be written into an ssh config"));
    }
    Ok(format!("\"{v}\""))
}

/// A path for IdentityFile/UserKnownHostsFile: ssh expands `%` tokens and a
/// leading `~` there, so a literal `%` is doubled.
fn config_path(p: &Path) -> Result<String, String> {
    config_word(&p.display().to_string().replace('%', "%%"))
}

/// Where a node's persistent masters live: a private directory named by a
/// hash of everything that makes the connection (the generated config, the
/// host and port), so a changed inventory never rides an old master.
pub fn persist_dir(node: &Node, server_alive: Duration) -> Result<PathBuf> {
    use sha2::{Digest, Sha256};
    let text = config_text(node, server_alive).map_err(|e| anyhow::anyhow!(e))?;
    let mut h = Sha256::new();
    h.update(text.as_bytes());
    h.update(format!("\0{}\0{:?}", node.host, node.port).as_bytes());
    let hex: String = h.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let uid = unsafe { libc::geteuid() };
    let base = runtime_base(std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from), uid);
    private_dir(&base, uid)?;
    let dir = base.join(format!("m-{hex}"));
    private_dir(&dir, uid)?;
    Ok(dir)
}

/// The live masters in `dir` (each `.ssh-connection*/master` that answers
/// a mux alive check), newest first. Dead ones (their master exited: its
/// `ControlPersist` ran out, or it was killed) are removed on the way; a
/// directory without a socket yet is left alone while young (another
/// invocation may be starting its master there).
pub async fn live_masters(dir: &Path) -> Vec<openssh::Session> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<(std::time::SystemTime, PathBuf)> = entries
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(".ssh-connection")
        })
        .map(|e| {
            let t = e
                .metadata()
                .and_then(|m| m.modified())
                .unwrap_or(std::time::UNIX_EPOCH);
            (t, e.path())
        })
        .collect();
    found.sort_by_key(|e| std::cmp::Reverse(e.0));
    let mut live = Vec::new();
    for (modified, entry) in found {
        let ctl = entry.join("master");
        if ctl.exists() {
            let session = openssh::Session::resume_mux(ctl.into_boxed_path(), None);
            let alive = tokio::time::timeout(Duration::from_secs(3), session.check()).await;
            if matches!(alive, Ok(Ok(()))) {
                live.push(session);
                continue;
            }
        } else if modified.elapsed().unwrap_or_default() < Duration::from_secs(120) {
            continue;
        }
        let _ = std::fs::remove_dir_all(&entry);
    }
    live
}

/// Connect to `node`; with `persist`, ride a master an earlier invocation
/// left up (the `bool` says so), else start one that outlives this one.
pub async fn connect(
    control_dir: &Path,
    index: usize,
    node: &Node,
    server_alive: Duration,
    persist: Option<Duration>,
) -> Result<(openssh::Session, bool), ConnectError> {
    let masters = match persist {
        Some(_) => Some(persist_dir(node, server_alive).map_err(|e| ConnectError {
            node: node.name.clone(),
            reason: format!("{e:#}"),
        })?),
        None => None,
    };
    if let Some(dir) = &masters {
        if let Some(session) = live_masters(dir).await.into_iter().next() {
            return Ok((session, true));
        }
    }
    let dir = masters.as_deref().unwrap_or(control_dir);
    let keep = persist.unwrap_or(Duration::from_secs(30));
    open_master(control_dir, dir, index, node, server_alive, keep)
        .await
        .map(|s| (s, false))
}

async fn open_master(
    control_dir: &Path,
    socket_dir: &Path,
    index: usize,
    node: &Node,
    server_alive: Duration,
    keep: Duration,
) -> Result<openssh::Session, ConnectError> {
    let fail = |reason: String| ConnectError {
        node: node.name.clone(),
        reason,
    };
    let jump_key = node
        .jump
        .as_ref()
        .and_then(|j| Some((format!("jump host {}: ", j.name), j.identity_file.as_ref()?)));
    let own_key = node.identity_file.as_ref().map(|k| (String::new(), k));
    for (whose, key) in own_key
        .into_iter()
        .chain(jump_key.iter().map(|(w, k)| (w.clone(), *k)))
    {
        // ssh would only warn and go on to "permission denied".
        if let Err(e) = std::fs::File::open(key) {
            return Err(fail(format!(
                "{whose}identity_file {} {}",
                key.display(),
                crate::files::preflight::why(&e)
            )));
        }
    }
    let config = control_dir.join(format!("{index}.conf"));
    let text = config_text(node, server_alive).map_err(&fail)?;
    write_private(&config, text.as_bytes())
        .map_err(|e| fail(format!("cannot write ssh config: {e}")))?;

    let mut b = SessionBuilder::default();
    let keep = std::num::NonZeroUsize::new(keep.as_secs().max(1) as usize).expect("non-zero");
    b.control_directory(socket_dir)
        .config_file(&config)
        .control_persist(ControlPersist::IdleFor(keep))
        // The builder always passes its own StrictHostKeyChecking: the same.
        .known_hosts_check(checking(node).0)
        .connect_timeout(node.connect_timeout);
    if let Some(port) = node.port {
        // Also on the command line (the same value) so `ps` shows which
        // node a master serves.
        b.port(port);
    }
    // Backstop: ConnectTimeout bounds the TCP connect and banner; a node that
    // stalls later in the handshake must not hold the command up forever.
    let limit = node.connect_timeout * 2 + Duration::from_secs(5);
    match tokio::time::timeout(limit, b.connect_mux(&node.host)).await {
        Ok(Ok(session)) => Ok(session),
        Ok(Err(e)) => {
            super::note_local(&e);
            let text = said(&e);
            let mut reason = classify(&text);
            // "UNKNOWN port 65535" is ssh's name for a peer behind a proxy.
            if text.contains("UNKNOWN port 65535") {
                // A ProxyJump/ProxyCommand failed: the master's log holds only
                // "connection closed"; the proxy's own words went to its
                // stderr. Ask once more without the master to hear them.
                if let Some(said) = diagnose(&config, node, limit).await {
                    reason = classify(&said);
                    if let Some(jump) = &node.jump {
                        // The proxy is the jump hop: what it said is its failure.
                        reason = format!("jump host {}: {reason}", jump.name);
                    }
                }
            }
            Err(fail(reason))
        }
        Err(_) => Err(fail(format!(
            "connection timed out (no SSH handshake within {}s)",
            limit.as_secs()
        ))),
    }
}

/// Plain `ssh -F CONFIG HOST true` with its stderr kept: what ssh (and any
/// proxy it started) said, for a failure the master's log cannot explain.
async fn diagnose(config: &Path, node: &Node, limit: Duration) -> Option<String> {
    let run = tokio::process::Command::new("ssh")
        .arg("-F")
        .arg(config)
        .args([
            "-o",
            "BatchMode=yes",
            "-o",
            "ControlMaster=no",
            "-o",
            "ControlPath=none",
        ])
        .arg("--")
        .arg(&node.host)
        .arg("true")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(limit, run).await.ok()?.ok()?;
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    (!out.status.success() && !text.trim().is_empty()).then_some(text)
}

/// Turn what ssh printed into one line a person can act on.
/// What ssh printed, as the error carries it.
fn said(err: &openssh::Error) -> String {
    match err {
        openssh::Error::Connect(io) | openssh::Error::Master(io) => io.to_string(),
        other => other.to_string(),
    }
}

pub(crate) fn classify(text: &str) -> String {
    let has = |s: &str| text.contains(s);
    // What ssh itself said, minus noise: the line a person would have read.
    let said = |needle: &str| {
        text.lines()
            .map(|l| l.trim().strip_prefix("ssh: ").unwrap_or(l.trim()))
            .find(|l| l.contains(needle))
            .map(|l| l.trim_end_matches('.').to_string())
    };
    if let Some(line) = said("Identity file") {
        // "Warning: Identity file K not accessible: No such file or directory."
        let what = line.strip_prefix("Warning: ").unwrap_or(&line);
        return format!(
            "{} (identity_file in the inventory)",
            what.replacen("Identity file", "identity file", 1)
        );
    }
    if has("REMOTE HOST IDENTIFICATION HAS CHANGED") || has("Host key for") && has("has changed") {
        return "host key has CHANGED (refused under strict checking; if the node was rebuilt, remove its old key with ssh-keygen -R)".into();
    }
    if has("No ED25519 host key is known")
        || has("No RSA host key is known")
        || has("No ECDSA host key is known")
        || (has("Host key verification failed") && !has("CHANGED"))
    {
        return "host key unknown (refused under strict checking; add it to known_hosts or set host_key_checking = \"accept-new\")".into();
    }
    if has("Permission denied") {
        return "authentication failed (permission denied; check user and identity_file, ssh-agent)".into();
    }
    if let Some(line) = said("Could not resolve hostname") {
        // Names the host ssh could not find: the node's, or a ProxyJump's.
        let name = line
            .split("Could not resolve hostname ")
            .nth(1)
            .and_then(|rest| rest.split(':').next())
            .unwrap_or("");
        return format!("cannot resolve host name {name} ({line})");
    }
    if has("Connection refused") {
        return "connection refused (is sshd running on that port?)".into();
    }
    if has("timed out") || has("Connection timeout") {
        return "connection timed out".into();
    }
    if has("No route to host") || has("Network is unreachable") {
        return "network unreachable".into();
    }
    let last = text
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty() && !l.starts_with("Warning: Permanently added"))
        .unwrap_or("ssh failed without a message");
    let last = last.strip_prefix("ssh: ").unwrap_or(last);
    if has("Connection closed") || has("Connection reset") || has("kex_exchange_identification") {
        return format!("connection closed by the node during the handshake (ssh: {last})");
    }
    last.to_string()
}

pub async fn spawn(
    session: &Arc<openssh::Session>,
    cmdline: &str,
    permit: OwnedSemaphorePermit,
) -> Result<RemoteProcess> {
    let mut cmd = session.clone().arc_raw_command(cmdline);
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .await
        .inspect_err(|e| super::note_local(e))
        .context("cannot open a channel to the node")?;
    // The native mux hands these pipes' far ends to the master: they are
    // the data path, so widen them.
    let stdin = child
        .stdin()
        .take()
        .map(|s| super::channel_in(s.into_owned_fd()))
        .transpose()?;
    let stdout = child
        .stdout()
        .take()
        .map(|s| super::channel_out(s.into_owned_fd()))
        .transpose()?;
    let stderr = Box::pin(child.stderr().take().context("no stderr pipe")?);
    Ok(RemoteProcess {
        stdin,
        stdout,
        stderr,
        child: ChildImpl::Ssh(child),
        _channel: permit,
    })
}

/// Ask every master whose socket is in `dir` (openssh keeps each in
/// `DIR/<session dir>/master`) to exit now; its sessions on the node end.
pub fn exit_masters_in(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let socket = e.path().join("master");
        if std::fs::symlink_metadata(&socket).is_ok() {
            let _ = openssh_mux_client::shutdown_mux_master(&socket);
        }
    }
}

/// Stop every child of this process whose command line names `dir`, and
/// what each started: an ssh still in its handshake (its socket or config
/// is in `dir`) with its ProxyCommand or jump host's `ssh -W`, whose
/// connect was dropped (an error, a signal) and must not go on; an rsync
/// riding a master of `dir` when the command stops. A master that finished
/// its handshake has forked away (it is not a child) and is shut down by
/// [`exit_masters_in`]. Children are signalled before their parent: once
/// the parent is gone they are init's, and their PIDs could be reused.
pub fn kill_handshakes_in(dir: &Path) {
    let needle = dir.as_os_str().as_encoded_bytes();
    let mut tree = ProcessTree::default();
    for pid in tree.children(std::process::id()) {
        let named = std::fs::read(format!("/proc/{pid}/cmdline"))
            .is_ok_and(|c| c.windows(needle.len()).any(|w| w == needle));
        if !named {
            continue;
        }
        for p in tree.children(pid).into_iter().chain(std::iter::once(pid)) {
            // SAFETY: kill(2) on a process this one started (or its child).
            unsafe { libc::kill(p as libc::pid_t, libc::SIGTERM) };
        }
    }
}

/// Who is whose child, read as little of /proc as it takes: every command
/// stops its handshakes on the way out, and reading every process's
/// parent costs milliseconds per thousand processes on a busy controller.
#[derive(Default)]
struct ProcessTree {
    /// Every process's PID and its parent's, once read (the kernel keeps
    /// no per-thread `children` lists, or they would not hold still).
    all: Option<Vec<(u32, u32)>>,
}

impl ProcessTree {
    /// The children of `pid`: from the kernel's lists of each of its
    /// threads' children (`CONFIG_PROC_CHILDREN`, which Debian's and most
    /// kernels have) when two readings in a row agree, else from every
    /// process's parent. A list is exact only while nothing changes: a
    /// child reaped, or a thread ending (its children move to another
    /// thread), during a reading can hide a live child from it, and then
    /// the next reading differs.
    fn children(&mut self, pid: u32) -> Vec<u32> {
        static LISTED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        if *LISTED.get_or_init(|| Path::new("/proc/thread-self/children").exists()) {
            let mut last = listed_children(pid);
            for _ in 0..3 {
                let now = listed_children(pid);
                if let Some(kids) = now.as_ref().filter(|_| now == last) {
                    return kids.clone();
                }
                last = now;
            }
        }
        self.all
            .get_or_insert_with(processes)
            .iter()
            .filter(|&&(_, parent)| parent == pid)
            .map(|&(p, _)| p)
            .collect()
    }
}

/// `pid`'s children as its threads' `children` files list them, sorted
/// (none for a process that has gone; `None` for a list too long to read at
/// once). Each list is read whole in one `read`: the kernel finds where a
/// later `read` goes on by counting, which a child reaped in between would
/// throw off.
fn listed_children(pid: u32) -> Option<Vec<u32>> {
    use std::io::Read;
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Some(Vec::new());
    };
    let mut buf = vec![0u8; 64 << 10];
    let mut kids: Vec<u32> = Vec::new();
    for task in tasks.flatten() {
        let Ok(mut f) = std::fs::File::open(task.path().join("children")) else {
            continue;
        };
        let Ok(n) = f.read(&mut buf) else {
            continue;
        };
        if n == buf.len() {
            return None;
        }
        kids.extend(
            String::from_utf8_lossy(&buf[..n])
                .split_ascii_whitespace()
                .filter_map(|p| p.parse::<u32>().ok()),
        );
    }
    kids.sort_unstable();
    Some(kids)
}

/// Every process's PID and its parent's, from /proc.
fn processes() -> Vec<(u32, u32)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            // "PID (COMM) STATE PPID ...": COMM may hold spaces and ')'.
            let ppid = stat.get(stat.rfind(')')? + 2..)?.split(' ').nth(1)?;
            Some((pid, ppid.parse().ok()?))
        })
        .collect()
}

/// A new file only we can read, never through a link planted in its place.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?
        .write_all(bytes)
}

#[cfg(test)]
mod tests {
    use super::{classify, private_dir, runtime_base, write_private};
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    fn uid() -> u32 {
        unsafe { libc::geteuid() }
    }

    /// Both ways of finding a process's children find a child it started.
    #[test]
    fn a_child_is_found_by_its_threads_lists_and_by_its_parent() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id();
        let me = std::process::id();
        let listed = super::listed_children(me).unwrap();
        let scanned: Vec<u32> = super::processes()
            .into_iter()
            .filter(|&(_, parent)| parent == me)
            .map(|(p, _)| p)
            .collect();
        let found = super::ProcessTree::default().children(me);
        let listing = std::path::Path::new("/proc/thread-self/children").exists();
        let _ = child.kill();
        let _ = child.wait();
        assert!(scanned.contains(&pid), "{scanned:?}");
        assert!(found.contains(&pid), "{found:?}");
        if listing {
            assert!(listed.contains(&pid), "{listed:?}");
        }
    }

    #[test]
    fn a_fresh_control_base_is_made_private() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("distctl-x");
        private_dir(&d, uid()).unwrap();
        assert_eq!(std::fs::metadata(&d).unwrap().mode() & 0o777, 0o700);
    }

    #[test]
    fn an_open_base_of_our_own_is_tightened() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("open");
        std::fs::create_dir(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o777)).unwrap();
        private_dir(&d, uid()).unwrap();
        assert_eq!(std::fs::metadata(&d).unwrap().mode() & 0o777, 0o700);
    }

    #[test]
    fn a_symlinked_or_foreign_base_is_refused_untouched() {
        let t = tempfile::tempdir().unwrap();
        let target = t.path().join("target");
        std::fs::create_dir(&target).unwrap();
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755)).unwrap();
        let link = t.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let e = format!("{:#}", private_dir(&link, uid()).unwrap_err());
        assert!(e.contains("symbolic link"), "{e}");
        assert_eq!(std::fs::metadata(&target).unwrap().mode() & 0o777, 0o755);
        // Someone else's directory (another uid than the one it is checked for).
        let e = format!("{:#}", private_dir(&target, uid() + 1).unwrap_err());
        assert!(e.contains("owned by uid"), "{e}");
        assert_eq!(std::fs::metadata(&target).unwrap().mode() & 0o777, 0o755);
    }

    #[test]
    fn xdg_runtime_dir_is_used_only_when_private() {
        let t = tempfile::tempdir().unwrap();
        let x = t.path().to_path_buf();
        std::fs::set_permissions(&x, std::fs::Permissions::from_mode(0o700)).unwrap();
        if x.as_os_str().len() < 40 {
            assert_eq!(runtime_base(Some(x.clone()), uid()), x.join("distctl"));
        }
        std::fs::set_permissions(&x, std::fs::Permissions::from_mode(0o777)).unwrap();
        let tmp = std::path::PathBuf::from(format!("/tmp/distctl-{}", uid()));
        assert_eq!(runtime_base(Some(x), uid()), tmp);
        assert_eq!(runtime_base(Some("relative".into()), uid()), tmp);
        assert_eq!(runtime_base(None, uid()), tmp);
    }

    #[test]
    fn configs_are_never_written_through_a_planted_link() {
        let t = tempfile::tempdir().unwrap();
        let victim = t.path().join("victim");
        std::fs::write(&victim, "keep").unwrap();
        let conf = t.path().join("0.conf");
        std::os::unix::fs::symlink(&victim, &conf).unwrap();
        assert!(write_private(&conf, b"ProxyCommand evil").is_err());
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
        let fresh = t.path().join("1.conf");
        write_private(&fresh, b"Host x").unwrap();
        assert_eq!(std::fs::metadata(&fresh).unwrap().mode() & 0o777, 0o600);
    }

    #[test]
    fn each_hop_has_its_own_block() {
        use crate::cluster::inventory::{Inventory, Jump};
        let mut node = Inventory::from_hosts("127.0.0.1:2202")
            .unwrap()
            .nodes
            .remove(0);
        node.identity_file = Some("/k/node".into());
        node.jump = Some(Box::new(Jump {
            name: "node1".into(),
            host: "127.0.0.1".into(),
            port: Some(2201),
            user: Some("j".into()),
            identity_file: Some("/k/jump".into()),
            known_hosts_file: Some("/k/known".into()),
            host_key_checking: crate::cluster::inventory::HostKeyChecking::AcceptNew,
        }));
        let text = super::config_text(&node, std::time::Duration::from_secs(5)).unwrap();
        let node_block = text.split("Host distctl-jump.node1\n").next().unwrap();
        assert!(
            node_block.contains("Host 127.0.0.1\nProxyJump distctl-jump.node1\nPort 2202\n"),
            "{text}"
        );
        assert!(node_block.contains("IdentityFile \"/k/node\""), "{text}");
        assert!(text.contains("Host distctl-jump.node1\nHostName 127.0.0.1\nHostKeyAlias \"[127.0.0.1]:2201\"\nPort 2201\nUser \"j\"\nIdentityFile \"/k/jump\"\nUserKnownHostsFile \"/k/known\"\nStrictHostKeyChecking accept-new\n"), "{text}");
    }

    #[test]
    fn ssh_errors_become_one_line() {
        assert!(
            classify("ssh: connect to host 127.0.0.1 port 1: Connection refused")
                .starts_with("connection refused")
        );
        assert!(classify("@@@\nWARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!\n@@@\nHost key verification failed.").starts_with("host key has CHANGED"));
        assert!(classify("No ED25519 host key is known for [127.0.0.1]:2222 and you have requested strict checking.\r\nHost key verification failed.").starts_with("host key unknown"));
        assert!(classify("root@127.0.0.1: Permission denied (publickey).")
            .starts_with("authentication failed"));
    }

    #[test]
    fn ssh_errors_name_the_host_or_file_ssh_named() {
        let jump = "ssh: Could not resolve hostname nosuchjump.invalid: Name or service not known\r\nkex_exchange_identification: Connection closed by remote host\r\nConnection closed by UNKNOWN port 65535";
        assert_eq!(
            classify(jump),
            "cannot resolve host name nosuchjump.invalid (Could not resolve hostname nosuchjump.invalid: Name or service not known)"
        );
        let key = "Warning: Identity file /nonexistent/key not accessible: No such file or directory.\nroot@127.0.0.1: Permission denied (publickey).";
        assert_eq!(
            classify(key),
            "identity file /nonexistent/key not accessible: No such file or directory (identity_file in the inventory)"
        );
        assert_eq!(
            classify("kex_exchange_identification: read: Connection reset by peer"),
            "connection closed by the node during the handshake (ssh: kex_exchange_identification: read: Connection reset by peer)"
        );
    }
}
