//! Bad input never harms the proxy: wrong passwords get ERR 1045 with the server's wording,
//! garbage and truncated packets close only that session, and a backend that dies mid-result
//! gives the client an error instead of a hang. After each, another client is served.

mod proxy_support;

use integration_tests::mysql_async::prelude::Queryable;
use integration_tests::mysql_async::{Opts, OptsBuilder};
use proxy::backend::handshake::{scramble, Greeting, Response};
use proxy::protocol::consts::cap;
use proxy::protocol::message::parse_err;
use proxy::protocol::packet::{read_packet, write_packet};
use proxy_support::{cluster, start, Proxy};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Connects and authenticates with raw packets; returns the stream after the final OK.
async fn raw_login(port: u16, password: &str) -> (TcpStream, Vec<u8>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut buf = Vec::new();
    read_packet(&mut s, &mut buf, 1 << 20).await.unwrap();
    let g = Greeting::parse(&buf).unwrap();
    let r = Response {
        capabilities: cap::PROXY_OFFERS & !cap::CONNECT_ATTRS,
        max_packet: 1 << 24,
        collation: 45,
        user: "app".into(),
        auth: scramble("mysql_native_password", &g.nonce, password).unwrap(),
        database: Some("rwsplit_test".into()),
        auth_plugin: Some("mysql_native_password".into()),
        attrs: Vec::new(),
    };
    write_packet(&mut s, 1, &r.build()).await.unwrap();
    s.flush().await.unwrap();
    read_packet(&mut s, &mut buf, 1 << 20).await.unwrap();
    (s, buf)
}

async fn still_serves(p: &Proxy) {
    let mut conn = p.conn().await;
    let one: i64 = conn.query_first("SELECT 1").await.unwrap().unwrap();
    assert_eq!(one, 1);
}

/// Reads until the proxy closes the connection (or an error), within a deadline.
async fn closed_within(s: &mut TcpStream, limit: Duration) -> Vec<u8> {
    let mut all = Vec::new();
    let mut chunk = [0u8; 4096];
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, tokio::io::AsyncReadExt::read(s, &mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return all,
            Ok(Ok(n)) => all.extend_from_slice(&chunk[..n]),
            Err(_) => panic!("the proxy kept the session open: got {all:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_gets_1045_like_a_server() {
    let Some(c) = cluster("wrong_password_gets_1045_like_a_server") else {
        return;
    };
    let p = start(&c).await;
    let (_, reply) = raw_login(p.port, "not-the-password").await;
    let e = parse_err(&reply).expect("an ERR packet");
    assert_eq!(e.code, 1045);
    assert_eq!(e.state, "28000");
    assert_eq!(
        e.message,
        "Access denied for user 'app'@'127.0.0.1' (using password: YES)"
    );
    // Also through a real client, and an unknown user gets the same answer.
    let opts = OptsBuilder::from_opts(Opts::from_url(&p.url()).unwrap())
        .user(Some("nobody"))
        .pass(Some("x"));
    let err = integration_tests::mysql_async::Conn::new(opts)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("Access denied for user 'nobody'"),
        "{err}"
    );
    still_serves(&p).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_truncated_packets_close_only_that_session() {
    let Some(c) = cluster("garbage_and_truncated_packets_close_only_that_session") else {
        return;
    };
    let p = start(&c).await;
    let mut bystander = p.conn().await;

    // Garbage instead of a handshake response: ERR 1043 and closed.
    let mut s = TcpStream::connect(("127.0.0.1", p.port)).await.unwrap();
    let mut buf = Vec::new();
    read_packet(&mut s, &mut buf, 1 << 20).await.unwrap();
    s.write_all(&[7, 0, 0, 1, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3])
        .await
        .unwrap();
    let got = closed_within(&mut s, Duration::from_secs(5)).await;
    assert!(
        got.len() > 4 && got[4] == 0xff,
        "expected an ERR, got {got:?}"
    );

    // Random bytes after authentication.
    let (mut s, ok) = raw_login(p.port, integration_tests::APP_PASSWORD).await;
    assert_eq!(ok[0], 0, "login OK");
    let noise: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let _ = s.write_all(&noise).await;
    // The noise may announce a long packet: the proxy waits for it until the client stops.
    let _ = s.shutdown().await;
    let _ = closed_within(&mut s, Duration::from_secs(10)).await;

    // A 0-length packet where a command should be.
    let (mut s, _) = raw_login(p.port, integration_tests::APP_PASSWORD).await;
    s.write_all(&[0, 0, 0, 0]).await.unwrap();
    let got = closed_within(&mut s, Duration::from_secs(5)).await;
    assert!(
        got.len() > 4 && got[4] == 0xff,
        "expected an ERR, got {got:?}"
    );

    // A packet claiming 16 MiB, then the client goes away.
    let (mut s, _) = raw_login(p.port, integration_tests::APP_PASSWORD).await;
    s.write_all(&[0xff, 0xff, 0xff, 0, 3, b'S', b'E', b'L'])
        .await
        .unwrap();
    drop(s);

    // Everyone else is unharmed.
    let one: i64 = bystander.query_first("SELECT 1").await.unwrap().unwrap();
    assert_eq!(one, 1);
    still_serves(&p).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_dying_mid_result_is_an_error_not_a_hang() {
    let Some(c) = cluster("backend_dying_mid_result_is_an_error_not_a_hang") else {
        return;
    };
    let p = start(&c).await;
    let mut conn = p.conn().await;
    conn.query_drop("BEGIN").await.unwrap();
    // The backend thread (CONNECTION_ID() answers the proxy's session id).
    let id: u64 = conn
        .query_first("SELECT @@pseudo_thread_id")
        .await
        .unwrap()
        .unwrap();
    let killer = {
        let c = c.admin_url(0);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(700)).await;
            let mut admin = integration_tests::mysql_async::Conn::from_url(c)
                .await
                .unwrap();
            admin
                .query_drop(format!("KILL CONNECTION {id}"))
                .await
                .unwrap();
        })
    };
    let started = Instant::now();
    let r: Result<Vec<(u64, i64)>, _> = conn
        .query("SELECT seq, SLEEP(0.002) FROM seq_1_to_5000")
        .await;
    killer.await.unwrap();
    assert!(r.is_err(), "the client must see an error");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "no hang: {:?}",
        started.elapsed()
    );
    drop(conn);
    still_serves(&p).await;
}
