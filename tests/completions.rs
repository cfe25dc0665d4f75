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
