//! The figures of a run, filled in by the runner and printed by
//! [`crate::output::run_summary`].

use serde::Serialize;

/// Per-node figures for the summary.
#[derive(Debug, Default, Clone, Serialize)]
pub struct NodeSummary {
    pub node: String,
    /// Its slots as the run ended: the inventory's `slots`, else its cores
    /// or one, widened for a distant node (the look-ahead runs up to one
    /// more chunk per slot).
    pub slots: usize,
    /// Its quickest channel open in milliseconds: the round trip that
    /// widens a distant node's slots (`None` for the local node).
    pub round_trip_ms: Option<f64>,
    pub chunks: u64,
    pub bytes: u64,
    /// Sum of the node's chunk times (chunks overlap, so this exceeds wall time).
    #[serde(serialize_with = "millis")]
    pub busy_seconds: f64,
    pub faults: u64,
    /// Taken out of the run after repeated faults.
    pub removed: bool,
    /// Compression on the wire as it ended up: `none`, `zstd:LEVEL`, or
    /// `auto` with what it decided (`auto:zstd:1`, `auto:none`).
    pub compress: String,
    /// Bytes of the node's verified chunks on the channel, up and down
    /// (frame headers included; compressed where compression was on).
    pub wire_bytes_sent: u64,
    pub wire_bytes_received: u64,
}

#[derive(Debug, Default, Serialize)]
pub struct RunSummary {
    pub op: String,
    pub chunks: usize,
    /// Chunks processed by this invocation.
    pub chunks_run: usize,
    /// Chunks taken from the journal of an interrupted run (`--resume`).
    pub chunks_resumed: usize,
    pub bytes: u64,
    pub lines: u64,
    pub output_bytes: u64,
    #[serde(serialize_with = "millis")]
    pub seconds: f64,
    pub retries: u64,
    pub nodes: Vec<NodeSummary>,
    pub unreachable: Vec<String>,
}

/// Seconds in `--json` to the millisecond (`1.387`, not `1.3871041960000001`).
fn millis<S: serde::Serializer>(secs: &f64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64((secs * 1000.0).round() / 1000.0)
}
