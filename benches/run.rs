//! `cargo bench --bench run`: `distctl run` on 3 real sshd nodes (loopback)
//! against the seed's bash approach, GNU parallel and the raw ssh limit, on
//! generated 100 MiB and 1 GiB inputs (word text, and an Apache combined
//! access log); prints a Markdown table.
//!
//! - seed: `split -l` into one chunk per node, `scp` each chunk, `ssh node
//!   worker.sh` in the background, `wait`, `scp` the results back, `cat`
//!   (with the seed's bugs fixed: ceil division, results in input order).
//! - parallel: `parallel --pipepart --block B -S node1,node2,node3 -j J
//!   --keep-order 'tr a-z A-Z'`, master connections already open (warm),
//!   twice: `--block 16M|64M -j 2`, and tuned as the issue measured it,
//!   `--block -1 -j 1` (one block per job slot). The × parallel column
//!   divides by the faster of the two.
//! - raw: the same bytes through `ssh node cat` up and back (to /dev/null),
//!   one third per node, all three at once: no processing at all. The ×
//!   raw column divides by it. Beside it, the same round trip keeping its
//!   results as a tool that delivers them must: `ssh node cat > file`, one
//!   file per node through the page cache (freed outside the timing), and
//!   the round trip with its results passed through one more pipe to a
//!   process that drops them, `ssh node cat | cat > /dev/null`: the floor
//!   of any tool whose results reach a process of its own before a file.
//!
//! Each tool runs with its own default cipher (OpenSSH's chacha20-poly1305;
//! distctl prefers aes128-gcm) and again all on aes128-gcm. CPU is measured
//! per side from /proc and rusage: distctl itself (its own time, read before
//! it is reaped: the key exchanges of the ssh masters it starts are ssh's), the local ssh/scp
//! clients and helpers (everything else this process started), and the
//! nodes (each sshd listener's process tree: sessions, shells, agents, tr).
//! `RUN_BENCH_SIZES=100M` runs only the small inputs; `RUN_BENCH_INPUTS=log`
//! (or `words`) only one kind; `RUN_BENCH_TOOLS=distctl,parallel` only those
//! tools (of distctl, seed, parallel, raw); `RUN_BENCH_COMPRESS=auto,none`
//! (the default; `-` for no flag) the distctl rows' `--compress` settings;
//! `RUN_BENCH_OPS=upper` (or `exec`) one of distctl's two jobs;
//! `RUN_BENCH_BASELINE=/path/to/distctl` adds rows of another distctl build
//! (its own defaults), interleaved with this one's. `RUN_BENCH_REPEAT=N`
//! runs every tool N times (interleaved rounds) and prints each tool's
//! median run with all its wall times. `RUN_BENCH_WARM=1` adds a distctl
//! row whose ssh masters are already up (`--persist 10m`, opened by a
//! `setup` outside the timing), as parallel's are. `RUN_BENCH_DIR` (default `/var/tmp`)
//! is where the inputs and outputs go (`/dev/shm`: no disk in the figures).

#[path = "common/inputs.rs"]
mod inputs;
#[path = "common/reap.rs"]
mod reap;
#[path = "../tests/support/mod.rs"]
mod support;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use support::TestCluster;

const MIB: u64 = 1 << 20;

struct Measure {
    wall: f64,
    /// CPU seconds of the distctl process (distctl rows only).
    distctl_cpu: Option<f64>,
    /// Peak RSS of distctl in KiB.
    distctl_rss_kib: Option<u64>,
    /// All other local processes (ssh clients and masters, scp, split, perl, shells).
    client_cpu: f64,
    /// sshd, agents, shells and commands on the nodes.
    node_cpu: f64,
    out_bytes: u64,
}

fn ticks() -> f64 {
    // SAFETY: sysconf with a constant.
    unsafe { libc::sysconf(libc::_SC_CLK_TCK) as f64 }
}

/// CPU seconds of `root` and every live descendant, each with its reaped
/// children (utime + stime + cutime + cstime).
fn tree_cpu(root: u32) -> f64 {
    let mut total = 0u64;
    for pid in support::process_tree(root) {
        if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            if let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) {
                let f: Vec<&str> = rest.split(' ').collect();
                // Fields 14-17 of stat; `rest` starts at field 3.
                for i in 11..15 {
                    total += f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
                }
            }
        }
    }
    total as f64 / ticks()
}

fn reap_orphans() {
    loop {
        // SAFETY: non-blocking waitpid on any child.
        let pid = unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) };
        if pid <= 0 {
            break;
        }
    }
}

struct Cpu {
    me: f64,
    nodes: f64,
}

fn cpu_now(cluster: &TestCluster) -> Cpu {
    reap_orphans();
    let nodes: f64 = (0..cluster.nodes.len())
        .map(|i| cluster.node_pids(i).first().map_or(0.0, |&p| tree_cpu(p)))
        .sum();
    Cpu {
        me: tree_cpu(std::process::id()) - nodes,
        nodes,
    }
}

/// Run `cmd` (stdout to `out`, or /dev/null), measuring wall time and CPU.
/// `distctl`: its own CPU (its ssh masters' key exchanges, which it
/// reaps, go to the ssh column) and peak RSS.
fn measure(cluster: &TestCluster, mut cmd: Command, out: Option<&Path>, distctl: bool) -> Measure {
    match out {
        Some(p) => cmd.stdout(std::fs::File::create(p).unwrap()),
        None => cmd.stdout(Stdio::null()),
    };
    cmd.stdin(Stdio::null());
    // The previous run's output still being written back to disk would land
    // on this one's time and CPU.
    // SAFETY: sync(2) takes no arguments.
    unsafe { libc::sync() };
    let before = cpu_now(cluster);
    let t0 = Instant::now();
    let child = cmd.spawn().expect("cannot start the benchmarked command");
    let reaped = reap::wait_reaped(child);
    let wall = t0.elapsed().as_secs_f64();
    let status = reaped.status;
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "benchmarked command failed: {cmd:?}"
    );
    std::thread::sleep(std::time::Duration::from_millis(300));
    let after = cpu_now(cluster);
    let own = reaped.own_cpu;
    let local = after.me - before.me;
    Measure {
        wall,
        distctl_cpu: distctl.then_some(own),
        distctl_rss_kib: distctl.then_some(reaped.max_rss_kib),
        client_cpu: if distctl {
            (local - own).max(0.0)
        } else {
            local
        },
        node_cpu: after.nodes - before.nodes,
        out_bytes: out.map_or(0, |p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)),
    }
}

/// An ssh config naming the nodes node1..3 (for seed, parallel and raw).
fn ssh_config(cluster: &TestCluster, dir: &Path, aes: bool, warm: bool) -> PathBuf {
    let mut s = String::new();
    for i in 0..cluster.nodes.len() {
        s.push_str(&cluster.ssh_host_block(i));
        if aes {
            s.push_str("  Ciphers aes128-gcm@openssh.com\n");
        }
        if warm {
            let _ = writeln!(
                s,
                "  ControlMaster auto\n  ControlPath {}/cm-{}-%n\n  ControlPersist 300",
                dir.display(),
                if aes { "aes" } else { "def" }
            );
        }
    }
    let path = dir.join(format!("ssh-{}-{}.conf", aes as u8, warm as u8));
    std::fs::write(&path, s).unwrap();
    path
}

fn sh(script: &str) -> Command {
    let mut c = Command::new("bash");
    c.args(["-c", script]);
    c
}

const SEED: &str = r#"set -e
cd "$WORK"; rm -f chunk_* result_*
lines=$(wc -l < "$IN")
split -l $(( (lines + 2) / 3 )) -d "$IN" chunk_
for i in 0 1 2; do scp -q -F "$CFG" chunk_0$i "node$((i+1)):$R/node$((i+1))/work/"; done
for i in 0 1 2; do
  D="$R/node$((i+1))/work"
  ssh -F "$CFG" node$((i+1)) "sh $D/worker.sh < $D/chunk_0$i > $D/result_$i" &
done
wait
for i in 0 1 2; do scp -q -F "$CFG" "node$((i+1)):$R/node$((i+1))/work/result_$i" .; done
cat result_0 result_1 result_2
"#;

const RAW: &str = r#"set -e
for i in 1 2 3; do ssh -F "$CFG" node$i cat < "$WORK/part$i" > /dev/null & done
wait
"#;

const RAW_THROUGH_A_PIPE: &str = r#"set -e
for i in 1 2 3; do ssh -F "$CFG" node$i cat < "$WORK/part$i" | cat > /dev/null & done
wait
"#;

const RAW_INTO_FILES: &str = r#"set -e
for i in 1 2 3; do ssh -F "$CFG" node$i cat < "$WORK/part$i" > "$WORK/raw_out$i" & done
wait
"#;

struct Row {
    tool: String,
    cipher: &'static str,
    size: u64,
    kind: &'static str,
    m: Measure,
}

fn main() {
    // SAFETY: prctl with constant arguments: orphaned ssh masters come to us.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    let sizes: Vec<u64> = std::env::var("RUN_BENCH_SIZES")
        .unwrap_or_else(|_| "100M,1G".into())
        .split(',')
        .map(|s| distctl::units::parse_size(s).expect("size like 100M"))
        .collect();
    let cluster = TestCluster::start(3);
    // Inputs and outputs: on disk by default; RUN_BENCH_DIR=/dev/shm keeps
    // the disk (whose write speed varies 0.5-1.5 GB/s on these shared VMs)
    // out of the figures: distctl fsyncs its output before renaming it into
    // place, the other tools leave theirs to the page cache.
    let work_dir = std::env::var("RUN_BENCH_DIR").unwrap_or_else(|_| "/var/tmp".into());
    let work = tempfile::Builder::new()
        .prefix("dctl-bench")
        .tempdir_in(&work_dir)
        .unwrap();
    let w = work.path();
    // The seed's worker on every node; workdirs as absolute prefixes R1..R3.
    for i in 0..3 {
        std::fs::create_dir_all(cluster.workdir(i)).unwrap();
        std::fs::write(cluster.workdir(i).join("worker.sh"), "tr a-z A-Z\n").unwrap();
    }
    // Node workdirs are <cluster dir>/node<i>/work.
    let r_prefix = cluster.dir.path().to_path_buf();
    let cfgs = [
        (
            false,
            ssh_config(&cluster, w, false, false),
            ssh_config(&cluster, w, false, true),
        ),
        (
            true,
            ssh_config(&cluster, w, true, false),
            ssh_config(&cluster, w, true, true),
        ),
    ];
    let distctl = support::distctl_bin();
    // Install the agent once, outside the timings.
    let st = cluster
        .distctl()
        .args(["setup", "--quiet"])
        .status()
        .unwrap();
    assert!(st.success(), "distctl setup failed");

    let kinds: Vec<String> = std::env::var("RUN_BENCH_INPUTS")
        .unwrap_or_else(|_| "words,log".into())
        .split(',')
        .map(str::to_string)
        .collect();
    let list = |var: &str, default: &str| -> Vec<String> {
        std::env::var(var)
            .unwrap_or_else(|_| default.into())
            .split(',')
            .map(str::to_string)
            .collect()
    };
    let tools = list("RUN_BENCH_TOOLS", "distctl,seed,parallel,raw");
    let compress = list("RUN_BENCH_COMPRESS", "auto,none");
    let ops = list("RUN_BENCH_OPS", "upper,exec");
    let baseline = std::env::var_os("RUN_BENCH_BASELINE").map(PathBuf::from);
    // RUN_BENCH_WARM=1: a distctl row with its masters already up
    // (`--persist`), as parallel's warm rows have theirs.
    let warm = std::env::var_os("RUN_BENCH_WARM").is_some_and(|v| v == "1");
    let repeat: usize = std::env::var("RUN_BENCH_REPEAT")
        .ok()
        .map_or(1, |v| v.parse().expect("RUN_BENCH_REPEAT: a count"));
    let mut rows: Vec<Row> = Vec::new();
    for &size in &sizes {
        for kind in &kinds {
            let input = w.join("input.txt");
            match kind.as_str() {
                "words" => inputs::make_input(&input, size),
                "log" => inputs::make_access_log(&input, size),
                other => panic!("RUN_BENCH_INPUTS: unknown input {other:?} (words, log)"),
            }
            let kind: &'static str = if kind == "log" {
                "access log"
            } else {
                "word text"
            };
            let third = size / 3;
            for (i, off) in [(1, 0), (2, third), (3, 2 * third)] {
                let len = if i == 3 { size - 2 * third } else { third };
                let st = sh(&format!(
                    "tail -c +{} '{}' | head -c {len} > '{}/part{i}'",
                    off + 1,
                    input.display(),
                    w.display()
                ))
                .status()
                .unwrap();
                assert!(st.success());
            }
            let out = w.join("out.txt");
            let mut add = |tool: &str, cipher: &'static str, m: Measure| {
                eprintln!(
                    "{tool} {cipher} {} {kind}: {:.2}s",
                    distctl::units::human_bytes(size),
                    m.wall
                );
                rows.push(Row {
                    tool: tool.into(),
                    cipher,
                    size,
                    kind,
                    m,
                })
            };
            // distctl: its default (aes128-gcm preferred), once per
            // --compress setting, and the baseline binary beside it when
            // one is given; all interleaved, RUN_BENCH_REPEAT times.
            let mut variants: Vec<(String, PathBuf, Vec<String>)> = Vec::new();
            if tools.iter().any(|t| t == "distctl") {
                for c in &compress {
                    // "-": distctl's own default, no flag.
                    let (label, flag) = match c.as_str() {
                        "-" => (String::new(), Vec::new()),
                        c => (
                            format!(" --compress {c}"),
                            vec!["--compress".into(), c.into()],
                        ),
                    };
                    variants.push((label, distctl.clone(), flag));
                }
                if let Some(b) = &baseline {
                    variants.push((" (baseline binary)".into(), b.clone(), Vec::new()));
                }
                if warm {
                    // Like parallel's warm rows: the masters are up before the run.
                    let flag = ["--compress", "none", "--persist", "10m"];
                    variants.push((
                        " --compress none --persist 10m (warm)".into(),
                        distctl.clone(),
                        flag.iter().map(|s| s.to_string()).collect(),
                    ));
                }
            }
            // Round by round, every tool once: the load of this shared
            // machine drifts over minutes, and a ratio of two medians taken
            // minutes apart would carry that drift.
            for round in 0..repeat {
                for (op, tool, args) in [
                    ("upper", "distctl run --op upper", vec!["--op", "upper"]),
                    (
                        "exec",
                        "distctl run --exec 'tr a-z A-Z'",
                        vec!["--exec", "tr a-z A-Z"],
                    ),
                ] {
                    if !ops.iter().any(|o| o == op) {
                        continue;
                    }
                    for (label, bin, extra) in &variants {
                        let persist = extra.iter().any(|a| a == "--persist");
                        if variants.len() > 1 || persist {
                            // Each binary installs its own agent: outside the
                            // timings; the warm row's masters come up here.
                            let st = Command::new(bin)
                                .arg("--inventory")
                                .arg(cluster.inventory())
                                .args(["setup", "--quiet"])
                                .args(if persist {
                                    &["--persist", "10m"][..]
                                } else {
                                    &[]
                                })
                                .status()
                                .unwrap();
                            assert!(st.success(), "distctl setup failed");
                        }
                        let mut c = Command::new(bin);
                        c.arg("--inventory")
                            .arg(cluster.inventory())
                            .args(["run", "--quiet"]);
                        c.arg(&input).args(&args).args(extra).arg("-o").arg(&out);
                        // The other tools' output is truncated before their
                        // clock starts (`measure` opens it); distctl would
                        // free the previous 1 GiB within its own time when
                        // it renames its result over it (0.6 s on a disk
                        // mounted with `discard`). Free it here, outside.
                        let _ = std::fs::remove_file(&out);
                        let m = measure(&cluster, c, None, true);
                        let m = Measure {
                            out_bytes: std::fs::metadata(&out).unwrap().len(),
                            ..m
                        };
                        assert_eq!(m.out_bytes, size, "{tool}: output size");
                        add(&format!("{tool}{label}"), "aes128-gcm", m);
                    }
                }
                if round == 0 && size <= 128 * MIB && !variants.is_empty() {
                    let st = sh(&format!(
                        "tr a-z A-Z < '{}' | cmp - '{}'",
                        input.display(),
                        out.display()
                    ))
                    .status()
                    .unwrap();
                    assert!(st.success(), "distctl output differs from tr");
                }
                for (aes, cold, warm) in &cfgs {
                    let wanted = |t: &str| tools.iter().any(|w| w == t);
                    let cipher = if *aes {
                        "aes128-gcm"
                    } else {
                        "default (chacha20)"
                    };
                    let env = |c: &mut Command, cfg: &Path| {
                        c.env("WORK", w)
                            .env("IN", &input)
                            .env("CFG", cfg)
                            .env("R", &r_prefix);
                    };
                    if wanted("seed") {
                        let mut c = sh(SEED);
                        env(&mut c, cold);
                        let m = measure(&cluster, c, Some(&out), false);
                        assert_eq!(m.out_bytes, size, "seed: output size");
                        add("seed (split, scp, ssh &, wait, scp, cat)", cipher, m);
                    }
                    if wanted("parallel") {
                        // Warm parallel's master connections first.
                        let mut c = sh(&format!(
                            "for n in node1 node2 node3; do ssh -F '{}' $n true; done",
                            warm.display()
                        ));
                        assert!(c.status().unwrap().success());
                        // As the README's older table ran it (blocks of 16/64 MiB, two
                        // jobs per node), and as the issue tuned it: one block per
                        // job slot, one job per node.
                        let big = if size > 256 * MIB { "64M" } else { "16M" };
                        for (block, jobs) in [(big, "2"), ("-1", "1")] {
                            let mut c = Command::new("parallel");
                            c.args(["--will-cite", "--ssh"])
                                .arg(format!("ssh -F {}", warm.display()))
                                .args([
                                    "-S",
                                    "node1,node2,node3",
                                    "-j",
                                    jobs,
                                    "--pipepart",
                                    "--block",
                                    block,
                                    "--keep-order",
                                    "-a",
                                ])
                                .arg(&input)
                                .arg("tr a-z A-Z");
                            let m = measure(&cluster, c, Some(&out), false);
                            assert_eq!(m.out_bytes, size, "parallel: output size");
                            add(
                                &format!("GNU parallel --pipepart --block {block} -j{jobs} (warm)"),
                                cipher,
                                m,
                            );
                        }
                    }
                    if wanted("raw") {
                        let mut c = sh(RAW);
                        env(&mut c, cold);
                        let m = measure(&cluster, c, None, false);
                        add("raw limit: ssh node cat, 3 in parallel", cipher, m);
                        let mut c = sh(RAW_THROUGH_A_PIPE);
                        env(&mut c, cold);
                        let m = measure(&cluster, c, None, false);
                        add(
                            "raw through one more pipe: ssh node cat, piped to cat > /dev/null, 3 in parallel",
                            cipher,
                            m,
                        );
                        let mut c = sh(RAW_INTO_FILES);
                        env(&mut c, cold);
                        let m = measure(&cluster, c, None, false);
                        let kept: u64 = (1..=3)
                            .map(|i| {
                                let f = w.join(format!("raw_out{i}"));
                                let n = std::fs::metadata(&f).map_or(0, |m| m.len());
                                let _ = std::fs::remove_file(&f);
                                n
                            })
                            .sum();
                        assert_eq!(kept, size, "raw into files: output size");
                        add(
                            "raw into files: ssh node cat > file, 3 in parallel",
                            cipher,
                            m,
                        );
                    }
                }
            }
            let _ = std::fs::remove_file(&out);
        }
    }
    if warm {
        let _ = Command::new(&distctl)
            .arg("--inventory")
            .arg(cluster.inventory())
            .args(["disconnect", "--quiet"])
            .status();
    }
    print_table(&rows);
}

/// One line per tool, input and cipher: with several runs (`RUN_BENCH_REPEAT`)
/// the run of median wall time stands for them all, every wall time beside it.
/// The × columns divide by the fastest median of that kind of baseline.
fn print_table(rows: &[Row]) {
    let mut groups: Vec<Vec<&Row>> = Vec::new();
    for r in rows {
        let same = |g: &&mut Vec<&Row>| {
            let o = g[0];
            (o.size, o.kind, &o.tool, o.cipher) == (r.size, r.kind, &r.tool, r.cipher)
        };
        match groups.iter_mut().find(|g| same(g)) {
            Some(g) => g.push(r),
            None => groups.push(vec![r]),
        }
    }
    let medians: Vec<(&Row, Vec<f64>)> = groups
        .into_iter()
        .map(|g| {
            let walls: Vec<f64> = g.iter().map(|r| r.m.wall).collect();
            let mut sorted = g.clone();
            sorted.sort_by(|a, b| a.m.wall.total_cmp(&b.m.wall));
            (sorted[sorted.len() / 2], walls)
        })
        .collect();
    println!();
    println!("| input | tool | cipher | wall s | MiB/s | × seed (default) | × parallel (aes) | × raw (aes) | CPU s/GiB distctl | CPU s/GiB ssh+local | CPU s/GiB nodes | distctl peak RSS |");
    println!("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (r, walls) in &medians {
        let same = |tool: &str, cipher: &str| {
            medians
                .iter()
                .map(|(o, _)| o)
                .filter(|o| {
                    o.size == r.size
                        && o.kind == r.kind
                        && o.tool.starts_with(tool)
                        && o.cipher.starts_with(cipher)
                })
                .map(|o| o.m.wall)
                .min_by(f64::total_cmp)
        };
        let wall = if walls.len() > 1 {
            let each: Vec<String> = walls.iter().map(|w| format!("{w:.2}")).collect();
            format!("{:.2} ({})", r.m.wall, each.join(" "))
        } else {
            format!("{:.2}", r.m.wall)
        };
        let gib = r.size as f64 / (1u64 << 30) as f64;
        let ratio = |base: Option<f64>| base.map_or("-".into(), |b| format!("{:.2}", b / r.m.wall));
        println!(
            "| {} {} | {} | {} | {wall} | {:.0} | {} | {} | {} | {} | {:.2} | {:.2} | {} |",
            distctl::units::human_bytes(r.size),
            r.kind,
            r.tool,
            r.cipher,
            r.size as f64 / MIB as f64 / r.m.wall,
            ratio(same("seed", "default")),
            ratio(same("GNU parallel", "aes")),
            ratio(same("raw limit", "aes")),
            r.m.distctl_cpu
                .map_or("-".into(), |c| format!("{:.2}", c / gib)),
            r.m.client_cpu / gib,
            r.m.node_cpu / gib,
            r.m.distctl_rss_kib
                .map_or("-".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0)),
        );
    }
}
