//! Man pages, generated from the clap definitions so they never drift from
//! `--help`: `distctl(1)` (every command and flag on one page, the ops, exit
//! status, environment, files, examples) and one `distctl-COMMAND(1)` page
//! per command, as `git` and `cargo` ship them.

use std::fmt::Write as _;

use anyhow::Result;
use distctl_proto::Op;

use crate::exit::Exit;

/// `distctl(1)`: the overview page, printed by `distctl completions man`.
pub fn overview(cmd: &clap::Command) -> Result<Vec<u8>> {
    let cmd = cmd.clone().version(env!("CARGO_PKG_VERSION"));
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut out)?;
    let mut s = String::new();
    for sub in commands(&cmd) {
        command_section(&mut s, sub);
    }
    s.push_str(".SH OPS\nBuilt\\-in operations of \\fBdistctl run \\-\\-op\\fR, run by worker\\-agent on each chunk:\n");
    for op in Op::ALL {
        let _ = writeln!(
            s,
            ".TP\n\\fB{}\\fR\n{}",
            roff(op.name()),
            roff(op.describe())
        );
    }
    common_sections(&mut s);
    s.push_str(".SH EXAMPLES\n");
    for sub in commands(&cmd) {
        examples(&mut s, sub.get_name());
    }
    s.push_str(".SH \"SEE ALSO\"\n");
    let pages: Vec<String> = commands(&cmd)
        .map(|c| format!("\\fBdistctl\\-{}\\fR(1)", roff(c.get_name())))
        .chain(["\\fBssh\\fR(1)".into(), "\\fBssh_config\\fR(5)".into()])
        .collect();
    let _ = writeln!(s, "{}", pages.join(", "));
    out.extend_from_slice(s.as_bytes());
    Ok(out)
}

/// Every page: `(file name, roff)` for `distctl.1` and each `distctl-CMD.1`.
pub fn all_pages(cmd: &clap::Command) -> Result<Vec<(String, Vec<u8>)>> {
    let mut pages = vec![("distctl.1".to_string(), overview(cmd)?)];
    for sub in commands(cmd) {
        let name = format!("distctl-{}", sub.get_name());
        let page_cmd = sub
            .clone()
            .name(name.clone())
            .bin_name(format!("distctl {}", sub.get_name()))
            .version(env!("CARGO_PKG_VERSION"));
        let mut out = Vec::new();
        clap_mangen::Man::new(page_cmd).render(&mut out)?;
        let mut s = String::from(
            ".SH \"GLOBAL OPTIONS\"\nEvery command takes these (see \\fBdistctl\\fR(1)):\n",
        );
        flags(&mut s, cmd.get_arguments().filter(|a| a.is_global_set()));
        common_sections(&mut s);
        s.push_str(".SH EXAMPLES\n");
        examples(&mut s, sub.get_name());
        s.push_str(".SH \"SEE ALSO\"\n\\fBdistctl\\fR(1)\n");
        out.extend_from_slice(s.as_bytes());
        pages.push((format!("{name}.1"), out));
    }
    Ok(pages)
}

fn commands(cmd: &clap::Command) -> impl Iterator<Item = &clap::Command> {
    cmd.get_subcommands().filter(|s| s.get_name() != "help")
}

/// One command's usage and flags inside `distctl(1)`.
fn command_section(s: &mut String, sub: &clap::Command) {
    let _ = writeln!(s, ".SH \"DISTCTL {}\"", sub.get_name().to_uppercase());
    let usage = sub
        .clone()
        .bin_name(format!("distctl {}", sub.get_name()))
        .render_usage()
        .to_string();
    let _ = writeln!(s, ".B {}", roff(usage.trim_start_matches("Usage: ")));
    if let Some(about) = sub.get_about() {
        let _ = writeln!(s, ".PP\n{}", roff(&about.to_string()));
    }
    flags(s, sub.get_arguments().filter(|a| !a.is_global_set()));
}

/// Flags as `.TP` entries: `-o, --output FILE` then the help.
fn flags<'a>(s: &mut String, args: impl Iterator<Item = &'a clap::Arg>) {
    for arg in args.filter(|a| !a.is_hide_set()) {
        let mut head = Vec::new();
        if let Some(c) = arg.get_short() {
            head.push(format!("\\fB\\-{c}\\fR"));
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
        let term = if arg.is_positional() {
            format!("\\fI{}\\fR", roff(&value))
        } else if arg.get_action().takes_values() {
            format!("{} \\fI{}\\fR", head.join(", "), roff(&value))
        } else {
            head.join(", ")
        };
        let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
        let _ = writeln!(s, ".TP\n{term}\n{}", roff(&help));
    }
}

/// EXIT STATUS, ENVIRONMENT and FILES: the same on every page.
fn common_sections(s: &mut String) {
    s.push_str(".SH \"EXIT STATUS\"\nWhen several apply, the larger wins.\n");
    for exit in Exit::ALL {
        let _ = writeln!(s, ".TP\n\\fB{}\\fR\n{}", exit.code(), roff(exit.meaning()));
    }
    s.push_str(
        ".PP\nWhen the reader of stdout goes away (\\fB| head\\fR), distctl stops and ends as \\fBcat\\fR does: \
         silently, killed by SIGPIPE (status 141 in the shell); \\fBexec\\fR lets its remote commands finish.\n",
    );
    s.push_str(
        ".SH ENVIRONMENT\n\
         .TP\n\\fBDISTCTL_INVENTORY\\fR\nThe inventory when \\fB\\-\\-inventory\\fR is not given.\n\
         .TP\n\\fBXDG_RUNTIME_DIR\\fR\nWhere the ssh control sockets live (\\fI$XDG_RUNTIME_DIR/distctl\\fR when it is private to the user; else \\fI/tmp/distctl\\-UID\\fR).\n\
         .TP\n\\fBHOME\\fR\nFor \\fI~\\fR in inventory paths and the built\\-in \\fBlocal\\fR node's working directory.\n\
         .SH FILES\n\
         .TP\n\\fI./cluster.toml\\fR, \\fI~/.config/distctl/cluster.toml\\fR, \\fI/etc/distctl/cluster.toml\\fR\n\
         The inventory, looked for in this order after \\fB\\-\\-inventory\\fR and \\fB$DISTCTL_INVENTORY\\fR.\n\
         .TP\n\\fI~/.ssh/config\\fR, \\fI/etc/ssh/ssh_config\\fR\nRead for every node, after the node's own inventory settings.\n\
         .TP\n\\fI.NAME.distctl\\-run/\\fR\nBeside a \\fBrun \\-o NAME\\fR output: the resume journal while the run is incomplete.\n",
    );
}

/// A few lines of real use for one command, as the README shows them.
fn examples(s: &mut String, command: &str) {
    let lines: &[(&str, &str)] = match command {
        "nodes" => &[(
            "distctl nodes --label batch",
            "the nodes carrying a label, with their settings",
        )],
        "status" => &[(
            "distctl status",
            "every node at once: reachable, load, memory, disk",
        )],
        "setup" => &[(
            "distctl setup",
            "create the workdir and push worker-agent where it is missing or old",
        )],
        "split" => &[(
            "distctl split access.log --chunks 3 -o parts",
            "line-aligned chunk files and a manifest",
        )],
        "run" => &[
            (
                "distctl run big.txt --op upper -o big.upper.txt",
                "byte for byte like tr a-z A-Z, merged in input order",
            ),
            (
                "distctl run access.log --exec \"cut -d' ' -f1\" > ips.txt",
                "any command on each chunk",
            ),
            (
                "distctl run numbers.txt --op avg",
                "one global answer from per-chunk partials",
            ),
        ],
        "collect" => &[
            (
                "distctl collect -o metrics.csv --append",
                "one metrics row per node, cron-safe",
            ),
            (
                "distctl collect --every 10s --count 360 -o metrics.csv",
                "an hour of samples without cron",
            ),
        ],
        "report" => &[(
            "distctl report metrics.csv -o report.html",
            "one self-contained HTML page",
        )],
        "exec" => &[
            (
                "distctl exec uptime",
                "one command everywhere, output per node",
            ),
            (
                "distctl exec -g -- cat /etc/debian_version",
                "identical outputs folded under their node set",
            ),
        ],
        "sync" => &[(
            "distctl sync ./app --to app --delete",
            "mirror a directory into every workdir",
        )],
        "fetch" => &[(
            "distctl fetch /var/log/syslog --to ./logs",
            "into ./logs/NODE/syslog",
        )],
        "init" => &[("distctl init", "a commented starter cluster.toml")],
        "completions" => &[
            (
                "distctl completions bash > ~/.local/share/bash-completion/completions/distctl",
                "bash completion",
            ),
            (
                "sudo distctl completions man --dir /usr/local/share/man/man1",
                "install every man page",
            ),
        ],
        _ => &[],
    };
    for (line, what) in lines {
        let _ = writeln!(s, ".TP\n\\fB{}\\fR\n{}", roff(line), roff(what));
    }
}

/// Escape text for roff: backslashes and dashes, and a leading `.` or `'`
/// that would read as a request.
fn roff(text: &str) -> String {
    let s = text.replace('\\', "\\e").replace('-', "\\-");
    if s.starts_with('.') || s.starts_with('\'') {
        format!("\\&{s}")
    } else {
        s
    }
}
