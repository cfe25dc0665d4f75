//! `distctl split INPUT`: line-aligned chunk files plus `manifest.json`
//! (offsets, line counts, sha256), written into a fresh directory that is
//! renamed into place only when complete.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::cli::{Global, SplitArgs};
use crate::commands::Cluster;
use crate::exit::Exit;
use crate::output::table;
use crate::run::chunk::{ChunkPlan, Cut, InputFile, InputStream, READ_BLOCK};
use crate::units::human_bytes;
use crate::usage;

#[derive(Debug, Serialize)]
pub struct Manifest {
    pub input: PathBuf,
    pub size: u64,
    pub lines: u64,
    pub chunks: Vec<ManifestChunk>,
}

#[derive(Debug, Serialize)]
pub struct ManifestChunk {
    pub index: usize,
    pub file: String,
    pub offset: u64,
    pub bytes: u64,
    pub lines: u64,
    pub sha256: String,
    /// With `--for-nodes`: the node this chunk was cut for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

pub async fn run(g: &Global, args: &SplitArgs) -> Result<Exit> {
    if !InputFile::is_regular(&args.input) {
        return Err(usage!(
            "split needs a regular file: {} is not one (for a pipe use `distctl run -`)",
            args.input.display()
        ));
    }
    let mut exit = Exit::Ok;
    let mut node_names = None;
    let cut = if let Some(n) = args.chunks {
        if n == 0 {
            return Err(usage!("--chunks must be at least 1"));
        }
        Cut::Count(n)
    } else if let Some(l) = args.lines {
        if l == 0 {
            return Err(usage!("--lines must be at least 1"));
        }
        Cut::Lines(l)
    } else if let Some(s) = args.chunk_size {
        Cut::Size(s.0)
    } else if args.for_nodes {
        let (names, weights, partial) = node_weights(g).await?;
        if partial {
            exit = Exit::Partial;
        }
        node_names = Some(names);
        Cut::Weights(weights)
    } else {
        // One chunk per selected node, equal sizes; no node is contacted.
        let inventory = crate::cluster::inventory::Inventory::load(g)?;
        Cut::Count(inventory.select(g)?.len())
    };

    let input =
        InputStream::open(std::slice::from_ref(&args.input)).map_err(|e| usage!("{e:#}"))?;
    let mut plan = ChunkPlan::new(input, &cut)?;
    plan.count_lines().context("reading the input")?;
    let manifest = write_chunks(&plan, &args.input, &args.outdir, node_names.as_deref())?;

    if g.json {
        crate::output::json::print(&manifest)?;
    } else if !g.quiet {
        let rows: Vec<Vec<String>> = manifest
            .chunks
            .iter()
            .map(|c| {
                let mut row = vec![
                    c.file.clone(),
                    c.offset.to_string(),
                    c.bytes.to_string(),
                    c.lines.to_string(),
                ];
                if let Some(n) = &c.node {
                    row.push(n.clone());
                }
                row
            })
            .collect();
        let mut header = vec!["CHUNK", "OFFSET", "BYTES", "LINES"];
        if node_names.is_some() {
            header.push("NODE");
        }
        print!("{}", table::render(&header, &rows));
        println!(
            "{} chunk(s), {} in {} line(s) → {}",
            manifest.chunks.len(),
            human_bytes(manifest.size),
            manifest.lines,
            args.outdir.join("manifest.json").display()
        );
    }
    Ok(exit)
}

/// Names and slot weights of the selected, reachable nodes (a node without
/// `slots` in the inventory is asked for its core count). The flag says some
/// node was unreachable and left out.
async fn node_weights(g: &Global) -> Result<(Vec<String>, Vec<u64>, bool)> {
    let cluster = Cluster::connect_nodes(
        g.fanout,
        g.persist.map(|d| d.0),
        crate::cluster::inventory::Inventory::load(g)?.select(g)?,
    )
    .await?;
    let mut names = Vec::new();
    let mut weights = Vec::new();
    let mut partial = false;
    for (node, conn) in &cluster.nodes {
        let slots = match (node.slots, conn) {
            (Some(s), _) => Some(s as usize),
            (None, Ok(session)) => crate::cluster::agent::core_count(session).await.ok(),
            (None, Err(_)) => None,
        };
        match slots {
            Some(s) => {
                names.push(node.name.clone());
                weights.push(s.max(1) as u64);
            }
            None => {
                partial = true;
                if let Err(e) = conn {
                    eprintln!("distctl: warning: skipping {e}");
                } else {
                    eprintln!(
                        "distctl: warning: skipping {}: cannot read its core count",
                        node.name
                    );
                }
            }
        }
    }
    cluster.close().await;
    if names.is_empty() {
        anyhow::bail!("no node reachable to split for");
    }
    Ok((names, weights, partial))
}

/// Write every chunk and the manifest into a temp directory beside `outdir`,
/// then put it in place of `outdir` (replacing an earlier split there).
fn write_chunks(
    plan: &ChunkPlan,
    input: &Path,
    outdir: &Path,
    nodes: Option<&[String]>,
) -> Result<Manifest> {
    if outdir.exists() {
        let ours = outdir.join("manifest.json").exists();
        let empty = std::fs::read_dir(outdir)
            .map(|mut d| d.next().is_none())
            .unwrap_or(false);
        if !ours && !empty {
            return Err(usage!(
                "{} exists and holds no distctl manifest: choose another --outdir",
                outdir.display()
            ));
        }
    }
    let parent = match outdir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent)
        .with_context(|| format!("cannot create {}", parent.display()))?;
    let tmp = tempfile::Builder::new()
        .prefix(".distctl-split-")
        .tempdir_in(&parent)
        .with_context(|| format!("cannot write in {}", parent.display()))?;
    let width = plan.chunks.len().saturating_sub(1).to_string().len().max(5);
    let mut chunks = Vec::new();
    let mut buf = vec![0u8; READ_BLOCK];
    for c in &plan.chunks {
        let file = format!("chunk-{:0width$}", c.index);
        let mut out = std::io::BufWriter::new(File::create(tmp.path().join(&file))?);
        let mut hash = Sha256::new();
        let mut pos = c.start;
        while pos < c.end() {
            let want = ((c.end() - pos) as usize).min(buf.len());
            plan.input
                .read_exact_at(pos, &mut buf[..want])
                .context("reading the input")?;
            hash.update(&buf[..want]);
            out.write_all(&buf[..want])?;
            pos += want as u64;
        }
        out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        chunks.push(ManifestChunk {
            index: c.index,
            file,
            offset: c.start,
            bytes: c.len,
            lines: c.lines.unwrap_or(0),
            sha256: format!("{:x}", hash.finalize()),
            node: nodes.and_then(|n| n.get(c.index).cloned()),
        });
    }
    let manifest = Manifest {
        input: input.to_path_buf(),
        size: plan.input.total,
        lines: chunks.iter().map(|c| c.lines).sum(),
        chunks,
    };
    std::fs::write(
        tmp.path().join("manifest.json"),
        serde_json::to_string_pretty(&manifest)? + "\n",
    )?;
    replace_dir(tmp, outdir)?;
    Ok(manifest)
}

/// Put the finished `tmp` at `outdir`. An earlier split there is moved aside first and removed only once the new one is in
/// place, so a failure leaves either the old split or the new one whole.
fn replace_dir(tmp: tempfile::TempDir, outdir: &Path) -> Result<()> {
    // Whether an existing outdir may be replaced was checked before any work.
    let old = if outdir.exists() {
        let parent = tmp.path().parent().unwrap_or(Path::new("."));
        let aside = tempfile::Builder::new()
            .prefix(".distctl-split-old-")
            .tempdir_in(parent)?
            .keep();
        std::fs::rename(outdir, aside.join("old"))
            .with_context(|| format!("cannot move {} aside", outdir.display()))?;
        Some(aside)
    } else {
        None
    };
    if let Err(e) = std::fs::rename(tmp.path(), outdir) {
        if let Some(aside) = &old {
            let _ = std::fs::rename(aside.join("old"), outdir);
            let _ = std::fs::remove_dir_all(aside);
        }
        return Err(e).with_context(|| format!("cannot create {}", outdir.display()));
    }
    let _ = tmp.keep();
    if let Some(aside) = old {
        std::fs::remove_dir_all(&aside)
            .with_context(|| format!("cannot remove {}", aside.display()))?;
    }
    Ok(())
}
