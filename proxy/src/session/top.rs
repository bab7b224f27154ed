//! The proxy's statement statistics by digest (`GET /admin/top`): per digest, executions,
//! errors, total / mean / p99 time, rows sent to the client, and how many ran on a replica.
//!
//! Cheap on the data path: the table is split in [`SHARDS`] shards by digest hash, each under
//! its own mutex held for a few field updates (no allocation except the first time a digest
//! is seen), so sessions on different threads rarely meet. Bounded: each shard keeps at most
//! [`PER_SHARD`] digests; when a new one arrives in a full shard, the entry with the least
//! total time there (possibly the newcomer) is folded into that shard's "other" counters.

use crate::context::Context;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Shards of the table.
pub const SHARDS: usize = 16;
/// Digests kept per shard (so at most `SHARDS * PER_SHARD` in all).
pub const PER_SHARD: usize = 64;

/// Latency histogram buckets: 4 per power of two of microseconds, up to 2^36 µs (19 hours).
const BUCKETS: usize = 4 * 37;

/// What one statement cost, as the session reports it when it ends.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sample {
    pub elapsed: Duration,
    pub error: bool,
    pub rows: u64,
    pub on_replica: bool,
}

/// The counters of one digest (or of "other").
#[derive(Debug, Clone)]
pub struct Stats {
    pub count: u64,
    pub errors: u64,
    pub total_us: u64,
    pub rows: u64,
    pub replica: u64,
    hist: Box<[u32; BUCKETS]>,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            count: 0,
            errors: 0,
            total_us: 0,
            rows: 0,
            replica: 0,
            hist: Box::new([0; BUCKETS]),
        }
    }
}

impl Stats {
    fn add(&mut self, s: &Sample) {
        let us = u64::try_from(s.elapsed.as_micros()).unwrap_or(u64::MAX);
        self.count += 1;
        self.errors += u64::from(s.error);
        self.total_us = self.total_us.saturating_add(us);
        self.rows = self.rows.saturating_add(s.rows);
        self.replica += u64::from(s.on_replica);
        let b = &mut self.hist[bucket(us)];
        *b = b.saturating_add(1);
    }

    fn merge(&mut self, o: &Stats) {
        self.count += o.count;
        self.errors += o.errors;
        self.total_us = self.total_us.saturating_add(o.total_us);
        self.rows = self.rows.saturating_add(o.rows);
        self.replica += o.replica;
        for (a, b) in self.hist.iter_mut().zip(o.hist.iter()) {
            *a = a.saturating_add(*b);
        }
    }

    /// The time under which 99% of executions finished, in microseconds: the upper bound of
    /// the histogram bucket that holds the 99th percentile (within 19%).
    pub fn p99_us(&self) -> u64 {
        let want = self.count - self.count / 100;
        let mut seen = 0u64;
        for (i, n) in self.hist.iter().enumerate() {
            seen += u64::from(*n);
            if seen >= want && seen > 0 {
                return bucket_upper(i);
            }
        }
        0
    }
}

/// Bucket of a duration in µs: 0 and 1 µs in bucket 0..4, then 4 per doubling.
fn bucket(us: u64) -> usize {
    if us < 4 {
        return us as usize;
    }
    let log = 63 - us.leading_zeros() as usize; // ≥ 2
    let sub = ((us >> (log - 2)) & 3) as usize;
    (4 * (log - 1) + sub).min(BUCKETS - 1)
}

/// The largest µs value in bucket `i`.
fn bucket_upper(i: usize) -> u64 {
    if i < 4 {
        return i as u64;
    }
    let log = i / 4 + 1;
    let sub = (i % 4) as u64;
    ((4 + sub + 1) << (log - 2)) - 1
}

struct Entry {
    text: Arc<str>,
    stats: Stats,
}

#[derive(Default)]
struct Shard {
    entries: HashMap<u64, Entry>,
    other: Stats,
    /// Distinct digests folded into `other` since the last reset (an upper bound: a digest
    /// evicted twice counts twice).
    other_digests: u64,
}

/// The table of one proxy context (kept in its extension slot).
pub struct Top {
    shards: Vec<Mutex<Shard>>,
    since: Mutex<std::time::SystemTime>,
}

impl Default for Top {
    fn default() -> Self {
        Top {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            since: Mutex::new(std::time::SystemTime::now()),
        }
    }
}

/// One row of [`Top::snapshot`].
#[derive(Debug, Clone)]
pub struct Row {
    pub digest: u64,
    pub text: Arc<str>,
    pub stats: Stats,
}

/// [`Top::snapshot`]: the heaviest digests, the rest, and since when.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub rows: Vec<Row>,
    /// Everything not in `rows`: evicted digests and the digests past `n`.
    pub other: Stats,
    pub other_digests: u64,
    pub since: std::time::SystemTime,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

impl Top {
    /// The table of `ctx`.
    pub fn of(ctx: &Context) -> Arc<Top> {
        ctx.extension(Top::default)
    }

    /// Counts one execution of the statement with digest `hash` (text `text`, copied only the
    /// first time the digest is seen).
    pub fn record(&self, hash: u64, text: &str, sample: &Sample) {
        let mut shard = lock(&self.shards[(hash as usize) % SHARDS]);
        if let Some(e) = shard.entries.get_mut(&hash) {
            e.stats.add(sample);
            return;
        }
        let mut stats = Stats::default();
        stats.add(sample);
        if shard.entries.len() >= PER_SHARD {
            // Full: whichever has the least total time, the newcomer included, goes to "other".
            let lightest = shard
                .entries
                .iter()
                .min_by_key(|(_, e)| e.stats.total_us)
                .map(|(k, e)| (*k, e.stats.total_us));
            match lightest {
                Some((k, t)) if t < stats.total_us => {
                    if let Some(e) = shard.entries.remove(&k) {
                        shard.other.merge(&e.stats);
                        shard.other_digests += 1;
                    }
                }
                _ => {
                    shard.other.merge(&stats);
                    shard.other_digests += 1;
                    return;
                }
            }
        }
        shard.entries.insert(
            hash,
            Entry {
                text: Arc::from(text),
                stats,
            },
        );
    }

    /// The `n` digests with the most total time, heaviest first, and the rest as "other".
    pub fn snapshot(&self, n: usize) -> Snapshot {
        let mut rows = Vec::new();
        let mut other = Stats::default();
        let mut other_digests = 0;
        for s in &self.shards {
            let shard = lock(s);
            other.merge(&shard.other);
            other_digests += shard.other_digests;
            rows.extend(shard.entries.iter().map(|(k, e)| Row {
                digest: *k,
                text: e.text.clone(),
                stats: e.stats.clone(),
            }));
        }
        rows.sort_by(|a, b| {
            b.stats
                .total_us
                .cmp(&a.stats.total_us)
                .then(b.stats.count.cmp(&a.stats.count))
        });
        for r in rows.drain(n.min(rows.len())..) {
            other.merge(&r.stats);
            other_digests += 1;
        }
        Snapshot {
            rows,
            other,
            other_digests,
            since: *lock(&self.since),
        }
    }

    /// Forgets everything (`POST /admin/top/reset`).
    pub fn reset(&self) {
        let mut since = lock(&self.since);
        for s in &self.shards {
            *lock(s) = Shard::default();
        }
        *since = std::time::SystemTime::now();
    }
}

#[cfg(test)]
mod test {
    use super::*;

    fn sample(ms: u64) -> Sample {
        Sample {
            elapsed: Duration::from_millis(ms),
            error: false,
            rows: 1,
            on_replica: true,
        }
    }

    #[test]
    fn buckets_are_ordered_and_bound_their_values() {
        let mut last = 0;
        for us in [
            0u64,
            1,
            3,
            4,
            5,
            7,
            8,
            100,
            1_000,
            12_345,
            1 << 30,
            u64::MAX,
        ] {
            let b = bucket(us);
            assert!(b >= last, "{us}");
            last = b;
            if b < BUCKETS - 1 {
                assert!(
                    bucket_upper(b) >= us,
                    "{us} in {b} up to {}",
                    bucket_upper(b)
                );
                assert!(b == 0 || bucket_upper(b - 1) < us, "{us}");
            }
        }
    }

    #[test]
    fn counts_means_and_p99_per_digest() {
        let top = Top::default();
        for i in 0..100u64 {
            top.record(7, "SELECT ?", &sample(if i == 99 { 500 } else { 1 }));
        }
        top.record(
            8,
            "UPDATE t SET a = ?",
            &Sample {
                error: true,
                on_replica: false,
                ..sample(2)
            },
        );
        let snap = top.snapshot(10);
        assert_eq!(snap.rows.len(), 2);
        let s = &snap.rows[0];
        assert_eq!(&*s.text, "SELECT ?");
        assert_eq!(
            (s.stats.count, s.stats.rows, s.stats.replica),
            (100, 100, 100)
        );
        let p99 = s.stats.p99_us();
        assert!((1_000..1_250).contains(&p99), "{p99}");
        assert_eq!(snap.rows[1].stats.errors, 1);
        assert_eq!(snap.rows[1].stats.replica, 0);
        top.reset();
        assert!(top.snapshot(10).rows.is_empty());
    }

    #[test]
    fn memory_is_bounded_and_the_lightest_go_to_other() {
        let top = Top::default();
        let total = SHARDS * PER_SHARD * 3;
        for i in 0..total as u64 {
            top.record(i, &format!("SELECT {i}"), &sample(1 + i % 7));
        }
        let heavy = u64::MAX - 3;
        for _ in 0..5 {
            top.record(heavy, "SELECT heavy", &sample(1_000));
        }
        let snap = top.snapshot(usize::MAX);
        assert!(snap.rows.len() <= SHARDS * PER_SHARD);
        let counted: u64 = snap.rows.iter().map(|r| r.stats.count).sum::<u64>() + snap.other.count;
        assert_eq!(counted, total as u64 + 5, "nothing is lost");
        assert_eq!(&*snap.rows[0].text, "SELECT heavy");
        let top3 = top.snapshot(3);
        assert_eq!(top3.rows.len(), 3);
        assert_eq!(
            top3.rows.iter().map(|r| r.stats.count).sum::<u64>() + top3.other.count,
            counted
        );
    }
}
