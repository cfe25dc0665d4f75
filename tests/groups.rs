//! Node groups and set operators in `--nodes`/`--exclude`, as `distctl
//! nodes` shows them (no node is contacted).

mod support;

use std::process::Output;

fn nodes(dir: &std::path::Path, args: &[&str]) -> Output {
    let mut all = vec!["--inventory", "cluster.toml", "nodes", "--json"];
    all.extend_from_slice(args);
    support::local_distctl(dir, &all)
}

fn names(out: &Output) -> Vec<String> {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    doc["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["node"].as_str().unwrap().to_string())
        .collect()
}

const INVENTORY: &str = r#"
[[nodes]]
name = "node[1-8]"
host = "127.0.0.1"

[[nodes]]
name = "db[1-2]"
host = "127.0.0.1"
labels = ["gpu"]

[groups]
web = "node[1-8]"
eu = ["node1", "db[1-2]", "@odd"]
odd = "node[1,3,5,7]"
"#;

#[test]
fn groups_combine_left_to_right_in_nodes_and_exclude() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cluster.toml"), INVENTORY).unwrap();
    assert_eq!(
        names(&nodes(dir.path(), &["--nodes", "@web&@eu"])),
        ["node1", "node3", "node5", "node7"]
    );
    assert_eq!(
        names(&nodes(dir.path(), &["--nodes", "@web,db1!node[2-7]"])),
        ["node1", "node8", "db1"]
    );
    assert_eq!(
        names(&nodes(dir.path(), &["--nodes", "@label:gpu^db2"])),
        ["db1"]
    );
    assert_eq!(
        names(&nodes(dir.path(), &["--exclude", "@web!node8"])),
        ["node8", "db1", "db2"]
    );
    let out = nodes(dir.path(), &[]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["groups"]["eu"], "db[1-2],node[1,3,5,7]");
}

#[test]
fn an_unknown_group_or_a_cycle_is_a_usage_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cluster.toml"), INVENTORY).unwrap();
    let out = nodes(dir.path(), &["--nodes", "@web,@asia"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown group '@asia'"), "{err}");
    let cyclic = format!("{INVENTORY}a = \"@b\"\nb = \"@a,node1\"\n");
    std::fs::write(dir.path().join("cluster.toml"), cyclic).unwrap();
    let out = nodes(dir.path(), &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cluster.toml:15: group cycle: a → @b → @a"),
        "{err}"
    );
}
