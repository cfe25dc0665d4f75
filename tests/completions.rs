//! `distctl completions`: scripts the shells accept, and a man page.

use std::process::Command;

fn completions(shell: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_distctl"))
        .args(["completions", shell])
        .output()
        .unwrap();
    assert!(out.status.success(), "{shell}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn bash_script_parses_and_knows_the_commands() {
    let script = completions("bash");
    for cmd in ["exec", "sync", "fetch", "--gather", "--delete"] {
        assert!(script.contains(cmd), "{cmd} missing");
    }
    let st = Command::new("bash")
        .args(["-n", "-c", &script])
        .status()
        .unwrap();
    assert!(st.success(), "bash rejects the script");
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        assert!(completions(shell).contains("distctl"));
    }
}

#[test]
fn man_page_documents_every_command() {
    let page = completions("man");
    assert!(
        page.starts_with(".ie") || page.starts_with(".TH"),
        "{}",
        &page[..40]
    );
    for section in [
        "DISTCTL EXEC",
        "DISTCTL SYNC",
        "DISTCTL FETCH",
        "DISTCTL RUN",
    ] {
        assert!(page.contains(section), "{section} missing");
    }
    assert!(page.contains("\\-\\-gather"));
}

#[test]
fn man_page_has_the_sections_a_reader_looks_for() {
    let page = completions("man");
    for section in [
        ".SH OPS",
        ".SH \"EXIT STATUS\"",
        ".SH ENVIRONMENT",
        ".SH FILES",
        ".SH EXAMPLES",
        ".SH \"SEE ALSO\"",
        "DISTCTL_INVENTORY",
        "count\\-lines",
        "\\fBdistctl\\-run\\fR(1)",
    ] {
        assert!(page.contains(section), "{section} missing");
    }
}

#[test]
fn man_dir_writes_one_page_per_command_that_groff_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_distctl"))
        .args(["completions", "man", "--dir"])
        .arg(dir.path().join("man1"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let overview = completions("man");
    for cmd in [
        "nodes",
        "status",
        "setup",
        "split",
        "run",
        "collect",
        "report",
        "exec",
        "sync",
        "fetch",
        "init",
        "completions",
    ] {
        let path = dir.path().join(format!("man1/distctl-{cmd}.1"));
        let page = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
        assert!(page.contains(&format!("distctl\\-{cmd}")), "{cmd}: no NAME");
        assert!(
            page.contains(".SH \"EXIT STATUS\""),
            "{cmd}: no EXIT STATUS"
        );
        assert!(
            page.contains(".SH \"GLOBAL OPTIONS\""),
            "{cmd}: no GLOBAL OPTIONS"
        );
        // Every page the overview refers to exists.
        assert!(
            overview.contains(&format!("\\fBdistctl\\-{cmd}\\fR(1)")),
            "{cmd}"
        );
    }
    let main = std::fs::read_to_string(dir.path().join("man1/distctl.1")).unwrap();
    assert_eq!(main, overview, "distctl.1 is what `completions man` prints");
    if Command::new("groff").arg("--version").output().is_ok() {
        for entry in std::fs::read_dir(dir.path().join("man1")).unwrap() {
            let path = entry.unwrap().path();
            let check = Command::new("groff")
                .args(["-man", "-ww", "-z"])
                .arg(&path)
                .output()
                .unwrap();
            assert!(
                check.status.success() && check.stderr.is_empty(),
                "{path:?}: {}",
                String::from_utf8_lossy(&check.stderr)
            );
        }
    }
}

#[test]
fn dir_is_only_for_man() {
    let out = Command::new(env!("CARGO_BIN_EXE_distctl"))
        .args(["completions", "bash", "--dir", "/tmp/never-made-by-distctl"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(!std::path::Path::new("/tmp/never-made-by-distctl").exists());
}

#[test]
fn help_puts_global_options_under_their_own_heading() {
    for cmd in ["exec", "run", "status"] {
        let out = Command::new(env!("CARGO_BIN_EXE_distctl"))
            .args([cmd, "--help"])
            .output()
            .unwrap();
        let help = String::from_utf8(out.stdout).unwrap();
        let heading = help
            .find("Global options:")
            .unwrap_or_else(|| panic!("{cmd}: {help}"));
        let own = help.find("Options:").unwrap();
        assert!(own < heading, "{cmd}: own options first");
        assert!(help[heading..].contains("--fanout"), "{cmd}");
        assert!(!help[own..heading].contains("--inventory"), "{cmd}");
    }
}

/// Complete the last of `words` the way bash does on Tab, with the bash
/// script loaded and distctl on PATH; what it offers.
fn bash_complete(dir: &std::path::Path, words: &[&str]) -> Vec<String> {
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_distctl"))
        .parent()
        .unwrap()
        .to_path_buf();
    let quoted: Vec<String> = words
        .iter()
        .map(|w| format!("'{}'", w.replace('\'', r"'\''")))
        .collect();
    let script = format!(
        "source <(distctl completions bash)\nCOMP_WORDS=({})\nCOMP_CWORD={}\nCOMP_LINE=\"${{COMP_WORDS[*]}}\"\nCOMP_POINT=${{#COMP_LINE}}\n_distctl_with_nodes distctl \"${{COMP_WORDS[COMP_CWORD]}}\" \"${{COMP_WORDS[COMP_CWORD-1]}}\"\nprintf '%s\\n' \"${{COMPREPLY[@]}}\"",
        quoted.join(" "),
        words.len() - 1
    );
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let out = Command::new("bash")
        .current_dir(dir)
        .env("PATH", path)
        .env_remove("DISTCTL_INVENTORY")
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect()
}

#[test]
fn bash_completes_node_names_from_the_inventory_not_file_names() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("cluster.toml"),
        "[groups]\nweb = \"web[1-2]\"\n[[nodes]]\nname = \"web1\"\nhost = \"a\"\n[[nodes]]\nname = \"web2\"\nhost = \"b\"\n[[nodes]]\nname = \"db\"\nhost = \"c\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("other.toml"),
        "[[nodes]]\nname = \"gpu9\"\nhost = \"g\"\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("webfile.txt"), "").unwrap();
    assert_eq!(
        bash_complete(dir.path(), &["distctl", "exec", "--nodes", "we"]),
        ["web1", "web2"]
    );
    let builtin = ["@all", "@failed", "@unreachable", "@ok", "@skipped"];
    let mut all = vec!["web1", "web2", "db", "@web"];
    all.extend(builtin);
    assert_eq!(
        bash_complete(dir.path(), &["distctl", "status", "-x", ""]),
        all
    );
    // Groups: the inventory's, then the built-in ones.
    assert_eq!(
        bash_complete(dir.path(), &["distctl", "exec", "--nodes", "@w"]),
        ["@web"]
    );
    // Each element of a comma list.
    assert_eq!(
        bash_complete(dir.path(), &["distctl", "exec", "--nodes", "db,w"]),
        ["db,web1", "db,web2"]
    );
    // The inventory given before counts.
    assert_eq!(
        bash_complete(
            dir.path(),
            &["distctl", "-i", "other.toml", "status", "--nodes", "g"]
        ),
        ["gpu9"]
    );
    // Nothing matching offers nothing, never file names.
    assert!(bash_complete(dir.path(), &["distctl", "exec", "--nodes", "webf"]).is_empty());
    // Elsewhere clap's completion still works.
    assert!(bash_complete(dir.path(), &["distctl", "sta"]).contains(&"status".to_string()));
}
