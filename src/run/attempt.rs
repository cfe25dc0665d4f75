//! One attempt at one chunk on one node: open a channel, stream the chunk
//! into `worker-agent --framed` (read by range from the input file, or from
//! memory for stdin), take the agent's answer ([`crate::run::reply`]), and verify the
//! result before it counts: an `X` frame saying ok whose byte counts match
//! what was sent and received (OpenSSH multiplexing has been seen to cut a
//! stream short while reporting success). Knows nothing of scheduling or
//! merging: the caller decides what a fault means.

use std::sync::Arc;
use std::time::Duration;

use distctl_proto::{End, Partial, Tag};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::output::progress::Traffic;
use crate::run::chunk::InputStream;
use crate::run::merge::ResultBuf;
use crate::run::reply::{keep_tail, receive};
use crate::run::schedule::Fault;
use crate::run::wire::{write_frames, FrameSender, NodeWire, Plan, Prober};
use crate::transport::{BoxRead, ChannelIn, NodeSession};

/// Bytes per read from the input and per write to a channel (the channel
/// pipes are widened to match, [`crate::transport::PIPE_SIZE`]).
const SEND_BLOCK: usize = 1 << 20;

/// The bytes of one chunk: a range of the planned input, or owned (stdin).
pub enum ChunkData {
    Range(Arc<InputStream>),
    Owned(Vec<u8>),
}

pub struct ChunkSpec {
    pub index: usize,
    pub start: u64,
    pub len: u64,
    /// 0-based index of the chunk's first line (numeric ops name bad lines).
    pub line_offset: Option<u64>,
    pub data: ChunkData,
    /// Where the bytes moved are counted as they go (the progress bar).
    pub traffic: Arc<Traffic>,
}

/// A verified result.
pub struct Verified {
    pub data: ResultBuf,
    pub partial: Option<Partial>,
    /// xxh3-128 of the bytes sent (when asked for, for the journal).
    pub checksum: Option<u128>,
    /// Lines in the chunk, as the agent counted them.
    pub lines: u64,
    /// Bytes on the channel up (the chunk, framed and compressed or not) and down.
    pub wire_sent: u64,
    pub wire_received: u64,
}

pub struct AttemptError {
    pub fault: Fault,
    pub message: String,
    /// The data itself is bad: no retry can help.
    pub input_error: bool,
}

impl AttemptError {
    pub fn new(fault: Fault, message: impl Into<String>) -> AttemptError {
        AttemptError {
            fault,
            message: message.into(),
            input_error: false,
        }
    }

    /// `fault`, unless `cause` is the controller's own resource problem.
    pub(crate) fn from_io(fault: Fault, context: &str, cause: &std::io::Error) -> AttemptError {
        let fault = if crate::exit::local_resource(cause) {
            Fault::Local
        } else {
            fault
        };
        AttemptError::new(fault, format!("{context}: {cause}"))
    }
}

/// What went up the channel. The checksum is `None` where distctl did not
/// read the bytes (spliced from the input file): the agent's `X` frame gives
/// it, and the line count always (the agent counts as it reads).
struct Sent {
    bytes: u64,
    checksum: Option<u128>,
    wire: u64,
}

/// How an attempt uses the wire: the node's compression state and the plan
/// the agent's command line was built from.
pub struct WireUse {
    pub node: Arc<NodeWire>,
    pub plan: Plan,
}

/// Stream the chunk into the agent's stdin, then close it.
async fn send(
    mut stdin: ChannelIn,
    spec: &ChunkSpec,
    want_checksum: bool,
    wire: &WireUse,
) -> std::io::Result<Sent> {
    if wire.plan.frames {
        return send_frames(stdin, spec, want_checksum, wire).await;
    }
    let sent = match &spec.data {
        ChunkData::Owned(data) => {
            for block in data.chunks(SEND_BLOCK) {
                stdin.write_all(block).await?;
                spec.traffic.sent(block.len() as u64);
            }
            Sent {
                bytes: data.len() as u64,
                checksum: None,
                wire: data.len() as u64,
            }
        }
        ChunkData::Range(input) => {
            // Spliced from the file's page-cache pages into the pipe: no
            // byte of the chunk passes through this process, and nothing
            // here reads it (the agent hashes it and counts its lines).
            // Where the file or the pipe cannot be spliced, blocks are read
            // and written instead. All inline: a hop to a blocking thread
            // per block cost more than the work itself.
            let mut buf = Vec::new();
            let end = spec.start + spec.len;
            let mut pos = spec.start;
            let mut splicing = true;
            while pos < end {
                let want = ((end - pos) as usize).min(SEND_BLOCK);
                let mut done = 0;
                if splicing {
                    match splice_range(&stdin, input, pos, want).await {
                        Ok(()) => done = want,
                        Err(Unspliced { moved, error: None }) => {
                            splicing = false;
                            done = moved;
                        }
                        Err(Unspliced { error: Some(e), .. }) => return Err(e),
                    }
                }
                if done < want {
                    buf.resize(want - done, 0);
                    input.read_exact_at(pos + done as u64, &mut buf)?;
                    stdin.write_all(&buf).await?;
                }
                spec.traffic.sent(want as u64);
                pos += want as u64;
            }
            Sent {
                bytes: spec.len,
                checksum: None,
                wire: spec.len,
            }
        }
    };
    stdin.shutdown().await?;
    Ok(sent)
}

/// Why [`splice_range`] stopped short: `moved` bytes went; `error` is a
/// real failure, `None` that this file or pipe cannot be spliced (write the
/// rest instead).
struct Unspliced {
    moved: usize,
    error: Option<std::io::Error>,
}

/// Move `len` bytes of the input from stream offset `pos` into the pipe with
/// splice(2): the pipe takes references to the file's page-cache pages.
async fn splice_range(
    pipe: &ChannelIn,
    input: &crate::run::chunk::InputStream,
    mut pos: u64,
    len: usize,
) -> Result<(), Unspliced> {
    let mut moved = 0;
    while moved < len {
        let Some((file, within, left)) = input.file_at(pos) else {
            let error = std::io::Error::from(std::io::ErrorKind::UnexpectedEof);
            return Err(Unspliced {
                moved,
                error: Some(error),
            });
        };
        let want = (len - moved).min(left as usize);
        let fail = |error| Unspliced {
            moved,
            error: Some(error),
        };
        pipe.writable().await.map_err(fail)?;
        let r = pipe.try_io(|| {
            let mut off = within as i64;
            crate::transport::splice(file, Some(&mut off), pipe, None, want)
        });
        match r {
            Ok(0) => {
                let error = std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the input shrank while being read",
                );
                return Err(fail(error));
            }
            Ok(n) => {
                moved += n;
                pos += n as u64;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOSYS)) => {
                return Err(Unspliced { moved, error: None })
            }
            Err(e) => return Err(fail(e)),
        }
    }
    Ok(())
}

/// Stream the chunk as frames, block by block: `Z` frames from the start
/// when the plan compresses, else `D` frames while `auto` times the channel
/// and tries the first blocks on the side, switching to `Z` frames for the
/// rest of the chunk the moment the node's decision says compression pays.
/// The checksum is of the chunk's own bytes.
async fn send_frames(
    mut stdin: ChannelIn,
    spec: &ChunkSpec,
    want_checksum: bool,
    wire: &WireUse,
) -> std::io::Result<Sent> {
    use distctl_proto::codec::{DEFAULT_LEVEL, MAX_BLOCK};
    let mut packer = wire.plan.compress_input.map(FrameSender::new);
    let mut probe = packer.is_none().then(|| Prober::new(&wire.node)).flatten();
    let mut hasher = want_checksum.then(crate::run::chunk::ChunkHash::new);
    let (mut plain_wire, mut pos) = (0u64, 0u64);
    let mut plain_block = Vec::new();
    while pos < spec.len {
        if packer.is_none() && probe.is_some() && wire.node.decision() == Some(true) {
            packer = Some(FrameSender::new(DEFAULT_LEVEL));
            probe = None;
        }
        let want = ((spec.len - pos) as usize).min(MAX_BLOCK);
        let mut block = match packer.as_mut() {
            Some(p) => p.buffer(),
            None => std::mem::take(&mut plain_block),
        };
        block.resize(want, 0);
        match &spec.data {
            ChunkData::Owned(data) => block.copy_from_slice(&data[pos as usize..][..want]),
            ChunkData::Range(input) => input.read_exact_at(spec.start + pos, &mut block)?,
        }
        if let Some(h) = hasher.as_mut() {
            h.update(&block);
        }
        spec.traffic.sent(want as u64);
        pos += want as u64;
        match packer.as_mut() {
            Some(p) => p.send(&mut stdin, block).await?,
            None => {
                if let Some(p) = probe.as_mut() {
                    p.before(&block);
                }
                let t0 = std::time::Instant::now();
                plain_wire += write_frames(&mut stdin, Tag::Data, &block).await?;
                if let Some(p) = probe.as_mut() {
                    p.after(want, t0.elapsed().as_secs_f64());
                }
                plain_block = block;
            }
        }
    }
    let mut wire_bytes = plain_wire;
    if let Some(p) = packer.as_mut() {
        p.finish(&mut stdin).await?;
        wire_bytes += p.wire_bytes;
    }
    stdin.shutdown().await?;
    Ok(Sent {
        bytes: pos,
        checksum: hasher.map(crate::run::chunk::ChunkHash::finish),
        wire: wire_bytes,
    })
}

/// The chunk's line count (the agent's) and, when the journal wants it, its
/// checksum: distctl's own where it read the bytes, else the agent's. Where both
/// hashed them, they must agree.
fn input_seen(
    sent: &Sent,
    end: &End,
    want_checksum: bool,
) -> Result<(u64, Option<u128>), AttemptError> {
    let theirs = match end.input_hash.as_deref() {
        Some(h) => Some(
            u128::from_str_radix(h, 16)
                .ok()
                .filter(|_| h.len() == 32)
                .ok_or_else(|| {
                    AttemptError::new(Fault::Failed, "the agent sent a malformed input hash")
                })?,
        ),
        None => None,
    };
    if let (Some(ours), Some(theirs)) = (sent.checksum, theirs) {
        if ours != theirs {
            return Err(AttemptError::new(
                Fault::Failed,
                "input hash mismatch: the agent read other bytes than were sent",
            ));
        }
    }
    let missing = |what: &str| {
        AttemptError::new(
            Fault::Failed,
            format!("the agent did not report the chunk's {what}"),
        )
    };
    let lines = end.input_lines.ok_or_else(|| missing("line count"))?;
    let checksum = match want_checksum {
        true => Some(
            sent.checksum
                .or(theirs)
                .ok_or_else(|| missing("input hash"))?,
        ),
        false => None,
    };
    Ok((lines, checksum))
}

fn last_line(bytes: &[u8]) -> String {
    crate::transport::CommandOutput {
        code: None,
        stdout: Vec::new(),
        stderr: bytes.to_vec(),
    }
    .stderr_line()
}

/// The `X` frame names this chunk and the hash of the bytes that arrived:
/// a node's answer for another chunk, or bytes changed on the way, are
/// refused (and the chunk runs again).
fn check_identity(end: &End, index: usize, data: &ResultBuf) -> Result<(), AttemptError> {
    if end.chunk != Some(index as u64) {
        let other = end
            .chunk
            .map_or_else(|| "no chunk".to_string(), |c| format!("chunk {c}"));
        return Err(AttemptError::new(
            Fault::Failed,
            format!("the agent answered for {other}, not chunk {index}"),
        ));
    }
    let got = crate::run::journal::checksum_hex(data.hash());
    if end.data_hash.as_deref() != Some(got.as_str()) {
        return Err(AttemptError::new(
            Fault::Failed,
            format!(
                "the result's hash {got} is not the agent's {}",
                end.data_hash.as_deref().unwrap_or("(none)")
            ),
        ));
    }
    Ok(())
}

/// Run one chunk on one node and verify the result: an `X` frame saying ok,
/// with the byte counts of what was sent and received. `data`: where the
/// result goes as it arrives; `input_sent` is called once the whole chunk is
/// sent while its result is still coming, with the bytes that took on the
/// channel (compressed where compression is on). `guarded`: the command
/// line starts with the agent's [`guard`](crate::cluster::agent::guard),
/// whose refusal is told apart ([`Fault::Unready`]).
// Each argument is one plain fact about the attempt; a struct of them would
// only move the list.
#[allow(clippy::too_many_arguments)]
pub async fn attempt(
    session: &NodeSession,
    cmdline: &str,
    spec: &ChunkSpec,
    expect_partial: bool,
    timeout: Duration,
    data: ResultBuf,
    want_checksum: bool,
    wire: &WireUse,
    guarded: bool,
    input_sent: impl FnOnce(u64),
) -> Result<Verified, AttemptError> {
    let mut proc = match tokio::time::timeout(timeout, session.spawn(cmdline)).await {
        Err(_) => return Err(AttemptError::new(Fault::Lost, "no channel opened in time")),
        Ok(Err(e)) => {
            let fault = if crate::exit::local_cause(&e).is_some() {
                Fault::Local
            } else {
                Fault::Refused
            };
            return Err(AttemptError::new(fault, format!("{e:#}")));
        }
        Ok(Ok(p)) => p,
    };
    let stdin = proc.stdin.take().expect("stdin is piped");
    let mut stdout = proc.stdout.take().expect("stdout is piped");
    let mut stderr: BoxRead = std::mem::replace(&mut proc.stderr, Box::pin(tokio::io::empty()));
    let errors = tokio::spawn(async move {
        let mut tail = Vec::new();
        let mut buf = vec![0u8; 8192];
        while let Ok(n) = stderr.read(&mut buf).await {
            if n == 0 {
                break;
            }
            keep_tail(&mut tail, &buf[..n]);
        }
        tail
    });
    let writer = send(stdin, spec, want_checksum, wire);
    let reader = receive(&mut stdout, timeout, data, &spec.traffic);
    tokio::pin!(writer, reader);
    let mut sent = None;
    let mut input_sent = Some(input_sent);
    let received = loop {
        tokio::select! {
            r = &mut reader => break r,
            w = &mut writer, if sent.is_none() => {
                if let (Some(f), Ok(s)) = (input_sent.take(), &w) {
                    f(s.wire);
                }
                sent = Some(w);
            }
        }
    };
    if sent.is_none()
        && received
            .as_ref()
            .is_ok_and(|r| r.end.as_ref().is_some_and(|e| e.ok))
    {
        sent = tokio::time::timeout(Duration::from_secs(5), &mut writer)
            .await
            .ok();
    }
    let channel_err = match tokio::time::timeout(Duration::from_secs(1), errors).await {
        Ok(Ok(t)) => t,
        _ => Vec::new(),
    };
    // The result is read to its end; the exit status adds nothing once the
    // End frame is verified, but is waited for so the channel closes cleanly.
    let status = tokio::time::timeout(Duration::from_secs(5), proc.wait()).await;
    let mut received = received?;
    let Some(end) = received.end.take() else {
        let code = match status {
            Ok(Ok(c)) => c,
            _ => None,
        };
        if guarded && code == Some(crate::cluster::agent::NOT_READY) {
            return Err(AttemptError::new(Fault::Unready, last_line(&channel_err)));
        }
        let why = match last_line(&channel_err) {
            l if l.is_empty() => match code {
                Some(c) => format!("the agent exited with code {c} before finishing"),
                None => "the connection closed before the chunk finished".to_string(),
            },
            l => l,
        };
        return Err(AttemptError::new(Fault::Lost, why));
    };
    if !end.ok {
        let mut msg = end.error.clone().unwrap_or_else(|| "failed".into());
        if let Some(c) = end.exit_code {
            msg = format!("command exited with code {c}");
        } else if let Some(s) = end.signal {
            msg = format!("command killed by signal {s}");
        }
        let tail = last_line(&received.stderr_tail);
        if !tail.is_empty() && !msg.contains(&tail) {
            msg.push_str(&format!(": {tail}"));
        }
        return Err(AttemptError {
            fault: Fault::Failed,
            message: msg,
            input_error: end.input_error,
        });
    }
    let sent = match sent {
        Some(Ok(s)) => s,
        Some(Err(e)) => return Err(AttemptError::from_io(Fault::Lost, "sending the chunk", &e)),
        None => {
            return Err(AttemptError::new(
                Fault::Lost,
                "the chunk was not fully sent",
            ))
        }
    };
    if end.input_bytes != sent.bytes || sent.bytes != spec.len {
        return Err(AttemptError::new(
            Fault::Failed,
            format!("the agent read {} of {} bytes", end.input_bytes, spec.len),
        ));
    }
    if end.data_bytes != received.data.len() {
        return Err(AttemptError::new(
            Fault::Lost,
            format!(
                "short result: {} of {} bytes arrived",
                received.data.len(),
                end.data_bytes
            ),
        ));
    }
    if received.data.is_direct() && received.data.len() != spec.len {
        return Err(AttemptError::new(
            Fault::Failed,
            format!(
                "the result of a length-preserving op has {} bytes for {} of input",
                received.data.len(),
                spec.len
            ),
        ));
    }
    let (lines, checksum) = input_seen(&sent, &end, want_checksum)?;
    // The lines the agent's heartbeats did not get to report.
    spec.traffic
        .lines(lines.saturating_sub(received.lines_read));
    check_identity(&end, spec.index, &received.data)?;
    if expect_partial && received.partial.is_none() {
        return Err(AttemptError::new(
            Fault::Failed,
            "the agent sent no partial",
        ));
    }
    Ok(Verified {
        data: received.data,
        partial: received.partial,
        checksum,
        lines,
        wire_sent: sent.wire,
        wire_received: received.wire,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::merge::MemoryBudget;

    fn end_for(chunk: Option<u64>, data: &[u8]) -> End {
        End {
            ok: true,
            chunk,
            data_bytes: data.len() as u64,
            data_hash: Some(format!("{:032x}", xxhash_rust::xxh3::xxh3_128(data))),
            ..End::default()
        }
    }

    fn result(data: &[u8]) -> ResultBuf {
        let mut b = ResultBuf::new(MemoryBudget::new(1 << 20));
        b.push(data).unwrap();
        b
    }

    #[test]
    fn the_end_frame_must_name_this_chunk_and_hash_the_bytes() {
        let data = b"RESULT\n";
        assert!(check_identity(&end_for(Some(3), data), 3, &result(data)).is_ok());
        let e = check_identity(&end_for(Some(4), data), 3, &result(data)).unwrap_err();
        assert!(e.message.contains("chunk 4, not chunk 3"), "{}", e.message);
        assert_eq!(e.fault, Fault::Failed);
        let e = check_identity(&end_for(None, data), 3, &result(data)).unwrap_err();
        assert!(e.message.contains("no chunk"), "{}", e.message);
        // Same length, other bytes: the hash tells.
        let e = check_identity(&end_for(Some(3), data), 3, &result(b"RESULT!")).unwrap_err();
        assert!(e.message.contains("hash"), "{}", e.message);
        let mut no_hash = end_for(Some(3), data);
        no_hash.data_hash = None;
        assert!(check_identity(&no_hash, 3, &result(data)).is_err());
    }
}
