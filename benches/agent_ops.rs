//! Throughput of every worker-agent op on one core: the embedded static
//! agent reads a generated file on stdin and writes to /dev/null (plain) or
//! through a pipe (framed, as distctl reads it). Prints a table.
//!
//! `cargo bench --bench agent_ops` (AGENT_BENCH_MIB=N for another input size).

use std::fs::File;
use std::io::{BufWriter, Write};
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

/// Deterministic text: words (some non-ASCII) in lines of 1-15 words.
fn write_text(path: &std::path::Path, bytes: u64) {
    let words: [&[u8]; 10] = [
        b"alpha",
        b"beta",
        b"Gamma",
        b"delta",
        "café".as_bytes(),
        "naïve".as_bytes(),
        b"x",
        b"hello",
        b"WORLD",
        b"42",
    ];
    let mut w = BufWriter::new(File::create(path).unwrap());
    let (mut seed, mut n) = (0x9E37_79B9_7F4A_7C15u64, 0u64);
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    while n < bytes {
        let count = 1 + next() % 15;
        for i in 0..count {
            let word = words[(next() % 10) as usize];
            if i > 0 {
                w.write_all(b" ").unwrap();
            }
            w.write_all(word).unwrap();
            n += word.len() as u64 + 1;
        }
        w.write_all(b"\n").unwrap();
    }
}

fn write_numbers(path: &std::path::Path, bytes: u64) {
    let mut w = BufWriter::new(File::create(path).unwrap());
    let (mut i, mut n) = (0u64, 0u64);
    while n < bytes {
        let line = if i % 4 == 0 {
            format!("{}.{}\n", i % 1000, i % 97)
        } else {
            format!("{}\n", i.wrapping_mul(2654435761) % 1_000_000)
        };
        w.write_all(line.as_bytes()).unwrap();
        n += line.len() as u64;
        i += 1;
    }
}

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
