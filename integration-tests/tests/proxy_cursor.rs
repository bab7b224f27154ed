//! Server-side cursors through the proxy with raw binary-protocol packets: COM_STMT_EXECUTE with
//! CURSOR_TYPE_READ_ONLY, then COM_STMT_FETCH in batches from the backend that holds the
//! cursor, with and without CLIENT_DEPRECATE_EOF; the session stays in step afterwards.

mod proxy_support;

use proxy::backend::handshake::{scramble, Greeting, Response};
use proxy::protocol::consts::{cap, status};
use proxy::protocol::message::{parse_eof_status, parse_ok};
use proxy::protocol::packet::{read_packet, write_packet};
use proxy_support::{cluster, start};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

async fn login(port: u16, deprecate_eof: bool) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut buf = Vec::new();
    read_packet(&mut s, &mut buf, 1 << 20).await.unwrap();
    let g = Greeting::parse(&buf).unwrap();
    let mut caps = cap::PROXY_OFFERS & !cap::CONNECT_ATTRS;
    if !deprecate_eof {
        caps &= !cap::DEPRECATE_EOF;
    }
    let r = Response {
        capabilities: caps,
        max_packet: 1 << 24,
        collation: 45,
        user: integration_tests::APP_USER.into(),
        auth: scramble(
            "mysql_native_password",
            &g.nonce,
            integration_tests::APP_PASSWORD,
        )
        .unwrap(),
        database: Some(integration_tests::TEST_DB.into()),
        auth_plugin: Some("mysql_native_password".into()),
        attrs: Vec::new(),
    };
    write_packet(&mut s, 1, &r.build()).await.unwrap();
    s.flush().await.unwrap();
    read_packet(&mut s, &mut buf, 1 << 20).await.unwrap();
    assert_eq!(buf[0], 0, "login: {buf:?}");
    s
}

async fn send(s: &mut TcpStream, payload: &[u8]) {
    write_packet(s, 0, payload).await.unwrap();
    s.flush().await.unwrap();
}

async fn packet(s: &mut TcpStream) -> Vec<u8> {
    let mut buf = Vec::new();
    read_packet(s, &mut buf, 1 << 24).await.unwrap();
    buf
}

/// Status of a packet ending rows (classic EOF or OK-with-0xFE).
fn end_status(p: &[u8]) -> u16 {
    if p.len() == 5 {
        parse_eof_status(p).unwrap()
    } else {
        parse_ok(p).unwrap().status
    }
}

async fn cursor_round(port: u16, deprecate_eof: bool) {
    let mut s = login(port, deprecate_eof).await;
    let mut prep = vec![0x16];
    prep.extend_from_slice(b"SELECT seq FROM seq_1_to_10");
    send(&mut s, &prep).await;
    let head = packet(&mut s).await;
    assert_eq!(head[0], 0, "prepare OK: {head:?}");
    let id = [head[1], head[2], head[3], head[4]];
    let columns = u16::from_le_bytes([head[5], head[6]]);
    assert_eq!(columns, 1);
    let _coldef = packet(&mut s).await;
    if !deprecate_eof {
        assert_eq!(packet(&mut s).await[0], 0xfe);
    }
    // Execute with a read-only cursor: metadata, then an end packet flagging the cursor.
    let mut exec = vec![0x17];
    exec.extend_from_slice(&id);
    exec.push(0x01);
    exec.extend_from_slice(&1u32.to_le_bytes());
    send(&mut s, &exec).await;
    assert_eq!(packet(&mut s).await, vec![1], "one column");
    let _coldef = packet(&mut s).await;
    let end = packet(&mut s).await;
    assert_eq!(end[0], 0xfe, "{end:?}");
    assert!(
        end_status(&end) & status::CURSOR_EXISTS != 0,
        "cursor opened: {end:?}"
    );
    // Fetch 4, then the rest.
    let mut rows = Vec::new();
    for batch in [4u32, 100] {
        let mut fetch = vec![0x1c];
        fetch.extend_from_slice(&id);
        fetch.extend_from_slice(&batch.to_le_bytes());
        send(&mut s, &fetch).await;
        loop {
            let p = packet(&mut s).await;
            assert_ne!(p[0], 0xff, "fetch error: {}", String::from_utf8_lossy(&p));
            if p[0] == 0xfe && p.len() < 9 + 4 {
                let st = end_status(&p);
                if batch == 100 {
                    assert!(st & status::LAST_ROW_SENT != 0, "last rows flagged: {p:?}");
                }
                break;
            }
            // Binary row: 0x00, null bitmap (1 byte for 1 column), then an 8-byte BIGINT.
            rows.push(u64::from_le_bytes(p[2..10].try_into().unwrap()));
        }
    }
    assert_eq!(
        rows,
        (1..=10).collect::<Vec<u64>>(),
        "deprecate_eof={deprecate_eof}"
    );
    // Close it and check the session is in step.
    let mut close = vec![0x19];
    close.extend_from_slice(&id);
    send(&mut s, &close).await;
    send(&mut s, b"\x03SELECT 7").await;
    assert_eq!(packet(&mut s).await, vec![1]);
    let _ = packet(&mut s).await;
    if !deprecate_eof {
        let _ = packet(&mut s).await;
    }
    assert_eq!(packet(&mut s).await, b"\x017".to_vec());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cursors_fetch_from_the_backend_that_opened_them() {
    let Some(c) = cluster("cursors_fetch_from_the_backend_that_opened_them") else {
        return;
    };
    let p = start(&c).await;
    cursor_round(p.port, true).await;
    cursor_round(p.port, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_data_reaches_the_backend_that_executes() {
    let Some(c) = cluster("long_data_reaches_the_backend_that_executes") else {
        return;
    };
    let p = start(&c).await;
    let mut s = login(p.port, true).await;
    let mut prep = vec![0x16];
    prep.extend_from_slice(b"SELECT CONCAT(?, '|', @@port)");
    send(&mut s, &prep).await;
    let head = packet(&mut s).await;
    assert_eq!(head[0], 0, "{head:?}");
    let id = [head[1], head[2], head[3], head[4]];
    let (columns, params) = (
        u16::from_le_bytes([head[5], head[6]]),
        u16::from_le_bytes([head[7], head[8]]),
    );
    for _ in 0..(columns + params) {
        let _ = packet(&mut s).await;
    }
    for round in 0..3 {
        for chunk in [&b"hello "[..], &b"world"[..]] {
            let mut ld = vec![0x18];
            ld.extend_from_slice(&id);
            ld.extend_from_slice(&0u16.to_le_bytes());
            ld.extend_from_slice(chunk);
            send(&mut s, &ld).await;
        }
        let mut exec = vec![0x17];
        exec.extend_from_slice(&id);
        exec.push(0);
        exec.extend_from_slice(&1u32.to_le_bytes());
        exec.push(0); // null bitmap
        exec.push(1); // new_params_bound_flag
        exec.extend_from_slice(&[0xfd, 0x00]); // VAR_STRING; value comes from long data
        send(&mut s, &exec).await;
        assert_eq!(packet(&mut s).await, vec![1], "round {round}");
        let _coldef = packet(&mut s).await;
        let row = packet(&mut s).await;
        assert_eq!(row[0], 0, "{row:?}");
        let text = String::from_utf8_lossy(&row[3..]).into_owned();
        let (value, port) = text.split_once('|').unwrap();
        assert_eq!(value, "hello world", "round {round}");
        let port: u16 = port.parse().unwrap();
        assert!(c.replica_ports().contains(&port), "a read: {port}");
        let end = packet(&mut s).await;
        assert_eq!(end[0], 0xfe);
    }
}
