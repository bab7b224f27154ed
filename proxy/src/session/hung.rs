//! A hung server must not hold sessions (DESIGN §3.1): once its health check gets no answer
//! within `monitor.timeout_ms` ([`Backend::mark_hung`]), every wait on it ends, its connections
//! are abandoned (closed without a word: the server would not read one), and a read that has
//! sent nothing to its client yet runs again elsewhere. Whether a server is hung is the
//! monitor's call alone: a slow statement on a server that answers its checks runs on.

use crate::context::Backend;
use crate::metrics::retried;
use crate::protocol::relay::RelayError;
use std::future::Future;
use std::task::Poll;

/// Resolves when the monitor finds `backend` hung, at once if its last check already did.
/// Subscribes when called (not when first polled), so a hang found between this call and the
/// wait is not missed.
pub(super) fn found_hung(backend: &Backend) -> impl Future<Output = ()> + Send + 'static {
    let mut signal = backend.hung_signal();
    let already = backend.is_hung();
    async move {
        if already {
            return;
        }
        if signal.changed().await.is_err() {
            // The backend is gone from the configuration: only its own I/O can end the wait.
            std::future::pending::<()>().await;
        }
    }
}

/// Runs `work` (talking to `backend`) unless the monitor finds `backend` hung first: then
/// `None`, and whatever connection `work` was using is out of step and must be discarded.
///
/// Work that completes without waiting (most of it: a pooled connection already in the
/// session's state, a statement already prepared there) does not subscribe to the monitor's
/// signal: a subscription registers with a channel every session shares. Once `work` waits it
/// does, and `found_hung` looks at the flag again after subscribing, so a hang found in
/// between is not missed.
pub(super) async fn unless_hung<F: Future>(backend: &Backend, work: F) -> Option<F::Output> {
    // A server already known hung is not even asked.
    if backend.is_hung() {
        return None;
    }
    let mut work = std::pin::pin!(work);
    if let Poll::Ready(r) = std::future::poll_fn(|cx| Poll::Ready(work.as_mut().poll(cx))).await {
        return Some(r);
    }
    let hung = found_hung(backend);
    tokio::select! {
        biased;
        _ = hung => None,
        r = work => Some(r),
    }
}

/// `rwsplit_reads_retried_total`'s reason for a read whose connection could not be had or
/// made ready (connect, state replay, lazy prepare).
pub(super) fn setup_retry_reason(e: &crate::backend::Error) -> &'static str {
    match e {
        crate::backend::Error::Relay(RelayError::Hung) => retried::SERVER_HUNG,
        _ => retried::CONNECT_FAILED,
    }
}

/// `rwsplit_reads_retried_total`'s reason for a read whose statement failed on its server.
pub(super) fn relay_retry_reason(e: &RelayError) -> &'static str {
    match e {
        RelayError::Hung => retried::SERVER_HUNG,
        _ => retried::CONNECTION_LOST,
    }
}

impl super::Session {
    /// Closes the session's connection to a hung `backend`, if it holds one, without a word to
    /// the server and without giving it back to the pool: whatever it was doing there is out
    /// of step. Pinned state on it is lost and the client hears of it (see `discard`).
    pub(super) fn abandon(&mut self, backend: &Backend) {
        if let Some(i) = self
            .held
            .iter()
            .position(|h| h.backend.name() == backend.name())
        {
            self.discard(i);
        }
    }

    /// Counts and logs a read about to run again on another server.
    pub(super) fn note_retry(&self, backend: &Backend, reason: &'static str) {
        self.ctx.metrics.read_retried(reason);
        tracing::info!(
            backend = backend.name(),
            reason,
            "read re-run on another server: it had sent nothing to the client"
        );
    }
}
