//! Feedback while waiting, on stderr (indicatif), hidden when stderr is not
//! a terminal or with `--quiet`:
//! - [`NodesProgress`]: for the per-node commands, after a second, one
//!   updating line with how many nodes are done and which are pending
//!   (like clush's `clush: 3/16`);
//! - [`RunProgress`]: a run's bytes with rate and ETA, lines per second, one
//!   line per node with its chunks. The runner only reports events here.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::cluster::driver::Watch;
use crate::cluster::inventory::Node;
use crate::cluster::NodeOutcome;
use crate::units::human_bytes;

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

/// Bytes and lines the attempts of a run have moved so far, counted as they
/// go, so the bar moves with the bytes and not only when a chunk finishes
/// (`run::attempt` counts the bytes; lines are the agents' to count, in
/// their heartbeats, since distctl splices most chunks without reading
/// them). A retried chunk's bytes and lines count again; the bar never
/// passes the total.
#[derive(Default)]
pub struct Traffic {
    sent: AtomicU64,
    lines: AtomicU64,
    received: AtomicU64,
}

impl Traffic {
    /// `bytes` went up a channel.
    pub fn sent(&self, bytes: u64) {
        self.sent.fetch_add(bytes, Ordering::Relaxed);
    }

    /// An agent has read `lines` more lines.
    pub fn lines(&self, lines: u64) {
        self.lines.fetch_add(lines, Ordering::Relaxed);
    }

    /// `bytes` of results came back down a channel.
    pub fn received(&self, bytes: u64) {
        self.received.fetch_add(bytes, Ordering::Relaxed);
    }
}

/// What the run's overall line shows, read at every redraw.
struct Flow {
    traffic: Arc<Traffic>,
    /// Bytes done before this run started (resumed chunks).
    resumed: AtomicU64,
    total: Option<u64>,
    started: Instant,
}

impl Flow {
    /// `██████░░░░ 320.0 MiB/1.0 GiB sent, 160.0 MiB/s, 310.2 MiB back,
    /// 1,731,364 lines/s, 2s elapsed, ETA 4s`; no rate or ETA before there is
    /// one, a spinner's share without a total (standard input).
    fn line(&self) -> String {
        self.line_at(self.started.elapsed())
    }

    /// [`Flow::line`] as it reads `elapsed` after the start.
    fn line_at(&self, elapsed: Duration) -> String {
        let secs = elapsed.as_secs_f64();
        let sent = self.traffic.sent.load(Ordering::Relaxed);
        let resumed = self.resumed.load(Ordering::Relaxed);
        let done = resumed + sent;
        let mut parts = Vec::new();
        let mut out = String::new();
        match self.total {
            Some(total) => {
                let done = done.min(total);
                let filled = (done as f64 / total.max(1) as f64 * 20.0).round() as usize;
                out.push_str(&"█".repeat(filled));
                out.push_str(&"░".repeat(20 - filled.min(20)));
                out.push(' ');
                parts.push(format!("{}/{} sent", human_bytes(done), human_bytes(total)));
            }
            None => parts.push(format!("{} sent", human_bytes(done))),
        }
        let rate = (secs >= 0.5 && sent > 0).then(|| sent as f64 / secs);
        if let Some(rate) = rate {
            parts.push(format!("{}/s", human_bytes(rate as u64)));
        }
        parts.push(format!(
            "{} back",
            human_bytes(self.traffic.received.load(Ordering::Relaxed))
        ));
        if rate.is_some() {
            let lines = self.traffic.lines.load(Ordering::Relaxed) as f64 / secs;
            parts.push(format!("{} lines/s", thousands(lines as u64)));
        }
        parts.push(format!("{} elapsed", short_duration(elapsed)));
        if let (Some(total), Some(rate)) = (self.total, rate) {
            if secs >= 1.0 && done < total {
                let left = total.saturating_sub(done) as f64 / rate;
                parts.push(format!(
                    "ETA {}",
                    short_duration(Duration::from_secs_f64(left))
                ));
            }
        }
        out.push_str(&parts.join(", "));
        out
    }
}

/// `1731364` → `1,731,364`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `4s`, `1m05s`, `2h03m`: a clock for people.
fn short_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

/// A run's progress on stderr: the overall line ([`Flow`]), one line per
/// node with its chunks. Hidden off a terminal or with `--quiet`.
pub struct RunProgress {
    multi: MultiProgress,
    overall: ProgressBar,
    flow: Arc<Flow>,
    nodes: Vec<(ProgressBar, NodeCounts)>,
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
        let visible = shown(quiet);
        let target = if visible {
            ProgressDrawTarget::stderr_with_hz(8)
        } else {
            ProgressDrawTarget::hidden()
        };
        let multi = MultiProgress::with_draw_target(target);
        let flow = Arc::new(Flow {
            traffic: Arc::default(),
            resumed: AtomicU64::new(0),
            total,
            started: Instant::now(),
        });
        let f = flow.clone();
        let template = if total.is_some() {
            "{flow}"
        } else {
            "{spinner} {flow}"
        };
        let overall = multi.add(
            ProgressBar::new_spinner().with_style(
                ProgressStyle::with_template(template)
                    .expect("valid template")
                    .with_key(
                        "flow",
                        move |_: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                            let _ = w.write_str(&f.line());
                        },
                    ),
            ),
        );
        let width = nodes.iter().map(|n| n.len()).max().unwrap_or(0);
        let node_bars = nodes
            .iter()
            .map(|n| {
                let bar = multi.add(ProgressBar::new(0).with_style(
                    ProgressStyle::with_template("  {prefix} {msg}").expect("valid template"),
                ));
                bar.set_prefix(format!("{n:width$}"));
                bar.set_message("connecting");
                (bar, NodeCounts::default())
            })
            .collect();
        if visible {
            overall.enable_steady_tick(Duration::from_millis(250));
        }
        RunProgress {
            multi,
            overall,
            flow,
            nodes: node_bars,
            visible,
        }
    }

    /// Where the attempts count what they move.
    pub fn traffic(&self) -> Arc<Traffic> {
        self.flow.traffic.clone()
    }

    /// Print a line above the bars (or plainly when they are hidden).
    pub fn warn(&self, msg: &str) {
        if self.visible {
            let _ = self.multi.println(format!("distctl: warning: {msg}"));
        } else {
            eprintln!("distctl: warning: {msg}");
        }
    }

    /// The node is connected and prepared.
    pub fn joined(&self, node: usize) {
        self.redraw(node);
    }

    /// The node could not join the run (the warning says why).
    pub fn skipped(&self, node: usize) {
        self.nodes[node].0.set_message("skipped");
    }

    pub fn started(&mut self, node: usize) {
        self.nodes[node].1.running += 1;
        self.redraw(node);
    }

    pub fn finished(&mut self, node: usize) {
        let c = &mut self.nodes[node].1;
        c.running -= 1;
        c.done += 1;
        self.redraw(node);
    }

    /// Bytes done without running (resumed chunks).
    pub fn resumed(&mut self, bytes: u64) {
        self.flow.resumed.fetch_add(bytes, Ordering::Relaxed);
    }

    /// A chunk that did not run after all (it goes back to the queue).
    pub fn withdrawn(&mut self, node: usize) {
        self.nodes[node].1.running -= 1;
        self.redraw(node);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1731364), "1,731,364");
    }

    #[test]
    fn no_rate_or_eta_before_there_is_one() {
        let flow = Flow {
            traffic: Arc::default(),
            resumed: AtomicU64::new(0),
            total: Some(1 << 20),
            started: Instant::now(),
        };
        let line = flow.line_at(Duration::ZERO);
        assert!(
            line.ends_with("0 B/1.0 MiB sent, 0 B back, 0s elapsed"),
            "{line}"
        );
        flow.traffic.sent(512 << 10);
        flow.traffic.lines(65536);
        let line = flow.line_at(Duration::from_secs(2));
        assert!(
            line.starts_with(
                "██████████░░░░░░░░░░ 512.0 KiB/1.0 MiB sent, 256.0 KiB/s, 0 B back, 32,76"
            ),
            "{line}"
        );
        assert!(line.ends_with(" lines/s, 2s elapsed, ETA 2s"), "{line}");
        // All sent, results still coming: no ETA of 0s.
        flow.traffic.sent(512 << 10);
        let line = flow.line_at(Duration::from_secs(2));
        assert!(!line.contains("ETA"), "{line}");
    }
}
