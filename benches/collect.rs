//! `cargo bench --bench collect`: wall time of one `distctl collect` (sample
//! interval 1 s, CSV to a file) on K real sshd nodes on loopback, beside the
//! seed's way: one `ssh node 'sleep 1; ...'` after another.
//!
//! Every run is cold (new connections). `COLLECT_BENCH_K=1,8` picks the sizes.

#[path = "../tests/support/mod.rs"]
mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::TestCluster;

const RUNS: usize = 3;

fn median(mut f: impl FnMut(), runs: usize) -> Duration {
    let mut walls: Vec<Duration> = (0..runs)
        .map(|_| {
            let t0 = Instant::now();
            f();
            t0.elapsed()
        })
        .collect();
    walls.sort();
    walls[runs / 2]
}

fn collect(cluster: &TestCluster, agentless: bool) {
    let csv = cluster.dir.path().join("bench.csv");
    let status = cluster
        .distctl()
        .args(["collect", "--sample-interval", "1s", "-q", "-o"])
        .arg(&csv)
        .args(agentless.then_some("--agentless"))
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(0), "collect failed");
}

/// The seed's `collect_metrics`: visit the nodes one by one, each sampling 1 s.
fn sequential_ssh(cluster: &TestCluster) {
    for n in &cluster.nodes {
        let ok = Command::new("ssh")
            .args(["-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes"])
            .arg("-o")
            .arg(format!(
                "UserKnownHostsFile={}",
                cluster.known_hosts.display()
            ))
            .arg("-i")
            .arg(&cluster.client_key)
            .args(["-p", &n.port.to_string(), "-l", &support::current_user()])
            .args(["127.0.0.1", "sleep 1; cat /proc/loadavg /proc/meminfo"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .status()
            .unwrap()
            .success();
        assert!(ok, "ssh failed");
    }
}

fn main() {
    let ks: Vec<usize> = std::env::var("COLLECT_BENCH_K")
        .ok()
        .map(|s| s.split(',').filter_map(|k| k.parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 8, 32]);
    println!("distctl collect, sample interval 1 s (median of {RUNS} cold runs) vs the seed's sequential ssh (1 run)");
    println!();
    println!("| nodes | collect (agentless) | collect (agent) | overhead over the 1 s interval | sequential ssh, 1 s each |");
    println!("|---:|---:|---:|---:|---:|");
    for k in ks {
        let cluster = TestCluster::start(k);
        let agentless = median(|| collect(&cluster, true), RUNS);
        let setup = cluster.distctl().arg("setup").output().unwrap();
        let agent = if setup.status.success() {
            format!(
                "{:.2} s",
                median(|| collect(&cluster, false), RUNS).as_secs_f64()
            )
        } else {
            "–".to_string()
        };
        let seq = median(|| sequential_ssh(&cluster), 1);
        println!(
            "| {k} | {:.2} s | {agent} | {:.0} ms | {:.1} s |",
            agentless.as_secs_f64(),
            (agentless.as_secs_f64() - 1.0) * 1000.0,
            seq.as_secs_f64()
        );
    }
}
