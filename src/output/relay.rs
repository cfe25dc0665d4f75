//! Relaying many nodes' output streams at once: each stream cut into whole
//! lines prefixed with its node and printed from one thread (so lines of
//! different nodes never mix), captured, written to a file, or all three.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::output::lines::LineSplitter;
use crate::output::progress::NodesProgress;
use crate::transport::BoxRead;

/// Writes whole prefixed lines to stdout/stderr from one thread, so lines
/// from different nodes never mix.
pub struct LinePrinter {
    tx: mpsc::Sender<(bool, Vec<u8>)>,
    thread: std::thread::JoinHandle<()>,
}

impl LinePrinter {
    /// Lines are printed with `progress`'s line cleared, so the two never mix.
    pub fn start(progress: NodesProgress) -> LinePrinter {
        let (tx, mut rx) = mpsc::channel::<(bool, Vec<u8>)>(256);
        let thread = std::thread::spawn(move || {
            use std::io::Write;
            while let Some((to_err, bytes)) = rx.blocking_recv() {
                // A closed stdout (`| head`) must not stop the command on the nodes.
                let _ = progress.suspend(|| {
                    if to_err {
                        std::io::stderr().lock().write_all(&bytes)
                    } else {
                        let mut out = std::io::stdout().lock();
                        out.write_all(&bytes).and_then(|_| out.flush())
                    }
                });
            }
        });
        LinePrinter { tx, thread }
    }

    pub async fn print(&self, to_err: bool, bytes: Vec<u8>) {
        if !bytes.is_empty() {
            let _ = self.tx.send((to_err, bytes)).await;
        }
    }

    pub fn finish(self) {
        drop(self.tx);
        let _ = self.thread.join();
    }
}

/// Where one stream of one node goes: printed as prefixed lines (to
/// stderr when `.1`), kept in memory (at most `capture` bytes), written to
/// a file, or any of these.
pub struct StreamRoute<'a> {
    pub lines: Option<(LineSplitter, bool)>,
    pub capture: Option<usize>,
    pub file: Option<tokio::fs::File>,
    pub printer: &'a LinePrinter,
}

/// What was kept of a stream: its first bytes, and how many it had in all.
#[derive(Debug, Default)]
pub struct Captured {
    pub data: Vec<u8>,
    pub total: u64,
}

/// Read `r` to its end along `route`; returns what was captured.
pub async fn relay(mut r: BoxRead, mut sink: StreamRoute<'_>) -> std::io::Result<Captured> {
    let mut captured = Captured::default();
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let n = r.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        let data = &buf[..n];
        if let Some((split, to_err)) = sink.lines.as_mut() {
            let lines = split.push(data);
            sink.printer.print(*to_err, lines).await;
        }
        captured.total += n as u64;
        if let Some(cap) = sink.capture {
            let room = cap.saturating_sub(captured.data.len()).min(n);
            captured.data.extend_from_slice(&data[..room]);
        }
        if let Some(f) = sink.file.as_mut() {
            f.write_all(data).await?;
        }
    }
    if let Some((split, to_err)) = sink.lines.as_mut() {
        if let Some(last) = split.finish() {
            sink.printer.print(*to_err, last).await;
        }
    }
    if let Some(mut f) = sink.file.take() {
        f.flush().await?;
    }
    Ok(captured)
}
