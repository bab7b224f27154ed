//! COM_CHANGE_USER through the proxy with real clients: to a second configured user with
//! mysql_async, mysql-connector-python (mysql_native_password and caching_sha2_password) and
//! Node mysql2; a wrong password gets ERR 1045 and ends the session; a client that stops
//! answering in the middle of the exchange is cut off after the handshake timeout.

mod proxy_support;

use integration_tests::mysql_async::prelude::Queryable;
use integration_tests::mysql_async::{ChangeUserOpts, Error as MyError};
use integration_tests::Cluster;
use proxy::backend::handshake::{scramble, Greeting, Response};
use proxy::protocol::consts::cap;
use proxy::protocol::packet::{read_packet, write_packet};
use proxy_support::{cluster, run_ok, start_with, Proxy};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A second application account, created on the servers by [`second_user`].
const USER2: &str = "app2";
const PASSWORD2: &str = "app2-password";

/// Creates [`USER2`] on the primary (replicated to the replicas) if it is not there yet, and
/// returns the proxy configuration lines that add it to `proxy.users`.
async fn second_user(c: &Cluster) -> String {
    c.admin_exec(
        0,
        &format!(
            "CREATE USER IF NOT EXISTS '{USER2}'@'%' IDENTIFIED BY '{PASSWORD2}'; \
             GRANT SELECT, INSERT, UPDATE, DELETE, CREATE ON rwsplit_test.* TO '{USER2}'@'%'"
        ),
    )
    .await
    .expect("create the second user");
    c.wait_replicas_caught_up(Duration::from_secs(30))
        .await
        .expect("replicas have the second user");
    // Continues the `users:` list the test configuration ends with.
    format!("    - name: {USER2}\n      password: {PASSWORD2}\n")
}

fn clients_dir() -> PathBuf {
    integration_tests::repo_root().join("integration-tests/clients")
}

fn required() -> bool {
    std::env::var_os("CI").is_some() || std::env::var_os("RWSPLIT_REQUIRE_CLUSTER").is_some()
}

/// The client venv's python after `install.sh` (idempotent), or `None` (skip) outside CI.
fn python_clients() -> Option<String> {
    let ok = std::process::Command::new("bash")
        .arg(clients_dir().join("install.sh"))
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        assert!(!required(), "integration-tests/clients/install.sh failed");
        eprintln!("!!!!!!!! SKIPPED: client libraries could not be installed");
        return None;
    }
    Some(
        integration_tests::repo_root()
            .join(".scratch/venv-clients/bin/python")
            .to_string_lossy()
            .into_owned(),
    )
}

/// A client's JSON verdict without spaces, to match fields in either style.
fn compact(out: &str) -> String {
    out.lines()
        .last()
        .unwrap_or_default()
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect()
}

async fn still_serves(p: &Proxy) {
    let mut conn = p.conn().await;
    let one: i64 = conn.query_first("SELECT 1").await.unwrap().unwrap();
    assert_eq!(one, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_user_with_mysql_async_and_a_wrong_password_ends_the_session() {
    let Some(c) = cluster("change_user_with_mysql_async_and_a_wrong_password_ends_the_session")
    else {
        return;
    };
    let p = start_with(&c, &second_user(&c).await).await;
    let mut conn = p.conn().await;
    // State of the first user must not survive the change.
    conn.query_drop("SET @who = 'app'").await.unwrap();
    conn.change_user(
        ChangeUserOpts::default()
            .with_user(Some(USER2.into()))
            .with_pass(Some(PASSWORD2.into()))
            .with_db_name(Some("rwsplit_test".into())),
    )
    .await
    .expect("change to the second user");
    let (user, who): (String, Option<String>) = conn
        .query_first("SELECT CURRENT_USER(), @who")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((user.as_str(), who), ("app2@%", None));
    // A read on a replica and a write on the primary run as the new user.
    conn.query_drop("CREATE TABLE IF NOT EXISTS change_user_t (id INT PRIMARY KEY)")
        .await
        .unwrap();
    conn.query_drop("REPLACE INTO change_user_t VALUES (1)")
        .await
        .unwrap();

    let err = conn
        .change_user(
            ChangeUserOpts::default()
                .with_user(Some(integration_tests::APP_USER.into()))
                .with_pass(Some("wrong-password".into())),
        )
        .await
        .expect_err("a wrong password is refused");
    match &err {
        MyError::Server(e) => {
            assert_eq!(e.code, 1045, "{err}");
            assert_eq!(
                e.message,
                "Access denied for user 'app'@'127.0.0.1' (using password: YES)"
            );
        }
        other => panic!("expected ERR 1045, got {other}"),
    }
    let after: Result<Option<i64>, _> = conn.query_first("SELECT 1").await;
    assert!(after.is_err(), "the session ends after a failed change");
    still_serves(&p).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_user_with_python_and_node_clients() {
    let Some(c) = cluster("change_user_with_python_and_node_clients") else {
        return;
    };
    let Some(py) = python_clients() else {
        return;
    };
    let p = start_with(&c, &second_user(&c).await).await;
    let port = p.port.to_string();
    let script = clients_dir().join("change_user_check.py");
    let script = script.to_string_lossy();
    for plugin in ["mysql_native_password", "caching_sha2_password"] {
        let out = run_ok(&py, &[&script, &port, plugin, USER2, PASSWORD2]).await;
        let v = compact(&out);
        assert!(v.contains("\"before\":\"app@%\""), "{plugin}: {out}");
        assert!(v.contains("\"after\":\"app2@%\""), "{plugin}: {out}");
        assert!(v.contains("\"db\":\"rwsplit_test\""), "{plugin}: {out}");
        assert!(v.contains("\"wrong\":1045"), "{plugin}: {out}");
        assert!(v.contains("\"after_wrong\":\"closed\""), "{plugin}: {out}");
    }
    let node = clients_dir().join("node");
    if node.join("node_modules/mysql2").exists() {
        let out = run_ok(
            "node",
            &[
                &node.join("change_user.js").to_string_lossy(),
                &port,
                USER2,
                PASSWORD2,
            ],
        )
        .await;
        let v = compact(&out);
        assert!(v.contains("\"after\":\"app2@%\""), "node: {out}");
        assert!(v.contains("\"wrong\":1045"), "node: {out}");
        assert!(v.contains("\"after_wrong\":\"closed\""), "node: {out}");
    } else {
        assert!(!required(), "node mysql2 is not installed");
        eprintln!("!!!!!!!! SKIPPED node mysql2: npm install did not run");
    }
    still_serves(&p).await;
}

/// Logs in as app with raw packets (mysql_native_password); returns the stream after the OK.
async fn raw_login(port: u16) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut buf = Vec::new();
    read_packet(&mut s, &mut buf, 1 << 20).await.unwrap();
    let g = Greeting::parse(&buf).unwrap();
    let login = Response {
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
    write_packet(&mut s, 1, &login.build()).await.unwrap();
    s.flush().await.unwrap();
    read_packet(&mut s, &mut buf, 1 << 20).await.unwrap();
    assert_eq!(buf.first(), Some(&0), "logged in");
    s
}

/// COM_CHANGE_USER to [`USER2`]: user, auth data (against no nonce the proxy sent), database,
/// collation, the plugin named.
fn change_user_packet(plugin: &str) -> Vec<u8> {
    let mut cu = vec![0x11];
    cu.extend_from_slice(USER2.as_bytes());
    cu.push(0);
    cu.push(20);
    cu.extend_from_slice(&[7; 20]);
    cu.extend_from_slice(b"rwsplit_test\0");
    cu.extend_from_slice(&[45, 0]);
    cu.extend_from_slice(plugin.as_bytes());
    cu.push(0);
    cu
}

/// The switch is to the plugin the client names, and caching_sha2_password then takes its
/// fast path (`0x01 0x03`) before the OK, as on a MySQL 8 server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_user_naming_caching_sha2_gets_its_fast_path() {
    let Some(c) = cluster("change_user_naming_caching_sha2_gets_its_fast_path") else {
        return;
    };
    let p = start_with(&c, &second_user(&c).await).await;
    let mut s = raw_login(p.port).await;
    let plugin = "caching_sha2_password";
    write_packet(&mut s, 0, &change_user_packet(plugin))
        .await
        .unwrap();
    s.flush().await.unwrap();
    let mut buf = Vec::new();
    let seq = read_packet(&mut s, &mut buf, 1 << 20).await.unwrap();
    assert_eq!(seq, 1);
    let name_end = 1 + plugin.len();
    assert_eq!(
        (buf[0], &buf[1..name_end], buf[name_end]),
        (0xfe, plugin.as_bytes(), 0),
        "auth switch to {plugin}"
    );
    let nonce = buf[name_end + 1..].strip_suffix(&[0]).unwrap().to_vec();
    assert_eq!(nonce.len(), 20);
    let answer = scramble(plugin, &nonce, PASSWORD2).unwrap();
    write_packet(&mut s, 2, &answer).await.unwrap();
    s.flush().await.unwrap();
    let seq = read_packet(&mut s, &mut buf, 1 << 20).await.unwrap();
    assert_eq!((seq, buf.as_slice()), (3, &[0x01, 0x03][..]), "fast path");
    let seq = read_packet(&mut s, &mut buf, 1 << 20).await.unwrap();
    assert_eq!((seq, buf[0]), (4, 0), "OK");
    // The session now runs as the new user.
    write_packet(&mut s, 0, b"\x03SELECT CURRENT_USER()")
        .await
        .unwrap();
    s.flush().await.unwrap();
    let mut packets = Vec::new();
    loop {
        read_packet(&mut s, &mut buf, 1 << 20).await.unwrap();
        if buf[0] == 0xfe && buf.len() < 0xffffff {
            break;
        }
        packets.push(buf.clone());
    }
    let row = packets.last().unwrap();
    assert_eq!(&row[1..], b"app2@%", "{packets:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_silent_in_the_middle_of_change_user_is_cut_off() {
    let Some(c) = cluster("a_client_silent_in_the_middle_of_change_user_is_cut_off") else {
        return;
    };
    let p = start_with(&c, &second_user(&c).await).await;
    let mut bystander = p.conn().await;

    let mut s = raw_login(p.port).await;
    let mut buf = Vec::new();

    // COM_CHANGE_USER: user, auth data, database, collation, plugin.
    write_packet(&mut s, 0, &change_user_packet("mysql_native_password"))
        .await
        .unwrap();
    s.flush().await.unwrap();
    read_packet(&mut s, &mut buf, 1 << 20).await.unwrap();
    assert_eq!(buf.first(), Some(&0xfe), "an auth switch request");
    let asked = Instant::now();

    // Say nothing more: the proxy gives up after its handshake timeout (10 s).
    let mut chunk = [0u8; 256];
    let r = tokio::time::timeout(Duration::from_secs(20), s.read(&mut chunk)).await;
    let waited = asked.elapsed();
    assert!(
        matches!(r, Ok(Ok(0)) | Ok(Err(_))),
        "closed, not answered: {r:?}"
    );
    assert!(
        waited >= Duration::from_secs(9) && waited < Duration::from_secs(15),
        "cut off after the handshake timeout, not {waited:?}"
    );
    let one: i64 = bystander.query_first("SELECT 1").await.unwrap().unwrap();
    assert_eq!(one, 1);
    still_serves(&p).await;
}
