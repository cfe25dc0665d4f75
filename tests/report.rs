//! `distctl report`: the rows it keeps (`--nodes`, `--exclude`, `--label`),
//! the flags it refuses, what it says.

mod support;

use std::process::{Command, Output};

use support::{distctl_bin, metrics_csv};

fn report(dir: &std::path::Path, args: &[&str]) -> Output {
    Command::new(distctl_bin())
        .current_dir(dir)
        .env_remove("DISTCTL_INVENTORY")
        .arg("report")
        .arg("m.csv")
        .args(args)
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn nodes_in(page: &str) -> Vec<String> {
    let mut v: Vec<String> = page
        .split("<tr data-node=\"")
        .skip(1)
        .map(|s| s.split('"').next().unwrap().to_string())
        .collect();
    v.dedup();
    v
}

#[test]
fn report_keeps_the_selected_nodes_rows_and_refuses_flags_it_does_not_use() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("m.csv"), metrics_csv::generate(4, 1)).unwrap();
    let out = report(dir.path(), &["-o", "all.html"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stderr),
        "distctl: wrote all.html: 240 row(s) of 4 node(s), 2026-11-23T06:58:52Z to 2026-11-23T07:57:52Z\n"
    );
    let page = std::fs::read_to_string(dir.path().join("all.html")).unwrap();
    assert_eq!(nodes_in(&page), ["node1", "node2", "node3", "node4"]);

    let out = report(
        dir.path(),
        &[
            "--nodes",
            "node[1-3]",
            "--exclude",
            "node2",
            "-o",
            "some.html",
            "--json",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["rows"], 120);
    assert_eq!(doc["nodes"], serde_json::json!(["node1", "node3"]));
    let page = std::fs::read_to_string(dir.path().join("some.html")).unwrap();
    assert_eq!(nodes_in(&page), ["node1", "node3"]);

    // Labels are looked up in the inventory.
    std::fs::write(
        dir.path().join("cluster.toml"),
        "[[nodes]]\nname = \"node4\"\nhost = \"h4\"\nlabels = [\"gpu\"]\n[[nodes]]\nname = \"node1\"\nhost = \"h1\"\n",
    )
    .unwrap();
    let out = report(dir.path(), &["--label", "gpu", "-o", "gpu.html", "-q"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stderr), "", "-q says nothing");
    let page = std::fs::read_to_string(dir.path().join("gpu.html")).unwrap();
    assert_eq!(nodes_in(&page), ["node4"]);

    // A node the CSV has no rows for is named.
    let out = report(dir.path(), &["--nodes", "node9"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--nodes: no node named 'node9' in m.csv"),
        "{}",
        text(&out.stderr)
    );

    // Flags report has no use for are refused, not ignored.
    for (args, says) in [
        (&["--fanout", "4"][..], "report does not use --fanout"),
        (
            &["--inventory", "cluster.toml"][..],
            "report does not use --inventory",
        ),
        (&["-H", "a,b"][..], "report does not use --hosts"),
    ] {
        let out = report(dir.path(), args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            text(&out.stderr).contains(says),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
}
