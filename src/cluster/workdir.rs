//! Where distctl keeps things inside a node's workdir. Every function returns
//! a path for the remote shell; quote it with [`crate::transport::shell::quote`].

use crate::cluster::inventory::Node;
use crate::transport::shell::remote_path;

/// A shell function `safe_dir DIR...`: each DIR must be owned by the login
/// user and not writable by group or others (a symlink is judged by what
/// it points to), else it says why on stderr and fails. Another user who
/// can write the workdir or its `bin/` could swap the agent. One `id` and
/// one `find` for all DIRs (each process costs a fork on the node); a DIR
/// passes when `find` names it on a line of its own.
pub const SAFE_DIR_FN: &str = r#"safe_dir() { _u=$(id -u) || return 1; _ok=$(find -H "$@" -prune -user "$_u" ! -perm -020 ! -perm -002 2>/dev/null); for d in "$@"; do case "
$_ok
" in *"
$d
"*) ;; *) echo "refusing $d: not owned by $(id -un) or writable by group/others (chmod go-w it, or choose another workdir)" >&2; return 1;; esac; done; }"#;

/// The node's workdir as the remote shell sees it (relative to the login directory).
pub fn root(node: &Node) -> String {
    remote_path(&node.workdir)
}

/// Where `setup` installs worker-agent.
pub fn agent_path(node: &Node) -> String {
    format!("{}/bin/worker-agent", root(node))
}

/// Per-run temporaries: `<workdir>/runs/<run id>`.
pub fn run_dir(node: &Node, run_id: &str) -> String {
    format!("{}/runs/{run_id}", root(node))
}

/// The stamp `sync` leaves behind (time, source, checksum).
pub fn sync_stamp(node: &Node) -> String {
    format!("{}/sync_status", root(node))
}
