//! `distctl run --compress` on real sshd nodes: every setting gives the
//! same bytes as `none` for ops and `--exec`, from a file and from stdin;
//! `--resume` works across settings; bad values are refused before any node
//! is contacted, on the command line and in the inventory.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use support::TestCluster;

/// ~12 MiB: an access-log-like part (compresses well), random bytes (do not
/// compress) and word text, with a last line lacking its newline.
fn mixed_input(dir: &Path) -> PathBuf {
    let mut data = Vec::new();
    for i in 0..120_000u32 {
        data.extend_from_slice(
            format!(
                "10.{}.{}.{} - - [02/Dec/2026:16:{:02}:{:02} +0000] \"GET /p/{} HTTP/1.1\" {} {}\n",
                i % 3,
                i % 17,
                i % 250,
                (i / 60) % 60,
                i % 60,
                i % 997,
                [200, 200, 304, 404][(i % 4) as usize],
                i % 5000
            )
            .as_bytes(),
        );
    }
    let mut x: u64 = 0x9e3779b97f4a7c15;
    for _ in 0..3_000_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        data.push((x >> 24) as u8);
    }
    data.extend_from_slice(&b"Some Words here and There\n".repeat(60_000));
    data.extend_from_slice(b"last line without newline");
    let p = dir.join("mixed in.txt");
    std::fs::write(&p, data).unwrap();
    p
}

fn run(cluster: &TestCluster, input: &Path, args: &[&str]) -> Output {
    let out = cluster
        .distctl()
        .args(["--json", "run", "--quiet", "--chunk-size", "2M"])
        .arg(input)
        .args(args)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn summary(out: &Output, to_file: bool) -> serde_json::Value {
    let text = if to_file {
        String::from_utf8_lossy(&out.stdout).into_owned()
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        err.lines().last().unwrap_or_default().to_string()
    };
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("summary: {e}: {text}"))
}

#[test]
fn every_setting_gives_the_same_bytes() {
    let cluster = TestCluster::start(2);
    let tmp = tempfile::tempdir().unwrap();
    let input = mixed_input(tmp.path());
    let data = std::fs::read(&input).unwrap();
    let jobs: [&[&str]; 4] = [
        &["--op", "upper"],
        &["--op", "grep", "--pattern", "404|Words"],
        &["--exec", "tr a-z A-Z | tr 0-4 5-9"],
        &["--op", "count-lines"],
    ];
    for job in jobs {
        let mut want: Option<Vec<u8>> = None;
        for compress in ["none", "zstd", "zstd:3", "zstd:-3", "auto"] {
            let mut args = job.to_vec();
            args.extend(["--compress", compress]);
            // Into a file (upper: written in place) and to stdout.
            let out = tmp.path().join(format!("out {compress}.txt"));
            let mut with_o = args.clone();
            with_o.extend(["-o", out.to_str().unwrap()]);
            let got = run(&cluster, &input, &with_o);
            let s = summary(&got, true);
            let bytes = std::fs::read(&out).unwrap();
            let streamed = run(&cluster, &input, &args).stdout;
            assert!(
                bytes == streamed,
                "{job:?} {compress}: file and stdout differ"
            );
            match &want {
                None => want = Some(bytes),
                Some(w) => assert!(
                    *w == bytes,
                    "{job:?} --compress {compress} differs from none"
                ),
            }
            let nodes = s["nodes"].as_array().unwrap();
            let sent: u64 = nodes
                .iter()
                .map(|n| n["wire_bytes_sent"].as_u64().unwrap())
                .sum();
            for n in nodes {
                let c = n["compress"].as_str().unwrap();
                match compress {
                    "none" => assert_eq!(c, "none"),
                    "zstd" => assert_eq!(c, "zstd:1"),
                    "auto" => assert!(c.starts_with("auto"), "{c}"),
                    other => assert_eq!(c, other),
                }
            }
            match compress {
                "none" => assert_eq!(sent, data.len() as u64, "{job:?}: plain bytes up"),
                "auto" => {}
                _ => assert!(
                    sent < data.len() as u64 * 3 / 4,
                    "{job:?} {compress}: {sent} bytes up for {}",
                    data.len()
                ),
            }
        }
        if job[1] == "upper" {
            assert!(want.unwrap() == data.to_ascii_uppercase());
        }
    }
    // Standard input (chunks held in memory) compresses the same way.
    for compress in ["zstd", "auto", "none"] {
        let got = cluster
            .distctl()
            .args([
                "run",
                "--quiet",
                "-",
                "--op",
                "upper",
                "--compress",
                compress,
            ])
            .stdin(std::fs::File::open(&input).unwrap())
            .output()
            .unwrap();
        assert_eq!(got.status.code(), Some(0));
        assert!(got.stdout == data.to_ascii_uppercase(), "stdin {compress}");
    }
}

/// `auto` for a node that is not on this machine (an ssh alias, which does
/// not resolve here, pointed at a loopback sshd by `HostName`): every chunk
/// starts as `D` frames while the node is measured, switches to `Z` frames
/// mid-chunk if compression turns on, and the result is the same bytes.
#[test]
fn auto_measures_a_node_elsewhere_and_the_bytes_stay_the_same() {
    let cluster = TestCluster::start(2);
    let tmp = tempfile::tempdir().unwrap();
    let input = mixed_input(tmp.path());
    let data = std::fs::read(&input).unwrap();
    let text = std::fs::read_to_string(cluster.inventory()).unwrap();
    let aliased = text.replace(
        "host = \"127.0.0.1\"",
        "host = \"dctl-node-elsewhere\"\nssh_options = [\"HostName=127.0.0.1\"]",
    );
    assert_ne!(aliased, text);
    let inventory = tmp.path().join("elsewhere.toml");
    std::fs::write(&inventory, aliased).unwrap();
    let out_file = tmp.path().join("out.txt");
    let got = std::process::Command::new(support::distctl_bin())
        .arg("--inventory")
        .arg(&inventory)
        .args([
            "--json",
            "run",
            "--quiet",
            "--chunk-size",
            "2M",
            "--op",
            "upper",
        ])
        .arg(&input)
        .args(["--compress", "auto", "-o"])
        .arg(&out_file)
        .output()
        .unwrap();
    assert_eq!(
        got.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&got.stderr)
    );
    assert!(std::fs::read(&out_file).unwrap() == data.to_ascii_uppercase());
    let s = summary(&got, true);
    let mut sent = 0;
    for n in s["nodes"].as_array().unwrap() {
        let c = n["compress"].as_str().unwrap();
        assert!(
            ["auto", "auto:none", "auto:zstd:1"].contains(&c),
            "{c}: {n}"
        );
        sent += n["wire_bytes_sent"].as_u64().unwrap();
    }
    // Frame headers (plain while measuring) or compression: never the
    // chunk's bare bytes, which is what a loopback node gets.
    assert_ne!(sent, data.len() as u64, "the chunks went as frames");
}

/// Compressed both ways, a run stopped half-way resumes with another
/// setting: the journal is about the chunks' own bytes.
#[test]
fn resume_works_across_compress_settings() {
    let cluster = TestCluster::start(2);
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("slow in.txt");
    let data: String = (0..200_000).map(|i| format!("line {i} abc\n")).collect();
    std::fs::write(&input, &data).unwrap();
    let slow = ["--exec", "sleep 0.3; tr a-z A-Z", "--chunk-size", "128K"];
    for (first, then) in [("zstd:3", "none"), ("none", "zstd")] {
        let out = tmp.path().join(format!("out {first}.txt"));
        let child = cluster
            .distctl()
            .args(["run", "--quiet", "--compress", first])
            .arg(&input)
            .args(slow)
            .arg("-o")
            .arg(&out)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let journal = tmp
            .path()
            .join(format!(".out {first}.txt.distctl-run/journal.jsonl"));
        support::wait_until(
            "finished chunks",
            std::time::Duration::from_secs(60),
            || std::fs::read_to_string(&journal).is_ok_and(|j| j.lines().count() >= 3),
        );
        // SAFETY: signalling our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
        let got = child.wait_with_output().unwrap();
        assert_eq!(got.status.code(), Some(3), "{}", support::text(&got.stderr));
        let got = cluster
            .distctl()
            .args(["--json", "run", "--quiet", "--resume", "--compress", then])
            .arg(&input)
            .args(slow)
            .arg("-o")
            .arg(&out)
            .output()
            .unwrap();
        assert_eq!(got.status.code(), Some(0), "{}", support::text(&got.stderr));
        let s: serde_json::Value = serde_json::from_slice(&got.stdout).unwrap();
        assert!(
            s["chunks_resumed"].as_u64().unwrap() >= 1,
            "{first} -> {then}: {s}"
        );
        assert!(
            std::fs::read(&out).unwrap() == data.to_uppercase().into_bytes(),
            "{first} -> {then}"
        );
    }
}

#[test]
fn bad_compress_values_are_usage_errors() {
    let cluster = TestCluster::start(1);
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in.txt");
    std::fs::write(&input, "a\n").unwrap();
    for bad in ["gzip", "zstd:99", "zstd:", "zstd:0", ""] {
        let got = cluster
            .distctl()
            .args(["run", "--op", "upper", "--compress", bad])
            .arg(&input)
            .output()
            .unwrap();
        let err = support::text(&got.stderr);
        assert_eq!(got.status.code(), Some(2), "{bad}: {err}");
        assert!(
            err.contains("--compress") && err.contains("zstd:LEVEL"),
            "{bad}: {err}"
        );
    }
    // In the inventory: per node, with file and line.
    cluster.write_inventory("compress = \"lz4\"\n");
    let got = cluster
        .distctl()
        .args(["run", "--op", "upper"])
        .arg(&input)
        .output()
        .unwrap();
    let err = support::text(&got.stderr);
    assert_eq!(got.status.code(), Some(2), "{err}");
    let inv = cluster.inventory().display().to_string();
    assert!(err.contains(&format!("{inv}:")), "{err}");
    assert!(err.contains("bad compress value 'lz4'"), "{err}");
    // A good value applies to its node, and --compress overrides it.
    cluster.write_inventory("compress = \"zstd:5\"\n");
    let got = cluster
        .distctl()
        .args(["--json", "run", "--op", "upper", "-o"])
        .arg(tmp.path().join("o"))
        .arg(&input)
        .output()
        .unwrap();
    assert_eq!(got.status.code(), Some(0), "{}", support::text(&got.stderr));
    let s: serde_json::Value = serde_json::from_slice(&got.stdout).unwrap();
    assert_eq!(s["nodes"][0]["compress"], "zstd:5");
    let got = cluster
        .distctl()
        .args(["--json", "run", "--op", "upper", "--compress", "none", "-o"])
        .arg(tmp.path().join("o"))
        .arg(&input)
        .output()
        .unwrap();
    let s: serde_json::Value = serde_json::from_slice(&got.stdout).unwrap();
    assert_eq!(s["nodes"][0]["compress"], "none");
}
