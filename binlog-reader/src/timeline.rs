//! The commit timeline: for every transaction the reader has seen, its stream key, sequence
//! number and commit time, in binlog order. A replica's lag is "now − commit time of the oldest
//! transaction it has not applied", answered by a binary search per stream.
//!
//! Memory is bounded two ways: entries every replica has applied are pruned, and beyond
//! `capacity` the oldest are dropped (counted; a replica behind dropped entries gets a lower
//! bound and `truncated`).

use crate::position::Watermarks;
use std::collections::{BTreeMap, VecDeque};

/// One committed transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    seq: u64,
    /// Commit time, microseconds since the Unix epoch.
    commit_us: u64,
    /// Order of arrival at the reader (global across streams), to tell what existed at a poll.
    index: u64,
}

#[derive(Debug, Default)]
struct Line {
    entries: VecDeque<Entry>,
    /// Everything with seq ≤ origin happened before the timeline knows about it.
    origin: u64,
    /// Entries up to here were pruned: every replica had applied them at its latest poll.
    pruned_to: u64,
    /// Entries up to here were dropped for capacity (the newest at `dropped_commit_us`).
    dropped_to: u64,
    /// Commit time of the newest entry dropped for capacity (not pruned as applied).
    dropped_commit_us: Option<u64>,
    /// Highest seq pushed or based.
    last: u64,
}

/// Why a lag cannot be told from the timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unknown {
    /// The replica is behind where the timeline starts (it was behind when the reader started).
    BeforeTimeline,
}

/// The oldest transaction a replica has not applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Oldest {
    pub commit_us: u64,
    /// The true oldest was dropped for capacity; `commit_us` is a lower bound of the lag.
    pub truncated: bool,
}

/// See the module documentation.
#[derive(Debug)]
pub struct Timeline {
    lines: BTreeMap<String, Line>,
    len: usize,
    capacity: usize,
    next_index: u64,
    dropped_total: u64,
    duplicates_total: u64,
}

impl Timeline {
    pub fn new(capacity: usize) -> Self {
        Self {
            lines: BTreeMap::new(),
            len: 0,
            capacity: capacity.max(1),
            next_index: 0,
            dropped_total: 0,
            duplicates_total: 0,
        }
    }

    /// Declares that everything up to `seq` in `key` happened before the timeline starts
    /// (the position the stream starts from). Only raises the base of a stream seen for the first time.
    pub fn set_base(&mut self, key: &str, seq: u64) {
        if !self.lines.contains_key(key) {
            self.lines.insert(
                key.to_string(),
                Line {
                    origin: seq,
                    last: seq,
                    ..Line::default()
                },
            );
        }
    }

    /// Appends a committed transaction. Returns false (and counts it) if `seq` is not past the
    /// last one of its stream: the reader never records a transaction twice.
    pub fn push(&mut self, key: &str, seq: u64, commit_us: u64) -> bool {
        let line = match self.lines.get_mut(key) {
            Some(l) => l,
            None => self.lines.entry(key.to_string()).or_default(),
        };
        if seq <= line.last {
            self.duplicates_total += 1;
            return false;
        }
        line.last = seq;
        line.entries.push_back(Entry {
            seq,
            commit_us,
            index: self.next_index,
        });
        self.next_index += 1;
        self.len += 1;
        if self.len > self.capacity {
            self.drop_oldest();
        }
        true
    }

    fn drop_oldest(&mut self) {
        // The globally oldest entry is the one with the smallest arrival index.
        let key = self
            .lines
            .iter()
            .filter_map(|(k, l)| l.entries.front().map(|e| (e.index, k)))
            .min()
            .map(|(_, k)| k.clone());
        if let Some(line) = key.and_then(|k| self.lines.get_mut(&k)) {
            if let Some(e) = line.entries.pop_front() {
                line.dropped_to = e.seq;
                line.dropped_commit_us = Some(e.commit_us);
                self.len -= 1;
                self.dropped_total += 1;
            }
        }
    }

    /// The arrival index the next pushed entry gets: entries below it existed "now".
    pub fn next_index(&self) -> u64 {
        self.next_index
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn dropped_total(&self) -> u64 {
        self.dropped_total
    }

    pub fn duplicates_total(&self) -> u64 {
        self.duplicates_total
    }

    /// The oldest transaction not covered by `applied` among those that arrived before
    /// `cutoff` (an arrival index), or None when the replica has applied all of them.
    pub fn oldest_unapplied(
        &self,
        applied: &Watermarks,
        cutoff: u64,
    ) -> Result<Option<Oldest>, Unknown> {
        let mut oldest: Option<Oldest> = None;
        for (key, line) in &self.lines {
            // Pruned entries were applied by every replica at its latest poll, so a position
            // read earlier (the IO thread's, refreshed less often) is at least there by now.
            let done = applied.get(key).copied().unwrap_or(0).max(line.pruned_to);
            let candidate = if done < line.origin && line.dropped_to < line.origin {
                if line.origin == 0 {
                    None
                } else {
                    return Err(Unknown::BeforeTimeline);
                }
            } else if done < line.dropped_to {
                line.dropped_commit_us.map(|c| Oldest {
                    commit_us: c,
                    truncated: true,
                })
            } else {
                let i = line.entries.partition_point(|e| e.seq <= done);
                line.entries
                    .get(i)
                    .filter(|e| e.index < cutoff)
                    .map(|e| Oldest {
                        commit_us: e.commit_us,
                        truncated: false,
                    })
            };
            if let Some(c) = candidate {
                if oldest.is_none_or(|o| c.commit_us < o.commit_us) {
                    oldest = Some(c);
                }
            }
        }
        Ok(oldest)
    }

    /// Removes what every replica in `all` has applied. A replica that never reported a
    /// position holds everything (pass an empty map for it).
    pub fn prune<'a>(&mut self, all: impl IntoIterator<Item = &'a Watermarks> + Clone) {
        for (key, line) in self.lines.iter_mut() {
            let min = all
                .clone()
                .into_iter()
                .map(|w| w.get(key).copied().unwrap_or(0))
                .min();
            let Some(min) = min else { continue };
            let n = line.entries.partition_point(|e| e.seq <= min);
            if n > 0 {
                line.entries.drain(..n);
                self.len -= n;
                line.pruned_to = line.pruned_to.max(min);
            }
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;

    fn w(pairs: &[(&str, u64)]) -> Watermarks {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    #[test]
    fn oldest_unapplied_is_per_stream_and_respects_cutoff() {
        let mut t = Timeline::new(100);
        t.set_base("0", 10);
        assert!(t.push("0", 11, 1_000));
        assert!(t.push("1", 1, 1_500));
        assert!(t.push("0", 12, 2_000));
        let all = t.next_index();
        assert_eq!(
            t.oldest_unapplied(&w(&[("0", 12), ("1", 1)]), all),
            Ok(None)
        );
        let o = t.oldest_unapplied(&w(&[("0", 11)]), all).unwrap().unwrap();
        assert_eq!(
            o.commit_us, 1_500,
            "stream 1 never applied: its entry is older"
        );
        let o = t
            .oldest_unapplied(&w(&[("0", 10), ("1", 1)]), all)
            .unwrap()
            .unwrap();
        assert_eq!(o.commit_us, 1_000);
        // Entries that arrived after the poll do not count against it.
        assert_eq!(t.oldest_unapplied(&w(&[("0", 11), ("1", 1)]), 2), Ok(None));
        // Behind the start of the timeline: unknown, not zero.
        assert_eq!(
            t.oldest_unapplied(&w(&[("0", 3)]), all),
            Err(Unknown::BeforeTimeline)
        );
    }

    #[test]
    fn a_stale_position_below_what_was_pruned_is_not_unknown() {
        let mut t = Timeline::new(100);
        t.set_base("0", 10);
        for s in 11..=13 {
            t.push("0", s, s * 100);
        }
        t.prune([&w(&[("0", 12)])]);
        // An IO position read before the prune still says 10: it is at least 12 by now.
        let o = t
            .oldest_unapplied(&w(&[("0", 10)]), u64::MAX)
            .unwrap()
            .unwrap();
        assert_eq!(o.commit_us, 1_300);
    }

    #[test]
    fn duplicates_are_refused() {
        let mut t = Timeline::new(100);
        t.set_base("0", 5);
        assert!(!t.push("0", 5, 1));
        assert!(t.push("0", 6, 1));
        assert!(!t.push("0", 6, 1));
        assert_eq!(t.duplicates_total(), 2);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn prune_keeps_what_the_slowest_needs_and_capacity_bounds_memory() {
        let mut t = Timeline::new(3);
        for s in 1..=3 {
            t.push("0", s, s * 100);
        }
        t.prune([&w(&[("0", 3)]), &w(&[("0", 1)])]);
        assert_eq!(t.len(), 2);
        let o = t
            .oldest_unapplied(&w(&[("0", 1)]), u64::MAX)
            .unwrap()
            .unwrap();
        assert_eq!(o.commit_us, 200);
        for s in 4..=6 {
            t.push("0", s, s * 100);
        }
        assert_eq!(t.len(), 3);
        assert_eq!(t.dropped_total(), 2);
        let o = t
            .oldest_unapplied(&w(&[("0", 1)]), u64::MAX)
            .unwrap()
            .unwrap();
        assert!(o.truncated);
        assert_eq!(o.commit_us, 300, "lower bound: the newest dropped entry");
    }
}
