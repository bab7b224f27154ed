//! One authenticated connection to a backend server, opened as the client's user with the
//! client's response-shaping capabilities, so its responses can be forwarded unchanged.

use super::credential::Credential;
use super::fingerprint::Fingerprint;
use super::handshake::{Greeting, Response};
use super::stmt_cache::StmtCache;
use super::tls::{TlsTarget, Transport};
use super::Error;
use crate::protocol::consts::{cap, com};
use crate::protocol::message::parse_err;
use crate::protocol::packet::{read_packet, write_packet};
use crate::protocol::relay::{self, End, Shape};
use router::config::BackendTlsMode;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncWriteExt, BufStream};
use tokio::net::TcpStream;

/// Largest packet accepted from a backend during the handshake.
const HANDSHAKE_MAX: usize = 1 << 20;

/// What a pooled connection is for: connections are shared only between clients with the same
/// user, response-shaping capabilities and handshake collation.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    pub server: String,
    /// `host:port`: a reload that moves a server under the same name gets fresh connections.
    pub addr: String,
    pub user: String,
    pub caps: u32,
    pub collation: u8,
    /// `servers[].tls.mode`: a reload that turns TLS on or off gets fresh connections.
    pub tls: router::config::BackendTlsMode,
}

/// Where and how to connect.
pub struct Target<'a> {
    pub addr: &'a str,
    pub password: &'a Credential,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    /// TLS settings, `None` for plain TCP (`servers[].tls.mode: disabled`).
    pub tls: Option<TlsTarget>,
}

/// An open backend connection.
pub struct Conn {
    pub stream: BufStream<Transport>,
    /// The connection runs over TLS.
    pub tls: bool,
    pub key: Key,
    pub connection_id: u32,
    /// Capabilities in effect on this connection (what the client and the server share).
    pub caps: u32,
    /// The default schema the connection is known to have (`None` = none or unknown).
    pub schema: Option<String>,
    /// The session state this connection carries (see `fingerprint.rs`).
    pub state: Arc<Fingerprint>,
    /// Statements prepared here, by text (see `stmt_cache.rs`).
    pub prepared: StmtCache,
    /// `LAST_INSERT_ID()` here, when known: restored only before a statement that reads it.
    pub last_insert_id: Option<u64>,
    /// The last statement here left warnings, an error or a `FOUND_ROWS()` count: another
    /// session must not see them (`SHOW WARNINGS`), so the connection is reset before reuse.
    pub diagnostics: bool,
    /// When this connection last finished a command (for the pools' idle timeout).
    pub last_used: Instant,
    /// Set when the connection is out of step (I/O error, timeout): it must be closed.
    pub broken: bool,
    /// The connection may have a default database: COM_RESET_CONNECTION keeps it, so such a
    /// connection is never given to a session that has none.
    pub has_schema: bool,
    /// The server was asked to report each commit's GTID in OK packets on this connection
    /// (`COM_RESET_CONNECTION` forgets it: see `session/consistency.rs`).
    pub gtid_tracking: bool,
    /// Scratch buffer for responses the proxy consumes itself.
    scratch: Vec<u8>,
    /// Longest wait for the next packet of a response (`proxy.pool.read_timeout_ms`).
    pub read_timeout: Duration,
    /// The connection's place under `proxy.pool.max_per_server` (set by the pools). Last, so
    /// the socket is closed before the place goes to a waiting session.
    pub(crate) slot: Option<crate::context::Slot>,
    /// The connection's place under its user's `proxy.users[].max_backend_connections` on this
    /// server while a session uses it (set by the pools, dropped when it is given back).
    pub(crate) user_permit: Option<tokio::sync::OwnedSemaphorePermit>,
    /// The server's failed-check count ([`crate::context::Backend::outages`]) when this
    /// connection was opened or last found alive.
    pub outages_seen: u64,
}

impl Conn {
    /// Connects and authenticates as `key.user`, asking for `key.caps`.
    pub async fn connect(
        key: Key,
        target: Target<'_>,
        database: Option<&str>,
    ) -> Result<Conn, Error> {
        let fut = Self::connect_inner(
            key,
            target.addr,
            target.password,
            target.tls.as_ref(),
            database,
        );
        let mut c = tokio::time::timeout(target.connect_timeout, fut)
            .await
            .map_err(|_| Error::ConnectTimeout(target.connect_timeout))??;
        c.read_timeout = target.read_timeout;
        Ok(c)
    }

    async fn connect_inner(
        key: Key,
        addr: &str,
        password: &Credential,
        tls: Option<&TlsTarget>,
        database: Option<&str>,
    ) -> Result<Conn, Error> {
        let tcp = TcpStream::connect(addr).await.map_err(Error::Connect)?;
        tcp.set_nodelay(true).map_err(Error::Connect)?;
        let mut stream = buffered(Transport::Plain(tcp));
        let mut buf = Vec::with_capacity(256);
        let seq = read_packet(&mut stream, &mut buf, HANDSHAKE_MAX).await?;
        if buf.first() == Some(&0xff) {
            return Err(server_err(&buf));
        }
        let g = Greeting::parse(&buf)?;
        let always = cap::LONG_PASSWORD
            | cap::PROTOCOL_41
            | cap::SECURE_CONNECTION
            | cap::PLUGIN_AUTH
            | cap::PLUGIN_AUTH_LENENC_DATA
            | cap::TRANSACTIONS
            | cap::LONG_FLAG
            // OK packets carry the GTID each commit gets (read-your-writes); the relay strips
            // the session-state block for clients that did not ask for it.
            | cap::SESSION_TRACK;
        let mut caps = (key.caps & cap::RESPONSE_SHAPING) | always;
        if database.is_some() {
            caps |= cap::CONNECT_WITH_DB;
        }
        let missing = caps
            & !g.capabilities
            & !(cap::CONNECT_WITH_DB | cap::ODBC | cap::LONG_FLAG | cap::SESSION_TRACK);
        if missing & cap::DEPRECATE_EOF != 0 || missing & cap::PROTOCOL_41 != 0 {
            return Err(Error::Capabilities {
                missing,
                server: g.server_version.clone(),
            });
        }
        caps &= g.capabilities | cap::ODBC;
        // With only SHA1(password), answer in mysql_native_password whatever the server
        // proposes: an account on that plugin is then served without a round trip, and one on
        // caching_sha2_password fails with the reason (its switch cannot be answered).
        let plugin = match g.auth_plugin.as_str() {
            "caching_sha2_password" if password.clear().is_some() => "caching_sha2_password",
            _ => "mysql_native_password",
        };
        let mut seq = seq.wrapping_add(1);
        let on_tls = match tls {
            Some(t) if g.capabilities & cap::SSL != 0 => {
                // SSLRequest: the first 32 bytes of the handshake response, then TLS.
                caps |= cap::SSL;
                let mut req = Vec::with_capacity(32);
                req.extend_from_slice(&caps.to_le_bytes());
                req.extend_from_slice(&(1u32 << 30).to_le_bytes());
                req.push(key.collation);
                req.extend_from_slice(&[0; 23]);
                write_packet(&mut stream, seq, &req).await?;
                stream.flush().await?;
                seq = seq.wrapping_add(1);
                let Transport::Plain(tcp) = stream.into_inner() else {
                    return Err(Error::Tls("already on TLS".into()));
                };
                stream = buffered(t.connect(tcp, &key.server).await?);
                true
            }
            Some(t) if t.mode == BackendTlsMode::Required => {
                return Err(Error::Tls(format!(
                    "server '{}' does not offer TLS and servers[].tls.mode is required",
                    key.server
                )));
            }
            _ => false,
        };
        let resp = Response {
            capabilities: caps,
            max_packet: 1 << 30,
            collation: key.collation,
            user: key.user.clone(),
            auth: password.scramble(plugin, &g.nonce).unwrap_or_default(),
            database: database.map(str::to_string),
            auth_plugin: Some(plugin.to_string()),
            attrs: Vec::new(),
        };
        write_packet(&mut stream, seq, &resp.build()).await?;
        stream.flush().await?;
        let mut plugin = plugin.to_string();
        loop {
            let s = read_packet(&mut stream, &mut buf, HANDSHAKE_MAX).await?;
            seq = s.wrapping_add(1);
            match buf.first() {
                Some(0x00) => break,
                Some(0xff) => return Err(server_err(&buf)),
                Some(0xfe) => {
                    // Auth switch: plugin name, then the new nonce.
                    let body = &buf[1..];
                    let end = body.iter().position(|&c| c == 0).unwrap_or(body.len());
                    plugin = String::from_utf8_lossy(&body[..end]).into_owned();
                    let nonce = body.get(end + 1..).unwrap_or(&[]);
                    let nonce = nonce.strip_suffix(&[0]).unwrap_or(nonce);
                    let Some(answer) = password.scramble(&plugin, nonce) else {
                        return Err(Error::UnsupportedAuth(needs_clear(&plugin, password)));
                    };
                    write_packet(&mut stream, seq, &answer).await?;
                    stream.flush().await?;
                }
                Some(0x01) if plugin == "caching_sha2_password" => match buf.get(1) {
                    Some(3) => {} // fast auth succeeded; the OK follows
                    Some(4) if password.clear().is_none() => {
                        return Err(Error::UnsupportedAuth(needs_clear(&plugin, password)));
                    }
                    Some(4) if on_tls => {
                        // Full authentication over TLS: the password in clear.
                        let clear = password.clear().unwrap_or_default();
                        let mut clear = clear.as_bytes().to_vec();
                        clear.push(0);
                        write_packet(&mut stream, seq, &clear).await?;
                        stream.flush().await?;
                    }
                    Some(4) => {
                        // Full authentication without TLS: ask for the server's RSA public key.
                        write_packet(&mut stream, seq, &[0x02]).await?;
                        stream.flush().await?;
                        let s = read_packet(&mut stream, &mut buf, HANDSHAKE_MAX).await?;
                        seq = s.wrapping_add(1);
                        let pem = buf.get(1..).unwrap_or(&[]).to_vec();
                        let clear = password.clear().unwrap_or_default();
                        let answer = rsa_encrypt_password(clear, &g.nonce, &pem)?;
                        write_packet(&mut stream, seq, &answer).await?;
                        stream.flush().await?;
                    }
                    // A public key arriving unasked, or anything else: out of step.
                    _ => {
                        return Err(Error::UnsupportedAuth(
                            "unexpected caching_sha2_password exchange".into(),
                        ))
                    }
                },
                _ => {
                    return Err(Error::Protocol(crate::protocol::Error::Malformed(
                        "auth reply",
                    )))
                }
            }
        }
        let _ = seq;
        Ok(Conn {
            stream,
            tls: on_tls,
            key,
            connection_id: g.connection_id,
            caps,
            schema: database.map(str::to_string),
            state: Fingerprint::fresh(),
            prepared: StmtCache::default(),
            last_insert_id: Some(0),
            diagnostics: false,
            last_used: Instant::now(),
            broken: false,
            has_schema: database.is_some(),
            gtid_tracking: false,
            scratch: Vec::new(),
            read_timeout: Duration::from_secs(30),
            slot: None,
            user_permit: None,
            outages_seen: 0,
        })
    }

    /// A connection over `tcp` that skipped the handshake, for the pools' unit tests.
    #[cfg(test)]
    pub(crate) fn for_test(tcp: TcpStream, key: Key, connection_id: u32) -> Conn {
        Conn {
            stream: BufStream::new(Transport::Plain(tcp)),
            tls: false,
            key,
            connection_id,
            caps: 0,
            schema: None,
            state: Fingerprint::fresh(),
            prepared: StmtCache::default(),
            last_insert_id: Some(0),
            diagnostics: false,
            last_used: Instant::now(),
            broken: false,
            has_schema: false,
            gtid_tracking: false,
            scratch: Vec::new(),
            read_timeout: Duration::from_secs(30),
            slot: None,
            user_permit: None,
            outages_seen: 0,
        }
    }

    /// A cheap check, without a round trip, that an idle connection is still open: a server
    /// that closed it (restart, `wait_timeout`, `KILL`) has left an end of stream, an error
    /// packet or, over TLS, a `close_notify` alert to read. The socket under TLS is probed the
    /// same way: an idle connection has nothing to read, so any byte (a record the proxy did
    /// not ask for) means it is not fit for the next statement. A byte read here is consumed:
    /// the caller drops a connection that does not look alive.
    pub fn looks_alive(&self) -> bool {
        let tcp = match self.stream.get_ref() {
            Transport::Plain(tcp) => tcp,
            Transport::Tls(tls) => tls.get_ref().0,
        };
        let mut probe = [0u8; 1];
        matches!(tcp.try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
    }

    /// Whether responses on this connection end result sets with OK instead of EOF.
    /// The connection reads session-state information in OK packets.
    pub fn session_track(&self) -> bool {
        self.caps & cap::SESSION_TRACK != 0
    }

    pub fn deprecate_eof(&self) -> bool {
        self.caps & cap::DEPRECATE_EOF != 0
    }

    /// Sends one command packet (sequence 0) and flushes.
    pub async fn send(&mut self, payload: &[u8]) -> Result<(), Error> {
        let r = async {
            write_packet(&mut self.stream, 0, payload).await?;
            self.stream.flush().await?;
            Ok::<_, Error>(())
        }
        .await;
        if r.is_err() {
            self.broken = true;
        }
        r
    }

    /// Runs a command whose response the proxy consumes itself (replay, reset, lazy prepare of
    /// nothing): a server ERR comes back as [`Error::Server`].
    pub async fn command(&mut self, payload: &[u8], shape: Shape) -> Result<End, Error> {
        self.send(payload).await?;
        self.reply(shape).await
    }

    /// Sends several commands in one write and reads their answers in order: one round trip
    /// (state hand-over, see `fingerprint.rs`). A server ERR to any of them comes back as
    /// [`Error::Server`] once every answer has been read (the connection stays in step).
    pub async fn pipeline(&mut self, packets: &[Vec<u8>]) -> Result<(), Error> {
        let sent = async {
            for p in packets {
                write_packet(&mut self.stream, 0, p).await?;
            }
            self.stream.flush().await?;
            Ok::<_, Error>(())
        }
        .await;
        if let Err(e) = sent {
            self.broken = true;
            return Err(e);
        }
        let mut failed = None;
        for p in packets {
            let shape = if p.first() == Some(&com::QUERY) {
                Shape::Results
            } else {
                Shape::Single
            };
            match self.reply(shape).await {
                Ok(_) => {}
                Err(e @ Error::Server { .. }) => {
                    failed.get_or_insert(e);
                }
                Err(e) => return Err(e),
            }
        }
        failed.map_or(Ok(()), Err)
    }

    /// Reads the answer to a command the proxy sent itself.
    async fn reply(&mut self, shape: Shape) -> Result<End, Error> {
        self.reply_to(shape, &mut Sink::default()).await
    }

    /// Reads the answer to a command the proxy sent itself into `client` (a [`Sink`]).
    async fn reply_to(&mut self, shape: Shape, client: &mut Sink) -> Result<End, Error> {
        let deprecate = self.deprecate_eof();
        let mut progress = relay::Progress::default();
        let mut scratch = std::mem::take(&mut self.scratch);
        let r = relay::relay(
            &mut self.stream,
            client,
            &mut scratch,
            shape,
            deprecate,
            Some(self.read_timeout),
            &mut progress,
        )
        .await;
        let msg = if let Ok(End::Err { .. }) = r {
            parse_err(&scratch)
        } else {
            None
        };
        scratch.clear();
        if scratch.capacity() > 64 * 1024 {
            scratch = Vec::new();
        }
        self.scratch = scratch;
        match r {
            Ok(End::Err { code }) => Err(match msg {
                Some(e) => Error::Server {
                    code: e.code,
                    state: e.state,
                    message: e.message,
                },
                None => Error::Server {
                    code,
                    state: "HY000".into(),
                    message: String::new(),
                },
            }),
            Ok(end) => Ok(end),
            Err(e) => {
                self.broken = true;
                Err(Error::Relay(e))
            }
        }
    }

    /// `COM_RESET_CONNECTION`: back to a fresh session (variables, temp tables, locks,
    /// prepared statements, user variables) without re-authenticating.
    pub async fn reset(&mut self) -> Result<(), Error> {
        self.command(&[com::RESET_CONNECTION], Shape::Single)
            .await?;
        self.forget_state();
        Ok(())
    }

    /// After a reset: what the server dropped (state, statements, diagnostics, insert id).
    /// The default database survives a reset (`has_schema` stays).
    pub fn forget_state(&mut self) {
        self.gtid_tracking = false;
        self.prepared.clear();
        self.state = Fingerprint::fresh();
        self.last_insert_id = Some(0);
        self.diagnostics = false;
    }

    /// `COM_INIT_DB`.
    pub async fn init_db(&mut self, db: &str) -> Result<(), Error> {
        let mut p = Vec::with_capacity(1 + db.len());
        p.push(com::INIT_DB);
        p.extend_from_slice(db.as_bytes());
        self.command(&p, Shape::Single).await?;
        self.schema = Some(db.to_string());
        Ok(())
    }

    /// `COM_QUERY` of a one-value query (`SELECT @@gtid_binlog_pos`): the value, `None` for
    /// NULL.
    pub async fn query_value(&mut self, sql: &[u8]) -> Result<Option<String>, Error> {
        let kept = self.query_kept(sql).await?;
        Ok(first_value(&kept, self.deprecate_eof()))
    }

    /// `COM_QUERY` of a small query whose rows the proxy reads itself (`SHOW WARNINGS`): every
    /// row's values as text, `None` for NULL.
    pub async fn query_rows(&mut self, sql: &[u8]) -> Result<Vec<Vec<Option<String>>>, Error> {
        let kept = self.query_kept(sql).await?;
        Ok(text_rows(&kept, self.deprecate_eof()).unwrap_or_default())
    }

    /// `COM_QUERY` of a small query the proxy reads itself: the answer's frames as received.
    async fn query_kept(&mut self, sql: &[u8]) -> Result<Vec<u8>, Error> {
        let mut p = Vec::with_capacity(1 + sql.len());
        p.push(com::QUERY);
        p.extend_from_slice(sql);
        self.send(&p).await?;
        let mut capture = Sink::keeping();
        self.reply_to(Shape::Results, &mut capture).await?;
        Ok(capture.kept)
    }

    /// `COM_QUERY` whose result is discarded.
    pub async fn query_discard(&mut self, sql: &[u8]) -> Result<End, Error> {
        let mut p = Vec::with_capacity(1 + sql.len());
        p.push(com::QUERY);
        p.extend_from_slice(sql);
        self.command(&p, Shape::Results).await
    }
}

/// The first column of the first row in a text result set's frames (`None` for NULL or no
/// row).
fn first_value(frames: &[u8], deprecate_eof: bool) -> Option<String> {
    text_rows(frames, deprecate_eof)?
        .into_iter()
        .next()?
        .into_iter()
        .next()?
}

/// Every row of a text result set's frames (`None` for a NULL value); `None` when the frames
/// are not one result set.
fn text_rows(frames: &[u8], deprecate_eof: bool) -> Option<Vec<Vec<Option<String>>>> {
    let mut packets = Vec::new();
    let mut rest = frames;
    while rest.len() >= 4 {
        let len = usize::from(rest[0]) | usize::from(rest[1]) << 8 | usize::from(rest[2]) << 16;
        packets.push(rest.get(4..4 + len)?);
        rest = &rest[4 + len..];
    }
    let (cols, _) = crate::protocol::message::lenenc_int(packets.first()?)?;
    let cols = usize::try_from(cols).ok()?;
    let first_row = 1 + cols + usize::from(!deprecate_eof);
    let mut rows = Vec::new();
    for row in packets.get(first_row..)? {
        if crate::protocol::message::is_eof(row, row.len(), deprecate_eof) {
            break;
        }
        let mut values = Vec::with_capacity(cols);
        let mut at = 0;
        for _ in 0..cols {
            if row.get(at) == Some(&0xfb) {
                values.push(None);
                at += 1;
                continue;
            }
            let (len, n) = crate::protocol::message::lenenc_int(row.get(at..)?)?;
            let end = at + n + usize::try_from(len).ok()?;
            values.push(Some(
                String::from_utf8_lossy(row.get(at + n..end)?).into_owned(),
            ));
            at = end;
        }
        rows.push(values);
    }
    Some(rows)
}

/// A client stand-in for the proxy's own commands: discards what it is sent, or with
/// [`Sink::keeping`] keeps it (a one-value query's answer); has nothing to upload.
#[derive(Default)]
pub struct Sink {
    keep: bool,
    kept: Vec<u8>,
}

impl Sink {
    pub fn keeping() -> Self {
        Self {
            keep: true,
            kept: Vec::new(),
        }
    }
}

impl tokio::io::AsyncWrite for Sink {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        if self.keep {
            self.kept.extend_from_slice(buf);
        }
        std::task::Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

impl tokio::io::AsyncRead for Sink {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        _: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

/// caching_sha2_password full authentication over a plain connection: the password (NUL
/// terminated, XORed with the nonce) encrypted with the server's RSA public key (OAEP).
/// The PEM comes from the server; mysql_common's parser panics on malformed input, so a bad
/// key is caught and reported instead of taking the proxy down.
fn rsa_encrypt_password(password: &str, nonce: &[u8], pem: &[u8]) -> Result<Vec<u8>, Error> {
    let mut clear = password.as_bytes().to_vec();
    clear.push(0);
    let nonce = &nonce[..nonce.len().min(20)];
    if !nonce.is_empty() {
        for (i, b) in clear.iter_mut().enumerate() {
            *b ^= nonce[i % nonce.len()];
        }
    }
    let pem = pem.to_vec();
    std::panic::catch_unwind(move || mysql_common::crypto::encrypt(&clear, &pem))
        .map_err(|_| Error::UnsupportedAuth("backend sent an unreadable RSA public key".into()))
}

/// Why a backend's authentication plugin cannot be answered with `password`.
fn needs_clear(plugin: &str, password: &Credential) -> String {
    match password {
        Credential::NativeStage1(_) => format!(
            "the server asks for {plugin}, which needs the clear password, and this user is \
             configured with a mysql_native_password hash only (proxy.users[].password_hash): \
             give the account mysql_native_password on the servers, or configure the password"
        ),
        Credential::Clear(_) => plugin.to_string(),
    }
}

/// Backend buffers: responses stream through the read side.
fn buffered(t: Transport) -> BufStream<Transport> {
    BufStream::with_capacity(16 * 1024, 8 * 1024, t)
}

fn server_err(p: &[u8]) -> Error {
    match parse_err(p) {
        Some(e) => Error::Server {
            code: e.code,
            state: e.state,
            message: e.message,
        },
        None => Error::Protocol(crate::protocol::Error::Malformed("ERR packet")),
    }
}
