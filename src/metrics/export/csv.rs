//! CSV of schema [`SCHEMA_VERSION`]: the header is fixed (README "collect"),
//! and the same reader serves `--append`'s check and `distctl report`.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use anyhow::Result;

use super::Exporter;
use crate::metrics::{MetricsSample, SCHEMA_VERSION};
use crate::usage;

/// The CSV header of schema [`SCHEMA_VERSION`]: the field names of
/// [`MetricsSample`] in order (a unit test holds the two together).
pub const CSV_HEADER: &str = "timestamp_utc,node,host,status,sampler,uptime_s,load1,load5,load15,\
cpu_pct,cores,mem_used_mib,mem_total_mib,swap_used_mib,disk_used_gib,disk_total_gib,\
disk_read_kib_s,disk_write_kib_s,net_rx_kib_s,net_tx_kib_s,error";

pub struct CsvExporter;

impl Exporter for CsvExporter {
    /// Samples as CSV rows, with the header line first in a first round.
    fn serialize(&self, samples: &[MetricsSample], first: bool) -> Result<Vec<u8>> {
        let mut w = ::csv::WriterBuilder::new()
            .has_headers(first)
            .from_writer(Vec::new());
        for s in samples {
            w.serialize(neutralised(s))?;
        }
        if first && samples.is_empty() {
            w.write_record(CSV_HEADER.split(','))?;
        }
        w.into_inner().map_err(|e| anyhow::anyhow!("{e}"))
    }

    /// Refuse a CSV whose first line is not our header.
    fn check_existing(&self, f: &File, path: &Path) -> Result<()> {
        let mut buf = vec![0u8; 4096];
        let n = f.read_at(&mut buf, 0)?;
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

/// Read a metrics CSV written by `collect`, refusing another schema (exit 2).
/// A cell a spreadsheet would run as a formula (OWASP "CSV injection"):
/// text from a node or the inventory starting with `=`, `+`, `-`, `@`, tab
/// or carriage return gets a leading `'`, which spreadsheets show as text.
fn cell(s: &str) -> String {
    match s.as_bytes().first() {
        Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r') => format!("'{s}"),
        _ => s.to_string(),
    }
}

/// [`cell`] undone when reading our own CSV back.
fn uncell(s: &mut String) {
    if s.starts_with('\'') && cell(&s[1..]) == *s {
        s.remove(0);
    }
}

/// The sample with its free-text cells neutralised.
fn neutralised(s: &MetricsSample) -> MetricsSample {
    let mut s = s.clone();
    s.node = cell(&s.node);
    s.host = cell(&s.host);
    s.error = s.error.as_deref().map(cell);
    s
}

pub fn read_csv(path: &Path) -> Result<Vec<MetricsSample>> {
    let file = File::open(path).map_err(|e| usage!("cannot open {}: {e}", path.display()))?;
    let mut r = ::csv::ReaderBuilder::new().from_reader(std::io::BufReader::new(file));
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
        .map(|(i, row)| {
            let mut s: MetricsSample =
                row.map_err(|e| usage!("{}: line {}: {e}", path.display(), i + 2))?;
            uncell(&mut s.node);
            uncell(&mut s.host);
            if let Some(e) = s.error.as_mut() {
                uncell(e);
            }
            Ok(s)
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::files::atomic::replace_file;
    use crate::metrics::{SampleStatus, Sampler};

    pub(crate) fn sample(node: &str) -> MetricsSample {
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

    fn csv_rows(samples: &[MetricsSample], first: bool) -> Vec<u8> {
        CsvExporter.serialize(samples, first).unwrap()
    }

    #[test]
    fn header_is_the_sample_fields_in_order() {
        let out = String::from_utf8(csv_rows(&[sample("a")], true)).unwrap();
        assert_eq!(out.lines().next().unwrap(), CSV_HEADER);
        let empty = String::from_utf8(csv_rows(&[], true)).unwrap();
        assert_eq!(empty.trim_end(), CSV_HEADER);
        let later = String::from_utf8(csv_rows(&[sample("a")], false)).unwrap();
        assert!(later.starts_with("2026-01-02T03:04:05Z,a,"));
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
    fn formula_cells_are_neutralised_and_read_back() {
        let mut s = sample("=cmd|' /C calc'!A0");
        s.error = Some("@SUM(1+1)".into());
        s.host = "-2+3".into();
        let text = String::from_utf8(csv_rows(&[s.clone()], true)).unwrap();
        assert!(text.contains(",'=cmd|"), "{text}");
        assert!(text.contains(",'-2+3,"), "{text}");
        assert!(text.contains(",'@SUM(1+1)"), "{text}");
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("m.csv");
        std::fs::write(&p, &text).unwrap();
        let back = read_csv(&p).unwrap();
        assert_eq!(back[0].node, s.node);
        assert_eq!(back[0].host, s.host);
        assert_eq!(back[0].error, s.error);
    }

    #[test]
    fn csv_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.csv");
        let mut down = sample("b");
        down.status = SampleStatus::Unreachable;
        down.error = Some("connection refused, really".into());
        down.cpu_pct = None;
        replace_file(&p, &csv_rows(&[sample("a"), down.clone()], true)).unwrap();
        let back = read_csv(&p).unwrap();
        assert_eq!(back, vec![sample("a"), down]);
    }
}
