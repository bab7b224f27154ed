//! The client connection as the session sees it: plain TCP or TLS behind one buffered type.

use super::Error;
use crate::protocol::stall::WriteStall;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, BufStream, ReadBuf};
use tokio::net::TcpStream;

/// Client-side buffers: small, because thousands of idle clients each hold them.
const READ_BUF: usize = 4 * 1024;
const WRITE_BUF: usize = 8 * 1024;

/// Plain or TLS transport.
pub type Transport = crate::protocol::transport::Transport<tokio_rustls::server::TlsStream<Rewind>>;

/// The TCP stream under TLS, replaying first what the client sent after its SSLRequest before
/// the proxy switched (a client that does not wait for the switch, e.g. mysql_async, may have
/// its TLS ClientHello in the proxy's read buffer already).
pub struct Rewind {
    early: Vec<u8>,
    pos: usize,
    tcp: TcpStream,
}

impl AsyncRead for Rewind {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let me = self.get_mut();
        if me.pos < me.early.len() {
            let n = (me.early.len() - me.pos).min(buf.remaining());
            buf.put_slice(&me.early[me.pos..me.pos + n]);
            me.pos += n;
            if me.pos == me.early.len() {
                me.early = Vec::new();
                me.pos = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut me.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for Rewind {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }
}

/// Server-side TLS settings, built once from `proxy.tls`.
#[derive(Clone)]
pub struct Tls {
    pub acceptor: tokio_rustls::TlsAcceptor,
}

impl Tls {
    /// Loads the certificate chain and key named in the config.
    pub fn load(cert: &str, key: &str) -> Result<Tls, Error> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
            .map_err(|e| Error::Tls(format!("proxy.tls.cert {cert}: {e}")))?
            .collect::<Result<_, _>>()
            .map_err(|e| Error::Tls(format!("proxy.tls.cert {cert}: {e}")))?;
        if certs.is_empty() {
            return Err(Error::Tls(format!(
                "proxy.tls.cert {cert}: no PEM certificate in the file"
            )));
        }
        let key = PrivateKeyDer::from_pem_file(key)
            .map_err(|e| Error::Tls(format!("proxy.tls.key {key}: {e}")))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Tls(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| Error::Tls(format!("proxy.tls: {e}")))?;
        Ok(Tls {
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
        })
    }
}

/// The buffered client connection.
pub struct ClientStream {
    io: BufStream<Transport>,
    /// `proxy.client_write_timeout_ms`, set once the session starts.
    stall: WriteStall,
}

impl ClientStream {
    /// Waits until the client has sent something (true) or closed the connection (false),
    /// consuming nothing, so the wait can be cut short at any point.
    pub async fn readable(&mut self) -> std::io::Result<bool> {
        Ok(!self.io.fill_buf().await?.is_empty())
    }

    /// Writes that make no progress for longer than `limit` fail (`None`: no limit).
    pub fn set_write_timeout(&mut self, limit: Option<Duration>) {
        self.stall = WriteStall::new(limit);
    }

    pub fn plain(tcp: TcpStream) -> ClientStream {
        ClientStream {
            io: BufStream::with_capacity(READ_BUF, WRITE_BUF, Transport::Plain(tcp)),
            stall: WriteStall::default(),
        }
    }

    /// Switches to TLS after the client's SSL request.
    pub async fn upgrade(mut self, tls: &Tls) -> Result<ClientStream, Error> {
        // Bytes already buffered (never waits: a zero timeout polls once).
        let early = match tokio::time::timeout(Duration::ZERO, self.io.fill_buf()).await {
            Ok(Ok(b)) => b.to_vec(),
            Ok(Err(e)) => return Err(e.into()),
            Err(_) => Vec::new(),
        };
        let inner = self.io.into_inner();
        let Transport::Plain(tcp) = inner else {
            return Err(Error::Handshake("TLS requested twice".into()));
        };
        let s = tls
            .acceptor
            .accept(Rewind { early, pos: 0, tcp })
            .await
            .map_err(|e| Error::Tls(format!("TLS handshake with client failed: {e}")))?;
        Ok(ClientStream {
            io: BufStream::with_capacity(READ_BUF, WRITE_BUF, Transport::Tls(Box::new(s))),
            stall: self.stall,
        })
    }
}

impl AsyncRead for ClientStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for ClientStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let me = self.get_mut();
        let polled = Pin::new(&mut me.io).poll_write(cx, buf);
        me.stall.check(cx, polled)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let me = self.get_mut();
        let polled = Pin::new(&mut me.io).poll_flush(cx);
        me.stall.check(cx, polled)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
