//! Compression on the wire: what `--compress` asks for, and the block codec
//! both sides use for `Z` frames.
//!
//! A `Z` frame carries one zstd frame holding at most [`MAX_BLOCK`] bytes of
//! what would otherwise travel as `D` frames; it is only ever sent when it is
//! smaller than those bytes, so its payload limit is [`MAX_BLOCK`] too. A
//! block is decompressed into a buffer of [`MAX_BLOCK`] bytes and refused if
//! it holds more: a hostile stream cannot make either side allocate beyond
//! that.

use std::fmt;
use std::io;

use crate::frame::FrameError;

/// Largest decompressed content of one `Z` frame (and so its largest payload).
pub const MAX_BLOCK: usize = 1 << 20;

/// zstd's fast level: what `zstd` and `auto` use.
pub const DEFAULT_LEVEL: i32 = 1;

/// Levels accepted by `zstd:LEVEL` (zstd's negative "fast" levels included).
pub const LEVELS: std::ops::RangeInclusive<i32> = -7..=19;

/// What `--compress` (or the inventory's `compress`) asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compress {
    /// Decide per node from what is measured (see the README).
    #[default]
    Auto,
    /// Always zstd at this level, where a block shrinks.
    Zstd(i32),
    /// Plain bytes, as without compression.
    None,
}

impl Compress {
    /// `auto`, `zstd`, `zstd:LEVEL` or `none`.
    pub fn parse(s: &str) -> Result<Compress, String> {
        let bad = || {
            format!(
                "bad compress value '{s}' (use auto, none, zstd or zstd:LEVEL with LEVEL {}..{})",
                LEVELS.start(),
                LEVELS.end()
            )
        };
        Ok(match s {
            "auto" => Compress::Auto,
            "none" => Compress::None,
            "zstd" => Compress::Zstd(DEFAULT_LEVEL),
            _ => {
                let level: i32 = s
                    .strip_prefix("zstd:")
                    .and_then(|l| l.parse().ok())
                    .ok_or_else(bad)?;
                if !LEVELS.contains(&level) || level == 0 {
                    return Err(bad());
                }
                Compress::Zstd(level)
            }
        })
    }
}

impl fmt::Display for Compress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Compress::Auto => f.write_str("auto"),
            Compress::None => f.write_str("none"),
            Compress::Zstd(l) => write!(f, "zstd:{l}"),
        }
    }
}

impl std::str::FromStr for Compress {
    type Err = String;
    fn from_str(s: &str) -> Result<Compress, String> {
        Compress::parse(s)
    }
}

/// Compresses and decompresses blocks, keeping its zstd contexts (and so
/// their memory) from one block to the next.
pub struct BlockCodec {
    compressor: Option<(i32, zstd::bulk::Compressor<'static>)>,
    decompressor: Option<zstd::bulk::Decompressor<'static>>,
}

impl Default for BlockCodec {
    fn default() -> Self {
        BlockCodec::new()
    }
}

impl BlockCodec {
    pub fn new() -> BlockCodec {
        BlockCodec {
            compressor: None,
            decompressor: None,
        }
    }

    /// Compress `src` (at most [`MAX_BLOCK`] bytes) into `out` (cleared
    /// first). True when the result is smaller than `src`: only then is it
    /// worth a `Z` frame.
    pub fn compress(&mut self, level: i32, src: &[u8], out: &mut Vec<u8>) -> io::Result<bool> {
        debug_assert!(src.len() <= MAX_BLOCK);
        let cctx = match &mut self.compressor {
            Some((l, c)) if *l == level => c,
            slot => &mut slot.insert((level, zstd::bulk::Compressor::new(level)?)).1,
        };
        out.clear();
        // One byte short of the input: anything bigger is not worth sending.
        let room = src.len().saturating_sub(1);
        if room == 0 {
            return Ok(false);
        }
        out.reserve(room);
        match cctx.compress_to_buffer(src, out) {
            Ok(_) => Ok(out.len() < src.len()),
            // Destination too small: the block does not shrink.
            Err(_) => {
                out.clear();
                Ok(false)
            }
        }
    }

    /// Decompress one `Z` frame's payload into `out` (cleared first); more
    /// than [`MAX_BLOCK`] bytes is an error.
    pub fn decompress(&mut self, payload: &[u8], out: &mut Vec<u8>) -> Result<(), FrameError> {
        let dctx = match &mut self.decompressor {
            Some(d) => d,
            slot => slot.insert(
                zstd::bulk::Decompressor::new()
                    .map_err(|e| FrameError(format!("cannot start zstd: {e}")))?,
            ),
        };
        out.clear();
        out.reserve(MAX_BLOCK);
        dctx.decompress_to_buffer(payload, out)
            .map_err(|e| FrameError(format!("bad Z frame: {e}")))?;
        if out.len() > MAX_BLOCK {
            return Err(FrameError("Z frame holds more than its limit".into()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_parse_and_print() {
        for (s, want) in [
            ("auto", Compress::Auto),
            ("none", Compress::None),
            ("zstd", Compress::Zstd(1)),
            ("zstd:3", Compress::Zstd(3)),
            ("zstd:-5", Compress::Zstd(-5)),
            ("zstd:19", Compress::Zstd(19)),
        ] {
            assert_eq!(Compress::parse(s), Ok(want), "{s}");
            assert_eq!(Compress::parse(&want.to_string()), Ok(want));
        }
        for bad in [
            "", "gzip", "zstd:", "zstd:0", "zstd:20", "zstd:x", "ZSTD", "zstd:3:4",
        ] {
            let e = Compress::parse(bad).unwrap_err();
            assert!(e.contains("auto, none, zstd"), "{bad}: {e}");
        }
    }

    #[test]
    fn blocks_round_trip_and_incompressible_ones_are_refused() {
        let mut c = BlockCodec::new();
        let text: Vec<u8> = b"GET /index.html 200\n".repeat(50_000);
        let text = &text[..MAX_BLOCK.min(text.len())];
        let mut z = Vec::new();
        assert!(c.compress(1, text, &mut z).unwrap());
        assert!(z.len() < text.len() / 10);
        let mut back = Vec::new();
        c.decompress(&z, &mut back).unwrap();
        assert_eq!(back, text);
        // Random bytes do not shrink.
        let mut x = 0x9e3779b97f4a7c15u64;
        let noise: Vec<u8> = (0..100_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        assert!(!c.compress(3, &noise, &mut z).unwrap());
        assert!(!c.compress(1, b"", &mut z).unwrap());
        assert!(c.decompress(b"not zstd", &mut back).is_err());
    }

    #[test]
    fn a_block_over_the_limit_is_refused() {
        let big = vec![b'a'; MAX_BLOCK + 1];
        let z = zstd::bulk::compress(&big, 1).unwrap();
        let mut out = Vec::new();
        assert!(BlockCodec::new().decompress(&z, &mut out).is_err());
    }
}
