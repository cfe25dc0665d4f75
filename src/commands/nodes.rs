//! `distctl nodes`: the selected nodes with their resolved settings.

use anyhow::Result;

use crate::cli::{Global, NodesArgs};
use crate::cluster::inventory::Inventory;
use crate::exit::Exit;
use crate::output::table;

pub async fn run(g: &Global, args: &NodesArgs) -> Result<Exit> {
    let inventory = Inventory::load(g)?;
    let nodes = inventory.select(g)?;
    if args.names {
        // For shell completion: every node name, then every group a
        // `--nodes` expression can name.
        for n in &nodes {
            println!("{}", n.name);
        }
        for group in inventory.groups.keys() {
            println!("@{group}");
        }
        for builtin in std::iter::once("all").chain(crate::cluster::history::OUTCOME_GROUPS) {
            println!("@{builtin}");
        }
        return Ok(Exit::Ok);
    }
    if g.json {
        let groups: std::collections::BTreeMap<&str, String> = inventory
            .groups
            .iter()
            .map(|(name, members)| {
                let members: Vec<&String> = members.iter().collect();
                (name.as_str(), crate::cluster::nodeset::fold(&members))
            })
            .collect();
        let doc = serde_json::json!({
            "inventory": inventory.source.to_string(),
            "nodes": nodes,
            "groups": groups,
        });
        crate::output::json::print(&doc)?;
        return Ok(Exit::Ok);
    }
    let rows: Vec<Vec<String>> = nodes
        .iter()
        .map(|n| {
            vec![
                n.name.clone(),
                if n.local {
                    "(local, no ssh)".into()
                } else {
                    n.host.clone()
                },
                n.port.map_or("-".into(), |p| p.to_string()),
                n.user.clone().unwrap_or_else(|| "-".into()),
                n.workdir.clone(),
                n.slots.map_or("cores".into(), |s| s.to_string()),
                if n.labels.is_empty() {
                    "-".into()
                } else {
                    n.labels.join(",")
                },
                n.host_key_checking.as_str().to_string(),
            ]
        })
        .collect();
    print!(
        "{}",
        table::render(
            &["NODE", "HOST", "PORT", "USER", "WORKDIR", "SLOTS", "LABELS", "HOSTKEY"],
            &rows
        )
    );
    if !g.quiet {
        eprintln!("{} node(s) from {}", nodes.len(), inventory.source);
    }
    Ok(Exit::Ok)
}
