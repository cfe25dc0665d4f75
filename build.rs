//! Builds the static worker-agent that distctl embeds and pushes to nodes.
//!
//! A nested `cargo build` of the `worker-agent` package with its own release
//! settings (LTO, strip, panic=abort, one codegen unit) and `+crt-static` on
//! the gnu target: a static-pie binary that runs on any x86_64 Linux whatever
//! its libc. It has its own target directory beside the outer profile
//! directories, so it is built once and then only when the agent's or the
//! protocol's sources change, and those settings never slow distctl's own
//! builds. `cargo build` and `cargo install --path .` both get it this way.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::Digest;

const AGENT_PROFILE: &str = "agent-static";

fn main() {
    let root = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR"));
    for path in [
        "worker-agent/src",
        "worker-agent/Cargo.toml",
        "proto/src",
        "proto/Cargo.toml",
        "Cargo.lock",
        "build.rs",
    ] {
        println!("cargo:rerun-if-changed={path}");
    }
    println!("cargo:rerun-if-env-changed=DISTCTL_AGENT_TARGET_DIR");

    // <target>/<profile>/build/distctl-<hash>/out → <target>/worker-agent-static
    let target_dir = env::var_os("DISTCTL_AGENT_TARGET_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            out_dir
                .ancestors()
                .nth(4)
                .map(|t| t.join("worker-agent-static"))
        })
        .unwrap_or_else(|| out_dir.join("worker-agent-static"));

    // The agent runs where distctl's own target runs (x86_64 unless built
    // for another Linux): static on gnu via crt-static, on musl by default.
    let agent_target = env::var("TARGET")
        .ok()
        .filter(|t| t.contains("-linux-"))
        .unwrap_or_else(|| "x86_64-unknown-linux-gnu".into());
    let agent_target = agent_target.as_str();

    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    // The outer build's settings (clippy's wrapper, its rustflags, target
    // dir, profile overrides) must not leak into this one; keep the
    // jobserver (CARGO_MAKEFLAGS) so the two share the CPU budget.
    for (key, _) in env::vars_os() {
        let key = key.to_string_lossy().into_owned();
        let cargo_setting =
            key.starts_with("CARGO_") && key != "CARGO_HOME" && key != "CARGO_MAKEFLAGS";
        if cargo_setting
            || key.starts_with("__CARGO")
            || matches!(
                key.as_str(),
                "RUSTFLAGS"
                    | "RUSTDOCFLAGS"
                    | "RUSTC_WRAPPER"
                    | "RUSTC_WORKSPACE_WRAPPER"
                    | "RUSTC_BOOTSTRAP"
            )
        {
            cmd.env_remove(&key);
        }
    }
    let profile = |k: &str, v: &str| format!("profile.{AGENT_PROFILE}.{k}={v}");
    cmd.current_dir(&root)
        .args([
            "build",
            "--quiet",
            "--package",
            "worker-agent",
            "--target",
            agent_target,
        ])
        .args(["--profile", AGENT_PROFILE])
        .arg("--manifest-path")
        .arg(root.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir);
    for setting in [
        profile("inherits", "\"release\""),
        profile("opt-level", "3"),
        profile("lto", "true"),
        profile("codegen-units", "1"),
        profile("panic", "\"abort\""),
        profile("strip", "true"),
        profile("debug", "false"),
        profile("incremental", "false"),
        format!("target.{agent_target}.rustflags=[\"-C\", \"target-feature=+crt-static\"]"),
    ] {
        cmd.arg("--config").arg(setting);
    }
    // Our stdout is read by cargo for directives: the nested build talks on stderr.
    let status = cmd
        .stdout(std::io::stderr())
        .status()
        .unwrap_or_else(|e| panic!("cannot run cargo to build worker-agent: {e}"));
    if !status.success() {
        panic!("building the static worker-agent failed ({status}); see the errors above");
    }
    let built = target_dir
        .join(agent_target)
        .join(AGENT_PROFILE)
        .join("worker-agent");
    let dest = out_dir.join("worker-agent");
    let bytes = copy_if_changed(&built, &dest);
    // Hashed here once rather than at every start of a debug distctl.
    let sha: String = sha2::Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    println!("cargo:rustc-env=DISTCTL_AGENT_SHA256={sha}");
}

/// Copy only when the bytes differ, so an unchanged agent does not make
/// cargo rebuild distctl. Returns the bytes.
fn copy_if_changed(from: &Path, to: &Path) -> Vec<u8> {
    let new = std::fs::read(from).unwrap_or_else(|e| panic!("reading {}: {e}", from.display()));
    if std::fs::read(to).ok().as_deref() != Some(&new[..]) {
        let tmp = to.with_extension("tmp");
        std::fs::write(&tmp, &new).expect("writing the embedded agent");
        std::fs::rename(&tmp, to).expect("renaming the embedded agent");
    }
    new
}
