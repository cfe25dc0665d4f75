//! Ordered assembly of chunk results: results arrive in any order and are
//! written strictly in input order, each only once it is verified.
//!
//! Memory stays bounded whatever the order: a result waiting for its turn is
//! held in memory while the shared [`MemoryBudget`] allows, and otherwise
//! spills to an unlinked temporary file. A result as long as its input
//! (`upper`, `lower`) into a file skips both: it is written straight to its
//! offset in the output as it arrives, and the writer only steps over it.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::files::placed::{PlacedFile, Staging};

/// Bytes of results held in memory, over all chunks.
pub struct MemoryBudget {
    limit: usize,
    used: AtomicUsize,
}

impl MemoryBudget {
    pub fn new(limit: usize) -> Arc<MemoryBudget> {
        Arc::new(MemoryBudget {
            limit,
            used: AtomicUsize::new(0),
        })
    }

    fn try_take(&self, n: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                (u + n <= self.limit).then_some(u + n)
            })
            .is_ok()
    }

    fn give_back(&self, n: usize) {
        self.used.fetch_sub(n, Ordering::AcqRel);
    }

    /// Count `n` bytes held outside any result (an attempt's receive
    /// buffers) until the guard drops: they are always allowed, but results
    /// spill to disk sooner while they are held.
    pub fn charge(self: &Arc<Self>, n: usize) -> BudgetCharge {
        self.used.fetch_add(n, Ordering::AcqRel);
        BudgetCharge {
            budget: self.clone(),
            n,
        }
    }

    pub fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }
}

/// Bytes per read when a spilled result is copied to the output.
const COPY_BLOCK: usize = 1 << 20;
/// Size of the blocks a result in memory is gathered into.
const MEM_BLOCK: usize = 1 << 20;

/// Largest piece of a direct result read back to be hashed: one `D` frame's
/// payload, which a splice has just put in place.
const READ_BACK: usize = distctl_proto::frame::MAX_DATA;
/// Largest piece of a staged result taken at once: one `D` frame's payload.
pub const STAGE_PIECE: usize = distctl_proto::frame::MAX_DATA;

/// Bytes counted in a [`MemoryBudget`] by [`MemoryBudget::charge`].
pub struct BudgetCharge {
    budget: Arc<MemoryBudget>,
    n: usize,
}

impl Drop for BudgetCharge {
    fn drop(&mut self) {
        self.budget.give_back(self.n);
    }
}

/// The result bytes of one chunk, gathered as they arrive: into blocks of
/// 1 MiB in memory (no growing buffer), then spill to a file;
/// or, for a [`ResultBuf::direct`] result, written in place in the output.
pub struct ResultBuf {
    mem: Vec<Vec<u8>>,
    /// Bytes in `mem`.
    mem_len: usize,
    /// Bytes allocated for `mem`, charged to the budget.
    mem_reserved: usize,
    spill: Option<File>,
    direct: Option<InPlace>,
    len: u64,
    budget: Arc<MemoryBudget>,
    /// xxh3-128 of every byte pushed or placed (checked against the
    /// agent's End frame, kept in the journal); given whole for a resumed
    /// file.
    hash: Hashed,
}

enum Hashed {
    Running(Box<xxhash_rust::xxh3::Xxh3>),
    Known(u128),
}

/// Where a direct result goes: the output file, at `offset`, at most `cap` bytes.
struct InPlace {
    out: Arc<PlacedFile>,
    offset: u64,
    cap: u64,
    /// Where the output takes direct writes: the bytes are staged here,
    /// hashed, and written out in whole blocks.
    stage: Option<(Staging, BudgetCharge)>,
    /// Otherwise they are spliced, and read back into this to be hashed,
    /// one payload at a time, while they are still in the CPU's cache.
    scratch: Vec<u8>,
}

impl ResultBuf {
    pub fn new(budget: Arc<MemoryBudget>) -> ResultBuf {
        ResultBuf {
            mem: Vec::new(),
            mem_len: 0,
            mem_reserved: 0,
            spill: None,
            direct: None,
            len: 0,
            budget,
            hash: Hashed::Running(Box::default()),
        }
    }

    /// A result written as it arrives to `file` at `offset`, never longer
    /// than `cap` (its chunk's length): a longer one is refused before it
    /// could touch the next chunk's bytes.
    pub fn direct(
        out: Arc<PlacedFile>,
        offset: u64,
        cap: u64,
        budget: Arc<MemoryBudget>,
    ) -> ResultBuf {
        let stage = out.takes_direct().then(|| {
            let s = Staging::new(&out, offset, STAGE_PIECE);
            let charge = budget.charge(s.capacity());
            (s, charge)
        });
        let mut buf = ResultBuf::new(budget);
        buf.direct = Some(InPlace {
            out,
            offset,
            cap,
            stage,
            scratch: Vec::new(),
        });
        buf
    }

    /// For a direct result: the output file, the offset the next result
    /// byte goes to, and how many more bytes the chunk allows.
    pub fn in_place(&self) -> Option<(&Arc<PlacedFile>, u64, u64)> {
        self.direct
            .as_ref()
            .map(|d| (&d.out, d.offset + self.len, d.cap - self.len))
    }

    /// A direct result staged for direct writes ([`ResultBuf::stage_spare`]),
    /// rather than spliced into place ([`ResultBuf::placed`]).
    pub fn is_staged(&self) -> bool {
        self.direct.as_ref().is_some_and(|d| d.stage.is_some())
    }

    /// Room in the staging buffer for the next `n` bytes of a staged
    /// result (at most [`STAGE_PIECE`]); [`ResultBuf::staged`] takes them.
    pub fn stage_spare(&mut self, n: usize) -> io::Result<&mut [u8]> {
        let Some(InPlace {
            out,
            stage: Some((s, _)),
            ..
        }) = &mut self.direct
        else {
            unreachable!("only a staged result has a staging buffer")
        };
        s.spare(out, n)
    }

    /// `n` bytes were put in [`ResultBuf::stage_spare`]: hash them while
    /// they are in the CPU's cache, and write out what is complete.
    pub fn staged(&mut self, n: usize) -> io::Result<()> {
        let (
            Some(InPlace {
                out,
                stage: Some((s, _)),
                ..
            }),
            Hashed::Running(h),
        ) = (&mut self.direct, &mut self.hash)
        else {
            unreachable!("a staged result hashes as it goes")
        };
        h.update(s.commit(n));
        self.len += n as u64;
        s.write_when_full(out)
    }

    /// The staged result is complete: write the rest of it to its place.
    /// (Nothing to do for another kind of result.)
    pub fn finish_staged(&mut self) -> io::Result<()> {
        match &mut self.direct {
            Some(InPlace {
                out,
                stage: Some((s, _)),
                ..
            }) => s.write_out(out, true),
            _ => Ok(()),
        }
    }

    /// `n` more bytes of a direct result were put in place by the caller
    /// (spliced), at the offset [`ResultBuf::in_place`] gave. They are read
    /// back from the file and hashed now, while the splice has just left
    /// them in the CPU's cache: what is hashed is what landed. (Hashed
    /// once the whole result was there, through a mapping, they came from
    /// memory again: 12 % of distctl's CPU in a 1 GiB run, plus the mapping.)
    pub fn placed(&mut self, n: u64) -> io::Result<()> {
        debug_assert!(self.in_place().is_some_and(|(_, _, room)| n <= room));
        let (Some(d), Hashed::Running(h)) = (&mut self.direct, &mut self.hash) else {
            unreachable!("a direct result hashes as it goes")
        };
        let mut at = d.offset + self.len;
        self.len += n;
        let mut left = n;
        while left > 0 {
            let k = left.min(READ_BACK as u64) as usize;
            if d.scratch.len() < k {
                d.scratch.resize(k, 0);
            }
            d.out.file().read_exact_at(&mut d.scratch[..k], at)?;
            h.update(&d.scratch[..k]);
            at += k as u64;
            left -= k as u64;
        }
        Ok(())
    }

    /// Already in its place in the output.
    pub fn is_direct(&self) -> bool {
        self.direct.is_some()
    }

    /// A result kept in a file by an earlier, interrupted run (its bytes
    /// already checked to hash to `hash`).
    pub fn from_file(file: File, len: u64, hash: u128, budget: Arc<MemoryBudget>) -> ResultBuf {
        ResultBuf {
            mem: Vec::new(),
            mem_len: 0,
            mem_reserved: 0,
            spill: Some(file),
            direct: None,
            len,
            budget,
            hash: Hashed::Known(hash),
        }
    }

    /// xxh3-128 of the result's bytes.
    pub fn hash(&self) -> u128 {
        match &self.hash {
            Hashed::Running(h) => h.digest128(),
            Hashed::Known(h) => *h,
        }
    }

    /// The budget this result's memory counts in.
    pub fn budget(&self) -> &Arc<MemoryBudget> {
        &self.budget
    }

    /// Add result bytes as they arrive (copied: the caller's buffer is
    /// reused for the next frame). In memory they are gathered into blocks
    /// of up to [`MEM_BLOCK`], not one allocation per frame.
    pub fn push(&mut self, data: &[u8]) -> io::Result<()> {
        if let Some(d) = &self.direct {
            if self.len + data.len() as u64 > d.cap {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("the result is longer than its chunk ({} bytes)", d.cap),
                ));
            }
        }
        if self.is_staged() {
            for piece in data.chunks(STAGE_PIECE) {
                self.stage_spare(piece.len())?.copy_from_slice(piece);
                self.staged(piece.len())?;
            }
            return Ok(());
        }
        if let Some(d) = &self.direct {
            d.out.file().write_all_at(data, d.offset + self.len)?;
        }
        if let Hashed::Running(h) = &mut self.hash {
            h.update(data);
        }
        if self.direct.is_some() {
            self.len += data.len() as u64;
            return Ok(());
        }
        self.len += data.len() as u64;
        if self.spill.is_none() {
            if let Some(block) = self.mem.last_mut() {
                if block.capacity() - block.len() >= data.len() {
                    block.extend_from_slice(data);
                    self.mem_len += data.len();
                    return Ok(());
                }
            }
            // Blocks grow with the result (the first is the first frame's
            // size, so small results stay small); the budget is charged
            // what is allocated.
            let size = data.len().max(self.mem_len.min(MEM_BLOCK));
            if self.budget.try_take(size) {
                let mut block = Vec::with_capacity(size);
                block.extend_from_slice(data);
                self.mem.push(block);
                self.mem_len += data.len();
                self.mem_reserved += size;
                return Ok(());
            }
        }
        let spill = match &mut self.spill {
            Some(f) => f,
            None => self.spill.insert(tempfile::tempfile()?),
        };
        spill.write_all(data)
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Forget what arrived (the attempt failed and will be redone).
    pub fn clear(&mut self) {
        self.budget.give_back(self.mem_reserved);
        self.mem = Vec::new();
        self.mem_len = 0;
        self.mem_reserved = 0;
        self.spill = None;
        self.len = 0;
        self.hash = Hashed::Running(Box::default());
        if let Some(InPlace {
            offset,
            stage: Some((s, _)),
            ..
        }) = &mut self.direct
        {
            s.restart(*offset);
        }
    }

    /// Write the whole result to `out` (a direct result is read back from
    /// its place, for the journal).
    pub fn write_to(&mut self, out: &mut dyn Write) -> io::Result<()> {
        if let Some(d) = &self.direct {
            let mut buf = vec![0u8; COPY_BLOCK.min(self.len as usize)];
            let mut done = 0;
            while done < self.len {
                let n = (self.len - done).min(buf.len() as u64) as usize;
                d.out.file().read_exact_at(&mut buf[..n], d.offset + done)?;
                out.write_all(&buf[..n])?;
                done += n as u64;
            }
            return Ok(());
        }
        for piece in &self.mem {
            out.write_all(piece)?;
        }
        if let Some(f) = &mut self.spill {
            let from_mem = self.mem_len as u64;
            f.seek(SeekFrom::Start(0))?;
            // A resumed file holds everything; a spill holds what came after memory.
            let spill_len = if from_mem == 0 {
                self.len
            } else {
                self.len - from_mem
            };
            copy_exact(f, out, spill_len)?;
        }
        Ok(())
    }
}

impl Drop for ResultBuf {
    fn drop(&mut self) {
        self.budget.give_back(self.mem_reserved);
    }
}

/// Copy `len` bytes from `from` to `out` in large blocks (`io::copy` through
/// a `dyn Write` moves 8 KiB per call).
fn copy_exact(from: &mut File, out: &mut dyn Write, len: u64) -> io::Result<()> {
    let mut buf = vec![0u8; COPY_BLOCK.min(len as usize)];
    let mut left = len;
    while left > 0 {
        let want = left.min(buf.len() as u64) as usize;
        let n = from.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "spilled result is short",
            ));
        }
        out.write_all(&buf[..n])?;
        left -= n as u64;
    }
    Ok(())
}

/// Where the ordered results go: a stream, or a file whose position can step
/// over a result that is already in place.
pub trait OrderedOutput: Write {
    fn skip(&mut self, n: u64) -> io::Result<()>;
}

impl OrderedOutput for File {
    fn skip(&mut self, n: u64) -> io::Result<()> {
        self.seek(SeekFrom::Current(n as i64)).map(|_| ())
    }
}

fn not_seekable() -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        "a result in place needs a file output",
    )
}

impl OrderedOutput for io::Stdout {
    fn skip(&mut self, _: u64) -> io::Result<()> {
        Err(not_seekable())
    }
}

impl OrderedOutput for Vec<u8> {
    fn skip(&mut self, _: u64) -> io::Result<()> {
        Err(not_seekable())
    }
}

impl<T: OrderedOutput + ?Sized> OrderedOutput for Box<T> {
    fn skip(&mut self, n: u64) -> io::Result<()> {
        (**self).skip(n)
    }
}

/// Writes verified chunk results to `out` in input order.
pub struct OrderedWriter<W: OrderedOutput> {
    next: usize,
    waiting: BTreeMap<usize, ResultBuf>,
    out: W,
    written: u64,
}

impl<W: OrderedOutput> OrderedWriter<W> {
    /// `first`: the index of the next chunk to write (chunks before it are
    /// already in `out`, from an earlier run).
    pub fn new(out: W, first: usize, already_written: u64) -> OrderedWriter<W> {
        OrderedWriter {
            next: first,
            waiting: BTreeMap::new(),
            out,
            written: already_written,
        }
    }

    /// Accept the verified result of chunk `index`; write every result whose
    /// turn has come. Returns `(index, result length)` of each chunk written.
    pub fn insert(&mut self, index: usize, result: ResultBuf) -> io::Result<Vec<(usize, u64)>> {
        self.waiting.insert(index, result);
        let mut written = Vec::new();
        while let Some(mut r) = self.waiting.remove(&self.next) {
            if r.is_direct() {
                self.out.skip(r.len())?;
            } else {
                r.write_to(&mut self.out)?;
            }
            self.written += r.len();
            written.push((self.next, r.len()));
            self.next += 1;
        }
        if !written.is_empty() {
            self.out.flush()?;
        }
        Ok(written)
    }

    /// Chunks written so far (all of `0..next`).
    pub fn next(&self) -> usize {
        self.next
    }

    pub fn bytes_written(&self) -> u64 {
        self.written
    }

    /// Verified results still waiting for an earlier chunk.
    pub fn take_waiting(&mut self) -> BTreeMap<usize, ResultBuf> {
        std::mem::take(&mut self.waiting)
    }

    pub fn flush_output(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    pub fn into_inner(self) -> W {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buf(budget: &Arc<MemoryBudget>, data: &[u8]) -> ResultBuf {
        let mut b = ResultBuf::new(budget.clone());
        for piece in data.chunks(3) {
            b.push(piece).unwrap();
        }
        b
    }

    #[test]
    fn out_of_order_results_come_out_in_order() {
        let budget = MemoryBudget::new(1 << 20);
        let mut w = OrderedWriter::new(Vec::new(), 0, 0);
        assert!(w.insert(2, buf(&budget, b"c\n")).unwrap().is_empty());
        assert!(w.insert(1, buf(&budget, b"b\n")).unwrap().is_empty());
        assert_eq!(
            w.insert(0, buf(&budget, b"a\n")).unwrap(),
            vec![(0, 2), (1, 2), (2, 2)]
        );
        assert_eq!(w.insert(3, buf(&budget, b"")).unwrap(), vec![(3, 0)]);
        assert_eq!(w.into_inner(), b"a\nb\nc\n");
        assert_eq!(budget.used(), 0, "memory is given back once written");
    }

    #[test]
    fn results_beyond_the_budget_spill_to_disk() {
        let budget = MemoryBudget::new(4);
        let data: Vec<u8> = (0..100u8).collect();
        let mut w = OrderedWriter::new(Vec::new(), 0, 0);
        w.insert(1, buf(&budget, &data)).unwrap();
        assert!(budget.used() <= 4);
        w.insert(0, buf(&budget, b"head")).unwrap();
        let mut want = b"head".to_vec();
        want.extend(&data);
        assert_eq!(w.into_inner(), want);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn receive_buffers_count_and_push_results_to_disk() {
        let budget = MemoryBudget::new(10);
        let charge = budget.charge(8);
        assert_eq!(budget.used(), 8);
        let b = buf(&budget, b"abcdef");
        assert!(budget.used() <= 10, "the result spilled: {}", budget.used());
        drop(b);
        drop(charge);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn cleared_result_starts_over() {
        let budget = MemoryBudget::new(10);
        let mut b = buf(&budget, b"0123456789abc");
        b.clear();
        assert_eq!(budget.used(), 0);
        b.push(b"ok").unwrap();
        assert_eq!(b.hash(), xxhash_rust::xxh3::xxh3_128(b"ok"));
        let mut out = Vec::new();
        b.write_to(&mut out).unwrap();
        assert_eq!(out, b"ok");
    }

    #[test]
    fn direct_results_land_in_place_and_the_writer_steps_over_them() {
        let budget = MemoryBudget::new(4);
        let mut out = tempfile::tempfile().unwrap();
        let shared = Arc::new(PlacedFile::new(out.try_clone().unwrap()));
        let mut w = OrderedWriter::new(out.try_clone().unwrap(), 0, 0);
        let mut second = ResultBuf::direct(shared.clone(), 3, 3, budget.clone());
        second.push(b"def").unwrap();
        assert!(second.push(b"x").is_err(), "longer than its chunk");
        second.finish_staged().unwrap();
        assert!(w.insert(1, second).unwrap().is_empty());
        let mut first = ResultBuf::direct(shared, 0, 3, budget.clone());
        first.push(b"abc").unwrap();
        first.finish_staged().unwrap();
        assert_eq!(w.insert(0, first).unwrap(), vec![(0, 3), (1, 3)]);
        w.insert(2, buf(&budget, b"g\n")).unwrap();
        let mut got = String::new();
        out.seek(SeekFrom::Start(0)).unwrap();
        out.read_to_string(&mut got).unwrap();
        assert_eq!(got, "abcdefg\n");
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn placed_bytes_are_hashed_as_they_are_in_the_file() {
        let budget = MemoryBudget::new(4);
        let out = tempfile::tempfile().unwrap();
        let shared = Arc::new(PlacedFile::buffered(out.try_clone().unwrap()));
        // Pieces of 1 byte, one read-back block and more than one, put in
        // place by someone else (as a splice does) at the offsets given.
        let data: Vec<u8> = (0..READ_BACK * 2 + 7).map(|i| (i % 251) as u8).collect();
        let mut r = ResultBuf::direct(shared, 5, data.len() as u64, budget);
        for piece in [&data[..1], &data[1..READ_BACK + 1], &data[READ_BACK + 1..]] {
            let (file, at, room) = r.in_place().unwrap();
            assert!(piece.len() as u64 <= room);
            file.file().write_all_at(piece, at).unwrap();
            r.placed(piece.len() as u64).unwrap();
        }
        assert_eq!(r.len(), data.len() as u64);
        assert_eq!(r.hash(), xxhash_rust::xxh3::xxh3_128(&data));
        // What is hashed is what the file holds, not what was meant.
        r.clear();
        let (file, at, _) = r.in_place().unwrap();
        file.file().write_all_at(b"changed", at).unwrap();
        r.placed(7).unwrap();
        assert_eq!(r.hash(), xxhash_rust::xxh3::xxh3_128(b"changed"));
        // Bytes that never landed (the file ends first) are an error.
        let end = out.metadata().unwrap().len();
        let past_end = Arc::new(PlacedFile::buffered(out));
        let mut past = ResultBuf::direct(past_end, end + 1, 10, MemoryBudget::new(4));
        assert!(past.placed(10).is_err());
    }

    #[test]
    fn resumed_result_from_file() {
        let budget = MemoryBudget::new(10);
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(b"kept").unwrap();
        let mut b = ResultBuf::from_file(f, 4, 9, budget);
        assert_eq!(b.hash(), 9);
        let mut out = Vec::new();
        b.write_to(&mut out).unwrap();
        assert_eq!(out, b"kept");
    }
}
