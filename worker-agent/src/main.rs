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
        Some("self-probe") => self_probe(),
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
/// install probe, and the guard before a node's first chunks, ask the
/// installed agent instead of running `sha256sum`
/// (coreutils hashes ~3 MiB in ~15 ms without SHA instructions, plus a
/// `cut`); an agent too old to know this command is not the current one.
fn self_sha256() -> i32 {
    print_with_own_sha256(|sha| format!("{sha}\n"))
}

/// `worker-agent self-probe`: what distctl's install probe asks an
/// installed agent, in the probe's own lines: the CPUs this login may run
/// on (as `nproc` counts them: a `taskset` or a container's cpuset counts)
/// and this binary's sha256. One process where the probe would otherwise
/// start `nproc` as well.
fn self_probe() -> i32 {
    print_with_own_sha256(|sha| probe_lines(usable_cores(), sha))
}

/// Print `text` of this binary's sha256; exit code 1 when it cannot be read.
fn print_with_own_sha256(text: impl FnOnce(&str) -> String) -> i32 {
    match own_sha256() {
        Ok(sha) => {
            print!("{}", text(&sha));
            0
        }
        Err(e) => {
            eprintln!("worker-agent: cannot read /proc/self/exe: {e}");
            1
        }
    }
}

fn probe_lines(cores: Option<u64>, sha: &str) -> String {
    let cores = cores.map_or(String::new(), |n| n.to_string());
    format!("cores {cores}\ninstalled {sha}\n")
}

/// The CPUs this process may run on (its affinity mask), else the online ones.
fn usable_cores() -> Option<u64> {
    // SAFETY: sched_getaffinity(2) fills the zeroed set it is given, of the
    // size it is told; sysconf(3) reads a system value.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) == 0 {
            let n = libc::CPU_COUNT(&set);
            if n > 0 {
                return u64::try_from(n).ok();
            }
        }
        u64::try_from(libc::sysconf(libc::_SC_NPROCESSORS_ONLN))
            .ok()
            .filter(|&n| n > 0)
    }
}

/// The sha256 of this binary, read in blocks (no 3 MiB buffer to fault in).
fn own_sha256() -> std::io::Result<String> {
    use sha2::Digest;
    use std::io::Read;
    let mut file = std::fs::File::open("/proc/self/exe")?;
    let mut hasher = sha2::Sha256::new();
    let mut block = vec![0u8; 256 << 10];
    loop {
        match file.read(&mut block) {
            Ok(0) => break,
            Ok(n) => hasher.update(&block[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(format!("{:x}", hasher.finalize()))
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

#[cfg(test)]
mod tests {
    #[test]
    fn the_probe_lines_are_the_install_probes_own() {
        assert_eq!(super::probe_lines(Some(4), "ab"), "cores 4\ninstalled ab\n");
        assert_eq!(super::probe_lines(None, "ab"), "cores \ninstalled ab\n");
    }

    #[test]
    fn usable_cores_are_what_nproc_says() {
        let out = std::process::Command::new("nproc")
            .env_remove("OMP_NUM_THREADS")
            .env_remove("OMP_THREAD_LIMIT")
            .output()
            .unwrap();
        let want: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
        assert_eq!(super::usable_cores(), Some(want));
    }

    /// Under `taskset -c 0` the count is one, as `nproc` says there.
    #[test]
    fn an_affinity_mask_narrows_the_cores() {
        let exe = std::env::current_exe().unwrap();
        let out = std::process::Command::new("taskset")
            .args(["-c", "0"])
            .arg(&exe)
            .args([
                "--exact",
                "tests::usable_cores_are_what_nproc_says",
                "--nocapture",
            ])
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{said}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(said.contains("1 passed"), "{said}");
    }

    #[test]
    fn own_sha256_is_that_of_the_running_binary() {
        let bytes = std::fs::read("/proc/self/exe").unwrap();
        let want = format!("{:x}", <sha2::Sha256 as sha2::Digest>::digest(&bytes));
        assert_eq!(super::own_sha256().unwrap(), want);
    }
}
