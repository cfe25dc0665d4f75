//! `distctl exec`: one command on every selected node at once, over the
//! node's multiplexed connection. Output streams line by line, each line
//! prefixed with its node (never two nodes' bytes in one line), or is
//! gathered (`--gather`), written as JSON (`--json`) or to files (`--outdir`).
//!
//! What the node runs: a single argument is a shell command line for the
//! node's shell, as with `ssh host 'cmd'` and pdsh; several arguments are
//! one command and its exact argv, each word quoted on the way
//! ([`crate::cluster::exec`]).

use std::io::IsTerminal;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::cli::{ExecArgs, Global};
use crate::cluster::driver::{each_node, NodeResult, Start};
use crate::cluster::exec::{remote_command, run_on, ExecPlan, ExecRun};
use crate::cluster::inventory::Inventory;
use crate::cluster::outcome::OutcomeFields;
use crate::cluster::NodeOutcome;
use crate::exit::Exit;
use crate::output::gather;
use crate::output::lines::escape_controls;
use crate::output::progress::NodesProgress;
use crate::output::relay::LinePrinter;
use crate::output::summary::{exit_for, print_failures, NoneReached};
use crate::units::human_bytes;
use crate::usage;

/// `--gather` keeps at most this much of each node's stdout in memory; the
/// group's header says where a node's was cut.
const GATHER_CAP: usize = 1 << 20;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Prefixed lines as they come.
    Stream,
    /// stdout gathered at the end; stderr streams prefixed.
    Gather,
    /// As Gather, printed as diffs against the most common output.
    Diff,
    /// Everything captured for the JSON report.
    Json,
    /// Everything to DIR/<node>.out/.err.
    Files,
}

#[derive(Serialize)]
struct NodeJson<'a> {
    node: &'a str,
    #[serde(flatten)]
    outcome: OutcomeFields<'a>,
    exit_code: Option<i32>,
    /// Output as UTF-8 (invalid bytes replaced); use --outdir for raw bytes.
    stdout: String,
    stderr: String,
    duration_ms: Option<f64>,
}

pub async fn run(g: &Global, args: &ExecArgs) -> Result<Exit> {
    // `distctl exec "$CMD"` with CMD unset would run nothing and succeed.
    if args.command.iter().all(|w| w.trim().is_empty()) {
        return Err(usage!(
            "the command is empty: give the command to run on every node"
        ));
    }
    let mode = if g.json {
        Mode::Json
    } else if args.diff {
        Mode::Diff
    } else if args.gather {
        Mode::Gather
    } else if args.outdir.is_some() {
        Mode::Files
    } else {
        Mode::Stream
    };
    if let Some(dir) = &args.outdir {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create output directory {}", dir.display()))?;
    }
    let input = if args.stdin {
        let data = tokio::task::spawn_blocking(|| {
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin().lock(), &mut data).map(|_| data)
        })
        .await?
        .context("reading local stdin")?;
        Some(data)
    } else {
        None
    };
    let tag = format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos()
    );
    let escape_on = |stream: &dyn IsTerminal| !args.raw_output && stream.is_terminal();
    let cmdline = remote_command(&args.command, args.timeout.map(|t| t.0), &tag);
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    // The first signal stops the command on every node and waits for that;
    // a second one exits at once (crate::shutdown).
    let on_signal = tokio::spawn(async move {
        crate::shutdown::requested().await;
        let _ = stop_tx.send(true);
    });
    let plan = ExecPlan {
        cmdline: &cmdline,
        input: input.as_deref(),
        timeout: args.timeout.map(|t| t.0),
        print: [
            mode == Mode::Stream,
            matches!(mode, Mode::Stream | Mode::Gather | Mode::Diff),
        ],
        escape: [escape_on(&std::io::stdout()), escape_on(&std::io::stderr())],
        capture: [
            match mode {
                Mode::Json => Some(usize::MAX),
                Mode::Gather | Mode::Diff => Some(GATHER_CAP),
                _ => None,
            },
            (mode == Mode::Json).then_some(usize::MAX),
        ],
        outdir: args.outdir.as_deref(),
        tag: &tag,
        stop,
    };

    let inventory = Inventory::load(g)?;
    let nodes = inventory.select(g)?;
    let fleet = g.fleet(&inventory, "exec", Some(&args.rollout));
    let progress = NodesProgress::new("exec", &nodes, g.quiet);
    let printer = LinePrinter::start(progress.clone());
    let (plan, printer_ref) = (&plan, &printer);
    let nodes_ref = &nodes;
    let runs = each_node(
        &fleet,
        &nodes,
        Start::AsConnected,
        &progress,
        |session| async move {
            let env = node_env(nodes_ref, &session.node.name);
            let (outcome, run) = run_on(&session, plan, &env, printer_ref).await;
            (outcome, Some(run))
        },
    )
    .await?;
    printer.finish();
    progress.finish();
    on_signal.abort();

    match mode {
        Mode::Json => {
            let rows: Vec<NodeJson> = runs.iter().map(json_row).collect();
            crate::output::json::print(&rows)?;
        }
        Mode::Gather | Mode::Diff => {
            let reached: Vec<(&str, String, &[u8])> = runs
                .iter()
                .filter_map(|r| {
                    let run = r.detail.as_ref()?;
                    Some((
                        r.node.name.as_str(),
                        label(&r.outcome, run),
                        &run.stdout[..],
                    ))
                })
                .collect();
            let groups = gather::group(
                reached
                    .iter()
                    .map(|(node, label, out)| (*node, label.as_str(), *out)),
            );
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            let text = if mode == Mode::Diff {
                gather::render_diff(&groups)
            } else {
                gather::render(&groups)
            };
            let text = if escape_on(&std::io::stdout()) {
                escape_controls(&text)
            } else {
                text
            };
            let _ = out.write_all(&text);
            let _ = out.flush();
        }
        Mode::Files => {
            // Per-node results, not informational messages: also under -q.
            for r in &runs {
                let how = match &r.outcome {
                    NodeOutcome::Ok => "exit 0".to_string(),
                    o => o.to_string(),
                };
                match r.detail.as_ref().and_then(|run| run.duration) {
                    Some(d) => println!("{}: {how} in {:.2}s", r.node.name, d.as_secs_f64()),
                    None => println!("{}: {how}", r.node.name),
                }
            }
        }
        Mode::Stream => {}
    }

    print_failures(&runs);
    exit_for(runs.iter().map(|r| &r.outcome), NoneReached::Fails)
}

/// What the command sees of where it runs: `DISTCTL_NODE`,
/// `DISTCTL_NODE_INDEX` (0-based, in selection order), `DISTCTL_NODE_COUNT`.
fn node_env(nodes: &[crate::cluster::inventory::Node], name: &str) -> Vec<(&'static str, String)> {
    let index = nodes.iter().position(|n| n.name == name).unwrap_or(0);
    vec![
        ("DISTCTL_NODE", name.to_string()),
        ("DISTCTL_NODE_INDEX", index.to_string()),
        ("DISTCTL_NODE_COUNT", nodes.len().to_string()),
    ]
}

/// A node's header label in `--gather` ("" for success), saying where its
/// output was cut.
fn label(outcome: &NodeOutcome, run: &ExecRun) -> String {
    let mut parts = Vec::new();
    if *outcome != NodeOutcome::Ok {
        parts.push(outcome.to_string());
    }
    if run.stdout_total > run.stdout.len() as u64 {
        parts.push(format!(
            "output cut at {} of {}; --outdir keeps all",
            human_bytes(run.stdout.len() as u64),
            human_bytes(run.stdout_total)
        ));
    }
    parts.join(", ")
}

fn json_row(r: &NodeResult<ExecRun>) -> NodeJson<'_> {
    let run = r.detail.as_ref();
    let text = |b: Option<&Vec<u8>>| String::from_utf8_lossy(b.map_or(&[][..], |b| b)).into_owned();
    NodeJson {
        node: &r.node.name,
        outcome: OutcomeFields(&r.outcome),
        exit_code: run.and_then(|r| r.code),
        stdout: text(run.map(|r| &r.stdout)),
        stderr: text(run.map(|r| &r.stderr)),
        duration_ms: run
            .and_then(|r| r.duration)
            .map(|d| (d.as_secs_f64() * 10_000.0).round() / 10.0),
    }
}
