//! `distctl disconnect`: close the ssh masters `--persist` (or the
//! inventory's `persist`) left up for the selected nodes.

use anyhow::Result;

use crate::cli::Global;
use crate::cluster::inventory::Inventory;
use crate::exit::Exit;
use crate::output::table;
use crate::transport::ssh::{live_masters, persist_dir};

pub async fn run(g: &Global) -> Result<Exit> {
    let inventory = Inventory::load(g)?;
    let nodes = inventory.select(g)?;
    let server_alive = crate::transport::Connector::SERVER_ALIVE;
    let closing = nodes.iter().filter(|n| !n.local).map(|node| async move {
        let dir = persist_dir(node, server_alive)?;
        let masters = live_masters(&dir).await;
        let closed = masters.len();
        for session in masters {
            let _ = session.close().await;
        }
        // Whatever is left (logs of masters gone) goes too.
        let _ = std::fs::remove_dir_all(&dir);
        anyhow::Ok((node.name.clone(), closed))
    });
    let results = futures::future::try_join_all(closing).await?;
    let rows: Vec<Vec<String>> = results
        .iter()
        .map(|(node, closed)| {
            let what = if *closed > 0 {
                "closed"
            } else {
                "not connected"
            };
            vec![node.clone(), what.to_string()]
        })
        .collect();
    if g.json {
        let doc: Vec<serde_json::Value> = results
            .iter()
            .map(|(node, closed)| serde_json::json!({"node": node, "closed": *closed > 0}))
            .collect();
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        print!("{}", table::render(&["NODE", "MASTER"], &rows));
    }
    Ok(Exit::Ok)
}
