//! `distctl status`: every selected node at once — reachable or why not,
//! latency, uptime, load, memory, disk of the workdir, agent version.
//! Agentless: one shell probe per node reads /proc and df.

use std::time::Duration;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::cli::Global;
use crate::cluster::inventory::{Inventory, Node};
use crate::cluster::outcome::OutcomeFields;
use crate::cluster::workdir;
use crate::cluster::NodeOutcome;
use crate::exit::Exit;
use crate::metrics::MetricsSample;
use crate::output::summary::NoneReached;
use crate::output::table;
use crate::transport::shell::quote;
use crate::transport::NodeSession;
use crate::units::human_bytes;
use distctl_proto::metrics::{self, format_uptime, probe_dir, ProbeOutput};

#[derive(Debug, Serialize)]
pub struct NodeStatus {
    pub node: String,
    pub host: String,
    pub reachable: bool,
    /// In `--json` as the row's `error` ([`StatusJson`]).
    #[serde(skip)]
    pub error: Option<String>,
    pub latency_ms: Option<f64>,
    /// What the shared probe measured; `--json` shows the part status
    /// shows (README), named as in `collect`.
    #[serde(flatten, serialize_with = "shown_figures")]
    pub sample: MetricsSample,
    /// Installed worker-agent version, or "none".
    pub agent: Option<String>,
    /// `in sync`, `out of sync` or `never synced` against the newest
    /// `distctl sync` stamp of all nodes (None when no node has one).
    pub sync: Option<String>,
    /// The connection rode a master left up by an earlier `--persist`.
    pub warm: bool,
}

impl NodeStatus {
    fn unreachable(node: &Node, error: String) -> NodeStatus {
        NodeStatus {
            node: node.name.clone(),
            host: node.host.clone(),
            reachable: false,
            error: Some(error),
            latency_ms: None,
            warm: false,
            sample: MetricsSample::default(),
            agent: None,
            sync: None,
        }
    }

    fn load(&self) -> Option<[f64; 3]> {
        let s = &self.sample;
        Some([s.load1?, s.load5?, s.load15?])
    }
}

/// A node's row in `status --json`: its status, then `outcome`, `detail`
/// (null) and `error` as in every per-node row.
#[derive(Serialize)]
struct StatusJson<'a> {
    #[serde(flatten)]
    status: &'a NodeStatus,
    #[serde(flatten)]
    outcome: OutcomeFields<'a>,
}

/// The sample's columns in `status --json`, in the README's order.
fn shown_figures<S: serde::Serializer>(s: &MetricsSample, ser: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeStruct;
    let mut m = ser.serialize_struct("Figures", 9)?;
    m.serialize_field("uptime_s", &s.uptime_s)?;
    m.serialize_field("load1", &s.load1)?;
    m.serialize_field("load5", &s.load5)?;
    m.serialize_field("load15", &s.load15)?;
    m.serialize_field("cores", &s.cores)?;
    m.serialize_field("mem_used_mib", &s.mem_used_mib)?;
    m.serialize_field("mem_total_mib", &s.mem_total_mib)?;
    m.serialize_field("disk_used_gib", &s.disk_used_gib)?;
    m.serialize_field("disk_total_gib", &s.disk_total_gib)?;
    m.end()
}

/// The shared probe (no interval: status shows no rates) plus status's own
/// lines: the installed agent's version and the sync stamp.
fn probe_script(node: &Node) -> String {
    let agent = quote(&workdir::agent_path(node));
    let stamp = quote(&workdir::sync_stamp(node));
    format!(
        r#"{}{}echo @agent; if [ -x {agent} ]; then {agent} version 2>/dev/null || echo broken; else echo none; fi
if [ -f {stamp} ]; then echo @sync; while read -r l; do printf '%s ' "$l"; done < {stamp}; echo; fi
"#,
        probe_dir(&quote(&workdir::root(node))),
        metrics::probe_script(None),
    )
}

fn parse_probe(node: &Node, latency: Duration, text: &str) -> Result<NodeStatus> {
    let out = ProbeOutput::parse(text);
    let line = |name: &str| out.section(name).map(|l| l.join(" ").trim().to_string());
    Ok(NodeStatus {
        warm: false,
        node: node.name.clone(),
        host: node.host.clone(),
        reachable: true,
        error: None,
        latency_ms: Some((latency.as_secs_f64() * 1000.0 * 10.0).round() / 10.0),
        sample: out.sample().map_err(anyhow::Error::msg)?,
        agent: line("agent"),
        sync: line("sync"),
    })
}

/// One command per node: every command a node runs pays its login shell's
/// start-up (a pyenv `.bashrc` costs ~130 ms), so the probe's round trip is
/// also the latency reported.
async fn probe(session: &NodeSession) -> Result<NodeStatus> {
    let start = std::time::Instant::now();
    let out = session.run(&probe_script(&session.node), None).await?;
    let latency = start.elapsed();
    if !out.success() {
        anyhow::bail!("probe failed: {}", out.failure_reason());
    }
    let mut st = parse_probe(
        &session.node,
        latency,
        &String::from_utf8_lossy(&out.stdout),
    )
    .context("probe")?;
    st.warm = session.warm;
    Ok(st)
}

pub async fn run(g: &Global) -> Result<Exit> {
    let inventory = Inventory::load(g)?;
    let nodes = inventory.select(g)?;
    let fleet = g.fleet(&inventory, "status", None);
    let results = super::each_node_shown(g, &fleet, "status", &nodes, |session| async move {
        match probe(&session).await {
            Ok(st) => (NodeOutcome::Ok, Some(st)),
            Err(e) if NodeOutcome::timed_out(&e).is_some() => {
                (NodeOutcome::timed_out(&e).unwrap(), None)
            }
            Err(e) => (
                NodeOutcome::ProbeFailed {
                    reason: format!("{e:#}"),
                },
                None,
            ),
        }
    })
    .await?;

    let (outcomes, mut rows): (Vec<NodeOutcome>, Vec<NodeStatus>) = results
        .into_iter()
        .map(|r| {
            let row = r.detail.unwrap_or_else(|| {
                let reason = match r.outcome.reason() {
                    Some(reason) => reason.to_string(),
                    None => r.outcome.to_string(),
                };
                NodeStatus::unreachable(&r.node, reason)
            });
            (r.outcome, row)
        })
        .unzip();
    let stamps: Vec<_> = rows
        .iter()
        .map(|r| r.sync.as_deref().and_then(crate::sync::stamp::Stamp::parse))
        .collect();
    for ((row, state), outcome) in rows
        .iter_mut()
        .zip(crate::sync::stamp::states(&stamps))
        .zip(&outcomes)
    {
        row.sync = if outcome.succeeded() {
            state.map(str::to_string)
        } else {
            None
        };
    }

    if g.json {
        let rows: Vec<StatusJson> = rows
            .iter()
            .zip(&outcomes)
            .map(|(status, o)| StatusJson {
                status,
                outcome: OutcomeFields(o),
            })
            .collect();
        crate::output::json::print(&rows)?;
    } else {
        print!("{}", render(&outcomes, &rows));
        let down: Vec<&str> = rows
            .iter()
            .zip(&outcomes)
            .filter(|(_, o)| !o.succeeded())
            .map(|(r, _)| r.node.as_str())
            .collect();
        if !down.is_empty() && !g.quiet {
            // The full reasons (a row cuts a long one at the table's width),
            // one line per distinct reason with its nodes.
            let named = rows.iter().map(|r| r.node.as_str()).zip(&outcomes);
            let reasons = crate::output::summary::failure_lines(named, rows.len());
            for line in &reasons[..reasons.len().saturating_sub(1)] {
                eprintln!("{line}");
            }
            eprintln!(
                "{} of {} node(s) unreachable: {}",
                down.len(),
                rows.len(),
                crate::cluster::nodeset::fold(&down)
            );
        }
    }
    crate::output::summary::exit_for(&outcomes, NoneReached::IsPartial)
}

fn render(outcomes: &[NodeOutcome], rows: &[NodeStatus]) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .zip(outcomes)
        .map(|(r, outcome)| {
            if !outcome.succeeded() {
                return vec![r.node.clone(), outcome.to_string()];
            }
            let mib = |m: u64| human_bytes(m << 20);
            vec![
                r.node.clone(),
                outcome.to_string(),
                if r.warm { "warm" } else { "new" }.to_string(),
                r.latency_ms.map_or("-".into(), |l| format!("{l:.1}ms")),
                r.sample.uptime_s.map_or("-".into(), format_uptime),
                r.load().map_or("-".into(), |l| {
                    format!("{:.2} {:.2} {:.2}", l[0], l[1], l[2])
                }),
                match (r.sample.mem_used_mib, r.sample.mem_total_mib) {
                    (Some(u), Some(t)) => format!("{} / {}", mib(u), mib(t)),
                    _ => "-".into(),
                },
                match (r.sample.disk_used_gib, r.sample.disk_total_gib) {
                    (Some(u), Some(t)) => format!("{u:.1} / {t:.1} GiB"),
                    _ => "-".into(),
                },
                r.agent.clone().unwrap_or_else(|| "-".into()),
                r.sync.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    let mut header = vec![
        "NODE",
        "STATUS",
        "SSH",
        "LATENCY",
        "UPTIME",
        "LOAD 1/5/15",
        "MEM USED/TOTAL",
        "DISK USED/TOTAL",
        "AGENT",
    ];
    // The SYNC column only once some node has been synced.
    let cells = if rows.iter().any(|r| r.sync.is_some()) {
        header.push("SYNC");
        cells
    } else {
        cells
            .into_iter()
            .map(|mut c| {
                c.truncate(header.len());
                c
            })
            .collect()
    };
    table::render(&header, &cells)
}
