//! `distctl completions SHELL`: shell completion scripts and a man page,
//! generated from the clap definitions so they never drift from the CLI.

use std::io::Write;

use anyhow::{Context, Result};
use clap::CommandFactory;

use crate::cli::{Cli, CompletionShell, CompletionsArgs};
use crate::exit::Exit;

pub fn run(args: &CompletionsArgs) -> Result<Exit> {
    let mut cmd = Cli::command();
    let mut out = Vec::new();
    let shell = match args.shell {
        CompletionShell::Bash => clap_complete::Shell::Bash,
        CompletionShell::Zsh => clap_complete::Shell::Zsh,
        CompletionShell::Fish => clap_complete::Shell::Fish,
        CompletionShell::Elvish => clap_complete::Shell::Elvish,
        CompletionShell::Powershell => clap_complete::Shell::PowerShell,
        CompletionShell::Man => {
            man_page(cmd, &mut out)?;
            return write_out(&out);
        }
    };
    clap_complete::generate(shell, &mut cmd, "distctl", &mut out);
    write_out(&out)
}

/// `distctl(1)` followed by one section per command with its flags, so
/// `man distctl` documents every flag of every command on one page.
fn man_page(cmd: clap::Command, out: &mut Vec<u8>) -> Result<()> {
    let cmd = cmd.version(env!("CARGO_PKG_VERSION"));
    clap_mangen::Man::new(cmd.clone()).render(out)?;
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        writeln!(out, ".SH \"DISTCTL {}\"", sub.get_name().to_uppercase())?;
        let usage = sub
            .clone()
            .bin_name(format!("distctl {}", sub.get_name()))
            .render_usage()
            .to_string();
        let usage = usage.trim_start_matches("Usage: ");
        writeln!(out, ".B {}", roff(usage))?;
        if let Some(about) = sub.get_about() {
            writeln!(out, ".PP\n{}", roff(&about.to_string()))?;
        }
        for arg in sub.get_arguments().filter(|a| !a.is_hide_set()) {
            let mut head = Vec::new();
            if let Some(s) = arg.get_short() {
                head.push(format!("\\fB\\-{s}\\fR"));
            }
            if let Some(l) = arg.get_long() {
                head.push(format!("\\fB\\-\\-{}\\fR", roff(l)));
            }
            let value = arg
                .get_value_names()
                .map(|v| {
                    v.iter()
                        .map(|n| n.to_string())
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_else(|| arg.get_id().to_string().to_uppercase());
            let takes_value = arg.get_action().takes_values();
            let term = if arg.is_positional() {
                format!("\\fI{}\\fR", roff(&value))
            } else if takes_value {
                format!("{} \\fI{}\\fR", head.join(", "), roff(&value))
            } else {
                head.join(", ")
            };
            let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
            writeln!(out, ".TP\n{term}\n{}", roff(&help))?;
        }
    }
    Ok(())
}

/// Escape text for roff: backslashes, and a leading `.` or `'` that would
/// read as a request.
fn roff(text: &str) -> String {
    let s = text.replace('\\', "\\e").replace('-', "\\-");
    if s.starts_with('.') || s.starts_with('\'') {
        format!("\\&{s}")
    } else {
        s
    }
}

fn write_out(bytes: &[u8]) -> Result<Exit> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(bytes)
        .and_then(|_| stdout.flush())
        .context("writing to stdout")?;
    Ok(Exit::Ok)
}
