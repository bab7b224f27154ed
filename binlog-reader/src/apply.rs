//! Applies decoded binlog events to the shared state: transaction boundaries (GTID, BEGIN,
//! XID/COMMIT, standalone DDL), the commit time of each transaction, the stream position, and
//! when the stream has caught up with the primary so that commit times are live.

use crate::decode::{self, EventKind, Gtid, QueryVerb};
use crate::position::{self, FILE_POS_KEY};
use crate::state::{lock, now_us, PrimaryState, Shared, Transaction, RECENT_CAPACITY};
use crate::stream::StreamError;
use mysql_common::binlog::events::Event;
use std::time::Instant;

/// Where the session must read up to before commit times count as live.
pub(crate) enum CatchUp {
    /// MariaDB: every domain's sequence at least this.
    Gtid(position::Watermarks),
    /// Otherwise: file/position at least this.
    FilePos(u64),
}

/// What the event loop carries between events of one transaction.
pub(crate) struct Tracker {
    pub(crate) mariadb: bool,
    pub(crate) catch_up: CatchUp,
    pub(crate) pending: Option<Pending>,
    pub(crate) in_txn: bool,
}

pub(crate) struct Pending {
    gtid: Option<Gtid>,
    commit_us: Option<u64>,
    standalone: bool,
}

/// From here on commit times are live. Polls answered before this point predate the
/// replayed transactions, so lags count as known only after the next poll.
pub(crate) fn mark_caught_up(shared: &Shared, p: &mut PrimaryState) {
    p.caught_up = true;
    p.caught_up_index = lock(&shared.timeline).next_index();
}

pub(crate) fn reached_gtid(
    seen: &std::collections::BTreeMap<String, u64>,
    end: &position::Watermarks,
) -> bool {
    end.iter()
        .all(|(k, want)| seen.get(k).is_some_and(|have| have >= want))
}

/// Applies one event to the shared state.
pub(crate) fn process(shared: &Shared, t: &mut Tracker, ev: &Event) -> Result<(), StreamError> {
    let arrival_us = now_us();
    let header = ev.header();
    shared
        .metrics
        .event(header.event_type_raw(), u64::from(header.event_size()));
    decode::verify_checksum(ev)?;
    let kind = decode::decode(ev)?;
    let artificial = header.flags_raw() & decode::LOG_EVENT_ARTIFICIAL_F != 0;
    {
        let mut p = lock(&shared.primary);
        p.last_event_at = Some(Instant::now());
        match &kind {
            EventKind::Rotate { file, pos, .. } => {
                p.file = file.clone();
                p.pos = *pos;
            }
            // Sent only when the primary has nothing more for us.
            EventKind::Heartbeat => {
                // Carries the primary's current position (MariaDB skips the events before a
                // GTID start, so this is where the reader learns where it is).
                if header.log_pos() != 0 {
                    p.pos = u64::from(header.log_pos());
                }
                if !p.caught_up {
                    mark_caught_up(shared, &mut p);
                }
            }
            _ if header.log_pos() != 0 && !artificial => p.pos = u64::from(header.log_pos()),
            _ => {}
        }
        if !p.caught_up {
            if let CatchUp::FilePos(end) = t.catch_up {
                if position::encode_file_pos(&p.file, p.pos).unwrap_or(0) >= end {
                    mark_caught_up(shared, &mut p);
                }
            }
        }
    }
    match kind {
        EventKind::TransactionStart {
            gtid,
            commit_us,
            standalone,
        } => {
            t.pending = Some(Pending {
                gtid,
                commit_us,
                standalone,
            });
            // A MariaDB GTID event stands in for BEGIN unless the transaction is one statement.
            t.in_txn = t.mariadb && !standalone;
        }
        EventKind::Query {
            verb: QueryVerb::Begin,
        } => {
            t.in_txn = true;
            if t.pending.is_none() {
                t.pending = Some(Pending {
                    gtid: None,
                    commit_us: None,
                    standalone: false,
                });
            }
        }
        EventKind::Xid
        | EventKind::Query {
            verb: QueryVerb::Commit | QueryVerb::Rollback,
        } => {
            commit(shared, t, ev, arrival_us);
        }
        EventKind::Query {
            verb: QueryVerb::Other,
        } => {
            let ends = match &t.pending {
                Some(p) => p.standalone || !t.in_txn,
                None => !t.in_txn,
            };
            if ends && !artificial {
                commit(shared, t, ev, arrival_us);
            }
        }
        EventKind::Stop => {
            tracing::info!("primary wrote a STOP event (shutting down); will reconnect");
        }
        _ => {}
    }
    Ok(())
}

/// Records the pending transaction as committed at this event.
fn commit(shared: &Shared, t: &mut Tracker, ev: &Event, arrival_us: u64) {
    let pending = t.pending.take().unwrap_or(Pending {
        gtid: None,
        commit_us: None,
        standalone: false,
    });
    t.in_txn = false;
    let header = ev.header();
    let mut p = lock(&shared.primary);
    // Events unpacked from a compressed transaction payload carry no position: the payload
    // event itself (already applied) moved the stream to the transaction's end.
    let end_pos = match u64::from(header.log_pos()) {
        0 => p.pos,
        pos => pos,
    };
    let live = p.caught_up && pending.commit_us.is_none();
    // MySQL 8 writes the commit time in µs; MariaDB only has whole seconds in the header, so
    // while we stream live the arrival instant is the better clock; replayed history has
    // only the header.
    let commit_us = pending.commit_us.unwrap_or(if p.caught_up {
        arrival_us
    } else {
        u64::from(header.timestamp()) * 1_000_000
    });
    let (key, seq) = match &pending.gtid {
        Some(g) => (g.stream_key(), g.seq()),
        None => match position::encode_file_pos(&p.file, end_pos) {
            Some(e) => (FILE_POS_KEY.to_string(), e),
            None => return,
        },
    };
    let added = lock(&shared.timeline).push(&key, seq, commit_us);
    if let Some(g) = &pending.gtid {
        p.gtid_seq.insert(key.clone(), seq);
        if let Gtid::MariaDb { domain, .. } = g {
            p.gtid_state.insert(*domain, g.clone());
        }
    }
    if end_pos != 0 {
        p.resume_file = p.file.clone();
        p.resume_pos = end_pos;
    }
    if !p.caught_up {
        if let CatchUp::Gtid(end) = &t.catch_up {
            if reached_gtid(&p.gtid_seq, end) {
                mark_caught_up(shared, &mut p);
            }
        }
    }
    let file = p.file.clone();
    // Read as it happens (not replayed history): the replicas have it to apply now.
    let current = p.caught_up;
    if current {
        p.last_commit_at = Some(Instant::now());
    }
    drop(p);
    if current {
        shared.committed.send_modify(|n| *n = n.wrapping_add(1));
    }
    if !added {
        return;
    }
    shared.metrics.transactions.inc();
    let mut recent = lock(&shared.recent);
    if recent.len() >= RECENT_CAPACITY {
        recent.pop_front();
    }
    recent.push_back(Transaction {
        gtid: pending.gtid.map(|g| g.to_string()),
        file,
        end_pos,
        commit_us,
        live,
    });
}

#[cfg(test)]
mod test;
