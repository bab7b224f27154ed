//! Reads and checks the YAML configuration file (the parsing itself lives in `router::config`).

use router::config::{Config, ConfigError};

/// Why a configuration file could not be used. Each message is one line naming the file.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("{path}: `monitor`: {source}")]
    Secret {
        path: String,
        #[source]
        source: crate::secret::SecretError,
    },
}

/// Loads and validates `path`, including that the monitor password can be resolved.
pub fn load(path: &str) -> Result<Config, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
        path: path.to_string(),
        source,
    })?;
    let config = Config::from_yaml(path, &text)?;
    crate::secret::resolve(&config.monitor.secret).map_err(|source| LoadError::Secret {
        path: path.to_string(),
        source,
    })?;
    Ok(config)
}
