//! The replicas that may take reads, worked out once per topology change instead of once per
//! read: every test that does not depend on the clock or on load (role, reachability,
//! replication, maintenance, location, lag gate and limit) is applied by
//! [`TopologySnapshot::reindex`], and a choice scans only the survivors, sorted by location
//! rank, checking each one's breaker and load.

use super::{lag_ok, Choice, Load, ServerState, TopologySnapshot, LOCATION_UNUSED};

/// The candidate lists of a [`TopologySnapshot`]. `ChoiceIndex::default()` is "not built": the
/// choice then tests every server itself (correct, slower).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ChoiceIndex {
    built: bool,
    /// Built, and the weights' least common multiple fits in 32 bits (see `Candidate::scale`):
    /// otherwise the choice scans.
    usable: bool,
    /// Replicas healthy apart from breaker and load, lag within their own limit and gate.
    serving: Candidates,
    /// Replicas healthy apart from breaker and load with a known lag, for reads with a
    /// per-query lag limit (it replaces their own limit and gate).
    lag_known: Candidates,
    /// Replicas healthy apart from breaker and load whose lag fails (for `min_serving`).
    lag_excluded: usize,
    /// Whether the topology has any replica at all (for the fallback reason).
    any_replica: bool,
}

/// Candidates sorted by location rank, then position, with where each rank's run ends.
#[derive(Debug, Default, PartialEq, Eq)]
struct Candidates {
    list: Vec<Candidate>,
    rank_ends: Vec<usize>,
    /// Every candidate has the same weight (the common case): the k-th tie is found by
    /// position, without a search.
    same_weight: bool,
}

impl Clone for Candidates {
    fn clone(&self) -> Self {
        Self {
            list: self.list.clone(),
            rank_ends: self.rank_ends.clone(),
            same_weight: self.same_weight,
        }
    }

    fn clone_from(&mut self, source: &Self) {
        self.list.clone_from(&source.list);
        self.rank_ends.clone_from(&source.rank_ends);
        self.same_weight = source.same_weight;
    }
}

impl Clone for ChoiceIndex {
    fn clone(&self) -> Self {
        let mut index = ChoiceIndex::default();
        index.clone_from(self);
        index
    }

    /// Reuses this index's memory (see `TopologySnapshot::clone_from`).
    fn clone_from(&mut self, source: &Self) {
        self.built = source.built;
        self.usable = source.usable;
        self.serving.clone_from(&source.serving);
        self.lag_known.clone_from(&source.lag_known);
        self.lag_excluded = source.lag_excluded;
        self.any_replica = source.any_replica;
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Candidate {
    server: u32,
    /// ≥ 1.
    weight: u32,
    /// The least common multiple of all weights divided by this one: `load · scale` orders
    /// candidates exactly as `load / weight` does, with one multiplication and no division.
    scale: u32,
    rank: u16,
    /// Sum of the weights before this one in its rank (to find the k-th of tied candidates
    /// by binary search when a whole rank ties).
    weight_before: u64,
    lag_ms: u64,
}

impl Candidates {
    fn clear(&mut self) {
        self.list.clear();
        self.rank_ends.clear();
    }

    /// Sorts, and fills in the per-rank fields once the weights' multiple is known.
    fn finish(&mut self, lcm: u64) {
        self.list.sort_unstable_by_key(|c| (c.rank, c.server));
        let mut before = 0u64;
        let mut rank = None;
        for (pos, c) in self.list.iter_mut().enumerate() {
            if rank != Some(c.rank) {
                if rank.is_some() {
                    self.rank_ends.push(pos);
                }
                rank = Some(c.rank);
                before = 0;
            }
            c.weight_before = before;
            before += u64::from(c.weight);
            c.scale = u32::try_from(lcm / u64::from(c.weight)).unwrap_or(u32::MAX);
        }
        if rank.is_some() {
            self.rank_ends.push(self.list.len());
        }
        self.same_weight = self.list.windows(2).all(|w| w[0].weight == w[1].weight);
    }

    /// Whether the list holds exactly the servers of `t` that pass `keep`, with their current
    /// rank, weight and lag. Allocates nothing.
    fn lists_exactly(&self, t: &TopologySnapshot, keep: impl Fn(&ServerState) -> bool) -> bool {
        let count = (0..t.servers.len())
            .filter(|&i| t.is_replica(i) && static_ok(&t.servers[i]) && keep(&t.servers[i]))
            .count();
        let listed = |c: &Candidate| {
            let i = c.server as usize;
            t.servers.get(i).is_some_and(|s| {
                t.is_replica(i)
                    && static_ok(s)
                    && keep(s)
                    && c.rank == s.location_rank
                    && c.weight == s.weight.max(1)
                    && Some(c.lag_ms) == s.lag_ms
            })
        };
        count == self.list.len()
            && self.list.iter().all(listed)
            && self
                .list
                .windows(2)
                .all(|w| (w[0].rank, w[0].server) < (w[1].rank, w[1].server))
    }
}

impl ChoiceIndex {
    /// False until [`TopologySnapshot::reindex`] built it.
    pub fn is_built(&self) -> bool {
        self.built
    }

    fn build(&mut self, t: &TopologySnapshot) {
        self.built = true;
        self.usable = true;
        self.serving.clear();
        self.lag_known.clear();
        self.lag_excluded = 0;
        self.any_replica = false;
        let mut lcm = 1u64;
        for (i, s) in t.servers.iter().enumerate() {
            if !t.is_replica(i) {
                continue;
            }
            self.any_replica = true;
            if !static_ok(s) {
                continue;
            }
            let serving = lag_ok(s, None);
            if !serving {
                self.lag_excluded += 1;
            }
            let Some(lag_ms) = s.lag_ms else { continue };
            let weight = s.weight.max(1);
            lcm = lcm / gcd(lcm, u64::from(weight)) * u64::from(weight);
            let Ok(server) = u32::try_from(i) else {
                self.usable = false;
                continue;
            };
            if lcm > u64::from(u32::MAX) {
                // Weights too diverse for exact 64-bit keys (never in practice): scan instead.
                self.usable = false;
                lcm = 1;
            }
            let c = Candidate {
                server,
                weight,
                scale: 0,
                rank: s.location_rank,
                weight_before: 0,
                lag_ms,
            };
            self.lag_known.list.push(c);
            if serving {
                self.serving.list.push(c);
            }
        }
        self.serving.finish(lcm);
        self.lag_known.finish(lcm);
    }

    /// Whether the index still describes `t` (its servers were not changed since it was
    /// built), checked without allocating. For debug assertions.
    fn describes(&self, t: &TopologySnapshot) -> bool {
        let replicas = (0..t.servers.len()).filter(|&i| t.is_replica(i));
        let lag_excluded = replicas
            .clone()
            .filter(|&i| static_ok(&t.servers[i]) && !lag_ok(&t.servers[i], None))
            .count();
        lag_excluded == self.lag_excluded
            && (replicas.count() > 0) == self.any_replica
            && self.serving.lists_exactly(t, |s| lag_ok(s, None))
            && self.lag_known.lists_exactly(t, |s| s.lag_ms.is_some())
    }
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Healthy apart from lag, the breaker and load: what does not change between two monitor
/// rounds.
#[inline]
fn static_ok(s: &ServerState) -> bool {
    s.reachable & s.replicating & !s.maintenance & (s.location_rank != LOCATION_UNUSED)
}

impl TopologySnapshot {
    /// Rebuilds the candidate lists from `servers` and `primary`. Call it after changing
    /// either (the proxy does, once per published topology); a choice on a snapshot changed
    /// since panics in debug builds. Reuses the lists' memory.
    pub fn reindex(&mut self) {
        let mut index = std::mem::take(&mut self.index);
        index.build(self);
        self.index = index;
    }

    /// The choice over a candidate list, or `None` when it cannot decide alone (no index, or
    /// `min_serving` may have to admit lagging replicas). Picks exactly what
    /// [`choose_scan`](Self::choose_scan) picks for the same seed.
    #[inline(always)]
    pub(super) fn choose_indexed(
        &self,
        max_lag_override: Option<u64>,
        now_ms: u64,
        seed: u64,
        load: &impl Fn(usize, &ServerState) -> Load,
    ) -> Option<Choice> {
        let index = &self.index;
        if !index.usable {
            return None;
        }
        debug_assert!(
            index.describes(self),
            "servers changed since reindex(): call reindex() after changing them"
        );
        let servers = &self.servers;
        // Work per weight as one integer: in-flight, then connections, both scaled.
        let key = |c: &Candidate| -> Option<u128> {
            let i = c.server as usize;
            let s = &servers[i];
            if !s.breaker.allows(now_ms) {
                return None;
            }
            let l = load(i, s);
            let scale = u64::from(c.scale);
            Some(
                (u128::from(u64::from(l.in_flight) * scale) << 64)
                    | u128::from(u64::from(l.connections) * scale),
            )
        };
        let chosen = match max_lag_override {
            Some(limit) => {
                // The per-query limit replaces each replica's own limit and gate.
                let within = |c: &Candidate| if c.lag_ms <= limit { key(c) } else { None };
                pick(&index.lag_known, seed, within)
            }
            None => {
                if self.min_serving > 0 && index.lag_excluded > 0 {
                    let serving = index
                        .serving
                        .list
                        .iter()
                        .filter(|c| servers[c.server as usize].breaker.allows(now_ms))
                        .count();
                    if serving < self.min_serving {
                        return None;
                    }
                }
                pick(&index.serving, seed, key)
            }
        };
        Some(match chosen {
            Some(c) => Choice::Replica {
                server: c.server as usize,
                over_lag: false,
            },
            None => self.fallback(index.any_replica, now_ms),
        })
    }
}

/// The best rank with a live candidate (`key` is `None` for the others); in it, the least
/// work per weight, and among the candidates tied with it one drawn in proportion to weight.
#[inline(always)]
fn pick(
    candidates: &Candidates,
    seed: u64,
    key: impl Fn(&Candidate) -> Option<u128>,
) -> Option<&Candidate> {
    let mut start = 0;
    for &end in &candidates.rank_ends {
        let group = &candidates.list[start..end];
        // Filled in place: returning it by value cost a store-forwarding stall per choice.
        let mut ties = Ties {
            key: u128::MAX,
            first: 0,
            last: 0,
            count: 0,
            few: [0; 4],
        };
        if ties.scan(group, &key) {
            return Some(ties.pick(group, candidates.same_weight, seed, &key));
        }
        start = end;
    }
    None
}

/// The candidates of one rank tied for the least work per weight (positions in the rank).
struct Ties {
    key: u128,
    first: usize,
    last: usize,
    count: usize,
    /// The first few positions, so that a handful of ties needs no second scan.
    few: [usize; 4],
}

impl Ties {
    /// Pass 1 over one rank: false when no candidate in it is live.
    #[inline(always)]
    fn scan(&mut self, group: &[Candidate], key: &impl Fn(&Candidate) -> Option<u128>) -> bool {
        let t = self;
        for (pos, c) in group.iter().enumerate() {
            let Some(k) = key(c) else { continue };
            if k > t.key {
                continue;
            }
            if k < t.key {
                (t.key, t.first, t.count) = (k, pos, 0);
            }
            if t.count < t.few.len() {
                t.few[t.count] = pos;
            }
            t.count += 1;
            t.last = pos;
        }
        t.count > 0
    }

    /// Pass 2: one draw in [0, total tied weight), and the tie it falls in, counting in
    /// position order (as the scan does).
    #[inline(always)]
    fn pick<'a>(
        &self,
        group: &'a [Candidate],
        same_weight: bool,
        seed: u64,
        key: &impl Fn(&Candidate) -> Option<u128>,
    ) -> &'a Candidate {
        let first = &group[self.first];
        if self.count == 1 {
            return first;
        }
        if self.count <= self.few.len() {
            let few = &self.few[..self.count];
            let total = few.iter().map(|&pos| u64::from(group[pos].weight)).sum();
            let mut r = super::pick::draw(seed, total);
            for &pos in few {
                let c = &group[pos];
                if r < u64::from(c.weight) {
                    return c;
                }
                r -= u64::from(c.weight);
            }
            return first;
        }
        let run = &group[self.first..=self.last];
        let last = &group[self.last];
        if self.count == run.len() && same_weight {
            // Every candidate from the first tie to the last is live and tied (the whole rank,
            // when idle), all of weight w: a draw in [0, count·w) falls in tie r / w, and
            // ⌊⌊x·n·w / 2⁶⁴⌋ / w⌋ = ⌊x·n / 2⁶⁴⌋, so draw the position directly.
            return &run[super::pick::draw(seed, run.len() as u64) as usize];
        }
        if self.count == run.len() {
            // The same with different weights: the weights before each give the total and, by
            // binary search, the drawn one.
            let base = first.weight_before;
            let total = last.weight_before - base + u64::from(last.weight);
            let r = super::pick::draw(seed, total);
            let k = run.partition_point(|c| c.weight_before - base + u64::from(c.weight) <= r);
            return &run[k.min(run.len() - 1)];
        }
        let tied = |c: &&Candidate| key(c) == Some(self.key);
        let total = run.iter().filter(tied).map(|c| u64::from(c.weight)).sum();
        let mut r = super::pick::draw(seed, total);
        for c in run.iter().filter(tied) {
            if r < u64::from(c.weight) {
                return c;
            }
            r -= u64::from(c.weight);
        }
        first
    }
}
