//! The client listener: accepts connections, enforces `proxy.max_connections` with a MySQL
//! ERR 1040, hands each client to the data path in its own task, and shuts down gracefully
//! (stop accepting, let sessions finish up to `proxy.shutdown_timeout_s`).

use crate::context::Context;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

/// Listener errors, worded for the operator.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{addr} is already in use: stop the other process or change {key} in {file}")]
    AddrInUse {
        addr: String,
        key: &'static str,
        file: String,
    },
    #[error("cannot listen on {addr} ({key} in {file}): {source}")]
    Bind {
        addr: String,
        key: &'static str,
        file: String,
        #[source]
        source: io::Error,
    },
}

/// Binds `addr`, turning "address in use" into a sentence that says what to change.
pub async fn bind(addr: &str, key: &'static str, file: &str) -> Result<TcpListener, Error> {
    TcpListener::bind(addr).await.map_err(|source| {
        if source.kind() == io::ErrorKind::AddrInUse {
            Error::AddrInUse {
                addr: addr.to_string(),
                key,
                file: file.to_string(),
            }
        } else {
            Error::Bind {
                addr: addr.to_string(),
                key,
                file: file.to_string(),
                source,
            }
        }
    })
}

/// MySQL's error for a full server; the client sees "ERROR 1040: Too many connections".
pub const ER_CON_COUNT_ERROR: u16 = 1040;

/// An ERR packet sent instead of the initial handshake (sequence id 0). A server may answer a
/// new connection this way; the client has not announced CLIENT_PROTOCOL_41 yet, so the packet
/// carries no SQL state, exactly as mysqld sends it.
pub fn handshake_err_packet(code: u16, message: &str) -> Vec<u8> {
    let mut payload = Vec::with_capacity(3 + message.len());
    payload.push(0xff);
    payload.extend_from_slice(&code.to_le_bytes());
    payload.extend_from_slice(message.as_bytes());
    let len = payload.len().min(0xff_ffff);
    let mut packet = Vec::with_capacity(4 + len);
    packet.extend_from_slice(&(len as u32).to_le_bytes()[..3]);
    packet.push(0);
    packet.extend_from_slice(&payload[..len]);
    packet
}

/// Runs everything: the health monitor, the admin endpoint, the signal handlers (SIGHUP
/// reloads, SIGTERM/SIGINT shut down), the configuration file watcher (a changed file
/// reloads as SIGHUP does) and the accept loop. Returns once sessions are done.
pub async fn serve_all(ctx: Arc<Context>, listener: TcpListener, admin: TcpListener) {
    let monitor = crate::health::spawn(ctx.clone());
    let failover = crate::failover::auto::spawn(ctx.clone());
    let primary_users = crate::frontend::primary_users::spawn(ctx.clone());
    crate::frontend::rsa_key::warm(&ctx);
    // Replica positions for read-your-writes, shared by every session (and shown in /servers).
    let positions = crate::consistency::Positions::new();
    let admin = tokio::spawn(crate::admin::serve(admin, ctx.clone(), positions.clone()));
    let reloader = crate::config_watch::Reloader::new(ctx.clone());
    let signals = tokio::spawn(handle_signals(ctx.clone(), reloader.clone()));
    let watcher = tokio::spawn(crate::config_watch::watch(reloader));
    run(ctx, listener, positions).await;
    monitor.abort();
    failover.abort();
    primary_users.abort();
    admin.abort();
    signals.abort();
    watcher.abort();
}

/// SIGHUP: reload the configuration (a bad file is rejected and the old one stays).
/// SIGTERM / SIGINT: begin a graceful shutdown; a second one is not needed (the deadline holds).
async fn handle_signals(ctx: Arc<Context>, reloader: Arc<crate::config_watch::Reloader>) {
    use tokio::signal::unix::{signal, SignalKind};
    let (mut hup, mut term, mut int) = match (
        signal(SignalKind::hangup()),
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(h), Ok(t), Ok(i)) => (h, t, i),
        _ => {
            tracing::error!("cannot install signal handlers; SIGHUP reload and graceful shutdown are unavailable");
            return;
        }
    };
    loop {
        tokio::select! {
            _ = hup.recv() => {
                let r = reloader.clone();
                // Reading files blocks: keep it off the runtime's workers.
                let _ = tokio::task::spawn_blocking(move || r.reload("SIGHUP")).await;
                // logrotate convention: the audit log is reopened at its configured path.
                crate::audit::reopen(&ctx);
            }
            _ = term.recv() => stop(&ctx, "SIGTERM"),
            _ = int.recv() => stop(&ctx, "SIGINT"),
        }
    }
}

/// First SIGTERM/SIGINT: graceful shutdown. A second one while sessions drain: exit now
/// (the operator pressed Ctrl-C twice).
fn stop(ctx: &Context, signal: &str) {
    if ctx.is_shutting_down() {
        tracing::warn!(
            sessions = ctx.clients(),
            "second {signal}: exiting now without waiting for sessions"
        );
        std::process::exit(1);
    }
    tracing::info!("{signal}: shutting down gracefully (send it again to exit at once)");
    ctx.begin_shutdown();
}

/// Runs the accept loop until shutdown begins, then waits for sessions to finish (at most
/// `proxy.shutdown_timeout_s`). Returns the number of sessions still open at the deadline.
/// `positions` is kept up to date from the lag source meanwhile.
pub async fn run(
    ctx: Arc<Context>,
    listener: TcpListener,
    positions: Arc<crate::consistency::Positions>,
) -> usize {
    let mut shutdown = ctx.shutdown_signal();
    let mut sessions = tokio::task::JoinSet::new();
    let follower = tokio::spawn(crate::consistency::follow(ctx.clone(), positions.clone()));
    loop {
        if *shutdown.borrow() {
            break;
        }
        tokio::select! {
            _ = shutdown.changed() => continue,
            // Reap finished sessions so the set does not grow with every client ever served.
            Some(_) = sessions.join_next(), if !sessions.is_empty() => continue,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => accept(&ctx, &positions, &mut sessions, stream, peer),
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning; the listener survives.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
    drop(listener);
    let timeout = Duration::from_secs(ctx.proxy_config().shutdown_timeout_s);
    let open = sessions.len();
    if open > 0 {
        tracing::info!(
            sessions = open,
            timeout_s = timeout.as_secs(),
            "stopped accepting; waiting for sessions to finish"
        );
    }
    let drained = tokio::time::timeout(timeout, async {
        while sessions.join_next().await.is_some() {}
    })
    .await;
    follower.abort();
    let left = sessions.len();
    if drained.is_err() {
        tracing::warn!(
            sessions = left,
            "shutdown_timeout_s reached: closing the remaining sessions"
        );
        sessions.shutdown().await;
    }
    left
}

fn accept(
    ctx: &Arc<Context>,
    positions: &Arc<crate::consistency::Positions>,
    sessions: &mut tokio::task::JoinSet<()>,
    stream: TcpStream,
    peer: SocketAddr,
) {
    let _ = stream.set_nodelay(true);
    let max = ctx.proxy_config().max_connections;
    let Some(slot) = ctx.try_admit(max) else {
        ctx.metrics
            .rejected(crate::metrics::reject::MAX_CONNECTIONS);
        tracing::warn!(%peer, max_connections = max, "refusing client: too many connections");
        // Answer off the accept loop so a slow client cannot stall it.
        tokio::spawn(refuse(stream));
        return;
    };
    let ctx = ctx.clone();
    let positions = positions.clone();
    sessions.spawn(async move {
        let _slot = slot;
        if let Err(e) = serve(stream, ctx, positions).await {
            tracing::debug!(%peer, error = %e, "session ended with an error");
        }
    });
}

async fn refuse(mut stream: TcpStream) {
    let packet = handshake_err_packet(ER_CON_COUNT_ERROR, "Too many connections");
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        let _ = stream.write_all(&packet).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

/// Hands one client to the data path (handshake, authentication, command loop).
async fn serve(
    stream: TcpStream,
    ctx: Arc<Context>,
    positions: Arc<crate::consistency::Positions>,
) -> Result<(), crate::frontend::Error> {
    crate::frontend::serve_client(stream, ctx, positions).await
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn too_many_connections_packet_is_a_well_formed_err() {
        let p = handshake_err_packet(1040, "Too many connections");
        let len = u32::from_le_bytes([p[0], p[1], p[2], 0]) as usize;
        assert_eq!(len, p.len() - 4);
        assert_eq!(p[3], 0, "sequence id");
        assert_eq!(p[4], 0xff);
        assert_eq!(u16::from_le_bytes([p[5], p[6]]), 1040);
        assert_eq!(&p[7..], b"Too many connections");
    }

    #[tokio::test]
    async fn taken_port_names_the_key_and_file() {
        let first = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = first.local_addr().expect("addr").to_string();
        let err = bind(&addr, "proxy.listen", "c.yaml")
            .await
            .expect_err("port is taken");
        assert_eq!(
            err.to_string(),
            format!(
                "{addr} is already in use: stop the other process or change proxy.listen in c.yaml"
            )
        );
    }
}
