//! The shared runtime context every session gets: the current configuration (swapped whole on
//! SIGHUP), the live topology the health monitor publishes, per-backend counters and circuit
//! breakers, and the metrics handles.
//!
//! Everything a session reads on the hot path is a lock-free `ArcSwap` load or an atomic: a
//! session loads a snapshot when a statement starts and keeps it for that statement, so a
//! reload or a topology change never tears a statement in half.

mod backend;
pub mod overrides;
mod topology;
mod write_gate;

pub use backend::{now_ms, Backend, InFlight, Slot};
pub use topology::{ObservedRole, PrimaryDown, ServerHealth, Topology};
pub use write_gate::{WriteGate, WritePermit};

use crate::metrics::Metrics;
use arc_swap::ArcSwap;
use backend::{build_backends, same_server};
use router::choice::{BreakerPolicy, Choice, TopologySnapshot};
use router::config::{Config, ProxyConfig};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
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
    /// The client TLS certificate or key named in `proxy.tls` does not load.
    #[error("{file}: {message}; reload rejected")]
    Tls { file: String, message: String },
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
    /// Runtime server overrides from the admin API, applied to `config` (see `overrides.rs`).
    /// Locked only by the admin API and reloads, never on the data path.
    overrides: Mutex<overrides::Overrides>,
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
            overrides: Mutex::new(overrides::Overrides::default()),
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
        // Runtime overrides win over whatever config the topology was derived from (the
        // monitor may have started its round before an override was set).
        apply_server_settings(&mut topology.router, &self.config.load());
        // Once per publication, so that each read's choice scans only the candidates.
        topology.router.reindex();
        self.metrics
            .split_brain
            .set(i64::from(topology.split_brain));
        self.metrics
            .primary_down
            .set(i64::from(topology.primary_down.is_some()));
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
    /// one per session) and `copied` the topology generation it holds a copy of (`None` once
    /// the caller changed it): refilled with `clone_from` only when the monitor published a new
    /// topology since, so a choice copies and allocates nothing in between.
    /// Returns the choice and the topology it was made on (indices refer to its servers and
    /// to `backends()` of the same config).
    pub fn choose_replica(
        &self,
        buf: &mut TopologySnapshot,
        copied: &mut Option<u64>,
        max_lag_override: Option<u64>,
        seed: u64,
    ) -> (Choice, Arc<Topology>) {
        let topology = self.topology.load_full();
        if *copied != Some(topology.generation) {
            buf.clone_from(&topology.router);
            *copied = Some(topology.generation);
        }
        let backends = self.backends.load();
        for s in buf.servers.iter_mut() {
            if let Some(b) = backends.get(s.idx) {
                s.in_flight = u32::try_from(b.in_flight()).unwrap_or(u32::MAX);
                s.connections = u32::try_from(b.connections()).unwrap_or(u32::MAX);
                s.breaker = b.breaker_for_choice();
            }
        }
        let choice = buf.choose_replica(max_lag_override, now_ms(), seed);
        (choice, topology)
    }

    /// The backend writes go to now, or the reason writes are refused (split brain, no
    /// writable server): give that reason to the client in an ERR packet.
    /// The version string the handshake presents when `proxy.server_version` is unset: the
    /// writer's `@@version` (any server's until a writer is known), so drivers see the
    /// flavour they are really talking to. Before the monitor has reached any server, a
    /// MySQL 8.0 string.
    pub fn advertised_version(&self) -> String {
        let known = self
            .primary()
            .ok()
            .and_then(|b| b.version())
            .or_else(|| self.backends.load().iter().find_map(|b| b.version()));
        match known {
            Some(v) => handshake_version(&v),
            None => FALLBACK_VERSION.to_string(),
        }
    }

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
    /// Listen addresses cannot change without a restart. The client TLS certificate and key
    /// are read again too, even at unchanged paths (a renewed certificate), and so are the
    /// backends' `servers[].tls.ca` files; if one does not load, the whole reload is rejected
    /// and the running TLS settings stay. Counted in
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
            if o.worker_threads != n.worker_threads {
                return Err(Error::NeedsRestart {
                    file,
                    key: "proxy.worker_threads",
                    old: o.worker_threads.to_string(),
                    new: n.worker_threads.to_string(),
                });
            }
            if o.rsa_private_key != n.rsa_private_key {
                let show = |k: &Option<String>| k.clone().unwrap_or_else(|| "unset".into());
                return Err(Error::NeedsRestart {
                    file,
                    key: "proxy.rsa_private_key",
                    old: show(&o.rsa_private_key),
                    new: show(&n.rsa_private_key),
                });
            }
        }
        let tls = crate::frontend::load_tls(&new).map_err(|e| Error::Tls {
            file: file.clone(),
            message: match e {
                crate::frontend::Error::Tls(m) => m,
                other => other.to_string(),
            },
        })?;
        let backend_tls = crate::backend::tls::prepare(&new).map_err(|e| Error::Tls {
            file: file.clone(),
            message: match e {
                crate::backend::Error::Tls(m) => m,
                other => other.to_string(),
            },
        })?;
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
        let mut last_writer = None;
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
            if old_topology.router.last_writer == Some(j) {
                last_writer = Some(i);
            }
            if let Some(d) = old_topology.primary_down.filter(|d| d.server == j) {
                topology.primary_down = Some(crate::context::PrimaryDown { server: i, ..d });
            }
        }
        if old_topology.generation > 0 {
            topology.router.primary = primary;
            topology.router.last_writer = last_writer;
            topology.split_brain = old_topology.split_brain;
            topology.write_block = old_topology.write_block.clone();
            if primary.is_none()
                && topology.write_block.is_none()
                && topology.primary_down.is_none()
            {
                topology.write_block =
                    Some("the primary was removed from the configuration".to_string());
            }
        }
        // Backends and topology must match the config a session loads next; the lock keeps
        // the monitor from publishing a topology built for the old server list in between.
        let Ok(_guard) = self.publish_lock.lock() else {
            return Ok(());
        };
        let mut new = new;
        for what in self.lock_overrides().apply(&mut new) {
            tracing::info!(override = %what, "runtime override dropped: the config file now says otherwise");
        }
        self.backends.store(Arc::new(backends));
        self.config.store(Arc::new(new));
        crate::frontend::install_tls(self, tls);
        crate::backend::tls::install(self, backend_tls);
        self.store_topology(topology);
        self.config_generation.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Changes server `name`'s runtime settings (admin API): effective for the next statement
    /// (the current topology is republished with them), kept across reloads until the file
    /// changes the same key. Returns the server's overrides after the change, or `None` when
    /// no server has that name.
    pub fn override_server(
        &self,
        name: &str,
        change: &overrides::Change,
    ) -> Option<overrides::ServerOverride> {
        let Ok(_guard) = self.publish_lock.lock() else {
            return None;
        };
        let mut config = Config::clone(&self.config.load());
        let server = config.servers.iter_mut().find(|s| s.name == name)?;
        let mut table = self.lock_overrides();
        table.set(server, change);
        let now = table.of(name).cloned().unwrap_or_default();
        drop(table);
        self.config.store(Arc::new(config));
        let topology = Topology::clone(&self.topology.load());
        self.store_topology(topology);
        Some(now)
    }

    /// Server `name`'s runtime overrides (empty when it has none).
    pub fn server_overrides(&self, name: &str) -> overrides::ServerOverride {
        self.lock_overrides().of(name).cloned().unwrap_or_default()
    }

    fn lock_overrides(&self) -> std::sync::MutexGuard<'_, overrides::Overrides> {
        match self.overrides.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
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

/// Brings the router snapshot's per-server settings (`maintenance`, `weight`, `max_lag_ms`) in
/// line with `config`. A changed lag limit restarts that server's lag gate, so the new limit
/// counts at once (in both directions) rather than after the recovery mark.
fn apply_server_settings(snap: &mut router::choice::TopologySnapshot, config: &Config) {
    let recovery = snap.lag_recovery_ms;
    for (s, c) in snap.servers.iter_mut().zip(&config.servers) {
        s.maintenance = c.maintenance;
        s.weight = c.weight.max(1);
        let max = c.max_lag_ms.unwrap_or(config.routing.max_lag_ms);
        if s.max_lag_ms != max {
            s.max_lag_ms = max;
            s.lag_gate = router::choice::LagGate::default();
            s.lag_gate.update(s.lag_ms, max, recovery);
        }
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

/// Presented until the monitor has read a server's version.
const FALLBACK_VERSION: &str = "8.0.35-rwsplit";

/// A server's `@@version` as a handshake would carry it, marked as coming through rwsplit.
/// MariaDB 10+ servers prefix their handshake version with `5.5.5-` (old clients and the
/// replication protocol read the leading digits as the major version); drivers strip it.
pub fn handshake_version(server: &str) -> String {
    let major: u32 = server
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    if server.contains("MariaDB") && major >= 10 {
        format!("5.5.5-{server}-rwsplit")
    } else {
        format!("{server}-rwsplit")
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

#[cfg(test)]
mod test;
