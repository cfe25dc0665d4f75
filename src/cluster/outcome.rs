//! How one node's part of a per-node command ended. Table rows, `--json`
//! and the exit code are all derived from this one type; its spelling in
//! JSON is [`NodeOutcome::as_str`], in tables its `Display`.

use std::fmt;

use crate::exit::Exit;
use crate::units::Dur;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeOutcome {
    /// Done as asked.
    Ok,
    /// Done: the agent was sent (`setup`).
    Pushed,
    /// Done: changes were sent (`sync`).
    Synced,
    /// Nothing to do: the node already had it (`setup`, `sync`).
    UpToDate,
    /// No connection to the node.
    Unreachable { reason: String },
    /// Connected, but the node could not report what was asked (a metrics
    /// probe that failed): its row says so, the others are complete.
    ProbeFailed { reason: String },
    /// Connected, but the work failed on the node (`setup`, `sync`, `fetch`).
    Failed { reason: String },
    /// The remote command exited non-zero (`exec`).
    Exited { code: i32 },
    /// The remote command ended without an exit status (a signal).
    Killed,
    /// The remote command ran past `--timeout` and was killed.
    TimedOut { after: Dur },
    /// The connection dropped while the node worked.
    Lost { reason: String },
    /// distctl was interrupted (a signal) while the node worked.
    Interrupted,
    /// Never started on the node.
    Skipped,
}

impl NodeOutcome {
    /// The one spelling of this outcome in `--json` (and in `--nodes @…`).
    pub fn as_str(&self) -> &'static str {
        match self {
            NodeOutcome::Ok => "ok",
            NodeOutcome::Pushed => "pushed",
            NodeOutcome::Synced => "synced",
            NodeOutcome::UpToDate => "up-to-date",
            NodeOutcome::Unreachable { .. } => "unreachable",
            NodeOutcome::ProbeFailed { .. } => "error",
            NodeOutcome::Failed { .. } | NodeOutcome::Exited { .. } => "failed",
            NodeOutcome::Killed => "killed",
            NodeOutcome::TimedOut { .. } => "timed-out",
            NodeOutcome::Lost { .. } => "lost",
            NodeOutcome::Interrupted => "interrupted",
            NodeOutcome::Skipped => "skipped",
        }
    }

    /// [`NodeOutcome::TimedOut`] when `err` is a remote step past
    /// `--step-timeout`.
    pub fn timed_out(err: &anyhow::Error) -> Option<NodeOutcome> {
        crate::transport::deadline::StepTimedOut::find(err).map(|t| NodeOutcome::TimedOut {
            after: Dur(t.after),
        })
    }

    /// Why the node did not succeed, where a reason was given.
    pub fn reason(&self) -> Option<&str> {
        match self {
            NodeOutcome::Unreachable { reason }
            | NodeOutcome::ProbeFailed { reason }
            | NodeOutcome::Failed { reason }
            | NodeOutcome::Lost { reason } => Some(reason),
            _ => None,
        }
    }

    /// The node did what was asked (or had nothing to do).
    pub fn succeeded(&self) -> bool {
        matches!(
            self,
            NodeOutcome::Ok | NodeOutcome::Pushed | NodeOutcome::Synced | NodeOutcome::UpToDate
        )
    }

    /// distctl got through to the node.
    pub fn reached(&self) -> bool {
        !matches!(self, NodeOutcome::Unreachable { .. } | NodeOutcome::Skipped)
    }

    /// This node's share of the exit code (README "Exit codes").
    pub fn exit(&self) -> Exit {
        match self {
            NodeOutcome::Ok | NodeOutcome::Pushed | NodeOutcome::Synced | NodeOutcome::UpToDate => {
                Exit::Ok
            }
            NodeOutcome::Unreachable { .. }
            | NodeOutcome::ProbeFailed { .. }
            | NodeOutcome::Lost { .. }
            | NodeOutcome::Skipped => Exit::Partial,
            NodeOutcome::Failed { .. }
            | NodeOutcome::Exited { .. }
            | NodeOutcome::Killed
            | NodeOutcome::TimedOut { .. } => Exit::RemoteFailed,
            NodeOutcome::Interrupted => Exit::Failed,
        }
    }
}

/// For tables and summaries: the outcome, with its reason where it has one.
impl fmt::Display for NodeOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NodeOutcome::UpToDate => f.write_str("up to date"),
            NodeOutcome::Exited { code } => write!(f, "exit {code}"),
            NodeOutcome::Killed => f.write_str("killed by a signal"),
            NodeOutcome::TimedOut { after } => write!(f, "timed out after {after}"),
            NodeOutcome::Lost { reason } => write!(f, "connection lost: {reason}"),
            other => match other.reason() {
                Some(reason) => write!(f, "{}: {reason}", other.as_str()),
                None => f.write_str(other.as_str()),
            },
        }
    }
}

impl serde::Serialize for NodeOutcome {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl NodeOutcome {
    /// `outcome` in `--json`: `ok` for every success (the kind of success is
    /// [`NodeOutcome::detail`]), else the failure's one spelling.
    pub fn json_outcome(&self) -> &'static str {
        if self.succeeded() {
            "ok"
        } else {
            self.as_str()
        }
    }

    /// `detail` in `--json`: what a success did, where the command says
    /// (`pushed`, `synced`, `up-to-date`).
    pub fn detail(&self) -> Option<&'static str> {
        match self {
            NodeOutcome::Pushed | NodeOutcome::Synced | NodeOutcome::UpToDate => {
                Some(self.as_str())
            }
            _ => None,
        }
    }
}

/// A node's outcome as every per-node `--json` row carries it (flattened):
/// `outcome`, `detail` (null where the command has none) and `error` (why,
/// null exactly on success). README "JSON output".
#[derive(Debug)]
pub struct OutcomeFields<'a>(pub &'a NodeOutcome);

impl serde::Serialize for OutcomeFields<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let o = self.0;
        // Every failure says why: its reason, else its line (`exit 3`).
        let error = match (o.succeeded(), o.reason()) {
            (true, _) => None,
            (false, Some(reason)) => Some(reason.to_string()),
            (false, None) => Some(o.to_string()),
        };
        let mut m = s.serialize_struct("Outcome", 3)?;
        m.serialize_field("outcome", o.json_outcome())?;
        m.serialize_field("detail", &o.detail())?;
        m.serialize_field("error", &error)?;
        m.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_spelling_for_json_one_line_for_people() {
        let down = NodeOutcome::Unreachable {
            reason: "connection refused".into(),
        };
        assert_eq!(serde_json::to_value(&down).unwrap(), "unreachable");
        assert_eq!(down.to_string(), "unreachable: connection refused");
        assert_eq!(NodeOutcome::UpToDate.as_str(), "up-to-date");
        assert_eq!(NodeOutcome::UpToDate.to_string(), "up to date");
        assert_eq!(NodeOutcome::Exited { code: 3 }.as_str(), "failed");
        assert_eq!(NodeOutcome::Exited { code: 3 }.to_string(), "exit 3");
    }

    #[test]
    fn json_has_ok_for_every_success_and_says_what_it_did_in_detail() {
        let v = |o: &NodeOutcome| serde_json::to_value(OutcomeFields(o)).unwrap();
        assert_eq!(
            v(&NodeOutcome::UpToDate),
            serde_json::json!({"outcome": "ok", "detail": "up-to-date", "error": null})
        );
        assert_eq!(
            v(&NodeOutcome::Exited { code: 3 }),
            serde_json::json!({"outcome": "failed", "detail": null, "error": "exit 3"})
        );
        assert_eq!(
            v(&NodeOutcome::Unreachable {
                reason: "refused".into()
            })["error"],
            "refused"
        );
    }

    #[test]
    fn exit_codes_follow_the_readme() {
        assert_eq!(NodeOutcome::UpToDate.exit(), Exit::Ok);
        assert_eq!(NodeOutcome::Skipped.exit(), Exit::Partial);
        assert_eq!(NodeOutcome::Killed.exit(), Exit::RemoteFailed);
        assert_eq!(NodeOutcome::Interrupted.exit(), Exit::Failed);
    }
}
