//! Tar archives between a local directory and a remote command's pipes. The
//! `tar` crate is synchronous, so archives are built and unpacked on a
//! blocking thread and the bytes cross to the async side over a bounded
//! channel (backpressure: a slow node slows the reader of the local disk).

use std::fs::Permissions;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::transport::{BoxRead, BoxWrite};

const CHUNK: usize = 64 * 1024;

/// Buffers writes and hands full chunks to the async side.
struct ChannelWriter {
    tx: mpsc::Sender<Vec<u8>>,
    buf: Vec<u8>,
}

impl std::io::Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if !self.buf.is_empty() {
            let chunk = std::mem::take(&mut self.buf);
            self.tx.blocking_send(chunk).map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::BrokenPipe, "receiver gone")
            })?;
        }
        Ok(())
    }
}

/// Write a tar of `paths` (relative to `root`; symlinks as links, with
/// modes and mtimes) to `w`, then close it. Returns the bytes written.
pub async fn send(root: PathBuf, paths: Vec<PathBuf>, mut w: BoxWrite) -> Result<u64> {
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(8);
    let build = tokio::task::spawn_blocking(move || -> Result<()> {
        let mut b = tar::Builder::new(ChannelWriter {
            tx,
            buf: Vec::new(),
        });
        b.follow_symlinks(false);
        b.mode(tar::HeaderMode::Complete);
        for p in &paths {
            b.append_path_with_name(root.join(p), p)
                .with_context(|| format!("adding {} to the archive", root.join(p).display()))?;
        }
        let mut inner = b.into_inner().context("finishing the archive")?;
        std::io::Write::flush(&mut inner)?;
        Ok(())
    });
    let mut sent = 0u64;
    let mut write_err = None;
    while let Some(chunk) = rx.recv().await {
        if let Err(e) = w.write_all(&chunk).await {
            write_err = Some(e);
            break;
        }
        sent += chunk.len() as u64;
    }
    drop(rx);
    let built = build.await.context("archive thread")?;
    if let Some(e) = write_err {
        return Err(anyhow::Error::new(e).context("the node stopped reading the archive"));
    }
    built?;
    w.shutdown().await.context("closing the archive stream")?;
    Ok(sent)
}

/// Reads chunks handed over from the async side.
struct ChannelReader {
    rx: mpsc::Receiver<Vec<u8>>,
    buf: Vec<u8>,
    pos: usize,
}

impl std::io::Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.buf.len() {
            match self.rx.blocking_recv() {
                Some(chunk) => {
                    self.buf = chunk;
                    self.pos = 0;
                }
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// What [`receive`] unpacked.
#[derive(Debug, Default, Clone, Copy)]
pub struct Received {
    /// Regular files.
    pub files: u64,
    /// Bytes of the archive stream.
    pub bytes: u64,
}

/// Unpack the tar read from `r` into `dir`, trusting the node with the data
/// only: every entry name is checked to stay inside `dir` before anything is
/// made from it (no absolute names, no `..`, no hard link out), symlinks are
/// written as links and never followed, permission bits are kept without
/// setuid/setgid/sticky, and device nodes and FIFOs are skipped with a warning.
pub async fn receive(mut r: BoxRead, dir: PathBuf) -> Result<Received> {
    let (tx, rx) = mpsc::channel::<Vec<u8>>(8);
    let unpack = tokio::task::spawn_blocking(move || -> Result<u64> {
        let mut archive = tar::Archive::new(ChannelReader {
            rx,
            buf: Vec::new(),
            pos: 0,
        });
        // Not preserved: the crate then keeps the rwx bits only.
        archive.set_preserve_permissions(false);
        archive.set_preserve_mtime(true);
        archive.set_overwrite(true);
        let mut files = 0;
        // Directories stay writable until the end, so that a read-only one
        // can still receive its contents; their modes are set last.
        let mut dirs = Vec::new();
        for entry in archive.entries().context("reading the archive")? {
            let mut entry = entry.context("reading the archive")?;
            let name = entry.path()?.into_owned();
            let rel = inside(&name)?;
            let kind = entry.header().entry_type();
            match kind {
                tar::EntryType::Regular | tar::EntryType::Continuous => files += 1,
                tar::EntryType::Directory | tar::EntryType::Symlink => {}
                tar::EntryType::Link => {
                    let target = entry.link_name()?.unwrap_or_default().into_owned();
                    inside(&target).with_context(|| {
                        format!(
                            "refusing hard link {} to {}",
                            name.display(),
                            target.display()
                        )
                    })?;
                }
                other => {
                    eprintln!(
                        "distctl: warning: skipping {} from the node: {} entries are not fetched",
                        name.display(),
                        kind_name(other)
                    );
                    continue;
                }
            }
            if rel.as_os_str().is_empty() {
                // `./` itself: the directory the user named stays as it is.
                continue;
            }
            if !entry
                .unpack_in(&dir)
                .with_context(|| format!("unpacking {}", name.display()))?
            {
                anyhow::bail!(
                    "refusing archive entry outside the target: {}",
                    name.display()
                );
            }
            if kind.is_dir() {
                if let Ok(mode) = entry.header().mode() {
                    let p = dir.join(&rel);
                    let m = std::fs::symlink_metadata(&p)?;
                    if m.is_dir() {
                        std::fs::set_permissions(
                            &p,
                            Permissions::from_mode((mode & 0o777) | 0o700),
                        )?;
                        dirs.push((p, mode));
                    }
                }
            }
        }
        for (p, mode) in dirs.iter().rev() {
            if std::fs::symlink_metadata(p).is_ok_and(|m| m.is_dir()) {
                std::fs::set_permissions(p, Permissions::from_mode(mode & 0o777))?;
            }
        }
        Ok(files)
    });
    let mut bytes = 0u64;
    let mut buf = vec![0u8; CHUNK];
    let mut read_err = None;
    let mut tx = Some(tx);
    loop {
        match r.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => {
                bytes += n as u64;
                // Once the unpacker is done (or failed), drain the rest.
                if let Some(t) = &tx {
                    if t.send(buf[..n].to_vec()).await.is_err() {
                        tx = None;
                    }
                }
            }
            Err(e) => {
                read_err = Some(e);
                break;
            }
        }
    }
    drop(tx);
    let files = unpack.await.context("unpack thread")?;
    if let Some(e) = read_err {
        return Err(anyhow::Error::new(e).context("reading from the node"));
    }
    Ok(Received {
        files: files?,
        bytes,
    })
}

/// `name` as a path relative to the target, or an error when it could
/// leave it: absolute, with `..`, or any other root or prefix. `.` parts are
/// dropped (`./` alone gives the empty path: the target itself).
fn inside(name: &Path) -> Result<PathBuf> {
    let mut rel = PathBuf::new();
    for c in name.components() {
        match c {
            Component::Normal(part) => rel.push(part),
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) | Component::ParentDir => anyhow::bail!(
                "refusing archive entry outside the target: {}",
                name.display()
            ),
        }
    }
    Ok(rel)
}

fn kind_name(kind: tar::EntryType) -> &'static str {
    match kind {
        tar::EntryType::Char => "character device",
        tar::EntryType::Block => "block device",
        tar::EntryType::Fifo => "FIFO",
        _ => "special",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One hostile archive entry: a name (written raw, unchecked), a kind, a
    /// link target and a mode.
    fn raw_entry(name: &str, kind: u8, link: &str, mode: u32) -> Vec<u8> {
        let mut h = tar::Header::new_gnu();
        {
            let old = h.as_old_mut();
            let n = name.len().min(99);
            old.name[..n].copy_from_slice(&name.as_bytes()[..n]);
            let l = link.len().min(99);
            old.linkname[..l].copy_from_slice(&link.as_bytes()[..l]);
        }
        h.set_entry_type(tar::EntryType::new(kind));
        h.set_mode(mode);
        let data: &[u8] = if kind == b'0' { b"data" } else { b"" };
        h.set_size(data.len() as u64);
        h.set_cksum();
        let mut out = h.as_bytes().to_vec();
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
        out
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// Random archives of absolute names, `..`, links out and odd modes
        /// never create or change anything outside the target.
        #[test]
        fn random_archives_never_write_outside_the_target(
            entries in proptest::collection::vec((
                proptest::sample::select(vec!["a", "a/b", "../x", "/abs/x", "a/../../x", "./a/./c", "l", "l/y", "..", "."]),
                proptest::sample::select(vec![b'0', b'5', b'2', b'1', b'3', b'6']),
                proptest::sample::select(vec!["../outside", "/tmp", "a", "../outside/canary"]),
                proptest::sample::select(vec![0o644u32, 0o7777, 0o4755, 0o000]),
            ), 1..8)
        ) {
            let root = tempfile::tempdir().unwrap();
            let target = root.path().join("target");
            let outside = root.path().join("outside");
            std::fs::create_dir(&target).unwrap();
            std::fs::create_dir(&outside).unwrap();
            std::fs::write(outside.join("canary"), "keep").unwrap();
            let mode_of = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode();
            let modes = (mode_of(root.path()), mode_of(&outside), mode_of(&outside.join("canary")));
            let mut archive = Vec::new();
            for (name, kind, link, mode) in &entries {
                archive.extend(raw_entry(name, *kind, link, *mode));
            }
            archive.extend([0u8; 1024]);
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let r: BoxRead = Box::pin(std::io::Cursor::new(archive));
            let _ = rt.block_on(receive(r, target.clone()));
            let mut top: Vec<_> = std::fs::read_dir(root.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
            top.sort();
            proptest::prop_assert_eq!(top, vec![std::ffi::OsString::from("outside"), "target".into()]);
            let mut left: Vec<_> = std::fs::read_dir(&outside).unwrap().map(|e| e.unwrap().file_name()).collect();
            left.sort();
            proptest::prop_assert_eq!(left, vec![std::ffi::OsString::from("canary")]);
            proptest::prop_assert_eq!(std::fs::read_to_string(outside.join("canary")).unwrap(), "keep");
            let now = (mode_of(root.path()), mode_of(&outside), mode_of(&outside.join("canary")));
            proptest::prop_assert_eq!(now, modes, "no mode changed outside the target");
            for e in walk(&target) {
                let md = std::fs::symlink_metadata(&e).unwrap();
                proptest::prop_assert_eq!(md.permissions().mode() & 0o7000, 0, "no setuid/setgid/sticky: {:?}", e);
            }
        }
    }

    fn walk(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                out.extend(walk(&p));
            }
            out.push(p);
        }
        out
    }
    use std::os::unix::fs::symlink;

    #[tokio::test]
    async fn a_tree_round_trips_with_modes_and_links() {
        let src = tempfile::tempdir().unwrap();
        let root = src.path();
        std::fs::create_dir_all(root.join("ro dir")).unwrap();
        std::fs::write(root.join("ro dir/f"), "content").unwrap();
        std::fs::write(root.join("tool"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(root.join("tool"), Permissions::from_mode(0o750)).unwrap();
        symlink("ro dir/f", root.join("link")).unwrap();
        std::fs::set_permissions(root.join("ro dir"), Permissions::from_mode(0o555)).unwrap();

        let (w, r) = tokio::io::duplex(4096);
        let dst = tempfile::tempdir().unwrap();
        let paths = ["ro dir", "ro dir/f", "tool", "link"]
            .map(PathBuf::from)
            .to_vec();
        let (sent, got) = tokio::join!(
            send(root.to_path_buf(), paths, Box::pin(w)),
            receive(Box::pin(r), dst.path().to_path_buf())
        );
        let (sent, got) = (sent.unwrap(), got.unwrap());
        assert_eq!(sent, got.bytes);
        assert_eq!(got.files, 2);
        let d = dst.path();
        assert_eq!(
            std::fs::read_to_string(d.join("ro dir/f")).unwrap(),
            "content"
        );
        let mode = |p: &str| {
            std::fs::symlink_metadata(d.join(p))
                .unwrap()
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(mode("ro dir"), 0o555);
        assert_eq!(mode("tool"), 0o750);
        assert_eq!(
            std::fs::read_link(d.join("link")).unwrap(),
            PathBuf::from("ro dir/f")
        );
        // Let the temporary directories clean up.
        for d in [root, d] {
            std::fs::set_permissions(d.join("ro dir"), Permissions::from_mode(0o755)).unwrap();
        }
    }

    /// One raw entry: the name is written as given (no checks), as a
    /// hostile node's tar would.
    fn raw(
        b: &mut tar::Builder<Vec<u8>>,
        name: &str,
        kind: tar::EntryType,
        mode: u32,
        link: &str,
        data: &[u8],
    ) {
        let mut h = tar::Header::new_gnu();
        let n = &mut h.as_old_mut().name;
        n[..name.len()].copy_from_slice(name.as_bytes());
        if !link.is_empty() {
            let l = &mut h.as_old_mut().linkname;
            l[..link.len()].copy_from_slice(link.as_bytes());
        }
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(data.len() as u64);
        h.set_cksum();
        b.append(&h, data).unwrap();
    }

    async fn unpack(archive: Vec<u8>, dst: &Path) -> Result<Received> {
        let (mut w, r) = tokio::io::duplex(1 << 20);
        let writer = async move {
            w.write_all(&archive).await.unwrap();
            drop(w);
        };
        let (_, got) = tokio::join!(writer, receive(Box::pin(r), dst.to_path_buf()));
        got
    }

    #[tokio::test]
    async fn an_absolute_directory_entry_changes_nothing_outside() {
        let outside = tempfile::tempdir().unwrap();
        let victim = outside.path().join("victim");
        std::fs::create_dir(&victim).unwrap();
        std::fs::set_permissions(&victim, Permissions::from_mode(0o700)).unwrap();
        let mut b = tar::Builder::new(Vec::new());
        raw(
            &mut b,
            victim.to_str().unwrap(),
            tar::EntryType::Directory,
            0o7777,
            "",
            b"",
        );
        let dst = tempfile::tempdir().unwrap();
        let e = format!(
            "{:#}",
            unpack(b.into_inner().unwrap(), dst.path())
                .await
                .unwrap_err()
        );
        assert!(e.contains("outside the target"), "{e}");
        let mode = std::fs::metadata(&victim).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o700);
    }

    #[tokio::test]
    async fn dot_dot_and_hard_links_out_are_refused() {
        for (name, kind, link) in [
            ("a/../../escape", tar::EntryType::Regular, ""),
            ("h", tar::EntryType::Link, "/etc/passwd"),
            ("h2", tar::EntryType::Link, "../x"),
        ] {
            let mut b = tar::Builder::new(Vec::new());
            raw(&mut b, name, kind, 0o644, link, b"x");
            let dst = tempfile::tempdir().unwrap();
            let sub = dst.path().join("in");
            std::fs::create_dir(&sub).unwrap();
            let r = unpack(b.into_inner().unwrap(), &sub).await;
            assert!(r.is_err(), "{name} accepted");
            assert!(!dst.path().join("escape").exists());
            assert!(!sub.join(name).exists());
        }
    }

    #[tokio::test]
    async fn setuid_bits_and_devices_never_arrive() {
        let mut b = tar::Builder::new(Vec::new());
        raw(
            &mut b,
            "tool",
            tar::EntryType::Regular,
            0o6755,
            "",
            b"#!/bin/sh\n",
        );
        raw(&mut b, "d", tar::EntryType::Directory, 0o3777, "", b"");
        raw(&mut b, "null", tar::EntryType::Char, 0o666, "", b"");
        raw(&mut b, "pipe", tar::EntryType::Fifo, 0o666, "", b"");
        let dst = tempfile::tempdir().unwrap();
        let got = unpack(b.into_inner().unwrap(), dst.path()).await.unwrap();
        assert_eq!(got.files, 1);
        let mode = |p: &str| {
            std::fs::metadata(dst.path().join(p))
                .unwrap()
                .permissions()
                .mode()
                & 0o7777
        };
        assert_eq!(mode("tool"), 0o755);
        assert_eq!(mode("d"), 0o777);
        assert!(std::fs::symlink_metadata(dst.path().join("null")).is_err());
        assert!(std::fs::symlink_metadata(dst.path().join("pipe")).is_err());
    }

    #[tokio::test]
    async fn nothing_is_written_through_a_planted_symlink() {
        let outside = tempfile::tempdir().unwrap();
        let target = outside.path().join("target");
        std::fs::write(&target, "keep").unwrap();
        for (link, through) in [
            (outside.path().to_str().unwrap(), "l/new"),
            (target.to_str().unwrap(), "l"),
        ] {
            let mut b = tar::Builder::new(Vec::new());
            raw(&mut b, "l", tar::EntryType::Symlink, 0o777, link, b"");
            raw(&mut b, through, tar::EntryType::Regular, 0o644, "", b"evil");
            let dst = tempfile::tempdir().unwrap();
            let _ = unpack(b.into_inner().unwrap(), dst.path()).await;
            assert!(
                !outside.path().join("new").exists(),
                "written through {link}"
            );
            assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
        }
    }
}
