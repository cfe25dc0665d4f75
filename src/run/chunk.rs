//! Line-aligned chunking of the input: one or several files read as one
//! stream, in the order given.
//!
//! Regular files are planned up front ([`ChunkPlan`]): a chunk is a byte range
//! of the concatenated stream, read back with `pread` whenever it is sent (or
//! re-sent on a retry), so no copy of the input is ever made. Standard input
//! and pipes cannot be re-read, so [`StreamChunker`] cuts them on the fly and
//! hands out owned chunks.
//!
//! The one cutting rule, shared by both: a chunk ends just after the first
//! `\n` at or beyond its target size, or at the end of the input. So no line
//! is ever cut, `\r\n` stays whole, a line longer than a chunk makes one
//! larger chunk, and there are never empty chunks (an empty input has none).

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// Block size for scans and reads of the input.
pub const READ_BLOCK: usize = 1 << 20;

/// The default chunk size for an input of `total` bytes (`None`: a stream
/// of unknown size): about 16 chunks, so every slot of a small cluster gets
/// work, but at most 64 MiB — each chunk costs a channel, a login shell and
/// an agent start on its node (~11 ms of CPU between the ssh master and
/// sshd on loopback), so chunks must not be small — and at least 1 MiB.
/// Depends on the input alone, so `--resume` plans the same chunks again.
pub fn default_chunk_size(total: Option<u64>) -> u64 {
    const MIB: u64 = 1 << 20;
    match total {
        Some(t) => (t / 16).clamp(MIB, 64 * MIB).next_multiple_of(MIB),
        None => 8 * MIB,
    }
}

/// [`Cut::Tapered`]: a chunk is at most this fraction of what is left, so
/// the nodes finish close together...
const TAPER: u64 = 4;
/// ...but never smaller than this: below it a chunk costs more to start
/// than the imbalance it saves (1 GiB is cut into 24 chunks, not 53).
const TAPER_MIN: u64 = 8 << 20;

/// One regular input file, with what identifies its content for `--resume`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputFile {
    pub path: PathBuf,
    pub size: u64,
    /// Modification time in nanoseconds since the epoch.
    pub mtime_ns: u128,
}

impl InputFile {
    pub fn stat(path: &Path) -> Result<InputFile> {
        let meta = std::fs::metadata(path)
            .with_context(|| format!("cannot read input {}", path.display()))?;
        if meta.is_dir() {
            anyhow::bail!("input {} is a directory", path.display());
        }
        let mtime_ns = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        Ok(InputFile {
            path: path.to_path_buf(),
            size: meta.len(),
            mtime_ns,
        })
    }

    /// Regular files can be planned and re-read; pipes, FIFOs and devices cannot.
    pub fn is_regular(path: &Path) -> bool {
        std::fs::metadata(path)
            .map(|m| m.file_type().is_file())
            .unwrap_or(false)
    }
}

/// Several files read as one stream: byte `pos` of the stream is in the file
/// whose range holds it.
pub struct InputStream {
    pub files: Vec<InputFile>,
    handles: Vec<File>,
    /// Start offset of each file in the stream.
    starts: Vec<u64>,
    pub total: u64,
}

impl InputStream {
    pub fn open(paths: &[PathBuf]) -> Result<InputStream> {
        let mut files = Vec::new();
        let mut handles = Vec::new();
        let mut starts = Vec::new();
        let mut total = 0u64;
        for p in paths {
            let f = InputFile::stat(p)?;
            handles.push(File::open(p).with_context(|| format!("cannot open {}", p.display()))?);
            starts.push(total);
            total += f.size;
            files.push(f);
        }
        Ok(InputStream {
            files,
            handles,
            starts,
            total,
        })
    }

    /// Read up to `buf.len()` bytes at stream offset `pos` (fewer only at the
    /// end of the stream or of one file).
    pub fn read_at(&self, pos: u64, buf: &mut [u8]) -> io::Result<usize> {
        let Some((i, within, left)) = self.locate(pos).filter(|_| !buf.is_empty()) else {
            return Ok(0);
        };
        let room = left.min(buf.len() as u64) as usize;
        let n = self.handles[i].read_at(&mut buf[..room], within)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{} shrank while being read", self.files[i].path.display()),
            ));
        }
        Ok(n)
    }

    /// The file holding stream offset `pos`, the offset within it, and the
    /// bytes it has from there (`None` past the end of the stream).
    pub fn file_at(&self, pos: u64) -> Option<(&File, u64, u64)> {
        let (i, within, left) = self.locate(pos)?;
        Some((&self.handles[i], within, left))
    }

    /// Index of the file holding `pos`, the offset within it, and the bytes
    /// it has from there. The last file starting at or before `pos`: an
    /// empty file shares its start with the next one, so this is never an
    /// exhausted file.
    fn locate(&self, pos: u64) -> Option<(usize, u64, u64)> {
        if pos >= self.total {
            return None;
        }
        let i = self.starts.partition_point(|&s| s <= pos) - 1;
        let within = pos - self.starts[i];
        Some((i, within, self.files[i].size - within))
    }

    /// Fill `buf` completely from `pos` (the caller keeps within the stream).
    pub fn read_exact_at(&self, mut pos: u64, mut buf: &mut [u8]) -> io::Result<()> {
        while !buf.is_empty() {
            let n = self.read_at(pos, buf)?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            pos += n as u64;
            buf = &mut buf[n..];
        }
        Ok(())
    }

    /// The end of the chunk whose target end is `target`: just past the first
    /// newline at or after `target - 1`, or the end of the stream.
    pub fn line_end_from(&self, target: u64) -> io::Result<u64> {
        if target >= self.total {
            return Ok(self.total);
        }
        let mut pos = target.saturating_sub(1);
        let mut buf = vec![0u8; 64 << 10];
        while pos < self.total {
            let n = self.read_at(pos, &mut buf)?;
            if n == 0 {
                break;
            }
            if let Some(i) = memchr::memchr(b'\n', &buf[..n]) {
                return Ok(pos + i as u64 + 1);
            }
            pos += n as u64;
        }
        Ok(self.total)
    }

    /// Newlines in `[start, start+len)`, plus one when the range ends the
    /// stream without a newline: the line count of that chunk.
    pub fn count_lines(&self, start: u64, len: u64) -> io::Result<u64> {
        let mut buf = vec![0u8; READ_BLOCK];
        let mut lines = 0;
        let mut last = b'\n';
        let mut pos = start;
        let end = start + len;
        while pos < end {
            let want = ((end - pos) as usize).min(buf.len());
            self.read_exact_at(pos, &mut buf[..want])?;
            lines += memchr::memchr_iter(b'\n', &buf[..want]).count() as u64;
            last = buf[want - 1];
            pos += want as u64;
        }
        Ok(lines + u64::from(len > 0 && last != b'\n'))
    }
}

/// One chunk: a byte range of the input stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chunk {
    pub index: usize,
    pub start: u64,
    pub len: u64,
    /// Lines in the chunk, when counted.
    pub lines: Option<u64>,
}

impl Chunk {
    pub fn end(&self) -> u64 {
        self.start + self.len
    }
}

/// Where a plan cuts: by target size, by count, by weights or by lines.
#[derive(Debug, Clone)]
pub enum Cut {
    /// Chunks of about this many bytes.
    Size(u64),
    /// Chunks of this many bytes while much input is left, then smaller
    /// (an eighth of what is left, down to 2 MiB), so that the last round
    /// of chunks ends at about the same time on every slot.
    Tapered(u64),
    /// About this many equal chunks (fewer when lines run out).
    Count(usize),
    /// One chunk per weight, sized in proportion (`--for-nodes` by slots).
    Weights(Vec<u64>),
    /// This many lines per chunk.
    Lines(u64),
}

/// The chunks of a planned (regular-file) input.
pub struct ChunkPlan {
    pub input: InputStream,
    pub chunks: Vec<Chunk>,
}

impl ChunkPlan {
    pub fn new(input: InputStream, cut: &Cut) -> Result<ChunkPlan> {
        let total = input.total;
        let ends = match cut {
            Cut::Size(size) => {
                let size = (*size).max(1);
                let mut ends = Vec::new();
                let mut pos = 0;
                while pos < total {
                    pos = input.line_end_from(pos + size)?;
                    ends.push(pos);
                }
                ends
            }
            Cut::Tapered(size) => {
                let size = (*size).max(1);
                let mut ends = Vec::new();
                let mut pos = 0;
                while pos < total {
                    let target = ((total - pos) / TAPER).clamp(size.min(TAPER_MIN), size);
                    pos = input.line_end_from(pos + target)?;
                    ends.push(pos);
                }
                ends
            }
            Cut::Count(n) => {
                let n = (*n).max(1) as u64;
                let targets = (1..=n).map(|k| scaled(total, k, n));
                cut_at_targets(&input, targets)?
            }
            Cut::Weights(w) => {
                let sum: u64 = w.iter().sum::<u64>().max(1);
                let mut acc = 0;
                let targets = w.iter().map(|x| {
                    acc += x;
                    scaled(total, acc, sum)
                });
                cut_at_targets(&input, targets.collect::<Vec<_>>().into_iter())?
            }
            Cut::Lines(l) => lines_ends(&input, (*l).max(1))?,
        };
        let mut chunks = Vec::with_capacity(ends.len());
        let mut start = 0;
        for end in ends {
            if end > start {
                chunks.push(Chunk {
                    index: chunks.len(),
                    start,
                    len: end - start,
                    lines: None,
                });
                start = end;
            }
        }
        Ok(ChunkPlan { input, chunks })
    }

    /// Count the lines of every chunk (one pass over the input).
    pub fn count_lines(&mut self) -> io::Result<()> {
        for c in &mut self.chunks {
            c.lines = Some(self.input.count_lines(c.start, c.len)?);
        }
        Ok(())
    }
}

/// `total * k / n` without overflow.
fn scaled(total: u64, k: u64, n: u64) -> u64 {
    (total as u128 * k as u128 / n as u128) as u64
}

/// Ends of chunks cut at the line end after each target (targets ascending;
/// a target inside an earlier chunk adds nothing).
fn cut_at_targets(input: &InputStream, targets: impl Iterator<Item = u64>) -> io::Result<Vec<u64>> {
    let mut ends: Vec<u64> = Vec::new();
    for t in targets {
        let prev = ends.last().copied().unwrap_or(0);
        if t <= prev {
            continue;
        }
        let end = input.line_end_from(t)?;
        if end > prev {
            ends.push(end);
        }
    }
    if ends.last().copied().unwrap_or(0) < input.total {
        ends.push(input.total);
    }
    Ok(ends)
}

fn lines_ends(input: &InputStream, per_chunk: u64) -> io::Result<Vec<u64>> {
    let mut ends = Vec::new();
    let mut buf = vec![0u8; READ_BLOCK];
    let mut pos = 0;
    let mut seen = 0;
    while pos < input.total {
        let n = input.read_at(pos, &mut buf)?;
        if n == 0 {
            break;
        }
        for i in memchr::memchr_iter(b'\n', &buf[..n]) {
            seen += 1;
            if seen == per_chunk {
                ends.push(pos + i as u64 + 1);
                seen = 0;
            }
        }
        pos += n as u64;
    }
    if ends.last().copied().unwrap_or(0) < input.total {
        ends.push(input.total);
    }
    Ok(ends)
}

/// Several readers one after another (files and standard input, in order).
pub struct ConcatReader {
    readers: std::collections::VecDeque<Box<dyn Read + Send>>,
}

impl ConcatReader {
    /// Open each input (`-` is standard input) lazily in order.
    pub fn open(paths: &[PathBuf]) -> Result<ConcatReader> {
        let mut readers: std::collections::VecDeque<Box<dyn Read + Send>> = Default::default();
        for p in paths {
            if p.as_os_str() == "-" {
                readers.push_back(Box::new(io::stdin()));
            } else {
                let f = File::open(p).with_context(|| format!("cannot open {}", p.display()))?;
                readers.push_back(Box::new(f));
            }
        }
        Ok(ConcatReader { readers })
    }
}

impl Read for ConcatReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while let Some(r) = self.readers.front_mut() {
            match r.read(buf) {
                Ok(0) if !buf.is_empty() => {
                    self.readers.pop_front();
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                other => return other,
            }
        }
        Ok(0)
    }
}

/// A chunk cut from a stream that cannot be re-read: it owns its bytes.
#[derive(Debug, Clone)]
pub struct StreamChunk {
    pub index: usize,
    pub start: u64,
    pub data: Vec<u8>,
    pub lines: u64,
}

/// Cuts a stream on the fly by the same rule as [`ChunkPlan`] with [`Cut::Size`].
pub struct StreamChunker<R> {
    reader: R,
    target: usize,
    carry: Vec<u8>,
    next_index: usize,
    pos: u64,
    eof: bool,
}

impl<R: Read> StreamChunker<R> {
    pub fn new(reader: R, target: u64) -> StreamChunker<R> {
        StreamChunker {
            reader,
            target: target.clamp(1, usize::MAX as u64 / 2) as usize,
            carry: Vec::new(),
            next_index: 0,
            pos: 0,
            eof: false,
        }
    }

    /// The next chunk, or `None` at the end of the input.
    pub fn next_chunk(&mut self) -> io::Result<Option<StreamChunk>> {
        let mut buf = std::mem::take(&mut self.carry);
        // Search for the cutting newline from `target - 1` on, reading more as needed.
        let mut searched = self.target - 1;
        let cut = loop {
            if buf.len() > searched {
                if let Some(i) = memchr::memchr(b'\n', &buf[searched..]) {
                    break searched + i + 1;
                }
                searched = buf.len();
            }
            if self.eof {
                break buf.len();
            }
            let want = (self.target + 1)
                .saturating_sub(buf.len())
                .clamp(64 << 10, READ_BLOCK);
            let old = buf.len();
            buf.resize(old + want, 0);
            let n = loop {
                match self.reader.read(&mut buf[old..]) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    r => break r,
                }
            };
            let n = match n {
                Ok(n) => n,
                Err(e) => {
                    buf.truncate(old);
                    self.carry = buf;
                    return Err(e);
                }
            };
            buf.truncate(old + n);
            if n == 0 {
                self.eof = true;
            }
        };
        if cut == 0 {
            return Ok(None);
        }
        self.carry = buf.split_off(cut);
        let lines =
            memchr::memchr_iter(b'\n', &buf).count() as u64 + u64::from(buf.last() != Some(&b'\n'));
        let chunk = StreamChunk {
            index: self.next_index,
            start: self.pos,
            data: buf,
            lines,
        };
        self.next_index += 1;
        self.pos += chunk.data.len() as u64;
        Ok(Some(chunk))
    }
}

/// The checksum the journal keeps of an input chunk or of a result
/// (xxh3-128): computed while a chunk is sent or its result arrives, and
/// again when `--resume` checks the input and the kept results, always
/// through this one type so the two can never disagree.
#[derive(Default)]
pub struct ChunkHash(xxhash_rust::xxh3::Xxh3);

impl ChunkHash {
    pub fn new() -> ChunkHash {
        ChunkHash::default()
    }

    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    pub fn finish(self) -> u128 {
        self.0.digest128()
    }

    /// The checksum of `len` bytes of `file` from `start` (a kept result).
    pub fn of_file_range(file: &std::fs::File, start: u64, len: u64) -> io::Result<u128> {
        use std::os::unix::fs::FileExt;
        ChunkHash::of_reads(start, len, |pos, buf| file.read_exact_at(buf, pos))
    }

    /// The checksum of `len` bytes of `input` from `start`.
    pub fn of_range(input: &InputStream, start: u64, len: u64) -> io::Result<u128> {
        ChunkHash::of_reads(start, len, |pos, buf| input.read_exact_at(pos, buf))
    }

    /// The checksum of `len` bytes from `start`, read block by block by `read`.
    fn of_reads(
        start: u64,
        len: u64,
        mut read: impl FnMut(u64, &mut [u8]) -> io::Result<()>,
    ) -> io::Result<u128> {
        let mut h = ChunkHash::new();
        let mut buf = vec![0u8; READ_BLOCK];
        let mut pos = start;
        while pos < start + len {
            let want = ((start + len - pos) as usize).min(buf.len());
            read(pos, &mut buf[..want])?;
            h.update(&buf[..want]);
            pos += want as u64;
        }
        Ok(h.finish())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// Chunks cover the input exactly, in order, cut only after a newline,
        /// planned or streamed alike.
        #[test]
        fn chunks_cover_the_input_exactly_on_line_ends(
            parts in proptest::collection::vec(proptest::collection::vec(proptest::sample::select(vec![b'a', b'\n', b'\r', 0xff]), 0..200), 1..4),
            size in 1u64..64,
            count in 1usize..20,
        ) {
            let refs: Vec<&[u8]> = parts.iter().map(|p| p.as_slice()).collect();
            let whole = parts.concat();
            let (chunks, _d) = plan_of(&refs, Cut::Size(size));
            check(&chunks, &whole);
            let (chunks, _d) = plan_of(&refs, Cut::Count(count));
            check(&chunks, &whole);
            proptest::prop_assert!(chunks.len() <= count);
            check(&stream_of(&whole, size), &whole);
        }
    }

    fn plan_of(parts: &[&[u8]], cut: Cut) -> (Vec<Vec<u8>>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let paths: Vec<PathBuf> = parts
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let path = dir.path().join(format!("in{i}"));
                std::fs::write(&path, p).unwrap();
                path
            })
            .collect();
        let plan = ChunkPlan::new(InputStream::open(&paths).unwrap(), &cut).unwrap();
        let mut out = Vec::new();
        for c in &plan.chunks {
            let mut buf = vec![0; c.len as usize];
            plan.input.read_exact_at(c.start, &mut buf).unwrap();
            out.push(buf);
        }
        (out, dir)
    }

    fn stream_of(data: &[u8], size: u64) -> Vec<Vec<u8>> {
        let mut s = StreamChunker::new(data, size);
        let mut out = Vec::new();
        while let Some(c) = s.next_chunk().unwrap() {
            out.push(c.data);
        }
        out
    }

    fn check(chunks: &[Vec<u8>], whole: &[u8]) {
        assert_eq!(chunks.concat(), whole);
        for c in chunks {
            assert!(!c.is_empty(), "empty chunk");
        }
        for c in &chunks[..chunks.len().saturating_sub(1)] {
            assert_eq!(c.last(), Some(&b'\n'), "chunk cut inside a line: {c:?}");
        }
    }

    const AWKWARD: &[&[u8]] = &[
        b"",
        b"x",
        b"\n",
        b"one\ntwo\n",
        b"no trailing newline\nlast",
        b"crlf\r\nlines\r\nhere\r\n",
        b"short\nthis line is much longer than any chunk size we use here\nend\n",
        b"\n\n\n\n",
        b"\xff\xfe invalid\n\xc3\x28\n",
    ];

    #[test]
    fn every_cut_keeps_lines_whole() {
        for data in AWKWARD {
            for size in [1, 2, 3, 5, 8, 100] {
                let (chunks, _d) = plan_of(&[data], Cut::Size(size));
                check(&chunks, data);
                assert_eq!(chunks, stream_of(data, size), "stream and plan agree");
            }
            for n in [1, 2, 3, 7, 50] {
                let (chunks, _d) = plan_of(&[data], Cut::Count(n));
                check(&chunks, data);
                assert!(chunks.len() <= n);
            }
            for l in [1, 2, 3] {
                let (chunks, _d) = plan_of(&[data], Cut::Lines(l));
                check(&chunks, data);
            }
        }
    }

    #[test]
    fn empty_input_has_no_chunks() {
        assert!(plan_of(&[b""], Cut::Count(4)).0.is_empty());
        assert!(plan_of(&[b"", b""], Cut::Size(1)).0.is_empty());
        assert!(stream_of(b"", 10).is_empty());
    }

    #[test]
    fn fewer_lines_than_chunks_gives_fewer_chunks() {
        let (chunks, _d) = plan_of(&[b"a\nb\n"], Cut::Count(5));
        assert_eq!(chunks, vec![b"a\n".to_vec(), b"b\n".to_vec()]);
    }

    #[test]
    fn one_huge_line_is_one_chunk() {
        let line = [b'x'; 1000];
        let (chunks, _d) = plan_of(&[&line], Cut::Count(4));
        assert_eq!(chunks.len(), 1);
        assert_eq!(stream_of(&line, 10).len(), 1);
    }

    #[test]
    fn count_and_weights_balance() {
        let data: Vec<u8> = (0..1000)
            .flat_map(|i| format!("{i:03}\n").into_bytes())
            .collect();
        let (chunks, _d) = plan_of(&[&data], Cut::Count(4));
        assert_eq!(chunks.len(), 4);
        assert!(chunks.iter().all(|c| c.len() == 1000));
        let (chunks, _d) = plan_of(&[&data], Cut::Weights(vec![1, 3]));
        assert_eq!(
            chunks.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![1000, 3000]
        );
        let (chunks, _d) = plan_of(&[&data], Cut::Lines(300));
        assert_eq!(
            chunks.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![1200, 1200, 1200, 400]
        );
    }

    #[test]
    fn several_files_are_one_stream() {
        let parts: &[&[u8]] = &[b"ab", b"", b"c\nde\n", b"f"];
        let whole = parts.concat();
        for size in [1, 2, 4, 100] {
            let (chunks, _d) = plan_of(parts, Cut::Size(size));
            check(&chunks, &whole);
            assert_eq!(chunks, stream_of(&whole, size));
        }
    }

    #[test]
    fn tapered_chunks_shrink_towards_the_end() {
        let line = vec![b'x'; 1023];
        let data: Vec<u8> = (0..48 * 1024)
            .flat_map(|_| line.iter().copied().chain([b'\n']))
            .collect();
        let (chunks, _d) = plan_of(&[&data], Cut::Tapered(16 << 20));
        check(&chunks, &data);
        let sizes: Vec<usize> = chunks.iter().map(Vec::len).collect();
        assert_eq!(sizes[0], 12 << 20, "a quarter of 48 MiB");
        assert!(sizes.windows(2).all(|w| w[1] <= w[0] + 1024), "{sizes:?}");
        assert!(
            sizes[1..sizes.len() - 1].iter().all(|&s| s >= 8 << 20),
            "{sizes:?}"
        );
        assert!(*sizes.last().unwrap() <= 8 << 20, "{sizes:?}");
        let (small, _d) = plan_of(&[b"a\nb\nc\n"], Cut::Tapered(2));
        check(&small, b"a\nb\nc\n");
    }

    #[test]
    fn default_chunk_sizes() {
        assert_eq!(default_chunk_size(Some(0)), 1 << 20);
        assert_eq!(default_chunk_size(Some(100 << 20)), 7 << 20);
        assert_eq!(default_chunk_size(Some(1 << 30)), 64 << 20);
        assert_eq!(default_chunk_size(Some(4 << 30)), 64 << 20);
        assert_eq!(default_chunk_size(None), 8 << 20);
    }

    #[test]
    fn line_counts() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x");
        std::fs::write(&p, b"a\nb\nc").unwrap();
        let mut plan = ChunkPlan::new(InputStream::open(&[p]).unwrap(), &Cut::Size(2)).unwrap();
        plan.count_lines().unwrap();
        let lines: Vec<_> = plan.chunks.iter().map(|c| c.lines.unwrap()).collect();
        assert_eq!(lines, vec![1, 1, 1]);
        let mut s = StreamChunker::new(&b"a\nb\nc"[..], 3);
        assert_eq!(s.next_chunk().unwrap().unwrap().lines, 2);
        assert_eq!(s.next_chunk().unwrap().unwrap().lines, 1);
    }
}
