//! `run --dry-run`: the plan and the node each chunk would go to first,
//! found by driving the real [`Scheduler`] with equal chunk times. No node is
//! contacted: a node without `slots` in the inventory counts as one slot,
//! since its cores are unknown.

use anyhow::{Context, Result};
use serde::Serialize;

use crate::cluster::inventory::Node;
use crate::run::chunk::{ConcatReader, StreamChunker};
use crate::run::input::Input;
use crate::run::schedule::Scheduler;
use crate::transport::CHANNELS_PER_NODE;

#[derive(Debug, Serialize)]
pub struct DryRunChunk {
    pub index: usize,
    pub offset: u64,
    pub bytes: u64,
    pub lines: u64,
    /// The node it would go to first.
    pub node: String,
}

#[derive(Debug, Serialize)]
pub struct DryRunNode {
    pub node: String,
    pub slots: usize,
    /// From the inventory; else 1 is assumed.
    pub slots_known: bool,
}

#[derive(Debug, Serialize)]
pub struct DryRun {
    pub chunks: Vec<DryRunChunk>,
    pub nodes: Vec<DryRunNode>,
    pub chunk_size: u64,
}

/// Plan `input` over `nodes` (a streamed input is read to its end).
pub fn simulate(input: Input, nodes: &[Node]) -> Result<DryRun> {
    let input_chunk_size = input.chunk_size();
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
        Input::Streamed { paths, chunk_size } => {
            let mut s = StreamChunker::new(ConcatReader::open(&paths)?, chunk_size);
            let mut v = Vec::new();
            while let Some(c) = s.next_chunk().context("reading the input")? {
                v.push((c.index, c.start, c.data.len() as u64, c.lines));
            }
            v
        }
    };
    let first = first_nodes(chunks.len(), &slots);
    Ok(DryRun {
        chunks: chunks
            .iter()
            .map(|&(index, offset, bytes, lines)| DryRunChunk {
                index,
                offset,
                bytes,
                lines,
                node: nodes[first[index]].name.clone(),
            })
            .collect(),
        nodes: nodes
            .iter()
            .zip(&slots)
            .map(|(n, &slots)| DryRunNode {
                node: n.name.clone(),
                slots,
                slots_known: n.slots.is_some(),
            })
            .collect(),
        chunk_size: input_chunk_size,
    })
}

/// The node each of `chunks` chunks starts on, chunks taking equal time.
fn first_nodes(chunks: usize, slots: &[usize]) -> Vec<usize> {
    let mut sched = Scheduler::new(chunks, slots, 0);
    let mut first = vec![0usize; chunks];
    let mut running = std::collections::VecDeque::new();
    loop {
        let mut any = false;
        for n in 0..slots.len() {
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
    first
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_start_on_nodes_by_their_slots() {
        let first = first_nodes(5, &[2, 1]);
        assert_eq!(first.len(), 5);
        // The first wave fills every slot: two chunks on node 0, one on node 1.
        assert_eq!(first[..3].iter().filter(|&&n| n == 0).count(), 2);
        assert!(first[..3].contains(&1));
        assert_eq!(first_nodes(0, &[1]), Vec::<usize>::new());
    }
}
