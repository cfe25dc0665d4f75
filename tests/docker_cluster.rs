//! Whole-cluster and fault tests against Docker containers running sshd
//! (`docker/Dockerfile`, built offline by `docker/build-image`; CI runs
//! `scripts/docker-prepare` first so the image is there).
//!
//! Every test starts its own containers with unique names, on its own bridge
//! network with fixed addresses, and a Drop guard removes exactly those
//! containers and that network, also when the test fails. The tests skip, with
//! a loud message, only where `docker info` fails, and never when `CI` is set
//! (they fail there instead).

use std::fs;
use std::io::Read;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

mod support;
use support::text;

const IMAGE: &str = "distctl-node:bookworm";
/// Label on every container and network these tests make: the PID of the test
/// process that made it, so leftovers of a killed run can be told apart.
const OWNER: &str = "io.distctl.test-pid";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn distctl_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_distctl"))
}

/// `docker ARGS`, its output whatever the exit.
fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("cannot run docker")
}

/// `docker ARGS` that must succeed; its trimmed stdout.
fn docker_ok(args: &[&str]) -> String {
    let out = docker(args);
    assert!(
        out.status.success(),
        "docker {} failed: {}",
        args.join(" "),
        text(&out.stderr)
    );
    text(&out.stdout).trim().to_string()
}

/// Run a command with a time limit: past it the command is killed and the test
/// fails with what it printed so far, so no test can hang.
fn run_bounded(cmd: &mut Command, limit: Duration) -> Output {
    let started = Instant::now();
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot spawn");
    let mut out_pipe = child.stdout.take().unwrap();
    let mut err_pipe = child.stderr.take().unwrap();
    let out_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out_pipe.read_to_end(&mut v);
        v
    });
    let err_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err_pipe.read_to_end(&mut v);
        v
    });
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            let (o, e) = (out_t.join().unwrap(), err_t.join().unwrap());
            panic!(
                "{cmd:?} still running after {limit:?}: killed\nstdout: {}\nstderr: {}",
                text(&o[..o.len().min(4000)]),
                text(&e)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: out_t.join().unwrap(),
        stderr: err_t.join().unwrap(),
    }
}

/// Docker is usable and the node image is built (once per test process).
/// False, after a loud message, only when `docker info` fails.
fn docker_ready() -> bool {
    static READY: OnceLock<bool> = OnceLock::new();
    *READY.get_or_init(|| {
        let info = Command::new("docker")
            .arg("info")
            .stdin(Stdio::null())
            .output();
        if !matches!(&info, Ok(o) if o.status.success()) {
            // In CI the whole-cluster tests are part of what must pass: an
            // unreachable engine fails them instead of hiding them.
            assert!(
                std::env::var_os("CI").is_none(),
                "CI is set but the Docker engine is not reachable ('docker info' fails)"
            );
            eprintln!(
                "\n!!!!!!!! SKIPPED: the Docker engine is not reachable ('docker info' fails); \
                 the whole-cluster tests did NOT run !!!!!!!!\n"
            );
            return false;
        }
        remove_leftovers();
        // Cached: about a second when the image is current (serialized by a lock
        // inside the script, so parallel test processes wait for one build).
        let out = run_bounded(
            Command::new(repo().join("docker/build-image")).stdin(Stdio::null()),
            Duration::from_secs(600),
        );
        assert!(
            out.status.success(),
            "docker/build-image failed: {}",
            text(&out.stderr)
        );
        true
    })
}

/// Containers and networks of earlier test processes that died before their
/// Drop ran (killed by a timeout): the owner PID in their label is gone.
fn remove_leftovers() {
    let alive = |pid: &str| Path::new(&format!("/proc/{pid}")).exists();
    let fmt = format!("{{{{.ID}}}} {{{{.Label \"{OWNER}\"}}}}");
    let filter = format!("label={OWNER}");
    let ids = docker_ok(&["ps", "-a", "--filter", &filter, "--format", &fmt]);
    for line in ids.lines() {
        if let Some((id, pid)) = line.split_once(' ') {
            if !alive(pid) {
                let _ = docker(&["rm", "-f", id]);
            }
        }
    }
    let nets = docker_ok(&["network", "ls", "--filter", &filter, "--format", &fmt]);
    for line in nets.lines() {
        if let Some((id, pid)) = line.split_once(' ') {
            if !alive(pid) {
                let _ = docker(&["network", "rm", id]);
            }
        }
    }
    // Clusters of `docker/cluster` that a killed test made: named dctl-script-<pid>.
    let names = docker_ok(&[
        "ps",
        "-a",
        "--filter",
        "label=io.distctl.cluster",
        "--format",
        "{{.Label \"io.distctl.cluster\"}}",
    ]);
    let mut dead: Vec<&str> = names
        .lines()
        .filter(|n| {
            n.strip_prefix(SCRIPT_CLUSTER)
                .is_some_and(|pid| !alive(pid))
        })
        .collect();
    dead.sort_unstable();
    dead.dedup();
    for name in dead {
        let _ = Command::new(repo().join("docker/cluster"))
            .arg("down")
            .env("DISTCTL_CLUSTER", name)
            .stdin(Stdio::null())
            .output();
    }
}

/// Name prefix of the clusters `cluster_script_up_status_down` makes (then its PID).
const SCRIPT_CLUSTER: &str = "dctl-script-";

/// Set once a cluster of this process found that the host cannot reach
/// containers on a bridge network: later clusters use host networking.
static HOST_NETWORKING: AtomicBool = AtomicBool::new(false);

struct DockerNode {
    name: String,
    container: String,
    host: String,
    port: u16,
    /// Extra `docker run` arguments this node was started with.
    extra: Vec<String>,
}

/// N sshd containers, a client key, their known_hosts (host keys read from the
/// containers) and a strict-checking inventory. Drop removes what it made.
struct DockerCluster {
    dir: tempfile::TempDir,
    network: Option<String>,
    nodes: Vec<DockerNode>,
    paused: std::sync::Mutex<Vec<usize>>,
}

impl DockerCluster {
    /// `None` when Docker is unavailable (the test then returns, skipped loudly).
    fn start(test: &str, n: usize) -> Option<DockerCluster> {
        DockerCluster::start_with(test, n, |_| Vec::new())
    }

    /// `extra(i)`: more `docker run` arguments for node i (e.g. a tmpfs workdir).
    fn start_with(
        test: &str,
        n: usize,
        extra: impl Fn(usize) -> Vec<String>,
    ) -> Option<DockerCluster> {
        if !docker_ready() {
            return None;
        }
        let tag = format!("dctl-{}-{}", test.replace('_', "-"), std::process::id());
        // DISTCTL_NETWORK=host forces the fallback (as for docker/cluster).
        let forced = std::env::var("DISTCTL_NETWORK").is_ok_and(|v| v == "host");
        if !forced && !HOST_NETWORKING.load(Ordering::Relaxed) {
            let cluster = DockerCluster::launch(&tag, n, false, &extra);
            if cluster.node_answers(0, Duration::from_secs(15)) {
                return Some(cluster.finish());
            }
            if docker_ok(&["inspect", "-f", "{{.State.Running}}", cluster.container(0)]) != "true" {
                panic!(
                    "{} is not running: {}",
                    cluster.container(0),
                    text(&docker(&["logs", cluster.container(0)]).stderr)
                );
            }
            eprintln!(
                "NOTE: this Docker engine gives containers no network the host can reach \
                 ({}:22 is silent); falling back to host networking, one sshd port per node on 127.0.0.1",
                cluster.nodes[0].host
            );
            HOST_NETWORKING.store(true, Ordering::Relaxed);
            drop(cluster);
        }
        Some(DockerCluster::launch(&tag, n, true, &extra).finish())
    }

    /// Containers (and, unless `host_mode`, their network) started in parallel.
    fn launch(
        tag: &str,
        n: usize,
        host_mode: bool,
        extra: &impl Fn(usize) -> Vec<String>,
    ) -> DockerCluster {
        let dir = tempfile::Builder::new()
            .prefix("dctl-docker")
            .tempdir()
            .unwrap();
        let key = dir.path().join("client_key");
        let st = Command::new("ssh-keygen")
            .args([
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                "distctl-docker-test",
                "-f",
            ])
            .arg(&key)
            .stdin(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success());
        let mut cluster = DockerCluster {
            dir,
            network: None,
            nodes: Vec::new(),
            paused: Default::default(),
        };
        let base = if host_mode {
            None
        } else {
            let base = create_network(tag);
            cluster.network = Some(tag.to_string());
            Some(base)
        };
        for i in 0..n {
            let name = format!("node{}", i + 1);
            let (host, port) = match base {
                Some(b) => (Ipv4Addr::from(b + 11 + i as u32).to_string(), 22),
                None => ("127.0.0.1".to_string(), free_port()),
            };
            cluster.nodes.push(DockerNode {
                container: format!("{tag}-{name}"),
                name,
                host,
                port,
                extra: extra(i),
            });
        }
        let pubkey = fs::read_to_string(key.with_extension("pub")).unwrap();
        std::thread::scope(|s| {
            for node in &cluster.nodes {
                let (pubkey, network) = (pubkey.trim(), cluster.network.as_deref());
                s.spawn(move || run_container(node, network, pubkey));
            }
        });
        cluster
    }

    /// Wait for every sshd, then write known_hosts and the inventory.
    fn finish(self) -> DockerCluster {
        let cluster = self;
        cluster.wait_ready(Duration::from_secs(60));
        cluster.write_known_hosts();
        cluster.write_inventory("");
        cluster
    }

    fn node_answers(&self, i: usize, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let n = &self.nodes[i];
        while Instant::now() < deadline {
            if tcp_open(&n.host, n.port) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    fn inventory(&self) -> PathBuf {
        self.dir.path().join("cluster.toml")
    }

    fn known_hosts(&self) -> PathBuf {
        self.dir.path().join("known_hosts")
    }

    /// Strict host-key checking, the cluster's own known_hosts; `extra` is appended.
    fn write_inventory(&self, extra: &str) {
        let mut s = format!(
            "[defaults]\nuser = \"distctl\"\nidentity_file = {:?}\nknown_hosts_file = {:?}\n\
             host_key_checking = \"strict\"\nconnect_timeout = \"5s\"\n",
            self.dir.path().join("client_key").display().to_string(),
            self.known_hosts().display().to_string(),
        );
        for n in &self.nodes {
            s.push_str(&format!(
                "\n[[nodes]]\nname = {:?}\nhost = {:?}\nport = {}\n",
                n.name, n.host, n.port
            ));
        }
        s.push_str(extra);
        fs::write(self.inventory(), s).unwrap();
    }

    fn write_known_hosts(&self) {
        let keys: Vec<String> = std::thread::scope(|s| {
            let handles: Vec<_> = self
                .nodes
                .iter()
                .map(|n| s.spawn(move || host_key(&n.container)))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mut out = String::new();
        for (n, key) in self.nodes.iter().zip(keys) {
            // ssh looks a node on port 22 up by its bare address.
            if n.port == 22 {
                out.push_str(&format!("{} {key}\n", n.host));
            } else {
                out.push_str(&format!("[{}]:{} {key}\n", n.host, n.port));
            }
        }
        fs::write(self.known_hosts(), out).unwrap();
    }

    /// Every node's sshd accepts connections.
    fn wait_ready(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        for n in &self.nodes {
            while !tcp_open(&n.host, n.port) {
                assert!(
                    Instant::now() < deadline,
                    "{} ({}:{}) did not answer within {limit:?}; docker logs: {}",
                    n.container,
                    n.host,
                    n.port,
                    text(&docker(&["logs", &n.container]).stderr)
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// `distctl --inventory <this cluster>`; add the command and its flags.
    fn distctl(&self) -> Command {
        let mut c = Command::new(distctl_bin());
        c.arg("--inventory").arg(self.inventory());
        c.stdin(Stdio::null());
        c
    }

    fn container(&self, i: usize) -> &str {
        &self.nodes[i].container
    }

    /// SIGKILL the node's container: sshd and every session die at once.
    fn kill(&self, i: usize) {
        docker_ok(&["kill", self.container(i)]);
    }

    /// Freeze every process of the node (a hung machine, connections stay open).
    fn unpause(&self, i: usize) {
        docker_ok(&["unpause", self.container(i)]);
        self.paused.lock().unwrap().retain(|&p| p != i);
    }

    /// Within 20 s no process of user distctl but sshd's own runs on these
    /// nodes: no agent, shell or command left behind by a run.
    fn assert_settled(&self, nodes: &[usize]) {
        let deadline = Instant::now() + Duration::from_secs(20);
        for &i in nodes {
            loop {
                let ps = [
                    "exec",
                    self.container(i),
                    "ps",
                    "-u",
                    "distctl",
                    "-o",
                    "pid=,args=",
                ];
                let left: Vec<String> = text(&docker(&ps).stdout)
                    .lines()
                    .filter(|l| !l.contains("sshd:"))
                    .map(|l| l.trim().to_string())
                    .collect();
                if left.is_empty() {
                    break;
                }
                let still = left.join("; ");
                assert!(
                    Instant::now() < deadline,
                    "node{} still runs: {still}",
                    i + 1
                );
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }

    fn pause(&self, i: usize) {
        docker_ok(&["pause", self.container(i)]);
        self.paused.lock().unwrap().push(i);
    }

    /// Give the node a new host key and restart it (known_hosts keeps the old one).
    fn rekey(&self, i: usize) {
        docker_ok(&[
            "exec",
            self.container(i),
            "sh",
            "-c",
            "rm -f /etc/ssh/host_keys/ssh_host_*",
        ]);
        docker_ok(&["restart", "-t", "1", self.container(i)]);
        let n = &self.nodes[i];
        let deadline = Instant::now() + Duration::from_secs(30);
        while !tcp_open(&n.host, n.port) {
            assert!(
                Instant::now() < deadline,
                "{} did not come back",
                n.container
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn host_key(&self, i: usize) -> String {
        host_key(self.container(i))
    }
}

impl Drop for DockerCluster {
    fn drop(&mut self) {
        for &i in self.paused.lock().unwrap().iter() {
            let _ = docker(&["unpause", self.container(i)]);
        }
        let names: Vec<&str> = self.nodes.iter().map(|n| n.container.as_str()).collect();
        if !names.is_empty() {
            let mut args = vec!["rm", "-f", "-v"];
            args.extend(names);
            let _ = docker(&args);
        }
        if let Some(net) = &self.network {
            let _ = docker(&["network", "rm", net]);
        }
    }
}

/// A bridge network with a /24 of its own (fixed addresses need a configured
/// subnet): the first free 172.30.X.0/24, trying from a per-process start.
/// Returns the subnet's base address.
fn create_network(name: &str) -> u32 {
    let start = std::process::id() as usize;
    let mut last = String::new();
    for k in 0..64 {
        let x = (start + k * 37) % 256;
        let subnet = format!("172.30.{x}.0/24");
        let out = docker(&[
            "network",
            "create",
            "--label",
            &owner_label(),
            "--subnet",
            &subnet,
            name,
        ]);
        if out.status.success() {
            return u32::from(Ipv4Addr::new(172, 30, x as u8, 0));
        }
        last = text(&out.stderr);
        if !last.contains("overlap") {
            break;
        }
    }
    panic!("cannot create docker network {name}: {last}");
}

fn owner_label() -> String {
    format!("{OWNER}={}", std::process::id())
}

fn run_container(node: &DockerNode, network: Option<&str>, pubkey: &str) {
    let owner = owner_label();
    let auth = format!("AUTHORIZED_KEYS={pubkey}");
    let mut args: Vec<String> = ["run", "-d", "--name", &node.container, "--label", &owner]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.extend(["-e".into(), auth]);
    match network {
        Some(net) => args.extend([
            "--network".into(),
            net.into(),
            "--ip".into(),
            node.host.clone(),
            "--hostname".into(),
            node.name.clone(),
        ]),
        None => args.extend([
            "--network".into(),
            "host".into(),
            "-e".into(),
            format!("SSHD_PORT={}", node.port),
            "-e".into(),
            "SSHD_LISTEN=127.0.0.1".into(),
        ]),
    }
    args.extend(node.extra.iter().cloned());
    args.push(IMAGE.into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    docker_ok(&args);
}

/// `type blob` of the container's sshd host key, read from inside it.
fn host_key(container: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = docker(&[
            "exec",
            container,
            "cat",
            "/etc/ssh/host_keys/ssh_host_ed25519_key.pub",
        ]);
        if out.status.success() {
            let k = text(&out.stdout);
            let mut w = k.split_whitespace();
            return format!("{} {}", w.next().unwrap(), w.next().unwrap());
        }
        assert!(
            Instant::now() < deadline,
            "no host key in {container}: {}",
            text(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn tcp_open(host: &str, port: u16) -> bool {
    let addr = format!("{host}:{port}").parse().unwrap();
    TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok()
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn status_json(cluster: &DockerCluster) -> (i32, Vec<serde_json::Value>) {
    let out = run_bounded(
        cluster.distctl().args(["status", "--json"]),
        Duration::from_secs(60),
    );
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "bad status JSON ({e}): {}{}",
            text(&out.stdout),
            text(&out.stderr)
        )
    });
    (out.status.code().unwrap(), rows.as_array().unwrap().clone())
}

type Row = std::collections::HashMap<String, String>;

/// `distctl collect -o <csv>`: exit code and the rows (column → cell).
fn collect_rows(cluster: &DockerCluster, extra: &[&str]) -> (i32, Vec<Row>) {
    let csv_path = cluster.dir.path().join("metrics.csv");
    let _ = fs::remove_file(&csv_path);
    let out = run_bounded(
        cluster
            .distctl()
            .args(extra)
            .args(["collect", "--sample-interval", "300ms", "-o"])
            .arg(&csv_path),
        Duration::from_secs(90),
    );
    let code = out.status.code().unwrap();
    let mut r = csv::Reader::from_path(&csv_path)
        .unwrap_or_else(|e| panic!("no CSV ({e}); exit {code}: {}", text(&out.stderr)));
    let header: Vec<String> = r.headers().unwrap().iter().map(String::from).collect();
    let rows = r
        .records()
        .map(|rec| {
            header
                .iter()
                .cloned()
                .zip(rec.unwrap().iter().map(String::from))
                .collect()
        })
        .collect();
    (code, rows)
}

#[test]
fn killed_container_is_unreachable_and_hides_nothing() {
    let Some(cluster) = DockerCluster::start("killed", 3) else {
        return;
    };
    cluster.kill(1);
    let started = Instant::now();
    let (code, rows) = status_json(&cluster);
    assert_eq!(code, 1, "{rows:?}");
    assert_eq!(rows[0]["reachable"], true, "{rows:?}");
    assert_eq!(rows[2]["reachable"], true, "{rows:?}");
    assert_eq!(rows[1]["reachable"], false, "{rows:?}");
    let err = rows[1]["error"].as_str().unwrap();
    assert!(!err.is_empty());
    // Bounded by connect_timeout (5s), whatever the network does with the dead address.
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn paused_container_does_not_hang_status() {
    let Some(cluster) = DockerCluster::start("paused-status", 2) else {
        return;
    };
    cluster.pause(0);
    let started = Instant::now();
    let (code, rows) = status_json(&cluster);
    assert_eq!(code, 1, "{rows:?}");
    assert_eq!(rows[0]["reachable"], false, "{rows:?}");
    assert_eq!(rows[1]["reachable"], true, "{rows:?}");
    // The TCP handshake succeeds (the kernel answers for a frozen container);
    // ssh's ConnectTimeout covers the silent banner exchange too.
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn new_host_key_is_refused_under_strict_checking() {
    let Some(cluster) = DockerCluster::start("rekey", 2) else {
        return;
    };
    let (code, _) = status_json(&cluster);
    assert_eq!(code, 0);
    let before = cluster.host_key(0);
    cluster.rekey(0);
    assert_ne!(
        before,
        cluster.host_key(0),
        "the restart made a new host key"
    );
    let (code, rows) = status_json(&cluster);
    assert_eq!(code, 1, "{rows:?}");
    assert_eq!(rows[0]["reachable"], false);
    let err = rows[0]["error"].as_str().unwrap();
    assert!(err.contains("host key has CHANGED"), "{err}");
    assert_eq!(rows[1]["reachable"], true);
    // The human table says it on the node's line too.
    let out = run_bounded(cluster.distctl().arg("status"), Duration::from_secs(60));
    let table = text(&out.stdout);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("node1") && l.contains("host key has CHANGED")),
        "{table}"
    );
}

/// What a user does on a laptop: `docker/cluster up`, status, `docker/cluster down`.
#[test]
fn cluster_script_up_status_down() {
    if !docker_ready() {
        return;
    }
    let name = format!("{SCRIPT_CLUSTER}{}", std::process::id());
    let script = repo().join("docker/cluster");
    let out = run_bounded(
        Command::new(&script)
            .args(["up", "2"])
            .env("DISTCTL_CLUSTER", &name)
            .stdin(Stdio::null()),
        Duration::from_secs(180),
    );
    // Whatever happens next, take the cluster down.
    struct Down<'a>(&'a Path, &'a str);
    impl Drop for Down<'_> {
        fn drop(&mut self) {
            let _ = Command::new(self.0)
                .arg("down")
                .env("DISTCTL_CLUSTER", self.1)
                .stdin(Stdio::null())
                .output();
        }
    }
    let down = Down(&script, &name);
    assert!(out.status.success(), "cluster up: {}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let inventory = PathBuf::from(stdout.lines().last().unwrap());
    assert!(inventory.ends_with("cluster.docker.toml"), "{stdout}");
    let inv = fs::read_to_string(&inventory).unwrap();
    assert!(inv.contains("host_key_checking = \"accept-new\""), "{inv}");
    assert!(inv.contains("user = \"distctl\""), "{inv}");

    let status = run_bounded(
        Command::new(distctl_bin())
            .arg("--inventory")
            .arg(&inventory)
            .args(["status", "--json"])
            .stdin(Stdio::null()),
        Duration::from_secs(60),
    );
    assert_eq!(status.status.code(), Some(0), "{}", text(&status.stderr));
    let rows: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 2);

    drop(down);
    let filter = format!("label=io.distctl.cluster={name}");
    assert_eq!(docker_ok(&["ps", "-aq", "--filter", &filter]), "");
    assert_eq!(docker_ok(&["network", "ls", "-q", "--filter", &filter]), "");
    assert!(
        !inventory.parent().unwrap().exists(),
        "keys and inventory removed"
    );
}

/// The committed compose file is what the script generates for 3 nodes.
#[test]
fn compose_file_matches_the_generator() {
    let out = Command::new(repo().join("docker/cluster"))
        .args(["compose", "3"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let committed = fs::read_to_string(repo().join("docker/compose.yml")).unwrap();
    assert_eq!(
        text(&out.stdout),
        committed,
        "regenerate: docker/cluster compose 3 > docker/compose.yml"
    );
}

// ---- the data path: setup, run, faults mid-run ----

/// The worker-agent built beside distctl: the local reference for every op.
fn agent_bin() -> PathBuf {
    let p = distctl_bin().with_file_name("worker-agent");
    assert!(
        p.exists(),
        "{} is missing: cargo build --workspace",
        p.display()
    );
    p
}

/// What `worker-agent op ARGS < input` prints on this machine.
fn local_op(args: &[&str], input: &Path) -> Vec<u8> {
    let out = run_bounded(
        Command::new(agent_bin())
            .arg("op")
            .args(args)
            .stdin(fs::File::open(input).unwrap()),
        Duration::from_secs(60),
    );
    assert!(
        out.status.success(),
        "local {args:?}: {}",
        text(&out.stderr)
    );
    out.stdout
}

/// Deterministic awkward text of about `size` bytes: mixed case, UTF-8, CRLF
/// lines, invalid bytes, empty lines, long lines, no final newline.
fn write_text(path: &Path, size: usize) {
    fs::write(path, support::data::awkward_text(size)).unwrap();
}

fn write_numbers(path: &Path, lines: usize) {
    fs::write(path, support::data::numbers(lines)).unwrap();
}

/// What one `distctl run` gave.
struct Job {
    code: i32,
    /// The output file, None when none was written.
    output: Option<Vec<u8>>,
    /// The `--json` summary (chunks, retries, per-node chunks and faults), else Null.
    summary: serde_json::Value,
    stderr: String,
}

/// `distctl run INPUT ARGS -o OUT`, killed (and the test failed) past `limit`.
/// With `--json` among ARGS the summary comes on stdout.
fn run_job(cluster: &DockerCluster, input: &Path, args: &[&str], limit: Duration) -> Job {
    let out_path = input.with_extension("out");
    let _ = fs::remove_file(&out_path);
    let out = run_bounded(
        cluster
            .distctl()
            .arg("run")
            .arg(input)
            .args(args)
            .arg("-o")
            .arg(&out_path),
        limit,
    );
    let stderr = text(&out.stderr);
    Job {
        code: out.status.code().unwrap(),
        output: fs::read(&out_path).ok(),
        summary: serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null),
        stderr,
    }
}

impl Job {
    /// Exit 0 and the output equal to `want`.
    fn assert_ok(&self, want: &[u8], what: &str) {
        assert_eq!(self.code, 0, "{what}: {}", self.stderr);
        self.assert_output(want, what);
    }

    fn assert_output(&self, want: &[u8], what: &str) {
        let got = self
            .output
            .as_ref()
            .unwrap_or_else(|| panic!("{what}: no output written; stderr: {}", self.stderr));
        assert!(
            got == want,
            "{what}: output differs from the local result ({} vs {} bytes); stderr: {}\n\
             got head: {:?}\nwant head: {:?}",
            got.len(),
            want.len(),
            self.stderr,
            text(&got[..got.len().min(200)]),
            text(&want[..want.len().min(200)])
        );
    }

    fn retries(&self) -> u64 {
        self.summary["retries"]
            .as_u64()
            .unwrap_or_else(|| panic!("no --json summary: {} / {}", self.summary, self.stderr))
    }

    /// (chunks, faults) of one node in the summary.
    fn node(&self, name: &str) -> (u64, u64) {
        let n = self.summary["nodes"]
            .as_array()
            .and_then(|a| a.iter().find(|n| n["node"] == name))
            .unwrap_or_else(|| panic!("{name} not in the summary: {}", self.summary));
        (n["chunks"].as_u64().unwrap(), n["faults"].as_u64().unwrap())
    }
}

/// Block until a chunk of a [`SLOW_UPPER`] job is in flight on node `i` (its
/// `sleep` runs there): a fault injected then hits work in progress, not the
/// run's start-up.
fn wait_for_chunk(cluster: &DockerCluster, i: usize, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let out = docker(&[
            "exec",
            cluster.container(i),
            "pgrep",
            "-u",
            "distctl",
            "-x",
            "sleep",
        ]);
        if out.status.success() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no chunk ever ran on node{}",
            i + 1
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn setup(cluster: &DockerCluster) -> (i32, String, String) {
    let out = run_bounded(cluster.distctl().arg("setup"), Duration::from_secs(180));
    (
        out.status.code().unwrap(),
        text(&out.stdout),
        text(&out.stderr),
    )
}

/// A slow, fault-exposed job: many chunks, each taking a while on its node, so
/// a fault can be injected while chunks are in flight on every node.
const SLOW_UPPER: &str = "sleep 0.3; tr a-z A-Z";

#[test]
fn setup_status_run_collect_status_on_three_containers() {
    let Some(cluster) = DockerCluster::start("pipeline", 3) else {
        return;
    };
    let (code, rows) = status_json(&cluster);
    assert_eq!(code, 0, "{rows:?}");
    assert!(rows.iter().all(|r| r["agent"] == "none"), "{rows:?}");
    // Every node is its own container: `hostname` answers differ (the containers
    // share the host's name only under the host-networking fallback).
    let out = run_bounded(
        cluster.distctl().args(["exec", "--json", "--", "hostname"]),
        Duration::from_secs(60),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let runs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<String> = runs
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["stdout"].as_str().unwrap().trim().to_string())
        .collect();
    if cluster.network.is_some() {
        assert_eq!(names, ["node1", "node2", "node3"], "{runs}");
    }
    // Agentless metrics before setup: one row per container, from its own address.
    let (code, rows) = collect_rows(&cluster, &[]);
    assert_eq!(code, 0, "{rows:?}");
    assert_eq!(rows.len(), 3);
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(row["host"], cluster.nodes[i].host);
        assert_eq!(row["status"], "ok", "{row:?}");
        assert_eq!(row["sampler"], "ssh", "{row:?}");
    }

    let (code, out, err) = setup(&cluster);
    assert_eq!(code, 0, "setup: {out}{err}");
    let (code, rows) = status_json(&cluster);
    assert_eq!(code, 0, "{rows:?}");
    assert!(rows.iter().all(|r| r["agent"] != "none"), "{rows:?}");

    let dir = cluster.dir.path();
    let words = dir.join("text.txt");
    write_text(&words, 1 << 20);
    let numbers = dir.join("numbers.txt");
    write_numbers(&numbers, 40_000);
    let cases: &[(&[&str], &Path)] = &[
        (&["upper"], &words),
        (&["lower"], &words),
        (&["count-lines"], &words),
        (&["count-words"], &words),
        (&["count-chars"], &words),
        (&["grep", "--pattern", "d\u{e9}j|CHAR"], &words),
        (&["sum"], &numbers),
        (&["avg"], &numbers),
        (&["min"], &numbers),
        (&["max"], &numbers),
        (&["count-lines"], &numbers),
    ];
    for (op, input) in cases {
        let want = local_op(op, input);
        let mut args = vec!["--op", op[0], "--chunk-size", "64K"];
        args.extend(&op[1..]);
        run_job(&cluster, input, &args, Duration::from_secs(120))
            .assert_ok(&want, &format!("{op:?}"));
    }
    // Any command, like the seed's worker.sh (`upper` is byte-for-byte `tr a-z A-Z`).
    run_job(
        &cluster,
        &words,
        &["--exec", "tr a-z A-Z", "--chunk-size", "64K"],
        Duration::from_secs(120),
    )
    .assert_ok(&local_op(&["upper"], &words), "--exec");

    // Metrics from the agent on each container.
    let (code, rows) = collect_rows(&cluster, &[]);
    assert_eq!(code, 0, "{rows:?}");
    assert_eq!(rows.len(), 3);
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(row["node"], format!("node{}", i + 1));
        assert_eq!(row["host"], cluster.nodes[i].host);
        assert_eq!(row["status"], "ok", "{row:?}");
        assert_eq!(row["sampler"], "agent", "{row:?}");
        assert!(row["mem_total_mib"].parse::<u64>().unwrap() > 0, "{row:?}");
    }
    let (code, rows) = status_json(&cluster);
    assert_eq!(code, 0, "{rows:?}");
}

/// On a fresh 3-node cluster after `setup`: a [`SLOW_UPPER`] run over 6 MiB with
/// `--json` and `extra` flags; `fault` hits node2 as soon as a chunk is in
/// flight there. The run must still give the local result; its Job is returned
/// with the time it took.
fn run_with_fault(
    cluster: &DockerCluster,
    extra: &[&str],
    fault: impl FnOnce(&DockerCluster),
) -> (Job, Duration) {
    let (code, out, err) = setup(cluster);
    assert_eq!(code, 0, "setup: {out}{err}");
    let input = cluster.dir.path().join("input.txt");
    // 96 chunks of 0.3 s on 6 slots: ~5 s of work, so the fault (two docker
    // CLI round trips after the first chunk shows) lands well before the end.
    write_text(&input, 6 << 20);
    let want = local_op(&["upper"], &input);
    let mut args = vec!["--json", "--exec", SLOW_UPPER, "--chunk-size", "64K"];
    args.extend(extra);
    let started = Instant::now();
    let job = std::thread::scope(|s| {
        let job = s.spawn(|| run_job(cluster, &input, &args, Duration::from_secs(180)));
        wait_for_chunk(cluster, 1, Duration::from_secs(60));
        fault(cluster);
        job.join().unwrap()
    });
    let took = started.elapsed();
    eprintln!("distctl run: {}\n{}", job.summary, job.stderr);
    job.assert_output(&want, "run with a fault on node2");
    assert!(
        job.retries() > 0,
        "node2's chunks in flight ran again elsewhere"
    );
    assert!(job.node("node2").1 > 0, "node2's faults are counted");
    (job, took)
}

#[test]
fn killed_container_mid_run_loses_nothing() {
    let Some(cluster) = DockerCluster::start("killed-run", 3) else {
        return;
    };
    let (job, _) = run_with_fault(&cluster, &[], |c| c.kill(1));
    assert_eq!(
        job.code, 1,
        "a node was lost: exit 1 (output complete); {}",
        job.stderr
    );

    let (code, rows) = status_json(&cluster);
    assert_eq!(code, 1, "{rows:?}");
    assert_eq!(rows[1]["reachable"], false, "{rows:?}");
    assert_eq!(rows[0]["reachable"], true, "{rows:?}");
    assert_eq!(rows[2]["reachable"], true, "{rows:?}");
    cluster.assert_settled(&[0, 2]);
}

#[test]
fn paused_container_mid_run_times_out_and_is_retried() {
    let Some(cluster) = DockerCluster::start("paused-run", 3) else {
        return;
    };
    // With compression on both ways: a frozen node's half-sent Z frames are
    // dropped with its connection, and its chunks run again whole elsewhere.
    let (job, took) = run_with_fault(&cluster, &["--timeout", "3s", "--compress", "zstd"], |c| {
        c.pause(1)
    });
    // Complete output, but a node was dropped: exit 1.
    assert_eq!(job.code, 1, "exit {}: {}", job.code, job.stderr);
    // A chunk running when the node froze hears nothing more; one whose
    // channel was being opened (its 0.3 s chunk had just ended: the pause
    // takes two docker CLI round trips) gets no channel. Either times out.
    assert!(
        job.stderr.contains("no word from the node")
            || job.stderr.contains("no channel opened in time"),
        "the chunk timed out: {}",
        job.stderr
    );
    // The same job takes a few seconds: a hang would show here.
    assert!(took < Duration::from_secs(60), "took {took:?}");
    // Thawed, node2 finds its connections gone: its agents stop their commands.
    cluster.unpause(1);
    cluster.assert_settled(&[0, 1, 2]);
}

#[test]
fn full_workdir_fails_that_node_and_loses_nothing() {
    // node3's workdir is a 512 KiB tmpfs: too small for the agent.
    let Some(cluster) = DockerCluster::start_with("full-disk", 3, |i| {
        if i == 2 {
            vec![
                "--tmpfs".into(),
                "/home/distctl/.distctl:exec,size=512k,uid=1000,gid=1000,mode=0755".into(),
            ]
        } else {
            Vec::new()
        }
    }) else {
        return;
    };
    let (code, out, err) = setup(&cluster);
    assert_eq!(code, 4, "a push failed: exit 4; {out}{err}");
    let all = format!("{out}{err}");
    // The table cuts long reasons at its width; the line below it has it whole.
    let line = all
        .lines()
        .find(|l| l.starts_with("distctl: node3"))
        .unwrap_or_else(|| panic!("no line for node3: {all}"));
    assert!(line.contains("failed"), "node3's push failed: {all}");
    assert!(
        line.contains("cannot write") && line.contains("No space left on device"),
        "node3's error says why: {all}"
    );
    for n in ["node1", "node2"] {
        assert!(
            all.lines()
                .any(|l| l.starts_with(n) && l.contains("pushed")),
            "{n} pushed: {all}"
        );
    }

    // Enough chunks that node3 has joined before they run out: a node that
    // joins with none left is never asked to run one, and never fails.
    let input = cluster.dir.path().join("input.txt");
    write_text(&input, 8 << 20);
    let want = local_op(&["upper"], &input);
    let job = run_job(
        &cluster,
        &input,
        &[
            "--json",
            "--op",
            "upper",
            "--chunk-size",
            "64K",
            "--compress",
            "zstd",
        ],
        Duration::from_secs(120),
    );
    eprintln!("distctl run: {}\n{}", job.summary, job.stderr);
    job.assert_output(&want, "run with a full node");
    assert_eq!(
        job.code, 1,
        "node3 was left out: exit 1 (output complete); {}",
        job.stderr
    );
    assert!(
        job.stderr.contains("node3"),
        "the run names the failed node: {}",
        job.stderr
    );
}

#[test]
fn sixteen_containers_run_and_collect() {
    let Some(cluster) = DockerCluster::start("scale", 16) else {
        return;
    };
    let (code, out, err) = setup(&cluster);
    assert_eq!(code, 0, "setup: {out}{err}");
    let input = cluster.dir.path().join("input.txt");
    // Enough chunks (256) to outlast the handshakes of nodes that join
    // late: the first ones in take their next chunk as soon as the last
    // one is sent, and 64 chunks were once all done by 7 of the 16.
    write_text(&input, 8 << 20);
    let want = local_op(&["upper"], &input);
    let job = run_job(
        &cluster,
        &input,
        &["--json", "--op", "upper", "--chunk-size", "32K"],
        Duration::from_secs(180),
    );
    job.assert_ok(&want, "run on 16 nodes");
    let busy = (1..=16)
        .filter(|i| job.node(&format!("node{i}")).0 > 0)
        .count();
    assert!(busy >= 8, "work spread over the nodes: {}", job.summary);
    let (code, rows) = collect_rows(&cluster, &[]);
    assert_eq!(code, 0, "{rows:?}");
    assert_eq!(rows.len(), 16);
    assert!(rows.iter().all(|r| r["status"] == "ok"), "{rows:?}");
}

/// node2 and node3 named by their container names, which only the Docker
/// network's DNS resolves: the host cannot reach them, node1 can. The
/// inventory alone (`jump = "node1"`, strict host keys, no ~/.ssh/config)
/// must get there, and a dead jump host is named as the cause.
#[test]
fn nodes_reached_only_through_a_jump_host_from_the_inventory_alone() {
    let Some(cluster) = DockerCluster::start("jump", 3) else {
        return;
    };
    if cluster.network.is_none() {
        eprintln!("SKIPPED: host networking gives no names to hide behind a jump host");
        return;
    }
    // Through node1, the others are `<container>` on port 22: known under that name.
    let mut known = fs::read_to_string(cluster.known_hosts()).unwrap();
    for i in 1..3 {
        known.push_str(&format!(
            "{} {}\n",
            cluster.container(i),
            cluster.host_key(i)
        ));
    }
    fs::write(cluster.known_hosts(), known).unwrap();
    let mut inventory = fs::read_to_string(cluster.inventory()).unwrap();
    for n in &cluster.nodes[1..] {
        inventory = inventory.replacen(
            &format!(
                "name = {:?}\nhost = {:?}\nport = {}\n",
                n.name, n.host, n.port
            ),
            &format!(
                "name = {:?}\nhost = {:?}\nport = 22\njump = \"{}\"\n",
                n.name, n.container, cluster.nodes[0].name
            ),
            1,
        );
    }
    fs::write(cluster.inventory(), inventory).unwrap();
    let home = tempfile::tempdir().unwrap();
    let exec = || {
        let mut c = cluster.distctl();
        c.env("HOME", home.path())
            .args(["exec", "--nodes", "node[2-3]", "--", "echo", "behind"]);
        run_bounded(&mut c, Duration::from_secs(60))
    };
    let out = exec();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mut lines: Vec<String> = text(&out.stdout).lines().map(String::from).collect();
    lines.sort();
    assert_eq!(lines, ["node2: behind", "node3: behind"]);

    cluster.kill(0);
    let out = exec();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    // One line for both: failures with the same reason fold into one node set.
    assert!(
        err.lines()
            .any(|l| l.starts_with("distctl: node[2-3]: unreachable: jump host node1: ")),
        "{err}"
    );
}
