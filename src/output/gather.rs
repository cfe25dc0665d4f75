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
        let title = title(g);
        let rule = "-".repeat(title.chars().count().clamp(15, 80));
        out.extend_from_slice(format!("{rule}\n{title}\n{rule}\n").as_bytes());
        out.extend_from_slice(&g.output);
        if !g.output.is_empty() && !g.output.ends_with(b"\n") {
            out.push(b'\n');
        }
    }
    out
}

/// `--diff`: the largest group once (its header and output), then every
/// other group as a unified diff against it, headed `--- BASE` / `+++ OTHER`
/// (like `clush --diff`). Output equal to the base's with another outcome
/// says so instead of an empty diff.
pub fn render_diff(groups: &[Group]) -> Vec<u8> {
    let Some(base_at) = (0..groups.len()).max_by_key(|&i| (groups[i].count, usize::MAX - i)) else {
        return Vec::new();
    };
    let base = &groups[base_at];
    let mut out = render(std::slice::from_ref(base));
    let base_text = String::from_utf8_lossy(&base.output);
    for (i, g) in groups.iter().enumerate() {
        if i == base_at {
            continue;
        }
        let text = String::from_utf8_lossy(&g.output);
        let diff = similar::TextDiff::from_lines(base_text.as_ref(), text.as_ref());
        let body = diff
            .unified_diff()
            .context_radius(3)
            .missing_newline_hint(false)
            .to_string();
        out.extend_from_slice(format!("--- {}\n+++ {}\n", title(base), title(g)).as_bytes());
        if body.is_empty() {
            out.extend_from_slice(b"(same output)\n");
        } else {
            out.extend_from_slice(body.as_bytes());
            if !body.ends_with('\n') {
                out.push(b'\n');
            }
        }
    }
    out
}

fn title(g: &Group) -> String {
    if g.outcome.is_empty() {
        g.nodes.clone()
    } else {
        format!("{} ({})", g.nodes, g.outcome)
    }
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

    #[test]
    fn diff_shows_the_largest_group_and_the_others_against_it() {
        let groups = group([
            ("node1", "", &b"x\ny\nz\n"[..]),
            ("node2", "", &b"x\nY\nz\n"[..]),
            ("node3", "", &b"x\ny\nz\n"[..]),
            ("node4", "exit 1", &b"x\ny\nz\n"[..]),
        ]);
        let text = String::from_utf8(render_diff(&groups)).unwrap();
        assert_eq!(
            text,
            "---------------\nnode[1,3]\n---------------\nx\ny\nz\n\
             --- node[1,3]\n+++ node2\n@@ -1,3 +1,3 @@\n x\n-y\n+Y\n z\n\
             --- node[1,3]\n+++ node4 (exit 1)\n(same output)\n"
        );
        assert!(render_diff(&[]).is_empty());
    }
}
