//! What people and scripts see: progress bars, aligned tables, per-node line
//! prefixes and folded blocks, and the closing summary of a many-node command.

pub mod gather;
pub mod json;
pub mod lines;
pub mod man;
pub mod progress;
pub mod relay;
pub mod run_summary;
pub mod summary;
pub mod table;

/// The reader of distctl's stdout went away (`distctl run ... | head`): a
/// write failed with EPIPE and stdout is a pipe or socket nobody reads any
/// more. distctl then stops as `cat` does, silently (see `main`). An EPIPE
/// from anything else (a pipe to ssh) while stdout is fine is an ordinary
/// error.
pub fn stdout_reader_gone(err: &anyhow::Error) -> bool {
    let broken_pipe = err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    });
    broken_pipe && stdout_has_no_reader()
}

/// fd 1 polls as an error or a hang-up: a pipe whose read end is closed,
/// or a socket whose peer is gone.
fn stdout_has_no_reader() -> bool {
    let mut fd = libc::pollfd {
        fd: 1,
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: one pollfd on our stack, a zero timeout.
    let ready = unsafe { libc::poll(&mut fd, 1, 0) };
    ready == 1 && fd.revents & (libc::POLLERR | libc::POLLHUP) != 0
}
