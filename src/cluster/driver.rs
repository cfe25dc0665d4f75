//! The one way a per-node command meets its nodes: connect the selected
//! nodes (at most `--fanout` handshakes at a time, [`Connector`]), run the
//! command's body on every connected node, and hand back one
//! [`NodeResult`] per node in inventory order. A node that cannot be reached
//! becomes [`NodeOutcome::Unreachable`] without the body ever running.

use std::future::Future;
use std::sync::Arc;

use anyhow::Result;

use crate::cluster::history::OutcomeLog;
use crate::cluster::inventory::{HostKeyChecking, Node, Source};
use crate::cluster::outcome::NodeOutcome;
use crate::transport::{ConnectError, Connector, NodeSession};

/// One node's result: how it ended, and what the body reported (`None` when
/// the body never ran, or gave nothing on failure).
#[derive(Debug)]
pub struct NodeResult<T> {
    pub node: Node,
    pub outcome: NodeOutcome,
    pub detail: Option<T>,
}

/// When the bodies start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Each node as soon as its own connection is up: no node waits for the
    /// slowest handshake, as with plain parallel ssh.
    AsConnected,
    /// All together once every connection is up or has failed (`collect`:
    /// every node samples the same interval).
    Together,
}

/// What a body gives back for its node.
pub type NodeDone<T> = (NodeOutcome, Option<T>);

/// A body's fallible work as a [`NodeDone`]: an error is
/// [`NodeOutcome::Failed`] with the error's chain as the reason.
/// A step past `--step-timeout` is [`NodeOutcome::TimedOut`].
pub fn failed_on_error<T>(result: Result<(NodeOutcome, T)>) -> NodeDone<T> {
    match result {
        Ok((outcome, detail)) => (outcome, Some(detail)),
        Err(e) if NodeOutcome::timed_out(&e).is_some() => {
            (NodeOutcome::timed_out(&e).unwrap(), None)
        }
        Err(e) => (
            NodeOutcome::Failed {
                reason: format!("{e:#}"),
            },
            None,
        ),
    }
}

/// How a per-node command meets its nodes, besides its body: how it
/// connects, how many nodes it starts at a time ([`Rollout`]), and where it
/// records what happened ([`Record`]).
#[derive(Debug, Clone)]
pub struct Fleet {
    /// `--fanout`: handshakes at once.
    pub fanout: usize,
    /// `--persist`: over each node's `persist` (zero: none).
    pub persist: Option<std::time::Duration>,
    pub rollout: Rollout,
    pub record: Option<Record>,
}

/// Where a command's outcomes go, for `--nodes @failed` next time.
#[derive(Debug, Clone)]
pub struct Record {
    pub command: &'static str,
    pub source: Source,
}

/// A count of nodes, or a share of the selection: `--batch 4`, `--max-fail 10%`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Share {
    Count(usize),
    Percent(f64),
}

impl Share {
    /// Nodes out of `total`: a percentage rounds up for a batch (at least
    /// one node), down for a failure budget.
    fn of(self, total: usize, round_up: bool) -> usize {
        match self {
            Share::Count(n) => n,
            Share::Percent(p) => {
                let exact = p * total as f64 / 100.0;
                if round_up {
                    (exact.ceil() as usize).max(1)
                } else {
                    exact.floor() as usize
                }
            }
        }
    }
}

impl std::str::FromStr for Share {
    type Err = String;

    fn from_str(s: &str) -> Result<Share, String> {
        let s = s.trim();
        if let Some(p) = s.strip_suffix('%') {
            let v: f64 = p
                .trim()
                .parse()
                .map_err(|_| format!("bad percentage '{s}' (e.g. 25%)"))?;
            if !(0.0..=100.0).contains(&v) {
                return Err(format!("'{s}' is not between 0% and 100%"));
            }
            return Ok(Share::Percent(v));
        }
        s.parse()
            .map(Share::Count)
            .map_err(|_| format!("bad count '{s}' (a number of nodes, or a percentage like 25%)"))
    }
}

/// Rolling a change out a few nodes at a time (Ansible's `serial` and
/// `max_fail_percentage`). The default starts every node at once and never stops.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Rollout {
    /// Nodes per batch; the next batch starts when the previous one is done.
    pub batch: Option<Share>,
    /// More failures than this (unreachable nodes count) start no new node;
    /// `Count(0)` is `--fail-fast`.
    pub max_fail: Option<Share>,
}

/// Counts failures as nodes finish and says when no new node may start.
struct Gate {
    allowed: Option<usize>,
    failures: std::sync::atomic::AtomicUsize,
}

impl Gate {
    fn closed(&self) -> bool {
        self.allowed
            .is_some_and(|a| self.failures.load(std::sync::atomic::Ordering::SeqCst) > a)
    }

    fn finished(&self, outcome: &NodeOutcome) {
        if !outcome.succeeded() {
            self.failures
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }
}

/// Told as each node's part ends (unreachable or its body done), so that a
/// command can show how many are done and which are pending; the driver
/// itself knows nothing of terminals.
pub trait Watch: Sync {
    /// Node `index` (into the `nodes` given to [`each_node`]) has ended.
    fn node_done(&self, index: usize, outcome: &NodeOutcome);
}

/// Nobody is watching.
pub struct Unwatched;

impl Watch for Unwatched {
    fn node_done(&self, _: usize, _: &NodeOutcome) {}
}

/// Connect every node in `nodes` and run `body` on each connected one; each
/// session is closed once its body is done, and `watch` is told. Results
/// come back in the order of `nodes`; nodes the rollout never started are
/// [`NodeOutcome::Skipped`]. The outcomes are recorded where `fleet.record`
/// says.
pub async fn each_node<T, F, Fut>(
    fleet: &Fleet,
    nodes: &[Node],
    start: Start,
    watch: &dyn Watch,
    body: F,
) -> Result<Vec<NodeResult<T>>>
where
    F: Fn(Arc<NodeSession>) -> Fut,
    Fut: Future<Output = NodeDone<T>>,
{
    warn_unchecked_host_keys(nodes);
    let mut connector = Connector::new(fleet.fanout)?;
    connector.persist = fleet.persist;
    let body = &body;
    let gate = &Gate {
        allowed: fleet.rollout.max_fail.map(|m| m.of(nodes.len(), false)),
        failures: Default::default(),
    };
    let skipped = |i: usize, node: &Node| {
        watch.node_done(i, &NodeOutcome::Skipped);
        NodeResult {
            node: node.clone(),
            outcome: NodeOutcome::Skipped,
            detail: None,
        }
    };
    let finish = |i: usize, node: &Node, conn: Result<Arc<NodeSession>, ConnectError>| {
        let node = node.clone();
        async move {
            let (outcome, detail) = match conn {
                Err(e) => (NodeOutcome::Unreachable { reason: e.reason }, None),
                Ok(session) if gate.closed() => {
                    close(session).await;
                    (NodeOutcome::Skipped, None)
                }
                Ok(session) => {
                    let done = body(session.clone()).await;
                    close(session).await;
                    done
                }
            };
            gate.finished(&outcome);
            watch.node_done(i, &outcome);
            NodeResult {
                node,
                outcome,
                detail,
            }
        }
    };
    let results = match start {
        Start::AsConnected => {
            let connector = &connector;
            let batch = fleet
                .rollout
                .batch
                .map_or(nodes.len(), |b| b.of(nodes.len(), true))
                .max(1);
            let mut results = Vec::with_capacity(nodes.len());
            for (b, group) in nodes.chunks(batch).enumerate() {
                let first = b * batch;
                let done = futures::future::join_all(group.iter().enumerate().map(
                    |(i, node)| async move {
                        if gate.closed() {
                            return skipped(first + i, node);
                        }
                        let conn = connector.connect(first + i, node).await.map(Arc::new);
                        finish(first + i, node, conn).await
                    },
                ))
                .await;
                results.extend(done);
            }
            results
        }
        Start::Together => {
            let conns = connector.connect_all(nodes).await;
            futures::future::join_all(
                nodes
                    .iter()
                    .zip(conns)
                    .enumerate()
                    .map(|(i, (node, conn))| finish(i, node, conn)),
            )
            .await
        }
    };
    // Out of descriptors or memory here: whichever nodes it hit, none of
    // them is to blame, and none is recorded as failed.
    if let Some(stop) = crate::transport::local_problem() {
        return Err(stop);
    }
    if let Some(record) = &fleet.record {
        record_outcomes(
            record,
            results.iter().map(|r| (r.node.name.as_str(), &r.outcome)),
        );
    }
    Ok(results)
}

/// Keep this command's outcomes for `--nodes @failed`; a state directory
/// that cannot be written costs a warning, never the command.
pub fn record_outcomes<'a>(
    record: &Record,
    outcomes: impl IntoIterator<Item = (&'a str, &'a NodeOutcome)>,
) {
    let recorded = OutcomeLog::for_source(&record.source)
        .and_then(|log| log.record(record.command, &record.source, outcomes));
    if let Err(e) = recorded {
        eprintln!("distctl: warning: cannot record outcomes for --nodes @failed: {e:#}");
    }
}

/// Close a session once the last task holding it has let go.
async fn close(session: Arc<NodeSession>) {
    if let Ok(session) = Arc::try_unwrap(session) {
        session.close().await;
    }
}

/// The selected nodes of this invocation, each with its connection or the
/// reason it has none: for `split`, which connects everything before it
/// plans (`run` lets each node join as it connects).
pub struct Cluster {
    pub connector: Connector,
    pub nodes: Vec<(Node, Result<Arc<NodeSession>, ConnectError>)>,
}

impl Cluster {
    /// Connect to every node given (at most `fanout` handshakes at a time;
    /// masters kept up `persist` after the command where it is set).
    pub async fn connect_nodes(
        fanout: usize,
        persist: Option<std::time::Duration>,
        nodes: Vec<Node>,
    ) -> Result<Cluster> {
        warn_unchecked_host_keys(&nodes);
        let mut connector = Connector::new(fanout)?;
        connector.persist = persist;
        let conns = connector.connect_all(&nodes).await;
        let cluster = Cluster {
            connector,
            nodes: nodes.into_iter().zip(conns).collect(),
        };
        if let Some(stop) = crate::transport::local_problem() {
            cluster.close().await;
            return Err(stop);
        }
        Ok(cluster)
    }

    /// Close every master connection.
    pub async fn close(self) {
        let sessions = self.nodes.into_iter().filter_map(|(_, c)| c.ok()).collect();
        close_all(self.connector, sessions).await;
    }
}

/// Close every session of `connector` (each one no longer shared), then
/// the connector itself.
pub async fn close_all(connector: Connector, sessions: Vec<Arc<NodeSession>>) {
    futures::future::join_all(sessions.into_iter().map(close)).await;
    drop(connector);
}

/// Say once per process (`collect --every` connects every round), loudly,
/// which nodes are reached without host-key checking.
pub fn warn_unchecked_host_keys(nodes: &[Node]) {
    let off: Vec<&str> = nodes
        .iter()
        .filter(|n| n.host_key_checking == HostKeyChecking::Off && !n.local)
        .map(|n| n.name.as_str())
        .collect();
    static WARNED: std::sync::Once = std::sync::Once::new();
    if !off.is_empty() {
        WARNED.call_once(|| {
            eprintln!(
                "distctl: warning: host key checking is off for {}: connections can be intercepted",
                crate::cluster::nodeset::fold(&off)
            )
        });
    }
}

#[cfg(test)]
mod tests {
    use super::Share;

    #[test]
    fn shares_are_counts_or_percentages_of_the_selection() {
        let batch = |s: &str, total| s.parse::<Share>().unwrap().of(total, true);
        let budget = |s: &str, total| s.parse::<Share>().unwrap().of(total, false);
        assert_eq!(batch("4", 10), 4);
        assert_eq!(batch("25%", 10), 3, "a batch rounds up");
        assert_eq!(batch("1%", 10), 1, "a batch is at least one node");
        assert_eq!(budget("25%", 10), 2, "a failure budget rounds down");
        assert_eq!(budget("0", 10), 0);
        assert!("150%".parse::<Share>().is_err());
        assert!("x".parse::<Share>().unwrap_err().contains("bad count"));
    }
}
