//! Compression on the wire for `run`: what `--compress` (or the node's
//! inventory `compress`) asks for, what `auto` measures and decides, and
//! sending a chunk's blocks as `D` or `Z` frames ([`distctl_proto::codec`]).
//!
//! `auto`, per node (the README's rule): the built-in local node, and a node
//! whose address is on this machine (loopback), are never compressed: there
//! is no wire to spare there, only CPU that ssh and the agent need.
//! Elsewhere the first blocks of each chunk go as plain `D` frames while
//! distctl measures per channel the link's throughput `L` (bytes a second
//! the channel takes once its pipe is full) and compresses the node's first
//! [`TRIAL_BLOCKS`] blocks on the side to learn their ratio `r` and the
//! compressor's speed `C` on one core. Compression is then on for the node
//! when `r ≥ 1.1` and `1/C + 1/(r·L) ≤ 0.8 / L`: compressing a byte and
//! sending its compressed form, counted one after the other as if they
//! shared one core, takes at most 80 % of the time sending it plain does.
//! `L` is the slower of the whole history and the last [`RECENT_BYTES`]
//! timed: the first megabytes only fill the buffers on the way (pipe, ssh
//! window, socket buffers, a router's queue), which makes a slow link with
//! a deep queue look fast. Incompressible blocks (`r < 1.1`) turn it off for
//! good; a link that merely looks too fast keeps being measured (`D`
//! frames) and compression turns on once the recent writes say it pays.
//! Once it is on, the chunks already under way switch to `Z` frames for
//! their remaining blocks and the agent, started with `--compress-output
//! auto`, compresses its output from the first `Z` frame it reads; chunks
//! that start later are compressed both ways from their first byte (the
//! agent stops compressing its output after four blocks that shrink less
//! than 10 %). Once it is off, later chunks go as plain bytes, unframed.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use distctl_proto::codec::{Compress, DEFAULT_LEVEL, MAX_BLOCK};
use distctl_proto::frame::{header, MAX_DATA};
use distctl_proto::{BlockCodec, Tag};
use tokio::io::{AsyncWrite, AsyncWriteExt};

/// Blocks compressed on the side before `auto` decides.
pub const TRIAL_BLOCKS: u64 = 4;
/// Plain bytes timed on a node's channels before `auto` decides (past the
/// first block of each chunk, which only fills the pipe).
const PROBE_BYTES: u64 = 4 << 20;
/// Blocks of one chunk being compressed at once. One: with several chunks in
/// flight that already keeps every core busy ([`pack_soon`] allows one block
/// per core), and each block queued beyond it only held 2 MiB more (peak RSS
/// with `--compress zstd` on 3 nodes: 62 MiB with two, 51 MiB with one, at
/// the same wall time).
const DEPTH: usize = 1;

/// One node's compression setting and what `auto` learnt about it.
pub struct NodeWire {
    setting: Compress,
    probe: Mutex<Probe>,
}

#[derive(Default)]
struct Probe {
    link_bytes: u64,
    link_secs: f64,
    /// The most recent timed writes (bytes, seconds), at most
    /// [`RECENT_BYTES`] of them: the link's throughput as it is now, once
    /// the buffers on the way (the pipe, ssh's window, socket buffers, a
    /// router's queue) have filled.
    recent: VecDeque<(u64, f64)>,
    recent_bytes: u64,
    recent_secs: f64,
    trial_in: u64,
    trial_out: u64,
    trial_secs: f64,
    trials_started: u64,
    decision: Option<bool>,
    /// Compressible, but the link looked too fast for it to pay so far:
    /// still measuring (the summary says `auto:none` if it stays so).
    leaning_off: bool,
}

/// Timed bytes the link's current throughput is taken from.
const RECENT_BYTES: u64 = 8 << 20;

impl Probe {
    fn timed(&mut self, bytes: u64, secs: f64) {
        self.link_bytes += bytes;
        self.link_secs += secs;
        self.recent.push_back((bytes, secs));
        self.recent_bytes += bytes;
        self.recent_secs += secs;
        while self.recent_bytes > RECENT_BYTES {
            let Some((b, t)) = self.recent.pop_front() else {
                break;
            };
            self.recent_bytes -= b;
            self.recent_secs -= t;
        }
    }

    fn decide(&mut self) {
        if self.decision.is_some()
            || self.link_bytes < PROBE_BYTES
            || self.trial_in < TRIAL_BLOCKS * MAX_BLOCK as u64 / 2
        {
            return;
        }
        let ratio = self.trial_in as f64 / self.trial_out.max(1) as f64;
        if ratio < 1.1 {
            // Incompressible: no link is slow enough; plain for the rest.
            self.decision = Some(false);
            return;
        }
        // Whichever is slower, the whole history or the recent writes: the
        // first megabytes only fill buffers, which a deep queue on a slow
        // link makes look fast.
        let overall = self.link_bytes as f64 / self.link_secs.max(1e-9);
        let recent = self.recent_bytes as f64 / self.recent_secs.max(1e-9);
        let link = overall.min(recent);
        let speed = self.trial_in as f64 / self.trial_secs.max(1e-9);
        if pays(link, ratio, speed) {
            self.decision = Some(true);
        } else {
            self.leaning_off = true;
        }
    }
}

/// `auto`'s rule: see the module's documentation.
pub fn pays(link: f64, ratio: f64, speed: f64) -> bool {
    ratio >= 1.1 && 1.0 / speed + 1.0 / (ratio * link) <= 0.8 / link
}

/// How one attempt uses the wire, fixed when it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// The chunk goes as frames (`--input-frames`).
    pub frames: bool,
    /// Compress the chunk's blocks at this level.
    pub compress_input: Option<i32>,
    /// Ask the agent to compress its output at this level.
    pub compress_output: Option<i32>,
    /// Ask the agent to compress its output once the chunk arrives
    /// compressed (`auto` still measuring: it may switch mid-chunk).
    pub follow: bool,
}

impl Plan {
    /// No compression, the chunk as plain bytes.
    pub const PLAIN: Plan = Plan {
        frames: false,
        compress_input: None,
        compress_output: None,
        follow: false,
    };

    /// `auto` still measuring: `D` frames, which may turn into `Z` frames
    /// mid-chunk, and the agent's output follows.
    pub const MEASURING: Plan = Plan {
        frames: true,
        compress_input: None,
        compress_output: None,
        follow: true,
    };
}

impl NodeWire {
    /// `setting` for a node; the local node never compresses, and `auto`
    /// does not for a node on this machine (`loopback`: no wire to spare,
    /// only CPU that ssh needs).
    pub fn new(setting: Compress, local: bool, loopback: bool) -> Arc<NodeWire> {
        let probe = Probe {
            decision: (setting == Compress::Auto && loopback).then_some(false),
            ..Probe::default()
        };
        Arc::new(NodeWire {
            setting: if local { Compress::None } else { setting },
            probe: Mutex::new(probe),
        })
    }

    fn record_trial(&self, (block, out, shrinks, secs): &Packed) {
        let mut p = self.probe();
        p.trial_in += block.len() as u64;
        p.trial_out += if *shrinks { out.len() } else { block.len() } as u64;
        p.trial_secs += secs;
        p.decide();
    }

    fn probe(&self) -> std::sync::MutexGuard<'_, Probe> {
        self.probe.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `auto`'s decision so far (`None`: still measuring, or not `auto`).
    pub fn decision(&self) -> Option<bool> {
        self.probe().decision
    }

    /// The setting as it ended up, for the summary: `none`, `zstd:LEVEL`,
    /// or `auto:` and what it decided (`auto` alone: it never had enough to
    /// go on, and stayed plain).
    pub fn describe(&self) -> String {
        let p = self.probe();
        match (self.setting, p.decision) {
            (Compress::Auto, Some(true)) => format!("auto:zstd:{DEFAULT_LEVEL}"),
            (Compress::Auto, Some(false)) => "auto:none".into(),
            (Compress::Auto, None) if p.leaning_off => "auto:none".into(),
            (s, _) => s.to_string(),
        }
    }

    pub fn plan(&self) -> Plan {
        let on = |l| Plan {
            frames: true,
            compress_input: Some(l),
            compress_output: Some(l),
            follow: false,
        };
        match self.setting {
            Compress::None => Plan::PLAIN,
            Compress::Zstd(l) => on(l),
            Compress::Auto => match self.probe().decision {
                Some(true) => on(DEFAULT_LEVEL),
                Some(false) => Plan::PLAIN,
                None => Plan::MEASURING,
            },
        }
    }
}

thread_local! {
    static CODEC: std::cell::RefCell<BlockCodec> = std::cell::RefCell::new(BlockCodec::new());
}

/// A block compressed on the blocking pool: the block, its compressed
/// form, whether that is smaller, and the seconds it took.
type Packed = (Vec<u8>, Vec<u8>, bool, f64);

fn pack(level: i32, block: Vec<u8>, mut out: Vec<u8>) -> std::io::Result<Packed> {
    let t0 = Instant::now();
    let shrinks = CODEC.with(|c| c.borrow_mut().compress(level, &block, &mut out))?;
    Ok((block, out, shrinks, t0.elapsed().as_secs_f64()))
}

/// Compress `block` on the blocking pool, at most one block per core at a
/// time over the whole run: more would only queue for the same cores, and
/// each would hold its buffers and a zstd context (peak RSS).
fn pack_soon(
    level: i32,
    block: Vec<u8>,
    out: Vec<u8>,
) -> tokio::task::JoinHandle<std::io::Result<Packed>> {
    static CORES: std::sync::OnceLock<Arc<tokio::sync::Semaphore>> = std::sync::OnceLock::new();
    let cores = CORES
        .get_or_init(|| {
            let n = std::thread::available_parallelism().map_or(2, |n| n.get());
            Arc::new(tokio::sync::Semaphore::new(n))
        })
        .clone();
    tokio::spawn(async move {
        let _core = cores.acquire_owned().await.map_err(std::io::Error::other)?;
        tokio::task::spawn_blocking(move || pack(level, block, out))
            .await
            .map_err(std::io::Error::other)?
    })
}

/// Watches a chunk sent plain while `auto` is still measuring: times the
/// channel and compresses the node's first [`TRIAL_BLOCKS`] blocks on the
/// side. Inert once the node has decided.
pub struct Prober {
    wire: Arc<NodeWire>,
    blocks: u64,
    trials: Vec<tokio::task::JoinHandle<std::io::Result<Packed>>>,
}

impl Prober {
    /// `None` unless the node is still measuring.
    pub fn new(wire: &Arc<NodeWire>) -> Option<Prober> {
        (wire.setting == Compress::Auto && wire.decision().is_none()).then(|| Prober {
            wire: wire.clone(),
            blocks: 0,
            trials: Vec::new(),
        })
    }

    /// Before `block` goes: maybe compress a copy of it on the side.
    pub fn before(&mut self, block: &[u8]) {
        self.blocks += 1;
        self.collect();
        {
            let mut p = self.wire.probe();
            if p.trials_started >= TRIAL_BLOCKS || block.len() < MAX_BLOCK / 2 {
                return;
            }
            p.trials_started += 1;
        }
        self.trials
            .push(pack_soon(DEFAULT_LEVEL, block.to_vec(), Vec::new()));
    }

    /// After it went, taking `secs`: the channel's throughput, past the
    /// chunk's first block (which only fills the pipe).
    pub fn after(&mut self, len: usize, secs: f64) {
        if self.blocks > 1 {
            let mut p = self.wire.probe();
            p.timed(len as u64, secs);
            p.decide();
        }
    }

    /// Record the trials that have finished.
    fn collect(&mut self) {
        let mut i = 0;
        while i < self.trials.len() {
            if !self.trials[i].is_finished() {
                i += 1;
                continue;
            }
            let t = self.trials.swap_remove(i);
            if let Some(Ok(Ok(packed))) = futures::FutureExt::now_or_never(t) {
                self.wire.record_trial(&packed);
            }
        }
    }
}

impl Drop for Prober {
    fn drop(&mut self) {
        // Trials still running finish on their own, and what they measured
        // still counts for the node.
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        for t in self.trials.drain(..) {
            let wire = self.wire.clone();
            rt.spawn(async move {
                if let Ok(Ok(packed)) = t.await {
                    wire.record_trial(&packed);
                }
            });
        }
    }
}

/// Write `payload` as `tag` frames (a `Z` frame holds one whole compressed
/// block, `D` frames at most [`MAX_DATA`] each); the bytes written, headers
/// included.
pub async fn write_frames<W: AsyncWrite + Unpin>(
    w: &mut W,
    tag: Tag,
    payload: &[u8],
) -> std::io::Result<u64> {
    let limit = if tag == Tag::Compressed {
        MAX_BLOCK
    } else {
        MAX_DATA
    };
    let mut wrote = 0;
    for piece in payload.chunks(limit) {
        w.write_all(&header(tag, piece.len())).await?;
        w.write_all(piece).await?;
        wrote += (piece.len() + distctl_proto::frame::HEADER_LEN) as u64;
    }
    Ok(wrote)
}

/// Sends one chunk's blocks as `Z` frames (or `D` frames where a block does
/// not shrink), with up to [`DEPTH`] blocks being compressed at once.
pub struct FrameSender {
    level: i32,
    queue: VecDeque<tokio::task::JoinHandle<std::io::Result<Packed>>>,
    spare: Vec<Vec<u8>>,
    /// Bytes written to the channel (headers included).
    pub wire_bytes: u64,
}

impl FrameSender {
    pub fn new(level: i32) -> FrameSender {
        FrameSender {
            level,
            queue: VecDeque::new(),
            spare: Vec::new(),
            wire_bytes: 0,
        }
    }

    /// A buffer for the next block (reused once its frame went out).
    pub fn buffer(&mut self) -> Vec<u8> {
        self.spare.pop().unwrap_or_default()
    }

    /// Send `block` (at most [`MAX_BLOCK`] bytes; given back to
    /// [`FrameSender::buffer`] once sent).
    pub async fn send<W: AsyncWrite + Unpin>(
        &mut self,
        w: &mut W,
        block: Vec<u8>,
    ) -> std::io::Result<()> {
        debug_assert!(block.len() <= MAX_BLOCK);
        let out = self.spare.pop().unwrap_or_default();
        let level = self.level;
        self.queue.push_back(pack_soon(level, block, out));
        while self.queue.len() >= DEPTH {
            self.write_next(w).await?;
        }
        Ok(())
    }

    async fn write_next<W: AsyncWrite + Unpin>(&mut self, w: &mut W) -> std::io::Result<()> {
        let Some(job) = self.queue.pop_front() else {
            return Ok(());
        };
        let (block, out, shrinks, _) = job.await.map_err(std::io::Error::other)??;
        let (tag, payload) = if shrinks {
            (Tag::Compressed, &out[..])
        } else {
            (Tag::Data, &block[..])
        };
        self.wire_bytes += write_frames(w, tag, payload).await?;
        self.spare.push(block);
        self.spare.push(out);
        Ok(())
    }

    /// Send every block still being compressed.
    pub async fn finish<W: AsyncWrite + Unpin>(&mut self, w: &mut W) -> std::io::Result<()> {
        while !self.queue.is_empty() {
            self.write_next(w).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rule_compresses_where_it_pays() {
        const MB: f64 = 1e6;
        // Loopback channel (~50 MB/s each), word text: 2.2x at 130 MB/s.
        assert!(!pays(50.0 * MB, 2.2, 130.0 * MB));
        // Same channel, access log: 8.9x at 500 MB/s.
        assert!(pays(50.0 * MB, 8.9, 500.0 * MB));
        // Incompressible, whatever the link.
        assert!(!pays(1.0 * MB, 1.05, 1000.0 * MB));
        // A shaped 400 Mbit/s link over 6 channels: word text pays.
        assert!(pays(8.0 * MB, 2.2, 130.0 * MB));
    }

    #[test]
    fn a_link_that_only_looked_fast_while_buffers_filled_gets_compression() {
        const MIB: u64 = 1 << 20;
        let mut p = Probe {
            trial_in: TRIAL_BLOCKS * MIB,
            trial_out: TRIAL_BLOCKS * MIB / 8,
            trial_secs: 4.0 * 0.003,
            ..Probe::default()
        };
        // The first blocks go into buffers at memory speed: 1 GB/s looks
        // too fast for an 8x ratio at 350 MB/s to pay.
        for _ in 0..6 {
            p.timed(MIB, MIB as f64 / 1e9);
            p.decide();
        }
        assert_eq!(p.decision, None);
        assert!(p.leaning_off, "not yet, still measuring");
        // Then the queue is full and the link shows: 8 MB/s.
        for _ in 0..8 {
            p.timed(MIB, MIB as f64 / 8e6);
            p.decide();
        }
        assert_eq!(p.decision, Some(true));
        // Incompressible blocks are decided off for good at once.
        let mut q = Probe {
            trial_in: TRIAL_BLOCKS * MIB,
            trial_out: TRIAL_BLOCKS * MIB,
            trial_secs: 0.01,
            ..Probe::default()
        };
        for _ in 0..6 {
            q.timed(MIB, MIB as f64 / 1e6);
            q.decide();
        }
        assert_eq!(q.decision, Some(false));
    }

    #[test]
    fn plans_follow_the_setting() {
        let off = Plan::PLAIN;
        assert_eq!(NodeWire::new(Compress::None, false, false).plan(), off);
        assert_eq!(NodeWire::new(Compress::Auto, true, true).plan(), off);
        assert_eq!(NodeWire::new(Compress::Zstd(3), true, true).plan(), off);
        let lo = NodeWire::new(Compress::Auto, false, true);
        assert_eq!((lo.plan(), lo.describe().as_str()), (off, "auto:none"));
        // Asked for explicitly, loopback compresses.
        let z = NodeWire::new(Compress::Zstd(3), false, true).plan();
        assert_eq!(z.compress_output, Some(3));
        let z = NodeWire::new(Compress::Zstd(3), false, false).plan();
        assert_eq!(
            (z.frames, z.compress_input, z.compress_output),
            (true, Some(3), Some(3))
        );
        let auto = NodeWire::new(Compress::Auto, false, false);
        assert_eq!(auto.plan(), Plan::MEASURING, "D frames while measuring");
        assert_eq!(auto.describe(), "auto");
        auto.probe().decision = Some(true);
        assert_eq!(auto.plan().compress_output, Some(DEFAULT_LEVEL));
        auto.probe().decision = Some(false);
        assert_eq!(auto.plan(), off);
    }
}
