//! The chunk coming in: stdin or `--input FILE`, with its bytes counted so
//! distctl can check nothing was lost on the way, and hashed and its lines
//! counted for distctl's journal and summary (distctl splices a chunk from
//! its input file into the channel without reading it itself). With `--input-frames` the
//! bytes arrive as `D` and `Z` frames (blocks sent plain or compressed) and
//! are counted once decompressed: the chunk's own bytes.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use distctl_proto::{BlockCodec, End, FrameDecoder, Tag};

use crate::output::grow_pipe;

/// A `Z` frame has arrived on the input: distctl compresses this chunk, and
/// `--compress-output auto` follows it.
static COMPRESSED_SEEN: AtomicBool = AtomicBool::new(false);

pub fn compressed_input_seen() -> bool {
    COMPRESSED_SEEN.load(Ordering::Relaxed)
}

/// Newlines read from the input so far: what heartbeats report, so distctl
/// shows lines per second while chunks are still running.
static NEWLINES_READ: AtomicU64 = AtomicU64::new(0);

pub fn newlines_read() -> u64 {
    NEWLINES_READ.load(Ordering::Relaxed)
}

pub struct Input {
    source: Box<dyn Read + Send>,
    pub bytes: u64,
    hash: xxhash_rust::xxh3::Xxh3,
    newlines: u64,
    last: u8,
}

impl Input {
    pub fn open(path: Option<&Path>, frames: bool) -> io::Result<Input> {
        let source: Box<dyn Read + Send> = match path {
            Some(p) => Box::new(File::open(p)?),
            None => {
                grow_pipe(0);
                Box::new(io::stdin())
            }
        };
        let source = if frames {
            Box::new(Unframe::new(source))
        } else {
            source
        };
        Ok(Input {
            source,
            bytes: 0,
            hash: xxhash_rust::xxh3::Xxh3::new(),
            newlines: 0,
            last: b'\n',
        })
    }

    /// What was read, for the `X` frame of a chunk that went well: its byte
    /// count, xxh3-128 and lines (a last line without a newline counts).
    pub fn seen(&self, end: &mut End) {
        end.input_bytes = self.bytes;
        end.input_hash = Some(format!("{:032x}", self.hash.digest128()));
        end.input_lines = Some(self.newlines + u64::from(self.bytes > 0 && self.last != b'\n'));
    }

    /// With `--expect-bytes N`: an error unless exactly N bytes came in
    /// (fewer means the sender went away mid-chunk).
    pub fn check(&self, expect: Option<u64>) -> Result<(), String> {
        match expect {
            Some(n) if n != self.bytes => Err(format!(
                "input was {} bytes, expected {n}: the chunk was cut short",
                self.bytes
            )),
            _ => Ok(()),
        }
    }
}

impl Read for Input {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.source.read(buf)?;
        if n > 0 {
            let got = &buf[..n];
            self.hash.update(got);
            let newlines = memchr::memchr_iter(b'\n', got).count() as u64;
            self.newlines += newlines;
            NEWLINES_READ.fetch_add(newlines, Ordering::Relaxed);
            self.last = got[n - 1];
        }
        self.bytes += n as u64;
        Ok(n)
    }
}

/// Reads a stream of `D` and `Z` frames as the bytes they carry.
struct Unframe {
    source: Box<dyn Read + Send>,
    dec: FrameDecoder,
    codec: BlockCodec,
    /// Bytes of the current block not yet read out, from `pos`.
    block: Vec<u8>,
    pos: usize,
}

/// Bytes per read of the framed input (read straight into the decoder).
const READ_BLOCK: usize = 1 << 20;

impl Unframe {
    fn new(source: Box<dyn Read + Send>) -> Unframe {
        Unframe {
            source,
            dec: FrameDecoder::new(),
            codec: BlockCodec::new(),
            block: Vec::new(),
            pos: 0,
        }
    }

    /// Fill `block` with the next frame's bytes; false at the end.
    fn next_block(&mut self) -> io::Result<bool> {
        loop {
            let bad = |e: distctl_proto::FrameError| io::Error::new(io::ErrorKind::InvalidData, e);
            if let Some(f) = self.dec.next_frame().map_err(bad)? {
                self.pos = 0;
                match f.tag {
                    Tag::Data => {
                        self.block.clear();
                        self.block.extend_from_slice(f.payload);
                    }
                    Tag::Compressed => {
                        COMPRESSED_SEEN.store(true, Ordering::Relaxed);
                        self.codec
                            .decompress(f.payload, &mut self.block)
                            .map_err(bad)?
                    }
                    other => {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!("unexpected {} frame in the input", other.byte() as char),
                        ))
                    }
                }
                return Ok(true);
            }
            let n = loop {
                match self.source.read(self.dec.spare(READ_BLOCK)) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    r => break r?,
                }
            };
            if n == 0 {
                if self.dec.pending() > 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the input was cut inside a frame",
                    ));
                }
                return Ok(false);
            }
            self.dec.filled(n);
        }
    }
}

impl Read for Unframe {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.block.len() {
            if !self.next_block()? {
                return Ok(0);
            }
        }
        let n = buf.len().min(self.block.len() - self.pos);
        buf[..n].copy_from_slice(&self.block[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}
