//! Looks up a configured user's password (inline, from an environment variable, or from a
//! file) or its `mysql_native_password` hash. Either lets the proxy authenticate to the
//! backends as that user once the client has proved itself; neither is ever logged.

use router::config::{Secret, UserConfig};

/// Resolves a secret to its value with the shared resolver (`binlog_reader::secret`);
/// `None` when its source is missing or unreadable (logged without the value).
pub fn resolve(secret: &Secret) -> Option<String> {
    match binlog_reader::secret::resolve(secret) {
        Ok(p) => Some(p),
        Err(e) => {
            tracing::warn!(error = %e, "a configured user's password cannot be read");
            None
        }
    }
}

/// What the proxy checks a client's answer against.
pub enum Stored {
    /// The password in clear.
    Clear(String),
    /// SHA1(SHA1(password)), from `password_hash`.
    NativeHash([u8; 20]),
}

/// The configured user's password or hash; `None` when its source cannot be read (or a hash
/// is malformed, which validation refuses first).
pub fn stored(user: &UserConfig) -> Option<Stored> {
    match &user.password_hash {
        Some(h) => h.stage2().map(Stored::NativeHash),
        None => resolve(&user.secret).map(Stored::Clear),
    }
}

/// The configured user with this name.
pub fn find<'a>(users: &'a [UserConfig], name: &str) -> Option<&'a UserConfig> {
    users.iter().find(|u| u.name == name)
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn sources() {
        let inline = Secret {
            password: Some("p".into()),
            ..Secret::default()
        };
        assert_eq!(resolve(&inline).as_deref(), Some("p"));
        let missing = Secret {
            password_env: Some("RWSPLIT_TEST_SURELY_UNSET_VAR".into()),
            ..Secret::default()
        };
        assert_eq!(resolve(&missing), None);
        let dir = std::env::temp_dir().join(format!("rwsplit-secret-{}", std::process::id()));
        std::fs::write(&dir, "from-file\n").unwrap();
        let file = Secret {
            password_file: Some(dir.display().to_string()),
            ..Secret::default()
        };
        assert_eq!(resolve(&file).as_deref(), Some("from-file"));
        let _ = std::fs::remove_file(dir);
    }
}
