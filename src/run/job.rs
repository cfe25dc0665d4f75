//! What runs on each chunk, and how the agent is asked to do it.

use distctl_proto::agent_args::{AgentCall, ExecArgs, Io, OpArgs};
use distctl_proto::Op;
use serde::{Deserialize, Serialize};

use crate::run::chunk::InputFile;
use crate::run::wire::Plan;

/// A built-in op or a shell command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Work {
    /// `--op OP` (with `--pattern` for grep).
    Op { op: Op, pattern: Option<String> },
    /// `--exec CMD`, run with `sh -c` on the node.
    Exec { command: String },
}

/// What runs on each chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub work: Work,
    /// Numeric ops: skip lines that are not numbers.
    pub skip_invalid: bool,
}

impl Job {
    pub fn op(&self) -> Option<Op> {
        match self.work {
            Work::Op { op, .. } => Some(op),
            Work::Exec { .. } => None,
        }
    }

    /// `upper`, ..., or `exec`.
    pub fn name(&self) -> String {
        self.op()
            .map_or_else(|| "exec".to_string(), |o| o.name().to_string())
    }

    /// The answer is a partial to merge, not bytes to concatenate.
    pub fn aggregate(&self) -> bool {
        self.op().is_some_and(Op::is_aggregate)
    }

    /// Reads one number per line (bad lines are named by line number).
    pub fn numeric(&self) -> bool {
        self.op().is_some_and(Op::is_numeric)
    }

    /// How the agent is invoked for chunk `index` of `len` bytes whose
    /// first line is `line_offset` (0-based), compressed on the wire as
    /// `wire` says.
    pub fn agent_call(
        &self,
        index: usize,
        len: u64,
        line_offset: Option<u64>,
        wire: Plan,
    ) -> AgentCall {
        let io = Io {
            framed: true,
            expect_bytes: Some(len),
            chunk: Some(index as u64),
            input_frames: wire.frames,
            compress_output: wire.compress_output,
            compress_output_like_input: wire.follow,
            ..Io::default()
        };
        match &self.work {
            Work::Op { op, pattern } => AgentCall::Op(OpArgs {
                op: *op,
                pattern: pattern.clone(),
                skip_invalid: self.skip_invalid,
                line_offset: line_offset.unwrap_or(0),
                io,
            }),
            Work::Exec { command } => AgentCall::Exec(ExecArgs {
                command: vec!["sh".into(), "-c".into(), command.clone()],
                io,
            }),
        }
    }

    /// The remote shell's command line for one chunk, the agent at `agent`.
    /// `env` is set for the agent and the command it runs (`DISTCTL_CHUNK`, ...).
    pub fn command_line(
        &self,
        agent: &str,
        index: usize,
        len: u64,
        line_offset: Option<u64>,
        env: &[(&str, String)],
        wire: Plan,
    ) -> String {
        let mut argv = crate::transport::shell::env_words(env);
        argv.push(agent.to_string());
        argv.extend(self.agent_call(index, len, line_offset, wire).to_argv());
        crate::transport::shell::join(&argv)
    }

    /// The journal's key of this job over `inputs`, run by the agent whose
    /// sha256 is `agent_sha256`.
    pub fn key(&self, inputs: Vec<InputFile>, chunk_size: u64, agent_sha256: &str) -> JobKey {
        let (pattern, exec) = match &self.work {
            Work::Op { pattern, .. } => (pattern.clone(), None),
            Work::Exec { command } => (None, Some(command.clone())),
        };
        JobKey {
            inputs,
            chunk_size,
            op: self.name(),
            pattern,
            exec,
            skip_invalid: self.skip_invalid,
            agent_sha256: agent_sha256.to_string(),
        }
    }
}

/// What a run is: two runs with the same key produce the same output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobKey {
    pub inputs: Vec<InputFile>,
    pub chunk_size: u64,
    /// `upper`, ..., or `exec`.
    pub op: String,
    pub pattern: Option<String>,
    pub exec: Option<String>,
    pub skip_invalid: bool,
    /// The agent that produced the results (another agent may not agree).
    #[serde(default)]
    pub agent_sha256: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines_quote_what_the_shell_would_split() {
        let job = Job {
            work: Work::Exec {
                command: "tr a-z A-Z | sed 's/x/y/'".into(),
            },
            skip_invalid: false,
        };
        assert_eq!(
            job.command_line("/w/bin/worker-agent", 4, 12, Some(3), &[], Plan::PLAIN),
            r#"/w/bin/worker-agent exec --framed --expect-bytes 12 --chunk 4 -- sh -c 'tr a-z A-Z | sed '\''s/x/y/'\'''"#
        );
        let job = Job {
            work: Work::Op {
                op: Op::Grep,
                pattern: Some("a b".into()),
            },
            skip_invalid: false,
        };
        assert_eq!(
            job.command_line("agent", 0, 5, None, &[], Plan::PLAIN),
            "agent op grep --pattern 'a b' --framed --expect-bytes 5 --chunk 0"
        );
    }
}
