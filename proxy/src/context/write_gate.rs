//! The gate writes pass on their way to the primary. Open, it costs two atomic operations per
//! write. A switchover closes it: new writes wait (they are not refused) while the old primary
//! is demoted and the new one promoted, and the switchover knows when the writes already past
//! the gate have finished, so none of them reaches a server that has just become read-only.
//!
//! One per proxy, shared through [`Context::extension`](super::Context::extension).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Closed while a switchover moves the writer; counts the writes past it.
pub struct WriteGate {
    closed: AtomicBool,
    /// Writes that passed the gate and have not finished.
    active: AtomicUsize,
    /// `true` while closed: waiting writes watch it.
    state: watch::Sender<bool>,
    /// Why it is closed (the target's name), for the error of a write that waited too long.
    reason: Mutex<String>,
}

impl Default for WriteGate {
    fn default() -> Self {
        WriteGate {
            closed: AtomicBool::new(false),
            active: AtomicUsize::new(0),
            state: watch::channel(false).0,
            reason: Mutex::new(String::new()),
        }
    }
}

/// A write past the gate; dropping it marks the write finished.
pub struct WritePermit(Arc<WriteGate>);

impl Drop for WritePermit {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::SeqCst);
    }
}

impl WriteGate {
    /// Lets a write through, waiting up to `wait` while the gate is closed. `pinned` writes
    /// (their session's transaction already lives on the old primary) pass even then: holding
    /// them back would hold their locks too, and they can only finish where they started.
    /// `Err` carries why the gate is closed when the wait ran out.
    /// `wait` is asked only when the write has to wait (it reads the config).
    pub async fn enter(
        self: &Arc<Self>,
        pinned: bool,
        wait: impl FnOnce() -> Duration,
    ) -> Result<WritePermit, String> {
        let mut wait = Some(wait);
        let mut deadline = None;
        loop {
            // SeqCst on both sides: either the switchover sees this write in `active`, or
            // this write sees the gate closed.
            self.active.fetch_add(1, Ordering::SeqCst);
            if pinned || !self.closed.load(Ordering::SeqCst) {
                return Ok(WritePermit(self.clone()));
            }
            self.active.fetch_sub(1, Ordering::SeqCst);
            let deadline = *deadline.get_or_insert_with(|| {
                tokio::time::Instant::now() + wait.take().map(|w| w()).unwrap_or_default()
            });
            let mut rx = self.state.subscribe();
            let opened = tokio::time::timeout_at(deadline, rx.wait_for(|closed| !*closed)).await;
            if !matches!(opened, Ok(Ok(_))) {
                return Err(self.reason());
            }
        }
    }

    /// Whether writes are held now.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Holds new writes from now on (`reason` says why, for writes that wait too long).
    pub fn close(&self, reason: &str) {
        if let Ok(mut r) = self.reason.lock() {
            *r = reason.to_string();
        }
        self.closed.store(true, Ordering::SeqCst);
        self.state.send_replace(true);
    }

    /// Lets the waiting writes go (to whichever server is the writer by then).
    pub fn open(&self) {
        self.closed.store(false, Ordering::SeqCst);
        self.state.send_replace(false);
    }

    /// Writes past the gate that have not finished.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::SeqCst)
    }

    /// Waits until every write past the gate has finished, up to `deadline`; whether they did.
    pub async fn drained(&self, deadline: Instant) -> bool {
        loop {
            if self.active() == 0 {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    fn reason(&self) -> String {
        self.reason.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[tokio::test]
    async fn open_gate_counts_writes_and_closed_gate_holds_them_until_opened() {
        let gate = Arc::new(WriteGate::default());
        let p = gate.enter(false, || Duration::ZERO).await.expect("open");
        assert_eq!(gate.active(), 1);
        gate.close("a switchover to 'r1'");
        assert!(!gate.drained(Instant::now()).await, "one write still runs");
        drop(p);
        assert!(gate.drained(Instant::now()).await);
        let waiting = {
            let gate = gate.clone();
            tokio::spawn(async move { gate.enter(false, || Duration::from_secs(5)).await.is_ok() })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(gate.active(), 0, "a held write is not past the gate");
        let pinned = gate
            .enter(true, || Duration::ZERO)
            .await
            .expect("pinned passes");
        drop(pinned);
        gate.open();
        assert!(waiting.await.expect("task"), "released when opened");
    }

    #[tokio::test]
    async fn a_write_held_too_long_is_told_why() {
        let gate = Arc::new(WriteGate::default());
        gate.close("a switchover to 'r1'");
        let err = gate
            .enter(false, || Duration::from_millis(10))
            .await
            .err()
            .expect("refused");
        assert_eq!(err, "a switchover to 'r1'");
        assert_eq!(gate.active(), 0);
    }
}
