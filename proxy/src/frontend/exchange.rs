//! The authentication exchange shared by the handshake and COM_CHANGE_USER, so both accept the
//! same plugins (`mysql_native_password`; `caching_sha2_password` fast path, full
//! authentication over TLS or with the proxy's RSA key; an auth switch when needed), compare in
//! constant time, and give up on a client that stops answering ([`authenticate_in_time`]).
//!
//! The user is looked up in `proxy.users` first, then among the accounts loaded from the
//! primary (`proxy.users_from_primary`, see [`super::primary_users`]), which are hash-only.
//!
//! A user configured with a `mysql_native_password` hash only is always asked for
//! `mysql_native_password` (an auth switch when the client offers another plugin): its answer
//! is checked against the hash and yields SHA1(password), all the backends' native scramble
//! needs. `caching_sha2_password` cannot be served that way: its scramble is built from
//! SHA256(password), which the hash does not give.

use super::primary_users;
use super::rsa_key;
use super::user_limit::{self, UserSlot, ER_USER_LIMIT_REACHED};
use super::users;
use super::{Error, HANDSHAKE_TIMEOUT};
use crate::backend::credential::{verify_native, Credential};
use crate::backend::handshake::scramble;
use crate::context::Context;
use crate::protocol::consts::code;
use crate::protocol::message::err_payload;
use crate::protocol::packet::{read_packet, write_packet};
use sha1::{Digest, Sha1};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

/// Largest packet accepted from a client during the exchange (scrambles, RSA ciphertexts and
/// clear passwords are far smaller).
pub const AUTH_MAX: usize = 64 * 1024;

pub const NATIVE: &str = "mysql_native_password";
pub const SHA2: &str = "caching_sha2_password";

/// What the client has said before the exchange starts.
#[derive(Debug, Clone, Copy)]
pub struct Offer<'a> {
    pub user: &'a str,
    /// The plugin the client names; `None` is `mysql_native_password` (what the greeting names).
    pub plugin: Option<&'a str>,
    /// The client's first answer, scrambled against `nonce`.
    pub answer: &'a [u8],
    /// Ignore `answer` and ask again with an auth switch to the plugin the client names:
    /// COM_CHANGE_USER's answer is scrambled against a nonce the proxy does not track. `answer`
    /// still decides "using password" for a user that is refused at once.
    pub ask_again: bool,
    pub nonce: &'a [u8],
    /// The client's address, as the access-denied message names it and as an account loaded
    /// from the primary's `Host` is matched against.
    pub host: &'a str,
    /// The connection is under TLS: full authentication may receive the password in clear.
    pub on_tls: bool,
}

/// A client that proved it knows the user's password.
pub struct Verified {
    /// What logs in to the backends as the user: the password in clear, or SHA1(password)
    /// for a user configured with a hash. Never logged.
    pub password: Credential,
    /// The sequence id of the OK the caller sends to end the exchange.
    pub seq: u8,
    /// The session's place under the user's `max_connections`, held while the session is
    /// this user's.
    pub slot: UserSlot,
}

/// Without the password, so that no log line or test failure can show it.
impl std::fmt::Debug for Verified {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verified")
            .field("password", &"<redacted>")
            .field("seq", &self.seq)
            .finish()
    }
}

/// [`authenticate`] under [`HANDSHAKE_TIMEOUT`]: a client that stops answering in the middle
/// is cut off ([`Error::HandshakeTimeout`]) instead of holding its session for ever.
pub async fn authenticate_in_time<S>(
    stream: &mut S,
    ctx: &Context,
    seq: u8,
    offer: Offer<'_>,
) -> Result<Verified, Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    within(HANDSHAKE_TIMEOUT, stream, ctx, seq, offer).await
}

async fn within<S>(
    limit: std::time::Duration,
    stream: &mut S,
    ctx: &Context,
    seq: u8,
    offer: Offer<'_>,
) -> Result<Verified, Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    tokio::time::timeout(limit, authenticate(stream, ctx, seq, offer))
        .await
        .map_err(|_| Error::HandshakeTimeout)?
}

/// Runs the exchange from sequence id `seq` on: an auth switch when the client's plugin is not
/// one the proxy verifies (or [`Offer::ask_again`]), then the plugin's own steps. Returns the
/// user's password, or sends ERR 1045 with the server's wording and returns
/// [`Error::AccessDenied`]. No timeout of its own: see [`authenticate_in_time`].
pub async fn authenticate<S>(
    stream: &mut S,
    ctx: &Context,
    mut seq: u8,
    offer: Offer<'_>,
) -> Result<Verified, Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (stored, limit) = {
        let cfg = ctx.proxy_config();
        match users::find(&cfg.users, offer.user) {
            Some(user) => (users::stored(user), user.max_connections),
            // Not configured: an account loaded from the primary (`users_from_primary`)
            // whose Host admits the client's address, without limits of its own.
            None => (
                primary_users::stage2(ctx, &cfg, offer.user, offer.host)
                    .map(users::Stored::NativeHash),
                None,
            ),
        }
    };
    let Some(stored) = stored else {
        return deny(stream, seq, &offer, !offer.answer.is_empty()).await;
    };
    let named = offer.plugin.unwrap_or(NATIVE);
    let plugin = match stored {
        users::Stored::Clear(_) if named == SHA2 => SHA2,
        _ => NATIVE,
    };
    let mut buf = Vec::new();
    let mut switched = Vec::new();
    let mut answer = offer.answer;
    if offer.ask_again || named != plugin {
        let mut p = Vec::with_capacity(2 + plugin.len() + offer.nonce.len() + 1);
        p.push(0xfe);
        p.extend_from_slice(plugin.as_bytes());
        p.push(0);
        p.extend_from_slice(offer.nonce);
        p.push(0);
        write_packet(stream, seq, &p).await?;
        stream.flush().await?;
        seq = read_packet(stream, &mut switched, AUTH_MAX)
            .await?
            .wrapping_add(1);
        answer = &switched;
    }
    let password = match stored {
        users::Stored::Clear(p) => p,
        users::Stored::NativeHash(stage2) => {
            return match verify_native(offer.nonce, &stage2, answer) {
                Some(stage1) => {
                    let password = Credential::NativeStage1(stage1);
                    admit(stream, ctx, seq, &offer, limit, password).await
                }
                None => deny(stream, seq, &offer, !answer.is_empty()).await,
            };
        }
    };
    let expected = scramble(plugin, offer.nonce, &password).unwrap_or_default();
    let mut ok = constant_time_eq(answer, &expected);
    if plugin == SHA2 {
        if ok && !password.is_empty() {
            // Fast authentication succeeded.
            write_packet(stream, seq, &[0x01, 0x03]).await?;
            seq = seq.wrapping_add(1);
        } else if !ok {
            // Full authentication, as a MySQL server does when the fast-path scramble does not
            // match its cache: over TLS the client sends the password in clear, otherwise
            // RSA-encrypted with the proxy's public key (asking for it first with 0x02).
            write_packet(stream, seq, &[0x01, 0x04]).await?;
            stream.flush().await?;
            seq = read_packet(stream, &mut buf, AUTH_MAX)
                .await?
                .wrapping_add(1);
            let clear = if offer.on_tls {
                Some(buf.strip_suffix(&[0]).unwrap_or(&buf).to_vec())
            } else {
                let (clear, s) = full_auth_rsa(stream, &mut buf, seq, ctx, offer.nonce).await?;
                seq = s;
                clear
            };
            ok = clear.is_some_and(|c| secret_eq(&c, password.as_bytes()));
        }
    }
    if !ok {
        return deny(stream, seq, &offer, !answer.is_empty()).await;
    }
    let password = Credential::Clear(password);
    admit(stream, ctx, seq, &offer, limit, password).await
}

/// A verified client gets a place under its user's `max_connections`, or ERR 1226 as a server
/// words it ([`Error::UserLimit`]).
async fn admit<S>(
    stream: &mut S,
    ctx: &Context,
    seq: u8,
    offer: &Offer<'_>,
    limit: Option<usize>,
    password: Credential,
) -> Result<Verified, Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    match user_limit::take(ctx, offer.user, limit) {
        Ok(slot) => Ok(Verified {
            password,
            seq,
            slot,
        }),
        Err(exceeded) => {
            let (c, st) = ER_USER_LIMIT_REACHED;
            let msg = exceeded.message(offer.user);
            write_packet(stream, seq, &err_payload(c, st, &msg)).await?;
            stream.flush().await?;
            Err(Error::UserLimit(offer.user.to_string()))
        }
    }
}

/// Sends ERR 1045 as a server words it and returns [`Error::AccessDenied`].
async fn deny<S, T>(stream: &mut S, seq: u8, offer: &Offer<'_>, using: bool) -> Result<T, Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let msg = format!(
        "Access denied for user '{}'@'{}' (using password: {})",
        offer.user,
        offer.host,
        if using { "YES" } else { "NO" }
    );
    let (c, st) = code::ER_ACCESS_DENIED_ERROR;
    write_packet(stream, seq, &err_payload(c, st, &msg)).await?;
    stream.flush().await?;
    Err(Error::AccessDenied(offer.user.to_string()))
}

/// caching_sha2_password full authentication on a plain connection, after the client's first
/// answer to `0x04` is in `buf`: `0x02` asks for the public key (sent as `0x01` + PEM), then
/// the RSA-encrypted password follows; a client that has the key sends it at once. Returns the
/// password the client sent (`None` when it does not decrypt) and the next sequence id.
async fn full_auth_rsa<S>(
    stream: &mut S,
    buf: &mut Vec<u8>,
    mut seq: u8,
    ctx: &Context,
    nonce: &[u8],
) -> Result<(Option<Vec<u8>>, u8), Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let key = match rsa_key::key(ctx).await {
        Ok(k) => k,
        Err(e) => {
            let (c, st) = code::ER_ACCESS_DENIED_ERROR;
            let msg = format!("rwsplit: caching_sha2_password needs TLS here: {e}");
            write_packet(stream, seq, &err_payload(c, st, &msg)).await?;
            stream.flush().await?;
            return Err(Error::Handshake(e.to_string()));
        }
    };
    if buf.as_slice() == [0x02] {
        let mut p = Vec::with_capacity(1 + key.public_pem().len());
        p.push(0x01);
        p.extend_from_slice(key.public_pem());
        write_packet(stream, seq, &p).await?;
        stream.flush().await?;
        seq = read_packet(stream, buf, AUTH_MAX).await?.wrapping_add(1);
    }
    Ok((key.decrypt_password(buf, nonce), seq))
}

/// Equality whose time does not depend on where the inputs differ (scrambles have a fixed
/// length, so comparing lengths first reveals nothing).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Equality of a clear password with the configured one that reveals neither where they differ
/// nor the configured password's length: digests of both are compared.
pub(crate) fn secret_eq(given: &[u8], expected: &[u8]) -> bool {
    constant_time_eq(&Sha1::digest(given), &Sha1::digest(expected))
}

#[cfg(test)]
mod test;
