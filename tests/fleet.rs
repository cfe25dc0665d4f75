//! Fleet operations against real sshd nodes on loopback: rerunning what
//! failed (`--nodes @failed`), rollouts (`--batch`, `--fail-fast`,
//! `--max-fail`).

mod support;

use std::process::Output;

use serde_json::Value;
use support::text;
use support::TestCluster;

fn run(cluster: &TestCluster, args: &[&str]) -> Output {
    cluster
        .distctl()
        .args(args)
        .output()
        .expect("cannot run distctl")
}

/// The nodes `--nodes EXPR` selects, as `distctl nodes` lists them.
fn selected(cluster: &TestCluster, expr: &str) -> Vec<String> {
    let out = run(cluster, &["--json", "nodes", "--nodes", expr]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    doc["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["node"].as_str().unwrap().to_string())
        .collect()
}

/// A shell test that is true on the node listening on `port`.
fn on_port(port: u16) -> String {
    format!("[ \"${{SSH_CONNECTION##* }}\" = {port} ]")
}

fn outcomes(out: &Output) -> Vec<(String, String)> {
    let rows: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", text(&out.stdout)));
    rows.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["node"].as_str().unwrap().to_string(),
                r["outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn the_last_commands_outcomes_select_the_nodes_to_rerun() {
    let mut cluster = TestCluster::start(4);
    cluster.stop_node(1);
    let fails_on_3 = format!("! {}", on_port(cluster.port(2)));
    let out = run(&cluster, &["exec", &fails_on_3]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("2 of 4 node(s) failed; rerun on them with --nodes @failed (node[2-3])"),
        "{err}"
    );
    assert_eq!(selected(&cluster, "@failed"), ["node2", "node3"]);
    assert_eq!(selected(&cluster, "@unreachable"), ["node2"]);
    assert_eq!(selected(&cluster, "@ok"), ["node1", "node4"]);
    assert_eq!(
        selected(&cluster, "@failed!@unreachable,node4"),
        ["node3", "node4"]
    );

    // Rerun on just those: only they run, and the record is this run's now.
    cluster.restart_node(1);
    let out = run(
        &cluster,
        &["exec", "--nodes", "@failed", "--", "echo", "again"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lines = text(&out.stdout);
    let mut ran: Vec<&str> = lines.lines().collect();
    ran.sort();
    assert_eq!(ran, ["node2: again", "node3: again"]);
    assert_eq!(selected(&cluster, "@ok"), ["node2", "node3"]);
    let out = run(&cluster, &["nodes", "--nodes", "@failed"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("no node selected"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn fail_fast_starts_no_node_after_a_failure_and_reports_the_rest_skipped() {
    let cluster = TestCluster::start(4);
    let fails_on_2 = format!("! {}", on_port(cluster.port(1)));
    let out = run(
        &cluster,
        &["--json", "exec", "--batch", "1", "--fail-fast", &fails_on_2],
    );
    assert_eq!(
        out.status.code(),
        Some(4),
        "the cause's exit code: {}",
        text(&out.stderr)
    );
    assert_eq!(
        outcomes(&out),
        [
            ("node1".to_string(), "ok".to_string()),
            ("node2".to_string(), "failed".to_string()),
            ("node3".to_string(), "skipped".to_string()),
            ("node4".to_string(), "skipped".to_string()),
        ]
    );
    let err = text(&out.stderr);
    assert!(
        err.contains("rerun on them with --nodes @failed,@skipped (node[2-4])"),
        "{err}"
    );
    assert_eq!(selected(&cluster, "@skipped"), ["node3", "node4"]);

    // Every node is skipped only after the budget: 2 failures allowed of 4 (50%).
    let fails_on_1_2 = format!(
        "! {{ {} || {}; }}",
        on_port(cluster.port(0)),
        on_port(cluster.port(1))
    );
    let out = run(
        &cluster,
        &[
            "--json",
            "exec",
            "--batch",
            "1",
            "--max-fail",
            "50%",
            &fails_on_1_2,
        ],
    );
    let got: Vec<String> = outcomes(&out).into_iter().map(|(_, o)| o).collect();
    assert_eq!(got, ["failed", "failed", "ok", "ok"]);
    let out = run(
        &cluster,
        &[
            "--json",
            "exec",
            "--batch",
            "1",
            "--max-fail",
            "1",
            &fails_on_1_2,
        ],
    );
    let got: Vec<String> = outcomes(&out).into_iter().map(|(_, o)| o).collect();
    assert_eq!(got, ["failed", "failed", "skipped", "skipped"]);
}

#[test]
fn batches_run_one_after_the_other() {
    let cluster = TestCluster::start(4);
    let log = cluster.dir.path().join("order.log");
    let cmd = format!(
        "p=${{SSH_CONNECTION##* }}; echo start $p >> {0}; sleep 0.3; echo end $p >> {0}",
        log.display()
    );
    let out = run(&cluster, &["exec", "--batch", "50%", &cmd]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let events: Vec<String> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(events.len(), 8, "{events:?}");
    // The first two events of the second batch come after both ends of the first.
    let first: Vec<&String> = events[..4].iter().collect();
    assert_eq!(
        first.iter().filter(|e| e.starts_with("end")).count(),
        2,
        "{events:?}"
    );
    for port in [cluster.port(0), cluster.port(1)] {
        assert!(first.contains(&&format!("end {port}")), "{events:?}");
    }
}

#[test]
fn an_unreachable_node_stops_a_fail_fast_setup_and_the_table_says_skipped_under_quiet() {
    let mut cluster = TestCluster::start(3);
    cluster.stop_node(0);
    let out = run(&cluster, &["-q", "setup", "--batch", "1", "--fail-fast"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    let skipped = table.lines().filter(|l| l.contains("skipped")).count();
    assert_eq!(skipped, 2, "{table}");
    assert!(table.contains("unreachable"), "{table}");
}

#[test]
fn commands_see_their_node_and_chunk_in_the_environment() {
    let cluster = TestCluster::start(3);
    let out = run(
        &cluster,
        &[
            "exec",
            "--nodes",
            "node[2-3]",
            "echo $DISTCTL_NODE $DISTCTL_NODE_INDEX $DISTCTL_NODE_COUNT; sh -c 'echo child $DISTCTL_NODE'",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mut lines: Vec<String> = text(&out.stdout).lines().map(String::from).collect();
    lines.sort();
    assert_eq!(
        lines,
        [
            "node2: child node2",
            "node2: node2 0 2",
            "node3: child node3",
            "node3: node3 1 2"
        ]
    );

    // `run --exec`: every chunk knows its index and the chunk count.
    let input = cluster.dir.path().join("in.txt");
    let data: String = (0..40).map(|i| format!("line {i:02}\n")).collect();
    std::fs::write(&input, data).unwrap();
    let out = cluster.distctl().args(["setup", "-q"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = cluster
        .distctl()
        .args(["run", "--quiet", "--chunk-size", "64", "--exec"])
        .arg("cat >/dev/null; echo $DISTCTL_CHUNK/$DISTCTL_CHUNK_COUNT $DISTCTL_NODE_COUNT ${DISTCTL_NODE%[0-9]}")
        .arg(&input)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lines: Vec<String> = text(&out.stdout).lines().map(String::from).collect();
    let count = lines.len();
    assert!(count > 2, "{lines:?}");
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(line, &format!("{i}/{count} 3 node"), "{lines:?}");
    }
}

#[test]
fn diff_prints_the_common_output_once_and_the_odd_node_as_a_diff() {
    let cluster = TestCluster::start(3);
    let cmd = format!(
        "echo same; if {}; then echo odd; else echo usual; fi; echo end",
        on_port(cluster.port(1))
    );
    let out = run(&cluster, &["exec", "--diff", &cmd]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "---------------\nnode[1,3]\n---------------\nsame\nusual\nend\n\
         --- node[1,3]\n+++ node2\n@@ -1,3 +1,3 @@\n same\n-usual\n+odd\n end\n"
    );
}

/// The cluster's inventory with node2 behind node1 (`jump = "node1"`),
/// optionally with node1's key replaced.
fn behind_node1(cluster: &TestCluster, node1_key: Option<&std::path::Path>) {
    cluster.write_inventory("");
    let text = std::fs::read_to_string(cluster.inventory()).unwrap();
    let mut text = text.replacen(
        "name = \"node2\"\n",
        "name = \"node2\"\njump = \"node1\"\n",
        1,
    );
    if let Some(key) = node1_key {
        text = text.replacen(
            "name = \"node1\"\n",
            &format!(
                "name = \"node1\"\nidentity_file = {:?}\n",
                key.display().to_string()
            ),
            1,
        );
    }
    std::fs::write(cluster.inventory(), text).unwrap();
}

#[test]
fn a_node_behind_a_jump_host_from_the_inventory_alone() {
    let mut cluster = TestCluster::start(2);
    behind_node1(&cluster, None);
    // No ~/.ssh/config: a HOME with nothing in it.
    let home = tempfile::tempdir().unwrap();
    let exec = |cluster: &TestCluster| {
        cluster
            .distctl()
            .env("HOME", home.path())
            .args(["exec", "--nodes", "node2", "echo", "via"])
            .output()
            .unwrap()
    };
    let out = exec(&cluster);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "node2: via\n");

    // It really goes through node1: with node1 down, node2 is unreachable,
    // and the reason names the jump host.
    cluster.stop_node(0);
    let out = exec(&cluster);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("node2: unreachable: jump host node1: connection refused"),
        "{err}"
    );
    cluster.restart_node(0);

    // The jump hop uses its own identity: a key node1 does not accept fails there.
    let other = cluster.dir.path().join("other_key");
    let st = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&other)
        .status()
        .unwrap();
    assert!(st.success());
    behind_node1(&cluster, Some(&other));
    let out = exec(&cluster);
    let err = text(&out.stderr);
    assert!(
        err.contains("jump host node1: authentication failed"),
        "{err}"
    );
}

/// The control sockets of persistent masters under a runtime directory.
fn persistent_sockets(runtime: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let Ok(dirs) = std::fs::read_dir(runtime.join("distctl")) else {
        return found;
    };
    for d in dirs
        .flatten()
        .filter(|d| d.file_name().to_string_lossy().starts_with("m-"))
    {
        for c in std::fs::read_dir(d.path()).unwrap().flatten() {
            let sock = c.path().join("master");
            if sock.exists() {
                found.push(sock);
            }
        }
    }
    found.sort();
    found
}

/// `ssh -O check` on a control socket: the master's pid when it answers.
fn master_pid(sock: &std::path::Path) -> Option<u32> {
    let out = std::process::Command::new("ssh")
        .args(["-O", "check", "-S"])
        .arg(sock)
        .arg("unused")
        .output()
        .unwrap();
    let err = text(&out.stderr);
    out.status.success().then(|| {
        err.split("pid=")
            .nth(1)
            .and_then(|r| r.split(')').next())
            .and_then(|p| p.parse().ok())
            .expect("ssh -O check names the master's pid")
    })
}

fn warm(out: &Output) -> Vec<bool> {
    assert!(out.status.success(), "{}", text(&out.stderr));
    let rows: Value = serde_json::from_slice(&out.stdout).unwrap();
    rows.as_array()
        .unwrap()
        .iter()
        .map(|r| r["warm"].as_bool().unwrap())
        .collect()
}

#[test]
fn persist_leaves_masters_up_for_the_next_invocation_until_disconnect() {
    let cluster = TestCluster::start(2);
    let runtime = tempfile::Builder::new()
        .prefix("r")
        .tempdir_in("/tmp")
        .unwrap();
    let distctl = |args: &[&str]| {
        cluster
            .distctl()
            .env("XDG_RUNTIME_DIR", runtime.path())
            .args(args)
            .output()
            .unwrap()
    };
    // Default: no master outlives the command.
    let out = distctl(&["exec", "true"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(persistent_sockets(runtime.path()).is_empty());

    let out = distctl(&["--persist", "60s", "exec", "true"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let sockets = persistent_sockets(runtime.path());
    assert_eq!(sockets.len(), 2, "{sockets:?}");
    let pids: Vec<u32> = sockets
        .iter()
        .map(|s| master_pid(s).expect("alive"))
        .collect();

    // The next invocation rides them (the option also goes after the command).
    assert_eq!(
        warm(&distctl(&["--json", "status", "--persist", "60s"])),
        [true, true]
    );
    assert_eq!(
        persistent_sockets(runtime.path()),
        sockets,
        "the same masters"
    );

    // A master that died is replaced without a word.
    unsafe { libc::kill(pids[0] as i32, libc::SIGKILL) };
    support::wait_until(
        "the master to die",
        std::time::Duration::from_secs(5),
        || master_pid(&sockets[0]).is_none(),
    );
    let got = warm(&distctl(&["--json", "--persist", "60s", "status"]));
    assert_eq!(got.iter().filter(|w| **w).count(), 1, "{got:?}");
    assert_eq!(persistent_sockets(runtime.path()).len(), 2);

    // disconnect closes them all.
    let out = distctl(&["disconnect"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout).matches("closed").count(),
        2,
        "{}",
        text(&out.stdout)
    );
    support::wait_until(
        "the masters to exit",
        std::time::Duration::from_secs(5),
        || persistent_sockets(runtime.path()).is_empty(),
    );
    assert_eq!(warm(&distctl(&["--json", "status"])), [false, false]);
}

/// `connect_timeout` counts from when a node's own handshake starts, not from
/// when it joined the queue: with one handshake at a time, each made to take
/// at least half a second (a ProxyCommand that waits before it connects, and
/// ssh's timeout covers the wait for the server's greeting), the last of 12
/// nodes waits longer than its 3 s timeout and is still reached.
#[test]
fn a_node_waiting_for_its_handshake_turn_is_not_timed_out() {
    let cluster = TestCluster::start(12);
    let slow_proxy = "ProxyCommand=bash -c 'sleep 0.5; exec 3<>/dev/tcp/127.0.0.1/%p; \
                      cat <&3 & exec cat >&3'";
    let inventory = std::fs::read_to_string(cluster.inventory())
        .unwrap()
        .replace(
            "connect_timeout = \"5s\"",
            &format!("connect_timeout = \"3s\"\nssh_options = [{slow_proxy:?}]"),
        );
    std::fs::write(cluster.inventory(), inventory).unwrap();
    let t0 = std::time::Instant::now();
    let out = run(&cluster, &["--json", "exec", "--fanout", "1", "true"]);
    let took = t0.elapsed();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let got = outcomes(&out);
    assert_eq!(got.len(), 12);
    assert!(got.iter().all(|(_, o)| o == "ok"), "{got:?}");
    // The queue outlasted the timeout (12 × 0.5 s), or this test shows nothing.
    assert!(took > std::time::Duration::from_secs(3), "took {took:?}");
}
