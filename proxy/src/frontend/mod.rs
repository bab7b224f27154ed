//! Client side: the handshake, TLS, and the entry point the accept loop calls for each client.

pub mod auth;
pub mod stream;
pub mod users;

pub use auth::Client;
pub use stream::{ClientStream, Tls};

use crate::context::Context;
use crate::metrics::reject;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpStream;

/// How long a client may take to complete the handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

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

/// Connection ids shown to clients (greeting, `CONNECTION_ID()` is the backend's own).
static NEXT_CONNECTION_ID: AtomicU32 = AtomicU32::new(1);

/// Serves one accepted client until it quits or fails: handshake, authentication, then the
/// command loop. The caller holds the client's `max_connections` slot for the duration.
pub async fn serve_client(stream: TcpStream, ctx: Arc<Context>) -> Result<(), Error> {
    let _ = stream.set_nodelay(true);
    let peer = stream
        .peer_addr()
        .unwrap_or_else(|_| std::net::SocketAddr::from(([0, 0, 0, 0], 0)));
    let tls = tls_for(&ctx)?;
    let id = NEXT_CONNECTION_ID.fetch_add(1, Ordering::Relaxed);
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
    crate::session::run(stream, client, ctx).await?;
    Ok(())
}

/// The TLS acceptor for the current `proxy.tls` settings, built once per certificate/key pair
/// and kept in the context (rebuilt when a reload names other files).
#[derive(Default)]
struct TlsCache(Mutex<Option<(String, String, Tls)>>);

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
    if let Some((c, k, t)) = cache.as_ref() {
        if *c == cert && *k == key {
            return Ok(Some(t.clone()));
        }
    }
    let tls = Tls::load(&cert, &key)?;
    *cache = Some((cert, key, tls.clone()));
    Ok(Some(tls))
}
