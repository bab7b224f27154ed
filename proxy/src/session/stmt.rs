//! Prepared statements (binary protocol). The session numbers statements itself; each backend
//! connection keeps the statements prepared on it by text (`backend/stmt_cache.rs`), so an
//! execution that lands on a connection where any session already prepared the same text
//! reuses it, and one that lands elsewhere prepares it there first; the packets are rewritten
//! with that connection's id. Executions are routed by what the statement does (DESIGN §2),
//! never by where it was first prepared. `COM_STMT_CLOSE` from the client closes only the
//! client's handle: the connections keep the statement for the next session that runs it.

use super::exec::Outcome;
use super::limits::{self, Limits};
use super::stmt_rules::StmtRule;
use super::{backend_err, Error, Session};
use crate::backend::Error as BackendError;
use crate::protocol::consts::{code, com, status};
use crate::protocol::packet::{read_packet, write_packet};
use crate::protocol::relay::{End, Shape};
use router::{Decision, Target};
use std::sync::Arc;
use std::time::Instant;
use tokio::io::AsyncWriteExt;

/// Largest prepare-response packet (metadata) accepted.
const META_MAX: usize = 16 << 20;

/// A statement the client prepared.
pub struct Stmt {
    sql: Arc<[u8]>,
    class: router::StmtClass,
    params: u16,
    /// The last parameter-type block the client sent (2 bytes per parameter).
    types: Option<Vec<u8>>,
    /// COM_STMT_SEND_LONG_DATA packets waiting for the next execution.
    long_data: Vec<Vec<u8>>,
    /// What `long_data` counts against the session's bound ([`Limits::long_data`]).
    long_data_bytes: usize,
    /// Long data went past the session's bound: executions fail, as on a server, until
    /// COM_STMT_RESET; further long data is dropped.
    long_data_refused: bool,
    /// Server holding an open cursor for this statement.
    cursor_on: Option<Arc<str>>,
    /// The query rule it matched (see `stmt_rules.rs`).
    pub(super) rule: StmtRule,
}

impl Stmt {
    /// The statement's text.
    pub fn sql(&self) -> &[u8] {
        &self.sql
    }

    /// The statement's text, shared.
    pub(super) fn sql_arc(&self) -> Arc<[u8]> {
        self.sql.clone()
    }

    /// Frees the buffered long data and gives its bytes back to the session's bound.
    fn drop_long_data(&mut self, limits: &mut Limits) {
        self.long_data = Vec::new();
        limits.long_data = limits.long_data.saturating_sub(self.long_data_bytes);
        self.long_data_bytes = 0;
    }
}

/// What one buffered long-data packet costs: its bytes and its bookkeeping.
fn long_data_cost(packet: &[u8]) -> usize {
    packet.len() + std::mem::size_of::<Vec<u8>>()
}

fn stmt_id(p: &[u8]) -> Option<u32> {
    p.get(1..5)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

impl Session {
    /// COM_STMT_PREPARE: prepared where its first execution would go, to answer the client with
    /// real metadata under the session's own statement id.
    pub(super) async fn stmt_prepare(&mut self) -> Result<(), Error> {
        self.substitute_connection_id();
        if self.refuse_prepared_kill().await? {
            return Ok(());
        }
        // Query rules: a blocked statement is refused here and reaches no server.
        let sql: Arc<[u8]> = Arc::from(&self.cmd[1..]);
        let Ok(rule) = self.prepare_rule(&sql).await? else {
            return Ok(());
        };
        if self.stmts.len() >= self.limits.max_stmts {
            // Nothing is prepared anywhere (proxy.max_prepared_statements).
            let (c, st) = code::ER_MAX_PREPARED_STMT_COUNT_REACHED;
            let msg = limits::too_many_statements(self.limits.max_stmts);
            return self.send_err(1, c, st, &msg).await;
        }
        let class = self.router.on_prepare(&sql);
        let pinned = self.router.in_transaction() || self.router.needs_pinned_primary();
        let target = match class.class.target {
            Target::Replica if !pinned => Target::Replica,
            _ => Target::Primary,
        };
        let d = Decision {
            target,
            reason: class.class.reason,
            max_lag_ms: class.class.hint_max_lag_ms,
            calc_found_rows: false,
            reads_last_statement: false,
        };
        let idx = match self.resolve_for_prepare(&d) {
            Ok(i) => i,
            Err((c, st, msg)) => return self.send_err(1, c, st, &msg).await,
        };
        let h = match self.conn_for(idx).await {
            Ok(h) => h,
            Err(e) => {
                let name = self
                    .view
                    .backends
                    .get(idx)
                    .map(|b| b.name().to_string())
                    .unwrap_or_default();
                let (c, st, msg) = backend_err(&name, &e);
                return self.send_err(1, c, &st, &msg).await;
            }
        };
        let id = self.next_stmt_id;
        let r = prepare_on(&mut self.held[h].conn, &sql, Some((&mut self.stream, id))).await;
        self.held[h].backend.metrics().prepares.inc();
        match r {
            Ok(Some((backend_id, params))) => {
                self.next_stmt_id = self.next_stmt_id.wrapping_add(1).max(1);
                // The connection keeps it for any session that executes the same text; one
                // prepared here before under that text is closed.
                let close = self.held[h].conn.prepared.insert(sql.clone(), backend_id);
                close_on(&mut self.held[h].conn, &close).await;
                self.stmts.insert(
                    id,
                    Stmt {
                        sql,
                        class,
                        params,
                        types: None,
                        long_data: Vec::new(),
                        long_data_bytes: 0,
                        long_data_refused: false,
                        cursor_on: None,
                        rule,
                    },
                );
                Ok(())
            }
            Ok(None) => Ok(()), // the server's ERR went to the client
            Err(e) => {
                self.discard(h);
                let (c, st) = code::ER_NET_READ_ERROR;
                self.send_err(1, c, st, &format!("rwsplit: preparing failed: {e}"))
                    .await
            }
        }
    }

    fn resolve_for_prepare(&mut self, d: &Decision) -> Result<usize, (u16, &'static str, String)> {
        self.resolve_public(d)
    }

    /// COM_STMT_EXECUTE.
    pub(super) async fn stmt_execute(&mut self) -> Result<(), Error> {
        let Some(id) = stmt_id(&self.cmd) else {
            return self.unknown_stmt(1).await;
        };
        let Some(st) = self.stmts.get_mut(&id) else {
            return self.unknown_stmt(1).await;
        };
        if st.long_data_refused {
            let (c, state) = code::ER_UNKNOWN_ERROR;
            return self
                .send_err(1, c, state, limits::LONG_DATA_TOO_LARGE)
                .await;
        }
        // Remember parameter types when the client sends them (new_params_bound_flag = 1).
        if st.params > 0 {
            let off = 10 + usize::from(st.params).div_ceil(8);
            if self.cmd.get(off) == Some(&1) {
                let n = 2 * usize::from(st.params);
                if let Some(t) = self.cmd.get(off + 1..off + 1 + n) {
                    // Drivers send the same types with every execution: kept in place.
                    match &mut st.types {
                        Some(v) if v.as_slice() == t => {}
                        Some(v) => {
                            v.clear();
                            v.extend_from_slice(t);
                        }
                        None => st.types = Some(t.to_vec()),
                    }
                }
            }
        }
        let class = st.class.clone();
        let sql = st.sql.clone();
        // Query rules, as for a COM_QUERY: a blocked execution reaches no server.
        let Ok(rule) = self.execute_rule(id).await? else {
            if let Some(st) = self.stmts.get_mut(&id) {
                st.drop_long_data(&mut self.limits);
            }
            return Ok(());
        };
        self.track_begin_prepared(&sql);
        let mut d = self.router.route_execute(&class);
        let own_timeout = self.apply_rule(rule.as_deref(), &mut d);
        let (started, reason) = (Instant::now(), d.reason);
        // Decided once the connection is known (`answer_last_statement`).
        self.substituted = None;
        let out = match self.gate().await? {
            Some(out) => out,
            None => self.run_with(d, Shape::Results, Some(id)).await?,
        };
        if let Some((conn, backend_id)) = self.substituted.take().and_then(|s| s.prepared) {
            if let Some(h) = self.held.iter_mut().find(|h| conn.is(h)) {
                close_on(&mut h.conn, &[backend_id]).await;
            }
        }
        if let Some(t) = own_timeout {
            self.limits.query_timeout = t;
        }
        self.audit_statement(out, reason, started, &sql);
        out.report(&mut self.router);
        self.settle();
        self.track_end(out);
        if let Some(st) = self.stmts.get_mut(&id) {
            st.drop_long_data(&mut self.limits);
        }
        Ok(())
    }

    /// Before an execution on held connection `h`: prepares statement `id` there unless that
    /// connection already has its text, sends buffered long data, and builds the packet in
    /// `self.out` with the connection's statement id (and the session's parameter types when
    /// the connection last bound others). Returns whether `self.out` is to be sent instead of
    /// `self.cmd`.
    pub(super) async fn ready_execute(&mut self, h: usize, id: u32) -> Result<bool, BackendError> {
        let Some(st) = self.stmts.get(&id) else {
            return Err(BackendError::Protocol(crate::protocol::Error::Malformed(
                "unknown statement",
            )));
        };
        let held = &mut self.held[h];
        let conn = &mut held.conn;
        let metrics = held.backend.metrics();
        if let Some(sub) = &mut self.substituted {
            // A text of its own, prepared for this execution only (it holds values).
            metrics.prepares.inc();
            let Some((backend_id, _)) = prepare_on(conn, &sub.text, None).await? else {
                return Err(BackendError::Server {
                    code: 1243,
                    state: "HY000".into(),
                    message: "statement could not be prepared on this backend".into(),
                });
            };
            sub.prepared = Some((super::conns::ConnRef::of(held), backend_id));
            build_execute(&mut self.out, &self.cmd, st, backend_id, false);
            // No cursor: closing the statement right after would close it. A server may
            // always answer with the rows instead (the client sees no CURSOR_EXISTS flag).
            if let Some(flags) = self.out.get_mut(5) {
                *flags = 0;
            }
            return send_long_data(&mut held.conn, st, backend_id).await;
        }
        let cached = conn
            .prepared
            .get(&st.sql)
            .map(|c| (c.id, c.types.as_deref() == st.types.as_deref()));
        let (backend_id, types_bound) = match cached {
            Some(c) => {
                metrics.prepare_cache_hits.inc();
                c
            }
            None => {
                metrics.prepares.inc();
                match prepare_on(conn, &st.sql, None).await? {
                    Some((backend_id, _)) => {
                        let close = conn.prepared.insert(st.sql.clone(), backend_id);
                        close_on(conn, &close).await;
                        (backend_id, false)
                    }
                    None => {
                        return Err(BackendError::Server {
                            code: 1243,
                            state: "HY000".into(),
                            message: "statement could not be prepared on this backend".into(),
                        })
                    }
                }
            }
        };
        build_execute(&mut self.out, &self.cmd, st, backend_id, types_bound);
        send_long_data(conn, st, backend_id).await
    }

    /// [`Session::ready_execute`] when it needs no I/O, as for most executions: the statement
    /// is prepared on the connection already and has no long data to send. `None` otherwise.
    pub(super) fn ready_execute_now(&mut self, h: usize, id: u32) -> Option<bool> {
        if self.substituted.is_some() {
            return None;
        }
        let st = self.stmts.get(&id)?;
        if !st.long_data.is_empty() {
            return None;
        }
        let held = &mut self.held[h];
        let c = held.conn.prepared.get(&st.sql)?;
        let (backend_id, types_bound) = (c.id, c.types.as_deref() == st.types.as_deref());
        held.backend.metrics().prepare_cache_hits.inc();
        build_execute(&mut self.out, &self.cmd, st, backend_id, types_bound);
        Some(true)
    }

    /// After an execution answered on held connection `h`: the connection now has the
    /// session's parameter types bound (unless it failed: then unknown), and maybe a cursor.
    pub(super) fn after_execute(&mut self, h: usize, id: u32, end: End) {
        if self.substituted.is_some() {
            // It ran a statement of its own, closed next: the cached one is as it was.
            return;
        }
        let Some(st) = self.stmts.get_mut(&id) else {
            return;
        };
        let held = &mut self.held[h];
        if let Some(c) = held.conn.prepared.get(&st.sql) {
            match end {
                End::Ok { .. } => {
                    if c.types.as_deref() != st.types.as_deref() {
                        c.types = st.types.as_deref().map(Box::from);
                    }
                }
                End::Err { .. } => c.types = None,
            }
            if let End::Ok { status: s, .. } = end {
                if s & status::CURSOR_EXISTS != 0 {
                    c.cursor = true;
                    held.cursor_open = true;
                    st.cursor_on = Some(held.backend.name().into());
                }
            }
        }
    }

    /// COM_STMT_SEND_LONG_DATA: kept until the execution, which may go to any backend. The
    /// session holds at most `proxy.max_allowed_packet` of it in all (a server bounds each
    /// parameter so): past that the statement's long data is freed and its execution fails
    /// with the server's error. No answer either way, as on a server.
    pub(super) fn stmt_long_data(&mut self) {
        let Some(id) = stmt_id(&self.cmd) else { return };
        let Some(st) = self.stmts.get_mut(&id) else {
            return;
        };
        if st.long_data_refused {
            return;
        }
        let cost = long_data_cost(&self.cmd);
        if !self.limits.long_data_fits(cost) {
            st.drop_long_data(&mut self.limits);
            st.long_data_refused = true;
            return;
        }
        self.limits.long_data += cost;
        st.long_data_bytes += cost;
        st.long_data.push(self.cmd.clone());
    }

    /// COM_STMT_CLOSE: closes the client's handle; no answer. The connections keep the
    /// statement for the next execution of the same text, except one holding a cursor of it,
    /// where it is closed (which closes the cursor) so that the connection can go back to the
    /// pool. That close is buffered and goes out with the next command on the connection.
    pub(super) async fn stmt_close(&mut self) {
        let Some(id) = stmt_id(&self.cmd) else { return };
        let Some(mut st) = self.stmts.remove(&id) else {
            return;
        };
        st.drop_long_data(&mut self.limits);
        let Some(name) = st.cursor_on.take() else {
            return;
        };
        if let Some(h) = self.held.iter_mut().find(|h| h.backend.name() == &*name) {
            if let Some(backend_id) = h.conn.prepared.remove(&st.sql) {
                close_on(&mut h.conn, &[backend_id]).await;
            }
            h.cursor_open = h.conn.prepared.any_cursor();
        }
    }

    /// COM_STMT_RESET: drops buffered long data; resets a cursor where one is open.
    pub(super) async fn stmt_reset(&mut self, reply: u8) -> Result<(), Error> {
        let Some(id) = stmt_id(&self.cmd) else {
            return self.unknown_stmt(reply).await;
        };
        let Some(st) = self.stmts.get_mut(&id) else {
            return self.unknown_stmt(reply).await;
        };
        st.drop_long_data(&mut self.limits);
        st.long_data_refused = false;
        let cursor = st.cursor_on.take();
        let sql = st.sql.clone();
        if let Some(name) = cursor {
            if let Some(h) = self.held.iter().position(|h| h.backend.name() == &*name) {
                if let Some(c) = self.held[h].conn.prepared.get(&sql) {
                    c.cursor = false;
                    let mut p = [com::STMT_RESET, 0, 0, 0, 0];
                    p[1..5].copy_from_slice(&c.id.to_le_bytes());
                    let r = self.held[h].conn.command(&p, Shape::Single).await;
                    self.held[h].cursor_open = self.held[h].conn.prepared.any_cursor();
                    if r.is_err() && self.held[h].conn.broken {
                        self.discard(h);
                    }
                }
            }
        }
        self.send_ok(reply).await
    }

    /// COM_STMT_FETCH: rows of an open cursor, from the backend that holds it.
    pub(super) async fn stmt_fetch(&mut self) -> Result<(), Error> {
        let Some(id) = stmt_id(&self.cmd) else {
            return self.unknown_stmt(1).await;
        };
        let Some((cursor, sql)) = self
            .stmts
            .get(&id)
            .map(|s| (s.cursor_on.clone(), s.sql.clone()))
        else {
            return self.unknown_stmt(1).await;
        };
        let h = cursor.and_then(|name| self.held.iter().position(|h| h.backend.name() == &*name));
        let Some(h) = h else {
            let (c, st) = code::ER_UNKNOWN_STMT_HANDLER;
            return self
                .send_err(
                    1,
                    c,
                    st,
                    "The statement has no open cursor (COM_STMT_FETCH)",
                )
                .await;
        };
        let Some(backend_id) = self.held[h].conn.prepared.peek(&sql).map(|c| c.id) else {
            return self.unknown_stmt(1).await;
        };
        let target = self.held[h].backend.index;
        self.cmd[1..5].copy_from_slice(&backend_id.to_le_bytes());
        let d = Decision {
            target: Target::Previous,
            reason: router::Reason::PreparedStatement,
            max_lag_ms: None,
            calc_found_rows: false,
            reads_last_statement: false,
        };
        self.previous = Some(super::conns::ConnRef::of(&self.held[h]));
        let out = self.run(d, Shape::UntilEof).await?;
        if let Outcome::Done(End::Ok { status: s, .. }) = out {
            if s & status::LAST_ROW_SENT != 0 || s & status::CURSOR_EXISTS == 0 {
                if let Some(h) = self.held.iter().position(|x| x.backend.index == target) {
                    if let Some(c) = self.held[h].conn.prepared.get(&sql) {
                        c.cursor = false;
                    }
                    self.held[h].cursor_open = self.held[h].conn.prepared.any_cursor();
                }
                if let Some(st) = self.stmts.get_mut(&id) {
                    st.cursor_on = None;
                }
            }
        }
        Ok(())
    }

    async fn unknown_stmt(&mut self, seq: u8) -> Result<(), Error> {
        let (c, st) = code::ER_UNKNOWN_STMT_HANDLER;
        self.send_err(
            seq,
            c,
            st,
            "Unknown prepared statement handler given to the proxy",
        )
        .await
    }
}

/// Builds in `out` the COM_STMT_EXECUTE packet `cmd` for the connection's statement
/// `backend_id`, with the session's parameter types unless that statement has them bound.
fn build_execute(out: &mut Vec<u8>, cmd: &[u8], st: &Stmt, backend_id: u32, types_bound: bool) {
    out.clear();
    out.extend_from_slice(cmd);
    if let Some(id) = out.get_mut(1..5) {
        id.copy_from_slice(&backend_id.to_le_bytes());
    }
    if st.params > 0 && !types_bound {
        let off = 10 + usize::from(st.params).div_ceil(8);
        if out.get(off) == Some(&0) {
            if let Some(types) = &st.types {
                out[off] = 1;
                // In place (no second buffer for the tail).
                out.splice(off + 1..off + 1, types.iter().copied());
            }
        }
    }
}

/// Sends the statement's buffered long data to the connection's statement `backend_id`, ahead
/// of the execution. Returns that `out` is to be sent (see [`Session::ready_execute`]).
async fn send_long_data(
    conn: &mut crate::backend::Conn,
    st: &Stmt,
    backend_id: u32,
) -> Result<bool, BackendError> {
    for ld in &st.long_data {
        let mut p = ld.clone();
        if let Some(id) = p.get_mut(1..5) {
            id.copy_from_slice(&backend_id.to_le_bytes());
        }
        write_packet(&mut conn.stream, 0, &p).await?;
    }
    Ok(true)
}

/// Closes statements `ids` on `conn` (COM_STMT_CLOSE has no answer: buffered, it goes out
/// with the next command). A failed write marks the connection broken.
async fn close_on(conn: &mut crate::backend::Conn, ids: &[u32]) {
    for id in ids {
        let mut p = [com::STMT_CLOSE, 0, 0, 0, 0];
        p[1..5].copy_from_slice(&id.to_le_bytes());
        if write_packet(&mut conn.stream, 0, &p).await.is_err() {
            conn.broken = true;
        }
    }
}

/// Prepares `sql` on `conn`. With a client, the response is forwarded with the statement id
/// replaced by `id`; without, it is consumed. Returns the backend's statement id and parameter
/// count, or `None` if the server answered with ERR (forwarded to the client if any).
async fn prepare_on(
    conn: &mut crate::backend::Conn,
    sql: &[u8],
    mut client: Option<(&mut crate::frontend::ClientStream, u32)>,
) -> Result<Option<(u32, u16)>, BackendError> {
    let mut p = Vec::with_capacity(1 + sql.len());
    p.push(com::STMT_PREPARE);
    p.extend_from_slice(sql);
    conn.send(&p).await?;
    let deprecate = conn.deprecate_eof();
    let mut buf = Vec::new();
    let timeout = conn.read_timeout;
    let r = async {
        let seq = read_meta(conn, &mut buf, timeout).await?;
        if buf.first() == Some(&0xff) {
            if let Some((c, _)) = client.as_mut() {
                write_packet(&mut **c, seq, &buf).await?;
                c.flush().await?;
            }
            return Ok(None);
        }
        if buf.len() < 12 || buf[0] != 0 {
            return Err(BackendError::Protocol(crate::protocol::Error::Malformed(
                "prepare response",
            )));
        }
        let backend_id = u32::from_le_bytes([buf[1], buf[2], buf[3], buf[4]]);
        let columns = u16::from_le_bytes([buf[5], buf[6]]);
        let params = u16::from_le_bytes([buf[7], buf[8]]);
        if let Some((c, id)) = client.as_mut() {
            buf[1..5].copy_from_slice(&id.to_le_bytes());
            write_packet(&mut **c, seq, &buf).await?;
        }
        let mut packets = usize::from(params) + usize::from(columns);
        if !deprecate {
            packets += usize::from(params > 0) + usize::from(columns > 0);
        }
        for _ in 0..packets {
            let seq = read_meta(conn, &mut buf, timeout).await?;
            if let Some((c, _)) = client.as_mut() {
                write_packet(&mut **c, seq, &buf).await?;
            }
        }
        if let Some((c, _)) = client.as_mut() {
            c.flush().await?;
        }
        Ok(Some((backend_id, params)))
    }
    .await;
    if r.is_err() {
        conn.broken = true;
    }
    r
}

async fn read_meta(
    conn: &mut crate::backend::Conn,
    buf: &mut Vec<u8>,
    timeout: std::time::Duration,
) -> Result<u8, BackendError> {
    tokio::time::timeout(timeout, read_packet(&mut conn.stream, buf, META_MAX))
        .await
        .map_err(|_| BackendError::ReadTimeout(timeout))?
        .map_err(BackendError::from)
}
