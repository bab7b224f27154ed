//! Moving the writer on purpose: a planned switchover (`POST /admin/switchover`,
//! [`switchover::run`]) and, when `routing.failover: auto`, promoting the most advanced replica
//! after the primary stayed down ([`auto`]). Both change the servers themselves (read_only,
//! `STOP SLAVE`, `CHANGE MASTER`) over control connections ([`server`]) with statements spelled
//! per flavour ([`sql`]).
//!
//! The proxy does not wait for its monitor to notice the new writer: it publishes it at once
//! and holds it ([`steer`]) until the monitor's own checks agree, so that a stale check taken
//! mid-switchover (the old primary still writable, the target still replicating) never sends a
//! write back to the old primary, nor counts as split brain, nor fences anyone.

pub mod auto;
pub mod server;
pub mod sql;
pub mod switchover;

use crate::context::{Context, ObservedRole, Topology};
use router::config::{Config, Role};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One step of a switchover or failover, as reported and logged.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Step {
    pub step: &'static str,
    pub ms: f64,
    /// What happened, in words (servers, positions, what was skipped).
    pub detail: String,
}

/// Why a switchover or failover did not happen, or did not finish.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// Refused before anything was changed.
    #[error("{message}")]
    Refused {
        /// Machine-readable: `already_running`, `unknown_server`, `target_behind`...
        reason: &'static str,
        message: String,
    },
    /// A step failed after changes began; `rolled_back` says whether they were undone.
    #[error("{step} failed: {message}")]
    Failed {
        step: &'static str,
        message: String,
        rolled_back: bool,
        steps: Vec<Step>,
    },
}

/// Refused with `reason`, before anything changed.
pub(crate) fn refuse(reason: &'static str, message: impl Into<String>) -> Error {
    Error::Refused {
        reason,
        message: message.into(),
    }
}

/// What a finished switchover or failover did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    pub from: String,
    pub to: String,
    pub steps: Vec<Step>,
    /// From the first step to the last, in ms.
    pub total_ms: f64,
    /// How long new writes were held, in ms.
    pub writes_held_ms: f64,
}

/// Per-proxy state: one move at a time, and the writer held while the monitor catches up.
#[derive(Default)]
pub struct State {
    running: tokio::sync::Mutex<()>,
    hold: Mutex<Option<Hold>>,
}

/// A writer the proxy published itself.
#[derive(Debug, Clone)]
struct Hold {
    /// The server writes go to, by name (indices change with a reload).
    writer: String,
    /// The move is done: the hold ends once the monitor sees this writer by itself.
    settled: bool,
    /// Never held longer than this, whatever the monitor sees.
    until: Instant,
}

/// The proxy's failover state.
pub fn state(ctx: &Context) -> Arc<State> {
    ctx.extension(State::default)
}

/// Whether a switchover or failover is moving the writer now, or holds the writer it moved to
/// until the monitor confirms it: the servers involved may answer health checks late
/// (`STOP SLAVE` blocks `SHOW SLAVE STATUS`; `read_only` waits for a global lock), which
/// must not count as a hung server whose statements are abandoned.
pub fn is_moving(ctx: &Context) -> bool {
    let state = state(ctx);
    state.running.try_lock().is_err() || state.hold.lock().map(|h| h.is_some()).unwrap_or(false)
}

/// Applied by the monitor to each topology it derives: while a switchover or failover holds
/// the writer, that server is the primary whatever stale checks say.
pub fn steer(ctx: &Context, config: &Config, mut topology: Topology) -> Topology {
    let state = state(ctx);
    let Ok(mut hold) = state.hold.lock() else {
        return topology;
    };
    let Some(h) = hold.clone() else {
        return topology;
    };
    let writer = config.servers.iter().position(|s| s.name == h.writer);
    let Some(w) = writer.filter(|_| Instant::now() < h.until) else {
        tracing::warn!(writer = %h.writer, "the monitor did not confirm the new writer in time: it decides again");
        *hold = None;
        return topology;
    };
    if h.settled && topology.primary() == Some(w) && topology.write_block.is_none() {
        tracing::info!(writer = %h.writer, "the monitor confirms the new writer");
        *hold = None;
        return topology;
    }
    force_writer(&mut topology, w);
    topology
}

/// Makes server `w` the writer in `topology`.
fn force_writer(topology: &mut Topology, w: usize) {
    topology.router.primary = Some(w);
    for (i, s) in topology.router.servers.iter_mut().enumerate() {
        s.role = if i == w { Role::Primary } else { Role::Replica };
    }
    topology.router.update_lag(w, Some(0));
    if let Some(s) = topology.router.servers.get_mut(w) {
        s.lag_ms = Some(0);
    }
    if let Some(h) = topology.servers.get_mut(w) {
        h.role = ObservedRole::Primary;
    }
    topology.write_block = None;
    topology.split_brain = false;
    topology.split_suspected_at = None;
    topology.primary_down = None;
    topology.fenced.retain(|&i| i != w);
}

/// Holds `writer` as the primary (until the monitor agrees, once `settled`) and publishes
/// that at once, without waiting for a monitor round.
pub(crate) async fn hold_writer(ctx: &Context, writer: &str, settled: bool) {
    let interval = ctx.proxy_config().monitor_interval_ms;
    let until = Instant::now()
        + Duration::from_millis(interval.saturating_mul(20)).max(Duration::from_secs(10));
    if let Ok(mut h) = state(ctx).hold.lock() {
        *h = Some(Hold {
            writer: writer.to_string(),
            settled,
            until,
        });
    }
    // The monitor may be between deriving and publishing a round that did not see the hold:
    // publish until the writer stands.
    for _ in 0..5 {
        let config = ctx.config();
        let generation = ctx.config_generation();
        let next = steer(ctx, &config, (*ctx.topology()).clone());
        ctx.publish_topology(generation, next);
        tokio::time::sleep(Duration::from_millis(1)).await;
        let now = ctx.topology();
        let want = config.servers.iter().position(|s| s.name == writer);
        if now.primary() == want && now.write_block.is_none() {
            return;
        }
    }
}

/// Ends a hold (a switchover gave up before promoting anyone: the monitor decides again).
pub(crate) fn release_hold(ctx: &Context) {
    if let Ok(mut h) = state(ctx).hold.lock() {
        *h = None;
    }
}

/// Counts a finished (or refused, or failed) move in the metrics.
pub(crate) fn record(ctx: &Context, kind: &str, result: &Result<Report, Error>, took: Duration) {
    let label = match result {
        Ok(_) => "ok",
        Err(Error::Refused { .. }) => "refused",
        Err(Error::Failed {
            rolled_back: true, ..
        }) => "rolled_back",
        Err(Error::Failed { .. }) => "failed",
    };
    ctx.metrics
        .switchovers
        .with_label_values(&[kind, label])
        .inc();
    if result.is_ok() {
        ctx.metrics
            .switchover_duration
            .with_label_values(&[kind])
            .observe(took.as_secs_f64());
    }
}

/// Elapsed milliseconds, for reports.
pub(crate) fn ms(since: Instant) -> f64 {
    (since.elapsed().as_secs_f64() * 1000.0 * 10.0).round() / 10.0
}
