//! `proxy.users_from_primary`: the proxy also serves the accounts of the primary's own account
//! table, read with the monitor account and refreshed every `refresh_interval_ms`, as MaxScale
//! loads its users from the backends. Only `mysql_native_password` accounts can be served:
//! the proxy verifies a client against the stored hash and logs in to the servers with what
//! the client's answer proves (see `backend::credential`).
//!
//! `proxy.users` wins for a name in both. A refresh that fails keeps the last good list. The
//! client's address is checked against the account's `Host` here, since the servers see only
//! the proxy's address (see docs/USERS.md).

mod accounts;
mod host;
mod load;
mod refresh;

pub use accounts::{classify, Accounts, Row, Skip};
pub use host::HostPattern;
pub use load::LoadError;
pub use refresh::spawn;

use crate::context::Context;
use arc_swap::ArcSwap;
use router::config::ProxyConfig;
use std::net::IpAddr;
use std::sync::Arc;

/// The accounts of the last successful refresh, one list per proxy context (kept in its
/// extension slot), swapped whole by the refresher and read by each authentication.
#[derive(Default)]
pub struct Loaded(ArcSwap<Accounts>);

impl Loaded {
    /// This context's list.
    pub fn of(ctx: &Context) -> Arc<Loaded> {
        ctx.extension(Loaded::default)
    }

    /// The current list.
    pub fn accounts(&self) -> Arc<Accounts> {
        self.0.load_full()
    }

    fn store(&self, accounts: Accounts) {
        self.0.store(Arc::new(accounts));
    }
}

/// SHA1(SHA1(password)) of the loaded account that admits `user` from the client address
/// `client` (as the handshake words it), when `proxy.users_from_primary` is on in `cfg`.
/// The caller has already found no `proxy.users` entry of that name.
pub fn stage2(ctx: &Context, cfg: &ProxyConfig, user: &str, client: &str) -> Option<[u8; 20]> {
    if !cfg.users_from_primary.as_ref().is_some_and(|u| u.enabled) {
        return None;
    }
    let ip: IpAddr = client.parse().ok()?;
    Loaded::of(ctx).accounts().stage2(user, ip)
}
