//! The backend connections a session holds: taking them from the pools, bringing them up to
//! the session's state (its fingerprint: schema, character set, session variables,
//! COM_SET_OPTION; autocommit and the last insert id where needed), keeping the ones its state
//! lives on, and giving the others back as each statement ends (statement-level multiplexing).
//!
//! Two kinds of connection are never given back between statements, because what they hold
//! exists nowhere else: the *anchor* (the connection with the session's transaction, temporary
//! tables, locks, user variables, text prepared statements or `SET TRANSACTION`
//! characteristics, or a history too long to replay) and the connection whose previous
//! statement left warnings, an error or a `FOUND_ROWS()` count (`SHOW WARNINGS` must answer
//! from it however long the client pauses). Everything else goes back after
//! `proxy.pool.release_delay_ms` (0 by default) as it is: its session state is described by
//! its fingerprint, so the next session diffs it rather than resetting it. A connection that
//! held pinned state, an open cursor or diagnostics is reset first (`COM_RESET_CONNECTION`),
//! so no lock or transaction outlives the session that took it.

use super::Session;
use crate::backend::fingerprint::{self, Plan};
use crate::backend::{Conn, Error as BackendError, Fingerprint, Key};
use crate::context::Backend;
use crate::protocol::consts::{cap, com};
use std::sync::Arc;

/// A connection the session holds, with the server it belongs to.
pub struct Held {
    pub backend: Arc<Backend>,
    pub conn: Conn,
    /// A COM_STMT_EXECUTE opened a cursor here; COM_STMT_FETCH must come back to it.
    pub cursor_open: bool,
    /// Counted as `pinned` (not `in_use`) in `rwsplit_backend_connections`.
    pub pinned: bool,
    /// State that outlives its statement and is not ended by a transaction's end lived here
    /// at some point (temporary tables, locks, user variables, `PREPARE`, a history too long to
    /// replay): reset before another session may have it. A transaction (or `autocommit=0`)
    /// that ended cleanly leaves nothing behind (its row locks end with it), so it does not
    /// taint; one still open when the session lets go is the anchor, reset all the same.
    pub tainted: bool,
    /// The last statement ran here in the session's state: whatever it changed in that
    /// state, this connection has it (see [`Session::settle`]).
    pub in_step: bool,
}

/// One backend connection, by server and the server's thread id for it.
#[derive(Clone)]
pub struct ConnRef {
    pub backend: Arc<Backend>,
    pub thread: u32,
}

impl ConnRef {
    pub fn of(h: &Held) -> ConnRef {
        ConnRef {
            backend: h.backend.clone(),
            thread: h.conn.connection_id,
        }
    }

    pub fn is(&self, h: &Held) -> bool {
        self.thread == h.conn.connection_id && self.backend.name() == h.backend.name()
    }
}

impl Session {
    /// Whether idle time would let the session give any connection back.
    pub(super) fn has_releasable(&self) -> bool {
        self.held.iter().any(|h| self.releasable(h))
    }

    fn releasable(&self, h: &Held) -> bool {
        !(h.cursor_open || self.is_anchor(h) || self.keeps_diagnostics(h))
    }

    /// The connection the session's pinned state lives on.
    pub(super) fn is_anchor(&self, h: &Held) -> bool {
        self.anchor.as_ref().is_some_and(|a| a.is(h))
    }

    /// The connection that ran the previous statement, while that left diagnostics only it
    /// can answer.
    fn keeps_diagnostics(&self, h: &Held) -> bool {
        self.diag_pin && self.previous.as_ref().is_some_and(|p| p.is(h))
    }

    /// Gives back every connection the session's state does not need.
    pub(super) async fn release_idle(&mut self) {
        let mut i = 0;
        while i < self.held.len() {
            if self.releasable(&self.held[i]) {
                let h = self.held.swap_remove(i);
                self.give_back(h).await;
            } else {
                i += 1;
            }
        }
        self.publish_held(false);
    }

    /// Gives back everything (session end, reset, change of user). The anchor is reset too:
    /// its transaction rolls back and its locks are released before anyone else can wait on
    /// them, as when a client of a server goes away.
    pub(super) async fn release_all(&mut self) {
        self.previous = None;
        self.diag_pin = false;
        // The anchor is known as such while it goes back: it is reset.
        for h in std::mem::take(&mut self.held) {
            self.give_back(h).await;
        }
        self.anchor = None;
    }

    /// Returns a connection to its pool. One that held pinned state (a transaction, locks,
    /// temporary tables, user variables...), a cursor or diagnostics is reset first:
    /// `COM_RESET_CONNECTION` rolls back any transaction and releases table and named locks,
    /// temporary tables and user variables in one round trip, so a killed client's locks are
    /// free at once. Any other connection goes back as it is, its session state described by
    /// its fingerprint. One that cannot be reset is closed, which the server treats the same.
    async fn give_back(&self, mut h: Held) {
        let dirty = h.tainted
            || h.pinned
            || self.is_anchor(&h)
            || h.cursor_open
            || h.conn.diagnostics
            || h.conn.prepared.any_cursor();
        self.count_unpinned(&mut h);
        if h.conn.broken {
            self.pools.discard(&h.backend, h.conn);
            return;
        }
        h.conn.has_schema |= h.conn.state.has_schema() || self.has_schema();
        if dirty {
            // A hung server is not waited on for a reset (see `hung.rs`): closed instead.
            let backend = h.backend.clone();
            match super::hung::unless_hung(&backend, h.conn.reset()).await {
                Some(Ok(())) => {}
                Some(Err(e)) => {
                    tracing::debug!(backend = h.backend.name(), error = %e, "reset before check-in failed; closing the connection");
                    self.pools.discard(&h.backend, h.conn);
                    return;
                }
                None => {
                    self.pools.discard(&h.backend, h.conn);
                    return;
                }
            }
            h.backend.metrics().state_syncs_check_in.inc();
        }
        self.pools.release(&self.ctx, &h.backend, h.conn);
    }

    /// Whether the session may have a default database (then a connection it used may have
    /// one too, and nothing unselects it): the client's, a `USE` in the state, or a history
    /// too long to know.
    pub(super) fn has_schema(&self) -> bool {
        self.client.database.is_some() || self.want.has_schema() || self.router.history_overflowed()
    }

    /// Drops a connection that is out of step (I/O error, timeout, client gone mid-response).
    /// If the session's pinned state lived on it, that state is gone with it: the session
    /// records it ([`Session::lose_pinned_state`]) so the client hears of it.
    pub(super) fn discard(&mut self, i: usize) {
        let mut h = self.held.swap_remove(i);
        if self.is_anchor(&h) {
            let why = format!("lost the connection to backend '{}'", h.backend.name());
            self.lose_pinned_state(&why, crate::metrics::lost::CONNECTION);
        }
        if self.previous.as_ref().is_some_and(|p| p.is(&h)) {
            self.previous = None;
            self.diag_pin = false;
        }
        self.count_unpinned(&mut h);
        self.pools.discard(&h.backend, h.conn);
    }

    /// Moves a held connection between the `in_use` and `pinned` gauges.
    pub(super) fn set_pinned(&mut self, i: usize, pinned: bool) {
        let h = &self.held[i];
        if h.pinned == pinned {
            return;
        }
        let m = h.backend.metrics();
        if pinned {
            m.connections_in_use.dec();
            m.connections_pinned.inc();
        } else {
            m.connections_pinned.dec();
            m.connections_in_use.inc();
        }
        self.held[i].pinned = pinned;
    }

    /// Before a connection leaves the session: the pools count it as `in_use` again.
    fn count_unpinned(&self, h: &mut Held) {
        if h.pinned {
            h.backend.metrics().connections_pinned.dec();
            h.backend.metrics().connections_in_use.inc();
            h.pinned = false;
        }
    }

    /// Index in `held` of the connection to server `idx`, taking one from the pool and bringing
    /// it up to the session's state if the session holds none.
    pub(super) async fn conn_for(&mut self, idx: usize) -> Result<usize, BackendError> {
        let Some(backend) = self.view.backends.get(idx).cloned() else {
            return Err(BackendError::Connect(std::io::Error::other(
                "server no longer configured",
            )));
        };
        let mut found = self.held_index(&backend);
        if let Some(i) = found {
            if !self.still_alive(i, &backend) {
                self.discard(i);
                found = None;
            }
        }
        let i = match found {
            Some(i) => i,
            None => {
                self.refresh_want();
                let k = self.key_index(&backend);
                let conn = self
                    .pools
                    .acquire(
                        &self.ctx,
                        &backend,
                        &self.keys[k].1,
                        &self.client.password,
                        !self.has_schema(),
                        &self.want,
                    )
                    .await?;
                let i = self.hold(backend.clone(), conn);
                if self.ctx.topology().primary() == Some(idx) {
                    if let Err(e) = self.restore_primary_state(i).await {
                        self.discard(i);
                        return Err(e);
                    }
                }
                i
            }
        };
        if let Err(e) = self.sync(i).await {
            if self.held[i].conn.broken {
                self.discard(i);
            }
            return Err(e);
        }
        Ok(i)
    }

    /// [`Session::conn_for`] when it needs neither I/O nor a wait, as for most statements:
    /// a held connection, or an idle pooled one ready now, already in the session's state.
    /// `None` otherwise, and then [`Session::conn_for`] does the rest (a pooled connection
    /// taken here stays held for it to bring into state). No future is made for the common
    /// case: moving `conn_for`'s into the hung-server guard cost more than the checkout.
    pub(super) fn conn_now(&mut self, idx: usize) -> Option<usize> {
        let backend = self.view.backends.get(idx)?;
        if backend.is_hung() {
            return None;
        }
        let i = match self.held_index(backend) {
            // Not seen since an outage: `conn_for` probes it.
            Some(i) if self.held[i].conn.outages_seen != backend.outages() => return None,
            Some(i) => i,
            // A new connection to the writer outside autocommit is set up first (see
            // `restore_primary_state`).
            None if !self.router.autocommit() => return None,
            None => {
                let backend = backend.clone();
                self.refresh_want();
                let k = self.key_index(&backend);
                let no_schema = !self.has_schema();
                let conn = self.pools.take_ready(
                    &self.ctx,
                    &backend,
                    &self.keys[k].1,
                    no_schema,
                    &self.want,
                )?;
                self.hold(backend, conn)
            }
        };
        self.in_state(i).then_some(i)
    }

    /// Index in `held` of the connection to `backend`, if the session holds one.
    fn held_index(&self, backend: &Arc<Backend>) -> Option<usize> {
        self.held
            .iter()
            .position(|h| Arc::ptr_eq(&h.backend, backend) || h.backend.name() == backend.name())
    }

    /// Holds `conn`, just taken from the pool for `backend`; returns its index in `held`.
    fn hold(&mut self, backend: Arc<Backend>, conn: Conn) -> usize {
        self.held.push(Held {
            backend,
            conn,
            cursor_open: false,
            pinned: false,
            tainted: false,
            in_step: false,
        });
        self.held.len() - 1
    }

    /// Whether held connection `i` is in the session's state with nothing to send before the
    /// statement (no state difference, no `LAST_INSERT_ID()` to restore). If so it takes the
    /// wanted state itself, so that the next comparison is a pointer's.
    fn in_state(&mut self, i: usize) -> bool {
        self.refresh_want();
        if !Fingerprint::same(&self.held[i].conn.state, &self.want)
            || self.insert_id_to_restore(i).is_some()
        {
            return false;
        }
        self.held[i].conn.state = self.want.clone();
        true
    }

    /// Whether held connection `i` can still carry a statement. Only asked (one non-blocking
    /// read) when the monitor has seen `backend` fail a check since the connection was opened:
    /// a server that was killed and restarted closed it, and a statement sent there would fail
    /// and count against a server that is fine now (its breaker opened, reads refused while
    /// the replicas catch up). A dead one is dropped quietly and the statement gets a fresh
    /// connection; pinned state on it is lost, and the client hears of it as usual.
    fn still_alive(&mut self, i: usize, backend: &Backend) -> bool {
        let outages = backend.outages();
        let conn = &mut self.held[i].conn;
        if conn.outages_seen == outages {
            return true;
        }
        if !conn.looks_alive() {
            tracing::debug!(
                backend = backend.name(),
                "held connection closed by the server during an outage: opening a new one"
            );
            return false;
        }
        conn.outages_seen = outages;
        true
    }

    /// On a fresh primary connection: what the session had on its previous one and a direct
    /// connection would still have, `autocommit=0` (after the connection that had it was lost).
    /// `LAST_INSERT_ID()` is restored only before a statement that reads it (see
    /// [`Session::sync`]).
    async fn restore_primary_state(&mut self, i: usize) -> Result<(), BackendError> {
        if !self.router.autocommit() {
            self.held[i]
                .conn
                .query_discard(b"SET autocommit = 0")
                .await?;
        }
        Ok(())
    }

    /// The pool key for `backend` (user, capabilities, collation), built once per session and
    /// server: a checkout per statement must not allocate one.
    fn key_index(&mut self, backend: &Arc<Backend>) -> usize {
        if let Some(i) = self.keys.iter().position(|(b, _)| Arc::ptr_eq(b, backend)) {
            return i;
        }
        // A reload replaced the server's entry: drop keys of entries no longer in the view.
        self.keys
            .retain(|(b, _)| self.view.backends.iter().any(|v| Arc::ptr_eq(v, b)));
        let key = Key {
            server: backend.name().to_string(),
            addr: format!("{}:{}", backend.config.host, backend.config.port),
            user: self.client.user.clone(),
            caps: self.client.caps & cap::RESPONSE_SHAPING,
            collation: self.client.collation,
            tls: backend.config.tls.mode,
        };
        self.keys.push((backend.clone(), key));
        self.keys.len() - 1
    }

    /// Brings the session's wanted state up to date with its history and COM_SET_OPTION
    /// (rebuilt only when they changed).
    pub(super) fn refresh_want(&mut self) {
        let generation = self.router.history_generation();
        if self.want_generation != generation || self.want.option() != self.set_option {
            self.want = Fingerprint::build(self.router.history_entries(), self.set_option);
            self.want_generation = generation;
        }
    }

    /// Forgets the wanted state and pool keys (a reset or change of user starts afresh).
    pub(super) fn forget_want(&mut self) {
        self.want = Fingerprint::fresh();
        self.want_generation = u64::MAX;
        self.keys.clear();
    }

    /// Brings held connection `i` to the session's state in at most one round trip: the
    /// differences (or a reset and the whole state, when something cannot be reverted) and,
    /// before a statement that reads it, the session's `LAST_INSERT_ID()`, pipelined.
    async fn sync(&mut self, i: usize) -> Result<(), BackendError> {
        if self.in_state(i) {
            return Ok(());
        }
        let insert_id = self.insert_id_to_restore(i);
        let may_reset = !(self.held[i].tainted || self.is_anchor(&self.held[i]));
        let h = &mut self.held[i];
        let (reset, plan) = if Fingerprint::same(&h.conn.state, &self.want) {
            (false, Plan::Nothing)
        } else {
            let multi = h.conn.caps & cap::MULTI_STATEMENTS != 0;
            fingerprint::plan(&h.conn.state, &self.want, multi, may_reset)
        };
        let mut packets = match plan {
            Plan::Nothing => Vec::new(),
            Plan::Send(p) => p,
        };
        if let Some(id) = insert_id {
            packets.push(format!("\x03SELECT LAST_INSERT_ID({id})").into_bytes());
        }
        if packets.is_empty() {
            h.conn.state = self.want.clone();
            return Ok(());
        }
        let r = h.conn.pipeline(&packets).await;
        if reset {
            h.conn.forget_state();
        }
        if let Err(e) = r {
            // Part of the state may have been applied: this connection's state is unknown.
            h.conn.broken = true;
            return Err(e);
        }
        let m = h.backend.metrics();
        if reset {
            m.state_syncs_reset.inc();
        } else if packets.len() > usize::from(insert_id.is_some()) {
            m.state_syncs_diff.inc();
        }
        h.conn.state = self.want.clone();
        h.conn.has_schema |= h.conn.state.has_schema();
        if let Some(id) = insert_id {
            h.conn.last_insert_id = Some(id);
        }
        Ok(())
    }

    /// The session's `LAST_INSERT_ID()`, when held connection `i` has another and the command
    /// about to run may read it (it mentions `LAST_INSERT_ID`, `INSERT_ID` or `@@identity`).
    /// Restoring it for every statement would cost a round trip per hand-over.
    fn insert_id_to_restore(&self, i: usize) -> Option<u64> {
        if self.held[i].conn.last_insert_id == Some(self.last_insert_id) {
            return None;
        }
        let text: &[u8] = match self.cmd.first() {
            Some(&com::QUERY) => &self.cmd[1..],
            Some(&com::STMT_EXECUTE) => {
                let id = self
                    .cmd
                    .get(1..5)
                    .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
                match id.and_then(|id| self.stmts.get(&id)) {
                    Some(st) => st.sql(),
                    None => return None,
                }
            }
            _ => return None,
        };
        reads_insert_id(text).then_some(self.last_insert_id)
    }
}

/// Whether a statement text may read the connection's last insert id.
pub(super) fn reads_insert_id(text: &[u8]) -> bool {
    const WORDS: [&[u8]; 2] = [b"insert_id", b"identity"];
    WORDS
        .iter()
        .any(|w| text.windows(w.len()).any(|x| x.eq_ignore_ascii_case(w)))
}
