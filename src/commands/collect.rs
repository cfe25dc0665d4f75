//! `distctl collect`: one metrics sample per selected node, all nodes sampling
//! their interval at the same time, into CSV, NDJSON or Prometheus text.
//!
//! One command per node: worker-agent's `sample` where it is installed, else
//! (or with `--agentless`) the shared POSIX shell probe reading `/proc` and
//! `df`, parsed into the same [`MetricsSample`] by `distctl_proto::metrics`.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::cli::{CollectArgs, Global, MetricsFormat};
use crate::cluster::driver::{each_node, Start};
use crate::cluster::inventory::{Inventory, Node};
use crate::cluster::workdir;
use crate::cluster::NodeOutcome;
use crate::exit::Exit;
use crate::metrics::rounds::{Tally, Ticks};
use crate::metrics::{now_rfc3339, MetricsOutput, MetricsSample, SampleStatus, Sampler};
use crate::output::progress::{shown, NodesProgress};
use crate::output::summary::{exit_for, NoneReached};
use crate::transport::shell::quote;
use crate::transport::NodeSession;
use crate::usage;
use distctl_proto::metrics::{probe_dir, probe_script, ProbeOutput};

pub async fn run(g: &Global, args: &CollectArgs) -> Result<Exit> {
    if args.every.is_some_and(|e| e.0.is_zero()) {
        return Err(usage!("--every must be longer than zero"));
    }
    let interval = sample_interval(args)?;
    if args.count == Some(0) {
        return Err(usage!("--count must be at least 1"));
    }
    if let Some(out) = &args.output {
        crate::files::preflight::check_output(out)?;
    }
    let inventory = Inventory::load(g)?;
    let nodes = inventory.select(g)?;
    let fleet = g.fleet(&inventory, "collect", None);
    let format = match (args.format, g.json) {
        (Some(f), _) => f,
        (None, true) => MetricsFormat::Json,
        (None, false) => MetricsFormat::Csv,
    };
    let mut output = MetricsOutput::open(args.output.clone(), format.into(), args.append)?;
    let rounds = match args.every {
        Some(_) => args.count,
        None => Some(1),
    };
    let mut exit = Exit::Ok;
    let mut tally = Tally::default();
    let first = Instant::now();
    let mut ticks = args.every.map(|every| Ticks::new(every.0));
    // A signal (Ctrl-C, SIGTERM, SIGHUP) is `--every`'s normal stop: a round
    // under way is dropped whole (never half written), the rounds already
    // written stand.
    let interrupted = crate::shutdown::requested();
    tokio::pin!(interrupted);
    loop {
        if let Some(ticks) = ticks.as_mut() {
            tokio::select! {
                _ = ticks.next() => {}
                _ = &mut interrupted => { tally.interrupted = true; break }
            }
        }
        let started = Instant::now();
        let progress = NodesProgress::new("collect", &nodes, g.quiet);
        let (outcomes, samples) = tokio::select! {
            s = sample_round(&fleet, &nodes, interval, args.agentless, &progress) => s?,
            _ = &mut interrupted => { progress.finish(); tally.interrupted = true; break }
        };
        progress.finish();
        output.write_round(&samples)?;
        exit = exit.max(report_failures(g, &outcomes, &samples)?);
        tally.add(&outcomes);
        if let Some(ticks) = ticks.as_mut() {
            if shown(g.quiet) {
                eprintln!(
                    "{}",
                    tally.round_line(rounds, &samples, &outcomes, started.elapsed())
                );
            }
            ticks.check_overrun(tally.rounds, started.elapsed());
        }
        if rounds.is_some_and(|n| tally.rounds >= n) {
            break;
        }
    }
    if tally.rounds == 0 {
        // Interrupted before the first round was written.
        return Err(anyhow::anyhow!("interrupted before any sample was written"));
    }
    if args.every.is_some() && shown(g.quiet) {
        eprintln!("{}", tally.summary(first.elapsed()));
    }
    Ok(exit)
}

/// `--sample-interval`, or its default: 1s, or a quarter of `--every` when
/// that is shorter (a round, connecting included, has to fit in its period).
fn sample_interval(args: &CollectArgs) -> Result<Duration> {
    let every = args.every.map(|e| e.0);
    let interval = match (args.sample_interval, every) {
        (Some(i), _) => i.0,
        (None, Some(every)) => Duration::from_secs(1).min(every / 4),
        (None, None) => Duration::from_secs(1),
    };
    if interval < Duration::from_millis(100) {
        return Err(usage!("--sample-interval must be at least 100ms"));
    }
    if let (Some(i), Some(every)) = (args.sample_interval, every) {
        if i.0 >= every {
            return Err(usage!(
                "--sample-interval {i} must be shorter than --every {}: each round measures over the sample interval",
                crate::units::Dur(every)
            ));
        }
    }
    Ok(interval)
}

/// Connect to every node, then sample them all at once (the same interval
/// on every node, one timestamp): one row per node in inventory order, with
/// how each node's sampling ended.
pub async fn sample_round(
    fleet: &crate::cluster::driver::Fleet,
    nodes: &[Node],
    interval: Duration,
    agentless: bool,
    progress: &NodesProgress,
) -> Result<(Vec<NodeOutcome>, Vec<MetricsSample>)> {
    let timestamp = std::sync::OnceLock::new();
    let timestamp = &timestamp;
    let results = each_node(
        fleet,
        nodes,
        Start::Together,
        progress,
        |session| async move {
            timestamp.get_or_init(now_rfc3339);
            match sample_node(&session, interval, agentless).await {
                Ok(s) => (NodeOutcome::Ok, Some(s)),
                Err(e) => {
                    let reason = format!("{e:#}").replace('\n', " ");
                    (NodeOutcome::ProbeFailed { reason }, None)
                }
            }
        },
    )
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
    // The sample waits `interval` on purpose; past that, the step bound.
    let bound = interval + crate::transport::deadline::step_timeout();
    let out = session.run_within(&script, None, bound).await?;
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
        ProbeOutput::parse(&text)
            .sample()
            .map_err(anyhow::Error::msg)
    }
}

/// The node-side command: the agent when it is installed and works, else
/// the shared shell probe.
fn sample_script(node: &Node, interval: Duration, agentless: bool) -> String {
    let find_dir = probe_dir(&quote(&workdir::root(node)));
    let probe = probe_script(Some(interval));
    if agentless {
        return format!("{find_dir}{probe}");
    }
    let agent = quote(&workdir::agent_path(node));
    let ms = interval.as_millis();
    format!(
        r#"{find_dir}a={agent}
if [ -x "$a" ] && out=$("$a" sample --interval {ms}ms --path "$d" 2>/dev/null); then printf '%s\n' "$out"; else
{probe}fi
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Without an agent on the node the wrapper falls back to the probe.
    #[test]
    fn no_agent_falls_back_to_the_probe() {
        let mut node = Node::local();
        node.workdir = "/nonexistent/workdir".into();
        let script = sample_script(&node, Duration::from_millis(100), false);
        let out = std::process::Command::new("sh")
            .args(["-c", &script])
            .output();
        let out = String::from_utf8(out.unwrap().stdout).unwrap();
        let s = ProbeOutput::parse(&out).sample().unwrap();
        assert_eq!(s.sampler, Some(Sampler::Ssh));
        assert!((0.0..=100.0).contains(&s.cpu_pct.unwrap()));
    }

    #[test]
    fn probe_output_missing_parts_is_an_error() {
        assert!(ProbeOutput::parse("@uptime0\n1.0 2.0\n").sample().is_err());
    }
}
