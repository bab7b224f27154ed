//! What a configured proxy user may carry besides its name: a `mysql_native_password` hash in
//! place of a clear password, and per-user connection limits. Checked here, with the rest of
//! the document, so a bad value names its file, line and key.

use super::UserConfig;
use serde::Deserialize;
use std::fmt;

/// A `mysql_native_password` hash as `mysql.user.authentication_string` shows it: `*` and 40
/// hex digits, the hex of SHA1(SHA1(password)). It is enough to verify a client and, once a
/// client has proved it knows the password, to log in to the backends as that user (the
/// client's answer reveals SHA1(password), which is all the native scramble needs). Not
/// enough for `caching_sha2_password`, which needs the password itself. Never logged: with one
/// sniffed exchange it yields SHA1(password).
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct PasswordHash(String);

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordHash(<redacted>)")
    }
}

impl PasswordHash {
    /// From the text form (`*` + 40 hex digits); see [`PasswordHash::stage2`].
    pub fn new(text: &str) -> PasswordHash {
        PasswordHash(text.to_string())
    }

    /// SHA1(SHA1(password)), or `None` when the text is not `*` + 40 hex digits (either case).
    pub fn stage2(&self) -> Option<[u8; 20]> {
        let hex = self.0.strip_prefix('*')?.as_bytes();
        if hex.len() != 40 {
            return None;
        }
        let mut out = [0u8; 20];
        for (i, pair) in hex.chunks(2).enumerate() {
            let hi = (pair[0] as char).to_digit(16)?;
            let lo = (pair[1] as char).to_digit(16)?;
            out[i] = (hi * 16 + lo) as u8;
        }
        Some(out)
    }
}

/// Checks user `i`: one password source at most, a well-formed hash, limits that can be met.
/// Returns the offending key (relative to `proxy.users[i]`) and the message.
pub(super) fn check_user(u: &UserConfig) -> Result<(), (&'static str, String)> {
    if let Some(h) = &u.password_hash {
        if u.secret.password.is_some()
            || u.secret.password_env.is_some()
            || u.secret.password_file.is_some()
        {
            return Err((
                "password_hash",
                "give only one of `password`, `password_env`, `password_file`, `password_hash`"
                    .into(),
            ));
        }
        if h.stage2().is_none() {
            return Err((
                "password_hash",
                "must be a mysql_native_password hash: `*` and 40 hex digits, as \
                 mysql.user.authentication_string shows it (SELECT authentication_string \
                 FROM mysql.user WHERE user = ...)"
                    .into(),
            ));
        }
    }
    if u.max_connections == Some(0) {
        return Err((
            "max_connections",
            "must be at least 1 (leave it out for no limit)".into(),
        ));
    }
    if u.max_backend_connections == Some(0) {
        return Err((
            "max_backend_connections",
            "must be at least 1 (leave it out for no limit)".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn stage2_parses_both_cases_and_refuses_the_rest() {
        // SELECT PASSWORD('app-password') on MariaDB.
        let upper = PasswordHash::new("*E4B9B9A5D3B5A2C3B3C8C6C0D0A1F9E1A7B1C2D3");
        let lower = PasswordHash::new("*e4b9b9a5d3b5a2c3b3c8c6c0d0a1f9e1a7b1c2d3");
        assert_eq!(upper.stage2(), lower.stage2());
        assert_eq!(upper.stage2().map(|h| h[0]), Some(0xe4));
        for bad in [
            "",
            "*",
            "E4B9B9A5D3B5A2C3B3C8C6C0D0A1F9E1A7B1C2D3",
            "*E4B9B9A5D3B5A2C3B3C8C6C0D0A1F9E1A7B1C2D",
            "*E4B9B9A5D3B5A2C3B3C8C6C0D0A1F9E1A7B1C2DZ",
            "*E4B9B9A5D3B5A2C3B3C8C6C0D0A1F9E1A7B1C2D3F",
            "*é4B9B9A5D3B5A2C3B3C8C6C0D0A1F9E1A7B1C2D",
        ] {
            assert_eq!(PasswordHash::new(bad).stage2(), None, "{bad:?}");
        }
    }

    fn load(users: &str) -> Result<crate::config::Config, String> {
        let text = format!(
            "servers:\n  - {{name: p, host: h, port: 1, role: primary}}\nmonitor: {{user: m}}\n\
             proxy:\n  users:\n    - name: other\n      password: x\n{users}"
        );
        crate::config::Config::from_yaml("c.yaml", &text).map_err(|e| e.to_string())
    }

    #[test]
    fn a_hashed_user_loads_and_a_bad_hash_names_file_line_and_key() {
        let c = load(
            "    - name: app\n      password_hash: \"*E4B9B9A5D3B5A2C3B3C8C6C0D0A1F9E1A7B1C2D3\"\n      max_connections: 3\n",
        )
        .expect("valid");
        let u = &c.proxy.expect("proxy").users[1];
        assert!(u.password_hash.as_ref().and_then(|h| h.stage2()).is_some());
        assert_eq!(u.max_connections, Some(3));
        let err = load("    - name: app\n      admin: false\n      password_hash: \"*E4\"\n")
            .unwrap_err();
        assert!(
            err.starts_with("c.yaml:10: `proxy.users[1].password_hash`"),
            "{err}"
        );
        assert!(!err.contains("*E4"), "the value is not printed: {err}");
        let err = load(
            "    - name: app\n      password: pw\n      password_hash: \"*E4B9B9A5D3B5A2C3B3C8C6C0D0A1F9E1A7B1C2D3\"\n",
        )
        .unwrap_err();
        assert!(err.contains("give only one of"), "{err}");
        let err = load("    - name: app\n      password: pw\n      max_backend_connections: 0\n")
            .unwrap_err();
        assert!(
            err.starts_with("c.yaml:10: `proxy.users[1].max_backend_connections`"),
            "{err}"
        );
    }

    #[test]
    fn debug_hides_the_hash() {
        let h = PasswordHash::new("*E4B9B9A5D3B5A2C3B3C8C6C0D0A1F9E1A7B1C2D3");
        assert!(!format!("{h:?}").contains("E4B9"));
    }
}
