//! The core count each node's last probe found, remembered in the user's
//! state directory (`node-cores.json` beside the outcome records), so that
//! `run` can start a node whose slots are its cores without asking it
//! again: that question is the install probe's, two round trips before the
//! first chunk. A probe (`setup`, or a `run` whose guard found the agent
//! missing or another) always answers afresh and updates the record; the
//! inventory's `slots` overrides it. A wrong count only sets how many
//! chunks a node runs at once.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::cluster::inventory::Node;

/// At most this many nodes are remembered; the ones whose count was
/// recorded longest ago go.
const MAX_NODES: usize = 10_000;

/// One remembered node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Remembered {
    /// The address as the inventory gives it, for a person reading the file.
    host: String,
    cores: usize,
    /// When this count was recorded (RFC 3339, UTC): the file is written
    /// only when a count changes.
    seen: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct CoreFile {
    nodes: BTreeMap<String, Remembered>,
}

/// What is known of the nodes' cores, and what this command learned.
#[derive(Debug, Default)]
pub struct KnownCores {
    /// `None`: no state directory (no `HOME`): nothing is remembered.
    path: Option<PathBuf>,
    known: BTreeMap<String, Remembered>,
    learned: Mutex<BTreeMap<String, Remembered>>,
}

/// The key of a node: where and as whom distctl logs in, which decides the
/// machine (two inventories naming one machine share it), hashed. A port
/// left unset is 22, and host names compare in any case, as DNS's do.
fn key(node: &Node) -> String {
    let jump = node
        .jump
        .as_ref()
        .map(|j| (j.host.to_ascii_lowercase(), j.port.unwrap_or(22), &j.user));
    let who = serde_json::to_string(&(
        &node.user,
        node.host.to_ascii_lowercase(),
        node.port.unwrap_or(22),
        jump,
        &node.ssh_options,
    ))
    .expect("strings serialize");
    let hash = Sha256::digest(who.as_bytes());
    hash[..12].iter().map(|b| format!("{b:02x}")).collect()
}

/// The nodes in the record at `path`; none where it is missing or unreadable.
fn read_record(path: &std::path::Path) -> BTreeMap<String, Remembered> {
    std::fs::read(path)
        .ok()
        .and_then(|t| serde_json::from_slice::<CoreFile>(&t).ok())
        .map(|f| f.nodes)
        .unwrap_or_default()
}

impl KnownCores {
    /// The record in the state directory. A record that is missing or
    /// unreadable is as good as empty: every node is then probed, as on
    /// a first run, and the record written anew.
    pub fn load() -> KnownCores {
        let Ok(dir) = crate::cluster::history::state_dir() else {
            return KnownCores::default();
        };
        KnownCores::at(dir.join("node-cores.json"))
    }

    fn at(path: PathBuf) -> KnownCores {
        let known = read_record(&path);
        KnownCores {
            path: Some(path),
            known,
            learned: Mutex::default(),
        }
    }

    /// The node's cores as its last probe found them. The built-in local
    /// node has none: it has no round trip to save, and is always probed.
    pub fn cores(&self, node: &Node) -> Option<usize> {
        if node.local {
            return None;
        }
        self.known.get(&key(node)).map(|r| r.cores)
    }

    /// A probe found `cores` on `node` (not kept for the local node).
    pub fn learn(&self, node: &Node, cores: usize) {
        if node.local {
            return;
        }
        let entry = Remembered {
            host: node.host.clone(),
            cores,
            seen: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        };
        self.learned
            .lock()
            .expect("learned cores")
            .insert(key(node), entry);
    }

    /// Write what this command learned, when it changes the record: under
    /// a lock beside it (two commands saving at once keep each other's
    /// nodes), read again, merged and replaced atomically.
    pub fn save(&self) -> Result<()> {
        let learned = std::mem::take(&mut *self.learned.lock().expect("learned cores"));
        let Some(path) = &self.path else {
            return Ok(());
        };
        let news = learned
            .iter()
            .any(|(k, r)| self.known.get(k).is_none_or(|old| old.cores != r.cores));
        if !news {
            return Ok(());
        }
        if let Some(dir) = path.parent() {
            crate::cluster::history::create_state_dir(dir)?;
        }
        let lock_path = path.with_extension("json.lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .with_context(|| format!("opening {}", lock_path.display()))?;
        lock.lock()
            .with_context(|| format!("locking {}", lock_path.display()))?;
        let mut file = read_record(path);
        file.extend(learned);
        if file.len() > MAX_NODES {
            let mut by_age: Vec<(String, String)> = file
                .iter()
                .map(|(k, r)| (r.seen.clone(), k.clone()))
                .collect();
            by_age.sort();
            for (_, k) in by_age.into_iter().take(file.len() - MAX_NODES) {
                file.remove(&k);
            }
        }
        let mut text = serde_json::to_vec_pretty(&CoreFile { nodes: file })?;
        text.push(b'\n');
        crate::files::atomic::replace_file(path, &text)
    }

    /// [`KnownCores::save`], a failure only warned about: the record only
    /// saves the next command a question.
    pub fn save_or_warn(&self) {
        if let Err(e) = self.save() {
            eprintln!("distctl: warning: cannot remember the nodes' cores: {e:#}");
        }
    }
}

/// What a command stopped early (a signal, an error) had learned is kept
/// too.
impl Drop for KnownCores {
    fn drop(&mut self) {
        self.save_or_warn();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(host: &str, port: u16) -> Node {
        let toml = format!("[[nodes]]\nname = \"n\"\nhost = \"{host}\"\nport = {port}\n");
        let path = std::path::Path::new("cluster.toml");
        crate::cluster::inventory::parse(path, &toml, std::path::Path::new("/"))
            .unwrap()
            .remove(0)
    }

    #[test]
    fn remembers_what_a_probe_found_per_machine_and_keeps_others_writes() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("state/node-cores.json");
        let (a, b) = (node("host-a", 22), node("host-a", 2222));
        let first = KnownCores::at(path.clone());
        assert_eq!(first.cores(&a), None);
        first.learn(&a, 8);
        // Another command writes in between.
        let other = KnownCores::at(path.clone());
        other.learn(&b, 4);
        other.save().unwrap();
        first.save().unwrap();
        let next = KnownCores::at(path.clone());
        assert_eq!(next.cores(&a), Some(8));
        assert_eq!(next.cores(&b), Some(4));
        // A probe that finds the same count leaves the file alone (a
        // replaced file is a new inode).
        use std::os::unix::fs::MetadataExt;
        let before = std::fs::metadata(&path).unwrap().ino();
        next.learn(&a, 8);
        next.save().unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().ino(), before);
        // Another count is written; the port left unset is 22, and host
        // names compare in any case.
        let mut unset = a.clone();
        unset.port = None;
        unset.host = "HOST-A".into();
        next.learn(&unset, 6);
        next.save().unwrap();
        assert_ne!(std::fs::metadata(&path).unwrap().ino(), before);
        assert_eq!(KnownCores::at(path.clone()).cores(&a), Some(6));
        // A file that cannot be read is an empty record.
        std::fs::write(&path, "not json").unwrap();
        assert_eq!(KnownCores::at(path).cores(&a), None);
    }
}
