//! NDJSON: one JSON object per sample per line, the CSV's keys.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use anyhow::Result;

use super::Exporter;
use crate::metrics::MetricsSample;
use crate::usage;

pub struct NdjsonExporter;

impl Exporter for NdjsonExporter {
    fn serialize(&self, samples: &[MetricsSample], _first: bool) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        for s in samples {
            serde_json::to_writer(&mut out, s)?;
            out.push(b'\n');
        }
        Ok(out)
    }

    /// An NDJSON file to append to must hold NDJSON: never mix a CSV and
    /// JSON lines in one file.
    fn check_existing(&self, f: &File, path: &Path) -> Result<()> {
        let mut first = [0u8; 1];
        if f.read_at(&mut first, 0)? == 0 || first[0] == b'{' {
            return Ok(());
        }
        Err(usage!(
            "{}: not an NDJSON metrics file (it does not start with '{{'); refusing to append JSON lines to it",
            path.display()
        ))
    }
}
