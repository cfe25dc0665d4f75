//! `worker-agent exec -- CMD ARGS...`: the chunk on the command's stdin, its
//! stdout back as data, its stderr as `E` frames, its exit status in `X`.
//!
//! The command runs in its own process group. Whenever the agent learns that
//! distctl is gone — a write fails, or the input ends short of
//! `--expect-bytes` — it kills that whole group, so nothing is left running
//! on the node.

use std::io::{self, Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use distctl_proto::End;

use crate::args::ExecArgs;
use crate::input::Input;
use crate::ops::READ_SIZE;
use crate::output::{kill_child_group, set_child_group};

/// How long the command's leftovers may keep its output open after it exited.
const LINGER: Duration = Duration::from_secs(2);

pub fn run(a: ExecArgs) -> i32 {
    let (out, input) = match crate::open(&a.io) {
        Ok(v) => v,
        Err(code) => return code,
    };
    out.start_heartbeats();
    let mut child = match Command::new(&a.command[0])
        .args(&a.command[1..])
        .process_group(0)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(if out.framed() {
            Stdio::piped()
        } else {
            Stdio::inherit()
        })
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            let mut input = input;
            let _ = io::copy(&mut input, &mut io::sink());
            let msg = format!("cannot start '{}': {e}", a.command[0]);
            return out.end(crate::failed(msg, false, input.bytes));
        }
    };
    set_child_group(child.id() as i32);

    let stdin = child.stdin.take().expect("piped");
    let expect = a.io.expect_bytes;
    let feeder = std::thread::spawn(move || feed(input, stdin, expect));
    let (done, finished) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().map(|mut err| {
        let (out, done) = (Arc::clone(&out), done.clone());
        std::thread::spawn(move || {
            let _ = pump(&mut err, |b| out.stderr(b));
            let _ = done.send(());
        })
    });
    let mut stdout = child.stdout.take().expect("piped");
    let reader = {
        let out = Arc::clone(&out);
        std::thread::spawn(move || {
            let read = pump(&mut stdout, |b| out.data(b));
            let _ = done.send(());
            read
        })
    };
    let status = child.wait();
    // Something the command left running in the background may still hold
    // its stdout or stderr open: give it a moment, then end the group so we
    // can finish.
    let deadline = std::time::Instant::now() + LINGER;
    for _ in 0..1 + stderr.is_some() as usize {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if finished.recv_timeout(left).is_err() {
            kill_child_group();
            break;
        }
    }
    let read_out = reader.join().expect("stdout thread");
    let input = feeder.join().expect("stdin thread");
    if let Some(t) = stderr {
        let _ = t.join();
    }
    // Whatever the command left behind in its group has no one to talk to.
    kill_child_group();

    let (seen, input_ok) = input;
    let bytes = seen.input_bytes;
    let status = match status {
        Ok(s) => s,
        Err(e) => {
            return out.end(crate::failed(
                format!("waiting for the command: {e}"),
                false,
                bytes,
            ))
        }
    };
    let mut end = End {
        ok: status.success(),
        exit_code: status.code(),
        signal: status.signal(),
        ..seen
    };
    if let Err(msg) =
        input_ok.and(read_out.map_err(|e| format!("reading the command's output: {e}")))
    {
        end.ok = false;
        end.error = Some(msg);
    } else if !end.ok {
        end.error = Some(match (end.exit_code, end.signal) {
            (Some(c), _) => format!("command exited with status {c}"),
            (_, Some(s)) => format!("command killed by signal {s}"),
            _ => "command failed".into(),
        });
    }
    if out.framed() {
        out.end(end)
    } else {
        // A local run exits like the command did.
        let code = end.exit_code.unwrap_or(128 + end.signal.unwrap_or(0));
        let errored = end.error.is_some() && end.exit_code == Some(0);
        let agent_code = out.end(end);
        if errored {
            agent_code
        } else {
            code
        }
    }
}

/// Copy the chunk into the command's stdin. A command that stops reading
/// early is fine (like `head`): the rest is still read and counted. Returns
/// what was read (bytes, hash and lines, as an `X` frame would carry them) and
/// whether the input was complete.
fn feed(
    mut input: Input,
    mut stdin: std::process::ChildStdin,
    expect: Option<u64>,
) -> (End, Result<(), String>) {
    let mut buf = vec![0u8; READ_SIZE];
    let mut to_child = Some(&mut stdin);
    let result = loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => break Err(format!("reading input: {e}")),
        };
        if let Some(w) = to_child.as_mut() {
            if w.write_all(&buf[..n]).is_err() {
                to_child = None;
            }
        }
    };
    drop(stdin);
    let result = result.and_then(|()| input.check(expect));
    if result.is_err() {
        // distctl is gone or the chunk is incomplete: the result is useless.
        kill_child_group();
    }
    let mut seen = End::default();
    input.seen(&mut seen);
    (seen, result)
}

/// Read `r` to its end in large pieces, handing each to `f`.
fn pump(r: &mut dyn Read, mut f: impl FnMut(&[u8])) -> io::Result<()> {
    let mut buf = vec![0u8; READ_SIZE];
    loop {
        match r.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => f(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}
