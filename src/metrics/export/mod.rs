//! Where `collect` writes its samples, one exporter per format behind one
//! trait (as hyperfine's `export`). Every file is either replaced whole
//! through [`replace_file`] or, with `--append`, appended to under an
//! exclusive `flock` in one write, so overlapping cron runs never interleave
//! or tear rows, and a file of another format or schema is refused rather
//! than mixed.

pub mod csv;
pub mod ndjson;
pub mod prometheus;

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::files::atomic::replace_file;
use crate::metrics::MetricsSample;
use crate::usage;

/// The output formats `collect` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    /// One JSON object per line.
    Ndjson,
    /// node_exporter's textfile collector format.
    Prometheus,
}

impl Format {
    pub fn exporter(self) -> Box<dyn Exporter> {
        match self {
            Format::Csv => Box::new(csv::CsvExporter),
            Format::Ndjson => Box::new(ndjson::NdjsonExporter),
            Format::Prometheus => Box::new(prometheus::PrometheusExporter),
        }
    }
}

/// One output format of metrics samples.
pub trait Exporter {
    /// One round of samples; `first` when the output starts with this round
    /// (a CSV writes its header then).
    fn serialize(&self, samples: &[MetricsSample], first: bool) -> Result<Vec<u8>>;

    /// Whether rounds may be appended to a file; when not, every round
    /// replaces the file whole.
    fn appends(&self) -> bool {
        true
    }

    /// Refuse to append to `existing` (not empty) when it holds another
    /// format or schema.
    fn check_existing(&self, _existing: &File, _path: &Path) -> Result<()> {
        Ok(())
    }
}

/// Where `collect` writes its rounds of samples.
pub struct MetricsOutput {
    path: Option<PathBuf>,
    exporter: Box<dyn Exporter>,
    append: bool,
    rounds: u64,
}

impl MetricsOutput {
    /// Prepare the output. With `--append` to an existing file, its content
    /// is checked now, before any node is contacted (a mismatch exits 2).
    pub fn open(path: Option<PathBuf>, format: Format, append: bool) -> Result<Self> {
        let exporter = format.exporter();
        if append && !exporter.appends() {
            return Err(usage!(
                "--append does not apply to --format prometheus: the textfile collector needs the file replaced whole"
            ));
        }
        if let (Some(p), true) = (&path, append) {
            if let Ok(f) = File::open(p) {
                if f.metadata()?.len() > 0 {
                    exporter.check_existing(&f, p)?;
                }
            }
        }
        Ok(MetricsOutput {
            path,
            exporter,
            append,
            rounds: 0,
        })
    }

    /// Write one round of samples: to stdout, replacing the file (the first
    /// round without `--append`, and every round of a format that does not
    /// append), or appended under lock.
    pub fn write_round(&mut self, samples: &[MetricsSample]) -> Result<()> {
        let first = self.rounds == 0;
        self.rounds += 1;
        let Some(path) = &self.path else {
            let body = self.exporter.serialize(samples, first)?;
            let mut out = std::io::stdout().lock();
            out.write_all(&body)?;
            return Ok(out.flush()?);
        };
        if !self.exporter.appends() || (first && !self.append) {
            replace_file(path, &self.exporter.serialize(samples, true)?)
        } else {
            append_locked(path, samples, self.exporter.as_ref())
        }
    }
}

/// Append whole rows under an exclusive lock: a new or empty file starts as
/// a first round (a CSV's header); a partial last line (a write cut off by a
/// crash) is removed before appending so it never glues onto a new row.
fn append_locked(path: &Path, samples: &[MetricsSample], exporter: &dyn Exporter) -> Result<()> {
    let mut f = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    f.lock()
        .with_context(|| format!("cannot lock {}", path.display()))?;
    let len = cut_partial_line(&f, path)?;
    if len > 0 {
        exporter.check_existing(&f, path)?;
    }
    let body = exporter.serialize(samples, len == 0)?;
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
    use crate::metrics::export::csv::tests::sample;
    use crate::metrics::{read_csv, CSV_HEADER};

    #[test]
    fn append_adds_one_header_and_cuts_torn_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.csv");
        append_locked(&p, &[sample("a")], &csv::CsvExporter).unwrap();
        // A crash mid-write left half a row behind.
        OpenOptions::new()
            .append(true)
            .open(&p)
            .unwrap()
            .write_all(b"2026-01-02T03:04:05Z,half")
            .unwrap();
        append_locked(&p, &[sample("b")], &csv::CsvExporter).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert_eq!(text.lines().filter(|l| *l == CSV_HEADER).count(), 1);
        assert!(!text.contains("half"));
        assert_eq!(read_csv(&p).unwrap().len(), 2);
    }

    #[test]
    fn append_refuses_another_schema_or_format() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.csv");
        std::fs::write(&p, "timestamp,node,cpu,memory,io\n").unwrap();
        let err = append_locked(&p, &[sample("a")], &csv::CsvExporter).unwrap_err();
        assert_eq!(crate::exit::exit_for(&err), crate::exit::Exit::Usage);
        assert!(err.to_string().contains("column 1 is 'timestamp'"), "{err}");
        assert!(MetricsOutput::open(Some(p.clone()), Format::Csv, true).is_err());
        assert!(MetricsOutput::open(Some(p), Format::Ndjson, true).is_err());
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "").unwrap();
        assert!(MetricsOutput::open(Some(empty.clone()), Format::Ndjson, true).is_ok());
        assert!(MetricsOutput::open(Some(empty), Format::Prometheus, true).is_err());
    }

    #[test]
    fn ndjson_appends_one_object_per_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.ndjson");
        for node in ["a", "b"] {
            append_locked(&p, &[sample(node)], &ndjson::NdjsonExporter).unwrap();
        }
        let text = std::fs::read_to_string(&p).unwrap();
        let back: Vec<MetricsSample> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(back, vec![sample("a"), sample("b")]);
    }
}
