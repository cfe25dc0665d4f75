//! One module per command: glue between the CLI, the inventory, the transport
//! and the output. Little logic lives here.

use anyhow::Result;

use crate::cli::{Cli, Command};
use crate::exit::Exit;

pub mod collect;
pub mod completions;
pub mod exec;
pub mod fetch;
pub mod init;
pub mod nodes;
pub mod report;
pub mod run;
pub mod setup;
pub mod split;
pub mod status;
pub mod sync;

pub async fn dispatch(cli: Cli) -> Result<Exit> {
    crate::shutdown::install()?;
    let g = &cli.global;
    match cli.command {
        Command::Nodes(_) => nodes::run(g).await,
        Command::Status(_) => interruptible(status::run(g)).await,
        Command::Collect(ref a) => collect::run(g, a).await,
        Command::Report(ref a) => report::run(a).await,
        Command::Split(ref a) => interruptible(split::run(g, a)).await,
        Command::Exec(ref a) => exec::run(g, a).await,
        Command::Sync(ref a) => interruptible(sync::run(g, a)).await,
        Command::Fetch(ref a) => interruptible(fetch::run(g, a)).await,
        Command::Completions(ref a) => completions::run(a),
        Command::Init(ref a) => init::run(g, a),
        Command::Setup(ref a) => interruptible(setup::run(g, a)).await,
        Command::Run(ref a) => run::run(g, a).await,
    }
}

/// For commands without a stop story of their own (`run`, `exec` and
/// `collect` stop gracefully themselves): on the first signal drop the whole
/// command, so its ssh masters are shut down and its control directory and
/// temporary files are removed instead of being left behind.
async fn interruptible(work: impl std::future::Future<Output = Result<Exit>>) -> Result<Exit> {
    tokio::select! {
        result = work => result,
        stop = crate::shutdown::requested() => Err(crate::shutdown::error(stop)),
    }
}

/// The selected nodes of this invocation, each with its connection or the
/// reason it has none. Commands start here.
pub struct Cluster {
    pub connector: crate::transport::Connector,
    pub nodes: Vec<(
        crate::cluster::inventory::Node,
        Result<std::sync::Arc<crate::transport::NodeSession>, crate::transport::ConnectError>,
    )>,
}

impl Cluster {
    /// Load the inventory, apply the selection flags and connect to every
    /// selected node (at most `--fanout` handshakes at a time).
    pub async fn connect(g: &crate::cli::Global) -> Result<Cluster> {
        let inventory = crate::cluster::inventory::Inventory::load(g)?;
        let nodes = inventory.select(g)?;
        Cluster::connect_nodes(g, nodes).await
    }

    pub async fn connect_nodes(
        g: &crate::cli::Global,
        nodes: Vec<crate::cluster::inventory::Node>,
    ) -> Result<Cluster> {
        warn_unchecked_host_keys(&nodes);
        let connector = crate::transport::Connector::new(g.fanout)?;
        let conns = connector.connect_all(&nodes).await;
        Ok(Cluster {
            connector,
            nodes: nodes.into_iter().zip(conns).collect(),
        })
    }

    /// Connected sessions only.
    pub fn sessions(&self) -> Vec<std::sync::Arc<crate::transport::NodeSession>> {
        self.nodes
            .iter()
            .filter_map(|(_, c)| c.as_ref().ok().cloned())
            .collect()
    }

    /// Nodes that could not be reached, with why.
    pub fn unreachable(&self) -> Vec<&crate::transport::ConnectError> {
        self.nodes
            .iter()
            .filter_map(|(_, c)| c.as_ref().err())
            .collect()
    }

    /// Close every master connection.
    pub async fn close(self) {
        let sessions: Vec<_> = self
            .nodes
            .into_iter()
            .filter_map(|(_, c)| c.ok())
            .filter_map(|s| std::sync::Arc::try_unwrap(s).ok())
            .collect();
        futures::future::join_all(sessions.into_iter().map(|s| s.close())).await;
        drop(self.connector);
    }
}

/// Say once per process (`collect --every` connects every round), loudly, which nodes are reached without host-key checking.
pub fn warn_unchecked_host_keys(nodes: &[crate::cluster::inventory::Node]) {
    let off: Vec<&str> = nodes
        .iter()
        .filter(|n| {
            n.host_key_checking == crate::cluster::inventory::HostKeyChecking::Off && !n.local
        })
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

/// Connect to every node and run `work` for each as soon as its own
/// connection is up (or has failed), at most `--fanout` nodes at a time.
/// No barrier waits for the slowest handshake, as with plain parallel ssh.
/// Results come back in the order of `nodes`.
pub async fn for_each_node<'a, T, F, Fut>(
    g: &crate::cli::Global,
    nodes: &'a [crate::cluster::inventory::Node],
    work: F,
) -> Result<Vec<T>>
where
    F: Fn(
        &'a crate::cluster::inventory::Node,
        Result<crate::transport::NodeSession, crate::transport::ConnectError>,
    ) -> Fut,
    Fut: std::future::Future<Output = T>,
{
    warn_unchecked_host_keys(nodes);
    let connector = crate::transport::Connector::new(g.fanout)?;
    let gate = tokio::sync::Semaphore::new(connector.fanout);
    let (gate, connector, work) = (&gate, &connector, &work);
    Ok(
        futures::future::join_all(nodes.iter().enumerate().map(|(i, node)| async move {
            let _permit = gate.acquire().await.expect("semaphore closed");
            work(node, connector.connect(i, node).await).await
        }))
        .await,
    )
}
