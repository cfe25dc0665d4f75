//! `distctl collect`: one metrics sample per selected node, all nodes sampling
//! their interval at the same time, into CSV, NDJSON or Prometheus text.
//!
//! One command per node: worker-agent's `sample` where it is installed, else
//! (or with `--agentless`) a POSIX shell probe reading `/proc` and `df`, whose
//! raw counters are turned into the same [`MetricsSample`] here.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::cli::{CollectArgs, Global, MetricsFormat};
use crate::cluster::driver::{each_node, Start};
use crate::cluster::inventory::{Inventory, Node};
use crate::cluster::workdir;
use crate::cluster::NodeOutcome;
use crate::exit::Exit;
use crate::metrics::{now_rfc3339, MetricsOutput, MetricsSample, SampleStatus, Sampler};
use crate::output::summary::{exit_for, NoneReached};
use crate::transport::shell::quote;
use crate::transport::NodeSession;
use crate::usage;
use distctl_proto::metrics::{mib, set_disk, set_io_rates, CpuTimes, IoCounters};

/// Beyond the interval itself, how long a node may take to answer.
const SAMPLE_GRACE: Duration = Duration::from_secs(30);

pub async fn run(g: &Global, args: &CollectArgs) -> Result<Exit> {
    let interval = args.sample_interval.0;
    if interval < Duration::from_millis(100) {
        return Err(usage!("--sample-interval must be at least 100ms"));
    }
    if args.every.is_some_and(|e| e.0.is_zero()) {
        return Err(usage!("--every must be longer than zero"));
    }
    if args.count == Some(0) {
        return Err(usage!("--count must be at least 1"));
    }
    if let Some(out) = &args.output {
        crate::files::preflight::check_output(out)?;
    }
    let nodes = Inventory::load(g)?.select(g)?;
    let format = match (args.format, g.json) {
        (Some(f), _) => f,
        (None, true) => MetricsFormat::Json,
        (None, false) => MetricsFormat::Csv,
    };
    let mut output = MetricsOutput::open(args.output.clone(), format, args.append)?;
    let rounds = match args.every {
        Some(_) => args.count,
        None => Some(1),
    };
    let mut exit = Exit::Ok;
    let mut round = 0u64;
    // A signal (Ctrl-C, SIGTERM, SIGHUP) is `--every`'s normal stop: a round
    // under way is dropped whole (never half written), the rounds already
    // written stand.
    let interrupted = crate::shutdown::requested();
    tokio::pin!(interrupted);
    loop {
        let started = Instant::now();
        let (outcomes, samples) = tokio::select! {
            s = sample_round(g, &nodes, interval, args.agentless) => s?,
            _ = &mut interrupted => break,
        };
        output.write_round(&samples)?;
        exit = exit.max(report_failures(g, &outcomes, &samples)?);
        round += 1;
        if rounds.is_some_and(|n| round >= n) {
            break;
        }
        let period = args.every.map(|e| e.0).unwrap_or_default();
        tokio::select! {
            _ = tokio::time::sleep(period.saturating_sub(started.elapsed())) => {}
            _ = &mut interrupted => break,
        }
    }
    if round == 0 {
        // Interrupted before the first round was written.
        return Err(anyhow::anyhow!("interrupted before any sample was written"));
    }
    Ok(exit)
}

/// Connect to every node, then sample them all at once (the same interval
/// on every node, one timestamp): one row per node in inventory order, with
/// how each node's sampling ended.
pub async fn sample_round(
    g: &Global,
    nodes: &[Node],
    interval: Duration,
    agentless: bool,
) -> Result<(Vec<NodeOutcome>, Vec<MetricsSample>)> {
    let timestamp = std::sync::OnceLock::new();
    let timestamp = &timestamp;
    let results = each_node(g.fanout, nodes, Start::Together, |session| async move {
        timestamp.get_or_init(now_rfc3339);
        match sample_node(&session, interval, agentless).await {
            Ok(s) => (NodeOutcome::Ok, Some(s)),
            Err(e) => {
                let reason = format!("{e:#}").replace('\n', " ");
                (NodeOutcome::ProbeFailed { reason }, None)
            }
        }
    })
    .await?;
    let timestamp = timestamp.get_or_init(now_rfc3339);
    Ok(results
        .into_iter()
        .map(|r| {
            let mut s = r.detail.unwrap_or_else(|| MetricsSample {
                status: match r.outcome {
                    NodeOutcome::Unreachable { .. } => SampleStatus::Unreachable,
                    _ => SampleStatus::Error,
                },
                error: r.outcome.reason().map(|e| e.replace('\n', " ")),
                ..MetricsSample::default()
            });
            s.timestamp_utc = timestamp.clone();
            s.node = r.node.name.clone();
            s.host = r.node.host.clone();
            (r.outcome, s)
        })
        .unzip())
}

/// The round's exit code (1 when some node was not sampled); say which on stderr.
fn report_failures(
    g: &Global,
    outcomes: &[NodeOutcome],
    samples: &[MetricsSample],
) -> Result<Exit> {
    let bad: Vec<&str> = outcomes
        .iter()
        .zip(samples)
        .filter(|(o, _)| !o.succeeded())
        .map(|(_, s)| s.node.as_str())
        .collect();
    if !bad.is_empty() && !g.quiet {
        eprintln!(
            "distctl: {} of {} node(s) not sampled: {}",
            bad.len(),
            samples.len(),
            crate::cluster::nodeset::fold(&bad)
        );
    }
    exit_for(outcomes, NoneReached::IsPartial)
}

async fn sample_node(
    session: &NodeSession,
    interval: Duration,
    agentless: bool,
) -> Result<MetricsSample> {
    let script = sample_script(&session.node, interval, agentless);
    let out = tokio::time::timeout(interval + SAMPLE_GRACE, session.run(&script, None))
        .await
        .map_err(|_| {
            anyhow::anyhow!("no sample within {}s", (interval + SAMPLE_GRACE).as_secs())
        })??;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.success() {
        anyhow::bail!("sampling failed: {}", out.failure_reason());
    }
    if text.starts_with('{') {
        let mut s: MetricsSample =
            serde_json::from_str(text.trim()).context("worker-agent sample printed bad JSON")?;
        s.status = SampleStatus::Ok;
        s.sampler = Some(Sampler::Agent);
        Ok(s)
    } else {
        parse_probe(&text)
    }
}

/// The node-side command: the agent when it is installed and works, else
/// the shell probe. Plain POSIX sh and coreutils (no awk, no procps).
fn sample_script(node: &Node, interval: Duration, agentless: bool) -> String {
    let wd = quote(&workdir::root(node));
    let secs = format!("{:.3}", interval.as_secs_f64());
    let probe = format!(
        r#"snap() {{ echo "@uptime$1"; cat /proc/uptime; echo "@stat$1"; read -r l < /proc/stat; echo "$l"
echo "@diskstats$1"; cat /proc/diskstats 2>/dev/null; echo "@netdev$1"; cat /proc/net/dev 2>/dev/null; }}
snap 0; sleep {secs}; snap 1
echo @loadavg; cat /proc/loadavg
echo @meminfo; cat /proc/meminfo
echo @cores; getconf _NPROCESSORS_ONLN 2>/dev/null || nproc
echo @blockdevs; ls /sys/block 2>/dev/null
echo @df; df -Pk -- "$d""#
    );
    let find_dir = format!(r#"d={wd}; while [ ! -d "$d" ]; do d=$(dirname -- "$d"); done"#);
    if agentless {
        return format!("{find_dir}\n{probe}\n");
    }
    let agent = quote(&workdir::agent_path(node));
    let ms = interval.as_millis();
    format!(
        r#"{find_dir}
a={agent}
if [ -x "$a" ] && out=$("$a" sample --interval {ms}ms --path "$d" 2>/dev/null); then printf '%s\n' "$out"; else
{probe}
fi
"#
    )
}

/// Turn the shell probe's `@section` output into a sample.
fn parse_probe(text: &str) -> Result<MetricsSample> {
    let mut sections: HashMap<&str, Vec<&str>> = HashMap::new();
    let mut current = "";
    for line in text.lines() {
        match line.strip_prefix('@') {
            Some(name) if name.bytes().all(|b| b.is_ascii_alphanumeric()) => {
                current = name;
                sections.entry(name).or_default();
            }
            _ => sections.entry(current).or_default().push(line),
        }
    }
    let joined = |name: &str| sections.get(name).map(|l| l.join("\n")).unwrap_or_default();
    let first = |name: &str| -> Vec<f64> {
        sections
            .get(name)
            .and_then(|l| l.first())
            .map(|l| l.split_whitespace().map_while(|v| v.parse().ok()).collect())
            .unwrap_or_default()
    };
    let bad = |what: &str| anyhow::anyhow!("unexpected probe output: no {what}");

    let up0 = *first("uptime0")
        .first()
        .ok_or_else(|| bad("/proc/uptime"))?;
    let up1 = *first("uptime1")
        .first()
        .ok_or_else(|| bad("/proc/uptime"))?;
    let cpu0 = CpuTimes::parse(&joined("stat0")).ok_or_else(|| bad("/proc/stat"))?;
    let cpu1 = CpuTimes::parse(&joined("stat1")).ok_or_else(|| bad("/proc/stat"))?;
    let load = first("loadavg");
    if load.len() < 3 {
        return Err(bad("/proc/loadavg"));
    }
    let mut s = MetricsSample {
        sampler: Some(Sampler::Ssh),
        uptime_s: Some(up1 as u64),
        load1: Some(load[0]),
        load5: Some(load[1]),
        load15: Some(load[2]),
        cpu_pct: Some(CpuTimes::busy_pct(cpu0, cpu1)),
        cores: first("cores").first().map(|&c| c as u32),
        ..MetricsSample::default()
    };

    let mut kib: HashMap<&str, u64> = HashMap::new();
    for line in sections.get("meminfo").into_iter().flatten() {
        let mut it = line.split_whitespace();
        if let (Some(k), Some(Ok(v))) = (it.next(), it.next().map(str::parse::<u64>)) {
            kib.insert(k.trim_end_matches(':'), v);
        }
    }
    let total = *kib.get("MemTotal").ok_or_else(|| bad("MemTotal"))?;
    let avail = kib.get("MemAvailable").copied().unwrap_or_else(|| {
        // Kernels before 3.14 have no MemAvailable: free + buffers + cache.
        ["MemFree", "Buffers", "Cached"]
            .iter()
            .map(|k| kib.get(k).copied().unwrap_or(0))
            .sum()
    });
    s.mem_total_mib = Some(mib(total * 1024));
    s.mem_used_mib = Some(mib(total.saturating_sub(avail) * 1024));
    let swap = |k: &str| kib.get(k).copied().unwrap_or(0);
    s.swap_used_mib = Some(mib(
        swap("SwapTotal").saturating_sub(swap("SwapFree")) * 1024
    ));

    // df -Pk: a header line, then `fs 1K-blocks used available capacity mount`.
    let df: Vec<u64> = sections
        .get("df")
        .and_then(|l| l.get(1))
        .map(|l| {
            l.split_whitespace()
                .skip(1)
                .take(2)
                .filter_map(|v| v.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    if let [total, used] = df[..] {
        set_disk(&mut s, total * 1024, total.saturating_sub(used) * 1024);
    } else {
        return Err(bad("df output"));
    }

    let devices: Vec<&str> = sections
        .get("blockdevs")
        .map(|l| l.iter().flat_map(|x| x.split_whitespace()).collect())
        .unwrap_or_default();
    let io = |i: u8| {
        IoCounters::parse(
            &joined(&format!("diskstats{i}")),
            &joined(&format!("netdev{i}")),
            &devices,
        )
    };
    set_io_rates(&mut s, io(0), io(1), up1 - up0);
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The probe run for real by the local shell parses into a sane sample.
    #[test]
    fn probe_runs_and_parses_locally() {
        let mut node = Node::local();
        node.workdir = "/nonexistent/workdir".into();
        let script = sample_script(&node, Duration::from_millis(200), true);
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(&script)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let s = parse_probe(&String::from_utf8_lossy(&out.stdout)).unwrap();
        assert!(s.mem_used_mib.unwrap() <= s.mem_total_mib.unwrap());
        assert!((0.0..=100.0).contains(&s.cpu_pct.unwrap()));
        assert!(s.cores.unwrap() >= 1);
        assert!(s.disk_used_gib.unwrap() <= s.disk_total_gib.unwrap());
        assert!(s.disk_read_kib_s.unwrap() >= 0.0);
    }

    #[test]
    fn probe_output_missing_parts_is_an_error() {
        assert!(parse_probe("@uptime0\n1.0 2.0\n").is_err());
    }
}
