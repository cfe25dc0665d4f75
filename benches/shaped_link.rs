//! `cargo bench --bench shaped_link`: `distctl run` over a slow link. Starts
//! `docker/cluster up 3` (3 containers on a private bridge), then limits the
//! controller's link to them both ways as one shared link with `tc`: a `tbf`
//! on the bridge (traffic to the containers) and, through an `ifb` device
//! fed by an ingress `mirred` redirect, a `tbf` on what comes back. Every
//! shaping is removed afterwards (and on a panic), the cluster too.
//!
//! At each rate (`SHAPED_BENCH_RATES`, default `400mbit,100mbit`) and on
//! each input (`SHAPED_BENCH_INPUTS=words,log`, `SHAPED_BENCH_SIZE`, default
//! 100M; the figures are for 1G): `distctl run --op upper` with
//! each `--compress` setting of `SHAPED_BENCH_COMPRESS` (default
//! `auto,none`), GNU parallel `--pipepart` with its own defaults and with
//! `ssh -C`, and the raw wire: `ssh node cat` up and back,
//! a third per node, plain and with `-C` (`SHAPED_BENCH_TOOLS`, default
//! `distctl,parallel,parallel-C,raw,raw-C`, picks among them). Reports wall time, the ratios to
//! parallel and to the raw wire, the bytes that crossed the bridge, and CPU
//! seconds per GiB of distctl, of every other local process (ssh, parallel,
//! perl), and of the containers (their cgroups' `cpu.stat`).
//!
//! Needs root (tc, ip), the Docker engine, GNU parallel; says what is missing
//! and measures nothing without them, or when the cluster fell back to host
//! networking (no bridge to shape).

#[path = "common/docker.rs"]
mod docker;
#[path = "common/inputs.rs"]
mod inputs;
#[path = "common/reap.rs"]
mod reap;
#[path = "../tests/support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use docker::{docker_cluster, raw_ssh, split_parts, Bench};

const GIB: f64 = (1u64 << 30) as f64;

fn sh(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", cmd])
        .stdin(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The shaping on one bridge; removed on drop.
struct Shaper {
    bridge: String,
    ifb: String,
}

impl Shaper {
    fn apply(bridge: &str, rate: &str) -> Shaper {
        let ifb = format!("ifb{}", std::process::id() % 10_000);
        let s = Shaper {
            bridge: bridge.to_string(),
            ifb: ifb.clone(),
        };
        let tbf = format!("tbf rate {rate} burst 512kb latency 100ms");
        for cmd in [
            format!("tc qdisc replace dev {bridge} root {tbf}"),
            format!("ip link add {ifb} type ifb && ip link set {ifb} up"),
            format!("tc qdisc add dev {bridge} handle ffff: ingress"),
            format!("tc filter add dev {bridge} parent ffff: protocol all u32 match u32 0 0 action mirred egress redirect dev {ifb}"),
            format!("tc qdisc replace dev {ifb} root {tbf}"),
        ] {
            assert!(sh(&cmd), "shaping failed: {cmd}");
        }
        s
    }
}

impl Drop for Shaper {
    fn drop(&mut self) {
        let (br, ifb) = (&self.bridge, &self.ifb);
        sh(&format!("tc qdisc del dev {br} root 2>/dev/null"));
        sh(&format!("tc qdisc del dev {br} ingress 2>/dev/null"));
        sh(&format!("ip link del {ifb} 2>/dev/null"));
    }
}

/// The interface holding `<net>.1`, the controller's side of the bridge.
fn bridge_of(node_ip: &str) -> Option<String> {
    let net = node_ip.rsplit_once('.')?.0;
    let out = Command::new("ip")
        .args(["-o", "-4", "addr", "show"])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout).lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        let addr = f.get(3)?;
        (addr.split('/').next()? == format!("{net}.1")).then(|| f.get(1).unwrap().to_string())
    })
}

fn bridge_bytes(bridge: &str) -> u64 {
    ["tx_bytes", "rx_bytes"]
        .iter()
        .map(|f| {
            std::fs::read_to_string(format!("/sys/class/net/{bridge}/statistics/{f}"))
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(0)
        })
        .sum()
}

/// CPU seconds of the cluster's containers so far (cgroup v2 `cpu.stat`, or
/// v1 `cpuacct.usage`).
fn containers_cpu(cluster: &str) -> f64 {
    let out = Command::new("docker")
        .args(["ps", "-q", "--no-trunc", "--filter"])
        .arg(format!("label=io.distctl.cluster={cluster}"))
        .output();
    let ids = out
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    ids.lines()
        .map(|id| {
            for p in [
                format!("/sys/fs/cgroup/system.slice/docker-{id}.scope/cpu.stat"),
                format!("/sys/fs/cgroup/docker/{id}/cpu.stat"),
            ] {
                if let Ok(s) = std::fs::read_to_string(&p) {
                    if let Some(us) = s
                        .lines()
                        .find_map(|l| l.strip_prefix("usage_usec "))
                        .and_then(|v| v.trim().parse::<f64>().ok())
                    {
                        return us / 1e6;
                    }
                }
            }
            // cgroup v1 (the cgroupfs driver): cpuacct.usage in nanoseconds.
            for p in [
                format!("/sys/fs/cgroup/cpuacct/docker/{id}/cpuacct.usage"),
                format!("/sys/fs/cgroup/cpu,cpuacct/docker/{id}/cpuacct.usage"),
            ] {
                if let Some(ns) = std::fs::read_to_string(&p)
                    .ok()
                    .and_then(|v| v.trim().parse::<f64>().ok())
                {
                    return ns / 1e9;
                }
            }
            0.0
        })
        .sum()
}

fn children_cpu() -> f64 {
    // SAFETY: getrusage fills a plain struct.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn reap_orphans() {
    // SAFETY: non-blocking waitpid on any child.
    while unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) } > 0 {}
}

struct Row {
    rate: String,
    input: &'static str,
    tool: String,
    wall: f64,
    wire: u64,
    distctl_cpu: Option<f64>,
    local_cpu: f64,
    node_cpu: f64,
}

/// Time `f` (which runs one job), with the bytes on the bridge and the CPU
/// of every side around it. `f` returns distctl's own CPU seconds, if it is
/// a distctl job.
fn measure(
    bridge: &str,
    cluster: &str,
    out: &Path,
    f: impl FnOnce() -> Option<f64>,
) -> (f64, u64, Option<f64>, f64, f64) {
    // Every tool starts with no previous output to free: distctl would free
    // it when renaming its result over it, the others when their output is
    // truncated (0.6 s for 1 GiB on a disk mounted with `discard`).
    let _ = std::fs::remove_file(out);
    // The previous run's output still being written back to disk would land
    // on this one's time and CPU.
    // SAFETY: sync(2) takes no arguments.
    unsafe { libc::sync() };
    let (b0, c0, n0) = (
        bridge_bytes(bridge),
        children_cpu(),
        containers_cpu(cluster),
    );
    let t = Instant::now();
    let own = f();
    let wall = t.elapsed().as_secs_f64();
    std::thread::sleep(std::time::Duration::from_millis(300));
    reap_orphans();
    let local = children_cpu() - c0 - own.unwrap_or(0.0);
    (
        wall,
        bridge_bytes(bridge) - b0,
        own,
        local.max(0.0),
        containers_cpu(cluster) - n0,
    )
}

fn distctl(b: &Bench, input: &Path, out: &Path, compress: &str) -> Option<f64> {
    let child = Command::new(support::distctl_bin())
        .arg("--inventory")
        .arg(&b.inventory)
        .args(["--quiet", "run"])
        .arg(input)
        .args(["--op", "upper", "--compress", compress, "-o"])
        .arg(out)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let reaped = reap::wait_reaped(child);
    assert!(
        libc::WIFEXITED(reaped.status) && libc::WEXITSTATUS(reaped.status) == 0,
        "distctl run failed"
    );
    Some(reaped.own_cpu)
}

/// An ssh config naming the containers node1..3, for GNU parallel.
fn ssh_config(b: &Bench, dir: &Path) -> PathBuf {
    let mut s = String::new();
    for (i, n) in b.nodes.iter().enumerate() {
        s.push_str(&format!(
            "Host node{}\n  HostName {}\n  Port {}\n  User {}\n  IdentityFile {}\n  IdentitiesOnly yes\n  UserKnownHostsFile {}\n  StrictHostKeyChecking yes\n  BatchMode yes\n",
            i + 1,
            n.host,
            n.port,
            n.user,
            b.key.display(),
            b.known_hosts.display()
        ));
    }
    let p = dir.join("ssh_config");
    std::fs::write(&p, s).unwrap();
    p
}

fn parallel(cfg: &Path, input: &Path, out: &Path, ssh_extra: &str) -> Option<f64> {
    let st = Command::new("parallel")
        .args(["--will-cite", "--ssh"])
        .arg(format!("ssh {ssh_extra} -F {}", cfg.display()))
        .args([
            "-S",
            "node1,node2,node3",
            "--pipepart",
            "--keep-order",
            "-a",
        ])
        .arg(input)
        .arg("tr a-z A-Z")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(out).unwrap())
        .status()
        .unwrap();
    assert!(st.success(), "parallel failed");
    None
}

fn main() {
    // SAFETY: prctl with constant arguments: orphaned ssh masters come to us.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    let missing: Vec<&str> = [
        ("docker", "docker info"),
        ("tc", "tc qdisc show >/dev/null"),
        ("ip", "ip link show >/dev/null"),
        ("parallel", "parallel --version >/dev/null"),
    ]
    .into_iter()
    .filter(|(_, probe)| !sh(&format!("{probe} >/dev/null 2>&1")))
    .map(|(n, _)| n)
    .collect();
    if !missing.is_empty() {
        eprintln!(
            "shaped_link bench: not available here: {}; nothing measured",
            missing.join(", ")
        );
        return;
    }
    let list = |var: &str, default: &str| -> Vec<String> {
        std::env::var(var)
            .unwrap_or_else(|_| default.into())
            .split(',')
            .map(str::to_string)
            .collect()
    };
    let rates = list("SHAPED_BENCH_RATES", "400mbit,100mbit");
    let kinds = list("SHAPED_BENCH_INPUTS", "words,log");
    let compress = list("SHAPED_BENCH_COMPRESS", "auto,none");
    let tools = list(
        "SHAPED_BENCH_TOOLS",
        "distctl,parallel,parallel-C,raw,raw-C",
    );
    let wanted = |t: &str| tools.iter().any(|w| w == t);
    let size = distctl::units::parse_size(
        &std::env::var("SHAPED_BENCH_SIZE").unwrap_or_else(|_| "100M".into()),
    )
    .expect("SHAPED_BENCH_SIZE like 100M or 1G");
    let work = tempfile::Builder::new()
        .prefix("dctl-shaped")
        .tempdir_in("/var/tmp")
        .unwrap();
    let (up, b) = docker_cluster();
    let Some(bridge) = bridge_of(&b.nodes[0].host) else {
        eprintln!(
            "shaped_link bench: the cluster runs on host networking ({}): no bridge to shape; nothing measured",
            b.nodes[0].host
        );
        return;
    };
    let st = Command::new(support::distctl_bin())
        .arg("--inventory")
        .arg(&b.inventory)
        .args(["setup", "--quiet"])
        .stdin(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "distctl setup failed");
    let cfg = ssh_config(&b, work.path());
    let out = work.path().join("out.txt");
    let mut rows = Vec::new();
    for kind in &kinds {
        let input = work.path().join("input.txt");
        let label: &'static str = match kind.as_str() {
            "words" => {
                inputs::make_input(&input, size);
                "word text"
            }
            "log" => {
                inputs::make_access_log(&input, size);
                "access log"
            }
            other => panic!("SHAPED_BENCH_INPUTS: unknown input {other:?} (words, log)"),
        };
        let parts = split_parts(&input, work.path(), 3);
        for rate in &rates {
            let _shaped = Shaper::apply(&bridge, rate);
            let mut add = |tool: &str, m: (f64, u64, Option<f64>, f64, f64)| {
                eprintln!("{rate} {label} {tool}: {:.2}s", m.0);
                rows.push(Row {
                    rate: rate.clone(),
                    input: label,
                    tool: tool.to_string(),
                    wall: m.0,
                    wire: m.1,
                    distctl_cpu: m.2,
                    local_cpu: m.3,
                    node_cpu: m.4,
                });
            };
            for c in compress.iter().filter(|_| wanted("distctl")) {
                let m = measure(&bridge, &up.name, &out, || distctl(&b, &input, &out, c));
                add(&format!("distctl run --op upper --compress {c}"), m);
            }
            if wanted("parallel") {
                let m = measure(&bridge, &up.name, &out, || parallel(&cfg, &input, &out, ""));
                add("GNU parallel --pipepart (its defaults)", m);
            }
            if wanted("parallel-C") {
                let m = measure(&bridge, &up.name, &out, || {
                    parallel(&cfg, &input, &out, "-C")
                });
                add("GNU parallel --pipepart, ssh -C", m);
            }
            if wanted("raw") {
                let m = measure(&bridge, &up.name, &out, || {
                    raw_ssh(&b, &parts, &[]);
                    None
                });
                add("raw: ssh node cat, up and back", m);
            }
            if wanted("raw-C") {
                let m = measure(&bridge, &up.name, &out, || {
                    raw_ssh(&b, &parts, &["-C"]);
                    None
                });
                add("raw: ssh -C node cat, up and back", m);
            }
        }
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "\n{} per input, load average {}\n",
        distctl::units::human_bytes(size),
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!("| link | input | tool | wall s | × parallel | × raw wire | MB on the wire | CPU s/GiB distctl | CPU s/GiB ssh+local | CPU s/GiB nodes |");
    println!("|---|---|---|---:|---:|---:|---:|---:|---:|---:|");
    let gib = size as f64 / GIB;
    for r in &rows {
        let base = |t: &str| {
            rows.iter()
                .find(|o| o.rate == r.rate && o.input == r.input && o.tool == t)
                .map_or("-".to_string(), |o| format!("{:.2}", o.wall / r.wall))
        };
        println!(
            "| {} | {} | {} | {:.2} | {} | {} | {:.1} | {} | {:.2} | {:.2} |",
            r.rate,
            r.input,
            r.tool,
            r.wall,
            base("GNU parallel --pipepart (its defaults)"),
            base("raw: ssh node cat, up and back"),
            r.wire as f64 / 1e6,
            r.distctl_cpu
                .map_or("-".into(), |c| format!("{:.2}", c / gib)),
            r.local_cpu / gib,
            r.node_cpu / gib,
        );
    }
}
