//! End-to-end routing through the proxy against a real primary with two replicas: writes land on
//! the primary, autocommit reads spread over the replicas, and every DESIGN.md §7 pitfall gives
//! the right answer from the right server.

mod proxy_support;

use integration_tests::mysql_async::prelude::Queryable;
use proxy_support::{cluster, port_of, start, start_with};
use std::collections::HashSet;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_go_to_replicas_and_writes_to_the_primary() {
    let Some(c) = cluster("reads_go_to_replicas_and_writes_to_the_primary") else {
        return;
    };
    let p = start(&c).await;
    let mut conn = p.conn().await;
    let mut seen = HashSet::new();
    for _ in 0..40 {
        seen.insert(port_of(&mut conn, "SELECT @@port").await);
    }
    let replicas: HashSet<u16> = c.replica_ports().into_iter().collect();
    assert_eq!(
        seen, replicas,
        "autocommit reads must spread over both replicas only"
    );

    conn.query_drop("CREATE TABLE IF NOT EXISTS proxy_routing (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(20), port INT)")
        .await
        .unwrap();
    conn.query_drop("INSERT INTO proxy_routing (v, port) VALUES ('w', @@port)")
        .await
        .unwrap();
    let id: u64 = conn
        .query_first("SELECT LAST_INSERT_ID()")
        .await
        .unwrap()
        .unwrap();
    assert!(id > 0);
    let mut admin = c.admin(0).await.unwrap();
    let port: Option<u16> = admin
        .query_first(format!(
            "SELECT port FROM rwsplit_test.proxy_routing WHERE id = {id}"
        ))
        .await
        .unwrap();
    assert_eq!(port, Some(c.primary_port()), "the write ran on the primary");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn design_pitfalls_give_the_right_answer_from_the_right_server() {
    let Some(c) = cluster("design_pitfalls_give_the_right_answer_from_the_right_server") else {
        return;
    };
    let p = start(&c).await;
    let primary = c.primary_port();
    let mut conn = p.conn().await;
    conn.query_drop(
        "CREATE TABLE IF NOT EXISTS pitfalls (id INT AUTO_INCREMENT PRIMARY KEY, v INT)",
    )
    .await
    .unwrap();

    // LAST_INSERT_ID() after an INSERT returns the id, from the primary.
    conn.query_drop("INSERT INTO pitfalls (v) VALUES (1)")
        .await
        .unwrap();
    let id: u64 = conn
        .query_first("SELECT LAST_INSERT_ID()")
        .await
        .unwrap()
        .unwrap();
    let max: u64 = c
        .admin(0)
        .await
        .unwrap()
        .query_first("SELECT MAX(id) FROM rwsplit_test.pitfalls")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(id, max, "LAST_INSERT_ID() must return the session's own id");

    // `INSERT ...; SELECT LAST_INSERT_ID()` as one multi-statement packet.
    let mut results = conn
        .query_iter("INSERT INTO pitfalls (v) VALUES (2); SELECT LAST_INSERT_ID(), @@port")
        .await
        .unwrap();
    let _ = results
        .collect::<integration_tests::mysql_async::Row>()
        .await
        .unwrap();
    let rows: Vec<(u64, u16)> = results.collect().await.unwrap();
    drop(results);
    assert_eq!(rows.len(), 1);
    assert!(rows[0].0 > id, "multi-statement LAST_INSERT_ID: {rows:?}");
    assert_eq!(rows[0].1, primary);

    // A temporary table is readable by the session that created it.
    conn.query_drop("CREATE TEMPORARY TABLE tmp_pitfall (x INT)")
        .await
        .unwrap();
    conn.query_drop("INSERT INTO tmp_pitfall VALUES (7), (8)")
        .await
        .unwrap();
    let n: u64 = conn
        .query_first("SELECT COUNT(*) FROM tmp_pitfall")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n, 2);
    conn.query_drop("DROP TEMPORARY TABLE tmp_pitfall")
        .await
        .unwrap();

    // SELECT ... FOR UPDATE runs on the primary.
    assert_eq!(
        port_of(&mut conn, "SELECT @@port FROM pitfalls LIMIT 1 FOR UPDATE").await,
        primary
    );

    // After SET autocommit=0 a SELECT sees the session's own uncommitted row (primary).
    conn.query_drop("SET autocommit=0").await.unwrap();
    conn.query_drop("INSERT INTO pitfalls (v) VALUES (424242)")
        .await
        .unwrap();
    let n: u64 = conn
        .query_first("SELECT COUNT(*) FROM pitfalls WHERE v = 424242")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n, 1, "own uncommitted row must be visible");
    assert_eq!(port_of(&mut conn, "SELECT @@port").await, primary);
    conn.query_drop("ROLLBACK").await.unwrap();
    conn.query_drop("SET autocommit=1").await.unwrap();

    // Explicit transactions stay on the primary.
    conn.query_drop("BEGIN").await.unwrap();
    assert_eq!(port_of(&mut conn, "SELECT @@port").await, primary);
    conn.query_drop("COMMIT").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_cli_through_the_proxy() {
    let Some(c) = cluster("mariadb_cli_through_the_proxy") else {
        return;
    };
    let p = start(&c).await;
    let port = p.port.to_string();
    let out = tokio::process::Command::new("mariadb")
        .args([
            "-h", "127.0.0.1", "-P", &port, "-u", "app", "-papp-password", "--protocol=tcp",
            "rwsplit_test", "-N", "-B", "-e",
            "SELECT @@port; CREATE TABLE IF NOT EXISTS cli_t (id INT AUTO_INCREMENT PRIMARY KEY, v INT); INSERT INTO cli_t (v) VALUES (1); SELECT LAST_INSERT_ID() > 0, @@port; USE mysql; SELECT DATABASE();",
        ])
        .output()
        .await
        .expect("mariadb CLI runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    let first: u16 = lines[0].trim().parse().unwrap();
    assert!(c.replica_ports().contains(&first), "{stdout}");
    assert_eq!(lines[1], format!("1\t{}", c.primary_port()), "{stdout}");
    assert_eq!(lines[2], "mysql");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_warnings_goes_to_the_backend_that_ran_the_statement() {
    let Some(c) = cluster("show_warnings_goes_to_the_backend_that_ran_the_statement") else {
        return;
    };
    let p = start(&c).await;
    let mut conn = p.conn().await;
    for _ in 0..6 {
        let v: Option<Option<i64>> = conn.query_first("SELECT 1/0").await.unwrap();
        assert_eq!(v, Some(None));
        let warnings: Vec<(String, u32, String)> = conn.query("SHOW WARNINGS").await.unwrap();
        assert_eq!(
            warnings.len(),
            1,
            "the read's warning is visible: {warnings:?}"
        );
        assert_eq!(warnings[0].1, 1365, "{warnings:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_database_does_not_leak_to_sessions_without_one() {
    let Some(c) = cluster("default_database_does_not_leak_to_sessions_without_one") else {
        return;
    };
    let p = start_with(&c, "  pool:\n    release_delay_ms: 0\n").await;
    let mut seen = HashSet::new();
    for _ in 0..3 {
        let mut a = p.conn().await;
        // Thread ids are per server: a connection is (port, thread).
        let (db, port, thread): (Option<String>, u16, u64) = a
            .query_first("SELECT DATABASE(), @@port, @@pseudo_thread_id")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(db.as_deref(), Some("rwsplit_test"));
        seen.insert((port, thread));
        let _ = a.disconnect().await;
    }
    // Through the proxy only: no switch to a server's Unix socket.
    let url = format!(
        "mysql://{}:{}@127.0.0.1:{}?prefer_socket=false",
        integration_tests::APP_USER,
        integration_tests::APP_PASSWORD,
        p.port
    );
    let mut fresh = 0;
    for _ in 0..4 {
        let mut b = integration_tests::mysql_async::Conn::from_url(url.as_str())
            .await
            .unwrap();
        let (db, port, thread): (Option<String>, u16, u64) = b
            .query_first("SELECT DATABASE(), @@port, @@pseudo_thread_id")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            db, None,
            "a session without a database got one from the pool"
        );
        fresh += usize::from(!seen.contains(&(port, thread)));
        let _ = b.disconnect().await;
    }
    // COM_RESET_CONNECTION keeps the schema, so such a connection must not serve a session
    // without one: every B read ran on a connection no A session had.
    assert_eq!(fresh, 4);
}
