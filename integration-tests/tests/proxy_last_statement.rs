//! The functions that describe a session's previous statement (`FOUND_ROWS()`, `ROW_COUNT()`,
//! `LAST_INSERT_ID()`, `@@warning_count`, `@@error_count`, `SHOW WARNINGS`, `SHOW ERRORS`)
//! answer through the proxy as on a direct connection, while many sessions take turns on few
//! backend connections (statement-level multiplexing, the default): each session gets its own
//! values, never those of the session that used the connection in between. In text queries, in
//! prepared statements (COM_STMT_PREPARE / COM_STMT_EXECUTE, what most drivers send) and after
//! `SET @@last_insert_id`. `GET DIAGNOSTICS` likewise, into user variables the session reads
//! later.

mod proxy_support;

use integration_tests::mysql_async::prelude::Queryable;
use integration_tests::mysql_async::{Conn, Params, Row, Value};
use integration_tests::{Cluster, TEST_DB};
use proxy_support::{cluster, port_of, start, start_with, Proxy};
use std::sync::Arc;
use std::time::Duration;

/// Sessions run at once, and connections per server they share. As many connections as
/// sessions: a session that keeps its connection across the barrier (a statement that pins it)
/// must never leave another waiting for one at that barrier (a deadlock until ERR 1040 from
/// `queue_timeout_ms`, seen under CI load with 3). Connections still change hands between any
/// two statements: all sessions release and take them again at every step.
const SESSIONS: usize = 6;
const MAX_PER_SERVER: usize = SESSIONS;

/// Creates `table` (100 rows) and `{table}_ids` (auto-increment ids) for one test: tests of
/// this file run at once, each on tables of its own.
async fn prepare(c: &Cluster, table: &str) {
    for sql in [
        format!("CREATE TABLE IF NOT EXISTS {TEST_DB}.{table} (id INT PRIMARY KEY, v INT)"),
        format!("DELETE FROM {TEST_DB}.{table}"),
        format!(
            "INSERT INTO {TEST_DB}.{table} VALUES {}",
            (1..=100).map(|i| format!("({i}, 0)")).collect::<Vec<_>>().join(", ")
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {TEST_DB}.{table}_ids (id INT AUTO_INCREMENT PRIMARY KEY, who INT)"
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

/// One statement of a session: a text query, or a prepared statement executed with parameters
/// (COM_STMT_PREPARE once per connection, then COM_STMT_EXECUTE, as drivers do).
#[derive(Debug, Clone)]
enum Step {
    Text(String),
    Binary(String, Vec<Value>),
}

fn text(sql: impl Into<String>) -> Step {
    Step::Text(sql.into())
}

fn binary(sql: impl Into<String>, params: Vec<Value>) -> Step {
    Step::Binary(sql.into(), params)
}

/// What a client sees of one statement: columns (name, type, flags, decimals: values of the
/// binary protocol are decoded by them, a signed and an unsigned BIGINT are different values to
/// a client), rows, affected rows, or the error.
async fn answer(conn: &mut Conn, step: &Step) -> String {
    match step {
        Step::Text(sql) => {
            let result = match conn.query_iter(sql.as_str()).await {
                Ok(r) => r,
                Err(e) => return format!("{sql} -> error {e}"),
            };
            describe(sql, result).await
        }
        Step::Binary(sql, params) => {
            let params = if params.is_empty() {
                Params::Empty
            } else {
                Params::Positional(params.clone())
            };
            let result = match conn.exec_iter(sql.as_str(), params).await {
                Ok(r) => r,
                Err(e) => return format!("{sql} (prepared) -> error {e}"),
            };
            format!("(prepared) {}", describe(sql, result).await)
        }
    }
}

async fn describe<P: integration_tests::mysql_async::prelude::Protocol>(
    sql: &str,
    mut result: integration_tests::mysql_async::QueryResult<'_, '_, P>,
) -> String {
    let columns: Vec<String> = result
        .columns_ref()
        .iter()
        .map(|c| {
            format!(
                "{} {:?}({}) {:?} decimals {}",
                c.name_str(),
                c.column_type(),
                c.column_length(),
                c.flags(),
                c.decimals()
            )
        })
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

/// Runs `script(k)` for sessions `k` in `0..SESSIONS` through the proxy, each statement only
/// once every session has run its previous one (so the few connections change hands between
/// any two statements), then each script on a direct connection of its own, and compares
/// every answer.
async fn compare_with_direct(c: &Cluster, p: &Proxy, script: fn(usize) -> Vec<Step>) {
    let barrier = Arc::new(tokio::sync::Barrier::new(SESSIONS));
    let longest = (0..SESSIONS).map(|k| script(k).len()).max().unwrap_or(0);
    let mut tasks = Vec::new();
    for k in 0..SESSIONS {
        let mut conn = p.conn().await;
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            let mut answers = Vec::new();
            let steps = script(k);
            for i in 0..longest {
                barrier.wait().await;
                if let Some(step) = steps.get(i) {
                    answers.push(answer(&mut conn, step).await);
                }
            }
            answers
        }));
    }
    let mut through_proxy = Vec::new();
    for t in tasks {
        through_proxy.push(t.await.expect("session task"));
    }

    // The reference: each script on a direct connection of its own. Every difference is
    // listed, not only the first.
    let mut differences = Vec::new();
    for (k, got) in through_proxy.iter().enumerate() {
        let mut direct = Conn::from_url(c.app_url(0).as_str())
            .await
            .expect("direct connection");
        let mut want = Vec::new();
        for step in script(k) {
            want.push(answer(&mut direct, &step).await);
        }
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(&want) {
            if g != w {
                differences.push(format!("session {k}:\n  proxy:  {g}\n  direct: {w}"));
            }
        }
    }
    assert!(
        differences.is_empty(),
        "through the proxy vs a direct connection:\n{}",
        differences.join("\n")
    );
}

/// The shared topology with tables `table` (see [`prepare`]), a proxy with as many connections
/// per server as sessions, and `script` compared with direct connections: the whole of most
/// tests here (`test` names the test for the skip message).
async fn compare_script(test: &str, table: &str, script: fn(usize) -> Vec<Step>) {
    let Some(c) = cluster(test) else {
        return;
    };
    prepare(&c, table).await;
    let p = start_with(
        &c,
        &format!("  pool:\n    max_per_server: {MAX_PER_SERVER}\n"),
    )
    .await;
    compare_with_direct(&c, &p, script).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_statement_functions_answer_for_their_own_session_under_multiplexing() {
    let Some(c) =
        cluster("last_statement_functions_answer_for_their_own_session_under_multiplexing")
    else {
        return;
    };
    prepare(&c, "last_stmt").await;
    let p = start_with(
        &c,
        &format!("  pool:\n    max_per_server: {MAX_PER_SERVER}\n"),
    )
    .await;
    compare_with_direct(&c, &p, |k| script(k).into_iter().map(Step::Text).collect()).await;

    // The reads of the scripts went to replicas (the values come from there too).
    let mut conn = p.conn().await;
    let port = port_of(&mut conn, "SELECT @@port FROM last_stmt LIMIT 1").await;
    assert_ne!(port, c.port(0), "plain reads go to a replica");
}

/// The statements of session `k` in prepared form: `FOUND_ROWS()`, `ROW_COUNT()`,
/// `@@warning_count` and `@@error_count` in prepared statements (alone, with parameters, with
/// a table), asked after text and prepared statements of the same session that ran elsewhere.
fn prepared_script(k: usize) -> Vec<Step> {
    let n = k + 1;
    let (lo, hi) = (k * 10 + 1, k * 10 + n);
    let read = format!("SELECT id FROM last_prep WHERE id BETWEEN {lo} AND {hi}");
    let odd = k % 2 == 1;
    let int = |v: usize| Value::Int(v as i64);
    vec![
        binary("SELECT FOUND_ROWS(), ROW_COUNT()", vec![]),
        text(&read),
        binary("SELECT FOUND_ROWS()", vec![]),
        binary("SELECT ROW_COUNT()", vec![]),
        binary("SELECT FOUND_ROWS()", vec![]),
        binary(
            "SELECT id FROM last_prep WHERE id BETWEEN ? AND ?",
            vec![int(lo), int(hi)],
        ),
        binary("SELECT FOUND_ROWS(), ROW_COUNT()", vec![]),
        text(format!(
            "UPDATE last_prep SET v = v + 1 WHERE id BETWEEN {lo} AND {hi}"
        )),
        binary("SELECT ROW_COUNT(), FOUND_ROWS()", vec![]),
        binary(
            "UPDATE last_prep SET v = v + 1 WHERE id BETWEEN ? AND ?",
            vec![int(lo), int(hi)],
        ),
        // Named: an expression's own name is its text, and the text that runs is another.
        binary(
            "SELECT ROW_COUNT() + ? AS r, FOUND_ROWS() * ? AS f",
            vec![int(k), int(2)],
        ),
        binary("SELECT @@warning_count, @@error_count", vec![]),
        text(if odd { "SELECT 1/0" } else { "SELECT 1" }),
        binary("SELECT @@warning_count, @@error_count", vec![]),
        text(&read),
        binary(
            "SELECT id, FOUND_ROWS(), ROW_COUNT() FROM last_prep WHERE id = ?",
            vec![int(lo)],
        ),
        binary(
            "SELECT SQL_CALC_FOUND_ROWS id FROM last_prep WHERE id > ? LIMIT 1",
            vec![int(lo)],
        ),
        text(&read),
        binary("SELECT FOUND_ROWS()", vec![]),
        binary(
            "SELECT SQL_CALC_FOUND_ROWS id FROM last_prep WHERE id > ? LIMIT 1",
            vec![int(hi)],
        ),
        binary("SELECT FOUND_ROWS()", vec![]),
        text("SELECT FOUND_ROWS(), ROW_COUNT()"),
        binary("SELECT ROW_COUNT()", vec![]),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_statements_ask_about_their_own_sessions_previous_statement() {
    compare_script(
        "prepared_statements_ask_about_their_own_sessions_previous_statement",
        "last_prep",
        prepared_script,
    )
    .await;
}

/// `SET @@last_insert_id = N` (and its other spellings) sets what `LAST_INSERT_ID()` answers
/// until the next insert, on whichever connection the session's next statements run.
fn insert_id_script(k: usize) -> Vec<Step> {
    let own = format!(
        "SELECT LAST_INSERT_ID() = (SELECT MAX(id) FROM last_iid_ids WHERE who = {k}) AS own"
    );
    let insert = format!("INSERT INTO last_iid_ids (who) VALUES ({k})");
    let read = "SELECT COUNT(*) FROM last_iid WHERE id > 50";
    vec![
        text(&insert),
        text(&own),
        text(format!("SET @@last_insert_id = {}", 5 + k)),
        text("SELECT LAST_INSERT_ID()"),
        text(read),
        text("SELECT LAST_INSERT_ID()"),
        text(&insert),
        text(&own),
        text(read),
        text(&own),
        text(format!("SET LAST_INSERT_ID = {}", 100 + k)),
        text(read),
        binary("SELECT LAST_INSERT_ID()", vec![]),
        text(format!(
            "SET time_zone = '+01:00', @@identity = {}",
            200 + k
        )),
        text(read),
        text("SELECT @@last_insert_id, @@identity"),
        text(&insert),
        binary(
            "SELECT LAST_INSERT_ID() = (SELECT MAX(id) FROM last_iid_ids WHERE who = ?)",
            vec![Value::Int(k as i64)],
        ),
        text("SET @@last_insert_id = 0"),
        text(read),
        text("SELECT LAST_INSERT_ID()"),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setting_the_insert_id_holds_until_the_next_insert_on_any_connection() {
    compare_script(
        "setting_the_insert_id_holds_until_the_next_insert_on_any_connection",
        "last_iid",
        insert_id_script,
    )
    .await;
}

/// The same questions in statements prepared in SQL (`PREPARE s FROM '...'`, `EXECUTE s`),
/// which live on the session's primary connection while its reads run on replicas.
fn text_prepared_script(k: usize) -> Vec<Step> {
    let n = k + 1;
    let (lo, hi) = (k * 10 + 1, k * 10 + n);
    let read = format!("SELECT id FROM last_text WHERE id BETWEEN {lo} AND {hi}");
    vec![
        text("PREPARE ask FROM 'SELECT FOUND_ROWS(), ROW_COUNT()'"),
        text("EXECUTE ask"),
        text(&read),
        text("EXECUTE ask"),
        binary(
            "SELECT id FROM last_text WHERE id BETWEEN ? AND ?",
            vec![Value::Int(lo as i64), Value::Int(hi as i64 + 1)],
        ),
        text("EXECUTE ask"),
        text(format!("SET @p = {k}")),
        text("PREPARE ask_more FROM 'SELECT ? + FOUND_ROWS() AS n, @@warning_count'"),
        text(&read),
        text("EXECUTE ask_more USING @p"),
        text(format!(
            "UPDATE last_text SET v = v + 1 WHERE id BETWEEN {lo} AND {hi}"
        )),
        text(&read),
        text("EXECUTE ask"),
        text("DEALLOCATE PREPARE ask"),
        text(&read),
        text("EXECUTE ask"),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_prepared_statements_ask_about_their_own_sessions_previous_statement() {
    compare_script(
        "text_prepared_statements_ask_about_their_own_sessions_previous_statement",
        "last_text",
        text_prepared_script,
    )
    .await;
}

/// `GET DIAGNOSTICS` into user variables after statements that ran on the primary, on a
/// replica (with and without warnings) and on the session's own primary connection: it
/// answers for this session (never the one that used the connection in between), leaves
/// `ROW_COUNT()`, `FOUND_ROWS()` and the warning list as they were, and the variables are
/// there for the session's later statements.
fn get_diagnostics_script(k: usize) -> Vec<Step> {
    let n = k + 1;
    let (lo, hi) = (k * 10 + 1, k * 10 + n);
    let read = format!("SELECT id FROM last_diag WHERE id BETWEEN {lo} AND {hi}");
    let warn = format!("SELECT id / 0 FROM last_diag WHERE id BETWEEN {lo} AND {hi}");
    let odd = k % 2 == 1;
    vec![
        text(format!(
            "UPDATE last_diag SET v = v + 1 WHERE id BETWEEN {lo} AND {hi}"
        )),
        text("GET DIAGNOSTICS @r = ROW_COUNT, @n = NUMBER"),
        text("SELECT @r, @n"),
        text(&read),
        text("GET CURRENT DIAGNOSTICS @n = NUMBER, @r = ROW_COUNT"),
        text("SELECT @r, @n, ROW_COUNT(), FOUND_ROWS()"),
        // Odd sessions: a replica read that leaves k + 1 warnings, kept on its connection.
        text(if odd { &warn } else { &read }),
        text("GET DIAGNOSTICS @n = NUMBER, @r = ROW_COUNT"),
        text("SHOW WARNINGS"),
        text("SELECT @n, @r"),
        text(&read),
        // No conditions: OK, @m and @e unchanged, error 1758 in the list.
        text("GET DIAGNOSTICS CONDITION 1 @m = MESSAGE_TEXT, @e = MYSQL_ERRNO"),
        text("SHOW WARNINGS"),
        text("SELECT @m, @e"),
        text(format!("SET @m = 'session {k}'")),
        text(&read),
        text("GET DIAGNOSTICS CONDITION @n @m = MESSAGE_TEXT"),
        text("SELECT @m, FOUND_ROWS()"),
        // On the session's primary connection (the variables pin it): the server answers.
        text(format!("{warn} FOR UPDATE")),
        text("GET DIAGNOSTICS CONDITION 1 @m = MESSAGE_TEXT, @e = MYSQL_ERRNO"),
        text("GET DIAGNOSTICS @n = NUMBER, @r = ROW_COUNT"),
        text("SELECT @m, @e, @n, @r"),
        text("SHOW WARNINGS"),
        text("SELECT ROW_COUNT(), FOUND_ROWS()"),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_diagnostics_answers_for_its_own_session_into_its_own_variables() {
    compare_script(
        "get_diagnostics_answers_for_its_own_session_into_its_own_variables",
        "last_diag",
        get_diagnostics_script,
    )
    .await;
}

/// Condition items after a replica read that left warnings: the values are on the replica's
/// connection and the variables belong on the primary's, and the proxy cannot copy them
/// exactly, so the client gets an error naming the way out, and its variables are untouched.
/// Sent to the primary, the same read lets them answer exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_diagnostics_conditions_of_a_replica_read_are_refused_not_invented() {
    let Some(c) = cluster("get_diagnostics_conditions_of_a_replica_read_are_refused_not_invented")
    else {
        return;
    };
    prepare(&c, "last_diag_refused").await;
    let p = start(&c).await;
    let mut conn = p.conn().await;
    conn.query_drop("SET @m = 'before'").await.expect("set");
    let read = "SELECT id / 0, @@port FROM last_diag_refused WHERE id = 1";
    let rows: Vec<(Option<String>, u16)> = conn.query(read).await.expect("read");
    assert_ne!(rows[0].1, c.port(0), "the read ran on a replica");
    let err = conn
        .query_drop("GET DIAGNOSTICS CONDITION 1 @m = MESSAGE_TEXT")
        .await
        .expect_err("refused");
    let msg = err.to_string();
    assert!(
        msg.contains("1235") && msg.contains("GET DIAGNOSTICS") && msg.contains("rwsplit:primary"),
        "{msg}"
    );
    let m: Option<String> = conn.query_first("SELECT @m").await.expect("select");
    assert_eq!(m.as_deref(), Some("before"));

    conn.query_drop(format!("/* rwsplit:primary */ {read}"))
        .await
        .expect("read on the primary");
    conn.query_drop("GET DIAGNOSTICS CONDITION 1 @m = MESSAGE_TEXT")
        .await
        .expect("answered");
    let m: Option<String> = conn.query_first("SELECT @m").await.expect("select");
    assert_eq!(m.as_deref(), Some("Division by 0"));
}

/// A session keeps the connection of a read that left warnings, so that `FOUND_ROWS()` asked
/// next is answered there. If that replica restarts meanwhile, the proxy finds the kept
/// connection closed and takes another: the answer must still be the session's own (the
/// recorded value), not whatever the new connection's server has (a fresh connection's 1, or
/// another session's count).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn found_rows_stays_the_sessions_own_when_its_kept_connection_was_lost_to_a_restart() {
    let Some(c) = Cluster::private_or_skip(
        "found_rows_stays_the_sessions_own_when_its_kept_connection_was_lost_to_a_restart",
    ) else {
        return;
    };
    prepare(&c, "last_restart").await;
    let p = start(&c).await;
    let mut conn = p.conn().await;
    // Three rows and a warning each: the connection is kept for the diagnostics.
    let rows: Vec<(i64, i64, u16)> = conn
        .query(format!(
            "SELECT id, CAST('1x' AS SIGNED), @@port FROM {TEST_DB}.last_restart \
             WHERE id BETWEEN 1 AND 3"
        ))
        .await
        .expect("read with warnings");
    assert_eq!(rows.len(), 3);
    let port = rows[0].2;
    let replica = (1..=c.replicas())
        .find(|&i| c.port(i) == port)
        .expect("plain reads go to a replica");

    tokio::task::block_in_place(|| c.stop_server(replica)).expect("stop the replica");
    // The monitor (every 100 ms) records the outage.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    tokio::task::block_in_place(|| c.start_servers()).expect("restart the replica");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while Conn::from_url(c.app_url(replica).as_str()).await.is_err() {
        assert!(std::time::Instant::now() < deadline, "replica not back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let found: Option<i64> = conn
        .query_first("SELECT FOUND_ROWS()")
        .await
        .expect("FOUND_ROWS after the restart");
    assert_eq!(found, Some(3), "a direct connection answers 3");
}
