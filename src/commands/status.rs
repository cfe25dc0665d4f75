//! `distctl status`: every selected node at once — reachable or why not,
//! latency, uptime, load, memory, disk of the workdir, agent version.
//! Agentless: one shell probe per node reads /proc and df.

use std::time::Duration;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::cli::Global;
use crate::cluster::driver::{each_node, Start};
use crate::cluster::inventory::{Inventory, Node};
use crate::cluster::workdir;
use crate::cluster::NodeOutcome;
use crate::exit::Exit;
use crate::output::summary::NoneReached;
use crate::output::table;
use crate::transport::shell::quote;
use crate::transport::NodeSession;
use crate::units::human_bytes;

#[derive(Debug, Serialize)]
pub struct NodeStatus {
    pub node: String,
    pub host: String,
    pub reachable: bool,
    pub error: Option<String>,
    pub latency_ms: Option<f64>,
    pub uptime_s: Option<u64>,
    pub load: Option<[f64; 3]>,
    pub cores: Option<u32>,
    pub mem_used_mib: Option<u64>,
    pub mem_total_mib: Option<u64>,
    pub disk_used_gib: Option<f64>,
    pub disk_total_gib: Option<f64>,
    /// Installed worker-agent version, or "none".
    pub agent: Option<String>,
    /// `in sync`, `out of sync` or `never synced` against the newest
    /// `distctl sync` stamp of all nodes (None when no node has one).
    pub sync: Option<String>,
}

impl NodeStatus {
    fn unreachable(node: &Node, error: String) -> NodeStatus {
        NodeStatus {
            node: node.name.clone(),
            host: node.host.clone(),
            reachable: false,
            error: Some(error),
            latency_ms: None,
            uptime_s: None,
            load: None,
            cores: None,
            mem_used_mib: None,
            mem_total_mib: None,
            disk_used_gib: None,
            disk_total_gib: None,
            agent: None,
            sync: None,
        }
    }
}

/// The probe: plain POSIX sh, so it works before `setup` and on minimal
/// images (no awk, no procps). Builtins only, but for the one `df`: at 64
/// nodes on a small machine every fork on the nodes shows in the wall time.
/// One `key values...` line per fact.
fn probe_script(node: &Node) -> String {
    let wd = quote(&workdir::root(node));
    let agent = quote(&workdir::agent_path(node));
    let stamp = quote(&workdir::sync_stamp(node));
    format!(
        r#"d={wd}; while [ ! -d "$d" ]; do case $d in */*) d=${{d%/*}}; d=${{d:-/}};; *) d=.;; esac; done
read up idle < /proc/uptime; echo "uptime $up"
read l1 l5 l15 rest < /proc/loadavg; echo "load $l1 $l5 $l15"
read cpus < /sys/devices/system/cpu/online; echo "cpus $cpus"
while read k v rest; do case $k in MemTotal:|MemAvailable:) echo "$k $v";; esac; done < /proc/meminfo
set -- $(df -Pk -- "$d"); echo "disk $9 ${{10}} ${{11}}"
if [ -x {agent} ]; then echo "agent $({agent} version 2>/dev/null || echo broken)"; else echo "agent none"; fi
if [ -f {stamp} ]; then printf 'sync'; while read -r l; do printf ' %s' "$l"; done < {stamp}; echo; fi
"#
    )
}

/// Count CPUs in a kernel list like `0-3,8,10-11`.
fn count_cpus(list: &str) -> Option<u32> {
    let mut n = 0;
    for part in list.trim().split(',').filter(|p| !p.is_empty()) {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let (a, b): (u32, u32) = (a.parse().ok()?, b.parse().ok()?);
        n += b.checked_sub(a)? + 1;
    }
    (n > 0).then_some(n)
}

fn parse_probe(node: &Node, latency: Duration, text: &str) -> Result<NodeStatus> {
    let mut st = NodeStatus::unreachable(node, String::new());
    st.reachable = true;
    st.error = None;
    st.latency_ms = Some((latency.as_secs_f64() * 1000.0 * 10.0).round() / 10.0);
    let (mut mem_total, mut mem_avail) = (None, None);
    for line in text.lines() {
        let mut it = line.split_whitespace();
        let key = it.next().unwrap_or("");
        let vals: Vec<&str> = it.collect();
        let num = |i: usize| -> Option<f64> { vals.get(i).and_then(|v| v.parse().ok()) };
        match key {
            "uptime" => st.uptime_s = num(0).map(|v| v as u64),
            "load" => {
                st.load = Some([
                    num(0).unwrap_or(0.0),
                    num(1).unwrap_or(0.0),
                    num(2).unwrap_or(0.0),
                ])
            }
            "cpus" => st.cores = vals.first().and_then(|l| count_cpus(l)),
            "MemTotal:" => mem_total = num(0),
            "MemAvailable:" => mem_avail = num(0),
            "disk" => {
                // df -P: 1K blocks total, used, available; used as df shows it.
                let gib = |k: f64| (k / (1024.0 * 1024.0) * 100.0).round() / 100.0;
                st.disk_total_gib = num(0).map(gib);
                st.disk_used_gib = num(1).map(gib);
            }
            "agent" => st.agent = Some(vals.join(" ")),
            "sync" => st.sync = Some(vals.join(" ")),
            _ => {}
        }
    }
    if let (Some(t), Some(a)) = (mem_total, mem_avail) {
        st.mem_total_mib = Some((t / 1024.0) as u64);
        st.mem_used_mib = Some(((t - a) / 1024.0) as u64);
    }
    if st.uptime_s.is_none() || st.mem_total_mib.is_none() {
        anyhow::bail!(
            "unexpected probe output: {}",
            text.lines().next().unwrap_or("")
        );
    }
    Ok(st)
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
    parse_probe(
        &session.node,
        latency,
        &String::from_utf8_lossy(&out.stdout),
    )
    .context("probe")
}

pub async fn run(g: &Global) -> Result<Exit> {
    let nodes = Inventory::load(g)?.select(g)?;
    let results = each_node(g.fanout, &nodes, Start::AsConnected, |session| async move {
        match probe(&session).await {
            Ok(st) => (NodeOutcome::Ok, Some(st)),
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
                let reason = r.outcome.reason().unwrap_or_default();
                NodeStatus::unreachable(&r.node, reason.to_string())
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
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        print!("{}", render(&outcomes, &rows));
        let down: Vec<&str> = rows
            .iter()
            .zip(&outcomes)
            .filter(|(_, o)| !o.succeeded())
            .map(|(r, _)| r.node.as_str())
            .collect();
        if !down.is_empty() && !g.quiet {
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
                r.latency_ms.map_or("-".into(), |l| format!("{l:.1}ms")),
                r.uptime_s.map_or("-".into(), human_uptime),
                r.load.map_or("-".into(), |l| {
                    format!("{:.2} {:.2} {:.2}", l[0], l[1], l[2])
                }),
                match (r.mem_used_mib, r.mem_total_mib) {
                    (Some(u), Some(t)) => format!("{} / {}", mib(u), mib(t)),
                    _ => "-".into(),
                },
                match (r.disk_used_gib, r.disk_total_gib) {
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

fn human_uptime(s: u64) -> String {
    let (d, h, m) = (s / 86400, s % 86400 / 3600, s % 3600 / 60);
    if d > 0 {
        format!("{d}d {h}h")
    } else if h > 0 {
        format!("{h}h {m}m")
    } else {
        format!("{m}m {}s", s % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::count_cpus;

    #[test]
    fn cpu_lists() {
        assert_eq!(count_cpus("0-1"), Some(2));
        assert_eq!(count_cpus("0"), Some(1));
        assert_eq!(count_cpus("0-3,8,10-11\n"), Some(7));
        assert_eq!(count_cpus("x"), None);
    }
}
