//! The client against real local listeners: the sidecar's own hyper server where it can show
//! the behaviour, a bare tokio listener where the test must control the bytes and the close.

use super::*;
use binlog_reader::http::{self, Reply, ReplyFuture, Request, Routes};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// The sidecar's HTTP server answering every path with the client's port (one per connection)
/// and `/kick` with 204.
async fn hyper_server() -> (String, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let routes: Routes = Arc::new(|req: Request| {
        Box::pin(async move {
            if req.path == "/kick" {
                Reply::text(204, "")
            } else {
                Reply::text(200, format!("{}", req.peer.port()))
            }
        }) as ReplyFuture
    });
    (
        format!("http://{addr}"),
        tokio::spawn(http::serve(listener, routes)),
    )
}

/// A bare listener whose connections, numbered from 0, are each handled by `conn` on a task
/// of their own: the URL of its `/lag`, the count of connections accepted, the server task.
async fn bare_server<F, Fut>(conn: F) -> (String, Arc<AtomicUsize>, tokio::task::JoinHandle<()>)
where
    F: Fn(TcpStream, usize) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/lag", listener.local_addr().expect("addr"));
    let accepted = Arc::new(AtomicUsize::new(0));
    let seen = accepted.clone();
    let server = tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            tokio::spawn(conn(s, seen.fetch_add(1, Ordering::SeqCst)));
        }
    });
    (url, accepted, server)
}

/// A keep-alive answer with a Content-Length body.
fn answer(body: &str) -> String {
    format!(
        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// Reads one request head from `s` (tests send no bodies).
async fn read_request(s: &mut TcpStream) -> Option<String> {
    let mut buf = Vec::new();
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let mut b = [0u8; 1024];
        match s.read(&mut b).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&b[..n]),
        }
    }
    Some(String::from_utf8_lossy(&buf).into_owned())
}

#[tokio::test]
async fn keep_alive_reuses_one_connection_for_bodies_and_no_content() {
    let (base, server) = hyper_server().await;
    let mut c = Client::keep_alive();
    let first = c.get(&format!("{base}/lag")).await.expect("first");
    assert_eq!(first.status, 200);
    let kick = c.get(&format!("{base}/kick")).await.expect("kick");
    assert_eq!((kick.status, kick.body.len()), (204, 0));
    let second = c.get(&format!("{base}/lag?after=1")).await.expect("second");
    assert_eq!(
        first.body, second.body,
        "the same client port: one connection for all three requests"
    );
    // A one-shot client opens a connection per request.
    let mut once = Client::one_shot();
    let a = once.get(&format!("{base}/lag")).await.expect("a");
    let b = once.get(&format!("{base}/lag")).await.expect("b");
    assert_ne!(a.body, b.body);
    server.abort();
}

#[tokio::test]
async fn reconnects_after_the_server_closed_the_idle_connection() {
    // Each connection answers one request (keep-alive framing), then closes.
    let (url, accepted, server) = bare_server(|mut s, n| async move {
        if read_request(&mut s).await.is_some() {
            let _ = s.write_all(answer(&format!("conn {n}")).as_bytes()).await;
        }
    })
    .await;
    let mut c = Client::keep_alive();
    let first = c.get(&url).await.expect("first");
    assert_eq!(first.body, b"conn 0");
    // Let the close reach the client's side.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let second = c.get(&url).await.expect("second, on a new connection");
    assert_eq!(second.body, b"conn 1");
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
    server.abort();
}

#[tokio::test]
async fn content_length_bodies_arriving_in_pieces_are_read_exactly() {
    // The first body holds what looks like the end of a head and arrives in two writes; the
    // second answer follows on the same connection.
    let (url, accepted, server) = bare_server(|mut s, _| async move {
        let _ = read_request(&mut s).await;
        let _ = s
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nab\r\n")
            .await;
        tokio::time::sleep(Duration::from_millis(30)).await;
        let _ = s.write_all(b"\r\ncdef").await;
        let _ = read_request(&mut s).await;
        let _ = s.write_all(answer("{}").as_bytes()).await;
        let _ = read_request(&mut s).await;
    })
    .await;
    let mut c = Client::keep_alive();
    assert_eq!(c.get(&url).await.expect("first").body, b"ab\r\n\r\ncdef");
    assert_eq!(c.get(&url).await.expect("second").body, b"{}");
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
    server.abort();
}

#[tokio::test]
async fn one_shot_asks_for_close_and_reads_a_body_ended_by_the_close() {
    let (url, _, server) = bare_server(|mut s, _| async move {
        let req = read_request(&mut s).await.unwrap_or_default();
        let close = req.to_ascii_lowercase().contains("connection: close");
        let _ = s
            .write_all(format!("HTTP/1.1 200 OK\r\n\r\nclose asked: {close}").as_bytes())
            .await;
    })
    .await;
    let body = Client::one_shot().get(&url).await.expect("get").body;
    assert_eq!(body, b"close asked: true");
    server.abort();
}

#[tokio::test]
async fn a_request_cut_short_by_a_timeout_leaves_no_connection_behind() {
    // The first connection's answers come late (after the caller gave up); the second's at once.
    let (url, _, server) = bare_server(|mut s, n| async move {
        while read_request(&mut s).await.is_some() {
            if n == 0 {
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            let _ = s.write_all(answer(&format!("conn {n}")).as_bytes()).await;
        }
    })
    .await;
    let mut c = Client::keep_alive();
    let cut = tokio::time::timeout(Duration::from_millis(50), c.get(&url)).await;
    assert!(cut.is_err(), "the first answer is late");
    tokio::time::sleep(Duration::from_millis(400)).await;
    // The late answer is never taken for the next request's.
    let next = c.get(&url).await.expect("next");
    assert_eq!(next.body, b"conn 1");
    server.abort();
}

#[test]
fn answers_parse_plain_chunked_partial_and_bounded() {
    let plain = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}";
    let p = parse_response(plain, false).expect("ok").expect("complete");
    assert_eq!(
        (p.response.body.as_slice(), p.consumed, p.reusable),
        (&b"{}"[..], plain.len(), true)
    );
    assert!(parse_response(&plain[..plain.len() - 1], false)
        .expect("ok")
        .is_none());
    let chunked =
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n1\r\n \r\n0\r\nx-t: 1\r\n\r\n";
    let p = parse_response(chunked, false)
        .expect("ok")
        .expect("complete");
    assert_eq!(p.response.body, b"{} ");
    assert_eq!(p.consumed, chunked.len(), "trailers included");
    for cut in [40, 50, chunked.len() - 2] {
        assert!(
            parse_response(&chunked[..cut], false)
                .expect("ok")
                .is_none(),
            "{cut}"
        );
    }
    let closing = b"HTTP/1.1 200 OK\r\nConnection: close\r\ncontent-length: 0\r\n\r\n";
    assert!(
        !parse_response(closing, false)
            .expect("ok")
            .expect("complete")
            .reusable
    );
    let old = b"HTTP/1.0 200 OK\r\ncontent-length: 0\r\n\r\n";
    assert!(
        !parse_response(old, false)
            .expect("ok")
            .expect("complete")
            .reusable
    );
    let huge = format!(
        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n",
        MAX_BODY + 1
    );
    assert!(parse_response(huge.as_bytes(), false).is_err());
    assert!(parse_response(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        false
    )
    .is_err());
    let unavailable = parse_response(
        b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 1\r\n\r\nx",
        false,
    )
    .expect("ok")
    .expect("complete");
    let err = unavailable
        .response
        .into_ok_body("http://s/lag")
        .unwrap_err();
    assert!(err.to_string().contains("503"), "{err}");
}
