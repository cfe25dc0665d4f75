//! The built-in `local` node: the same command lines, run by `sh -c` in the
//! home directory, as sshd would run them, without a connection.

use std::process::Stdio;

use anyhow::{Context, Result};
use tokio::sync::OwnedSemaphorePermit;

use super::{ChildImpl, RemoteProcess};

pub fn spawn(cmdline: &str, permit: OwnedSemaphorePermit) -> Result<RemoteProcess> {
    let home = std::env::var_os("HOME")
        .filter(|h| std::path::Path::new(h).is_dir())
        .unwrap_or_else(|| "/".into());
    let mut child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(cmdline)
        .current_dir(&home)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .inspect_err(|e| super::note_local(e))
        .context("cannot start sh")?;
    let stdin = child
        .stdin
        .take()
        .map(|s| super::channel_in(s.into_owned_fd()))
        .transpose()?;
    let stdout = child
        .stdout
        .take()
        .map(|s| super::channel_out(s.into_owned_fd()))
        .transpose()?;
    let stderr = Box::pin(child.stderr.take().context("no stderr pipe")?);
    Ok(RemoteProcess {
        stdin,
        stdout,
        stderr,
        child: ChildImpl::Local(child),
        _channel: permit,
    })
}
