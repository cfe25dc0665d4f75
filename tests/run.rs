//! `distctl run` on real sshd nodes: byte-identical to the local result for
//! every op on awkward inputs, through a node killed mid-run, after Ctrl-C
//! and `--resume`, with spaces and quotes in every path.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use support::{ClusterOptions, TestCluster};

/// The worker-agent binary of this build: the local reference.
fn agent_bin() -> &'static Path {
    static AGENT: OnceLock<PathBuf> = OnceLock::new();
    AGENT.get_or_init(|| {
        let path = support::distctl_bin().with_file_name("worker-agent");
        if !path.exists() {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let st = Command::new(cargo)
                .args(["build", "-p", "worker-agent"])
                .status()
                .unwrap();
            assert!(st.success(), "cannot build worker-agent");
        }
        path
    })
}

/// What running `args` on the whole input locally gives.
fn local(args: &[&str], input: &Path) -> Output {
    Command::new(agent_bin())
        .args(args)
        .stdin(std::fs::File::open(input).unwrap())
        .output()
        .unwrap()
}

fn local_sh(cmd: &str, input: &Path) -> Vec<u8> {
    let out = Command::new("sh")
        .args(["-c", cmd])
        .stdin(std::fs::File::open(input).unwrap())
        .output()
        .unwrap();
    assert!(out.status.success());
    out.stdout
}

/// Workdirs with a space and a quote in them.
fn awkward_workdir(dir: &Path, i: usize) -> PathBuf {
    dir.join(format!("node {i} it's/work dir"))
}

fn cluster(n: usize) -> TestCluster {
    TestCluster::start_with(
        n,
        ClusterOptions {
            workdir: Some(awkward_workdir),
            ..ClusterOptions::default()
        },
    )
}

fn run(cluster: &TestCluster, args: &[&str], input: &Path) -> Output {
    cluster
        .distctl()
        .args(["run", "--quiet"])
        .arg(input)
        .args(args)
        .output()
        .unwrap()
}

/// `run --dry-run --json --op upper --chunk-size SIZE INPUT`: the plan.
fn dry_run_plan(cluster: &TestCluster, input: &Path, chunk_size: &str) -> serde_json::Value {
    let dry = cluster
        .distctl()
        .args([
            "--json",
            "run",
            "--dry-run",
            "--op",
            "upper",
            "--chunk-size",
        ])
        .arg(chunk_size)
        .arg(input)
        .output()
        .unwrap();
    assert!(dry.status.success(), "{}", support::text(&dry.stderr));
    serde_json::from_slice(&dry.stdout).unwrap()
}

fn numbers(lines: &[&str]) -> Vec<u8> {
    lines.join("\n").into_bytes()
}

/// Inputs every op must survive.
fn awkward_inputs(dir: &Path) -> Vec<PathBuf> {
    let mut big = Vec::with_capacity(50_000_000);
    // 50 MB of random bytes shaped as text lines (invalid UTF-8 included).
    let mut x: u64 = 0x9e3779b97f4a7c15;
    while big.len() < 50_000_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let b = (x >> 24) as u8;
        big.push(match b % 16 {
            0 => b'\n',
            1 => b' ',
            2..=9 => b'a' + (b % 26),
            10 | 11 => b'A' + (b % 26),
            _ => b,
        });
    }
    let texts: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("no newline at end", b"alpha\nBeta gamma".to_vec()),
        ("crlf", b"one two\r\nThree\r\n\r\nfour\r\n".to_vec()),
        ("one line", b"a single line of text\n".to_vec()),
        (
            "huge line",
            [vec![b'q'; 3 << 20], b"\nend\n".to_vec()].concat(),
        ),
        (
            "invalid utf8",
            b"\xff\xfe caf\xc3\xa9 \xc3\x28\n\xe2\x82\n".to_vec(),
        ),
        (
            "numbers int",
            numbers(&["1", " 2 ", "-3", "", "40\r", "12345678901234567890"]),
        ),
        (
            "numbers float",
            numbers(&["1.5", "2", "-0.25", "1e3", "0.1", "0.2"]),
        ),
        ("random 50MB", big),
    ];
    texts
        .into_iter()
        .map(|(name, data)| {
            let p = dir.join(format!("in {name} 'q'.txt"));
            std::fs::write(&p, data).unwrap();
            p
        })
        .collect()
}

#[test]
fn every_op_on_every_awkward_input_equals_the_local_result() {
    let cluster = cluster(3);
    let tmp = tempfile::tempdir().unwrap();
    let inputs = awkward_inputs(tmp.path());
    let ops: &[&[&str]] = &[
        &["upper"],
        &["lower"],
        &["count-lines"],
        &["count-words"],
        &["count-chars"],
        &["grep", "--pattern", "a[b-d]|^$|\\xff"],
        &["sum"],
        &["avg"],
        &["min"],
        &["max"],
    ];
    for input in &inputs {
        let name = input.file_name().unwrap().to_string_lossy().into_owned();
        let is_big = name.contains("50MB");
        let numeric_input = name.contains("numbers");
        // Small inputs in tiny chunks (many per node), the big one in the
        // default size (a sixteenth of it).
        let size: &[&str] = if is_big { &[] } else { &["--chunk-size", "8"] };
        for op in ops {
            let numeric = matches!(op[0], "sum" | "avg" | "min" | "max");
            if numeric != numeric_input && !(numeric && name == "empty") {
                continue;
            }
            let mut local_args = vec!["op"];
            local_args.extend_from_slice(op);
            let want = local(&local_args, input);
            assert!(want.status.success(), "local {op:?} on {name}");
            let mut args = vec!["--op"];
            args.extend_from_slice(op);
            args.extend(size);
            let got = run(&cluster, &args, input);
            assert_eq!(
                got.status.code(),
                Some(0),
                "{op:?} on {name}: {}",
                String::from_utf8_lossy(&got.stderr)
            );
            assert!(
                got.stdout == want.stdout,
                "{op:?} on {name}: output differs"
            );
        }
        if !numeric_input {
            let out = tmp.path().join(format!("out {name}"));
            let mut args = vec!["--exec", "tr a-z A-Z", "-o", out.to_str().unwrap()];
            args.extend(size);
            let got = run(&cluster, &args, input);
            assert_eq!(
                got.status.code(),
                Some(0),
                "{}",
                String::from_utf8_lossy(&got.stderr)
            );
            assert!(
                std::fs::read(&out).unwrap() == local_sh("tr a-z A-Z", input),
                "exec on {name}"
            );
        }
    }
    assert_eq!(
        std::fs::read_dir(tmp.path()).unwrap().count(),
        inputs.len() + 7,
        "outputs only, no journal or temp file left"
    );
}

#[test]
fn aggregates_as_json_and_bad_numbers() {
    let cluster = cluster(2);
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("n.txt");
    std::fs::write(&input, "1\n2\n\n3\nfour\n5\n").unwrap();
    let got = run(&cluster, &["--op", "avg", "--chunk-size", "4"], &input);
    assert_eq!(got.status.code(), Some(2));
    let err = String::from_utf8_lossy(&got.stderr);
    assert!(err.contains("line 5: not a number"), "{err}");
    assert!(got.stdout.is_empty());

    let got = cluster
        .distctl()
        .args([
            "--json",
            "run",
            "--quiet",
            "--op",
            "avg",
            "--skip-invalid",
            "--chunk-size",
            "4",
        ])
        .arg(&input)
        .output()
        .unwrap();
    assert_eq!(got.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&got.stdout).unwrap();
    assert_eq!(v["op"], "avg");
    assert_eq!(v["count"], 4);
    assert_eq!(v["avg"], 2.75);
    assert_eq!(v["skipped"], 1);
}

#[test]
fn stdin_and_several_files_are_one_stream() {
    let cluster = cluster(2);
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a.txt");
    let b = tmp.path().join("b.txt");
    std::fs::write(&a, "one\ntwo words").unwrap();
    std::fs::write(&b, " joined\nthree\n").unwrap();
    let got = cluster
        .distctl()
        .args(["run", "--quiet", "--op", "count-lines", "--chunk-size", "3"])
        .arg(&a)
        .arg(&b)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&got.stdout), "lines 3\n");
    let mut child = cluster
        .distctl()
        .args(["run", "--quiet", "--op", "upper", "--chunk-size", "5", "-"])
        .arg(&b)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"from stdin\nno newline")
        .unwrap();
    let got = child.wait_with_output().unwrap();
    assert!(got.status.success());
    assert_eq!(
        String::from_utf8_lossy(&got.stdout),
        "FROM STDIN\nNO NEWLINE JOINED\nTHREE\n"
    );
}

/// PIDs of worker-agents (not their sshd) whose command line has `needle`.
fn agents_with(needle: &str) -> Vec<u32> {
    agents_where(needle, |_| true)
}

/// The agents among [`agents_with`] that run a chunk (`--framed`), not the
/// install probe's `worker-agent self-probe` or `self-sha256`.
fn chunk_agents_with(needle: &str) -> Vec<u32> {
    agents_where(needle, |cmd| cmd.contains("--framed"))
}

fn agents_where(needle: &str, keep: impl Fn(&str) -> bool) -> Vec<u32> {
    support::processes_with(needle)
        .into_iter()
        .filter(|(_, cmd)| cmd.contains("worker-agent") && !cmd.contains("sshd") && keep(cmd))
        .map(|(pid, _)| pid)
        .collect()
}

fn signal_all(pids: &[u32], sig: libc::c_int) {
    for &pid in pids {
        // SAFETY: plain kill(2) on processes of this test's own sshd.
        unsafe {
            libc::kill(pid as libc::pid_t, sig);
        }
    }
}

/// Wait until `cond` holds (at most 60 s).
fn wait_for(what: &str, cond: impl Fn() -> bool) {
    support::wait_until(what, Duration::from_secs(60), cond);
}

fn no_agents_left(cluster: &TestCluster) {
    let needle = cluster.dir.path().to_string_lossy().into_owned();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = agents_with(&needle);
        if left.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "agent processes left: {left:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// 4 MiB of text in 256 KiB chunks, each taking ~0.3 s on its node: long
/// enough to kill a node or interrupt the run in the middle.
fn slow_job(dir: &Path) -> (PathBuf, Vec<u8>) {
    let input = dir.join("slow in.txt");
    let data: String = (0..200_000).map(|i| format!("line {i} abc\n")).collect();
    std::fs::write(&input, &data).unwrap();
    (input.clone(), data.to_uppercase().into_bytes())
}

const SLOW: &[&str] = &["--exec", "sleep 0.3; tr a-z A-Z", "--chunk-size", "128K"];

#[test]
fn a_node_killed_mid_run_loses_nothing() {
    node_killed_mid_run(&[]);
}

/// The same with compression on the wire both ways.
#[test]
fn a_node_killed_mid_run_loses_nothing_compressed() {
    node_killed_mid_run(&["--compress", "zstd"]);
}

fn node_killed_mid_run(extra: &[&str]) {
    let mut cluster = cluster(3);
    let tmp = tempfile::tempdir().unwrap();
    let (input, want) = slow_job(tmp.path());
    let out = tmp.path().join("out.txt");
    let child = cluster
        .distctl()
        .args(["--json", "run", "--quiet"])
        .arg(&input)
        .args(SLOW)
        .args(extra)
        .arg("-o")
        .arg(&out)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Kill node2 while it is working on a chunk: freeze its sshd tree once
    // an agent is seen, so that the chunk cannot finish between the look and
    // the kill (on a loaded machine that gap outlasted the 0.3 s a chunk
    // takes, the node died between chunks and nothing was retried).
    let node2 = cluster.workdir(1).to_string_lossy().into_owned();
    loop {
        wait_for("node2 to run a chunk", || {
            !chunk_agents_with(&node2).is_empty()
        });
        let tree = cluster.node_pids(1);
        signal_all(&tree, libc::SIGSTOP);
        if chunk_agents_with(&node2).iter().any(|a| tree.contains(a)) {
            break;
        }
        signal_all(&tree, libc::SIGCONT);
    }
    cluster.stop_node(1);
    let got = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&got.stderr);
    assert_eq!(
        got.status.code(),
        Some(1),
        "node dropped, output complete: {err}"
    );
    assert!(std::fs::read(&out).unwrap() == want, "output differs");
    let summary: serde_json::Value = serde_json::from_slice(&got.stdout).unwrap();
    assert_eq!(summary["nodes"][1]["removed"], true, "{summary}");
    assert!(summary["retries"].as_u64().unwrap() >= 1);
    no_agents_left(&cluster);
}

/// Start the slow job writing `out`; return once its journal records a
/// finished chunk (the journal path is returned too).
fn start_slow_run(
    cluster: &TestCluster,
    input: &Path,
    out: &Path,
) -> (std::process::Child, PathBuf) {
    let child = cluster
        .distctl()
        .args(["run", "--quiet"])
        .arg(input)
        .args(SLOW)
        .arg("-o")
        .arg(out)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let name = out.file_name().unwrap().to_string_lossy();
    let journal = out.with_file_name(format!(".{name}.distctl-run/journal.jsonl"));
    wait_for("a finished chunk", || {
        std::fs::read_to_string(&journal).is_ok_and(|j| j.lines().count() >= 3)
    });
    (child, journal)
}

#[test]
fn interrupted_run_resumes_with_only_the_missing_chunks() {
    let cluster = cluster(2);
    let tmp = tempfile::tempdir().unwrap();
    let (input, want) = slow_job(tmp.path());
    let out = tmp.path().join("out 'x'.txt");
    let (child, journal) = start_slow_run(&cluster, &input, &out);
    // Ctrl-C.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let got = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&got.stderr);
    assert_eq!(got.status.code(), Some(3), "{err}");
    assert!(err.contains("--resume"), "{err}");
    assert!(!out.exists(), "no output from an interrupted run");
    no_agents_left(&cluster);

    let mut done: Vec<u64> = std::fs::read_to_string(&journal)
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["index"]
                .as_u64()
                .unwrap()
        })
        .collect();
    done.sort();
    done.dedup();
    assert!(!done.is_empty(), "some chunks finished before Ctrl-C");

    let got = cluster
        .distctl()
        .args(["--json", "run", "--quiet", "--resume"])
        .arg(&input)
        .args(SLOW)
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(
        got.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&got.stderr)
    );
    let s: serde_json::Value = serde_json::from_slice(&got.stdout).unwrap();
    let total = s["chunks"].as_u64().unwrap();
    assert_eq!(s["chunks_resumed"].as_u64().unwrap(), done.len() as u64);
    assert_eq!(s["chunks_run"].as_u64().unwrap(), total - done.len() as u64);
    assert!(std::fs::read(&out).unwrap() == want);
    assert!(
        !journal.exists(),
        "the journal goes once the output is complete"
    );
}

/// SIGTERM (a service manager, `timeout`, cron's kill) stops `run` the way
/// Ctrl-C does: the journal kept, how to resume said, exit 3, and no ssh or
/// agent process left on either side.
#[test]
fn sigterm_stops_a_run_cleanly_and_keeps_the_journal() {
    let cluster = cluster(2);
    let tmp = tempfile::tempdir().unwrap();
    let (input, _) = slow_job(tmp.path());
    let out = tmp.path().join("out.txt");
    let (child, journal) = start_slow_run(&cluster, &input, &out);
    let masters = cluster.ssh_clients();
    assert!(
        !masters.is_empty(),
        "the run has ssh masters while it works"
    );
    // SAFETY: kill(2) on the distctl child this test started.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let got = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&got.stderr);
    assert_eq!(got.status.code(), Some(3), "{err}");
    assert!(err.contains("interrupted (SIGTERM)"), "{err}");
    assert!(err.contains("--resume"), "{err}");
    assert!(journal.exists(), "the journal is kept");
    assert!(!out.exists(), "no output from an interrupted run");
    no_agents_left(&cluster);
    support::wait_until("the ssh masters to exit", Duration::from_secs(5), || {
        masters.iter().all(|p| !support::process_alive(*p))
    });
}

#[test]
fn resume_refuses_a_changed_input() {
    let cluster = cluster(1);
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in.txt");
    std::fs::write(&input, "a\nb\n").unwrap();
    let out = tmp.path().join("out.txt");
    // A journal as an interrupted run leaves it, then a changed input.
    let journal_dir = tmp.path().join(".out.txt.distctl-run");
    std::fs::create_dir(&journal_dir).unwrap();
    let got = run(
        &cluster,
        &["--op", "upper", "--resume", "-o", out.to_str().unwrap()],
        &input,
    );
    assert_eq!(got.status.code(), Some(2), "no journal: usage error");
    let ok = run(
        &cluster,
        &["--op", "upper", "-o", out.to_str().unwrap()],
        &input,
    );
    assert!(ok.status.success());
    let key = serde_json::json!({
        "inputs": [{"path": input, "size": 4, "mtime_ns": 1}],
        "chunk_size": 16 << 20, "op": "upper", "pattern": null, "exec": null, "skip_invalid": false,
    });
    std::fs::create_dir_all(&journal_dir).unwrap();
    std::fs::write(journal_dir.join("journal.jsonl"), format!("{key}\n")).unwrap();
    let got = run(
        &cluster,
        &["--op", "upper", "--resume", "-o", out.to_str().unwrap()],
        &input,
    );
    assert_eq!(got.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&got.stderr).contains("changed"));
}

#[test]
fn unreachable_node_is_skipped_and_dry_run_touches_nothing() {
    let mut cluster = cluster(3);
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in.txt");
    std::fs::write(&input, "x\ny\nz\n").unwrap();
    let plan = dry_run_plan(&cluster, &input, "2");
    let nodes: Vec<&str> = plan["chunks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["node"].as_str().unwrap())
        .collect();
    assert_eq!(nodes, ["node1", "node2", "node3"]);
    for i in 0..3 {
        assert!(
            !cluster.workdir(i).exists(),
            "dry run touched node{}",
            i + 1
        );
    }

    cluster.stop_node(2);
    let got = cluster
        .distctl()
        .args(["run", "--op", "upper", "--chunk-size", "2"])
        .arg(&input)
        .output()
        .unwrap();
    assert_eq!(got.status.code(), Some(1));
    assert_eq!(got.stdout, b"X\nY\nZ\n");
    assert!(String::from_utf8_lossy(&got.stderr).contains("node3"));

    let failing = cluster
        .distctl()
        .args([
            "run",
            "--quiet",
            "--exec",
            "echo boom >&2; exit 7",
            "--retries",
            "1",
        ])
        .arg(&input)
        .output()
        .unwrap();
    assert_eq!(failing.status.code(), Some(3));
    let err = String::from_utf8_lossy(&failing.stderr);
    assert!(err.contains("code 7") && err.contains("boom"), "{err}");
}

/// Mistakes in paths are usage errors found before any node is contacted: the
/// one node here listens nowhere, so reaching it first would fail otherwise.
#[test]
fn bad_paths_are_refused_before_any_node_is_contacted() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.txt");
    std::fs::write(&input, "a\nb\n").unwrap();
    let outdir = dir.path().join("out");
    std::fs::create_dir(&outdir).unwrap();
    let missing_parent = dir.path().join("no/such/out.txt");
    let cases: Vec<(Vec<&std::ffi::OsStr>, &str)> = vec![
        (
            vec![input.as_os_str(), "-o".as_ref(), outdir.as_os_str()],
            "is a directory",
        ),
        (
            vec![input.as_os_str(), "-o".as_ref(), missing_parent.as_os_str()],
            "does not exist",
        ),
        (vec![outdir.as_os_str()], "is a directory"),
    ];
    for (args, want) in cases {
        let out = Command::new(support::distctl_bin())
            .args(["--hosts", "127.0.0.1:1", "run", "--op", "upper"])
            .args(&args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    }
    assert!(!dir.path().join("no").exists(), "no parent directory made");
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left.len(), 2, "nothing left beside the output: {left:?}");
}

/// A byte op runs one chunk at a time per node (the agent outpaces any
/// link; a second channel only costs the ssh master and sshd), a numeric op
/// and `--exec` one per core of the node, and an inventory's `slots` wins
/// over both.
#[test]
fn byte_ops_take_one_slot_per_node_numeric_ops_and_exec_one_per_core() {
    let cluster = cluster(2);
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("n.txt");
    let data: String = (0..2000).map(|i| format!("{i}\n")).collect();
    std::fs::write(&input, &data).unwrap();
    let slots = |args: &[&str]| -> Vec<u64> {
        let out = tmp.path().join("out.txt");
        let got = cluster
            .distctl()
            .args(["--json", "run", "--quiet"])
            .arg(&input)
            .args(args)
            .arg("-o")
            .arg(&out)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&got.stdout);
        assert_eq!(got.status.code(), Some(0), "{args:?}: {text}");
        let summary: serde_json::Value =
            serde_json::from_str(text.lines().last().unwrap_or_default()).unwrap();
        summary["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["slots"].as_u64().unwrap())
            .collect()
    };
    // The nodes are this machine: their cores are ours (at most 8 channels).
    let cores = std::thread::available_parallelism().unwrap().get().min(8) as u64;
    assert_eq!(slots(&["--op", "upper"]), [1, 1]);
    assert_eq!(slots(&["--op", "count-words"]), [1, 1]);
    assert_eq!(slots(&["--op", "sum"]), [cores, cores]);
    assert_eq!(slots(&["--exec", "cat"]), [cores, cores]);
    // `slots` on the last node of the inventory.
    let inventory = std::fs::read_to_string(cluster.inventory()).unwrap();
    std::fs::write(cluster.inventory(), inventory + "slots = 3\n").unwrap();
    assert_eq!(slots(&["--op", "upper"]), [1, 3]);
}

/// A distctl child killed (by its own PID) if the test fails while it runs.
struct Running(Option<std::process::Child>);

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(c) = self.0.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Each node joins the run as soon as its own handshake is done. node3 and
/// node4 cannot even begin theirs (each ProxyCommand waits for a gate file)
/// while node1 and node2 run the chunks, which the old way (connect
/// everything, then start) never allowed. node4's gate opens mid-run and
/// its proxy fails: it is skipped with a warning, the run goes on. node3's
/// opens once every chunk has started: it joins late, with no chunk, and
/// the run, which waited for it, ends partial (node4) with the output whole.
#[test]
fn nodes_start_work_as_they_connect_and_a_late_failure_is_skipped() {
    let cluster = cluster(4);
    let tmp = tempfile::tempdir().unwrap();
    let gate = |n: usize| tmp.path().join(format!("gate{n}"));
    let marks = tmp.path().join("marks");
    std::fs::create_dir(&marks).unwrap();
    let release = tmp.path().join("release");
    cluster.gate_nodes(&[(3, &gate(3), true), (4, &gate(4), false)]);
    let input = tmp.path().join("in.txt");
    let lines: String = (0..60).map(|i| format!("line {i}\n")).collect();
    std::fs::write(&input, &lines).unwrap();
    let out = tmp.path().join("out.txt");
    let plan = dry_run_plan(&cluster, &input, "70");
    let chunks = plan["chunks"].as_array().unwrap().len();
    assert!(chunks > 4, "{plan}");
    let mut running = Running(Some(
        cluster
            .distctl()
            .args(["--json", "run", "--quiet", "--chunk-size", "70", "-o"])
            .arg(&out)
            .arg("--exec")
            .arg(format!(
                "touch {}/$DISTCTL_NODE-$DISTCTL_CHUNK; while [ ! -e {} ]; do sleep 0.05; done; tr a-z A-Z",
                marks.display(),
                release.display()
            ))
            .arg(&input)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    ));
    // stderr line by line, as it comes.
    let (tx, said) = std::sync::mpsc::channel::<String>();
    let stderr = running.0.as_mut().unwrap().stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr).lines() {
            let _ = tx.send(line.unwrap());
        }
    });
    let ran = || std::fs::read_dir(&marks).unwrap().count();
    support::wait_until(
        "a chunk to start while node3 and node4 wait",
        Duration::from_secs(30),
        || ran() > 0,
    );
    std::fs::write(gate(4), "").unwrap();
    let mut stderr = String::new();
    while !stderr.contains("skipping unreachable node node4") {
        let line = said
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("no warning for node4 ({e}): {stderr}"));
        stderr.push_str(&line);
        stderr.push('\n');
    }
    std::fs::write(&release, "").unwrap();
    support::wait_until(
        "node1 and node2 to start every chunk",
        Duration::from_secs(30),
        || ran() == chunks,
    );
    std::fs::write(gate(3), "").unwrap();
    let got = running.0.take().unwrap().wait_with_output().unwrap();
    reader.join().unwrap();
    stderr.extend(said.try_iter().map(|l| l + "\n"));
    assert_eq!(got.status.code(), Some(1), "{stderr}");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), lines.to_uppercase());
    let summary: serde_json::Value = serde_json::from_slice(&got.stdout).unwrap();
    assert_eq!(summary["chunks"], chunks);
    assert_eq!(summary["unreachable"], serde_json::json!(["node4"]));
    let nodes: Vec<(&str, u64)> = summary["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["node"].as_str().unwrap(), n["chunks"].as_u64().unwrap()))
        .collect();
    assert_eq!(nodes.len(), 3, "{nodes:?}");
    assert_eq!(
        nodes[2],
        ("node3", 0),
        "node3 joined after the work was done"
    );
    let by: Vec<String> = std::fs::read_dir(&marks)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(by.len(), chunks, "{by:?}");
    assert!(
        by.iter()
            .all(|m| m.starts_with("node1-") || m.starts_with("node2-")),
        "{by:?}"
    );
}

/// A run stopped by SIGTERM while a node is still in its handshake stops
/// that handshake too: no ssh of ours, nor the ProxyCommand it started, is
/// left waiting (SIGTERM from a supervisor reaches distctl alone).
#[test]
fn a_signal_stops_the_handshakes_still_under_way() {
    let cluster = cluster(2);
    let tmp = tempfile::tempdir().unwrap();
    let gate = tmp.path().join("gate");
    cluster.gate_nodes(&[(2, &gate, true)]);
    let input = tmp.path().join("in.txt");
    std::fs::write(&input, "a\nb\nc\n").unwrap();
    let mut running = Running(Some(
        cluster
            .distctl()
            .args(["run", "--quiet", "--exec", "sleep 60"])
            .arg(&input)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    ));
    let gated = gate.display().to_string();
    support::wait_until(
        "node2's proxy to wait and node1 to run a chunk",
        Duration::from_secs(30),
        || !support::processes_with(&gated).is_empty() && !chunk_agents_with("sleep 60").is_empty(),
    );
    let child = running.0.take().unwrap();
    // SAFETY: kill(2) on the distctl child this test started.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let got = child.wait_with_output().unwrap();
    let err = support::text(&got.stderr);
    assert_eq!(got.status.code(), Some(3), "{err}");
    support::wait_until(
        "node2's handshake and proxy to be stopped",
        Duration::from_secs(10),
        || support::processes_with(&gated).is_empty(),
    );
}

/// `distctl run ... | head -1`: once the reader of stdout is gone, the run
/// stops and distctl ends as `cat` does, killed by SIGPIPE, with nothing on
/// stderr (no "Broken pipe" error, no "k of n chunks finished" line) and no
/// agent left on the nodes.
#[test]
fn a_reader_that_goes_away_stops_the_run_like_cat() {
    use std::io::BufRead;
    use std::os::unix::process::ExitStatusExt;
    let cluster = cluster(2);
    let input = cluster.dir.path().join("big.txt");
    // 32 MiB of lines: far more than a pipe holds, so distctl is still
    // writing when the reader leaves.
    let line = "the quick brown fox jumps over the lazy dog\n";
    std::fs::write(&input, line.repeat((32 << 20) / line.len())).unwrap();
    let mut child = cluster
        .distctl()
        .args(["run", "--op", "upper", "--chunk-size", "1M"])
        .arg(&input)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut reader = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    reader.read_line(&mut first).unwrap();
    assert_eq!(first, line.to_uppercase());
    drop(reader);
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGPIPE),
        "{:?}, stderr: {}",
        out.status,
        support::text(&out.stderr)
    );
    // Silently: neither the error nor the "k of n chunk(s) finished" of a
    // stopped run (a warning a loaded machine earns, such as a chunk run
    // again, may remain).
    let said = support::text(&out.stderr);
    assert!(
        !said.contains("error") && !said.contains("pipe") && !said.contains("finished"),
        "stderr: {said}"
    );
    no_agents_left(&cluster);
}

/// A node whose sshd allows one session per connection (`MaxSessions 1`)
/// runs a byte op (one slot) to the end, alone: the look-ahead channel it
/// refuses costs it nothing (no fault, no warning, not taken out), and the
/// output is exact.
/// `run --op upper --chunk-size CHUNK --json EXTRA...` over `lines` lines:
/// it ends with exit 0, no warning and the right output. Its summary.
fn upper_runs_clean(
    cluster: &TestCluster,
    lines: usize,
    chunk: &str,
    extra: &[&str],
) -> serde_json::Value {
    let input = cluster.dir.path().join("in.txt");
    let data: String = (0..lines)
        .map(|i| format!("line {i} of the text\n"))
        .collect();
    std::fs::write(&input, &data).unwrap();
    let out = cluster.dir.path().join("out.txt");
    let got = cluster
        .distctl()
        .args(["run", "--op", "upper", "--chunk-size", chunk, "--json"])
        .args(extra)
        .arg("-o")
        .arg(&out)
        .arg(&input)
        .output()
        .unwrap();
    let err = support::text(&got.stderr);
    assert_eq!(got.status.code(), Some(0), "{err}");
    assert!(!err.contains("warning"), "{err}");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), data.to_uppercase());
    serde_json::from_str(support::text(&got.stdout).lines().last().unwrap()).unwrap()
}

/// One SSH channel carries at most OpenSSH's 2 MiB window per round trip:
/// a distant node running a byte op, its first chunk held back by that
/// window, gets the slots its round trip calls for (a 60 ms one: four); a
/// node on this machine keeps its one. (Compressed, this text would take
/// a tenth of the window, and the node would be judged on the round trips
/// its chunks wait out instead.)
#[test]
fn a_distant_node_runs_a_byte_op_on_the_slots_its_round_trip_calls_for() {
    let cluster = cluster(2);
    cluster.delay_nodes(&[(1, 30)]);
    let summary = upper_runs_clean(
        &cluster,
        2_400_000,
        "16M",
        &["--nodes", "node1", "--compress", "none"],
    );
    let far = &summary["nodes"][0];
    let near = upper_runs_clean(
        &cluster,
        2_400_000,
        "16M",
        &["--nodes", "node2", "--compress", "none"],
    );
    let near = &near["nodes"][0];
    assert!(
        far["round_trip_ms"].as_f64().unwrap() >= 60.0,
        "the relay holds each byte 30 ms each way: {summary}"
    );
    assert_eq!(far["slots"], 4, "{summary}");
    assert_eq!(near["slots"], 1, "{near}");
    assert!(near["round_trip_ms"].as_f64().unwrap() < 60.0, "{near}");
    assert_eq!(far["faults"], 0, "{summary}");
}

/// Chunks of two windows (4 MiB) already show the window holding a distant
/// node back: at a 60 ms round trip the node gets its four slots with them.
#[test]
fn a_distant_node_with_chunks_of_two_windows_gets_its_slots_too() {
    let cluster = cluster(1);
    cluster.delay_nodes(&[(1, 30)]);
    let summary = upper_runs_clean(&cluster, 1_200_000, "4M", &["--compress", "none"]);
    assert_far_node_widened(&summary, 6);
}

/// Chunks of one window or less wait out their round trips (the channel's
/// opening, the command's start, the input's way there and the result's
/// back) with the node and its link idle: at a 60 ms round trip a distant
/// node running 1 MiB chunks gets its four slots too.
#[test]
fn a_distant_node_running_chunks_of_one_window_gets_its_slots_too() {
    let cluster = cluster(1);
    cluster.delay_nodes(&[(1, 30)]);
    let summary = upper_runs_clean(&cluster, 400_000, "1M", &["--compress", "none"]);
    assert_far_node_widened(&summary, 9);
}

/// A distant node whose link holds each small chunk back (here the relay
/// passes everything towards the node on at 2 MiB/s) is bound by that
/// link, not by its round trip: it keeps its one slot.
#[test]
fn a_distant_node_whose_link_holds_its_small_chunks_back_keeps_its_slot() {
    let cluster = far_cluster_slow_towards_it((1 << 40, 2 << 20));
    let summary = upper_runs_clean(&cluster, 200_000, "1M", &["--compress", "none"]);
    assert_far_node_on(&summary, 4, 1);
}

/// The one node of `summary` ran at least `chunks` chunks 60 ms away, and
/// ended on the four slots that round trip calls for, with no fault.
fn assert_far_node_widened(summary: &serde_json::Value, chunks: u64) {
    assert_far_node_on(summary, chunks, 4);
}

/// The one node of `summary` ran at least `chunks` chunks 60 ms away, and
/// ended on `slots` slots, with no fault.
fn assert_far_node_on(summary: &serde_json::Value, chunks: u64, slots: u64) {
    let node = &summary["nodes"][0];
    assert!(node["round_trip_ms"].as_f64().unwrap() >= 60.0, "{summary}");
    assert!(summary["chunks"].as_u64().unwrap() >= chunks, "{summary}");
    assert_eq!(node["slots"], slots, "{summary}");
    assert_eq!(node["faults"], 0, "{summary}");
}

/// A cluster of one node, its agent installed, then put 30 ms away each
/// way, its link passing the first `slow.0` bytes towards it at `slow.1`
/// bytes a second ([`TestCluster::delay_nodes_slow_start`]).
fn far_cluster_slow_towards_it(slow: (u64, u64)) -> TestCluster {
    let cluster = cluster(1);
    let setup = cluster.distctl().arg("setup").output().unwrap();
    assert!(setup.status.success(), "{}", support::text(&setup.stderr));
    cluster.delay_nodes_slow_start(&[(1, 30)], slow);
    cluster
}

/// A distant node whose first chunk went slow for another reason (its
/// link held back at first: here the relay passes the first 12 MiB on at 4
/// MiB/s) is judged again on the next, which shows the window: it gets the
/// slots its round trip calls for all the same.
#[test]
fn a_distant_node_whose_first_chunk_went_slow_is_judged_again_on_the_next() {
    let cluster = far_cluster_slow_towards_it((12 << 20, 4 << 20));
    let summary = upper_runs_clean(&cluster, 2_400_000, "16M", &["--compress", "none"]);
    assert_far_node_widened(&summary, 3);
}

/// A distant node whose sshd allows fewer channels than its round trip
/// calls for runs on those it allows: no fault, no warning, and no more
/// slots than it allows (one or two: the refused channels were asked for
/// at once, and may reach the node in any order).
#[test]
fn a_distant_node_that_allows_two_sessions_runs_on_two() {
    let mut cluster = cluster(1);
    cluster.restart_node_with(0, "MaxSessions 2\n");
    cluster.delay_nodes(&[(1, 30)]);
    let summary = upper_runs_clean(&cluster, 3_200_000, "16M", &["--compress", "none"]);
    let node = &summary["nodes"][0];
    assert_eq!(node["faults"], 0, "{summary}");
    let slots = node["slots"].as_u64().unwrap();
    assert!((1..=2).contains(&slots), "{summary}");
}

#[test]
fn a_node_that_allows_one_session_runs_a_byte_op_to_the_end() {
    let mut cluster = cluster(1);
    cluster.restart_node_with(0, "MaxSessions 1\n");
    let summary = upper_runs_clean(&cluster, 200_000, "256K", &[]);
    let node = &summary["nodes"][0];
    assert_eq!(node["faults"], 0, "{summary}");
    assert_eq!(node["removed"], false, "{summary}");
    assert!(summary["chunks"].as_u64().unwrap() > 8, "{summary}");
}

/// Put `wrapper` in node `i`'s place of the installed agent, which moves to
/// `worker-agent.real` beside it (a wrapper passing `self-sha256` on to it
/// is taken for the agent distctl installed).
fn wrap_agent(cluster: &TestCluster, i: usize, wrapper: &str) {
    use std::os::unix::fs::PermissionsExt;
    let agent = cluster.workdir(i).join("bin/worker-agent");
    std::fs::rename(&agent, agent.with_file_name("worker-agent.real")).unwrap();
    std::fs::write(&agent, wrapper).unwrap();
    std::fs::set_permissions(&agent, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A node whose agent is this run's is not probed before a byte op: its
/// first chunks check the agent themselves (the guard asks it for its own
/// sha256) and start it. Where the cores are wanted (`--exec`), they are
/// the ones the node's last probe found, and only a node never probed is
/// probed first. A wrapper logs what the agent is asked to do.
#[test]
fn a_node_whose_agent_is_up_to_date_starts_its_chunks_without_a_probe() {
    let cluster = cluster(1);
    let setup = cluster.distctl().arg("setup").output().unwrap();
    assert!(setup.status.success(), "{}", support::text(&setup.stderr));
    let log = cluster.dir.path().join("agent-calls");
    wrap_agent(
        &cluster,
        0,
        &format!(
            "#!/bin/sh\necho \"$1\" >> '{}'\nexec \"$0.real\" \"$@\"\n",
            log.display()
        ),
    );
    let calls = |cmd: &str| -> usize {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        text.lines().filter(|l| *l == cmd).count()
    };
    let summary = upper_runs_clean(&cluster, 40_000, "64K", &[]);
    let chunks = summary["chunks"].as_u64().unwrap() as usize;
    assert!(chunks > 4, "{summary}");
    assert_eq!(calls("op"), chunks, "one agent per chunk");
    assert_eq!(calls("self-probe"), 0, "no probe");
    // The guarded chunks: the first, and at most its look-ahead.
    assert!(
        (1..=2).contains(&calls("self-sha256")),
        "{}",
        calls("self-sha256")
    );

    // `--exec` runs on the node's cores: `setup` found them, and they are
    // remembered, so no probe either.
    let exec_cat = || {
        let _ = std::fs::remove_file(&log);
        let input = cluster.dir.path().join("in.txt");
        let out = cluster.dir.path().join("out.txt");
        let args = ["--json", "--exec", "cat", "--chunk-size", "64K", "-o"];
        let got = run(
            &cluster,
            &[&args[..], &[out.to_str().unwrap()]].concat(),
            &input,
        );
        assert_eq!(got.status.code(), Some(0), "{}", support::text(&got.stderr));
        assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&input).unwrap());
        let summary: serde_json::Value =
            serde_json::from_str(support::text(&got.stdout).lines().last().unwrap()).unwrap();
        summary["nodes"][0]["slots"].as_u64().unwrap() as usize
    };
    let remembered = cluster.dir.path().join("state/distctl/node-cores.json");
    let record = || -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(&remembered).unwrap()).unwrap()
    };
    let only_node = |r: &serde_json::Value| -> String {
        let nodes = r["nodes"].as_object().unwrap();
        assert_eq!(nodes.len(), 1, "{r}");
        nodes.keys().next().unwrap().clone()
    };
    let key = only_node(&record());
    let found = record()["nodes"][&key]["cores"].as_u64().unwrap();
    let cores = (found as usize).min(8);
    assert_eq!(exec_cat(), cores);
    assert_eq!(calls("exec"), chunks);
    assert_eq!(calls("self-probe"), 0, "the cores are remembered");
    let guarded = calls("self-sha256");
    assert!(
        (1..=cores).contains(&guarded),
        "the first chunks: {guarded}"
    );
    // The run goes by the record, not by the machine.
    let set_record = |n: u64| {
        let mut r = record();
        r["nodes"][&key]["cores"] = n.into();
        std::fs::write(&remembered, r.to_string()).unwrap();
    };
    set_record(3);
    assert_eq!(exec_cat(), 3);
    assert_eq!(calls("self-probe"), 0);
    // Forgotten, the cores are read once by a probe, and remembered again.
    std::fs::remove_file(&remembered).unwrap();
    assert_eq!(exec_cat(), cores);
    assert_eq!(calls("self-probe"), 1, "the cores are read once");
    assert_eq!(only_node(&record()), key);
    assert_eq!(exec_cat(), cores);
    assert_eq!(calls("self-probe"), 0);
    // A node whose agent is gone is probed: it goes on with the cores that
    // probe found, and they are remembered.
    set_record(5);
    std::fs::remove_file(cluster.workdir(0).join("bin/worker-agent")).unwrap();
    assert_eq!(exec_cat(), cores);
    assert_eq!(record()["nodes"][&key]["cores"].as_u64(), Some(found));
}

/// A node whose agent is missing, or is another (here a stand-in that
/// leaves a mark when asked to run a chunk), gets this run's before any
/// chunk runs there: the guard of its first chunk refuses to start what is
/// there, the chunk goes back at no cost (no fault, no retry), the node is
/// probed and the agent pushed, and the run ends whole. The probe waits
/// until none of the node's chunks runs: node3's sshd allows one session
/// at a time, and would refuse its channel.
#[test]
fn a_node_whose_agent_is_missing_or_another_gets_this_runs_before_a_chunk_runs_there() {
    let mut cluster = cluster(3);
    cluster.restart_node_with(2, "MaxSessions 1\n");
    let setup = cluster.distctl().arg("setup").output().unwrap();
    assert!(setup.status.success(), "{}", support::text(&setup.stderr));
    let mark = cluster.dir.path().join("stand-in-ran-a-chunk");
    let agent = |i: usize| cluster.workdir(i).join("bin/worker-agent");
    let stand_in = format!(
        "#!/bin/sh\ncase \"$1\" in op|exec) : > '{}';; esac\necho 0000\n",
        mark.display()
    );
    std::fs::write(agent(0), &stand_in).unwrap();
    std::fs::remove_dir_all(cluster.workdir(1)).unwrap();
    std::fs::remove_file(agent(2)).unwrap();

    let summary = upper_runs_clean(&cluster, 40_000, "64K", &[]);
    assert!(!mark.exists(), "the stand-in never ran a chunk");
    assert_eq!(summary["retries"], 0, "{summary}");
    for node in summary["nodes"].as_array().unwrap() {
        assert_eq!(node["faults"], 0, "{summary}");
    }
    let installed = std::fs::read(agent(0)).unwrap();
    assert_ne!(installed, stand_in.as_bytes());
    assert_eq!(installed, std::fs::read(agent(1)).unwrap());
    assert_eq!(installed, std::fs::read(agent(2)).unwrap());
}
