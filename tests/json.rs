//! One JSON dialect (README "JSON output"): `node` everywhere, `outcome`,
//! `detail` and `error` on every per-node row, and a failed command with
//! `--json` still prints one JSON document on stdout.

mod support;

use serde_json::Value;
use support::TestCluster;

fn json_of(out: &std::process::Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON document ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[test]
fn every_per_node_row_speaks_the_same_dialect() {
    let mut cluster = TestCluster::start(2);
    let tree = cluster.dir.path().join("tree");
    std::fs::create_dir_all(&tree).unwrap();
    std::fs::write(tree.join("a"), "a").unwrap();
    let run =
        |args: &[&str]| json_of(&cluster.distctl().arg("--json").args(args).output().unwrap());
    let nodes = run(&["nodes"]);
    assert_eq!(nodes["nodes"][0]["node"], "node1", "{nodes}");
    assert!(nodes["nodes"][0].get("name").is_none());
    let setup = run(&["setup"]);
    assert_eq!(setup[0]["outcome"], "ok");
    assert_eq!(setup[0]["detail"], "pushed");
    assert!(setup[0]["error"].is_null());
    assert_eq!(run(&["setup"])[0]["detail"], "up-to-date");
    let tree_s = tree.to_str().unwrap();
    assert_eq!(run(&["sync", tree_s])[1]["detail"], "synced");
    assert_eq!(run(&["sync", tree_s])[1]["detail"], "up-to-date");
    let exec = run(&["exec", "sh", "-c", "exit 3"]);
    assert_eq!(exec[0]["outcome"], "failed");
    assert_eq!(exec[0]["exit_code"], 3);
    assert_eq!(exec[0]["error"], "exit 3");
    let status = run(&["status"]);
    assert_eq!(status[0]["outcome"], "ok");
    assert!(status[0]["load1"].is_number() && status[0].get("load").is_none());

    // Every node down: exec's one document is its rows, not rows + error.
    cluster.stop_node(0);
    cluster.stop_node(1);
    let out = cluster
        .distctl()
        .args(["--json", "exec", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let rows = json_of(&out);
    assert_eq!(rows[0]["outcome"], "unreachable");
}

#[test]
fn a_failed_command_with_json_prints_error_and_exit_code() {
    let cluster = TestCluster::start(1);
    for (args, code, says) in [
        (
            &["status", "--nodes", "nosuch"][..],
            2,
            "--nodes: no node named 'nosuch'",
        ),
        (
            &["run", "/nonexistent/in.txt", "--op", "upper"][..],
            2,
            "/nonexistent/in.txt",
        ),
        (&["exec"][..], 2, "required"),
    ] {
        let out = cluster.distctl().arg("--json").args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(code), "{args:?}");
        let doc = json_of(&out);
        assert_eq!(doc["exit_code"], code, "{doc}");
        assert!(
            doc["error"].as_str().unwrap().contains(says),
            "{args:?}: {doc}"
        );
    }
}
