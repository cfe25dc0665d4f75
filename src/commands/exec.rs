//! `distctl exec`: one command on every selected node at once, over the
//! node's multiplexed connection. Output streams line by line, each line
//! prefixed with its node (never two nodes' bytes in one line), or is
//! gathered (`--gather`), written as JSON (`--json`) or to files (`--outdir`).
//!
//! What the node runs: a single argument is a shell command line for the
//! node's shell, as with `ssh host 'cmd'` and pdsh; several arguments are
//! one command and its exact argv, each word quoted on the way.
//!
//! `--timeout` runs the command under the node's `timeout` (coreutils), which
//! puts it in a process group of its own and signals the whole group: the
//! command and everything it started are killed, TERM first, KILL 2 s later.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::cli::{ExecArgs, Global};
use crate::cluster::inventory::Inventory;
use crate::commands::for_each_node;
use crate::exit::Exit;
use crate::output::gather;
use crate::output::lines::LineSplitter;
use crate::transport::shell;
use crate::transport::{BoxRead, NodeSession};
use crate::units::Dur;

/// After TERM, the node's `timeout` sends KILL this much later.
const KILL_AFTER: Duration = Duration::from_secs(2);
/// Beyond timeout + KILL_AFTER, distctl stops waiting for the channel (a
/// process that escaped the group may still hold the output open).
const GRACE: Duration = Duration::from_secs(3);

/// The command line a node runs for what the user typed after `--`. It
/// exports `DISTCTL_EXEC_ID=<tag>`, which every process it starts inherits,
/// so that an interrupted exec can find and kill them all ([`kill_command`]).
pub fn remote_command(argv: &[String], timeout: Option<Duration>, tag: &str) -> String {
    format!(
        "DISTCTL_EXEC_ID={}; export DISTCTL_EXEC_ID; {}",
        shell::quote(tag),
        user_command(argv, timeout)
    )
}

fn user_command(argv: &[String], timeout: Option<Duration>) -> String {
    let Some(t) = timeout else {
        return if argv.len() == 1 {
            argv[0].clone()
        } else {
            shell::join(argv)
        };
    };
    // Under `timeout` the command is exec'd, not interpreted: a command line
    // gets its own shell, an argv goes through as is.
    let inner = if argv.len() == 1 {
        format!("\"${{SHELL:-/bin/sh}}\" -c {}", shell::quote(&argv[0]))
    } else {
        shell::join(argv)
    };
    format!(
        "command -v timeout >/dev/null 2>&1 || {{ echo 'distctl: --timeout needs the timeout command (coreutils) on the node' >&2; exit 125; }}; \
         exec timeout -k {}s {:.3}s {inner}",
        KILL_AFTER.as_secs(),
        t.as_secs_f64()
    )
}

/// Kills, on a node, every process carrying `DISTCTL_EXEC_ID=<tag>` in its
/// environment (Linux /proc): TERM, then KILL a second later. Unlike a
/// process group, this also reaches children that started sessions of their own.
pub fn kill_command(tag: &str) -> String {
    format!(
        r#"want={}
sweep() {{ for p in /proc/[0-9]*; do
  if tr '\000' '\n' < "$p/environ" 2>/dev/null | grep -qx "$want"; then kill -"$1" "${{p#/proc/}}" 2>/dev/null; fi
done; }}
sweep TERM; sleep 1; sweep KILL; true"#,
        shell::quote(&format!("DISTCTL_EXEC_ID={tag}"))
    )
}

/// How a node's run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// Non-zero exit code.
    Failed(i32),
    /// Ended without an exit status (killed by a signal).
    Killed,
    TimedOut(Dur),
    /// distctl was interrupted (Ctrl-C, SIGTERM); the command was killed.
    Interrupted,
    /// The connection dropped while the command ran, or no channel opened.
    Lost(String),
    Unreachable(String),
}

impl Outcome {
    fn status(&self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Failed(_) => "failed",
            Outcome::Killed => "killed",
            Outcome::TimedOut(_) => "timed_out",
            Outcome::Lost(_) => "lost",
            Outcome::Unreachable(_) => "unreachable",
            Outcome::Interrupted => "interrupted",
        }
    }

    /// Short label for headers and the summary ("" for success).
    fn label(&self) -> String {
        match self {
            Outcome::Ok => String::new(),
            Outcome::Failed(c) => format!("exit {c}"),
            Outcome::Killed => "killed by a signal".into(),
            Outcome::TimedOut(t) => format!("timed out after {t}"),
            Outcome::Lost(why) => format!("connection lost: {why}"),
            Outcome::Unreachable(why) => format!("unreachable: {why}"),
            Outcome::Interrupted => "interrupted".into(),
        }
    }

    fn exit(&self) -> Exit {
        match self {
            Outcome::Ok => Exit::Ok,
            Outcome::Failed(_) | Outcome::Killed | Outcome::TimedOut(_) => Exit::RemoteFailed,
            Outcome::Lost(_) | Outcome::Unreachable(_) => Exit::Partial,
            Outcome::Interrupted => Exit::Failed,
        }
    }
}

/// One node's result; output is captured only where the mode needs it.
struct NodeRun {
    node: String,
    outcome: Outcome,
    code: Option<i32>,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    duration: Option<Duration>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Prefixed lines as they come.
    Stream,
    /// stdout gathered at the end; stderr streams prefixed.
    Gather,
    /// Everything captured for the JSON report.
    Json,
    /// Everything to DIR/<node>.out/.err.
    Files,
}

/// Writes whole prefixed lines to stdout/stderr from one thread, so lines
/// from different nodes never mix.
struct Printer {
    tx: mpsc::Sender<(bool, Vec<u8>)>,
    thread: std::thread::JoinHandle<()>,
}

impl Printer {
    fn start() -> Printer {
        let (tx, mut rx) = mpsc::channel::<(bool, Vec<u8>)>(256);
        let thread = std::thread::spawn(move || {
            use std::io::Write;
            while let Some((to_err, bytes)) = rx.blocking_recv() {
                // A closed stdout (`| head`) must not stop the command on the nodes.
                let _ = if to_err {
                    std::io::stderr().lock().write_all(&bytes)
                } else {
                    let mut out = std::io::stdout().lock();
                    out.write_all(&bytes).and_then(|_| out.flush())
                };
            }
        });
        Printer { tx, thread }
    }

    async fn print(&self, to_err: bool, bytes: Vec<u8>) {
        if !bytes.is_empty() {
            let _ = self.tx.send((to_err, bytes)).await;
        }
    }

    fn finish(self) {
        drop(self.tx);
        let _ = self.thread.join();
    }
}

/// Where one stream of one node goes.
struct Sink<'a> {
    lines: Option<(LineSplitter, bool)>,
    capture: bool,
    file: Option<tokio::fs::File>,
    printer: &'a Printer,
}

async fn pump(mut r: BoxRead, mut sink: Sink<'_>) -> std::io::Result<Vec<u8>> {
    let mut captured = Vec::new();
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let n = r.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        let data = &buf[..n];
        if let Some((split, to_err)) = sink.lines.as_mut() {
            let lines = split.push(data);
            sink.printer.print(*to_err, lines).await;
        }
        if sink.capture {
            captured.extend_from_slice(data);
        }
        if let Some(f) = sink.file.as_mut() {
            f.write_all(data).await?;
        }
    }
    if let Some((split, to_err)) = sink.lines.as_mut() {
        if let Some(last) = split.finish() {
            sink.printer.print(*to_err, last).await;
        }
    }
    if let Some(mut f) = sink.file.take() {
        f.flush().await?;
    }
    Ok(captured)
}

struct RunOpts<'a> {
    cmdline: &'a str,
    input: Option<&'a [u8]>,
    timeout: Option<Duration>,
    mode: Mode,
    tag: &'a str,
    /// Turns true on Ctrl-C / SIGTERM.
    stop: tokio::sync::watch::Receiver<bool>,
    outdir: Option<&'a Path>,
}

/// Output files are written under a temporary name and renamed when the
/// node's run is over.
fn out_paths(dir: &Path, node: &str, ext: &str) -> (PathBuf, PathBuf) {
    (
        dir.join(format!(".{node}.{ext}.partial")),
        dir.join(format!("{node}.{ext}")),
    )
}

async fn run_on(session: &NodeSession, opts: &RunOpts<'_>, printer: &Printer) -> NodeRun {
    let node = session.node.name.clone();
    let mut run = NodeRun {
        node: node.clone(),
        outcome: Outcome::Ok,
        code: None,
        stdout: Vec::new(),
        stderr: Vec::new(),
        duration: None,
    };
    // Checked before any file is made, so an interrupt leaves none behind.
    let mut stop = opts.stop.clone();
    if *stop.borrow() {
        run.outcome = Outcome::Interrupted;
        return run;
    }
    let mut files = [None, None];
    if let Some(dir) = opts.outdir {
        for (i, ext) in ["out", "err"].iter().enumerate() {
            let (tmp, _) = out_paths(dir, &node, ext);
            match tokio::fs::File::create(&tmp).await {
                Ok(f) => files[i] = Some(f),
                Err(e) => {
                    run.outcome = Outcome::Lost(format!("cannot write {}: {e}", tmp.display()));
                    return run;
                }
            }
        }
    }
    let start = Instant::now();
    let mut proc = match session.spawn(opts.cmdline).await {
        Ok(p) => p,
        Err(e) => {
            if let Some(dir) = opts.outdir {
                for ext in ["out", "err"] {
                    let _ = std::fs::remove_file(out_paths(dir, &node, ext).0);
                }
            }
            run.outcome = Outcome::Lost(format!("{e:#}"));
            return run;
        }
    };
    let stdin = proc.stdin.take();
    let stdout = std::mem::replace(&mut proc.stdout, Box::pin(tokio::io::empty()));
    let stderr = std::mem::replace(&mut proc.stderr, Box::pin(tokio::io::empty()));
    let [out_file, err_file] = files;
    let sink = |to_err: bool, file| Sink {
        lines: match (opts.mode, to_err) {
            (Mode::Stream, _) | (Mode::Gather, true) => Some((LineSplitter::new(&node), to_err)),
            _ => None,
        },
        capture: match opts.mode {
            Mode::Json => true,
            Mode::Gather => !to_err,
            _ => false,
        },
        file,
        printer,
    };
    let input = opts.input;
    let feed = async move {
        if let (Some(mut w), Some(data)) = (stdin, input) {
            // A command that exits without reading all its input is fine.
            let _ = w.write_all(data).await;
            let _ = w.shutdown().await;
        }
    };
    let work = async {
        let (_, out, err) = tokio::join!(
            feed,
            pump(stdout, sink(false, out_file)),
            pump(stderr, sink(true, err_file))
        );
        (out, err, proc.wait().await)
    };
    let bounded = async {
        match opts.timeout {
            Some(t) => tokio::time::timeout(t + KILL_AFTER + GRACE, work)
                .await
                .ok(),
            None => Some(work.await),
        }
    };
    let finished = tokio::select! {
        f = bounded => f,
        _ = stop.wait_for(|s| *s) => {
            // The channel is closed now; the processes may live on: kill them.
            let kill = kill_command(opts.tag);
            let _ = tokio::time::timeout(Duration::from_secs(10), session.run(&kill, None)).await;
            if let Some(dir) = opts.outdir {
                for ext in ["out", "err"] {
                    let _ = std::fs::remove_file(out_paths(dir, &node, ext).0);
                }
            }
            run.duration = Some(start.elapsed());
            run.outcome = Outcome::Interrupted;
            return run;
        }
    };
    let elapsed = start.elapsed();
    run.duration = Some(elapsed);
    run.outcome = match finished {
        None => Outcome::TimedOut(Dur(opts.timeout.unwrap_or_default())),
        Some((out, err, code)) => {
            run.stdout = out.unwrap_or_default();
            run.stderr = err.unwrap_or_default();
            match code {
                Err(e) => Outcome::Lost(format!("{e:#}")),
                Ok(code) => {
                    run.code = code;
                    match (code, opts.timeout) {
                        (Some(0), _) => Outcome::Ok,
                        // timeout(1) exits 124 after TERM; after KILL it
                        // kills itself the same way (no exit code).
                        (Some(124 | 137) | None, Some(t)) if elapsed >= t => {
                            Outcome::TimedOut(Dur(t))
                        }
                        (Some(c), _) => Outcome::Failed(c),
                        (None, _) => Outcome::Killed,
                    }
                }
            }
        }
    };
    // No exit status: killed by a signal, or the connection went away (the
    // mux reports both alike). A dead master refuses the next channel at once.
    if run.outcome == Outcome::Killed
        && tokio::time::timeout(Duration::from_secs(5), session.ping())
            .await
            .map_or(true, |r| r.is_err())
    {
        run.outcome = Outcome::Lost("the connection to the node dropped".into());
    }
    if let Some(dir) = opts.outdir {
        for ext in ["out", "err"] {
            let (tmp, done) = out_paths(dir, &node, ext);
            if let Err(e) = tokio::fs::rename(&tmp, &done).await {
                run.outcome = Outcome::Lost(format!("cannot write {}: {e}", done.display()));
            }
        }
    }
    run
}

#[derive(Serialize)]
struct NodeJson<'a> {
    node: &'a str,
    status: &'static str,
    exit_code: Option<i32>,
    /// Output as UTF-8 (invalid bytes replaced); use --outdir for raw bytes.
    stdout: String,
    stderr: String,
    duration_ms: Option<f64>,
    error: Option<String>,
}

pub async fn run(g: &Global, args: &ExecArgs) -> Result<Exit> {
    let mode = if g.json {
        Mode::Json
    } else if args.gather {
        Mode::Gather
    } else if args.outdir.is_some() {
        Mode::Files
    } else {
        Mode::Stream
    };
    if let Some(dir) = &args.outdir {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create output directory {}", dir.display()))?;
    }
    let input = if args.stdin {
        let data = tokio::task::spawn_blocking(|| {
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin().lock(), &mut data).map(|_| data)
        })
        .await?
        .context("reading local stdin")?;
        Some(data)
    } else {
        None
    };
    let tag = format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos()
    );
    let cmdline = remote_command(&args.command, args.timeout.map(|t| t.0), &tag);
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    // The first signal stops the command on every node and waits for that;
    // a second one exits at once (crate::shutdown).
    let on_signal = tokio::spawn(async move {
        crate::shutdown::requested().await;
        let _ = stop_tx.send(true);
    });
    let opts = RunOpts {
        cmdline: &cmdline,
        input: input.as_deref(),
        timeout: args.timeout.map(|t| t.0),
        mode,
        outdir: args.outdir.as_deref(),
        tag: &tag,
        stop,
    };

    let nodes = Inventory::load(g)?.select(g)?;
    let printer = Printer::start();
    let (opts_ref, printer_ref) = (&opts, &printer);
    let runs: Vec<NodeRun> = for_each_node(g, &nodes, |node, conn| async move {
        match conn {
            Err(e) => NodeRun {
                node: node.name.clone(),
                outcome: Outcome::Unreachable(e.reason),
                code: None,
                stdout: Vec::new(),
                stderr: Vec::new(),
                duration: None,
            },
            Ok(session) => {
                let run = run_on(&session, opts_ref, printer_ref).await;
                session.close().await;
                run
            }
        }
    })
    .await?;
    printer.finish();
    on_signal.abort();

    match mode {
        Mode::Json => {
            let rows: Vec<NodeJson> = runs
                .iter()
                .map(|r| NodeJson {
                    node: &r.node,
                    status: r.outcome.status(),
                    exit_code: r.code,
                    stdout: String::from_utf8_lossy(&r.stdout).into_owned(),
                    stderr: String::from_utf8_lossy(&r.stderr).into_owned(),
                    duration_ms: r
                        .duration
                        .map(|d| (d.as_secs_f64() * 10_000.0).round() / 10.0),
                    error: match &r.outcome {
                        Outcome::Lost(w) | Outcome::Unreachable(w) => Some(w.clone()),
                        _ => None,
                    },
                })
                .collect();
            println!("{}", serde_json::to_string_pretty(&rows)?);
        }
        Mode::Gather => {
            let reached: Vec<(&NodeRun, String)> = runs
                .iter()
                .filter(|r| !matches!(r.outcome, Outcome::Unreachable(_)))
                .map(|r| (r, r.outcome.label()))
                .collect();
            let groups = gather::group(
                reached
                    .iter()
                    .map(|(r, label)| (r.node.as_str(), label.as_str(), &r.stdout[..])),
            );
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(&gather::render(&groups));
            let _ = out.flush();
        }
        Mode::Files => {
            if !g.quiet {
                for r in &runs {
                    if let Some(d) = r.duration {
                        let how = match &r.outcome {
                            Outcome::Ok => "exit 0".to_string(),
                            o => o.label(),
                        };
                        println!("{}: {how} in {:.2}s", r.node, d.as_secs_f64());
                    }
                }
            }
        }
        Mode::Stream => {}
    }

    crate::output::summary::print_failures(
        runs.iter()
            .filter(|r| r.outcome != Outcome::Ok)
            .map(|r| (r.node.as_str(), r.outcome.label())),
        runs.len(),
    );
    let reached = runs
        .iter()
        .filter(|r| !matches!(r.outcome, Outcome::Unreachable(_)))
        .count();
    if reached == 0 {
        return Err(anyhow::anyhow!("no node reachable"));
    }
    Ok(runs
        .iter()
        .map(|r| r.outcome.exit())
        .fold(Exit::Ok, Exit::max))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_argument_is_a_command_line_several_are_an_argv() {
        assert_eq!(
            remote_command(&["ls *.txt; echo $HOME".into()], None, "t1"),
            "DISTCTL_EXEC_ID=t1; export DISTCTL_EXEC_ID; ls *.txt; echo $HOME"
        );
        assert_eq!(
            user_command(
                &["printf".into(), "%s\n".into(), "a b".into(), "$x".into()],
                None
            ),
            "printf '%s\n' 'a b' '$x'"
        );
        let t = user_command(
            &["sleep".into(), "9".into()],
            Some(Duration::from_millis(1500)),
        );
        assert!(t.ends_with("exec timeout -k 2s 1.500s sleep 9"), "{t}");
    }
}
