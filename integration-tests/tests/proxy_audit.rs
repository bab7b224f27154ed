//! The audit log against real servers: a scripted workload of N writes (and reads, which the
//! `writes` setting leaves out) gives exactly N lines, none lost, each naming the session,
//! user, client, schema, server, digest, affected rows and error; after logrotate's rename and
//! a reopen (what SIGHUP does) new lines go to a new file at the configured path.

mod proxy_support;

use integration_tests::mysql_async::prelude::Queryable;
use integration_tests::TEST_DB;
use proxy_support::{cluster, start_with};
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_write_of_a_workload_is_audited_once() {
    let Some(c) = cluster("every_write_of_a_workload_is_audited_once") else {
        return;
    };
    let dir = integration_tests::repo_root().join(".scratch");
    let _ = std::fs::create_dir_all(&dir);
    let path: PathBuf = dir.join(format!(
        "audit-{}-{}.log",
        std::process::id(),
        integration_tests::free_port()
    ));
    let _ = std::fs::remove_file(&path);
    let p = start_with(
        &c,
        &format!(
            "  audit:\n    path: {}\n    statements: writes\n",
            path.display()
        ),
    )
    .await;
    let mut conn = p.conn().await;
    conn.query_drop("CREATE TABLE IF NOT EXISTS audit_rows (id INT PRIMARY KEY)")
        .await
        .unwrap();
    conn.query_drop("DELETE FROM audit_rows").await.unwrap();
    let me: u32 = conn
        .query_first("SELECT CONNECTION_ID()")
        .await
        .unwrap()
        .unwrap();
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
