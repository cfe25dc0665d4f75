//! Where verified results go: byte results through the [`OrderedWriter`] to
//! stdout or `-o FILE`, aggregate partials kept until the end and merged,
//! and every finished chunk into the journal (when there is one).

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use distctl_proto::Partial;

use crate::files::atomic::{replace_file, AtomicFile};
use crate::files::placed::PlacedFile;
use crate::run::attempt::Verified;
use crate::run::chunk::Chunk;
use crate::run::input::Input;
use crate::run::job::Job;
use crate::run::journal::{check_entries, checksum_hex, DoneEntry, Journal, Place};
use crate::run::merge::{MemoryBudget, OrderedOutput, OrderedWriter, ResultBuf};

/// Results waiting for an earlier chunk are held in memory up to this many
/// bytes in total; beyond it they spill to unlinked temp files.
const RESULT_MEMORY: usize = 24 << 20;

/// Where results go.
enum Sink {
    Stdout,
    /// `-o FILE`, through its temporary file (the journal's `output.part`
    /// when journaled).
    File(AtomicFile),
}

/// A chunk taken from the journal of an interrupted run.
pub struct Resumed {
    pub index: usize,
    /// Its input bytes.
    pub len: u64,
}

pub struct Results {
    job: Arc<Job>,
    sink: Sink,
    /// Byte ops only.
    writer: Option<OrderedWriter<Box<dyn OrderedOutput + Send>>>,
    /// The output file, for results written straight to their offset
    /// (length-preserving ops into `-o FILE`).
    in_place: Option<Arc<PlacedFile>>,
    /// Aggregate ops: one per chunk, once done.
    partials: Vec<Option<Partial>>,
    /// xxh3-128 of each finished chunk's input (journaled runs).
    checksums: HashMap<usize, u128>,
    /// xxh3-128 of each finished chunk's result, until journaled.
    out_hashes: HashMap<usize, u128>,
    journal: Option<Journal>,
    /// Shared by every attempt's result buffer.
    pub budget: Arc<MemoryBudget>,
}

impl Results {
    /// Open the journal (fresh or resumed, for `-o FILE` over planned input)
    /// and the output; says which chunks the journal already holds.
    /// `agent_sha256`: the agent that runs the chunks (part of the job's key).
    pub fn open(
        job: Arc<Job>,
        input: &Input,
        output: Option<&Path>,
        resume: bool,
        agent_sha256: &str,
    ) -> Result<(Results, Vec<Resumed>)> {
        let mut results = Results {
            job,
            sink: Sink::Stdout,
            writer: None,
            in_place: None,
            partials: vec![None; input.chunks().len()],
            checksums: HashMap::new(),
            out_hashes: HashMap::new(),
            journal: None,
            budget: MemoryBudget::new(RESULT_MEMORY),
        };
        let mut resumed = Vec::new();
        let mut first = 0;
        let mut written = 0;
        let mut resumed_files = Vec::new();
        if let (Some(dest), Input::Planned { stream, chunks, .. }) = (output, input) {
            let key = results
                .job
                .key(stream.files.clone(), input.chunk_size(), agent_sha256);
            let journal = if resume {
                let (journal, entries) = Journal::resume(dest, &key)?;
                let kept = check_entries(stream, chunks, &journal, entries)?;
                for e in &kept.entries {
                    resumed.push(Resumed {
                        index: e.index,
                        len: e.len,
                    });
                    if let Some(p) = &e.partial {
                        results.partials[e.index] = Some(serde_json::from_value(p.clone())?);
                    }
                    if e.place == Place::File {
                        let hash = e.out_hash.as_deref().unwrap_or_default();
                        let hash = u128::from_str_radix(hash, 16).unwrap_or(0);
                        resumed_files.push((e.index, e.out_len, hash));
                    }
                    results
                        .checksums
                        .insert(e.index, u128::from_str_radix(&e.checksum, 16).unwrap_or(0));
                }
                first = kept.prefix_chunks;
                written = kept.prefix_bytes;
                journal
            } else {
                Journal::create(dest, &key)?
            };
            results.sink = Sink::File(AtomicFile::reopen(&journal.part_path(), dest)?);
            results.journal = Some(journal);
        } else if let Some(dest) = output {
            results.sink = Sink::File(AtomicFile::create(dest)?);
        }
        if !results.job.aggregate() {
            let in_place = results
                .job
                .op()
                .is_some_and(distctl_proto::Op::preserves_length);
            let out: Box<dyn OrderedOutput + Send> = match &results.sink {
                Sink::Stdout => Box::new(std::io::stdout()),
                Sink::File(file) => {
                    // The same open file, not the path again.
                    let mut f = file.file().try_clone()?;
                    f.set_len(written)?;
                    std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(written))?;
                    if in_place {
                        if let Some(total) = input.total() {
                            reserve(&f, written, total.saturating_sub(written));
                        }
                        results.in_place = Some(Arc::new(PlacedFile::new(f.try_clone()?)));
                    }
                    Box::new(f)
                }
            };
            let writer = OrderedWriter::new(out, first, written);
            results.writer = Some(writer);
            for (index, len, hash) in resumed_files {
                let journal = results.journal.as_mut().expect("resume has a journal");
                let f = File::open(journal.chunk_path(index))?;
                results.out_hashes.insert(index, hash);
                let buf = ResultBuf::from_file(f, len, hash, results.budget.clone());
                results.write_in_order(index, buf, input.chunks())?;
            }
        }
        Ok((results, resumed))
    }

    /// An empty buffer for the result of the chunk at `start` (`len` input
    /// bytes): in place in the output when the op keeps lengths and the
    /// output is a file, else gathered for the ordered writer.
    pub fn result_buf(&self, start: u64, len: u64) -> ResultBuf {
        match &self.in_place {
            Some(f) => ResultBuf::direct(f.clone(), start, len, self.budget.clone()),
            None => ResultBuf::new(self.budget.clone()),
        }
    }

    /// Attempts hash what they send only when the journal needs it.
    pub fn want_checksum(&self) -> bool {
        self.journal.is_some()
    }

    /// One more chunk cut from a stream.
    pub fn add_chunk(&mut self) {
        self.partials.push(None);
    }

    /// Take chunk `index`'s verified result: into the merge (and the
    /// journal once written), or kept as a partial.
    pub fn accept(&mut self, index: usize, len: u64, v: Verified, chunks: &[Chunk]) -> Result<()> {
        if let Some(c) = v.checksum {
            self.checksums.insert(index, c);
        }
        if self.job.aggregate() {
            let partial = v.partial.context("no partial")?;
            if let Some(j) = self.journal.as_mut() {
                j.record(&DoneEntry {
                    index,
                    start: chunks[index].start,
                    len,
                    checksum: checksum_hex(v.checksum.unwrap_or(0)),
                    out_len: 0,
                    out_hash: None,
                    place: Place::Partial,
                    partial: Some(serde_json::to_value(&partial)?),
                })?;
            }
            self.partials[index] = Some(partial);
        } else {
            self.write_in_order(index, v.data, chunks)?;
        }
        Ok(())
    }

    /// Hand a byte result to the ordered writer; journal what it wrote, once
    /// those bytes are on disk.
    fn write_in_order(&mut self, index: usize, data: ResultBuf, chunks: &[Chunk]) -> Result<()> {
        if self.journal.is_some() {
            self.out_hashes.insert(index, data.hash());
        }
        let writer = self.writer.as_mut().expect("byte ops have a writer");
        let done = tokio::task::block_in_place(|| writer.insert(index, data))
            .context("writing the output")?;
        let Some(j) = self.journal.as_mut() else {
            return Ok(());
        };
        if done.is_empty() {
            return Ok(());
        }
        let Sink::File(f) = &self.sink else {
            anyhow::bail!("internal error: a journal without an output file");
        };
        j.record_written(f.file(), &self.checksums, &self.out_hashes, chunks, &done)?;
        for (i, _) in &done {
            self.out_hashes.remove(i);
        }
        Ok(())
    }

    /// Every one of `chunks` chunks is done: write the output, rename it
    /// into place and drop the journal. Returns the output's size.
    pub fn finish(&mut self, chunks: usize, json: bool) -> Result<u64> {
        let output_bytes;
        if self.job.aggregate() {
            let op = self.job.op().expect("aggregates are ops");
            let mut total = Partial {
                skip_invalid: self.job.skip_invalid,
                ..Partial::default()
            };
            for p in self.partials.iter().flatten() {
                total.merge(p).map_err(|e| anyhow::anyhow!("{e}"))?;
            }
            let text = if json {
                let v = total.to_json(op).map_err(|e| anyhow::anyhow!("{e}"))?;
                serde_json::to_string(&v)? + "\n"
            } else {
                total.render_text(op).map_err(|e| anyhow::anyhow!("{e}"))?
            };
            output_bytes = text.len() as u64;
            match &self.sink {
                Sink::Stdout => {
                    print!("{text}");
                    std::io::stdout().flush()?;
                }
                Sink::File(file) => {
                    let _ = std::fs::remove_file(&file.temp);
                    replace_file(&file.dest, text.as_bytes())?;
                }
            }
        } else {
            let writer = self.writer.take().expect("byte ops have a writer");
            anyhow::ensure!(
                writer.next() == chunks,
                "internal error: {} of {} results written",
                writer.next(),
                chunks
            );
            output_bytes = writer.bytes_written();
            let mut out = writer.into_inner();
            out.flush()?;
            drop(out);
            if let Sink::File(file) = std::mem::replace(&mut self.sink, Sink::Stdout) {
                file.commit()?;
            }
        }
        if let Some(j) = self.journal.take() {
            j.remove();
        }
        Ok(output_bytes)
    }

    /// After a failure or a signal: put finished results that were waiting
    /// for an earlier chunk into the journal, so `--resume` keeps them.
    /// Returns the journal's directory, when there is one.
    pub fn keep_journal(&mut self, chunks: &[Chunk]) -> Result<Option<PathBuf>> {
        let Some(j) = self.journal.as_mut() else {
            return Ok(None);
        };
        j.flush()?;
        if let Some(w) = self.writer.as_mut() {
            w.flush_output()?;
            for (index, mut buf) in w.take_waiting() {
                let path = j.chunk_path(index);
                let mut f = File::create(&path)?;
                buf.write_to(&mut f)?;
                f.sync_all()?;
                crate::files::atomic::sync_dir(&j.dir);
                let Some(c) = chunks.get(index) else {
                    continue;
                };
                let (start, len) = (c.start, c.len);
                j.record(&DoneEntry {
                    index,
                    start,
                    len,
                    checksum: checksum_hex(self.checksums.get(&index).copied().unwrap_or(0)),
                    out_len: buf.len(),
                    out_hash: Some(checksum_hex(buf.hash())),
                    place: Place::File,
                    partial: None,
                })?;
            }
        }
        Ok(Some(j.dir.clone()))
    }

    /// The run stopped: a partial `-o FILE` without a journal is removed.
    pub fn discard_unjournaled(&self) {
        if let Sink::File(file) = &self.sink {
            if self.journal.is_none() {
                let _ = std::fs::remove_file(&file.temp);
            }
        }
    }
}

/// Allocate the blocks an in-place output will fill (its size is the
/// input's), without changing its length: the filesystem then writes into
/// blocks it has, instead of reserving and mapping them page by page as
/// results arrive. Best effort: a filesystem without fallocate, or too little
/// room (the writes then say so), is no error here.
fn reserve(file: &File, from: u64, len: u64) {
    use std::os::fd::AsRawFd;
    if len == 0 {
        return;
    }
    // SAFETY: fallocate on a descriptor we hold; no memory is passed.
    unsafe {
        libc::fallocate(
            file.as_raw_fd(),
            libc::FALLOC_FL_KEEP_SIZE,
            from as libc::off_t,
            len as libc::off_t,
        )
    };
}
