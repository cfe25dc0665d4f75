//! One module per command: glue between the CLI, the inventory, the transport
//! and the output. Little logic lives here.

use anyhow::Result;

use crate::cli::{Cli, Command};
use crate::exit::Exit;

pub mod collect;
pub mod completions;
pub mod disconnect;
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
    crate::transport::deadline::set_step_timeout(g.step_timeout.0);
    match cli.command {
        Command::Nodes(ref a) => nodes::run(g, a).await,
        Command::Disconnect(_) => disconnect::run(g).await,
        Command::Status(_) => interruptible(status::run(g)).await,
        Command::Collect(ref a) => collect::run(g, a).await,
        Command::Report(ref a) => report::run(g, a).await,
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

/// The driver for `status`, `setup`, `sync` and `fetch`: each node as soon
/// as it is connected, with the line of done and pending nodes on a
/// terminal (`crate::output::progress`).
async fn each_node_shown<T, F, Fut>(
    g: &crate::cli::Global,
    fleet: &crate::cluster::driver::Fleet,
    command: &str,
    nodes: &[crate::cluster::inventory::Node],
    body: F,
) -> Result<Vec<crate::cluster::NodeResult<T>>>
where
    F: Fn(std::sync::Arc<crate::transport::NodeSession>) -> Fut,
    Fut: std::future::Future<Output = crate::cluster::driver::NodeDone<T>>,
{
    let progress = crate::output::progress::NodesProgress::new(command, nodes, g.quiet);
    let results = crate::cluster::each_node(
        fleet,
        nodes,
        crate::cluster::Start::AsConnected,
        &progress,
        body,
    )
    .await;
    progress.finish();
    results
}

/// `run` and `split` connect every node before they plan.
pub use crate::cluster::Cluster;
