//! `distctl collect` and `distctl report` against real sshd nodes on loopback.

mod support;

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use support::text;
use support::TestCluster;

/// Schema v1, as the README documents it.
const HEADER: &str = "timestamp_utc,node,host,status,sampler,uptime_s,load1,load5,load15,cpu_pct,cores,mem_used_mib,mem_total_mib,swap_used_mib,disk_used_gib,disk_total_gib,disk_read_kib_s,disk_write_kib_s,net_rx_kib_s,net_tx_kib_s,error";

fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("cannot run distctl")
}

/// A CSV file as header + rows of (column → cell).
fn read_rows(path: &Path) -> Vec<std::collections::HashMap<String, String>> {
    let mut r = csv::Reader::from_path(path).unwrap();
    let header: Vec<String> = r.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(header.join(","), HEADER);
    r.records()
        .map(|rec| {
            let rec = rec.unwrap();
            header
                .iter()
                .cloned()
                .zip(rec.iter().map(String::from))
                .collect()
        })
        .collect()
}

fn num(row: &std::collections::HashMap<String, String>, col: &str) -> f64 {
    row[col]
        .parse()
        .unwrap_or_else(|_| panic!("{col} = '{}' is not a number: {row:?}", row[col]))
}

fn assert_sane(row: &std::collections::HashMap<String, String>) {
    assert_eq!(row["status"], "ok", "{row:?}");
    assert_eq!(row["error"], "");
    assert!(num(row, "uptime_s") > 0.0);
    let cores = num(row, "cores");
    assert!(cores >= 1.0);
    let cpu = num(row, "cpu_pct");
    assert!((0.0..=100.0).contains(&cpu), "cpu {cpu}");
    for l in ["load1", "load5", "load15"] {
        assert!(num(row, l) >= 0.0);
    }
    assert!(num(row, "mem_total_mib") > 0.0);
    assert!(num(row, "mem_used_mib") <= num(row, "mem_total_mib"));
    assert!(num(row, "swap_used_mib") >= 0.0);
    assert!(num(row, "disk_total_gib") > 0.0);
    assert!(num(row, "disk_used_gib") <= num(row, "disk_total_gib"));
    for r in [
        "disk_read_kib_s",
        "disk_write_kib_s",
        "net_rx_kib_s",
        "net_tx_kib_s",
    ] {
        assert!(num(row, r) >= 0.0, "{r}");
    }
    let t = humantime::parse_rfc3339(&row["timestamp_utc"]).expect("RFC 3339 UTC timestamp");
    let age = std::time::SystemTime::now().duration_since(t).unwrap();
    assert!(
        age.as_secs() < 120,
        "timestamp is the controller's clock now"
    );
}

#[test]
fn collect_writes_one_sane_row_per_node() {
    let cluster = TestCluster::start(3);
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("metrics.csv");
    let out = run(cluster
        .distctl()
        .args(["collect", "--sample-interval", "500ms", "-o"])
        .arg(&csv));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        text(&out.stderr),
        fs::read_to_string(&csv).unwrap_or_default()
    );
    let rows = read_rows(&csv);
    assert_eq!(rows.len(), 3);
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(row["node"], format!("node{}", i + 1));
        assert_eq!(row["host"], "127.0.0.1");
        assert_eq!(row["sampler"], "ssh", "no agent installed yet");
        assert_sane(row);
    }
    // One round: every row carries the same controller timestamp.
    assert!(rows
        .iter()
        .all(|r| r["timestamp_utc"] == rows[0]["timestamp_utc"]));

    // To stdout: the same header, and NDJSON with the same fields.
    let out = run(cluster.distctl().args([
        "collect",
        "--sample-interval",
        "200ms",
        "--format",
        "json",
        "--nodes",
        "node2",
    ]));
    assert_eq!(out.status.code(), Some(0));
    let lines: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1);
    let keys: Vec<&str> = lines[0]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut want: Vec<&str> = HEADER.split(',').collect();
    want.sort();
    let mut keys = keys;
    keys.sort();
    assert_eq!(keys, want);
    assert_eq!(lines[0]["node"], "node2");
}

#[test]
fn stopped_node_gets_an_unreachable_row_and_exit_1() {
    let mut cluster = TestCluster::start(3);
    cluster.stop_node(1);
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("metrics.csv");
    let out = run(cluster
        .distctl()
        .args(["collect", "--sample-interval", "200ms", "-o"])
        .arg(&csv));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("1 of 3 node(s) not sampled: node2"));
    let rows = read_rows(&csv);
    assert_eq!(rows.len(), 3, "every node gets a row");
    assert_sane(&rows[0]);
    assert_sane(&rows[2]);
    let down = &rows[1];
    assert_eq!(down["node"], "node2");
    assert_eq!(down["status"], "unreachable");
    assert!(down["error"].contains("connection refused"), "{down:?}");
    for col in HEADER.split(',').skip(4).filter(|c| *c != "error") {
        assert_eq!(down[col], "", "{col} must be empty for an unreachable node");
    }
}

#[test]
fn overlapping_appends_give_whole_rows_and_one_header() {
    let cluster = TestCluster::start(3);
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("metrics.csv");
    let start = |_| {
        cluster
            .distctl()
            .args(["collect", "--append", "--sample-interval", "100ms"])
            .args(["--every", "150ms", "--count", "4", "-o"])
            .arg(&csv)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let children: Vec<_> = (0..2).map(start).collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    }
    let body = fs::read_to_string(&csv).unwrap();
    assert_eq!(body.lines().filter(|l| *l == HEADER).count(), 1);
    assert!(body.starts_with(HEADER) && body.ends_with('\n'));
    let rows = read_rows(&csv);
    assert_eq!(rows.len(), 2 * 4 * 3);
    for row in &rows {
        assert_sane(row);
    }
    // Each round's three rows are contiguous: no run's rows were interleaved.
    for round in rows.chunks(3) {
        let nodes: Vec<&str> = round.iter().map(|r| r["node"].as_str()).collect();
        assert_eq!(nodes, ["node1", "node2", "node3"]);
        assert!(round
            .iter()
            .all(|r| r["timestamp_utc"] == round[0]["timestamp_utc"]));
    }
}

#[test]
fn append_to_a_foreign_header_exits_2_and_changes_nothing() {
    let cluster = TestCluster::start(1);
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("metrics.csv");
    let seed = "timestamp,node,cpu,memory,io\n2024-01-01,n1,5,10,1\n";
    fs::write(&csv, seed).unwrap();
    let out = run(cluster
        .distctl()
        .args(["collect", "--append", "-o"])
        .arg(&csv));
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("column 1 is 'timestamp' where schema v1 has 'timestamp_utc'"),
        "{err}"
    );
    assert_eq!(fs::read_to_string(&csv).unwrap(), seed);
    // And `report` refuses it the same way.
    let out = run(Command::new(support::distctl_bin())
        .arg("report")
        .arg(&csv)
        .arg("-o")
        .arg(dir.path().join("r.html")));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("column 1 is 'timestamp'"),
        "{}",
        text(&out.stderr)
    );
    // JSON lines are never appended to a CSV either.
    let out = run(cluster
        .distctl()
        .args(["collect", "--format", "json", "--append", "-o"])
        .arg(&csv));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("not an NDJSON metrics file"));
    assert_eq!(fs::read_to_string(&csv).unwrap(), seed);
}

#[test]
fn prometheus_textfile_parses_and_is_replaced_whole() {
    let mut cluster = TestCluster::start(2);
    let dir = tempfile::tempdir().unwrap();
    let prom = dir.path().join("distctl.prom");
    fs::write(&prom, "stale\n").unwrap();
    cluster.stop_node(1);
    let out = run(cluster
        .distctl()
        .args([
            "collect",
            "--sample-interval",
            "200ms",
            "--format",
            "prometheus",
            "-o",
        ])
        .arg(&prom));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let body = fs::read_to_string(&prom).unwrap();
    assert!(!body.contains("stale"));
    // Only the final file is left: the temporary was renamed into place.
    let names: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["distctl.prom"]);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        fs::metadata(&prom).unwrap().permissions().mode() & 0o777,
        0o644
    );

    let scrape = prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).unwrap();
    let value = |metric: &str, node: &str| {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == metric && s.labels.get("node") == Some(node))
            .map(|s| match s.value {
                prometheus_parse::Value::Gauge(v) => v,
                ref other => panic!("{metric} is not a gauge: {other:?}"),
            })
    };
    assert_eq!(value("distctl_node_up", "node1"), Some(1.0));
    assert_eq!(value("distctl_node_up", "node2"), Some(0.0));
    let cpu = value("distctl_node_cpu_busy_ratio", "node1").unwrap();
    assert!((0.0..=1.0).contains(&cpu));
    let used = value("distctl_node_memory_used_bytes", "node1").unwrap();
    let total = value("distctl_node_memory_total_bytes", "node1").unwrap();
    assert!(used <= total && total > 0.0);
    assert_eq!(value("distctl_node_memory_total_bytes", "node2"), None);
    for s in &scrape.samples {
        assert!(s.metric.starts_with("distctl_node_"), "{}", s.metric);
        assert_eq!(s.labels.get("host"), Some("127.0.0.1"));
        assert!(scrape.docs.contains_key(&s.metric), "HELP for {}", s.metric);
    }
    // The textfile collector needs a whole file each time: --append is refused.
    let out = run(cluster
        .distctl()
        .args(["collect", "--format", "prometheus", "--append", "-o"])
        .arg(&prom));
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn agent_and_agentless_agree_on_what_does_not_drift() {
    let cluster = TestCluster::start(2);
    let out = run(cluster.distctl().arg("setup"));
    assert_eq!(out.status.code(), Some(0), "setup: {}", text(&out.stderr));
    let dir = tempfile::tempdir().unwrap();
    let (agent, ssh) = (dir.path().join("agent.csv"), dir.path().join("ssh.csv"));
    for (path, extra) in [(&agent, None), (&ssh, Some("--agentless"))] {
        let out = run(cluster
            .distctl()
            .args(["collect", "--sample-interval", "300ms"])
            .args(extra)
            .arg("-o")
            .arg(path));
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    }
    let (a, s) = (read_rows(&agent), read_rows(&ssh));
    for (a, s) in a.iter().zip(&s) {
        assert_sane(a);
        assert_sane(s);
        assert_eq!(a["sampler"], "agent");
        assert_eq!(s["sampler"], "ssh");
        for exact in ["cores", "mem_total_mib", "disk_total_gib"] {
            assert_eq!(a[exact], s[exact], "{exact}");
        }
        // Shared machine: uptime moves by the seconds between the runs, disk use a little.
        assert!((num(a, "uptime_s") - num(s, "uptime_s")).abs() <= 30.0);
        assert!((num(a, "disk_used_gib") - num(s, "disk_used_gib")).abs() <= 1.0);
    }
}

#[test]
fn report_has_a_chart_line_for_every_node() {
    let mut cluster = TestCluster::start(3);
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("metrics.csv");
    let html = dir.path().join("report.html");
    let collect = |c: &TestCluster| {
        run(c
            .distctl()
            .args(["collect", "--sample-interval", "100ms", "--append", "-o"])
            .arg(&csv))
    };
    assert_eq!(collect(&cluster).status.code(), Some(0));
    cluster.stop_node(2);
    assert_eq!(collect(&cluster).status.code(), Some(1));
    let out = run(Command::new(support::distctl_bin())
        .arg("report")
        .arg(&csv)
        .arg("-o")
        .arg(&html));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let page = fs::read_to_string(&html).unwrap();
    assert!(page.starts_with("<!DOCTYPE html>"));
    assert!(
        !page.contains("http://") && !page.contains("https://") && !page.contains("<script src")
    );
    for metric in [
        "cpu_pct",
        "mem_used_pct",
        "disk_used_pct",
        "load1_per_core",
        "load15_per_core",
        "swap_used_mib",
        "disk_read_kib_s",
        "disk_write_kib_s",
        "net_rx_kib_s",
        "net_tx_kib_s",
    ] {
        let chart = page
            .split(&format!("data-metric=\"{metric}\""))
            .nth(1)
            .unwrap_or_else(|| panic!("no {metric} chart"))
            .split("</section>")
            .next()
            .unwrap();
        for node in ["node1", "node2", "node3"] {
            assert!(
                chart.contains(&format!("data-node=\"{node}\"")),
                "{metric} {node}"
            );
        }
    }
    // The table holds each node's latest sample: node3's says unreachable.
    let row3 = page.split("<tr data-node=\"node3\">").nth(1).unwrap();
    assert!(row3.split("</tr>").next().unwrap().contains("unreachable"));
}

#[test]
fn a_broken_agent_falls_back_to_the_shell_probe() {
    let cluster = TestCluster::start(1);
    let bin = cluster.workdir(0).join("bin");
    fs::create_dir_all(&bin).unwrap();
    let agent = bin.join("worker-agent");
    fs::write(
        &agent,
        "#!/bin/sh\necho 'worker-agent: broken' >&2\nexit 1\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&agent, fs::Permissions::from_mode(0o755)).unwrap();
    let out =
        run(cluster
            .distctl()
            .args(["collect", "--sample-interval", "200ms", "--format", "json"]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let row: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(row["status"], "ok");
    assert_eq!(row["sampler"], "ssh");
    assert!(row["mem_total_mib"].as_u64().unwrap() > 0);
}

#[test]
fn ctrl_c_ends_every_between_whole_rounds() {
    signal_ends_every_between_whole_rounds(libc::SIGINT);
}

/// SIGTERM is `--every`'s normal stop too (a service manager stopping it).
#[test]
fn sigterm_ends_every_between_whole_rounds() {
    signal_ends_every_between_whole_rounds(libc::SIGTERM);
}

fn signal_ends_every_between_whole_rounds(sig: libc::c_int) {
    let cluster = TestCluster::start(2);
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("metrics.csv");
    let child = cluster
        .distctl()
        .args([
            "collect",
            "--sample-interval",
            "100ms",
            "--every",
            "300ms",
            "-o",
        ])
        .arg(&csv)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for two rounds on disk, then interrupt like a terminal would.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while fs::read_to_string(&csv).map_or(0, |s| s.lines().count()) < 5 {
        assert!(std::time::Instant::now() < deadline, "no rounds written");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // SAFETY: kill(2) on the child we started.
    let masters = cluster.ssh_clients();
    unsafe { libc::kill(child.id() as libc::pid_t, sig) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    support::wait_until(
        "the ssh masters to exit",
        std::time::Duration::from_secs(5),
        || masters.iter().all(|p| !support::process_alive(*p)),
    );
    let rows = read_rows(&csv);
    assert!(
        rows.len() >= 4 && rows.len().is_multiple_of(2),
        "whole rounds: {}",
        rows.len()
    );
    rows.iter().for_each(assert_sane);
}

/// Seconds since the epoch of a row's timestamp.
fn row_time(row: &std::collections::HashMap<String, String>) -> f64 {
    humantime::parse_rfc3339(&row["timestamp_utc"])
        .expect("RFC 3339 UTC timestamp")
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[test]
fn every_keeps_rounds_on_the_period_and_warns_once_when_one_overruns() {
    // The built-in local node (no inventory anywhere): no ssh handshake
    // whose time varies, so what is measured is the schedule itself.
    let home = tempfile::tempdir().unwrap();
    let csv = home.path().join("m.csv");
    let out = run(Command::new(support::distctl_bin())
        .current_dir(home.path())
        .env("HOME", home.path())
        .env_remove("DISTCTL_INVENTORY")
        .env_remove("XDG_CONFIG_HOME")
        .args(["collect", "--every", "700ms", "--count", "5", "-o"])
        .arg(&csv));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let rows = read_rows(&csv);
    assert_eq!(rows.len(), 5);
    assert_eq!(rows[0]["node"], "local");
    let starts: Vec<f64> = rows.iter().map(row_time).collect();
    // Rounds start on absolute ticks: round k at start + k periods (each
    // round samples for 175ms, a quarter of the period), and no error
    // accumulates.
    for (k, t) in starts.iter().enumerate() {
        let off = t - starts[0] - 0.7 * k as f64;
        assert!(
            // Less than half a period: a skipped tick or drift still shows,
            // a loaded machine's scheduling delay does not.
            off.abs() < 0.3,
            "round {k} is {off:.3}s off its tick: {starts:?}"
        );
    }

    let cluster = TestCluster::start(2);

    // A period shorter than a round: one warning, rounds skip missed ticks.
    let out = run(cluster
        .distctl()
        .args(["collect", "--every", "300ms", "--sample-interval", "250ms"])
        .args(["--count", "3"]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("longer than --every 300ms"))
        .collect();
    assert_eq!(warnings.len(), 1, "{stderr}");
    assert!(
        warnings[0].starts_with("distctl: warning: round 1 took "),
        "{stderr}"
    );

    // A sample interval that cannot fit its period is refused up front.
    let out = run(cluster
        .distctl()
        .args(["collect", "--every", "1s", "--sample-interval", "1s"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--sample-interval 1s must be shorter than --every 1s"),
        "{}",
        text(&out.stderr)
    );
}

/// `distctl collect --every 1s | head -1`: the reader goes away after the
/// header, and the next rows written end distctl as they end `vmstat 1`:
/// killed by SIGPIPE, silently, not with "error: Broken pipe".
#[test]
fn a_reader_that_goes_away_ends_collect_like_vmstat() {
    use std::io::BufRead;
    use std::os::unix::process::ExitStatusExt;
    let cluster = TestCluster::start(1);
    let mut child = cluster
        .distctl()
        .args(["collect", "--every", "1s", "--sample-interval", "250ms"])
        .args(["--count", "100"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut reader = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut header = String::new();
    reader.read_line(&mut header).unwrap();
    assert_eq!(header.trim_end(), HEADER);
    drop(reader);
    // 100 rounds would take 100 s; the next rows written end it.
    let started = std::time::Instant::now();
    let out = child.wait_with_output().unwrap();
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGPIPE),
        "{:?}, stderr: {}",
        out.status,
        text(&out.stderr)
    );
    // Silently: at most the warning a slow machine earns when a round
    // overruns the period, never a word about the pipe.
    let said = text(&out.stderr);
    assert!(
        said.lines().all(|l| l.contains("longer than --every")),
        "stderr: {said}"
    );
}
