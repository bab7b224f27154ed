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
    Primary {
        server: usize,
        reason: FallbackReason,
    },
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

/// Outstanding work on a server, for callers that keep live counters outside the snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Load {
    pub in_flight: u32,
    pub connections: u32,
}

/// The best candidate so far in one choice, as plain fields (the hot loop stays branch-light).
struct Picker {
    server: usize,
    rank: u16,
    in_flight: u64,
    connections: u64,
    weight: u64,
    over_lag: bool,
    /// Sum of weights of the candidates tied with `server` (weighted reservoir sampling).
    tie_weight: u64,
    rng: fastrand::Rng,
}

impl Picker {
    const NONE: usize = usize::MAX;

    fn new(seed: u64) -> Self {
        Self {
            server: Self::NONE,
            rank: LOCATION_UNUSED,
            in_flight: 0,
            connections: 0,
            weight: 1,
            over_lag: false,
            tie_weight: 0,
            // Callers may pass a counter: mix it first (splitmix64) so consecutive seeds give
            // independent draws (raw consecutive wyrand seeds skewed the tie break).
            rng: fastrand::Rng::with_seed(splitmix64(seed)),
        }
    }

    /// True when a server of this rank cannot beat the current best.
    #[inline(always)]
    fn worse_rank(&self, rank: u16) -> bool {
        rank > self.rank
    }

    /// True when a candidate with this rank, weight and load would lose to the current best
    /// even if healthy (ties are not losses: they enter the random draw).
    #[inline(always)]
    fn cannot_beat(&self, rank: u16, weight: u32, load: Load) -> bool {
        if self.server == Self::NONE || rank < self.rank {
            return false;
        }
        if rank > self.rank {
            return true;
        }
        let w = u64::from(weight.max(1));
        let (x, y) = (u64::from(load.in_flight) * self.weight, self.in_flight * w);
        if x != y {
            return x > y;
        }
        u64::from(load.connections) * self.weight > self.connections * w
    }

    /// Offers a candidate: better location, then less in-flight work per weight, then fewer
    /// connections per weight; ties are broken at random in proportion to weight.
    #[inline(always)]
    fn offer(&mut self, server: usize, rank: u16, weight: u32, load: Load, over_lag: bool) {
        let w = u64::from(weight.max(1));
        let inf = u64::from(load.in_flight);
        let conn = u64::from(load.connections);
        let take = if self.server == Self::NONE || rank < self.rank {
            true
        } else {
            // a/wa < b/wb  ⇔  a·wb < b·wa (no division, no floats).
            let (x, y) = (inf * self.weight, self.in_flight * w);
            if x != y {
                x < y
            } else {
                let (x, y) = (conn * self.weight, self.connections * w);
                if x != y {
                    x < y
                } else {
                    self.tie_weight += w;
                    if self.rng.u64(0..self.tie_weight) < w {
                        self.set(server, rank, w, inf, conn, over_lag);
                    }
                    return;
                }
            }
        };
        if take {
            self.set(server, rank, w, inf, conn, over_lag);
            self.tie_weight = w;
        }
    }

    #[inline(always)]
    fn set(&mut self, server: usize, rank: u16, w: u64, inf: u64, conn: u64, over_lag: bool) {
        self.server = server;
        self.rank = rank;
        self.weight = w;
        self.in_flight = inf;
        self.connections = conn;
        self.over_lag = over_lag;
    }
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
            lag_recovery_ms: r.lag_recovery_ms,
            min_serving: r.min_serving,
            no_replica: r.no_replica,
            breaker: BreakerPolicy {
                failures: r.breaker_failures,
                cooldown_ms: r.breaker_cooldown_ms,
            },
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

    /// Like [`choose_replica`](Self::choose_replica) with live load counters from `load(i)`.
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
        let mut best = Picker::new(seed);
        let mut any_replica = false;
        let mut lag_ok_count = 0usize;
        let mut lag_excluded = 0usize;
        // Lag counts only matter for min_serving; without it a worse location is skipped at once.
        let count_lag = max_lag_override.is_none() && self.min_serving > 0;
        for (i, s) in self.servers.iter().enumerate() {
            if s.role != Role::Replica || self.primary == Some(i) {
                continue;
            }
            any_replica = true;
            if !count_lag && best.cannot_beat(s.location_rank, s.weight, load(i, s)) {
                // Branch and bound: a server that would lose even if healthy needs no health
                // test, so the full test runs only for the few that could win.
                continue;
            }
            if !self.base_ok(s, now_ms) {
                continue;
            }
            if !lag_ok(s, max_lag_override) {
                lag_excluded += 1;
                continue;
            }
            lag_ok_count += 1;
            if best.worse_rank(s.location_rank) {
                continue;
            }
            best.offer(i, s.location_rank, s.weight, load(i, s), false);
        }
        if count_lag && lag_ok_count < self.min_serving && lag_excluded > 0 {
            // Never drain below min_serving because of lag alone: admit the least lagged
            // (unknown lag last), in order, without allocating.
            let mut last_key: Option<(u64, usize)> = None;
            for _ in 0..(self.min_serving - lag_ok_count).min(lag_excluded) {
                let mut next: Option<(u64, usize)> = None;
                for (i, s) in self.servers.iter().enumerate() {
                    if !self.is_replica(i) || !self.base_ok(s, now_ms) || lag_ok(s, None) {
                        continue;
                    }
                    let key = (s.lag_ms.unwrap_or(u64::MAX), i);
                    if last_key.is_some_and(|l| key <= l) {
                        continue;
                    }
                    if next.is_none_or(|n| key < n) {
                        next = Some(key);
                    }
                }
                let Some(key) = next else { break };
                last_key = Some(key);
                let s = &self.servers[key.1];
                best.offer(key.1, s.location_rank, s.weight, load(key.1, s), true);
            }
        }
        if best.server != Picker::NONE {
            return Choice::Replica {
                server: best.server,
                over_lag: best.over_lag,
            };
        }
        let reason = if any_replica {
            FallbackReason::NoHealthyReplica
        } else {
            FallbackReason::NoReplicas
        };
        match (self.no_replica, self.primary) {
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

    /// Feeds a new lag measurement through the server's hysteresis gate.
    pub fn update_lag(&mut self, server: usize, lag_ms: Option<u64>) {
        let recovery = self.lag_recovery_ms;
        if let Some(s) = self.servers.get_mut(server) {
            s.lag_ms = lag_ms;
            s.lag_gate.update(lag_ms, s.max_lag_ms, recovery);
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

fn splitmix64(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
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
