//! The runtime side of each configured server: in-flight and connection counters, the
//! per-server connection limit, the circuit breaker shared by the monitor and the sessions,
//! and pre-resolved metric handles.

use crate::metrics::{BackendMetrics, Metrics};
use router::choice::{BreakerPolicy, BreakerState, CircuitBreaker};
use router::config::{Config, ServerConfig};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The runtime side of one configured server: counters the sessions and pools update, and its
/// circuit breaker. The counters survive reloads while the server's name and address stay.
pub struct Backend {
    /// Position in `config.servers` (and in [`Topology::servers`]) of the config it belongs to.
    pub index: usize,
    pub config: ServerConfig,
    shared: Arc<BackendShared>,
}

/// The part of a backend that outlives config reloads.
struct BackendShared {
    /// Statements running on this backend now (sessions hold an [`InFlight`] guard).
    in_flight: AtomicUsize,
    /// Pooled backend connections (idle + in use + being opened): one per live [`Slot`].
    connections: AtomicUsize,
    /// `proxy.pool.max_per_server`, exact under concurrency.
    limit: Limit,
    metrics: BackendMetrics,
    breaker: Mutex<CircuitBreaker>,
    /// Mirror of "breaker open" for lock-free reads on the hot path.
    breaker_open: AtomicBool,
    /// Bumped when a health check finds the server hung (no answer in time): statements
    /// waiting on it give up their connection instead of waiting for a server that may never
    /// answer.
    hung: tokio::sync::watch::Sender<u64>,
    /// Set from the check that found the server hung until the next check it answers: a
    /// statement about to wait on it stops at once instead of waiting for the next bump.
    hung_now: AtomicBool,
    /// Failed health checks so far: a connection opened before the latest may belong to a
    /// server process that is gone (killed and restarted), see [`Backend::outages`].
    outages: AtomicU64,
    /// The server's `@@version` as the monitor last read it.
    version: Mutex<Option<Arc<str>>>,
}

impl Backend {
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// Pre-resolved metric handles for this backend.
    pub fn metrics(&self) -> &BackendMetrics {
        &self.shared.metrics
    }

    /// Marks a statement as running here until the guard drops.
    pub fn begin(&self) -> InFlight {
        self.shared.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.shared.clone())
    }

    pub fn in_flight(&self) -> usize {
        self.shared.in_flight.load(Ordering::Relaxed)
    }

    /// The server's `@@version` as the monitor last read it.
    pub fn version(&self) -> Option<Arc<str>> {
        self.shared.version.lock().ok().and_then(|v| v.clone())
    }

    /// The monitor read `@@version` (on each new monitor connection).
    pub fn set_version(&self, version: &str) {
        if let Ok(mut v) = self.shared.version.lock() {
            if v.as_deref() != Some(version) {
                *v = Some(Arc::from(version));
            }
        }
    }

    /// Changes when the health monitor finds the server hung; see [`Backend::mark_hung`].
    pub fn hung_signal(&self) -> tokio::sync::watch::Receiver<u64> {
        self.shared.hung.subscribe()
    }

    /// The health monitor got no answer in time: a hung host must not hold sessions, so
    /// statements in flight on it stop waiting (a read that has sent nothing to its client is
    /// re-run elsewhere). A slow statement on a server that answers its checks is untouched.
    /// Returns whether the server was answering until now (for a log line per hang).
    pub fn mark_hung(&self) -> bool {
        // The flag first: a waiter that subscribed before this either sees the flag or
        // the bump (see `is_hung`).
        let was = self.shared.hung_now.swap(true, Ordering::SeqCst);
        self.shared.hung.send_modify(|g| *g = g.wrapping_add(1));
        !was
    }

    /// The server answered a health check again. Returns whether it had been hung.
    pub fn mark_answering(&self) -> bool {
        self.shared.hung_now.swap(false, Ordering::SeqCst)
    }

    /// Whether the last health check found the server hung. Subscribe to
    /// [`Backend::hung_signal`] before asking, so that a hang found in between is not missed.
    pub fn is_hung(&self) -> bool {
        self.shared.hung_now.load(Ordering::SeqCst)
    }

    /// The monitor found the server down or hung (any failed check).
    pub fn note_outage(&self) {
        self.shared.outages.fetch_add(1, Ordering::Release);
    }

    /// How many checks have failed so far. A connection records it when opened: one opened
    /// before a later failure may have died with the server process (a restart closes every
    /// connection), and must be looked at before a statement is trusted to it.
    pub fn outages(&self) -> u64 {
        self.shared.outages.load(Ordering::Acquire)
    }

    /// Pooled connections to this backend (idle + in use + being opened).
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::Relaxed)
    }

    /// Brings the connection limit to `max` (`proxy.pool.max_per_server` of the snapshot the
    /// caller uses). One atomic load when unchanged; a reload that raises the limit wakes that
    /// many waiters, one that lowers it takes permits back as connections close.
    pub fn set_pool_limit(&self, max: usize) {
        let l = &self.shared.limit;
        if l.max.load(Ordering::Acquire) == max {
            return;
        }
        let _guard = match l.resize.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let old = l.max.load(Ordering::Acquire);
        if old == max {
            return;
        }
        if max > old {
            let mut more = max - old;
            // Cancel debt first: those permits are still out and will come back.
            let _ = l
                .debt
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |d| {
                    let paid = d.min(more);
                    more -= paid;
                    Some(d - paid)
                });
            l.sem.add_permits(more);
        } else {
            let fewer = old - max;
            let forgotten = l.sem.forget_permits(fewer);
            l.debt.fetch_add(fewer - forgotten, Ordering::AcqRel);
        }
        l.max.store(max, Ordering::Release);
    }

    /// A slot for one more connection now, if the server is under its limit. Never takes a
    /// permit a queued waiter is owed: the semaphore hands returned permits to its waiters
    /// first, in arrival order.
    pub fn try_slot(&self) -> Option<Slot> {
        let permit = self.shared.limit.sem.clone().try_acquire_owned().ok()?;
        Some(Slot::new(&self.shared, permit))
    }

    /// Waits, first come first served, for a slot to come free (a connection to this server
    /// closes). `None` only if the limit were closed, which the proxy never does.
    pub async fn slot(&self) -> Option<Slot> {
        let permit = self.shared.limit.sem.clone().acquire_owned().await.ok()?;
        Some(Slot::new(&self.shared, permit))
    }

    /// A connect or I/O failure on this backend (from the monitor or a session), counted
    /// against `policy` (from `routing.breaker_*`); see [`super::Context::report_failure`].
    pub fn report_failure(&self, policy: &BreakerPolicy) {
        let now = now_ms();
        let open = match self.shared.breaker.lock() {
            Ok(mut b) => {
                b.record_failure(now, policy);
                b.state(now) != BreakerState::Closed
            }
            Err(_) => return,
        };
        self.set_open(open);
    }

    /// A successful connect or round trip: closes the breaker.
    pub fn report_success(&self) {
        if let Ok(mut b) = self.shared.breaker.lock() {
            b.record_success();
        }
        if self.shared.breaker_open.load(Ordering::Relaxed) {
            self.set_open(false);
        }
    }

    /// Whether requests may go to this backend now: closed, or half-open after the cool-down
    /// (a trial; its result closes or re-opens the breaker).
    pub fn breaker_allows(&self) -> bool {
        if !self.shared.breaker_open.load(Ordering::Relaxed) {
            return true;
        }
        self.breaker().allows(now_ms())
    }

    /// A copy of the breaker (for the chooser's snapshot).
    pub fn breaker(&self) -> CircuitBreaker {
        match self.shared.breaker.lock() {
            Ok(b) => *b,
            Err(_) => CircuitBreaker::new(),
        }
    }

    /// The breaker as the replica chooser needs it, without a lock while it is closed (the
    /// common case: the chooser only asks whether it lets traffic through, and a closed
    /// breaker always does, whatever failures it has counted).
    pub fn breaker_for_choice(&self) -> CircuitBreaker {
        if self.shared.breaker_open.load(Ordering::Relaxed) {
            self.breaker()
        } else {
            CircuitBreaker::new()
        }
    }

    /// `closed`, `open` or `half_open`, for `/servers`.
    pub fn breaker_state(&self) -> &'static str {
        match self.breaker().state(now_ms()) {
            BreakerState::Closed => "closed",
            BreakerState::Open { .. } => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }

    fn set_open(&self, open: bool) {
        self.shared.breaker_open.store(open, Ordering::Relaxed);
        self.shared.metrics.breaker_open.set(i64::from(open));
    }
}

/// Milliseconds on a process-wide monotonic clock (what the router's breakers expect).
pub fn now_ms() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// `proxy.pool.max_per_server` as permits: one per open pooled connection, held by its
/// [`Slot`], so the limit holds however many sessions open connections at once.
struct Limit {
    sem: Arc<Semaphore>,
    /// The limit the permits add up to (0 until the first checkout applies the config).
    max: AtomicUsize,
    /// Permits to drop instead of returning as connections close: a reload lowered the limit
    /// below the number open.
    debt: AtomicUsize,
    /// Serialises resizes (reloads), never taken by a checkout whose limit is unchanged.
    resize: Mutex<()>,
}

impl Limit {
    fn new() -> Limit {
        Limit {
            sem: Arc::new(Semaphore::new(0)),
            max: AtomicUsize::new(0),
            debt: AtomicUsize::new(0),
            resize: Mutex::new(()),
        }
    }
}

/// The right to one open connection to a server. A pooled connection carries its slot for its
/// whole life; dropping it (with the connection, wherever that happens) gives the place to
/// the next session waiting for this server.
pub struct Slot {
    permit: Option<OwnedSemaphorePermit>,
    shared: Arc<BackendShared>,
}

impl Slot {
    fn new(shared: &Arc<BackendShared>, permit: OwnedSemaphorePermit) -> Slot {
        shared.connections.fetch_add(1, Ordering::Relaxed);
        Slot {
            permit: Some(permit),
            shared: shared.clone(),
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let s = &self.shared;
        let _ = s
            .connections
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                Some(n.saturating_sub(1))
            });
        let in_debt = s
            .limit
            .debt
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |d| d.checked_sub(1))
            .is_ok();
        if let Some(p) = self.permit.take() {
            if in_debt {
                p.forget();
            }
        }
    }
}

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Slot")
    }
}

/// Decrements the backend's in-flight count when dropped.
pub struct InFlight(Arc<BackendShared>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Same server (name and address): its counters and breaker carry over a reload.
pub(super) fn same_server(a: &ServerConfig, b: &ServerConfig) -> bool {
    a.name == b.name && a.host == b.host && a.port == b.port
}

/// Builds the backend list for `config`, keeping the counters and breaker of servers whose
/// name and address are unchanged.
pub(super) fn build_backends(
    config: &Config,
    old: &[Arc<Backend>],
    metrics: &Metrics,
) -> Vec<Arc<Backend>> {
    config
        .servers
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let shared = match old.iter().find(|b| same_server(&b.config, s)) {
                Some(b) => b.shared.clone(),
                None => Arc::new(BackendShared {
                    in_flight: AtomicUsize::new(0),
                    connections: AtomicUsize::new(0),
                    limit: Limit::new(),
                    metrics: metrics.backend(&s.name),
                    breaker: Mutex::new(CircuitBreaker::new()),
                    breaker_open: AtomicBool::new(false),
                    hung: tokio::sync::watch::Sender::new(0),
                    hung_now: AtomicBool::new(false),
                    outages: AtomicU64::new(0),
                    version: Mutex::new(None),
                }),
            };
            Arc::new(Backend {
                index: i,
                config: s.clone(),
                shared,
            })
        })
        .collect()
}
