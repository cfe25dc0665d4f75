//! The one way distctl writes a file a person asked for: into a temporary
//! file beside it, flushed to disk, then renamed into place, so a reader (or
//! a crash) sees the old file or the complete new one, never a part.

use std::fs::{File, Permissions};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// Final files get the mode a shell redirect gives under the usual umask, so
/// a collector or web server running as another user can read them.
const MODE: u32 = 0o644;

/// Write `bytes` to a temporary file beside `dest` and rename it into place.
pub fn replace_file(dest: &Path, bytes: &[u8]) -> Result<()> {
    let dir = crate::files::preflight::parent_dir(dest);
    let mut tmp = tempfile::Builder::new()
        .prefix(&prefix(dest))
        .tempfile_in(&dir)
        .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
    tmp.write_all(bytes)
        .and_then(|()| tmp.as_file().sync_data())
        .and_then(|()| tmp.as_file().set_permissions(Permissions::from_mode(MODE)))
        .with_context(|| format!("cannot write {}", dest.display()))?;
    tmp.persist(dest)
        .with_context(|| format!("cannot write {}", dest.display()))?;
    Ok(())
}

/// A file being written under a temporary name beside `dest`, renamed into
/// place by [`AtomicFile::commit`] once complete.
pub struct AtomicFile {
    pub temp: PathBuf,
    pub dest: PathBuf,
}

impl AtomicFile {
    /// A new empty temporary file beside `dest` (kept on disk until committed
    /// or removed by the caller).
    pub fn create(dest: &Path) -> Result<AtomicFile> {
        let dir = crate::files::preflight::parent_dir(dest);
        let temp = tempfile::Builder::new()
            .prefix(&prefix(dest))
            .tempfile_in(&dir)
            .with_context(|| format!("cannot write in {}", dir.display()))?
            .into_temp_path()
            .keep()?;
        Ok(AtomicFile {
            temp,
            dest: dest.to_path_buf(),
        })
    }

    /// Make the result final: flush to disk, then rename over `dest`.
    pub fn commit(&self, file: File) -> Result<()> {
        file.sync_all()
            .and_then(|()| file.set_permissions(Permissions::from_mode(MODE)))
            .and_then(|()| {
                drop(file);
                std::fs::rename(&self.temp, &self.dest)
            })
            .with_context(|| format!("cannot write {}", self.dest.display()))
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
        assert_eq!(mode, MODE);
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
    }

    #[test]
    fn streamed_file_appears_only_on_commit() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("out.txt");
        let a = AtomicFile::create(&p).unwrap();
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(&a.temp)
            .unwrap();
        f.write_all(b"data").unwrap();
        assert!(!p.exists());
        a.commit(f).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"data");
        assert!(!a.temp.exists());
    }
}
