//! `distctl report metrics.csv -o report.html`: read a collect CSV, keep the
//! rows of the selected nodes (`--nodes`, `--exclude`, `--label`), render the
//! self-contained HTML page, write it atomically.

use anyhow::Result;

use crate::cli::{Global, ReportArgs};
use crate::cluster::inventory::{Inventory, Node, Selection, Source};
use crate::exit::Exit;
use crate::files::atomic::replace_file;
use crate::metrics::html::{render, TimedSample};
use crate::metrics::{read_csv, sample_time, MetricsSample};
use crate::usage;

pub async fn run(g: &Global, args: &ReportArgs) -> Result<Exit> {
    g.refuse("report", &["fanout"])?;
    if g.label.is_empty() {
        g.refuse("report", &["inventory", "hosts"])
            .map_err(|e| usage!("{e} (it reads the CSV; the inventory only looks up --label)"))?;
    }
    crate::files::preflight::check_input(&args.metrics)?;
    crate::files::preflight::check_output(&args.output)?;
    let rows = selected(g, args, read_csv(&args.metrics)?)?;
    let samples = rows
        .into_iter()
        .map(|(line, sample)| {
            let t = sample_time(&sample).ok_or_else(|| {
                usage!(
                    "{}: line {line}: bad timestamp '{}' (expected RFC 3339 UTC)",
                    args.metrics.display(),
                    sample.timestamp_utc
                )
            })?;
            Ok(TimedSample { t, sample })
        })
        .collect::<Result<Vec<_>>>()?;
    let html = render(&samples, &args.metrics.display().to_string());
    replace_file(&args.output, html.as_bytes())?;
    let mut nodes: Vec<&str> = Vec::new();
    for s in &samples {
        if !nodes.contains(&s.sample.node.as_str()) {
            nodes.push(&s.sample.node);
        }
    }
    let first = samples.first().map(|s| s.sample.timestamp_utc.as_str());
    let last = samples.last().map(|s| s.sample.timestamp_utc.as_str());
    if g.json {
        let doc = serde_json::json!({
            "report": args.output.display().to_string(),
            "metrics": args.metrics.display().to_string(),
            "rows": samples.len(),
            "nodes": nodes,
            "first": first,
            "last": last,
        });
        crate::output::json::print(&doc)?;
    } else if !g.quiet {
        eprintln!(
            "distctl: wrote {}: {} row(s) of {} node(s){}",
            args.output.display(),
            samples.len(),
            nodes.len(),
            match (first, last) {
                (Some(a), Some(b)) => format!(", {a} to {b}"),
                _ => String::new(),
            }
        );
    }
    Ok(Exit::Ok)
}

/// The CSV rows (with their line numbers) of the nodes `--nodes`,
/// `--exclude` and `--label` select: the node sets are matched against the
/// nodes the CSV has rows for; labels are looked up in the inventory.
fn selected(
    g: &Global,
    args: &ReportArgs,
    rows: Vec<MetricsSample>,
) -> Result<Vec<(usize, MetricsSample)>> {
    let rows: Vec<(usize, MetricsSample)> = rows
        .into_iter()
        .enumerate()
        .map(|(i, s)| (i + 2, s))
        .collect();
    if g.nodes.is_none() && g.exclude.is_none() && g.label.is_empty() {
        return Ok(rows);
    }
    let mut in_csv: Vec<Node> = Vec::new();
    for (_, s) in &rows {
        if !in_csv.iter().any(|n| n.name == s.node) {
            let mut node = Node::local();
            node.name = s.node.clone();
            in_csv.push(node);
        }
    }
    // The inventory's groups (`--nodes @web`) apply to the CSV's nodes too.
    let groups = Inventory::load(g).map(|i| i.groups).unwrap_or_default();
    let csv = Inventory {
        source: Source::File(args.metrics.clone()),
        nodes: in_csv,
        groups,
    };
    let mut keep: Vec<String> = csv
        .select(Selection {
            nodes: g.nodes.clone(),
            exclude: g.exclude.clone(),
            labels: Vec::new(),
        })?
        .into_iter()
        .map(|n| n.name)
        .collect();
    if !g.label.is_empty() {
        let labelled = Inventory::load(g)?.select(Selection {
            labels: g.label.clone(),
            ..Selection::default()
        })?;
        keep.retain(|name| labelled.iter().any(|n| &n.name == name));
        if keep.is_empty() {
            return Err(usage!(
                "{} has no rows of a node labelled {}",
                args.metrics.display(),
                g.label.join(" and ")
            ));
        }
    }
    Ok(rows
        .into_iter()
        .filter(|(_, s)| keep.contains(&s.node))
        .collect())
}
