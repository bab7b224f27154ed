//! When a replica is polled next. A replica that has applied everything the binlog stream has
//! seen has nothing new to tell: it is polled every `poll_interval_ms` (is it still there, still
//! replicating). The stream reads every commit as it happens, so the reader knows exactly when a
//! replica has something to apply: from then until the replica has applied it, the replica is
//! polled every `fast_poll_interval_ms`, and its new position is known at most that long after
//! it applied the commit (a read 20 ms after its write stays on a replica). When a session waits
//! for a position (a kick), the replica is polled at once and, while still behind, again after
//! as long as the wait has lasted so far (1, 2, 4… ms up to the fast interval): a replica that
//! applies a moment after the kick is seen a moment later, for a handful of extra polls per wait.
//! The cost is bounded: at most one poll per fast interval per replica while writes are in
//! flight, a few more per waiting read (a replica stuck behind commits older than [`FAST_FOR`]
//! falls back to the slow pace).

use crate::position::Watermarks;
use std::collections::BTreeMap;
use std::time::Duration;

/// How long after the newest commit a replica that is still behind is polled fast. A replica
/// behind for longer is lagging (a paused SQL thread, a delayed replica): its lag grows with
/// the wall clock and is measured as well at the slow pace, and reads that need the commit
/// go elsewhere anyway.
pub const FAST_FOR: Duration = Duration::from_secs(1);

/// The shortest gap between two polls of a replica a waiting session is behind.
pub const MIN_WAIT_POLL: Duration = Duration::from_millis(1);

/// A replica poller's pace: `slow` when caught up, `fast` while behind a recent commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pace {
    pub slow: Duration,
    pub fast: Option<Duration>,
}

impl Pace {
    /// The fast interval `sidecar.fast_poll_interval_ms` gives next to the slow one: `None`
    /// (off) for 0, or when it would not be faster than `slow`.
    pub fn fast_interval(slow: Duration, fast_ms: u64) -> Option<Duration> {
        let fast = Duration::from_millis(fast_ms);
        (fast_ms > 0 && fast < slow).then_some(fast)
    }

    /// How long after the poll that read `applied` the next one is due, when sooner than the
    /// slow pace: the replica is behind `primary` (the stream's last sequence number per
    /// stream) and the stream's newest commit arrived `since_commit` ago, within [`FAST_FOR`];
    /// sooner than the fast interval while a session has waited `since_kick` (as long again,
    /// at least [`MIN_WAIT_POLL`]). `None`: wait for the slow tick, or the next commit.
    pub fn after_poll(
        &self,
        applied: &Watermarks,
        primary: &BTreeMap<String, u64>,
        since_commit: Option<Duration>,
        since_kick: Option<Duration>,
    ) -> Option<Duration> {
        let fast = self.fast?;
        let recent = since_commit.is_some_and(|d| d < FAST_FOR);
        let behind = primary
            .iter()
            .any(|(k, seq)| applied.get(k).copied().unwrap_or(0) < *seq);
        let waited = since_kick.map_or(fast, |d| d.max(MIN_WAIT_POLL));
        (recent && behind).then_some(fast.min(waited))
    }
}

#[cfg(test)]
mod test {
    use super::*;

    fn marks(v: &[(&str, u64)]) -> BTreeMap<String, u64> {
        v.iter().map(|(k, s)| (k.to_string(), *s)).collect()
    }

    const PACE: Pace = Pace {
        slow: Duration::from_millis(100),
        fast: Some(Duration::from_millis(5)),
    };

    #[test]
    fn fast_while_behind_a_recent_commit_only() {
        let primary = marks(&[("0", 10), ("1", 3)]);
        let just = Some(Duration::from_millis(2));
        let fast = Some(Duration::from_millis(5));
        assert_eq!(
            PACE.after_poll(&marks(&[("0", 9), ("1", 3)]), &primary, just, None),
            fast
        );
        assert_eq!(
            PACE.after_poll(&marks(&[("0", 10)]), &primary, just, None),
            fast,
            "a stream the replica has not started counts as behind"
        );
        assert_eq!(
            PACE.after_poll(&marks(&[("0", 10), ("1", 3)]), &primary, just, None),
            None,
            "caught up: the slow pace"
        );
        assert_eq!(
            PACE.after_poll(&marks(&[("0", 9)]), &primary, Some(FAST_FOR), None),
            None,
            "behind an old commit: lagging, the slow pace"
        );
        assert_eq!(PACE.after_poll(&marks(&[]), &primary, None, None), None);
        assert_eq!(
            PACE.after_poll(&marks(&[]), &marks(&[]), just, None),
            None,
            "no GTIDs: nothing to compare"
        );
        // A session waits: as long again as it has waited, from 1 ms up to the fast interval.
        let behind = marks(&[("0", 9), ("1", 3)]);
        let after = |kick_ms| {
            PACE.after_poll(
                &behind,
                &primary,
                just,
                Some(Duration::from_millis(kick_ms)),
            )
        };
        assert_eq!(after(0), Some(MIN_WAIT_POLL));
        assert_eq!(after(2), Some(Duration::from_millis(2)));
        assert_eq!(after(50), fast);
        let off = Pace { fast: None, ..PACE };
        assert_eq!(
            off.after_poll(&marks(&[("0", 1)]), &primary, just, None),
            None
        );
    }

    #[test]
    fn the_fast_interval_is_off_at_zero_or_when_not_faster() {
        let slow = Duration::from_millis(100);
        assert_eq!(Pace::fast_interval(slow, 5), Some(Duration::from_millis(5)));
        assert_eq!(Pace::fast_interval(slow, 0), None);
        assert_eq!(Pace::fast_interval(slow, 100), None);
        assert_eq!(Pace::fast_interval(Duration::from_millis(3), 5), None);
    }
}
