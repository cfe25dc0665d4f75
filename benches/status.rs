//! `cargo bench --bench status`: wall time and client CPU of `distctl status`
//! on K real sshd nodes (loopback) beside K plain `ssh node true` logins
//! started in parallel — the floor: every login pays a key exchange, and
//! client and servers share the machine's cores.
//!
//! CPU is the client side: distctl plus every ssh process it starts. The ssh
//! masters daemonize, so this process becomes a child subreaper to reap (and
//! count) them.

#[path = "../tests/support/mod.rs"]
mod support;

use std::process::Stdio;
use std::time::{Duration, Instant};

use support::TestCluster;

const RUNS: usize = 5;

fn children_cpu() -> Duration {
    // SAFETY: getrusage fills the struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Reap orphaned ssh masters re-parented to us, so their CPU is counted.
fn reap_orphans() {
    std::thread::sleep(Duration::from_millis(150));
    loop {
        // SAFETY: waitpid on any child, non-blocking.
        let pid = unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) };
        if pid <= 0 {
            break;
        }
    }
}

/// Median wall and client CPU of `a` and `b`, runs interleaved (a, b, a, b…)
/// so that load from anything else on the machine falls on both alike.
fn measure_pair(mut a: impl FnMut(), mut b: impl FnMut()) -> [(Duration, Duration); 2] {
    let mut samples: [Vec<(Duration, Duration)>; 2] = [Vec::new(), Vec::new()];
    for _ in 0..RUNS {
        for (i, f) in [&mut a as &mut dyn FnMut(), &mut b].into_iter().enumerate() {
            reap_orphans();
            let cpu0 = children_cpu();
            let t0 = Instant::now();
            f();
            let wall = t0.elapsed();
            reap_orphans();
            samples[i].push((wall, children_cpu() - cpu0));
        }
    }
    samples.map(|s| {
        let mut walls: Vec<_> = s.iter().map(|x| x.0).collect();
        let mut cpus: Vec<_> = s.iter().map(|x| x.1).collect();
        walls.sort();
        cpus.sort();
        (walls[RUNS / 2], cpus[RUNS / 2])
    })
}

fn distctl_status(cluster: &TestCluster) {
    let out = cluster
        .distctl()
        .args(["status", "--json", "--quiet"])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert_eq!(out.code(), Some(0), "status failed");
}

fn plain_ssh(cluster: &TestCluster) {
    let children: Vec<_> = (0..cluster.nodes.len())
        .map(|i| cluster.ssh(i).arg("true").spawn().unwrap())
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success(), "plain ssh failed");
    }
}

fn main() {
    // SAFETY: prctl with constant arguments.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    let ks: Vec<usize> = std::env::var("STATUS_BENCH_K")
        .ok()
        .map(|s| s.split(',').filter_map(|k| k.parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 3, 16, 64]);
    println!("distctl status vs parallel plain `ssh node true` (median of {RUNS} runs, cold: new connections every run)");
    println!();
    println!("| nodes | distctl status wall | distctl CPU-s | ssh true ×K wall | ssh CPU-s | wall ratio | CPU ratio |");
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for k in ks {
        let cluster = TestCluster::start(k);
        distctl_status(&cluster); // warm the page cache, not the connections
        let [(dw, dc), (sw, sc)] =
            measure_pair(|| distctl_status(&cluster), || plain_ssh(&cluster));
        println!(
            "| {k} | {:.0} ms | {:.2} | {:.0} ms | {:.2} | {:.2}× | {:.2}× |",
            dw.as_secs_f64() * 1000.0,
            dc.as_secs_f64(),
            sw.as_secs_f64() * 1000.0,
            sc.as_secs_f64(),
            dw.as_secs_f64() / sw.as_secs_f64(),
            dc.as_secs_f64() / sc.as_secs_f64(),
        );
    }
}
