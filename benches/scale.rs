//! `cargo bench --bench scale`: distctl at fleet size on K real sshd nodes
//! (loopback), beside the floor and the usual tools, all running `true`:
//!
//! - cold `status`, cold `exec -- true`, warm `exec -- true` (`--persist`:
//!   the masters of the previous run are reused), `setup`, and a cold
//!   `run --op upper` of 100 MiB of word text split over every node;
//! - the floor: K plain `ssh node true` started in parallel;
//! - `pdsh -R ssh` and `clush` (skipped when not installed), through one
//!   generated ssh config naming every node.
//!
//! `SCALE_BENCH_K=16,64,96` (default) picks the sizes; `SCALE_BENCH_MAX_SECS`
//! (default 600) stops before a size that would start past that budget.
//! `SCALE_BENCH_BASELINE=/path/to/distctl` adds a column: the same `run` by
//! another distctl build, its runs interleaved with this build's.
//! Medians of 3 runs; "lost" counts runs in which some node did not answer.
//! Do not run it at 96 on a machine others are using.

#[path = "common/inputs.rs"]
#[allow(dead_code)] // only the word text is used here
mod inputs;
#[path = "../tests/support/mod.rs"]
mod support;

use std::fmt::Write as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::TestCluster;

const RUNS: usize = 3;

/// Median wall time of `f` over RUNS runs, and how many runs failed.
fn measure(mut f: impl FnMut() -> bool) -> (Duration, usize) {
    let mut walls = Vec::new();
    let mut lost = 0;
    for _ in 0..RUNS {
        let t0 = Instant::now();
        if !f() {
            lost += 1;
        }
        walls.push(t0.elapsed());
    }
    walls.sort();
    (walls[RUNS / 2], lost)
}

/// [`measure`] for two commands at once, their runs interleaved (A B A B
/// ...), so that a drift in the machine's speed hits both alike.
fn measure_pair(
    mut a: impl FnMut() -> bool,
    mut b: impl FnMut() -> bool,
) -> ((Duration, usize), (Duration, usize)) {
    let mut walls = (Vec::new(), Vec::new());
    let mut lost = (0, 0);
    for _ in 0..RUNS {
        for (f, w, l) in [
            (
                &mut a as &mut dyn FnMut() -> bool,
                &mut walls.0,
                &mut lost.0,
            ),
            (&mut b, &mut walls.1, &mut lost.1),
        ] {
            let t0 = Instant::now();
            if !f() {
                *l += 1;
            }
            w.push(t0.elapsed());
        }
    }
    walls.0.sort();
    walls.1.sort();
    ((walls.0[RUNS / 2], lost.0), (walls.1[RUNS / 2], lost.1))
}

fn quiet(mut c: Command) -> bool {
    c.stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn on_path(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// One ssh config with a `Host nodeN` block per node, for pdsh and clush.
fn ssh_config(cluster: &TestCluster) -> std::path::PathBuf {
    let mut s = String::new();
    for (i, node) in cluster.nodes.iter().enumerate() {
        let _ = write!(
            s,
            "Host {}\n HostName 127.0.0.1\n Port {}\n IdentityFile {}\n IdentitiesOnly yes\n UserKnownHostsFile {}\n StrictHostKeyChecking yes\n BatchMode yes\n",
            node.name,
            cluster.port(i),
            cluster.client_key.display(),
            cluster.known_hosts.display()
        );
    }
    let path = cluster.dir.path().join("bench_ssh_config");
    std::fs::write(&path, s).unwrap();
    path
}

fn main() {
    let ks: Vec<usize> = std::env::var("SCALE_BENCH_K")
        .ok()
        .map(|s| s.split(',').filter_map(|k| k.parse().ok()).collect())
        .unwrap_or_else(|| vec![16, 64, 96]);
    let budget = Duration::from_secs(
        std::env::var("SCALE_BENCH_MAX_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(600),
    );
    let started = Instant::now();
    let runtime = tempfile::Builder::new()
        .prefix("r")
        .tempdir_in("/tmp")
        .unwrap();
    println!("distctl at scale, `true` on every node (median of {RUNS} runs; lost = runs where a node failed)");
    println!();
    let input = runtime.path().join("input.txt");
    inputs::make_input(&input, 100 << 20);
    let output = runtime.path().join("output.txt");
    let baseline = std::env::var_os("SCALE_BENCH_BASELINE").map(std::path::PathBuf::from);
    let (extra, rule) = match &baseline {
        Some(_) => (" run 100 MiB (baseline) |", "---:|"),
        None => ("", ""),
    };
    println!("| nodes | status cold | exec cold | exec warm | setup | run 100 MiB |{extra} ssh ×K floor | pdsh | clush | lost |");
    println!("|---:|---:|---:|---:|---:|---:|{rule}---:|---:|---:|---:|");
    for k in ks {
        if started.elapsed() > budget {
            println!("| {k} | (skipped: past the {}s budget) |", budget.as_secs());
            continue;
        }
        let cluster = TestCluster::start(k);
        let distctl = |args: &[&str]| {
            let mut c = cluster.distctl();
            c.env("XDG_RUNTIME_DIR", runtime.path()).args(args);
            quiet(c)
        };
        let mut lost = 0;
        let mut cell = |(d, l): (Duration, usize)| {
            lost += l;
            format!("{:.2} s", d.as_secs_f64())
        };
        let status = cell(measure(|| distctl(&["status", "-q"])));
        let cold = cell(measure(|| distctl(&["exec", "-q", "true"])));
        distctl(&["--persist", "5m", "exec", "-q", "true"]);
        let warm = cell(measure(|| {
            distctl(&["--persist", "5m", "exec", "-q", "true"])
        }));
        distctl(&["disconnect", "-q"]);
        let setup = cell(measure(|| distctl(&["setup", "-q"])));
        let (input, output) = (input.to_str().unwrap(), output.to_str().unwrap());
        let run_args = ["run", "-q", input, "--op", "upper", "-o", output];
        let (run, base) = match &baseline {
            Some(bin) => {
                let (run, base) = measure_pair(
                    || distctl(&run_args),
                    || {
                        let mut c = Command::new(bin);
                        c.arg("--inventory")
                            .arg(cluster.inventory())
                            .env("XDG_STATE_HOME", cluster.dir.path().join("state"))
                            .env("XDG_RUNTIME_DIR", runtime.path())
                            .stdin(Stdio::null())
                            .args(run_args);
                        quiet(c)
                    },
                );
                (cell(run), format!(" {} |", cell(base)))
            }
            None => (cell(measure(|| distctl(&run_args))), String::new()),
        };
        let floor = cell(measure(|| {
            let children: Vec<_> = (0..k)
                .map(|i| {
                    cluster
                        .ssh(i)
                        .arg("true")
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .spawn()
                        .unwrap()
                })
                .collect();
            // Wait for every child before judging any.
            let ok: Vec<bool> = children
                .into_iter()
                .map(|mut c| c.wait().is_ok_and(|s| s.success()))
                .collect();
            ok.iter().all(|b| *b)
        }));
        let config = ssh_config(&cluster);
        let set = format!("node[1-{k}]");
        let pdsh = if on_path("pdsh") {
            cell(measure(|| {
                let mut c = Command::new("pdsh");
                c.env("PDSH_SSH_ARGS", format!("-F {} %h", config.display()))
                    .args(["-R", "ssh", "-f", &k.to_string(), "-w", &set, "true"]);
                quiet(c)
            }))
        } else {
            "not installed".into()
        };
        let clush = if on_path("clush") {
            cell(measure(|| {
                let mut c = Command::new("clush");
                c.args(["-o", &format!("-F {}", config.display())]).args([
                    "-f",
                    &k.to_string(),
                    "-w",
                    &set,
                    "true",
                ]);
                quiet(c)
            }))
        } else {
            "not installed".into()
        };
        println!(
            "| {k} | {status} | {cold} | {warm} | {setup} | {run} |{base} {floor} | {pdsh} | {clush} | {lost} |"
        );
    }
}
