//! Running one command on the backend the router chose: resolving the target to a server,
//! sending the packet, streaming the answer, retrying a read once elsewhere when it failed
//! before any byte reached the client, and reporting the outcome.

use super::conns::ConnRef;
use super::last_statement::Ran;
use super::{backend_err, hung, Error, Session};
use crate::backend::{control, KillScope};
use crate::metrics::route;
use crate::protocol::consts::code;
use crate::protocol::packet::write_packet;
use crate::protocol::relay::{self, End, Progress, RelayError, Shape};
use router::{Choice, Decision, Reason, Target};
use std::time::Instant;
use tokio::io::AsyncWriteExt;

/// What became of a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    /// The backend answered (OK or ERR, already forwarded to the client).
    Done(End),
    /// The proxy answered with an ERR of its own (no server, backend failure).
    Failed(u16),
}

impl Outcome {
    /// Reports the outcome to the router session.
    pub fn report(self, router: &mut router::Session) {
        match self {
            Outcome::Done(End::Ok { status, .. }) => router.on_ok(status),
            Outcome::Done(End::Err { code }) | Outcome::Failed(code) => router.on_err(code),
        }
    }
}

enum Resolved {
    Server {
        idx: usize,
        route: &'static str,
    },
    Refuse {
        code: u16,
        state: &'static str,
        msg: String,
    },
    /// The session's pinned state lives on a server that is no longer the writer.
    WriterChanged {
        from: String,
        to: String,
    },
}

impl Session {
    fn resolve(&mut self, d: &Decision, exclude: Option<usize>) -> Resolved {
        self.view.refresh(&self.ctx);
        match d.target {
            Target::Primary => {
                let r = self.primary_for_session();
                // --- issue 11 (availability), owned by the avail branch: session set-up while
                // the primary is down runs on a replica instead of being refused.
                if matches!(r, Resolved::Refuse { .. }) {
                    // The transaction (or other pinned state) lived on the primary that went
                    // down: it is lost. Say so once; until the client ends the transaction its
                    // statements fail, then the session reads on (DESIGN §5b).
                    if let Some(down) = self.ctx.topology().primary_down {
                        if self
                            .anchor
                            .as_ref()
                            .is_some_and(|a| a.backend.index == down.server)
                        {
                            self.lose_anchor(
                                "the primary is down",
                                crate::metrics::lost::PRIMARY_DOWN,
                            );
                            if let Some(msg) = self.take_loss_message() {
                                let (c, st) = code::ER_NET_READ_ERROR;
                                return Resolved::Refuse {
                                    code: c,
                                    state: st,
                                    msg,
                                };
                            }
                        }
                    }
                }
                if matches!(r, Resolved::Refuse { .. }) && self.setup_without_writer() {
                    let read = Decision {
                        target: Target::Replica,
                        ..*d
                    };
                    return self.resolve(&read, exclude);
                }
                // --- end issue 11
                r
            }
            Target::Previous => {
                let prev = self.previous.as_ref().and_then(|p| {
                    self.view
                        .backends
                        .iter()
                        .position(|b| b.name() == p.backend.name())
                });
                match prev {
                    Some(idx) if Some(idx) != exclude => Resolved::Server {
                        idx,
                        route: route::PREVIOUS,
                    },
                    _ => self.primary_or_last_writer(),
                }
            }
            Target::Replica => {
                let seed = fastrand::u64(..);
                let (mut choice, _topo) = self.ctx.choose_replica(
                    &mut self.view.snap,
                    &mut self.view.snap_generation,
                    d.max_lag_ms,
                    seed,
                );
                if let (Some(x), Choice::Replica { server, .. }) = (exclude, choice) {
                    if server == x {
                        self.view.snap_generation = None;
                        if let Some(s) = self.view.snap.servers.iter_mut().find(|s| s.idx == x) {
                            s.reachable = false;
                        }
                        // The candidate list must drop it too (allocation-free: same size).
                        self.view.snap.reindex();
                        choice = self.view.snap.choose_replica(
                            d.max_lag_ms,
                            crate::context::now_ms(),
                            seed,
                        );
                    }
                }
                // Read-your-writes (session/consistency.rs): only replicas that have applied
                // what this read needs; none left means the primary (whatever
                // routing.no_replica says: healthy replicas that are merely behind the
                // session are not a routing failure, and not counted as a fallback).
                if let Choice::Replica { server, .. } = choice {
                    if !self.replica_may_serve(server) {
                        self.keep_serving_replicas();
                        choice = self.view.snap.choose_replica(
                            d.max_lag_ms,
                            crate::context::now_ms(),
                            seed,
                        );
                        if !matches!(choice, Choice::Replica { .. }) {
                            return self.primary_or_last_writer();
                        }
                    }
                }
                match choice {
                    Choice::Replica { server, .. } => Resolved::Server {
                        idx: server,
                        route: route::REPLICA,
                    },
                    Choice::Primary { server, reason } => {
                        self.ctx.metrics.fallback(reason.as_str());
                        Resolved::Server {
                            idx: server,
                            route: route::PRIMARY,
                        }
                    }
                    Choice::NoServer(r) => {
                        let (c, st) = code::ER_UNKNOWN_ERROR;
                        Resolved::Refuse {
                            code: c,
                            state: st,
                            msg: format!(
                                "rwsplit: no server can serve this read ({}; see routing.no_replica)",
                                r.as_str()
                            ),
                        }
                    }
                }
            }
        }
    }

    // --- issue 11 (availability), owned by the avail branch.
    /// While the primary is down, a statement that only sets up the session (`SET NAMES`,
    /// `SET autocommit`, `USE`: see `router::session::Session::pending_is_session_setup`) may
    /// run on a replica, so that clients can connect and start reading. Only when the session
    /// holds nothing on the lost writer (its state there would diverge) and pins nothing.
    fn setup_without_writer(&self) -> bool {
        let Some(down) = self.ctx.topology().primary_down else {
            return false;
        };
        self.anchor.is_none()
            && self.router.pending_is_session_setup()
            && self.held.iter().all(|h| h.backend.index != down.server)
    }
    // --- end issue 11

    /// The server for `d`, or the ERR to send instead.
    pub(super) fn resolve_public(
        &mut self,
        d: &Decision,
    ) -> Result<usize, (u16, &'static str, String)> {
        match self.resolve(d, None) {
            Resolved::Server { idx, .. } => Ok(idx),
            Resolved::Refuse { code, state, msg } => Err((code, state, msg)),
            Resolved::WriterChanged { from, to } => {
                let (c, st) = code::ER_NET_READ_ERROR;
                let why = format!("the writer changed from '{from}' to '{to}'");
                self.lose_anchor(&why, crate::metrics::lost::WRITER_CHANGED);
                let msg = self
                    .take_loss_message()
                    .unwrap_or_else(|| format!("rwsplit: {why}"));
                Err((c, st, msg))
            }
        }
    }

    /// The writer, unless the session's pinned state lives on another server: then it stays
    /// there or fails, it never continues on the new writer.
    fn primary_for_session(&self) -> Resolved {
        let r = self.primary();
        if let (Resolved::Server { idx, .. }, Some(a)) = (&r, &self.anchor) {
            let to = self.view.backends.get(*idx).map(|b| b.name());
            let replica_transaction = self.router.in_replica_transaction();
            if !replica_transaction && to != Some(a.backend.name()) {
                return Resolved::WriterChanged {
                    from: a.backend.name().to_string(),
                    to: to.unwrap_or("?").to_string(),
                };
            }
        }
        r
    }

    /// Gives up the anchor (its server is no longer the writer): its connection is closed, so
    /// that server rolls back the transaction and releases the locks, and the session records
    /// the loss.
    fn lose_anchor(&mut self, why: &str, cause: &'static str) {
        let anchor = self.held.iter().position(|h| self.is_anchor(h));
        self.lose_pinned_state(why, cause);
        if let Some(i) = anchor {
            self.discard(i);
        }
    }

    /// For a read, or a statement that only needs some server of the session's (`Previous`):
    /// the writer, or while none is known the last one (see `TopologySnapshot::last_writer`),
    /// which holds everything written through the proxy.
    fn primary_or_last_writer(&self) -> Resolved {
        match (self.primary(), self.ctx.topology().router.last_writer) {
            (Resolved::Refuse { .. }, Some(idx)) => Resolved::Server {
                idx,
                route: route::PRIMARY,
            },
            (r, _) => r,
        }
    }

    fn primary(&self) -> Resolved {
        match self.ctx.primary() {
            Ok(b) => Resolved::Server {
                idx: b.index,
                route: route::PRIMARY,
            },
            Err(why) => {
                let (c, st) = code::ER_OPTION_PREVENTS_STATEMENT;
                Resolved::Refuse {
                    code: c,
                    state: st,
                    msg: format!("rwsplit: writes are refused: {why}"),
                }
            }
        }
    }

    /// Sends `self.cmd` where `d` says and relays the answer. Reads outside transactions are
    /// retried once on another server if they failed before any byte reached the client.
    pub(super) async fn run(&mut self, d: Decision, shape: Shape) -> Result<Outcome, Error> {
        self.run_with(d, shape, None).await
    }

    /// [`Session::run`] for a COM_STMT_EXECUTE of the session's statement `stmt`: the statement
    /// is prepared on the chosen backend first if it is not there yet, and the packet is
    /// rewritten with that backend's statement id (and parameter types it has not seen).
    pub(super) async fn run_with(
        &mut self,
        d: Decision,
        shape: Shape,
        stmt: Option<u32>,
    ) -> Result<Outcome, Error> {
        let retryable = d.target == Target::Replica && !self.router.in_transaction();
        // While a switchover moves the writer, writes wait here (write_gate.rs).
        let _write = match self.pass_write_gate(&d).await {
            Ok(permit) => permit,
            Err(msg) => {
                let (c, st) = code::ER_OPTION_PREVENTS_STATEMENT;
                self.send_err(1, c, st, &msg).await?;
                return Ok(Outcome::Failed(c));
            }
        };
        self.cons.current = None;
        self.audit.statement_started();
        if retryable {
            self.plan_read().await;
        }
        let mut exclude = None;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (idx, route_label) = match self.resolve(&d, exclude) {
                Resolved::Server { idx, route } => (idx, route),
                Resolved::Refuse { code, state, msg } => {
                    self.send_err(1, code, state, &msg).await?;
                    return Ok(Outcome::Failed(code));
                }
                Resolved::WriterChanged { from, to } => {
                    let why = format!("the writer changed from '{from}' to '{to}'");
                    self.lose_anchor(&why, crate::metrics::lost::WRITER_CHANGED);
                    // The statement is answered as in the aborted transaction it now is in
                    // (or told what else was lost); a BEGIN starts afresh on the new writer.
                    match self.gate().await? {
                        Some(out) => return Ok(out),
                        None => continue,
                    }
                }
            };
            let Some(backend) = self.view.backends.get(idx).cloned() else {
                let (c, st) = code::ER_UNKNOWN_ERROR;
                self.send_err(1, c, st, "rwsplit: routed to an unknown server")
                    .await?;
                return Ok(Outcome::Failed(c));
            };
            let previous_kept = d.reads_last_statement && self.previous_kept();
            // Taking a connection (connect, state replay) ends too when the monitor finds
            // the server hung: such a server is not waited on.
            let h = match self.conn_now(idx) {
                Some(h) => Ok(h),
                None => match hung::unless_hung(&backend, self.conn_for(idx)).await {
                    Some(r) => r,
                    None => {
                        self.abandon(&backend);
                        Err(crate::backend::Error::Relay(RelayError::Hung))
                    }
                },
            };
            let h = match h {
                Ok(h) => h,
                Err(e) => {
                    // A server's refusal or a full pool says nothing about the server's
                    // health: only connect and I/O failures feed its breaker or send a read
                    // elsewhere.
                    let healthy = matches!(
                        e,
                        crate::backend::Error::Server { .. }
                            | crate::backend::Error::PoolExhausted { .. }
                            | crate::backend::Error::UserBackendLimit { .. }
                    );
                    if !healthy {
                        self.ctx.report_failure(&backend);
                        backend.metrics().errors_connect.inc();
                    }
                    tracing::warn!(backend = backend.name(), error = %e, "backend connection failed");
                    if retryable && attempt == 1 && !healthy {
                        self.note_retry(&backend, hung::setup_retry_reason(&e));
                        exclude = Some(idx);
                        continue;
                    }
                    let (c, st, mut msg) = backend_err(backend.name(), &e);
                    if let Some(lost) = self.take_loss_message() {
                        msg = format!("{msg}; {lost}");
                    }
                    self.send_err(1, c, &st, &msg).await?;
                    return Ok(Outcome::Failed(c));
                }
            };
            if d.reads_last_statement {
                self.answer_last_statement(previous_kept, h, stmt);
            }
            let mut use_out = false;
            if let Some(id) = stmt {
                let ready = match self.ready_execute_now(h, id) {
                    Some(u) => Ok(u),
                    None => hung::unless_hung(&backend, self.ready_execute(h, id))
                        .await
                        .unwrap_or(Err(crate::backend::Error::Relay(RelayError::Hung))),
                };
                match ready {
                    Ok(u) => use_out = u,
                    Err(e) => {
                        let server_side = matches!(e, crate::backend::Error::Server { .. });
                        if !server_side {
                            self.discard(h);
                            self.ctx.report_failure(&backend);
                            if retryable && attempt == 1 {
                                self.note_retry(&backend, hung::setup_retry_reason(&e));
                                exclude = Some(idx);
                                continue;
                            }
                        }
                        let (c, st, msg) = backend_err(backend.name(), &e);
                        self.send_err(1, c, &st, &msg).await?;
                        return Ok(Outcome::Failed(c));
                    }
                }
            }
            self.track_gtids_on(h, idx).await;
            let mut track = self.track(idx);
            let started = Instant::now();
            let _in_flight = backend.begin();
            self.counters
                .count(&backend, route_label, reason_label(d.reason));
            let deprecate = self.held[h].conn.deprecate_eof();
            self.statement_started(&backend, h).await;
            let held = &mut self.held[h];
            let sent = async {
                let packet: &[u8] = if use_out { &self.out } else { &self.cmd };
                write_packet(&mut held.conn.stream, 0, packet).await?;
                held.conn.stream.flush().await?;
                Ok::<_, crate::protocol::Error>(())
            }
            .await;
            let mut progress = Progress::default();
            // A statement has no time limit, but a hung server is another matter: when the
            // monitor finds this one not answering, the wait ends (and a read that has sent
            // nothing yet is re-run elsewhere).
            let hung = hung::found_hung(&backend);
            tokio::pin!(hung);
            let r = match sent {
                Ok(()) => {
                    let relayed = relay::relay_tracked(
                        &mut held.conn.stream,
                        &mut self.stream,
                        &mut self.frame,
                        (shape, deprecate),
                        // No limit on a statement's duration, as on a server: a slow statement
                        // is not a failure (proxy.query_timeout_ms cancels one when set).
                        None,
                        &mut progress,
                        Some(&mut track),
                    );
                    tokio::pin!(relayed);
                    // proxy.query_timeout_ms: once past it, the statement is cancelled on its
                    // server (KILL QUERY from a control connection, awaited here so that the
                    // connection cannot change hands meanwhile) and the relay goes on to
                    // forward the server's own ERR 1317.
                    let mut cancel_at = self
                        .limits
                        .query_timeout
                        .map(|t| (tokio::time::Instant::now() + t, t));
                    let thread = held.conn.connection_id;
                    loop {
                        let deadline = async {
                            match cancel_at {
                                Some((at, _)) => tokio::time::sleep_until(at).await,
                                None => std::future::pending().await,
                            }
                        };
                        tokio::select! {
                            biased;
                            r = &mut relayed => break r,
                            _ = &mut hung => break Err(RelayError::Hung),
                            _ = deadline => {
                                let Some((_, limit)) = cancel_at.take() else { continue };
                                self.ctx.metrics.query_timeouts.inc();
                                let creds = self.registration.entry.creds();
                                tracing::info!(backend = backend.name(), thread, limit_ms = limit.as_millis() as u64, "statement past proxy.query_timeout_ms: cancelling it");
                                if let Err(e) = control::kill(&self.ctx, &backend, &creds.user, &creds.password, thread, KillScope::Query).await {
                                    tracing::warn!(backend = backend.name(), error = %e, "could not cancel a statement past proxy.query_timeout_ms");
                                }
                            }
                        }
                    }
                }
                Err(e) => Err(RelayError::Backend(std::io::Error::other(e.to_string()))),
            };
            self.statement_ended(h, progress.rows).await?;
            if self.frame.capacity() > 1 << 20 {
                self.frame = Vec::new();
            }
            match r {
                Ok(end) => {
                    // Write quorum: a held commit OK goes out once enough replicas applied it.
                    self.release_held(&mut track, h).await?;
                    self.stream.flush().await?;
                    let observed = route_label == route::PRIMARY
                        && !self.router.in_transaction()
                        && self.observe_primary(h).await;
                    let learned = self.learn_insert_id(h, d.reason, end).await;
                    self.after_statement(
                        &track,
                        Some(backend.name()),
                        route_label == route::REPLICA,
                    );
                    self.audit.committed(&track.gtids);
                    if let Some(id) = stmt {
                        self.after_execute(h, id, end);
                    }
                    for x in self.held.iter_mut() {
                        x.in_step = false;
                    }
                    let held = &mut self.held[h];
                    held.conn.last_used = Instant::now();
                    // It ran in the session's state (synced before): whatever the statement
                    // changed in that state, this connection has it (see `settle`).
                    held.in_step = true;
                    // Sticky until the reset at check-in: diagnostics statements (`SHOW
                    // WARNINGS`, `SELECT @@warning_count`) leave the list in place while
                    // reporting no warnings of their own.
                    held.conn.diagnostics |= match end {
                        End::Ok { warnings, .. } => warnings > 0 || d.calc_found_rows,
                        End::Err { .. } => true,
                    };
                    match end {
                        End::Ok { last_insert_id, .. } if last_insert_id != 0 => {
                            held.conn.last_insert_id = Some(last_insert_id);
                        }
                        // `SELECT LAST_INSERT_ID(n)` sets it without saying.
                        _ if d.reason == Reason::LastInsertId && !learned => {
                            held.conn.last_insert_id = None
                        }
                        _ => {}
                    }
                    self.record_last_statement(Ran {
                        end,
                        rows: progress.rows,
                        results: progress.results,
                        calc_found_rows: d.calc_found_rows,
                        disturbed: observed || learned,
                    });
                    let ran = ConnRef::of(&self.held[h]);
                    self.note_diagnostics(
                        ran,
                        end,
                        d.calc_found_rows,
                        d.target == Target::Previous,
                    );
                    match end {
                        End::Ok { last_insert_id, .. } if last_insert_id != 0 => {
                            self.last_insert_id = last_insert_id;
                        }
                        End::Err { .. } => backend.metrics().errors_server.inc(),
                        _ => {}
                    }
                    let timer = match route_label {
                        route::REPLICA => &self.timers.replica,
                        route::PREVIOUS => &self.timers.previous,
                        _ => &self.timers.primary,
                    };
                    timer.observe(started.elapsed().as_secs_f64());
                    return Ok(Outcome::Done(end));
                }
                Err(RelayError::Client(e)) => {
                    // The client left in the middle of the answer: the server may still be
                    // running the statement (and holding its locks). The connection is closed
                    // and never reused, so its thread id cannot reach anyone else.
                    let thread = self.held[h].conn.connection_id;
                    let creds = self.registration.entry.creds();
                    let ctx = self.ctx.clone();
                    let b = backend.clone();
                    tokio::spawn(async move {
                        let _ = control::kill(
                            &ctx,
                            &b,
                            &creds.user,
                            &creds.password,
                            thread,
                            KillScope::Connection,
                        )
                        .await;
                    });
                    self.discard(h);
                    return Err(Error::Client(e));
                }
                Err(e) => {
                    // On a hung server: abandoned, closed without waiting for anything.
                    self.discard(h);
                    self.ctx.report_failure(&backend);
                    match e {
                        RelayError::Timeout(_) | RelayError::Hung => {
                            backend.metrics().errors_timeout.inc()
                        }
                        _ => backend.metrics().errors_io.inc(),
                    }
                    tracing::warn!(backend = backend.name(), error = %e, forwarded = progress.forwarded, "backend failed during a command");
                    if retryable && attempt == 1 && !progress.forwarded {
                        self.note_retry(&backend, hung::relay_retry_reason(&e));
                        exclude = Some(idx);
                        continue;
                    }
                    let seq = if progress.forwarded {
                        progress.last_seq.wrapping_add(1)
                    } else {
                        1
                    };
                    let (c, st) = code::ER_NET_READ_ERROR;
                    let mut msg = format!(
                        "rwsplit: lost backend '{}' ({}:{}) during the command: {e}",
                        backend.name(),
                        backend.config.host,
                        backend.config.port
                    );
                    if let Some(lost) = self.take_loss_message() {
                        msg = format!("{msg}; {lost}");
                    }
                    self.send_err(seq, c, st, &msg).await?;
                    return Ok(Outcome::Failed(c));
                }
            }
        }
    }

    /// COM_QUERY.
    pub(super) async fn query(&mut self) -> Result<(), Error> {
        self.substitute_connection_id();
        if self.kill_statement().await? {
            return Ok(());
        }
        if self.answer_own_warnings().await? || self.answer_last_gtid().await? {
            return Ok(());
        }
        if self.answer_token().await? {
            return Ok(());
        }
        let Ok(rule) = self.match_rules().await? else {
            return Ok(()); // blocked by a query rule
        };
        let cmd = std::mem::take(&mut self.cmd);
        self.track_begin(cmd.get(1..).unwrap_or_default());
        self.cmd = cmd;
        let mut d = self.router.route_query(&self.cmd[1..]);
        let own_timeout = self.apply_rule(rule.as_ref(), &mut d);
        let (started, reason) = (Instant::now(), d.reason);
        let refused = if reason == Reason::PreviousBackend {
            self.route_get_diagnostics(&mut d).await?
        } else {
            None
        };
        let out = match refused {
            Some(out) => out,
            None => match self.gate().await? {
                Some(out) => out,
                None => self.run(d, Shape::Results).await?,
            },
        };
        self.diagnostics_rewritten = false;
        if let Some(t) = own_timeout {
            self.limits.query_timeout = t;
        }
        let cmd = std::mem::take(&mut self.cmd);
        self.audit_statement(out, reason, started, cmd.get(1..).unwrap_or_default());
        self.cmd = cmd;
        out.report(&mut self.router);
        self.settle();
        self.track_end(out);
        Ok(())
    }

    /// COM_INIT_DB: runs where the previous statement ran (or the primary) and is recorded for
    /// replay on every other backend.
    pub(super) async fn init_db(&mut self) -> Result<(), Error> {
        let d = Decision {
            target: Target::Previous,
            reason: Reason::SessionState,
            max_lag_ms: None,
            calc_found_rows: false,
            reads_last_statement: false,
        };
        let out = self.run(d, Shape::Single).await?;
        if let Outcome::Done(End::Ok { .. }) = out {
            let db = self.cmd[1..].to_vec();
            self.router.on_init_db(&db);
        }
        self.settle();
        Ok(())
    }

    /// COM_FIELD_LIST: a read of table metadata, routed like `SHOW COLUMNS`.
    pub(super) async fn field_list(&mut self) -> Result<(), Error> {
        let d = self.router.route_query(b"SHOW COLUMNS FROM t");
        let out = self.run(d, Shape::UntilEof).await?;
        out.report(&mut self.router);
        Ok(())
    }

    /// COM_STATISTICS: answered by the previous backend (or the primary).
    pub(super) async fn statistics(&mut self) -> Result<(), Error> {
        let d = Decision {
            target: Target::Previous,
            reason: Reason::ServerAdmin,
            max_lag_ms: None,
            calc_found_rows: false,
            reads_last_statement: false,
        };
        self.run(d, Shape::Single).await?;
        Ok(())
    }

    /// COM_SET_OPTION (multi-statements on/off): applied to every connection the session holds
    /// or takes later.
    pub(super) async fn set_option(&mut self) -> Result<(), Error> {
        let Some(v) = self.cmd.get(1..3).map(|b| u16::from_le_bytes([b[0], b[1]])) else {
            let (c, st) = code::ER_UNKNOWN_COM_ERROR;
            return self.send_err(1, c, st, "Malformed COM_SET_OPTION").await;
        };
        self.set_option = Some(v);
        self.refresh_want();
        let mut i = 0;
        while i < self.held.len() {
            let [a, b] = v.to_le_bytes();
            match self.held[i]
                .conn
                .command(
                    &[crate::protocol::consts::com::SET_OPTION, a, b],
                    Shape::Single,
                )
                .await
            {
                Ok(_) => {
                    let conn = &mut self.held[i].conn;
                    conn.state = conn.state.with_option(Some(v));
                    i += 1;
                }
                Err(crate::backend::Error::Server {
                    code,
                    state,
                    message,
                }) => {
                    return self.send_err(1, code, &state, &message).await;
                }
                Err(_) => self.discard(i),
            }
        }
        self.send_eof(1).await
    }
}

fn reason_label(r: Reason) -> &'static str {
    r.as_str()
}
