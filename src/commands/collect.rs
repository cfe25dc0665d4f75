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
use crate::metrics::{now_rfc3339, MetricsOutput, MetricsSample, SampleStatus, Sampler};
use crate::output::summary::{exit_for, NoneReached};
use crate::transport::shell::quote;
use crate::transport::NodeSession;
use crate::usage;
use distctl_proto::metrics::{probe_dir, probe_script, ProbeOutput};

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
    let mut output = MetricsOutput::open(args.output.clone(), format.into(), args.append)?;
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
