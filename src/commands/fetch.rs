//! `distctl fetch REMOTE_PATH --to LOCAL_DIR`: a file or directory from every
//! node into `LOCAL_DIR/<node>/<name>`, all nodes at once, as a tar stream
//! over the node's connection. Each node's copy is unpacked into a temporary
//! directory beside its destination and renamed into place only when
//! complete, replacing the copy of an earlier fetch.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;
use tokio::io::AsyncReadExt;

use crate::cli::{FetchArgs, Global};
use crate::cluster::driver::{failed_on_error, NodeResult};
use crate::cluster::inventory::{Inventory, Node};
use crate::cluster::outcome::OutcomeFields;
use crate::cluster::NodeOutcome;
use crate::exit::Exit;
use crate::transport::shell::quote;
use crate::transport::NodeSession;
use crate::units::human_bytes;
use crate::{cluster::workdir, output::table, sync::tarstream, usage};

/// One node's row in `--json`.
#[derive(Debug, Serialize)]
pub struct FetchRow<'a> {
    pub node: &'a str,
    /// `outcome` (`ok`, `failed`, `unreachable`), `detail` (null), `error`.
    #[serde(flatten)]
    pub outcome: OutcomeFields<'a>,
    /// Where the node's copy now is.
    pub path: Option<&'a Path>,
    /// Regular files received.
    pub files: u64,
    /// Bytes of the archive stream received.
    pub bytes: u64,
}

/// What one node sent.
#[derive(Debug)]
pub struct Fetched {
    path: PathBuf,
    files: u64,
    bytes: u64,
}

/// The remote command: the path's parent as the archive's base, so the
/// archive holds one top-level entry named like the path.
fn remote_command(node: &Node, path: &str) -> String {
    format!(
        r#"p={p}
case $p in /*) ;; *) cd -- {wd} || exit 2;; esac
if [ ! -e "$p" ] && [ ! -h "$p" ]; then echo "no such file or directory: $p" >&2; exit 2; fi
cd -- "$(dirname -- "$p")" && exec tar -cf - -- "$(basename -- "$p")""#,
        p = quote(path),
        wd = quote(&workdir::root(node)),
    )
}

pub async fn run(g: &Global, args: &FetchArgs) -> Result<Exit> {
    let path = args.remote_path.trim_end_matches('/');
    let name = match Path::new(path).file_name() {
        Some(n) if !path.is_empty() && !path.ends_with("/.") && path != "." => n.to_owned(),
        _ => {
            return Err(usage!(
                "REMOTE_PATH '{}' must name a file or directory (not '.', '..' or '/')",
                args.remote_path
            ))
        }
    };
    std::fs::create_dir_all(&args.to)
        .with_context(|| format!("cannot create {}", args.to.display()))?;

    let inventory = Inventory::load(g)?;
    let nodes = inventory.select(g)?;
    let fleet = g.fleet(&inventory, "fetch", None);
    let name = Path::new(&name);
    let results = super::each_node_shown(g, &fleet, "fetch", &nodes, |session| async move {
        failed_on_error(
            fetch_node(&session, path, name, &args.to)
                .await
                .map(|f| (NodeOutcome::Ok, f)),
        )
    })
    .await?;
    crate::output::summary::finish(g.json, &results, row, render)
}

fn row(r: &NodeResult<Fetched>) -> FetchRow<'_> {
    FetchRow {
        node: &r.node.name,
        outcome: OutcomeFields(&r.outcome),
        path: r.detail.as_ref().map(|f| f.path.as_path()),
        files: r.detail.as_ref().map_or(0, |f| f.files),
        bytes: r.detail.as_ref().map_or(0, |f| f.bytes),
    }
}

async fn fetch_node(s: &NodeSession, path: &str, name: &Path, to: &Path) -> Result<Fetched> {
    let node_dir = to.join(&s.node.name);
    std::fs::create_dir_all(&node_dir)
        .with_context(|| format!("cannot create {}", node_dir.display()))?;
    let tmp = tempfile::Builder::new()
        .prefix(".distctl-fetch-")
        .tempdir_in(&node_dir)
        .with_context(|| {
            format!(
                "cannot create a temporary directory in {}",
                node_dir.display()
            )
        })?;

    let mut proc = s.spawn(&remote_command(&s.node, path)).await?;
    drop(proc.stdin.take());
    let stdout = proc.take_stdout();
    // A tar that stops sending (a hung filesystem) is a timed-out node.
    let stdout: crate::transport::BoxRead =
        Box::pin(crate::transport::deadline::IdleBound::new(stdout));
    let mut stderr = std::mem::replace(&mut proc.stderr, Box::pin(tokio::io::empty()));
    let mut err = Vec::new();
    let (received, _) = tokio::join!(
        tarstream::receive(stdout, tmp.path().to_path_buf()),
        stderr.read_to_end(&mut err)
    );
    let code = proc.wait().await?;
    // GNU tar exits 1 when a file changed while it was read (a growing log):
    // the archive is still whole, so a complete one counts, with a warning.
    if code == Some(1) && received.is_ok() {
        let err = String::from_utf8_lossy(&err);
        if let Some(line) = err.lines().map(str::trim).rfind(|l| !l.is_empty()) {
            eprintln!("distctl: warning: {}: {line}", s.node.name);
        }
    } else if code != Some(0) {
        let err = String::from_utf8_lossy(&err);
        let line = err.lines().map(str::trim).rfind(|l| !l.is_empty());
        anyhow::bail!("{}", line.unwrap_or("tar failed on the node"));
    }
    let received = received?;

    let unpacked = tmp.path().join(name);
    std::fs::symlink_metadata(&unpacked).context("the node sent an empty archive")?;
    let dest = node_dir.join(name);
    if std::fs::symlink_metadata(&dest).is_ok() {
        // Moved into the temporary directory, removed with it.
        std::fs::rename(&dest, tmp.path().join(".previous"))
            .with_context(|| format!("cannot replace {}", dest.display()))?;
    }
    std::fs::rename(&unpacked, &dest)
        .with_context(|| format!("cannot move the copy into {}", dest.display()))?;
    Ok(Fetched {
        path: dest,
        files: received.files,
        bytes: received.bytes,
    })
}

fn render(rows: &[FetchRow]) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| match r.path {
            None => vec![r.node.to_string(), r.outcome.0.to_string()],
            Some(path) => vec![
                r.node.to_string(),
                r.outcome.0.to_string(),
                r.files.to_string(),
                human_bytes(r.bytes),
                path.display().to_string(),
            ],
        })
        .collect();
    table::render(&["NODE", "STATUS", "FILES", "RECEIVED", "PATH"], &cells)
}
