//! TLS towards a backend (`servers[].tls`): the transport under a backend connection (plain TCP
//! or rustls client), and the client configurations, built once per setting and kept in the
//! context.
//!
//! The plain path stays what it was: one enum match per read or write, no extra buffering.

use super::Error;
use crate::context::Context;
use router::config::{BackendTlsConfig, BackendTlsMode};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::net::TcpStream;

/// The byte stream under a backend connection.
pub type Transport =
    crate::protocol::transport::Transport<tokio_rustls::client::TlsStream<TcpStream>>;

/// How to reach one backend with TLS, resolved from its `servers[].tls`.
#[derive(Clone)]
pub struct TlsTarget {
    pub mode: BackendTlsMode,
    pub config: Arc<rustls::ClientConfig>,
    pub server_name: ServerName<'static>,
}

impl TlsTarget {
    /// Switches a connected stream to TLS (after the SSLRequest was sent).
    pub async fn connect(&self, tcp: TcpStream, server: &str) -> Result<Transport, Error> {
        let s = tokio_rustls::TlsConnector::from(self.config.clone())
            .connect(self.server_name.clone(), tcp)
            .await
            .map_err(|e| Error::Tls(format!("server '{server}': TLS handshake failed: {e}")))?;
        Ok(Transport::Tls(Box::new(s)))
    }
}

/// Client configurations by setting (a reload that changes `servers[].tls` gets a new one).
#[derive(Default)]
struct Cache(Mutex<HashMap<BackendTlsConfig, Arc<rustls::ClientConfig>>>);

/// The client configurations for every server of `config` that uses TLS, CA files read now:
/// a reload checks them before it swaps anything in (and startup, so a bad `ca` stops it).
pub struct Prepared(HashMap<BackendTlsConfig, Arc<rustls::ClientConfig>>);

pub fn prepare(config: &router::config::Config) -> Result<Prepared, Error> {
    let mut map = HashMap::new();
    for s in &config.servers {
        if s.tls.mode != BackendTlsMode::Disabled && !map.contains_key(&s.tls) {
            map.insert(s.tls.clone(), Arc::new(client_config(&s.name, &s.tls)?));
        }
    }
    Ok(Prepared(map))
}

/// New backend connections use these configurations (CA files re-read by the reload);
/// connections already open keep theirs.
pub fn install(ctx: &Context, prepared: Prepared) {
    let cache = ctx.extension(Cache::default);
    let mut cache = match cache.0.lock() {
        Ok(c) => c,
        Err(p) => p.into_inner(),
    };
    *cache = prepared.0;
}

/// The TLS target for a server, `None` when its `tls.mode` is `disabled`. The CA file is read
/// when a setting is first used, unless [`install`] already did.
pub fn target_for(
    ctx: &Context,
    name: &str,
    host: &str,
    tls: &BackendTlsConfig,
) -> Result<Option<TlsTarget>, Error> {
    if tls.mode == BackendTlsMode::Disabled {
        return Ok(None);
    }
    let server_name = ServerName::try_from(host.to_string()).map_err(|_| {
        Error::Tls(format!(
            "server '{name}': host {host:?} is not a valid TLS server name"
        ))
    })?;
    let cache = ctx.extension(Cache::default);
    let mut cache = match cache.0.lock() {
        Ok(c) => c,
        Err(p) => p.into_inner(),
    };
    let config = match cache.get(tls) {
        Some(c) => c.clone(),
        None => {
            let c = Arc::new(client_config(name, tls)?);
            cache.insert(tls.clone(), c.clone());
            c
        }
    };
    Ok(Some(TlsTarget {
        mode: tls.mode,
        config,
        server_name,
    }))
}

fn client_config(name: &str, tls: &BackendTlsConfig) -> Result<rustls::ClientConfig, Error> {
    use rustls::pki_types::pem::PemObject;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?;
    let config = if tls.verify {
        let Some(ca) = &tls.ca else {
            return Err(Error::Tls(format!(
                "server '{name}': servers[].tls.ca is needed to verify the certificate"
            )));
        };
        let bad = |e: &dyn std::fmt::Display| {
            Error::Tls(format!("server '{name}': servers[].tls.ca {ca}: {e}"))
        };
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(ca).map_err(|e| bad(&e))? {
            roots.add(cert.map_err(|e| bad(&e))?).map_err(|e| bad(&e))?;
        }
        if roots.is_empty() {
            return Err(bad(&"no PEM certificate in the file"));
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
            .with_no_client_auth()
    };
    Ok(config)
}

/// `verify: false`: any certificate is accepted (the handshake signatures are still checked,
/// so the session is encrypted, but the server is not authenticated).
#[derive(Debug)]
struct NoVerification(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
