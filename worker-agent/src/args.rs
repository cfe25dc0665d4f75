//! The agent's command line. The chunk commands (`op`, `exec`) are the
//! contract with distctl and are parsed by [`distctl_proto::agent_args`],
//! which distctl also renders them with; the usage text lives here.

pub use distctl_proto::agent_args::{AgentCall, ExecArgs, Io, OpArgs};

pub const USAGE: &str = "usage:
  worker-agent version
  worker-agent self-sha256
  worker-agent self-probe
  worker-agent op OP [--pattern REGEX] [--skip-invalid] [--line-offset L] [IO...]
      OP: upper lower count-lines count-words count-chars sum avg min max grep
  worker-agent exec [IO...] -- CMD [ARGS...]
  worker-agent sample [--interval DURATION] [--path DIR]
IO: [--framed] [--expect-bytes N] [--input FILE] [--output FILE] [--chunk N]";
