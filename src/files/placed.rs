//! An output file that results are written into at their own offsets, by
//! several attempts at once. Where the filesystem takes direct I/O, whole
//! aligned blocks go from a staging buffer straight to the disk: the bytes
//! are copied once (from the result pipe into the buffer, where they are
//! hashed while in the CPU's cache), instead of once into the page cache
//! and once more to be read back and hashed. Only the partial blocks at each
//! result's two ends, which a neighbouring result shares, go through the
//! page cache.
//!
//! A direct write holds the result's channel until the device has the
//! bytes. Where the device is slow (or busy), that wait costs more than the
//! page cache's extra copy: on a VM disk taking 1 MiB direct writes in 3–8
//! ms during a run, a 1 GiB run spent 5.4 s in them and took 6.2 s against
//! 5.4 s through the page cache. So the writes are timed, and once the
//! device has taken [`PACE_AFTER`] bytes slower than [`DIRECT_MIN_RATE`],
//! the rest go through the page cache (the journal's thread syncs them).

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Smallest alignment used for direct writes: a page, so that no page of
/// the file is ever written both directly and through the page cache.
const PAGE: usize = 4096;
/// Largest filesystem block size direct writes are aligned to; a filesystem
/// that asks for more is written through the page cache.
const MAX_ALIGN: usize = 64 << 10;
/// Bytes gathered in a staging buffer before they are written out.
pub const STAGE_WRITE: usize = 1 << 20;
/// Direct writes timed before their pace decides anything: enough for a
/// device's cache or a first slow write not to.
const PACE_AFTER: u64 = 32 << 20;
/// Slowest pace (bytes a second, over all direct writes so far) at which
/// the output is still written directly: a 1 MiB write holding its channel
/// for 2 ms. A disk taking 2.2 GB/s was faster direct (0.83–0.92× the wall
/// time of the page cache); disks at 440–700 MB/s (190–300 MB/s for each
/// write while a run writes three results at once) were slower (1.07–1.16×).
const DIRECT_MIN_RATE: f64 = 512.0 * 1024.0 * 1024.0;

/// Whether direct writes of `bytes` that took `secs` in all were quick
/// enough to go on with.
fn keeps_pace(bytes: u64, secs: f64) -> bool {
    bytes < PACE_AFTER || bytes as f64 >= DIRECT_MIN_RATE * secs
}

/// The output file, and the same file opened a second time for direct I/O
/// where the filesystem takes it.
pub struct PlacedFile {
    file: File,
    direct: Option<File>,
    /// Cleared when the filesystem refuses a direct write after all, or
    /// the device takes them too slowly: the rest is written through the
    /// page cache.
    direct_ok: AtomicBool,
    /// Bytes written directly so far, and the nanoseconds it took.
    direct_bytes: AtomicU64,
    direct_nanos: AtomicU64,
    align: usize,
}

impl PlacedFile {
    /// `file`, with direct writes where its filesystem allows them. The
    /// second descriptor is opened through `/proc/self/fd`: the same inode,
    /// never the path again.
    pub fn new(file: File) -> PlacedFile {
        let align = file
            .metadata()
            .map(|m| (m.blksize() as usize).max(PAGE))
            .unwrap_or(PAGE);
        let direct = (align.is_power_of_two() && align <= MAX_ALIGN)
            .then(|| {
                std::fs::OpenOptions::new()
                    .write(true)
                    .custom_flags(libc::O_DIRECT | libc::O_CLOEXEC)
                    .open(format!("/proc/self/fd/{}", file.as_raw_fd()))
                    .ok()
            })
            .flatten();
        PlacedFile {
            direct_ok: AtomicBool::new(direct.is_some()),
            file,
            direct,
            direct_bytes: AtomicU64::new(0),
            direct_nanos: AtomicU64::new(0),
            align,
        }
    }

    /// `file`, written through the page cache only.
    pub fn buffered(file: File) -> PlacedFile {
        PlacedFile {
            file,
            direct: None,
            direct_ok: AtomicBool::new(false),
            direct_bytes: AtomicU64::new(0),
            direct_nanos: AtomicU64::new(0),
            align: PAGE,
        }
    }

    /// The file as opened by its owner: for reads, partial blocks, splice.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Whether results should be staged for direct writes.
    pub fn takes_direct(&self) -> bool {
        self.direct_ok.load(Ordering::Relaxed)
    }

    /// Write whole aligned blocks at an aligned offset: directly while the
    /// filesystem takes it, else through the page cache.
    fn write_blocks(&self, data: &[u8], at: u64) -> io::Result<()> {
        if let (Some(direct), true) = (&self.direct, self.takes_direct()) {
            let started = Instant::now();
            match direct.write_all_at(data, at) {
                Ok(()) => {
                    self.timed(data.len() as u64, started.elapsed());
                    return Ok(());
                }
                // Refused for its alignment or not supported after all:
                // this write and all later ones go through the page cache.
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                    self.direct_ok.store(false, Ordering::Relaxed)
                }
                Err(e) => return Err(e),
            }
        }
        self.file.write_all_at(data, at)
    }

    /// Count a direct write; a device that falls behind [`keeps_pace`]
    /// gets the rest through the page cache.
    fn timed(&self, bytes: u64, took: Duration) {
        let nanos = took.as_nanos() as u64;
        let total = self.direct_bytes.fetch_add(bytes, Ordering::Relaxed) + bytes;
        let took = self.direct_nanos.fetch_add(nanos, Ordering::Relaxed) + nanos;
        if !keeps_pace(total, took as f64 / 1e9) {
            self.direct_ok.store(false, Ordering::Relaxed);
        }
    }
}

/// A result's bytes on their way to their place in a [`PlacedFile`]: held in
/// an aligned buffer where the position of a byte is congruent to its file
/// offset modulo the alignment, and written out in whole blocks.
pub struct Staging {
    buf: Vec<u8>,
    /// Where the aligned part of `buf` starts.
    pad: usize,
    align: usize,
    /// File offset of the aligned part's first byte.
    base: u64,
    /// Staged bytes not yet written: `lo..fill` of the aligned part.
    lo: usize,
    fill: usize,
}

impl Staging {
    /// An empty staging buffer for a result that starts at `start`; room
    /// for [`STAGE_WRITE`] bytes and one more payload of up to `piece`.
    pub fn new(out: &PlacedFile, start: u64, piece: usize) -> Staging {
        let align = out.align;
        let size = STAGE_WRITE + piece + align;
        let buf = vec![0u8; size + align];
        let pad = buf.as_ptr().align_offset(align);
        let mut s = Staging {
            buf,
            pad,
            align,
            base: 0,
            lo: 0,
            fill: 0,
        };
        s.restart(start);
        s
    }

    /// Bytes of memory the buffer holds.
    pub fn capacity(&self) -> usize {
        self.buf.len()
    }

    /// Forget what was staged; the result starts again at `start`.
    pub fn restart(&mut self, start: u64) {
        self.base = start - start % self.align as u64;
        self.lo = (start - self.base) as usize;
        self.fill = self.lo;
    }

    fn room(&self) -> usize {
        self.buf.len() - self.pad - self.fill
    }

    /// Room for the next `n` bytes, at the end of what is staged (whole
    /// blocks are written out first when the buffer is full).
    pub fn spare(&mut self, out: &PlacedFile, n: usize) -> io::Result<&mut [u8]> {
        if self.room() < n {
            self.write_out(out, false)?;
        }
        assert!(self.room() >= n, "a payload larger than the staging buffer");
        let at = self.pad + self.fill;
        Ok(&mut self.buf[at..at + n])
    }

    /// The `n` bytes put in [`Staging::spare`] are staged; returns them (to
    /// be hashed while they are in the CPU's cache).
    pub fn commit(&mut self, n: usize) -> &[u8] {
        self.fill += n;
        let end = self.pad + self.fill;
        &self.buf[end - n..end]
    }

    /// Write out the whole blocks staged once there are enough of them.
    pub fn write_when_full(&mut self, out: &PlacedFile) -> io::Result<()> {
        if self.fill - self.lo >= STAGE_WRITE {
            self.write_out(out, false)?;
        }
        Ok(())
    }

    /// Write what is staged: every whole block, the partial block at the
    /// front, and with `all` the partial block at the end too (the result
    /// is complete). A partial block shares its page with the neighbouring
    /// result's, so it goes through the page cache.
    pub fn write_out(&mut self, out: &PlacedFile, all: bool) -> io::Result<()> {
        let (lo, hi, a) = (self.lo, self.fill, self.align);
        let mid_lo = lo.next_multiple_of(a);
        let mid_hi = hi - hi % a;
        let stage = &self.buf[self.pad..];
        let at = |i: usize| self.base + i as u64;
        if mid_lo > mid_hi {
            // All of it lies inside one block.
            if all && lo < hi {
                out.file.write_all_at(&stage[lo..hi], at(lo))?;
                self.lo = hi;
            }
            return Ok(());
        }
        if lo < mid_lo {
            out.file.write_all_at(&stage[lo..mid_lo], at(lo))?;
        }
        if mid_lo < mid_hi {
            out.write_blocks(&stage[mid_lo..mid_hi], at(mid_lo))?;
        }
        if all {
            if mid_hi < hi {
                out.file.write_all_at(&stage[mid_hi..hi], at(mid_hi))?;
            }
            self.lo = hi;
            return Ok(());
        }
        // Keep the partial block at the end, moved to the front.
        let (start, end) = (self.pad + mid_hi, self.pad + hi);
        self.buf.copy_within(start..end, self.pad);
        self.base += mid_hi as u64;
        self.lo = 0;
        self.fill = hi - mid_hi;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file of `len` dots in the temporary directory (a disk filesystem
    /// here, which takes direct writes).
    fn dots(len: usize) -> File {
        let f = tempfile::tempfile().unwrap();
        f.write_all_at(&vec![b'.'; len], 0).unwrap();
        f
    }

    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| b'a' + ((i * 7 + seed as usize) % 26) as u8)
            .collect()
    }

    /// Stage `data` for `start` in pieces of `piece` bytes, as payloads arrive.
    fn stage_all(out: &PlacedFile, s: &mut Staging, data: &[u8], piece: usize) {
        stage_all_open(out, s, data, piece);
        s.write_out(out, true).unwrap();
    }

    /// The same, leaving the result open (more may follow).
    fn stage_all_open(out: &PlacedFile, s: &mut Staging, data: &[u8], piece: usize) {
        for p in data.chunks(piece) {
            s.spare(out, p.len()).unwrap().copy_from_slice(p);
            assert_eq!(s.commit(p.len()), p, "commit hands back what was staged");
            s.write_when_full(out).unwrap();
        }
    }

    #[test]
    fn staged_results_land_exactly_in_their_range() {
        let file_len = 3 * STAGE_WRITE + 3 * 4096;
        for direct in [true, false] {
            for start in [0u64, 1, 4095, 4096, 5000, 65537] {
                for (len, piece) in [
                    (0, 7),
                    (10, 3),
                    (4096, 4096),
                    (9000, 1000),
                    (2 * STAGE_WRITE + 123, 256 << 10),
                ] {
                    let f = dots(file_len);
                    let out = if direct {
                        PlacedFile::new(f.try_clone().unwrap())
                    } else {
                        PlacedFile::buffered(f.try_clone().unwrap())
                    };
                    let data = pattern(len, start as u8);
                    let mut s = Staging::new(&out, start, 256 << 10);
                    stage_all(&out, &mut s, &data, piece);
                    let mut got = vec![0u8; file_len];
                    f.read_exact_at(&mut got, 0).unwrap();
                    let (a, b) = (start as usize, start as usize + len);
                    assert!(got[..a].iter().all(|&c| c == b'.'), "before {start}+{len}");
                    assert_eq!(&got[a..b], &data[..], "{start}+{len} by {piece}");
                    assert!(got[b..].iter().all(|&c| c == b'.'), "after {start}+{len}");
                }
            }
        }
    }

    #[test]
    fn a_slow_device_loses_direct_writes_only_once_it_has_shown_its_pace() {
        let mib = 1u64 << 20;
        // Too few bytes to judge, however slowly they went.
        assert!(keeps_pace(PACE_AFTER - 1, 10.0));
        // 1 MiB in 0.3 ms (an NVMe disk) and in 1.9 ms: direct.
        assert!(keeps_pace(64 * mib, 64.0 * 0.0003));
        assert!(keeps_pace(64 * mib, 64.0 * 0.0019));
        // 1 MiB in 3.4 ms (this VM's disk while a run writes): page cache.
        assert!(!keeps_pace(64 * mib, 64.0 * 0.0034));
    }

    #[test]
    fn results_staged_across_the_switch_to_the_page_cache_land_whole() {
        let f = dots(4 * STAGE_WRITE);
        let out = PlacedFile::new(f.try_clone().unwrap());
        assert!(out.takes_direct());
        let data = pattern(3 * STAGE_WRITE + 777, 9);
        let mut s = Staging::new(&out, 333, 4096);
        let (first, rest) = data.split_at(STAGE_WRITE + 4096);
        stage_all_open(&out, &mut s, first, 4096);
        // The device was too slow: from here on, the page cache.
        out.timed(PACE_AFTER, Duration::from_secs(10));
        assert!(!out.takes_direct(), "a slow device ends direct writes");
        stage_all(&out, &mut s, rest, 4096);
        let mut got = vec![0u8; 4 * STAGE_WRITE];
        f.read_exact_at(&mut got, 0).unwrap();
        assert!(got[..333].iter().all(|&c| c == b'.'));
        assert_eq!(&got[333..333 + data.len()], &data[..]);
        assert!(got[333 + data.len()..].iter().all(|&c| c == b'.'));
    }

    #[test]
    fn neighbours_sharing_a_block_both_land_and_a_restart_overwrites() {
        let f = dots(4 * STAGE_WRITE);
        let out = PlacedFile::new(f.try_clone().unwrap());
        assert!(
            out.takes_direct(),
            "the test's temporary directory takes O_DIRECT"
        );
        // Two results meeting inside a block, staged turn about.
        let (a, b) = (pattern(STAGE_WRITE + 5000, 1), pattern(STAGE_WRITE, 2));
        let mut sa = Staging::new(&out, 0, 4096);
        let mut sb = Staging::new(&out, a.len() as u64, 4096);
        for (pa, pb) in a.chunks(4096).zip(b.chunks(4096)) {
            sa.spare(&out, pa.len()).unwrap().copy_from_slice(pa);
            sa.commit(pa.len());
            sa.write_when_full(&out).unwrap();
            sb.spare(&out, pb.len()).unwrap().copy_from_slice(pb);
            sb.commit(pb.len());
            sb.write_when_full(&out).unwrap();
        }
        let rest = &a[b.len().div_ceil(4096) * 4096..];
        stage_all(&out, &mut sa, rest, 4096);
        sb.write_out(&out, true).unwrap();
        // A failed attempt's bytes are replaced by the next attempt's.
        sb.restart(a.len() as u64);
        stage_all(&out, &mut sb, &b, 1 << 16);
        let mut got = vec![0u8; a.len() + b.len() + 1];
        f.read_exact_at(&mut got, 0).unwrap();
        assert_eq!(&got[..a.len()], &a[..]);
        assert_eq!(&got[a.len()..a.len() + b.len()], &b[..]);
        assert_eq!(got[a.len() + b.len()], b'.');
    }
}
