//! Metrics samples on distctl's side and where they go: CSV with a fixed,
//! versioned header, NDJSON, or Prometheus text for node_exporter's textfile
//! collector. Appends hold an exclusive `flock` and go out in one write, so
//! overlapping cron runs never interleave or tear rows, and a file of another
//! schema is refused rather than mixed.

pub mod html;

use crate::files::atomic::replace_file;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::cli::MetricsFormat;
use crate::usage;

pub use distctl_proto::metrics::{MetricsSample, SampleStatus, Sampler, SCHEMA_VERSION};

/// The CSV header of schema [`SCHEMA_VERSION`]: the field names of
/// [`MetricsSample`] in order (a unit test holds the two together).
pub const CSV_HEADER: &str = "timestamp_utc,node,host,status,sampler,uptime_s,load1,load5,load15,\
cpu_pct,cores,mem_used_mib,mem_total_mib,swap_used_mib,disk_used_gib,disk_total_gib,\
disk_read_kib_s,disk_write_kib_s,net_rx_kib_s,net_tx_kib_s,error";

/// The controller's clock now, RFC 3339 UTC to the second.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

/// How a CSV header differs from ours, in words; `None` when it is ours.
pub fn header_difference(found: &str) -> Option<String> {
    let ours: Vec<&str> = CSV_HEADER.split(',').collect();
    let theirs: Vec<&str> = found.trim_end_matches(['\r', '\n']).split(',').collect();
    let v = SCHEMA_VERSION;
    (0..ours.len().max(theirs.len())).find_map(|i| match (ours.get(i), theirs.get(i)) {
        (Some(a), Some(b)) if a != b => Some(format!(
            "column {} is '{b}' where schema v{v} has '{a}'",
            i + 1
        )),
        (Some(a), None) => Some(format!(
            "it ends after {i} columns where schema v{v} goes on with '{a}'"
        )),
        (None, Some(b)) => Some(format!(
            "it has an extra column {} '{b}' (schema v{v} has {})",
            i + 1,
            ours.len()
        )),
        _ => None,
    })
}

/// Samples as CSV rows, with the header line first when asked.
pub fn csv_rows(samples: &[MetricsSample], header: bool) -> Result<Vec<u8>> {
    let mut w = csv::WriterBuilder::new()
        .has_headers(header)
        .from_writer(Vec::new());
    for s in samples {
        w.serialize(s)?;
    }
    if header && samples.is_empty() {
        w.write_record(CSV_HEADER.split(','))?;
    }
    w.into_inner().map_err(|e| anyhow::anyhow!("{e}"))
}

/// Samples as NDJSON: one object per line.
pub fn ndjson_rows(samples: &[MetricsSample]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    for s in samples {
        serde_json::to_writer(&mut out, s)?;
        out.push(b'\n');
    }
    Ok(out)
}

/// One Prometheus gauge family: name, help, and how to read it from a sample
/// (in base units: seconds, bytes, ratios).
struct Gauge {
    name: &'static str,
    help: &'static str,
    value: fn(&MetricsSample) -> Option<f64>,
}

const MIB: f64 = 1024.0 * 1024.0;
const GIB: f64 = MIB * 1024.0;

const GAUGES: &[Gauge] = &[
    Gauge {
        name: "distctl_node_up",
        help: "1 when distctl could connect to the node, else 0.",
        value: |s| {
            Some(if s.status == SampleStatus::Unreachable {
                0.0
            } else {
                1.0
            })
        },
    },
    Gauge {
        name: "distctl_node_sample_success",
        help: "1 when every metric of the node was sampled, else 0.",
        value: |s| {
            Some(if s.status == SampleStatus::Ok {
                1.0
            } else {
                0.0
            })
        },
    },
    Gauge {
        name: "distctl_node_sample_timestamp_seconds",
        help: "Controller clock when the sample was taken, seconds since the Unix epoch.",
        value: |s| {
            humantime::parse_rfc3339(&s.timestamp_utc)
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_secs() as f64)
        },
    },
    Gauge {
        name: "distctl_node_uptime_seconds",
        help: "Node uptime.",
        value: |s| s.uptime_s.map(|v| v as f64),
    },
    Gauge {
        name: "distctl_node_load1",
        help: "1-minute load average.",
        value: |s| s.load1,
    },
    Gauge {
        name: "distctl_node_load5",
        help: "5-minute load average.",
        value: |s| s.load5,
    },
    Gauge {
        name: "distctl_node_load15",
        help: "15-minute load average.",
        value: |s| s.load15,
    },
    Gauge {
        name: "distctl_node_cpu_busy_ratio",
        help: "Busy share of all CPUs over the sample interval (0-1).",
        value: |s| s.cpu_pct.map(|v| v / 100.0),
    },
    Gauge {
        name: "distctl_node_cpu_cores",
        help: "Online logical CPUs.",
        value: |s| s.cores.map(f64::from),
    },
    Gauge {
        name: "distctl_node_memory_used_bytes",
        help: "Memory in use (MemTotal - MemAvailable).",
        value: |s| s.mem_used_mib.map(|v| v as f64 * MIB),
    },
    Gauge {
        name: "distctl_node_memory_total_bytes",
        help: "Total memory.",
        value: |s| s.mem_total_mib.map(|v| v as f64 * MIB),
    },
    Gauge {
        name: "distctl_node_swap_used_bytes",
        help: "Swap in use.",
        value: |s| s.swap_used_mib.map(|v| v as f64 * MIB),
    },
    Gauge {
        name: "distctl_node_filesystem_used_bytes",
        help: "Used space of the workdir's filesystem, as df counts it.",
        value: |s| s.disk_used_gib.map(|v| v * GIB),
    },
    Gauge {
        name: "distctl_node_filesystem_size_bytes",
        help: "Size of the workdir's filesystem.",
        value: |s| s.disk_total_gib.map(|v| v * GIB),
    },
    Gauge {
        name: "distctl_node_disk_read_bytes_per_second",
        help: "Bytes read from disks per second over the sample interval.",
        value: |s| s.disk_read_kib_s.map(|v| v * 1024.0),
    },
    Gauge {
        name: "distctl_node_disk_written_bytes_per_second",
        help: "Bytes written to disks per second over the sample interval.",
        value: |s| s.disk_write_kib_s.map(|v| v * 1024.0),
    },
    Gauge {
        name: "distctl_node_network_receive_bytes_per_second",
        help: "Bytes received per second on all interfaces but loopback.",
        value: |s| s.net_rx_kib_s.map(|v| v * 1024.0),
    },
    Gauge {
        name: "distctl_node_network_transmit_bytes_per_second",
        help: "Bytes sent per second on all interfaces but loopback.",
        value: |s| s.net_tx_kib_s.map(|v| v * 1024.0),
    },
];

/// Samples in the Prometheus text exposition format, as node_exporter's
/// textfile collector reads it: gauges labelled by node and host, no
/// timestamps (the collector rejects them), families grouped with HELP/TYPE.
pub fn prometheus_text(samples: &[MetricsSample]) -> String {
    let mut out = String::new();
    for g in GAUGES {
        let rows: Vec<(&MetricsSample, f64)> = samples
            .iter()
            .filter_map(|s| (g.value)(s).map(|v| (s, v)))
            .collect();
        if rows.is_empty() {
            continue;
        }
        out.push_str(&format!(
            "# HELP {} {}\n# TYPE {} gauge\n",
            g.name, g.help, g.name
        ));
        for (s, v) in rows {
            out.push_str(&format!(
                "{}{{node=\"{}\",host=\"{}\"}} {}\n",
                g.name,
                label_value(&s.node),
                label_value(&s.host),
                v
            ));
        }
    }
    out
}

fn label_value(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Read a metrics CSV written by `collect`, refusing another schema (exit 2).
pub fn read_csv(path: &Path) -> Result<Vec<MetricsSample>> {
    let file = File::open(path).map_err(|e| usage!("cannot open {}: {e}", path.display()))?;
    let mut r = csv::ReaderBuilder::new().from_reader(std::io::BufReader::new(file));
    let header = r
        .headers()
        .map_err(|e| usage!("{}: not a metrics CSV: {e}", path.display()))?
        .iter()
        .collect::<Vec<_>>()
        .join(",");
    if let Some(diff) = header_difference(&header) {
        return Err(usage!(
            "{}: not a distctl metrics CSV of schema v{SCHEMA_VERSION}: {diff}",
            path.display()
        ));
    }
    r.deserialize()
        .enumerate()
        .map(|(i, row)| row.map_err(|e| usage!("{}: line {}: {e}", path.display(), i + 2)))
        .collect()
}

/// An NDJSON file to append to must hold NDJSON (or nothing): never mix a
/// CSV and JSON lines in one file.
fn check_ndjson(f: &File, path: &Path) -> Result<()> {
    let mut first = [0u8; 1];
    if f.read_at(&mut first, 0)? == 0 || first[0] == b'{' {
        return Ok(());
    }
    Err(usage!(
        "{}: not an NDJSON metrics file (it does not start with '{{'); refusing to append JSON lines to it",
        path.display()
    ))
}

/// Where `collect` writes its rounds of samples.
pub struct MetricsOutput {
    path: Option<PathBuf>,
    format: MetricsFormat,
    append: bool,
    rounds: u64,
}

impl MetricsOutput {
    /// Prepare the output. With `--append` to an existing CSV, its header is
    /// checked now, before any node is contacted (a mismatch exits 2).
    pub fn open(path: Option<PathBuf>, format: MetricsFormat, append: bool) -> Result<Self> {
        if append && format == MetricsFormat::Prometheus {
            return Err(usage!(
                "--append does not apply to --format prometheus: the textfile collector needs the file replaced whole"
            ));
        }
        if let (Some(p), true) = (&path, append) {
            if let Ok(f) = File::open(p) {
                match format {
                    MetricsFormat::Csv => check_header(&f, p)?,
                    _ => check_ndjson(&f, p)?,
                }
            }
        }
        Ok(MetricsOutput {
            path,
            format,
            append,
            rounds: 0,
        })
    }

    /// Write one round of samples: to stdout, replacing the file (the first
    /// round without `--append`, and every Prometheus round), or appended under lock.
    pub fn write_round(&mut self, samples: &[MetricsSample]) -> Result<()> {
        let first = self.rounds == 0;
        self.rounds += 1;
        let Some(path) = self.path.clone() else {
            let body = match self.format {
                MetricsFormat::Csv => csv_rows(samples, first)?,
                MetricsFormat::Json => ndjson_rows(samples)?,
                MetricsFormat::Prometheus => prometheus_text(samples).into_bytes(),
            };
            let mut out = std::io::stdout().lock();
            out.write_all(&body)?;
            return Ok(out.flush()?);
        };
        match self.format {
            MetricsFormat::Prometheus => replace_file(&path, prometheus_text(samples).as_bytes()),
            MetricsFormat::Csv if first && !self.append => {
                replace_file(&path, &csv_rows(samples, true)?)
            }
            MetricsFormat::Json if first && !self.append => {
                replace_file(&path, &ndjson_rows(samples)?)
            }
            MetricsFormat::Csv => append_locked(&path, samples, true),
            MetricsFormat::Json => append_locked(&path, samples, false),
        }
    }
}

/// Refuse a CSV whose first line is not our header.
fn check_header(f: &File, path: &Path) -> Result<()> {
    let mut buf = vec![0u8; 4096];
    let n = f.read_at(&mut buf, 0)?;
    if n == 0 {
        return Ok(());
    }
    let first = String::from_utf8_lossy(&buf[..n]);
    let first = first.split('\n').next().unwrap_or("");
    match header_difference(first) {
        None => Ok(()),
        Some(diff) => Err(usage!(
            "{}: its header differs from distctl's metrics schema v{SCHEMA_VERSION}: {diff}; append to a new file instead",
            path.display()
        )),
    }
}

/// Append whole rows under an exclusive lock: a new or empty CSV gets the
/// header first; a partial last line (a write cut off by a crash) is removed
/// before appending so it never glues onto a new row.
fn append_locked(path: &Path, samples: &[MetricsSample], csv: bool) -> Result<()> {
    let mut f = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    f.lock()
        .with_context(|| format!("cannot lock {}", path.display()))?;
    let len = cut_partial_line(&f, path)?;
    let body = if csv {
        if len > 0 {
            check_header(&f, path)?;
        }
        csv_rows(samples, len == 0)?
    } else {
        ndjson_rows(samples)?
    };
    f.write_all(&body)
        .and_then(|()| f.sync_data())
        .with_context(|| format!("cannot append to {}", path.display()))?;
    // The lock goes with the file descriptor.
    Ok(())
}

/// Truncate `f` after its last newline; returns the resulting length.
fn cut_partial_line(f: &File, path: &Path) -> Result<u64> {
    let len = f.metadata()?.len();
    let mut end = len;
    let mut buf = vec![0u8; 64 * 1024];
    while end > 0 {
        let start = end.saturating_sub(buf.len() as u64);
        let chunk = &mut buf[..(end - start) as usize];
        f.read_exact_at(chunk, start)?;
        if let Some(i) = chunk.iter().rposition(|&b| b == b'\n') {
            end = start + i as u64 + 1;
            break;
        }
        end = start;
    }
    if end < len {
        eprintln!(
            "distctl: warning: {}: removed a partial last line ({} bytes) left by an interrupted write",
            path.display(),
            len - end
        );
        f.set_len(end)?;
    }
    Ok(end)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(node: &str) -> MetricsSample {
        MetricsSample {
            timestamp_utc: "2026-01-02T03:04:05Z".into(),
            node: node.into(),
            host: "h\"x".into(),
            sampler: Some(Sampler::Ssh),
            cpu_pct: Some(12.5),
            cores: Some(4),
            mem_used_mib: Some(100),
            mem_total_mib: Some(1000),
            ..MetricsSample::default()
        }
    }

    #[test]
    fn header_is_the_sample_fields_in_order() {
        let out = String::from_utf8(csv_rows(&[sample("a")], true).unwrap()).unwrap();
        assert_eq!(out.lines().next().unwrap(), CSV_HEADER);
        let empty = String::from_utf8(csv_rows(&[], true).unwrap()).unwrap();
        assert_eq!(empty.trim_end(), CSV_HEADER);
    }

    #[test]
    fn header_differences_are_named() {
        assert_eq!(header_difference(CSV_HEADER), None);
        assert_eq!(header_difference(&format!("{CSV_HEADER}\r\n")), None);
        let renamed = CSV_HEADER.replace("cpu_pct", "cpu");
        assert_eq!(
            header_difference(&renamed).unwrap(),
            "column 10 is 'cpu' where schema v1 has 'cpu_pct'"
        );
        let short = CSV_HEADER.trim_end_matches(",error");
        assert!(header_difference(short)
            .unwrap()
            .contains("goes on with 'error'"));
        let long = format!("{CSV_HEADER},extra");
        assert!(header_difference(&long)
            .unwrap()
            .contains("extra column 22 'extra'"));
    }

    #[test]
    fn csv_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.csv");
        let mut down = sample("b");
        down.status = SampleStatus::Unreachable;
        down.error = Some("connection refused, really".into());
        down.cpu_pct = None;
        replace_file(&p, &csv_rows(&[sample("a"), down.clone()], true).unwrap()).unwrap();
        let back = read_csv(&p).unwrap();
        assert_eq!(back, vec![sample("a"), down]);
    }

    #[test]
    fn append_adds_one_header_and_cuts_torn_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.csv");
        append_locked(&p, &[sample("a")], true).unwrap();
        // A crash mid-write left half a row behind.
        OpenOptions::new()
            .append(true)
            .open(&p)
            .unwrap()
            .write_all(b"2026-01-02T03:04:05Z,half")
            .unwrap();
        append_locked(&p, &[sample("b")], true).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert_eq!(text.lines().filter(|l| *l == CSV_HEADER).count(), 1);
        assert!(!text.contains("half"));
        assert_eq!(read_csv(&p).unwrap().len(), 2);
    }

    #[test]
    fn append_refuses_another_schema() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.csv");
        std::fs::write(&p, "timestamp,node,cpu,memory,io\n").unwrap();
        let err = append_locked(&p, &[sample("a")], true).unwrap_err();
        assert_eq!(crate::exit::exit_for(&err), crate::exit::Exit::Usage);
        assert!(err.to_string().contains("column 1 is 'timestamp'"), "{err}");
        assert!(MetricsOutput::open(Some(p), MetricsFormat::Csv, true).is_err());
    }

    #[test]
    fn prometheus_families_and_labels() {
        let mut down = sample("b");
        down.status = SampleStatus::Unreachable;
        down.cpu_pct = None;
        let text = prometheus_text(&[sample("a"), down]);
        assert!(text.contains("# TYPE distctl_node_up gauge\n"));
        assert!(text.contains("distctl_node_up{node=\"a\",host=\"h\\\"x\"} 1\n"));
        assert!(text.contains("distctl_node_up{node=\"b\",host=\"h\\\"x\"} 0\n"));
        assert!(text.contains("distctl_node_cpu_busy_ratio{node=\"a\",host=\"h\\\"x\"} 0.125\n"));
        assert!(!text.contains("distctl_node_cpu_busy_ratio{node=\"b\""));
        assert!(text.contains(
            "distctl_node_sample_timestamp_seconds{node=\"a\",host=\"h\\\"x\"} 1767323045\n"
        ));
    }
}
