//! Resolves a configured [`Secret`] (inline, environment variable, or file) to the password.
//! Public so the proxy resolves its users' and the monitor's passwords the same way.

use router::config::Secret;

/// Why a password could not be obtained. Never contains the password itself.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("environment variable {0} is not set (password_env)")]
    EnvMissing(String),
    #[error("cannot read password_file {path}: {source}")]
    File {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// The password a [`Secret`] names: `password` as given, `password_env`'s value, or the first
/// line of `password_file` (a trailing newline is not part of the password). An empty secret
/// means an empty password.
pub fn resolve(secret: &Secret) -> Result<String, SecretError> {
    if let Some(p) = &secret.password {
        return Ok(p.clone());
    }
    if let Some(var) = &secret.password_env {
        return std::env::var(var).map_err(|_| SecretError::EnvMissing(var.clone()));
    }
    if let Some(path) = &secret.password_file {
        let text = std::fs::read_to_string(path).map_err(|source| SecretError::File {
            path: path.clone(),
            source,
        })?;
        return Ok(text.lines().next().unwrap_or("").to_string());
    }
    Ok(String::new())
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn each_source_resolves() {
        let inline = Secret {
            password: Some("p1".into()),
            ..Secret::default()
        };
        assert_eq!(resolve(&inline).unwrap(), "p1");

        std::env::set_var("RWSPLIT_TEST_SECRET_X", "p2");
        let env = Secret {
            password_env: Some("RWSPLIT_TEST_SECRET_X".into()),
            ..Secret::default()
        };
        assert_eq!(resolve(&env).unwrap(), "p2");

        let path = std::env::temp_dir().join(format!("rwsplit-secret-{}", std::process::id()));
        std::fs::write(&path, "p3\n").unwrap();
        let file = Secret {
            password_file: Some(path.display().to_string()),
            ..Secret::default()
        };
        assert_eq!(resolve(&file).unwrap(), "p3");
        let _ = std::fs::remove_file(&path);

        let missing = Secret {
            password_env: Some("RWSPLIT_TEST_SECRET_UNSET".into()),
            ..Secret::default()
        };
        let e = resolve(&missing).unwrap_err().to_string();
        assert!(e.contains("RWSPLIT_TEST_SECRET_UNSET"), "{e}");
    }
}
