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

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use futures::future::{BoxFuture, FutureExt, Shared};
use serde::Serialize;

use crate::cli::{Global, SyncArgs, SyncMethod};
use crate::cluster::inventory::{Inventory, Node};
use crate::commands::for_each_node;
use crate::exit::Exit;
use crate::sync::tree::{self, Tree};
use crate::transport::shell::quote;
use crate::transport::NodeSession;
use crate::units::human_bytes;
use crate::{cluster::workdir, output::table, usage};

/// What every node gets: the scanned tree and where it goes.
struct Job {
    tree: Arc<Tree>,
    /// Computed while the nodes connect and transfer; needed for the stamp.
    checksum: Shared<BoxFuture<'static, Result<String, String>>>,
    subdir: Option<String>,
    delete: bool,
    method: SyncMethod,
    local_rsync: bool,
    /// `host:/abs/path` of the local directory, for the stamp.
    source: String,
    time: String,
}

#[derive(Debug, Serialize)]
pub struct NodeSync {
    pub node: String,
    /// `synced`, `up_to_date`, `failed` or `unreachable`.
    pub status: &'static str,
    pub method: Option<&'static str>,
    pub dest: Option<String>,
    /// Entries (files, directories, symlinks) created or updated.
    pub changed: u64,
    /// Remote entries removed because they are gone locally (`--delete`).
    pub deleted: u64,
    /// Bytes sent to the node for the transfer.
    pub bytes_sent: u64,
    pub checksum: Option<String>,
    pub error: Option<String>,
}

impl NodeSync {
    fn failed(node: &Node, status: &'static str, error: String) -> NodeSync {
        NodeSync {
            node: node.name.clone(),
            status,
            method: None,
            dest: None,
            changed: 0,
            deleted: 0,
            bytes_sent: 0,
            checksum: None,
            error: Some(error),
        }
    }
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

fn dest(node: &Node, subdir: Option<&str>) -> String {
    match subdir {
        Some(s) => format!("{}/{s}", workdir::root(node)),
        None => workdir::root(node),
    }
}

/// Top-level names in the workdir that belong to distctl itself (agent,
/// runs, the stamp): a sync into the workdir root never deletes them.
fn reserved(node: &Node) -> Vec<String> {
    let root = format!("{}/", workdir::root(node));
    [
        workdir::agent_path(node),
        workdir::run_dir(node, "x"),
        workdir::sync_stamp(node),
    ]
    .iter()
    .filter_map(|p| p.strip_prefix(&root))
    .filter_map(|rest| rest.split('/').next())
    .map(str::to_string)
    .collect()
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
    let job = Arc::new(Job {
        tree,
        checksum,
        subdir,
        delete: args.delete,
        method: args.method,
        local_rsync,
        source: format!("{}:{}", hostname(), root.display()),
        time: humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string(),
    });

    let nodes = Inventory::load(g)?.select(g)?;
    let rows: Vec<NodeSync> = for_each_node(g, &nodes, |node, conn| {
        let job = job.clone();
        async move {
            match conn {
                Err(e) => NodeSync::failed(node, "unreachable", e.reason),
                Ok(session) => {
                    let row = sync_node(&session, &job)
                        .await
                        .unwrap_or_else(|e| NodeSync::failed(node, "failed", format!("{e:#}")));
                    session.close().await;
                    row
                }
            }
        }
    })
    .await?;

    crate::output::summary::finish(g, &rows, render, |r| {
        (r.node.as_str(), r.status, r.error.is_some())
    })
}

async fn sync_node(s: &NodeSession, job: &Job) -> Result<NodeSync> {
    let node = &s.node;
    let dest = dest(node, job.subdir.as_deref());
    let probe = s
        .run(
            &format!(
                "mkdir -p -- {d} && {{ command -v rsync >/dev/null 2>&1 && echo rsync || echo none; }}",
                d = quote(&dest)
            ),
            None,
        )
        .await?;
    if !probe.success() {
        anyhow::bail!("cannot create {dest}: {}", probe.failure_reason());
    }
    let remote_rsync = String::from_utf8_lossy(&probe.stdout).trim() == "rsync";
    let use_rsync = match job.method {
        SyncMethod::Tar => false,
        SyncMethod::Auto => job.local_rsync && remote_rsync,
        SyncMethod::Rsync if !remote_rsync => {
            anyhow::bail!("--method rsync: rsync is not installed on the node")
        }
        SyncMethod::Rsync => true,
    };
    let keep: Vec<String> = if job.subdir.is_none() {
        reserved(node)
    } else {
        Vec::new()
    };
    let (method, t) = if use_rsync {
        ("rsync", rsync(s, job, &dest, &keep).await?)
    } else {
        ("tar", tar(s, job, &dest, &keep).await?)
    };
    let checksum = write_stamp(s, job, &dest).await?;
    Ok(NodeSync {
        node: node.name.clone(),
        status: if t.changed == 0 && t.deleted == 0 {
            "up_to_date"
        } else {
            "synced"
        },
        method: Some(method),
        dest: Some(dest),
        changed: t.changed,
        deleted: t.deleted,
        bytes_sent: t.bytes_sent,
        checksum: Some(checksum),
        error: None,
    })
}

#[derive(Debug, Default, PartialEq, Eq)]
struct Transfer {
    changed: u64,
    deleted: u64,
    bytes_sent: u64,
}

/// rsync over the node's own master connection (`ssh -S`), or to the local
/// path for the built-in node.
async fn rsync(s: &NodeSession, job: &Job, dest: &str, keep: &[String]) -> Result<Transfer> {
    let mut cmd = tokio::process::Command::new("rsync");
    // -rlpt: recursive, symlinks as links, permissions, mtimes; never owners.
    cmd.args(["-rlpt", "--stats", "--itemize-changes", "--protect-args"]);
    if job.delete {
        cmd.arg("--delete");
    }
    for k in keep {
        cmd.arg(format!("--filter=P /{k}"));
    }
    cmd.arg(format!("{}/", job.tree.root.display()));
    match s.control_socket() {
        Some(socket) => {
            // The host name is a placeholder: ssh goes through the socket and
            // never opens a connection of its own (ControlMaster=no).
            cmd.arg("-e").arg(format!(
                "ssh -F /dev/null -o BatchMode=yes -o ControlMaster=no -S {}",
                socket.display()
            ));
            cmd.arg(format!("distctl-node:{dest}/"));
        }
        None => {
            let home = std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_default();
            cmd.arg(format!("{}/", home.join(dest).display()));
        }
    }
    cmd.stdin(std::process::Stdio::null());
    let out = cmd.output().await.context("cannot run rsync")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let line = err
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or("no message");
        anyhow::bail!("rsync failed ({}): {line}", out.status);
    }
    Ok(parse_rsync(&stdout))
}

/// Count itemized changes and read "Total bytes sent" from `--stats`.
fn parse_rsync(out: &str) -> Transfer {
    let mut t = Transfer::default();
    for line in out.lines() {
        if line.starts_with("*deleting ") {
            t.deleted += 1;
        } else if let Some(rest) = line.strip_prefix("Total bytes sent:") {
            t.bytes_sent = rest
                .chars()
                .filter(char::is_ascii_digit)
                .collect::<String>()
                .parse()
                .unwrap_or(0);
        } else if line.len() > 12
            && line.as_bytes()[11] == b' '
            && b"<>ch.".contains(&line.as_bytes()[0])
            && b"fdLDS".contains(&line.as_bytes()[1])
        {
            // `.` first: no content change; count it only for new permissions.
            let attrs = &line[2..11];
            // The destination itself (`./`) is not an entry of the tree.
            if (!line.starts_with('.') || attrs.contains('p')) && &line[12..] != "./" {
                t.changed += 1;
            }
        }
    }
    t
}

/// Manifest, compare, remove what must go, then one tar stream of the changed
/// entries. A node without GNU find gets everything.
async fn tar(s: &NodeSession, job: &Job, dest: &str, keep: &[String]) -> Result<Transfer> {
    let d = quote(dest);
    let manifest = s
        .run(&format!("cd -- {d} && {}", tree::MANIFEST_FIND), None)
        .await?;
    let remote = if manifest.success() {
        tree::parse_manifest(&manifest.stdout)
            .map_err(|e| anyhow::anyhow!("unreadable remote manifest: {e}"))?
    } else {
        Vec::new()
    };
    let keep: Vec<&str> = keep.iter().map(String::as_str).collect();
    let plan = tree::plan(&job.tree, &remote, job.delete, &keep);
    let mut t = Transfer {
        changed: plan.send.len() as u64,
        deleted: plan.deleted as u64,
        bytes_sent: 0,
    };
    if !plan.remove.is_empty() {
        let mut list = Vec::new();
        for p in &plan.remove {
            list.extend_from_slice(std::os::unix::ffi::OsStrExt::as_bytes(p.as_os_str()));
            list.push(0);
        }
        t.bytes_sent += list.len() as u64;
        let out = s
            .run(&format!("cd -- {d} && xargs -0 rm -rf --"), Some(&list))
            .await?;
        if !out.success() {
            anyhow::bail!("removing old entries failed: {}", out.failure_reason());
        }
    }
    if !plan.send.is_empty() {
        let paths: Vec<PathBuf> = plan
            .send
            .iter()
            .map(|&i| job.tree.entries[i].path.clone())
            .collect();
        // -p keeps modes (exec bits), -o never chowns to the archive's owner.
        let mut proc = s.spawn(&format!("cd -- {d} && tar -xpof -")).await?;
        let stdin = proc.stdin.take().context("no stdin to the node")?;
        let mut err = Vec::new();
        let mut stderr = std::mem::replace(&mut proc.stderr, Box::pin(tokio::io::empty()));
        let (sent, _) = tokio::join!(
            crate::sync::tarstream::send(job.tree.root.clone(), paths, stdin),
            tokio::io::AsyncReadExt::read_to_end(&mut stderr, &mut err)
        );
        let code = proc.wait().await?;
        let err = String::from_utf8_lossy(&err);
        let line = err
            .lines()
            .map(str::trim)
            .rfind(|l| !l.is_empty())
            .unwrap_or("");
        if code != Some(0) {
            anyhow::bail!("tar on the node failed: {line}");
        }
        t.bytes_sent += sent?;
    }
    Ok(t)
}

/// The stamp is written to a temporary file and renamed into place. Returns
/// the checksum it records.
async fn write_stamp(s: &NodeSession, job: &Job, dest: &str) -> Result<String> {
    let checksum = job.checksum.clone().await.map_err(anyhow::Error::msg)?;
    let stamp = workdir::sync_stamp(&s.node);
    let tmp = format!("{stamp}.tmp");
    let text = crate::sync::stamp::Stamp {
        time: job.time.clone(),
        checksum: checksum.clone(),
        dest: dest.to_string(),
        source: job.source.clone(),
    }
    .render();
    let out = s
        .run(
            &format!(
                "cat > {t} && mv -f -- {t} {s}",
                t = quote(&tmp),
                s = quote(&stamp)
            ),
            Some(text.as_bytes()),
        )
        .await?;
    if !out.success() {
        anyhow::bail!("cannot write the sync stamp: {}", out.failure_reason());
    }
    Ok(checksum)
}

fn render(rows: &[NodeSync]) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| match &r.error {
            Some(e) => vec![r.node.clone(), format!("{}: {e}", r.status)],
            None => vec![
                r.node.clone(),
                r.status.replace('_', " "),
                r.changed.to_string(),
                r.deleted.to_string(),
                human_bytes(r.bytes_sent),
                r.method.unwrap_or("-").to_string(),
                r.dest.clone().unwrap_or_default(),
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
    fn rsync_output_is_counted() {
        let out = "\
cd+++++++++ sub dir/
>f+++++++++ sub dir/a b.txt
cL+++++++++ link -> target
.d..t...... ./
.f...p..... tool.sh
*deleting   old.txt

Number of files: 5 (reg: 3, dir: 1, link: 1)
Total bytes sent: 1,234
Total bytes received: 99
";
        assert_eq!(
            parse_rsync(out),
            Transfer {
                changed: 4,
                deleted: 1,
                bytes_sent: 1234
            }
        );
    }

    #[test]
    fn subdir_stays_inside_the_workdir() {
        assert_eq!(check_subdir("app/").unwrap(), "app");
        assert_eq!(check_subdir("./a b/./c").unwrap(), "a b/c");
        assert!(check_subdir(".").is_err());
        assert!(check_subdir("../x").is_err());
        assert!(check_subdir("/etc").is_err());
        assert!(check_subdir("a/../b").is_err());
    }

    #[test]
    fn distctl_files_are_reserved() {
        let mut n = Node::local();
        n.workdir = "/srv/w".into();
        assert_eq!(reserved(&n), ["bin", "runs", "sync_status"]);
    }
}
