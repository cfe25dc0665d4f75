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
    let script = String::from_utf8(out).context("completion script")?;
    write_out(with_node_names(args.shell, script).as_bytes())
}

/// `--nodes` and `--exclude` complete node names from the inventory in
/// effect (`distctl nodes --names`, honouring `-i`/`-H` typed before),
/// each element of a comma list, instead of file names.
fn with_node_names(shell: CompletionShell, script: String) -> String {
    match shell {
        CompletionShell::Bash => script + BASH_NODES,
        CompletionShell::Zsh => {
            let script = script.replace(":NODESET:_default", ":NODESET:_distctl_node_names");
            match script.split_once('\n') {
                Some((compdef, rest)) => format!("{compdef}\n{ZSH_NODES}{rest}"),
                None => script,
            }
        }
        CompletionShell::Fish => script
            .lines()
            .map(|l| {
                if l.contains(" -l nodes ") || l.contains(" -l exclude ") {
                    format!("{l} -f -a '(distctl nodes --names 2>/dev/null)'\n")
                } else {
                    format!("{l}\n")
                }
            })
            .collect(),
        _ => script,
    }
}

const BASH_NODES: &str = r#"
# distctl: --nodes/--exclude complete node names from the inventory in effect.
_distctl_node_names() {
    local args=() i w
    for ((i = 1; i < COMP_CWORD; i++)); do
        w="${COMP_WORDS[i]}"
        case "$w" in
            -i|--inventory|-H|--hosts) args+=("$w" "${COMP_WORDS[i+1]}") ;;
            --inventory=*|--hosts=*) args+=("$w") ;;
        esac
    done
    distctl "${args[@]}" nodes --names 2>/dev/null
}
_distctl_with_nodes() {
    local cur="${COMP_WORDS[COMP_CWORD]}" prev="${COMP_WORDS[COMP_CWORD-1]}"
    case "$prev" in
        -n|--nodes|-x|--exclude)
            local head="" tail="$cur"
            if [[ "$cur" == *,* ]]; then head="${cur%,*},"; tail="${cur##*,}"; fi
            local IFS=$'
'
            COMPREPLY=($(compgen -P "$head" -W "$(_distctl_node_names)" -- "$tail"))
            compopt +o default +o bashdefault 2>/dev/null
            return 0
            ;;
    esac
    _distctl "$@"
}
complete -F _distctl_with_nodes -o nosort -o bashdefault -o default distctl
"#;

const ZSH_NODES: &str = r#"# distctl: --nodes/--exclude complete node names from the inventory in effect.
_distctl_node_names() {
    local -a names args
    local i
    for ((i = 2; i < CURRENT; i++)); do
        case $words[i] in
            -i|--inventory|-H|--hosts) args+=($words[i] $words[i+1]) ;;
            --inventory=*|--hosts=*) args+=($words[i]) ;;
        esac
    done
    names=(${(f)"$(distctl $args nodes --names 2>/dev/null)"})
    _sequence compadd - $names
}
"#;

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
