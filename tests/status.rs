//! `distctl status` and `distctl nodes` against real sshd nodes on loopback.

mod support;

use std::fs;
use std::process::Output;

use serde_json::Value;
use support::text;
use support::{distctl_bin, TestCluster};

fn run(cmd: &mut std::process::Command) -> Output {
    cmd.output().expect("cannot run distctl")
}

fn status_json(cluster: &TestCluster, extra: &[&str]) -> (i32, Vec<Value>) {
    let out = run(cluster.distctl().args(extra).args(["status", "--json"]));
    let rows: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("bad JSON ({e}): {}{}", text(&out.stdout), text(&out.stderr)));
    (out.status.code().unwrap(), rows.as_array().unwrap().clone())
}

#[test]
fn status_reports_every_node() {
    let cluster = TestCluster::start(3);
    let (code, rows) = status_json(&cluster, &[]);
    assert_eq!(code, 0);
    assert_eq!(rows.len(), 3);
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(row["node"], format!("node{}", i + 1));
        assert_eq!(row["reachable"], true, "{row}");
        assert!(row["latency_ms"].as_f64().unwrap() > 0.0);
        assert!(row["uptime_s"].as_u64().unwrap() > 0);
        let (used, total) = (
            row["mem_used_mib"].as_u64().unwrap(),
            row["mem_total_mib"].as_u64().unwrap(),
        );
        assert!(used <= total && total > 0);
        assert!(row["disk_total_gib"].as_f64().unwrap() > 0.0);
        assert_eq!(row["agent"], "none", "no agent before setup");
        for load in ["load1", "load5", "load15"] {
            assert!(row[load].as_f64().unwrap() >= 0.0, "{row}");
        }
        assert_eq!(row["outcome"], "ok");
        assert!(row["error"].is_null());
    }
    // The table for people names every node once.
    let out = run(cluster.distctl().arg("status"));
    assert_eq!(out.status.code(), Some(0));
    let table = text(&out.stdout);
    assert!(table.starts_with("NODE"));
    for n in ["node1", "node2", "node3"] {
        assert_eq!(
            table.lines().filter(|l| l.starts_with(n)).count(),
            1,
            "{table}"
        );
    }
}

#[test]
fn a_stopped_node_is_unreachable_and_hides_nothing() {
    let mut cluster = TestCluster::start(3);
    let before = cluster.node_pids(1);
    assert!(!before.is_empty());
    cluster.stop_node(1);
    for pid in before {
        assert!(
            gone(pid),
            "process {pid} of the stopped node is still running"
        );
    }
    let (code, rows) = status_json(&cluster, &[]);
    assert_eq!(code, 1, "some node unreachable → exit 1");
    assert_eq!(rows[0]["reachable"], true);
    assert_eq!(rows[2]["reachable"], true);
    assert_eq!(rows[1]["reachable"], false);
    assert!(
        rows[1]["error"]
            .as_str()
            .unwrap()
            .contains("connection refused"),
        "{}",
        rows[1]
    );
    // Table: the dead node gets one line with its reason; the others still show.
    let out = run(cluster.distctl().arg("status"));
    assert_eq!(out.status.code(), Some(1));
    let table = text(&out.stdout);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("node2") && l.contains("unreachable: connection refused")),
        "{table}"
    );
    assert!(text(&out.stderr).contains("1 of 3 node(s) unreachable: node2"));
}

/// `--json` keys are the README's, in its order, and the figures are the
/// ones `collect` measures with the same probe.
#[test]
fn status_json_keys_and_figures_match_collect() {
    let cluster = TestCluster::start(1);
    let (code, rows) = status_json(&cluster, &[]);
    assert_eq!(code, 0);
    let readme = [
        "node",
        "host",
        "reachable",
        "latency_ms",
        "uptime_s",
        "load1",
        "load5",
        "load15",
        "cores",
        "mem_used_mib",
        "mem_total_mib",
        "disk_used_gib",
        "disk_total_gib",
        "agent",
        "sync",
        "warm",
        "outcome",
        "detail",
        "error",
    ];
    let mut keys: Vec<&str> = rows[0]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut sorted = readme.to_vec();
    keys.sort();
    sorted.sort();
    assert_eq!(keys, sorted);
    // In the README's order in the printed text.
    let out = run(cluster.distctl().args(["status", "--json"]));
    let printed = text(&out.stdout);
    let at: Vec<usize> = readme
        .iter()
        .map(|k| printed.find(&format!("\"{k}\":")).unwrap())
        .collect();
    assert!(at.windows(2).all(|w| w[0] < w[1]), "{printed}");
    assert!(rows[0]["cores"].as_u64().unwrap() >= 1);
    let out = run(cluster.distctl().args([
        "collect",
        "--agentless",
        "--format",
        "json",
        "--sample-interval",
        "100ms",
    ]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let sample: Value = serde_json::from_slice(&out.stdout).unwrap();
    for exact in ["cores", "mem_total_mib", "disk_total_gib"] {
        assert_eq!(rows[0][exact], sample[exact], "{exact}");
    }
}

/// SIGKILL is asynchronous: give a killed process a moment to die.
fn gone(pid: u32) -> bool {
    for _ in 0..100 {
        if !support::process_alive(pid) {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    false
}

#[test]
fn changed_host_key_is_refused_under_strict_checking() {
    let mut cluster = TestCluster::start(2);
    cluster.rekey_node(0);
    let (code, rows) = status_json(&cluster, &[]);
    assert_eq!(code, 1);
    assert_eq!(rows[0]["reachable"], false);
    let err = rows[0]["error"].as_str().unwrap();
    assert!(err.contains("host key has CHANGED"), "{err}");
    assert_eq!(rows[1]["reachable"], true);
}

#[test]
fn unknown_host_key_refused_strict_and_learned_with_accept_new() {
    let cluster = TestCluster::start(1);
    fs::write(&cluster.known_hosts, "").unwrap();
    let (code, rows) = status_json(&cluster, &[]);
    assert_eq!(code, 1);
    assert!(
        rows[0]["error"]
            .as_str()
            .unwrap()
            .contains("host key unknown"),
        "{}",
        rows[0]
    );

    let inv = fs::read_to_string(cluster.inventory()).unwrap();
    fs::write(
        cluster.inventory(),
        inv.replace("\"strict\"", "\"accept-new\""),
    )
    .unwrap();
    let (code, rows) = status_json(&cluster, &[]);
    assert_eq!(code, 0, "{rows:?}");
    // The key was learned: strict checking now accepts the node.
    let learned = fs::read_to_string(&cluster.known_hosts).unwrap();
    assert!(learned.contains("ssh-ed25519"), "{learned}");
    fs::write(cluster.inventory(), inv).unwrap();
    let (code, rows) = status_json(&cluster, &[]);
    assert_eq!(code, 0, "{rows:?}");
}

#[test]
fn selection_flags_pick_nodes() {
    let cluster = TestCluster::start(3);
    let inv = fs::read_to_string(cluster.inventory()).unwrap();
    // Label node3 only.
    let labelled = inv.replacen(
        "name = \"node3\"",
        "name = \"node3\"\nlabels = [\"gpu\", \"big\"]",
        1,
    );
    fs::write(cluster.inventory(), labelled).unwrap();
    let names = |args: &[&str]| -> (i32, Vec<String>) {
        let out = run(cluster.distctl().args(args).args(["nodes", "--json"]));
        let code = out.status.code().unwrap();
        if code != 0 {
            return (code, vec![text(&out.stderr)]);
        }
        let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
        let names = doc["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["node"].as_str().unwrap().to_string())
            .collect();
        (code, names)
    };
    assert_eq!(names(&[]).1, ["node1", "node2", "node3"]);
    assert_eq!(names(&["--nodes", "node[1-2]"]).1, ["node1", "node2"]);
    assert_eq!(names(&["--exclude", "node2"]).1, ["node1", "node3"]);
    assert_eq!(names(&["--label", "gpu", "--label", "big"]).1, ["node3"]);
    let (code, msg) = names(&["--label", "gpu", "--nodes", "node1"]);
    assert_eq!(code, 2);
    assert!(msg[0].contains("no node selected"), "{msg:?}");
    let (code, msg) = names(&["--nodes", "node9"]);
    assert_eq!(code, 2);
    assert!(msg[0].contains("no node named 'node9'"), "{msg:?}");
    // status honours the selection too.
    let (code, rows) = status_json(&cluster, &["--nodes", "node2"]);
    assert_eq!(code, 0);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["node"], "node2");
}

/// Each malformed inventory: exit 2, one line naming file and line.
#[test]
fn malformed_inventories_name_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&str, &str, &str)] = &[
        (
            "[[nodes]]\nname = \"a\"\ncolour = \"red\"\n",
            ":3:",
            "unknown field `colour`",
        ),
        (
            "[[nodes]]\nname = \"a\"\n\n[[nodes]]\nname = \"a\"\n",
            ":5:",
            "duplicate node name 'a'",
        ),
        (
            "nodes = []\n\n[defaults]\nuser = \"x\"\n",
            ":1:",
            "node list is empty",
        ),
        ("[[nodes]]\nname = \"a\"\nport = 0\n", ":3:", "bad port 0"),
        (
            "[[nodes]]\nname = \"web[9-3]\"\n",
            ":2:",
            "expands to nothing",
        ),
        (
            "[[nodes]]\nname = \"a\"\nhost_key_checking = \"yes\"\n",
            ":3:",
            "bad host_key_checking",
        ),
        ("[[nodes]\nname = \"a\"\n", ":1:", ""),
    ];
    for (i, (toml, line, msg)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("bad{i}.toml"));
        fs::write(&path, toml).unwrap();
        let out = run(std::process::Command::new(distctl_bin())
            .arg("--inventory")
            .arg(&path)
            .arg("status"));
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "case {i}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
        assert!(
            err.contains(&format!("bad{i}.toml{line}")),
            "case {i}: {err}"
        );
        assert!(err.contains(msg), "case {i}: {err}");
        assert!(out.stdout.is_empty());
    }
    // Selecting no node is a usage error too.
    let good = dir.path().join("good.toml");
    fs::write(&good, "[[nodes]]\nname = \"a\"\nlabels = [\"x\"]\n").unwrap();
    let out = run(std::process::Command::new(distctl_bin())
        .arg("--inventory")
        .arg(&good)
        .args(["--label", "y", "status"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("no node selected"));
}

#[test]
fn builtin_local_node_without_inventory() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(std::process::Command::new(distctl_bin())
        .current_dir(dir.path())
        .env_remove("DISTCTL_INVENTORY")
        .env("HOME", dir.path())
        .args(["status", "--json"]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let rows: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows[0]["node"], "local");
    assert_eq!(rows[0]["reachable"], true);
    let out = run(std::process::Command::new(distctl_bin())
        .current_dir(dir.path())
        .env("HOME", dir.path())
        .env_remove("DISTCTL_INVENTORY")
        .arg("nodes"));
    assert!(text(&out.stdout).contains("local"));
    assert!(text(&out.stderr).contains("built-in local node"));
}

#[test]
fn inventory_lookup_order_env_then_cwd() {
    let cluster = TestCluster::start(1);
    let dir = tempfile::tempdir().unwrap();
    // ./cluster.toml is found when nothing else is given.
    fs::copy(cluster.inventory(), dir.path().join("cluster.toml")).unwrap();
    let out = run(std::process::Command::new(distctl_bin())
        .current_dir(dir.path())
        .env_remove("DISTCTL_INVENTORY")
        .args(["nodes", "--json"]));
    assert!(
        text(&out.stdout).contains("\"node1\""),
        "{}",
        text(&out.stderr)
    );
    // $DISTCTL_INVENTORY wins over ./cluster.toml.
    let other = dir.path().join("other.toml");
    fs::write(&other, "[[nodes]]\nname = \"envnode\"\n").unwrap();
    let out = run(std::process::Command::new(distctl_bin())
        .current_dir(dir.path())
        .env("DISTCTL_INVENTORY", &other)
        .args(["nodes", "--json"]));
    assert!(text(&out.stdout).contains("\"envnode\""));
}

#[test]
fn example_inventory_parses() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("cluster.example.toml");
    let out = run(std::process::Command::new(distctl_bin())
        .arg("--inventory")
        .arg(&path)
        .args(["nodes", "--json"]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let nodes = doc["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 1 + 17 + 1);
    assert_eq!(nodes[1]["node"], "node01");
    assert_eq!(nodes[1]["host"], "10.0.1.1");
    assert_eq!(nodes[17]["node"], "node20");
    assert_eq!(nodes[18]["port"], 2222);
}

/// `ssh_options` reach ssh: an alias that known_hosts does not hold makes the
/// strict host-key check fail for that node only.
#[test]
fn ssh_options_are_passed_to_ssh() {
    let cluster = TestCluster::start(2);
    let inv = fs::read_to_string(cluster.inventory()).unwrap();
    let with_alias = inv.replacen(
        "name = \"node2\"",
        "name = \"node2\"\nssh_options = [\"HostKeyAlias=not-in-known-hosts\"]",
        1,
    );
    fs::write(cluster.inventory(), with_alias).unwrap();
    let (code, rows) = status_json(&cluster, &[]);
    assert_eq!(code, 1);
    assert_eq!(rows[0]["reachable"], true);
    assert!(
        rows[1]["error"]
            .as_str()
            .unwrap()
            .contains("host key unknown"),
        "{}",
        rows[1]
    );
}

/// The test nodes do not source the local user's `.bashrc` (see tests/support).
#[test]
fn test_nodes_skip_the_login_bashrc() {
    let cluster = TestCluster::start(1);
    let out = run(cluster.distctl().args([
        "exec",
        "--",
        "echo shlvl=$SHLVL ssh=${SSH_CLIENT:+yes} pyenv=${PYENV_ROOT:-none}",
    ]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("shlvl=2 ssh=yes pyenv=none"),
        "{}",
        text(&out.stdout)
    );
}

/// The rows are `status`'s result: with no node answering it still prints
/// one row per node and exits 1, not 3.
#[test]
fn every_node_down_still_gives_a_row_each_and_exit_1() {
    let mut cluster = TestCluster::start(2);
    cluster.stop_node(0);
    cluster.stop_node(1);
    let (code, rows) = status_json(&cluster, &["--fanout", "1"]);
    assert_eq!(code, 1);
    assert_eq!(rows.len(), 2);
    for row in &rows {
        assert_eq!(row["reachable"], false, "{row}");
        assert!(row["error"].as_str().unwrap().contains("refused"), "{row}");
    }
}

#[test]
fn tables_stay_within_120_columns_and_long_reasons_are_said_in_full_below() {
    let cluster = TestCluster::start(2);
    let host = format!("{}.invalid", "no-such-host-".repeat(6));
    cluster.write_inventory(&format!(
        "\n[[nodes]]\nname = \"lost\"\nhost = {host:?}\nworkdir = \"/{}\"\n",
        "a-long-workdir/".repeat(10)
    ));
    let out = run(cluster.distctl().arg("status"));
    assert_eq!(out.status.code(), Some(1));
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    for l in stdout.lines() {
        assert!(
            l.chars().count() <= 120,
            "{} columns: {l}",
            l.chars().count()
        );
    }
    // The ok rows are not padded out to the long reason: STATUS stays narrow.
    let ok_row = stdout.lines().find(|l| l.starts_with("node1")).unwrap();
    let latency_at = ok_row.find("ms").unwrap();
    assert!(latency_at < 30, "{stdout}");
    let lost = stdout.lines().find(|l| l.starts_with("lost")).unwrap();
    assert!(
        lost.contains("unreachable: cannot resolve host name"),
        "{stdout}"
    );
    // The full reason below the table and in --json.
    assert!(
        stderr.contains(&format!(
            "lost: unreachable: cannot resolve host name {host}"
        )),
        "{stderr}"
    );
    let (_, rows) = status_json(&cluster, &[]);
    let error = rows[2]["error"].as_str().unwrap();
    assert!(error.contains(&host) && error.len() > 120, "{error}");

    let out = run(cluster.distctl().arg("nodes"));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("lost "), "{stdout}");
    for l in stdout.lines() {
        assert!(
            l.chars().count() <= 120,
            "{} columns: {l}",
            l.chars().count()
        );
    }
}
