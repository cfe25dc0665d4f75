//! `distctl completions SHELL`: shell completion scripts and man pages,
//! generated from the clap definitions so they never drift from the CLI.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use clap::CommandFactory;

use crate::cli::{Cli, CompletionShell, CompletionsArgs};
use crate::exit::Exit;
use crate::files::atomic::replace_file;
use crate::output::man;
use crate::usage;

pub fn run(args: &CompletionsArgs) -> Result<Exit> {
    let mut cmd = Cli::command();
    let shell = match args.shell {
        CompletionShell::Bash => clap_complete::Shell::Bash,
        CompletionShell::Zsh => clap_complete::Shell::Zsh,
        CompletionShell::Fish => clap_complete::Shell::Fish,
        CompletionShell::Elvish => clap_complete::Shell::Elvish,
        CompletionShell::Powershell => clap_complete::Shell::PowerShell,
        CompletionShell::Man => return man_pages(&cmd, args.dir.as_deref()),
    };
    if args.dir.is_some() {
        return Err(usage!(
            "--dir is for `completions man`; a completion script goes to stdout"
        ));
    }
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, "distctl", &mut out);
    write_out(&out)
}

/// `distctl(1)` on stdout, or every page into DIR (made if missing).
fn man_pages(cmd: &clap::Command, dir: Option<&Path>) -> Result<Exit> {
    let Some(dir) = dir else {
        return write_out(&man::overview(cmd)?);
    };
    let pages = man::all_pages(cmd)?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for (name, bytes) in &pages {
        replace_file(&dir.join(name), bytes)?;
    }
    eprintln!(
        "distctl: wrote {} man pages into {}",
        pages.len(),
        dir.display()
    );
    Ok(Exit::Ok)
}

fn write_out(bytes: &[u8]) -> Result<Exit> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(bytes)
        .and_then(|_| stdout.flush())
        .context("writing to stdout")?;
    Ok(Exit::Ok)
}
