//! Replica choice (DESIGN.md §3) over a snapshot of the topology: health, lag with hysteresis,
//! location preference with a fallback order, `min_serving`, weighted least outstanding work with
//! a random tie break, circuit breakers. Pure: time and randomness are passed in, and a choice
//! allocates nothing.

mod breaker;
mod lag;

pub use breaker::{BreakerPolicy, BreakerState, CircuitBreaker};
pub use lag::LagGate;

use crate::config::{Config, NoReplicaPolicy, Role};

/// What the proxy knows about one server right now.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerState {
    /// Index into the configuration's `servers` (stable across snapshots).
    pub idx: usize,
    pub role: Role,
    /// Preference of this server's location for this proxy: 0 = own location, 1.. = position in
    /// `routing.location_fallback` + 1, [`LOCATION_UNUSED`] = never read from.
    pub location_rank: u16,
    /// Relative share of reads (≥ 1).
    pub weight: u32,
    /// The monitor can connect to it.
    pub reachable: bool,
    /// IO and SQL replication threads are running (replicas only).
    pub replicating: bool,
    /// Drained by configuration.
    pub maintenance: bool,
    /// Replication lag; `None` = unknown, which is not healthy.
    pub lag_ms: Option<u64>,
    /// The lag limit for this server (its own `max_lag_ms` or `routing.max_lag_ms`).
    pub max_lag_ms: u64,
    /// Lag hysteresis: whether the server is in the read rotation as far as lag goes.
    pub lag_gate: LagGate,
    /// Queries running on it through this proxy.
    pub in_flight: u32,
    /// Open backend connections from this proxy.
    pub connections: u32,
    pub breaker: CircuitBreaker,
}

/// `location_rank` of a location this proxy never reads from.
pub const LOCATION_UNUSED: u16 = u16::MAX;

/// Why a read went to the primary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FallbackReason {
    /// The topology has no replica at all.
    NoReplicas,
    /// Replicas exist but none qualifies (down, not replicating, lagging, ejected, drained).
    NoHealthyReplica,
}

impl FallbackReason {
    /// A stable label for `rwsplit_routing_fallbacks_total{reason}`.
    pub fn as_str(&self) -> &'static str {
        match self {
            FallbackReason::NoReplicas => "no_replicas",
            FallbackReason::NoHealthyReplica => "no_healthy_replica",
        }
    }
}

/// Why no server can take a read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NoServerReason {
    /// No replica qualifies and `routing.no_replica: error`.
    NoReplicaPolicyError,
    /// No replica qualifies and the primary is unknown, unreachable or ejected.
    PrimaryUnavailable,
}

impl NoServerReason {
    pub fn as_str(&self) -> &'static str {
        match self {
            NoServerReason::NoReplicaPolicyError => "no_replica_policy_error",
            NoServerReason::PrimaryUnavailable => "primary_unavailable",
        }
    }
}

/// The answer for one read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    /// Index into [`TopologySnapshot::servers`]. `over_lag` is true when the replica is beyond
    /// its lag limit but kept because of `min_serving` (report it).
    Replica { server: usize, over_lag: bool },
    /// Index of the primary in [`TopologySnapshot::servers`], and why.
    Primary { server: usize, reason: FallbackReason },
    /// Tell the client: no server can serve the read.
    NoServer(NoServerReason),
}

/// The topology as the proxy sees it, plus the routing policy from the configuration.
#[derive(Debug, Clone)]
pub struct TopologySnapshot {
    pub servers: Vec<ServerState>,
    /// Index into `servers` of the current writer; `None` while unknown or split-brained.
    pub primary: Option<usize>,
    pub lag_recovery_ms: u64,
    pub min_serving: usize,
    pub no_replica: NoReplicaPolicy,
    pub breaker: BreakerPolicy,
}

impl TopologySnapshot {
    /// The configured topology with every server unreachable and its lag unknown until the
    /// monitor reports.
    pub fn from_config(config: &Config) -> Self {
        let _ = config;
        Self {
            servers: Vec::new(),
            primary: None,
            lag_recovery_ms: 0,
            min_serving: 0,
            no_replica: NoReplicaPolicy::Primary,
            breaker: BreakerPolicy::default(),
        }
    }

    /// Picks the server for a read. `max_lag_override` comes from a query hint; `now_ms` is any
    /// monotonic millisecond clock (for breaker cool-downs); `seed` drives the random tie break
    /// (pass a per-call random or counter value).
    pub fn choose_replica(&self, max_lag_override: Option<u64>, now_ms: u64, seed: u64) -> Choice {
        let _ = (max_lag_override, now_ms, seed);
        Choice::NoServer(NoServerReason::PrimaryUnavailable)
    }

    /// Feeds a new lag measurement through the server's hysteresis gate.
    pub fn update_lag(&mut self, server: usize, lag_ms: Option<u64>) {
        let _ = (server, lag_ms);
    }

    /// Records a successful connect/query on a server (closes a half-open breaker).
    pub fn record_success(&mut self, server: usize) {
        let _ = server;
    }

    /// Records a connect/IO failure on a server at `now_ms` (may open its breaker).
    pub fn record_failure(&mut self, server: usize, now_ms: u64) {
        let _ = (server, now_ms);
    }
}
