//! `cargo bench --bench docker_run`: `distctl run` on 3 Docker containers
//! (`docker/cluster up 3`, a private bridge network) beside the same job on 3
//! sshd nodes on loopback (tests/support), on one generated text input
//! (`DOCKER_BENCH_SIZE`, default 100M). Prints a Markdown table.
//!
//! Per cluster: `run --op upper`, `run --exec 'tr a-z A-Z'`, and the raw
//! limit: the same bytes through plain `ssh node cat` up and back, one third
//! per node, all three at once, on aes128-gcm (distctl's preferred cipher).
//! Each figure is the best of `DOCKER_BENCH_ROUNDS` (default 2) runs; the two
//! clusters take turns within a round.

#[path = "common/docker.rs"]
mod docker;
#[path = "../tests/support/mod.rs"]
mod support;

use std::path::Path;

use docker::{docker_cluster, raw_ssh, split_parts, Bench, Target};
use std::process::{Command, Stdio};
use std::time::Instant;

use support::TestCluster;

fn loopback_cluster(c: &TestCluster) -> Bench {
    Bench {
        label: "loopback (3 sshd on 127.0.0.1)",
        inventory: c.inventory().to_path_buf(),
        key: c.client_key.clone(),
        known_hosts: c.known_hosts.clone(),
        nodes: c
            .nodes
            .iter()
            .map(|n| Target {
                host: "127.0.0.1".into(),
                port: n.port,
                user: support::current_user(),
            })
            .collect(),
    }
}

fn distctl(b: &Bench, args: &[&str], input: &Path, out: &Path) -> f64 {
    // Freeing the previous output (renamed over at the end) is not the
    // run's work: up to 0.6 s for 1 GiB on a disk mounted with `discard`.
    let _ = std::fs::remove_file(out);
    let t = Instant::now();
    let st = Command::new(support::distctl_bin())
        .arg("--inventory")
        .arg(&b.inventory)
        .arg("--quiet")
        .arg("run")
        .arg(input)
        .args(args)
        .arg("-o")
        .arg(out)
        .stdin(Stdio::null())
        .status()
        .unwrap();
    let secs = t.elapsed().as_secs_f64();
    assert!(st.success(), "{}: distctl run {args:?} failed", b.label);
    secs
}

fn main() {
    if !Command::new("docker")
        .arg("info")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
    {
        eprintln!("docker_run bench: the Docker engine is not reachable ('docker info' fails): nothing measured");
        return;
    }
    let size = distctl::units::parse_size(
        &std::env::var("DOCKER_BENCH_SIZE").unwrap_or_else(|_| "100M".into()),
    )
    .expect("DOCKER_BENCH_SIZE like 100M or 1G");
    let rounds: usize = std::env::var("DOCKER_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(2);
    let work = tempfile::Builder::new()
        .prefix("dctl-dbench")
        .tempdir_in("/var/tmp")
        .unwrap();
    let input = work.path().join("input.txt");
    support::data::write_word_text(&input, size);
    let parts = split_parts(&input, work.path(), 3);
    let out = work.path().join("out.txt");

    let loop_cluster = TestCluster::start(3);
    let (_up, docker) = docker_cluster();
    let benches = [loopback_cluster(&loop_cluster), docker];
    for b in &benches {
        let st = Command::new(support::distctl_bin())
            .arg("--inventory")
            .arg(&b.inventory)
            .args(["setup", "--quiet"])
            .stdin(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success(), "{}: distctl setup failed", b.label);
    }

    let jobs: [(&str, &[&str]); 2] = [
        ("distctl run --op upper", &["--op", "upper"]),
        ("distctl run --exec 'tr a-z A-Z'", &["--exec", "tr a-z A-Z"]),
    ];
    // best[bench][row]: rows are the jobs, then raw ssh.
    let mut best = vec![vec![f64::INFINITY; jobs.len() + 1]; benches.len()];
    for _ in 0..rounds {
        for (bi, b) in benches.iter().enumerate() {
            for (ji, (_, args)) in jobs.iter().enumerate() {
                best[bi][ji] = best[bi][ji].min(distctl(b, args, &input, &out));
            }
            best[bi][jobs.len()] = best[bi][jobs.len()].min(raw_ssh(b, &parts, &[]));
        }
    }

    let mib = size as f64 / (1 << 20) as f64;
    println!(
        "\n{} MiB input, best of {rounds}, {} cores, load average {}\n",
        mib.round(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    print!("| job |");
    for b in &benches {
        print!(" {} |", b.label);
    }
    println!();
    println!("|---|{}", "---:|".repeat(benches.len()));
    let names: Vec<&str> = jobs
        .iter()
        .map(|(n, _)| *n)
        .chain(["raw `ssh node cat`, up and back (aes128-gcm)"])
        .collect();
    for (ri, name) in names.iter().enumerate() {
        print!("| {name} |");
        for row in &best {
            print!(" {:.2} s ({:.0} MiB/s) |", row[ri], mib / row[ri]);
        }
        println!();
    }
}
