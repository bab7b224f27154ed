//! Protocol commands through the proxy: prepared statements routed by what they do, reset,
//! change user, multi-results from stored procedures, packets over 16 MiB, LOAD DATA LOCAL
//! INFILE, and COM_STATISTICS / COM_FIELD_LIST through the `mariadb` CLI.

mod proxy_support;

use integration_tests::mysql_async::prelude::Queryable;
use integration_tests::mysql_async::{ChangeUserOpts, Row};
use proxy_support::{cluster, start};
use std::collections::HashSet;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_statements_run_where_their_class_says() {
    let Some(c) = cluster("prepared_statements_run_where_their_class_says") else {
        return;
    };
    let p = start(&c).await;
    let replicas: HashSet<u16> = c.replica_ports().into_iter().collect();
    let mut conn = p.conn().await;
    conn.query_drop(
        "CREATE TABLE IF NOT EXISTS ps_t (id INT AUTO_INCREMENT PRIMARY KEY, v INT, port INT)",
    )
    .await
    .unwrap();
    let read = conn.prep("SELECT @@port, ? + 1").await.unwrap();
    let write = conn
        .prep("INSERT INTO ps_t (v, port) VALUES (?, @@port)")
        .await
        .unwrap();
    let mut seen = HashSet::new();
    for i in 0..20i64 {
        let (port, v): (u16, i64) = conn.exec_first(&read, (i,)).await.unwrap().unwrap();
        assert_eq!(v, i + 1);
        seen.insert(port);
    }
    assert_eq!(seen, replicas, "prepared reads spread over the replicas");
    conn.exec_drop(&write, (5,)).await.unwrap();
    let id = conn.last_insert_id().unwrap();
    let port: Option<u16> = c
        .admin(0)
        .await
        .unwrap()
        .query_first(format!(
            "SELECT port FROM rwsplit_test.ps_t WHERE id = {id}"
        ))
        .await
        .unwrap();
    assert_eq!(
        port,
        Some(c.primary_port()),
        "prepared write ran on the primary"
    );
    // Inside a transaction the same prepared read runs on the primary.
    conn.query_drop("BEGIN").await.unwrap();
    let (port, _): (u16, i64) = conn.exec_first(&read, (1,)).await.unwrap().unwrap();
    assert_eq!(port, c.primary_port());
    conn.query_drop("COMMIT").await.unwrap();
    conn.close(read).await.unwrap();
    // A closed statement is unknown afterwards; the session keeps working.
    let again: Option<u16> = conn.query_first("SELECT @@port").await.unwrap();
    assert!(again.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_change_user_and_procedure_results() {
    let Some(c) = cluster("reset_change_user_and_procedure_results") else {
        return;
    };
    let p = start(&c).await;
    let mut conn = p.conn().await;
    conn.query_drop("SET time_zone = '+03:00'").await.unwrap();
    conn.reset().await.unwrap();
    let tz: String = conn
        .query_first("SELECT @@time_zone")
        .await
        .unwrap()
        .unwrap();
    assert_ne!(
        tz, "+03:00",
        "COM_RESET_CONNECTION clears session variables"
    );

    conn.query_drop("DROP PROCEDURE IF EXISTS two_results")
        .await
        .unwrap();
    conn.query_drop(
        "CREATE PROCEDURE two_results() BEGIN SELECT 1 AS a; SELECT 2 AS b, 3 AS c; END",
    )
    .await
    .unwrap();
    let mut r = conn.query_iter("CALL two_results()").await.unwrap();
    let first: Vec<Row> = r.collect().await.unwrap();
    let second: Vec<(i64, i64)> = r.collect().await.unwrap();
    drop(r);
    assert_eq!(first.len(), 1);
    assert_eq!(second, vec![(2, 3)]);
    // The session is in step afterwards.
    let one: i64 = conn.query_first("SELECT 1").await.unwrap().unwrap();
    assert_eq!(one, 1);

    conn.change_user(
        ChangeUserOpts::default()
            .with_user(Some(integration_tests::APP_USER.into()))
            .with_pass(Some(integration_tests::APP_PASSWORD.into()))
            .with_db_name(Some("mysql".into())),
    )
    .await
    .unwrap();
    let db: String = conn
        .query_first("SELECT DATABASE()")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(db, "mysql");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packets_over_16_mib_both_ways() {
    let Some(c) = cluster("packets_over_16_mib_both_ways") else {
        return;
    };
    for i in 0..=c.replicas() {
        c.admin_exec(i, "SET GLOBAL max_allowed_packet = 67108864")
            .await
            .unwrap();
    }
    let p = start(&c).await;
    let mut conn = p.conn().await;
    conn.query_drop("CREATE TABLE IF NOT EXISTS big_t (id INT PRIMARY KEY, b LONGBLOB)")
        .await
        .unwrap();
    let size = 20 * 1024 * 1024 + 17;
    let sql = format!("REPLACE INTO big_t VALUES (1, '{}')", "x".repeat(size));
    conn.query_drop(sql).await.unwrap();
    conn.query_drop("BEGIN").await.unwrap();
    let len: u64 = conn
        .query_first("SELECT LENGTH(b) FROM big_t WHERE id = 1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(len as usize, size);
    let blob: Vec<u8> = conn
        .query_first("SELECT b FROM big_t WHERE id = 1")
        .await
        .unwrap()
        .unwrap();
    conn.query_drop("COMMIT").await.unwrap();
    assert_eq!(blob.len(), size);
    assert!(blob.iter().all(|&b| b == b'x'));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_statistics_field_list_and_load_data_local() {
    let Some(c) = cluster("cli_statistics_field_list_and_load_data_local") else {
        return;
    };
    for i in 0..=c.replicas() {
        c.admin_exec(i, "SET GLOBAL local_infile = 1")
            .await
            .unwrap();
    }
    let p = start(&c).await;
    let port = p.port.to_string();
    let dir = integration_tests::repo_root().join(".scratch");
    let file = dir.join(format!("infile-{port}.tsv"));
    std::fs::write(&file, "1\tone\n2\ttwo\n3\tthree\n").unwrap();
    let sql = format!(
        "CREATE TABLE IF NOT EXISTS infile_t (id INT PRIMARY KEY, s VARCHAR(10)); DELETE FROM infile_t; \
         LOAD DATA LOCAL INFILE '{}' INTO TABLE infile_t; SELECT COUNT(*) FROM infile_t FOR UPDATE;",
        file.display()
    );
    let out = tokio::process::Command::new("mariadb")
        .args([
            "-h",
            "127.0.0.1",
            "-P",
            &port,
            "-u",
            "app",
            "-papp-password",
            "--protocol=tcp",
            "--local-infile=1",
            "rwsplit_test",
            "-N",
            "-B",
            "-e",
            &sql,
        ])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.trim(), "3");

    let out = tokio::process::Command::new("mariadb-admin")
        .args([
            "-h",
            "127.0.0.1",
            "-P",
            &port,
            "-u",
            "app",
            "-papp-password",
            "--protocol=tcp",
            "status",
        ])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("Uptime"),
        "COM_STATISTICS: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // `mariadb` without -A lists fields for completion (COM_FIELD_LIST) when it starts.
    let out = tokio::process::Command::new("mariadb")
        .args([
            "-h",
            "127.0.0.1",
            "-P",
            &port,
            "-u",
            "app",
            "-papp-password",
            "--protocol=tcp",
            "--auto-rehash",
            "rwsplit_test",
            "-N",
            "-B",
            "-e",
            "SELECT 42",
        ])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "42");
    let _ = std::fs::remove_file(file);
}
