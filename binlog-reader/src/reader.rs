//! The library entry point a proxy embeds: [`LagReader::spawn`] starts the binlog stream and
//! the replica pollers on the current tokio runtime and returns a cheap [`LagHandle`].

use crate::http::{self, Reply, Request, Routes};
use crate::position::{self, Watermarks};
use crate::secret::{self, SecretError};
use crate::snapshot::LagSnapshot;
use crate::state::{lock, Settings, Shared, Transaction};
use crate::stream::Target;
use router::config::{Config, Role};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// Why the reader could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("monitor password: {0}")]
    Secret(#[from] SecretError),
    #[error("the configuration has no server with `role: primary`")]
    NoPrimary,
    #[error("LagReader::spawn must run inside a tokio runtime")]
    NoRuntime,
}

/// Starts readers. See [`LagReader::spawn`].
pub struct LagReader;

impl LagReader {
    /// Starts streaming the primary's binlog (as replica `sidecar.server_id`) and polling every
    /// `role: replica` server every `sidecar.poll_interval_ms`, on the current tokio runtime.
    /// Returns at once; lag is unknown until the stream has caught up and the first polls
    /// answered (typically well under a second). The tasks stop when the last handle is dropped.
    pub fn spawn(config: &Config) -> Result<LagHandle, StartError> {
        Self::spawn_following(config, None)
    }

    /// Like [`LagReader::spawn`], for a writer change (an external failover): with `previous`
    /// (the reader of the old primary), the new stream continues from the last GTID it read
    /// (MariaDB `@slave_connect_state`), and the timeline and recent transactions carry over,
    /// so nothing is lost or repeated across the move. Without GTIDs (file/position only:
    /// positions differ between servers) it starts afresh, as `spawn` does.
    pub fn spawn_following(
        config: &Config,
        previous: Option<&LagHandle>,
    ) -> Result<LagHandle, StartError> {
        let handle = Self::spawn_inner(config)?;
        if let Some(prev) = previous {
            handle.inner.shared.continue_from(&prev.inner.shared);
        }
        handle.start();
        Ok(handle)
    }

    fn spawn_inner(config: &Config) -> Result<LagHandle, StartError> {
        let rt = tokio::runtime::Handle::try_current().map_err(|_| StartError::NoRuntime)?;
        let primary = config.primary().ok_or(StartError::NoPrimary)?;
        let password = secret::resolve(&config.monitor.secret)?;
        let target = |s: &router::config::ServerConfig| Target {
            host: s.host.clone(),
            port: s.port,
            user: config.monitor.user.clone(),
            password: password.clone(),
            tls: s.tls.clone(),
        };
        let poll_interval = Duration::from_millis(config.sidecar.poll_interval_ms.max(1));
        let settings = Settings {
            poll_interval,
            fast_poll_interval: crate::poll::Pace::fast_interval(
                poll_interval,
                config.sidecar.fast_poll_interval_ms,
            ),
            poll_timeout: Duration::from_millis(1000).max(poll_interval * 2),
            heartbeat: Duration::from_millis(500),
            server_id: config.sidecar.server_id,
            start_from_replicas: std::sync::atomic::AtomicBool::new(true),
            replaces_same_id: Default::default(),
        };
        let replicas: Vec<_> = config
            .servers
            .iter()
            .filter(|s| s.role == Role::Replica)
            .collect();
        let shared = Arc::new(Shared::new(
            settings,
            primary.name.clone(),
            replicas.iter().map(|s| s.name.clone()).collect(),
            config.sidecar.timeline_capacity,
        ));
        let primary_target = target(primary);
        let replica_targets: Vec<Target> = replicas.iter().map(|s| target(s)).collect();
        let start = Box::new(move |shared: &Arc<Shared>| {
            let mut tasks = vec![rt.spawn(crate::stream::run(shared.clone(), primary_target))];
            for (i, t) in replica_targets.into_iter().enumerate() {
                tasks.push(rt.spawn(crate::poll::run(shared.clone(), i, t)));
            }
            let pruner = shared.clone();
            tasks.push(rt.spawn(async move {
                let mut tick = tokio::time::interval(pruner.settings.poll_interval);
                loop {
                    tick.tick().await;
                    pruner.prune();
                }
            }));
            tasks
        });
        Ok(LagHandle {
            inner: Arc::new(Inner {
                shared,
                tasks: std::sync::Mutex::new(Vec::new()),
                start: std::sync::Mutex::new(Some(start)),
            }),
        })
    }
}

/// Starts the reader's tasks on its shared state (once).
type Starter = Box<dyn FnOnce(&Arc<Shared>) -> Vec<JoinHandle<()>> + Send>;

struct Inner {
    shared: Arc<Shared>,
    tasks: std::sync::Mutex<Vec<JoinHandle<()>>>,
    start: std::sync::Mutex<Option<Starter>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for t in lock(&self.tasks).iter() {
            t.abort();
        }
    }
}

/// Positions for read-your-writes: see [`LagHandle::positions`].
#[derive(Debug, Clone, Default)]
pub struct Positions {
    pub primary: Watermarks,
    pub replicas: Vec<(String, Option<(Watermarks, std::time::Instant)>)>,
    /// Each replica's received position (IO thread) with the instant the status query that
    /// read it was sent; `None` while unreachable or never read.
    pub received: Vec<(String, Option<(Watermarks, std::time::Instant)>)>,
}

/// A running reader. Clone freely; all methods are cheap and never block on the network.
#[derive(Clone)]
pub struct LagHandle {
    inner: Arc<Inner>,
}

impl LagHandle {
    /// Starts the tasks (after any carry-over from a previous reader).
    /// Stops the reader's tasks now (its binlog stream and polls), whoever still holds a
    /// clone of the handle: a reader replaced by another must not reconnect and take the
    /// primary's binlog dump back from it (MariaDB serves one dump per server id).
    pub fn stop(&self) {
        for t in lock(&self.inner.tasks).iter() {
            t.abort();
        }
    }

    fn start(&self) {
        if let Some(start) = lock(&self.inner.start).take() {
            *lock(&self.inner.tasks) = start(&self.inner.shared);
        }
    }

    /// The name of the primary this reader streams from.
    pub fn primary_name(&self) -> &str {
        &self.inner.shared.primary_name
    }

    /// Every replica's lag and state as of now.
    pub fn snapshot(&self) -> LagSnapshot {
        self.inner.shared.snapshot()
    }

    /// Whether `replica` has applied `gtid` (MariaDB `0-1-123`, MySQL `uuid:123`) as of its
    /// last poll: for read-your-writes without a `MASTER_GTID_WAIT` round trip. False when
    /// unknown (unreachable, unparsable GTID, unknown replica).
    pub fn covers(&self, replica: &str, gtid: &str) -> bool {
        let Ok(g) = position::parse_gtid(gtid) else {
            return false;
        };
        self.inner
            .shared
            .replicas
            .iter()
            .find(|(n, _)| n == replica)
            .is_some_and(|(_, s)| {
                let r = lock(s);
                r.reachable && r.applied.as_ref().is_some_and(|w| position::covers(w, &g))
            })
    }

    /// The primary's position as the binlog stream has read it, and each replica's applied
    /// position with the instant the poll that read it was sent (`None` while unreachable or
    /// never polled). Cheap: no lag computation.
    pub fn positions(&self) -> Positions {
        let primary = lock(&self.inner.shared.primary).gtid_seq.clone();
        let replicas = self
            .inner
            .shared
            .replicas
            .iter()
            .map(|(n, s)| {
                let r = lock(s);
                let applied = match (&r.applied, r.asked_instant) {
                    (Some(w), Some(at)) if r.reachable => Some((w.clone(), at)),
                    _ => None,
                };
                (n.clone(), applied)
            })
            .collect();
        Positions {
            primary,
            replicas,
            received: self.received_positions(),
        }
    }

    /// Each replica's received position and when it was asked for (see [`Positions`]).
    fn received_positions(&self) -> Vec<(String, Option<(Watermarks, std::time::Instant)>)> {
        self.inner
            .shared
            .replicas
            .iter()
            .map(|(n, s)| {
                let r = lock(s);
                let received = match (&r.io_applied, r.io_asked_instant) {
                    (Some(w), Some(at)) if r.reachable => Some((w.clone(), at)),
                    _ => None,
                };
                (n.clone(), received)
            })
            .collect()
    }

    /// Asks every replica poll loop for a poll now that also reads the replication status,
    /// and to keep reading it at every poll for a second: a write quorum on `received` waits.
    pub fn poll_received_now(&self) {
        let until = crate::state::now_us() + 1_000_000;
        self.inner
            .shared
            .status_wanted_until_us
            .fetch_max(until, std::sync::atomic::Ordering::Relaxed);
        self.poll_now();
    }

    /// Asks every replica poll loop for a poll now (at most one per millisecond each): a
    /// session waits for a replica to apply its position.
    pub fn poll_now(&self) {
        self.inner
            .shared
            .kick
            .send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Changes after every replica poll that has something to tell: every slow or asked-for
    /// poll, and a fast one that found a new position (see [`Self::positions`]).
    pub fn subscribe_polls(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.shared.polled.subscribe()
    }

    /// The most recent transactions read from the primary (up to 10 000), oldest first.
    pub fn recent_transactions(&self) -> Vec<Transaction> {
        lock(&self.inner.shared.recent).iter().cloned().collect()
    }

    /// Transactions currently held in the timeline and the timeline's capacity.
    pub fn timeline_len(&self) -> (usize, usize) {
        let t = lock(&self.inner.shared.timeline);
        (t.len(), t.capacity())
    }

    /// Prometheus text exposition of the reader's metrics.
    pub fn metrics_text(&self) -> String {
        let snap = self.snapshot();
        let stats = {
            let t = lock(&self.inner.shared.timeline);
            crate::metrics::TimelineStats {
                entries: t.len(),
                capacity: t.capacity(),
                dropped: t.dropped_total(),
                duplicates: t.duplicates_total(),
            }
        };
        self.inner.shared.metrics.render(&snap, stats)
    }

    /// The prometheus registry holding the reader's metrics (refreshed by [`Self::metrics_text`]).
    pub fn registry(&self) -> &prometheus::Registry {
        self.inner.shared.metrics.registry()
    }

    /// The recent transactions as text, oldest first, one per line:
    /// `<gtid or -> <file>:<end_pos> <commit_us> <live|replayed>` (served as `/transactions`,
    /// for debugging and for the end-to-end tests that check nothing is lost or repeated).
    pub fn transactions_text(&self) -> String {
        let recent = lock(&self.inner.shared.recent);
        let mut out = String::with_capacity(recent.len() * 48);
        for t in recent.iter() {
            out.push_str(&format!(
                "{} {}:{} {} {}\n",
                t.gtid.as_deref().unwrap_or("-"),
                t.file,
                t.end_pos,
                t.commit_us,
                if t.live { "live" } else { "replayed" }
            ));
        }
        out
    }

    /// The sidecar's routes: `/metrics`, `/lag` (see [`crate::snapshot`] for the format and
    /// the `?after=N` long poll), `/kick` (204 at once, after asking every replica for a poll
    /// now; `?received=1`: one that reads the replication status too, see
    /// [`Self::poll_received_now`]), `/healthz` (200 while the binlog stream is open, else 503;
    /// the body names the primary streamed from), `/transactions`.
    pub fn routes(&self) -> Routes {
        let sync = self.sync_routes();
        let h = self.clone();
        Arc::new(move |req: Request| {
            if req.path == "/lag" && req.is_read() {
                if let Some(after) = req.query_param("after").and_then(|v| v.parse::<u64>().ok()) {
                    let h = h.clone();
                    return Box::pin(async move { h.lag_after(&req, after).await })
                        as http::ReplyFuture;
                }
            }
            sync(req)
        })
    }

    /// `/lag?after=N[&timeout_ms=T][&kick=1][&received=1]`: the snapshot once a replica poll
    /// newer than `N` landed, or at the timeout (see [`crate::snapshot`]). `kick` and
    /// `received` do what `/kick` does; proxies now send kicks to `/kick` beside a long poll
    /// that keeps running, and the parameters stay for those that predate it.
    async fn lag_after(&self, req: &Request, after: u64) -> Reply {
        let timeout = req
            .query_param("timeout_ms")
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(1000)
            .min(30_000);
        let mut polls = self.subscribe_polls();
        if req.query_param("received") == Some("1") {
            self.poll_received_now();
        } else if req.query_param("kick") == Some("1") {
            self.poll_now();
        }
        let deadline = tokio::time::Instant::now() + Duration::from_millis(timeout);
        while *polls.borrow_and_update() <= after {
            match tokio::time::timeout_at(deadline, polls.changed()).await {
                Ok(Ok(())) => {}
                _ => break,
            }
        }
        match serde_json::to_vec(&self.snapshot()) {
            Ok(body) => Reply::ok("application/json", body),
            Err(e) => Reply::text(500, format!("{e}\n")),
        }
    }

    fn sync_routes(&self) -> Routes {
        let h = self.clone();
        http::sync_routes(move |req: &Request| {
            if !req.is_read() {
                return Reply::text(405, "method not allowed\n");
            }
            match req.path.as_str() {
                "/metrics" => Reply::ok("text/plain; version=0.0.4", h.metrics_text()),
                "/lag" => match serde_json::to_vec(&h.snapshot()) {
                    Ok(body) => Reply::ok("application/json", body),
                    Err(e) => Reply::text(500, format!("{e}\n")),
                },
                "/kick" => {
                    if req.query_param("received") == Some("1") {
                        h.poll_received_now();
                    } else {
                        h.poll_now();
                    }
                    Reply::text(204, "")
                }
                "/transactions" => Reply::ok("text/plain; charset=utf-8", h.transactions_text()),
                "/healthz" => {
                    let s = h.snapshot();
                    let from = &s.primary.name;
                    if s.primary.connected {
                        Reply::text(200, format!("ok: streaming from {from}\n"))
                    } else {
                        let why = s.primary.error.unwrap_or_else(|| "connecting".into());
                        Reply::text(503, format!("binlog stream from {from} down: {why}\n"))
                    }
                }
                _ => Reply::not_found(),
            }
        })
    }
}

#[cfg(test)]
mod test {
    use super::*;

    fn config() -> Config {
        let closed = || {
            std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
                .unwrap_or(1)
        };
        let yaml = format!(
            "servers:\n  - {{name: p, host: 127.0.0.1, port: {}, role: primary}}\n  \
             - {{name: r1, host: 127.0.0.1, port: {}, role: replica}}\n\
             monitor: {{user: u, password: x}}\n",
            closed(),
            closed()
        );
        Config::from_yaml("t.yaml", &yaml).expect("config")
    }

    #[tokio::test]
    async fn unreachable_servers_read_unknown_through_every_interface() {
        let h = LagReader::spawn(&config()).expect("spawn");
        tokio::time::sleep(Duration::from_millis(300)).await;
        let snap = h.snapshot();
        let r = &snap.replicas["r1"];
        assert_eq!((r.lag_ms, r.known, r.reachable), (None, false, false));
        assert!(!snap.primary.connected);
        assert!(!h.covers("r1", "0-1-1"));
        assert!(!h.covers("nobody", "0-1-1"));
        let routes = h.routes();
        let peer = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        assert_eq!(routes(Request::get("/healthz")).await.status, 503);
        assert_eq!(routes(Request::get("/nope")).await.status, 404);
        assert_eq!(routes(Request::new("POST", "/lag", peer)).await.status, 405);
        let lag = routes(Request::get("/lag")).await;
        let parsed: LagSnapshot = serde_json::from_slice(&lag.body).expect("/lag is a LagSnapshot");
        assert_eq!(parsed.replicas["r1"].lag_ms, None);
        let metrics =
            String::from_utf8(routes(Request::get("/metrics")).await.body.to_vec()).unwrap();
        assert!(
            metrics.contains("rwsplit_replica_lag_known{replica=\"r1\"} 0"),
            "{metrics}"
        );
        assert!(
            !metrics.contains("rwsplit_replica_lag_seconds{"),
            "{metrics}"
        );
        assert!(
            metrics.contains("rwsplit_binlog_timeline_capacity 1000000"),
            "{metrics}"
        );
    }

    #[tokio::test]
    async fn lag_long_poll_waits_for_a_poll_or_the_timeout() {
        let h = LagReader::spawn(&config()).expect("spawn");
        let routes = h.routes();
        // No replica poll succeeds here: the long poll answers at its timeout, a snapshot all
        // the same (with `kick=1` too, and `polls` still 0).
        let started = std::time::Instant::now();
        let lag = routes(Request::get("/lag?after=0&timeout_ms=200&kick=1")).await;
        assert!(started.elapsed() >= Duration::from_millis(200));
        assert_eq!(lag.status, 200);
        let parsed: LagSnapshot = serde_json::from_slice(&lag.body).expect("a LagSnapshot");
        assert_eq!(parsed.polls, 0);
        // A poll landing ends the wait at once.
        let waiting = tokio::spawn(routes(Request::get("/lag?after=0&timeout_ms=30000")));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished());
        h.inner.shared.polled.send_modify(|n| *n += 1);
        let lag = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("answered after the poll")
            .expect("task");
        let parsed: LagSnapshot = serde_json::from_slice(&lag.body).expect("a LagSnapshot");
        assert_eq!(parsed.polls, 1);
        // Without `after` (or with a bad one), an answer at once.
        let lag = routes(Request::get("/lag?after=x")).await;
        assert_eq!(lag.status, 200);
    }

    #[tokio::test]
    async fn kick_asks_for_polls_and_answers_at_once() {
        let h = LagReader::spawn(&config()).expect("spawn");
        let routes = h.routes();
        let mut kicks = h.inner.shared.kick.subscribe();
        kicks.borrow_and_update();
        let status_wanted = || {
            h.inner
                .shared
                .status_wanted_until_us
                .load(std::sync::atomic::Ordering::Relaxed)
        };
        let reply = tokio::time::timeout(Duration::from_secs(1), routes(Request::get("/kick")))
            .await
            .expect("answered at once");
        assert_eq!((reply.status, reply.body.len()), (204, 0));
        assert!(kicks.has_changed().expect("open"), "a poll was asked for");
        assert_eq!(
            status_wanted(),
            0,
            "a plain kick does not ask for the status"
        );
        kicks.borrow_and_update();
        let reply = routes(Request::get("/kick?received=1")).await;
        assert_eq!(reply.status, 204);
        assert!(kicks.has_changed().expect("open"));
        assert!(
            status_wanted() > crate::state::now_us(),
            "the next second's polls read the replication status"
        );
        let peer = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        assert_eq!(
            routes(Request::new("POST", "/kick", peer)).await.status,
            405
        );
    }

    #[test]
    fn spawn_outside_a_runtime_is_an_error_not_a_panic() {
        assert!(matches!(
            LagReader::spawn(&config()),
            Err(StartError::NoRuntime)
        ));
    }
}
