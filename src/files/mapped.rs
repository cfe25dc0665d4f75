//! Reading a range of a file through a read-only mapping of its page-cache
//! pages: the bytes are looked at (hashed, lines counted) where they lie,
//! never copied into a buffer first. `run` reads its whole input and every
//! in-place result this way, a gigabyte each, so the copy `pread` makes
//! was a good share of distctl's own CPU.
//!
//! A mapping of a file that shrinks underneath it faults (SIGBUS) when the
//! missing pages are touched, so every window is populated first with
//! `MADV_POPULATE_READ`, which reports a range past the end of the file as
//! an error instead. Where the kernel lacks it (before 5.14), or the file
//! cannot be mapped, the caller falls back to reading.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

/// Bytes mapped at once: large enough that mapping costs nothing per byte,
/// small enough to keep address space and page tables modest.
const WINDOW: u64 = 8 << 20;

/// `MADV_POPULATE_READ` (Linux 5.14), spelled out for older libc crates.
const MADV_POPULATE_READ: libc::c_int = 22;

/// Why a mapping failed: `Unmappable`, this file cannot be mapped here (the
/// caller reads it instead); `Io`, a real error (the file shrank, a visitor
/// failed).
#[derive(Debug)]
pub enum MapError {
    Unmappable,
    Io(io::Error),
}

impl From<io::Error> for MapError {
    fn from(e: io::Error) -> MapError {
        MapError::Io(e)
    }
}

/// `want` bytes of a file from `pos`, mapped read-only and populated;
/// unmapped on drop. Derefs to exactly those bytes.
pub struct MappedWindow {
    base: *mut libc::c_void,
    map_len: usize,
    lead: usize,
}

// SAFETY: a read-only shared mapping owned by this value alone; reading it
// from another thread is as safe as from this one.
unsafe impl Send for MappedWindow {}
// SAFETY: see above; nothing mutates through it.
unsafe impl Sync for MappedWindow {}

impl std::ops::Deref for MappedWindow {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: mapped readable and populated for `map_len` bytes for the
        // life of `self`.
        let all = unsafe { std::slice::from_raw_parts(self.base as *const u8, self.map_len) };
        &all[self.lead..]
    }
}

impl Drop for MappedWindow {
    fn drop(&mut self) {
        // SAFETY: `base`/`map_len` are exactly what mmap returned; no borrow
        // of the bytes outlives `self`.
        unsafe { libc::munmap(self.base, self.map_len) };
    }
}

/// Map `want` bytes of `file` from `pos`.
pub fn map_window(file: &File, pos: u64, want: usize) -> Result<MappedWindow, MapError> {
    let page = page_size();
    let start = pos - pos % page;
    let lead = (pos - start) as usize;
    let map_len = lead + want.max(1);
    // SAFETY: a fresh read-only mapping the kernel places; the descriptor
    // is open for the call; nothing else refers to the address yet.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            map_len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            start as libc::off_t,
        )
    };
    if base == libc::MAP_FAILED {
        return Err(MapError::Unmappable);
    }
    let window = MappedWindow {
        base,
        map_len,
        lead,
    };
    let shrank = || {
        MapError::Io(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the file shrank while being read",
        ))
    };
    // The file's size now: bytes of the last page beyond it read as zeros
    // rather than fault, so a shrink inside that page must be caught here.
    if file.metadata()?.len() < pos + want as u64 {
        return Err(shrank());
    }
    // SAFETY: advice on the range just mapped.
    if unsafe { libc::madvise(window.base, map_len, MADV_POPULATE_READ) } != 0 {
        let e = io::Error::last_os_error();
        return Err(match e.raw_os_error() {
            // Past the end of the file: it shrank since it was measured.
            Some(libc::EFAULT) => shrank(),
            Some(libc::ENOMEM) => MapError::Io(e),
            // EINVAL: a kernel without MADV_POPULATE_READ.
            _ => MapError::Unmappable,
        });
    }
    Ok(window)
}

/// Hand `len` bytes of `file` from `offset` to `visit`, in slices of at
/// most 8 MiB, through read-only mappings. The slices cover the range in
/// order, exactly once.
pub fn for_each_window(
    file: &File,
    offset: u64,
    len: u64,
    mut visit: impl FnMut(&[u8]) -> io::Result<()>,
) -> Result<(), MapError> {
    let mut done = 0u64;
    while done < len {
        let want = (len - done).min(WINDOW) as usize;
        let window = map_window(file, offset + done, want)?;
        visit(&window)?;
        done += want as u64;
    }
    Ok(())
}

fn page_size() -> u64 {
    // SAFETY: sysconf with a constant.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 {
        p as u64
    } else {
        4096
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file_of(data: &[u8]) -> File {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(data).unwrap();
        f
    }

    #[test]
    fn windows_cover_any_range_exactly_once() {
        let data: Vec<u8> = (0..(WINDOW as usize * 2 + 12345))
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        let f = file_of(&data);
        for (off, len) in [
            (0u64, data.len() as u64),
            (1, 10),
            (4095, 2),
            (4097, WINDOW + 3),
            (WINDOW - 1, WINDOW + 1),
            (data.len() as u64 - 1, 1),
            (17, 0),
        ] {
            let mut got = Vec::new();
            for_each_window(&f, off, len, |b| {
                assert!(b.len() as u64 <= WINDOW);
                got.extend_from_slice(b);
                Ok(())
            })
            .unwrap();
            assert_eq!(
                got,
                &data[off as usize..(off + len) as usize],
                "{off}+{len}"
            );
        }
    }

    #[test]
    fn a_range_past_the_end_is_an_error_not_a_fault() {
        let f = file_of(&[b'x'; 10000]);
        let r = for_each_window(&f, 0, 3 * 4096 + 1 + 10000, |_| Ok(()));
        match r {
            Err(MapError::Io(e)) => assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof),
            // A kernel without MADV_POPULATE_READ: the caller reads instead.
            Err(MapError::Unmappable) => {}
            Ok(()) => panic!("a range past the end was read"),
        }
    }
}
