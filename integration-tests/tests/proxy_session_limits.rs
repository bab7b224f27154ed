//! What a client cannot make a session hold: a packet over `proxy.max_allowed_packet` gets
//! ERR 1153 and the connection closes (others are served); prepares beyond
//! `proxy.max_prepared_statements` get ERR 1461 while earlier statements still execute; long
//! data past the bound fails the execution with the server's 1105 and the session goes on.
//! With mysql_async, PyMySQL, mysql-connector-python, and raw packets where a driver hides
//! the protocol step under test.

mod proxy_support;

use integration_tests::mysql_async::prelude::Queryable;
use integration_tests::mysql_async::{Error as MyError, Opts, OptsBuilder};
use proxy::backend::handshake::{scramble, Greeting, Response};
use proxy::protocol::consts::cap;
use proxy::protocol::message::parse_err;
use proxy::protocol::packet::{read_packet, write_packet};
use proxy_support::{cluster, run_ok, start_with, Proxy};
use std::path::PathBuf;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// A small `max_allowed_packet`, so the tests move little data.
const LIMIT: usize = 1 << 20;

fn limits(max_prepared: usize) -> String {
    format!("  max_allowed_packet: {LIMIT}\n  max_prepared_statements: {max_prepared}\n")
}

async fn still_serves(p: &Proxy) {
    let mut conn = p.conn().await;
    let one: i64 = conn.query_first("SELECT 1").await.unwrap().unwrap();
    assert_eq!(one, 1);
}

fn server_code(e: &MyError) -> Option<u16> {
    match e {
        MyError::Server(s) => Some(s.code),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_packet_over_max_allowed_packet_gets_1153_and_closes_only_that_session() {
    let Some(c) =
        cluster("a_packet_over_max_allowed_packet_gets_1153_and_closes_only_that_session")
    else {
        return;
    };
    let p = start_with(&c, &limits(16)).await;
    let mut bystander = p.conn().await;
    // Up to the limit is served.
    let mut conn = p.conn().await;
    let fits = format!("SELECT LENGTH('{}')", "a".repeat(LIMIT - 100));
    let n: i64 = conn.query_first(&fits).await.unwrap().unwrap();
    assert_eq!(n as usize, LIMIT - 100);
    // Over it: the server's error, in step, then the connection is gone. The client
    // declares a bigger max_allowed_packet of its own, which must not matter.
    let opts = OptsBuilder::from_opts(Opts::from_url(&p.url()).unwrap())
        .prefer_socket(false)
        .max_allowed_packet(Some(64 << 20));
    let mut conn = integration_tests::mysql_async::Conn::new(opts)
        .await
        .unwrap();
    let big = format!("SELECT '{}'", "x".repeat(2 * LIMIT));
    let err = conn.query_drop(&big).await.expect_err("refused");
    assert_eq!(server_code(&err), Some(1153), "{err}");
    assert!(
        err.to_string()
            .contains("Got a packet bigger than 'max_allowed_packet' bytes"),
        "{err}"
    );
    assert!(conn.query_drop("SELECT 1").await.is_err(), "closed");
    let one: i64 = bystander.query_first("SELECT 1").await.unwrap().unwrap();
    assert_eq!(one, 1);
    still_serves(&p).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepares_beyond_max_prepared_statements_get_1461() {
    let Some(c) = cluster("prepares_beyond_max_prepared_statements_get_1461") else {
        return;
    };
    let p = start_with(&c, &limits(3)).await;
    let mut conn = p.conn().await;
    let mut stmts = Vec::new();
    for i in 0..3 {
        stmts.push(conn.prep(format!("SELECT ? + {i}")).await.unwrap());
    }
    let err = conn.prep("SELECT ? + 3").await.expect_err("over the limit");
    match &err {
        MyError::Server(e) => {
            assert_eq!((e.code, e.state.as_str()), (1461, "42000"));
            assert_eq!(
                e.message,
                "Can't create more than max_prepared_stmt_count statements (current value: 3)"
            );
        }
        other => panic!("expected ERR 1461, got {other}"),
    }
    // The earlier statements still execute; closing one makes room.
    for (i, s) in stmts.iter().enumerate() {
        let v: i64 = conn.exec_first(s, (10,)).await.unwrap().unwrap();
        assert_eq!(v, 10 + i as i64);
    }
    let first = stmts.remove(0);
    conn.close(first).await.unwrap();
    let s = conn.prep("SELECT ? + 3").await.expect("room again");
    let v: i64 = conn.exec_first(&s, (10,)).await.unwrap().unwrap();
    assert_eq!(v, 13);
}

/// Logs in with raw packets (mysql_native_password); returns the stream after the OK.
async fn raw_login(port: u16) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut buf = Vec::new();
    read_packet(&mut s, &mut buf, 1 << 20).await.unwrap();
    let g = Greeting::parse(&buf).unwrap();
    let r = Response {
        capabilities: cap::PROXY_OFFERS & !cap::CONNECT_ATTRS,
        max_packet: 1 << 24,
        collation: 45,
        user: integration_tests::APP_USER.into(),
        auth: scramble(
            "mysql_native_password",
            &g.nonce,
            integration_tests::APP_PASSWORD,
        )
        .unwrap(),
        database: Some("rwsplit_test".into()),
        auth_plugin: Some("mysql_native_password".into()),
        attrs: Vec::new(),
    };
    write_packet(&mut s, 1, &r.build()).await.unwrap();
    s.flush().await.unwrap();
    read_packet(&mut s, &mut buf, 1 << 20).await.unwrap();
    assert_eq!(buf.first(), Some(&0), "logged in");
    s
}

async fn send(s: &mut TcpStream, p: &[u8]) {
    write_packet(s, 0, p).await.unwrap();
    s.flush().await.unwrap();
}

async fn read(s: &mut TcpStream) -> Vec<u8> {
    let mut buf = Vec::new();
    read_packet(s, &mut buf, 1 << 24).await.unwrap();
    buf
}

fn long_data(id: u32, len: usize) -> Vec<u8> {
    let mut p = vec![0x18];
    p.extend_from_slice(&id.to_le_bytes());
    p.extend_from_slice(&0u16.to_le_bytes());
    p.resize(7 + len, b'd');
    p
}

/// COM_STMT_EXECUTE of a one-parameter statement whose value came as long data (a BLOB).
fn execute(id: u32) -> Vec<u8> {
    let mut p = vec![0x17];
    p.extend_from_slice(&id.to_le_bytes());
    p.push(0); // no cursor
    p.extend_from_slice(&1u32.to_le_bytes());
    p.push(0); // NULL bitmap
    p.push(1); // types follow
    p.extend_from_slice(&[0xfc, 0]); // MYSQL_TYPE_BLOB
    p
}

/// Reads a one-row, one-integer binary result set (deprecate-EOF framing) and returns the
/// value (MariaDB types `LENGTH(?)` as INT, MySQL as BIGINT).
async fn read_one_int(s: &mut TcpStream) -> i64 {
    let first = read(s).await;
    assert_ne!(first.first(), Some(&0xff), "{:?}", parse_err(&first));
    assert_eq!(first, [1], "one column");
    read(s).await; // column definition
    let row = read(s).await;
    assert_eq!(row[0], 0, "binary row");
    let v = row[2..]
        .iter()
        .rev()
        .fold(0i64, |acc, b| (acc << 8) | i64::from(*b));
    let end = read(s).await;
    assert_eq!(end[0], 0xfe, "end of the result");
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_data_past_the_bound_fails_the_execution_and_the_session_goes_on() {
    let Some(c) = cluster("long_data_past_the_bound_fails_the_execution_and_the_session_goes_on")
    else {
        return;
    };
    let p = start_with(&c, &limits(16)).await;
    let mut s = raw_login(p.port).await;
    // Prepare `SELECT LENGTH(?)`: OK, one parameter definition, one column definition.
    send(&mut s, b"\x16SELECT LENGTH(?)").await;
    let ok = read(&mut s).await;
    assert_eq!(ok[0], 0, "{:?}", parse_err(&ok));
    let id = u32::from_le_bytes(ok[1..5].try_into().unwrap());
    read(&mut s).await;
    read(&mut s).await;

    // Within the bound: sent on with the execution.
    send(&mut s, &long_data(id, 300 * 1024)).await;
    send(&mut s, &long_data(id, 300 * 1024)).await;
    send(&mut s, &execute(id)).await;
    assert_eq!(read_one_int(&mut s).await, 600 * 1024);

    // Past it (two chunks that fit one packet each): the server's error, and again on the
    // next execution, until COM_STMT_RESET.
    send(&mut s, &long_data(id, 600 * 1024)).await;
    send(&mut s, &long_data(id, 600 * 1024)).await;
    for _ in 0..2 {
        send(&mut s, &execute(id)).await;
        let e = parse_err(&read(&mut s).await).expect("ERR");
        assert_eq!((e.code, e.state.as_str()), (1105, "HY000"));
        assert_eq!(
            e.message,
            "Parameter of prepared statement which is set through mysql_send_long_data() is \
             longer than 'max_allowed_packet' bytes"
        );
    }
    let mut reset = vec![0x1a];
    reset.extend_from_slice(&id.to_le_bytes());
    send(&mut s, &reset).await;
    assert_eq!(read(&mut s).await[0], 0, "reset OK");
    send(&mut s, &long_data(id, 1000)).await;
    send(&mut s, &execute(id)).await;
    assert_eq!(read_one_int(&mut s).await, 1000);
    send(&mut s, b"\x03SELECT 1").await;
    assert_eq!(read(&mut s).await, [1], "the session goes on");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_clients_meet_the_same_limits() {
    let Some(c) = cluster("python_clients_meet_the_same_limits") else {
        return;
    };
    let root = integration_tests::repo_root();
    let ok = std::process::Command::new("bash")
        .arg(root.join("integration-tests/clients/install.sh"))
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        assert!(
            std::env::var_os("CI").is_none()
                && std::env::var_os("RWSPLIT_REQUIRE_CLUSTER").is_none(),
            "client install failed"
        );
        eprintln!("!!!!!!!! SKIPPED: no python clients");
        return;
    }
    let py: PathBuf = root.join(".scratch/venv-clients/bin/python");
    let p = start_with(&c, &limits(16)).await;
    let script = root.join("integration-tests/clients/limits_check.py");
    let out = run_ok(
        &py.to_string_lossy(),
        &[
            &script.to_string_lossy(),
            &p.port.to_string(),
            &LIMIT.to_string(),
        ],
    )
    .await;
    let v: String = out
        .lines()
        .last()
        .unwrap_or_default()
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    assert!(v.contains("\"big_packet\":1153"), "{out}");
    assert!(v.contains("\"after_big_packet\":\"closed\""), "{out}");
    assert!(v.contains("\"long_data\":1105"), "{out}");
    assert!(
        v.contains(&format!("\"small_long_data\":{}", LIMIT / 4)),
        "{out}"
    );
    assert!(v.contains("\"session_after\":42"), "{out}");
    still_serves(&p).await;
}
