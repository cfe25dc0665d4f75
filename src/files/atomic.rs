//! The one way distctl writes a file a person asked for: into a temporary
//! file beside it, flushed to disk, then renamed into place, so a reader (or
//! a crash) sees the old file or the complete new one, never a part.

use std::fs::{File, Permissions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// Final files get the mode a shell redirect would give them: 0666 less the
/// umask, as other tools do (0644 under the usual umask 022; private under 077).
fn mode() -> u32 {
    static MODE: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *MODE.get_or_init(|| {
        // SAFETY: umask(2) cannot fail; it is set back at once (the first
        // call happens before any file is written).
        let mask = unsafe {
            let m = libc::umask(0o022);
            libc::umask(m);
            m
        };
        0o666 & !(mask as u32)
    })
}

/// Write `bytes` to a temporary file beside `dest` and rename it into place.
pub fn replace_file(dest: &Path, bytes: &[u8]) -> Result<()> {
    let dir = crate::files::preflight::parent_dir(dest);
    let mut tmp = tempfile::Builder::new()
        .prefix(&prefix(dest))
        .tempfile_in(&dir)
        .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
    tmp.write_all(bytes)
        .and_then(|()| tmp.as_file().sync_data())
        .and_then(|()| {
            tmp.as_file()
                .set_permissions(Permissions::from_mode(mode()))
        })
        .with_context(|| format!("cannot write {}", dest.display()))?;
    tmp.persist(dest)
        .with_context(|| format!("cannot write {}", dest.display()))?;
    Ok(())
}

/// A file being written under a temporary name beside `dest`, renamed into
/// place by [`AtomicFile::commit`] once complete. The temporary is opened
/// once and written through that descriptor only: never reopened by path,
/// so nobody can swap another file in under the name meanwhile.
pub struct AtomicFile {
    pub temp: PathBuf,
    pub dest: PathBuf,
    file: File,
}

impl AtomicFile {
    /// A new empty temporary file beside `dest` (kept on disk until committed
    /// or removed by the caller).
    pub fn create(dest: &Path) -> Result<AtomicFile> {
        let dir = crate::files::preflight::parent_dir(dest);
        let (file, temp) = tempfile::Builder::new()
            .prefix(&prefix(dest))
            .tempfile_in(&dir)
            .with_context(|| format!("cannot write in {}", dir.display()))?
            .keep()?;
        Ok(AtomicFile {
            temp,
            dest: dest.to_path_buf(),
            file,
        })
    }

    /// The temporary `temp` of an earlier, interrupted write of `dest` (a
    /// run's journal keeps one), created when missing; never through a link.
    pub fn reopen(temp: &Path, dest: &Path) -> Result<AtomicFile> {
        let file =
            open_private(temp).with_context(|| format!("cannot write {}", temp.display()))?;
        Ok(AtomicFile {
            temp: temp.to_path_buf(),
            dest: dest.to_path_buf(),
            file,
        })
    }

    /// The open temporary file.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Make the result final: flush to disk, rename over `dest`, and flush
    /// the directory so the rename survives a crash too.
    pub fn commit(self) -> Result<()> {
        let AtomicFile { temp, dest, file } = self;
        file.sync_all()
            .and_then(|()| file.set_permissions(Permissions::from_mode(mode())))
            .and_then(|()| {
                drop(file);
                std::fs::rename(&temp, &dest)
            })
            .with_context(|| format!("cannot write {}", dest.display()))?;
        sync_dir(&crate::files::preflight::parent_dir(&dest));
        Ok(())
    }
}

/// Open `path` for reading and writing, created mode 0600 when missing,
/// never truncated, never through a symlink.
pub fn open_private(path: &Path) -> std::io::Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

/// fsync a directory (its new and renamed entries); best effort: some
/// filesystems refuse it, and the data itself is already on disk.
pub fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Temporary names say whose they are: `.NAME.distctl-XXXXXX`.
fn prefix(dest: &Path) -> String {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    format!(".{name}.distctl-")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replace_leaves_only_the_complete_file_readable_by_others() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("out.csv");
        std::fs::write(&p, "old").unwrap();
        replace_file(&p, b"new").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"new");
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, super::mode());
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
    }

    #[test]
    fn streamed_file_appears_only_on_commit() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("out.txt");
        let a = AtomicFile::create(&p).unwrap();
        let temp = a.temp.clone();
        a.file().write_all(b"data").unwrap();
        assert!(!p.exists());
        a.commit().unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"data");
        assert!(!temp.exists());
    }
}
