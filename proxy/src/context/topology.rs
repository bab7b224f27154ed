//! What the health monitor publishes: the observed role and health of each server and the
//! router's snapshot, as one value swapped whole.

use router::choice::TopologySnapshot;
use router::config::Config;
use std::time::Instant;

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
    /// Replica SQL (apply) thread running; with the IO thread stopped because the primary is
    /// down, the replica holds all it received and may still serve reads (DESIGN §3.1).
    pub sql_running: bool,
    /// Lag behind the primary in milliseconds; `None` = unknown (never treated as 0).
    pub lag_ms: Option<u64>,
    /// The last lag the source measured and when (kept across rounds without a measurement):
    /// carried forward as an upper bound while the primary is down and the source is briefly
    /// blind.
    pub last_lag: Option<(u64, Instant)>,
    pub role: ObservedRole,
    /// The last check's error, for `/servers` and logs.
    pub last_error: Option<String>,
    /// When the last check finished (monotonic).
    pub checked_at: Option<Instant>,
    /// When the last successful check began: a server answering a check begun after an
    /// event was alive after it.
    pub answered_from: Option<Instant>,
    /// When the replica was first seen with its IO thread stopped (this spell), if it is.
    pub io_stopped_at: Option<Instant>,
}

impl Default for ServerHealth {
    fn default() -> Self {
        ServerHealth {
            reachable: false,
            read_only: None,
            replicating: None,
            threads_running: false,
            sql_running: false,
            lag_ms: None,
            last_lag: None,
            role: ObservedRole::Unknown,
            last_error: None,
            checked_at: None,
            answered_from: None,
            io_stopped_at: None,
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
    /// Two or more writable servers replicate from no one (confirmed by a fresh check of
    /// each: see `split_suspected_at`).
    pub split_brain: bool,
    /// When two writable roots were first seen. Checks of different servers are taken at
    /// different moments, so a clean switchover (old primary set read-only, new one made
    /// writable) can look like split brain for one round; it is declared only once every
    /// writable root has been checked again since. Writes are refused meanwhile.
    pub split_suspected_at: Option<Instant>,
    /// The primary is down: the last known writer stopped answering its checks and no other
    /// server is writable. Writes are refused (`write_block`); replicas that applied all it
    /// sent keep serving reads, for at most `routing.primary_down_read_ms`.
    pub primary_down: Option<PrimaryDown>,
    /// Writable servers that replicate from no one but came back from an outage while another
    /// was the writer (an old primary restarted after a failover): fenced, never written to.
    pub fenced: Vec<usize>,
}

/// Which server was the primary before it went down, and since when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrimaryDown {
    /// Index of the lost writer in `config.servers`.
    pub server: usize,
    pub since: Instant,
    /// The same moment on the wall clock, for messages.
    pub since_wall: std::time::SystemTime,
    /// Replicas may still serve reads (within `routing.primary_down_read_ms`).
    pub reads: bool,
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
        router.reindex();
        Topology {
            generation: 0,
            router,
            servers: vec![ServerHealth::default(); config.servers.len()],
            write_block: None,
            split_brain: false,
            split_suspected_at: None,
            primary_down: None,
            fenced: Vec::new(),
        }
    }

    /// Index of the server writes go to.
    pub fn primary(&self) -> Option<usize> {
        self.router.primary
    }
}
