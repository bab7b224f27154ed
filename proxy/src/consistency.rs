//! Where sessions learn replica positions for read-your-writes (DESIGN §5): each replica's
//! applied GTID position and the instant it was asked for, and the primary's position as the
//! binlog stream last read it. Fed by the embedded binlog reader (woken by each replica poll)
//! or by the sidecars' `/lag` (`applied_seq`, `primary.gtid_seq`); sessions read it without a
//! round trip to any server and wait on [`Positions::subscribe`] for a replica to catch up.

use crate::context::Context;
use router::config::LagSource;
use router::consistency::Position;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::watch;

mod sidecar;

/// One replica's applied position and when the query that read it was sent (it had applied
/// at least this much by then).
#[derive(Debug, Clone)]
pub struct Applied {
    pub position: Position,
    pub asked: Instant,
}

#[derive(Debug, Default)]
struct State {
    primary: Position,
    replicas: HashMap<String, Applied>,
    /// What each replica's IO thread has received (a write quorum on `received`), as of a
    /// status read, which is less frequent than applied polls unless a quorum asks for it.
    received: HashMap<String, Applied>,
}

/// The latest positions, shared by every session of the proxy.
#[derive(Debug)]
pub struct Positions {
    state: RwLock<State>,
    changed: watch::Sender<u64>,
    /// Bumped by a session that waits for a position: the source polls replicas now.
    kick: watch::Sender<u64>,
    /// Bumped by a session that waits for received positions: the source reads replicas'
    /// replication status at every poll for a while.
    kick_received: watch::Sender<u64>,
}

impl Positions {
    pub fn new() -> Arc<Positions> {
        Arc::new(Positions {
            state: RwLock::new(State::default()),
            changed: watch::channel(0).0,
            kick: watch::channel(0).0,
            kick_received: watch::channel(0).0,
        })
    }

    /// The replica's last known applied position; `None` when unknown (unreachable, no source).
    pub fn replica(&self, name: &str) -> Option<Applied> {
        self.state.read().ok()?.replicas.get(name).cloned()
    }

    /// Whether the replica is known to have applied `need`.
    pub fn covers(&self, name: &str, need: &Position) -> bool {
        self.state
            .read()
            .ok()
            .and_then(|s| s.replicas.get(name).map(|a| need.covered_by(&a.position)))
            .unwrap_or(false)
    }

    /// Whether the replica is known to have received `need` (its IO thread has it; applied
    /// implies received).
    pub fn covers_received(&self, name: &str, need: &Position) -> bool {
        self.covers(name, need)
            || self
                .state
                .read()
                .ok()
                .and_then(|s| s.received.get(name).map(|a| need.covered_by(&a.position)))
                .unwrap_or(false)
    }

    /// Asks the source for fresh received positions now, and at every poll for a while.
    pub fn kick_received(&self) {
        self.kick_received.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// The primary's position as the lag source last read it (empty when unknown).
    pub fn primary(&self) -> Position {
        self.state
            .read()
            .map(|s| s.primary.clone())
            .unwrap_or_default()
    }

    /// Changes whenever new positions arrive.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Asks the source for fresh replica positions now (a read waits for one).
    pub fn kick(&self) {
        self.kick.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Replaces the positions from one source answer. Replicas missing or `None` become
    /// unknown; an older answer for a replica never replaces a newer one (several sidecars).
    fn publish(&self, primary: Position, replicas: Vec<(String, Option<Applied>)>) {
        if let Ok(mut s) = self.state.write() {
            if !primary.is_empty() {
                s.primary.merge(&primary);
            }
            merge_newer(&mut s.replicas, replicas);
        }
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Replaces the received positions from one source answer, as [`Self::publish`] does the
    /// applied ones (called right after it, which has woken the waiting sessions' wake-up
    /// already: one more wake-up here for those counting received).
    fn publish_received(&self, received: Vec<(String, Option<Applied>)>) {
        if let Ok(mut s) = self.state.write() {
            merge_newer(&mut s.received, received);
        }
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Sets `rwsplit_replica_position_age_seconds` from what is known now.
    fn export_ages(&self, metrics: &crate::metrics::Metrics) {
        let Ok(s) = self.state.read() else { return };
        let g = &metrics.replica_position_age;
        g.reset();
        for (name, a) in &s.replicas {
            g.with_label_values(&[name.as_str()])
                .set(a.asked.elapsed().as_secs_f64());
        }
    }

    fn clear(&self) {
        if let Ok(mut s) = self.state.write() {
            *s = State::default();
        }
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }
}

fn position_of(w: &std::collections::BTreeMap<String, u64>) -> Position {
    Position::from_watermarks(w.iter().map(|(k, v)| (k.as_str(), *v)))
}

/// Keeps `positions` up to date from the configured lag source, for the life of the process
/// (it follows configuration reloads).
pub async fn follow(ctx: Arc<Context>, positions: Arc<Positions>) {
    loop {
        let source = ctx.proxy_config().lag_source.clone();
        match &source {
            LagSource::Embedded => follow_embedded(&ctx, &positions).await,
            LagSource::Sidecar { .. } => sidecar::follow_sidecars(&ctx, &positions, &source).await,
            LagSource::SecondsBehindMaster => {
                // No positions: reads that need one go to the primary.
                positions.clear();
                positions.export_ages(&ctx.metrics);
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Publishes the embedded reader's positions after each of its replica polls (and asks it for
/// a poll when a session waits); returns after a second so that a restarted reader (writer
/// change, reload) is picked up.
async fn follow_embedded(ctx: &Context, positions: &Positions) {
    let Some(reader) = ctx.lag_reader() else {
        positions.clear();
        tokio::time::sleep(Duration::from_millis(100)).await;
        return;
    };
    let mut polls = reader.subscribe_polls();
    let mut kicks = positions.kick.subscribe();
    let mut received_kicks = positions.kick_received.subscribe();
    let until = tokio::time::Instant::now() + Duration::from_secs(1);
    loop {
        publish_embedded(&reader, positions);
        positions.export_ages(&ctx.metrics);
        tokio::select! {
            r = polls.changed() => if r.is_err() { return },
            r = kicks.changed() => {
                if r.is_err() { return }
                reader.poll_now();
            }
            r = received_kicks.changed() => {
                if r.is_err() { return }
                reader.poll_received_now();
            }
            _ = tokio::time::sleep_until(until) => return,
        }
    }
}

fn publish_embedded(reader: &binlog_reader::LagHandle, positions: &Positions) {
    let p = reader.positions();
    let received = p
        .received
        .into_iter()
        .map(|(name, a)| {
            let got = a.map(|(w, asked)| Applied {
                position: position_of(&w),
                asked,
            });
            (name, got)
        })
        .collect();
    let replicas = p
        .replicas
        .into_iter()
        .map(|(name, a)| {
            let applied = a.map(|(w, asked)| Applied {
                position: position_of(&w),
                asked,
            });
            (name, applied)
        })
        .collect();
    positions.publish(position_of(&p.primary), replicas);
    positions.publish_received(received);
}

/// Merges one source answer into `known`: a replica missing (`None`) becomes unknown; an older
/// answer never replaces a newer one (several sidecars): asked later, or at least as far
/// (clock jitter between sidecars).
fn merge_newer(known: &mut HashMap<String, Applied>, answer: Vec<(String, Option<Applied>)>) {
    for (name, got) in answer {
        match got {
            Some(a) => {
                let newer = known
                    .get(&name)
                    .is_none_or(|old| old.asked <= a.asked || old.position.covered_by(&a.position));
                if newer {
                    known.insert(name, a);
                }
            }
            None => {
                known.remove(&name);
            }
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn newer_answers_win_and_unknown_removes() {
        let p = Positions::new();
        let t0 = Instant::now();
        let pos = |s: &str| Position::parse(s).unwrap();
        p.publish(
            pos("0-1-5"),
            vec![(
                "r1".into(),
                Some(Applied {
                    position: pos("0-1-5"),
                    asked: t0 + Duration::from_millis(10),
                }),
            )],
        );
        // An older answer (another sidecar) does not move r1 back.
        p.publish(
            Position::default(),
            vec![(
                "r1".into(),
                Some(Applied {
                    position: pos("0-1-3"),
                    asked: t0,
                }),
            )],
        );
        assert!(p.covers("r1", &pos("0-1-5")));
        assert_eq!(p.primary().get("0"), 5);
        p.publish(Position::default(), vec![("r1".into(), None)]);
        assert!(!p.covers("r1", &pos("0-1-1")));
        assert!(p.replica("r1").is_none());
    }
}
