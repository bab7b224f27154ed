//! A session through the proxy behaves like a direct connection (issue: session integrity):
//! a vanished client's locks are free at once, a transaction never continues on another
//! connection, diagnostics and `SET TRANSACTION` survive pauses longer than the release delay,
//! sessions that wrote once give their primary connection back, long statements complete, and
//! SIGTERM lets open transactions finish but starts nothing new.

mod proxy_support;

use integration_tests::mysql_async::prelude::Queryable;
use integration_tests::mysql_async::{self, Conn};
use integration_tests::{Cluster, APP_PASSWORD, APP_USER, TEST_DB};
use proxy_support::{cluster, python_clients, start, start_with, Proxy};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

async fn setup_table(c: &Cluster, table: &str) {
    let mut admin = c.admin(0).await.expect("admin on the primary");
    admin
        .query_drop(format!(
            "CREATE TABLE IF NOT EXISTS {TEST_DB}.{table} (id INT PRIMARY KEY, v INT) ENGINE=InnoDB"
        ))
        .await
        .unwrap();
    admin
        .query_drop(format!("DELETE FROM {TEST_DB}.{table}"))
        .await
        .unwrap();
    admin
        .query_drop(format!(
            "INSERT INTO {TEST_DB}.{table} VALUES (1, 0), (2, 0)"
        ))
        .await
        .unwrap();
}

/// A direct connection to the primary as the application user.
async fn direct_primary(c: &Cluster) -> Conn {
    Conn::from_url(c.app_url(0).as_str())
        .await
        .expect("direct connection to the primary")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_clients_row_lock_is_free_at_once() {
    let Some(c) = cluster("a_killed_clients_row_lock_is_free_at_once") else {
        return;
    };
    setup_table(&c, "killed_lock").await;
    let p = start(&c).await;
    // The mariadb CLI reads statements from its standard input: it takes the row lock inside
    // a transaction and then waits for more input, like an application between statements.
    let port = p.port.to_string();
    let mut cli = tokio::process::Command::new("mariadb")
        .args([
            "-h",
            "127.0.0.1",
            "-P",
            &port,
            "-u",
            APP_USER,
            &format!("-p{APP_PASSWORD}"),
            "--protocol=tcp",
            TEST_DB,
            "-N",
            "-B",
            "--unbuffered",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("mariadb CLI runs");
    let mut stdin = cli.stdin.take().expect("stdin");
    stdin
        .write_all(b"BEGIN;\nUPDATE killed_lock SET v = 1 WHERE id = 1;\nSELECT 'locked';\n")
        .await
        .unwrap();
    stdin.flush().await.unwrap();
    let mut direct = direct_primary(&c).await;
    direct
        .query_drop("SET SESSION innodb_lock_wait_timeout = 10")
        .await
        .unwrap();
    // Wait until the CLI says its transaction holds the lock.
    let mut out = tokio::io::BufReader::new(cli.stdout.take().expect("stdout"));
    let mut line = String::new();
    tokio::time::timeout(Duration::from_secs(10), out.read_line(&mut line))
        .await
        .expect("the CLI answers within 10 s")
        .unwrap();
    assert_eq!(line.trim(), "locked");
    let trx: Vec<(u64, u64)> = direct
        .query("SELECT trx_mysql_thread_id, trx_rows_locked FROM information_schema.innodb_trx")
        .await
        .unwrap();
    assert_eq!(trx.len(), 1, "the CLI's transaction is open: {trx:?}");
    // The client dies without a word (kill -9): no COM_QUIT, no ROLLBACK.
    cli.start_kill().unwrap();
    let _ = cli.wait().await;
    let t = Instant::now();
    direct
        .query_drop("UPDATE killed_lock SET v = 2 WHERE id = 1")
        .await
        .expect("the lock is released when the client goes away");
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "waited {:?} for the dead client's lock",
        t.elapsed()
    );
    let v: i32 = direct
        .query_first("SELECT v FROM killed_lock WHERE id = 1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(v, 2, "the dead client's update was rolled back");
}

/// The server thread of the app connection that has an open InnoDB transaction.
async fn trx_thread(admin: &mut Conn) -> u64 {
    admin
        .query_first::<u64, _>(
            "SELECT trx_mysql_thread_id FROM information_schema.innodb_trx ORDER BY trx_started DESC LIMIT 1",
        )
        .await
        .unwrap()
        .expect("an open transaction")
}

fn server_code(e: &mysql_async::Error) -> Option<u16> {
    match e {
        mysql_async::Error::Server(s) => Some(s.code),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_whose_connection_dies_errors_and_commits_nothing() {
    let Some(c) = cluster("a_transaction_whose_connection_dies_errors_and_commits_nothing") else {
        return;
    };
    setup_table(&c, "lost_trx").await;
    let p = start(&c).await;
    let mut conn = p.conn().await;
    conn.query_drop("BEGIN").await.unwrap();
    conn.query_drop("INSERT INTO lost_trx VALUES (10, 1)")
        .await
        .unwrap();
    // The server side of the session's connection goes away (a crash, a network cut, a DBA's
    // KILL), and the client pauses longer than the release delay.
    let mut admin = c.admin(0).await.unwrap();
    let thread = trx_thread(&mut admin).await;
    admin.query_drop(format!("KILL {thread}")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;

    let e = conn
        .query_drop("INSERT INTO lost_trx VALUES (11, 1)")
        .await
        .expect_err("the rest of the transaction must not run elsewhere");
    assert!(
        e.to_string().contains("rolled back"),
        "the error says the transaction was rolled back: {e}"
    );
    let e = conn
        .query_drop("INSERT INTO lost_trx VALUES (12, 1)")
        .await
        .expect_err("still inside the aborted transaction");
    assert!(e.to_string().contains("ROLLBACK"), "{e}");
    let e = conn
        .query_drop("COMMIT")
        .await
        .expect_err("nothing to commit");
    assert_eq!(server_code(&e), Some(1180), "{e}");
    let n: u64 = admin
        .query_first(format!(
            "SELECT COUNT(*) FROM {TEST_DB}.lost_trx WHERE id >= 10"
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n, 0, "no part of the interrupted transaction was committed");

    // After the COMMIT the session works again, in autocommit, on a new connection.
    conn.query_drop("INSERT INTO lost_trx VALUES (13, 1)")
        .await
        .unwrap();
    let n: u64 = admin
        .query_first(format!(
            "SELECT COUNT(*) FROM {TEST_DB}.lost_trx WHERE id = 13"
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n, 1);

    // ROLLBACK ends an aborted transaction quietly, like a rolled-back one.
    conn.query_drop("BEGIN").await.unwrap();
    conn.query_drop("UPDATE lost_trx SET v = 5 WHERE id = 13")
        .await
        .unwrap();
    let thread = trx_thread(&mut admin).await;
    admin.query_drop(format!("KILL {thread}")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(conn
        .query_drop("UPDATE lost_trx SET v = 6 WHERE id = 13")
        .await
        .is_err());
    conn.query_drop("ROLLBACK").await.unwrap();
    let v: i32 = conn
        .query_first("SELECT v FROM lost_trx WHERE id = 13")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(v, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_interrupted_by_a_writer_change_errors_and_commits_nothing() {
    let Some(c) = Cluster::private_or_skip(
        "a_transaction_interrupted_by_a_writer_change_errors_and_commits_nothing",
    ) else {
        return;
    };
    setup_table(&c, "writer_change").await;
    c.wait_replicas_caught_up(Duration::from_secs(10))
        .await
        .unwrap();
    let p = start(&c).await;
    let mut conn = p.conn().await;
    conn.query_drop("BEGIN").await.unwrap();
    conn.query_drop("INSERT INTO writer_change VALUES (20, 1)")
        .await
        .unwrap();

    // An external failover: the old primary becomes read-only, replica 2 stops replicating
    // and becomes writable. The proxy's monitor follows within its interval.
    c.admin_exec(0, "SET GLOBAL read_only = 1").await.unwrap();
    c.admin_exec(2, "STOP SLAVE").await.unwrap();
    c.admin_exec(2, "RESET SLAVE ALL").await.unwrap();
    c.admin_exec(2, "SET GLOBAL read_only = 0").await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while p.ctx.topology().primary() != Some(2) {
        assert!(
            Instant::now() < deadline,
            "the proxy never followed the new writer"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let e = conn
        .query_drop("INSERT INTO writer_change VALUES (21, 1)")
        .await
        .expect_err("the transaction must not continue on the new writer");
    assert!(
        e.to_string().contains("writer changed") && e.to_string().contains("rolled back"),
        "{e}"
    );
    assert_eq!(
        server_code(
            &conn
                .query_drop("COMMIT")
                .await
                .expect_err("nothing committed")
        ),
        Some(1180)
    );
    for server in [0, 2] {
        let mut admin = c.admin(server).await.unwrap();
        let n: u64 = admin
            .query_first(format!(
                "SELECT COUNT(*) FROM {TEST_DB}.writer_change WHERE id >= 20"
            ))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            n, 0,
            "server {server} has part of the interrupted transaction"
        );
    }
    // The session goes on, on the new writer.
    conn.query_drop("INSERT INTO writer_change VALUES (22, 1)")
        .await
        .unwrap();
    let port: u16 = conn
        .query_first("/* rwsplit:primary */ SELECT @@port")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(port, c.port(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diagnostics_answer_after_a_pause_longer_than_the_release_delay() {
    let Some(c) = cluster("diagnostics_answer_after_a_pause_longer_than_the_release_delay") else {
        return;
    };
    let p = start_with(&c, "  pool:\n    release_delay_ms: 100\n").await;
    let mut conn = p.conn().await;
    for _ in 0..2 {
        let v: Option<Option<i64>> = conn.query_first("SELECT 1/0").await.unwrap();
        assert_eq!(v, Some(None));
        tokio::time::sleep(Duration::from_millis(600)).await;
        let w: Vec<(String, u32, String)> = conn.query("SHOW WARNINGS").await.unwrap();
        assert_eq!(w.len(), 1, "{w:?}");
        assert_eq!(w[0].1, 1365, "division by zero: {w:?}");
        let n: u64 = conn
            .query_first("SELECT @@warning_count")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(n, 1);
    }
    let e = conn
        .query_drop("SELECT * FROM no_such_table_here")
        .await
        .expect_err("no such table");
    assert_eq!(server_code(&e), Some(1146));
    tokio::time::sleep(Duration::from_millis(600)).await;
    let errors: Vec<(String, u32, String)> = conn.query("SHOW ERRORS").await.unwrap();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].1, 1146);
    // A clean statement clears them, as on a server, and its connection may go back.
    let _: Option<u8> = conn.query_first("SELECT 1").await.unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let w: Vec<(String, u32, String)> = conn.query("SHOW WARNINGS").await.unwrap();
    assert!(w.is_empty(), "{w:?}");

    // ROW_COUNT() of a write, after its connection went back to the pool.
    setup_table(&c, "row_count_t").await;
    conn.query_drop("UPDATE row_count_t SET v = v + 1")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let n: i64 = conn
        .query_first("SELECT ROW_COUNT()")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n, 2, "the UPDATE changed two rows");
    let n: i64 = conn
        .query_first("SELECT ROW_COUNT()")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n, -1, "after a SELECT, as on a server");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_transaction_survives_a_pause_before_begin() {
    let Some(c) = cluster("set_transaction_survives_a_pause_before_begin") else {
        return;
    };
    setup_table(&c, "next_trx").await;
    let p = start_with(&c, "  pool:\n    release_delay_ms: 100\n").await;
    let mut conn = p.conn().await;
    conn.query_drop("SET TRANSACTION READ ONLY").await.unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    conn.query_drop("BEGIN").await.unwrap();
    let e = conn
        .query_drop("UPDATE next_trx SET v = 9 WHERE id = 1")
        .await
        .expect_err("the next transaction is read only");
    assert_eq!(server_code(&e), Some(1792), "{e}");
    conn.query_drop("COMMIT").await.unwrap();
    // Only the next transaction: the one after it may write.
    conn.query_drop("UPDATE next_trx SET v = 9 WHERE id = 1")
        .await
        .unwrap();
}

/// Connections the proxy holds for sessions (in use or pinned) to the server named `name`.
fn held_by_sessions(p: &Proxy, name: &str) -> i64 {
    let b = p.ctx.backend(name).expect("backend");
    b.metrics().connections_in_use.get() + b.metrics().connections_pinned.get()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_that_wrote_once_give_their_primary_connection_back() {
    let Some(c) = cluster("sessions_that_wrote_once_give_their_primary_connection_back") else {
        return;
    };
    let mut admin = c.admin(0).await.unwrap();
    admin
        .query_drop(format!(
            "CREATE TABLE IF NOT EXISTS {TEST_DB}.write_once (id INT AUTO_INCREMENT PRIMARY KEY, v INT)"
        ))
        .await
        .unwrap();
    let p = start_with(&c, "  pool:\n    release_delay_ms: 200\n").await;
    // 1,000 in `make test`; RWSPLIT_WRITE_ONCE_SESSIONS=5000 for the full figure.
    let sessions_wanted: usize = std::env::var("RWSPLIT_WRITE_ONCE_SESSIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let mut sessions = Vec::with_capacity(sessions_wanted);
    for chunk in 0..sessions_wanted / 50 {
        let mut batch = Vec::new();
        for _ in 0..50 {
            // No switch to the server's Unix socket: every session goes through the proxy.
            let url = format!("{}?prefer_socket=false", p.url());
            batch.push(tokio::spawn(async move {
                let mut conn = Conn::from_url(url.as_str()).await.expect("connect");
                conn.query_drop("INSERT INTO write_once (v) VALUES (1)")
                    .await
                    .expect("insert");
                conn
            }));
        }
        for t in batch {
            sessions.push(t.await.expect("session task"));
        }
        assert!(chunk < sessions_wanted / 50);
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let held = held_by_sessions(&p, "primary");
    eprintln!("{sessions_wanted} idle write-once sessions hold {held} primary connections");
    assert!(
        held <= 8.max(sessions_wanted as i64 / 100),
        "{sessions_wanted} idle sessions that each wrote once hold {held} primary connections"
    );
    // Each session still sees its own LAST_INSERT_ID().
    let mut ids = std::collections::HashSet::new();
    for conn in sessions.iter_mut().take(20) {
        let id: u64 = conn
            .query_first("SELECT LAST_INSERT_ID()")
            .await
            .unwrap()
            .unwrap();
        assert!(
            id > 0 && ids.insert(id),
            "LAST_INSERT_ID() {id} repeated or 0"
        );
    }
    for conn in sessions {
        let _ = conn.disconnect().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pooled_connections_are_reused_without_leaking_state() {
    let Some(c) = cluster("pooled_connections_are_reused_without_leaking_state") else {
        return;
    };
    let p = start_with(&c, "  pool:\n    release_delay_ms: 0\n").await;
    let mut a = p.conn().await;
    a.query_drop("SET time_zone = '+05:00', sql_mode = 'ANSI_QUOTES'")
        .await
        .unwrap();
    a.query_drop("SET @secret = 42").await.unwrap();
    let mut seen = std::collections::HashSet::new();
    for _ in 0..6 {
        // Thread ids are per server: a connection is (port, thread).
        let (tz, mode, port, thread): (String, String, u16, u64) = a
            .query_first("SELECT @@time_zone, @@sql_mode, @@port, @@pseudo_thread_id")
            .await
            .unwrap()
            .unwrap();
        assert_eq!((tz.as_str(), mode.as_str()), ("+05:00", "ANSI_QUOTES"));
        seen.insert((port, thread));
    }
    // The user variable pins A's primary connection; it goes back when A leaves.
    let (secret, port, thread): (i64, u16, u64) = a
        .query_first("SELECT @secret, @@port, @@pseudo_thread_id")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(secret, 42);
    seen.insert((port, thread));
    let _ = a.disconnect().await;
    let mut reused = false;
    for _ in 0..6 {
        let mut b = p.conn().await;
        let (tz, mode, port, thread): (String, String, u16, u64) = b
            .query_first("SELECT @@time_zone, @@sql_mode, @@port, @@pseudo_thread_id")
            .await
            .unwrap()
            .unwrap();
        assert_ne!(tz, "+05:00", "time_zone leaked between clients");
        assert_ne!(mode, "ANSI_QUOTES", "sql_mode leaked between clients");
        reused |= seen.contains(&(port, thread));
        let (var, port, thread): (Option<i64>, u16, u64) = b
            .query_first("SELECT @secret, @@port, @@pseudo_thread_id")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(var, None, "a user variable leaked between clients");
        reused |= seen.contains(&(port, thread));
        let _ = b.disconnect().await;
    }
    assert!(
        reused,
        "no backend connection of the first client served a later one: the test proves nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_longer_than_the_read_timeout_completes_and_is_not_a_failure() {
    let Some(c) =
        cluster("a_statement_longer_than_the_read_timeout_completes_and_is_not_a_failure")
    else {
        return;
    };
    let p = start_with(&c, "  pool:\n    read_timeout_ms: 500\n").await;
    let mut conn = p.conn().await;
    let replica_ports = c.replica_ports();
    for _ in 0..3 {
        let t = Instant::now();
        let (slept, port): (i64, u16) = conn
            .query_first("SELECT SLEEP(1.5), @@port")
            .await
            .expect("a slow read completes")
            .unwrap();
        assert_eq!(slept, 0);
        assert!(replica_ports.contains(&port));
        assert!(
            t.elapsed() < Duration::from_millis(2900),
            "run once, not retried"
        );
    }
    for b in p.ctx.backends().iter() {
        assert_eq!(
            b.breaker_state(),
            "closed",
            "{} ejected for slowness",
            b.name()
        );
        assert_eq!(b.metrics().errors_timeout.get(), 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_an_open_transaction_finish_and_starts_nothing_new() {
    let Some(c) = cluster("sigterm_lets_an_open_transaction_finish_and_starts_nothing_new") else {
        return;
    };
    setup_table(&c, "shutdown_trx").await;
    let p = start(&c).await;
    let mut in_trx = p.conn().await;
    let mut idle = p.conn().await;
    in_trx.query_drop("BEGIN").await.unwrap();
    in_trx
        .query_drop("UPDATE shutdown_trx SET v = 7 WHERE id = 2")
        .await
        .unwrap();
    p.ctx.begin_shutdown();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The idle session is closed: its next statement fails.
    assert!(idle.query_drop("SELECT 1").await.is_err());
    // The transaction may finish...
    in_trx
        .query_drop("UPDATE shutdown_trx SET v = 8 WHERE id = 2")
        .await
        .unwrap();
    in_trx.query_drop("COMMIT").await.unwrap();
    // ...and nothing starts after it.
    assert!(in_trx.query_drop("BEGIN").await.is_err());
    let mut admin = c.admin(0).await.unwrap();
    let v: i32 = admin
        .query_first(format!("SELECT v FROM {TEST_DB}.shutdown_trx WHERE id = 2"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(v, 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_cut_off_and_frees_its_backend() {
    let Some(c) = cluster("a_client_that_stops_reading_is_cut_off_and_frees_its_backend") else {
        return;
    };
    let Some(py) = python_clients() else {
        return;
    };
    let root = integration_tests::repo_root();
    let p = start_with(&c, "  client_write_timeout_ms: 1000\n").await;
    let mut client = tokio::process::Command::new(py)
        .arg(root.join("integration-tests/clients/stalled_reader.py"))
        .arg(p.port.to_string())
        .arg("6")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python runs");
    let mut out = tokio::io::BufReader::new(client.stdout.take().expect("stdout"));
    let mut line = String::new();
    tokio::time::timeout(Duration::from_secs(20), out.read_line(&mut line))
        .await
        .expect("the client starts its read")
        .unwrap();
    assert!(line.contains("stalled"), "{line}");
    let in_use = || -> i64 {
        p.ctx
            .backends()
            .iter()
            .map(|b| b.metrics().connections_in_use.get() + b.metrics().connections_pinned.get())
            .sum()
    };
    assert!(in_use() >= 1, "the read holds a backend connection");
    // Within the limit and some slack, the session is closed and its connection freed, while
    // the client still sleeps.
    let t = Instant::now();
    while in_use() > 0 {
        assert!(
            t.elapsed() < Duration::from_secs(4),
            "a client that stopped reading still holds a backend connection"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    line.clear();
    out.read_line(&mut line).await.unwrap();
    assert!(
        line.contains("\"rest\": \"error"),
        "the client sees its connection gone: {line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_timeout_cancels_the_statement_on_its_server() {
    let Some(c) = cluster("query_timeout_cancels_the_statement_on_its_server") else {
        return;
    };
    let p = start_with(&c, "  query_timeout_ms: 1000\n").await;
    let mut conn = p.conn().await;
    let t = Instant::now();
    let e = conn
        .query_drop("/* rwsplit:primary */ SELECT SUM(CRC32(seq)) FROM seq_1_to_1000000000")
        .await
        .expect_err("cancelled");
    assert_eq!(server_code(&e), Some(1317), "{e}");
    assert!(
        t.elapsed() < Duration::from_millis(2500),
        "cancelled after {:?}",
        t.elapsed()
    );
    // Gone from the server, not left running.
    let mut admin = c.admin(0).await.unwrap();
    let running: u64 = admin
        .query_first("SELECT COUNT(*) FROM information_schema.processlist WHERE info LIKE '%SUM(CRC32(seq)) FROM seq_1_to_1000000000'")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(running, 0);
    assert_eq!(p.ctx.metrics.query_timeouts.get(), 1);
    // The session goes on; quick statements are untouched; nothing was ejected.
    let v: u8 = conn.query_first("SELECT 1").await.unwrap().unwrap();
    assert_eq!(v, 1);
    for b in p.ctx.backends().iter() {
        assert_eq!(b.breaker_state(), "closed");
    }
}
