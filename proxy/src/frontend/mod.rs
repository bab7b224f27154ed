//! Client side: the handshake, TLS, and the entry point the accept loop calls for each client.

pub mod auth;
pub mod exchange;
pub mod primary_users;
pub mod rsa_key;
pub mod stream;
pub mod user_limit;
pub mod users;

pub use auth::Client;
pub use stream::{ClientStream, Tls};

use crate::context::Context;
use crate::metrics::reject;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpStream;

/// How long a client may take to complete the handshake, or the authentication exchange of a
/// COM_CHANGE_USER.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a client session ended abnormally.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Protocol(#[from] crate::protocol::Error),
    #[error("handshake: {0}")]
    Handshake(String),
    #[error("handshake timed out")]
    HandshakeTimeout,
    #[error("access denied for user '{0}'")]
    AccessDenied(String),
    /// The user's `proxy.users[].max_connections` is reached (the client got ERR 1226).
    #[error("user '{0}' is at its max_connections")]
    UserLimit(String),
    #[error("tls: {0}")]
    Tls(String),
    #[error(transparent)]
    Session(#[from] crate::session::Error),
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Protocol(crate::protocol::Error::Io(e))
    }
}

/// Serves one accepted client until it quits or fails: handshake, authentication, then the
/// command loop. The caller holds the client's `max_connections` slot for the duration.
pub async fn serve_client(
    stream: TcpStream,
    ctx: Arc<Context>,
    positions: Arc<crate::consistency::Positions>,
) -> Result<(), Error> {
    let _ = stream.set_nodelay(true);
    let peer = stream
        .peer_addr()
        .unwrap_or_else(|_| std::net::SocketAddr::from(([0, 0, 0, 0], 0)));
    let tls = tls_for(&ctx)?;
    // The session id: the greeting's thread id, `CONNECTION_ID()`, and what `KILL` takes.
    let id = crate::session::registry::next_id();
    let hs = tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        auth::handshake(stream, peer, &ctx, tls.as_ref(), id),
    )
    .await;
    let (stream, client) = match hs {
        Ok(Ok(x)) => x,
        Ok(Err(e)) => {
            let reason = match e {
                Error::AccessDenied(_) => reject::AUTH,
                Error::UserLimit(_) => reject::USER_MAX_CONNECTIONS,
                _ => reject::HANDSHAKE,
            };
            ctx.metrics.rejected(reason);
            tracing::info!(%peer, error = %e, "client handshake failed");
            return Err(e);
        }
        Err(_) => {
            ctx.metrics.rejected(reject::HANDSHAKE);
            return Err(Error::HandshakeTimeout);
        }
    };
    tracing::debug!(%peer, user = %client.user, tls = client.tls, "client authenticated");
    crate::session::run(stream, client, ctx, positions).await?;
    Ok(())
}

/// The TLS acceptor for the current `proxy.tls` settings, built once per certificate/key pair
/// and kept in the context. A reload rebuilds it from the files even when their paths did not
/// change (a renewed certificate at the same path): see [`load_tls`] and [`install_tls`].
#[derive(Default)]
struct TlsCache(Mutex<Option<LoadedTls>>);

/// A TLS acceptor with the paths it was loaded from.
pub struct LoadedTls {
    cert: String,
    key: String,
    tls: Tls,
}

fn tls_for(ctx: &Context) -> Result<Option<Tls>, Error> {
    let cfg = ctx.proxy_config();
    if cfg.tls.mode == router::config::TlsMode::Off {
        return Ok(None);
    }
    let (Some(cert), Some(key)) = (cfg.tls.cert.clone(), cfg.tls.key.clone()) else {
        return Ok(None);
    };
    drop(cfg);
    let cache = ctx.extension(TlsCache::default);
    let mut cache = match cache.0.lock() {
        Ok(c) => c,
        Err(p) => p.into_inner(),
    };
    if let Some(t) = cache.as_ref() {
        if t.cert == cert && t.key == key {
            return Ok(Some(t.tls.clone()));
        }
    }
    let tls = Tls::load(&cert, &key)?;
    *cache = Some(LoadedTls {
        cert,
        key,
        tls: tls.clone(),
    });
    Ok(Some(tls))
}

/// Reads the certificate and key `config` names (none when TLS is off), for a reload to check
/// before it swaps anything in: a file that does not load rejects the reload.
pub fn load_tls(config: &router::config::Config) -> Result<Option<LoadedTls>, Error> {
    let Some(p) = config.proxy.as_ref() else {
        return Ok(None);
    };
    if p.tls.mode == router::config::TlsMode::Off {
        return Ok(None);
    }
    let (Some(cert), Some(key)) = (p.tls.cert.clone(), p.tls.key.clone()) else {
        return Ok(None);
    };
    let tls = Tls::load(&cert, &key)?;
    Ok(Some(LoadedTls { cert, key, tls }))
}

/// Makes a freshly loaded acceptor the one new clients get. Sessions already on TLS keep the
/// connection they negotiated.
pub fn install_tls(ctx: &Context, loaded: Option<LoadedTls>) {
    let cache = ctx.extension(TlsCache::default);
    let mut cache = match cache.0.lock() {
        Ok(c) => c,
        Err(p) => p.into_inner(),
    };
    *cache = loaded;
}
