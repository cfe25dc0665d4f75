//! Throughput of every worker-agent op on one core: the embedded static
//! agent reads a generated file on stdin and writes to /dev/null (plain) or
//! through a pipe (framed, as distctl reads it). Prints a table.
//!
//! `cargo bench --bench agent_ops` (AGENT_BENCH_MIB=N for another input size).

use std::fs::File;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::Instant;

/// CPU seconds (user + sys) of all waited-for children so far.
fn children_cpu() -> f64 {
    // SAFETY: getrusage fills the struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(ru.ru_utime) + t(ru.ru_stime)
}

#[path = "../tests/support/data.rs"]
mod data;
use data::{write_numbers, write_word_text as write_text};

fn main() {
    let mib: u64 = std::env::var("AGENT_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(512);
    let dir = tempfile::tempdir().unwrap();
    let agent = dir.path().join("worker-agent");
    std::fs::write(&agent, distctl::cluster::agent::EMBEDDED).unwrap();
    std::fs::set_permissions(&agent, std::fs::Permissions::from_mode(0o755)).unwrap();
    let text = dir.path().join("text.txt");
    let numbers = dir.path().join("numbers.txt");
    write_text(&text, mib << 20);
    write_numbers(&numbers, mib << 20);

    println!("worker-agent, {mib} MiB input, stdin from a file (page cache), one process");
    println!(
        "{:<34} {:>8} {:>9} {:>12}",
        "op", "wall s", "GiB/s", "CPU s/GiB"
    );
    let cases: Vec<(&str, Vec<&str>, &std::path::Path, bool)> = vec![
        ("upper", vec!["op", "upper"], &text, false),
        ("lower", vec!["op", "lower"], &text, false),
        (
            "upper --framed | cat",
            vec!["op", "upper", "--framed"],
            &text,
            true,
        ),
        ("count-lines", vec!["op", "count-lines"], &text, false),
        ("count-words", vec!["op", "count-words"], &text, false),
        ("count-chars", vec!["op", "count-chars"], &text, false),
        (
            "grep 'hello WORLD$'",
            vec!["op", "grep", "--pattern", "hello WORLD$"],
            &text,
            false,
        ),
        (
            "sum (ints and decimals)",
            vec!["op", "sum"],
            &numbers,
            false,
        ),
        (
            "avg (ints and decimals)",
            vec!["op", "avg"],
            &numbers,
            false,
        ),
        ("exec -- cat", vec!["exec", "--", "cat"], &text, false),
    ];
    for (name, args, input, piped) in cases {
        let size = std::fs::metadata(input).unwrap().len() as f64 / (1u64 << 30) as f64;
        let cpu0 = children_cpu();
        let start = Instant::now();
        let mut child = Command::new(&agent)
            .args(&args)
            .stdin(File::open(input).unwrap())
            .stdout(if piped { Stdio::piped() } else { Stdio::null() })
            .spawn()
            .unwrap();
        if piped {
            let mut out = child.stdout.take().unwrap();
            std::io::copy(&mut out, &mut std::io::sink()).unwrap();
        }
        assert!(child.wait().unwrap().success(), "{name} failed");
        let wall = start.elapsed().as_secs_f64();
        let cpu = children_cpu() - cpu0;
        println!(
            "{name:<34} {wall:>8.2} {:>9.2} {:>12.2}",
            size / wall,
            cpu / size
        );
    }
}
