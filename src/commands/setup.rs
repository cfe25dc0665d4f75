//! `distctl setup`: on every selected node at once, create the workdir and
//! install the worker-agent (skipped where the same binary is already there).

use anyhow::Result;
use serde::Serialize;

use crate::cli::{Global, SetupArgs};
use crate::cluster::agent::{ensure_agent, AgentBinary, InstallAction};
use crate::cluster::inventory::Inventory;
use crate::commands::for_each_node;
use crate::exit::Exit;
use crate::output::table;

/// One node's outcome.
#[derive(Debug, Serialize)]
pub struct SetupRow {
    pub node: String,
    /// "pushed", "up-to-date", "failed" or "unreachable".
    pub result: String,
    /// The agent's path on the node.
    pub path: Option<String>,
    pub machine: Option<String>,
    pub error: Option<String>,
}

pub async fn run(g: &Global, a: &SetupArgs) -> Result<Exit> {
    let agent = AgentBinary::from_option(a.agent.as_deref())?;
    let nodes = Inventory::load(g)?.select(g)?;
    let agent = &agent;
    let rows = for_each_node(g, &nodes, |node, conn| async move {
        let row = |result: &str, error: Option<String>| SetupRow {
            node: node.name.clone(),
            result: result.into(),
            path: None,
            machine: None,
            error,
        };
        match conn {
            Err(e) => row("unreachable", Some(e.reason)),
            Ok(session) => {
                let done = ensure_agent(&session, agent).await;
                session.close().await;
                match done {
                    Ok(install) => SetupRow {
                        path: Some(install.path),
                        machine: Some(install.machine),
                        ..row(
                            match install.action {
                                InstallAction::Pushed => "pushed",
                                InstallAction::UpToDate => "up-to-date",
                            },
                            None,
                        )
                    },
                    Err(e) => row("failed", Some(format!("{e:#}"))),
                }
            }
        }
    })
    .await?;

    if g.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        print!("{}", render(&rows));
        if !g.quiet {
            eprintln!(
                "agent: {} ({}, sha256 {})",
                agent.source,
                crate::units::human_bytes(agent.bytes.len() as u64),
                &agent.sha256[..12]
            );
        }
    }
    crate::output::summary::exit_for_results(rows.iter().map(|r| r.result.as_str()))
}

fn render(rows: &[SetupRow]) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let result = match &r.error {
                Some(e) => format!("{}: {e}", r.result),
                None => r.result.replace('-', " "),
            };
            vec![r.node.clone(), result, r.path.clone().unwrap_or_default()]
        })
        .collect();
    table::render(&["NODE", "RESULT", "AGENT"], &cells)
}
