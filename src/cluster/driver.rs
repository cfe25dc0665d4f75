//! The one way a per-node command meets its nodes: connect the selected
//! nodes (at most `--fanout` handshakes at a time, [`Connector`]), run the
//! command's body on every connected node, and hand back one
//! [`NodeResult`] per node in inventory order. A node that cannot be reached
//! becomes [`NodeOutcome::Unreachable`] without the body ever running.

use std::future::Future;
use std::sync::Arc;

use anyhow::Result;

use crate::cluster::inventory::{HostKeyChecking, Inventory, Node};
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

/// Connect every node in `nodes` and run `body` on each connected one; each
/// session is closed once its body is done. Results come back in the order
/// of `nodes`.
pub async fn each_node<T, F, Fut>(
    fanout: usize,
    nodes: &[Node],
    start: Start,
    body: F,
) -> Result<Vec<NodeResult<T>>>
where
    F: Fn(Arc<NodeSession>) -> Fut,
    Fut: Future<Output = NodeDone<T>>,
{
    warn_unchecked_host_keys(nodes);
    let connector = Connector::new(fanout)?;
    let body = &body;
    let finish = |node: &Node, conn: Result<Arc<NodeSession>, ConnectError>| {
        let node = node.clone();
        async move {
            let (outcome, detail) = match conn {
                Err(e) => (NodeOutcome::Unreachable { reason: e.reason }, None),
                Ok(session) => {
                    let done = body(session.clone()).await;
                    close(session).await;
                    done
                }
            };
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
            futures::future::join_all(nodes.iter().enumerate().map(|(i, node)| async move {
                let conn = connector.connect(i, node).await.map(Arc::new);
                finish(node, conn).await
            }))
            .await
        }
        Start::Together => {
            let conns = connector.connect_all(nodes).await;
            futures::future::join_all(
                nodes
                    .iter()
                    .zip(conns)
                    .map(|(node, conn)| finish(node, conn)),
            )
            .await
        }
    };
    Ok(results)
}

/// Close a session once the last task holding it has let go.
async fn close(session: Arc<NodeSession>) {
    if let Ok(session) = Arc::try_unwrap(session) {
        session.close().await;
    }
}

/// The selected nodes of this invocation, each with its connection or the
/// reason it has none: for `run` and `split`, which connect everything
/// before they plan.
pub struct Cluster {
    pub connector: Connector,
    pub nodes: Vec<(Node, Result<Arc<NodeSession>, ConnectError>)>,
}

impl Cluster {
    /// Load the inventory, apply the selection flags and connect to every
    /// selected node (at most `--fanout` handshakes at a time).
    pub async fn connect(g: &crate::cli::Global) -> Result<Cluster> {
        let nodes = Inventory::load(g)?.select(g)?;
        Cluster::connect_nodes(g, nodes).await
    }

    pub async fn connect_nodes(g: &crate::cli::Global, nodes: Vec<Node>) -> Result<Cluster> {
        warn_unchecked_host_keys(&nodes);
        let connector = Connector::new(g.fanout)?;
        let conns = connector.connect_all(&nodes).await;
        Ok(Cluster {
            connector,
            nodes: nodes.into_iter().zip(conns).collect(),
        })
    }

    /// Connected sessions only.
    pub fn sessions(&self) -> Vec<Arc<NodeSession>> {
        self.nodes
            .iter()
            .filter_map(|(_, c)| c.as_ref().ok().cloned())
            .collect()
    }

    /// Nodes that could not be reached, with why.
    pub fn unreachable(&self) -> Vec<&ConnectError> {
        self.nodes
            .iter()
            .filter_map(|(_, c)| c.as_ref().err())
            .collect()
    }

    /// Close every master connection.
    pub async fn close(self) {
        let sessions = self.nodes.into_iter().filter_map(|(_, c)| c.ok());
        futures::future::join_all(sessions.map(close)).await;
        drop(self.connector);
    }
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
