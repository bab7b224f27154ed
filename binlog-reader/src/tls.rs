//! TLS towards the servers (`servers[].tls`) for the control-plane connections made with
//! mysql_async: the binlog stream, the replica pollers, and the proxy's health monitor.

use mysql_async::{Conn, DriverError, Error, OptsBuilder, SslOpts};
use router::config::{BackendTlsConfig, BackendTlsMode};
use std::path::PathBuf;

/// mysql_async's TLS options for `tls`; `None` when TLS is disabled.
pub fn ssl_opts(tls: &BackendTlsConfig) -> Option<SslOpts> {
    if tls.mode == BackendTlsMode::Disabled {
        return None;
    }
    let mut opts = SslOpts::default().with_danger_accept_invalid_certs(!tls.verify);
    if let Some(ca) = &tls.ca {
        opts = opts.with_root_certs(vec![PathBuf::from(ca).into()]);
    }
    Some(opts)
}

/// Connects with `opts` under `tls`: `required` fails on a server that does not offer TLS,
/// `preferred` then connects again without it.
pub async fn connect(opts: OptsBuilder, tls: &BackendTlsConfig) -> Result<Conn, Error> {
    let Some(ssl) = ssl_opts(tls) else {
        return Conn::new(opts).await;
    };
    match Conn::new(opts.clone().ssl_opts(Some(ssl))).await {
        Err(Error::Driver(DriverError::NoClientSslFlagFromServer))
            if tls.mode == BackendTlsMode::Preferred =>
        {
            Conn::new(opts).await
        }
        r => r,
    }
}
