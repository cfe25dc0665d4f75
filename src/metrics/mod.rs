//! Metrics samples on distctl's side: the one sample type (shared with the
//! agent), where samples go ([`export`]: CSV with a fixed, versioned
//! header, NDJSON, Prometheus text) and the HTML report ([`html`]).

pub mod export;
pub mod html;
pub mod rounds;

pub use distctl_proto::metrics::{MetricsSample, SampleStatus, Sampler, SCHEMA_VERSION};
pub use export::csv::{read_csv, CSV_HEADER};
pub use export::{Format, MetricsOutput};

/// The controller's clock now, RFC 3339 UTC to the millisecond (rounds of
/// `--every 500ms` each get their own time).
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}

/// When a sample was taken, seconds since the Unix epoch; `None` when its
/// timestamp is not RFC 3339.
pub fn sample_time(s: &MetricsSample) -> Option<f64> {
    humantime::parse_rfc3339(&s.timestamp_utc)
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()
        .map(|d| d.as_secs_f64())
}
