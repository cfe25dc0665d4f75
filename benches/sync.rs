//! `cargo bench --bench sync`: bytes sent and wall time of `distctl sync` to
//! K real sshd nodes (loopback), over rsync and over the tar path, for a
//! first sync, a second one with nothing changed, and one after 10 files
//! changed; beside plain parallel `rsync -e ssh` (a new login per node).
//!
//! The tree: 1,000 files of 1–40 KiB (≈20 MiB) in 20 folders, 10 symlinks.

#[path = "../tests/support/mod.rs"]
mod support;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::TestCluster;

fn make_tree(root: &Path) -> u64 {
    let mut total = 0;
    for d in 0..20 {
        let dir = root.join(format!("dir{d:02}"));
        fs::create_dir_all(&dir).unwrap();
        for f in 0..50 {
            let size = 1024 * (1 + (d * 50 + f) * 7919 % 40);
            let body: Vec<u8> = (0..size).map(|i| (i * 31 + d + f) as u8).collect();
            fs::write(dir.join(format!("file {f:03}.dat")), &body).unwrap();
            total += size as u64;
        }
        if d < 10 {
            symlink(
                format!("dir{d:02}/file 000.dat"),
                root.join(format!("link{d}")),
            )
            .unwrap();
        }
    }
    total
}

/// Wall time and the bytes sent to each node (their sum).
fn distctl_sync(cluster: &TestCluster, src: &Path, method: &str) -> (Duration, u64) {
    let start = Instant::now();
    let out = cluster
        .distctl()
        .args(["--json", "sync"])
        .arg(src)
        .args(["--to", method, "--method", method])
        .output()
        .unwrap();
    let wall = start.elapsed();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Value = serde_json::from_slice(&out.stdout).unwrap();
    let bytes = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["bytes_sent"].as_u64().unwrap())
        .sum();
    (wall, bytes)
}

/// Plain `rsync -rlpt -e ssh` to every node at once, each its own login.
fn plain_rsync(cluster: &TestCluster, src: &Path) -> Duration {
    let start = Instant::now();
    let children: Vec<_> = cluster
        .nodes
        .iter()
        .map(|n| {
            let ssh = format!(
                "ssh -o BatchMode=yes -o IdentitiesOnly=yes -o UserKnownHostsFile={} -i {} -p {} -l {}",
                cluster.known_hosts.display(),
                cluster.client_key.display(),
                n.port,
                support::current_user()
            );
            Command::new("rsync")
                .args(["-rlpt", "-e", &ssh])
                .arg(format!("{}/", src.display()))
                .arg(format!("127.0.0.1:{}/plain/", n.workdir.display()))
                .stdin(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success(), "plain rsync failed");
    }
    start.elapsed()
}

fn main() {
    let k: usize = std::env::var("SYNC_BENCH_K")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4);
    let cluster = TestCluster::start(k);
    for n in &cluster.nodes {
        fs::create_dir_all(n.workdir.join("plain")).unwrap();
    }
    let local = tempfile::tempdir().unwrap();
    let src = local.path().join("tree");
    let total = make_tree(&src);
    println!(
        "distctl sync to {k} nodes: 1,000 files, {:.1} MiB (bytes sent summed over the nodes)",
        total as f64 / (1 << 20) as f64
    );
    println!();
    println!("| step | rsync wall | rsync bytes sent | tar wall | tar bytes sent | plain parallel rsync -e ssh wall |");
    println!("|---|---:|---:|---:|---:|---:|");
    let steps = ["first sync", "nothing changed", "10 files changed"];
    for (i, step) in steps.iter().enumerate() {
        if i == 2 {
            for d in 0..10 {
                fs::write(
                    src.join(format!("dir{d:02}/file 001.dat")),
                    format!("changed {d}"),
                )
                .unwrap();
            }
        }
        let (rw, rb) = distctl_sync(&cluster, &src, "rsync");
        let (tw, tb) = distctl_sync(&cluster, &src, "tar");
        let pw = plain_rsync(&cluster, &src);
        println!(
            "| {step} | {:.0} ms | {rb} | {:.0} ms | {tb} | {:.0} ms |",
            rw.as_secs_f64() * 1000.0,
            tw.as_secs_f64() * 1000.0,
            pw.as_secs_f64() * 1000.0,
        );
    }
}
