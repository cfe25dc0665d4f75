//! Feedback while waiting, on stderr (indicatif), hidden when stderr is not
//! a terminal or with `--quiet`:
//! - [`NodesProgress`]: for the per-node commands, after a second, one
//!   updating line with how many nodes are done and which are pending
//!   (like clush's `clush: 3/16`);
//! - [`RunProgress`]: a run's bytes with rate and ETA, lines per second, one
//!   line per node with its chunks. The runner only reports events here.

use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::cluster::driver::Watch;
use crate::cluster::inventory::Node;
use crate::cluster::NodeOutcome;

/// How long a per-node command may be silent before its line appears: quick
/// commands never flash a line.
const SHOW_AFTER: Duration = Duration::from_secs(1);

/// Progress feedback is for people: on a terminal, and not with `--quiet`.
pub fn shown(quiet: bool) -> bool {
    !quiet && std::io::stderr().is_terminal()
}

/// `distctl exec: 3/16 done (2s), waiting for node[4-16]`, drawn once
/// the command has run for [`SHOW_AFTER`], cleared when it ends. Clones
/// share one line.
#[derive(Clone)]
pub struct NodesProgress {
    bar: ProgressBar,
    state: Arc<Mutex<Pending>>,
}

struct Pending {
    names: Vec<String>,
    done: Vec<bool>,
    /// Set once [`NodesProgress::finish`] ran: the line never appears after.
    over: bool,
}

impl NodesProgress {
    /// A line for `command` over `nodes`; shown only when [`shown`].
    pub fn new(command: &str, nodes: &[Node], quiet: bool) -> NodesProgress {
        let bar =
            ProgressBar::with_draw_target(Some(nodes.len() as u64), ProgressDrawTarget::hidden())
                .with_style(
                    ProgressStyle::with_template(
                        "{prefix}: {pos}/{len} done ({elapsed}), waiting for {wide_msg}",
                    )
                    .expect("valid template"),
                )
                .with_prefix(format!("distctl {command}"));
        let names: Vec<String> = nodes.iter().map(|n| n.name.clone()).collect();
        bar.set_message(crate::cluster::nodeset::fold(&names));
        let progress = NodesProgress {
            bar,
            state: Arc::new(Mutex::new(Pending {
                done: vec![false; names.len()],
                names,
                over: false,
            })),
        };
        if shown(quiet) && !nodes.is_empty() {
            let p = progress.clone();
            std::thread::spawn(move || {
                std::thread::sleep(SHOW_AFTER);
                let state = p.state.lock().unwrap_or_else(|e| e.into_inner());
                if !state.over {
                    p.bar
                        .set_draw_target(ProgressDrawTarget::stderr_with_hz(10));
                    p.bar.enable_steady_tick(Duration::from_millis(200));
                }
            });
        }
        progress
    }

    /// Run `f` (which writes to the terminal) with the line cleared, then
    /// draw it again: printed lines never mix with it.
    pub fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        self.bar.suspend(f)
    }

    /// Print a line above the progress line (plainly when it is hidden).
    pub fn println(&self, line: &str) {
        self.suspend(|| eprintln!("{line}"));
    }

    /// Clear the line for good (done by itself once every node is done).
    pub fn finish(&self) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.over = true;
        self.bar.finish_and_clear();
    }
}

impl Watch for NodesProgress {
    fn node_done(&self, index: usize, _: &NodeOutcome) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if std::mem::replace(&mut state.done[index], true) {
            return;
        }
        let pending: Vec<&str> = state
            .names
            .iter()
            .zip(&state.done)
            .filter(|(_, done)| !**done)
            .map(|(n, _)| n.as_str())
            .collect();
        if pending.is_empty() {
            state.over = true;
            self.bar.finish_and_clear();
        } else {
            self.bar.inc(1);
            self.bar
                .set_message(crate::cluster::nodeset::fold(&pending));
        }
    }
}

pub struct RunProgress {
    multi: MultiProgress,
    overall: ProgressBar,
    nodes: Vec<(ProgressBar, NodeCounts)>,
    started: Instant,
    lines: u64,
    visible: bool,
}

#[derive(Default, Clone, Copy)]
struct NodeCounts {
    running: u64,
    done: u64,
    faults: u64,
}

impl RunProgress {
    /// `total`: input bytes when known (planned input), else a spinner.
    pub fn new(total: Option<u64>, nodes: &[String], quiet: bool) -> RunProgress {
        let visible = !quiet && std::io::stderr().is_terminal();
        let target = if visible {
            ProgressDrawTarget::stderr_with_hz(8)
        } else {
            ProgressDrawTarget::hidden()
        };
        let multi = MultiProgress::with_draw_target(target);
        let overall = match total {
            Some(t) => multi.add(
                ProgressBar::new(t).with_style(
                    ProgressStyle::with_template(
                        "{bar:30} {bytes}/{total_bytes} {bytes_per_sec} ETA {eta} {msg}",
                    )
                    .expect("valid template"),
                ),
            ),
            None => multi.add(
                ProgressBar::new_spinner().with_style(
                    ProgressStyle::with_template("{spinner} {bytes} {bytes_per_sec} {msg}")
                        .expect("valid template"),
                ),
            ),
        };
        let width = nodes.iter().map(|n| n.len()).max().unwrap_or(0);
        let node_bars = nodes
            .iter()
            .map(|n| {
                let bar = multi.add(ProgressBar::new(0).with_style(
                    ProgressStyle::with_template("  {prefix} {msg}").expect("valid template"),
                ));
                bar.set_prefix(format!("{n:width$}"));
                (bar, NodeCounts::default())
            })
            .collect();
        if visible {
            overall.enable_steady_tick(Duration::from_millis(250));
        }
        RunProgress {
            multi,
            overall,
            nodes: node_bars,
            started: Instant::now(),
            lines: 0,
            visible,
        }
    }

    /// Print a line above the bars (or plainly when they are hidden).
    pub fn warn(&self, msg: &str) {
        if self.visible {
            let _ = self.multi.println(format!("distctl: warning: {msg}"));
        } else {
            eprintln!("distctl: warning: {msg}");
        }
    }

    pub fn started(&mut self, node: usize) {
        self.nodes[node].1.running += 1;
        self.redraw(node);
    }

    pub fn finished(&mut self, node: usize, bytes: u64, lines: u64) {
        let c = &mut self.nodes[node].1;
        c.running -= 1;
        c.done += 1;
        self.redraw(node);
        self.advance(bytes, lines);
    }

    /// Bytes done without running (resumed chunks).
    pub fn advance(&mut self, bytes: u64, lines: u64) {
        self.overall.inc(bytes);
        self.lines += lines;
        let secs = self.started.elapsed().as_secs_f64().max(0.001);
        self.overall
            .set_message(format!("{:.0} lines/s", self.lines as f64 / secs));
    }

    pub fn failed(&mut self, node: usize) {
        let c = &mut self.nodes[node].1;
        c.running -= 1;
        c.faults += 1;
        self.redraw(node);
    }

    fn redraw(&self, node: usize) {
        let (bar, c) = &self.nodes[node];
        let mut msg = format!("{} chunk(s) done, {} running", c.done, c.running);
        if c.faults > 0 {
            msg.push_str(&format!(", {} failed", c.faults));
        }
        bar.set_message(msg);
    }

    pub fn finish(&self) {
        for (bar, _) in &self.nodes {
            bar.finish_and_clear();
        }
        self.overall.finish_and_clear();
        let _ = self.multi.clear();
    }
}
