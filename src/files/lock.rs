//! One run per output: `run -o FILE` holds an exclusive `flock` on
//! `.NAME.distctl-lock` beside FILE for its whole life, so a second run on
//! the same output (a cron overlap) is refused at once, naming the holder,
//! instead of the two renaming each other's files into place.
//!
//! The lock file holds the PID of its holder and is removed by it at the end.
//! Removing a lock file races with a newcomer that opened it just before, so
//! a taker checks after locking that the path still names the file it
//! locked, and starts over when it does not.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::usage;

/// An exclusive claim on one output path, released on drop.
pub struct OutputLock {
    path: PathBuf,
    file: File,
}

impl OutputLock {
    /// Where the lock of `output` lives.
    pub fn path_for(output: &Path) -> PathBuf {
        let name = output
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "output".into());
        output.with_file_name(format!(".{name}.distctl-lock"))
    }

    /// Take the lock of `output` now, or fail (a usage error: nothing was
    /// attempted) naming the other run's PID.
    pub fn take(output: &Path) -> Result<OutputLock> {
        let path = OutputLock::path_for(output);
        loop {
            let mut file = crate::files::atomic::open_private(&path)
                .with_context(|| format!("cannot open the lock file {}", path.display()))?;
            // SAFETY: flock on a descriptor we own.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
                let err = std::io::Error::last_os_error();
                if err.raw_os_error() != Some(libc::EWOULDBLOCK) {
                    return Err(err).with_context(|| format!("cannot lock {}", path.display()));
                }
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = match holder.trim().parse::<u32>() {
                    Ok(pid) => format!("PID {pid}"),
                    Err(_) => "another process".to_string(),
                };
                return Err(usage!(
                    "{} is being written by another distctl run ({holder}, lock {}): wait for it or choose another -o",
                    output.display(),
                    path.display()
                ));
            }
            // The holder before us may have removed the file between our
            // open and our lock: then we hold a lock on nothing.
            let ours = file.metadata()?;
            let same = std::fs::symlink_metadata(&path)
                .is_ok_and(|m| m.dev() == ours.dev() && m.ino() == ours.ino());
            if !same {
                continue;
            }
            file.set_len(0)?;
            file.seek(SeekFrom::Start(0))?;
            writeln!(file, "{}", std::process::id())?;
            return Ok(OutputLock { path, file });
        }
    }
}

impl Drop for OutputLock {
    fn drop(&mut self) {
        // Removed while still locked; the lock goes with the descriptor.
        let _ = std::fs::remove_file(&self.path);
        let _ = &self.file;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_taker_is_refused_with_the_holders_pid() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join("out.txt");
        let first = OutputLock::take(&out).unwrap();
        let err = OutputLock::take(&out).err().unwrap();
        assert_eq!(crate::exit::exit_for(&err), crate::exit::Exit::Usage);
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("PID {}", std::process::id())) && msg.contains("out.txt"),
            "{msg}"
        );
        drop(first);
        assert!(!OutputLock::path_for(&out).exists(), "the lock file goes");
        let _again = OutputLock::take(&out).unwrap();
    }

    #[test]
    fn a_symlinked_lock_file_is_not_followed() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join("out.txt");
        let victim = d.path().join("victim");
        std::fs::write(&victim, "keep").unwrap();
        std::os::unix::fs::symlink(&victim, OutputLock::path_for(&out)).unwrap();
        assert!(OutputLock::take(&out).is_err());
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
    }
}
