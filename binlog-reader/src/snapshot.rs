//! The lag picture handed to proxies: the library's [`LagSnapshot`] and, serialized with serde,
//! the sidecar's `/lag` JSON. Both derive `Deserialize` so a proxy following a sidecar parses
//! `/lag` into the very same types.
//!
//! `/lag` format (all times in milliseconds; `null` means unknown, never 0):
//!
//! ```json
//! {
//!   "polls": 81234,
//!   "taken_at_ms": 1764400000123,
//!   "primary": {
//!     "name": "primary", "connected": true, "caught_up": true,
//!     "file": "binlog.000002", "position": 12345, "gtid": "0-1-4711",
//!     "gtid_seq": {"0": 4711}, "last_event_age_ms": 120, "error": null
//!   },
//!   "replicas": {
//!     "replica1": {
//!       "lag_ms": 12, "known": true, "truncated": false,
//!       "io_lag_ms": 0, "io_running": true, "sql_running": true,
//!       "applied": "0-1-4710", "applied_seq": {"0": 4710}, "asked_at_ms": 1764400000120,
//!       "received_seq": {"0": 4711}, "received_asked_at_ms": 1764400000020,
//!       "seconds_behind_master": 0, "reachable": true, "error": null
//!     }
//!   }
//! }
//! ```
//!
//! `GET /lag?after=N&timeout_ms=T` is a long poll: it answers as soon as `polls` exceeds `N` (a
//! replica poll landed with something to tell: a new position, or a slow or asked-for poll; a
//! fast poll that found a replica still behind where it was does not count), or after `T` ms
//! (default 1000, at most 30000) with the snapshot as it is, so proxies learn replica positions
//! as fast as the sidecar does.
//!
//! `GET /kick` asks for a poll of every replica now (a proxy has a read waiting for a position)
//! and answers 204 at once; `GET /kick?received=1` also asks that the polls of the next second
//! read the replication status, so `received_seq` is as fresh as `applied_seq` (a proxy holds a
//! commit for a write quorum on `received`). What the polls find reaches the proxy through its
//! long poll, which a kick never interrupts: a proxy keeps one long poll and one kick request
//! at most in flight per sidecar, each on a keep-alive connection, and folds the kicks that
//! arrive meanwhile into one follow-up. `&kick=1` and `&received=1` on `/lag` do the same
//! (for proxies that predate `/kick`).
//!
//! `lag_ms` is now − the commit time of the oldest transaction the replica has not applied
//! (0 when it has applied everything). It is `null` (and `known` false) when the replica cannot
//! be polled, when the binlog stream is down or still catching up, or when the replica is behind
//! where the timeline starts. `io_lag_ms` is the same measure for what the IO thread has
//! received (MariaDB `Gtid_IO_Pos`, MySQL `Retrieved_Gtid_Set`), refreshed at a slower cadence.
//! `truncated` says `lag_ms` is a lower bound because the timeline hit `timeline_capacity`.
//!
//! While the primary is down (`primary.down_since_ms` set: the stream ended caught up and the
//! primary refuses or ignores connections since), a replica whose IO thread is stopped is still
//! measured, against the last transaction the primary sent: 0 when it applied it, else growing
//! with time from the commit of the oldest one it lacks (DESIGN §3.1).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Everything the reader knows, at one instant.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct LagSnapshot {
    /// Replica polls with news completed so far (see the module docs): `/lag?after=N` answers
    /// once this exceeds N (long poll).
    #[serde(default)]
    pub polls: u64,
    /// Wall-clock time the snapshot was taken, ms since the Unix epoch.
    pub taken_at_ms: u64,
    pub primary: PrimaryStatus,
    /// By configured server name.
    pub replicas: BTreeMap<String, ReplicaLag>,
}

/// The binlog stream from the primary.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct PrimaryStatus {
    pub name: String,
    /// The dump connection is open.
    pub connected: bool,
    /// Everything the primary had written when the stream opened has been read, so commit
    /// times are live.
    pub caught_up: bool,
    pub file: String,
    pub position: u64,
    /// The last GTID read, per domain/source, as the server writes it (MariaDB `0-1-5,1-2-9`).
    pub gtid: Option<String>,
    pub gtid_seq: BTreeMap<String, u64>,
    pub last_event_age_ms: Option<u64>,
    pub error: Option<String>,
    /// Set while the primary is down (the stream ended caught up and the primary cannot be
    /// reached since): when it went down, ms since the Unix epoch. Replicas whose IO thread is
    /// stopped are then measured against the last transaction the primary sent.
    #[serde(default)]
    pub down_since_ms: Option<u64>,
}

/// One replica's lag and replication state.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ReplicaLag {
    pub lag_ms: Option<u64>,
    pub known: bool,
    pub truncated: bool,
    pub io_lag_ms: Option<u64>,
    pub io_running: Option<bool>,
    pub sql_running: Option<bool>,
    /// The applied position as the replica reports it (`@@gtid_slave_pos`, `@@gtid_executed`, or `file:pos`).
    pub applied: Option<String>,
    /// Applied watermark per domain/source.
    pub applied_seq: BTreeMap<String, u64>,
    /// When the poll that read `applied` was sent (ms since the epoch): the replica had
    /// applied at least that much by then (read-your-writes across replicas).
    #[serde(default)]
    pub asked_at_ms: Option<u64>,
    /// Received watermark per domain/source (what the IO thread has: MariaDB `Gtid_IO_Pos`,
    /// MySQL `Retrieved_Gtid_Set`, never below `applied_seq` as of the same status read).
    #[serde(default)]
    pub received_seq: BTreeMap<String, u64>,
    /// When the status query that read `received_seq` was sent (ms since the epoch).
    #[serde(default)]
    pub received_asked_at_ms: Option<u64>,
    pub seconds_behind_master: Option<u64>,
    /// The last poll succeeded.
    pub reachable: bool,
    pub error: Option<String>,
}

impl LagSnapshot {
    /// The lag of `replica` in milliseconds, None when unknown or not configured.
    pub fn lag_ms(&self, replica: &str) -> Option<u64> {
        self.replicas.get(replica).and_then(|r| r.lag_ms)
    }
}
