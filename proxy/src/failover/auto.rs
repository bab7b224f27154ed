//! `routing.failover: auto`: when the primary has been down for `routing.failover_after_ms`,
//! promote the replica that received the most from it, after it applied all it received, and
//! point the other replicas at it. The lost primary is left alone: if it comes back writable it
//! is fenced (health/topology.rs), as after any failover.
//!
//! Refused, and retried later, whenever it could lose a write the proxy knows was committed:
//! the embedded binlog reader saw the primary commit a GTID that no reachable replica received.
//! Refused too when the replicas' positions diverge (none has everything the others have).

use super::server::{self, ServerConn, Status};
use super::sql::{covers, Source};
use super::{hold_writer, ms, record, refuse, state, Error, Report, Step};
use crate::context::Context;
use binlog_reader::position::Watermarks;
use router::config::{Config, FailoverMode, ServerConfig};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often the watcher looks at the topology, and how long it waits after a refusal.
const TICK: Duration = Duration::from_millis(100);
const RETRY: Duration = Duration::from_secs(5);

/// Starts the watcher; it does nothing unless `routing.failover` is `auto` (read each tick, so
/// a reload turns it on or off).
pub fn spawn(ctx: Arc<Context>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut last_try: Option<Instant> = None;
        let mut last_refusal = String::new();
        loop {
            tokio::time::sleep(TICK).await;
            if ctx.is_shutting_down() {
                return;
            }
            let config = ctx.config();
            if config.routing.failover != FailoverMode::Auto {
                continue;
            }
            let Some(down) = ctx.topology().primary_down else {
                last_refusal.clear();
                continue;
            };
            if down.since.elapsed() < Duration::from_millis(config.routing.failover_after_ms)
                || last_try.is_some_and(|t| t.elapsed() < RETRY)
            {
                continue;
            }
            last_try = Some(Instant::now());
            let Some(lost) = config.servers.get(down.server).cloned() else {
                continue;
            };
            let started = Instant::now();
            let result = attempt(&ctx, &config, &lost).await;
            match &result {
                Ok(r) => {
                    tracing::warn!(from = %r.from, to = %r.to, total_ms = r.total_ms, "automatic failover done")
                }
                Err(Error::Refused { reason, message }) => {
                    if *reason == "already_running" {
                        continue;
                    }
                    if *message != last_refusal {
                        tracing::error!(
                            reason,
                            "automatic failover refused (retried every {} s): {message}",
                            RETRY.as_secs()
                        );
                        last_refusal = message.clone();
                    }
                }
                Err(e) => tracing::error!(error = %e, "automatic failover failed"),
            }
            record(&ctx, "failover", &result, started.elapsed());
        }
    })
}

/// One candidate for promotion.
struct Candidate {
    server: ServerConfig,
    conn: ServerConn,
    status: Status,
    received: Watermarks,
}

async fn attempt(
    ctx: &Arc<Context>,
    config: &Config,
    lost: &ServerConfig,
) -> Result<Report, Error> {
    let state = state(ctx);
    let Ok(_one) = state.running.try_lock() else {
        return Err(refuse(
            "already_running",
            "a switchover or failover is already running",
        ));
    };
    let started = Instant::now();
    let mut steps = Vec::new();
    let account = config.switchover_account();
    let password = binlog_reader::secret::resolve(&account.secret)
        .map_err(|e| refuse("no_credentials", e.to_string()))?;
    let repl = config.replication_account();
    let repl_password = binlog_reader::secret::resolve(&repl.secret)
        .map_err(|e| refuse("no_credentials", e.to_string()))?;
    let timeout = Duration::from_millis(ctx.proxy_config().pool.connect_timeout_ms.max(100));

    // 1. Who received the most from the lost primary.
    let t = Instant::now();
    let topology = ctx.topology();
    let mut candidates = Vec::new();
    let mut unreachable = Vec::new();
    for (i, s) in config.servers.iter().enumerate() {
        if s.name == lost.name || !topology.servers.get(i).is_some_and(|h| h.reachable) {
            if s.name != lost.name {
                unreachable.push(s.name.clone());
            }
            continue;
        }
        let Ok(mut conn) = server::connect(s, &account.user, &password, timeout).await else {
            unreachable.push(s.name.clone());
            continue;
        };
        let Ok(Some(status)) = conn.replica_status().await else {
            continue;
        };
        if !status.gtid {
            continue;
        }
        let Some(received) = conn.flavor.watermarks(&status.received) else {
            continue;
        };
        candidates.push(Candidate {
            server: s.clone(),
            conn,
            status,
            received,
        });
    }
    let Some(best) = candidates
        .iter()
        .position(|c| candidates.iter().all(|o| covers(&c.received, &o.received)))
    else {
        return Err(refuse(
            "diverged",
            if candidates.is_empty() {
                "no reachable replica replicates by GTID".to_string()
            } else {
                "no replica received everything the others did (their positions diverge)"
                    .to_string()
            },
        ));
    };
    let mut best = candidates.swap_remove(best);
    // What the proxy knows the primary committed: the last transaction its binlog reader saw.
    let known = ctx
        .lag_reader()
        .map(|r| r.snapshot().primary.gtid_seq)
        .filter(|w| !w.is_empty());
    if let Some(known) = &known {
        if !covers(&best.received, known) {
            return Err(refuse(
                "would_lose_writes",
                format!(
                    "the binlog reader saw '{}' commit {known:?}, but the most advanced reachable replica, '{}', received only {:?}",
                    lost.name, best.server.name, best.received
                ),
            ));
        }
    }
    if !best.status.replication.sql_running {
        return Err(refuse(
            "not_replicating",
            format!(
                "'{}' received the most but its SQL thread is stopped",
                best.server.name
            ),
        ));
    }
    let mut detail = format!("'{}' received {}", best.server.name, best.status.received);
    if known.is_none() {
        detail.push_str(" (no position from the binlog reader to check against)");
    }
    if !unreachable.is_empty() {
        detail.push_str(&format!("; unreachable: {}", unreachable.join(", ")));
    }
    steps.push(Step {
        step: "choose",
        ms: ms(t),
        detail,
    });

    // 2. It applies all it received.
    let t = Instant::now();
    let budget =
        Duration::from_millis(config.routing.switchover_write_wait_ms).max(Duration::from_secs(5));
    let sql = best.conn.flavor.wait_for(&best.status.received, budget);
    match best
        .conn
        .value_within(&sql, budget + Duration::from_secs(1))
        .await
    {
        Ok(Some(r)) if r == "0" => {}
        Ok(r) => {
            return Err(refuse(
                "relay_not_applied",
                format!(
                    "'{}' did not apply its relay log within {} ms (answer {r:?})",
                    best.server.name,
                    budget.as_millis()
                ),
            ))
        }
        Err(e) => return Err(refuse("relay_not_applied", e.to_string())),
    }
    steps.push(Step {
        step: "apply_relay",
        ms: ms(t),
        detail: format!("'{}' applied {}", best.server.name, best.status.received),
    });

    // 3. Promote it; the proxy writes there at once.
    let t = Instant::now();
    let to = best.server.name.clone();
    if let Err(e) = best.conn.exec_all(&best.conn.flavor.promote()).await {
        return Err(Error::Failed {
            step: "promote",
            message: e.to_string(),
            rolled_back: false,
            steps,
        });
    }
    hold_writer(ctx, &to, true).await;
    steps.push(Step {
        step: "promote",
        ms: ms(t),
        detail: format!("'{to}' is writable; writes go there"),
    });

    // 4. The other replicas follow it.
    let t = Instant::now();
    let source = Source {
        host: &best.server.host,
        port: best.server.port,
        user: &repl.user,
        password: &repl_password,
    };
    let mut done = Vec::new();
    let mut skipped = unreachable;
    for mut c in candidates {
        match c
            .conn
            .exec_all(&c.conn.flavor.replicate_from(&source, false))
            .await
        {
            Ok(()) => done.push(c.server.name.clone()),
            Err(e) => skipped.push(format!("{} ({e})", c.server.name)),
        }
    }
    let mut detail = format!("replicating from '{to}': {}", done.join(", "));
    if !skipped.is_empty() {
        detail.push_str(&format!("; not repointed: {}", skipped.join("; ")));
    }
    steps.push(Step {
        step: "repoint",
        ms: ms(t),
        detail,
    });
    for s in &steps {
        tracing::info!(step = s.step, ms = s.ms, "failover: {}", s.detail);
    }
    Ok(Report {
        from: lost.name.clone(),
        to,
        steps,
        total_ms: ms(started),
        writes_held_ms: 0.0,
    })
}
