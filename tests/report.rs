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

/// Width and height from a PNG's IHDR chunk.
fn png_size(png: &[u8]) -> (u32, u32) {
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    (be(&png[16..20]), be(&png[20..24]))
}

#[test]
fn the_html_report_reads_at_a_glance_and_chromium_draws_it() {
    let dir = tempfile::tempdir().unwrap();
    // Six nodes over three hours, a row a minute; node2 down for 45 minutes.
    std::fs::write(dir.path().join("m.csv"), metrics_csv::generate(6, 3)).unwrap();
    let out = report(dir.path(), &["-o", "r.html"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let page = std::fs::read_to_string(dir.path().join("r.html")).unwrap();

    // Time ticks on round times, with the date; times said to be UTC.
    assert!(page.contains("times in UTC"));
    let ticks: Vec<&str> = page
        .split("class=\"axis tick\"")
        .skip(1)
        .map(|s| s.split('>').nth(1).unwrap().split('<').next().unwrap())
        .collect();
    assert!(!ticks.is_empty());
    assert!(ticks[0].starts_with("11-23 "), "{ticks:?}");
    for t in &ticks {
        let hm = t.rsplit(' ').next().unwrap();
        assert!(
            hm.ends_with(":00") || hm.ends_with(":30"),
            "not a round tick: {t} in {ticks:?}"
        );
    }
    // Memory and disk as a share of each node's total; load per core; swap.
    for id in [
        "mem_used_pct",
        "disk_used_pct",
        "load1_per_core",
        "load15_per_core",
        "swap_used_mib",
    ] {
        assert!(page.contains(&format!("data-metric=\"{id}\"")), "{id}");
    }
    let mem = page.split("data-metric=\"mem_used_pct\"").nth(1).unwrap();
    assert!(mem
        .split("</section>")
        .next()
        .unwrap()
        .contains(">100</text>"));
    // The unreachable stretch says which node, when and why.
    assert!(page.contains(
        "node2 unreachable from 2026-11-23T07:43:52Z to 2026-11-23T08:27:52Z (45 sample(s))"
    ));
    let down = page.split("<tr data-down-node=\"node2\">").nth(1).unwrap();
    assert!(down.contains("connection timed out"));
    // Per node over the period: availability and min/avg/max/p95.
    let stats = page.split("<tr data-stats-node=\"node2\">").nth(1).unwrap();
    let stats = stats.split("</tr>").next().unwrap();
    assert!(
        stats.contains("<td>180</td><td class=\"bad\">75.0%</td>"),
        "{stats}"
    );
    assert!(page.contains("<th>p95</th>"));
    // A toggle per node hides its lines, no script needed.
    assert!(page.contains("id=\"hide5\"") && page.contains("label class=\"key\" for=\"hide5\""));
    assert!(!page.contains("<script"));
    // An even number of panels: the two-column grid has no hole.
    assert_eq!(page.matches("<section class=\"chart\"").count() % 2, 0);

    // What a person sees: a headless Chromium screenshot.
    if std::process::Command::new("chromium")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!(
            "chromium is not installed (scripts/install-deps installs it): screenshot skipped"
        );
        return;
    }
    let png = dir.path().join("r.png");
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
        ])
        .arg(format!(
            "--user-data-dir={}",
            dir.path().join("profile").display()
        ))
        .arg(format!("--screenshot={}", png.display()))
        .arg("--window-size=1200,1600")
        .arg(format!("file://{}", dir.path().join("r.html").display()))
        .output()
        .unwrap();
    assert!(png.exists(), "no screenshot: {}", text(&out.stderr));
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(png_size(&bytes), (1200, 1600));
    // A blank 1200×1600 page compresses to a few KiB; charts, lines and
    // text do not.
    assert!(
        bytes.len() > 60_000,
        "the screenshot looks blank: {} bytes",
        bytes.len()
    );
}
