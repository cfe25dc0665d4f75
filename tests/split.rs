//! `distctl split`: chunk files that concatenate back to the input, cut only
//! at line ends, with a manifest whose offsets, line counts and sha256 hold.

mod support;

use std::path::Path;
use std::process::Command;

use sha2::{Digest, Sha256};
use support::TestCluster;

fn distctl() -> Command {
    let mut c = Command::new(support::distctl_bin());
    // Cut by count, lines or size: no inventory or node is needed.
    c.env_remove("DISTCTL_INVENTORY");
    c.current_dir(std::env::temp_dir());
    c
}

/// The chunks in manifest order, checked against the manifest.
fn read_split(dir: &Path) -> (serde_json::Value, Vec<Vec<u8>>) {
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    let mut chunks = Vec::new();
    let mut offset = 0;
    for c in manifest["chunks"].as_array().unwrap() {
        let data = std::fs::read(dir.join(c["file"].as_str().unwrap())).unwrap();
        assert_eq!(c["offset"].as_u64().unwrap(), offset);
        assert_eq!(c["bytes"].as_u64().unwrap(), data.len() as u64);
        assert_eq!(
            c["sha256"].as_str().unwrap(),
            format!("{:x}", Sha256::digest(&data))
        );
        let lines = data.iter().filter(|&&b| b == b'\n').count() as u64
            + u64::from(data.last().is_some_and(|&b| b != b'\n'));
        assert_eq!(c["lines"].as_u64().unwrap(), lines);
        offset += data.len() as u64;
        chunks.push(data);
    }
    (manifest, chunks)
}

const AWKWARD: &[(&str, &[u8])] = &[
    ("empty", b""),
    ("one-line-no-newline", b"lonely"),
    ("no-trailing-newline", b"a\nbb\nccc"),
    ("crlf", b"one\r\ntwo\r\nthree\r\n"),
    ("fewer-lines-than-chunks", b"x\ny\n"),
    (
        "huge-line",
        b"short\nxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\nend\n",
    ),
    ("invalid-utf8", b"\xff\xfe\n\xc3\x28 ok\n"),
];

#[test]
fn split_awkward_inputs_every_way() {
    let tmp = tempfile::tempdir().unwrap();
    for (name, data) in AWKWARD {
        let input = tmp.path().join(format!("in {name}.txt"));
        std::fs::write(&input, data).unwrap();
        for how in [
            vec!["--chunks", "4"],
            vec!["--lines", "1"],
            vec!["--chunk-size", "8"],
        ] {
            let out = tmp.path().join(format!("out dir '{name}'"));
            let st = distctl()
                .arg("split")
                .arg(&input)
                .args(&how)
                .arg("-o")
                .arg(&out)
                .arg("--quiet")
                .status()
                .unwrap();
            assert!(st.success(), "{name} {how:?}");
            let (manifest, chunks) = read_split(&out);
            assert_eq!(chunks.concat(), *data, "{name} {how:?}");
            assert!(
                chunks.iter().all(|c| !c.is_empty()),
                "no empty chunk: {name}"
            );
            for c in &chunks[..chunks.len().saturating_sub(1)] {
                assert_eq!(c.last(), Some(&b'\n'), "{name} {how:?}: cut inside a line");
            }
            assert_eq!(manifest["size"].as_u64().unwrap(), data.len() as u64);
            if how[0] == "--chunks" {
                assert!(chunks.len() <= 4);
            }
        }
    }
}

#[test]
fn split_replaces_an_earlier_split_and_refuses_a_foreign_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in.txt");
    std::fs::write(&input, "1\n2\n3\n4\n5\n6\n").unwrap();
    let out = tmp.path().join("chunks");
    let split = |n: &str| {
        distctl()
            .arg("split")
            .arg(&input)
            .args(["--chunks", n, "--json", "-o"])
            .arg(&out)
            .output()
            .unwrap()
    };
    assert!(split("6").status.success());
    let o = split("2");
    assert!(o.status.success());
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(json["chunks"].as_array().unwrap().len(), 2);
    assert_eq!(
        std::fs::read_dir(&out).unwrap().count(),
        3,
        "old chunks are gone"
    );

    let foreign = tmp.path().join("mine");
    std::fs::create_dir(&foreign).unwrap();
    std::fs::write(foreign.join("keep.txt"), "x").unwrap();
    let o = distctl()
        .arg("split")
        .arg(&input)
        .arg("-o")
        .arg(&foreign)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(foreign.join("keep.txt").exists());
}

#[test]
fn split_for_nodes_weights_by_slots() {
    let cluster = TestCluster::start(2);
    // node1 has 1 slot, node2 3: a quarter and three quarters of the input.
    let inv = std::fs::read_to_string(cluster.inventory()).unwrap();
    let inv = inv.replacen("name = \"node1\"", "name = \"node1\"\nslots = 1", 1);
    let inv = inv.replacen("name = \"node2\"", "name = \"node2\"\nslots = 3", 1);
    std::fs::write(cluster.inventory(), inv).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in.txt");
    let data: String = (0..400).map(|i| format!("{i:04}\n")).collect();
    std::fs::write(&input, &data).unwrap();
    let out = tmp.path().join("chunks");
    let st = cluster
        .distctl()
        .arg("split")
        .arg(&input)
        .args(["--for-nodes", "--quiet", "-o"])
        .arg(&out)
        .status()
        .unwrap();
    assert!(st.success());
    let (manifest, chunks) = read_split(&out);
    assert_eq!(
        chunks.iter().map(Vec::len).collect::<Vec<_>>(),
        vec![500, 1500]
    );
    let nodes: Vec<&str> = manifest["chunks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["node"].as_str().unwrap())
        .collect();
    assert_eq!(nodes, ["node1", "node2"]);
}
