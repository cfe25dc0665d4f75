//! Exit codes shared by every command (README "Exit codes"). When several
//! apply, the larger wins.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Exit {
    /// Everything asked for was done on every selected node.
    Ok = 0,
    /// Some node was unreachable or dropped, but the result is complete.
    Partial = 1,
    /// Usage, inventory or input error: nothing was attempted.
    Usage = 2,
    /// The job failed: no result written.
    Failed = 3,
    /// The remote command failed (non-zero exit) on at least one node.
    RemoteFailed = 4,
}

impl Exit {
    pub const ALL: [Exit; 5] = [
        Exit::Ok,
        Exit::Partial,
        Exit::Usage,
        Exit::Failed,
        Exit::RemoteFailed,
    ];

    pub fn code(self) -> i32 {
        self as i32
    }

    /// The README's "Exit codes" table, one line each (man pages print it).
    pub fn meaning(self) -> &'static str {
        match self {
            Exit::Ok => "everything asked for was done on every selected node",
            Exit::Partial => {
                "partial: some node was unreachable or dropped, but the result is complete"
            }
            Exit::Usage => "usage, inventory or input error: nothing was attempted",
            Exit::Failed => "the job failed or was interrupted: no complete result written",
            Exit::RemoteFailed => "the remote command failed (non-zero exit) on at least one node",
        }
    }

    /// Combine two outcomes: the larger code wins.
    pub fn max(self, other: Exit) -> Exit {
        std::cmp::max(self, other)
    }
}

/// An error that is the user's to fix (bad flag, bad inventory, bad input):
/// exits 2. Any other error ends the command with exit 3.
#[derive(Debug)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Shorthand: `return Err(usage!("no node selected"))`.
#[macro_export]
macro_rules! usage {
    ($($arg:tt)*) => {
        anyhow::Error::new($crate::exit::UsageError(format!($($arg)*)))
    };
}

/// The exit code an error maps to.
pub fn exit_for(err: &anyhow::Error) -> Exit {
    if err
        .chain()
        .any(|e| e.downcast_ref::<UsageError>().is_some())
    {
        Exit::Usage
    } else {
        Exit::Failed
    }
}

/// An error that is this machine's, whatever node it happened with: out of
/// file descriptors or memory, a full local disk or quota.
pub fn local_resource(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOSPC | libc::EDQUOT | libc::ENOMEM)
    )
}

/// The local resource problem in `err` or among its sources.
pub fn local_in<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a std::io::Error> {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if local_resource(io) {
                return Some(io);
            }
        }
        cur = e.source();
    }
    None
}

/// The error that stops a command on a problem of this machine's own
/// (`whose`: the node it happened with, or "a node"), which no node is
/// charged with.
pub fn local_stop(whose: &str, cause: impl fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("stopping: a local problem on this machine, not {whose}'s: {cause}")
}

/// The local resource problem somewhere in `err`'s chain of causes.
pub fn local_cause(err: &anyhow::Error) -> Option<&std::io::Error> {
    err.chain().find_map(local_in)
}
