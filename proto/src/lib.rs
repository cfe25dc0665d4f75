//! What distctl and worker-agent both need to agree on: the agent's version and,
//! as the data path grows, the framed stream format and aggregate partials.

/// Version of the agent protocol and binary; `worker-agent version` prints it.
pub const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");

pub mod metrics;
