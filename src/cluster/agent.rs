//! The worker-agent binary distctl pushes to nodes, and installing it.
//!
//! distctl carries a static copy of the agent inside its own executable
//! (built by `build.rs`), so a plain `cargo build` or `cargo install` gives a
//! pushable agent; `--agent PATH` pushes another build instead. A node gets
//! it at `<workdir>/bin/worker-agent` ([`crate::cluster::workdir::agent_path`]).

use std::borrow::Cow;
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::cluster::workdir;
use crate::transport::shell::quote;
use crate::transport::NodeSession;

/// The static agent built for this distctl.
pub static EMBEDDED: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/worker-agent"));

/// sha256 of [`EMBEDDED`] (lower-case hex), computed when it was built.
pub const EMBEDDED_SHA256: &str = env!("DISTCTL_AGENT_SHA256");

/// One agent executable, ready to push.
pub struct AgentBinary {
    pub bytes: Cow<'static, [u8]>,
    /// Lower-case hex.
    pub sha256: String,
    /// `uname -m` names of the machines it runs on (e.g. `x86_64`).
    pub machine: Machine,
    /// Where it came from, for messages: "embedded" or the path.
    pub source: String,
}

/// The instruction set of an ELF executable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Machine(pub u16);

impl Machine {
    /// `uname -m` values of this machine type.
    fn uname_names(self) -> &'static [&'static str] {
        match self.0 {
            62 => &["x86_64", "amd64"],
            183 => &["aarch64", "arm64"],
            3 => &["i386", "i486", "i586", "i686", "x86"],
            40 => &["armv6l", "armv7l", "armv7", "arm"],
            243 => &["riscv64"],
            21 => &["ppc64le", "ppc64"],
            22 => &["s390x"],
            _ => &[],
        }
    }

    pub fn name(self) -> String {
        self.uname_names()
            .first()
            .map_or_else(|| format!("ELF machine {}", self.0), |n| n.to_string())
    }

    /// Whether a node whose `uname -m` says `uname` runs this machine code.
    pub fn runs_on(self, uname: &str) -> bool {
        self.uname_names().contains(&uname)
    }
}

/// What a look at an ELF header tells us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ElfInfo {
    pub machine: Machine,
    /// No program interpreter (no dynamic loader, no libc needed on the node).
    pub is_static: bool,
}

/// Parse the parts of a 64-bit little-endian ELF header we need.
pub fn elf_info(bytes: &[u8]) -> Option<ElfInfo> {
    let u16_at = |o: usize| Some(u16::from_le_bytes(bytes.get(o..o + 2)?.try_into().ok()?));
    let u32_at = |o: usize| Some(u32::from_le_bytes(bytes.get(o..o + 4)?.try_into().ok()?));
    let u64_at = |o: usize| Some(u64::from_le_bytes(bytes.get(o..o + 8)?.try_into().ok()?));
    // Magic, ELFCLASS64, little-endian.
    if bytes.get(..4)? != b"\x7fELF" || *bytes.get(4)? != 2 || *bytes.get(5)? != 1 {
        return None;
    }
    let machine = Machine(u16_at(18)?);
    let phoff = usize::try_from(u64_at(32)?).ok()?;
    let phentsize = u16_at(54)? as usize;
    let phnum = u16_at(56)? as usize;
    const PT_INTERP: u32 = 3;
    let mut is_static = true;
    for i in 0..phnum {
        if u32_at(phoff + i * phentsize)? == PT_INTERP {
            is_static = false;
        }
    }
    Some(ElfInfo { machine, is_static })
}

impl AgentBinary {
    /// The embedded agent.
    pub fn embedded() -> AgentBinary {
        let info = elf_info(EMBEDDED).expect("the embedded agent is an ELF executable");
        AgentBinary {
            bytes: Cow::Borrowed(EMBEDDED),
            sha256: EMBEDDED_SHA256.to_string(),
            machine: info.machine,
            source: "embedded".into(),
        }
    }

    /// `--agent PATH`.
    pub fn from_file(path: &Path) -> Result<AgentBinary> {
        let bytes =
            std::fs::read(path).map_err(|e| crate::usage!("--agent {}: {e}", path.display()))?;
        let Some(info) = elf_info(&bytes) else {
            return Err(crate::usage!(
                "--agent {}: not a 64-bit Linux executable (ELF)",
                path.display()
            ));
        };
        Ok(AgentBinary {
            sha256: sha256_hex(&bytes),
            bytes: Cow::Owned(bytes),
            machine: info.machine,
            source: path.display().to_string(),
        })
    }

    /// `--agent PATH` when given, else the embedded agent.
    pub fn from_option(path: Option<&Path>) -> Result<AgentBinary> {
        path.map_or_else(|| Ok(AgentBinary::embedded()), AgentBinary::from_file)
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What [`ensure_agent`] did on one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum InstallAction {
    /// The agent was copied over.
    Pushed,
    /// The node already had exactly this agent.
    UpToDate,
}

/// The agent as installed on one node.
#[derive(Debug, Clone)]
pub struct AgentInstall {
    /// Remote path of the agent (for the remote shell; quote it).
    pub path: String,
    pub action: InstallAction,
    /// The node's `uname -m`.
    pub machine: String,
    /// The CPUs the login may run on (`nproc`), when it could tell (learned
    /// on the way, so `run` needs no extra command for its default slots).
    pub cores: Option<usize>,
}

/// What the probe found on the node.
struct Probe {
    machine: String,
    cores: Option<usize>,
    /// sha256 of the installed agent, as it tells itself (`self-probe`,
    /// with the cores; `self-sha256` alone) or, for an agent too old to, as
    /// the node's `sha256sum` or `shasum`.
    installed: Option<String>,
}

/// A shell function `h FILE` printing FILE's sha256 with whichever tool the
/// node has; it fails when it has none.
const HASH_FN: &str = r#"h() { if command -v sha256sum >/dev/null 2>&1; then sha256sum < "$1" | cut -c1-64; elif command -v shasum >/dev/null 2>&1; then shasum -a 256 < "$1" | cut -c1-64; else return 3; fi; }"#;

/// Make sure the node has `agent` at its agent path: create the workdir
/// (`bin/`, `runs/`), skip the push when the installed copy has the same
/// sha256, refuse when the node's `uname -m` does not run the binary, else
/// push it atomically (temporary name in the same directory, checked, then
/// renamed). One remote command when up to date, two when pushing: each
/// command costs a login-shell start on the node.
pub async fn ensure_agent(session: &NodeSession, agent: &AgentBinary) -> Result<AgentInstall> {
    let node = &session.node;
    let path = workdir::agent_path(node);
    let probe = probe(session).await?;
    if !agent.machine.runs_on(&probe.machine) {
        bail!(
            "the node is {} but the agent ({}) is built for {}: build worker-agent for {} and pass --agent PATH",
            probe.machine,
            agent.source,
            agent.machine.name(),
            probe.machine
        );
    }
    let install = |action| AgentInstall {
        path: path.clone(),
        action,
        machine: probe.machine.clone(),
        cores: probe.cores,
    };
    if probe.installed.as_deref() == Some(agent.sha256.as_str()) {
        return Ok(install(InstallAction::UpToDate));
    }
    push(session, agent).await?;
    Ok(install(InstallAction::Pushed))
}

/// Exit status of a chunk's command whose [`guard`] found the node not
/// ready for it: nothing ran.
pub const NOT_READY: i32 = 86;

/// Shell lines put before a chunk's agent on a node not yet known to be
/// ready: they make sure of what the install probe ([`ensure_agent`]) would
/// before the agent starts. The workdir and its `bin/` are the login's own
/// and writable by no one else, `runs/` is there, and the agent at its path
/// is the one whose sha256 is `sha256` (as it tells itself, else as the
/// node's `sha256sum` or `shasum` does, for an `--agent` too old to
/// know `self-sha256`, as the probe asks). When one is not so, nothing runs
/// and the command exits with [`NOT_READY`]; the node is then prepared and
/// the chunk runs again at no cost. So a node whose agent is up to date,
/// as it is on every run after the first, starts its first chunk without
/// waiting out the probe's round trips (two, 0.2 s at a 100 ms round trip).
pub fn guard(node: &crate::cluster::inventory::Node, sha256: &str) -> String {
    let root = quote(&workdir::root(node));
    let agent = quote(&workdir::agent_path(node));
    format!(
        r#"{safe_dir}
{HASH_FN}
{{ safe_dir {root} {root}/bin && [ -d {root}/runs ] && [ -f {agent} ] && [ "$({agent} self-sha256 </dev/null 2>/dev/null || h {agent} 2>/dev/null)" = {sha} ]; }} || {{ echo "the agent is not installed here or is not this run's" >&2; exit {NOT_READY}; }}
"#,
        safe_dir = workdir::SAFE_DIR_FN,
        sha = quote(sha256),
    )
}

async fn probe(session: &NodeSession) -> Result<Probe> {
    let node = &session.node;
    let root = quote(&workdir::root(node));
    let agent = quote(&workdir::agent_path(node));
    let safe_dir = workdir::SAFE_DIR_FN;
    let script = format!(
        r#"{HASH_FN}
{safe_dir}
umask 077
{{ [ -d {root}/bin ] && [ -d {root}/runs ]; }} || mkdir -p -- {root}/bin {root}/runs || exit 1
safe_dir {root} {root}/bin || exit 1
echo "machine $(uname -m)"
if [ -f {agent} ] && {agent} self-probe </dev/null 2>/dev/null; then exit 0; fi
echo "cores $({CORES_SH})"
if [ -f {agent} ]; then echo "installed $({agent} self-sha256 </dev/null 2>/dev/null || h {agent} 2>/dev/null || echo none)"; fi"#
    );
    let out = session.run(&script, None).await?;
    if !out.success() {
        bail!("workdir {}: {}", workdir::root(node), out.failure_reason());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut probe = Probe {
        machine: String::new(),
        cores: None,
        installed: None,
    };
    for line in text.lines() {
        match line.split_once(' ').unwrap_or((line, "")) {
            ("machine", m) => probe.machine = m.trim().to_string(),
            ("cores", n) => probe.cores = parse_cores(n),
            ("installed", sha) if sha.trim() != "none" => {
                probe.installed = Some(sha.trim().to_string())
            }
            _ => {}
        }
    }
    if probe.machine.is_empty() {
        bail!(
            "unexpected answer from the node: {}",
            text.lines().next().unwrap_or("")
        );
    }
    Ok(probe)
}

/// Prints the CPUs a login may run on (its affinity, as `nproc` counts
/// them), the default number of slots: read by the install probe when the
/// agent cannot tell (so `run` needs no extra command) and by [`core_count`].
const CORES_SH: &str = "nproc 2>/dev/null || getconf _NPROCESSORS_ONLN 2>/dev/null";

fn parse_cores(text: &str) -> Option<usize> {
    text.trim().parse().ok().filter(|&n| n > 0)
}

/// A node's usable CPU count, for a node whose agent was not probed
/// (`split --for-nodes`, or a probe that could not tell).
pub async fn core_count(session: &NodeSession) -> Result<usize> {
    let out = session.run(CORES_SH, None).await?;
    parse_cores(&String::from_utf8_lossy(&out.stdout)).context("cannot read the core count")
}

/// Upload through one piped command: write a temporary file beside the
/// agent, check its size, make sure it runs, check its sha256 (the new
/// agent's own `self-sha256`, else the node's `sha256sum` or `shasum` for
/// an `--agent` too old to know it; unchecked only when neither can tell),
/// then rename it over the old one.
async fn push(session: &NodeSession, agent: &AgentBinary) -> Result<()> {
    let node = &session.node;
    let path = workdir::agent_path(node);
    let template = format!("{}/bin/.worker-agent.XXXXXX", workdir::root(node));
    let (q_template, q_path) = (quote(&template), quote(&path));
    let script = format!(
        r#"{HASH_FN}
umask 077
t=$(mktemp {q_template}) || {{ echo "cannot create a temporary file beside {q_path}" >&2; exit 1; }}
fail() {{ rm -f -- "$t"; echo "$1" >&2; exit 1; }}
err=$(cat 2>&1 > "$t") || fail "cannot write $t: ${{err:-write failed}}"
[ "$(wc -c < "$t" | tr -d ' ')" = {len} ] || fail "upload cut short"
chmod 755 "$t" || fail "cannot make $t executable"
"$t" version >/dev/null 2>&1 || fail "the agent does not run on this node (noexec mount?)"
s=$("$t" self-sha256 </dev/null 2>/dev/null || h "$t" 2>/dev/null) || s=
[ -z "$s" ] || [ "$s" = {sha} ] || fail "checksum mismatch after upload"
mv -f -- "$t" {q_path} || fail "cannot rename $t"
"#,
        len = agent.bytes.len(),
        sha = agent.sha256,
    );
    let out = session
        .run(&script, Some(&agent.bytes))
        .await
        .context("pushing the agent")?;
    if !out.success() {
        bail!("push failed: {}", out.failure_reason());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_agent_is_static_x86_64() {
        let info = elf_info(EMBEDDED).expect("ELF");
        assert!(info.is_static, "the embedded agent needs a dynamic loader");
        assert!(info.machine.runs_on("x86_64"));
        assert!(!info.machine.runs_on("aarch64"));
    }

    #[test]
    fn embedded_hash_matches_the_bytes() {
        assert_eq!(sha256_hex(EMBEDDED), EMBEDDED_SHA256);
    }

    #[test]
    fn not_elf() {
        assert_eq!(elf_info(b"#!/bin/sh\necho hi\n"), None);
        assert_eq!(elf_info(b""), None);
    }

    /// The guard, run by a real shell in a workdir with awkward characters:
    /// it lets the agent start only from a safe workdir holding this run's
    /// agent, and otherwise exits [`NOT_READY`] with nothing started.
    #[test]
    fn the_guard_starts_the_agent_only_in_a_safe_workdir_with_this_runs_agent() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("work dir 'q' $x");
        std::fs::create_dir_all(root.join("bin")).unwrap();
        std::fs::create_dir_all(root.join("runs")).unwrap();
        let agent = root.join("bin/worker-agent");
        let node = crate::cluster::inventory::Node {
            workdir: root.display().to_string(),
            ..crate::cluster::inventory::Node::local()
        };
        let put = |text: &str| {
            std::fs::write(&agent, text).unwrap();
            std::fs::set_permissions(&agent, std::fs::Permissions::from_mode(0o755)).unwrap();
        };
        let mode = |p: &Path, m: u32| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap()
        };
        let run = |sha: &str| {
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!("{}echo started", guard(&node, sha)))
                .output()
                .unwrap();
            let started = String::from_utf8_lossy(&out.stdout).contains("started");
            (out.status.code(), started)
        };
        let refused = (Some(NOT_READY), false);

        // The agent tells its own sha256: it must be this run's.
        put("#!/bin/sh\n[ \"$1\" = self-sha256 ] && echo abc\n");
        assert_eq!(run("abc"), (Some(0), true));
        assert_eq!(run("abd"), refused);
        // One too old to know `self-sha256` is hashed by the node's tools.
        let old = "#!/bin/sh\nexit 2\n";
        put(old);
        assert_eq!(run(&sha256_hex(old.as_bytes())), (Some(0), true));
        assert_eq!(run("abc"), refused);
        // Unsafe or incomplete workdirs, and no agent, start nothing.
        put("#!/bin/sh\n[ \"$1\" = self-sha256 ] && echo abc\n");
        mode(&root, 0o777);
        assert_eq!(run("abc"), refused, "a workdir others can write");
        mode(&root, 0o755);
        mode(&root.join("bin"), 0o775);
        assert_eq!(run("abc"), refused, "a bin/ its group can write");
        mode(&root.join("bin"), 0o755);
        std::fs::remove_dir(root.join("runs")).unwrap();
        assert_eq!(run("abc"), refused, "no runs/");
        std::fs::create_dir(root.join("runs")).unwrap();
        assert_eq!(run("abc"), (Some(0), true));
        std::fs::remove_file(&agent).unwrap();
        assert_eq!(run("abc"), refused, "no agent");
    }

    #[test]
    fn dynamic_binaries_have_an_interpreter() {
        let sh = std::fs::read("/bin/sh").unwrap();
        let info = elf_info(&sh).unwrap();
        assert!(!info.is_static);
    }
}
