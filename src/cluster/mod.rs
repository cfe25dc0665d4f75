//! The cluster as distctl sees it: the inventory and its node sets, the
//! per-node driver every per-node command runs through and the outcome it
//! reports for each node, the worker-agent installed on each node, and where
//! things live in a node's workdir.

pub mod agent;
pub mod cores;
pub mod driver;
pub mod exec;
pub mod history;
pub mod inventory;
pub mod nodeset;
pub mod outcome;
pub mod workdir;

pub use driver::{each_node, Cluster, NodeResult, Start};
pub use outcome::NodeOutcome;
