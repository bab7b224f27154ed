//! COM_CHANGE_USER: the proxy re-authenticates the client with the same exchange as the
//! handshake ([`crate::frontend::exchange`], under the same timeout), then starts a fresh
//! session as the new user; connections of the old user go back to their pools. A failed
//! change ends the session after ERR 1045, as on a server.

use super::{Error, Session};
use crate::frontend::auth::nonce;
use crate::frontend::exchange::{self, Offer};
use crate::metrics::reject;
use crate::protocol::consts::{cap, code};
use crate::protocol::message::lenenc_int;

/// The fields of a COM_CHANGE_USER packet (after the command byte).
#[derive(Debug, PartialEq, Eq)]
pub(super) struct ChangeUser {
    pub user: String,
    /// Scrambled against a nonce of the connection's past: not verified, only "using password".
    pub auth: Vec<u8>,
    pub database: Option<String>,
    /// Collation id, when the client sent one that fits the session's one-byte id.
    pub collation: Option<u8>,
    pub plugin: Option<String>,
}

impl ChangeUser {
    /// Parses `p` as a client with capabilities `caps` sends it; `None` when malformed.
    /// Connection attributes, last, are checked for framing and otherwise ignored.
    pub fn parse(p: &[u8], caps: u32) -> Option<ChangeUser> {
        let (user, mut rest) = cstr(p)?;
        let auth = if caps & cap::SECURE_CONNECTION != 0 {
            let n = usize::from(*rest.first()?);
            let a = rest.get(1..1 + n)?;
            rest = &rest[1 + n..];
            a
        } else {
            let (a, r) = cstr(rest)?;
            rest = r;
            a
        };
        let mut database = None;
        let mut collation = None;
        let mut plugin = None;
        if !rest.is_empty() {
            let (db, r) = cstr(rest)?;
            rest = r;
            database = (!db.is_empty()).then(|| String::from_utf8_lossy(db).into_owned());
        }
        if rest.len() >= 2 {
            let id = u16::from_le_bytes([rest[0], rest[1]]);
            collation = u8::try_from(id).ok().filter(|c| *c != 0);
            rest = &rest[2..];
        }
        if caps & cap::PLUGIN_AUTH != 0 && !rest.is_empty() {
            let (pl, r) = cstr(rest)?;
            rest = r;
            plugin = (!pl.is_empty()).then(|| String::from_utf8_lossy(pl).into_owned());
        }
        if caps & cap::CONNECT_ATTRS != 0 && !rest.is_empty() {
            let (n, used) = lenenc_int(rest)?;
            let n = usize::try_from(n).ok()?;
            rest.get(used..used.checked_add(n)?)?;
        }
        Some(ChangeUser {
            user: String::from_utf8_lossy(user).into_owned(),
            auth: auth.to_vec(),
            database,
            collation,
            plugin,
        })
    }
}

fn cstr(b: &[u8]) -> Option<(&[u8], &[u8])> {
    let end = b.iter().position(|&c| c == 0)?;
    Some((&b[..end], &b[end + 1..]))
}

impl Session {
    pub(super) async fn change_user(&mut self, reply: u8) -> Result<(), Error> {
        let Some(req) = ChangeUser::parse(&self.cmd[1..], self.client.caps) else {
            // A server fails the authentication (and so the connection) on a bad packet.
            let (c, st) = code::ER_UNKNOWN_COM_ERROR;
            let _ = self
                .send_err(reply, c, st, "Malformed COM_CHANGE_USER packet")
                .await;
            return Err(crate::protocol::Error::Malformed("COM_CHANGE_USER").into());
        };
        // The answer in the packet is scrambled against a nonce this proxy may not have sent
        // last (an earlier change of user switched to a fresh one): ask again, with a fresh
        // nonce, in the plugin the client names.
        let nonce = nonce();
        let offer = Offer {
            user: &req.user,
            plugin: req.plugin.as_deref(),
            answer: &req.auth,
            ask_again: true,
            nonce: &nonce,
            host: &self.client.host,
            on_tls: self.client.tls,
        };
        let r = exchange::authenticate_in_time(&mut self.stream, &self.ctx, reply, offer).await;
        let verified = match r {
            Ok(v) => v,
            Err(e) => {
                if matches!(e, crate::frontend::Error::AccessDenied(_)) {
                    self.ctx.metrics.rejected(reject::AUTH);
                }
                return Err(Error::ChangeUser(Box::new(e)));
            }
        };
        self.client.user = req.user;
        self.client.password = verified.password;
        self.client.user_slot = std::sync::Arc::new(verified.slot);
        if let Some(c) = req.collation {
            self.client.collation = c;
        }
        self.client.database = req.database;
        self.registry_user_changed();
        self.reset_session().await;
        self.send_ok(verified.seq).await
    }
}

#[cfg(test)]
mod test {
    use super::*;

    const CAPS: u32 =
        cap::PROTOCOL_41 | cap::SECURE_CONNECTION | cap::PLUGIN_AUTH | cap::CONNECT_ATTRS;

    fn packet(auth: &[u8], tail: &[u8]) -> Vec<u8> {
        let mut p = b"bob\0".to_vec();
        p.push(auth.len() as u8);
        p.extend_from_slice(auth);
        p.extend_from_slice(b"shop\0");
        p.extend_from_slice(tail);
        p
    }

    #[test]
    fn parses_every_field_a_modern_client_sends() {
        let mut tail = vec![45, 0];
        tail.extend_from_slice(b"caching_sha2_password\0");
        tail.extend_from_slice(&[4, 1, b'a', 1, b'b']);
        let c = ChangeUser::parse(&packet(&[9; 32], &tail), CAPS).expect("parses");
        assert_eq!(
            c,
            ChangeUser {
                user: "bob".into(),
                auth: vec![9; 32],
                database: Some("shop".into()),
                collation: Some(45),
                plugin: Some("caching_sha2_password".into()),
            }
        );
    }

    #[test]
    fn old_clients_and_odd_values() {
        // No plugin, no attributes, no collation; empty database.
        let mut p = b"bob\0\0\0".to_vec();
        let c = ChangeUser::parse(&p, cap::PROTOCOL_41 | cap::SECURE_CONNECTION).unwrap();
        assert_eq!((c.database, c.collation, c.plugin), (None, None, None));
        // A collation id above 255 keeps the session's.
        p.extend_from_slice(&[0x00, 0x08]);
        let c = ChangeUser::parse(&p, cap::PROTOCOL_41 | cap::SECURE_CONNECTION).unwrap();
        assert_eq!(c.collation, None);
        // Pre-4.1 auth data is NUL-terminated.
        let c = ChangeUser::parse(b"bob\0xyz\0db\0", cap::PROTOCOL_41).unwrap();
        assert_eq!((c.auth, c.database), (b"xyz".to_vec(), Some("db".into())));
    }

    #[test]
    fn malformed_packets_are_refused() {
        assert_eq!(ChangeUser::parse(b"no-terminator", CAPS), None);
        assert_eq!(ChangeUser::parse(b"bob\0\x20abc", CAPS), None);
        let mut tail = vec![45, 0];
        tail.extend_from_slice(b"caching_sha2_password\0");
        tail.extend_from_slice(&[9, 1, b'a']);
        assert_eq!(ChangeUser::parse(&packet(&[1; 20], &tail), CAPS), None);
    }
}
