//! HTTP/1.1 GETs to the lag sidecars (plain HTTP on a private address): one-shot for the
//! monitor's `/lag` polls, keep-alive for the positions' long poll and the sessions' kicks, so
//! that each position change costs one request on an open connection rather than a TCP
//! handshake as well (issue 10: six sessions kicking every few milliseconds through a sidecar
//! otherwise spend their `causal_wait_ms` on connection set-up).
//!
//! Only what a sidecar answers is understood: a status line and headers, then a body framed by
//! `Content-Length`, chunked, or (without either) by the server closing. Bodies are bounded.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// `/lag` answers are small; refuse anything absurd.
pub const MAX_BODY: usize = 4 << 20;
/// A response head (status line and headers) longer than this is not a sidecar's.
const MAX_HEAD: usize = 64 << 10;

/// Why the sidecar could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SidecarError {
    #[error("lag_source.sidecar.url {0:?} is not an http://host:port/path URL")]
    Url(String),
    #[error("sidecar {url}: {source}")]
    Io {
        url: String,
        #[source]
        source: std::io::Error,
    },
    #[error("sidecar {0}: no answer in time")]
    Timeout(String),
    #[error("sidecar {url}: {message}")]
    Http { url: String, message: String },
}

/// One answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    pub status: u16,
    /// The status line as sent (for error messages).
    pub status_line: String,
    pub body: Vec<u8>,
}

impl Response {
    /// The body of a 2xx answer; any other status is an error naming the URL.
    pub fn into_ok_body(self, url: &str) -> Result<Vec<u8>, SidecarError> {
        if (200..300).contains(&self.status) {
            Ok(self.body)
        } else {
            Err(SidecarError::Http {
                url: url.to_string(),
                message: format!("answered {:?}", self.status_line),
            })
        }
    }
}

/// A GET client holding at most one idle connection (keep-alive) or none (one-shot, sent with
/// `Connection: close`). A request is never cancelled half-way into a reused connection: the
/// connection is taken out for the request and put back only after a complete answer, so a
/// timeout (the caller dropping the future) or any error leaves the next request a fresh one.
#[derive(Debug, Default)]
pub struct Client {
    keep_alive: bool,
    idle: Option<Idle>,
}

/// An open connection between two requests.
#[derive(Debug)]
struct Idle {
    authority: String,
    stream: TcpStream,
}

/// How a request on one connection failed.
enum Failure {
    /// A reused connection the server had closed (or reset) before answering anything: the
    /// request never reached a route, so it is safe to send again on a fresh one.
    Stale(std::io::Error),
    Failed(SidecarError),
}

impl Client {
    /// A client that keeps its connection open between requests.
    pub fn keep_alive() -> Client {
        Client {
            keep_alive: true,
            idle: None,
        }
    }

    /// A client that opens a connection per request and asks the server to close it.
    pub fn one_shot() -> Client {
        Client::default()
    }

    /// GETs `url` (`http://host:port/path?query`), on the idle connection when it goes to the
    /// same host and is still open, else on a new one.
    pub async fn get(&mut self, url: &str) -> Result<Response, SidecarError> {
        let (authority, path) = split_url(url)?;
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {authority}\r\nAccept: application/json\r\n{}\r\n",
            if self.keep_alive {
                ""
            } else {
                "Connection: close\r\n"
            }
        );
        if let Some(idle) = self.idle.take().filter(|i| i.authority == authority) {
            match self.exchange(idle, url, &request).await {
                Ok(r) => return Ok(r),
                Err(Failure::Stale(e)) => {
                    tracing::debug!(%url, error = %e, "sidecar closed the idle connection; reconnecting");
                }
                Err(Failure::Failed(e)) => return Err(e),
            }
        }
        let io = |source| SidecarError::Io {
            url: url.to_string(),
            source,
        };
        let stream = TcpStream::connect(authority).await.map_err(io)?;
        // Requests are single small writes whose answers someone waits for.
        stream.set_nodelay(true).map_err(io)?;
        let fresh = Idle {
            authority: authority.to_string(),
            stream,
        };
        match self.exchange(fresh, url, &request).await {
            Ok(r) => Ok(r),
            Err(Failure::Stale(e)) => Err(io(e)),
            Err(Failure::Failed(e)) => Err(e),
        }
    }

    /// Sends `request` on `conn` and reads the answer; keeps the connection when both sides
    /// allow it and nothing was left over.
    async fn exchange(
        &mut self,
        mut conn: Idle,
        url: &str,
        request: &str,
    ) -> Result<Response, Failure> {
        let failed = |message: String| {
            Failure::Failed(SidecarError::Http {
                url: url.to_string(),
                message,
            })
        };
        if let Err(e) = conn.stream.write_all(request.as_bytes()).await {
            return Err(Failure::Stale(e));
        }
        let mut buf = Vec::with_capacity(4096);
        loop {
            let eof = match conn.stream.read_buf(&mut buf).await {
                Ok(0) => true,
                Ok(_) => false,
                Err(e) if buf.is_empty() => return Err(Failure::Stale(e)),
                Err(e) => {
                    return Err(Failure::Failed(SidecarError::Io {
                        url: url.to_string(),
                        source: e,
                    }))
                }
            };
            if eof && buf.is_empty() {
                return Err(Failure::Stale(std::io::ErrorKind::UnexpectedEof.into()));
            }
            match parse_response(&buf, eof).map_err(failed)? {
                Some(parsed) => {
                    if self.keep_alive && parsed.reusable && parsed.consumed == buf.len() {
                        self.idle = Some(conn);
                    }
                    return Ok(parsed.response);
                }
                None if eof => return Err(failed("truncated HTTP response".into())),
                None if buf.len() > MAX_HEAD + MAX_BODY + MAX_HEAD => {
                    return Err(failed(format!("answer over {MAX_BODY} bytes")))
                }
                None => {}
            }
        }
    }
}

/// `http://host:port/path?query` → (`host:port`, `/path?query`).
fn split_url(url: &str) -> Result<(&str, &str), SidecarError> {
    let bad_url = || SidecarError::Url(url.to_string());
    let rest = url.strip_prefix("http://").ok_or_else(bad_url)?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() {
        return Err(bad_url());
    }
    Ok((authority, path))
}

/// A complete answer found at the start of a buffer.
#[derive(Debug)]
struct Parsed {
    response: Response,
    /// Bytes of the buffer it took.
    consumed: usize,
    /// The connection may carry another request (HTTP/1.1, no `Connection: close`, a framed
    /// body).
    reusable: bool,
}

/// Parses the answer at the start of `buf`: `Ok(None)` while more bytes are needed (`eof`:
/// none will come, which ends a body framed by the close).
fn parse_response(buf: &[u8], eof: bool) -> Result<Option<Parsed>, String> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return if buf.len() > MAX_HEAD {
            Err(format!("response head over {MAX_HEAD} bytes"))
        } else {
            Ok(None)
        };
    };
    let head = String::from_utf8_lossy(&buf[..end]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("").to_string();
    let mut words = status_line.split_whitespace();
    let version = words.next().unwrap_or("");
    let status: u16 = words
        .next()
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("not an HTTP status line: {status_line:?}"))?;
    let (mut length, mut chunked, mut close) = (None, false, version != "HTTP/1.1");
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let (name, value) = (name.trim(), value.trim().to_ascii_lowercase());
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(
                value
                    .parse::<usize>()
                    .map_err(|_| format!("bad Content-Length {value:?}"))?,
            );
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.contains("chunked");
        } else if name.eq_ignore_ascii_case("connection") {
            if value.contains("close") {
                close = true;
            } else if value.contains("keep-alive") {
                close = false;
            }
        }
    }
    let start = end + 4;
    let rest = &buf[start..];
    let response = |body: Vec<u8>| Response {
        status,
        status_line: status_line.clone(),
        body,
    };
    let done = |body: Vec<u8>, len: usize, framed: bool| {
        Ok(Some(Parsed {
            response: response(body),
            consumed: start + len,
            reusable: framed && !close,
        }))
    };
    if (100..200).contains(&status) || status == 204 || status == 304 {
        return done(Vec::new(), 0, true);
    }
    if chunked {
        return match dechunk(rest)? {
            Some((body, len)) => done(body, len, true),
            None => Ok(None),
        };
    }
    if let Some(n) = length {
        if n > MAX_BODY {
            return Err(format!("answer over {MAX_BODY} bytes (Content-Length {n})"));
        }
        return match rest.get(..n) {
            Some(body) => done(body.to_vec(), n, true),
            None => Ok(None),
        };
    }
    if rest.len() > MAX_BODY {
        return Err(format!("answer over {MAX_BODY} bytes"));
    }
    // Neither: the body ends where the server closes.
    if eof {
        done(rest.to_vec(), rest.len(), false)
    } else {
        Ok(None)
    }
}

/// Decodes a chunked body at the start of `rest`: the body and the bytes it took (trailers
/// included), or `None` while incomplete. The chunk sizes are walked first and the data copied
/// only once it is all there, so reading a body in many pieces stays linear.
fn dechunk(rest: &[u8]) -> Result<Option<(Vec<u8>, usize)>, String> {
    let mut chunks = Vec::new();
    let mut at = 0;
    let mut total = 0usize;
    loop {
        let Some(line_end) = find_crlf(&rest[at..]) else {
            return Ok(None);
        };
        let size_text = String::from_utf8_lossy(&rest[at..at + line_end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| format!("bad chunk size {size_text:?}"))?;
        at += line_end + 2;
        if size == 0 {
            // Trailer lines, then an empty line.
            loop {
                let Some(line_end) = find_crlf(&rest[at..]) else {
                    return Ok(None);
                };
                at += line_end + 2;
                if line_end == 0 {
                    let mut body = Vec::with_capacity(total);
                    for (from, len) in chunks {
                        body.extend_from_slice(&rest[from..from + len]);
                    }
                    return Ok(Some((body, at)));
                }
            }
        }
        total = total.saturating_add(size);
        if total > MAX_BODY {
            return Err(format!("answer over {MAX_BODY} bytes"));
        }
        if rest.len() < at + size + 2 {
            return Ok(None);
        }
        if &rest[at + size..at + size + 2] != b"\r\n" {
            return Err("bad chunked body: chunk not followed by CRLF".into());
        }
        chunks.push((at, size));
        at += size + 2;
    }
}

fn find_crlf(b: &[u8]) -> Option<usize> {
    b.windows(2).position(|w| w == b"\r\n")
}

#[cfg(test)]
mod test;
