//! Backend side: authenticated connections to the database servers and their pools.

pub mod conn;
pub mod control;
pub mod credential;
pub mod fingerprint;
pub mod handshake;
pub mod open;
pub mod pool;
pub mod stmt_cache;
pub mod tls;

pub use conn::{Conn, Key, Sink};
pub use control::KillScope;
pub use credential::Credential;
pub use fingerprint::Fingerprint;
pub use pool::{pools_for, Pools};

/// What can go wrong talking to a backend.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot connect: {0}")]
    Connect(std::io::Error),
    #[error("connect timed out after {0:?} (proxy.pool.connect_timeout_ms)")]
    ConnectTimeout(std::time::Duration),
    #[error("no answer within {0:?} (proxy.pool.read_timeout_ms)")]
    ReadTimeout(std::time::Duration),
    /// The server answered with an ERR packet.
    #[error("server error {code} ({state}): {message}")]
    Server {
        code: u16,
        state: String,
        message: String,
    },
    #[error("server {server} lacks capabilities {missing:#x} the client negotiated")]
    Capabilities { missing: u32, server: String },
    /// TLS towards the backend failed or is impossible (`servers[].tls`).
    #[error("tls: {0}")]
    Tls(String),
    #[error("unsupported authentication: {0}")]
    UnsupportedAuth(String),
    /// The server's pool stayed full for `proxy.pool.queue_timeout_ms`: the session waited its
    /// turn and none came. Says nothing about the server's health.
    #[error("pool for server '{server}' is full ({max} connections, proxy.pool.max_per_server) and no connection came free within {waited_ms} ms (proxy.pool.queue_timeout_ms)")]
    PoolExhausted {
        server: String,
        max: usize,
        waited_ms: u64,
    },
    /// The user's sessions held `proxy.users[].max_backend_connections` connections to the
    /// server for `proxy.pool.queue_timeout_ms`. Says nothing about the server's health.
    #[error("user '{user}' holds its max_backend_connections ({max}) on server '{server}' (proxy.users[].max_backend_connections) and none came free within {waited_ms} ms (proxy.pool.queue_timeout_ms)")]
    UserBackendLimit {
        user: String,
        server: String,
        max: usize,
        waited_ms: u64,
    },
    #[error(transparent)]
    Protocol(#[from] crate::protocol::Error),
    #[error(transparent)]
    Relay(#[from] crate::protocol::relay::RelayError),
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Protocol(crate::protocol::Error::Io(e))
    }
}
