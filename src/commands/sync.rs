//! `distctl sync LOCAL_DIR [--to SUBDIR] [--delete]`: mirror a local
//! directory into every node's workdir (or SUBDIR under it), all nodes at
//! once, sending only what changed.
//!
//! With rsync on both ends, rsync runs over the node's existing SSH master
//! (`ssh -S <control socket>`): no second handshake. Otherwise distctl reads a
//! manifest of the remote tree (GNU `find -printf`: type, mode, size, mtime,
//! link target), compares it with the local tree and sends a tar stream of
//! just the changed entries. Either way a `sync_status` stamp (time, source,
//! destination, content checksum) is left in the workdir for `status`.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use futures::future::FutureExt;
use serde::Serialize;

use crate::cli::{Global, SyncArgs, SyncMethod};
use crate::cluster::driver::{failed_on_error, NodeResult};
use crate::cluster::inventory::Inventory;
use crate::cluster::outcome::OutcomeFields;
use crate::cluster::NodeOutcome;
use crate::exit::Exit;
use crate::sync::mirror::{mirror, Mirrored, SyncSpec};
use crate::sync::tree::Tree;
use crate::units::human_bytes;
use crate::{output::table, usage};

/// One node's row in `--json`.
#[derive(Debug, Serialize)]
pub struct SyncRow<'a> {
    pub node: &'a str,
    /// `outcome` (`ok`, `failed`, `unreachable`), `detail` (`synced`,
    /// `up-to-date`), `error`.
    #[serde(flatten)]
    pub outcome: OutcomeFields<'a>,
    pub method: Option<&'static str>,
    pub dest: Option<&'a str>,
    /// Entries (files, directories, symlinks) created or updated.
    pub changed: u64,
    /// Remote entries removed because they are gone locally (`--delete`).
    pub deleted: u64,
    /// Bytes sent to the node for the transfer.
    pub bytes_sent: u64,
    pub checksum: Option<&'a str>,
}

/// `--to` must stay inside the workdir: a relative path without `..`
/// (`./app/` is `app`).
fn check_subdir(sub: &str) -> Result<String> {
    use std::path::Component;
    let mut parts = Vec::new();
    for c in Path::new(sub).components() {
        match c {
            Component::Normal(p) => parts.push(p.to_string_lossy().into_owned()),
            Component::CurDir => {}
            _ => {
                return Err(usage!(
                    "--to '{sub}' must be a relative path inside the workdir (no '..')"
                ))
            }
        }
    }
    if parts.is_empty() {
        return Err(usage!(
            "--to '{sub}' must name a folder inside the workdir (relative, no '..')"
        ));
    }
    Ok(parts.join("/"))
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|d| {
            std::fs::metadata(d.join(program)).is_ok_and(|m| {
                m.is_file()
                    && std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111 != 0
            })
        })
    })
}

fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into buf.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "localhost".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

pub async fn run(g: &Global, args: &SyncArgs) -> Result<Exit> {
    match std::fs::metadata(&args.local_dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(usage!("{} is not a directory", args.local_dir.display())),
        Err(e) => return Err(usage!("cannot read {}: {e}", args.local_dir.display())),
    }
    let root = std::fs::canonicalize(&args.local_dir)
        .with_context(|| format!("cannot resolve {}", args.local_dir.display()))?;
    let subdir = args.to.as_deref().map(check_subdir).transpose()?;
    let local_rsync = args.method != SyncMethod::Tar && on_path("rsync");
    if args.method == SyncMethod::Rsync && !local_rsync {
        return Err(usage!(
            "--method rsync: rsync is not installed on this machine"
        ));
    }
    let scan_root = root.clone();
    let tree = tokio::task::spawn_blocking(move || {
        Tree::scan(&scan_root).with_context(|| format!("cannot read {}", scan_root.display()))
    })
    .await??;
    let tree = Arc::new(tree);
    let for_sum = tree.clone();
    let summing = tokio::task::spawn_blocking(move || for_sum.checksum());
    let checksum = async move {
        summing
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("checksumming the local tree: {e}"))
    }
    .boxed()
    .shared();
    if !tree.skipped.is_empty() && !g.quiet {
        eprintln!(
            "distctl: skipping {} special file(s) (sockets, FIFOs, devices), e.g. {}",
            tree.skipped.len(),
            tree.skipped[0].display()
        );
    }
    let spec = Arc::new(SyncSpec {
        tree,
        checksum,
        subdir,
        delete: args.delete,
        method: args.method,
        local_rsync,
        source: format!("{}:{}", hostname(), root.display()),
        time: humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string(),
    });

    let inventory = Inventory::load(g)?;
    let nodes = inventory.select(g)?;
    let fleet = g.fleet(&inventory, "sync", Some(&args.rollout));
    let spec = &spec;
    let results = super::each_node_shown(g, &fleet, "sync", &nodes, |session| async move {
        failed_on_error(mirror(&session, spec).await.map(|m| {
            let outcome = if m.up_to_date() {
                NodeOutcome::UpToDate
            } else {
                NodeOutcome::Synced
            };
            (outcome, m)
        }))
    })
    .await?;
    crate::output::summary::finish(g.json, &results, row, render)
}

fn row(r: &NodeResult<Mirrored>) -> SyncRow<'_> {
    let m = r.detail.as_ref();
    SyncRow {
        node: &r.node.name,
        outcome: OutcomeFields(&r.outcome),
        method: m.map(|m| m.method),
        dest: m.map(|m| m.dest.as_str()),
        changed: m.map_or(0, |m| m.transfer.changed),
        deleted: m.map_or(0, |m| m.transfer.deleted),
        bytes_sent: m.map_or(0, |m| m.transfer.bytes_sent),
        checksum: m.map(|m| m.checksum.as_str()),
    }
}

fn render(rows: &[SyncRow]) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| match r.method {
            None => vec![r.node.to_string(), r.outcome.0.to_string()],
            Some(method) => vec![
                r.node.to_string(),
                r.outcome.0.to_string(),
                r.changed.to_string(),
                r.deleted.to_string(),
                human_bytes(r.bytes_sent),
                method.to_string(),
                r.dest.unwrap_or_default().to_string(),
            ],
        })
        .collect();
    table::render(
        &[
            "NODE", "STATUS", "CHANGED", "DELETED", "SENT", "METHOD", "DEST",
        ],
        &cells,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subdir_stays_inside_the_workdir() {
        assert_eq!(check_subdir("app/").unwrap(), "app");
        assert_eq!(check_subdir("./a b/./c").unwrap(), "a b/c");
        assert!(check_subdir(".").is_err());
        assert!(check_subdir("../x").is_err());
        assert!(check_subdir("/etc").is_err());
        assert!(check_subdir("a/../b").is_err());
    }
}
