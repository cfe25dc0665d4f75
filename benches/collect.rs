//! `cargo bench --bench collect`: wall time of one `distctl collect` (sample
//! interval 1 s, CSV to a file) on K real sshd nodes on loopback, beside
//! `distctl status` (the same connections and one command per node, no
//! interval: the floor collect adds its interval to) and the seed's way: one
//! `ssh node 'sleep 1; ...'` after another.
//!
//! Every run is cold (new connections). `COLLECT_BENCH_K=1,8` picks the sizes.

#[path = "../tests/support/mod.rs"]
mod support;

use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use support::TestCluster;

const RUNS: usize = 3;

/// Median wall time of each closure over RUNS rounds, the closures taking
/// turns within a round so a load change on the shared machine hits all alike.
fn medians(fs: &mut [&mut dyn FnMut()]) -> Vec<Duration> {
    let mut walls = vec![Vec::new(); fs.len()];
    for _ in 0..RUNS {
        for (f, w) in fs.iter_mut().zip(walls.iter_mut()) {
            let t0 = Instant::now();
            f();
            w.push(t0.elapsed());
        }
    }
    walls
        .into_iter()
        .map(|mut w| {
            w.sort();
            w[RUNS / 2]
        })
        .collect()
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
    count_partial(status.code());
}

fn status(cluster: &TestCluster) {
    let out = cluster
        .distctl()
        .args(["status", "--json", "-q"])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    count_partial(out.code());
}

static PARTIAL: AtomicUsize = AtomicUsize::new(0);

/// Exit 1 (a node timed out connecting, on an overloaded machine) still
/// measures a whole run; it is counted and reported, anything else fails.
fn count_partial(code: Option<i32>) {
    match code {
        Some(0) => {}
        Some(1) => {
            PARTIAL.fetch_add(1, Ordering::Relaxed);
        }
        other => panic!("distctl failed: exit {other:?}"),
    }
}

/// The seed's `collect_metrics`: visit the nodes one by one, each sampling 1 s.
fn sequential_ssh(cluster: &TestCluster) {
    for i in 0..cluster.nodes.len() {
        let ok = cluster
            .ssh(i)
            .arg("sleep 1; cat /proc/loadavg /proc/meminfo")
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
    println!("distctl collect, sample interval 1 s (median of {RUNS} cold runs, taking turns) vs the seed's sequential ssh (1 run)");
    println!();
    println!("| nodes | status (floor) | collect (agentless) | collect (agent) | collect − status | sequential ssh, 1 s each | runs with a node not reached |");
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for k in ks {
        let cluster = TestCluster::start(k);
        let setup = cluster.distctl().arg("setup").output().unwrap();
        assert!(
            setup.status.success(),
            "setup: {}",
            String::from_utf8_lossy(&setup.stderr)
        );
        PARTIAL.store(0, Ordering::Relaxed);
        let m = medians(&mut [
            &mut || status(&cluster),
            &mut || collect(&cluster, true),
            &mut || collect(&cluster, false),
        ]);
        let t0 = Instant::now();
        sequential_ssh(&cluster);
        let seq = t0.elapsed();
        let s = |d: Duration| d.as_secs_f64();
        println!(
            "| {k} | {:.2} s | {:.2} s | {:.2} s | {:.2} s | {:.1} s | {} of {} |",
            s(m[0]),
            s(m[1]),
            s(m[2]),
            s(m[1]) - s(m[0]),
            s(seq),
            PARTIAL.load(Ordering::Relaxed),
            3 * RUNS
        );
    }
}
