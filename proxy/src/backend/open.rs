//! Opening one authenticated backend connection with the pools' settings
//! (`proxy.pool.connect_timeout_ms`, `proxy.pool.read_timeout_ms`, `servers[].tls`): shared by
//! the pools' acquire path and the control connections that cancel statements, so both reach a
//! server the same way.

use super::conn::{Conn, Key, Target};
use super::{Credential, Error};
use crate::context::{Backend, Context};
use std::time::Duration;

/// Connects to `backend` and authenticates as `key.user` with `password`, selecting
/// `database` when given.
pub async fn open(
    ctx: &Context,
    backend: &Backend,
    key: Key,
    password: &Credential,
    database: Option<&str>,
) -> Result<Conn, Error> {
    let (connect_timeout, read_timeout) = {
        let cfg = ctx.proxy_config();
        (
            Duration::from_millis(cfg.pool.connect_timeout_ms.max(1)),
            Duration::from_millis(cfg.pool.read_timeout_ms.max(1)),
        )
    };
    let tls = super::tls::target_for(
        ctx,
        backend.name(),
        &backend.config.host,
        &backend.config.tls,
    )?;
    let addr = key.addr.clone();
    Conn::connect(
        key,
        Target {
            addr: &addr,
            password,
            connect_timeout,
            read_timeout,
            tls,
        },
        database,
    )
    .await
}
