//! The backend connections a session holds: taking them from the pools, bringing them up to
//! the session's state (history replay, COM_SET_OPTION, last insert id), and giving back those
//! the session's state no longer needs.

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
}

impl Session {
    /// Whether idle time would let the session give any connection back.
    pub(super) fn has_releasable(&self) -> bool {
        !self.held.is_empty() && self.held.iter().any(|h| self.releasable(h))
    }

    fn releasable(&self, h: &Held) -> bool {
        if self.router.in_transaction() || h.cursor_open {
            return false;
        }
        let is_primary = self.ctx.topology().primary() == Some(h.backend.index);
        !(is_primary && self.router.needs_pinned_primary())
    }

    /// Gives back every connection the session's state does not need.
    pub(super) fn release_idle(&mut self) {
        let mut i = 0;
        while i < self.held.len() {
            if self.releasable(&self.held[i]) {
                let h = self.held.swap_remove(i);
                self.give_back(h);
            } else {
                i += 1;
            }
        }
    }

    /// Gives back everything (session end, reset, change of user).
    pub(super) fn release_all(&mut self) {
        for h in std::mem::take(&mut self.held) {
            self.give_back(h);
        }
    }

    fn give_back(&self, mut h: Held) {
        if h.cursor_open || h.option.is_some() || h.conn.broken {
            self.pools.discard(&h.backend, h.conn);
        } else {
            h.conn.has_schema |= self.has_schema();
            self.pools.release(&self.ctx, &h.backend, h.conn);
        }
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
    pub(super) fn discard(&mut self, i: usize) {
        let h = self.held.swap_remove(i);
        self.pools.discard(&h.backend, h.conn);
    }

    /// Index in `held` of the connection to server `idx`, taking one from the pool and bringing
    /// it up to the session's state if the session holds none.
    pub(super) async fn conn_for(&mut self, idx: usize) -> Result<usize, BackendError> {
        let Some(backend) = self.view.backends.get(idx).cloned() else {
            return Err(BackendError::Connect(std::io::Error::other(
                "server no longer configured",
            )));
        };
        let i =
            match self.held.iter().position(|h| {
                Arc::ptr_eq(&h.backend, &backend) || h.backend.name() == backend.name()
            }) {
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
                    });
                    let i = self.held.len() - 1;
                    if self.last_insert_id != 0 && self.ctx.topology().primary() == Some(idx) {
                        let sql = format!("SELECT LAST_INSERT_ID({})", self.last_insert_id);
                        if let Err(e) = self.held[i].conn.query_discard(sql.as_bytes()).await {
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
