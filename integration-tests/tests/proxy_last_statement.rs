//! The functions that describe a session's previous statement (`FOUND_ROWS()`, `ROW_COUNT()`,
//! `LAST_INSERT_ID()`, `@@warning_count`, `@@error_count`, `SHOW WARNINGS`, `SHOW ERRORS`)
//! answer through the proxy as on a direct connection, while many sessions take turns on few
//! backend connections (statement-level multiplexing, the default): each session gets its own
//! values, never those of the session that used the connection in between.

mod proxy_support;

use integration_tests::mysql_async::prelude::Queryable;
use integration_tests::mysql_async::{Conn, Row, Value};
use integration_tests::{Cluster, TEST_DB};
use proxy_support::{cluster, port_of, start_with};
use std::sync::Arc;
use std::time::Duration;

/// Sessions run at once, and connections per server they share. As many connections as
/// sessions: a session that keeps its connection across the barrier (a statement that pins it)
/// must never leave another waiting for one at that barrier (a deadlock until ERR 1040 from
/// `queue_timeout_ms`, seen under CI load with 3). Connections still change hands between any
/// two statements: all sessions release and take them again at every step.
const SESSIONS: usize = 6;
const MAX_PER_SERVER: usize = SESSIONS;

async fn prepare(c: &Cluster) {
    for sql in [
        format!("CREATE TABLE IF NOT EXISTS {TEST_DB}.last_stmt (id INT PRIMARY KEY, v INT)"),
        format!("DELETE FROM {TEST_DB}.last_stmt"),
        format!(
            "INSERT INTO {TEST_DB}.last_stmt VALUES {}",
            (1..=100).map(|i| format!("({i}, 0)")).collect::<Vec<_>>().join(", ")
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {TEST_DB}.last_stmt_ids (id INT AUTO_INCREMENT PRIMARY KEY, who INT)"
        ),
    ] {
        c.admin_exec(0, &sql).await.expect("set up the servers");
    }
    c.wait_replicas_caught_up(Duration::from_secs(10))
        .await
        .expect("replicas have the table");
}

/// The statements of session `k`: its reads and writes touch `k + 1` rows, so every session
/// has values of its own, and half of them leave warnings and errors.
fn script(k: usize) -> Vec<String> {
    let n = k + 1;
    let (lo, hi) = (k * 10 + 1, k * 10 + n);
    let read = format!("SELECT id FROM last_stmt WHERE id BETWEEN {lo} AND {hi}");
    let odd = k % 2 == 1;
    let mut s: Vec<String> = vec![
        "SELECT ROW_COUNT(), FOUND_ROWS(), @@warning_count, @@error_count".into(),
        read.clone(),
        "SELECT FOUND_ROWS()".into(),
        "SELECT ROW_COUNT()".into(),
        "SELECT FOUND_ROWS()".into(),
        read.clone(),
        format!("UPDATE last_stmt SET v = v + 1 WHERE id BETWEEN {lo} AND {hi}"),
        "SELECT ROW_COUNT(), FOUND_ROWS()".into(),
        "SELECT @@warning_count, @@error_count".into(),
        if odd { "SELECT 1/0" } else { "SELECT 1" }.into(),
        "SELECT @@warning_count, @@error_count".into(),
        "SHOW WARNINGS".into(),
        if odd {
            "SELECT * FROM last_stmt_missing"
        } else {
            "DO 1"
        }
        .into(),
        "SELECT @@error_count, @@session.warning_count".into(),
        "SHOW ERRORS".into(),
        "SELECT FOUND_ROWS(), ROW_COUNT()".into(),
        format!("INSERT INTO last_stmt_ids (who) VALUES ({k})"),
        read.clone(),
        // 1 when the id is this session's latest (both runs insert, so no fixed number).
        format!(
            "SELECT LAST_INSERT_ID() = (SELECT MAX(id) FROM last_stmt_ids WHERE who = {k}) AS own"
        ),
        "SELECT ROW_COUNT()".into(),
        format!("SELECT LAST_INSERT_ID({})", 1000 + k),
        read.clone(),
        "SELECT LAST_INSERT_ID(), FOUND_ROWS()".into(),
        format!("SELECT SQL_CALC_FOUND_ROWS id FROM last_stmt WHERE id > {lo} LIMIT 1"),
        read.clone(),
        "SELECT FOUND_ROWS()".into(),
        format!("DELETE FROM last_stmt_ids WHERE who = {k} AND id < 0"),
        "SHOW COUNT(*) WARNINGS".into(),
        "SELECT ROW_COUNT(), FOUND_ROWS()".into(),
    ];
    if odd {
        // A statement that fails leaves ROW_COUNT() at -1 and FOUND_ROWS() as it was.
        s.push("SELECT * FROM last_stmt_missing".into());
        s.push("SELECT FOUND_ROWS(), ROW_COUNT()".into());
    }
    s
}

/// What a client sees of one statement: column names and rows, affected rows, or the error.
async fn answer(conn: &mut Conn, sql: &str) -> String {
    let mut result = match conn.query_iter(sql).await {
        Ok(r) => r,
        Err(e) => return format!("{sql} -> error {e}"),
    };
    let columns: Vec<String> = result
        .columns_ref()
        .iter()
        .map(|c| c.name_str().into_owned())
        .collect();
    let rows: Vec<Row> = match result.collect().await {
        Ok(r) => r,
        Err(e) => return format!("{sql} -> error {e}"),
    };
    let affected = result.affected_rows();
    let _ = result.drop_result().await;
    let rows: Vec<Vec<Value>> = rows.into_iter().map(Row::unwrap).collect();
    format!("{sql} -> {columns:?} {rows:?} affected {affected}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_statement_functions_answer_for_their_own_session_under_multiplexing() {
    let Some(c) =
        cluster("last_statement_functions_answer_for_their_own_session_under_multiplexing")
    else {
        return;
    };
    prepare(&c).await;
    let p = start_with(
        &c,
        &format!("  pool:\n    max_per_server: {MAX_PER_SERVER}\n"),
    )
    .await;

    // Through the proxy: every session runs its next statement only once all have run the
    // previous one, so the few connections change hands between any two statements.
    let barrier = Arc::new(tokio::sync::Barrier::new(SESSIONS));
    let mut tasks = Vec::new();
    for k in 0..SESSIONS {
        let mut conn = p.conn().await;
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            let mut answers = Vec::new();
            let steps = script(k);
            let longest = script(SESSIONS - 1).len();
            for i in 0..longest {
                barrier.wait().await;
                if let Some(sql) = steps.get(i) {
                    answers.push(answer(&mut conn, sql).await);
                }
            }
            answers
        }));
    }
    let mut through_proxy = Vec::new();
    for t in tasks {
        through_proxy.push(t.await.expect("session task"));
    }

    // The reference: each script on a direct connection of its own.
    for (k, got) in through_proxy.iter().enumerate() {
        let mut direct = Conn::from_url(c.app_url(0).as_str())
            .await
            .expect("direct connection");
        let mut want = Vec::new();
        for sql in script(k) {
            want.push(answer(&mut direct, &sql).await);
        }
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(
                g, w,
                "session {k}: through the proxy vs a direct connection"
            );
        }
        assert_eq!(got.len(), want.len());
    }

    // The reads of the scripts went to replicas (the values come from there too).
    let mut conn = p.conn().await;
    let port = port_of(&mut conn, "SELECT @@port FROM last_stmt LIMIT 1").await;
    assert_ne!(port, c.port(0), "plain reads go to a replica");
}
