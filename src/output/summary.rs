//! The closing lines of a command that ran on many nodes: which nodes did
//! not succeed and why, as node sets that `--nodes` accepts, so the user can
//! rerun just those; and the exit code, both derived from each node's
//! [`NodeOutcome`].

use crate::cluster::{NodeOutcome, NodeResult};
use crate::exit::Exit;

/// One line per distinct outcome with its node set, then the set of all of
/// them. `outcomes` holds every node's outcome; successes are left out,
/// nothing when all succeeded.
pub fn failure_lines<'a>(
    outcomes: impl IntoIterator<Item = (&'a str, &'a NodeOutcome)>,
    total: usize,
) -> Vec<String> {
    let mut by_outcome: Vec<(String, Vec<&str>)> = Vec::new();
    for (node, outcome) in outcomes.into_iter().filter(|(_, o)| !o.succeeded()) {
        let line = outcome.to_string();
        match by_outcome.iter_mut().find(|(l, _)| *l == line) {
            Some((_, nodes)) => nodes.push(node),
            None => by_outcome.push((line, vec![node])),
        }
    }
    if by_outcome.is_empty() {
        return Vec::new();
    }
    let mut lines: Vec<String> = by_outcome
        .iter()
        .map(|(line, nodes)| format!("{}: {line}", crate::cluster::nodeset::fold(nodes)))
        .collect();
    let all: Vec<&str> = by_outcome
        .iter()
        .flat_map(|(_, n)| n.iter().copied())
        .collect();
    let skipped = by_outcome
        .iter()
        .find(|(line, _)| *line == NodeOutcome::Skipped.to_string())
        .map_or(0, |(_, n)| n.len());
    // The last command's outcomes are recorded: @failed names these nodes.
    let (what, set) = match (all.len() - skipped, skipped) {
        (_, 0) => ("failed".to_string(), "@failed"),
        (0, _) => ("were skipped".to_string(), "@skipped"),
        (_, s) => (
            format!("failed or were skipped ({s} skipped)"),
            "@failed,@skipped",
        ),
    };
    lines.push(format!(
        "{} of {total} node(s) {what}; rerun on them with --nodes {set} ({})",
        all.len(),
        crate::cluster::nodeset::fold(&all)
    ));
    lines
}

/// What it means when no node could be reached at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoneReached {
    /// Nothing was done: the command fails (exit 3, `no node reachable`).
    Fails,
    /// The result is still complete, one row per node saying so (`status`,
    /// `collect`): exit 1 like any unreachable node.
    IsPartial,
}

/// The exit code of a command with one outcome per node: each node's
/// [`NodeOutcome::exit`], the larger winning.
pub fn exit_for<'a>(
    outcomes: impl IntoIterator<Item = &'a NodeOutcome>,
    none_reached: NoneReached,
) -> anyhow::Result<Exit> {
    // A rollout that stopped leaves nodes untried: not "no node reachable".
    let mut any_reached_or_untried = false;
    let mut exit = Exit::Ok;
    for o in outcomes {
        any_reached_or_untried |= o.reached() || *o == NodeOutcome::Skipped;
        exit = exit.max(o.exit());
    }
    if !any_reached_or_untried && none_reached == NoneReached::Fails {
        anyhow::bail!("no node reachable");
    }
    Ok(exit)
}

/// The end of a command with one result row per node (`setup`, `sync`,
/// `fetch`): the rows as a table or `--json`, the failures as node sets to
/// rerun, and the exit code.
pub fn finish<'a, T, R: serde::Serialize>(
    json: bool,
    results: &'a [NodeResult<T>],
    row: impl Fn(&'a NodeResult<T>) -> R,
    table: impl FnOnce(&[R]) -> String,
) -> anyhow::Result<Exit> {
    let rows: Vec<R> = results.iter().map(row).collect();
    if json {
        crate::output::json::print(&rows)?;
    } else {
        print!("{}", table(&rows));
    }
    print_failures(results);
    exit_for(results.iter().map(|r| &r.outcome), NoneReached::Fails)
}

/// Print [`failure_lines`] to stderr.
pub fn print_failures<T>(results: &[NodeResult<T>]) {
    let outcomes = results.iter().map(|r| (r.node.name.as_str(), &r.outcome));
    for line in failure_lines(outcomes, results.len()) {
        eprintln!("distctl: {line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_group_by_outcome() {
        let refused = NodeOutcome::Unreachable {
            reason: "connection refused".into(),
        };
        let exit3 = NodeOutcome::Exited { code: 3 };
        let lines = failure_lines(
            [
                ("node1", &NodeOutcome::Ok),
                ("node2", &exit3),
                ("node3", &refused),
                ("node4", &exit3),
            ],
            4,
        );
        assert_eq!(
            lines,
            [
                "node[2,4]: exit 3",
                "node3: unreachable: connection refused",
                "3 of 4 node(s) failed; rerun on them with --nodes @failed (node[2-4])"
            ]
        );
        assert!(failure_lines([("node1", &NodeOutcome::UpToDate)], 1).is_empty());
    }

    #[test]
    fn exit_codes_fold_and_none_reached_fails_only_where_it_means_nothing_was_done() {
        let down = NodeOutcome::Unreachable { reason: "x".into() };
        let both = [NodeOutcome::Exited { code: 1 }, down.clone()];
        assert_eq!(
            exit_for(&both, NoneReached::Fails).unwrap(),
            Exit::RemoteFailed
        );
        assert!(exit_for([&down], NoneReached::Fails).is_err());
        assert_eq!(
            exit_for([&down], NoneReached::IsPartial).unwrap(),
            Exit::Partial
        );
    }
}
