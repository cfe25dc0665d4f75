//! SSH through the system OpenSSH client (`openssh` crate, native mux): so
//! `~/.ssh/config`, ProxyJump, ssh-agent and known_hosts work as with `ssh`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use openssh::{ControlPersist, KnownHosts, SessionBuilder, Stdio};
use tokio::sync::OwnedSemaphorePermit;

use super::{ChildImpl, ConnectError, RemoteProcess};
use crate::inventory::{HostKeyChecking, Node};

/// A fresh short directory for control sockets: the socket path must stay
/// under 108 bytes, so never under a deep `$TMPDIR` or the project tree.
pub fn control_dir() -> Result<tempfile::TempDir> {
    let base = PathBuf::from(format!("/tmp/distctl-{}", unsafe { libc::geteuid() }));
    std::fs::create_dir_all(&base).with_context(|| format!("creating {}", base.display()))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o700))?;
    tempfile::Builder::new()
        .prefix("c")
        .tempdir_in(&base)
        .context("creating the ssh control directory")
}

/// The generated `-F` config for one node: the node's own `ssh_options`
/// first (first value wins in ssh_config), then the user's and the system's
/// config as plain `ssh` would read them, then distctl's defaults, which apply
/// only where nothing above set the option.
fn config_text(node: &Node, server_alive: Duration) -> String {
    let mut s = format!("# distctl: generated for node {:?}\n", node.name);
    for opt in &node.ssh_options {
        let _ = writeln!(s, "{opt}");
    }
    if node.host_key_checking == HostKeyChecking::Off && node.known_hosts_file.is_none() {
        s.push_str("UserKnownHostsFile /dev/null\nLogLevel ERROR\n");
    }
    s.push_str("Include ~/.ssh/config\nInclude /etc/ssh/ssh_config\n");
    s.push_str("Match all\n");
    // Dead or frozen nodes must end the master instead of hanging it forever.
    let _ = writeln!(s, "ServerAliveInterval {}", server_alive.as_secs().max(1));
    s.push_str("ServerAliveCountMax 2\n");
    // aes128-gcm is the fastest cipher on hosts with AES-NI (~1.7x chacha20 here).
    s.push_str("Ciphers ^aes128-gcm@openssh.com\n");
    s
}

pub async fn connect(
    control_dir: &Path,
    index: usize,
    node: &Node,
    server_alive: Duration,
) -> Result<openssh::Session, ConnectError> {
    let fail = |reason: String| ConnectError {
        node: node.name.clone(),
        reason,
    };
    let config = control_dir.join(format!("{index}.conf"));
    std::fs::write(&config, config_text(node, server_alive))
        .map_err(|e| fail(format!("cannot write ssh config: {e}")))?;

    let mut b = SessionBuilder::default();
    b.control_directory(control_dir)
        .config_file(&config)
        .connect_timeout(node.connect_timeout)
        .control_persist(ControlPersist::IdleFor(30.try_into().expect("non-zero")))
        .known_hosts_check(match node.host_key_checking {
            HostKeyChecking::Strict => KnownHosts::Strict,
            HostKeyChecking::AcceptNew => KnownHosts::Add,
            HostKeyChecking::Off => KnownHosts::Accept,
        });
    if let Some(port) = node.port {
        b.port(port);
    }
    if let Some(user) = &node.user {
        b.user(user.clone());
    }
    if let Some(key) = &node.identity_file {
        b.keyfile(key);
    }
    if let Some(kh) = &node.known_hosts_file {
        b.user_known_hosts_file(kh);
    }
    // Backstop: ConnectTimeout bounds the TCP connect and banner; a node that
    // stalls later in the handshake must not hold the command up forever.
    let limit = node.connect_timeout * 2 + Duration::from_secs(5);
    match tokio::time::timeout(limit, b.connect_mux(&node.host)).await {
        Ok(Ok(session)) => Ok(session),
        Ok(Err(e)) => Err(fail(explain(&e))),
        Err(_) => Err(fail(format!(
            "connection timed out (no SSH handshake within {}s)",
            limit.as_secs()
        ))),
    }
}

/// Turn what ssh printed into one line a person can act on.
fn explain(err: &openssh::Error) -> String {
    let text = match err {
        openssh::Error::Connect(io) | openssh::Error::Master(io) => io.to_string(),
        other => other.to_string(),
    };
    classify(&text)
}

pub(crate) fn classify(text: &str) -> String {
    let has = |s: &str| text.contains(s);
    if has("REMOTE HOST IDENTIFICATION HAS CHANGED") || has("Host key for") && has("has changed") {
        return "host key has CHANGED (refused under strict checking; if the node was rebuilt, remove its old key with ssh-keygen -R)".into();
    }
    if has("No ED25519 host key is known")
        || has("No RSA host key is known")
        || has("No ECDSA host key is known")
        || (has("Host key verification failed") && !has("CHANGED"))
    {
        return "host key unknown (refused under strict checking; add it to known_hosts or set host_key_checking = \"accept-new\")".into();
    }
    if has("Permission denied") {
        return "authentication failed (permission denied; check user and identity_file, ssh-agent)".into();
    }
    if has("Connection refused") {
        return "connection refused (is sshd running on that port?)".into();
    }
    if has("timed out") || has("Connection timeout") {
        return "connection timed out".into();
    }
    if has("Could not resolve hostname") {
        return "cannot resolve host name".into();
    }
    if has("No route to host") || has("Network is unreachable") {
        return "network unreachable".into();
    }
    if has("Connection closed") || has("Connection reset") || has("kex_exchange_identification") {
        return "connection closed by the node during the handshake".into();
    }
    let last = text
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty() && !l.starts_with("Warning: Permanently added"))
        .unwrap_or("ssh failed without a message");
    last.strip_prefix("ssh: ").unwrap_or(last).to_string()
}

pub async fn spawn(
    session: &Arc<openssh::Session>,
    cmdline: &str,
    permit: OwnedSemaphorePermit,
) -> Result<RemoteProcess> {
    let mut cmd = session.clone().arc_raw_command(cmdline);
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .await
        .context("cannot open a channel to the node")?;
    let stdin = child.stdin().take().map(|s| Box::pin(s) as super::BoxWrite);
    let stdout = Box::pin(child.stdout().take().context("no stdout pipe")?);
    let stderr = Box::pin(child.stderr().take().context("no stderr pipe")?);
    Ok(RemoteProcess {
        stdin,
        stdout,
        stderr,
        child: ChildImpl::Ssh(child),
        _channel: permit,
    })
}

#[cfg(test)]
mod tests {
    use super::classify;

    #[test]
    fn ssh_errors_become_one_line() {
        assert!(
            classify("ssh: connect to host 127.0.0.1 port 1: Connection refused")
                .starts_with("connection refused")
        );
        assert!(classify("@@@\nWARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!\n@@@\nHost key verification failed.").starts_with("host key has CHANGED"));
        assert!(classify("No ED25519 host key is known for [127.0.0.1]:2222 and you have requested strict checking.\r\nHost key verification failed.").starts_with("host key unknown"));
        assert!(classify("root@127.0.0.1: Permission denied (publickey).")
            .starts_with("authentication failed"));
    }
}
