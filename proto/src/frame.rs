//! The agent's framed stdout (`--framed`): each frame is a 1-byte tag, a
//! 4-byte big-endian payload length and the payload. The agent writes frames
//! with [`write_frame`]; distctl feeds whatever bytes arrive into a
//! [`FrameDecoder`] and takes whole frames out.

use std::fmt;
use std::io::{self, IoSlice, Write};

use serde::{Deserialize, Serialize};

/// Bytes before every payload: tag + u32 length.
pub const HEADER_LEN: usize = 5;

/// Largest payload of a `D` or `E` frame.
pub const MAX_DATA: usize = 256 * 1024;

/// Largest payload of a `P` or `X` frame (JSON of a few fields).
pub const MAX_CONTROL: usize = 64 * 1024;

/// What a frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tag {
    /// `D`: result bytes, in order.
    Data,
    /// `E`: stderr bytes of the exec'd command.
    Stderr,
    /// `H`: heartbeat: empty, or the lines of input the agent has read so
    /// far (a `u64`, big-endian), for distctl's progress.
    Heartbeat,
    /// `P`: JSON of [`crate::Partial`].
    Partial,
    /// `X`: JSON of [`End`], always last.
    End,
    /// `Z`: one zstd-compressed block of what `D` frames would carry
    /// ([`crate::codec`]), at most [`crate::codec::MAX_BLOCK`] bytes either way.
    Compressed,
}

impl Tag {
    pub fn byte(self) -> u8 {
        match self {
            Tag::Data => b'D',
            Tag::Stderr => b'E',
            Tag::Heartbeat => b'H',
            Tag::Partial => b'P',
            Tag::End => b'X',
            Tag::Compressed => b'Z',
        }
    }

    /// Largest payload a decoder accepts for this tag: bigger means the
    /// stream is not ours, or is hostile; nothing that large is buffered.
    pub fn max_payload(self) -> usize {
        match self {
            Tag::Data | Tag::Stderr => MAX_DATA,
            Tag::Heartbeat => 8,
            Tag::Partial | Tag::End => MAX_CONTROL,
            Tag::Compressed => crate::codec::MAX_BLOCK,
        }
    }

    pub fn from_byte(b: u8) -> Option<Tag> {
        Some(match b {
            b'D' => Tag::Data,
            b'E' => Tag::Stderr,
            b'H' => Tag::Heartbeat,
            b'P' => Tag::Partial,
            b'X' => Tag::End,
            b'Z' => Tag::Compressed,
            _ => return None,
        })
    }
}

/// The last frame of every framed run: how it ended.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct End {
    pub ok: bool,
    /// Exit code of the exec'd command (`None` for ops, or when it was killed).
    pub exit_code: Option<i32>,
    /// Signal that killed the exec'd command.
    pub signal: Option<i32>,
    /// Payload bytes of all `D` frames sent.
    pub data_bytes: u64,
    /// Bytes read from the chunk input.
    pub input_bytes: u64,
    /// One line for people when `ok` is false.
    pub error: Option<String>,
    /// The data itself is bad (e.g. a non-numeric line): retrying cannot help.
    pub input_error: bool,
    /// The chunk this answers (the agent's `--chunk N`, echoed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunk: Option<u64>,
    /// xxh3-128 of the payload of all `D` frames, 32 hex digits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_hash: Option<String>,
    /// xxh3-128 of the chunk's own bytes as read (decompressed), 32 hex
    /// digits: what distctl's journal keeps of a chunk it spliced from the
    /// input file without looking at it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_hash: Option<String>,
    /// Lines of the chunk's input (a last line without a newline counts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_lines: Option<u64>,
}

/// The header of a frame with `len` payload bytes.
pub fn header(tag: Tag, len: usize) -> [u8; HEADER_LEN] {
    let len = u32::try_from(len).expect("frame payload over 4 GiB");
    let l = len.to_be_bytes();
    [tag.byte(), l[0], l[1], l[2], l[3]]
}

/// Write one frame (header and payload in one vectored write where possible).
pub fn write_frame<W: Write + ?Sized>(w: &mut W, tag: Tag, payload: &[u8]) -> io::Result<()> {
    let head = header(tag, payload.len());
    let mut written = 0usize;
    let total = HEADER_LEN + payload.len();
    while written < total {
        let n = if written < HEADER_LEN {
            w.write_vectored(&[IoSlice::new(&head[written..]), IoSlice::new(payload)])
        } else {
            w.write(&payload[written - HEADER_LEN..])
        };
        match n {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Write `data` as as many `D` (or `E`) frames as [`MAX_DATA`] requires.
pub fn write_data<W: Write + ?Sized>(w: &mut W, tag: Tag, data: &[u8]) -> io::Result<()> {
    for piece in data.chunks(MAX_DATA) {
        write_frame(w, tag, piece)?;
    }
    Ok(())
}

/// Write a JSON frame (`P` or `X`).
pub fn write_json<W: Write + ?Sized, T: Serialize>(
    w: &mut W,
    tag: Tag,
    value: &T,
) -> io::Result<()> {
    let json = serde_json::to_vec(value).map_err(io::Error::other)?;
    write_frame(w, tag, &json)
}

/// One decoded frame, owned (tests and tools that keep frames).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub tag: Tag,
    pub payload: Vec<u8>,
}

impl Frame {
    /// Parse the JSON payload of a `P` or `X` frame.
    pub fn json<T: for<'de> Deserialize<'de>>(&self) -> Result<T, FrameError> {
        self.as_ref().json()
    }

    pub fn as_ref(&self) -> FrameRef<'_> {
        FrameRef {
            tag: self.tag,
            payload: &self.payload,
        }
    }
}

/// One decoded frame as [`FrameDecoder::next_frame`] hands it out: the
/// payload borrowed from the decoder's buffer, valid until the next call.
/// No allocation per frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameRef<'a> {
    pub tag: Tag,
    pub payload: &'a [u8],
}

impl FrameRef<'_> {
    /// Parse the JSON payload of a `P` or `X` frame.
    pub fn json<T: for<'de> Deserialize<'de>>(&self) -> Result<T, FrameError> {
        serde_json::from_slice(self.payload)
            .map_err(|e| FrameError(format!("bad {} frame: {e}", self.tag.byte() as char)))
    }

    pub fn to_owned(&self) -> Frame {
        Frame {
            tag: self.tag,
            payload: self.payload.to_vec(),
        }
    }
}

/// The byte stream is not a valid frame stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameError(pub String);

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for FrameError {}

/// Parse a frame header: its tag and payload length.
pub fn parse_header(head: &[u8; HEADER_LEN]) -> Result<(Tag, usize), FrameError> {
    let tag = Tag::from_byte(head[0]).ok_or_else(|| {
        FrameError(format!(
            "unexpected byte 0x{:02x} where a frame should start (not a worker-agent stream?)",
            head[0]
        ))
    })?;
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    if len > tag.max_payload() {
        return Err(FrameError(format!(
            "{} frame of {len} bytes is over its limit of {} (not a worker-agent stream?)",
            head[0] as char,
            tag.max_payload()
        )));
    }
    Ok((tag, len))
}

/// Incremental decoder: [`feed`](Self::feed) it bytes as they arrive, take
/// whole frames out with [`next_frame`](Self::next_frame). Its one buffer is
/// reused for the life of the stream: consumed bytes are dropped from the
/// front (a move, never a new allocation once it has grown to the largest
/// read plus one frame).
#[derive(Debug, Default)]
pub struct FrameDecoder {
    /// Bytes `start..end` are fed and not yet taken; `end..` is room that
    /// [`FrameDecoder::spare`] hands out to be read into.
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl FrameDecoder {
    pub fn new() -> FrameDecoder {
        FrameDecoder::default()
    }

    pub fn feed(&mut self, bytes: &[u8]) {
        self.spare(bytes.len())[..bytes.len()].copy_from_slice(bytes);
        self.filled(bytes.len());
    }

    /// Room for at least `want` more bytes, to read into directly (then
    /// [`FrameDecoder::filled`]): no copy from a read buffer. Only the bytes
    /// of a frame not yet complete move, to the front, when room runs out.
    pub fn spare(&mut self, want: usize) -> &mut [u8] {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        if self.buf.len() - self.end < want && self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.buf.len() - self.end < want {
            self.buf.resize(self.end + want, 0);
        }
        &mut self.buf[self.end..]
    }

    /// `n` bytes were read into [`FrameDecoder::spare`].
    pub fn filled(&mut self, n: usize) {
        debug_assert!(self.end + n <= self.buf.len());
        self.end += n;
    }

    /// The next complete frame, or `None` until more bytes arrive. The
    /// payload borrows the decoder's buffer.
    pub fn next_frame(&mut self) -> Result<Option<FrameRef<'_>>, FrameError> {
        let avail = &self.buf[self.start..self.end];
        if avail.len() < HEADER_LEN {
            return Ok(None);
        }
        let head: [u8; HEADER_LEN] = avail[..HEADER_LEN].try_into().expect("5 bytes");
        let (tag, len) = parse_header(&head)?;
        if avail.len() < HEADER_LEN + len {
            return Ok(None);
        }
        let from = self.start + HEADER_LEN;
        self.start = from + len;
        let payload = &self.buf[from..from + len];
        Ok(Some(FrameRef { tag, payload }))
    }

    /// Bytes of an incomplete frame still waiting for the rest. Non-zero at
    /// end of stream means the stream was cut.
    pub fn pending(&self) -> usize {
        self.end - self.start
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_stream() -> (Vec<u8>, Vec<Frame>) {
        let big: Vec<u8> = (0..MAX_DATA + 1000).map(|i| (i * 7) as u8).collect();
        let end = End {
            ok: true,
            data_bytes: big.len() as u64 + 3,
            input_bytes: 42,
            ..End::default()
        };
        let mut out = Vec::new();
        write_data(&mut out, Tag::Data, b"abc").unwrap();
        write_frame(&mut out, Tag::Heartbeat, b"").unwrap();
        write_data(&mut out, Tag::Data, &big).unwrap();
        write_frame(&mut out, Tag::Stderr, b"oops\n").unwrap();
        write_json(&mut out, Tag::End, &end).unwrap();
        let frames = vec![
            Frame {
                tag: Tag::Data,
                payload: b"abc".to_vec(),
            },
            Frame {
                tag: Tag::Heartbeat,
                payload: vec![],
            },
            Frame {
                tag: Tag::Data,
                payload: big[..MAX_DATA].to_vec(),
            },
            Frame {
                tag: Tag::Data,
                payload: big[MAX_DATA..].to_vec(),
            },
            Frame {
                tag: Tag::Stderr,
                payload: b"oops\n".to_vec(),
            },
            Frame {
                tag: Tag::End,
                payload: serde_json::to_vec(&end).unwrap(),
            },
        ];
        (out, frames)
    }

    #[test]
    fn frames_round_trip_whatever_the_read_sizes() {
        let (stream, want) = sample_stream();
        for step in [1, 2, 5, 7, 4096, MAX_DATA, stream.len()] {
            let mut dec = FrameDecoder::new();
            let mut got = Vec::new();
            for piece in stream.chunks(step) {
                dec.feed(piece);
                while let Some(f) = dec.next_frame().unwrap() {
                    got.push(f.to_owned());
                }
            }
            assert_eq!(dec.pending(), 0);
            assert_eq!(got, want, "read size {step}");
        }
        let end: End = want.last().unwrap().json().unwrap();
        assert!(end.ok);
        assert_eq!(end.input_bytes, 42);
    }

    #[test]
    fn frames_read_straight_into_the_decoder_round_trip() {
        let (stream, want) = sample_stream();
        // Room asked for in one size, filled in another (short reads), as a
        // pipe hands them out.
        for (room, step) in [(64, 3), (4096, 4096), (1 << 20, 70_001), (10, 10)] {
            let mut dec = FrameDecoder::new();
            let mut got = Vec::new();
            let mut pos = 0;
            while pos < stream.len() {
                let spare = dec.spare(room);
                assert!(spare.len() >= room);
                let n = step.min(spare.len()).min(stream.len() - pos);
                spare[..n].copy_from_slice(&stream[pos..pos + n]);
                dec.filled(n);
                pos += n;
                while let Some(f) = dec.next_frame().unwrap() {
                    got.push(f.to_owned());
                }
            }
            assert_eq!(dec.pending(), 0);
            assert_eq!(got, want, "room {room}, reads of {step}");
        }
    }

    #[test]
    fn a_cut_stream_leaves_bytes_pending() {
        let (stream, _) = sample_stream();
        let mut dec = FrameDecoder::new();
        dec.feed(&stream[..stream.len() - 1]);
        while dec.next_frame().unwrap().is_some() {}
        assert!(dec.pending() > 0);
    }

    #[test]
    fn garbage_is_an_error() {
        let mut dec = FrameDecoder::new();
        dec.feed(b"hello world");
        assert!(dec.next_frame().is_err());
        let mut dec = FrameDecoder::new();
        dec.feed(&[b'D', 0xff, 0xff, 0xff, 0xff]);
        assert!(dec.next_frame().is_err());
    }

    #[test]
    fn each_tag_has_its_own_limit() {
        for (tag, len, ok) in [
            (b'D', MAX_DATA, true),
            (b'D', MAX_DATA + 1, false),
            (b'E', MAX_DATA + 1, false),
            (b'H', 0, true),
            (b'H', 8, true),
            (b'H', 9, false),
            (b'X', MAX_CONTROL, true),
            (b'X', MAX_CONTROL + 1, false),
            (b'P', MAX_CONTROL + 1, false),
            (b'Z', crate::codec::MAX_BLOCK, true),
            (b'Z', crate::codec::MAX_BLOCK + 1, false),
        ] {
            let l = (len as u32).to_be_bytes();
            let head = [tag, l[0], l[1], l[2], l[3]];
            assert_eq!(parse_header(&head).is_ok(), ok, "{} {len}", tag as char);
        }
    }

    proptest::proptest! {
        /// Random bytes never panic the decoder, and it never holds more
        /// than what it was fed: an error or a frame within its tag's limit.
        #[test]
        fn random_bytes_never_panic(pieces in proptest::collection::vec(proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64), 0..32)) {
            let mut dec = FrameDecoder::new();
            let mut fed = 0usize;
            'outer: for piece in &pieces {
                dec.feed(piece);
                fed += piece.len();
                loop {
                    match dec.next_frame() {
                        Ok(Some(f)) => proptest::prop_assert!(f.payload.len() <= f.tag.max_payload()),
                        Ok(None) => break,
                        Err(_) => break 'outer,
                    }
                }
                proptest::prop_assert!(dec.pending() <= fed);
            }
        }

        /// Any sequence of frames written comes back whole, whatever the
        /// read sizes.
        #[test]
        fn written_frames_round_trip(
            frames in proptest::collection::vec((0usize..5, proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600)), 0..12),
            step in 1usize..700,
        ) {
            let tags = [Tag::Data, Tag::Stderr, Tag::Partial, Tag::End, Tag::Compressed];
            let mut stream = Vec::new();
            let mut want = Vec::new();
            for (t, payload) in &frames {
                write_frame(&mut stream, tags[*t], payload).unwrap();
                want.push(Frame { tag: tags[*t], payload: payload.clone() });
            }
            let mut dec = FrameDecoder::new();
            let mut got = Vec::new();
            for piece in stream.chunks(step) {
                dec.feed(piece);
                while let Some(f) = dec.next_frame().unwrap() {
                    got.push(f.to_owned());
                }
            }
            proptest::prop_assert_eq!(dec.pending(), 0);
            proptest::prop_assert_eq!(got, want);
        }
    }

    #[test]
    fn end_json_has_the_documented_fields() {
        let v: serde_json::Value = serde_json::to_value(End::default()).unwrap();
        let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "data_bytes",
                "error",
                "exit_code",
                "input_bytes",
                "input_error",
                "ok",
                "signal"
            ]
        );
    }
}
