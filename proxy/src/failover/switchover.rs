//! A planned switchover, as MaxScale's `switchover` does it and ProxySQL users do by hand, but
//! with the proxy holding writes so that clients see latency, not errors:
//!
//! 1. `hold_writes`: new writes wait at the write gate; the ones already running finish.
//! 2. `demote`: the old primary becomes `read_only`; its GTID position is everything it
//!    committed.
//! 3. `catch_up`: the target applies up to that position (`MASTER_GTID_WAIT`).
//! 4. `promote`: the target stops replicating and becomes writable.
//! 5. `switch_writer`: the proxy's writer is the target at once; waiting writes go there.
//! 6. `repoint`: the old primary and the other replicas replicate from the target by GTID.
//!
//! Everything that can refuse is checked before step 1, so a refusal changes nothing. A
//! failure in steps 2–4 undoes what was done (old primary writable again, target replicating
//! again) before the writes are let go. The whole move stays within
//! `routing.switchover_write_wait_ms`, the longest any write waits.

use super::server::{self, ServerConn};
use super::sql::Source;
use super::{hold_writer, ms, record, refuse, release_hold, state, Error, Report, Step};
use crate::context::{Context, WriteGate};
use router::config::{Config, ServerConfig};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Time kept back from `switchover_write_wait_ms` for promoting and switching after the
/// target caught up, so that no write waits longer than the bound.
const PROMOTE_RESERVE: Duration = Duration::from_millis(300);

/// Moves the writer to server `to`. One at a time per proxy.
pub async fn run(ctx: &Arc<Context>, to: &str) -> Result<Report, Error> {
    let started = Instant::now();
    let result = attempt(ctx, to).await;
    record(ctx, "switchover", &result, started.elapsed());
    match &result {
        Ok(r) => {
            tracing::info!(from = %r.from, to = %r.to, total_ms = r.total_ms, writes_held_ms = r.writes_held_ms, "switchover done")
        }
        Err(Error::Refused { reason, message }) => {
            tracing::warn!(to, reason, "switchover refused: {message}")
        }
        Err(e) => tracing::error!(to, error = %e, "switchover failed"),
    }
    result
}

async fn attempt(ctx: &Arc<Context>, to: &str) -> Result<Report, Error> {
    let state = state(ctx);
    let Ok(_one) = state.running.try_lock() else {
        return Err(refuse(
            "already_running",
            "a switchover or failover is already running",
        ));
    };
    let config = ctx.config();
    let plan = Plan::check(ctx, &config, to).await?;
    plan.execute(ctx).await
}

/// Everything checked, connections open: ready to change servers.
struct Plan {
    old: ServerConfig,
    target: ServerConfig,
    old_conn: ServerConn,
    target_conn: ServerConn,
    /// The other servers to point at the target (reachable now).
    others: Vec<ServerConfig>,
    wait: Duration,
    connect_timeout: Duration,
    admin: (String, String),
    replication: (String, String),
}

impl Plan {
    /// The refusals: nothing is changed before all of these pass.
    async fn check(ctx: &Context, config: &Config, to: &str) -> Result<Plan, Error> {
        let topology = ctx.topology();
        let Some(t) = config.servers.iter().position(|s| s.name == to) else {
            return Err(refuse(
                "unknown_server",
                format!("no server named '{to}' is configured"),
            ));
        };
        let old = match (topology.primary(), &topology.write_block) {
            (Some(p), None) => p,
            (_, Some(why)) => {
                return Err(refuse(
                    "no_primary",
                    format!("there is no working primary to switch from ({why})"),
                ))
            }
            (None, None) => return Err(refuse("no_primary", "no primary is known yet")),
        };
        if old == t {
            return Err(refuse(
                "already_primary",
                format!("'{to}' is the primary already"),
            ));
        }
        let Some(health) = topology
            .servers
            .get(t)
            .filter(|_| topology.servers.len() == config.servers.len())
        else {
            return Err(refuse(
                "config_reloaded",
                "the configuration was just reloaded: try again",
            ));
        };
        if !health.reachable {
            return Err(refuse(
                "target_unreachable",
                format!("'{to}' does not answer its health checks"),
            ));
        }
        if health.replicating != Some(true) {
            return Err(refuse(
                "not_a_replica",
                format!("'{to}' replicates from no one"),
            ));
        }
        if !health.threads_running {
            return Err(refuse(
                "not_replicating",
                format!("'{to}' does not replicate now (its IO or SQL thread is stopped)"),
            ));
        }
        let max_lag = config.routing.switchover_max_lag_ms;
        match health.lag_ms {
            None => {
                return Err(refuse(
                    "lag_unknown",
                    format!("the lag of '{to}' is unknown"),
                ))
            }
            Some(lag) if lag > max_lag => {
                return Err(refuse(
                    "target_behind",
                    format!(
                        "'{to}' is {lag} ms behind, more than routing.switchover_max_lag_ms ({max_lag} ms)"
                    ),
                ))
            }
            Some(_) => {}
        }
        let secret = |c: router::config::Account| {
            binlog_reader::secret::resolve(&c.secret)
                .map(|p| (c.user.clone(), p))
                .map_err(|e| refuse("no_credentials", e.to_string()))
        };
        let admin = secret(config.switchover_account())?;
        let replication = secret(config.replication_account())?;
        let connect_timeout =
            Duration::from_millis(ctx.proxy_config().pool.connect_timeout_ms.max(100));
        let open = |s: &ServerConfig| {
            let (user, password) = admin.clone();
            let s = s.clone();
            async move {
                server::connect(&s, &user, &password, connect_timeout)
                    .await
                    .map_err(|e| refuse("cannot_connect", e.to_string()))
            }
        };
        let old = config.servers[old].clone();
        let target = config.servers[t].clone();
        let old_conn = open(&old).await?;
        let mut target_conn = open(&target).await?;
        // The target as it is now, not as the last check saw it.
        let checked = |e: server::Error| refuse("cannot_connect", e.to_string());
        let Some(status) = target_conn.replica_status().await.map_err(checked)? else {
            return Err(refuse(
                "not_a_replica",
                format!("'{to}' replicates from no one"),
            ));
        };
        if !(status.replication.io_running && status.replication.sql_running) {
            return Err(refuse(
                "not_replicating",
                format!("'{to}' does not replicate now (its IO or SQL thread is stopped)"),
            ));
        }
        if status.replication.source_port != Some(old.port)
            && status.replication.source_host != old.host
        {
            return Err(refuse(
                "replicates_elsewhere",
                format!(
                    "'{to}' replicates from {}:{}, not from the primary '{}'",
                    status.replication.source_host,
                    status.replication.source_port.unwrap_or(0),
                    old.name
                ),
            ));
        }
        if !status.gtid {
            return Err(refuse(
                "no_gtid",
                format!(
                    "'{to}' does not replicate by GTID: the others could not follow it by position"
                ),
            ));
        }
        if !target_conn
            .logs_replicated_writes()
            .await
            .map_err(checked)?
        {
            return Err(refuse(
                "no_binlog",
                format!("'{to}' has no binlog with the writes it replicates (log_bin, log_slave_updates): its replicas could not follow it"),
            ));
        }
        let others = config
            .servers
            .iter()
            .enumerate()
            .filter(|(i, s)| {
                *i != t
                    && s.name != old.name
                    && topology.servers.get(*i).is_some_and(|h| h.reachable)
            })
            .map(|(_, s)| s.clone())
            .collect();
        Ok(Plan {
            old,
            target,
            old_conn,
            target_conn,
            others,
            wait: Duration::from_millis(config.routing.switchover_write_wait_ms),
            connect_timeout,
            admin,
            replication,
        })
    }

    async fn execute(mut self, ctx: &Arc<Context>) -> Result<Report, Error> {
        let started = Instant::now();
        let deadline = started + self.wait.saturating_sub(PROMOTE_RESERVE);
        let gate = ctx.extension(WriteGate::default);
        let mut steps = Vec::new();
        let (from, to) = (self.old.name.clone(), self.target.name.clone());
        tracing::info!(%from, %to, "switchover: holding writes");

        // 1. Hold new writes; let the ones running finish (they would fail on a read-only
        // server otherwise). Sessions inside a transaction go on: they can only finish there.
        let t = Instant::now();
        // The old primary stays the writer for reads that need it while the move runs.
        hold_writer(ctx, &from, false).await;
        gate.close(&format!("a switchover from '{from}' to '{to}'"));
        let drain_by = (t + self.wait / 4).min(deadline);
        let drained = gate.drained(drain_by).await;
        let running = gate.active();
        steps.push(step(
            "hold_writes",
            t,
            if drained {
                "new writes wait; none running".to_string()
            } else {
                format!("new writes wait; {running} still running (read_only waits for them)")
            },
        ));
        log_step(&steps);

        // 2. Demote: no application write commits on the old primary after this.
        let t = Instant::now();
        let lock_wait = deadline
            .saturating_duration_since(Instant::now())
            .as_secs()
            .max(1);
        let flavor = self.old_conn.flavor;
        let demoted = async {
            self.old_conn
                .exec(&format!("SET SESSION lock_wait_timeout = {lock_wait}"))
                .await?;
            self.old_conn
                .exec_within(
                    flavor.demote(),
                    deadline
                        .saturating_duration_since(Instant::now())
                        .max(Duration::from_millis(100)),
                )
                .await?;
            self.old_conn
                .value(flavor.binlog_position())
                .await
                .map(|p| p.unwrap_or_default().replace('\n', ""))
        }
        .await;
        let position = match demoted {
            Ok(p) => p,
            Err(e) => {
                return Err(self
                    .undo(ctx, &gate, steps, "demote", e.to_string(), false)
                    .await)
            }
        };
        steps.push(step(
            "demote",
            t,
            format!("'{from}' is read_only at {position}"),
        ));
        log_step(&steps);

        // 3. The target applies everything the old primary committed.
        let t = Instant::now();
        let budget = deadline.saturating_duration_since(Instant::now());
        let waited = self
            .target_conn
            .value_within(
                &self.target_conn.flavor.wait_for(&position, budget),
                budget + Duration::from_secs(1),
            )
            .await;
        match waited {
            Ok(Some(r)) if r == "0" => {}
            Ok(r) => {
                let why = format!(
                    "'{to}' did not apply {position} within {} ms (answer {r:?})",
                    budget.as_millis()
                );
                return Err(self.undo(ctx, &gate, steps, "catch_up", why, false).await);
            }
            Err(e) => {
                return Err(self
                    .undo(ctx, &gate, steps, "catch_up", e.to_string(), false)
                    .await)
            }
        }
        steps.push(step("catch_up", t, format!("'{to}' applied {position}")));
        log_step(&steps);

        // 4. Promote.
        let t = Instant::now();
        let promote = self.target_conn.flavor.promote();
        if let Err(e) = self.target_conn.exec_all(&promote).await {
            return Err(self
                .undo(ctx, &gate, steps, "promote", e.to_string(), true)
                .await);
        }
        steps.push(step(
            "promote",
            t,
            format!("'{to}' replicates from no one and is writable"),
        ));
        log_step(&steps);

        // 5. The proxy's writer is the target from now on; the waiting writes go there.
        let t = Instant::now();
        hold_writer(ctx, &to, true).await;
        gate.open();
        let writes_held_ms = ms(started);
        steps.push(step("switch_writer", t, format!("writes go to '{to}'")));
        log_step(&steps);

        // 6. Everyone else follows the target.
        let t = Instant::now();
        let mut done = Vec::new();
        let mut skipped = Vec::new();
        let source = Source {
            host: &self.target.host,
            port: self.target.port,
            user: &self.replication.0,
            password: &self.replication.1,
        };
        let old_statements = self.old_conn.flavor.replicate_from(&source, true);
        match self.old_conn.exec_all(&old_statements).await {
            Ok(()) => done.push(from.clone()),
            Err(e) => skipped.push(format!("{from} ({e})")),
        }
        for other in &self.others {
            match self.repoint(other, &source).await {
                Ok(true) => done.push(other.name.clone()),
                Ok(false) => {
                    skipped.push(format!("{} (does not replicate from '{from}')", other.name))
                }
                Err(e) => skipped.push(format!("{} ({e})", other.name)),
            }
        }
        let mut detail = format!("replicating from '{to}': {}", done.join(", "));
        if !skipped.is_empty() {
            detail.push_str(&format!("; not repointed: {}", skipped.join("; ")));
            tracing::error!(%to, skipped = %skipped.join("; "), "switchover: some servers were not pointed at the new primary; do it by hand");
        }
        steps.push(step("repoint", t, detail));
        log_step(&steps);
        Ok(Report {
            from,
            to,
            steps,
            total_ms: ms(started),
            writes_held_ms,
        })
    }

    /// Points one more server at the target, if it replicated from the old primary; whether
    /// it did.
    async fn repoint(
        &self,
        server: &ServerConfig,
        source: &Source<'_>,
    ) -> Result<bool, server::Error> {
        let mut conn =
            server::connect(server, &self.admin.0, &self.admin.1, self.connect_timeout).await?;
        let Some(status) = conn.replica_status().await? else {
            return Ok(false);
        };
        let r = &status.replication;
        if r.source_port != Some(self.old.port) && r.source_host != self.old.host {
            return Ok(false);
        }
        let statements = conn.flavor.replicate_from(source, false);
        conn.exec_all(&statements).await?;
        Ok(true)
    }

    /// Undoes steps 2–4 after `step` failed, lets the writes go to the old primary again, and
    /// says what happened. `promoting`: the target may have stopped replicating already.
    async fn undo(
        &mut self,
        ctx: &Context,
        gate: &WriteGate,
        steps: Vec<Step>,
        step: &'static str,
        message: String,
        promoting: bool,
    ) -> Error {
        tracing::error!(step, error = %message, from = %self.old.name, to = %self.target.name, "switchover: step failed; undoing");
        let mut rolled_back = true;
        if promoting {
            let source = Source {
                host: &self.old.host,
                port: self.old.port,
                user: &self.replication.0,
                password: &self.replication.1,
            };
            let mut back = vec![self.target_conn.flavor.demote().to_string()];
            back.extend(self.target_conn.flavor.replicate_from(&source, false));
            if let Err(e) = self.target_conn.exec_all(&back).await {
                tracing::error!(error = %e, target = %self.target.name, "switchover: could not point the target back at the old primary");
                rolled_back = false;
            }
        }
        let undo = self.old_conn.flavor.undo_demote();
        if let Err(e) = self.old_conn.exec(undo).await {
            tracing::error!(error = %e, server = %self.old.name, "switchover: could not make the old primary writable again");
            rolled_back = false;
        }
        release_hold(ctx);
        gate.open();
        Error::Failed {
            step,
            message,
            rolled_back,
            steps,
        }
    }
}

fn step(name: &'static str, since: Instant, detail: String) -> Step {
    Step {
        step: name,
        ms: ms(since),
        detail,
    }
}

fn log_step(steps: &[Step]) {
    if let Some(s) = steps.last() {
        tracing::info!(step = s.step, ms = s.ms, "switchover: {}", s.detail);
    }
}
