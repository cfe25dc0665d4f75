//! `cargo bench --bench latency`: `distctl run` against distant nodes.
//! Three sshd nodes on loopback, each reached through a relay that holds
//! every byte for `LATENCY_BENCH_DELAYS` milliseconds each way (default
//! `0,10,50`: no delay, a 20 ms and a 100 ms round trip), under a host name
//! that is not this machine's. The relay is a few lines of python3 run as
//! the `ProxyCommand`: this kernel has no `netem`, and the relay's own cost
//! shows in the 0 ms rows.
//!
//! On generated word text (`LATENCY_BENCH_SIZE`, default 256M): `distctl
//! run --op upper --persist 10m --compress none` (`auto` would compress for
//! these nodes now and then: the relay holds their bytes back as a slow
//! link would) with its default chunks, with `--chunk-size 4M` (two
//! channel windows) and with `--chunk-size 1M` (half of one) (warm: the
//! masters are up before the timed runs), the
//! default chunks again with `slots = 1` in the inventory (no slots widened
//! for the round trip), `run --exec 'tr a-z A-Z'` (the command parallel
//! runs; slots = the nodes' cores), and GNU parallel `--pipepart --block 4M -j1
//! --keep-order 'tr a-z A-Z'` through the same relays with its master
//! connections open.
//! `LATENCY_BENCH_BASELINE=/path/to/distctl` adds the distctl rows of
//! another build; `LATENCY_BENCH_REPEAT` (default 3) runs every tool that
//! many times, interleaved, and the table shows the median. Each chunk
//! boundary costs a node round trips (the next chunk's channel and command,
//! the last one's End frame), which is what this bench shows.

// Only the word text of the shared inputs is used here.
#[allow(dead_code)]
#[path = "common/inputs.rs"]
mod inputs;
#[path = "../tests/support/mod.rs"]
mod support;

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use support::TestCluster;

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let size = inputs_size();
    let delays: Vec<u32> = std::env::var("LATENCY_BENCH_DELAYS")
        .unwrap_or_else(|_| "0,10,50".into())
        .split(',')
        .map(|d| {
            d.trim()
                .parse()
                .expect("LATENCY_BENCH_DELAYS: milliseconds")
        })
        .collect();
    let repeat: usize = std::env::var("LATENCY_BENCH_REPEAT")
        .ok()
        .map_or(3, |v| v.parse().expect("LATENCY_BENCH_REPEAT: a count"));
    let baseline = std::env::var_os("LATENCY_BENCH_BASELINE");
    for tool in ["python3", "parallel"] {
        if Command::new(tool).arg("--version").output().is_err() {
            eprintln!("latency bench: {tool} is missing (scripts/install-deps installs it)");
            return;
        }
    }
    let cluster = TestCluster::start(3);
    let dir = cluster.dir.path();
    let relay = dir.join("delay-relay.py");
    let input = dir.join("input.txt");
    inputs::make_input(&input, size);
    let out = dir.join("out.txt");
    let mut builds = vec![("distctl".to_string(), support::distctl_bin())];
    if let Some(b) = baseline {
        builds.push(("baseline distctl".to_string(), b.into()));
    }
    // (delay, tool) -> wall times
    let mut rows: Vec<(u32, String, Vec<f64>)> = Vec::new();
    let mut add = |delay: u32, tool: String, wall: f64| {
        eprintln!("{} ms each way, {tool}: {wall:.2}s", delay);
        match rows.iter_mut().find(|r| r.0 == delay && r.1 == tool) {
            Some(r) => r.2.push(wall),
            None => rows.push((delay, tool, vec![wall])),
        }
    };
    for &delay in &delays {
        let proxy = format!(
            "ProxyCommand=python3 {} 127.0.0.1 %p {delay}",
            relay.display()
        );
        // Every node `delay` away, its host not this machine's; and the
        // same with `slots = 1`, as every node ran before its round trip
        // widened its slots.
        cluster.write_inventory("");
        cluster.delay_nodes(&[(1, delay), (2, delay), (3, delay)]);
        let text = std::fs::read_to_string(cluster.inventory()).unwrap();
        let inventory = dir.join(format!("inventory-{delay}.toml"));
        std::fs::write(&inventory, &text).unwrap();
        let one_slot = dir.join(format!("inventory-{delay}-one-slot.toml"));
        std::fs::write(&one_slot, text.replace("\nhost = ", "\nslots = 1\nhost = ")).unwrap();
        let config = ssh_config(&cluster, dir, &proxy, delay);
        let distctl = |bin: &Path, job: &[&str], chunks: Option<&str>, inventory: &Path| {
            let mut c = Command::new(bin);
            c.arg("--inventory")
                .arg(inventory)
                .args(["run", "--quiet"])
                .args(job)
                .args(["--persist", "10m"])
                .args(["--compress", "none"])
                .args(chunks.map(|c| ["--chunk-size", c]).iter().flatten())
                .arg("-o")
                .arg(&out)
                .arg(&input);
            c
        };
        // The masters up before the timed runs, as parallel's are (and the
        // nodes' cores known, as after any earlier run).
        for (_, bin) in &builds {
            for job in [UPPER, EXEC_TR] {
                assert!(
                    timed(distctl(bin, job, None, &inventory), None).1,
                    "distctl warm-up failed"
                );
            }
        }
        for n in 1..=3 {
            let st = Command::new("ssh")
                .args(["-F"])
                .arg(&config)
                .args([format!("node{n}"), "true".into()])
                .status()
                .unwrap();
            assert!(st.success(), "ssh to node{n} through the relay");
        }
        // One timed run of `tool`, its whole output checked.
        let mut measure = |cmd: Command, to: Option<&Path>, tool: String| {
            let (wall, ok) = timed(cmd, to);
            assert!(ok, "{tool} failed");
            assert_eq!(std::fs::metadata(&out).unwrap().len(), size);
            add(delay, tool, wall);
        };
        for _ in 0..repeat {
            for (name, bin) in &builds {
                for chunks in [None, Some("4M"), Some("1M")] {
                    let tool = match chunks {
                        None => format!("{name} run --op upper (default chunks)"),
                        Some(c) => format!("{name} run --op upper --chunk-size {c}"),
                    };
                    measure(distctl(bin, UPPER, chunks, &inventory), None, tool);
                }
                let tool = format!("{name} run --exec 'tr a-z A-Z' (default chunks)");
                measure(distctl(bin, EXEC_TR, None, &inventory), None, tool);
            }
            // The same masters: `slots = 1` changes nothing of the connection.
            measure(
                distctl(&builds[0].1, UPPER, None, &one_slot),
                None,
                "distctl, slots = 1 in the inventory (default chunks)".into(),
            );
            let mut c = Command::new("parallel");
            c.args(["--will-cite", "--ssh"])
                .arg(format!("ssh -F {}", config.display()))
                .args([
                    "-S",
                    "node1,node2,node3",
                    "-j1",
                    "--pipepart",
                    "--block",
                    "4M",
                ])
                .args(["--keep-order", "-a"])
                .arg(&input)
                .arg("tr a-z A-Z");
            measure(
                c,
                Some(&out),
                "GNU parallel --pipepart --block 4M -j1 (warm)".into(),
            );
        }
        for (_, bin) in &builds {
            let _ = Command::new(bin)
                .arg("--inventory")
                .arg(&inventory)
                .args(["disconnect", "--quiet"])
                .status();
        }
        for n in 1..=3 {
            let _ = Command::new("ssh")
                .args(["-F"])
                .arg(&config)
                .args(["-O", "exit", &format!("node{n}")])
                .stderr(Stdio::null())
                .status();
        }
    }
    println!();
    println!(
        "{} of word text, 3 loopback nodes behind a delaying relay, medians of {repeat}",
        distctl::units::human_bytes(size)
    );
    println!();
    println!("| round trip added | tool | wall s | × parallel |");
    println!("|---:|---|---:|---:|");
    for (delay, tool, walls) in &rows {
        let med = median(walls);
        let par = rows
            .iter()
            .find(|r| r.0 == *delay && r.1.starts_with("GNU parallel"))
            .map(|r| median(&r.2));
        let each: Vec<String> = walls.iter().map(|w| format!("{w:.2}")).collect();
        println!(
            "| {} ms | {tool} | {med:.2} ({}) | {} |",
            2 * delay,
            each.join(" "),
            par.map_or("-".into(), |p| format!("{:.2}", p / med))
        );
    }
}

/// The built-in op, and the command GNU parallel runs, as distctl runs it.
const UPPER: &[&str] = &["--op", "upper"];
const EXEC_TR: &[&str] = &["--exec", "tr a-z A-Z"];

fn inputs_size() -> u64 {
    let s = std::env::var("LATENCY_BENCH_SIZE").unwrap_or_else(|_| "256M".into());
    distctl::units::parse_size(&s).expect("LATENCY_BENCH_SIZE: a size like 256M")
}

/// Run `cmd` (its stdout into `out` when given); wall seconds and success.
fn timed(mut cmd: Command, out: Option<&Path>) -> (f64, bool) {
    match out {
        Some(p) => cmd.stdout(std::fs::File::create(p).unwrap()),
        None => cmd.stdout(Stdio::null()),
    };
    cmd.stdin(Stdio::null());
    // SAFETY: sync(2) takes no arguments.
    unsafe { libc::sync() };
    let t0 = Instant::now();
    let ok = cmd.status().is_ok_and(|s| s.success());
    (t0.elapsed().as_secs_f64(), ok)
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s[s.len() / 2]
}

/// An ssh config naming the nodes node1..3 through the relay, masters kept.
fn ssh_config(cluster: &TestCluster, dir: &Path, proxy: &str, delay: u32) -> std::path::PathBuf {
    let mut s = String::new();
    for i in 0..cluster.nodes.len() {
        s.push_str(&cluster.ssh_host_block(i));
        let _ = writeln!(
            s,
            "  {}\n  ControlMaster auto\n  ControlPath {}/cm-{delay}-%n\n  ControlPersist 300",
            proxy.replacen('=', " ", 1),
            dir.display(),
        );
    }
    let path = dir.join(format!("ssh-{delay}.conf"));
    std::fs::write(&path, s).unwrap();
    path
}
