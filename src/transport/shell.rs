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

/// Environment variables for a command line, set by the line itself (no
/// reliance on sshd's `AcceptEnv`): `K=V; export K;` statements for a POSIX
/// shell, so every command of a compound line sees them.
pub fn exports(vars: &[(&str, String)]) -> String {
    if vars.is_empty() {
        return String::new();
    }
    let mut s = String::new();
    for (k, v) in vars {
        debug_assert!(k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
        s.push_str(&format!("{k}={}; ", quote(v)));
    }
    let names: Vec<&str> = vars.iter().map(|(k, _)| *k).collect();
    s.push_str(&format!("export {}; ", names.join(" ")));
    s
}

/// `env K=V ...` words before one command (any login shell runs `env`).
pub fn env_words(vars: &[(&str, String)]) -> Vec<String> {
    if vars.is_empty() {
        return Vec::new();
    }
    let mut argv = vec!["env".to_string()];
    argv.extend(vars.iter().map(|(k, v)| format!("{k}={v}")));
    argv
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn environment_reaches_every_command_of_the_line() {
        let vars = [("A_B", "it's $x".to_string()), ("N", "3".to_string())];
        let line = format!("{}echo \"$A_B\"; sh -c 'echo $N'", exports(&vars));
        let out = Command::new("sh").arg("-c").arg(&line).output().unwrap();
        assert_eq!(String::from_utf8(out.stdout).unwrap(), "it's $x\n3\n");
        let mut argv = env_words(&vars);
        argv.extend(["sh".into(), "-c".into(), "echo \"$A_B/$N\"".into()]);
        let out = Command::new("sh")
            .arg("-c")
            .arg(join(&argv))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8(out.stdout).unwrap(), "it's $x/3\n");
    }

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
