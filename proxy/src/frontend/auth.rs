//! The client-facing handshake: greeting, optional TLS upgrade, authentication
//! (`mysql_native_password`, `caching_sha2_password` fast path and full authentication over
//! TLS or with the proxy's RSA key, auth-switch), all verified by the proxy itself against the
//! configured users.

use super::rsa_key;
use super::stream::{ClientStream, Tls};
use super::users;
use super::Error;
use crate::backend::handshake::{scramble, Greeting, Response};
use crate::context::Context;
use crate::protocol::consts::{cap, code, status, DEFAULT_COLLATION};
use crate::protocol::message::{err_payload, ok_payload};
use crate::protocol::packet::{read_packet, write_packet};
use router::config::TlsMode;
use std::net::SocketAddr;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest handshake packet accepted from a client that has not authenticated yet.
const HANDSHAKE_MAX: usize = 64 * 1024;

const NATIVE: &str = "mysql_native_password";
const SHA2: &str = "caching_sha2_password";

/// Who the client is, once authenticated.
#[derive(Debug, Clone)]
pub struct Client {
    pub user: String,
    /// The user's password in clear, for backend authentication. Never logged.
    pub password: String,
    pub host: String,
    pub caps: u32,
    pub collation: u8,
    pub database: Option<String>,
    pub max_packet: usize,
    pub connection_id: u32,
    pub tls: bool,
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
    let using = if resp.auth.is_empty() { "NO" } else { "YES" };
    let denied = format!(
        "Access denied for user '{}'@'{}' (using password: {using})",
        resp.user, host
    );
    if tls_mode == TlsMode::Required && !on_tls {
        let (c, st) = code::ER_SECURE_TRANSPORT_REQUIRED;
        let msg = "Connections using insecure transport are prohibited while proxy.tls.mode is 'required'";
        send_err(&mut stream, seq.wrapping_add(1), c, st, msg).await?;
        return Err(Error::Handshake("TLS required".into()));
    }
    let user = users::find(&cfg.users, &resp.user);
    let password = user.and_then(|u| users::resolve(&u.secret));
    let Some(password) = password else {
        let (c, st) = code::ER_ACCESS_DENIED_ERROR;
        send_err(&mut stream, seq.wrapping_add(1), c, st, &denied).await?;
        return Err(Error::AccessDenied(resp.user.clone()));
    };

    let mut seq = seq.wrapping_add(1);
    let mut plugin = resp.auth_plugin.clone().unwrap_or_else(|| NATIVE.into());
    let mut answer = resp.auth.clone();
    if plugin != NATIVE && plugin != SHA2 {
        // Auth switch to mysql_native_password with the same nonce.
        let mut p = vec![0xfe];
        p.extend_from_slice(NATIVE.as_bytes());
        p.push(0);
        p.extend_from_slice(&nonce);
        p.push(0);
        write_packet(&mut stream, seq, &p).await?;
        stream.flush().await?;
        let s = read_packet(&mut stream, &mut buf, HANDSHAKE_MAX).await?;
        seq = s.wrapping_add(1);
        plugin = NATIVE.into();
        answer = buf.clone();
    }
    let expected = scramble(&plugin, &nonce, &password).unwrap_or_default();
    let mut ok = constant_time_eq(&answer, &expected);
    if plugin == SHA2 {
        if ok && !password.is_empty() {
            write_packet(&mut stream, seq, &[0x01, 0x03]).await?;
            seq = seq.wrapping_add(1);
        } else if !ok {
            // Full authentication, as a MySQL server does when the fast-path scramble does not
            // match its cache: over TLS the client sends the password in clear, otherwise
            // RSA-encrypted with the proxy's public key (asking for it first with 0x02).
            write_packet(&mut stream, seq, &[0x01, 0x04]).await?;
            stream.flush().await?;
            let s = read_packet(&mut stream, &mut buf, HANDSHAKE_MAX).await?;
            seq = s.wrapping_add(1);
            let clear = if on_tls {
                Some(buf.strip_suffix(&[0]).unwrap_or(&buf).to_vec())
            } else {
                let (clear, s) = full_auth_rsa(&mut stream, &mut buf, seq, ctx, &nonce).await?;
                seq = s;
                clear
            };
            ok = clear.is_some_and(|c| constant_time_eq(&c, password.as_bytes()));
        }
    }
    if !ok {
        let (c, st) = code::ER_ACCESS_DENIED_ERROR;
        send_err(&mut stream, seq, c, st, &denied).await?;
        return Err(Error::AccessDenied(resp.user.clone()));
    }
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
        },
    ))
}

/// caching_sha2_password full authentication on a plain connection, after the client's first
/// answer to `0x04` is in `buf`: `0x02` asks for the public key (sent as `0x01` + PEM), then
/// the RSA-encrypted password follows; a client that has the key sends it at once. Returns the
/// password the client sent (`None` when it does not decrypt) and the next sequence id.
async fn full_auth_rsa(
    stream: &mut ClientStream,
    buf: &mut Vec<u8>,
    mut seq: u8,
    ctx: &Context,
    nonce: &[u8],
) -> Result<(Option<Vec<u8>>, u8), Error> {
    let key = match rsa_key::key(ctx).await {
        Ok(k) => k,
        Err(e) => {
            let (c, st) = code::ER_ACCESS_DENIED_ERROR;
            let msg = format!("rwsplit: caching_sha2_password needs TLS here: {e}");
            send_err(stream, seq, c, st, &msg).await?;
            return Err(Error::Handshake(e.to_string()));
        }
    };
    if buf.as_slice() == [0x02] {
        let mut p = Vec::with_capacity(1 + key.public_pem().len());
        p.push(0x01);
        p.extend_from_slice(key.public_pem());
        write_packet(stream, seq, &p).await?;
        stream.flush().await?;
        let s = read_packet(stream, buf, HANDSHAKE_MAX).await?;
        seq = s.wrapping_add(1);
    }
    Ok((key.decrypt_password(buf, nonce), seq))
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

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
