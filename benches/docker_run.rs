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

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use support::TestCluster;

/// How to reach one node with plain ssh.
struct Target {
    host: String,
    port: u16,
    user: String,
}

/// One cluster under test: its inventory and what plain ssh needs.
struct Bench {
    label: &'static str,
    inventory: PathBuf,
    key: PathBuf,
    known_hosts: PathBuf,
    nodes: Vec<Target>,
}

/// `docker/cluster up 3` with a name of its own; `down` on drop.
struct DockerUp {
    name: String,
}

impl Drop for DockerUp {
    fn drop(&mut self) {
        let _ = Command::new(repo().join("docker/cluster"))
            .arg("down")
            .env("DISTCTL_CLUSTER", &self.name)
            .stdin(Stdio::null())
            .status();
    }
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn docker_cluster() -> (DockerUp, Bench) {
    let name = format!("dctl-bench-{}", std::process::id());
    let up = DockerUp { name: name.clone() };
    let out = Command::new(repo().join("docker/cluster"))
        .args(["up", "3"])
        .env("DISTCTL_CLUSTER", &name)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .expect("docker/cluster");
    assert!(out.status.success(), "docker/cluster up failed");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let inventory = PathBuf::from(stdout.lines().last().unwrap());
    let inv: toml::Value = toml::from_str(&std::fs::read_to_string(&inventory).unwrap()).unwrap();
    let d = &inv["defaults"];
    let nodes = inv["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| Target {
            host: n["host"].as_str().unwrap().to_string(),
            port: n.get("port").and_then(|p| p.as_integer()).unwrap_or(22) as u16,
            user: d["user"].as_str().unwrap().to_string(),
        })
        .collect();
    let bench = Bench {
        label: "docker (3 containers, bridge)",
        key: PathBuf::from(d["identity_file"].as_str().unwrap()),
        known_hosts: PathBuf::from(d["known_hosts_file"].as_str().unwrap()),
        inventory,
        nodes,
    };
    (up, bench)
}

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

/// One third of the input per node through `ssh node cat`, up and back, at once.
fn raw_ssh(b: &Bench, parts: &[PathBuf]) -> f64 {
    let t = Instant::now();
    let children: Vec<_> = b
        .nodes
        .iter()
        .zip(parts)
        .map(|(n, part)| {
            Command::new("ssh")
                .args(["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes"])
                .arg("-o")
                .arg(format!("UserKnownHostsFile={}", b.known_hosts.display()))
                .args(["-c", "aes128-gcm@openssh.com", "-i"])
                .arg(&b.key)
                .args(["-p", &n.port.to_string(), "-l", &n.user, &n.host, "cat"])
                .stdin(std::fs::File::open(part).unwrap())
                .stdout(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut c in children {
        assert!(
            c.wait().unwrap().success(),
            "{}: raw ssh cat failed",
            b.label
        );
    }
    t.elapsed().as_secs_f64()
}

/// Split `input` into `n` line-aligned parts for the raw baseline.
fn split_parts(input: &Path, dir: &Path, n: usize) -> Vec<PathBuf> {
    let data = std::fs::read(input).unwrap();
    let mut parts = Vec::new();
    let mut start = 0;
    for i in 0..n {
        let mut end = if i + 1 == n {
            data.len()
        } else {
            (data.len() * (i + 1) / n).max(start)
        };
        while end < data.len() && end > 0 && data[end - 1] != b'\n' {
            end += 1;
        }
        let p = dir.join(format!("part{i}"));
        std::fs::write(&p, &data[start..end]).unwrap();
        parts.push(p);
        start = end;
    }
    parts
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
            best[bi][jobs.len()] = best[bi][jobs.len()].min(raw_ssh(b, &parts));
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
