//! The proxy's RSA key pair for `caching_sha2_password` full authentication on plain
//! connections: the client asks for the public key (or has it already), sends its password
//! XORed with the handshake nonce and encrypted with RSA-OAEP (SHA-1, MGF1-SHA-1, as MySQL 8.0.5+
//! servers and every client that speaks to them), and the proxy decrypts it here.
//!
//! The key comes from `proxy.rsa_private_key` (PEM, PKCS#8 or PKCS#1), read once at start;
//! without it the proxy generates a 2048-bit pair at start (logged). Loading happens off the
//! async threads and at most once; a handshake that needs the key waits for it.

use crate::context::Context;
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs8::{DecodePrivateKey, EncodePublicKey, LineEnding};
use rsa::PrivateKey;
use sha1::Sha1;
use std::sync::Arc;
use tokio::sync::OnceCell;

/// Size of a generated key, as MySQL's own `auto_generate_certs` makes.
const GENERATED_BITS: usize = 2048;

/// Why the key is not available.
#[derive(Debug, Clone, thiserror::Error)]
pub enum KeyError {
    #[error("proxy.rsa_private_key {path}: cannot read: {message}")]
    Read { path: String, message: String },
    #[error("proxy.rsa_private_key {path}: not an RSA private key in PEM (PKCS#8 or PKCS#1)")]
    Parse { path: String },
    #[error("cannot generate an RSA key pair: {0}")]
    Generate(String),
}

/// A private key and its public half as clients receive it.
pub struct RsaKey {
    private: PrivateKey,
    /// `-----BEGIN PUBLIC KEY-----` (SubjectPublicKeyInfo), what MySQL servers send.
    public_pem: Vec<u8>,
}

impl RsaKey {
    /// Reads a PEM private key file.
    pub fn load(path: &str) -> Result<RsaKey, KeyError> {
        let text = std::fs::read_to_string(path).map_err(|e| KeyError::Read {
            path: path.to_string(),
            message: e.to_string(),
        })?;
        let private = PrivateKey::from_pkcs8_pem(&text)
            .or_else(|_| PrivateKey::from_pkcs1_pem(&text))
            .map_err(|_| KeyError::Parse {
                path: path.to_string(),
            })?;
        Self::from_private(private).map_err(|_| KeyError::Parse {
            path: path.to_string(),
        })
    }

    /// Generates a fresh key pair (CPU-bound: call it off the async threads).
    pub fn generate() -> Result<RsaKey, KeyError> {
        let private = PrivateKey::new(&mut SystemRng, GENERATED_BITS)
            .map_err(|e| KeyError::Generate(e.to_string()))?;
        Self::from_private(private)
    }

    fn from_private(private: PrivateKey) -> Result<RsaKey, KeyError> {
        let public_pem = private
            .to_public_key()
            .to_public_key_pem(LineEnding::LF)
            .map_err(|e| KeyError::Generate(e.to_string()))?
            .into_bytes();
        Ok(RsaKey {
            private,
            public_pem,
        })
    }

    /// The public key in PEM, sent after `0x01` when a client asks with `0x02`.
    pub fn public_pem(&self) -> &[u8] {
        &self.public_pem
    }

    /// The password a client sent in full authentication: `ciphertext` decrypted, XORed
    /// with the handshake `nonce`, without its NUL terminator. `None` when it does not decrypt
    /// (a wrong key, not a ciphertext at all).
    pub fn decrypt_password(&self, ciphertext: &[u8], nonce: &[u8]) -> Option<Vec<u8>> {
        let mut clear = self.private.oaep_decrypt::<Sha1>(ciphertext).ok()?;
        if !nonce.is_empty() {
            for (i, b) in clear.iter_mut().enumerate() {
                *b ^= nonce[i % nonce.len()];
            }
        }
        if clear.last() == Some(&0) {
            clear.pop();
        }
        Some(clear)
    }
}

/// The operating system's CSPRNG, through rustls' ring provider (as the handshake nonces).
struct SystemRng;

/// The CSPRNG failed (not expected on Linux).
#[derive(Debug, thiserror::Error)]
#[error("the system random number generator failed")]
struct RngFailed;

impl rsa::rand_core::TryRng for SystemRng {
    type Error = RngFailed;
    fn try_next_u32(&mut self) -> Result<u32, RngFailed> {
        let mut b = [0u8; 4];
        self.try_fill_bytes(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }
    fn try_next_u64(&mut self) -> Result<u64, RngFailed> {
        let mut b = [0u8; 8];
        self.try_fill_bytes(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), RngFailed> {
        rustls::crypto::ring::default_provider()
            .secure_random
            .fill(dst)
            .map_err(|_| RngFailed)
    }
}

impl rsa::rand_core::TryCryptoRng for SystemRng {}

/// The context's key, loaded or generated once.
#[derive(Default)]
struct Slot(OnceCell<Result<Arc<RsaKey>, KeyError>>);

/// The proxy's RSA key: loaded from `proxy.rsa_private_key` or generated, on first use (the
/// server starts this at startup, see [`warm`]).
pub async fn key(ctx: &Context) -> Result<Arc<RsaKey>, KeyError> {
    let slot = ctx.extension(Slot::default);
    let path = ctx.proxy_config().rsa_private_key.clone();
    slot.0
        .get_or_init(|| async move {
            let r = tokio::task::spawn_blocking(move || match &path {
                Some(p) => RsaKey::load(p).inspect(|_| {
                    tracing::info!(path = %p, "RSA key for caching_sha2_password loaded");
                }),
                None => RsaKey::generate().inspect(|_| {
                    tracing::info!(
                        bits = GENERATED_BITS,
                        "generated an RSA key pair for caching_sha2_password full authentication \
                         without TLS (proxy.rsa_private_key is not set; clients that pinned the \
                         previous public key need the new one after a restart)"
                    );
                }),
            })
            .await
            .map_err(|e| KeyError::Generate(e.to_string()))
            .and_then(|r| r);
            if let Err(e) = &r {
                tracing::error!(
                    "{e}: caching_sha2_password full authentication without TLS will be refused"
                );
            }
            r.map(Arc::new)
        })
        .await
        .clone()
}

/// Loads or generates the key in the background at startup, so the first client that needs
/// it does not wait and a bad `proxy.rsa_private_key` is logged at once.
pub fn warm(ctx: &Arc<Context>) {
    let ctx = ctx.clone();
    tokio::spawn(async move {
        let _ = key(&ctx).await;
    });
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn decrypts_what_mysql_clients_encrypt() {
        let key = RsaKey::generate().expect("key");
        let nonce = b"0123456789abcdefghij";
        // What mysql_common (mysql_async's client side) sends: password + NUL, XORed with the
        // nonce, RSA-OAEP encrypted with the public key the server sent.
        let mut clear = b"app-password".to_vec();
        clear.push(0);
        for (i, b) in clear.iter_mut().enumerate() {
            *b ^= nonce[i % nonce.len()];
        }
        let cipher = mysql_common::crypto::encrypt(&clear, key.public_pem());
        assert_eq!(
            key.decrypt_password(&cipher, nonce).as_deref(),
            Some(&b"app-password"[..])
        );
        // A password sent in clear (a client that does not encrypt) is no ciphertext.
        assert_eq!(key.decrypt_password(b"app-password\0", nonce), None);
        assert!(key
            .public_pem()
            .starts_with(b"-----BEGIN PUBLIC KEY-----\n"));
    }

    #[test]
    fn loads_pkcs8_and_reports_a_bad_file() {
        let dir = std::env::temp_dir().join(format!("rwsplit-rsa-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let key = RsaKey::generate().unwrap();
        let pem = {
            use rsa::pkcs8::EncodePrivateKey;
            key.private.to_pkcs8_pem(LineEnding::LF).unwrap()
        };
        let good = dir.join("key.pem");
        std::fs::write(&good, pem.as_bytes()).unwrap();
        let loaded = RsaKey::load(&good.display().to_string()).unwrap();
        assert_eq!(loaded.public_pem(), key.public_pem());
        let bad = dir.join("bad.pem");
        std::fs::write(&bad, "not a key").unwrap();
        let err = RsaKey::load(&bad.display().to_string())
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("proxy.rsa_private_key") && err.contains("bad.pem"),
            "{err}"
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}
