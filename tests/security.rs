//! The threat model (README "Threat model") tried as an attacker would: a
//! second run on the same output, a crash behind the journal's back, a
//! hostile agent, local resource exhaustion, hung remote commands, shared
//! workdirs, leftover ssh masters. Real sshd nodes on loopback.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::Duration;

use support::TestCluster;

/// 2 MiB of text whose chunks each take a while on a node: long enough to
/// start a second run while the first is working.
fn slow_input(dir: &Path) -> (PathBuf, Vec<u8>) {
    let input = dir.join("in.txt");
    let data: String = (0..100_000).map(|i| format!("line {i} abc\n")).collect();
    std::fs::write(&input, &data).unwrap();
    (input, data.to_uppercase().into_bytes())
}

const SLOW: &[&str] = &["--exec", "sleep 0.3; tr a-z A-Z", "--chunk-size", "128K"];

fn journal_of(out: &Path) -> PathBuf {
    let name = out.file_name().unwrap().to_string_lossy();
    out.with_file_name(format!(".{name}.distctl-run/journal.jsonl"))
}

/// Start the slow job writing `out`; return once a chunk is journaled.
fn start_slow_run(cluster: &TestCluster, input: &Path, out: &Path) -> Child {
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
    let journal = journal_of(out);
    support::wait_until("a finished chunk", Duration::from_secs(30), || {
        std::fs::read_to_string(&journal).is_ok_and(|j| j.lines().count() >= 2)
    });
    child
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn a_second_run_on_the_same_output_is_refused_and_the_first_completes() {
    let cluster = TestCluster::start(2);
    let tmp = tempfile::tempdir().unwrap();
    let (input, want) = slow_input(tmp.path());
    let out = tmp.path().join("out.txt");
    let first = start_slow_run(&cluster, &input, &out);
    let second = cluster
        .distctl()
        .args(["run", "--quiet"])
        .arg(&input)
        .args(["--op", "lower", "-o"])
        .arg(&out)
        .output()
        .unwrap();
    let err = stderr(&second);
    assert_eq!(second.status.code(), Some(2), "{err}");
    assert!(
        err.contains("out.txt") && err.contains(&format!("PID {}", first.id())),
        "names the output and the other run: {err}"
    );
    let got = first.wait_with_output().unwrap();
    assert_eq!(got.status.code(), Some(0), "{}", stderr(&got));
    assert!(
        std::fs::read(&out).unwrap() == want,
        "the first run's output"
    );
    let left: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left.len(), 2, "only input and output are left: {left:?}");
}

/// A crash (or someone) zero-fills `output.part` behind the journal's back:
/// the lengths still match, the hashes do not, so `--resume` redoes those
/// chunks instead of splicing zeros into the output.
#[test]
fn resume_redoes_results_that_were_zero_filled_behind_its_back() {
    let cluster = TestCluster::start(2);
    let tmp = tempfile::tempdir().unwrap();
    let (input, want) = slow_input(tmp.path());
    let out = tmp.path().join("out.txt");
    let run = start_slow_run(&cluster, &input, &out);
    let journal = journal_of(&out);
    let part = journal.with_file_name("output.part");
    support::wait_until("a result in output.part", Duration::from_secs(30), || {
        std::fs::read_to_string(&journal).is_ok_and(|j| j.contains("\"prefix\""))
    });
    // SAFETY: kill(2) on the distctl child this test started.
    unsafe { libc::kill(run.id() as i32, libc::SIGINT) };
    let got = run.wait_with_output().unwrap();
    assert_eq!(got.status.code(), Some(3), "{}", stderr(&got));
    let len = std::fs::metadata(&part).unwrap().len();
    assert!(len > 0, "some results were kept");
    std::fs::write(&part, vec![0u8; len as usize]).unwrap();

    let got = cluster
        .distctl()
        .args(["--json", "run", "--quiet", "--resume"])
        .arg(&input)
        .args(SLOW)
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(got.status.code(), Some(0), "{}", stderr(&got));
    assert!(std::fs::read(&out).unwrap() == want, "no zeros spliced in");
    let s: serde_json::Value = serde_json::from_slice(&got.stdout).unwrap();
    assert_eq!(
        s["chunks_run"].as_u64().unwrap() + s["chunks_resumed"].as_u64().unwrap(),
        s["chunks"].as_u64().unwrap()
    );
}

/// Runs the real agent (moved to `worker-agent.real`) with `--chunk N+1`.
const WRONG_CHUNK: &str = r#"#!/bin/sh
n=$#; next=
for a in "$@"; do
  if [ -n "$next" ]; then a=$((a + 1)); next=; fi
  [ "$a" = --chunk ] && next=1
  set -- "$@" "$a"
done
shift "$n"
exec "$0.real" "$@"
"#;

/// Runs the real agent and changes result bytes on the way (same length).
const CHANGED_BYTES: &str = r#"#!/bin/sh
"$0.real" "$@" | LC_ALL=C sed 's/LINE/LIne/g'
"#;

/// Runs the real agent and changes the first digit of the input hash in its
/// `X` frame (same length): it claims to have read other bytes than distctl
/// sent.
const OTHER_INPUT_HASH: &str = r#"#!/bin/sh
"$0.real" "$@" | LC_ALL=C sed 's/"input_hash":"0/"input_hash":"1/; t; s/"input_hash":"[1-9a-f]/"input_hash":"0/'
"#;

/// A compromised node1 whose installed agent answers for another chunk,
/// changes the bytes it sends, or reports another input hash than that of
/// the bytes distctl read and sent (the wrapper passes `self-sha256` on to
/// the real agent, and the node's `sha256sum` lies too, so distctl takes it
/// for the agent it installed): every such answer is refused and
/// the chunk runs again on node2; the output is exactly right.
#[test]
fn a_hostile_agent_answering_for_another_chunk_or_with_other_bytes_is_refused() {
    let cluster = TestCluster::start(2);
    let setup = cluster.distctl().arg("setup").output().unwrap();
    assert!(setup.status.success(), "{}", stderr(&setup));
    let agent = cluster.workdir(0).join("bin/worker-agent");
    let sum = std::process::Command::new("sha256sum")
        .arg(&agent)
        .output()
        .unwrap();
    let sha = String::from_utf8(sum.stdout).unwrap()[..64].to_string();
    std::fs::rename(&agent, agent.with_file_name("worker-agent.real")).unwrap();
    cluster.node_tool(
        0,
        "sha256sum",
        &format!("#!/bin/sh\ncat >/dev/null\necho '{sha}  -'\n"),
    );

    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in.txt");
    let data: String = (0..60_000).map(|i| format!("line {i} abc\n")).collect();
    std::fs::write(&input, &data).unwrap();
    // node2 connects only once node1 has started a chunk (its wrapper opens
    // the gate): otherwise a loaded machine can let node2 do every chunk
    // before node1 has joined, and node1 answers nothing.
    let gate = tmp.path().join("gate");
    cluster.gate_nodes(&[(2, &gate, true)]);
    let opens_gate = format!(
        "#!/bin/sh\ncase \" $* \" in *\" --framed \"*) : > '{}';; esac\n",
        gate.display()
    );
    for (wrapper, refused, compress) in [
        (WRONG_CHUNK, "not chunk", "auto"),
        (CHANGED_BYTES, "hash", "auto"),
        // Compressing, distctl reads the chunk itself and hashes it.
        (OTHER_INPUT_HASH, "input hash mismatch", "zstd"),
    ] {
        let _ = std::fs::remove_file(&gate);
        let wrapper = wrapper.replacen("#!/bin/sh\n", &opens_gate, 1);
        std::fs::write(&agent, wrapper).unwrap();
        std::fs::set_permissions(&agent, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let out = tmp.path().join("out.txt");
        let got = cluster
            .distctl()
            .arg("run")
            .arg(&input)
            .args([
                "--op",
                "upper",
                "--chunk-size",
                "64K",
                "--compress",
                compress,
            ])
            .arg("-o")
            .arg(&out)
            .output()
            .unwrap();
        let err = stderr(&got);
        assert!(matches!(got.status.code(), Some(0 | 1)), "{err}");
        assert!(
            err.contains("on node1") && err.contains(refused),
            "node1's answers are refused ({refused}): {err}"
        );
        assert!(
            std::fs::read(&out).unwrap() == data.to_uppercase().as_bytes(),
            "the output is node2's, right"
        );
    }
}

/// Out of file descriptors on the controller (`ulimit -n` low, hard limit
/// too, so distctl cannot raise it): the run stops with exit 3 naming the
/// local problem, and no node is blamed for it.
#[test]
fn local_fd_exhaustion_is_the_controllers_fault_not_a_nodes() {
    let cluster = TestCluster::start(3);
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in.txt");
    let data: String = (0..100_000).map(|i| format!("line {i} abc\n")).collect();
    std::fs::write(&input, &data).unwrap();
    let got = std::process::Command::new("sh")
        .arg("-c")
        .arg("ulimit -n 30; exec \"$@\"")
        .arg("sh")
        .arg(support::distctl_bin())
        .arg("--inventory")
        .arg(cluster.inventory())
        .args(["--json", "run"])
        .arg(&input)
        .args(["--exec", "sleep 0.2; cat", "--chunk-size", "64K", "-o"])
        .arg(tmp.path().join("out.txt"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = stderr(&got);
    assert_eq!(got.status.code(), Some(3), "{err}");
    assert!(
        err.to_lowercase().contains("too many open files"),
        "names the problem: {err}"
    );
    assert!(err.contains("local"), "says it is local: {err}");
    for blame in ["taking node", "unreachable", "skipping"] {
        assert!(!err.contains(blame), "no node is blamed ({blame}): {err}");
    }
}

/// `distctl --inventory … COMMAND` with both open-file limits at `limit`
/// (so distctl cannot raise its own).
fn under_fd_limit(limit: u32, cluster: &TestCluster, command: &[&str]) -> std::process::Output {
    std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit -n {limit}; exec \"$@\""))
        .arg("sh")
        .arg(support::distctl_bin())
        .arg("--inventory")
        .arg(cluster.inventory())
        .args(command)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// A limit so low that the runtime cannot even start its signal handling
/// (6 and 7 made it panic): every command stops with exit 3 and one line
/// naming the local problem and the limit, never a panic.
#[test]
fn a_tiny_fd_limit_is_a_clear_local_error_not_a_panic() {
    let cluster = TestCluster::start(1);
    for limit in [5, 6, 7, 9] {
        for command in [&["nodes"][..], &["status"], &["exec", "true"]] {
            let got = under_fd_limit(limit, &cluster, command);
            let err = stderr(&got);
            let what = format!("{command:?} under ulimit -n {limit}");
            assert_eq!(got.status.code(), Some(3), "{what}: {err}");
            assert!(!err.contains("panicked"), "{what}: {err}");
            assert_eq!(err.trim_end().lines().count(), 1, "{what}: one line: {err}");
            assert!(
                err.contains("a local problem on this machine")
                    && err.to_lowercase().contains("too many open files"),
                "{what} names the local problem: {err}"
            );
        }
    }
}

/// The per-node commands too: out of file descriptors while connecting (a
/// limit of 12) or while opening channels (16), `exec`, `status` and `setup`
/// stop with exit 3 naming the local problem. No node is blamed, and none is
/// recorded as failed for `--nodes @failed`.
#[test]
fn per_node_commands_blame_no_node_for_local_fd_exhaustion() {
    let cluster = TestCluster::start(3);
    for limit in [12, 16] {
        for command in [&["exec", "true"][..], &["status"], &["setup"]] {
            let got = under_fd_limit(limit, &cluster, command);
            let err = stderr(&got);
            let what = format!("{command:?} under ulimit -n {limit}");
            assert_eq!(got.status.code(), Some(3), "{what}: {err}");
            assert!(
                err.contains("a local problem on this machine")
                    && err.to_lowercase().contains("too many open files"),
                "{what} names the local problem: {err}"
            );
            for blame in ["node1", "node2", "node3", "unreachable", "lost"] {
                assert!(
                    !err.contains(blame),
                    "{what} blames no node ({blame}): {err}"
                );
            }
        }
    }
    // Nothing was recorded against the nodes.
    let got = cluster
        .distctl()
        .args(["exec", "--nodes", "@failed", "true"])
        .output()
        .unwrap();
    let err = stderr(&got);
    assert_eq!(got.status.code(), Some(2), "{err}");
    assert!(err.contains("no command has recorded outcomes"), "{err}");
}

/// A hung `df` (a stale NFS mount) on node1: `status` finishes within the
/// step bound, reports node1 timed out and node2 complete.
#[test]
fn a_hung_remote_command_is_reported_within_the_step_timeout() {
    let cluster = TestCluster::start(2);
    cluster.node_tool(0, "df", "#!/bin/sh\nexec sleep 600\n");
    let t0 = std::time::Instant::now();
    let got = cluster
        .distctl()
        .args(["--json", "--step-timeout", "4s", "status"])
        .output()
        .unwrap();
    let took = t0.elapsed();
    assert!(took < Duration::from_secs(20), "status took {took:?}");
    let err = stderr(&got);
    assert_eq!(
        got.status.code(),
        Some(4),
        "timed-out counts as failed: {err}"
    );
    let rows: serde_json::Value = serde_json::from_slice(&got.stdout).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    let why = rows[0]["error"].as_str().unwrap_or_default();
    assert!(why.contains("timed out after 4s"), "{rows:?}");
    assert_eq!(rows[1]["error"], serde_json::Value::Null, "{rows:?}");
    assert!(rows[1]["disk_total_gib"].is_number(), "node2 is complete");
}

/// A workdir (or its `bin/`) that another user could write is refused, per
/// node, with the reason; the other nodes go on.
#[test]
fn a_workdir_writable_by_others_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let cluster = TestCluster::start(2);
    let mode = |p: &Path, m: u32| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m));
    let distctl = |args: &[&str]| {
        let got = cluster.distctl().arg("--json").args(args).output().unwrap();
        let out = String::from_utf8_lossy(&got.stdout).into_owned();
        (got.status.code(), out + &stderr(&got))
    };
    std::fs::create_dir_all(cluster.workdir(0).join("bin")).unwrap();
    mode(cluster.workdir(0), 0o777).unwrap();
    let (code, out) = distctl(&["setup"]);
    assert_eq!(code, Some(4), "{out}");
    assert!(
        out.contains("refusing") && out.contains("writable by group/others"),
        "{out}"
    );
    assert!(
        !cluster.workdir(0).join("bin/worker-agent").exists(),
        "nothing installed there"
    );
    assert!(cluster.workdir(1).join("bin/worker-agent").exists());

    // The workdir is fine again, its bin/ is not.
    mode(cluster.workdir(0), 0o755).unwrap();
    mode(&cluster.workdir(0).join("bin"), 0o777).unwrap();
    let (code, out) = distctl(&["setup"]);
    assert_eq!(code, Some(4), "{out}");
    assert!(out.contains("/bin: not owned by"), "{out}");

    mode(cluster.workdir(0), 0o777).unwrap();
    let src = tempfile::tempdir().unwrap();
    std::fs::write(src.path().join("f"), "x").unwrap();
    let (_, out) = distctl(&["sync", src.path().to_str().unwrap()]);
    assert!(out.contains("refusing"), "sync refuses it too: {out}");
    assert!(
        !cluster.workdir(0).join("f").exists(),
        "nothing synced there"
    );
}

/// A workdir made writable by others after its agent was installed: a run
/// starts no agent there (anyone could have put another in its place). The
/// first chunk's guard refuses the workdir before the agent would start,
/// the probe names the reason, the node is skipped, and the other node
/// does every chunk. The installed agent here is a wrapper that leaves a
/// mark when asked to run a chunk: it never is.
#[test]
fn a_run_starts_no_agent_in_a_workdir_others_can_write() {
    use std::os::unix::fs::PermissionsExt;
    let cluster = TestCluster::start(2);
    let setup = cluster.distctl().arg("setup").output().unwrap();
    assert!(setup.status.success(), "{}", stderr(&setup));
    let tmp = tempfile::tempdir().unwrap();
    let mark = tmp.path().join("a-chunk-ran");
    let agent = cluster.workdir(0).join("bin/worker-agent");
    std::fs::rename(&agent, agent.with_file_name("worker-agent.real")).unwrap();
    let wrapper = format!(
        "#!/bin/sh\ncase \"$1\" in op|exec) : > '{}';; esac\nexec \"$0.real\" \"$@\"\n",
        mark.display()
    );
    std::fs::write(&agent, wrapper).unwrap();
    std::fs::set_permissions(&agent, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(cluster.workdir(0), std::fs::Permissions::from_mode(0o777)).unwrap();

    let input = tmp.path().join("in.txt");
    let data: String = (0..40_000).map(|i| format!("line {i}\n")).collect();
    std::fs::write(&input, &data).unwrap();
    let out = tmp.path().join("out.txt");
    let got = cluster
        .distctl()
        .args([
            "--json",
            "run",
            "--op",
            "upper",
            "--chunk-size",
            "64K",
            "-o",
        ])
        .arg(&out)
        .arg(&input)
        .output()
        .unwrap();
    let err = stderr(&got);
    assert_eq!(got.status.code(), Some(1), "a node was skipped: {err}");
    assert!(
        err.contains("refusing") && err.contains("writable by group/others"),
        "{err}"
    );
    assert!(!mark.exists(), "no chunk ran in the open workdir");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), data.to_uppercase());
    let summary: serde_json::Value = serde_json::from_slice(&got.stdout).unwrap();
    assert_eq!(
        summary["unreachable"],
        serde_json::json!(["node1"]),
        "{summary}"
    );
}

/// No ssh master outlives the command: after success, after an error, after
/// a signal and after a second signal (which exits at once), by PID.
#[test]
fn ssh_masters_never_outlive_the_command() {
    let cluster = TestCluster::start(2);
    let tmp = tempfile::tempdir().unwrap();
    let (input, _) = slow_input(tmp.path());
    let gone = |what: &str| {
        support::wait_until(
            &format!("no ssh master left after {what}"),
            // Well under the masters' own 30 s ControlPersist, so a master
            // left behind still shows; a loaded machine has time to reap.
            Duration::from_secs(10),
            || cluster.ssh_clients().is_empty(),
        )
    };
    let ok = cluster.distctl().arg("status").output().unwrap();
    assert!(ok.status.success(), "{}", stderr(&ok));
    gone("status");
    let failed = cluster
        .distctl()
        .args(["run", "--quiet", "--retries", "0"])
        .arg(&input)
        .args(["--exec", "exit 7"])
        .output()
        .unwrap();
    assert_eq!(failed.status.code(), Some(3), "{}", stderr(&failed));
    gone("a failed run");
    for signals in [1, 2] {
        let out = tmp.path().join(format!("out{signals}.txt"));
        let run = start_slow_run(&cluster, &input, &out);
        for i in 0..signals {
            if i > 0 {
                // Two signals, not one coalesced pending signal.
                std::thread::sleep(Duration::from_millis(100));
            }
            // SAFETY: kill(2) on the distctl child this test started.
            unsafe { libc::kill(run.id() as i32, libc::SIGTERM) };
        }
        let got = run.wait_with_output().unwrap();
        assert_eq!(got.status.code(), Some(3), "{}", stderr(&got));
        gone(&format!("{signals} SIGTERM"));
    }
}

/// `exec --outdir` never writes through a link planted under its temporary
/// name: the victim is untouched, the output is a plain file.
#[test]
fn exec_outdir_does_not_follow_planted_symlinks() {
    let cluster = TestCluster::start(1);
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let victim = tmp.path().join("victim");
    std::fs::write(&victim, "keep").unwrap();
    std::os::unix::fs::symlink(&victim, out.join(".node1.out.partial")).unwrap();
    let got = cluster
        .distctl()
        .args(["exec", "--outdir"])
        .arg(&out)
        .args(["--", "echo hi"])
        .output()
        .unwrap();
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
    assert_ne!(
        got.status.code(),
        Some(0),
        "the node's output could not be written safely"
    );
    assert!(
        stderr(&got).contains("node1") || String::from_utf8_lossy(&got.stdout).contains("node1"),
        "{}",
        stderr(&got)
    );
}
