//! The input of a run: regular files are planned into chunks up front and
//! read (and re-read, for retries) by range; standard input and pipes are
//! cut on the fly by a reader thread.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};

use crate::run::chunk::{
    default_chunk_size, Chunk, ChunkPlan, ConcatReader, Cut, InputFile, InputStream, StreamChunk,
    StreamChunker,
};
use crate::usage;

pub enum Input {
    /// Regular files: chunks planned up front, read (and re-read) by range.
    Planned {
        stream: Arc<InputStream>,
        chunks: Vec<Chunk>,
        chunk_size: u64,
    },
    /// Standard input or pipes among the inputs: cut on the fly.
    Streamed {
        paths: Vec<PathBuf>,
        chunk_size: u64,
    },
}

impl Input {
    /// Whether every input can be planned (and so read again by `--resume`).
    pub fn plannable(paths: &[PathBuf]) -> bool {
        paths
            .iter()
            .all(|p| p.as_os_str() != "-" && InputFile::is_regular(p))
    }

    /// Plan regular files into chunks of `chunk_size` (default: tapering
    /// towards the end; an explicit size is kept throughout), counting lines
    /// when asked to.
    pub fn plan(paths: &[PathBuf], chunk_size: Option<u64>, count_lines: bool) -> Result<Input> {
        let stream = InputStream::open(paths).map_err(|e| usage!("{e:#}"))?;
        let (size, cut) = match chunk_size {
            Some(s) => (s, Cut::Size(s)),
            None => {
                let s = default_chunk_size(Some(stream.total));
                (s, Cut::Tapered(s))
            }
        };
        let mut plan = ChunkPlan::new(stream, &cut)?;
        if count_lines {
            plan.count_lines().context("reading the input")?;
        }
        Ok(Input::Planned {
            stream: Arc::new(plan.input),
            chunks: plan.chunks,
            chunk_size: size,
        })
    }

    /// A stream to cut on the fly.
    pub fn streamed(paths: &[PathBuf], chunk_size: Option<u64>) -> Input {
        Input::Streamed {
            paths: paths.to_vec(),
            chunk_size: chunk_size.unwrap_or_else(|| default_chunk_size(None)),
        }
    }

    pub fn chunk_size(&self) -> u64 {
        match self {
            Input::Planned { chunk_size, .. } | Input::Streamed { chunk_size, .. } => *chunk_size,
        }
    }

    /// The planned chunks (none for a streamed input).
    pub fn chunks(&self) -> &[Chunk] {
        match self {
            Input::Planned { chunks, .. } => chunks,
            Input::Streamed { .. } => &[],
        }
    }

    /// Total bytes, when known before the run.
    pub fn total(&self) -> Option<u64> {
        match self {
            Input::Planned { stream, .. } => Some(stream.total),
            Input::Streamed { .. } => None,
        }
    }
}

/// One chunk cut from a stream, with the 0-based index of its first line.
pub type StreamItem = std::io::Result<(StreamChunk, u64)>;

/// Cut a stream into chunks on a blocking thread; the channel holds one
/// chunk, so reading stays just ahead of sending.
pub fn spawn_stream_reader(
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
