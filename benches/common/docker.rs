//! The Docker cluster of the benches (`docker/cluster up 3`, removed on
//! drop) and the raw-ssh baseline over it: shared by `docker_run` and
//! `shaped_link`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// How to reach one node with plain ssh.
pub struct Target {
    pub host: String,
    pub port: u16,
    pub user: String,
}

/// One cluster under test: its inventory and what plain ssh needs.
pub struct Bench {
    pub label: &'static str,
    pub inventory: PathBuf,
    pub key: PathBuf,
    pub known_hosts: PathBuf,
    pub nodes: Vec<Target>,
}

/// `docker/cluster up 3` with a name of its own; `down` on drop.
pub struct DockerUp {
    pub name: String,
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

pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

pub fn docker_cluster() -> (DockerUp, Bench) {
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

/// One third of the input per node through `ssh node cat`, up and back, at once.
/// With `extra` ssh options (e.g. `-C`).
pub fn raw_ssh(b: &Bench, parts: &[PathBuf], extra: &[&str]) -> f64 {
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
                .args(extra)
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
pub fn split_parts(input: &Path, dir: &Path, n: usize) -> Vec<PathBuf> {
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
