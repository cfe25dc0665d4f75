//! Where distctl keeps things inside a node's workdir. Every function returns
//! a path for the remote shell; quote it with [`crate::transport::shell::quote`].

use crate::cluster::inventory::Node;
use crate::transport::shell::remote_path;

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
