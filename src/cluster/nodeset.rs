//! Node sets as pdsh and ClusterShell write them: `node[01-16,20],db`.
//! [`expand`] turns one into names; [`fold`] turns names back into the
//! shortest such set, so a summary can be pasted into `--nodes`.

use std::collections::BTreeMap;

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
