//! The backend connections a session holds: taking them from the pools, bringing them up to
//! the session's state (history replay, COM_SET_OPTION, autocommit, last insert id), keeping
//! the ones its state lives on, and cleaning the others before the pool gets them back.
//!
//! Two kinds of connection are never given back while idle, because what they hold exists
//! nowhere else: the *anchor* (the connection with the session's transaction, temporary tables,
//! locks, user variables, text prepared statements or `SET TRANSACTION` characteristics) and
//! the connection whose previous statement left warnings, an error or a `FOUND_ROWS()` count
//! (`SHOW WARNINGS` must answer from it however long the client pauses). Everything else goes
//! back after `proxy.pool.release_delay_ms`, reset first, so no lock or transaction outlives
//! the session that took it.

use super::Session;
use crate::backend::{Conn, Error as BackendError, Key};
use crate::context::Backend;
use crate::protocol::consts::{cap, com};
use crate::protocol::relay::Shape;
use std::sync::Arc;

/// A connection the session holds, with the server it belongs to.
pub struct Held {
    pub backend: Arc<Backend>,
    pub conn: Conn,
    /// A COM_STMT_EXECUTE opened a cursor here; COM_STMT_FETCH must come back to it.
    pub cursor_open: bool,
    /// The COM_SET_OPTION value applied here (None: the connection's default).
    pub option: Option<u16>,
    /// Counted as `pinned` (not `in_use`) in `rwsplit_backend_connections`.
    pub pinned: bool,
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
        self.anchor = None;
        self.previous = None;
        self.diag_pin = false;
        for h in std::mem::take(&mut self.held) {
            self.give_back(h).await;
        }
    }

    /// Returns a connection to its pool, clean: `COM_RESET_CONNECTION` rolls back any
    /// transaction and releases table and named locks, temporary tables and user variables in
    /// one round trip. A connection that cannot be reset (or carries a cursor or a changed
    /// COM_SET_OPTION) is closed instead, which the server treats the same way.
    async fn give_back(&self, mut h: Held) {
        self.count_unpinned(&mut h);
        if h.cursor_open || h.option.is_some() || h.conn.broken {
            self.pools.discard(&h.backend, h.conn);
            return;
        }
        if let Err(e) = h.conn.reset().await {
            tracing::debug!(backend = h.backend.name(), error = %e, "reset before check-in failed; closing the connection");
            self.pools.discard(&h.backend, h.conn);
            return;
        }
        h.conn.has_schema |= self.has_schema();
        self.pools.release(&self.ctx, &h.backend, h.conn);
    }

    /// Whether the session may have a default database: its history may select one (any
    /// entry mentioning `use`, whatever comments precede it; erring towards yes only costs a
    /// fresh connection for a later session without one).
    pub(super) fn has_schema(&self) -> bool {
        self.client.database.is_some()
            || self
                .router
                .history()
                .any(|c| c.windows(3).any(|w| w.eq_ignore_ascii_case(b"use")))
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
        let found = self
            .held
            .iter()
            .position(|h| Arc::ptr_eq(&h.backend, &backend) || h.backend.name() == backend.name());
        let i = match found {
            Some(i) => i,
            None => {
                let key = Key {
                    server: backend.name().to_string(),
                    addr: format!("{}:{}", backend.config.host, backend.config.port),
                    user: self.client.user.clone(),
                    caps: self.client.caps & cap::RESPONSE_SHAPING,
                    collation: self.client.collation,
                    tls: backend.config.tls.mode,
                };
                let conn = self
                    .pools
                    .acquire(
                        &self.ctx,
                        &backend,
                        &key,
                        &self.client.password,
                        !self.has_schema(),
                    )
                    .await?;
                self.held.push(Held {
                    backend: backend.clone(),
                    conn,
                    cursor_open: false,
                    option: None,
                    pinned: false,
                });
                let i = self.held.len() - 1;
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

    /// On a fresh primary connection: what the session had on its previous one and a direct
    /// connection would still have, `LAST_INSERT_ID()` (known from the writes' OK packets) and
    /// `autocommit=0` (after the connection that had it was lost).
    async fn restore_primary_state(&mut self, i: usize) -> Result<(), BackendError> {
        if !self.router.autocommit() {
            self.held[i]
                .conn
                .query_discard(b"SET autocommit = 0")
                .await?;
        }
        if self.last_insert_id != 0 {
            let sql = format!("SELECT LAST_INSERT_ID({})", self.last_insert_id);
            self.held[i].conn.query_discard(sql.as_bytes()).await?;
        }
        Ok(())
    }

    /// Replays what the connection has not seen of the session's state.
    async fn sync(&mut self, i: usize) -> Result<(), BackendError> {
        let generation = self.router.history_generation();
        let h = &mut self.held[i];
        if h.conn.replayed != generation {
            for cmd in self.router.history() {
                h.conn.query_discard(cmd).await?;
            }
            h.conn.replayed = generation;
        }
        if h.option != self.set_option {
            if let Some(v) = self.set_option {
                let [a, b] = v.to_le_bytes();
                h.conn
                    .command(&[com::SET_OPTION, a, b], Shape::Single)
                    .await?;
                h.option = Some(v);
            }
        }
        Ok(())
    }
}
