//! Where results go: plain bytes (a local reference run) or frames for
//! distctl (`--framed`). Shared by the threads of one run behind a lock, so
//! frames never interleave.
//!
//! A failed write means nobody is listening any more (distctl went away and
//! sshd closed our stdout): the agent kills the process group of the command
//! it started, if any, and exits. SIGPIPE is ignored by the Rust runtime, so
//! that shows up here as EPIPE.

use std::fs::File;
use std::io::{self, Write};
use std::mem::ManuallyDrop;
use std::os::fd::FromRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use distctl_proto::codec::MAX_BLOCK;
use distctl_proto::frame::{write_data, write_frame, write_json, MAX_DATA};
use distctl_proto::{BlockCodec, End, Partial, Tag};

use crate::ops::Sink;

/// The process group of the running command (0: none).
static CHILD_GROUP: AtomicI32 = AtomicI32::new(0);

/// Heartbeat period: well under distctl's one-second expectation.
const HEARTBEAT: Duration = Duration::from_millis(400);

pub fn set_child_group(pgid: i32) {
    CHILD_GROUP.store(pgid, Ordering::SeqCst);
}

/// Kill the command's whole process group, if one was started.
pub fn kill_child_group() {
    let pgid = CHILD_GROUP.swap(0, Ordering::SeqCst);
    if pgid > 0 {
        // SAFETY: plain syscall; a negative pid names the process group.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
    }
}

/// The reader of our output is gone: stop everything now.
fn listener_gone(err: &io::Error) -> ! {
    kill_child_group();
    eprintln!("worker-agent: cannot write the output ({err}): stopping");
    std::process::exit(3);
}

/// A file descriptor we do not own (stdin/stdout) as a `File`, unbuffered.
pub fn borrow_fd(fd: i32) -> ManuallyDrop<File> {
    // SAFETY: fds 0-2 are open for the life of the process; ManuallyDrop never closes them.
    ManuallyDrop::new(unsafe { File::from_raw_fd(fd) })
}

/// Ask for a 1 MiB pipe buffer on `fd` if it is a pipe: fewer wake-ups
/// between sshd and the agent. Failure is harmless.
pub fn grow_pipe(fd: i32) {
    // SAFETY: fcntl on an fd we hold; errors are ignored.
    unsafe {
        libc::fcntl(fd, libc::F_SETPIPE_SZ, 1 << 20);
    }
}

enum Dest {
    Stdout(ManuallyDrop<File>),
    /// `--output FILE`: written to a temporary beside it, renamed at the end.
    File {
        file: File,
        tmp: PathBuf,
        path: PathBuf,
    },
}

impl Dest {
    fn writer(&mut self) -> &mut File {
        match self {
            Dest::Stdout(f) => f,
            Dest::File { file, .. } => file,
        }
    }
}

struct State {
    dest: Dest,
    data_bytes: u64,
    /// xxh3-128 of every data byte, sent in the `X` frame.
    data_hash: xxhash_rust::xxh3::Xxh3,
    /// The `X` frame went out: nothing may follow it.
    ended: bool,
    /// `--compress-output`: result bytes gathered into blocks for `Z` frames.
    z: Option<Squeeze>,
    /// `--compress-output auto`: start compressing once the input arrives
    /// compressed (cleared when it does).
    follow: bool,
}

/// Compressing the result: blocks of up to [`MAX_BLOCK`], each sent as a `Z`
/// frame where it shrinks, else as `D` frames. If the first
/// [`Squeeze::TRIAL_BLOCKS`] blocks shrink less than 10 % overall, the rest
/// goes plain: incompressible output costs four trial blocks, no more.
struct Squeeze {
    level: i32,
    codec: BlockCodec,
    pending: Vec<u8>,
    packed: Vec<u8>,
    blocks: u32,
    bytes_in: u64,
    bytes_out: u64,
}

impl Squeeze {
    const TRIAL_BLOCKS: u32 = 4;

    fn new(level: i32) -> Squeeze {
        Squeeze {
            level,
            codec: BlockCodec::new(),
            pending: Vec::with_capacity(MAX_BLOCK),
            packed: Vec::with_capacity(MAX_BLOCK),
            blocks: 0,
            bytes_in: 0,
            bytes_out: 0,
        }
    }

    /// Send what is pending.
    fn flush(&mut self, w: &mut File) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let shrinks = self
            .codec
            .compress(self.level, &self.pending, &mut self.packed)?;
        self.blocks += 1;
        self.bytes_in += self.pending.len() as u64;
        self.bytes_out += if shrinks {
            self.packed.len()
        } else {
            self.pending.len()
        } as u64;
        if shrinks {
            write_frame(w, Tag::Compressed, &self.packed)?;
        } else {
            write_data(w, Tag::Data, &self.pending)?;
        }
        self.pending.clear();
        Ok(())
    }

    /// Worth going on: still trying, or it paid on the trial blocks.
    fn pays(&self) -> bool {
        self.blocks < Self::TRIAL_BLOCKS || self.bytes_in * 10 >= self.bytes_out * 11
    }
}

/// The output of one run. Clone the `Arc` to share it between threads.
pub struct Output {
    state: Mutex<State>,
    framed: bool,
    /// `--chunk N`, echoed in the `X` frame.
    chunk: Option<u64>,
}

impl Output {
    /// `chunk`: echoed in the `X` frame; `compress`: zstd level for `Z`
    /// frames, `follow`: compress once the input arrives compressed (framed
    /// output only).
    pub fn open(
        path: Option<&Path>,
        framed: bool,
        chunk: Option<u64>,
        compress: Option<i32>,
        follow: bool,
    ) -> io::Result<Arc<Output>> {
        let dest = match path {
            None => {
                grow_pipe(1);
                Dest::Stdout(borrow_fd(1))
            }
            Some(path) => {
                let name = path.file_name().unwrap_or_default().to_string_lossy();
                let tmp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
                let file = File::create(&tmp)?;
                Dest::File {
                    file,
                    tmp,
                    path: path.to_path_buf(),
                }
            }
        };
        Ok(Arc::new(Output {
            state: Mutex::new(State {
                dest,
                data_bytes: 0,
                data_hash: xxhash_rust::xxh3::Xxh3::new(),
                ended: false,
                z: compress.filter(|_| framed).map(Squeeze::new),
                follow: follow && framed && compress.is_none(),
            }),
            framed,
            chunk,
        }))
    }

    pub fn framed(&self) -> bool {
        self.framed
    }

    /// Result bytes worth gathering before [`Output::data`]: a whole block
    /// when compressing.
    pub fn batch(&self) -> usize {
        let st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if st.z.is_some() || st.follow {
            MAX_BLOCK
        } else {
            MAX_DATA
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> io::Result<T>) -> T {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match f(&mut st) {
            Ok(v) => v,
            Err(e) => listener_gone(&e),
        }
    }

    /// Result bytes: `D` frames, or the bytes themselves.
    pub fn data(&self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        self.with(|st| {
            st.data_bytes += bytes.len() as u64;
            // The hash is of the result's own bytes, however they travel.
            st.data_hash.update(bytes);
            if st.follow && crate::input::compressed_input_seen() {
                st.follow = false;
                st.z = Some(Squeeze::new(distctl_proto::codec::DEFAULT_LEVEL));
            }
            let State { dest, z, .. } = st;
            if let Some(z) = z {
                let mut rest = bytes;
                while !rest.is_empty() {
                    let take = rest.len().min(MAX_BLOCK - z.pending.len());
                    z.pending.extend_from_slice(&rest[..take]);
                    rest = &rest[take..];
                    if z.pending.len() == MAX_BLOCK {
                        z.flush(dest.writer())?;
                    }
                }
                if !z.pays() {
                    z.flush(dest.writer())?;
                    st.z = None;
                }
                Ok(())
            } else if self.framed {
                write_data(st.dest.writer(), Tag::Data, bytes)
            } else {
                st.dest.writer().write_all(bytes)
            }
        })
    }

    /// Send result bytes still gathered for compression.
    fn flush_pending(st: &mut State) -> io::Result<()> {
        match &mut st.z {
            Some(z) => z.flush(st.dest.writer()),
            None => Ok(()),
        }
    }

    /// The command's stderr: `E` frames, or our own stderr when plain.
    pub fn stderr(&self, bytes: &[u8]) {
        if self.framed {
            self.with(|st| write_data(st.dest.writer(), Tag::Stderr, bytes))
        } else {
            let _ = io::stderr().write_all(bytes);
        }
    }

    fn heartbeat(&self) {
        self.with(|st| {
            if st.ended {
                return Ok(());
            }
            // A slow producer's bytes do not wait for a whole block.
            Output::flush_pending(st)?;
            let lines = crate::input::newlines_read().to_be_bytes();
            write_frame(st.dest.writer(), Tag::Heartbeat, &lines)
        })
    }

    /// Beat every [`HEARTBEAT`] until the run ends (framed runs only).
    pub fn start_heartbeats(self: &Arc<Self>) {
        if !self.framed {
            return;
        }
        let out = Arc::clone(self);
        std::thread::spawn(move || loop {
            std::thread::sleep(HEARTBEAT);
            out.heartbeat();
        });
    }

    /// An aggregate's answer: a `P` frame, or its text when plain.
    pub fn partial(&self, partial: &Partial, op: distctl_proto::Op) -> Result<(), String> {
        if self.framed {
            self.with(|st| {
                Output::flush_pending(st)?;
                write_json(st.dest.writer(), Tag::Partial, partial)
            });
        } else {
            let text = partial.render_text(op).map_err(|e| e.0)?;
            self.with(|st| st.dest.writer().write_all(text.as_bytes()));
        }
        Ok(())
    }

    /// Finish the run: the `X` frame when framed (with the data byte count
    /// filled in), the temporary output renamed into place when ok. Returns
    /// the process exit code.
    pub fn end(&self, mut end: End) -> i32 {
        // The X frame has a small limit (MAX_CONTROL): a long message is cut
        // at a character boundary, never allowed to break the frame.
        if let Some(msg) = end.error.as_mut() {
            if msg.len() > 4096 {
                let mut cut = 4096;
                while !msg.is_char_boundary(cut) {
                    cut -= 1;
                }
                msg.truncate(cut);
                msg.push('…');
            }
        }
        self.with(|st| {
            Output::flush_pending(st)?;
            end.data_bytes = st.data_bytes;
            end.data_hash = Some(format!("{:032x}", st.data_hash.digest128()));
            end.chunk = self.chunk;
            if self.framed {
                write_json(st.dest.writer(), Tag::End, &end)?;
            }
            st.ended = true;
            if let Dest::File { file, tmp, path } = &mut st.dest {
                if end.ok {
                    file.sync_all()?;
                    std::fs::rename(&*tmp, &*path)?;
                } else {
                    let _ = std::fs::remove_file(&*tmp);
                }
            }
            Ok(())
        });
        if !self.framed {
            if let Some(e) = &end.error {
                eprintln!("worker-agent: {e}");
            }
        }
        if end.ok {
            0
        } else {
            1
        }
    }
}

/// Batches small result pieces (grep lines) into frames of up to
/// [`MAX_DATA`]; large pieces go straight out.
pub struct Batcher<'a> {
    out: &'a Output,
    pending: Vec<u8>,
    size: usize,
}

impl<'a> Batcher<'a> {
    pub fn new(out: &'a Output) -> Batcher<'a> {
        let size = out.batch();
        Batcher {
            out,
            pending: Vec::with_capacity(size),
            size,
        }
    }
}

impl Sink for Batcher<'_> {
    fn data(&mut self, bytes: &[u8]) {
        if self.pending.len() + bytes.len() > self.size {
            self.flush();
        }
        if bytes.len() >= self.size / 2 {
            self.out.data(bytes);
        } else {
            self.pending.extend_from_slice(bytes);
        }
    }

    fn flush(&mut self) {
        self.out.data(&self.pending);
        self.pending.clear();
    }
}
