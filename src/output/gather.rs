//! Folding identical per-node outputs into one block headed by the node set
//! that produced it, like `clush -b` and `dshbak -c`.

use crate::cluster::nodeset;

/// One distinct (output, outcome) and the nodes that produced it, in the
/// order their first node was selected.
#[derive(Debug, PartialEq, Eq)]
pub struct Group {
    /// Folded node set: `node[1-3,5]`.
    pub nodes: String,
    pub count: usize,
    /// How the nodes ended ("" for success, else e.g. "exit 3").
    pub outcome: String,
    pub output: Vec<u8>,
}

/// Group `(node, outcome, output)` triples: nodes fold together only when
/// both their output and their outcome are equal.
pub fn group<'a>(items: impl IntoIterator<Item = (&'a str, &'a str, &'a [u8])>) -> Vec<Group> {
    let mut keys: Vec<(&str, &[u8])> = Vec::new();
    let mut members: Vec<Vec<&str>> = Vec::new();
    for (node, outcome, output) in items {
        match keys.iter().position(|k| *k == (outcome, output)) {
            Some(i) => members[i].push(node),
            None => {
                keys.push((outcome, output));
                members.push(vec![node]);
            }
        }
    }
    keys.into_iter()
        .zip(members)
        .map(|((outcome, output), nodes)| Group {
            nodes: nodeset::fold(&nodes),
            count: nodes.len(),
            outcome: outcome.to_string(),
            output: output.to_vec(),
        })
        .collect()
}

/// The text of the gathered report: a header per group, then its output
/// (a missing final newline is added).
pub fn render(groups: &[Group]) -> Vec<u8> {
    let mut out = Vec::new();
    for g in groups {
        let title = if g.outcome.is_empty() {
            g.nodes.clone()
        } else {
            format!("{} ({})", g.nodes, g.outcome)
        };
        let rule = "-".repeat(title.chars().count().clamp(15, 80));
        out.extend_from_slice(format!("{rule}\n{title}\n{rule}\n").as_bytes());
        out.extend_from_slice(&g.output);
        if !g.output.is_empty() && !g.output.ends_with(b"\n") {
            out.push(b'\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_output_and_outcome_fold() {
        let groups = group([
            ("node1", "", &b"a\n"[..]),
            ("node2", "exit 1", &b"a\n"[..]),
            ("node3", "", &b"a\n"[..]),
            ("node4", "", &b"b"[..]),
            ("node5", "", &b"a\n"[..]),
        ]);
        assert_eq!(groups.len(), 3);
        assert_eq!(groups[0].nodes, "node[1,3,5]");
        assert_eq!(groups[0].count, 3);
        assert_eq!(groups[1].nodes, "node2");
        assert_eq!(groups[2].nodes, "node4");
        let text = String::from_utf8(render(&groups)).unwrap();
        assert_eq!(
            text,
            "---------------\nnode[1,3,5]\n---------------\na\n\
             ---------------\nnode2 (exit 1)\n---------------\na\n\
             ---------------\nnode4\n---------------\nb\n"
        );
    }
}
