//! Replica choice (DESIGN.md §3) over a snapshot of the topology: health, lag with hysteresis,
//! location preference with a fallback order, `min_serving`, weighted least outstanding work with
//! a random tie break, circuit breakers. Pure: time and randomness are passed in, and a choice
//! allocates nothing. The tests that hold between two topology changes are applied once by
//! [`TopologySnapshot::reindex`] (`index.rs`); the weighted pick is in `pick.rs`.

mod breaker;
mod index;
mod lag;
mod pick;

pub use breaker::{BreakerPolicy, BreakerState, CircuitBreaker};
pub use index::ChoiceIndex;
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
    /// Index of the primary in [`TopologySnapshot::servers`] (or, while no writer is known,
    /// of the last one: [`TopologySnapshot::last_writer`]), and why.
    Primary {
        server: usize,
        reason: FallbackReason,
    },
    /// Tell the client: no server can serve the read.
    NoServer(NoServerReason),
}

/// The topology as the proxy sees it, plus the routing policy from the configuration.
/// `clone_from` reuses the target's memory (the proxy refills a scratch copy per read).
#[derive(Debug)]
pub struct TopologySnapshot {
    pub servers: Vec<ServerState>,
    /// Index into `servers` of the current writer; `None` while unknown or split-brained.
    pub primary: Option<usize>,
    /// While `primary` is `None` with every server answering (the middle of an external
    /// failover: the old writer already read-only and the new one not yet seen writable, or
    /// both seen writable until each is checked again), the server that was the writer last.
    /// Reads that no replica can take go there as they would to the primary: it holds all
    /// that was written through the proxy, and during a failover the replicas are out of the
    /// rotation for moments (`STOP SLAVE`, `CHANGE MASTER`). `None` once a writer is known.
    pub last_writer: Option<usize>,
    pub lag_recovery_ms: u64,
    pub min_serving: usize,
    pub no_replica: NoReplicaPolicy,
    pub breaker: BreakerPolicy,
    /// The replicas that may take reads, derived from `servers` and `primary` by
    /// [`reindex`](Self::reindex) so that a choice does not test every server.
    /// `ChoiceIndex::default()` (not built) is always correct, only slower.
    pub index: ChoiceIndex,
}

impl Clone for TopologySnapshot {
    fn clone(&self) -> Self {
        Self {
            servers: self.servers.clone(),
            primary: self.primary,
            last_writer: self.last_writer,
            lag_recovery_ms: self.lag_recovery_ms,
            min_serving: self.min_serving,
            no_replica: self.no_replica,
            breaker: self.breaker,
            index: self.index.clone(),
        }
    }

    /// Field by field, so that the vectors keep their allocations (derived `Clone` would
    /// replace them).
    fn clone_from(&mut self, source: &Self) {
        self.servers.clone_from(&source.servers);
        self.primary = source.primary;
        self.last_writer = source.last_writer;
        self.lag_recovery_ms = source.lag_recovery_ms;
        self.min_serving = source.min_serving;
        self.no_replica = source.no_replica;
        self.breaker = source.breaker;
        self.index.clone_from(&source.index);
    }
}

/// Outstanding work on a server, for callers that keep live counters outside the snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Load {
    pub in_flight: u32,
    pub connections: u32,
}

impl TopologySnapshot {
    /// The configured topology with every server unreachable and its lag unknown until the
    /// monitor reports. Location ranks: the proxy's own location (or every server when the proxy
    /// has none) is 0; `routing.location_fallback[i]` is `i + 1`; other locations are used after
    /// all listed ones when the fallback list is empty, and never when it is not.
    pub fn from_config(config: &Config) -> Self {
        let r = &config.routing;
        let servers = config
            .servers
            .iter()
            .enumerate()
            .map(|(idx, s)| ServerState {
                idx,
                role: s.role,
                location_rank: location_rank(
                    config.location.as_deref(),
                    &r.location_fallback,
                    s.location.as_deref(),
                ),
                weight: s.weight.max(1),
                reachable: false,
                replicating: false,
                maintenance: s.maintenance,
                lag_ms: None,
                max_lag_ms: s.max_lag_ms.unwrap_or(r.max_lag_ms),
                lag_gate: LagGate::default(),
                in_flight: 0,
                connections: 0,
                breaker: CircuitBreaker::new(),
            })
            .collect();
        Self {
            servers,
            primary: config.servers.iter().position(|s| s.role == Role::Primary),
            last_writer: None,
            lag_recovery_ms: r.lag_recovery_ms,
            min_serving: r.min_serving,
            no_replica: r.no_replica,
            breaker: BreakerPolicy {
                failures: r.breaker_failures,
                cooldown_ms: r.breaker_cooldown_ms,
            },
            index: ChoiceIndex::default(),
        }
    }

    /// Picks the server for a read, using the load counters in the snapshot. `max_lag_override`
    /// comes from a query hint; `now_ms` is any monotonic millisecond clock (for breaker
    /// cool-downs); `seed` drives the random tie break (pass a fresh random value per call).
    pub fn choose_replica(&self, max_lag_override: Option<u64>, now_ms: u64, seed: u64) -> Choice {
        self.choose(max_lag_override, now_ms, seed, |_, s| Load {
            in_flight: s.in_flight,
            connections: s.connections,
        })
    }

    /// Like [`choose_replica`](Self::choose_replica) with live load counters from `load(i)`
    /// (called up to twice per server: counters that move meanwhile only skew the tie break).
    ///
    /// Candidates are replicas that are reachable, replicating, not in maintenance, whose
    /// breaker allows traffic, in a used location, and whose known lag passes the gate and the
    /// limit (the override replaces the limit and the gate for this query). The best location
    /// rank wins; within it, the least in-flight work per weight, then fewest connections per
    /// weight; remaining ties are broken at random in proportion to weight. When fewer than
    /// `min_serving` replicas pass the lag test (and no override is given), the least-lagged
    /// others are admitted too, flagged `over_lag`.
    pub fn choose_replica_by(
        &self,
        max_lag_override: Option<u64>,
        now_ms: u64,
        seed: u64,
        load: impl Fn(usize) -> Load,
    ) -> Choice {
        self.choose(max_lag_override, now_ms, seed, |i, _| load(i))
    }

    #[inline(always)]
    fn choose(
        &self,
        max_lag_override: Option<u64>,
        now_ms: u64,
        seed: u64,
        load: impl Fn(usize, &ServerState) -> Load,
    ) -> Choice {
        if let Some(choice) = self.choose_indexed(max_lag_override, now_ms, seed, &load) {
            return choice;
        }
        self.choose_scan(max_lag_override, now_ms, seed, &load)
    }

    /// The choice testing every server: without an index, or when `min_serving` may admit
    /// lagging replicas. The reference the index must agree with (see the tests).
    #[inline(never)]
    fn choose_scan(
        &self,
        max_lag_override: Option<u64>,
        now_ms: u64,
        seed: u64,
        load: &impl Fn(usize, &ServerState) -> Load,
    ) -> Choice {
        // Never drain below min_serving because of lag alone: admit the least lagged (unknown
        // lag last) up to this (lag, position) key, flagged over_lag.
        let mut admit_up_to: Option<(u64, usize)> = None;
        if max_lag_override.is_none() && self.min_serving > 0 {
            let (mut lag_ok_count, mut lag_excluded) = (0usize, 0usize);
            for (i, s) in self.servers.iter().enumerate() {
                if self.is_replica(i) && self.base_ok(s, now_ms) {
                    if lag_ok(s, None) {
                        lag_ok_count += 1;
                    } else {
                        lag_excluded += 1;
                    }
                }
            }
            if lag_ok_count < self.min_serving && lag_excluded > 0 {
                // The k-th least lagged, k = the shortfall, without allocating.
                for _ in 0..(self.min_serving - lag_ok_count).min(lag_excluded) {
                    let mut next: Option<(u64, usize)> = None;
                    for (i, s) in self.servers.iter().enumerate() {
                        if !self.is_replica(i) || !self.base_ok(s, now_ms) || lag_ok(s, None) {
                            continue;
                        }
                        let key = lag_key(s, i);
                        if admit_up_to.is_some_and(|l| key <= l) {
                            continue;
                        }
                        if next.is_none_or(|n| key < n) {
                            next = Some(key);
                        }
                    }
                    let Some(key) = next else { break };
                    admit_up_to = Some(key);
                }
            }
        }
        let mut any_replica = false;
        for i in 0..self.servers.len() {
            any_replica |= self.is_replica(i);
        }
        let offers = || {
            self.servers.iter().enumerate().filter_map(move |(i, s)| {
                if !self.is_replica(i) || !self.base_ok(s, now_ms) {
                    return None;
                }
                let over_lag = !lag_ok(s, max_lag_override);
                if over_lag && admit_up_to.is_none_or(|up_to| lag_key(s, i) > up_to) {
                    return None;
                }
                Some(pick::Offer {
                    server: i,
                    rank: s.location_rank,
                    weight: s.weight.max(1),
                    load: load(i, s),
                    over_lag,
                })
            })
        };
        match pick::pick(seed, offers) {
            Some((server, over_lag)) => Choice::Replica { server, over_lag },
            None => self.fallback(any_replica, now_ms),
        }
    }

    /// No replica qualifies: the primary (or while no writer is known, the last one) or an
    /// error, by policy.
    fn fallback(&self, any_replica: bool, now_ms: u64) -> Choice {
        let reason = if any_replica {
            FallbackReason::NoHealthyReplica
        } else {
            FallbackReason::NoReplicas
        };
        match (self.no_replica, self.primary.or(self.last_writer)) {
            (NoReplicaPolicy::Error, _) => Choice::NoServer(NoServerReason::NoReplicaPolicyError),
            (NoReplicaPolicy::Primary, Some(p))
                if self
                    .servers
                    .get(p)
                    .is_some_and(|s| s.reachable && s.breaker.allows(now_ms)) =>
            {
                Choice::Primary { server: p, reason }
            }
            (NoReplicaPolicy::Primary, _) => Choice::NoServer(NoServerReason::PrimaryUnavailable),
        }
    }

    #[inline]
    fn is_replica(&self, i: usize) -> bool {
        self.primary != Some(i) && self.servers[i].role == Role::Replica
    }

    /// Healthy apart from lag.
    #[inline]
    fn base_ok(&self, s: &ServerState, now_ms: u64) -> bool {
        // Non-short-circuit `&`: one branch instead of five on the hot loop.
        s.reachable
            & s.replicating
            & !s.maintenance
            & (s.location_rank != LOCATION_UNUSED)
            & s.breaker.allows(now_ms)
    }

    /// Feeds a new lag measurement through the server's hysteresis gate (and refreshes the
    /// index if it was built).
    pub fn update_lag(&mut self, server: usize, lag_ms: Option<u64>) {
        let recovery = self.lag_recovery_ms;
        if let Some(s) = self.servers.get_mut(server) {
            s.lag_ms = lag_ms;
            s.lag_gate.update(lag_ms, s.max_lag_ms, recovery);
        }
        if self.index.is_built() {
            self.reindex();
        }
    }

    /// Takes out of this snapshot's choice every server `keep(i)` rejects (`i` indexes
    /// `servers`), as if unreachable: for one read that only some replicas may serve
    /// (read-your-writes). The primary (or the last writer) stays the fallback.
    pub fn retain_servers(&mut self, keep: impl Fn(usize) -> bool) {
        let primary = self.primary.or(self.last_writer);
        for (i, s) in self.servers.iter_mut().enumerate() {
            if Some(i) != primary && !keep(i) {
                s.reachable = false;
            }
        }
        if self.index.is_built() {
            self.reindex();
        }
    }

    /// Records a successful connect/query on a server (closes its breaker).
    pub fn record_success(&mut self, server: usize) {
        if let Some(s) = self.servers.get_mut(server) {
            s.breaker.record_success();
        }
    }

    /// Records a connect/IO failure on a server at `now_ms` (may open its breaker).
    pub fn record_failure(&mut self, server: usize, now_ms: u64) {
        let policy = self.breaker;
        if let Some(s) = self.servers.get_mut(server) {
            s.breaker.record_failure(now_ms, &policy);
        }
    }

    /// Replicas that currently pass every test including lag (for `min_serving` reporting).
    pub fn serving_replicas(&self, now_ms: u64) -> usize {
        (0..self.servers.len())
            .filter(|&i| {
                self.is_replica(i)
                    && self.base_ok(&self.servers[i], now_ms)
                    && lag_ok(&self.servers[i], None)
            })
            .count()
    }
}

#[inline]
fn lag_ok(s: &ServerState, max_lag_override: Option<u64>) -> bool {
    // Unknown lag never qualifies; an override replaces both the limit and the gate.
    let gate_ok = max_lag_override.is_some() | s.lag_gate.serving();
    let limit = max_lag_override.unwrap_or(s.max_lag_ms);
    s.lag_ms.is_some() & gate_ok & (s.lag_ms.unwrap_or(u64::MAX) <= limit)
}

/// Order in which `min_serving` admits lagging replicas: least lag first, unknown last.
#[inline]
fn lag_key(s: &ServerState, i: usize) -> (u64, usize) {
    (s.lag_ms.unwrap_or(u64::MAX), i)
}

fn location_rank(own: Option<&str>, fallback: &[String], server: Option<&str>) -> u16 {
    let Some(own) = own else { return 0 };
    if server == Some(own) {
        return 0;
    }
    if let Some(pos) = fallback.iter().position(|f| Some(f.as_str()) == server) {
        return u16::try_from(pos + 1).unwrap_or(LOCATION_UNUSED - 1);
    }
    if fallback.is_empty() {
        1
    } else {
        LOCATION_UNUSED
    }
}

#[cfg(test)]
mod test;
