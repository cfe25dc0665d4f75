use anyhow::Context;
use distctl::cli::Cli;
use distctl::exit::{exit_for, Exit};

fn main() {
    let cli = Cli::parse_args();
    raise_fd_limit();
    let json = cli.global.json;
    let code = match run(cli) {
        Ok(exit) => exit,
        Err(err) if distctl::output::stdout_reader_gone(&err) => die_of_sigpipe(),
        Err(err) => {
            let line = one_line(&err);
            eprintln!("distctl: error: {line}");
            let code = exit_for(&err);
            if json {
                distctl::output::json::print_error(&line, code.code());
            }
            code
        }
    };
    std::process::exit(code.code());
}

fn run(cli: Cli) -> anyhow::Result<Exit> {
    // Out of descriptors already (`ulimit -n` tiny): an error like any
    // other, not a panic. Below the floor the runtime may start and then
    // panic on its first signal handler, so check the limit first.
    if let Some(limit) = fd_limits().map(|l| l.rlim_cur).filter(|&l| l < MIN_FDS) {
        anyhow::bail!(
            "cannot start: a local problem on this machine: too many open files: \
             the limit (ulimit -n) is {limit}, and distctl needs at least {MIN_FDS}"
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start: a local problem on this machine")?;
    let result = runtime.block_on(distctl::commands::dispatch(cli));
    // Drop the runtime before exiting so ssh masters and temp dirs are cleaned up.
    drop(runtime);
    result
}

/// The reader of stdout went away (`| head`): everything is already cleaned
/// up (the runtime, and with it the ssh masters, is gone). End as `cat`
/// does: silently, killed by SIGPIPE (status 141 in the shell), not with an
/// error about a pipe the user closed on purpose.
fn die_of_sigpipe() -> ! {
    // SAFETY: plain libc calls; Rust's runtime set SIGPIPE to ignored at start.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        libc::raise(libc::SIGPIPE);
    }
    // Only if SIGPIPE is blocked: the run did not finish.
    std::process::exit(Exit::Failed.code())
}

/// Errors print as one line: the outermost context, then its causes after colons.
fn one_line(err: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in err.chain() {
        let s = cause.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
    }
    parts.join(": ").replace('\n', " ")
}

/// Descriptors distctl needs to start at all: stdio, the runtime's event
/// and signal descriptors, an inventory and an input file.
const MIN_FDS: u64 = 10;

/// The limits on open files (soft and hard), if they can be read.
fn fd_limits() -> Option<libc::rlimit> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit with a valid pointer to a local struct.
    (unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0).then_some(lim)
}

/// Many nodes × channels need more descriptors than the usual soft limit of
/// 1024: raise the soft limit to the hard one, as ssh-heavy tools do. A
/// failure leaves the limit as it was (EMFILE is then reported as the
/// controller's error, never a node's).
fn raise_fd_limit() {
    if let Some(mut lim) = fd_limits().filter(|l| l.rlim_cur < l.rlim_max) {
        lim.rlim_cur = lim.rlim_max;
        // SAFETY: setrlimit with a valid pointer to a local struct.
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) };
    }
}
