//! The closing lines of a command that ran on many nodes: which nodes did
//! not succeed and why, as node sets that `--nodes` accepts, so the user can
//! rerun just those.

/// One line per distinct reason with its node set, then the set of all of
/// them. `failures` holds `(node, reason)` for every node that did not
/// succeed; nothing when empty.
pub fn failure_lines<'a>(
    failures: impl IntoIterator<Item = (&'a str, String)>,
    total: usize,
) -> Vec<String> {
    let mut by_reason: Vec<(String, Vec<&str>)> = Vec::new();
    for (node, reason) in failures {
        match by_reason.iter_mut().find(|(r, _)| *r == reason) {
            Some((_, nodes)) => nodes.push(node),
            None => by_reason.push((reason, vec![node])),
        }
    }
    if by_reason.is_empty() {
        return Vec::new();
    }
    let mut lines: Vec<String> = by_reason
        .iter()
        .map(|(reason, nodes)| format!("{}: {reason}", crate::cluster::nodeset::fold(nodes)))
        .collect();
    let all: Vec<&str> = by_reason
        .iter()
        .flat_map(|(_, n)| n.iter().copied())
        .collect();
    lines.push(format!(
        "{} of {total} node(s) failed; rerun on them with --nodes {}",
        all.len(),
        crate::transport::shell::quote(&crate::cluster::nodeset::fold(&all))
    ));
    lines
}

/// The exit code of a command that gives one result per node, each
/// `unreachable`, `failed` or a success: no node reachable is an error
/// (exit 3), else unreachable → 1 and failed → 4, the larger winning.
pub fn exit_for_results<'a>(
    results: impl IntoIterator<Item = &'a str>,
) -> anyhow::Result<crate::exit::Exit> {
    use crate::exit::Exit;
    let mut any_reached = false;
    let mut exit = Exit::Ok;
    for r in results {
        any_reached |= r != "unreachable";
        exit = exit.max(match r {
            "unreachable" => Exit::Partial,
            "failed" => Exit::RemoteFailed,
            _ => Exit::Ok,
        });
    }
    if !any_reached {
        anyhow::bail!("no node reachable");
    }
    Ok(exit)
}

/// The end of a command with one result row per node (`sync`, `fetch`): the
/// rows as a table or `--json`, the failures as node sets to rerun, and the
/// exit code. `outcome` gives a row's node, its result and whether it failed.
pub fn finish<R: serde::Serialize>(
    g: &crate::cli::Global,
    rows: &[R],
    table: impl FnOnce(&[R]) -> String,
    outcome: impl Fn(&R) -> (&str, &str, bool),
) -> anyhow::Result<crate::exit::Exit> {
    if g.json {
        println!("{}", serde_json::to_string_pretty(rows)?);
    } else {
        print!("{}", table(rows));
    }
    print_failures(
        rows.iter()
            .map(&outcome)
            .filter(|(_, _, failed)| *failed)
            .map(|(node, result, _)| (node, result.to_string())),
        rows.len(),
    );
    exit_for_results(rows.iter().map(|r| outcome(r).1))
}

/// Print [`failure_lines`] to stderr.
pub fn print_failures<'a>(failures: impl IntoIterator<Item = (&'a str, String)>, total: usize) {
    for line in failure_lines(failures, total) {
        eprintln!("distctl: {line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_group_by_reason() {
        let lines = failure_lines(
            [
                ("node2", "exit 3".to_string()),
                ("node3", "unreachable: connection refused".to_string()),
                ("node4", "exit 3".to_string()),
            ],
            4,
        );
        assert_eq!(
            lines,
            [
                "node[2,4]: exit 3",
                "node3: unreachable: connection refused",
                "3 of 4 node(s) failed; rerun on them with --nodes 'node[2-4]'"
            ]
        );
        assert!(failure_lines([], 3).is_empty());
    }
}
