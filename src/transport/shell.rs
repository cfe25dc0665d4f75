//! Building remote shell command lines. Every path and argument that reaches a
//! remote shell goes through [`quote`]: node names, workdirs and file names may
//! hold spaces, quotes, `$` or globs.

/// Quote `s` as one POSIX shell word.
pub fn quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:,+@%".contains(&b))
    {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

/// Quote every word and join them with spaces: `argv` runs exactly as given.
pub fn join<S: AsRef<str>>(argv: &[S]) -> String {
    argv.iter()
        .map(|a| quote(a.as_ref()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A workdir as the remote shell should see it: `~/x` and `x` both mean `x`
/// under the login directory (commands start there), so the tilde is dropped
/// rather than left for a shell that would not expand it inside quotes.
pub fn remote_path(path: &str) -> String {
    let p = path.strip_prefix("~/").unwrap_or(path);
    if p == "~" || p.is_empty() {
        ".".to_string()
    } else {
        p.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn plain_words_stay_plain() {
        assert_eq!(quote("node1"), "node1");
        assert_eq!(quote("/a/b-c_d.txt"), "/a/b-c_d.txt");
        // In command position `w=1` would be an assignment, not a word.
        assert_eq!(quote("w=1"), "'w=1'");
    }

    #[test]
    fn awkward_words_survive_a_real_shell() {
        for word in ["", "a b", "it's", "$HOME", "a;b", "*", "\"q\"", "x\ny", "'"] {
            let out = Command::new("sh")
                .arg("-c")
                .arg(format!("printf %s {}", quote(word)))
                .output()
                .unwrap();
            assert_eq!(String::from_utf8(out.stdout).unwrap(), word);
        }
    }

    #[test]
    fn tilde_paths() {
        assert_eq!(remote_path("~/.distctl"), ".distctl");
        assert_eq!(remote_path("/srv/x"), "/srv/x");
        assert_eq!(remote_path("~"), ".");
    }
}
