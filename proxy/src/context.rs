//! The shared runtime context every session gets: the current configuration (swapped whole on
//! SIGHUP), the live topology the health monitor publishes, per-backend counters and circuit
//! breakers, and the metrics handles.
//!
//! Everything a session reads on the hot path is a lock-free `ArcSwap` load or an atomic: a
//! session loads a snapshot when a statement starts and keeps it for that statement, so a
//! reload or a topology change never tears a statement in half.

use crate::metrics::{BackendMetrics, Metrics};
use arc_swap::ArcSwap;
use router::choice::{BreakerPolicy, BreakerState, Choice, CircuitBreaker, TopologySnapshot};
use router::config::{Config, ProxyConfig, ServerConfig};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;
use tokio::sync::watch;

/// What can go wrong building or reloading the context.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read.
    #[error("{file}: cannot read: {source}")]
    Read {
        file: String,
        #[source]
        source: std::io::Error,
    },
    /// The document is invalid (the message names file, line and key). Shown on one line:
    /// the parser's source snippet is for humans at a terminal, not for logs.
    #[error("{}", first_line(.0))]
    Config(#[from] router::config::ConfigError),
    /// The document has no `proxy:` section.
    #[error(
        "{file}: `proxy`: section missing: rwsplit-proxy needs at least `proxy: {{users: [...]}}`"
    )]
    NoProxySection { file: String },
    /// A setting cannot change without a restart.
    #[error(
        "{file}: `{key}`: changing it needs a restart (was {old}, now {new}); reload rejected"
    )]
    NeedsRestart {
        file: String,
        key: &'static str,
        old: String,
        new: String,
    },
}

fn first_line(e: &router::config::ConfigError) -> String {
    let text = e.to_string();
    text.lines()
        .next()
        .unwrap_or_default()
        .trim_end()
        .to_string()
}

/// Reads and validates a configuration file for the proxy.
pub fn load_config(path: &Path) -> Result<Config, Error> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
        file: file.clone(),
        source,
    })?;
    let config = Config::from_yaml(&file, &text)?;
    if config.proxy.is_none() {
        return Err(Error::NoProxySection { file });
    }
    Ok(config)
}

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
    /// Pooled backend connections (idle + in use), maintained by the pools.
    connections: AtomicUsize,
    metrics: BackendMetrics,
    breaker: Mutex<CircuitBreaker>,
    /// Mirror of "breaker open" for lock-free reads on the hot path.
    breaker_open: AtomicBool,
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

    /// Pooled connections to this backend (idle + in use).
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::Relaxed)
    }

    /// The pools call this when they open a backend connection...
    pub fn connection_opened(&self) {
        self.shared.connections.fetch_add(1, Ordering::Relaxed);
    }

    /// ...and this when they close one.
    pub fn connection_closed(&self) {
        let _ = self
            .shared
            .connections
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                Some(n.saturating_sub(1))
            });
    }

    /// A connect or I/O failure on this backend (from the monitor or a session), counted
    /// against `policy` (from `routing.breaker_*`); see [`Context::report_failure`].
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

/// Decrements the backend's in-flight count when dropped.
pub struct InFlight(Arc<BackendShared>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The role the monitor observes for a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObservedRole {
    /// Writable and replicating from no one.
    Primary,
    /// Replicating from another server (or read-only).
    Replica,
    /// Not checked yet, or unreachable.
    Unknown,
}

impl ObservedRole {
    pub fn as_str(self) -> &'static str {
        match self {
            ObservedRole::Primary => "primary",
            ObservedRole::Replica => "replica",
            ObservedRole::Unknown => "unknown",
        }
    }
}

/// What the health monitor last learned about one server.
#[derive(Debug, Clone)]
pub struct ServerHealth {
    /// The last check connected and answered.
    pub reachable: bool,
    /// `@@read_only`, when known.
    pub read_only: Option<bool>,
    /// Whether the server replicates from another (has a replica status row).
    pub replicating: Option<bool>,
    /// Replica IO and SQL threads both running (false when not replicating).
    pub threads_running: bool,
    /// Lag behind the primary in milliseconds; `None` = unknown (never treated as 0).
    pub lag_ms: Option<u64>,
    pub role: ObservedRole,
    /// The last check's error, for `/servers` and logs.
    pub last_error: Option<String>,
    /// When the last check finished (monotonic).
    pub checked_at: Option<Instant>,
}

impl Default for ServerHealth {
    fn default() -> Self {
        ServerHealth {
            reachable: false,
            read_only: None,
            replicating: None,
            threads_running: false,
            lag_ms: None,
            role: ObservedRole::Unknown,
            last_error: None,
            checked_at: None,
        }
    }
}

/// One published view of the topology; replaced whole by the monitor after each round.
#[derive(Debug, Clone)]
pub struct Topology {
    /// Increases with every publication.
    pub generation: u64,
    /// What the router's chooser reads: reachability, replication, lag (through the hysteresis
    /// gate), roles and the current writer (`router.primary`). Its `in_flight`, `connections`
    /// and `breaker` fields are stale here; [`Context::choose_replica`] fills them live.
    pub router: TopologySnapshot,
    /// Details for `/servers` and logs, aligned with `router.servers` and `config.servers`.
    pub servers: Vec<ServerHealth>,
    /// Why writes cannot be served now (no writable primary, split brain), for clients and
    /// `/healthz`. `None` when `router.primary` is set.
    pub write_block: Option<String>,
    /// Two or more writable servers replicate from no one.
    pub split_brain: bool,
}

impl Topology {
    /// Before the monitor's first round: trust the configured primary, know nothing else
    /// (replicas are out of rotation until checked: unknown is not healthy).
    pub fn initial(config: &Config) -> Topology {
        let mut router = TopologySnapshot::from_config(config);
        router.primary = config
            .servers
            .iter()
            .position(|s| s.role == router::config::Role::Primary);
        Topology {
            generation: 0,
            router,
            servers: vec![ServerHealth::default(); config.servers.len()],
            write_block: None,
            split_brain: false,
        }
    }

    /// Index of the server writes go to.
    pub fn primary(&self) -> Option<usize> {
        self.router.primary
    }
}

/// The shared state behind every session, the monitor, and the admin endpoint.
pub struct Context {
    config_path: PathBuf,
    config: ArcSwap<Config>,
    backends: ArcSwap<Vec<Arc<Backend>>>,
    topology: ArcSwap<Topology>,
    pub metrics: Arc<Metrics>,
    shutdown: watch::Sender<bool>,
    /// Incremented on every successful reload, so tasks can notice.
    config_generation: AtomicU64,
    /// Client sessions open now (also exported as a gauge).
    clients: AtomicU32,
    /// Serialises reloads against topology publication.
    publish_lock: Mutex<()>,
    /// The embedded binlog reader (`proxy.lag_source: embedded`), for lag and read-your-writes.
    lag_reader: Mutex<Option<binlog_reader::LagHandle>>,
    /// Per-context state other layers own (the data path's pools, TLS acceptor), by type.
    extensions: Mutex<Vec<Arc<dyn std::any::Any + Send + Sync>>>,
}

impl Context {
    /// Builds the context for a validated config (which must have a `proxy` section).
    pub fn new(config_path: PathBuf, config: Config) -> Arc<Context> {
        let metrics = Arc::new(Metrics::new());
        let backends = build_backends(&config, &[], &metrics);
        let topology = Topology::initial(&config);
        let (shutdown, _) = watch::channel(false);
        Arc::new(Context {
            config_path,
            config: ArcSwap::from_pointee(config),
            backends: ArcSwap::from_pointee(backends),
            topology: ArcSwap::from_pointee(topology),
            metrics,
            shutdown,
            config_generation: AtomicU64::new(0),
            clients: AtomicU32::new(0),
            publish_lock: Mutex::new(()),
            lag_reader: Mutex::new(None),
            extensions: Mutex::new(Vec::new()),
        })
    }

    /// The current configuration; keep the `Arc` for the duration of a statement.
    pub fn config(&self) -> Arc<Config> {
        self.config.load_full()
    }

    /// The current `proxy:` section.
    pub fn proxy_config(&self) -> ProxyConfigRef {
        ProxyConfigRef(self.config())
    }

    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    pub fn config_generation(&self) -> u64 {
        self.config_generation.load(Ordering::Relaxed)
    }

    /// Per-server runtime state, aligned with `config().servers`.
    pub fn backends(&self) -> Arc<Vec<Arc<Backend>>> {
        self.backends.load_full()
    }

    /// The backend with this name, if configured.
    pub fn backend(&self, name: &str) -> Option<Arc<Backend>> {
        self.backends
            .load()
            .iter()
            .find(|b| b.config.name == name)
            .cloned()
    }

    /// The latest published topology.
    pub fn topology(&self) -> Arc<Topology> {
        self.topology.load_full()
    }

    /// The monitor publishes a new topology built for config generation `built_for`
    /// ([`Context::config_generation`]). Refused (false) when a reload swapped the server list
    /// since: the indices would not match; the monitor rebuilds and tries again.
    pub fn publish_topology(&self, built_for: u64, topology: Topology) -> bool {
        let Ok(_guard) = self.publish_lock.lock() else {
            return false;
        };
        if built_for != self.config_generation() {
            return false;
        }
        self.store_topology(topology);
        true
    }

    fn store_topology(&self, mut topology: Topology) {
        topology.generation = self.topology.load().generation + 1;
        self.metrics
            .split_brain
            .set(i64::from(topology.split_brain));
        self.topology.store(Arc::new(topology));
    }

    /// Reports a connect/IO failure against a backend's circuit breaker, using the current
    /// `routing.breaker_failures` / `breaker_cooldown_ms`.
    pub fn report_failure(&self, backend: &Backend) {
        backend.report_failure(&self.breaker_policy());
    }

    /// The breaker thresholds of the current config.
    pub fn breaker_policy(&self) -> BreakerPolicy {
        let cfg = self.config.load();
        BreakerPolicy {
            failures: cfg.routing.breaker_failures,
            cooldown_ms: cfg.routing.breaker_cooldown_ms,
        }
    }

    /// Picks the server for a read (DESIGN §3) over the latest topology, with live in-flight
    /// counts, connection counts and breakers. `buf` is the caller's scratch snapshot (keep
    /// one per session): refilled with `clone_from`, so a choice allocates nothing once warm.
    /// Returns the choice and the topology it was made on (indices refer to its servers and
    /// to `backends()` of the same config).
    pub fn choose_replica(
        &self,
        buf: &mut TopologySnapshot,
        max_lag_override: Option<u64>,
        seed: u64,
    ) -> (Choice, Arc<Topology>) {
        let topology = self.topology.load_full();
        buf.clone_from(&topology.router);
        let backends = self.backends.load();
        for s in buf.servers.iter_mut() {
            if let Some(b) = backends.get(s.idx) {
                s.in_flight = u32::try_from(b.in_flight()).unwrap_or(u32::MAX);
                s.connections = u32::try_from(b.connections()).unwrap_or(u32::MAX);
                s.breaker = b.breaker();
            }
        }
        let choice = buf.choose_replica(max_lag_override, now_ms(), seed);
        (choice, topology)
    }

    /// The backend writes go to now, or the reason writes are refused (split brain, no
    /// writable server): give that reason to the client in an ERR packet.
    pub fn primary(&self) -> Result<Arc<Backend>, String> {
        let topology = self.topology.load();
        if let Some(reason) = &topology.write_block {
            return Err(reason.clone());
        }
        topology
            .primary()
            .and_then(|i| self.backends.load().get(i).cloned())
            .ok_or_else(|| "no primary server is known yet".to_string())
    }

    /// Re-reads the config file and swaps it in if valid. On error the old config stays.
    /// Listen addresses cannot change without a restart. Counted in
    /// `rwsplit_config_reloads_total{result}`.
    pub fn reload(&self) -> Result<(), Error> {
        let result = self.try_reload();
        let label = if result.is_ok() { "ok" } else { "error" };
        self.metrics
            .config_reloads
            .with_label_values(&[label])
            .inc();
        result
    }

    fn try_reload(&self) -> Result<(), Error> {
        let new = load_config(&self.config_path)?;
        let old = self.config.load_full();
        let file = self.config_path.display().to_string();
        if let (Some(o), Some(n)) = (&old.proxy, &new.proxy) {
            for (key, a, b) in [
                ("proxy.listen", &o.listen, &n.listen),
                ("proxy.http_listen", &o.http_listen, &n.http_listen),
            ] {
                if a != b {
                    return Err(Error::NeedsRestart {
                        file,
                        key,
                        old: a.clone(),
                        new: b.clone(),
                    });
                }
            }
        }
        let old_backends = self.backends.load_full();
        let backends = build_backends(&new, &old_backends, &self.metrics);
        for b in old_backends.iter() {
            if !new.servers.iter().any(|s| s.name == b.config.name) {
                self.metrics
                    .forget_backend(&b.config.name, Some(b.metrics()));
            }
        }
        // Carry over what the monitor knows about servers that stay, so routing does not
        // go blind until the next monitor round (which rebuilds everything for the new list).
        let old_topology = self.topology.load_full();
        let mut topology = Topology::initial(&new);
        let mut primary = None;
        for (i, s) in new.servers.iter().enumerate() {
            let Some(j) = old.servers.iter().position(|o| same_server(o, s)) else {
                continue;
            };
            if let Some(h) = old_topology.servers.get(j) {
                topology.servers[i] = h.clone();
            }
            if let (Some(dst), Some(src)) = (
                topology.router.servers.get_mut(i),
                old_topology.router.servers.get(j),
            ) {
                dst.reachable = src.reachable;
                dst.replicating = src.replicating;
                dst.lag_ms = src.lag_ms;
                dst.lag_gate = src.lag_gate;
                dst.role = src.role;
            }
            if old_topology.router.primary == Some(j) {
                primary = Some(i);
            }
        }
        if old_topology.generation > 0 {
            topology.router.primary = primary;
            topology.split_brain = old_topology.split_brain;
            topology.write_block = old_topology.write_block.clone();
            if primary.is_none() && topology.write_block.is_none() {
                topology.write_block =
                    Some("the primary was removed from the configuration".to_string());
            }
        }
        // Backends and topology must match the config a session loads next; the lock keeps
        // the monitor from publishing a topology built for the old server list in between.
        let Ok(_guard) = self.publish_lock.lock() else {
            return Ok(());
        };
        self.backends.store(Arc::new(backends));
        self.config.store(Arc::new(new));
        self.store_topology(topology);
        self.config_generation.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// The context's single value of type `T`, created by `init` on first use: lets a layer
    /// keep per-proxy state (e.g. `backend::Pools`, a TLS acceptor cache) in the context
    /// without this module knowing its type. `init` runs once, under a lock: keep it quick.
    /// Look it up once per session, not per statement.
    pub fn extension<T: std::any::Any + Send + Sync>(&self, init: impl FnOnce() -> T) -> Arc<T> {
        let mut ext = match self.extensions.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if let Some(found) = ext.iter().find_map(|e| e.clone().downcast::<T>().ok()) {
            return found;
        }
        let value = Arc::new(init());
        ext.push(value.clone());
        value
    }

    /// The embedded binlog reader, when `proxy.lag_source` is `embedded` and it started:
    /// `snapshot()` for lag, `covers(replica, gtid)` for read-your-writes.
    pub fn lag_reader(&self) -> Option<binlog_reader::LagHandle> {
        self.lag_reader.lock().ok().and_then(|g| g.clone())
    }

    /// The monitor installs (or clears) the embedded reader; a reload restarts it.
    pub fn set_lag_reader(&self, handle: Option<binlog_reader::LagHandle>) {
        if let Ok(mut g) = self.lag_reader.lock() {
            *g = handle;
        }
    }

    /// Asks every task to stop: the accept loop stops accepting, sessions finish.
    pub fn begin_shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    pub fn is_shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// A receiver that changes to `true` when shutdown begins (sessions may watch it to close
    /// idle clients early).
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// Client sessions open now.
    pub fn clients(&self) -> u32 {
        self.clients.load(Ordering::Relaxed)
    }

    /// Reserves a client slot if fewer than `max` are open; the guard releases it.
    pub fn try_admit(self: &Arc<Self>, max: usize) -> Option<ClientSlot> {
        let max = u32::try_from(max).unwrap_or(u32::MAX);
        self.clients
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()?;
        self.metrics.client_connections.inc();
        self.metrics.client_connections_total.inc();
        Some(ClientSlot(self.clone()))
    }
}

/// Holds one of `max_connections` client slots until dropped.
pub struct ClientSlot(Arc<Context>);

impl Drop for ClientSlot {
    fn drop(&mut self) {
        self.0.clients.fetch_sub(1, Ordering::AcqRel);
        self.0.metrics.client_connections.dec();
    }
}

/// A loaded config known to have a `proxy:` section; derefs to it.
pub struct ProxyConfigRef(Arc<Config>);

impl std::ops::Deref for ProxyConfigRef {
    type Target = ProxyConfig;
    fn deref(&self) -> &ProxyConfig {
        // load_config() and Context::new() callers guarantee the section; see main.rs.
        self.0.proxy.as_ref().unwrap_or_else(|| default_proxy())
    }
}

fn default_proxy() -> &'static ProxyConfig {
    static DEFAULT: std::sync::OnceLock<ProxyConfig> = std::sync::OnceLock::new();
    DEFAULT.get_or_init(|| {
        // Only reachable if a Context was built from a config without `proxy:`; the listen
        // addresses below are the documented defaults.
        let text = "servers: [{name: p, host: 127.0.0.1, port: 1, role: primary}]\n\
                    monitor: {user: m}\nproxy: {}\n";
        Config::from_yaml("<defaults>", text)
            .ok()
            .and_then(|c| c.proxy)
            .expect("built-in default proxy config is valid")
    })
}

fn same_server(a: &ServerConfig, b: &ServerConfig) -> bool {
    a.name == b.name && a.host == b.host && a.port == b.port
}

/// Builds the backend list for `config`, keeping the counters and breaker of servers whose
/// name and address are unchanged.
fn build_backends(config: &Config, old: &[Arc<Backend>], metrics: &Metrics) -> Vec<Arc<Backend>> {
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
                    metrics: metrics.backend(&s.name),
                    breaker: Mutex::new(CircuitBreaker::new()),
                    breaker_open: AtomicBool::new(false),
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

#[cfg(test)]
mod test {
    use super::*;

    const YAML: &str = "servers:\n  - {name: p, host: 127.0.0.1, port: 3340, role: primary}\n  - {name: r1, host: 127.0.0.1, port: 3341, role: replica}\nmonitor: {user: m, password: x}\nproxy: {max_connections: 2}\n";

    fn ctx() -> Arc<Context> {
        let c = Config::from_yaml("t.yaml", YAML).expect("valid");
        Context::new(PathBuf::from("t.yaml"), c)
    }

    #[test]
    fn admission_stops_at_max_and_slots_come_back() {
        let ctx = ctx();
        let a = ctx.try_admit(2).expect("first");
        let _b = ctx.try_admit(2).expect("second");
        assert!(ctx.try_admit(2).is_none());
        drop(a);
        assert!(ctx.try_admit(2).is_some());
        assert_eq!(ctx.metrics.client_connections_total.get(), 3);
    }

    fn file_ctx(name: &str, text: &str) -> (Arc<Context>, PathBuf) {
        let path =
            std::env::temp_dir().join(format!("rwsplit-ctx-{}-{name}.yaml", std::process::id()));
        std::fs::write(&path, text).expect("write");
        let ctx = Context::new(path.clone(), load_config(&path).expect("valid"));
        (ctx, path)
    }

    #[test]
    fn reload_swaps_servers_and_keeps_counters_of_servers_that_stay() {
        let (ctx, path) = file_ctx("swap", YAML);
        let r1 = ctx.backend("r1").expect("r1");
        let _guard = r1.begin();
        let without_primary_first = YAML
            .replace(
                "  - {name: p, host: 127.0.0.1, port: 3340, role: primary}\n",
                "",
            )
            .replace("role: replica}", "role: primary}");
        std::fs::write(&path, &without_primary_first).expect("write");
        ctx.reload().expect("valid reload");
        assert_eq!(ctx.config().servers.len(), 1);
        let r1_after = ctx.backend("r1").expect("r1 stays");
        assert_eq!(r1_after.index, 0, "indices follow the new list");
        assert_eq!(r1_after.in_flight(), 1, "running statements still counted");
        assert!(ctx.backend("p").is_none());
        assert_eq!(ctx.config_generation(), 1);
        assert_eq!(
            ctx.metrics.config_reloads.with_label_values(&["ok"]).get(),
            1
        );
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn reload_rejects_broken_files_and_listen_changes_keeping_the_old_config() {
        let (ctx, path) = file_ctx("reject", YAML);
        std::fs::write(&path, "servers: [").expect("write");
        let err = ctx.reload().expect_err("broken").to_string();
        assert!(err.contains(&path.display().to_string()), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        std::fs::write(
            &path,
            YAML.replace("proxy: {", "proxy: {listen: '127.0.0.1:1', "),
        )
        .expect("write");
        let err = ctx.reload().expect_err("listen change").to_string();
        assert!(
            err.contains("proxy.listen") && err.contains("restart"),
            "{err}"
        );
        assert_eq!(ctx.config().servers.len(), 2, "old config kept");
        assert_eq!(ctx.config_generation(), 0);
        assert_eq!(
            ctx.metrics
                .config_reloads
                .with_label_values(&["error"])
                .get(),
            2
        );
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn extension_is_created_once_per_type() {
        let ctx = ctx();
        let a = ctx.extension(|| 7u32);
        let b = ctx.extension(|| 9u32);
        assert_eq!((*a, *b), (7, 7));
        assert_eq!(*ctx.extension(|| String::from("s")), "s");
    }

    #[test]
    fn in_flight_guard_counts() {
        let ctx = ctx();
        let b = ctx.backend("r1").expect("r1");
        let g1 = b.begin();
        let g2 = b.begin();
        assert_eq!(b.in_flight(), 2);
        drop(g1);
        drop(g2);
        assert_eq!(b.in_flight(), 0);
    }

    #[test]
    fn breaker_opens_after_threshold_and_closes_on_success() {
        let ctx = ctx();
        let b = ctx.backend("p").expect("p");
        let policy = BreakerPolicy {
            failures: 3,
            cooldown_ms: 60_000,
        };
        for _ in 0..2 {
            b.report_failure(&policy);
        }
        assert!(b.breaker_allows());
        b.report_failure(&policy);
        assert!(!b.breaker_allows());
        assert_eq!(b.breaker_state(), "open");
        assert_eq!(b.metrics().breaker_open.get(), 1);
        b.report_success();
        assert!(b.breaker_allows());
        assert_eq!(b.breaker_state(), "closed");
        assert_eq!(b.metrics().breaker_open.get(), 0);
    }

    #[test]
    fn stale_topology_is_not_published_after_a_reload() {
        let ctx = ctx();
        let gen = ctx.config_generation();
        let t = Topology::initial(&ctx.config());
        assert!(ctx.publish_topology(gen, t.clone()));
        ctx.config_generation.fetch_add(1, Ordering::Relaxed);
        assert!(!ctx.publish_topology(gen, t));
    }

    #[test]
    fn initial_topology_trusts_configured_primary() {
        let ctx = ctx();
        assert_eq!(ctx.topology().primary(), Some(0));
        assert_eq!(ctx.primary().map(|b| b.index), Ok(0));
        assert_eq!(ctx.proxy_config().max_connections, 2);
    }
}
