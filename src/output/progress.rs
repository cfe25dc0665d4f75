//! Progress of a run on stderr (indicatif): overall bytes with rate and ETA,
//! lines per second, one line per node with its chunks. Hidden when stderr is
//! not a terminal or with `--quiet`; the runner only reports events here.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

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
