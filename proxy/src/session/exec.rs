//! Running one command on the backend the router chose: resolving the target to a server,
//! sending the packet, streaming the answer, retrying a read once elsewhere when it failed
//! before any byte reached the client, and reporting the outcome.

use super::{backend_err, Error, Session};
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
}

impl Session {
    fn resolve(&mut self, d: &Decision, exclude: Option<usize>) -> Resolved {
        self.view.refresh(&self.ctx);
        match d.target {
            Target::Primary => self.primary(),
            Target::Previous => {
                let prev = self
                    .previous
                    .as_ref()
                    .and_then(|name| self.view.backends.iter().position(|b| b.name() == &**name));
                match prev {
                    Some(idx) if Some(idx) != exclude => Resolved::Server {
                        idx,
                        route: route::PREVIOUS,
                    },
                    _ => self.primary(),
                }
            }
            Target::Replica => {
                let seed = fastrand::u64(..);
                let (mut choice, _topo) =
                    self.ctx
                        .choose_replica(&mut self.view.snap, d.max_lag_ms, seed);
                if let (Some(x), Choice::Replica { server, .. }) = (exclude, choice) {
                    if server == x {
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

    /// The server for `d`, or the ERR to send instead.
    pub(super) fn resolve_public(
        &mut self,
        d: &Decision,
    ) -> Result<usize, (u16, &'static str, String)> {
        match self.resolve(d, None) {
            Resolved::Server { idx, .. } => Ok(idx),
            Resolved::Refuse { code, state, msg } => Err((code, state, msg)),
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
            };
            let Some(backend) = self.view.backends.get(idx).cloned() else {
                let (c, st) = code::ER_UNKNOWN_ERROR;
                self.send_err(1, c, st, "rwsplit: routed to an unknown server")
                    .await?;
                return Ok(Outcome::Failed(c));
            };
            let h = match self.conn_for(idx).await {
                Ok(h) => h,
                Err(e) => {
                    let server_side = matches!(e, crate::backend::Error::Server { .. });
                    if !server_side {
                        self.ctx.report_failure(&backend);
                        backend.metrics().errors_connect.inc();
                    }
                    tracing::warn!(backend = backend.name(), error = %e, "backend connection failed");
                    if retryable && attempt == 1 && !server_side {
                        exclude = Some(idx);
                        continue;
                    }
                    let (c, st, msg) = backend_err(backend.name(), &e);
                    self.send_err(1, c, &st, &msg).await?;
                    return Ok(Outcome::Failed(c));
                }
            };
            let mut use_out = false;
            if let Some(id) = stmt {
                match self.ready_execute(h, id).await {
                    Ok(u) => use_out = u,
                    Err(e) => {
                        let server_side = matches!(e, crate::backend::Error::Server { .. });
                        if !server_side {
                            self.discard(h);
                            self.ctx.report_failure(&backend);
                            if retryable && attempt == 1 {
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
            let generation = self.router.history_generation();
            let started = Instant::now();
            let _in_flight = backend.begin();
            backend.metrics().query(route_label, reason_label(d.reason));
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
            let r = match sent {
                Ok(()) => {
                    relay::relay(
                        &mut held.conn.stream,
                        &mut self.stream,
                        &mut self.frame,
                        shape,
                        deprecate,
                        Some(self.read_timeout),
                        &mut progress,
                    )
                    .await
                }
                Err(e) => Err(RelayError::Backend(std::io::Error::other(e.to_string()))),
            };
            self.statement_ended(h).await?;
            if self.frame.capacity() > 1 << 20 {
                self.frame = Vec::new();
            }
            match r {
                Ok(end) => {
                    self.stream.flush().await?;
                    if let Some(id) = stmt {
                        self.after_execute(h, id, end);
                    }
                    self.held[h].conn.last_used = Instant::now();
                    if self.held[h].conn.replayed == generation {
                        // Whatever the statement changed in the history, this connection has it.
                        self.held[h].conn.replayed = u64::MAX;
                    }
                    if self.previous.as_deref() != Some(backend.name()) {
                        self.previous = Some(backend.name().into());
                    }
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
                    self.discard(h);
                    return Err(Error::Client(e));
                }
                Err(e) => {
                    self.discard(h);
                    self.ctx.report_failure(&backend);
                    match e {
                        RelayError::Timeout(_) => backend.metrics().errors_timeout.inc(),
                        _ => backend.metrics().errors_io.inc(),
                    }
                    tracing::warn!(backend = backend.name(), error = %e, forwarded = progress.forwarded, "backend failed during a command");
                    if retryable && attempt == 1 && !progress.forwarded {
                        exclude = Some(idx);
                        continue;
                    }
                    let seq = if progress.forwarded {
                        progress.last_seq.wrapping_add(1)
                    } else {
                        1
                    };
                    let (c, st) = code::ER_NET_READ_ERROR;
                    let msg = format!(
                        "rwsplit: lost backend '{}' ({}:{}) during the command: {e}",
                        backend.name(),
                        backend.config.host,
                        backend.config.port
                    );
                    self.send_err(seq, c, st, &msg).await?;
                    return Ok(Outcome::Failed(c));
                }
            }
        }
    }

    /// After a command: connections that ran it are at the new history generation.
    pub(super) fn settle_generation(&mut self) {
        let generation = self.router.history_generation();
        for h in self.held.iter_mut() {
            if h.conn.replayed == u64::MAX {
                h.conn.replayed = generation;
            }
        }
    }

    /// COM_QUERY.
    pub(super) async fn query(&mut self) -> Result<(), Error> {
        self.substitute_connection_id();
        if self.kill_statement().await? {
            return Ok(());
        }
        let d = self.router.route_query(&self.cmd[1..]);
        let out = self.run(d, Shape::Results).await?;
        out.report(&mut self.router);
        self.settle_generation();
        Ok(())
    }

    /// COM_INIT_DB: runs where the previous statement ran (or the primary) and is recorded for
    /// replay on every other backend.
    pub(super) async fn init_db(&mut self) -> Result<(), Error> {
        let d = Decision {
            target: Target::Previous,
            reason: Reason::SessionState,
            max_lag_ms: None,
        };
        let out = self.run(d, Shape::Single).await?;
        if let Outcome::Done(End::Ok { .. }) = out {
            let db = self.cmd[1..].to_vec();
            self.router.on_init_db(&db);
        }
        self.settle_generation();
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
                    self.held[i].option = Some(v);
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
