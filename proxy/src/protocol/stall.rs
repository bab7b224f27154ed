//! A write that makes no progress for too long fails, as a server's `net_write_timeout` does:
//! a client that stops reading its result must not hold the session's backend connection (and
//! the server's locks) forever.
//!
//! The timer is armed only when a write would block, so the common case (the socket takes the
//! bytes at once) costs one branch and no timer.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

/// Tracks one stream's stalled writes.
#[derive(Default)]
pub struct WriteStall {
    limit: Option<Duration>,
    /// Allocated on the first stall, then reset in place.
    timer: Option<Pin<Box<Sleep>>>,
    armed: bool,
}

impl WriteStall {
    /// `None`: writes may wait forever.
    pub fn new(limit: Option<Duration>) -> WriteStall {
        WriteStall {
            limit,
            timer: None,
            armed: false,
        }
    }

    /// Passes the inner stream's poll result through, failing with `TimedOut` once it has been
    /// pending for longer than the limit without any progress in between.
    pub fn check<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<std::io::Result<T>>,
    ) -> Poll<std::io::Result<T>> {
        let Poll::Pending = polled else {
            self.armed = false;
            return polled;
        };
        let Some(limit) = self.limit else {
            return Poll::Pending;
        };
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        if !self.armed {
            timer.as_mut().reset(Instant::now() + limit);
            self.armed = true;
        }
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.armed = false;
                Poll::Ready(Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!(
                        "the client read nothing for {} ms (proxy.client_write_timeout_ms)",
                        limit.as_millis()
                    ),
                )))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use tokio::io::AsyncWriteExt;

    /// A writer that never takes a byte, like a client that stopped reading.
    struct Stuck(WriteStall);

    impl tokio::io::AsyncWrite for Stuck {
        fn poll_write(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            _: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            self.get_mut().0.check(cx, Poll::Pending)
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn a_stalled_write_fails_after_the_limit_and_not_before() {
        let limit = Duration::from_millis(200);
        let mut w = Stuck(WriteStall::new(Some(limit)));
        let started = Instant::now();
        let e = w.write_all(b"rows").await.expect_err("times out");
        assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= limit, "{:?}", started.elapsed());
        let mut unlimited = Stuck(WriteStall::new(None));
        let r = tokio::time::timeout(limit * 2, unlimited.write_all(b"x")).await;
        assert!(r.is_err(), "without a limit the write waits");
    }
}
