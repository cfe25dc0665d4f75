//! `distctl run INPUT (--op OP | --exec CMD) [-o OUTPUT]`: cut the input into
//! line-aligned chunks, stream each through `worker-agent --framed` on a
//! node (the chunk goes straight to the agent's stdin, so no file is ever
//! written on a node), verify every result, and merge in input order.
//!
//! Glue only: check the arguments, turn them into the engine's plain types
//! ([`Job`], [`Input`], [`RunOptions`]), connect, call
//! [`crate::run::runner::run`], print with [`crate::output::run_summary`].

use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use distctl_proto::Op;
use futures::FutureExt;

use crate::cli::{Global, RunArgs};
use crate::cluster::NodeOutcome;
use crate::exit::Exit;
use crate::output::run_summary;
use crate::run::input::Input;
use crate::run::job::{Job, Work};
use crate::run::runner::{NodePool, RunOptions};
use crate::transport::NodeSession;
use crate::usage;

pub async fn run(g: &Global, args: &RunArgs) -> Result<Exit> {
    let started = Instant::now();
    let job = Arc::new(job_from_args(args)?);
    for p in &args.inputs {
        crate::files::preflight::check_input(p)?;
    }
    if let Some(out) = &args.output {
        crate::files::preflight::check_output(out)?;
    }
    let chunk_size = args.chunk_size.map(|s| s.0);
    let input = if Input::plannable(&args.inputs) {
        Input::plan(&args.inputs, chunk_size, job.numeric() || args.dry_run)?
    } else {
        if args.resume {
            return Err(usage!(
                "--resume needs regular input files (standard input and pipes cannot be read again)"
            ));
        }
        Input::streamed(&args.inputs, chunk_size)
    };
    if args.resume && args.output.is_none() {
        return Err(usage!(
            "--resume needs -o FILE (the journal lives beside the output)"
        ));
    }
    let inventory = crate::cluster::inventory::Inventory::load(g)?;
    let selected = inventory.select(g)?;
    if args.dry_run {
        let plan = crate::run::dryrun::simulate(input, &selected)?;
        run_summary::print_dry_run(&plan, g.json)?;
        return Ok(Exit::Ok);
    }
    // One run per output, held until this command returns (a cron overlap
    // is refused here, before any node is contacted).
    let _lock = match &args.output {
        Some(out) => Some(crate::files::lock::OutputLock::take(out)?),
        None => None,
    };
    // A bad --agent file is the user's to fix before any node is contacted.
    let agent = crate::cluster::agent::AgentBinary::from_option(args.agent.as_deref())?;
    // Each node joins the run as soon as its own handshake is done.
    crate::cluster::driver::warn_unchecked_host_keys(&selected);
    let mut connector = crate::transport::Connector::new(g.fanout)?;
    connector.persist = g.persist.map(|d| d.0);
    let opened: std::sync::Mutex<Vec<Arc<NodeSession>>> = std::sync::Mutex::default();
    let connecting = selected
        .iter()
        .enumerate()
        .map(|(i, node)| {
            let (connector, opened) = (&connector, &opened);
            async move {
                let session = connector.connect(i, node).await.map(Arc::new);
                if let Ok(s) = &session {
                    opened.lock().expect("sessions").push(s.clone());
                }
                session
            }
            .boxed()
        })
        .collect();
    let names: Vec<String> = selected.iter().map(|n| n.name.clone()).collect();
    let known_cores = crate::cluster::cores::KnownCores::load();
    let pool = NodePool {
        names: names.clone(),
        connecting,
        cores: &known_cores,
    };
    let opts = RunOptions {
        output: args.output.clone(),
        resume: args.resume,
        timeout: args.timeout.0,
        retries: args.retries,
        json: g.json,
        quiet: g.quiet,
        compress: args.compress,
    };
    let finished = crate::run::runner::run(&opts, job, input, pool, &agent, started).await;
    // The runner has dropped every session it held (and, stopped by an
    // error or a signal, the connects still under way: the connector stops
    // their handshakes when it goes).
    let sessions = opened.into_inner().unwrap_or_else(|e| e.into_inner());
    crate::cluster::driver::close_all(connector, sessions).await;
    known_cores.save_or_warn();
    let finished = finished?;
    record_outcomes(&inventory, &names, &finished.summary);
    run_summary::print_summary(&finished.summary, g.json, g.quiet, args.output.is_some())?;
    Ok(finished.exit)
}

/// Each node's part for `--nodes @failed`: unreachable (or unprepared),
/// failed when taken out after repeated faults, else ok.
fn record_outcomes(
    inventory: &crate::cluster::inventory::Inventory,
    names: &[String],
    summary: &crate::run::summary::RunSummary,
) {
    let outcomes: Vec<NodeOutcome> = names
        .iter()
        .map(|name| {
            if summary.unreachable.contains(name) {
                NodeOutcome::Unreachable {
                    reason: "not reached or not prepared for the run".into(),
                }
            } else if summary.nodes.iter().any(|n| &n.node == name && n.removed) {
                NodeOutcome::Failed {
                    reason: "taken out of the run after repeated faults".into(),
                }
            } else {
                NodeOutcome::Ok
            }
        })
        .collect();
    let record = crate::cluster::driver::Record {
        command: "run",
        source: inventory.source.clone(),
    };
    crate::cluster::driver::record_outcomes(
        &record,
        names.iter().map(String::as_str).zip(&outcomes),
    );
}

/// The job from `--op`/`--pattern`/`--exec`/`--skip-invalid`.
fn job_from_args(args: &RunArgs) -> Result<Job> {
    let work = match (args.op, &args.exec) {
        (Some(op), _) => {
            if let Some(p) = &args.pattern {
                if op != Op::Grep {
                    return Err(usage!("--pattern is for --op grep"));
                }
                // A bad pattern is the user's to fix before anything runs
                // (the agent compiles it with the same `regex::bytes`).
                regex::bytes::Regex::new(p).map_err(|e| usage!("bad --pattern: {e}"))?;
            }
            Work::Op {
                op,
                pattern: args.pattern.clone(),
            }
        }
        (None, Some(command)) => {
            // `--exec "$CMD"` with CMD unset would run nothing and succeed.
            if command.trim().is_empty() {
                return Err(usage!("--exec: the command is empty"));
            }
            if args.pattern.is_some() {
                return Err(usage!("--pattern is for --op grep"));
            }
            Work::Exec {
                command: command.clone(),
            }
        }
        (None, None) => return Err(usage!("give --op OP or --exec CMD")),
    };
    Ok(Job {
        work,
        skip_invalid: args.skip_invalid,
    })
}
