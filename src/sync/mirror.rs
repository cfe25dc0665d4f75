//! Mirroring one local tree into one node's workdir: with rsync over the
//! node's own SSH master where both ends have it, else by comparing a manifest
//! of the remote tree with the local one and sending a tar stream of just the
//! changed entries; then the `sync_status` stamp.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use futures::future::{BoxFuture, Shared};

use crate::cluster::inventory::Node;
use crate::cluster::workdir;
use crate::sync::tree::{self, Tree};
use crate::transport::shell::quote;
use crate::transport::NodeSession;

/// What every node gets: the scanned local tree, where it goes and how.
/// How `sync` transfers: rsync over the node's connection when both ends
/// have it (`auto`), or always one of the two.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SyncMethod {
    Auto,
    Rsync,
    Tar,
}

pub struct SyncSpec {
    pub tree: Arc<Tree>,
    /// Computed while the nodes connect and transfer; needed for the stamp.
    pub checksum: Shared<BoxFuture<'static, Result<String, String>>>,
    pub subdir: Option<String>,
    pub delete: bool,
    pub method: SyncMethod,
    pub local_rsync: bool,
    /// `host:/abs/path` of the local directory, for the stamp.
    pub source: String,
    pub time: String,
}

/// What one node got.
#[derive(Debug)]
pub struct Mirrored {
    pub method: &'static str,
    pub dest: String,
    pub transfer: Transfer,
    /// The content checksum the stamp records.
    pub checksum: String,
}

impl Mirrored {
    /// Nothing had to change on the node.
    pub fn up_to_date(&self) -> bool {
        self.transfer.changed == 0 && self.transfer.deleted == 0
    }
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

/// Mirror `spec`'s tree into one node and leave the stamp.
pub async fn mirror(s: &NodeSession, spec: &SyncSpec) -> Result<Mirrored> {
    let node = &s.node;
    let dest = dest(node, spec.subdir.as_deref());
    let probe = s
        .run(
            &format!(
                "{safe_dir}\numask 077; mkdir -p -- {d} && safe_dir {r} && {{ command -v rsync >/dev/null 2>&1 && echo rsync || echo none; }}",
                safe_dir = workdir::SAFE_DIR_FN,
                d = quote(&dest),
                r = quote(&workdir::root(node)),
            ),
            None,
        )
        .await?;
    if !probe.success() {
        anyhow::bail!("cannot create {dest}: {}", probe.failure_reason());
    }
    let remote_rsync = String::from_utf8_lossy(&probe.stdout).trim() == "rsync";
    let use_rsync = match spec.method {
        SyncMethod::Tar => false,
        SyncMethod::Auto => spec.local_rsync && remote_rsync,
        SyncMethod::Rsync if !remote_rsync => {
            anyhow::bail!("--method rsync: rsync is not installed on the node")
        }
        SyncMethod::Rsync => true,
    };
    let keep: Vec<String> = if spec.subdir.is_none() {
        reserved(node)
    } else {
        Vec::new()
    };
    let (method, t) = if use_rsync {
        ("rsync", rsync(s, spec, &dest, &keep).await?)
    } else {
        ("tar", tar(s, spec, &dest, &keep).await?)
    };
    let checksum = write_stamp(s, spec, &dest).await?;
    Ok(Mirrored {
        method,
        dest,
        transfer: t,
        checksum,
    })
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Transfer {
    /// Entries (files, directories, symlinks) created or updated.
    pub changed: u64,
    /// Remote entries removed because they are gone locally (`--delete`).
    pub deleted: u64,
    /// Bytes sent to the node for the transfer.
    pub bytes_sent: u64,
}

/// rsync over the node's own master connection (`ssh -S`), or to the local
/// path for the built-in node.
async fn rsync(s: &NodeSession, spec: &SyncSpec, dest: &str, keep: &[String]) -> Result<Transfer> {
    let mut cmd = tokio::process::Command::new("rsync");
    // -rlpt: recursive, symlinks as links, permissions, mtimes; never owners.
    cmd.args(["-rlpt", "--stats", "--itemize-changes", "--protect-args"]);
    if spec.delete {
        cmd.arg("--delete");
    }
    for k in keep {
        cmd.arg(format!("--filter=P /{k}"));
    }
    cmd.arg(format!("{}/", spec.tree.root.display()));
    match s.control_socket() {
        Some(socket) => {
            // The host name is a placeholder: ssh goes through the socket and
            // never opens a connection of its own (ControlMaster=no); were the
            // master gone, ProxyCommand=false makes that fail rather than
            // connect directly with other settings.
            if std::fs::symlink_metadata(socket).is_err() {
                anyhow::bail!("the ssh master for rsync is gone ({})", socket.display());
            }
            cmd.arg("-e").arg(format!(
                "ssh -F /dev/null -o BatchMode=yes -o ControlMaster=no -o ProxyCommand=false -S {}",
                crate::transport::shell::quote(&socket.display().to_string())
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
async fn tar(s: &NodeSession, spec: &SyncSpec, dest: &str, keep: &[String]) -> Result<Transfer> {
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
    let plan = tree::plan(&spec.tree, &remote, spec.delete, &keep);
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
            .map(|&i| spec.tree.entries[i].path.clone())
            .collect();
        // -p keeps modes (exec bits), -o never chowns to the archive's owner.
        let mut proc = s.spawn(&format!("cd -- {d} && tar -xpof -")).await?;
        let stdin = proc.stdin.take().context("no stdin to the node")?;
        // A node that stops taking the archive is a timed-out node.
        let stdin: crate::transport::BoxWrite =
            Box::pin(crate::transport::deadline::IdleBound::new(stdin));
        let mut err = Vec::new();
        let mut stderr = std::mem::replace(&mut proc.stderr, Box::pin(tokio::io::empty()));
        let (sent, _) = tokio::join!(
            crate::sync::tarstream::send(spec.tree.root.clone(), paths, stdin),
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
async fn write_stamp(s: &NodeSession, spec: &SyncSpec, dest: &str) -> Result<String> {
    let checksum = spec.checksum.clone().await.map_err(anyhow::Error::msg)?;
    let stamp = workdir::sync_stamp(&s.node);
    let template = format!("{stamp}.XXXXXX");
    let text = crate::sync::stamp::Stamp {
        time: spec.time.clone(),
        checksum: checksum.clone(),
        dest: dest.to_string(),
        source: spec.source.clone(),
    }
    .render();
    let out = s
        .run(
            &format!(
                "umask 077; t=$(mktemp {t}) && {{ cat > \"$t\" && chmod 644 \"$t\" && mv -f -- \"$t\" {s} || {{ rm -f -- \"$t\"; exit 1; }}; }}",
                t = quote(&template),
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
    fn distctl_files_are_reserved() {
        let mut n = Node::local();
        n.workdir = "/srv/w".into();
        assert_eq!(reserved(&n), ["bin", "runs", "sync_status"]);
    }
}
