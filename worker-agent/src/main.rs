//! worker-agent: the node-side half of distctl. Processes one chunk with a
//! built-in op or a command (stdin → stdout, or framed for distctl), and
//! samples node metrics. The protocol and the types it shares with distctl
//! are in `distctl-proto` (`proto/src/`: frames, codec, the command line).

mod args;
mod exec;
mod input;
mod metrics;
mod ops;
mod output;

use distctl_proto::End;

use crate::input::Input;
use crate::output::{Batcher, Output};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rest = args.get(1..).unwrap_or_default();
    let code = match args.first().map(String::as_str) {
        Some("version") => {
            println!("{}", distctl_proto::AGENT_VERSION);
            0
        }
        Some("self-sha256") => self_sha256(),
        Some("op" | "exec") => match args::AgentCall::parse(&args) {
            Ok(args::AgentCall::Op(a)) => op(a),
            Ok(args::AgentCall::Exec(a)) => exec::run(a),
            Err(msg) => usage(msg),
        },
        Some(cmd @ "sample") => metrics::main(cmd, rest),
        Some("-h" | "--help" | "help") => {
            println!("{}", args::USAGE);
            0
        }
        Some(other) => usage(format!("unknown command '{other}'")),
        None => usage("which command?".into()),
    };
    std::process::exit(code);
}

/// `worker-agent self-sha256`: the sha256 of this very binary. distctl's
/// install probe asks the installed agent instead of running `sha256sum`
/// (coreutils hashes ~3 MiB in ~15 ms without SHA instructions, plus a
/// `cut`); an agent too old to know this command is not the current one.
fn self_sha256() -> i32 {
    use sha2::Digest;
    match std::fs::read("/proc/self/exe") {
        Ok(bytes) => {
            println!("{:x}", sha2::Sha256::digest(&bytes));
            0
        }
        Err(e) => {
            eprintln!("worker-agent: cannot read /proc/self/exe: {e}");
            1
        }
    }
}

fn usage(msg: String) -> i32 {
    // The reason goes last: distctl reports a failed chunk by its last stderr line.
    eprintln!("{}\nworker-agent: {msg}", args::USAGE);
    2
}

/// `worker-agent op OP ...`
fn op(a: args::OpArgs) -> i32 {
    let (out, mut input) = match open(&a.io) {
        Ok(v) => v,
        Err(code) => return code,
    };
    out.start_heartbeats();
    let pattern = match a.pattern.as_deref().map(ops::compile_pattern).transpose() {
        Ok(p) => p,
        Err(msg) => {
            // A bad pattern fails on every node alike: not retryable.
            let _ = std::io::copy(&mut input, &mut std::io::sink());
            return out.end(failed(msg, true, input.bytes));
        }
    };
    let spec = ops::OpSpec {
        op: a.op,
        pattern,
        skip_invalid: a.skip_invalid,
        line_offset: a.line_offset,
    };
    let result = ops::run(&spec, &mut input, &mut Batcher::new(&out));
    let end = match result.map(|partial| (input.check(a.io.expect_bytes), partial)) {
        Err(e) => failed(e.message, e.input_error, input.bytes),
        Ok((Err(msg), _)) => failed(msg, false, input.bytes),
        Ok((Ok(()), partial)) => {
            let sent = if a.op.is_aggregate() {
                out.partial(&partial, a.op)
            } else {
                Ok(())
            };
            match sent {
                Ok(()) => {
                    let mut end = End {
                        ok: true,
                        ..End::default()
                    };
                    input.seen(&mut end);
                    end
                }
                Err(msg) => failed(msg, true, input.bytes),
            }
        }
    };
    out.end(end)
}

/// Open input and output, or the exit code of a clear failure.
pub fn open(io: &args::Io) -> Result<(std::sync::Arc<Output>, Input), i32> {
    let level = io.compress_output.filter(|_| io.framed);
    let follow = io.compress_output_like_input && io.input_frames;
    let out =
        Output::open(io.output.as_deref(), io.framed, io.chunk, level, follow).map_err(|e| {
            eprintln!("worker-agent: cannot create the output file: {e}");
            1
        })?;
    match Input::open(io.input.as_deref(), io.input_frames) {
        Ok(input) => Ok((out, input)),
        Err(e) => Err(out.end(failed(format!("cannot open the input: {e}"), false, 0))),
    }
}

/// The end of a failed run.
pub fn failed(error: String, input_error: bool, input_bytes: u64) -> End {
    End {
        ok: false,
        error: Some(error),
        input_error,
        input_bytes,
        ..End::default()
    }
}
