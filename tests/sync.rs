//! `distctl sync` and `distctl fetch` against real sshd nodes on loopback:
//! trees with nested folders, spaces, a symlink and an executable bit, over
//! rsync and over the tar path; what a second sync sends; `--delete`; the
//! stamp `status` reads; fetching a tree back from every node.

mod support;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;
use std::process::Output;

use serde_json::Value;
use support::text;
use support::TestCluster;

/// Everything a user would compare in a tree: per relative path, its type,
/// permission bits and content (link target for symlinks).
fn snapshot(root: &Path) -> BTreeMap<String, String> {
    fn walk(root: &Path, rel: &Path, out: &mut BTreeMap<String, String>) {
        for e in fs::read_dir(root.join(rel)).unwrap() {
            let e = e.unwrap();
            let rel = rel.join(e.file_name());
            let path = root.join(&rel);
            let meta = fs::symlink_metadata(&path).unwrap();
            let mode = meta.permissions().mode() & 0o777;
            let what = if meta.is_symlink() {
                format!("link -> {}", fs::read_link(&path).unwrap().display())
            } else if meta.is_dir() {
                walk(root, &rel, out);
                format!("dir {mode:o}")
            } else {
                format!("file {mode:o} {}", text(&fs::read(&path).unwrap()))
            };
            out.insert(rel.display().to_string(), what);
        }
    }
    let mut out = BTreeMap::new();
    walk(root, Path::new(""), &mut out);
    out
}

/// A tree with nested folders, spaces in names, a symlink, an empty folder
/// and an executable script.
fn make_tree(root: &Path) {
    fs::create_dir_all(root.join("sub dir/nested deeper")).unwrap();
    fs::create_dir_all(root.join("empty")).unwrap();
    fs::write(root.join("sub dir/nested deeper/deep file.txt"), "deep\n").unwrap();
    fs::write(root.join("with space.txt"), "spaced\n").unwrap();
    fs::write(root.join("it's $odd*.txt"), "odd\n").unwrap();
    fs::write(root.join("big.bin"), vec![7u8; 300_000]).unwrap();
    fs::write(root.join("run.sh"), "#!/bin/sh\necho ran\n").unwrap();
    fs::set_permissions(root.join("run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    symlink("sub dir/nested deeper/deep file.txt", root.join("link")).unwrap();
}

fn sync_json(cluster: &TestCluster, args: &[&str]) -> (i32, Vec<Value>, String) {
    let out: Output = cluster
        .distctl()
        .args(["--json", "sync"])
        .args(args)
        .output()
        .unwrap();
    let rows: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("bad JSON ({e}): {}{}", text(&out.stdout), text(&out.stderr)));
    (
        out.status.code().unwrap(),
        rows.as_array().unwrap().clone(),
        text(&out.stderr),
    )
}

fn check_sync_cycle(method: &str) {
    let cluster = TestCluster::start(3);
    let local = tempfile::tempdir().unwrap();
    let src = local.path().join("app");
    make_tree(&src);
    let want = snapshot(&src);
    let dest = |i: usize| cluster.workdir(i).join("app");

    let (code, rows, err) = sync_json(
        &cluster,
        &[src.to_str().unwrap(), "--to", "app", "--method", method],
    );
    assert_eq!(code, 0, "{err}");
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(row["detail"], "synced", "{row}");
        assert_eq!(row["method"], method);
        assert_eq!(row["changed"], 9, "{row}");
        assert!(row["bytes_sent"].as_u64().unwrap() > 300_000 / 100, "{row}");
        assert_eq!(snapshot(&dest(i)), want, "node{} differs", i + 1);
    }
    let stamp = fs::read_to_string(cluster.workdir(0).join("sync_status")).unwrap();
    assert!(stamp.contains("source=") && stamp.contains(src.to_str().unwrap()));
    assert!(stamp.contains("checksum=sha256:"), "{stamp}");

    // Nothing changed: (almost) nothing is sent.
    let (code, rows, _) = sync_json(
        &cluster,
        &[src.to_str().unwrap(), "--to", "app", "--method", method],
    );
    assert_eq!(code, 0);
    for row in &rows {
        assert_eq!(row["detail"], "up-to-date", "{row}");
        let sent = row["bytes_sent"].as_u64().unwrap();
        eprintln!("{method}: second sync sent {sent} bytes to {}", row["node"]);
        assert!(sent < 1500, "{row}");
    }

    // One file changed, one removed locally: without --delete nothing remote
    // goes away; with it, the removed file does.
    fs::write(src.join("with space.txt"), "changed\n").unwrap();
    fs::remove_file(src.join("it's $odd*.txt")).unwrap();
    fs::write(dest(1).join("remote only.txt"), "mine\n").unwrap();
    let (code, rows, _) = sync_json(
        &cluster,
        &[src.to_str().unwrap(), "--to", "app", "--method", method],
    );
    assert_eq!(code, 0);
    assert_eq!(rows[0]["deleted"], 0);
    assert!(dest(0).join("it's $odd*.txt").exists());
    assert!(dest(1).join("remote only.txt").exists());
    assert_eq!(
        fs::read_to_string(dest(2).join("with space.txt")).unwrap(),
        "changed\n"
    );

    let (code, rows, _) = sync_json(
        &cluster,
        &[
            src.to_str().unwrap(),
            "--to",
            "app",
            "--delete",
            "--method",
            method,
        ],
    );
    assert_eq!(code, 0);
    assert_eq!(rows[1]["deleted"], 2, "{}", rows[1]);
    let want = snapshot(&src);
    for i in 0..3 {
        assert_eq!(
            snapshot(&dest(i)),
            want,
            "node{} differs after --delete",
            i + 1
        );
    }
}

#[test]
fn sync_over_rsync_mirrors_the_tree_and_resends_almost_nothing() {
    check_sync_cycle("rsync");
}

#[test]
fn sync_over_tar_gives_the_same_tree() {
    check_sync_cycle("tar");
}

#[test]
fn sync_into_the_workdir_root_never_deletes_distctl_files_and_status_shows_it() {
    let mut cluster = TestCluster::start(3);
    let local = tempfile::tempdir().unwrap();
    make_tree(local.path());
    // Pretend setup ran on node1: an agent the sync must not delete.
    fs::create_dir_all(cluster.workdir(0).join("bin")).unwrap();
    fs::write(cluster.workdir(0).join("bin/worker-agent"), "agent").unwrap();
    for method in ["rsync", "tar"] {
        let (code, rows, err) = sync_json(
            &cluster,
            &[
                local.path().to_str().unwrap(),
                "--delete",
                "--method",
                method,
            ],
        );
        assert_eq!(code, 0, "{err}");
        assert!(rows.iter().all(|r| r["error"].is_null()), "{rows:?}");
        assert!(
            cluster.workdir(0).join("bin/worker-agent").exists(),
            "{method}"
        );
        assert!(cluster.workdir(0).join("sync_status").exists(), "{method}");
        assert!(cluster.workdir(2).join("run.sh").exists());
    }

    let status = |cluster: &TestCluster| -> Vec<Value> {
        let out = cluster
            .distctl()
            .args(["status", "--json"])
            .output()
            .unwrap();
        serde_json::from_slice::<Value>(&out.stdout)
            .unwrap()
            .as_array()
            .unwrap()
            .clone()
    };
    let rows = status(&cluster);
    assert!(rows.iter().all(|r| r["sync"] == "in sync"), "{rows:?}");

    // node3 misses the next sync: status says it is behind.
    fs::write(local.path().join("new.txt"), "new").unwrap();
    cluster.stop_node(2);
    let (code, rows, err) = sync_json(&cluster, &[local.path().to_str().unwrap()]);
    assert_eq!(code, 1, "an unreachable node is exit 1: {err}");
    assert_eq!(rows[2]["outcome"], "unreachable");
    assert!(
        err.contains("rerun on them with --nodes @failed (node3)"),
        "{err}"
    );
    cluster.restart_node(2);
    let rows = status(&cluster);
    assert_eq!(rows[0]["sync"], "in sync");
    assert_eq!(rows[2]["sync"], "out of sync", "{}", rows[2]);
}

#[test]
fn without_rsync_here_auto_takes_the_tar_path() {
    let cluster = TestCluster::start(2);
    let local = tempfile::tempdir().unwrap();
    let src = local.path().join("app");
    make_tree(&src);
    // A PATH with ssh but no rsync.
    let bin = local.path().join("bin");
    fs::create_dir_all(&bin).unwrap();
    symlink("/usr/bin/ssh", bin.join("ssh")).unwrap();
    let out = cluster
        .distctl()
        .env("PATH", &bin)
        .args(["--json", "sync"])
        .arg(&src)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let rows: Value = serde_json::from_slice(&out.stdout).unwrap();
    for (i, row) in rows.as_array().unwrap().iter().enumerate() {
        assert_eq!(row["method"], "tar", "{row}");
        let mut got = snapshot(cluster.workdir(i));
        got.remove("sync_status");
        assert_eq!(got, snapshot(&src));
    }
}

#[test]
fn sync_errors() {
    let cluster = TestCluster::start(1);
    let out = cluster
        .distctl()
        .args(["sync", "/no/such/dir"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let dir = tempfile::tempdir().unwrap();
    let out = cluster
        .distctl()
        .args(["sync", dir.path().to_str().unwrap(), "--to", "../escape"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("inside the workdir"));
}

#[test]
fn fetch_brings_a_tree_back_from_every_node() {
    let mut cluster = TestCluster::start(4);
    for i in 0..4 {
        let r = cluster.workdir(i).join("results");
        make_tree(&r);
        fs::write(r.join("who.txt"), format!("node{}\n", i + 1)).unwrap();
    }
    cluster.stop_node(3);
    let out_dir = tempfile::tempdir().unwrap();
    let to = out_dir.path().join("fetched");
    let out = cluster
        .distctl()
        .args(["--json", "fetch", "results", "--to", to.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let rows: Value = serde_json::from_slice(&out.stdout).unwrap();
    for i in 0..3 {
        let row = &rows[i];
        assert_eq!(row["outcome"], "ok", "{row}");
        assert_eq!(row["files"], 6);
        let got = to.join(format!("node{}", i + 1)).join("results");
        assert_eq!(
            snapshot(&got),
            snapshot(&cluster.workdir(i).join("results"))
        );
    }
    assert_eq!(rows[3]["outcome"], "unreachable");
    // No temporary directories left behind.
    let names: Vec<String> = fs::read_dir(to.join("node1"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["results"]);

    // Fetching again replaces the earlier copy; an absolute path works; a
    // path missing on one node fails that node only (exit 4).
    fs::remove_file(cluster.workdir(0).join("results/who.txt")).unwrap();
    let abs = cluster.workdir(1).join("results/who.txt");
    let fetch_from_three = |path: &str| {
        cluster
            .distctl()
            .args(["--nodes", "node[1-3]", "fetch", path, "--to"])
            .arg(&to)
            .output()
            .unwrap()
    };
    let out = fetch_from_three("results");
    assert_eq!(out.status.code(), Some(0));
    assert!(!to.join("node1/results/who.txt").exists());
    let out = fetch_from_three(abs.to_str().unwrap());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        fs::read_to_string(to.join("node3/who.txt")).unwrap(),
        "node2\n"
    );
    let out = fetch_from_three("results/who.txt");
    assert_eq!(out.status.code(), Some(4));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("node1: failed"), "{stderr}");
    assert!(text(&out.stdout).contains("no such file or directory"));
}

/// `--fanout 1` still reaches every node; all down is exit 3 with a row each.
#[test]
fn sync_with_fanout_1_reaches_every_node_and_none_reachable_is_exit_3() {
    let mut cluster = TestCluster::start(3);
    let local = tempfile::tempdir().unwrap();
    make_tree(local.path());
    let dir = local.path().to_str().unwrap();
    let (code, rows, err) = sync_json(&cluster, &["--fanout", "1", dir]);
    assert_eq!(code, 0, "{err}");
    assert!(rows.iter().all(|r| r["detail"] == "synced"), "{rows:?}");
    let (code, rows, err) = sync_json(&cluster, &["--fanout", "1", dir]);
    assert_eq!(code, 0, "{err}");
    assert!(rows.iter().all(|r| r["detail"] == "up-to-date"), "{rows:?}");

    for i in 0..3 {
        cluster.stop_node(i);
    }
    let out = cluster.distctl().args(["sync", dir]).output().unwrap();
    assert_eq!(out.status.code(), Some(3));
    let err = text(&out.stderr);
    assert!(err.contains("no node reachable"), "{err}");
    assert!(err.contains("node[1-3]: unreachable"), "{err}");
}

/// A node whose fetch fails is exit 4, its reason in the row and on stderr.
#[test]
fn a_failed_fetch_is_exit_4_with_its_reason() {
    let cluster = TestCluster::start(2);
    fs::create_dir_all(cluster.workdir(0)).unwrap();
    fs::create_dir_all(cluster.workdir(1)).unwrap();
    fs::write(cluster.workdir(0).join("only-here.txt"), "x").unwrap();
    let to = tempfile::tempdir().unwrap();
    let out = cluster
        .distctl()
        .args(["--json", "fetch", "only-here.txt", "--to"])
        .arg(to.path())
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{err}");
    let rows: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows[0]["outcome"], "ok");
    assert_eq!(rows[1]["outcome"], "failed");
    assert!(rows[1]["error"].as_str().unwrap().contains("no such file"));
    assert!(err.contains("node2: failed: no such file"), "{err}");
}
