//! Short-lived control connections that cancel what a backend thread is doing (`KILL QUERY` /
//! `KILL CONNECTION`): for a client's `KILL`, a statement timeout, or a client that left in the
//! middle of a statement. The thread's own connection is busy with the statement, so the kill
//! has to come from another one.

use super::conn::Key;
use super::Error;
use crate::context::{Backend, Context};
use crate::protocol::consts::{com, DEFAULT_COLLATION};

/// What to cancel on the backend thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KillScope {
    /// The running statement only (`KILL QUERY`): the thread's client gets ERR 1317 and its
    /// connection stays usable.
    Query,
    /// The statement and the connection (`KILL CONNECTION`): the server closes it.
    Connection,
}

/// ER_NO_SUCH_THREAD: the thread ended before the kill reached it.
const NO_SUCH_THREAD: u16 = 1094;

/// Kills backend thread `thread` on `backend` over a fresh connection opened as `user` (who
/// must own the thread or have the privilege to kill it), with the pools' connect timeout,
/// TLS settings and read timeout. The connection is not taken from or counted against the pool:
/// a kill must not wait behind the statements it is meant to stop. A thread that is already
/// gone is not an error.
pub async fn kill(
    ctx: &Context,
    backend: &Backend,
    user: &str,
    password: &super::Credential,
    thread: u32,
    scope: KillScope,
) -> Result<(), Error> {
    let key = Key {
        server: backend.name().to_string(),
        addr: format!("{}:{}", backend.config.host, backend.config.port),
        user: user.to_string(),
        caps: 0,
        collation: DEFAULT_COLLATION,
        tls: backend.config.tls.mode,
    };
    let mut conn = super::open::open(ctx, backend, key, password, None).await?;
    let sql = match scope {
        KillScope::Query => format!("KILL QUERY {thread}"),
        KillScope::Connection => format!("KILL CONNECTION {thread}"),
    };
    let r = conn.query_discard(sql.as_bytes()).await;
    // Polite goodbye; the connection is dropped either way.
    let _ = conn.send(&[com::QUIT]).await;
    match r {
        Ok(_) => Ok(()),
        Err(Error::Server { code, .. }) if code == NO_SUCH_THREAD => Ok(()),
        Err(e) => Err(e),
    }
}
