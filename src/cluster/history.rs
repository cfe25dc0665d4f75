//! What the last per-node command did on each node, kept per inventory in
//! the user's state directory (`$XDG_STATE_HOME/distctl`, else
//! `~/.local/state/distctl`), so that `--nodes @failed` reruns just the
//! nodes that did not make it (as Ansible's retry files do).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::cluster::inventory::Source;
use crate::cluster::NodeOutcome;

/// The `@NAME`s that select from the last command's outcomes.
pub const OUTCOME_GROUPS: [&str; 4] = ["failed", "unreachable", "ok", "skipped"];

/// Which of [`OUTCOME_GROUPS`] a node's outcome belongs to. `@failed` is
/// every node that did not succeed and was started (unreachable ones too,
/// like Ansible's retry file); `@unreachable` is the unreachable part of it.
pub fn outcome_groups(outcome: &str) -> &'static [&'static str] {
    match outcome {
        "ok" | "pushed" | "synced" | "up-to-date" => &["ok"],
        "skipped" => &["skipped"],
        "unreachable" => &["failed", "unreachable"],
        _ => &["failed"],
    }
}

/// The state file of one inventory.
#[derive(Debug, Clone)]
pub struct OutcomeLog {
    pub path: PathBuf,
}

/// One node's line in the state file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecordedNode {
    pub node: String,
    /// [`NodeOutcome::as_str`].
    pub outcome: String,
    /// The outcome as tables show it (with its reason).
    pub detail: String,
}

/// The last command's outcomes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LastCommand {
    pub command: String,
    pub inventory: String,
    /// When it finished (RFC 3339, UTC).
    pub finished: String,
    pub nodes: Vec<RecordedNode>,
}

impl LastCommand {
    /// The nodes of `@group` (one of [`OUTCOME_GROUPS`]).
    pub fn group(&self, group: &str) -> Result<BTreeSet<String>, String> {
        Ok(self
            .nodes
            .iter()
            .filter(|n| outcome_groups(&n.outcome).contains(&group))
            .map(|n| n.node.clone())
            .collect())
    }
}

/// `$XDG_STATE_HOME/distctl` when that is absolute, else `~/.local/state/distctl`.
pub fn state_dir() -> Result<PathBuf> {
    if let Some(x) = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
    {
        return Ok(x.join("distctl"));
    }
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .context("neither XDG_STATE_HOME nor HOME is set: no state directory")?;
    Ok(Path::new(&home).join(".local/state/distctl"))
}

/// Create the state directory `dir` (and its parents), private to the user.
pub fn create_state_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))
}

/// A file name for an inventory: its file name (readable) and a hash of its
/// absolute path (unique), `cluster-3f2a….json`.
fn file_name(source: &Source) -> String {
    let (stem, key) = match source {
        Source::File(p) => {
            let abs = std::fs::canonicalize(p).unwrap_or_else(|_| p.clone());
            let stem = p
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            (stem, abs.display().to_string())
        }
        Source::Hosts(spec) => ("hosts".to_string(), spec.clone()),
        Source::BuiltinLocal => return "local.json".to_string(),
    };
    let stem: String = stem
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "-_.".contains(*c))
        .take(40)
        .collect();
    let hash = Sha256::digest(key.as_bytes());
    let hex: String = hash[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("{stem}-{hex}.json")
}

impl OutcomeLog {
    pub fn for_source(source: &Source) -> Result<OutcomeLog> {
        Ok(OutcomeLog {
            path: state_dir()?.join(file_name(source)),
        })
    }

    /// The last command's outcomes; an error says none is recorded yet.
    pub fn load(&self) -> Result<LastCommand> {
        let text = match std::fs::read(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => anyhow::bail!(
                "no command has recorded outcomes for this inventory yet ({} does not exist)",
                self.path.display()
            ),
            Err(e) => return Err(e).with_context(|| format!("reading {}", self.path.display())),
        };
        serde_json::from_slice(&text).with_context(|| format!("reading {}", self.path.display()))
    }

    /// Replace the record with this command's outcomes (atomically: a
    /// concurrent reader sees the old record or the new one).
    pub fn record<'a>(
        &self,
        command: &str,
        source: &Source,
        outcomes: impl IntoIterator<Item = (&'a str, &'a NodeOutcome)>,
    ) -> Result<()> {
        let last = LastCommand {
            command: command.to_string(),
            inventory: source.to_string(),
            finished: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            nodes: outcomes
                .into_iter()
                .map(|(node, o)| RecordedNode {
                    node: node.to_string(),
                    outcome: o.as_str().to_string(),
                    detail: o.to_string(),
                })
                .collect(),
        };
        if let Some(dir) = self.path.parent() {
            create_state_dir(dir)?;
        }
        let mut text = serde_json::to_vec_pretty(&last)?;
        text.push(b'\n');
        crate::files::atomic::replace_file(&self.path, &text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_and_selects_by_outcome() {
        let t = tempfile::tempdir().unwrap();
        let log = OutcomeLog {
            path: t.path().join("s/x.json"),
        };
        assert!(format!("{:#}", log.load().unwrap_err()).contains("no command has recorded"));
        let down = NodeOutcome::Unreachable { reason: "r".into() };
        let exit = NodeOutcome::Exited { code: 2 };
        let outcomes = [
            ("a", &NodeOutcome::Ok),
            ("b", &down),
            ("c", &exit),
            ("d", &NodeOutcome::Skipped),
            ("e", &NodeOutcome::UpToDate),
        ];
        log.record("exec", &Source::BuiltinLocal, outcomes).unwrap();
        let last = log.load().unwrap();
        let names = |g: &str| last.group(g).unwrap().into_iter().collect::<Vec<_>>();
        assert_eq!(names("ok"), ["a", "e"]);
        assert_eq!(names("failed"), ["b", "c"]);
        assert_eq!(names("unreachable"), ["b"]);
        assert_eq!(names("skipped"), ["d"]);
        assert_eq!(last.nodes[2].detail, "exit 2");
    }

    #[test]
    fn one_file_per_inventory_path() {
        let a = file_name(&Source::File("/x/cluster.toml".into()));
        let b = file_name(&Source::File("/y/cluster.toml".into()));
        assert!(a.starts_with("cluster-") && a.ends_with(".json"), "{a}");
        assert_ne!(a, b);
        assert_ne!(
            file_name(&Source::Hosts("a,b".into())),
            file_name(&Source::Hosts("a,c".into()))
        );
    }
}
