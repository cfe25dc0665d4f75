//! `distctl run INPUT (--op OP | --exec CMD) [-o OUTPUT]`: cut the input into
//! line-aligned chunks, stream each through `worker-agent --framed` on a
//! node (the chunk goes straight to the agent's stdin, so no file is ever
//! written on a node), verify every result, and merge in input order.
//!
//! Pipeline: plan ([`crate::run::chunk`]) → schedule ([`crate::run::schedule`]) →
//! attempts ([`crate::run::attempt`]) → ordered merge ([`crate::run::merge`]) with a resume journal
//! ([`crate::run::journal`]); progress and summary ([`crate::output::progress`]) only
//! listen.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use distctl_proto::{Op, Partial};
use serde::Serialize;
use tokio::task::JoinSet;

use crate::cli::{Global, RunArgs};
use crate::commands::Cluster;
use crate::exit::Exit;
use crate::files::atomic::{replace_file, AtomicFile};
use crate::output::progress::RunProgress;
use crate::run::attempt::{attempt, AttemptError, ChunkData, ChunkSpec, Verified};
use crate::run::chunk::{
    default_chunk_size, Chunk, ChunkPlan, ConcatReader, Cut, InputFile, InputStream, StreamChunker,
};
use crate::run::journal::{checksum_hex, DoneEntry, JobKey, Journal, Place};
use crate::run::merge::{MemoryBudget, OrderedWriter, ResultBuf};
use crate::run::schedule::{Fault, Scheduler};
use crate::transport::{NodeSession, CHANNELS_PER_NODE};
use crate::units::human_bytes;
use crate::usage;

/// Results waiting for an earlier chunk are held in memory up to this many
/// bytes in total; beyond it they spill to unlinked temp files.
const RESULT_MEMORY: usize = 24 << 20;
/// Chunks cut from standard input are held until verified (for retries): at
/// most this many bytes of them at once (but always at least one chunk).
const STDIN_MEMORY: u64 = 32 << 20;

/// What runs on each chunk.
pub struct Job {
    pub op: Option<Op>,
    pub pattern: Option<String>,
    pub exec: Option<String>,
    pub skip_invalid: bool,
}

impl Job {
    fn from_args(args: &RunArgs) -> Result<Job> {
        let op = args.op;
        if op.is_none() && args.exec.is_none() {
            return Err(usage!("give --op OP or --exec CMD"));
        }
        if let Some(p) = &args.pattern {
            if op != Some(Op::Grep) {
                return Err(usage!("--pattern is for --op grep"));
            }
            regex_check(p)?;
        }
        Ok(Job {
            op,
            pattern: args.pattern.clone(),
            exec: args.exec.clone(),
            skip_invalid: args.skip_invalid,
        })
    }

    fn name(&self) -> String {
        self.op
            .map_or_else(|| "exec".to_string(), |o| o.name().to_string())
    }

    fn aggregate(&self) -> bool {
        self.op.is_some_and(Op::is_aggregate)
    }

    fn numeric(&self) -> bool {
        self.op.is_some_and(Op::is_numeric)
    }

    /// The agent's command line for one chunk of `len` bytes.
    fn command_line(&self, agent: &str, len: u64, line_offset: Option<u64>) -> String {
        let mut argv: Vec<String> = vec![agent.to_string()];
        match (self.op, &self.exec) {
            (Some(op), _) => {
                argv.extend(["op".into(), op.name().into()]);
                if let Some(p) = &self.pattern {
                    argv.extend(["--pattern".into(), p.clone()]);
                }
                if self.skip_invalid {
                    argv.push("--skip-invalid".into());
                }
                if let Some(l) = line_offset {
                    argv.extend(["--line-offset".into(), l.to_string()]);
                }
            }
            (None, Some(_)) => argv.push("exec".into()),
            (None, None) => unreachable!("checked in from_args"),
        }
        argv.extend(["--framed".into(), "--expect-bytes".into(), len.to_string()]);
        if let (None, Some(cmd)) = (self.op, &self.exec) {
            argv.extend(["--".into(), "sh".into(), "-c".into(), cmd.clone()]);
        }
        crate::transport::shell::join(&argv)
    }
}

/// A bad `--pattern` is the user's to fix before anything runs (the agent
/// compiles it with the same `regex::bytes`).
fn regex_check(p: &str) -> Result<()> {
    regex::bytes::Regex::new(p).map_err(|e| usage!("bad --pattern: {e}"))?;
    Ok(())
}

/// A node taking part in the run.
struct RunNode {
    name: String,
    session: Arc<NodeSession>,
    agent: String,
}

struct AttemptReport {
    chunk: usize,
    len: u64,
    node: usize,
    elapsed: Duration,
    outcome: Result<Verified, AttemptError>,
}

/// Per-node figures for the summary.
#[derive(Debug, Default, Clone, Serialize)]
pub struct NodeSummary {
    pub node: String,
    pub slots: usize,
    pub chunks: u64,
    pub bytes: u64,
    /// Sum of the node's chunk times (chunks overlap, so this exceeds wall time).
    pub busy_seconds: f64,
    pub faults: u64,
    /// Taken out of the run after repeated faults.
    pub removed: bool,
}

#[derive(Debug, Default, Serialize)]
pub struct RunSummary {
    pub op: String,
    pub chunks: usize,
    /// Chunks processed by this invocation.
    pub chunks_run: usize,
    /// Chunks taken from the journal of an interrupted run (`--resume`).
    pub chunks_resumed: usize,
    pub bytes: u64,
    pub lines: u64,
    pub output_bytes: u64,
    pub seconds: f64,
    pub retries: u64,
    pub nodes: Vec<NodeSummary>,
    pub unreachable: Vec<String>,
}

enum Input {
    /// Regular files: chunks planned up front, read (and re-read) by range.
    Planned {
        stream: Arc<InputStream>,
        chunks: Vec<Chunk>,
        chunk_size: u64,
    },
    /// Standard input or pipes among the inputs: cut on the fly.
    Streamed(Vec<PathBuf>),
}

pub async fn run(g: &Global, args: &RunArgs) -> Result<Exit> {
    let job = Arc::new(Job::from_args(args)?);
    for p in &args.inputs {
        crate::files::preflight::check_input(p)?;
    }
    if let Some(out) = &args.output {
        crate::files::preflight::check_output(out)?;
    }
    let planned = args
        .inputs
        .iter()
        .all(|p| p.as_os_str() != "-" && InputFile::is_regular(p));
    let input = if planned {
        let stream = InputStream::open(&args.inputs).map_err(|e| usage!("{e:#}"))?;
        // The default tapers towards the end; an explicit size is kept throughout.
        let (size, cut) = match args.chunk_size {
            Some(s) => (s.0, Cut::Size(s.0)),
            None => {
                let s = default_chunk_size(Some(stream.total));
                (s, Cut::Tapered(s))
            }
        };
        let mut plan = ChunkPlan::new(stream, &cut)?;
        if job.numeric() || args.dry_run {
            plan.count_lines().context("reading the input")?;
        }
        Input::Planned {
            stream: Arc::new(plan.input),
            chunks: plan.chunks,
            chunk_size: size,
        }
    } else {
        if args.resume {
            return Err(usage!(
                "--resume needs regular input files (standard input and pipes cannot be read again)"
            ));
        }
        Input::Streamed(args.inputs.clone())
    };
    if args.resume && args.output.is_none() {
        return Err(usage!(
            "--resume needs -o FILE (the journal lives beside the output)"
        ));
    }
    if args.dry_run {
        return dry_run(g, args, input);
    }
    let inventory = crate::cluster::inventory::Inventory::load(g)?;
    let selected = inventory.select(g)?;
    Runner::start(g, args, job, input, selected)
        .await?
        .go()
        .await
}

/// `--dry-run`: the plan and the node each chunk would go to first, assuming
/// equal chunk times; no node is contacted (a node without `slots` in the
/// inventory counts as one slot, since its cores are unknown).
fn dry_run(g: &Global, args: &RunArgs, input: Input) -> Result<Exit> {
    let input_chunk_size = input.chunk_size(args);
    let inventory = crate::cluster::inventory::Inventory::load(g)?;
    let nodes = inventory.select(g)?;
    let slots: Vec<usize> = nodes
        .iter()
        .map(|n| {
            n.slots
                .map_or(1, |s| (s as usize).clamp(1, CHANNELS_PER_NODE))
        })
        .collect();
    let chunks: Vec<(usize, u64, u64, u64)> = match input {
        Input::Planned { chunks, .. } => chunks
            .iter()
            .map(|c| (c.index, c.start, c.len, c.lines.unwrap_or(0)))
            .collect(),
        Input::Streamed(paths) => {
            let mut s = StreamChunker::new(ConcatReader::open(&paths)?, input_chunk_size);
            let mut v = Vec::new();
            while let Some(c) = s.next_chunk().context("reading the input")? {
                v.push((c.index, c.start, c.data.len() as u64, c.lines));
            }
            v
        }
    };
    let mut sched = Scheduler::new(chunks.len(), &slots, 0);
    let mut first = vec![0usize; chunks.len()];
    let mut running = std::collections::VecDeque::new();
    loop {
        let mut any = false;
        for n in 0..nodes.len() {
            if let Some(c) = sched.next_for(n) {
                first[c] = n;
                running.push_back((c, n));
                any = true;
            }
        }
        if !any {
            match running.pop_front() {
                Some((c, n)) => sched.done(c, n),
                None => break,
            }
        }
    }
    if g.json {
        let v = serde_json::json!({
            "chunks": chunks.iter().map(|&(i, off, len, lines)| serde_json::json!({
                "index": i, "offset": off, "bytes": len, "lines": lines, "node": nodes[first[i]].name,
            })).collect::<Vec<_>>(),
            "nodes": nodes.iter().zip(&slots).map(|(n, s)| serde_json::json!({
                "node": n.name, "slots": s, "slots_known": n.slots.is_some(),
            })).collect::<Vec<_>>(),
            "chunk_size": input_chunk_size,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        let rows: Vec<Vec<String>> = chunks
            .iter()
            .map(|&(i, off, len, lines)| {
                vec![
                    i.to_string(),
                    format!("{off}-{}", off + len),
                    len.to_string(),
                    lines.to_string(),
                    nodes[first[i]].name.clone(),
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
        let total: u64 = chunks.iter().map(|c| c.2).sum();
        println!(
            "{} chunk(s), {} over {} node(s); nothing was run",
            chunks.len(),
            human_bytes(total),
            nodes.len()
        );
        if nodes.iter().any(|n| n.slots.is_none()) {
            println!("(nodes without `slots` in the inventory counted as 1 slot: their cores are read only when running)");
        }
    }
    Ok(Exit::Ok)
}

impl Input {
    fn chunk_size(&self, args: &RunArgs) -> u64 {
        match self {
            Input::Planned { chunk_size, .. } => *chunk_size,
            Input::Streamed(_) => args
                .chunk_size
                .map_or_else(|| default_chunk_size(None), |s| s.0),
        }
    }

    /// The planned chunks (none for a streamed input).
    fn chunks(&self) -> &[Chunk] {
        match self {
            Input::Planned { chunks, .. } => chunks,
            Input::Streamed(_) => &[],
        }
    }
}

/// Where results go.
enum Sink {
    Stdout,
    /// `-o FILE`, through its temporary file (the journal's `output.part`
    /// when journaled).
    File(AtomicFile),
}

struct Runner<'a> {
    g: &'a Global,
    args: &'a RunArgs,
    job: Arc<Job>,
    cluster: Option<Cluster>,
    nodes: Vec<Arc<RunNode>>,
    sched: Scheduler,
    progress: RunProgress,
    summary: RunSummary,
    exit: Exit,
    input: Input,
    journal: Option<Journal>,
    sink: Sink,
    writer: Option<OrderedWriter<Box<dyn Write + Send>>>,
    partials: Vec<Option<Partial>>,
    checksums: HashMap<usize, u128>,
    budget: Arc<MemoryBudget>,
    started: Instant,
}

impl<'a> Runner<'a> {
    /// Connect, install the agent where needed, read core counts, open the
    /// journal and the output. Nodes that fail here are skipped with a warning.
    async fn start(
        g: &'a Global,
        args: &'a RunArgs,
        job: Arc<Job>,
        input: Input,
        selected: Vec<crate::cluster::inventory::Node>,
    ) -> Result<Runner<'a>> {
        let started = Instant::now();
        // A bad --agent file is the user's to fix before any node is contacted.
        let binary = crate::cluster::agent::AgentBinary::from_option(args.agent.as_deref())?;
        let cluster = tokio::select! {
            c = Cluster::connect_nodes(g, selected) => c?,
            stop = crate::shutdown::requested() => return Err(crate::shutdown::error(stop)),
        };
        let mut exit = Exit::Ok;
        let mut summary = RunSummary {
            op: job.name(),
            ..RunSummary::default()
        };
        for e in cluster.unreachable() {
            eprintln!("distctl: warning: skipping unreachable node {e}");
            summary.unreachable.push(e.node.clone());
            exit = Exit::Partial;
        }
        let preparing = futures::future::join_all(cluster.sessions().into_iter().map(|s| {
            let binary = &binary;
            async move {
                let install = crate::cluster::agent::ensure_agent(&s, binary).await;
                let slots = match (s.node.slots, &install) {
                    (Some(n), _) => Ok(n as usize),
                    (None, Ok(i)) if i.cores.is_some() => Ok(i.cores.unwrap_or(1)),
                    (None, _) => super::split::core_count(&s).await,
                };
                let agent = install.map(|i| i.path);
                (s, agent, slots)
            }
        }));
        let prepared = tokio::select! {
            p = preparing => p,
            stop = crate::shutdown::requested() => {
                cluster.close().await;
                return Err(crate::shutdown::error(stop));
            }
        };
        let mut nodes = Vec::new();
        let mut slots = Vec::new();
        for (session, agent, cores) in prepared {
            let name = session.node.name.clone();
            match (agent, cores) {
                (Ok(agent), Ok(cores)) => {
                    let s = cores.clamp(1, CHANNELS_PER_NODE);
                    summary.nodes.push(NodeSummary {
                        node: name.clone(),
                        slots: s,
                        ..NodeSummary::default()
                    });
                    slots.push(s);
                    nodes.push(Arc::new(RunNode {
                        name,
                        session,
                        agent,
                    }));
                }
                (Err(e), _) | (_, Err(e)) => {
                    eprintln!("distctl: warning: skipping {name}: {e:#}");
                    summary.unreachable.push(name);
                    exit = Exit::Partial;
                }
            }
        }
        if nodes.is_empty() {
            cluster.close().await;
            anyhow::bail!("no node is available to run on");
        }
        let (n_chunks, total) = match &input {
            Input::Planned { stream, chunks, .. } => (chunks.len(), Some(stream.total)),
            Input::Streamed(_) => (0, None),
        };
        let names: Vec<String> = nodes.iter().map(|n| n.name.clone()).collect();
        let mut runner = Runner {
            g,
            args,
            job,
            cluster: Some(cluster),
            nodes,
            sched: Scheduler::new(n_chunks, &slots, args.retries),
            progress: RunProgress::new(total, &names, g.quiet),
            summary,
            exit,
            input,
            journal: None,
            sink: Sink::Stdout,
            writer: None,
            partials: vec![None; n_chunks],
            checksums: HashMap::new(),
            budget: MemoryBudget::new(RESULT_MEMORY),
            started,
        };
        if let Err(e) = runner.open_output().await {
            runner.close().await;
            return Err(e);
        }
        Ok(runner)
    }

    async fn close(&mut self) {
        // The cluster closes only the sessions nothing else holds.
        self.nodes.clear();
        if let Some(c) = self.cluster.take() {
            c.close().await;
        }
    }

    /// Open the journal (fresh or resumed) and the output.
    async fn open_output(&mut self) -> Result<()> {
        let mut first = 0;
        let mut written = 0;
        let mut resumed_files = Vec::new();
        let chunk_size = self.input.chunk_size(self.args);
        if let (Some(dest), Input::Planned { stream, chunks, .. }) =
            (&self.args.output, &self.input)
        {
            let key = JobKey {
                inputs: stream.files.clone(),
                chunk_size,
                op: self.job.name(),
                pattern: self.job.pattern.clone(),
                exec: self.job.exec.clone(),
                skip_invalid: self.job.skip_invalid,
            };
            let journal = if self.args.resume {
                let (journal, entries) = Journal::resume(dest, &key)?;
                let kept = check_entries(stream, chunks, &journal, entries)?;
                for e in &kept.entries {
                    self.sched.mark_done(e.index);
                    self.summary.chunks_resumed += 1;
                    self.progress.advance(e.len, 0);
                    if let Some(p) = &e.partial {
                        self.partials[e.index] = Some(serde_json::from_value(p.clone())?);
                    }
                    if e.place == Place::File {
                        resumed_files.push((e.index, e.out_len));
                    }
                    self.checksums
                        .insert(e.index, u128::from_str_radix(&e.checksum, 16).unwrap_or(0));
                }
                first = kept.prefix_chunks;
                written = kept.prefix_bytes;
                journal
            } else {
                Journal::create(dest, &key)?
            };
            self.sink = Sink::File(AtomicFile {
                temp: journal.part_path(),
                dest: dest.clone(),
            });
            self.journal = Some(journal);
        } else if let Some(dest) = &self.args.output {
            self.sink = Sink::File(AtomicFile::create(dest)?);
        }
        if !self.job.aggregate() {
            let out: Box<dyn Write + Send> = match &self.sink {
                Sink::Stdout => Box::new(std::io::stdout()),
                Sink::File(AtomicFile { temp, .. }) => {
                    let f = OpenOptions::new()
                        .create(true)
                        .write(true)
                        .truncate(false)
                        .open(temp)
                        .with_context(|| format!("cannot write {}", temp.display()))?;
                    f.set_len(written)?;
                    let mut f = f;
                    std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(written))?;
                    Box::new(f)
                }
            };
            let mut writer = OrderedWriter::new(out, first, written);
            for (index, len) in resumed_files {
                let journal = self.journal.as_mut().expect("resume has a journal");
                let f = File::open(journal.chunk_path(index))?;
                let buf = ResultBuf::from_file(f, len, self.budget.clone());
                let done = tokio::task::block_in_place(|| writer.insert(index, buf))?;
                record_prefix(journal, &self.checksums, self.input.chunks(), &done)?;
            }
            self.writer = Some(writer);
        }
        Ok(())
    }

    /// Run every chunk; then write the result and the summary.
    async fn go(mut self) -> Result<Exit> {
        let outcome = self.drive().await;
        self.progress.finish();
        match outcome {
            Ok(()) => {
                let result = self.finish_output();
                self.close().await;
                result?;
                self.print_summary()?;
                Ok(self.exit)
            }
            Err(e) => {
                let kept = self.keep_journal();
                let done = self.summary.chunks_run + self.summary.chunks_resumed;
                let total = self.sched.chunk_count();
                self.close().await;
                // Said even under --quiet: it is how to get the work back.
                {
                    let mut msg = format!("distctl: {done} of {total} chunk(s) finished");
                    match kept {
                        Ok(Some(dir)) => msg.push_str(&format!(
                            "; journal kept in {} (run again with --resume to redo only the rest)",
                            dir.display()
                        )),
                        Ok(None) => {}
                        Err(je) => msg.push_str(&format!("; cannot keep the journal: {je:#}")),
                    }
                    eprintln!("{msg}");
                }
                if let Sink::File(AtomicFile { temp, .. }) = &self.sink {
                    if self.journal.is_none() {
                        let _ = std::fs::remove_file(temp);
                    }
                }
                Err(e)
            }
        }
    }

    async fn drive(&mut self) -> Result<()> {
        let mut tasks: JoinSet<AttemptReport> = JoinSet::new();
        let mut specs: HashMap<usize, Arc<ChunkSpec>> = HashMap::new();
        let mut held_input = 0u64;
        let mut rx = match &self.input {
            Input::Streamed(paths) => Some(spawn_stream_reader(
                paths,
                self.input.chunk_size(self.args),
            )?),
            Input::Planned { .. } => None,
        };
        let mut line_offsets: Vec<u64> = Vec::new();
        if let Input::Planned { chunks, .. } = &self.input {
            let mut acc = 0;
            for c in chunks {
                line_offsets.push(acc);
                acc += c.lines.unwrap_or(0);
            }
        }
        loop {
            // Streamed input: take chunks while slots are free and memory allows.
            while let Some(r) = rx.as_mut() {
                let wanted = self.sched.pending() < self.sched.free_slots()
                    && (held_input < STDIN_MEMORY || held_input == 0);
                if !wanted {
                    break;
                }
                match r.try_recv() {
                    Ok(chunk) => {
                        let chunk = chunk.context("reading the input")?;
                        held_input += chunk.0.data.len() as u64;
                        self.add_stream_chunk(chunk, &mut specs);
                    }
                    Err(tokio::sync::mpsc::error::TryRecvError::Empty) => break,
                    Err(tokio::sync::mpsc::error::TryRecvError::Disconnected) => rx = None,
                }
            }
            self.fill(&mut tasks, &mut specs, &line_offsets);
            if rx.is_none() && self.sched.all_done() {
                return Ok(());
            }
            if tasks.is_empty() && self.sched.pending() > 0 && self.sched.alive_nodes() == 0 {
                anyhow::bail!("no node is left to run on");
            }
            let want_stream = self.sched.pending() < self.sched.free_slots()
                && (held_input < STDIN_MEMORY || held_input == 0);
            tokio::select! {
                stop = crate::shutdown::requested() => {
                    tasks.abort_all();
                    while tasks.join_next().await.is_some() {}
                    return Err(crate::shutdown::error(stop));
                }
                Some(joined) = tasks.join_next() => {
                    let report = joined.context("a chunk task panicked")?;
                    if let Some(spec) = specs.get(&report.chunk) {
                        if report.outcome.is_ok() {
                            if let ChunkData::Owned(d) = &spec.data {
                                held_input -= d.len() as u64;
                            }
                            specs.remove(&report.chunk);
                        }
                    }
                    if let Err(e) = self.handle(report) {
                        tasks.abort_all();
                        while tasks.join_next().await.is_some() {}
                        return Err(e);
                    }
                }
                got = async { rx.as_mut().expect("guarded").recv().await }, if rx.is_some() && want_stream => {
                    match got {
                        Some(chunk) => {
                            let chunk = chunk.context("reading the input")?;
                            held_input += chunk.0.data.len() as u64;
                            self.add_stream_chunk(chunk, &mut specs);
                        }
                        None => rx = None,
                    }
                }
            }
        }
    }

    fn add_stream_chunk(
        &mut self,
        chunk: (crate::run::chunk::StreamChunk, u64),
        specs: &mut HashMap<usize, Arc<ChunkSpec>>,
    ) {
        let (c, line_offset) = chunk;
        let index = self.sched.add_chunk();
        debug_assert_eq!(index, c.index);
        self.partials.push(None);
        specs.insert(
            index,
            Arc::new(ChunkSpec {
                index,
                start: c.start,
                len: c.data.len() as u64,
                line_offset: Some(line_offset),
                data: ChunkData::Owned(c.data),
            }),
        );
    }

    /// Start a chunk on every free slot, one node after another.
    fn fill(
        &mut self,
        tasks: &mut JoinSet<AttemptReport>,
        specs: &mut HashMap<usize, Arc<ChunkSpec>>,
        line_offsets: &[u64],
    ) {
        loop {
            let mut any = false;
            for n in 0..self.nodes.len() {
                let Some(c) = self.sched.next_for(n) else {
                    continue;
                };
                any = true;
                let spec = specs
                    .entry(c)
                    .or_insert_with(|| {
                        let Input::Planned { stream, chunks, .. } = &self.input else {
                            unreachable!("streamed chunks are added before they are scheduled")
                        };
                        let ch = &chunks[c];
                        Arc::new(ChunkSpec {
                            index: c,
                            start: ch.start,
                            len: ch.len,
                            line_offset: line_offsets
                                .get(c)
                                .copied()
                                .filter(|_| self.job.numeric()),
                            data: ChunkData::Range(stream.clone()),
                        })
                    })
                    .clone();
                self.progress.started(n);
                let node = self.nodes[n].clone();
                let cmdline = self
                    .job
                    .command_line(&node.agent, spec.len, spec.line_offset);
                let expect_partial = self.job.aggregate();
                let budget = self.budget.clone();
                let timeout = self.args.timeout.0;
                let want_checksum = self.journal.is_some();
                tasks.spawn(async move {
                    let t0 = Instant::now();
                    let outcome = attempt(
                        &node.session,
                        &cmdline,
                        &spec,
                        expect_partial,
                        timeout,
                        budget,
                        want_checksum,
                    )
                    .await;
                    AttemptReport {
                        chunk: spec.index,
                        len: spec.len,
                        node: n,
                        elapsed: t0.elapsed(),
                        outcome,
                    }
                });
            }
            if !any {
                break;
            }
        }
    }

    /// Account for one finished attempt.
    fn handle(&mut self, r: AttemptReport) -> Result<()> {
        let name = self.nodes[r.node].name.clone();
        let ns = &mut self.summary.nodes[r.node];
        ns.busy_seconds += r.elapsed.as_secs_f64();
        match r.outcome {
            Ok(v) => {
                self.sched.done(r.chunk, r.node);
                let len = r.len;
                let ns = &mut self.summary.nodes[r.node];
                ns.chunks += 1;
                ns.bytes += len;
                self.summary.chunks_run += 1;
                self.summary.lines += v.lines;
                self.progress.finished(r.node, len, v.lines);
                if let Some(c) = v.checksum {
                    self.checksums.insert(r.chunk, c);
                }
                if self.job.aggregate() {
                    let partial = v.partial.context("no partial")?;
                    if let Some(j) = self.journal.as_mut() {
                        j.record(&DoneEntry {
                            index: r.chunk,
                            start: self.input.chunks()[r.chunk].start,
                            len,
                            checksum: checksum_hex(v.checksum.unwrap_or(0)),
                            out_len: 0,
                            place: Place::Partial,
                            partial: Some(serde_json::to_value(&partial)?),
                        })?;
                    }
                    self.partials[r.chunk] = Some(partial);
                } else {
                    let writer = self.writer.as_mut().expect("byte ops have a writer");
                    let done = tokio::task::block_in_place(|| writer.insert(r.chunk, v.data))
                        .context("writing the output")?;
                    if let Some(j) = self.journal.as_mut() {
                        record_prefix(j, &self.checksums, self.input.chunks(), &done)?;
                    }
                }
                Ok(())
            }
            Err(e) if e.input_error => Err(usage!("{}", e.message)),
            Err(e) => {
                self.progress.failed(r.node);
                if e.fault == Fault::Lost {
                    // The node went silent or its connection dropped: the
                    // output can still be complete, but a node was dropped.
                    self.exit = self.exit.max(Exit::Partial);
                }
                let out = self.sched.fault(r.chunk, r.node, e.fault);
                self.summary.nodes[r.node].faults += 1;
                self.summary.retries = self.sched.retried;
                if !self.g.quiet || !out.requeued {
                    self.progress.warn(&format!(
                        "chunk {} on {name}: {}{}",
                        r.chunk,
                        e.message,
                        if out.requeued {
                            " (will run again)"
                        } else {
                            ""
                        }
                    ));
                }
                if out.node_removed {
                    self.summary.nodes[r.node].removed = true;
                    self.exit = self.exit.max(Exit::Partial);
                    self.progress.warn(&format!(
                        "taking {name} out of the run after repeated failures"
                    ));
                }
                if !out.requeued {
                    anyhow::bail!(
                        "chunk {} failed {} time(s), last on {name}: {}",
                        r.chunk,
                        self.args.retries + 1,
                        e.message
                    );
                }
                Ok(())
            }
        }
    }

    /// Every chunk is done: write the output and rename it into place.
    fn finish_output(&mut self) -> Result<()> {
        self.summary.chunks = self.sched.chunk_count();
        self.summary.seconds = self.started.elapsed().as_secs_f64();
        self.summary.retries = self.sched.retried;
        self.summary.bytes = match &self.input {
            Input::Planned { stream, .. } => stream.total,
            Input::Streamed(_) => self.summary.nodes.iter().map(|n| n.bytes).sum(),
        };
        if self.job.aggregate() {
            let op = self.job.op.expect("aggregates are ops");
            let mut total = Partial {
                skip_invalid: self.job.skip_invalid,
                ..Partial::default()
            };
            for p in self.partials.iter().flatten() {
                total.merge(p).map_err(|e| anyhow::anyhow!("{e}"))?;
            }
            let text = if self.g.json {
                let v = total.to_json(op).map_err(|e| anyhow::anyhow!("{e}"))?;
                serde_json::to_string(&v)? + "\n"
            } else {
                total.render_text(op).map_err(|e| anyhow::anyhow!("{e}"))?
            };
            self.summary.output_bytes = text.len() as u64;
            match &self.sink {
                Sink::Stdout => {
                    print!("{text}");
                    std::io::stdout().flush()?;
                }
                Sink::File(AtomicFile { temp, dest }) => {
                    let _ = std::fs::remove_file(temp);
                    replace_file(dest, text.as_bytes())?;
                }
            }
        } else {
            let writer = self.writer.take().expect("byte ops have a writer");
            anyhow::ensure!(
                writer.next() == self.summary.chunks,
                "internal error: {} of {} results written",
                writer.next(),
                self.summary.chunks
            );
            self.summary.output_bytes = writer.bytes_written();
            let mut out = writer.into_inner();
            out.flush()?;
            drop(out);
            if let Sink::File(file) = &self.sink {
                let f = OpenOptions::new().write(true).open(&file.temp)?;
                file.commit(f)?;
            }
        }
        if let Some(j) = self.journal.take() {
            j.remove();
        }
        Ok(())
    }

    /// After a failure or Ctrl-C: put finished results that were waiting for
    /// an earlier chunk into the journal, so `--resume` keeps them.
    fn keep_journal(&mut self) -> Result<Option<PathBuf>> {
        let Some(j) = self.journal.as_mut() else {
            return Ok(None);
        };
        if let Some(w) = self.writer.as_mut() {
            w.flush_output()?;
            for (index, mut buf) in w.take_waiting() {
                let path = j.chunk_path(index);
                let mut f = File::create(&path)?;
                buf.write_to(&mut f)?;
                f.sync_all()?;
                let Some(c) = self.input.chunks().get(index) else {
                    continue;
                };
                let (start, len) = (c.start, c.len);
                j.record(&DoneEntry {
                    index,
                    start,
                    len,
                    checksum: checksum_hex(self.checksums.get(&index).copied().unwrap_or(0)),
                    out_len: buf.len(),
                    place: Place::File,
                    partial: None,
                })?;
            }
        }
        Ok(Some(j.dir.clone()))
    }

    fn print_summary(&self) -> Result<()> {
        let s = &self.summary;
        if self.g.json {
            let line = serde_json::to_string(s)?;
            if self.args.output.is_some() {
                println!("{line}");
            } else {
                eprintln!("{line}");
            }
            return Ok(());
        }
        if self.g.quiet {
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
}

/// Journal the chunks just written to `output.part`.
fn record_prefix(
    journal: &mut Journal,
    checksums: &HashMap<usize, u128>,
    chunks: &[Chunk],
    written: &[(usize, u64)],
) -> Result<()> {
    for &(index, out_len) in written {
        let c = &chunks[index];
        journal.record(&DoneEntry {
            index,
            start: c.start,
            len: c.len,
            checksum: checksum_hex(checksums.get(&index).copied().unwrap_or(0)),
            out_len,
            place: Place::Prefix,
            partial: None,
        })?;
        let _ = std::fs::remove_file(journal.chunk_path(index));
    }
    Ok(())
}

struct KeptEntries {
    entries: Vec<DoneEntry>,
    prefix_chunks: usize,
    prefix_bytes: u64,
}

/// Which journal entries still hold: the chunk is the same and its input
/// bytes still hash the same, the result is where the entry says.
fn check_entries(
    input: &InputStream,
    chunks: &[Chunk],
    journal: &Journal,
    entries: Vec<DoneEntry>,
) -> Result<KeptEntries> {
    let mut last: HashMap<usize, DoneEntry> = HashMap::new();
    for e in entries {
        last.insert(e.index, e);
    }
    let mut sorted: Vec<DoneEntry> = last.into_values().collect();
    sorted.sort_by_key(|e| e.index);
    let part_len = std::fs::metadata(journal.part_path())
        .map(|m| m.len())
        .unwrap_or(0);
    let mut kept = KeptEntries {
        entries: Vec::new(),
        prefix_chunks: 0,
        prefix_bytes: 0,
    };
    for e in sorted {
        let Some(c) = chunks
            .get(e.index)
            .filter(|c| c.start == e.start && c.len == e.len)
        else {
            continue;
        };
        let sum = crate::run::chunk::ChunkHash::of_range(input, c.start, c.len)?;
        if checksum_hex(sum) != e.checksum {
            return Err(usage!(
                "--resume refused: the input bytes of chunk {} changed since the interrupted run (remove {} to start over)",
                e.index,
                journal.dir.display()
            ));
        }
        match e.place {
            Place::Prefix => {
                if e.index != kept.prefix_chunks || kept.prefix_bytes + e.out_len > part_len {
                    continue;
                }
                kept.prefix_chunks += 1;
                kept.prefix_bytes += e.out_len;
            }
            Place::File => {
                let ok = std::fs::metadata(journal.chunk_path(e.index))
                    .is_ok_and(|m| m.len() == e.out_len);
                if !ok || e.index < kept.prefix_chunks {
                    continue;
                }
            }
            Place::Partial => {}
        }
        kept.entries.push(e);
    }
    Ok(kept)
}

type StreamItem = std::io::Result<(crate::run::chunk::StreamChunk, u64)>;

/// Cut a stream into chunks on a blocking thread; the channel holds one
/// chunk, so reading stays just ahead of sending.
fn spawn_stream_reader(
    paths: &[PathBuf],
    chunk_size: u64,
) -> Result<tokio::sync::mpsc::Receiver<StreamItem>> {
    let reader = ConcatReader::open(paths).map_err(|e| usage!("{e:#}"))?;
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    std::thread::spawn(move || {
        let mut chunker = StreamChunker::new(reader, chunk_size);
        let mut lines = 0u64;
        loop {
            match chunker.next_chunk() {
                Ok(Some(c)) => {
                    let offset = lines;
                    lines += c.lines;
                    if tx.blocking_send(Ok((c, offset))).is_err() {
                        return;
                    }
                }
                Ok(None) => return,
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            }
        }
    });
    Ok(rx)
}
