//! Tar archives between a local directory and a remote command's pipes. The
//! `tar` crate is synchronous, so archives are built and unpacked on a
//! blocking thread and the bytes cross to the async side over a bounded
//! channel (backpressure: a slow node slows the reader of the local disk).

use std::fs::Permissions;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

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

/// Unpack the tar read from `r` into `dir` (modes and mtimes kept; entries
/// that would land outside `dir` are refused).
pub async fn receive(mut r: BoxRead, dir: PathBuf) -> Result<Received> {
    let (tx, rx) = mpsc::channel::<Vec<u8>>(8);
    let unpack = tokio::task::spawn_blocking(move || -> Result<u64> {
        let mut archive = tar::Archive::new(ChannelReader {
            rx,
            buf: Vec::new(),
            pos: 0,
        });
        archive.set_preserve_permissions(true);
        archive.set_preserve_mtime(true);
        archive.set_overwrite(true);
        let mut files = 0;
        // Directories stay writable until the end, so that a read-only one
        // can still receive its contents; their modes are set last.
        let mut dirs = Vec::new();
        for entry in archive.entries().context("reading the archive")? {
            let mut entry = entry.context("reading the archive")?;
            let path = entry.path()?.into_owned();
            let kind = entry.header().entry_type();
            if kind.is_file() {
                files += 1;
            }
            if !entry
                .unpack_in(&dir)
                .with_context(|| format!("unpacking {}", path.display()))?
            {
                anyhow::bail!(
                    "refusing archive entry outside the target: {}",
                    path.display()
                );
            }
            if kind.is_dir() {
                if let Ok(mode) = entry.header().mode() {
                    let p = dir.join(&path);
                    std::fs::set_permissions(&p, Permissions::from_mode(mode | 0o700))?;
                    dirs.push((p, mode));
                }
            }
        }
        for (p, mode) in dirs.iter().rev() {
            std::fs::set_permissions(p, Permissions::from_mode(mode & 0o7777))?;
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

#[cfg(test)]
mod tests {
    use super::*;
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
}
