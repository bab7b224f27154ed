//! From the latest check of every server to a [`Topology`]: who is the primary (DESIGN §3.6:
//! the writable server that replicates from no one), who replicates, split brain, and the
//! router's snapshot with lag fed through its hysteresis gates. Pure, so every case is a test.

use super::check::{CheckError, Observed};
use crate::context::{ObservedRole, ServerHealth, Topology};
use router::choice::TopologySnapshot;
use router::config::{Config, Role};
use std::time::Instant;

/// The last check of one server, with the lag the configured lag source reports for it.
#[derive(Debug, Clone)]
pub struct Sample {
    pub result: Result<Observed, CheckError>,
    /// Replica lag in ms; `None` = unknown.
    pub lag_ms: Option<u64>,
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
    let primary = match writable_roots.as_slice() {
        [one] => Some(*one),
        [] => {
            let previous_primary = previous.router.primary.filter(|&p| p < servers.len());
            match previous_primary {
                // The writer went silent (down, hung, or not checked yet): keep sending writes
                // there so clients get the server's own connect error, not a guess.
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

    for (i, (state, health)) in router.servers.iter_mut().zip(&servers).enumerate() {
        state.reachable = health.reachable;
        state.replicating = health.threads_running;
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
    Topology {
        generation: previous.generation,
        router,
        servers,
        write_block,
        split_brain,
        split_suspected_at: suspected_at,
    }
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
            health.read_only = Some(o.read_only);
            health.replicating = Some(o.replication.is_some());
            health.threads_running = o
                .replication
                .as_ref()
                .is_some_and(|r| r.io_running && r.sql_running);
            if health.threads_running {
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
