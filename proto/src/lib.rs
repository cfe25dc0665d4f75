//! What distctl and worker-agent both need to agree on: the agent's version,
//! the agent's command line for a chunk ([`agent_args`]), the framed stream
//! format ([`frame`]), compression on the wire ([`codec`]) and aggregate
//! partials ([`partial`]).

/// Version of the agent protocol and binary; `worker-agent version` prints it.
pub const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");

pub mod agent_args;
pub mod codec;
pub mod frame;
pub mod metrics;
pub mod op;
pub mod partial;
pub mod units;

pub use agent_args::AgentCall;
pub use codec::{BlockCodec, Compress};
pub use frame::{End, Frame, FrameDecoder, FrameError, FrameRef, Tag};
pub use op::Op;
pub use partial::{Num, Partial, PartialError};
