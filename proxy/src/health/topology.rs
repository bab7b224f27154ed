//! From the latest check of every server to a [`Topology`]: who is the primary (DESIGN §3.6:
//! the writable server that replicates from no one), who replicates, split brain, and the
//! router's snapshot with lag fed through its hysteresis gates. Pure, so every case is a test.

use super::check::{CheckError, Observed};
use crate::context::{ObservedRole, PrimaryDown, ServerHealth, Topology};
use router::choice::TopologySnapshot;
use router::config::{Config, Role};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long a replica's last measured lag (plus the time since, an upper bound) stands in for
/// a lag source that went blind, before the lag counts as unknown.
const BLIND_GRACE: Duration = Duration::from_secs(1);

/// The last check of one server, with the lag the configured lag source reports for it.
#[derive(Debug, Clone)]
pub struct Sample {
    pub result: Result<Observed, CheckError>,
    /// Replica lag in ms; `None` = unknown.
    pub lag_ms: Option<u64>,
    /// When the check began and when it ended.
    pub started: Instant,
    pub at: Instant,
}

/// Builds the next topology. `samples[i]` is `None` until server `i` was checked once;
/// `previous` carries the lag gates' state and the last known primary.
pub fn derive(config: &Config, samples: &[Option<Sample>], previous: &Topology) -> Topology {
    let mut router = base_snapshot(config, &previous.router);
    let same_list = previous.servers.len() == config.servers.len();
    let mut servers = Vec::with_capacity(config.servers.len());
    for i in 0..config.servers.len() {
        let health = match samples.get(i) {
            Some(Some(sample)) => observe(sample),
            // Not checked in this generation yet (just started, or just reloaded): keep what
            // was known, so a reload does not blank the topology for a round.
            _ if same_list => previous.servers[i].clone(),
            _ => ServerHealth::default(),
        };
        servers.push(health);
    }
    let mut writable_roots = Vec::new();
    for (i, h) in servers.iter_mut().enumerate() {
        h.role = match (h.reachable, h.read_only, h.replicating) {
            (false, _, _) => ObservedRole::Unknown,
            (true, Some(false), Some(false)) => {
                writable_roots.push(i);
                ObservedRole::Primary
            }
            // Replicating, or read-only and replicating from no one (a stand-alone copy such
            // as an old primary after a switchover): not the writer.
            (true, _, _) => ObservedRole::Replica,
        };
    }

    let names = |idx: &[usize]| {
        idx.iter()
            .map(|&i| config.servers[i].name.as_str())
            .collect::<Vec<_>>()
            .join(" and ")
    };
    let mut split_brain = false;
    let mut suspected_at = None;
    let mut write_block = None;
    let mut primary_down = None;
    // A server that comes back writable from an outage while another has been the writer
    // since (an old primary restarted after a failover, read_only lost with the restart) is
    // fenced: never written to, alerted on, while the writer stays writable. Only a server
    // seen down before: two writable roots that were both up (a switchover half done, a real
    // split brain) are not told apart here.
    let mut fenced = Vec::new();
    let writer_before = previous.router.primary.filter(|&w| {
        writable_roots.contains(&w)
            && same_list
            && previous.servers[w].role == ObservedRole::Primary
    });
    if let Some(w) = writer_before {
        for &r in &writable_roots {
            let before = &previous.servers[r];
            let returning =
                previous.fenced.contains(&r) || (!before.reachable && before.checked_at.is_some());
            if r != w && returning {
                fenced.push(r);
            }
        }
        writable_roots.retain(|r| !fenced.contains(r));
        for &r in &fenced {
            servers[r].role = ObservedRole::Unknown;
        }
    }
    let primary = match writable_roots.as_slice() {
        [one] => Some(*one),
        [] => {
            // The last known writer: the primary of the previous round, or the one already
            // known to be down.
            let known = previous
                .router
                .primary
                .or(previous.primary_down.map(|d| d.server))
                .filter(|&p| p < servers.len());
            match known {
                // It stopped answering (killed, hung, partitioned) and nothing else is
                // writable: the primary is down. Writes fail at once with a reason that says
                // so; reads go on where a replica holds all it sent (below).
                Some(p) if !servers[p].reachable && servers[p].checked_at.is_some() => {
                    let down = previous
                        .primary_down
                        .filter(|d| d.server == p)
                        .unwrap_or_else(|| PrimaryDown {
                            server: p,
                            since: Instant::now(),
                            since_wall: SystemTime::now(),
                            reads: true,
                        });
                    primary_down = Some(down);
                    write_block = Some(down_reason(&config.servers[p].name, &down, &servers[p]));
                    None
                }
                // Not checked yet (just started): trust the configuration meanwhile.
                Some(p) if !servers[p].reachable => Some(p),
                _ => {
                    write_block = Some(format!(
                        "no writable primary: every reachable server is read-only or replicates \
                         from another ({})",
                        config
                            .servers
                            .iter()
                            .zip(&servers)
                            .filter(|(_, h)| h.reachable)
                            .map(|(s, _)| s.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                    // A primary coming back from an outage answers before it is writable again
                    // (a restart passes through read_only): until it is, there is still no
                    // writer, and the replicas that hold all it sent keep serving as while it
                    // was down, instead of every read failing for that moment.
                    primary_down = previous.primary_down.filter(|d| d.server < servers.len());
                    None
                }
            }
        }
        many => {
            let since = previous.split_suspected_at.unwrap_or_else(Instant::now);
            suspected_at = Some(since);
            let rechecked = previous.split_suspected_at.is_some()
                && many
                    .iter()
                    .all(|&i| servers[i].checked_at.is_some_and(|t| t > since));
            if rechecked {
                split_brain = true;
                write_block = Some(format!(
                    "split brain: {} are all writable and replicate from no one; writes are \
                     refused until only one is writable",
                    names(many)
                ));
            } else {
                write_block = Some(format!(
                    "{} are both writable and replicate from no one; writes wait for a fresh \
                     check of each",
                    names(many)
                ));
            }
            None
        }
    };
    // Two roots means neither is trusted as primary in the report either.
    if split_brain {
        for &i in &writable_roots {
            servers[i].role = ObservedRole::Unknown;
        }
    }

    // With the primary down, a replica whose IO thread stopped (it cannot reach the primary
    // either) but whose SQL thread runs holds all it received: it keeps serving, on the lag
    // its source measures against the last position the primary sent (DESIGN §3.1), for at
    // most `routing.primary_down_read_ms`.
    if let Some(d) = primary_down.as_mut() {
        d.reads = config
            .routing
            .primary_down_read_ms
            .is_none_or(|ms| d.since.elapsed() < Duration::from_millis(ms));
    }
    let reads_without_primary = primary_down.is_some_and(|d| d.reads);
    // A replica that just lost its IO thread while the primary has not been checked since:
    // the primary may be down, and its own check will tell within a round. Meanwhile the
    // replica keeps serving on an upper bound of its lag (below), so reads do not bounce to a
    // primary that may be gone.
    let primary_answered_from = primary
        .and_then(|p| servers.get(p))
        .and_then(|h| h.answered_from);
    for (i, (state, health)) in router
        .servers
        .iter_mut()
        .zip(servers.iter_mut())
        .enumerate()
    {
        if let (Some(_), Some(before)) = (
            health.io_stopped_at,
            same_list
                .then(|| previous.servers[i].io_stopped_at)
                .flatten(),
        ) {
            health.io_stopped_at = Some(before);
        }
        let orphan = health.sql_running && health.replicating == Some(true);
        let pending = orphan
            && primary.is_some_and(|p| p != i)
            && health
                .io_stopped_at
                .is_some_and(|stopped| primary_answered_from.is_none_or(|a| a <= stopped));
        let eligible = health.threads_running || (reads_without_primary && orphan) || pending;
        if same_list {
            health.last_lag = previous.servers[i].last_lag;
        }
        if !eligible {
            health.lag_ms = None;
        } else if let (Some(ms), false) = (health.lag_ms, pending) {
            health.last_lag = Some((ms, health.checked_at.unwrap_or_else(Instant::now)));
        } else {
            // Pending (the source's figure assumes the primary is down), or the lag source is
            // briefly blind (its stream broke with the primary, a sidecar answer was missed):
            // lag grows at most as fast as the clock, so a recent measurement plus the time
            // since is an upper bound, never a guess in the replica's favour. Recent: within
            // BLIND_GRACE, or taken around the outage while the primary is down.
            let outage = primary_down.map(|d| d.since).or(health.io_stopped_at);
            let usable = |at: Instant| {
                at.elapsed() <= BLIND_GRACE
                    || ((reads_without_primary || pending)
                        && outage.is_some_and(|o| at + BLIND_GRACE >= o))
            };
            health.lag_ms = health
                .last_lag
                .filter(|&(_, at)| usable(at))
                .map(|(ms, at)| {
                    let since = u64::try_from(at.elapsed().as_millis()).unwrap_or(u64::MAX);
                    ms.saturating_add(since)
                });
        }
        state.reachable = health.reachable;
        state.replicating = eligible;
        state.role = if Some(i) == primary {
            Role::Primary
        } else {
            Role::Replica
        };
    }
    for (i, health) in servers.iter().enumerate() {
        let lag = if Some(i) == primary {
            Some(0)
        } else {
            health.lag_ms
        };
        router.update_lag(i, lag);
        if let Some(state) = router.servers.get_mut(i) {
            state.lag_ms = lag;
        }
    }
    router.primary = primary;
    // No writer known while the servers answer (an external failover mid-way: the old writer
    // already read-only, or it and the new one both writable until each is checked again):
    // reads that no replica can take go to the last writer, not to an error. A failover stops
    // and repoints the replicas' replication, so for moments none may be in the rotation.
    // Not while the primary is down: that server cannot answer.
    router.last_writer = match (primary, primary_down) {
        (None, None) if same_list => previous.router.primary.or(previous.router.last_writer),
        _ => None,
    };
    Topology {
        generation: previous.generation,
        router,
        servers,
        write_block,
        split_brain,
        split_suspected_at: suspected_at,
        primary_down,
        fenced,
    }
}

/// What a write is refused with while the primary is down.
fn down_reason(name: &str, down: &PrimaryDown, health: &ServerHealth) -> String {
    let secs = down
        .since_wall
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (h, m, s) = ((secs / 3600) % 24, (secs / 60) % 60, secs % 60);
    format!(
        "no writable primary (primary down since {h:02}:{m:02}:{s:02} UTC, {:.1} s ago: \
         '{name}' {})",
        down.since.elapsed().as_secs_f64(),
        health.last_error.as_deref().unwrap_or("does not answer")
    )
}

/// What one sample says about a server (role is decided afterwards, across all servers).
fn observe(sample: &Sample) -> ServerHealth {
    let mut health = ServerHealth {
        checked_at: Some(sample.at),
        ..ServerHealth::default()
    };
    match &sample.result {
        Err(e) => health.last_error = Some(e.to_string()),
        Ok(o) => {
            health.reachable = true;
            health.answered_from = Some(sample.started);
            if o.replication.as_ref().is_some_and(|r| !r.io_running) {
                health.io_stopped_at = Some(sample.at);
            }
            health.read_only = Some(o.read_only);
            health.replicating = Some(o.replication.is_some());
            health.threads_running = o
                .replication
                .as_ref()
                .is_some_and(|r| r.io_running && r.sql_running);
            health.sql_running = o.replication.as_ref().is_some_and(|r| r.sql_running);
            // Whether the lag counts is decided across servers (primary down or not).
            if health.sql_running {
                health.lag_ms = sample.lag_ms;
            }
        }
    }
    health
}

/// The router snapshot for `config`, keeping the lag gates of `previous` (same server list).
fn base_snapshot(config: &Config, previous: &TopologySnapshot) -> TopologySnapshot {
    let mut snap = TopologySnapshot::from_config(config);
    if previous.servers.len() == snap.servers.len() {
        for (s, p) in snap.servers.iter_mut().zip(&previous.servers) {
            s.lag_gate = p.lag_gate;
        }
    }
    snap
}

#[cfg(test)]
mod test;
