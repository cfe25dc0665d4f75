//! What `run` prints besides its output: the `--dry-run` plan, the closing
//! per-node table and totals, and the line that says how to resume.

use std::path::Path;

use anyhow::Result;

use crate::run::dryrun::DryRun;
use crate::run::summary::RunSummary;
use crate::units::human_bytes;

/// The `--dry-run` plan, as a table or JSON on stdout.
pub fn print_dry_run(plan: &DryRun, json: bool) -> Result<()> {
    if json {
        let v = serde_json::json!({
            "chunks": plan.chunks.iter().map(|c| serde_json::json!({
                "index": c.index, "offset": c.offset, "bytes": c.bytes, "lines": c.lines, "node": c.node,
            })).collect::<Vec<_>>(),
            "nodes": plan.nodes,
            "chunk_size": plan.chunk_size,
        });
        crate::output::json::print(&v)?;
        return Ok(());
    }
    let rows: Vec<Vec<String>> = plan
        .chunks
        .iter()
        .map(|c| {
            vec![
                c.index.to_string(),
                format!("{}-{}", c.offset, c.offset + c.bytes),
                c.bytes.to_string(),
                c.lines.to_string(),
                c.node.clone(),
            ]
        })
        .collect();
    print!(
        "{}",
        crate::output::table::render(
            &["CHUNK", "BYTES FROM-TO", "BYTES", "LINES", "FIRST NODE"],
            &rows
        )
    );
    let total: u64 = plan.chunks.iter().map(|c| c.bytes).sum();
    println!(
        "{} chunk(s), {} over {} node(s); nothing was run",
        plan.chunks.len(),
        human_bytes(total),
        plan.nodes.len()
    );
    if plan.nodes.iter().any(|n| !n.slots_known) {
        println!("(nodes without `slots` in the inventory counted as 1 slot: their cores are read only when running)");
    }
    Ok(())
}

/// The closing summary: one JSON line (on stdout when the output went to a
/// file, else on stderr), or a per-node table and a totals line on stderr.
pub fn print_summary(s: &RunSummary, json: bool, quiet: bool, output_is_file: bool) -> Result<()> {
    if json {
        if output_is_file {
            crate::output::json::print_line(s)?;
        } else {
            eprintln!("{}", serde_json::to_string(s)?);
        }
        return Ok(());
    }
    if quiet {
        return Ok(());
    }
    let rows: Vec<Vec<String>> = s
        .nodes
        .iter()
        .map(|n| {
            vec![
                n.node.clone(),
                n.slots.to_string(),
                n.chunks.to_string(),
                human_bytes(n.bytes),
                format!("{:.1}s", n.busy_seconds),
                n.faults.to_string(),
                if n.removed {
                    "removed".into()
                } else {
                    String::new()
                },
            ]
        })
        .collect();
    eprint!(
        "{}",
        crate::output::table::render(
            &["NODE", "SLOTS", "CHUNKS", "BYTES", "BUSY", "FAULTS", ""],
            &rows
        )
    );
    let rate = s.bytes as f64 / s.seconds.max(0.001);
    let mut line = format!(
        "{} chunk(s), {} in {:.2}s ({}/s), {} retried",
        s.chunks,
        human_bytes(s.bytes),
        s.seconds,
        human_bytes(rate as u64),
        s.retries
    );
    if s.chunks_resumed > 0 {
        line.push_str(&format!(", {} taken from the journal", s.chunks_resumed));
    }
    if !s.unreachable.is_empty() {
        line.push_str(&format!("; skipped: {}", s.unreachable.join(", ")));
    }
    eprintln!("{line}");
    Ok(())
}

/// Said when a run stops before the end, even under `--quiet`: it is how to
/// get the work back.
pub fn stopped_line(done: usize, total: usize, journal: Result<Option<&Path>, String>) -> String {
    let mut msg = format!("distctl: {done} of {total} chunk(s) finished");
    match journal {
        Ok(Some(dir)) => msg.push_str(&format!(
            "; journal kept in {} (run again with --resume to redo only the rest)",
            dir.display()
        )),
        Ok(None) => {}
        Err(je) => msg.push_str(&format!("; cannot keep the journal: {je}")),
    }
    msg
}
