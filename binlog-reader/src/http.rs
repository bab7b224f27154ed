//! A tiny HTTP/1 server (hyper 1) for `/metrics`, `/lag` and `/healthz`, reusable by the
//! proxy's admin endpoint: give it a listener and an async function from a [`Request`] to a
//! [`Reply`]. Routes get the peer address, headers and a bounded body, so the same server can
//! carry authenticated JSON endpoints and long polls.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{HeaderMap, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use tokio::net::TcpListener;

/// Largest request body a route is given; a bigger one is answered 413 without calling it.
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// What a route answers.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Bytes,
}

impl Reply {
    pub fn ok(content_type: &'static str, body: impl Into<Bytes>) -> Self {
        Self {
            status: 200,
            content_type,
            body: body.into(),
        }
    }

    pub fn text(status: u16, body: impl Into<Bytes>) -> Self {
        Self {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into(),
        }
    }

    /// A JSON body, newline-terminated (friendly to `curl` in a terminal).
    pub fn json(status: u16, value: &serde_json::Value) -> Self {
        Self {
            status,
            content_type: "application/json",
            body: Bytes::from(value.to_string() + "\n"),
        }
    }

    pub fn not_found() -> Self {
        Self::text(404, "not found\n")
    }
}

/// One request as routes see it: the query string is split off the path, the body is read
/// whole (at most [`MAX_BODY_BYTES`]).
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    /// The raw query string, without `?` (empty when none).
    pub query: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub peer: SocketAddr,
}

impl Request {
    /// A body-less request from `peer` (tests, and routes that call other routes).
    pub fn new(method: &str, path: &str, peer: SocketAddr) -> Self {
        let (path, query) = path.split_once('?').unwrap_or((path, ""));
        Self {
            method: method.to_string(),
            path: path.to_string(),
            query: query.to_string(),
            headers: HeaderMap::new(),
            body: Bytes::new(),
            peer,
        }
    }

    /// A GET from loopback, for tests.
    pub fn get(path: &str) -> Self {
        Self::new("GET", path, SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// A header's value, when present and valid UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The first value of query parameter `key` (not percent-decoded: keys and values here
    /// are names and numbers).
    pub fn query_param(&self, key: &str) -> Option<&str> {
        self.query
            .split('&')
            .filter_map(|kv| kv.split_once('=').or(Some((kv, ""))))
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v)
    }

    /// Whether this is a read-only method.
    pub fn is_read(&self) -> bool {
        self.method == "GET" || self.method == "HEAD"
    }
}

/// A boxed reply future: routes may wait (a long poll, a switchover), each on its
/// connection's own task.
pub type ReplyFuture = Pin<Box<dyn Future<Output = Reply> + Send>>;

/// Maps a request to a reply.
pub type Routes = Arc<dyn Fn(Request) -> ReplyFuture + Send + Sync>;

/// Routes from a quick synchronous function: most endpoints only read a snapshot.
pub fn sync_routes(f: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> Routes {
    Arc::new(move |req: Request| {
        let reply = f(&req);
        Box::pin(async move { reply }) as ReplyFuture
    })
}

/// Serves HTTP/1 on `listener` until the returned future is dropped; one task per connection.
pub async fn serve(listener: TcpListener, routes: Routes) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "http accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let routes = routes.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: hyper::Request<Incoming>| {
                let routes = routes.clone();
                async move {
                    let reply = match read_request(req, peer).await {
                        Ok(req) => routes(req).await,
                        Err(reply) => reply,
                    };
                    Ok::<_, Infallible>(to_response(reply))
                }
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(error = %e, "http connection ended with an error");
            }
        });
    }
}

async fn read_request(req: hyper::Request<Incoming>, peer: SocketAddr) -> Result<Request, Reply> {
    let (parts, body) = req.into_parts();
    let body = Limited::new(body, MAX_BODY_BYTES)
        .collect()
        .await
        .map_err(|e| {
            Reply::text(
                413,
                format!("request body unreadable or over {MAX_BODY_BYTES} bytes: {e}\n"),
            )
        })?
        .to_bytes();
    Ok(Request {
        method: parts.method.as_str().to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().unwrap_or("").to_string(),
        headers: parts.headers,
        body,
        peer,
    })
}

fn to_response(reply: Reply) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(reply.body));
    *resp.status_mut() = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::OK);
    if let Ok(v) = hyper::header::HeaderValue::from_str(reply.content_type) {
        resp.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    resp
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn query_parameters_are_found_by_key() {
        let r = Request::get("/lag?wait_ms=200&after=7&flag");
        assert_eq!(r.path, "/lag");
        assert_eq!(r.query_param("wait_ms"), Some("200"));
        assert_eq!(r.query_param("after"), Some("7"));
        assert_eq!(r.query_param("flag"), Some(""));
        assert_eq!(r.query_param("missing"), None);
    }

    #[tokio::test]
    async fn a_route_sees_peer_headers_and_body_and_oversized_bodies_are_refused() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let routes: Routes = Arc::new(|req: Request| {
            Box::pin(async move {
                Reply::text(
                    200,
                    format!(
                        "{} {} {} {} {}",
                        req.method,
                        req.path,
                        req.header("x-token").unwrap_or("-"),
                        req.body.len(),
                        req.peer.ip()
                    ),
                )
            }) as ReplyFuture
        });
        let server = tokio::spawn(serve(listener, routes));
        let ask = |body_len: usize| async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
            let head = format!(
                "POST /x?y=1 HTTP/1.1\r\nhost: t\r\nx-token: abc\r\ncontent-length: {body_len}\r\nconnection: close\r\n\r\n"
            );
            s.write_all(head.as_bytes()).await.expect("write");
            // The server may answer (413) and close before it has read all of a large body.
            let _ = s.write_all(&vec![b'a'; body_len]).await;
            let mut out = String::new();
            let _ = s.read_to_string(&mut out).await;
            out
        };
        let small = ask(5).await;
        assert!(small.starts_with("HTTP/1.1 200"), "{small}");
        assert!(small.ends_with("POST /x abc 5 127.0.0.1"), "{small}");
        let big = ask(MAX_BODY_BYTES + 1).await;
        assert!(big.starts_with("HTTP/1.1 413"), "{big}");
        server.abort();
    }
}
