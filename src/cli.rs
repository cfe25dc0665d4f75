//! The command line: one struct per command. Flags shared by every command
//! (inventory and node selection, output mode) live in [`Global`].

use std::path::PathBuf;

use clap::parser::ValueSource;
use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

pub use crate::sync::mirror::SyncMethod;
use crate::units::{ByteSize, Dur};

#[derive(Debug, Parser)]
#[command(
    name = "distctl",
    version,
    about = "Drive a cluster of Linux machines over SSH: split a file, run it on every node, merge in order, collect metrics",
    propagate_version = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// Parse the command line (exit 2 with clap's message on a usage
    /// error), noting which global flags were typed (a command that does
    /// not use one refuses it: [`Global::refuse`]).
    pub fn parse_args() -> Cli {
        let matches = Cli::command().try_get_matches().unwrap_or_else(|e| {
            // With --json, a usage error is a JSON document on stdout too.
            let help = matches!(
                e.kind(),
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion
            );
            if !help && std::env::args_os().any(|a| a == "--json") {
                let text = e.render().to_string();
                let first = text.lines().next().unwrap_or_default();
                crate::output::json::print_error(
                    first.trim_start_matches("error: "),
                    e.exit_code(),
                );
            }
            e.exit()
        });
        let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
        let typed = |m: &ArgMatches, id: &str| {
            m.try_get_raw(id).is_ok() && m.value_source(id) == Some(ValueSource::CommandLine)
        };
        let sub = matches.subcommand().map(|(_, m)| m);
        cli.global.typed = Cli::command()
            .get_arguments()
            .map(|a| a.get_id().as_str().to_string())
            .filter(|id| typed(&matches, id) || sub.is_some_and(|m| typed(m, id)))
            .collect();
        cli
    }
}

/// Flags every command takes; `--help` shows them under their own heading.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Global options")]
pub struct Global {
    /// Inventory file (default: $DISTCTL_INVENTORY, ./cluster.toml,
    /// ~/.config/distctl/cluster.toml, /etc/distctl/cluster.toml, else the built-in `local` node)
    #[arg(long, short = 'i', global = true, value_name = "PATH")]
    pub inventory: Option<PathBuf>,
    /// Ad-hoc inventory instead of a file: 'node[1-3],admin@db:2222'
    #[arg(
        long,
        short = 'H',
        global = true,
        value_name = "HOSTS",
        conflicts_with = "inventory"
    )]
    pub hosts: Option<String>,
    /// Only these nodes (names or ranges: 'node[1-4,7],db'; default: every node)
    #[arg(long, short = 'n', global = true, value_name = "NODESET")]
    pub nodes: Option<String>,
    /// Leave out these nodes (names or ranges)
    #[arg(long, short = 'x', global = true, value_name = "NODESET")]
    pub exclude: Option<String>,
    /// Only nodes carrying this label (repeat: all must match)
    #[arg(long, short = 'l', global = true, value_name = "LABEL")]
    pub label: Vec<String>,
    /// At most N ssh connections being set up (handshakes) at once, for
    /// every command; once connected, every selected node works at once
    #[arg(long, global = true, default_value_t = 64, value_name = "N")]
    pub fanout: usize,
    /// Keep each node's ssh master up this long after the command, for the
    /// next invocation to reuse (e.g. 10m; 0 turns the inventory's `persist`
    /// off; default: the inventory's, else none)
    #[arg(long, global = true, value_name = "DURATION")]
    pub persist: Option<Dur>,
    /// Bound on every remote step once connected (status probe, agent
    /// install, sync, fetch, core count; a collect sample gets it on top of
    /// its interval): a node past it is reported timed out, not waited for
    #[arg(long, global = true, default_value = "60s", value_name = "DURATION")]
    pub step_timeout: Dur,
    /// Machine-readable JSON instead of tables
    #[arg(long, global = true)]
    pub json: bool,
    /// No progress bars or informational messages
    #[arg(long, short = 'q', global = true)]
    pub quiet: bool,
    /// The global flags typed on the command line (by clap id, `fanout`).
    #[arg(skip)]
    pub typed: Vec<String>,
}

impl Global {
    /// A usage error (exit 2) when one of `flags` (clap ids) was typed: a
    /// command refuses the global flags it does not use rather than
    /// ignoring them.
    pub fn refuse(&self, command: &str, flags: &[&str]) -> anyhow::Result<()> {
        match flags.iter().find(|f| self.typed.iter().any(|t| t == *f)) {
            Some(flag) => Err(crate::usage!("{command} does not use --{flag}")),
            None => Ok(()),
        }
    }
}

impl From<&Global> for crate::cluster::inventory::Lookup {
    fn from(g: &Global) -> Self {
        Self {
            hosts: g.hosts.clone(),
            file: g.inventory.clone(),
        }
    }
}

impl Global {
    /// How `command` meets its nodes: `--fanout`, the rollout (none for
    /// commands without rollout flags) and the record of its outcomes.
    pub fn fleet(
        &self,
        inventory: &crate::cluster::inventory::Inventory,
        command: &'static str,
        rollout: Option<&RolloutArgs>,
    ) -> crate::cluster::driver::Fleet {
        crate::cluster::driver::Fleet {
            fanout: self.fanout,
            persist: self.persist.map(|d| d.0),
            rollout: rollout.map(RolloutArgs::rollout).unwrap_or_default(),
            record: Some(crate::cluster::driver::Record {
                command,
                source: inventory.source.clone(),
            }),
        }
    }
}

/// Rolling a change out a few nodes at a time (`exec`, `sync`, `setup`).
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Rollout")]
pub struct RolloutArgs {
    /// Work on N nodes (or P% of the selection) at a time; the next batch
    /// starts when the previous one is done (default: every node at once)
    #[arg(long, value_name = "N|P%")]
    pub batch: Option<crate::cluster::driver::Share>,
    /// Start no new node after the first failure (nodes not started are `skipped`)
    #[arg(long, conflicts_with = "max_fail")]
    pub fail_fast: bool,
    /// Start no new node once more than N nodes (or P% of the selection)
    /// failed (default: no limit)
    #[arg(long, value_name = "N|P%")]
    pub max_fail: Option<crate::cluster::driver::Share>,
}

impl RolloutArgs {
    pub fn rollout(&self) -> crate::cluster::driver::Rollout {
        crate::cluster::driver::Rollout {
            batch: self.batch,
            max_fail: if self.fail_fast {
                Some(crate::cluster::driver::Share::Count(0))
            } else {
                self.max_fail
            },
        }
    }
}

impl From<&Global> for crate::cluster::inventory::Selection {
    fn from(g: &Global) -> Self {
        Self {
            nodes: g.nodes.clone(),
            exclude: g.exclude.clone(),
            labels: g.label.clone(),
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Make workdirs and push the worker-agent binary to every node (idempotent)
    Setup(SetupArgs),
    /// Cut a file into line-aligned chunk files plus a manifest
    Split(SplitArgs),
    /// Split input, run an op or command on every node in parallel, merge results in input order
    Run(RunArgs),
    /// Sample uptime/load/CPU/memory/disk/IO of every node into CSV, NDJSON or Prometheus text
    Collect(CollectArgs),
    /// Reachability, latency, uptime, load, memory, disk and agent version of every node
    Status(StatusArgs),
    /// Run one command on every node, output prefixed by node or gathered
    Exec(ExecArgs),
    /// Mirror a local directory into every node's workdir
    Sync(SyncArgs),
    /// Pull a file or directory from every node into LOCAL_DIR/<node>/
    Fetch(FetchArgs),
    /// List the selected nodes with their resolved settings
    Nodes(NodesArgs),
    /// Close the ssh masters `--persist` left up for the selected nodes
    Disconnect(DisconnectArgs),
    /// Render a metrics CSV as a self-contained HTML report with charts
    /// (--nodes, --exclude and --label keep those nodes' rows; no node is
    /// contacted, so --fanout is refused)
    Report(ReportArgs),
    /// Print shell completions (bash, zsh, fish, ...) or a man page
    Completions(CompletionsArgs),
    /// Write a commented starter cluster.toml (one node, localhost) to edit
    Init(InitArgs),
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Where to write it (never over an existing file)
    #[arg(default_value = "cluster.toml", value_name = "PATH")]
    pub path: PathBuf,
}

#[derive(Debug, Args)]
pub struct SetupArgs {
    #[command(flatten)]
    pub rollout: RolloutArgs,
    /// worker-agent binary to push (default: the static agent embedded in distctl)
    #[arg(long, value_name = "PATH")]
    pub agent: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct SplitArgs {
    /// File to split
    pub input: PathBuf,
    /// Number of chunks (fewer when the input has fewer lines). Without --chunks,
    /// --lines, --for-nodes or --chunk-size: one equal chunk per selected node
    #[arg(long, group = "how")]
    pub chunks: Option<usize>,
    /// Lines per chunk
    #[arg(long, group = "how")]
    pub lines: Option<u64>,
    /// One chunk per selected node, weighted by its slots
    #[arg(long, group = "how")]
    pub for_nodes: bool,
    /// Target bytes per chunk (e.g. 64M)
    #[arg(long, group = "how", value_name = "SIZE")]
    pub chunk_size: Option<ByteSize>,
    /// Where chunk files and manifest.json go
    #[arg(long, short = 'o', default_value = "chunks", value_name = "DIR")]
    pub outdir: PathBuf,
}

/// The built-in ops: one type shared with worker-agent.
pub use distctl_proto::Op;

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("work").required(true).args(["op", "exec"])))]
pub struct RunArgs {
    /// Input files ('-' for stdin), processed as one stream in the order given
    #[arg(required = true, value_name = "INPUT")]
    pub inputs: Vec<PathBuf>,
    /// Built-in operation
    #[arg(long, value_enum, conflicts_with = "exec")]
    pub op: Option<Op>,
    /// Pattern for --op grep
    #[arg(long, required_if_eq("op", "grep"), value_name = "REGEX")]
    pub pattern: Option<String>,
    /// Shell command run with `sh -c` on the node, the chunk on its stdin
    #[arg(long, value_name = "CMD")]
    pub exec: Option<String>,
    /// Output file (default: stdout, streamed in input order)
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Bytes per chunk, line-aligned (default: a sixteenth of the input,
    /// between 1M and 64M, smaller towards the end; 8M for standard input)
    #[arg(long, value_name = "SIZE")]
    pub chunk_size: Option<ByteSize>,
    /// A chunk whose node is silent this long is retried elsewhere
    #[arg(long, default_value = "60s", value_name = "DURATION")]
    pub timeout: Dur,
    /// How often a failed chunk is retried on another node
    #[arg(long, default_value_t = 2)]
    pub retries: u32,
    /// Continue an interrupted run from its journal, redoing only missing chunks
    #[arg(long)]
    pub resume: bool,
    /// Print the plan (chunks, byte ranges, first node) without touching any node
    #[arg(long)]
    pub dry_run: bool,
    /// Numeric ops: skip lines that are not numbers instead of failing
    #[arg(long)]
    pub skip_invalid: bool,
    /// worker-agent binary to use on the nodes (default: the embedded one)
    #[arg(long, value_name = "PATH")]
    pub agent: Option<PathBuf>,
    /// Compression on the wire, both ways: auto (decide per node from the
    /// measured ratio, compressor speed and link throughput), zstd
    /// (level 1), zstd:LEVEL or none [default: the inventory's `compress`,
    /// else auto]
    #[arg(long, value_name = "auto|zstd|zstd:LEVEL|none", value_parser = distctl_proto::Compress::parse)]
    pub compress: Option<distctl_proto::Compress>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MetricsFormat {
    Csv,
    Json,
    Prometheus,
}

impl From<MetricsFormat> for crate::metrics::Format {
    fn from(f: MetricsFormat) -> Self {
        match f {
            MetricsFormat::Csv => Self::Csv,
            MetricsFormat::Json => Self::Ndjson,
            MetricsFormat::Prometheus => Self::Prometheus,
        }
    }
}

#[derive(Debug, Args)]
pub struct CollectArgs {
    /// Output file (default: stdout)
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Append to FILE (header only when new or empty; locked against overlapping runs)
    #[arg(long, requires = "output")]
    pub append: bool,
    /// Output format (default csv; the global --json means json: one object per line)
    #[arg(long, value_enum)]
    pub format: Option<MetricsFormat>,
    /// Interval over which CPU, disk IO and network rates are measured
    /// (default: 1s, or a quarter of --every when that is shorter)
    #[arg(long, value_name = "DURATION")]
    pub sample_interval: Option<Dur>,
    /// Sample repeatedly at this period, rounds starting on its ticks
    /// (default: one round, then exit)
    #[arg(long, value_name = "DURATION")]
    pub every: Option<Dur>,
    /// With --every: stop after this many rounds (default: until interrupted)
    #[arg(long, requires = "every")]
    pub count: Option<u64>,
    /// Sample over plain SSH (/proc, df) even where worker-agent is installed
    #[arg(long)]
    pub agentless: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {}

#[derive(Debug, Args)]
pub struct ExecArgs {
    #[command(flatten)]
    pub rollout: RolloutArgs,
    /// After all finish, print each distinct output once, headed by its nodes
    #[arg(long, short = 'g')]
    pub gather: bool,
    /// After all finish, print the most common output once (headed by its
    /// nodes) and every other output as a unified diff against it
    #[arg(long, conflicts_with_all = ["gather", "outdir"])]
    pub diff: bool,
    /// Write each node's stdout and stderr to DIR/<node>.out and .err
    #[arg(long, value_name = "DIR")]
    pub outdir: Option<PathBuf>,
    /// Send local stdin to every node
    #[arg(long)]
    pub stdin: bool,
    /// Pass control characters from the nodes through to the terminal
    /// (default: shown as `cat -v` does, e.g. ESC as ^[, when printing to
    /// a terminal; never changed when piped or written to files)
    #[arg(long)]
    pub raw_output: bool,
    /// Kill the remote command after this long (default: no limit)
    #[arg(long, value_name = "DURATION")]
    pub timeout: Option<Dur>,
    /// The command and its arguments, run exactly as typed (everything after
    /// the first word belongs to it; `--` before it works too)
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "CMD"
    )]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct SyncArgs {
    #[command(flatten)]
    pub rollout: RolloutArgs,
    /// Local directory to mirror
    pub local_dir: PathBuf,
    /// Subdirectory of the workdir to mirror into (default: the workdir itself)
    #[arg(long, value_name = "SUBDIR")]
    pub to: Option<String>,
    /// Remove remote files that are gone locally
    #[arg(long)]
    pub delete: bool,
    /// How to transfer: rsync over the node's SSH connection when both ends
    /// have it (auto), or a tar stream of the changed files
    #[arg(long, value_enum, default_value = "auto")]
    pub method: SyncMethod,
}

#[derive(Debug, Args)]
pub struct FetchArgs {
    /// File or directory on the nodes, relative to the workdir or absolute
    pub remote_path: String,
    /// Local directory; each node's copy lands in LOCAL_DIR/<node>/
    #[arg(long, value_name = "LOCAL_DIR")]
    pub to: PathBuf,
}

#[derive(Debug, Args)]
pub struct NodesArgs {
    /// Only the names, one a line (what shell completion of --nodes offers)
    #[arg(long, hide = true)]
    pub names: bool,
}

#[derive(Debug, Args)]
pub struct DisconnectArgs {}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Metrics CSV written by `distctl collect`
    pub metrics: PathBuf,
    /// HTML file to write
    #[arg(long, short = 'o', default_value = "report.html", value_name = "FILE")]
    pub output: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CompletionShell {
    Bash,
    Zsh,
    Fish,
    Elvish,
    Powershell,
    /// A man page (roff)
    Man,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    #[arg(value_enum)]
    pub shell: CompletionShell,
    /// With `man`: write distctl.1 and one distctl-COMMAND.1 per command into
    /// DIR (e.g. /usr/local/share/man/man1) instead of printing distctl(1)
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}
