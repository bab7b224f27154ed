//! `KILL` and `CONNECTION_ID()` in terms of the proxy's session ids (DESIGN.md §5b): the
//! session side of the registry (marking the statement that runs now), and the answer to a
//! client's `KILL [QUERY|CONNECTION] n` / `COM_PROCESS_KILL`.

use super::registry::{Entry, Registration, Registry, Running};
use super::{backend_err, Error, Session};
use crate::backend::{control, KillScope};
use crate::context::{Backend, Context};
use crate::frontend::{users, Client};
use crate::protocol::consts::code;
use router::classify::Kill;
use std::sync::Arc;

/// Registers a new session under its handshake id.
pub(super) fn register(ctx: &Context, client: &Client) -> Registration {
    Registry::of(ctx).register(
        client.connection_id,
        &client.user,
        &client.password,
        &client.host,
    )
}

impl Session {
    /// Replaces `CONNECTION_ID()` in the COM_QUERY / COM_STMT_PREPARE text with the session
    /// id. Statements that do not mention it are left as they are, without allocating.
    pub(super) fn substitute_connection_id(&mut self) {
        let Some(sql) = self.cmd.get(1..) else { return };
        let mut out = std::mem::take(&mut self.out);
        out.clear();
        let id = u64::from(self.client.connection_id);
        if router::classify::substitute_connection_id(sql, id, &mut out) {
            out.insert(0, self.cmd[0]);
            std::mem::swap(&mut self.cmd, &mut out);
        }
        self.out = out;
    }

    /// Marks the statement about to be sent on held connection `h` as running, so a `KILL` of
    /// this session reaches its backend thread.
    pub(super) async fn statement_started(&mut self, backend: &Arc<Backend>, h: usize) {
        let Some(held) = self.held.get(h) else { return };
        let thread = held.conn.connection_id;
        self.track.server = Some(backend.index);
        *self.registration.entry.running().await = Some(Running {
            backend: backend.clone(),
            thread,
            killed: None,
        });
    }

    /// Ends what [`Session::statement_started`] began, before connection `h` serves anything
    /// else: from here no `KILL` can reach its thread. Waits for a `KILL` being sent right now
    /// to finish. When the session was killed (`KILL CONNECTION`) the connection is closed and
    /// the session ends without another word to the client, as a killed server thread does.
    ///
    /// A `KILL QUERY` that arrives after the statement ended needs no clean-up: MariaDB 10.11
    /// clears the flag before the connection's next command (measured: 0 of 800 statements
    /// that followed a late `KILL QUERY` were interrupted; `proxy_kill` tests it again).
    pub(super) async fn statement_ended(&mut self, h: usize, rows: u64) -> Result<(), Error> {
        self.track.rows += rows;
        let killed = self
            .registration
            .entry
            .running()
            .await
            .take()
            .and_then(|r| r.killed);
        if killed == Some(KillScope::Connection) {
            if h < self.held.len() {
                self.discard(h);
            }
            return Err(Error::Killed);
        }
        Ok(())
    }

    /// After COM_CHANGE_USER: a kill of this session's statements logs in as the new user.
    pub(super) fn registry_user_changed(&self) {
        self.registration
            .entry
            .set_creds(&self.client.user, &self.client.password);
    }

    /// The registration, for the serve loop's wait on a close request.
    pub(super) fn registry_entry(&self) -> Arc<super::registry::Entry> {
        self.registration.entry.clone()
    }

    /// A `KILL` statement in the COM_QUERY text, answered by the proxy. Returns false when the
    /// text is not a `KILL` (the cost: lexing its first token).
    pub(super) async fn kill_statement(&mut self) -> Result<bool, Error> {
        let Some(k) = self.cmd.get(1..).and_then(router::classify::kill) else {
            return Ok(false);
        };
        match k {
            Kill::Thread { query_only, id } => {
                let scope = if query_only {
                    KillScope::Query
                } else {
                    KillScope::Connection
                };
                self.kill_session(id, scope).await?;
            }
            Kill::Unsupported => {
                let (c, st) = code::ER_NOT_SUPPORTED_YET;
                let msg = "rwsplit: only KILL [QUERY|CONNECTION] <session id> is supported \
                           through the proxy (KILL USER, KILL QUERY ID and expressions name \
                           backend threads that sessions share)";
                self.send_err(1, c, st, msg).await?;
            }
        }
        Ok(true)
    }

    /// COM_STMT_PREPARE of a `KILL`: refused, since its id is a parameter the proxy would only
    /// see at execution and the server would read as one of its own threads.
    pub(super) async fn refuse_prepared_kill(&mut self) -> Result<bool, Error> {
        if self.cmd.get(1..).and_then(router::classify::kill).is_none() {
            return Ok(false);
        }
        let (c, st) = code::ER_NOT_SUPPORTED_YET;
        let msg = "rwsplit: KILL cannot be a prepared statement through the proxy; send it as \
                   a plain query (KILL [QUERY|CONNECTION] <session id>)";
        self.send_err(1, c, st, msg).await?;
        Ok(true)
    }

    /// COM_PROCESS_KILL: the 4-byte id of the session to close.
    pub(super) async fn process_kill(&mut self) -> Result<(), Error> {
        let Some(b) = self.cmd.get(1..5) else {
            let (c, st) = code::ER_UNKNOWN_COM_ERROR;
            return self.send_err(1, c, st, "Malformed COM_PROCESS_KILL").await;
        };
        let id = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        self.kill_session(u64::from(id), KillScope::Connection)
            .await
    }

    /// Kills session `id`'s running statement (and, for [`KillScope::Connection`], the
    /// session), answering the client as a server would: ERR 1094 for an unknown id, ERR 1095
    /// for another user's session unless this user is `admin`, OK otherwise. A session killing
    /// itself gets what MariaDB answers: ERR 1317 for `KILL QUERY`, ERR 1927 and the end of the
    /// connection for `KILL CONNECTION`.
    async fn kill_session(&mut self, id: u64, scope: KillScope) -> Result<(), Error> {
        let target = Registry::of(&self.ctx).get(id);
        let Some(target) = target else {
            let (c, st) = code::ER_NO_SUCH_THREAD;
            return self
                .send_err(1, c, st, &format!("Unknown thread id: {id}"))
                .await;
        };
        if target.id == self.client.connection_id {
            return match scope {
                KillScope::Query => {
                    let (c, st) = code::ER_QUERY_INTERRUPTED;
                    self.send_err(1, c, st, "Query execution was interrupted")
                        .await
                }
                KillScope::Connection => {
                    let (c, st) = code::ER_CONNECTION_KILLED;
                    self.send_err(1, c, st, "Connection was killed").await?;
                    Err(Error::Killed)
                }
            };
        }
        let creds = target.creds();
        if creds.user != self.client.user && !self.is_admin() {
            let (c, st) = code::ER_KILL_DENIED_ERROR;
            return self
                .send_err(1, c, st, &format!("You are not owner of thread {id}"))
                .await;
        }
        let failed = kill_entry(&self.ctx, &target, scope).await.err();
        match failed {
            Some((c, st, msg)) => self.send_err(1, c, &st, &msg).await,
            None => self.send_ok(1).await,
        }
    }

    /// `proxy.users[].admin` of the session's user, in the current configuration.
    fn is_admin(&self) -> bool {
        let cfg = self.ctx.proxy_config();
        users::find(&cfg.users, &self.client.user).is_some_and(|u| u.admin)
    }
}

/// Kills session `target`'s running statement, if any, on its backend (with the session's own
/// credentials: the thread's owner) and, for [`KillScope::Connection`], asks the session to
/// close. `Err` carries the ERR a client should get when the backend could not be reached
/// (the close request stands all the same). Shared by `KILL` and `POST
/// /admin/sessions/ID/kill`.
pub async fn kill_entry(
    ctx: &Context,
    target: &Entry,
    scope: KillScope,
) -> Result<(), (u16, String, String)> {
    let creds = target.creds();
    let failed = {
        let mut running = target.running().await;
        match running.as_mut() {
            Some(r) => {
                let sent = control::kill(
                    ctx,
                    &r.backend,
                    &creds.user,
                    &creds.password,
                    r.thread,
                    scope,
                )
                .await;
                match sent {
                    Ok(()) => {
                        r.killed = Some(scope);
                        None
                    }
                    Err(e) => {
                        tracing::warn!(session = target.id, backend = r.backend.name(), error = %e, "KILL could not reach the backend");
                        Some(backend_err(r.backend.name(), &e))
                    }
                }
            }
            None => None,
        }
    };
    if scope == KillScope::Connection {
        target.request_close();
    }
    match failed {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
