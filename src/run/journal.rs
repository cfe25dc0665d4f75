//! The resume journal of a `run -o FILE`: a directory beside the output,
//! `.<name>.distctl-run/`, holding
//! - `journal.jsonl`: first the job key, then one line per finished chunk,
//!   appended only once that chunk's result is safely on disk;
//! - `output.part`: the results of chunks `0..k` in order (renamed to the
//!   output when the run completes);
//! - `chunk-N.out`: finished results that were still waiting for an earlier
//!   chunk when the run stopped.
//!
//! The key is the content, not a job number: every input's path, size and
//! mtime, the chunk size and the op or command; each entry also keeps its
//! input chunk's checksum, checked again before it is reused.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::run::chunk::{Chunk, ChunkHash, InputStream};
pub use crate::run::job::JobKey;
use crate::usage;

/// Where a finished chunk's result lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Place {
    /// In `output.part`, after the chunks before it.
    Prefix,
    /// In `chunk-N.out`.
    File,
    /// Nothing to keep but the partial in this entry (aggregate ops).
    Partial,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DoneEntry {
    pub index: usize,
    pub start: u64,
    pub len: u64,
    /// xxh3-128 of the input chunk, hex.
    pub checksum: String,
    pub out_len: u64,
    /// xxh3-128 of the result bytes (in `output.part` or `chunk-N.out`),
    /// hex: checked again before they are reused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub out_hash: Option<String>,
    pub place: Place,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partial: Option<serde_json::Value>,
}

pub struct Journal {
    pub dir: PathBuf,
    /// The log, while no [`Syncer`] holds it.
    log: Option<File>,
    syncer: Option<Syncer>,
}

/// Batches of entries for chunks written to `output.part`, journaled on a
/// thread of their own: `output.part` is synced first, then the entries are
/// appended and the log synced. Syncing a few hundred megabytes takes tens
/// of milliseconds; on the runner's thread that held up every next chunk
/// (0.5 s of a 4 s run over 1 GiB). Batches queued while one is synced are
/// taken together.
struct Syncer {
    tx: Option<std::sync::mpsc::Sender<Vec<DoneEntry>>>,
    thread: Option<std::thread::JoinHandle<Result<File>>>,
}

impl Syncer {
    fn start(output: File, mut log: File, dir: PathBuf) -> Syncer {
        let (tx, rx) = std::sync::mpsc::channel::<Vec<DoneEntry>>();
        let thread = std::thread::spawn(move || -> Result<File> {
            while let Ok(mut batch) = rx.recv() {
                while let Ok(more) = rx.try_recv() {
                    batch.extend(more);
                }
                output.sync_data().context("writing the output to disk")?;
                for entry in &batch {
                    writeln!(log, "{}", serde_json::to_string(entry)?)?;
                }
                log.sync_data()?;
                for entry in &batch {
                    let _ = std::fs::remove_file(dir.join(chunk_file_name(entry.index)));
                }
            }
            Ok(log)
        });
        Syncer {
            tx: Some(tx),
            thread: Some(thread),
        }
    }

    /// Queue a batch; a thread that already stopped says why.
    fn send(&mut self, batch: Vec<DoneEntry>) -> Result<()> {
        let sent = self.tx.as_ref().is_some_and(|tx| tx.send(batch).is_ok());
        if sent {
            return Ok(());
        }
        self.finish()?;
        anyhow::bail!("the journal writer stopped")
    }

    /// Journal everything queued and hand the log back.
    fn finish(&mut self) -> Result<File> {
        self.tx = None;
        match self.thread.take().map(|t| t.join()) {
            Some(Ok(r)) => r,
            Some(Err(_)) => anyhow::bail!("the journal writer panicked"),
            None => anyhow::bail!("the journal writer stopped"),
        }
    }
}

impl Drop for Syncer {
    /// Whatever is queued is journaled before the journal is let go.
    fn drop(&mut self) {
        if self.thread.is_some() {
            let _ = self.finish();
        }
    }
}

fn chunk_file_name(index: usize) -> String {
    format!("chunk-{index}.out")
}

pub fn checksum_hex(h: u128) -> String {
    format!("{h:032x}")
}

impl Journal {
    pub fn dir_for(output: &Path) -> PathBuf {
        let name = output
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "output".into());
        output.with_file_name(format!(".{name}.distctl-run"))
    }

    pub fn part_path(&self) -> PathBuf {
        self.dir.join("output.part")
    }

    pub fn chunk_path(&self, index: usize) -> PathBuf {
        self.dir.join(chunk_file_name(index))
    }

    /// Start a fresh journal (replacing one left by an earlier run).
    pub fn create(output: &Path, key: &JobKey) -> Result<Journal> {
        let dir = Journal::dir_for(output);
        if dir.exists() {
            std::fs::remove_dir_all(&dir)
                .with_context(|| format!("cannot remove the old journal {}", dir.display()))?;
        }
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create the journal {}", dir.display()))?;
        let mut log = File::create(dir.join("journal.jsonl"))?;
        writeln!(log, "{}", serde_json::to_string(key)?)?;
        log.sync_data()?;
        crate::files::atomic::sync_dir(&dir);
        if let Some(parent) = dir.parent() {
            crate::files::atomic::sync_dir(parent);
        }
        Ok(Journal {
            dir,
            log: Some(log),
            syncer: None,
        })
    }

    /// Reopen the journal of an interrupted run with the same key.
    pub fn resume(output: &Path, key: &JobKey) -> Result<(Journal, Vec<DoneEntry>)> {
        let dir = Journal::dir_for(output);
        let path = dir.join("journal.jsonl");
        let text = std::fs::read_to_string(&path).map_err(|_| {
            usage!(
                "--resume: no journal of an interrupted run at {}",
                dir.display()
            )
        })?;
        let mut lines = text.split_inclusive('\n');
        let head = lines.next().unwrap_or_default();
        let old: JobKey = serde_json::from_str(head.trim_end())
            .map_err(|_| usage!("--resume: {} is not a distctl journal", path.display()))?;
        if let Some(why) = key_difference(&old, key) {
            return Err(usage!(
                "--resume refused: {why} since the interrupted run (remove {} to start over)",
                dir.display()
            ));
        }
        let mut done = Vec::new();
        let mut good = head.len();
        for line in lines {
            // A crash may leave a torn last line: that chunk simply is not done,
            // and the line is cut off so that new entries start clean.
            match serde_json::from_str::<DoneEntry>(line.trim_end()) {
                Ok(e) if line.ends_with('\n') => done.push(e),
                _ => break,
            }
            good += line.len();
        }
        let log = OpenOptions::new().append(true).open(&path)?;
        log.set_len(good as u64)?;
        let journal = Journal {
            dir,
            log: Some(log),
            syncer: None,
        };
        Ok((journal, done))
    }

    /// Record a chunk whose result is on disk (synced: the entry vouches
    /// for those bytes after a crash).
    pub fn record(&mut self, entry: &DoneEntry) -> Result<()> {
        let log = self.log()?;
        writeln!(log, "{}", serde_json::to_string(entry)?)?;
        log.sync_data()?;
        Ok(())
    }

    /// Journal everything queued now.
    pub fn flush(&mut self) -> Result<()> {
        self.log().map(|_| ())
    }

    /// The log, once everything queued for the [`Syncer`] is journaled.
    fn log(&mut self) -> Result<&mut File> {
        if let Some(mut s) = self.syncer.take() {
            self.log = Some(s.finish()?);
        }
        self.log.as_mut().context("the journal log is gone")
    }

    /// Journal the chunks just written to `output` (`output.part`;
    /// `written`: index and result length; `out_hashes`: their results'
    /// hashes), whose `chunk-N.out` files are no longer needed. Done on the
    /// [`Syncer`]'s thread, which syncs `output` first: the caller goes on
    /// at once.
    pub fn record_written(
        &mut self,
        output: &File,
        checksums: &HashMap<usize, u128>,
        out_hashes: &HashMap<usize, u128>,
        chunks: &[Chunk],
        written: &[(usize, u64)],
    ) -> Result<()> {
        let batch = written
            .iter()
            .map(|&(index, out_len)| {
                let c = &chunks[index];
                DoneEntry {
                    index,
                    start: c.start,
                    len: c.len,
                    checksum: checksum_hex(checksums.get(&index).copied().unwrap_or(0)),
                    out_len,
                    out_hash: out_hashes.get(&index).map(|&h| checksum_hex(h)),
                    place: Place::Prefix,
                    partial: None,
                }
            })
            .collect();
        if self.syncer.is_none() {
            let log = self.log.take().context("the journal log is gone")?;
            let output = output.try_clone()?;
            self.syncer = Some(Syncer::start(output, log, self.dir.clone()));
        }
        self.syncer.as_mut().expect("just started").send(batch)
    }

    /// The run completed: the journal goes.
    pub fn remove(mut self) {
        // Dropping the syncer journals what is queued (and stops its thread)
        // before the directory goes.
        drop(self.syncer.take());
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The entries of a resumed journal that still hold.
pub struct KeptEntries {
    pub entries: Vec<DoneEntry>,
    /// The chunks `0..prefix_chunks` are in `output.part`, in its first
    /// `prefix_bytes` bytes.
    pub prefix_chunks: usize,
    pub prefix_bytes: u64,
}

/// Which journal entries still hold: the chunk is the same and its input
/// bytes still hash the same, the result is where the entry says and its
/// bytes hash as they did when they were journaled (a crash, or someone,
/// may have zero-filled or cut them since): anything else is redone.
pub fn check_entries(
    input: &InputStream,
    chunks: &[Chunk],
    journal: &Journal,
    entries: Vec<DoneEntry>,
) -> Result<KeptEntries> {
    let mut last: HashMap<usize, DoneEntry> = HashMap::new();
    for e in entries {
        last.insert(e.index, e);
    }
    let mut sorted: Vec<DoneEntry> = last.into_values().collect();
    sorted.sort_by_key(|e| e.index);
    let part = File::open(journal.part_path()).ok();
    let part_len = part
        .as_ref()
        .and_then(|f| f.metadata().ok())
        .map_or(0, |m| m.len());
    let mut kept = KeptEntries {
        entries: Vec::new(),
        prefix_chunks: 0,
        prefix_bytes: 0,
    };
    for e in sorted {
        let Some(c) = chunks
            .get(e.index)
            .filter(|c| c.start == e.start && c.len == e.len)
        else {
            continue;
        };
        let sum = ChunkHash::of_range(input, c.start, c.len)?;
        if checksum_hex(sum) != e.checksum {
            return Err(usage!(
                "--resume refused: the input bytes of chunk {} changed since the interrupted run (remove {} to start over)",
                e.index,
                journal.dir.display()
            ));
        }
        match e.place {
            Place::Prefix => {
                if e.index != kept.prefix_chunks || kept.prefix_bytes + e.out_len > part_len {
                    continue;
                }
                let Some(part) = &part else { continue };
                if !result_holds(&e, part, kept.prefix_bytes)? {
                    continue;
                }
                kept.prefix_chunks += 1;
                kept.prefix_bytes += e.out_len;
            }
            Place::File => {
                let Ok(f) = File::open(journal.chunk_path(e.index)) else {
                    continue;
                };
                let ok = f.metadata().is_ok_and(|m| m.len() == e.out_len);
                if !ok || e.index < kept.prefix_chunks || !result_holds(&e, &f, 0)? {
                    continue;
                }
            }
            Place::Partial => {}
        }
        kept.entries.push(e);
    }
    Ok(kept)
}

/// The entry's result bytes, at `start` in `file`, still hash as journaled.
fn result_holds(e: &DoneEntry, file: &File, start: u64) -> Result<bool> {
    let Some(want) = &e.out_hash else {
        return Ok(false);
    };
    let got = ChunkHash::of_file_range(file, start, e.out_len)?;
    Ok(&checksum_hex(got) == want)
}

fn key_difference(old: &JobKey, new: &JobKey) -> Option<String> {
    if old.inputs.len() != new.inputs.len()
        || old
            .inputs
            .iter()
            .zip(&new.inputs)
            .any(|(a, b)| a.path != b.path)
    {
        return Some("the inputs differ".into());
    }
    for (a, b) in old.inputs.iter().zip(&new.inputs) {
        if a.size != b.size || a.mtime_ns != b.mtime_ns {
            return Some(format!("input {} changed", b.path.display()));
        }
    }
    if old.op != new.op || old.pattern != new.pattern || old.exec != new.exec {
        return Some("the op or command differs".into());
    }
    if old.skip_invalid != new.skip_invalid {
        return Some("--skip-invalid differs".into());
    }
    if old.chunk_size != new.chunk_size {
        return Some(format!("--chunk-size differs (it was {})", old.chunk_size));
    }
    if old.agent_sha256 != new.agent_sha256 {
        return Some("the agent binary differs".into());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::chunk::InputFile;

    fn key() -> JobKey {
        JobKey {
            inputs: vec![InputFile {
                path: "in.txt".into(),
                size: 10,
                mtime_ns: 1,
            }],
            chunk_size: 4,
            op: "upper".into(),
            pattern: None,
            exec: None,
            skip_invalid: false,
            agent_sha256: "ab".into(),
        }
    }

    #[test]
    fn journal_round_trip_and_key_check() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out put.txt");
        let mut j = Journal::create(&out, &key()).unwrap();
        let e = DoneEntry {
            index: 0,
            start: 0,
            len: 4,
            checksum: checksum_hex(7),
            out_len: 4,
            out_hash: None,
            place: Place::Prefix,
            partial: None,
        };
        j.record(&e).unwrap();
        drop(j);
        // A torn line after a crash is ignored.
        let log = Journal::dir_for(&out).join("journal.jsonl");
        let mut f = OpenOptions::new().append(true).open(&log).unwrap();
        f.write_all(b"{\"index\":1,\"sta").unwrap();
        let (mut j, done) = Journal::resume(&out, &key()).unwrap();
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].checksum, e.checksum);
        j.record(&DoneEntry {
            index: 1,
            ..e.clone()
        })
        .unwrap();
        let (_j, done) = Journal::resume(&out, &key()).unwrap();
        assert_eq!(done.iter().map(|e| e.index).collect::<Vec<_>>(), vec![0, 1]);

        let mut changed = key();
        changed.inputs[0].size = 11;
        let err = Journal::resume(&out, &changed).err().unwrap().to_string();
        assert!(err.contains("input in.txt changed"), "{err}");
        let mut other = key();
        other.op = "lower".into();
        assert!(Journal::resume(&out, &other).is_err());
        let mut agent = key();
        agent.agent_sha256 = "cd".into();
        let err = Journal::resume(&out, &agent).err().unwrap().to_string();
        assert!(err.contains("agent"), "{err}");
    }
}
