//! The server greeting (protocol v10) and the client's handshake response, parsed and built by
//! hand: both sides of the proxy need them and they are not on the hot path.

use crate::protocol::consts::cap;
use crate::protocol::message::{lenenc_int, put_lenenc_int, put_lenenc_str};
use crate::protocol::Error;

/// A parsed v10 greeting.
#[derive(Debug, Clone)]
pub struct Greeting {
    pub server_version: String,
    pub connection_id: u32,
    /// The 20-byte nonce (both parts, without the trailing NUL).
    pub nonce: Vec<u8>,
    pub capabilities: u32,
    pub collation: u8,
    pub status: u16,
    pub auth_plugin: String,
}

fn cstr(b: &[u8]) -> Option<(&[u8], &[u8])> {
    let end = b.iter().position(|&c| c == 0)?;
    Some((&b[..end], &b[end + 1..]))
}

impl Greeting {
    pub fn parse(p: &[u8]) -> Result<Greeting, Error> {
        let bad = Error::Malformed;
        if p.first() != Some(&10) {
            return Err(bad("greeting: protocol version is not 10"));
        }
        let (ver, rest) = cstr(&p[1..]).ok_or(bad("greeting: server version"))?;
        if rest.len() < 4 + 8 + 1 + 2 {
            return Err(bad("greeting: too short"));
        }
        let connection_id = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]);
        let mut nonce = rest[4..12].to_vec();
        let rest = &rest[13..];
        let cap_lo = u16::from_le_bytes([rest[0], rest[1]]);
        let rest = &rest[2..];
        let (collation, status, cap_hi, auth_len, rest) = if rest.len() >= 16 {
            (
                rest[0],
                u16::from_le_bytes([rest[1], rest[2]]),
                u16::from_le_bytes([rest[3], rest[4]]),
                rest[5],
                &rest[16..],
            )
        } else {
            (0, 0, 0, 0, &rest[rest.len()..])
        };
        let capabilities = u32::from(cap_lo) | u32::from(cap_hi) << 16;
        let mut rest = rest;
        if capabilities & cap::SECURE_CONNECTION != 0 {
            let n = (usize::from(auth_len).saturating_sub(8))
                .max(13)
                .min(rest.len());
            let part2 = &rest[..n];
            let part2 = part2.strip_suffix(&[0]).unwrap_or(part2);
            nonce.extend_from_slice(part2);
            rest = &rest[n..];
        }
        let auth_plugin = if capabilities & cap::PLUGIN_AUTH != 0 {
            let end = rest.iter().position(|&c| c == 0).unwrap_or(rest.len());
            String::from_utf8_lossy(&rest[..end]).into_owned()
        } else {
            "mysql_native_password".into()
        };
        Ok(Greeting {
            server_version: String::from_utf8_lossy(ver).into_owned(),
            connection_id,
            nonce,
            capabilities,
            collation,
            status,
            auth_plugin,
        })
    }

    /// Builds a greeting as a MySQL 8 / MariaDB server presents it.
    pub fn build(&self) -> Vec<u8> {
        let mut p = Vec::with_capacity(128);
        p.push(10);
        p.extend_from_slice(self.server_version.as_bytes());
        p.push(0);
        p.extend_from_slice(&self.connection_id.to_le_bytes());
        p.extend_from_slice(&self.nonce[..8]);
        p.push(0);
        p.extend_from_slice(&(self.capabilities as u16).to_le_bytes());
        p.push(self.collation);
        p.extend_from_slice(&self.status.to_le_bytes());
        p.extend_from_slice(&((self.capabilities >> 16) as u16).to_le_bytes());
        p.push((self.nonce.len() + 1) as u8);
        p.extend_from_slice(&[0; 10]);
        p.extend_from_slice(&self.nonce[8..]);
        p.push(0);
        p.extend_from_slice(self.auth_plugin.as_bytes());
        p.push(0);
        p
    }
}

/// A client's HandshakeResponse41 (or the 32-byte SSL request that precedes it under TLS).
#[derive(Debug, Clone, Default)]
pub struct Response {
    pub capabilities: u32,
    pub max_packet: u32,
    pub collation: u8,
    pub user: String,
    pub auth: Vec<u8>,
    pub database: Option<String>,
    pub auth_plugin: Option<String>,
    /// Connect attributes, kept raw (length-encoded block) to pass on to backends.
    pub attrs: Vec<u8>,
}

impl Response {
    /// True when `p` is only an SSL request (the client wants TLS before the real response).
    pub fn is_ssl_request(p: &[u8]) -> bool {
        p.len() == 32 && u32::from_le_bytes([p[0], p[1], p[2], p[3]]) & cap::SSL != 0
    }

    pub fn parse(p: &[u8]) -> Result<Response, Error> {
        let bad = Error::Malformed;
        if p.len() < 32 {
            return Err(bad(
                "handshake response: too short (protocol 4.0 clients are not supported)",
            ));
        }
        let capabilities = u32::from_le_bytes([p[0], p[1], p[2], p[3]]);
        if capabilities & cap::PROTOCOL_41 == 0 {
            return Err(bad("handshake response: client lacks CLIENT_PROTOCOL_41"));
        }
        let max_packet = u32::from_le_bytes([p[4], p[5], p[6], p[7]]);
        let collation = p[8];
        let rest = &p[32..];
        let (user, rest) = cstr(rest).ok_or(bad("handshake response: user"))?;
        let (auth, rest): (Vec<u8>, &[u8]) = if capabilities & cap::PLUGIN_AUTH_LENENC_DATA != 0 {
            let (n, used) = lenenc_int(rest).ok_or(bad("handshake response: auth length"))?;
            let n = usize::try_from(n).map_err(|_| bad("handshake response: auth length"))?;
            let a = rest
                .get(used..used + n)
                .ok_or(bad("handshake response: auth data"))?;
            (a.to_vec(), &rest[used + n..])
        } else if capabilities & cap::SECURE_CONNECTION != 0 {
            let n = usize::from(*rest.first().ok_or(bad("handshake response: auth length"))?);
            let a = rest
                .get(1..1 + n)
                .ok_or(bad("handshake response: auth data"))?;
            (a.to_vec(), &rest[1 + n..])
        } else {
            let (a, r) = cstr(rest).ok_or(bad("handshake response: auth data"))?;
            (a.to_vec(), r)
        };
        let mut rest = rest;
        let mut database = None;
        if capabilities & cap::CONNECT_WITH_DB != 0 && !rest.is_empty() {
            let (db, r) = cstr(rest).unwrap_or((rest, &[]));
            if !db.is_empty() {
                database = Some(String::from_utf8_lossy(db).into_owned());
            }
            rest = r;
        }
        let mut auth_plugin = None;
        if capabilities & cap::PLUGIN_AUTH != 0 && !rest.is_empty() {
            let (pl, r) = cstr(rest).unwrap_or((rest, &[]));
            auth_plugin = Some(String::from_utf8_lossy(pl).into_owned());
            rest = r;
        }
        let attrs = if capabilities & cap::CONNECT_ATTRS != 0 {
            rest.to_vec()
        } else {
            Vec::new()
        };
        Ok(Response {
            capabilities,
            max_packet,
            collation,
            user: String::from_utf8_lossy(user).into_owned(),
            auth,
            database,
            auth_plugin,
            attrs,
        })
    }

    /// Serialises a response (the proxy acting as a client to a backend).
    pub fn build(&self) -> Vec<u8> {
        let mut p = Vec::with_capacity(128);
        p.extend_from_slice(&self.capabilities.to_le_bytes());
        p.extend_from_slice(&self.max_packet.to_le_bytes());
        p.push(self.collation);
        p.extend_from_slice(&[0; 23]);
        p.extend_from_slice(self.user.as_bytes());
        p.push(0);
        if self.capabilities & cap::PLUGIN_AUTH_LENENC_DATA != 0 {
            put_lenenc_str(&mut p, &self.auth);
        } else {
            p.push(self.auth.len() as u8);
            p.extend_from_slice(&self.auth);
        }
        if self.capabilities & cap::CONNECT_WITH_DB != 0 {
            p.extend_from_slice(self.database.as_deref().unwrap_or("").as_bytes());
            p.push(0);
        }
        if self.capabilities & cap::PLUGIN_AUTH != 0 {
            p.extend_from_slice(self.auth_plugin.as_deref().unwrap_or("").as_bytes());
            p.push(0);
        }
        if self.capabilities & cap::CONNECT_ATTRS != 0 {
            if self.attrs.is_empty() {
                put_lenenc_int(&mut p, 0);
            } else {
                p.extend_from_slice(&self.attrs);
            }
        }
        p
    }
}

/// The scramble a client sends for `plugin` (empty for an empty password, as servers expect).
pub fn scramble(plugin: &str, nonce: &[u8], password: &str) -> Option<Vec<u8>> {
    let nonce = &nonce[..nonce.len().min(20)];
    match plugin {
        "mysql_native_password" => Some(
            mysql_common::scramble::scramble_native(nonce, password.as_bytes())
                .map(|s| s.to_vec())
                .unwrap_or_default(),
        ),
        "caching_sha2_password" => Some(
            mysql_common::scramble::scramble_sha256(nonce, password.as_bytes())
                .map(|s| s.to_vec())
                .unwrap_or_default(),
        ),
        "mysql_clear_password" => {
            let mut v = password.as_bytes().to_vec();
            v.push(0);
            Some(v)
        }
        _ => None,
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn greeting_round_trips() {
        let g = Greeting {
            server_version: "8.0.35-rwsplit".into(),
            connection_id: 7,
            nonce: (1..=20).collect(),
            capabilities: cap::PROXY_OFFERS,
            collation: 45,
            status: 2,
            auth_plugin: "mysql_native_password".into(),
        };
        let p = Greeting::parse(&g.build()).unwrap();
        assert_eq!(p.server_version, g.server_version);
        assert_eq!(p.nonce, g.nonce);
        assert_eq!(p.capabilities, g.capabilities);
        assert_eq!(p.auth_plugin, g.auth_plugin);
        assert_eq!(p.connection_id, 7);
    }

    #[test]
    fn response_round_trips() {
        let r = Response {
            capabilities: cap::PROXY_OFFERS,
            max_packet: 1 << 24,
            collation: 45,
            user: "app".into(),
            auth: vec![9; 20],
            database: Some("db".into()),
            auth_plugin: Some("mysql_native_password".into()),
            attrs: Vec::new(),
        };
        let p = Response::parse(&r.build()).unwrap();
        assert_eq!(p.user, "app");
        assert_eq!(p.auth, r.auth);
        assert_eq!(p.database.as_deref(), Some("db"));
        assert_eq!(p.auth_plugin.as_deref(), Some("mysql_native_password"));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for p in [
            &b""[..],
            &[0xff; 40][..],
            &[10, 0][..],
            &[10, b'x', 0, 1][..],
        ] {
            let _ = Greeting::parse(p);
            let _ = Response::parse(p);
        }
    }
}
