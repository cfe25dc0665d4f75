//! The bound on every remote step once connected (`--step-timeout`): a
//! status probe, the agent install, a sync's or fetch's commands and
//! streams, split's core count, a collect sample. A node that hits it is
//! reported as timed out and its command abandoned, never waited for: one
//! hung `df` on a stale NFS mount must not hold up the others.
//!
//! Commands run to completion ([`crate::transport::NodeSession::run`]) get
//! the bound as a whole; streams ([`IdleBound`]) get it as the longest
//! silence, so a big transfer that keeps moving is never cut.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// The default of `--step-timeout`.
pub const DEFAULT_STEP_TIMEOUT: Duration = Duration::from_secs(60);

static STEP_TIMEOUT_MS: AtomicU64 = AtomicU64::new(DEFAULT_STEP_TIMEOUT.as_millis() as u64);

/// Set once, from `--step-timeout`, before any node is contacted.
pub fn set_step_timeout(d: Duration) {
    STEP_TIMEOUT_MS.store(d.as_millis().max(1) as u64, Ordering::Relaxed);
}

pub fn step_timeout() -> Duration {
    Duration::from_millis(STEP_TIMEOUT_MS.load(Ordering::Relaxed))
}

/// A remote step ran past the bound.
#[derive(Debug, Clone, Copy)]
pub struct StepTimedOut {
    pub after: Duration,
}

impl std::fmt::Display for StepTimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "no answer from the node within {} (--step-timeout)",
            crate::units::Dur(self.after)
        )
    }
}

impl std::error::Error for StepTimedOut {}

impl StepTimedOut {
    /// The step timeout somewhere in `err`'s causes (also inside an I/O error).
    pub fn find(err: &anyhow::Error) -> Option<StepTimedOut> {
        err.chain().find_map(|c| {
            c.downcast_ref::<StepTimedOut>().copied().or_else(|| {
                c.downcast_ref::<std::io::Error>()
                    .and_then(|io| io.get_ref())
                    .and_then(|inner| inner.downcast_ref::<StepTimedOut>())
                    .copied()
            })
        })
    }

    fn io(after: Duration) -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::TimedOut, StepTimedOut { after })
    }
}

/// A stream that fails with [`StepTimedOut`] after `bound` without progress.
pub struct IdleBound<S> {
    inner: Pin<Box<S>>,
    bound: Duration,
    sleep: Pin<Box<Sleep>>,
}

impl<S> IdleBound<S> {
    pub fn new(inner: S) -> IdleBound<S> {
        let bound = step_timeout();
        IdleBound {
            inner: Box::pin(inner),
            bound,
            sleep: Box::pin(tokio::time::sleep(bound)),
        }
    }

    /// Progress or not, as `result` says; the bound restarts on progress.
    fn watch<T>(&mut self, cx: &mut Context<'_>, poll: Poll<T>) -> Poll<std::io::Result<T>> {
        match poll {
            Poll::Ready(v) => {
                self.sleep.as_mut().reset(Instant::now() + self.bound);
                Poll::Ready(Ok(v))
            }
            Poll::Pending => match self.sleep.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(StepTimedOut::io(self.bound))),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

fn flatten<T>(p: Poll<std::io::Result<std::io::Result<T>>>) -> Poll<std::io::Result<T>> {
    p.map(|r| r.and_then(|r| r))
}

impl<S: AsyncRead> AsyncRead for IdleBound<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let p = self.inner.as_mut().poll_read(cx, buf);
        flatten(self.watch(cx, p))
    }
}

impl<S: AsyncWrite> AsyncWrite for IdleBound<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let p = self.inner.as_mut().poll_write(cx, buf);
        flatten(self.watch(cx, p))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let p = self.inner.as_mut().poll_flush(cx);
        flatten(self.watch(cx, p))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let p = self.inner.as_mut().poll_shutdown(cx);
        flatten(self.watch(cx, p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test(start_paused = true)]
    async fn a_silent_stream_times_out_and_a_moving_one_does_not() {
        set_step_timeout(Duration::from_secs(5));
        let (mut tx, rx) = tokio::io::duplex(64);
        let mut r = IdleBound::new(rx);
        let writer = tokio::spawn(async move {
            for _ in 0..4 {
                tokio::time::sleep(Duration::from_secs(3)).await;
                tokio::io::AsyncWriteExt::write_all(&mut tx, b"x")
                    .await
                    .unwrap();
            }
            tokio::time::sleep(Duration::from_secs(60)).await;
        });
        let mut buf = [0u8; 1];
        for _ in 0..4 {
            r.read_exact(&mut buf).await.unwrap();
        }
        let err = r.read(&mut buf).await.unwrap_err();
        let err = anyhow::Error::new(err);
        assert_eq!(
            StepTimedOut::find(&err).unwrap().after,
            Duration::from_secs(5)
        );
        writer.abort();
        set_step_timeout(DEFAULT_STEP_TIMEOUT);
    }
}
