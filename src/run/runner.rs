//! The runner: drives plan → scheduler → attempts → merge → journal, and
//! nothing else. It gets connected sessions and a planned (or streamed)
//! input from `commands::run`, and hands back the run's figures.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use futures::FutureExt;
use tokio::task::JoinSet;

use crate::cluster::agent::AgentBinary;
use crate::cluster::cores::KnownCores;
use crate::exit::Exit;
use crate::output::progress::RunProgress;
use crate::run::attempt::{attempt, AttemptError, ChunkData, ChunkSpec, Verified};
use crate::run::chunk::StreamChunk;
use crate::run::input::{spawn_stream_reader, Input};
use crate::run::job::Job;
use crate::run::results::Results;
use crate::run::schedule::{DistanceJudge, Fault, Scheduler};
use crate::run::summary::{NodeSummary, RunSummary};
use crate::run::wire::NodeWire;
use crate::transport::{ConnectError, NodeSession, CHANNELS_PER_NODE};
use crate::usage;

/// Chunks cut from standard input are held until verified (for retries): at
/// most this many bytes of them at once (but always at least one chunk).
const STDIN_MEMORY: u64 = 32 << 20;

/// How a run behaves, from the command line.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// `-o FILE`; results go to stdout without it.
    pub output: Option<PathBuf>,
    /// Continue from the journal beside `output`.
    pub resume: bool,
    /// A node silent this long loses its chunk.
    pub timeout: Duration,
    /// Retries of a failed chunk on other nodes.
    pub retries: u32,
    /// Aggregate results as JSON.
    pub json: bool,
    /// No progress bars; retried faults are not reported.
    pub quiet: bool,
    /// `--compress`: over every node's inventory `compress` (default auto).
    pub compress: Option<distctl_proto::Compress>,
}

/// The nodes to run on, each joining as soon as it is connected.
pub struct NodePool<'a> {
    /// Every selected node's name, in selection order (a node's index in
    /// the run is its place here, as `DISTCTL_NODE_INDEX` says).
    pub names: Vec<String>,
    /// One connection per name, in the same order, each resolving when its
    /// handshake ends.
    pub connecting: Vec<BoxFuture<'a, Result<Arc<NodeSession>, ConnectError>>>,
    /// The cores each node's last probe found: a node whose slots are its
    /// cores starts on them without a probe; a probe tells them afresh.
    pub cores: &'a KnownCores,
}

/// What a completed run hands back.
pub struct Finished {
    pub summary: RunSummary,
    /// Partial when a node was skipped or dropped on the way.
    pub exit: Exit,
}

/// A node taking part in the run.
struct RunNode {
    session: Arc<NodeSession>,
    agent: String,
    /// What a chunk's command starts with while the node is not known to be
    /// ready ([`crate::cluster::agent::guard`]).
    guard: String,
    wire: Arc<NodeWire>,
    /// A node elsewhere, running a byte op, its slots not set in the
    /// inventory: one channel carries at most OpenSSH's 2 MiB window per
    /// round trip, and each chunk waits out a few round trips; its first
    /// chunks tell whether those held it back (`Runner::judge_distance`).
    distant: bool,
    /// Its slots are the cores its last probe found, in an earlier command:
    /// a probe in this run sets them afresh.
    remembered_cores: bool,
}

/// How one node's way into the run ended: connected (and prepared, or its
/// agent to be checked by its first chunks), taking chunks on this many
/// slots, or not.
type Joined = Result<Ready, NotJoined>;

/// A node ready to take chunks.
struct Ready {
    node: Arc<RunNode>,
    /// Its slots; when it joins again after its probe, the cores that
    /// probe found where its slots were remembered ones, else 0 (it keeps
    /// the slots it had).
    slots: usize,
    /// Its agent is known to be this run's: probed (and pushed) already.
    checked: bool,
}

/// Whether a node's agent is known to be this run's. A node is probed at
/// most once a run: `Unchecked` and `Ran` lead to `Waiting`, which leads to
/// `Probing`, which ends `Probed` or takes the node out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Agent {
    /// Not yet: its chunks start with the guard, and the first that
    /// succeeds tells.
    Unchecked,
    /// A guarded chunk ran: chunks start the agent directly. A guard that
    /// refuses after all (a chunk started before, the workdir or the agent
    /// changed since) has the node probed.
    Ran,
    /// A guard refused: the node takes no chunk, and is probed once none of
    /// its chunks runs any more (the probe's channel must not be refused by
    /// an sshd that allows few).
    Waiting,
    /// Being probed (and its agent pushed where needed).
    Probing,
    /// Probed: chunks start the agent directly; a refusal can only come
    /// from a chunk started before, which runs again.
    Probed,
}

impl Agent {
    /// Chunks started now carry the guard.
    fn guarded(self) -> bool {
        !matches!(self, Agent::Ran | Agent::Probed)
    }
}

/// Why a node did not join the run.
enum NotJoined {
    /// The handshake failed.
    Unreachable(ConnectError),
    /// Connected, but the agent could not be installed or its cores read.
    Unprepared(anyhow::Error),
}

/// Nodes on their way into the run: `(index, how it ended)` as each ends.
type Joining<'a> = FuturesUnordered<BoxFuture<'a, (usize, Joined)>>;

/// An attempt's chunk has had all its input sent, `wire` bytes on the
/// channel `took` after the channel was asked for: for
/// [`Scheduler::input_sent`], and to judge a distant node on its first
/// chunks.
struct InputSent {
    chunk: usize,
    node: usize,
    attempt: u32,
    wire: u64,
    took: Duration,
}

struct AttemptReport {
    chunk: usize,
    len: u64,
    node: usize,
    elapsed: Duration,
    outcome: Result<Verified, AttemptError>,
}

struct Runner<'a> {
    opts: &'a RunOptions,
    job: Arc<Job>,
    input: Input,
    /// Every selected node, by index: `None` until it has joined.
    nodes: Vec<Option<Arc<RunNode>>>,
    joining: Joining<'a>,
    sched: Scheduler,
    results: Results,
    progress: RunProgress,
    summary: RunSummary,
    exit: Exit,
    started: Instant,
    /// Attempts tell here that their chunk's input is all sent.
    sent_tx: tokio::sync::mpsc::UnboundedSender<InputSent>,
    sent_rx: tokio::sync::mpsc::UnboundedReceiver<InputSent>,
    /// Each node's judge of whether its round trip holds it back.
    distance: Vec<DistanceJudge>,
    /// Each node's agent, as far as the run knows it.
    agents: Vec<Agent>,
    binary: &'a AgentBinary,
    cores: &'a KnownCores,
}

/// Run `job` over `input` on the nodes of `pool`. Each node joins as soon
/// as its own handshake is done (and its probe, where its cores are wanted
/// or it is the local node: [`prepare`]), so a node that is slow to answer
/// holds up none of the others; one that cannot join is skipped with a
/// warning. The run ends once every chunk is done and every node has joined
/// or failed, and every probe under way has ended.
/// The output and the journal are opened once the first node has joined
/// (with none, nothing is written). Every chunk runs, the result is
/// written; on failure or a signal the journal is kept and the way to
/// resume is said. `started`: when the command began (for the summary).
pub async fn run<'a>(
    opts: &'a RunOptions,
    job: Arc<Job>,
    input: Input,
    pool: NodePool<'a>,
    agent: &'a AgentBinary,
    started: Instant,
) -> Result<Finished> {
    let one_stream = job
        .op()
        .is_some_and(distctl_proto::Op::streams_at_memory_speed);
    let names = pool.names;
    let cores = pool.cores;
    let mut joining: Joining<'a> = pool
        .connecting
        .into_iter()
        .enumerate()
        .map(|(i, connected)| {
            async move {
                let joined = match connected.await {
                    Ok(session) => prepare(session, agent, cores, opts.compress, one_stream)
                        .await
                        .map_err(NotJoined::Unprepared),
                    Err(e) => Err(NotJoined::Unreachable(e)),
                };
                (i, joined)
            }
            .boxed()
        })
        .collect();
    let mut summary = RunSummary {
        op: job.name(),
        nodes: names
            .iter()
            .map(|n| NodeSummary {
                node: n.clone(),
                ..NodeSummary::default()
            })
            .collect(),
        ..RunSummary::default()
    };
    let mut sched = Scheduler::joining(input.chunks().len(), names.len(), opts.retries);
    // A built-in op is done with a chunk moments after its input ends; a
    // command may go on working on all of it (`sort`): it keeps its slots.
    sched.look_ahead = job.op().is_some();
    let mut progress = RunProgress::new(input.total(), &names, opts.quiet);
    let mut exit = Exit::Ok;
    // Wait for the first node: the output is opened only once one is there.
    let first = loop {
        let next = tokio::select! {
            next = joining.next() => next,
            stop = crate::shutdown::requested() => {
                progress.finish();
                return Err(crate::shutdown::error(stop));
            }
        };
        let skipped = match next {
            Some((i, Ok(ready))) => break (i, ready),
            Some((i, Err(why))) => skip(i, why, &mut summary, &mut sched, &progress, &mut exit),
            None => Err(anyhow::anyhow!("no node is available to run on")),
        };
        if let Err(e) = skipped {
            progress.finish();
            return Err(e);
        }
    };
    let (results, resumed) = Results::open(
        job.clone(),
        &input,
        opts.output.as_deref(),
        opts.resume,
        &agent.sha256,
    )?;
    for r in resumed {
        sched.mark_done(r.index);
        summary.chunks_resumed += 1;
        progress.resumed(r.len);
    }
    let (sent_tx, sent_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut runner = Runner {
        opts,
        job,
        input,
        nodes: vec![None; names.len()],
        joining,
        sched,
        results,
        progress,
        summary,
        exit,
        started,
        sent_tx,
        sent_rx,
        distance: vec![DistanceJudge::default(); names.len()],
        agents: vec![Agent::Unchecked; names.len()],
        binary: agent,
        cores,
    };
    let (i, ready) = first;
    runner.join(i, ready);
    runner.go().await
}

/// Node `i` did not join: say why and run without it. A local problem (out
/// of file descriptors...) is no node's fault and stops the run instead.
fn skip(
    i: usize,
    why: NotJoined,
    summary: &mut RunSummary,
    sched: &mut Scheduler,
    progress: &RunProgress,
    exit: &mut Exit,
) -> Result<()> {
    let name = summary.nodes[i].node.clone();
    let warning = match why {
        NotJoined::Unreachable(e) => {
            if let Some(stop) = crate::transport::local_problem() {
                return Err(stop);
            }
            format!("skipping unreachable node {e}")
        }
        NotJoined::Unprepared(e) => {
            if let Some(cause) = crate::exit::local_cause(&e) {
                return Err(crate::exit::local_stop("a node", cause));
            }
            format!("skipping {name}: {e:#}")
        }
    };
    progress.warn(&warning);
    progress.skipped(i);
    summary.unreachable.push(name);
    sched.remove_node(i);
    *exit = (*exit).max(Exit::Partial);
    Ok(())
}

/// Make a connected node ready to take chunks, and learn its slots: the
/// inventory's, else one for an op the agent streams at memory speed
/// (`one_stream`: a second channel over the same connection only adds work
/// for the ssh master and sshd, ~7 % more CPU per byte measured on both),
/// else the node's cores. A node over ssh whose slots need no probe is not
/// probed first: it joins at once, and its first chunks check the agent
/// themselves ([`crate::cluster::agent::guard`]), so a node whose agent is
/// up to date starts without waiting out the probe's round trips. It is
/// probed only once a guard finds the agent missing or another
/// ([`Runner::hold_for_probe`]). Where the cores are wanted, and on the
/// built-in local node (no round trip to save), the probe comes first. A
/// node elsewhere that runs such an op on slots the inventory does not set
/// follows its round trip ([`RunNode::distant`]).
async fn prepare(
    session: Arc<NodeSession>,
    binary: &AgentBinary,
    cores: &KnownCores,
    compress: Option<distctl_proto::Compress>,
    one_stream: bool,
) -> Result<Ready> {
    let remembered = match session.node.slots {
        None if !one_stream => cores.cores(&session.node),
        _ => None,
    };
    let known_slots = match session.node.slots {
        Some(n) => Some(n as usize),
        None if one_stream => Some(1),
        None => remembered,
    };
    let (agent, slots, checked) = match known_slots {
        Some(slots) if !session.is_local() => {
            let path = crate::cluster::workdir::agent_path(&session.node);
            (path, slots, false)
        }
        _ => {
            let install = crate::cluster::agent::ensure_agent(&session, binary).await?;
            let slots = match (known_slots, install.cores) {
                (Some(n), _) | (None, Some(n)) => n,
                (None, None) => crate::cluster::agent::core_count(&session).await?,
            };
            if let Some(n) = install.cores.or(known_slots.is_none().then_some(slots)) {
                cores.learn(&session.node, n);
            }
            (install.path, slots, true)
        }
    };
    let setting = compress.or(session.node.compress).unwrap_or_default();
    let auto = setting == distctl_proto::Compress::Auto;
    let may_widen = session.node.slots.is_none() && one_stream && !session.is_local();
    let here = (auto || may_widen) && on_this_machine(&session.node).await;
    let wire = NodeWire::new(setting, session.is_local(), auto && here);
    let node = RunNode {
        agent,
        guard: crate::cluster::agent::guard(&session.node, &binary.sha256),
        session,
        wire,
        distant: may_widen && !here,
        remembered_cores: remembered.is_some(),
    };
    Ok(Ready {
        node: Arc::new(node),
        slots: slots.clamp(1, CHANNELS_PER_NODE),
        checked,
    })
}

/// The node's address is this machine's (a loopback address, or one of
/// its own): what `auto` does not compress for. A name that does not
/// resolve here (an ssh alias) counts as elsewhere.
async fn on_this_machine(node: &crate::cluster::inventory::Node) -> bool {
    let Ok(addrs) = tokio::net::lookup_host((node.host.as_str(), node.port.unwrap_or(22))).await
    else {
        return false;
    };
    let addrs: Vec<std::net::SocketAddr> = addrs.collect();
    !addrs.is_empty()
        && addrs.iter().all(|a| {
            a.ip().is_loopback()
                // Binding succeeds only for an address of this machine.
                || std::net::UdpSocket::bind((a.ip(), 0)).is_ok()
        })
}

impl Runner<'_> {
    /// Run every chunk; then write the result.
    async fn go(mut self) -> Result<Finished> {
        let outcome = self.drive().await;
        self.progress.finish();
        match outcome {
            Ok(()) => {
                self.summary.chunks = self.sched.chunk_count();
                for (i, (ns, n)) in self.summary.nodes.iter_mut().zip(&self.nodes).enumerate() {
                    if let Some(n) = n {
                        ns.compress = n.wire.describe();
                        ns.slots = self.sched.nodes[i].slots;
                        ns.round_trip_ms = n
                            .session
                            .round_trip()
                            .map(|t| (t.as_secs_f64() * 1e4).round() / 10.0);
                    }
                }
                // Only the nodes that took part are the run's; the others
                // are named among the skipped, in selection order.
                let all = std::mem::take(&mut self.summary.nodes);
                self.summary
                    .unreachable
                    .sort_by_key(|u| all.iter().position(|n| &n.node == u));
                self.summary.nodes = all
                    .into_iter()
                    .zip(&self.nodes)
                    .filter_map(|(ns, n)| n.is_some().then_some(ns))
                    .collect();
                self.summary.seconds = self.started.elapsed().as_secs_f64();
                self.summary.retries = self.sched.retried;
                self.summary.bytes = match self.input.total() {
                    Some(total) => total,
                    None => self.summary.nodes.iter().map(|n| n.bytes).sum(),
                };
                self.summary.output_bytes =
                    self.results.finish(self.summary.chunks, self.opts.json)?;
                Ok(Finished {
                    summary: self.summary,
                    exit: self.exit,
                })
            }
            Err(e) => {
                let kept = self.results.keep_journal(self.input.chunks());
                let done = self.summary.chunks_run + self.summary.chunks_resumed;
                let total = self.sched.chunk_count();
                let kept = match &kept {
                    Ok(dir) => Ok(dir.as_deref()),
                    Err(je) => Err(format!("{je:#}")),
                };
                // Nobody reads stdout any more (`| head`): stop as quietly as `cat`.
                if !crate::output::stdout_reader_gone(&e) {
                    eprintln!(
                        "{}",
                        crate::output::run_summary::stopped_line(done, total, kept)
                    );
                }
                self.results.discard_unjournaled();
                Err(e)
            }
        }
    }

    async fn drive(&mut self) -> Result<()> {
        let mut tasks: JoinSet<AttemptReport> = JoinSet::new();
        let mut specs: HashMap<usize, Arc<ChunkSpec>> = HashMap::new();
        let mut held_input = 0u64;
        let mut rx = match &self.input {
            Input::Streamed { paths, chunk_size } => Some(spawn_stream_reader(paths, *chunk_size)?),
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
            // A node still on its way when every chunk is done is waited
            // for: it may be only slower to answer than the work was short,
            // and skipping it would report a healthy node (exit 1). So is a
            // probe under way, which may be pushing the agent.
            if rx.is_none() && self.sched.all_done() && self.joining.is_empty() {
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
                Some(sent) = self.sent_rx.recv() => {
                    if self.sched.input_sent(sent.chunk, sent.node, sent.attempt) {
                        self.judge_distance(sent.node, |judge, rtt| {
                            judge.sent(sent.wire, sent.took, rtt)
                        });
                    }
                }
                Some((i, joined)) = self.joining.next(), if !self.joining.is_empty() => {
                    let skipped = match joined {
                        Ok(ready) => {
                            self.join(i, ready);
                            Ok(())
                        }
                        Err(why) => self.not_joined(i, why),
                    };
                    if let Err(stop) = skipped {
                        tasks.abort_all();
                        while tasks.join_next().await.is_some() {}
                        return Err(stop);
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

    /// A node is connected (and probed, or to be checked by its first
    /// chunks): it takes chunks from now on. A node that joined before has
    /// been probed: it goes on with what it has (its slots, its wire).
    fn join(&mut self, i: usize, ready: Ready) {
        if self.nodes[i].is_some() {
            self.sched
                .rejoin(i, (ready.slots > 0).then_some(ready.slots));
        } else {
            self.sched.join(i, ready.slots);
            self.progress.joined(i);
            self.nodes[i] = Some(ready.node);
        }
        if ready.checked {
            self.agents[i] = Agent::Probed;
        }
    }

    /// Node `i`'s guard refused: it takes no more chunks, and is probed
    /// (its agent pushed where needed) once none of its chunks runs, then
    /// joins again. A node already taken out is left alone.
    fn hold_for_probe(&mut self, i: usize) {
        if !self.sched.nodes[i].alive {
            return;
        }
        self.sched.hold(i);
        self.agents[i] = Agent::Waiting;
        self.probe_when_idle(i);
    }

    /// Start node `i`'s probe if it waits for one and runs no chunk.
    fn probe_when_idle(&mut self, i: usize) {
        let n = &self.sched.nodes[i];
        if self.agents[i] != Agent::Waiting || n.running > 0 || !n.alive {
            return;
        }
        let Some(node) = self.nodes[i].clone() else {
            return;
        };
        self.agents[i] = Agent::Probing;
        let (binary, cores) = (self.binary, self.cores);
        self.joining.push(
            async move {
                let joined = match crate::cluster::agent::ensure_agent(&node.session, binary).await
                {
                    Ok(install) => Ok({
                        if let Some(n) = install.cores {
                            cores.learn(&node.session.node, n);
                        }
                        let slots = match install.cores {
                            Some(n) if node.remembered_cores => n.clamp(1, CHANNELS_PER_NODE),
                            _ => 0,
                        };
                        Ready {
                            node,
                            slots,
                            checked: true,
                        }
                    }),
                    Err(e) => Err(NotJoined::Unprepared(e)),
                };
                (i, joined)
            }
            .boxed(),
        );
    }

    /// Node `i` could not join, or its probe failed after it had joined:
    /// it runs no more. One that has run chunks (or failed one) is named
    /// as taken out of the run, its finished chunks kept, rather than
    /// skipped.
    fn not_joined(&mut self, i: usize, why: NotJoined) -> Result<()> {
        let ns = &self.summary.nodes[i];
        let took_part = ns.chunks > 0 || ns.faults > 0 || self.sched.nodes[i].running > 0;
        if self.nodes[i].is_some() && took_part {
            let NotJoined::Unprepared(e) = why else {
                unreachable!("a node that joined was connected")
            };
            if let Some(cause) = crate::exit::local_cause(&e) {
                return Err(crate::exit::local_stop("a node", cause));
            }
            let name = &self.summary.nodes[i].node;
            self.progress
                .warn(&format!("taking {name} out of the run: {e:#}"));
            self.summary.nodes[i].removed = true;
            self.sched.remove_node(i);
            self.exit = self.exit.max(Exit::Partial);
            return Ok(());
        }
        self.nodes[i] = None;
        skip(
            i,
            why,
            &mut self.summary,
            &mut self.sched,
            &self.progress,
            &mut self.exit,
        )
    }

    /// A distant node's chunk is all sent, or its result all in: where its
    /// round trip held it back (the `verdict` of its [`DistanceJudge`]), the
    /// node gets the slots that round trip calls for.
    fn judge_distance(
        &mut self,
        node: usize,
        verdict: impl FnOnce(&mut DistanceJudge, Duration) -> Option<usize>,
    ) {
        let Some(run_node) = &self.nodes[node] else {
            return;
        };
        let judge = &mut self.distance[node];
        if !run_node.distant || !judge.open() || !self.sched.nodes[node].alive {
            return;
        }
        if let Some(slots) = run_node
            .session
            .round_trip()
            .and_then(|rtt| verdict(judge, rtt))
        {
            self.sched.widen(node, slots);
        }
    }

    fn add_stream_chunk(
        &mut self,
        chunk: (StreamChunk, u64),
        specs: &mut HashMap<usize, Arc<ChunkSpec>>,
    ) {
        let (c, line_offset) = chunk;
        let index = self.sched.add_chunk();
        debug_assert_eq!(index, c.index);
        self.results.add_chunk();
        specs.insert(
            index,
            Arc::new(ChunkSpec {
                index,
                start: c.start,
                len: c.data.len() as u64,
                line_offset: Some(line_offset),
                data: ChunkData::Owned(c.data),
                traffic: self.progress.traffic(),
            }),
        );
    }

    /// What a `--exec` command sees of where it runs: the node (its place in
    /// the selection, as `exec` says it: a skipped node's index is not
    /// reused, and the count is the selection's) and the chunk (0-based; the
    /// count only when the input was planned, not streamed).
    fn chunk_env(&self, node: usize, chunk: usize) -> Vec<(&'static str, String)> {
        if !matches!(self.job.work, crate::run::job::Work::Exec { .. }) {
            return Vec::new();
        }
        let mut env = vec![
            ("DISTCTL_NODE", self.summary.nodes[node].node.clone()),
            ("DISTCTL_NODE_INDEX", node.to_string()),
            ("DISTCTL_NODE_COUNT", self.nodes.len().to_string()),
            ("DISTCTL_CHUNK", chunk.to_string()),
        ];
        if let Input::Planned { chunks, .. } = &self.input {
            env.push(("DISTCTL_CHUNK_COUNT", chunks.len().to_string()));
        }
        env
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
                            traffic: self.progress.traffic(),
                        })
                    })
                    .clone();
                self.progress.started(n);
                let node = self.nodes[n]
                    .clone()
                    .expect("only joined nodes take chunks");
                let env = self.chunk_env(n, spec.index);
                let wire = crate::run::attempt::WireUse {
                    node: node.wire.clone(),
                    plan: node.wire.plan(),
                };
                let mut cmdline = self.job.command_line(
                    &node.agent,
                    spec.index,
                    spec.len,
                    spec.line_offset,
                    &env,
                    wire.plan,
                );
                let guarded = self.agents[n].guarded();
                if guarded {
                    cmdline.insert_str(0, &node.guard);
                }
                let expect_partial = self.job.aggregate();
                let data = self.results.result_buf(spec.start, spec.len);
                let timeout = self.opts.timeout;
                let want_checksum = self.results.want_checksum();
                let sent = self.sent_tx.clone();
                let attempt_no = self.sched.attempt_no(spec.index);
                tasks.spawn(async move {
                    let t0 = Instant::now();
                    let outcome = attempt(
                        &node.session,
                        &cmdline,
                        &spec,
                        expect_partial,
                        timeout,
                        data,
                        want_checksum,
                        &wire,
                        guarded,
                        |wire| {
                            let _ = sent.send(InputSent {
                                chunk: spec.index,
                                node: n,
                                attempt: attempt_no,
                                wire,
                                took: t0.elapsed(),
                            });
                        },
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
        let node = r.node;
        let handled = self.handle_outcome(r);
        self.probe_when_idle(node);
        handled
    }

    fn handle_outcome(&mut self, r: AttemptReport) -> Result<()> {
        let name = self.summary.nodes[r.node].node.clone();
        let ns = &mut self.summary.nodes[r.node];
        ns.busy_seconds += r.elapsed.as_secs_f64();
        match r.outcome {
            Ok(v) => {
                self.sched.done(r.chunk, r.node);
                if self.agents[r.node] == Agent::Unchecked {
                    self.agents[r.node] = Agent::Ran;
                }
                let (wire, took) = (v.wire_sent, r.elapsed);
                self.judge_distance(r.node, |judge, rtt| judge.done(wire, took, rtt));
                let len = r.len;
                let ns = &mut self.summary.nodes[r.node];
                ns.chunks += 1;
                ns.bytes += len;
                ns.wire_bytes_sent += v.wire_sent;
                ns.wire_bytes_received += v.wire_received;
                self.summary.chunks_run += 1;
                self.summary.lines += v.lines;
                self.progress.finished(r.node);
                self.results.accept(r.chunk, len, v, self.input.chunks())
            }
            Err(e) if e.input_error => Err(usage!("{}", e.message)),
            Err(e) if e.fault == Fault::Unready => {
                // The chunk never ran: it goes back at no cost. A node
                // probed since it started goes on; any other waits for its
                // probe.
                self.sched.fault(r.chunk, r.node, e.fault);
                self.progress.withdrawn(r.node);
                match self.agents[r.node] {
                    Agent::Unchecked | Agent::Ran => self.hold_for_probe(r.node),
                    Agent::Waiting | Agent::Probing | Agent::Probed => {}
                }
                Ok(())
            }
            Err(e) if e.fault == Fault::Local => {
                self.sched.fault(r.chunk, r.node, e.fault);
                Err(crate::exit::local_stop(&name, &e.message))
            }
            Err(e) => {
                let out = self.sched.fault(r.chunk, r.node, e.fault);
                if out.extra_refused {
                    // The node allows the channels it has open, not one more.
                    self.progress.withdrawn(r.node);
                    return Ok(());
                }
                self.progress.failed(r.node);
                if e.fault == Fault::Lost {
                    // The node went silent or its connection dropped: the
                    // output can still be complete, but a node was dropped.
                    self.exit = self.exit.max(Exit::Partial);
                }
                self.summary.nodes[r.node].faults += 1;
                self.summary.retries = self.sched.retried;
                if !self.opts.quiet || !out.requeued {
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
                        self.opts.retries + 1,
                        e.message
                    );
                }
                Ok(())
            }
        }
    }
}
