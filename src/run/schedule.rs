//! Which chunk runs where: a pure state machine, driven by `run` (which does
//! the I/O) and tested on its own.
//!
//! Every node runs up to `slots` chunks at once; a node with a free slot takes
//! the lowest pending chunk (so results arrive roughly in order and the merge
//! buffers little). With [`Scheduler::look_ahead`] (the built-in ops, which
//! are done with a chunk moments after its input ends), a slot whose chunk
//! has had all its input sent, its result still on the way back, takes its
//! next chunk already (at most one such per slot): the node then starts on
//! it while the round trips of one chunk's end and the next one's start
//! pass, instead of waiting them out. A distant node whose slots were not
//! set, and whose first chunks show its round trip holding it back (the
//! window, or the round trips each chunk waits out: [`DistanceJudge`]), is
//! [widened](Scheduler::widen) to the slots its round trip calls for
//! ([`distant_slots`]). A node whose sshd refuses a
//! channel beyond the slots it joined with (`MaxSessions`) runs on what it
//! has from then on, and is not struck. A chunk that fails goes back to the
//! queue and is retried
//! on another node, up to `retries` times; a node that fails
//! [`NODE_STRIKES`] times in a row is taken out of the run.

use std::collections::BTreeSet;
use std::time::Duration;

/// Consecutive faults after which a node is taken out of the run.
pub const NODE_STRIKES: u32 = 3;

/// What one SSH channel may have in flight each way: OpenSSH's channel
/// window, 2 MiB. One channel carries at most this much per round trip.
const CHANNEL_WINDOW: f64 = (2 << 20) as f64;
/// The pace (bytes a second) a distant node's channels should allow
/// together: 1 Gbit/s.
const DISTANT_PACE: f64 = 125e6;
/// Most slots a distant node is widened to: with the look-ahead's one
/// more per slot, within [`crate::transport::CHANNELS_PER_NODE`].
pub const DISTANT_SLOTS: usize = 4;

/// Slots for a node `round_trip` away running an op whose one slot would
/// otherwise do (the byte ops): enough channels that their windows allow
/// [`DISTANT_PACE`], at most [`DISTANT_SLOTS`]. One up to a 16.8 ms round
/// trip, two up to 33.6 ms, three up to 50 ms, four beyond.
pub fn distant_slots(round_trip: Duration) -> usize {
    let wanted = (round_trip.as_secs_f64() * DISTANT_PACE / CHANNEL_WINDOW).ceil();
    (wanted as usize).clamp(1, DISTANT_SLOTS)
}

/// Smallest chunk (on the wire) that can show a window holding a channel
/// back: two windows, so that at least one round trip waits on the window.
/// What distctl has written into the ssh master's pipe is not far ahead of
/// the wire: through the test relay at 102 ms, 4 MiB chunks were all sent
/// 311–325 ms after their channel was asked for, 18.6 MiB/s once the
/// opening is left out, against the window's 19.6.
const WINDOW_PROOF: u64 = 4 << 20;

/// Whether `len` bytes sent alone on one channel in `took` (as they went
/// on the wire: compressed, where compression was on) went at the
/// pace the window allows at `round_trip`, within a factor of 1.5 either
/// way: then the round trip held the channel back, and more channels go
/// faster. Faster than that, the round trip was measured long (a busy
/// controller); slower, something else holds the node back (the link, its
/// CPU), which more channels would only load more. `took` counts from
/// when the channel was asked for: the pace leaves out the round trip of
/// its opening. A chunk under [`WINDOW_PROOF`] shows nothing.
pub fn window_bound(len: u64, took: Duration, round_trip: Duration) -> bool {
    let allowed = CHANNEL_WINDOW / round_trip.as_secs_f64().max(1e-6);
    let sending = took.saturating_sub(round_trip).as_secs_f64().max(1e-6);
    let pace = len as f64 / sending;
    len >= WINDOW_PROOF && (allowed / 1.5..=allowed * 1.5).contains(&pace)
}

/// Round trips within which a chunk under [`WINDOW_PROOF`] on the wire, its
/// whole life long (its channel asked for until its result is all in), was
/// bound by them. Every chunk waits out three: its channel's opening; the
/// command's start, after which sshd opens its window (it opens a session
/// channel with none); the input's way there and the result's way back. A
/// chunk over one window waits one more. Through the test relay at 102 ms,
/// 1 MiB chunks took 3.1 round trips and 2 MiB ones 4.1 to 4.3. The next
/// chunk starts once this one's input is sent, one or two round trips in:
/// a chunk that spent under two round trips (one, over one window) on the
/// link and on the node beyond those leaves them idle for much of each
/// turn, and more channels fill it. A link or a node that holds a chunk
/// back longer is the bound; more channels would only load it more.
const ROUND_TRIP_BOUND: f64 = 5.0;

/// Round trips no chunk can beat: a chunk done sooner was judged against a
/// round trip measured long (its quickest channel open came while other
/// nodes' key exchanges kept the controller busy), which says nothing.
const ROUND_TRIP_FLOOR: f64 = 2.5;

/// Whether a chunk of `wire` bytes (as they went on the wire) that took
/// `took`, from when its channel was asked for until its result was all
/// in, was bound by the `round_trip`: it took from [`ROUND_TRIP_FLOOR`] to
/// [`ROUND_TRIP_BOUND`] round trips. Only a chunk under [`WINDOW_PROOF`] is
/// judged so: a larger one is judged by its window ([`window_bound`]).
pub fn round_trip_bound(wire: u64, took: Duration, round_trip: Duration) -> bool {
    let trips = took.as_secs_f64() / round_trip.as_secs_f64().max(1e-6);
    wire < WINDOW_PROOF && (ROUND_TRIP_FLOOR..=ROUND_TRIP_BOUND).contains(&trips)
}

/// Chunks that may each tell whether a distant node is held back by its
/// round trip, until one does.
const JUDGEMENTS: u32 = 3;

/// Whether a distant node is held back by its round trip, judged on its
/// first chunks: a chunk of [`WINDOW_PROOF`] or more as its input is all
/// sent, by whether its window held it back ([`window_bound`]: each such
/// chunk is the only one sending input on its connection, as the node runs
/// on one slot until it is widened; the one before may still be on its
/// way, which can only make a chunk look slower); a smaller one as its
/// result is all in, by whether round trips were most of its life
/// ([`round_trip_bound`]; the chunk after it may be starting, which again
/// can only make it look slower, and one done in fewer round trips than
/// any chunk needs was judged against a round trip measured long). A chunk
/// sent while something else held the node back (other nodes' key
/// exchanges on a busy controller, at the start of a run) leaves the next
/// ones their say: the first of [`JUDGEMENTS`] that shows the round trip
/// widens the node, once, to the slots it calls for ([`distant_slots`]).
#[derive(Debug, Clone)]
pub struct DistanceJudge {
    left: u32,
}

impl Default for DistanceJudge {
    fn default() -> Self {
        DistanceJudge { left: JUDGEMENTS }
    }
}

impl DistanceJudge {
    /// A chunk's input is all sent: `wire` bytes, `took` after its channel
    /// was asked for. The slots the node should widen to, once. A chunk
    /// under [`WINDOW_PROOF`] is judged when it is done instead.
    pub fn sent(&mut self, wire: u64, took: Duration, round_trip: Duration) -> Option<usize> {
        if wire < WINDOW_PROOF {
            return None;
        }
        self.judge(window_bound(wire, took, round_trip), round_trip)
    }

    /// A chunk's result is all in: `wire` bytes of input sent, `took` after
    /// its channel was asked for. The slots the node should widen to, once.
    /// A chunk of [`WINDOW_PROOF`] or more was judged when it was sent.
    pub fn done(&mut self, wire: u64, took: Duration, round_trip: Duration) -> Option<usize> {
        if wire >= WINDOW_PROOF {
            return None;
        }
        self.judge(round_trip_bound(wire, took, round_trip), round_trip)
    }

    fn judge(&mut self, bound: bool, round_trip: Duration) -> Option<usize> {
        if self.left == 0 {
            return None;
        }
        if bound {
            self.left = 0;
            return Some(distant_slots(round_trip));
        }
        self.left -= 1;
        None
    }

    /// Still listening: the node has not been widened or given up on.
    pub fn open(&self) -> bool {
        self.left > 0
    }
}

/// How an attempt went wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The chunk failed on the node (agent error, command exit, bad result).
    Failed,
    /// The node went silent for `--timeout`, or the connection dropped.
    Lost,
    /// The node refused to open a channel (sshd MaxSessions/MaxStartups):
    /// the chunk never ran, so it costs no retry.
    Refused,
    /// The controller itself failed (out of file descriptors, a full local
    /// disk for a spill): never the node's fault, it costs the node nothing.
    Local,
    /// The node's agent was found missing or not this run's before it
    /// started (`cluster::agent::guard`): the chunk never ran, so it costs
    /// nothing; the node is [held](Scheduler::hold) until it is prepared.
    Unready,
}

/// What follows from a fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultOutcome {
    /// The chunk went back to the queue; false: it has used all its retries.
    pub requeued: bool,
    /// The node was taken out of the run by this fault.
    pub node_removed: bool,
    /// A channel beyond the node's own slots (a look-ahead, or a slot it
    /// was widened to) that its sshd refused: no fault of the node's,
    /// nothing to report.
    pub extra_refused: bool,
}

#[derive(Debug, Clone, Default)]
struct ChunkState {
    /// Nodes it failed on, in order.
    failed_on: Vec<usize>,
    retries_used: u32,
    done: bool,
    /// The node it is running on.
    running_on: Option<usize>,
    /// Attempts started, the running one included: names the attempt an
    /// [`Scheduler::input_sent`] is about.
    attempts: u32,
    /// Its input is all sent (counted in that node's `sent`).
    sent: bool,
    /// The running attempt took a slot's look-ahead.
    ahead: bool,
    /// Chunks the node had running when this attempt was started: a
    /// refusal of its channel says the node allows no more than that.
    others: usize,
}

#[derive(Debug, Clone)]
pub struct NodeState {
    pub slots: usize,
    /// The slots it joined with, which its sshd must allow (the
    /// inventory's, the cores, or one): [`Scheduler::widen`] goes no lower.
    pub base: usize,
    /// Connected (and prepared, or its agent checked by its chunks): it
    /// may take chunks. A live node that has not joined is still on its
    /// way (connecting), or [held](Scheduler::hold) for its probe.
    pub joined: bool,
    pub running: usize,
    /// Running chunks whose input is all sent: each frees its slot for
    /// the next chunk.
    pub sent: usize,
    /// Its sshd refused a channel beyond its base slots: no look-ahead and
    /// no widening from then on.
    pub refused_extra: bool,
    pub alive: bool,
    pub strikes: u32,
    pub done: u64,
    pub faults: u64,
}

pub struct Scheduler {
    pending: BTreeSet<usize>,
    chunks: Vec<ChunkState>,
    pub nodes: Vec<NodeState>,
    retries: u32,
    /// Retries spent over the whole run.
    pub retried: u64,
    /// A slot whose chunk is all sent takes its next chunk (see the module).
    pub look_ahead: bool,
}

impl Scheduler {
    /// `chunks`: how many chunks (all pending); `slots`: per node.
    pub fn new(chunks: usize, slots: &[usize], retries: u32) -> Scheduler {
        Scheduler {
            pending: (0..chunks).collect(),
            chunks: vec![ChunkState::default(); chunks],
            nodes: slots
                .iter()
                .map(|&s| NodeState {
                    slots: s.max(1),
                    base: s.max(1),
                    joined: true,
                    running: 0,
                    sent: 0,
                    refused_extra: false,
                    alive: true,
                    strikes: 0,
                    done: 0,
                    faults: 0,
                })
                .collect(),
            retries,
            retried: 0,
            look_ahead: false,
        }
    }

    /// `nodes` nodes that are all still on their way: each takes chunks
    /// once it [`join`](Self::join)s, or is [removed](Self::remove_node).
    pub fn joining(chunks: usize, nodes: usize, retries: u32) -> Scheduler {
        let mut s = Scheduler::new(chunks, &vec![1; nodes], retries);
        for n in &mut s.nodes {
            n.joined = false;
            n.slots = 0;
        }
        s
    }

    /// A node is ready with `slots` slots.
    pub fn join(&mut self, node: usize, slots: usize) {
        let n = &mut self.nodes[node];
        n.joined = true;
        n.slots = slots.max(1);
        n.base = n.slots;
    }

    /// A distant node's slots, as its round trip calls for them: never
    /// fewer than it joined with (chunks running beyond new slots end as
    /// usual). Nothing changes once its sshd has refused a channel beyond
    /// its base.
    pub fn widen(&mut self, node: usize, slots: usize) {
        let n = &mut self.nodes[node];
        if !n.refused_extra {
            n.slots = slots.max(n.base);
        }
    }

    /// A [held](Self::hold) node takes chunks again: on `slots` where its
    /// probe has just told them (it had joined on a remembered core count),
    /// else on the slots it had. A node whose sshd refused a channel keeps
    /// to the channels it has.
    pub fn rejoin(&mut self, node: usize, slots: Option<usize>) {
        let n = &mut self.nodes[node];
        n.joined = true;
        if let (Some(s), false) = (slots, n.refused_extra) {
            n.slots = s.max(1);
            n.base = n.slots;
        }
    }

    /// A joined node takes no more chunks until it [rejoins](Self::rejoin)
    /// (its agent is being installed); the chunks it runs end as usual.
    pub fn hold(&mut self, node: usize) {
        self.nodes[node].joined = false;
    }

    /// Chunks that need no running (done in an earlier run, for `--resume`).
    pub fn mark_done(&mut self, chunk: usize) {
        self.pending.remove(&chunk);
        self.chunks[chunk].done = true;
    }

    /// Add chunks as a streamed input reveals them.
    pub fn add_chunk(&mut self) -> usize {
        let i = self.chunks.len();
        self.chunks.push(ChunkState::default());
        self.pending.insert(i);
        i
    }

    /// A node that never joined (unreachable, agent could not be installed),
    /// or one taken out of the run: no chunk waits for it any more.
    pub fn remove_node(&mut self, node: usize) {
        self.nodes[node].alive = false;
    }

    /// The next chunk for `node`, marked running there; `None` when the node
    /// is full, out, or has nothing it may take. A chunk goes to a node it
    /// failed on only when every live node has failed it.
    pub fn next_for(&mut self, node: usize) -> Option<usize> {
        let n = &self.nodes[node];
        if !n.alive || !n.joined || n.running >= self.capacity(node) {
            return None;
        }
        let alive: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| self.nodes[i].alive)
            .collect();
        let pick = self.pending.iter().copied().find(|&c| {
            let f = &self.chunks[c].failed_on;
            !f.contains(&node) || alive.iter().all(|a| f.contains(a))
        })?;
        self.pending.remove(&pick);
        let n = &mut self.nodes[node];
        let (ahead, others) = (n.running >= n.slots, n.running);
        n.running += 1;
        let c = &mut self.chunks[pick];
        c.running_on = Some(node);
        c.attempts += 1;
        c.ahead = ahead;
        c.others = others;
        Some(pick)
    }

    /// Which attempt of `chunk` is running (1 for the first), for
    /// [`input_sent`](Self::input_sent).
    pub fn attempt_no(&self, chunk: usize) -> u32 {
        self.chunks[chunk].attempts
    }

    /// Attempt `attempt` of `chunk` on `node` has sent all its input: its
    /// slot may take the next chunk. A late word about an attempt that has
    /// already ended (even when the chunk runs again on the same node)
    /// changes nothing: true when the word counted.
    pub fn input_sent(&mut self, chunk: usize, node: usize, attempt: u32) -> bool {
        let c = &mut self.chunks[chunk];
        if c.running_on == Some(node) && c.attempts == attempt && !c.sent {
            c.sent = true;
            self.nodes[node].sent += 1;
            return true;
        }
        false
    }

    /// `chunk`'s attempt on `node` has ended, one way or the other:
    /// whether it had taken a slot's look-ahead, and how many chunks the
    /// node had running when it started.
    fn ended(&mut self, chunk: usize, node: usize) -> (bool, usize) {
        let c = &mut self.chunks[chunk];
        if c.running_on != Some(node) {
            return (false, 0);
        }
        c.running_on = None;
        if std::mem::take(&mut c.sent) {
            self.nodes[node].sent -= 1;
        }
        (std::mem::take(&mut c.ahead), std::mem::take(&mut c.others))
    }

    pub fn done(&mut self, chunk: usize, node: usize) {
        self.ended(chunk, node);
        let n = &mut self.nodes[node];
        n.running -= 1;
        n.strikes = 0;
        n.done += 1;
        self.chunks[chunk].done = true;
    }

    pub fn fault(&mut self, chunk: usize, node: usize, fault: Fault) -> FaultOutcome {
        let (ahead, others) = self.ended(chunk, node);
        let n = &mut self.nodes[node];
        n.running -= 1;
        // Beyond the node's base when its channel was asked for (other
        // refusals and results may have been handled since), or now (the
        // session of a chunk just done may still be closing on the node).
        if fault == Fault::Refused && (ahead || others.max(n.running) >= n.base) {
            // The node's sshd allows the channels it had open but not one
            // more: no fault of the node's. It runs on those from now on.
            n.refused_extra = true;
            n.slots = n.slots.min(others.max(n.base));
            self.pending.insert(chunk);
            return FaultOutcome {
                requeued: true,
                node_removed: false,
                extra_refused: true,
            };
        }
        if matches!(fault, Fault::Local | Fault::Unready) {
            self.pending.insert(chunk);
            return FaultOutcome {
                requeued: true,
                node_removed: false,
                extra_refused: false,
            };
        }
        n.strikes += 1;
        n.faults += 1;
        let node_removed = n.alive && n.strikes >= NODE_STRIKES;
        if node_removed {
            n.alive = false;
        }
        let c = &mut self.chunks[chunk];
        let requeued = if fault == Fault::Refused {
            true
        } else {
            c.failed_on.push(node);
            c.retries_used += 1;
            self.retried += 1;
            c.retries_used <= self.retries
        };
        if requeued {
            self.pending.insert(chunk);
        }
        FaultOutcome {
            requeued,
            node_removed,
            extra_refused: false,
        }
    }

    /// Every chunk finished.
    pub fn all_done(&self) -> bool {
        self.chunks.iter().all(|c| c.done)
    }

    pub fn chunk_count(&self) -> usize {
        self.chunks.len()
    }

    pub fn running(&self) -> usize {
        self.nodes.iter().map(|n| n.running).sum()
    }

    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    pub fn alive_nodes(&self) -> usize {
        self.nodes.iter().filter(|n| n.alive).count()
    }

    /// Free slots over all live nodes that have joined.
    pub fn free_slots(&self) -> usize {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.alive && n.joined)
            .map(|(i, n)| {
                let cap = self.capacity(i);
                cap - n.running.min(cap)
            })
            .sum()
    }

    /// Chunks node `node` may have running: its slots, and with look-ahead
    /// one more for each slot whose chunk has all its input sent, within
    /// the channels a node's connection opens at once.
    fn capacity(&self, node: usize) -> usize {
        let n = &self.nodes[node];
        if !self.look_ahead || n.refused_extra {
            return n.slots;
        }
        let limit = crate::transport::CHANNELS_PER_NODE.max(n.slots);
        (n.slots + n.sent.min(n.slots)).min(limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_faults_never_strike_a_node() {
        let mut s = Scheduler::new(1, &[1], 0);
        for _ in 0..NODE_STRIKES + 2 {
            let c = s.next_for(0).unwrap();
            let out = s.fault(c, 0, Fault::Local);
            assert!(out.requeued && !out.node_removed);
        }
        assert_eq!(s.nodes[0].strikes, 0);
        assert_eq!(s.nodes[0].faults, 0);
        assert_eq!(s.retried, 0);
        assert_eq!(
            s.next_for(0),
            Some(0),
            "the chunk is still there for the node"
        );
    }

    /// A chunk whose guard found the node's agent missing never ran: it
    /// costs nothing, goes to the other node, and the held node takes no
    /// chunk until it joins again (probed), on the slots it had.
    #[test]
    fn a_chunk_refused_by_its_guard_costs_nothing_and_the_node_waits_for_its_probe() {
        let mut s = Scheduler::new(3, &[1, 1], 0);
        let c = s.next_for(0).unwrap();
        let out = s.fault(c, 0, Fault::Unready);
        assert!(out.requeued && !out.node_removed && !out.extra_refused);
        s.hold(0);
        assert_eq!(
            (s.nodes[0].strikes, s.nodes[0].faults, s.retried),
            (0, 0, 0)
        );
        assert_eq!(s.next_for(0), None, "held until probed");
        assert_eq!(s.next_for(1), Some(c), "no retry used: node 1 takes it");
        s.rejoin(0, None);
        assert_eq!(s.next_for(0), Some(1));
        assert_eq!(s.next_for(0), None, "on the slots it had");
    }

    /// A node that joined on a remembered core count rejoins on the cores
    /// its probe has just found; one whose sshd refused a channel keeps to
    /// the channels it has.
    #[test]
    fn a_probed_node_rejoins_on_the_cores_its_probe_found() {
        let mut s = Scheduler::new(8, &[2, 2], 0);
        s.hold(0);
        s.rejoin(0, Some(3));
        let taken: Vec<usize> = std::iter::from_fn(|| s.next_for(0)).collect();
        assert_eq!(taken.len(), 3, "{taken:?}");
        // As after a refused channel beyond the first: it runs on one.
        s.nodes[1].refused_extra = true;
        s.nodes[1].slots = 1;
        s.hold(1);
        s.rejoin(1, Some(4));
        assert_eq!(s.nodes[1].slots, 1, "the channels its sshd allows");
    }

    /// A scheduler that looks ahead, as `run` makes one for the built-in ops.
    fn ahead(chunks: usize, slots: &[usize], retries: u32) -> Scheduler {
        let mut s = Scheduler::new(chunks, slots, retries);
        s.look_ahead = true;
        s
    }

    /// Tell that the running attempt of `chunk` on `node` is all sent.
    fn sent(s: &mut Scheduler, chunk: usize, node: usize) {
        let a = s.attempt_no(chunk);
        s.input_sent(chunk, node, a);
    }

    #[test]
    fn a_slot_whose_chunk_is_all_sent_takes_the_next_one() {
        let mut s = ahead(5, &[1], 1);
        assert_eq!(s.next_for(0), Some(0));
        assert_eq!(s.next_for(0), None, "one slot, busy");
        sent(&mut s, 0, 0);
        assert_eq!(s.next_for(0), Some(1), "chunk 0 is all sent");
        assert_eq!(s.next_for(0), None, "one look-ahead per slot");
        sent(&mut s, 1, 0);
        assert_eq!(s.next_for(0), None, "still one look-ahead per slot");
        s.done(0, 0);
        assert_eq!(s.next_for(0), Some(2), "chunk 1 is all sent");
        assert_eq!(s.nodes[0].sent, 1);
        // A late word about an attempt that has ended changes nothing.
        s.input_sent(0, 0, 1);
        assert_eq!(s.nodes[0].sent, 1);
        assert_eq!(s.free_slots(), 0);
        let out = s.fault(1, 0, Fault::Lost);
        assert!(out.requeued);
        assert_eq!((s.nodes[0].sent, s.nodes[0].running), (0, 1));
        assert_eq!(s.free_slots(), 0, "chunk 2 still takes its input");
        sent(&mut s, 2, 0);
        assert_eq!(s.free_slots(), 1);
        assert_eq!(
            s.next_for(0),
            Some(1),
            "the failed chunk again, lowest first"
        );
        // The failed attempt's late word does not count for the new one.
        s.input_sent(1, 0, 1);
        assert_eq!(s.nodes[0].sent, 1, "only chunk 2's");
        assert_eq!(s.next_for(0), None);
    }

    #[test]
    fn without_look_ahead_slots_bound_the_chunks_running() {
        let mut s = Scheduler::new(4, &[1], 0);
        assert_eq!(s.next_for(0), Some(0));
        sent(&mut s, 0, 0);
        assert_eq!(s.next_for(0), None);
        assert_eq!(s.free_slots(), 0);
    }

    /// A node whose sshd refuses the look-ahead channel (`MaxSessions`
    /// equal to its slots) is not struck for it and runs on its slots.
    #[test]
    fn a_refused_look_ahead_costs_nothing_and_stops_the_look_ahead() {
        let mut s = ahead(6, &[1, 1], 0);
        assert_eq!(s.next_for(0), Some(0));
        for _ in 0..NODE_STRIKES + 1 {
            sent(&mut s, 0, 0);
            let Some(c) = s.next_for(0) else {
                break;
            };
            let out = s.fault(c, 0, Fault::Refused);
            assert!(
                out.requeued && !out.node_removed && out.extra_refused,
                "{out:?}"
            );
        }
        assert!(s.nodes[0].alive);
        assert_eq!(
            (s.nodes[0].strikes, s.nodes[0].faults, s.retried),
            (0, 0, 0)
        );
        assert_eq!(s.next_for(0), None, "slots only, now");
        assert_eq!(s.next_for(1), Some(1), "the other node still runs");
        sent(&mut s, 1, 1);
        assert_eq!(s.next_for(1), Some(2), "and still looks ahead");
        // A refused channel within the slots still strikes, as before.
        s.done(0, 0);
        let c = s.next_for(0).unwrap();
        assert!(!s.fault(c, 0, Fault::Refused).extra_refused);
        assert_eq!(s.nodes[0].strikes, 1);
    }

    #[test]
    fn only_a_chunk_that_outlasts_the_buffers_and_went_at_the_windows_pace_is_window_bound() {
        let ms = Duration::from_millis;
        let mib = 1u64 << 20;
        // 100 ms: the window allows 20 MiB/s; the channel's opening took
        // one round trip of `took`. As measured through the test relay:
        assert!(window_bound(16 * mib, ms(938), ms(102)), "19 MiB/s");
        assert!(window_bound(64 * mib, ms(3300), ms(100)), "20 MiB/s");
        assert!(
            !window_bound(64 * mib, ms(1500), ms(100)),
            "46 MiB/s: not the window"
        );
        assert!(
            !window_bound(64 * mib, ms(6500), ms(100)),
            "10 MiB/s: the link"
        );
        assert!(
            !window_bound(3 * mib, ms(250), ms(100)),
            "too small to tell"
        );
        assert!(window_bound(4 * mib, ms(320), ms(102)), "18.6 MiB/s");
        assert!(window_bound(8 * mib, ms(500), ms(100)), "20 MiB/s");
        // 20 ms: 100 MiB/s; a node at 58 MiB/s is held back by something else.
        assert!(!window_bound(16 * mib, ms(296), ms(20)));
        assert!(window_bound(16 * mib, ms(190), ms(20)));
    }

    /// Small chunks say nothing; an unlucky proof-sized one leaves the next
    /// its say; the first that shows the window widens the node, once; three
    /// that do not end the judging.
    #[test]
    fn a_distant_node_is_judged_on_its_first_chunks_that_can_show_the_window() {
        let ms = Duration::from_millis;
        let mib = 1u64 << 20;
        let rtt = ms(100);
        let mut j = DistanceJudge::default();
        assert_eq!(j.sent(3 * mib, ms(250), rtt), None, "too small to tell");
        assert_eq!(j.sent(3 * mib, ms(250), rtt), None);
        assert_eq!(j.sent(16 * mib, ms(2500), rtt), None, "a busy start");
        assert!(j.open());
        assert_eq!(j.sent(16 * mib, ms(900), rtt), Some(4), "the window");
        assert!(!j.open());
        assert_eq!(j.sent(16 * mib, ms(900), rtt), None, "once");

        let mut j = DistanceJudge::default();
        for _ in 0..JUDGEMENTS {
            assert!(j.open());
            assert_eq!(j.sent(16 * mib, ms(2500), rtt), None, "the link");
        }
        assert!(!j.open());
        assert_eq!(j.sent(16 * mib, ms(900), rtt), None, "given up");
    }

    /// A chunk under two windows is bound by its round trip when its whole
    /// life took from two and a half to five of them.
    #[test]
    fn a_small_chunk_that_was_mostly_round_trips_is_bound_by_them() {
        let ms = Duration::from_millis;
        let mib = 1u64 << 20;
        // Through the relay at 102 ms: 1 MiB in 320 ms, 2 MiB in 430.
        assert!(round_trip_bound(mib, ms(320), ms(102)));
        assert!(round_trip_bound(2 * mib, ms(430), ms(102)));
        assert!(round_trip_bound(3 * mib, ms(500), ms(100)));
        assert!(!round_trip_bound(mib, ms(680), ms(60)), "2 MiB/s: the link");
        assert!(
            !round_trip_bound(mib, ms(40), ms(20)),
            "a round trip measured long"
        );
        assert!(round_trip_bound(64 << 10, ms(250), ms(100)), "three trips");
        assert!(
            !round_trip_bound(4 * mib, ms(320), ms(102)),
            "two windows: judged by the window"
        );
    }

    /// Chunks under two windows are judged when they are done, larger ones
    /// when they are sent; each judgement counts against the same three.
    #[test]
    fn a_distant_node_running_small_chunks_is_judged_on_their_round_trips() {
        let ms = Duration::from_millis;
        let mib = 1u64 << 20;
        let rtt = ms(100);
        let mut j = DistanceJudge::default();
        assert_eq!(j.sent(mib, ms(200), rtt), None, "judged when done");
        assert_eq!(j.done(mib, ms(900), rtt), None, "a busy start");
        assert_eq!(j.done(16 * mib, ms(400), rtt), None, "judged when sent");
        assert_eq!(j.done(mib, ms(310), rtt), Some(4), "round trips");
        assert!(!j.open());
        assert_eq!(j.done(mib, ms(310), rtt), None, "once");

        let mut j = DistanceJudge::default();
        assert_eq!(j.done(mib, ms(900), rtt), None, "the link");
        assert_eq!(j.sent(16 * mib, ms(2500), rtt), None, "the link");
        assert_eq!(j.done(mib, ms(900), rtt), None, "the link");
        assert!(!j.open());
        assert_eq!(j.done(mib, ms(310), rtt), None, "given up");
        // 20 ms: two slots.
        let mut j = DistanceJudge::default();
        assert_eq!(j.done(mib, ms(80), ms(22)), Some(2));
    }

    #[test]
    fn a_longer_round_trip_asks_for_more_slots_up_to_four() {
        let ms = Duration::from_millis;
        let slots: Vec<usize> = [0, 1, 16, 17, 30, 34, 50, 51, 100, 1000]
            .iter()
            .map(|&t| distant_slots(ms(t)))
            .collect();
        assert_eq!(slots, [1, 1, 1, 2, 2, 3, 3, 4, 4, 4]);
    }

    /// A distant node widened past its slots takes that many chunks; a
    /// shorter round trip narrows it back, never below the slots it joined
    /// with; a channel its sshd refuses beyond those stops the widening
    /// without a strike.
    #[test]
    fn a_widened_node_runs_its_slots_and_a_refused_extra_channel_narrows_it() {
        let mut s = Scheduler::joining(12, 2, 0);
        s.join(0, 1);
        s.join(1, 1);
        s.widen(0, 4);
        let first: Vec<_> = (0..5).map(|_| s.next_for(0)).collect();
        assert_eq!(first, [Some(0), Some(1), Some(2), Some(3), None]);
        s.widen(0, 0);
        assert_eq!(s.nodes[0].slots, 1, "never below the slots it joined with");
        s.done(0, 0);
        s.done(1, 0);
        assert_eq!(s.next_for(0), None, "two still running on one slot");
        s.widen(0, 3);
        assert_eq!(s.next_for(0), Some(4));
        // Three running; the sshd refuses a fourth channel.
        s.widen(0, 4);
        let c = s.next_for(0).unwrap();
        let out = s.fault(c, 0, Fault::Refused);
        assert!(out.requeued && out.extra_refused && !out.node_removed);
        assert_eq!((s.nodes[0].slots, s.nodes[0].strikes), (3, 0));
        s.widen(0, 4);
        assert_eq!(s.nodes[0].slots, 3, "no widening past a refusal");
        assert_eq!(s.next_for(0), None);
        assert_eq!(s.next_for(1), Some(c), "the chunk went back to the queue");
    }

    /// Refusals are judged by what ran when their channels were asked
    /// for, whatever order their reports come back in: a node that allows
    /// two channels ends on two slots, with no strike, even when its first
    /// chunk's result is in before the refusals are.
    #[test]
    fn refusals_handled_out_of_order_narrow_a_widened_node_to_what_it_allowed() {
        let mut s = ahead(12, &[1], 0);
        assert_eq!(s.next_for(0), Some(0));
        sent(&mut s, 0, 0);
        s.widen(0, 4);
        let picked: Vec<_> = std::iter::from_fn(|| s.next_for(0)).collect();
        assert_eq!(picked, [1, 2, 3, 4], "four slots, and chunk 0's look-ahead");
        // The node allows two: chunks 0 and 1 open, 2, 3 and 4 refused.
        s.done(0, 0);
        for c in [4, 3, 2] {
            let out = s.fault(c, 0, Fault::Refused);
            assert!(out.extra_refused && out.requeued, "chunk {c}: {out:?}");
        }
        assert_eq!((s.nodes[0].slots, s.nodes[0].strikes), (2, 0));
        assert_eq!(s.next_for(0), Some(2), "one more beside chunk 1");
        assert_eq!(s.next_for(0), None);
    }

    #[test]
    fn look_ahead_stays_within_a_connections_channels() {
        let slots = crate::transport::CHANNELS_PER_NODE;
        let mut s = ahead(2 * slots, &[slots], 0);
        for c in 0..slots {
            assert_eq!(s.next_for(0), Some(c));
            sent(&mut s, c, 0);
        }
        assert_eq!(s.next_for(0), None);
        let mut s = ahead(8, &[2], 0);
        for c in 0..2 {
            assert_eq!(s.next_for(0), Some(c));
            sent(&mut s, c, 0);
        }
        assert_eq!(s.next_for(0), Some(2));
        assert_eq!(s.next_for(0), Some(3));
        assert_eq!(s.next_for(0), None);
        // 6 slots: two more, not six, within 8 channels.
        let mut s = ahead(16, &[6], 0);
        for c in 0..6 {
            assert_eq!(s.next_for(0), Some(c));
            sent(&mut s, c, 0);
        }
        assert_eq!(
            (s.next_for(0), s.next_for(0), s.next_for(0)),
            (Some(6), Some(7), None)
        );
    }

    #[test]
    fn fills_slots_lowest_chunk_first() {
        let mut s = Scheduler::new(5, &[2, 1], 2);
        assert_eq!(s.next_for(0), Some(0));
        assert_eq!(s.next_for(0), Some(1));
        assert_eq!(s.next_for(0), None, "node 0 is full");
        assert_eq!(s.next_for(1), Some(2));
        s.done(0, 0);
        assert_eq!(s.next_for(0), Some(3), "an idle slot takes the next chunk");
    }

    #[test]
    fn failed_chunk_goes_to_another_node() {
        let mut s = Scheduler::new(2, &[1, 1], 2);
        assert_eq!(s.next_for(0), Some(0));
        let out = s.fault(0, 0, Fault::Failed);
        assert!(out.requeued && !out.node_removed);
        assert_eq!(s.next_for(0), Some(1), "node 0 skips the chunk it failed");
        assert_eq!(s.next_for(1), Some(0));
        s.done(0, 1);
        s.done(1, 0);
        assert!(s.all_done());
        assert_eq!(s.retried, 1);
    }

    #[test]
    fn retries_run_out() {
        let mut s = Scheduler::new(1, &[1, 1], 1);
        assert_eq!(s.next_for(0), Some(0));
        assert!(s.fault(0, 0, Fault::Lost).requeued);
        assert_eq!(s.next_for(1), Some(0));
        assert!(!s.fault(0, 1, Fault::Failed).requeued);
        assert!(!s.all_done());
    }

    #[test]
    fn refused_channel_costs_no_retry() {
        let mut s = Scheduler::new(1, &[1], 0);
        assert_eq!(s.next_for(0), Some(0));
        assert!(s.fault(0, 0, Fault::Refused).requeued);
        assert_eq!(s.next_for(0), Some(0));
        s.done(0, 0);
        assert!(s.all_done());
    }

    #[test]
    fn failing_node_is_taken_out() {
        let mut s = Scheduler::new(10, &[1, 1], 10);
        for _ in 0..NODE_STRIKES {
            let c = s.next_for(0).unwrap();
            s.fault(c, 0, Fault::Lost);
        }
        assert!(!s.nodes[0].alive);
        assert_eq!(s.next_for(0), None);
        assert_eq!(s.alive_nodes(), 1);
        // The last node left may retry what the dead one failed.
        assert_eq!(s.next_for(1), Some(0));
    }

    #[test]
    fn nodes_take_chunks_as_they_join_and_failed_chunks_wait_for_one_on_its_way() {
        let mut s = Scheduler::joining(4, 3, 2);
        assert_eq!(s.next_for(0), None, "no node has joined");
        assert_eq!(s.free_slots(), 0);
        s.join(1, 2);
        assert_eq!(s.next_for(0), None, "node 0 is still on its way");
        assert_eq!(s.next_for(1), Some(0));
        assert_eq!(s.next_for(1), Some(1));
        assert_eq!(s.next_for(1), None, "node 1 is full");
        assert!(s.fault(0, 1, Fault::Failed).requeued);
        // Chunk 0 failed on node 1: it waits for node 0 or 2 to join...
        assert_eq!(s.next_for(1), Some(2));
        s.done(1, 1);
        assert_eq!(s.next_for(1), Some(3));
        assert_eq!(s.next_for(1), None);
        // ...or goes back to node 1 once neither can.
        s.remove_node(0);
        s.remove_node(2);
        assert_eq!(s.next_for(1), None, "node 1 is full");
        s.done(2, 1);
        assert_eq!(s.next_for(1), Some(0));
        assert_eq!(s.alive_nodes(), 1);
    }

    #[test]
    fn resumed_and_streamed_chunks() {
        let mut s = Scheduler::new(2, &[4], 0);
        s.mark_done(0);
        assert_eq!(s.next_for(0), Some(1));
        assert_eq!(s.add_chunk(), 2);
        assert_eq!(s.next_for(0), Some(2));
        s.done(1, 0);
        s.done(2, 0);
        assert!(s.all_done());
    }
}
