//! `collect --every`: rounds on absolute ticks, and what the rounds did, for
//! the lines a person sees on a terminal.

use std::time::Duration;

use crate::cluster::NodeOutcome;
use crate::metrics::MetricsSample;

/// `--every`'s schedule: rounds start on absolute ticks (start + k × period),
/// so a slow round never pushes the later ones; a round that overruns its
/// period skips the ticks it missed, and says so once.
pub struct Ticks {
    interval: tokio::time::Interval,
    period: Duration,
    warned: bool,
}

impl Ticks {
    pub fn new(period: Duration) -> Ticks {
        let mut interval = tokio::time::interval(period);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        Ticks {
            interval,
            period,
            warned: false,
        }
    }

    pub async fn next(&mut self) {
        self.interval.tick().await;
    }

    pub fn check_overrun(&mut self, round: u64, took: Duration) {
        if took > self.period && !std::mem::replace(&mut self.warned, true) {
            eprintln!(
                "distctl: warning: round {round} took {:.2}s, longer than --every {}: \
                 rounds whose start was missed are skipped to stay on the period",
                took.as_secs_f64(),
                crate::units::Dur(self.period)
            );
        }
    }
}

/// What `--every` has done so far, for its lines on a terminal.
#[derive(Default)]
pub struct Tally {
    pub rounds: u64,
    pub samples: u64,
    pub missed: u64,
    pub interrupted: bool,
}

impl Tally {
    pub fn add(&mut self, outcomes: &[NodeOutcome]) {
        self.rounds += 1;
        let ok = outcomes.iter().filter(|o| o.succeeded()).count() as u64;
        self.samples += ok;
        self.missed += outcomes.len() as u64 - ok;
    }

    /// `distctl collect: round 2/4 at 15:44:03Z: 3/3 node(s) sampled in 1.05s`
    pub fn round_line(
        &self,
        rounds: Option<u64>,
        samples: &[MetricsSample],
        outcomes: &[NodeOutcome],
        took: Duration,
    ) -> String {
        let of = rounds.map_or(String::new(), |n| format!("/{n}"));
        let at = samples
            .first()
            .and_then(|s| s.timestamp_utc.get(11..19))
            .unwrap_or("?");
        let missing: Vec<&str> = samples
            .iter()
            .zip(outcomes)
            .filter(|(_, o)| !o.succeeded())
            .map(|(s, _)| s.node.as_str())
            .collect();
        let mut line = format!(
            "distctl collect: round {}{of} at {at} UTC: {}/{} node(s) sampled in {:.2}s",
            self.rounds,
            outcomes.len() - missing.len(),
            outcomes.len(),
            took.as_secs_f64()
        );
        if !missing.is_empty() {
            line.push_str(&format!(
                ", not {}",
                crate::cluster::nodeset::fold(&missing)
            ));
        }
        line
    }

    /// `distctl collect: 4 round(s) in 3.2s: 12 sample(s) written, 0 missed`
    pub fn summary(&self, took: Duration) -> String {
        format!(
            "distctl collect: {} round(s) in {:.1}s: {} sample(s) written, {} missed{}",
            self.rounds,
            took.as_secs_f64(),
            self.samples,
            self.missed,
            if self.interrupted {
                " (interrupted)"
            } else {
                ""
            }
        )
    }
}
