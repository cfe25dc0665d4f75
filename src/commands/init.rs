//! `distctl init [PATH]`: a commented starter inventory, ready for
//! `distctl nodes` as it is, never written over an existing file.

use std::io::Write;

use anyhow::{Context, Result};

use crate::cli::{Global, InitArgs};
use crate::exit::Exit;
use crate::usage;

const STARTER: &str = r#"# distctl inventory: edit the node below, add more [[nodes]] entries.
# Every key is explained in the README ("The inventory") and in
# cluster.example.toml of the distctl sources. Check with `distctl nodes`.

[defaults]
# user = "ops"                     # unset: ~/.ssh/config decides, as with plain ssh
# identity_file = "~/.ssh/id_ed25519"
# workdir = ".distctl"             # relative paths are under the remote home
# host_key_checking = "strict"     # "strict" (default), "accept-new" or "off"
# connect_timeout = "10s"

[[nodes]]
name = "localhost"                 # a range makes one node per value: "node[01-16]"
host = "localhost"                 # address or ssh alias; defaults to the name
# port = 22
# slots = 4                        # chunks at once (default: the node's cores)
labels = ["dev"]
"#;

pub fn run(g: &Global, args: &InitArgs) -> Result<Exit> {
    crate::files::preflight::check_output(&args.path)?;
    let mut f = match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&args.path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(usage!(
                "{} already exists: not overwritten (remove it or name another path)",
                args.path.display()
            ))
        }
        Err(e) => return Err(e).with_context(|| format!("cannot create {}", args.path.display())),
    };
    if let Err(e) = f.write_all(STARTER.as_bytes()).and_then(|()| f.sync_all()) {
        // Nothing half-written is left behind.
        let _ = std::fs::remove_file(&args.path);
        return Err(e).with_context(|| format!("cannot write {}", args.path.display()));
    }
    if g.json {
        crate::output::json::print_line(&serde_json::json!({ "written": args.path }))?;
    } else if !g.quiet {
        eprintln!(
            "distctl: wrote {}; edit it, then check with `distctl nodes`",
            args.path.display()
        );
    }
    Ok(Exit::Ok)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_starter_parses_as_one_node() {
        let nodes = crate::cluster::inventory::parse(
            std::path::Path::new("cluster.toml"),
            super::STARTER,
            std::path::Path::new("/"),
        )
        .unwrap();
        assert_eq!(nodes.len(), 1);
        assert_eq!(nodes[0].host, "localhost");
    }
}
