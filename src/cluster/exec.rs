//! One user command on one node, as `distctl exec` runs it: the command line
//! (a shell line or an exact argv, under the node's `timeout` with
//! `--timeout`), the sweep that kills everything it started on interrupt,
//! and how it ended as a [`NodeOutcome`].
//!
//! `--timeout` runs the command under the node's `timeout` (coreutils), which
//! puts it in a process group of its own and signals the whole group: the
//! command and everything it started are killed, TERM first, KILL 2 s later.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;

use crate::cluster::NodeOutcome;
use crate::output::lines::LineSplitter;
use crate::output::relay::{relay, LinePrinter, StreamRoute};
use crate::transport::shell;
use crate::transport::NodeSession;
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

pub fn user_command(argv: &[String], timeout: Option<Duration>) -> String {
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

/// What one node's command gave back; output is captured only where the
/// plan asks for it.
#[derive(Debug, Default)]
pub struct ExecRun {
    pub code: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// Bytes of stdout in all (more than `stdout` holds when it was cut
    /// at the plan's `capture` limit).
    pub stdout_total: u64,
    pub duration: Option<Duration>,
}

/// What every node runs, and where its output goes.
pub struct ExecPlan<'a> {
    pub cmdline: &'a str,
    pub input: Option<&'a [u8]>,
    pub timeout: Option<Duration>,
    /// Where stdout (`[0]`) and stderr (`[1]`) go: printed as prefixed
    /// lines, captured for the report.
    pub print: [bool; 2],
    /// Control characters in printed lines shown as `cat -v` does.
    pub escape: [bool; 2],
    /// Captured, up to this many bytes.
    pub capture: [Option<usize>; 2],
    pub tag: &'a str,
    /// Turns true on Ctrl-C / SIGTERM.
    pub stop: tokio::sync::watch::Receiver<bool>,
    pub outdir: Option<&'a Path>,
}

/// Output files are written under a temporary name and renamed when the
/// node's run is over.
fn out_paths(dir: &Path, node: &str, ext: &str) -> (PathBuf, PathBuf) {
    (
        dir.join(format!(".{node}.{ext}.partial")),
        dir.join(format!("{node}.{ext}")),
    )
}

/// Run the plan's command on one node, to its end, a timeout or an interrupt.
/// `env` is the node's own variables (`DISTCTL_NODE`, ...), exported
/// before the plan's command line.
pub async fn run_on(
    session: &NodeSession,
    opts: &ExecPlan<'_>,
    env: &[(&str, String)],
    printer: &LinePrinter,
) -> (NodeOutcome, ExecRun) {
    let node = session.node.name.clone();
    let mut run = ExecRun::default();
    // Checked before any file is made, so an interrupt leaves none behind.
    let mut stop = opts.stop.clone();
    if *stop.borrow() {
        return (NodeOutcome::Interrupted, run);
    }
    let mut files = [None, None];
    if let Some(dir) = opts.outdir {
        for (i, ext) in ["out", "err"].iter().enumerate() {
            let (tmp, _) = out_paths(dir, &node, ext);
            // Never through a link planted under the temporary name.
            let mut open = tokio::fs::OpenOptions::new();
            open.write(true)
                .create(true)
                .truncate(true)
                .custom_flags(libc::O_NOFOLLOW);
            match open.open(&tmp).await {
                Ok(f) => files[i] = Some(f),
                Err(e) => {
                    let reason = format!("cannot write {}: {e}", tmp.display());
                    return (NodeOutcome::Lost { reason }, run);
                }
            }
        }
    }
    let start = Instant::now();
    let cmdline = format!("{}{}", shell::exports(env), opts.cmdline);
    let mut proc = match session.spawn(&cmdline).await {
        Ok(p) => p,
        Err(e) => {
            if let Some(dir) = opts.outdir {
                for ext in ["out", "err"] {
                    let _ = std::fs::remove_file(out_paths(dir, &node, ext).0);
                }
            }
            return (
                NodeOutcome::Lost {
                    reason: format!("{e:#}"),
                },
                run,
            );
        }
    };
    let stdin = proc.stdin.take();
    let stdout = proc.take_stdout();
    let stderr = std::mem::replace(&mut proc.stderr, Box::pin(tokio::io::empty()));
    let [out_file, err_file] = files;
    let sink = |to_err: bool, file| StreamRoute {
        lines: opts.print[to_err as usize].then(|| {
            let lines = LineSplitter::new(&node).escaped(opts.escape[to_err as usize]);
            (lines, to_err)
        }),
        capture: opts.capture[to_err as usize],
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
            relay(stdout, sink(false, out_file)),
            relay(stderr, sink(true, err_file))
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
            return (NodeOutcome::Interrupted, run);
        }
    };
    let elapsed = start.elapsed();
    run.duration = Some(elapsed);
    let mut outcome = match finished {
        None => NodeOutcome::TimedOut {
            after: Dur(opts.timeout.unwrap_or_default()),
        },
        Some((out, err, code)) => {
            let out = out.unwrap_or_default();
            (run.stdout, run.stdout_total) = (out.data, out.total);
            run.stderr = err.unwrap_or_default().data;
            match code {
                Err(e) => NodeOutcome::Lost {
                    reason: format!("{e:#}"),
                },
                Ok(code) => {
                    run.code = code;
                    match (code, opts.timeout) {
                        (Some(0), _) => NodeOutcome::Ok,
                        // timeout(1) exits 124 after TERM; after KILL it
                        // kills itself the same way (no exit code).
                        (Some(124 | 137) | None, Some(t)) if elapsed >= t => {
                            NodeOutcome::TimedOut { after: Dur(t) }
                        }
                        (Some(code), _) => NodeOutcome::Exited { code },
                        (None, _) => NodeOutcome::Killed,
                    }
                }
            }
        }
    };
    // No exit status: killed by a signal, or the connection went away (the
    // mux reports both alike). A dead master refuses the next channel at once.
    if outcome == NodeOutcome::Killed
        && tokio::time::timeout(Duration::from_secs(5), session.ping())
            .await
            .map_or(true, |r| r.is_err())
    {
        outcome = NodeOutcome::Lost {
            reason: "the connection to the node dropped".into(),
        };
    }
    if let Some(dir) = opts.outdir {
        for ext in ["out", "err"] {
            let (tmp, done) = out_paths(dir, &node, ext);
            if let Err(e) = tokio::fs::rename(&tmp, &done).await {
                let reason = format!("cannot write {}: {e}", done.display());
                outcome = NodeOutcome::Lost { reason };
            }
        }
    }
    (outcome, run)
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
