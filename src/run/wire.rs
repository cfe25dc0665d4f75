//! Compression on the wire for `run`: what `--compress` (or the node's
//! inventory `compress`) asks for, what `auto` measures and decides, and
//! sending a chunk's blocks as `D` or `Z` frames ([`distctl_proto::codec`]).
//!
//! `auto`, per node (the README's rule): the built-in local node is never
//! compressed. Elsewhere the first chunks go as plain `D` frames while
//! distctl measures, per channel, the link's throughput `L` (bytes a second
//! the channel takes once its pipe is full), and compresses the first
//! [`TRIAL_BLOCKS`] blocks on the side to learn their ratio `r` and the
//! compressor's speed `C` on one core. Compression is then on for the node
//! when `r ≥ 1.1` and `1/C + 1/(r·L) ≤ 0.8 / L`: compressing a byte and
//! sending its compressed form, counted one after the other as if they
//! shared one core, takes at most 80 % of the time sending it plain does.
//! On loopback `L` is high and only very compressible input passes; on a
//! slow link almost anything that compresses passes. Chunks that start once
//! it is on ask the agent to compress its output too (the agent stops after
//! four blocks if the output does not shrink by 10 %); the input's blocks
//! switch within the chunk being sent.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use distctl_proto::codec::{Compress, DEFAULT_LEVEL, MAX_BLOCK};
use distctl_proto::frame::{header, MAX_DATA};
use distctl_proto::{BlockCodec, Tag};
use tokio::io::AsyncWriteExt;

use crate::transport::BoxWrite;

/// Blocks compressed on the side before `auto` decides.
pub const TRIAL_BLOCKS: u64 = 4;
/// Plain bytes timed on a node's channels before `auto` decides (past the
/// first block of each chunk, which only fills the pipe).
const PROBE_BYTES: u64 = 4 << 20;
/// Blocks of one chunk being compressed at once (on the blocking pool: with
/// several chunks in flight, every core the controller has).
const DEPTH: usize = 2;

/// One node's compression setting and what `auto` learnt about it.
pub struct NodeWire {
    setting: Compress,
    probe: Mutex<Probe>,
}

#[derive(Default)]
struct Probe {
    link_bytes: u64,
    link_secs: f64,
    trial_in: u64,
    trial_out: u64,
    trial_secs: f64,
    trials_started: u64,
    decision: Option<bool>,
}

impl Probe {
    fn decide(&mut self) {
        if self.decision.is_some()
            || self.link_bytes < PROBE_BYTES
            || self.trial_in < TRIAL_BLOCKS * MAX_BLOCK as u64 / 2
        {
            return;
        }
        let link = self.link_bytes as f64 / self.link_secs.max(1e-9);
        let ratio = self.trial_in as f64 / self.trial_out.max(1) as f64;
        let speed = self.trial_in as f64 / self.trial_secs.max(1e-9);
        self.decision = Some(pays(link, ratio, speed));
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
    /// Compress every block from the start (else only once `auto` says so).
    pub compress_input: Option<i32>,
    /// Ask the agent to compress its output at this level.
    pub compress_output: Option<i32>,
}

impl Plan {
    /// No compression, the chunk as plain bytes.
    pub const PLAIN: Plan = Plan {
        frames: false,
        compress_input: None,
        compress_output: None,
    };
}

impl NodeWire {
    /// `setting` for a node; the local node never compresses.
    pub fn new(setting: Compress, local: bool) -> Arc<NodeWire> {
        Arc::new(NodeWire {
            setting: if local { Compress::None } else { setting },
            probe: Mutex::new(Probe::default()),
        })
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
        match (self.setting, self.decision()) {
            (Compress::Auto, Some(true)) => format!("auto:zstd:{DEFAULT_LEVEL}"),
            (Compress::Auto, Some(false)) => "auto:none".into(),
            (s, _) => s.to_string(),
        }
    }

    pub fn plan(&self) -> Plan {
        let on = |l| Plan {
            frames: true,
            compress_input: Some(l),
            compress_output: Some(l),
        };
        match self.setting {
            Compress::None => Plan::PLAIN,
            Compress::Zstd(l) => on(l),
            Compress::Auto => match self.probe().decision {
                Some(true) => on(DEFAULT_LEVEL),
                Some(false) => Plan::PLAIN,
                None => Plan {
                    frames: true,
                    compress_input: None,
                    compress_output: None,
                },
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

/// Sends one chunk's blocks as frames, compressing them as the plan and
/// `auto` say, with up to [`DEPTH`] blocks being compressed at once.
pub struct FrameSender {
    wire: Arc<NodeWire>,
    level: Option<i32>,
    probing: bool,
    queue: VecDeque<tokio::task::JoinHandle<std::io::Result<Packed>>>,
    trials: Vec<tokio::task::JoinHandle<std::io::Result<Packed>>>,
    spare: Vec<Vec<u8>>,
    blocks: u64,
    /// Bytes written to the channel (headers included).
    pub wire_bytes: u64,
}

impl FrameSender {
    pub fn new(wire: Arc<NodeWire>, plan: Plan) -> FrameSender {
        FrameSender {
            probing: plan.compress_input.is_none() && wire.setting == Compress::Auto,
            level: plan.compress_input,
            wire,
            queue: VecDeque::new(),
            trials: Vec::new(),
            spare: Vec::new(),
            blocks: 0,
            wire_bytes: 0,
        }
    }

    /// A buffer for the next block (reused once its frame went out).
    pub fn buffer(&mut self) -> Vec<u8> {
        self.spare.pop().unwrap_or_default()
    }

    /// Send `block` (at most [`MAX_BLOCK`] bytes; given back to
    /// [`FrameSender::buffer`] once sent).
    pub async fn send(&mut self, w: &mut BoxWrite, block: Vec<u8>) -> std::io::Result<()> {
        debug_assert!(block.len() <= MAX_BLOCK);
        self.blocks += 1;
        if self.probing {
            if let Some(on) = self.wire.decision() {
                self.probing = false;
                self.level = on.then_some(DEFAULT_LEVEL);
            }
        }
        if let Some(level) = self.level {
            let out = self.spare.pop().unwrap_or_default();
            self.queue
                .push_back(tokio::task::spawn_blocking(move || pack(level, block, out)));
            while self.queue.len() >= DEPTH {
                self.write_next(w).await?;
            }
            return Ok(());
        }
        if self.probing {
            self.trial(&block);
        }
        let t0 = Instant::now();
        self.write_plain(w, &block).await?;
        if self.probing && self.blocks > 1 {
            let mut p = self.wire.probe();
            p.link_bytes += block.len() as u64;
            p.link_secs += t0.elapsed().as_secs_f64();
            p.decide();
        }
        self.spare.push(block);
        Ok(())
    }

    /// Compress a copy of `block` on the side while it goes plain, for the
    /// node's first [`TRIAL_BLOCKS`].
    fn trial(&mut self, block: &[u8]) {
        {
            let mut p = self.wire.probe();
            if p.trials_started >= TRIAL_BLOCKS {
                return;
            }
            p.trials_started += 1;
        }
        let copy = block.to_vec();
        self.trials.push(tokio::task::spawn_blocking(move || {
            pack(DEFAULT_LEVEL, copy, Vec::new())
        }));
        self.collect_trials();
    }

    /// Record the trials that have finished.
    fn collect_trials(&mut self) {
        let mut i = 0;
        while i < self.trials.len() {
            if !self.trials[i].is_finished() {
                i += 1;
                continue;
            }
            let t = self.trials.swap_remove(i);
            if let Some(Ok(Ok((block, out, shrinks, secs)))) = futures::FutureExt::now_or_never(t) {
                let mut p = self.wire.probe();
                p.trial_in += block.len() as u64;
                p.trial_out += if shrinks { out.len() } else { block.len() } as u64;
                p.trial_secs += secs;
                p.decide();
            }
        }
    }

    async fn write_next(&mut self, w: &mut BoxWrite) -> std::io::Result<()> {
        let Some(job) = self.queue.pop_front() else {
            return Ok(());
        };
        let (block, out, shrinks, _) = job.await.map_err(std::io::Error::other)??;
        if shrinks {
            w.write_all(&header(Tag::Compressed, out.len())).await?;
            w.write_all(&out).await?;
            self.wire_bytes += (out.len() + distctl_proto::frame::HEADER_LEN) as u64;
        } else {
            self.write_plain(w, &block).await?;
        }
        self.spare.push(block);
        self.spare.push(out);
        Ok(())
    }

    async fn write_plain(&mut self, w: &mut BoxWrite, block: &[u8]) -> std::io::Result<()> {
        for piece in block.chunks(MAX_DATA) {
            w.write_all(&header(Tag::Data, piece.len())).await?;
            w.write_all(piece).await?;
            self.wire_bytes += (piece.len() + distctl_proto::frame::HEADER_LEN) as u64;
        }
        Ok(())
    }

    /// Send every block still being compressed.
    pub async fn finish(&mut self, w: &mut BoxWrite) -> std::io::Result<()> {
        while !self.queue.is_empty() {
            self.write_next(w).await?;
        }
        self.collect_trials();
        Ok(())
    }
}

impl Drop for FrameSender {
    fn drop(&mut self) {
        // Trials still running finish on their own, and what they measured
        // still counts for the node.
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        for t in self.trials.drain(..) {
            let wire = self.wire.clone();
            rt.spawn(async move {
                if let Ok(Ok((block, out, shrinks, secs))) = t.await {
                    let mut p = wire.probe();
                    p.trial_in += block.len() as u64;
                    p.trial_out += if shrinks { out.len() } else { block.len() } as u64;
                    p.trial_secs += secs;
                    p.decide();
                }
            });
        }
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
    fn plans_follow_the_setting() {
        let off = Plan::PLAIN;
        assert_eq!(NodeWire::new(Compress::None, false).plan(), off);
        assert_eq!(NodeWire::new(Compress::Auto, true).plan(), off);
        assert_eq!(NodeWire::new(Compress::Zstd(3), true).plan(), off);
        let z = NodeWire::new(Compress::Zstd(3), false).plan();
        assert_eq!(
            (z.frames, z.compress_input, z.compress_output),
            (true, Some(3), Some(3))
        );
        let auto = NodeWire::new(Compress::Auto, false);
        assert_eq!(auto.plan().compress_input, None);
        assert!(auto.plan().frames);
        auto.probe().decision = Some(true);
        assert_eq!(auto.plan().compress_output, Some(DEFAULT_LEVEL));
        auto.probe().decision = Some(false);
        assert_eq!(auto.plan(), off);
    }
}
