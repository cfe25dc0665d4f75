//! `distctl report metrics.csv -o report.html`: read a collect CSV, render
//! the self-contained HTML page, write it atomically.

use anyhow::Result;

use crate::cli::ReportArgs;
use crate::exit::Exit;
use crate::files::atomic::replace_file;
use crate::metrics::html::{render, TimedSample};
use crate::metrics::{read_csv, sample_time};
use crate::usage;

pub async fn run(args: &ReportArgs) -> Result<Exit> {
    crate::files::preflight::check_input(&args.metrics)?;
    crate::files::preflight::check_output(&args.output)?;
    let samples = read_csv(&args.metrics)?
        .into_iter()
        .enumerate()
        .map(|(i, sample)| {
            let t = sample_time(&sample).ok_or_else(|| {
                usage!(
                    "{}: line {}: bad timestamp '{}' (expected RFC 3339 UTC)",
                    args.metrics.display(),
                    i + 2,
                    sample.timestamp_utc
                )
            })?;
            Ok(TimedSample { t, sample })
        })
        .collect::<Result<Vec<_>>>()?;
    let html = render(&samples, &args.metrics.display().to_string());
    replace_file(&args.output, html.as_bytes())?;
    Ok(Exit::Ok)
}
