//! State shared between the binlog stream task, the replica pollers and readers of snapshots,
//! and the lag arithmetic that combines them.

use crate::decode::Gtid;
use crate::metrics::Metrics;
use crate::position::Watermarks;
use crate::snapshot::{LagSnapshot, PrimaryStatus, ReplicaLag};
use crate::timeline::Timeline;
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How many recent transactions are kept for inspection (tests, debugging).
pub const RECENT_CAPACITY: usize = 10_000;

/// Locks a mutex, recovering the data if a panicking thread poisoned it (the data is plain
/// bookkeeping that stays consistent between statements).
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Microseconds since the Unix epoch.
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// A transaction as recorded, for [`crate::LagHandle::recent_transactions`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transaction {
    /// `domain-server-seq` (MariaDB), `uuid:n` (MySQL), or None when the primary writes no GTIDs.
    pub gtid: Option<String>,
    pub file: String,
    /// Binlog position just after the transaction.
    pub end_pos: u64,
    /// Commit time used for lag, µs since the Unix epoch.
    pub commit_us: u64,
    /// Whether the commit time came from the arrival instant (live) rather than the event.
    pub live: bool,
}

/// The binlog stream's state.
#[derive(Debug, Default)]
pub struct PrimaryState {
    pub connected: bool,
    pub caught_up: bool,
    /// Timeline arrival index when the stream last caught up.
    pub caught_up_index: u64,
    pub file: String,
    pub pos: u64,
    /// MariaDB: the last GTID per domain (what `@slave_connect_state` resumes from).
    pub gtid_state: BTreeMap<u32, Gtid>,
    /// Last sequence number per stream key (MariaDB domain / MySQL source).
    pub gtid_seq: BTreeMap<String, u64>,
    /// Position after the last complete transaction (resume point without GTIDs).
    pub resume_file: String,
    pub resume_pos: u64,
    pub last_event_at: Option<Instant>,
    /// When the last transaction read live (caught up) committed, as it arrived: replica
    /// pollers hurry while a replica is behind a recent commit.
    pub last_commit_at: Option<Instant>,
    pub error: Option<String>,
    /// The last session ended caught up: the timeline holds everything the primary sent
    /// until the stream dropped. Cleared when a new session opens.
    pub complete_at_loss: bool,
    /// Since when (wall clock, ms since the epoch) the primary refuses or ignores connections,
    /// after a session that ended caught up. Cleared when a session opens.
    pub unreachable_since_ms: Option<u64>,
}

/// One replica's last poll results.
#[derive(Debug, Default)]
pub struct ReplicaState {
    pub reachable: bool,
    pub applied: Option<Watermarks>,
    pub applied_text: Option<String>,
    /// Timeline arrival index at the moment the applied position was asked for.
    pub cutoff: u64,
    pub polled_at_us: u64,
    pub polled_instant: Option<Instant>,
    /// When the query that read `applied` was sent: the replica had applied at least
    /// `applied` at that instant (read-your-writes reasons about "applied by then").
    pub asked_instant: Option<Instant>,
    pub io_applied: Option<Watermarks>,
    /// When the status query that read `io_applied` was sent: the replica had received at
    /// least that much by then (a write quorum on `received`).
    pub io_asked_instant: Option<Instant>,
    pub io_cutoff: u64,
    pub io_polled_at_us: u64,
    pub io_running: Option<bool>,
    pub sql_running: Option<bool>,
    pub seconds_behind_master: Option<u64>,
    pub error: Option<String>,
}

/// Settings derived from the configuration.
#[derive(Debug)]
pub struct Settings {
    pub poll_interval: Duration,
    /// `sidecar.fast_poll_interval_ms`: the poll interval while a replica is behind a recent
    /// commit (`None`: off).
    pub fast_poll_interval: Option<Duration>,
    /// How long a poll query may take before the replica counts as unreadable.
    pub poll_timeout: Duration,
    /// Requested heartbeat period; a stream silent for 3× this is considered dead.
    pub heartbeat: Duration,
    pub server_id: u32,
    /// Set until the first stream opens: start from the slowest replica's position (MariaDB).
    pub start_from_replicas: std::sync::atomic::AtomicBool,
    /// This reader replaces one with the same server id (a reload, the writer moved back):
    /// see [`crate::stream::HANDOVER_GRACE`].
    pub replaces_same_id: std::sync::atomic::AtomicBool,
}

/// Everything shared, behind one Arc. Locks are held for a few statements, never across an
/// await, and when nested always in the order primary → timeline → replica slot (a replica
/// slot is never held while taking another lock), so no two tasks can wait on each other.
pub struct Shared {
    pub settings: Settings,
    pub primary_name: String,
    pub timeline: Mutex<Timeline>,
    pub primary: Mutex<PrimaryState>,
    pub replicas: Vec<(String, Mutex<ReplicaState>)>,
    pub recent: Mutex<VecDeque<Transaction>>,
    pub metrics: Metrics,
    /// Bumped after every replica poll: sessions waiting for a replica to apply their
    /// position wake on it instead of sleeping a fixed time.
    pub polled: tokio::sync::watch::Sender<u64>,
    /// Bumped to ask every replica poll loop for a poll now (a session waits for a position).
    pub kick: tokio::sync::watch::Sender<u64>,
    /// Until this time (µs since the epoch) every poll also reads the replication status, so
    /// received positions are as fresh as applied ones: a write quorum on `received` waits.
    pub status_wanted_until_us: std::sync::atomic::AtomicU64,
    /// Bumped for every transaction the stream reads live: replicas now have something to
    /// apply, and their pollers hurry until they have.
    pub committed: tokio::sync::watch::Sender<u64>,
}

impl Shared {
    /// Empty state for a primary and the named replicas.
    pub fn new(
        settings: Settings,
        primary_name: String,
        replicas: Vec<String>,
        capacity: usize,
    ) -> Self {
        Shared {
            settings,
            primary_name,
            timeline: Mutex::new(Timeline::new(capacity)),
            primary: Mutex::default(),
            replicas: replicas
                .into_iter()
                .map(|n| (n, Mutex::default()))
                .collect(),
            recent: Mutex::default(),
            metrics: Metrics::new(),
            polled: tokio::sync::watch::channel(0).0,
            kick: tokio::sync::watch::channel(0).0,
            status_wanted_until_us: std::sync::atomic::AtomicU64::new(0),
            committed: tokio::sync::watch::channel(0).0,
        }
    }

    /// Whether commit times are being read live right now.
    fn stream_live(&self, p: &PrimaryState) -> bool {
        p.connected
            && p.caught_up
            && p.last_event_at
                .is_some_and(|t| t.elapsed() < self.settings.heartbeat * 3)
    }

    /// The primary is down (DESIGN §3.1): the stream ended caught up and the primary cannot
    /// be reached since. Its binlog then ends where the timeline ends, so a replica that is
    /// not receiving either (IO thread stopped) is measured against the timeline as it is.
    fn primary_down(&self, p: &PrimaryState) -> bool {
        !p.connected && p.complete_at_loss && p.unreachable_since_ms.is_some()
    }

    /// Computes every replica's lag as of now.
    pub fn snapshot(&self) -> LagSnapshot {
        let now = now_us();
        let p = lock(&self.primary);
        let live = self.stream_live(&p);
        let down = self.primary_down(&p);
        let caught_up_index = p.caught_up_index;
        let primary = PrimaryStatus {
            name: self.primary_name.clone(),
            connected: p.connected,
            caught_up: p.caught_up,
            file: p.file.clone(),
            position: p.pos,
            gtid: (!p.gtid_state.is_empty())
                .then(|| crate::position::format_mariadb_pos(p.gtid_state.values())),
            gtid_seq: p.gtid_seq.clone(),
            last_event_age_ms: p.last_event_at.map(|t| t.elapsed().as_millis() as u64),
            error: p.error.clone(),
            down_since_ms: p.unreachable_since_ms.filter(|_| down),
        };
        drop(p);
        let fresh_within = self.settings.poll_timeout + self.settings.poll_interval * 3;
        let timeline = lock(&self.timeline);
        let mut replicas = BTreeMap::new();
        for (name, slot) in &self.replicas {
            let r = lock(slot);
            let fresh = r.reachable && r.polled_instant.is_some_and(|t| t.elapsed() < fresh_within);
            let mut out = ReplicaLag {
                io_running: r.io_running,
                sql_running: r.sql_running,
                applied: r.applied_text.clone(),
                applied_seq: r.applied.clone().unwrap_or_default(),
                asked_at_ms: r.asked_instant.map(|t| {
                    let age = u64::try_from(t.elapsed().as_millis()).unwrap_or(u64::MAX);
                    (now_us() / 1000).saturating_sub(age)
                }),
                received_seq: r.io_applied.clone().unwrap_or_default(),
                received_asked_at_ms: r.io_asked_instant.map(|t| {
                    let age = u64::try_from(t.elapsed().as_millis()).unwrap_or(u64::MAX);
                    (now_us() / 1000).saturating_sub(age)
                }),
                seconds_behind_master: r.seconds_behind_master,
                reachable: fresh,
                error: r.error.clone(),
                ..ReplicaLag::default()
            };
            // With the primary down, only a replica that cannot receive either (IO thread not
            // running) is measured: one still receiving from a primary we cannot see may hold
            // transactions the timeline lacks.
            let measurable = live || (down && r.io_running == Some(false));
            if measurable && fresh && r.cutoff >= caught_up_index {
                if let Some(applied) = &r.applied {
                    if let Ok(oldest) = timeline.oldest_unapplied(applied, r.cutoff) {
                        let interval_us = self.settings.poll_interval.as_micros() as u64;
                        out.lag_ms = Some(match oldest {
                            None => 0,
                            Some(o) => {
                                out.truncated = o.truncated;
                                let at_poll = r.polled_at_us.saturating_sub(o.commit_us);
                                // Clearly stuck behind: the truth keeps growing with wall time.
                                // Merely in flight at the poll: report the poll-time value.
                                if at_poll >= interval_us {
                                    now.saturating_sub(o.commit_us) / 1000
                                } else {
                                    at_poll / 1000
                                }
                            }
                        });
                        out.known = true;
                    }
                }
                if let Some(io) = r
                    .io_applied
                    .as_ref()
                    .filter(|_| r.io_cutoff >= caught_up_index)
                {
                    if let Ok(oldest) = timeline.oldest_unapplied(io, r.io_cutoff) {
                        out.io_lag_ms = Some(match oldest {
                            None => 0,
                            Some(o) => r.io_polled_at_us.saturating_sub(o.commit_us) / 1000,
                        });
                    }
                }
            }
            replicas.insert(name.clone(), out);
        }
        LagSnapshot {
            polls: *self.polled.borrow(),
            taken_at_ms: now / 1000,
            primary,
            replicas,
        }
    }

    /// Takes over where `old` (the reader of the previous primary) stopped: its GTID position,
    /// timeline and recent transactions, so that a stream opened on the new primary resumes
    /// after the last transaction `old` read. Without a GTID position (file/position streams)
    /// there is nothing that holds across servers: nothing is taken.
    pub fn continue_from(&self, old: &Shared) {
        if old.settings.server_id == self.settings.server_id {
            self.settings
                .replaces_same_id
                .store(true, std::sync::atomic::Ordering::SeqCst);
        }
        let (gtid_state, gtid_seq) = {
            let p = lock(&old.primary);
            (p.gtid_state.clone(), p.gtid_seq.clone())
        };
        if gtid_state.is_empty() {
            return;
        }
        self.settings
            .start_from_replicas
            .store(false, std::sync::atomic::Ordering::SeqCst);
        let mut p = lock(&self.primary);
        p.gtid_state = gtid_state;
        p.gtid_seq = gtid_seq;
        // Lock order: primary before timeline (the old reader's locks are its own).
        let mut old_timeline = lock(&old.timeline);
        let capacity = old_timeline.capacity();
        *lock(&self.timeline) = std::mem::replace(&mut *old_timeline, Timeline::new(capacity));
        drop(old_timeline);
        drop(p);
        let recent = std::mem::take(&mut *lock(&old.recent));
        *lock(&self.recent) = recent;
    }

    /// Drops timeline entries every replica has applied (using last known positions, even
    /// stale ones: a replica that is down keeps what it still needs, up to the capacity).
    pub fn prune(&self) {
        let marks: Vec<Watermarks> = self
            .replicas
            .iter()
            .map(|(_, s)| lock(s).applied.clone().unwrap_or_default())
            .collect();
        if marks.is_empty() {
            // No replicas: nothing to measure, nothing to keep.
            let done = lock(&self.primary).gtid_seq.clone();
            lock(&self.timeline).prune([&done]);
            return;
        }
        lock(&self.timeline).prune(marks.iter());
    }
}

#[cfg(test)]
mod test;
