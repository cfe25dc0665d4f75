//! Checks on the files a command reads and writes, made before any node is
//! contacted: a mistake in a path is a usage error (exit 2) that names the
//! path and says why, never a failure after the work is done.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::usage;

/// An input file must exist, be readable, and not be a directory. `-` is
/// standard input. Pipes and other non-regular files are accepted unopened
/// (opening a FIFO would block until a writer comes).
pub fn check_input(path: &Path) -> Result<()> {
    if path.as_os_str() == "-" {
        return Ok(());
    }
    let meta =
        std::fs::metadata(path).map_err(|e| usage!("input {}: {}", path.display(), why(&e)))?;
    if meta.is_dir() {
        return Err(usage!(
            "input {} is a directory, not a file",
            path.display()
        ));
    }
    if meta.is_file() {
        std::fs::File::open(path).map_err(|e| usage!("input {}: {}", path.display(), why(&e)))?;
    }
    Ok(())
}

/// An output file (`-o FILE`) must not be a directory, and its directory must
/// exist and take a new file (checked by creating and removing a temporary
/// one there, which also catches a read-only mount). Nothing is created that
/// outlives the check.
pub fn check_output(path: &Path) -> Result<()> {
    if path.as_os_str().is_empty() {
        return Err(usage!("-o needs a file name"));
    }
    if std::fs::metadata(path).is_ok_and(|m| m.is_dir()) {
        return Err(usage!("-o {} is a directory: name a file", path.display()));
    }
    let dir = parent_dir(path);
    match std::fs::metadata(&dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(usage!(
                "-o {}: {} is not a directory",
                path.display(),
                dir.display()
            ))
        }
        Err(e) => {
            return Err(usage!(
                "-o {}: directory {}: {}",
                path.display(),
                dir.display(),
                why(&e)
            ))
        }
    }
    tempfile::Builder::new()
        .prefix(".distctl-check-")
        .tempfile_in(&dir)
        .map_err(|e| {
            usage!(
                "-o {}: cannot write in {}: {}",
                path.display(),
                dir.display(),
                why(&e)
            )
        })?;
    Ok(())
}

/// The directory a file lands in (`.` for a bare name).
pub fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// An I/O error in a person's words, without the `(os error N)` tail.
pub fn why(e: &std::io::Error) -> String {
    match e.kind() {
        ErrorKind::NotFound => "does not exist".into(),
        ErrorKind::PermissionDenied => "permission denied".into(),
        ErrorKind::ReadOnlyFilesystem => "read-only file system".into(),
        ErrorKind::NotADirectory => "a part of the path is not a directory".into(),
        _ => {
            let s = e.to_string();
            match s.find(" (os error") {
                Some(i) => s[..i].to_string(),
                None => s,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(r: Result<()>) -> String {
        let e = r.expect_err("should be refused");
        assert_eq!(crate::exit::exit_for(&e), crate::exit::Exit::Usage);
        format!("{e:#}")
    }

    #[test]
    fn output_checks_name_the_path_and_leave_nothing() {
        let d = tempfile::tempdir().unwrap();
        let m = message(check_output(d.path()));
        assert!(m.contains("is a directory"), "{m}");
        let missing = d.path().join("no/such/x.txt");
        let m = message(check_output(&missing));
        assert!(m.contains("does not exist") && m.contains("no/such"), "{m}");
        assert!(!d.path().join("no").exists());
        let file = d.path().join("f");
        std::fs::write(&file, "x").unwrap();
        let m = message(check_output(&file.join("x")));
        assert!(m.contains("not a directory"), "{m}");
        check_output(&d.path().join("ok.txt")).unwrap();
        let left: Vec<_> = std::fs::read_dir(d.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "only the file this test made: {left:?}");
    }

    #[test]
    fn input_checks_name_the_path() {
        let d = tempfile::tempdir().unwrap();
        let m = message(check_input(d.path()));
        assert!(m.contains("is a directory"), "{m}");
        let m = message(check_input(&d.path().join("nope")));
        assert!(m.contains("does not exist"), "{m}");
        let f = d.path().join("in.txt");
        std::fs::write(&f, "a\n").unwrap();
        check_input(&f).unwrap();
        check_input(Path::new("-")).unwrap();
    }
}
