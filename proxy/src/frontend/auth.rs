//! The client-facing handshake: greeting, optional TLS upgrade, then the authentication
//! exchange ([`super::exchange`], shared with COM_CHANGE_USER), verified by the proxy itself
//! against the configured users.

use super::exchange::{self, Offer, Verified, NATIVE};
use super::stream::{ClientStream, Tls};
use super::Error;
use crate::backend::handshake::{Greeting, Response};
use crate::context::Context;
use crate::protocol::consts::{cap, code, status, DEFAULT_COLLATION};
use crate::protocol::message::{err_payload, ok_payload};
use crate::protocol::packet::{read_packet, write_packet};
use router::config::TlsMode;
use std::net::SocketAddr;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest handshake packet accepted from a client that has not authenticated yet.
const HANDSHAKE_MAX: usize = exchange::AUTH_MAX;

/// Who the client is, once authenticated.
#[derive(Debug, Clone)]
pub struct Client {
    pub user: String,
    /// What logs in to the backends as the user (the password, or SHA1 of it for a user
    /// configured with a hash). Never logged.
    pub password: crate::backend::Credential,
    pub host: String,
    pub caps: u32,
    pub collation: u8,
    pub database: Option<String>,
    /// The largest packet the client says it accepts from the server. Not a limit on what it
    /// sends: that is `proxy.max_allowed_packet`, which no client can raise.
    pub max_packet: usize,
    pub connection_id: u32,
    pub tls: bool,
    /// The session's place under `proxy.users[].max_connections`, shared by clones.
    pub user_slot: std::sync::Arc<super::user_limit::UserSlot>,
}

/// Random bytes for a nonce, from the operating system's CSPRNG (through rustls' ring
/// provider): printable-safe (no NUL, no `$`), as servers send.
pub fn nonce() -> Vec<u8> {
    let mut raw = [0u8; 20];
    let provider = rustls::crypto::ring::default_provider();
    if provider.secure_random.fill(&mut raw).is_err() {
        // Unreachable on Linux; fall back to a non-cryptographic source rather than fail.
        raw.iter_mut().for_each(|b| *b = fastrand::u8(..));
    }
    raw.iter()
        .map(|b| match (b & 0x7f).max(1) {
            b'$' => b'%',
            x => x,
        })
        .collect()
}

/// Performs the handshake on a freshly accepted connection.
pub async fn handshake(
    tcp: TcpStream,
    peer: SocketAddr,
    ctx: &Context,
    tls: Option<&Tls>,
    connection_id: u32,
) -> Result<(ClientStream, Client), Error> {
    let cfg = ctx.proxy_config();
    let tls_mode = if tls.is_some() {
        cfg.tls.mode
    } else {
        TlsMode::Off
    };
    let mut offered = cap::PROXY_OFFERS;
    if tls_mode != TlsMode::Off {
        offered |= cap::SSL;
    }
    let nonce = nonce();
    let greeting = Greeting {
        server_version: match &cfg.server_version {
            Some(v) => v.clone(),
            None => ctx.advertised_version(),
        },
        connection_id,
        nonce: nonce.clone(),
        capabilities: offered,
        collation: DEFAULT_COLLATION,
        status: status::AUTOCOMMIT,
        auth_plugin: NATIVE.into(),
    };
    let mut stream = ClientStream::plain(tcp);
    let mut buf = Vec::with_capacity(256);
    write_packet(&mut stream, 0, &greeting.build()).await?;
    stream.flush().await?;
    let mut seq = read_packet(&mut stream, &mut buf, HANDSHAKE_MAX).await?;
    let mut on_tls = false;
    if Response::is_ssl_request(&buf) {
        let Some(tls) = tls.filter(|_| tls_mode != TlsMode::Off) else {
            return Err(Error::Handshake(
                "client asked for TLS, which is not offered".into(),
            ));
        };
        stream = stream.upgrade(tls).await?;
        on_tls = true;
        seq = read_packet(&mut stream, &mut buf, HANDSHAKE_MAX).await?;
    }
    let resp = match Response::parse(&buf) {
        Ok(r) => r,
        Err(e) => {
            let (c, st) = code::ER_HANDSHAKE_ERROR;
            let _ = send_err(&mut stream, seq.wrapping_add(1), c, st, "Bad handshake").await;
            return Err(e.into());
        }
    };
    let host = peer.ip().to_string();
    if tls_mode == TlsMode::Required && !on_tls {
        let (c, st) = code::ER_SECURE_TRANSPORT_REQUIRED;
        let msg = "Connections using insecure transport are prohibited while proxy.tls.mode is 'required'";
        send_err(&mut stream, seq.wrapping_add(1), c, st, msg).await?;
        return Err(Error::Handshake("TLS required".into()));
    }
    drop(cfg);
    let offer = Offer {
        user: &resp.user,
        plugin: resp.auth_plugin.as_deref(),
        answer: &resp.auth,
        ask_again: false,
        nonce: &nonce,
        host: &host,
        on_tls,
    };
    let Verified {
        password,
        seq,
        slot,
    } = exchange::authenticate(&mut stream, ctx, seq.wrapping_add(1), offer).await?;
    write_packet(&mut stream, seq, &ok_payload(0, 0, status::AUTOCOMMIT, 0)).await?;
    stream.flush().await?;
    let caps = resp.capabilities & offered;
    Ok((
        stream,
        Client {
            user: resp.user,
            password,
            host,
            caps,
            collation: if resp.collation == 0 {
                DEFAULT_COLLATION
            } else {
                resp.collation
            },
            database: resp.database,
            max_packet: (resp.max_packet as usize).clamp(1 << 20, 1 << 30),
            connection_id,
            tls: on_tls,
            user_slot: std::sync::Arc::new(slot),
        },
    ))
}

/// Sends an ERR packet and flushes.
pub async fn send_err<W: AsyncWrite + AsyncRead + Unpin>(
    w: &mut W,
    seq: u8,
    code: u16,
    state: &str,
    message: &str,
) -> Result<(), Error> {
    write_packet(w, seq, &err_payload(code, state, message)).await?;
    w.flush().await?;
    Ok(())
}
