//! `--json` documents on stdout. Every command prints its one document
//! through [`print`]; when a command fails before printing one, `main`
//! prints `{"error": …, "exit_code": …}` instead ([`print_error`]), so that
//! stdout always holds exactly one JSON document (`collect` streams NDJSON).

use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Result;

static PRINTED: AtomicBool = AtomicBool::new(false);

/// Print `doc` as the command's JSON document (pretty, one per run).
pub fn print<T: serde::Serialize + ?Sized>(doc: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(doc)?);
    PRINTED.store(true, Ordering::SeqCst);
    Ok(())
}

/// Print a one-line JSON document (`run`'s summary).
pub fn print_line<T: serde::Serialize + ?Sized>(doc: &T) -> Result<()> {
    println!("{}", serde_json::to_string(doc)?);
    PRINTED.store(true, Ordering::SeqCst);
    Ok(())
}

/// A failed command's document, unless it already printed one (its rows
/// say what failed).
pub fn print_error(error: &str, exit_code: i32) {
    if !PRINTED.load(Ordering::SeqCst) {
        println!(
            "{}",
            serde_json::json!({ "error": error, "exit_code": exit_code })
        );
    }
}
