//! The one shutdown path: SIGINT, SIGTERM and SIGHUP become one event that
//! every command waits on the same way. The first signal asks the command to
//! stop (it stops remote work, closes its ssh masters, keeps what is done and
//! says so); a second one exits at once with exit 3, as most tools do.

use std::fmt;
use std::sync::OnceLock;

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

use crate::exit::Exit;

/// Which signal asked distctl to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    Interrupt,
    Terminate,
    Hangup,
}

impl Stop {
    pub fn signal_name(self) -> &'static str {
        match self {
            Stop::Interrupt => "SIGINT",
            Stop::Terminate => "SIGTERM",
            Stop::Hangup => "SIGHUP",
        }
    }
}

impl fmt::Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "interrupted ({})", self.signal_name())
    }
}

static STOP: OnceLock<watch::Receiver<Option<Stop>>> = OnceLock::new();

/// Start listening for the three signals. Called once, first thing, inside
/// the runtime; later calls return at once.
pub fn install() -> std::io::Result<()> {
    if STOP.get().is_some() {
        return Ok(());
    }
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut hup = signal(SignalKind::hangup())?;
    let (tx, rx) = watch::channel(None);
    if STOP.set(rx).is_err() {
        return Ok(());
    }
    tokio::spawn(async move {
        let mut seen = 0;
        loop {
            let got = tokio::select! {
                _ = int.recv() => Stop::Interrupt,
                _ = term.recv() => Stop::Terminate,
                _ = hup.recv() => Stop::Hangup,
            };
            seen += 1;
            if seen == 1 {
                let _ = tx.send(Some(got));
            } else {
                eprintln!(
                    "distctl: {} again: exiting without waiting for the nodes",
                    got.signal_name()
                );
                // No destructor runs past here: close the masters first.
                crate::transport::exit_all_masters();
                std::process::exit(Exit::Failed.code());
            }
        }
    });
    Ok(())
}

/// Resolves when the first signal arrives (at once if it already has);
/// never, if [`install`] was not called. Cancel-safe: it can be polled in a
/// `select!` loop again and again.
pub async fn requested() -> Stop {
    let Some(rx) = STOP.get() else {
        return std::future::pending().await;
    };
    let mut rx = rx.clone();
    let got = rx.wait_for(Option::is_some).await.map(|s| *s);
    match got {
        Ok(Some(stop)) => stop,
        _ => std::future::pending().await,
    }
}

/// The error a command ends with when a signal stopped it (exit 3).
pub fn error(stop: Stop) -> anyhow::Error {
    anyhow::anyhow!("{stop}")
}
