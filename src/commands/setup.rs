//! `distctl setup`: on every selected node at once, create the workdir and
//! install the worker-agent (skipped where the same binary is already there).

use anyhow::Result;
use serde::Serialize;

use crate::cli::{Global, SetupArgs};
use crate::cluster::agent::{ensure_agent, AgentBinary, AgentInstall, InstallAction};
use crate::cluster::driver::{failed_on_error, NodeResult};
use crate::cluster::inventory::Inventory;
use crate::cluster::outcome::OutcomeFields;
use crate::cluster::NodeOutcome;
use crate::exit::Exit;
use crate::output::table;

/// One node's row in `--json`.
#[derive(Debug, Serialize)]
pub struct SetupRow<'a> {
    pub node: &'a str,
    /// `outcome` (`ok`, `failed`, `unreachable`), `detail` (`pushed`,
    /// `up-to-date`), `error`.
    #[serde(flatten)]
    pub outcome: OutcomeFields<'a>,
    /// The agent's path on the node.
    pub path: Option<&'a str>,
    pub machine: Option<&'a str>,
}

pub async fn run(g: &Global, a: &SetupArgs) -> Result<Exit> {
    let agent = AgentBinary::from_option(a.agent.as_deref())?;
    let inventory = Inventory::load(g)?;
    let nodes = inventory.select(g)?;
    let fleet = g.fleet(&inventory, "setup", Some(&a.rollout));
    let agent = &agent;
    let known_cores = crate::cluster::cores::KnownCores::load();
    let cores = &known_cores;
    let results = super::each_node_shown(g, &fleet, "setup", &nodes, |session| async move {
        failed_on_error(ensure_agent(&session, agent).await.map(|install| {
            if let Some(n) = install.cores {
                cores.learn(&session.node, n);
            }
            let outcome = match install.action {
                InstallAction::Pushed => NodeOutcome::Pushed,
                InstallAction::UpToDate => NodeOutcome::UpToDate,
            };
            (outcome, install)
        }))
    })
    .await?;
    known_cores.save_or_warn();

    let exit = crate::output::summary::finish(g.json, &results, row, render);
    if !g.json && !g.quiet {
        eprintln!(
            "agent: {} ({}, sha256 {})",
            agent.source,
            crate::units::human_bytes(agent.bytes.len() as u64),
            &agent.sha256[..12]
        );
    }
    exit
}

fn row(r: &NodeResult<AgentInstall>) -> SetupRow<'_> {
    SetupRow {
        node: &r.node.name,
        outcome: OutcomeFields(&r.outcome),
        path: r.detail.as_ref().map(|i| i.path.as_str()),
        machine: r.detail.as_ref().map(|i| i.machine.as_str()),
    }
}

fn render(rows: &[SetupRow]) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.node.to_string(),
                r.outcome.0.to_string(),
                r.path.unwrap_or_default().to_string(),
            ]
        })
        .collect();
    table::render(&["NODE", "RESULT", "AGENT"], &cells)
}
