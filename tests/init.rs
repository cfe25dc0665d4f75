//! `distctl init`: a starter inventory that `distctl nodes` takes as it is,
//! never written over an existing file.

mod support;

use support::local_distctl as distctl;

#[test]
fn init_writes_a_working_inventory_and_never_overwrites_one() {
    let dir = tempfile::tempdir().unwrap();
    let out = distctl(dir.path(), &["init"]);
    assert_eq!(out.status.code(), Some(0));
    let out = distctl(dir.path(), &["--json", "nodes"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["nodes"][0]["node"], "localhost", "{v}");
    assert_eq!(v["inventory"], "cluster.toml", "{v}");

    std::fs::write(dir.path().join("cluster.toml"), "# mine\n").unwrap();
    let out = distctl(dir.path(), &["init"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("cluster.toml")).unwrap(),
        "# mine\n"
    );
    let out = distctl(dir.path(), &["init", "no/such/dir/c.toml"]);
    assert_eq!(out.status.code(), Some(2));
}
