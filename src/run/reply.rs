//! The agent's answer to one attempt, read from the channel's stdout pipe:
//! frames decoded as they arrive, the result gathered into its
//! [`ResultBuf`], or, for a result that goes straight to its place in the
//! output, spliced there from the pipe. Knows nothing of sending or of
//! verifying: [`crate::run::attempt`] does both.

use std::time::Duration;

use distctl_proto::frame::{FrameRef, HEADER_LEN, MAX_CONTROL, MAX_DATA};
use distctl_proto::{BlockCodec, End, FrameDecoder, Partial, Tag};
use tokio::io::AsyncReadExt;

use crate::output::progress::Traffic;
use crate::run::attempt::AttemptError;
use crate::run::merge::ResultBuf;
use crate::run::schedule::Fault;
use crate::transport::ChannelOut;

/// Bytes per read of the result stream.
const RECEIVE_BLOCK: usize = 1 << 20;
/// Tail of a failed command's stderr kept for the error message.
pub const STDERR_TAIL: usize = 2048;
/// What one attempt holds in memory besides its result, counted in the
/// memory budget: the read buffer, a frame being decoded (at most the
/// largest payload and its header), the last partial frame, stderr tails.
const RECEIVE_BUFFERS: usize =
    RECEIVE_BLOCK + HEADER_LEN + MAX_DATA + MAX_CONTROL + 2 * STDERR_TAIL;

/// The agent's answer as it came back down the channel, frame by frame, up
/// to the `X` frame.
pub struct AgentReply {
    pub data: ResultBuf,
    pub partial: Option<Partial>,
    pub end: Option<End>,
    pub stderr_tail: Vec<u8>,
    pub wire: u64,
    /// Lines of input the agent said it had read, in its last heartbeat.
    pub lines_read: u64,
}

/// Read the agent's answer from `stdout` up to the end of the stream,
/// the result into `data`.
pub async fn receive(
    stdout: &mut ChannelOut,
    timeout: Duration,
    data: ResultBuf,
    traffic: &Traffic,
) -> Result<AgentReply, AttemptError> {
    let _buffers = data.budget().charge(RECEIVE_BUFFERS);
    let mut got = AgentReply {
        data,
        partial: None,
        end: None,
        stderr_tail: Vec::new(),
        wire: 0,
        lines_read: 0,
    };
    if got.data.is_direct() {
        return receive_in_place(stdout, timeout, got, traffic).await;
    }
    let mut dec = FrameDecoder::new();
    let mut codec = BlockCodec::new();
    let mut block = Vec::new();
    loop {
        let n = read_within(stdout, dec.spare(RECEIVE_BLOCK), timeout).await?;
        if n == 0 {
            if dec.pending() > 0 {
                return Err(AttemptError::new(
                    Fault::Lost,
                    "the result stream was cut short",
                ));
            }
            return Ok(got);
        }
        traffic.received(n as u64);
        got.wire += n as u64;
        dec.filled(n);
        while let Some(frame) = dec
            .next_frame()
            .map_err(|e| AttemptError::new(Fault::Failed, e.to_string()))?
        {
            take_frame(&mut got, &mut codec, &mut block, frame, traffic)?;
        }
    }
}

/// [`receive`] for a result that goes straight to its place in the output:
/// frames are read one at a time, header first, and the payload of every
/// `D` frame is spliced from the pipe into the output file, so its bytes
/// never pass through this process (the kernel copies them once, from the
/// pipe into the page cache). Where the file refuses splice, the payloads
/// are read and written instead.
async fn receive_in_place(
    stdout: &mut ChannelOut,
    timeout: Duration,
    mut got: AgentReply,
    traffic: &Traffic,
) -> Result<AgentReply, AttemptError> {
    let mut codec = BlockCodec::new();
    let mut block = Vec::new();
    let mut payload = Vec::new();
    let mut splicing = true;
    loop {
        let mut head = [0u8; HEADER_LEN];
        if !read_exact_within(stdout, &mut head, timeout, true).await? {
            got.data.finish_staged().map_err(write_error)?;
            return Ok(got);
        }
        let (tag, len) = distctl_proto::frame::parse_header(&head)
            .map_err(|e| AttemptError::new(Fault::Failed, e.to_string()))?;
        let wire = (HEADER_LEN + len) as u64;
        if tag == Tag::Data && got.data.is_staged() {
            let room = got.data.in_place().expect("a direct result").2;
            if len as u64 > room {
                return Err(too_long(got.data.len() + room));
            }
            let spare = got.data.stage_spare(len).map_err(write_error)?;
            read_exact_within(stdout, spare, timeout, false).await?;
            got.data.staged(len).map_err(write_error)?;
            traffic.received(wire);
            got.wire += wire;
            continue;
        }
        if tag == Tag::Data && splicing {
            let (file, offset, room) = got.data.in_place().expect("a direct result");
            if len as u64 > room {
                return Err(too_long(got.data.len() + room));
            }
            let file = file.clone();
            let moved = splice_out(stdout, file.file(), offset, len, timeout).await?;
            got.data.placed(moved as u64).map_err(|e| {
                AttemptError::from_io(Fault::Local, "reading the result back from the output", &e)
            })?;
            if moved == len {
                traffic.received(wire);
                got.wire += wire;
                continue;
            }
            // This file cannot be spliced into: read the rest of the
            // payload (and every later one) instead.
            splicing = false;
            payload.resize(len - moved, 0);
            read_exact_within(stdout, &mut payload, timeout, false).await?;
            got.data.push(&payload).map_err(buffer_error)?;
            traffic.received(wire);
            got.wire += wire;
            continue;
        }
        payload.resize(len, 0);
        read_exact_within(stdout, &mut payload, timeout, false).await?;
        traffic.received(wire);
        got.wire += wire;
        let frame = FrameRef {
            tag,
            payload: &payload,
        };
        take_frame(&mut got, &mut codec, &mut block, frame, traffic)?;
    }
}

/// One read from the result pipe, bounded by the attempt's timeout.
async fn read_within(
    stdout: &mut ChannelOut,
    buf: &mut [u8],
    timeout: Duration,
) -> Result<usize, AttemptError> {
    match tokio::time::timeout(timeout, stdout.read(buf)).await {
        Err(_) => Err(silent(timeout)),
        Ok(Err(e)) => Err(AttemptError::new(
            Fault::Lost,
            format!("connection lost: {e}"),
        )),
        Ok(Ok(n)) => Ok(n),
    }
}

/// Fill `buf` from the result pipe. `false` when the stream ended before
/// the first byte and `at_boundary` allows that (the end between frames).
async fn read_exact_within(
    stdout: &mut ChannelOut,
    buf: &mut [u8],
    timeout: Duration,
    at_boundary: bool,
) -> Result<bool, AttemptError> {
    let mut have = 0;
    while have < buf.len() {
        let n = read_within(stdout, &mut buf[have..], timeout).await?;
        if n == 0 {
            if have == 0 && at_boundary {
                return Ok(false);
            }
            return Err(AttemptError::new(
                Fault::Lost,
                "the result stream was cut short",
            ));
        }
        have += n;
    }
    Ok(true)
}

fn silent(timeout: Duration) -> AttemptError {
    AttemptError::new(
        Fault::Lost,
        format!("no word from the node for {}", crate::units::Dur(timeout)),
    )
}

/// A node sent more result bytes than its chunk had (a length-preserving
/// op must not).
fn too_long(chunk_len: u64) -> AttemptError {
    AttemptError::new(
        Fault::Failed,
        format!("the result is longer than its chunk ({chunk_len} bytes)"),
    )
}

/// Writing a result into its place in the output failed (a full disk, an
/// I/O error): this machine's fault.
fn write_error(e: std::io::Error) -> AttemptError {
    AttemptError::from_io(Fault::Local, "cannot write the result into the output", &e)
}

fn buffer_error(e: std::io::Error) -> AttemptError {
    AttemptError::new(
        Fault::Local,
        format!("cannot buffer the result in a local temporary file: {e}"),
    )
}

/// Move `len` bytes from the result pipe into `file` at `offset` with
/// splice(2). Returns how many moved: all of them, or fewer when the file
/// refuses splice (the caller reads the rest).
async fn splice_out(
    stdout: &ChannelOut,
    file: &std::fs::File,
    offset: u64,
    len: usize,
    timeout: Duration,
) -> Result<usize, AttemptError> {
    let mut moved = 0;
    while moved < len {
        match tokio::time::timeout(timeout, stdout.readable()).await {
            Err(_) => return Err(silent(timeout)),
            Ok(Err(e)) => {
                return Err(AttemptError::new(
                    Fault::Lost,
                    format!("connection lost: {e}"),
                ))
            }
            Ok(Ok(())) => {}
        }
        let r = stdout.try_io(|| {
            let mut off = (offset + moved as u64) as i64;
            crate::transport::splice(stdout, None, file, Some(&mut off), len - moved)
        });
        match r {
            Ok(0) => {
                return Err(AttemptError::new(
                    Fault::Lost,
                    "the result stream was cut short",
                ))
            }
            Ok(n) => moved += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOSYS)) => {
                return Ok(moved)
            }
            // Reading a pipe that is readable does not fail: the output
            // file did (a full disk, an I/O error), which is this machine's.
            Err(e) => {
                return Err(AttemptError::new(
                    Fault::Local,
                    format!("cannot write the result into the output: {e}"),
                ))
            }
        }
    }
    Ok(moved)
}

/// Act on one frame of the agent's answer.
fn take_frame(
    got: &mut AgentReply,
    codec: &mut BlockCodec,
    block: &mut Vec<u8>,
    frame: FrameRef<'_>,
    traffic: &Traffic,
) -> Result<(), AttemptError> {
    let payload = frame.payload;
    match frame.tag {
        // Spilling is local: whatever goes wrong there is ours.
        Tag::Data => got.data.push(payload).map_err(buffer_error)?,
        Tag::Compressed => {
            codec
                .decompress(payload, block)
                .map_err(|e| AttemptError::new(Fault::Failed, e.to_string()))?;
            got.data.push(block).map_err(buffer_error)?
        }
        Tag::Stderr => keep_tail(&mut got.stderr_tail, payload),
        Tag::Heartbeat => {
            // Lines read so far (progress only): what is new since the last.
            if let Ok(n) = <[u8; 8]>::try_from(payload) {
                let n = u64::from_be_bytes(n);
                traffic.lines(n.saturating_sub(got.lines_read));
                got.lines_read = got.lines_read.max(n);
            }
        }
        Tag::Partial => {
            got.partial = Some(
                frame
                    .json()
                    .map_err(|e| AttemptError::new(Fault::Failed, e.to_string()))?,
            )
        }
        Tag::End => {
            got.end = Some(
                frame
                    .json()
                    .map_err(|e| AttemptError::new(Fault::Failed, e.to_string()))?,
            )
        }
    }
    Ok(())
}

/// Keep the last [`STDERR_TAIL`] bytes of a command's stderr.
pub fn keep_tail(tail: &mut Vec<u8>, more: &[u8]) {
    tail.extend_from_slice(more);
    if tail.len() > STDERR_TAIL {
        tail.drain(..tail.len() - STDERR_TAIL);
    }
}
