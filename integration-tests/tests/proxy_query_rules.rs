//! `query_rules` against real servers: a `block` rule answers ERR 1148 with its message and
//! the statement reaches no server (a blocked INSERT leaves no row, a blocked SLEEP returns at
//! once); `route: primary` moves a read; `route: replica` never moves a write (refusal
//! counted); `timeout_ms` cancels a statement (ERR 1317); hits are counted per rule; a reload swaps the
//! rules in. The same for server-side prepared statements (binary protocol): a blocked prepare
//! reaches no server (`Com_stmt_prepare` unchanged on every server), each execution follows its
//! rule and counts a hit, and executions of handles prepared before a reload follow the new
//! rules. sysbench (server-side prepared statements) stops at its prepare with the rule's error.

mod proxy_support;

use integration_tests::mysql_async::prelude::Queryable;
use integration_tests::mysql_async::Conn;
use integration_tests::mysql_async::Error as MyError;
use integration_tests::Cluster;
use integration_tests::TEST_DB;
use proxy_support::{cluster, start_edited, Proxy};
use std::time::{Duration, Instant};

const RULES: &str = "query_rules:
  - name: block_probe
    match: \"rwsplit_block_probe\"
    block: \"statement refused by rule block_probe\"
  - name: reports_on_primary
    digest: \"SELECT @@port AS reports_port WHERE ? = ?\"
    route: primary
  - name: writes_to_replica
    match: \"^INSERT INTO rule_rows\"
    route: replica
  - name: slow_capped
    user: app
    match: \"SLEEP\\\\(3\\\\)\"
    timeout_ms: 300
";

fn code(e: &MyError) -> Option<u16> {
    match e {
        MyError::Server(s) => Some(s.code),
        _ => None,
    }
}

/// The client got a query rule's refusal: ERR 1148 with the rule's message.
fn assert_blocked(e: &MyError, message: &str) {
    assert_eq!(code(e), Some(1148), "{e}");
    assert!(e.to_string().contains(message), "{e}");
}

/// The ids in `table` on the primary (through an admin connection to it).
async fn ids_on_primary(admin: &mut Conn, table: &str) -> Vec<i64> {
    admin
        .query(format!("SELECT id FROM {TEST_DB}.{table} ORDER BY id"))
        .await
        .unwrap()
}

fn counter(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// A proxy with `rules`, and a session through it in which table `table` (an `id` column)
/// exists and is empty.
async fn session_with_rules(c: &Cluster, rules: &str, table: &str) -> (Proxy, Conn) {
    let p = start_edited(c, "", |yaml| format!("{yaml}{rules}")).await;
    let mut conn = p.conn().await;
    conn.query_drop(format!(
        "CREATE TABLE IF NOT EXISTS {table} (id INT PRIMARY KEY)"
    ))
    .await
    .unwrap();
    conn.query_drop(format!("DELETE FROM {table}"))
        .await
        .unwrap();
    (p, conn)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_rules_block_route_and_time_statements() {
    let Some(c) = cluster("query_rules_block_route_and_time_statements") else {
        return;
    };
    let (p, mut conn) = session_with_rules(&c, RULES, "rule_rows").await;
    // Blocked: the message, code 1148, and no server saw it.
    let e = conn
        .query_drop("INSERT INTO rule_rows VALUES (1) /* rwsplit_block_probe */")
        .await
        .expect_err("blocked");
    assert_blocked(&e, "statement refused by rule block_probe");
    let t = Instant::now();
    let e = conn
        .query_drop("SELECT SLEEP(2) AS rwsplit_block_probe")
        .await
        .expect_err("blocked");
    assert_eq!(code(&e), Some(1148), "{e}");
    assert!(t.elapsed() < Duration::from_millis(1500), "it never ran");
    // The session goes on.
    let one: i64 = conn.query_first("SELECT 1").await.unwrap().unwrap();
    assert_eq!(one, 1);
    // route: primary, by digest (other literal values, other spacing).
    let primary = c.primary_port();
    let port: u16 = conn
        .query_first("select @@port as reports_port where 2=2")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(port, primary);
    let port: u16 = conn.query_first("SELECT @@port").await.unwrap().unwrap();
    assert!(
        c.replica_ports().contains(&port),
        "plain reads stay on replicas"
    );
    // route: replica for a write: refused, the write runs on the primary.
    conn.query_drop("INSERT INTO rule_rows VALUES (2)")
        .await
        .expect("the write runs");
    // timeout_ms: cancelled as proxy.query_timeout_ms cancels (the server's ERR 1317).
    let t = Instant::now();
    let e = conn
        .query_drop("SELECT SLEEP(3)")
        .await
        .expect_err("cancelled");
    assert_eq!(code(&e), Some(1317), "{e}");
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    // Only the unblocked row exists, on the primary.
    let mut admin = c.admin(0).await.expect("admin");
    let ids = ids_on_primary(&mut admin, "rule_rows").await;
    assert_eq!(ids, [2]);
    let m = p.ctx.metrics.render();
    assert_eq!(
        counter(&m, "rwsplit_query_rule_hits_total{rule=\"block_probe\"}"),
        2,
        "{m}"
    );
    assert_eq!(
        counter(
            &m,
            "rwsplit_query_rule_hits_total{rule=\"reports_on_primary\"}"
        ),
        1
    );
    assert_eq!(
        counter(
            &m,
            "rwsplit_query_rule_hits_total{rule=\"writes_to_replica\"}"
        ),
        1
    );
    assert_eq!(
        counter(
            &m,
            "rwsplit_query_rule_overrides_refused_total{rule=\"writes_to_replica\"}"
        ),
        1
    );
    assert_eq!(
        counter(&m, "rwsplit_query_rule_hits_total{rule=\"slow_capped\"}"),
        1
    );
    // A reload swaps the rules: the probe passes, a new rule blocks.
    let yaml = std::fs::read_to_string(&p.config_file).unwrap();
    let (head, _) = yaml.split_once("query_rules:").unwrap();
    let new = format!(
        "{head}query_rules:\n  - name: no_deletes\n    match: \"(?i)^delete\"\n    block: \"deletes are off\"\n"
    );
    std::fs::write(&p.config_file, new).unwrap();
    p.ctx.reload().expect("reload");
    conn.query_drop("SELECT 1 AS rwsplit_block_probe")
        .await
        .expect("no longer blocked");
    let e = conn
        .query_drop("delete from rule_rows")
        .await
        .expect_err("blocked");
    assert!(e.to_string().contains("deletes are off"), "{e}");
    // A bad rule is refused with its line; the running rules stay.
    let yaml = std::fs::read_to_string(&p.config_file).unwrap();
    std::fs::write(&p.config_file, yaml.replace("(?i)^delete", "(?i)^delete(")).unwrap();
    let err = p.ctx.reload().expect_err("bad regex").to_string();
    assert!(err.contains("query_rules[0].match"), "{err}");
    conn.query_drop("delete from rule_rows")
        .await
        .expect_err("still blocked");
}

const PS_RULES: &str = "query_rules:
  - name: ps_block
    match: \"rwsplit_ps_block\"
    block: \"prepared statement refused by rule ps_block\"
  - name: ps_on_primary
    digest: \"SELECT @@port AS ps_port WHERE 1 = 1\"
    route: primary
  - name: ps_writes_to_replica
    match: \"^INSERT INTO ps_rule_rows\"
    route: replica
  - name: ps_slow_capped
    match: \"ps_slow\"
    timeout_ms: 300
";

/// `Com_stmt_prepare` of every server of `c`, summed: what the servers prepared so far.
async fn prepares_on_servers(c: &Cluster) -> u64 {
    let mut sum = 0;
    for i in 0..=c.replicas() {
        let mut admin = c.admin(i).await.expect("admin");
        let row: Option<(String, u64)> = admin
            .query_first("SHOW GLOBAL STATUS LIKE 'Com_stmt_prepare'")
            .await
            .unwrap();
        sum += row.map_or(0, |(_, n)| n);
    }
    sum
}

async fn replace_rules(p: &Proxy, rules: &str) {
    let yaml = std::fs::read_to_string(&p.config_file).unwrap();
    let (head, _) = yaml.split_once("query_rules:").unwrap();
    std::fs::write(&p.config_file, format!("{head}{rules}")).unwrap();
    p.ctx.reload().expect("reload");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_rules_apply_to_prepared_statements() {
    let Some(c) = cluster("query_rules_apply_to_prepared_statements") else {
        return;
    };
    let (p, mut conn) = session_with_rules(&c, PS_RULES, "ps_rule_rows").await;
    // Blocked at COM_STMT_PREPARE: the rule's ERR 1148, and no server prepared anything.
    let before = prepares_on_servers(&c).await;
    let e = conn
        .prep("INSERT INTO ps_rule_rows VALUES (?) /* rwsplit_ps_block */")
        .await
        .expect_err("blocked");
    assert_blocked(&e, "prepared statement refused by rule ps_block");
    let e = conn
        .exec_drop("SELECT SLEEP(?) AS rwsplit_ps_block", (2,))
        .await
        .expect_err("blocked");
    assert_eq!(code(&e), Some(1148), "{e}");
    assert_eq!(
        prepares_on_servers(&c).await,
        before,
        "a blocked statement is prepared on no server"
    );
    // route: primary on each execution of one handle, by digest (placeholders digest as
    // literals do); a read without a rule stays on replicas.
    let primary = c.primary_port();
    let on_primary = conn
        .prep("SELECT @@port AS ps_port WHERE 1 = ?")
        .await
        .unwrap();
    for i in 0..3 {
        let port: u16 = conn.exec_first(&on_primary, (1,)).await.unwrap().unwrap();
        assert_eq!(port, primary, "execution {i}");
    }
    let port: u16 = conn
        .exec_first("SELECT @@port WHERE 1 = ?", (1,))
        .await
        .unwrap()
        .unwrap();
    assert!(
        c.replica_ports().contains(&port),
        "plain reads stay on replicas"
    );
    // route: replica for a prepared write: refused, it runs on the primary.
    conn.exec_drop("INSERT INTO ps_rule_rows VALUES (?)", (2,))
        .await
        .expect("the write runs");
    // timeout_ms on an execution: ERR 1317, as for text.
    let t = Instant::now();
    let e = conn
        .exec_drop("SELECT SLEEP(?) AS ps_slow", (3,))
        .await
        .expect_err("cancelled");
    assert_eq!(code(&e), Some(1317), "{e}");
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    let mut admin = c.admin(0).await.expect("admin");
    let ids = ids_on_primary(&mut admin, "ps_rule_rows").await;
    assert_eq!(ids, [2], "only the unblocked row, on the primary");
    // One hit per blocked prepare, one per execution.
    let m = p.ctx.metrics.render();
    let hits = |rule: &str| {
        counter(
            &m,
            &format!("rwsplit_query_rule_hits_total{{rule=\"{rule}\"}}"),
        )
    };
    assert_eq!(hits("ps_block"), 2, "{m}");
    assert_eq!(hits("ps_on_primary"), 3, "{m}");
    assert_eq!(hits("ps_writes_to_replica"), 1, "{m}");
    assert_eq!(hits("ps_slow_capped"), 1, "{m}");
    assert_eq!(
        counter(
            &m,
            "rwsplit_query_rule_overrides_refused_total{rule=\"ps_writes_to_replica\"}"
        ),
        1,
        "{m}"
    );
    // A reload: handles prepared before it follow the new rules at their next execution.
    let delete = conn
        .prep("DELETE FROM ps_rule_rows WHERE id = ?")
        .await
        .unwrap();
    replace_rules(
        &p,
        "query_rules:\n  - name: no_deletes\n    match: \"(?i)^delete\"\n    block: \"deletes are off\"\n",
    )
    .await;
    let e = conn
        .exec_drop(&delete, (2,))
        .await
        .expect_err("blocked since the reload");
    assert_blocked(&e, "deletes are off");
    let port: u16 = conn.exec_first(&on_primary, (1,)).await.unwrap().unwrap();
    assert!(
        c.replica_ports().contains(&port),
        "its rule is gone: a read again"
    );
    let ids = ids_on_primary(&mut admin, "ps_rule_rows").await;
    assert_eq!(ids, [2], "the blocked execution deleted nothing");
    // And unblocked again by the next reload.
    replace_rules(
        &p,
        "query_rules:\n  - name: unrelated\n    user: nobody\n    route: primary\n",
    )
    .await;
    conn.exec_drop(&delete, (2,)).await.expect("runs again");
    let ids = ids_on_primary(&mut admin, "ps_rule_rows").await;
    assert!(ids.is_empty(), "{ids:?}");
    let m = p.ctx.metrics.render();
    assert_eq!(
        counter(&m, "rwsplit_query_rule_hits_total{rule=\"no_deletes\"}"),
        1,
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_rule_stops_sysbench_at_its_prepare() {
    let Some(c) = cluster("a_block_rule_stops_sysbench_at_its_prepare") else {
        return;
    };
    let rules = "query_rules:
  - name: no_point_selects
    digest: \"SELECT c FROM sbtest1 WHERE id = 1\"
    block: \"point selects are off\"
";
    let p = start_edited(&c, "", |yaml| format!("{yaml}{rules}")).await;
    // sysbench prepares its statements (server-side, its default) when a thread starts: the
    // block answers the prepare, so no table is needed and nothing may reach a server.
    let port = format!("--mysql-port={}", p.port);
    let out = tokio::process::Command::new("sysbench")
        .args([
            "oltp_point_select",
            "--mysql-host=127.0.0.1",
            "--mysql-user=app",
            "--mysql-password=app-password",
            "--mysql-db=rwsplit_test",
            "--tables=1",
            "--threads=2",
            "--time=2",
            &port,
            "run",
        ])
        .output()
        .await
        .expect("sysbench runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("1148") && text.contains("point selects are off"),
        "{text}"
    );
    let m = p.ctx.metrics.render();
    assert!(
        counter(
            &m,
            "rwsplit_query_rule_hits_total{rule=\"no_point_selects\"}"
        ) >= 1,
        "{m}"
    );
    let prepared: Vec<&str> = m
        .lines()
        .filter(|l| l.starts_with("rwsplit_backend_prepares_total{"))
        .filter(|l| !l.ends_with(" 0"))
        .collect();
    assert!(
        prepared.is_empty(),
        "nothing prepared on a server: {prepared:?}"
    );
}
