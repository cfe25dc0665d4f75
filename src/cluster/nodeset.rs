//! Node sets as pdsh and ClusterShell write them: `node[01-16,20],db`.
//! [`expand`] turns one into names; [`fold`] turns names back into the
//! shortest such set, so a summary can be pasted into `--nodes`.
//! [`evaluate`] reads ClusterShell's set expressions: terms (names, ranges,
//! `@group`) joined left to right by `,` (union), `!` (difference), `&`
//! (intersection) and `^` (symmetric difference).

use std::collections::{BTreeMap, BTreeSet};

/// How a term joins the set built from the terms before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetOp {
    /// `,`
    Union,
    /// `!`
    Difference,
    /// `&`
    Intersection,
    /// `^`
    SymmetricDifference,
}

impl SetOp {
    fn from_char(c: char) -> Option<SetOp> {
        match c {
            ',' => Some(SetOp::Union),
            '!' => Some(SetOp::Difference),
            '&' => Some(SetOp::Intersection),
            '^' => Some(SetOp::SymmetricDifference),
            _ => None,
        }
    }

    /// Apply `self` with `rhs` to `acc`.
    pub fn apply(self, acc: &mut BTreeSet<String>, rhs: BTreeSet<String>) {
        match self {
            SetOp::Union => acc.extend(rhs),
            SetOp::Difference => acc.retain(|n| !rhs.contains(n)),
            SetOp::Intersection => acc.retain(|n| rhs.contains(n)),
            SetOp::SymmetricDifference => {
                for n in rhs {
                    if !acc.remove(&n) {
                        acc.insert(n);
                    }
                }
            }
        }
    }
}

/// One operand of a set expression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Term<'a> {
    /// A name or range pattern: `node[1-4]`.
    Names(&'a str),
    /// `@NAME` (without the `@`): a group, a label (`label:NAME`) or a
    /// recorded outcome (`failed`).
    Group(&'a str),
}

/// Split an expression into its terms, each with the operator before it (the
/// first one's is [`SetOp::Union`]). Operators inside brackets are part of a
/// range (`node[1,3]`). Empty terms after a comma are ignored, as `a,,b`
/// always was; an empty term after another operator is an error.
pub fn parse_expr(expr: &str) -> Result<Vec<(SetOp, Term<'_>)>, String> {
    let mut out = Vec::new();
    let (mut depth, mut start, mut op) = (0i32, 0usize, SetOp::Union);
    if expr.trim_start().starts_with(['!', '&', '^']) {
        return Err(format!("'{expr}' starts with an operator"));
    }
    let mut terms: Vec<(SetOp, &str)> = Vec::new();
    for (i, c) in expr.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            _ if depth == 0 => {
                if let Some(next) = SetOp::from_char(c) {
                    terms.push((op, &expr[start..i]));
                    start = i + c.len_utf8();
                    op = next;
                }
            }
            _ => {}
        }
        if depth < 0 {
            return Err(format!("unbalanced ']' in '{expr}'"));
        }
    }
    if depth != 0 {
        return Err(format!("unclosed '[' in '{expr}'"));
    }
    terms.push((op, &expr[start..]));
    for (op, raw) in terms {
        let raw = raw.trim();
        if raw.is_empty() {
            if op == SetOp::Union {
                continue;
            }
            return Err(format!("an operator in '{expr}' has nothing after it"));
        }
        let term = match raw.strip_prefix('@') {
            Some(name) if name.trim().is_empty() => {
                return Err(format!("'@' without a group name in '{expr}'"))
            }
            Some(name) => Term::Group(name.trim()),
            None => Term::Names(raw),
        };
        out.push((op, term));
    }
    Ok(out)
}

/// Evaluate a set expression left to right; `group` resolves `@NAME`.
pub fn evaluate(
    expr: &str,
    mut group: impl FnMut(&str) -> Result<BTreeSet<String>, String>,
) -> Result<BTreeSet<String>, String> {
    let mut acc = BTreeSet::new();
    for (op, term) in parse_expr(expr)? {
        let rhs = match term {
            Term::Names(pattern) => expand_one(pattern)?.into_iter().collect(),
            Term::Group(name) => group(name)?,
        };
        op.apply(&mut acc, rhs);
    }
    Ok(acc)
}

/// Split at commas that are not inside brackets: `a[1,2],b` → `a[1,2]`, `b`.
pub fn split_top(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    for (i, c) in s.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out.into_iter()
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect()
}

/// The most nodes one node set (or inventory) may name: a typo such as
/// `a[1-100000]b[1-100000]` is refused, not allocated.
pub const MAX_NODES: usize = 100_000;

fn too_many(pattern: &str) -> String {
    format!("'{pattern}' names more than {MAX_NODES} nodes")
}

/// Expand one pattern (`node[01-03,7]`, `r[1-2]n[1-2]`, or a plain name).
pub fn expand_one(pattern: &str) -> Result<Vec<String>, String> {
    let Some(open) = pattern.find('[') else {
        if pattern.contains(']') {
            return Err(format!("unbalanced ']' in '{pattern}'"));
        }
        return Ok(vec![pattern.to_string()]);
    };
    let close = pattern[open..]
        .find(']')
        .map(|i| open + i)
        .ok_or_else(|| format!("unclosed '[' in '{pattern}'"))?;
    let prefix = &pattern[..open];
    let body = &pattern[open + 1..close];
    let rest = expand_one(&pattern[close + 1..])?;
    let mut values = Vec::new();
    for part in body.split(',') {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let (lo, hi) = part.split_once('-').unwrap_or((part, part));
        let bad = || format!("bad range '{part}' in '{pattern}'");
        if lo.is_empty() || !lo.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        if hi.is_empty() || !hi.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let width = if lo.len() > 1 && lo.starts_with('0') {
            lo.len()
        } else {
            0
        };
        let (a, b): (u64, u64) = (
            lo.parse().map_err(|_| bad())?,
            hi.parse().map_err(|_| bad())?,
        );
        if a > b {
            return Err(format!("range '{part}' in '{pattern}' expands to nothing"));
        }
        if b - a > 100_000 {
            return Err(format!("range '{part}' in '{pattern}' is too large"));
        }
        if values.len() as u64 + (b - a) >= MAX_NODES as u64 {
            return Err(too_many(pattern));
        }
        for v in a..=b {
            values.push(format!("{v:0width$}"));
        }
    }
    if values.is_empty() {
        return Err(format!(
            "range '[{body}]' in '{pattern}' expands to nothing"
        ));
    }
    if values.len().saturating_mul(rest.len()) > MAX_NODES {
        return Err(too_many(pattern));
    }
    let mut out = Vec::with_capacity(values.len() * rest.len());
    for v in &values {
        for r in &rest {
            out.push(format!("{prefix}{v}{r}"));
        }
    }
    Ok(out)
}

/// Expand a whole node set (`node[1-3],db`), keeping order, dropping repeats.
pub fn expand(set: &str) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for part in split_top(set) {
        for name in expand_one(part)? {
            if seen.insert(name.clone()) {
                out.push(name);
            }
        }
        if out.len() > MAX_NODES {
            return Err(too_many(set));
        }
    }
    Ok(out)
}

/// Fold names into a compact node set: `node1,node2,node3,node5,db` → `db,node[1-3,5]`.
pub fn fold<S: AsRef<str>>(names: &[S]) -> String {
    // Group by (prefix, suffix, zero-padded width) around the last run of digits.
    let mut groups: BTreeMap<(String, String, usize), Vec<u64>> = BTreeMap::new();
    let mut plain: Vec<String> = Vec::new();
    for name in names {
        let name = name.as_ref();
        let bytes = name.as_bytes();
        let end = match bytes.iter().rposition(|b| b.is_ascii_digit()) {
            Some(e) => e + 1,
            None => {
                plain.push(name.to_string());
                continue;
            }
        };
        let start = bytes[..end]
            .iter()
            .rposition(|b| !b.is_ascii_digit())
            .map_or(0, |s| s + 1);
        let digits = &name[start..end];
        let Ok(value) = digits.parse::<u64>() else {
            plain.push(name.to_string());
            continue;
        };
        let width = if digits.len() > 1 && digits.starts_with('0') {
            digits.len()
        } else {
            0
        };
        groups
            .entry((name[..start].to_string(), name[end..].to_string(), width))
            .or_default()
            .push(value);
    }
    let mut parts: Vec<String> = plain;
    for ((prefix, suffix, width), mut values) in groups {
        values.sort_unstable();
        values.dedup();
        if values.len() == 1 {
            parts.push(format!("{prefix}{:0width$}{suffix}", values[0]));
            continue;
        }
        let mut ranges = Vec::new();
        let mut i = 0;
        while i < values.len() {
            let mut j = i;
            while j + 1 < values.len() && values[j + 1] == values[j] + 1 {
                j += 1;
            }
            if i == j {
                ranges.push(format!("{:0width$}", values[i]));
            } else {
                ranges.push(format!("{:0width$}-{:0width$}", values[i], values[j]));
            }
            i = j + 1;
        }
        parts.push(format!("{prefix}[{}]{suffix}", ranges.join(",")));
    }
    parts.sort();
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// Random patterns never panic and never name more than the cap.
        #[test]
        fn random_patterns_never_panic(s in "[a-c0-9\\[\\],-]{0,24}") {
            if let Ok(names) = expand(&s) {
                proptest::prop_assert!(names.len() <= MAX_NODES);
            }
        }

        /// A range names each value once; folding and expanding again gives
        /// the same set.
        #[test]
        fn ranges_expand_and_fold_back(a in 0u64..500, n in 0u64..300, b in 0u64..50, prefix in "[a-z]{1,3}") {
            let set = format!("{prefix}[{a}-{}],{prefix}{b}", a + n);
            let names = expand(&set).unwrap();
            let want = (n + 1) as usize + usize::from(b < a || b > a + n);
            proptest::prop_assert_eq!(names.len(), want);
            let mut again = expand(&fold(&names)).unwrap();
            let mut sorted = names.clone();
            again.sort();
            sorted.sort();
            proptest::prop_assert_eq!(again, sorted);
        }
    }

    #[test]
    fn expands_ranges_keeping_padding() {
        assert_eq!(
            expand("node[01-03,10]").unwrap(),
            ["node01", "node02", "node03", "node10"]
        );
        assert_eq!(
            expand("a[1-2]b[1-2]").unwrap(),
            ["a1b1", "a1b2", "a2b1", "a2b2"]
        );
        assert_eq!(expand("db, web[1-2] ,db").unwrap(), ["db", "web1", "web2"]);
    }

    #[test]
    fn rejects_bad_ranges() {
        assert!(expand("n[3-1]").unwrap_err().contains("expands to nothing"));
        assert!(expand("n[]").unwrap_err().contains("expands to nothing"));
        assert!(expand("n[a-b]").is_err());
        assert!(expand("n[1-2").is_err());
    }

    fn names(s: &str) -> Vec<String> {
        evaluate(s, |g| match g {
            "ab" => Ok(["a".to_string(), "b".to_string()].into()),
            other => Err(format!("unknown group '@{other}'")),
        })
        .unwrap()
        .into_iter()
        .collect()
    }

    #[test]
    fn set_expressions_go_left_to_right() {
        assert_eq!(names("n[1-4]!n2"), ["n1", "n3", "n4"]);
        assert_eq!(names("n[1-4]&n[3-9]"), ["n3", "n4"]);
        assert_eq!(names("n[1-3]^n[2-4]"), ["n1", "n4"]);
        // No precedence: (a,b) ! b , c
        assert_eq!(names("@ab!b,c"), ["a", "c"]);
        assert_eq!(names("a,,b"), ["a", "b"]);
        assert!(parse_expr("!a")
            .unwrap_err()
            .contains("starts with an operator"));
        assert!(parse_expr("a&").unwrap_err().contains("nothing after it"));
        assert!(parse_expr("a,@")
            .unwrap_err()
            .contains("without a group name"));
        assert!(parse_expr("a[1,2").unwrap_err().contains("unclosed"));
        assert_eq!(
            parse_expr(" @web & node[1,3] ").unwrap(),
            [
                (SetOp::Union, Term::Group("web")),
                (SetOp::Intersection, Term::Names("node[1,3]"))
            ]
        );
    }

    mod prop {
        use super::super::*;
        use proptest::prelude::*;

        fn op() -> impl Strategy<Value = (char, SetOp)> {
            prop_oneof![
                Just((',', SetOp::Union)),
                Just(('!', SetOp::Difference)),
                Just(('&', SetOp::Intersection)),
                Just(('^', SetOp::SymmetricDifference)),
            ]
        }

        proptest! {
            #[test]
            fn parsing_never_panics(s in "[a-c0-9\\[\\],!&^@ -]{0,24}") {
                let _ = evaluate(&s, |_| Ok(BTreeSet::new()));
            }

            /// Any chain of ranges and operators equals the same operations
            /// done one by one on sets, left to right.
            #[test]
            fn evaluation_matches_set_algebra(
                first in (0u8..6, 0u8..6),
                rest in proptest::collection::vec((op(), 0u8..6, 0u8..6), 0..6),
            ) {
                let range = |(a, b): (u8, u8)| {
                    let (lo, hi) = (a.min(b), a.max(b));
                    (format!("n[{lo}-{hi}]"), (lo..=hi).map(|v| format!("n{v}")).collect::<BTreeSet<_>>())
                };
                let (mut text, mut model) = range(first);
                for ((c, op), a, b) in rest {
                    let (t, set) = range((a, b));
                    text.push(c);
                    text.push_str(&t);
                    match op {
                        SetOp::Union => model = model.union(&set).cloned().collect(),
                        SetOp::Difference => model = model.difference(&set).cloned().collect(),
                        SetOp::Intersection => model = model.intersection(&set).cloned().collect(),
                        SetOp::SymmetricDifference => model = model.symmetric_difference(&set).cloned().collect(),
                    }
                }
                prop_assert_eq!(evaluate(&text, |_| Ok(BTreeSet::new())).unwrap(), model);
            }

            /// A folded set expands back to the same names.
            #[test]
            fn fold_round_trips(values in proptest::collection::btree_set(0u16..300, 1..40)) {
                let names: Vec<String> = values.iter().map(|v| format!("n{v}")).collect();
                let back: BTreeSet<String> = expand(&fold(&names)).unwrap().into_iter().collect();
                prop_assert_eq!(back, names.into_iter().collect::<BTreeSet<_>>());
            }
        }
    }

    #[test]
    fn folds_back() {
        assert_eq!(
            fold(&["node1", "node2", "node3", "node5", "db"]),
            "db,node[1-3,5]"
        );
        assert_eq!(fold(&["n01", "n02"]), "n[01-02]");
        assert_eq!(fold(&["solo7"]), "solo7");
        let set = fold(&["x1", "x2", "y9"]);
        assert_eq!(
            expand(&set).unwrap(),
            ["x[1-2]", "y9"]
                .iter()
                .flat_map(|s| expand(s).unwrap())
                .collect::<Vec<_>>()
        );
    }
}
