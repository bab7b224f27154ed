//! The audit log against real servers: a scripted workload of N writes (and reads, which the
//! `writes` setting leaves out) gives exactly N lines, none lost, each naming the session,
//! user, client, schema, server, digest, affected rows and error; after logrotate's rename and
//! a reopen (what SIGHUP does) new lines go to a new file at the configured path. Prepared
//! writes (COM_STMT_EXECUTE) are audited per execution, none lost, and every line of a
//! statement that committed carries the GTID `SELECT @@last_gtid` reports for it (a
//! transaction's GTID on its COMMIT's line).

mod proxy_support;

use integration_tests::mysql_async::prelude::Queryable;
use integration_tests::mysql_async::Conn;
use integration_tests::Cluster;
use integration_tests::TEST_DB;
use proxy_support::{cluster, start_with, Proxy};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const WRITES: usize = 500;

fn lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// Waits until `path` holds `n` lines (the writer flushes once its queue is empty).
async fn wait_lines(path: &Path, n: usize) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let l = lines(path);
        if l.len() >= n || Instant::now() > deadline {
            return l;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A fresh audit file path under the repository's scratch directory.
fn audit_path() -> PathBuf {
    let dir = integration_tests::repo_root().join(".scratch");
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join(format!(
        "audit-{}-{}.log",
        std::process::id(),
        integration_tests::free_port()
    ));
    let _ = std::fs::remove_file(&path);
    path
}

/// A proxy auditing writes into a fresh file, and a session through it in which `table` (name
/// and columns) exists and is empty (two audit lines: CREATE, DELETE); with the session's id.
async fn audited_session(c: &Cluster, table: &str) -> (Proxy, PathBuf, Conn, u32) {
    let path = audit_path();
    let p = start_with(
        c,
        &format!(
            "  audit:\n    path: {}\n    statements: writes\n",
            path.display()
        ),
    )
    .await;
    let mut conn = p.conn().await;
    conn.query_drop(format!("CREATE TABLE IF NOT EXISTS {table}"))
        .await
        .unwrap();
    let name = table.split_whitespace().next().unwrap_or(table);
    conn.query_drop(format!("DELETE FROM {name}"))
        .await
        .unwrap();
    let me: u32 = conn
        .query_first("SELECT CONNECTION_ID()")
        .await
        .unwrap()
        .unwrap();
    (p, path, conn, me)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_write_of_a_workload_is_audited_once() {
    let Some(c) = cluster("every_write_of_a_workload_is_audited_once") else {
        return;
    };
    let (p, path, mut conn, me) = audited_session(&c, "audit_rows (id INT PRIMARY KEY)").await;
    for i in 0..WRITES {
        conn.query_drop(format!("INSERT INTO audit_rows VALUES ({i})"))
            .await
            .unwrap();
        if i % 50 == 0 {
            let _: Option<i64> = conn
                .query_first("SELECT COUNT(*) FROM audit_rows")
                .await
                .unwrap();
        }
    }
    // A failing write is audited with its error.
    conn.query_drop("INSERT INTO audit_rows VALUES (0)")
        .await
        .expect_err("duplicate");
    // CREATE + DELETE + the writes + the failed one; no read.
    let want = 2 + WRITES + 1;
    let got = wait_lines(&path, want).await;
    assert_eq!(got.len(), want, "lines in {}", path.display());
    let inserts: Vec<&serde_json::Value> = got
        .iter()
        .filter(|v| v["digest"] == "INSERT INTO audit_rows VALUES (?)")
        .collect();
    assert_eq!(inserts.len(), WRITES + 1);
    for v in &inserts[..WRITES] {
        assert_eq!(v["session"], me);
        assert_eq!(v["user"], "app");
        assert_eq!(v["client"], "127.0.0.1");
        assert_eq!(v["schema"], TEST_DB);
        assert_eq!(v["server"], "primary");
        assert_eq!(v["affected_rows"], 1);
        assert_eq!(v["error"], serde_json::Value::Null);
        assert!(v["duration_ms"].as_f64().is_some_and(|d| d > 0.0), "{v}");
        assert!(v["time"].as_str().is_some_and(|t| t.ends_with('Z')), "{v}");
    }
    assert_eq!(inserts[WRITES]["error"], 1062);
    let m = p.ctx.metrics.render();
    assert!(m.contains("rwsplit_audit_dropped_total 0"), "{m}");
    assert!(
        m.contains(&format!("rwsplit_audit_records_total {want}")),
        "{m}"
    );
    // logrotate: rename, then SIGHUP (reopen). New lines go to a new file at the path.
    let moved = path.with_extension("log.rotated");
    std::fs::rename(&path, &moved).unwrap();
    proxy::audit::reopen(&p.ctx);
    tokio::time::sleep(Duration::from_millis(800)).await;
    conn.query_drop("DELETE FROM audit_rows WHERE id = 1")
        .await
        .unwrap();
    let after = wait_lines(&path, 1).await;
    assert_eq!(after.len(), 1, "a new file after the reopen");
    assert_eq!(after[0]["digest"], "DELETE FROM audit_rows WHERE id = ?");
    assert_eq!(lines(&moved).len(), want, "the rotated file is untouched");
    let _ = std::fs::remove_file(&path);
    let _ = std::fs::remove_file(&moved);
}

const PREPARED_WRITES: usize = 200;

/// The session's last commit GTID, as the proxy answers `SELECT @@last_gtid`.
async fn last_gtid(conn: &mut Conn) -> String {
    conn.query_first::<String, _>("SELECT @@last_gtid")
        .await
        .unwrap()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_writes_and_commits_are_audited_with_their_gtid() {
    let Some(c) = cluster("prepared_writes_and_commits_are_audited_with_their_gtid") else {
        return;
    };
    let (p, path, mut conn, me) =
        audited_session(&c, "audit_ps_rows (id INT PRIMARY KEY, v VARCHAR(8))").await;
    // Autocommit prepared writes (binary protocol, one handle): each its own GTID.
    let insert = conn
        .prep("INSERT INTO audit_ps_rows VALUES (?, ?)")
        .await
        .unwrap();
    let mut gtids = Vec::new();
    for i in 0..PREPARED_WRITES {
        conn.exec_drop(&insert, (i, "x")).await.unwrap();
        gtids.push(last_gtid(&mut conn).await);
        if i % 50 == 0 {
            let _: Option<i64> = conn
                .exec_first("SELECT COUNT(*) FROM audit_ps_rows WHERE id > ?", (0,))
                .await
                .unwrap();
        }
    }
    // A failing prepared write, with its error.
    conn.exec_drop(&insert, (0, "dup"))
        .await
        .expect_err("duplicate");
    // A transaction: its writes commit nothing; the COMMIT carries the GTID.
    conn.query_drop("BEGIN").await.unwrap();
    conn.exec_drop(&insert, (100_000, "t")).await.unwrap();
    conn.exec_drop(&insert, (100_001, "t")).await.unwrap();
    conn.query_drop("COMMIT").await.unwrap();
    let commit_gtid = last_gtid(&mut conn).await;
    // CREATE + DELETE + the writes + the failed one + 2 in the transaction + COMMIT; no read.
    let want = 2 + PREPARED_WRITES + 1 + 2 + 1;
    let got = wait_lines(&path, want).await;
    assert_eq!(got.len(), want, "lines in {}", path.display());
    let inserts: Vec<&serde_json::Value> = got
        .iter()
        .filter(|v| v["digest"] == "INSERT INTO audit_ps_rows VALUES (...)")
        .collect();
    assert_eq!(inserts.len(), PREPARED_WRITES + 3);
    let mut admin = c.admin(0).await.expect("admin");
    let primary_id: u32 = admin
        .query_first("SELECT @@server_id")
        .await
        .unwrap()
        .unwrap();
    for (v, gtid) in inserts[..PREPARED_WRITES].iter().zip(&gtids) {
        assert_eq!(v["session"], me);
        assert_eq!(v["user"], "app");
        assert_eq!(v["schema"], TEST_DB);
        assert_eq!(v["server"], "primary");
        assert_eq!(v["affected_rows"], 1);
        assert_eq!(v["error"], serde_json::Value::Null);
        assert!(!gtid.is_empty(), "the proxy knows the write's GTID");
        assert_eq!(v["gtid"], gtid.as_str(), "{v}");
        // domain-server_id-sequence, committed by the primary.
        let server: Option<u32> = gtid.split('-').nth(1).and_then(|s| s.parse().ok());
        assert_eq!(server, Some(primary_id), "{gtid}");
    }
    let seqs: Vec<u64> = gtids
        .iter()
        .filter_map(|g| g.rsplit('-').next()?.parse().ok())
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "one GTID per write");
    let failed = inserts[PREPARED_WRITES];
    assert_eq!(failed["error"], 1062);
    assert_eq!(failed["gtid"], serde_json::Value::Null);
    for v in &inserts[PREPARED_WRITES + 1..] {
        assert_eq!(v["gtid"], serde_json::Value::Null, "not committed yet: {v}");
        assert_eq!(v["affected_rows"], 1);
    }
    let commit = got.last().expect("lines");
    assert_eq!(commit["digest"], "COMMIT", "{commit}");
    assert!(!commit_gtid.is_empty());
    assert_eq!(commit["gtid"], commit_gtid.as_str(), "{commit}");
    let m = p.ctx.metrics.render();
    assert!(m.contains("rwsplit_audit_dropped_total 0"), "{m}");
    let _ = std::fs::remove_file(&path);
}
