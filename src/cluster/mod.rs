//! The cluster as distctl sees it: the inventory and its node sets, the
//! worker-agent installed on each node, and where things live in a node's
//! workdir.

pub mod agent;
pub mod inventory;
pub mod nodeset;
pub mod workdir;
