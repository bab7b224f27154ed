//! Read-your-writes through the proxy (issue 10, DESIGN §5) against real MariaDB: the GTID of
//! every commit is read from OK packets (and kept off the wire for clients that did not ask),
//! `SELECT @@last_gtid` answers it however the session's connections changed hands, and a
//! read under `routing.consistency` goes only to a replica that has applied what the session
//! wrote (or a token demands), else waits up to `routing.causal_wait_ms`, else the primary.

mod proxy_support;

use integration_tests::mysql_async::prelude::Queryable;
use integration_tests::mysql_async::Conn;
use integration_tests::Cluster;
use proxy::protocol::consts::{cap, status};
use proxy::protocol::session_track;
use proxy_support::lag_sources::{self, start_following, start_sidecar, wait_positions_caught_up};
use proxy_support::{cluster, raw_login_caps, raw_query, start_with, Proxy};
use std::time::{Duration, Instant};

/// The primary's binlog position (one domain on the test topologies).
async fn binlog_pos(c: &Cluster) -> String {
    let mut admin = c.admin(0).await.expect("admin");
    admin
        .query_first("SELECT @@gtid_binlog_pos")
        .await
        .expect("gtid_binlog_pos")
        .expect("a row")
}

async fn last_gtid(conn: &mut Conn, var: &str) -> String {
    conn.query_first(format!("SELECT {var}"))
        .await
        .expect("select last gtid")
        .expect("a row")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_gtids_are_tracked_and_last_gtid_answers_them() {
    let Some(c) = cluster("commit_gtids_are_tracked_and_last_gtid_answers_them") else {
        return;
    };
    // release_delay_ms 0: connections go back to the pool (and are reset) after every
    // statement, so the server-side @@last_gtid of a fresh connection would be empty.
    let p = start_with(&c, "  pool:\n    release_delay_ms: 0\n").await;
    let mut conn = p.conn().await;
    conn.query_drop(
        "CREATE TABLE IF NOT EXISTS cons_gtid (id INT AUTO_INCREMENT PRIMARY KEY, v INT)",
    )
    .await
    .expect("create");
    conn.query_drop("INSERT INTO cons_gtid (v) VALUES (1)")
        .await
        .expect("insert");
    let after_insert = binlog_pos(&c).await;
    assert_eq!(last_gtid(&mut conn, "@@last_gtid").await, after_insert);
    assert_eq!(
        last_gtid(&mut conn, "@@rwsplit_last_gtid").await,
        after_insert
    );
    // COMMIT of an explicit transaction.
    conn.query_drop("BEGIN").await.expect("begin");
    conn.query_drop("INSERT INTO cons_gtid (v) VALUES (2)")
        .await
        .expect("insert in trx");
    conn.query_drop("COMMIT").await.expect("commit");
    let after_commit = binlog_pos(&c).await;
    assert_ne!(after_commit, after_insert);
    assert_eq!(last_gtid(&mut conn, "@@last_gtid").await, after_commit);
    // A multi-statement: the last commit counts.
    conn.query_drop("INSERT INTO cons_gtid (v) VALUES (3); INSERT INTO cons_gtid (v) VALUES (4)")
        .await
        .expect("multi");
    let after_multi = binlog_pos(&c).await;
    assert_eq!(last_gtid(&mut conn, "@@last_gtid").await, after_multi);
    // A new session has written nothing: empty, as on a fresh server connection.
    let mut other = p.conn().await;
    assert_eq!(last_gtid(&mut other, "@@last_gtid").await, "");
    let tracked = p
        .ctx
        .metrics
        .write_gtids
        .with_label_values(&["tracked"])
        .get();
    assert!(tracked >= 4, "every commit's GTID was read, got {tracked}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gtid_tracking_stays_off_the_wire_unless_asked_for() {
    let Some(c) = cluster("gtid_tracking_stays_off_the_wire_unless_asked_for") else {
        return;
    };
    let p = start_with(&c, "").await;
    let base = cap::PROXY_OFFERS & !cap::CONNECT_ATTRS;
    // A client without CLIENT_SESSION_TRACK: OK packets exactly as a server sends it.
    let mut plain = raw_login_caps(p.port, base & !cap::SESSION_TRACK).await;
    let ok = raw_query(
        &mut plain,
        "CREATE TABLE IF NOT EXISTS cons_wire (id INT AUTO_INCREMENT PRIMARY KEY, v INT)",
    )
    .await;
    assert_eq!(ok.first(), Some(&0), "{ok:?}");
    let ok = raw_query(&mut plain, "INSERT INTO cons_wire (v) VALUES (1)").await;
    assert_eq!(ok.first(), Some(&0), "{ok:?}");
    let flags = session_track::ok_status(&ok).expect("an OK");
    assert_eq!(flags & status::SESSION_STATE_CHANGED, 0, "{ok:?}");
    assert_eq!(ok.len(), 7, "no info, no session state: {ok:?}");
    // A client with CLIENT_SESSION_TRACK that did not ask for the GTID: none in the OK.
    let mut tracking = raw_login_caps(p.port, base).await;
    let ok = raw_query(&mut tracking, "INSERT INTO cons_wire (v) VALUES (2)").await;
    assert_eq!(ok.first(), Some(&0), "{ok:?}");
    assert_eq!(session_track::gtid(&ok), None, "{ok:?}");
    // Once it asks, it gets the server's entry.
    let ok = raw_query(
        &mut tracking,
        "SET session_track_system_variables = 'last_gtid'",
    )
    .await;
    assert_eq!(ok.first(), Some(&0), "{ok:?}");
    let ok = raw_query(&mut tracking, "INSERT INTO cons_wire (v) VALUES (3)").await;
    let pos = binlog_pos(&c).await;
    assert_eq!(
        session_track::gtid(&ok).map(|g| String::from_utf8_lossy(g).into_owned()),
        Some(pos),
        "{ok:?}"
    );
}

/// A proxy with the embedded binlog reader (default poll settings), `routing` lines added.
async fn start_embedded(c: &Cluster, server_id: u32, routing: &str) -> Proxy {
    lag_sources::start_embedded(c, server_id, routing, "").await
}

fn reads(p: &Proxy, level: &str, outcome: &str) -> u64 {
    p.ctx
        .metrics
        .consistent_reads
        .with_label_values(&[level, outcome])
        .get()
}

/// Reads at `level` counted so far under each outcome (replica, waited, primary). A read is
/// counted just after its answer went out: `conn` is pinged first, and the session answers
/// the ping only once it is done with the statements before it, so every read `conn` sent is
/// in the count.
async fn outcomes(p: &Proxy, conn: &mut Conn, level: &str) -> [u64; 3] {
    conn.ping().await.expect("ping");
    ["replica", "waited", "primary"].map(|o| reads(p, level, o))
}

/// `(v, @@port)` of row `id` through `conn`, `None` for v when the row is missing.
async fn read_row(conn: &mut Conn, hint: &str, table: &str, id: u64) -> (Option<i64>, u16) {
    let sql = format!("{hint} SELECT (SELECT v FROM {table} WHERE id = {id}), @@port");
    conn.query_first(sql).await.expect("read").expect("a row")
}

async fn set_delay(c: &Cluster, seconds: u32) {
    for i in 1..=c.replicas() {
        c.set_replica_delay(i, seconds).await.expect("delay");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_your_writes_never_reads_a_replica_that_lacks_the_write() {
    let Some(c) =
        Cluster::private_or_skip("read_your_writes_never_reads_a_replica_that_lacks_the_write")
    else {
        return;
    };
    let p = start_embedded(&c, 7000, "  consistency: read_your_writes\n").await;
    let replicas = c.replica_ports();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let text = p.ctx.metrics.render();
    for r in ["replica1", "replica2"] {
        let series = format!("rwsplit_replica_position_age_seconds{{replica=\"{r}\"}} ");
        let age: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix(series.as_str()))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("{series} exported: {text}"));
        assert!((0.0..1.0).contains(&age), "{r}: position age {age} s");
    }
    // `/servers` shows the same per replica: the position sessions decide on and its age.
    let doc = proxy::admin::servers::json(&p.ctx, &p.positions);
    for s in doc["servers"].as_array().expect("servers") {
        let (name, age) = (&s["name"], &s["applied_position_age_ms"]);
        if s["role"] == "primary" {
            assert!(age.is_null() && s["applied_position"].is_null(), "{s}");
            continue;
        }
        let age = age
            .as_u64()
            .unwrap_or_else(|| panic!("{name}: an age: {s}"));
        assert!(age < 1000, "{name}: position age {age} ms");
        let pos = s["applied_position"].as_str().unwrap_or_default();
        assert!(pos.starts_with("0="), "{name}: a position in domain 0: {s}");
    }
    let mut conn = p.conn().await;
    conn.query_drop("CREATE TABLE ryw (id INT AUTO_INCREMENT PRIMARY KEY, v INT)")
        .await
        .expect("create");
    c.wait_replicas_caught_up(Duration::from_secs(10))
        .await
        .expect("caught up");
    // Replicas apply 2 s late but stay in rotation (lag below max_lag_ms 5000).
    set_delay(&c, 2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    conn.query_drop("INSERT INTO ryw (v) VALUES (42)")
        .await
        .expect("insert");
    let id: u64 = conn
        .query_first("SELECT LAST_INSERT_ID()")
        .await
        .expect("id")
        .expect("row");
    let before = outcomes(&p, &mut conn, "read_your_writes").await;
    let (v, port) = read_row(&mut conn, "", "ryw", id).await;
    assert_eq!(v, Some(42), "the session reads its own write");
    assert_eq!(port, c.primary_port(), "no replica has it yet: the primary");
    let after = outcomes(&p, &mut conn, "read_your_writes").await;
    assert_eq!(
        after,
        [before[0], before[1], before[2] + 1],
        "counted once, as a primary read"
    );
    // The same read without the guarantee goes to a lagging replica and misses the write:
    // what the guarantee prevents (so the assertions above can fail).
    let (v, port) = read_row(&mut conn, "/* rwsplit:consistency=lag */", "ryw", id).await;
    assert!(
        replicas.contains(&port),
        "lag-only read on a replica: {port}"
    );
    assert_eq!(v, None, "the replica has not applied the write yet");
    // Once the replicas applied it, the read goes to one of them again.
    set_delay(&c, 0).await;
    wait_positions_caught_up(&p, &c).await;
    let before = outcomes(&p, &mut conn, "read_your_writes").await;
    let n = 5;
    for _ in 0..n {
        let (v, port) = read_row(&mut conn, "", "ryw", id).await;
        assert_eq!(v, Some(42));
        assert!(
            replicas.contains(&port),
            "a replica that applied it: {port}"
        );
    }
    // Every read under the level is counted, under exactly one outcome: here `replica` (the
    // requirement was met, no wait).
    let after = outcomes(&p, &mut conn, "read_your_writes").await;
    assert_eq!(after.iter().sum::<u64>(), before.iter().sum::<u64>() + n);
    assert_eq!(after[0], before[0] + n, "{before:?} → {after:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_waits_for_a_replica_within_causal_wait_ms() {
    let Some(c) = Cluster::private_or_skip("a_read_waits_for_a_replica_within_causal_wait_ms")
    else {
        return;
    };
    let p = start_embedded(
        &c,
        7100,
        "  consistency: read_your_writes\n  causal_wait_ms: 5000\n",
    )
    .await;
    let mut conn = p.conn().await;
    conn.query_drop("CREATE TABLE ryw_wait (id INT AUTO_INCREMENT PRIMARY KEY, v INT)")
        .await
        .expect("create");
    c.wait_replicas_caught_up(Duration::from_secs(10))
        .await
        .expect("caught up");
    set_delay(&c, 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    conn.query_drop("INSERT INTO ryw_wait (v) VALUES (7)")
        .await
        .expect("insert");
    let started = Instant::now();
    let (v, port) = read_row(&mut conn, "", "ryw_wait", 1).await;
    let took = started.elapsed();
    assert_eq!(v, Some(7));
    assert!(
        c.replica_ports().contains(&port),
        "served by the replica that caught up, not the primary: {port}"
    );
    assert!(took >= Duration::from_millis(300), "it waited: {took:?}");
    assert!(
        took < Duration::from_secs(4),
        "not longer than needed: {took:?}"
    );
    assert_eq!(reads(&p, "read_your_writes", "waited"), 1);
    set_delay(&c, 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gtid_token_from_one_proxy_is_honoured_by_another() {
    let Some(c) = Cluster::private_or_skip("a_gtid_token_from_one_proxy_is_honoured_by_another")
    else {
        return;
    };
    // Two proxies sharing one sidecar, both at the default level (lag).
    let sidecar = start_sidecar(&c, 7200).await;
    let a = start_following(&c, &sidecar, "").await;
    let b = start_following(&c, &sidecar, "").await;
    let mut on_a = a.conn().await;
    on_a.query_drop("CREATE TABLE tokens (id INT AUTO_INCREMENT PRIMARY KEY, v INT)")
        .await
        .expect("create");
    c.wait_replicas_caught_up(Duration::from_secs(10))
        .await
        .expect("caught up");
    set_delay(&c, 2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    on_a.query_drop("INSERT INTO tokens (v) VALUES (5)")
        .await
        .expect("insert");
    let token = last_gtid(&mut on_a, "@@last_gtid").await;
    assert!(!token.is_empty());
    let mut on_b = b.conn().await;
    let (v, _) = read_row(&mut on_b, "", "tokens", 1).await;
    assert_eq!(v, None, "without the token B reads a lagging replica");
    let hint = format!("/* rwsplit:after_gtid={token} */");
    let (v, port) = read_row(&mut on_b, &hint, "tokens", 1).await;
    assert_eq!(v, Some(5), "with the token B sees A's write");
    assert_eq!(port, c.primary_port());
    // The same token as a session variable, on a third connection (through B): every read
    // that follows demands it, until it is cleared.
    let mut by_var = b.conn().await;
    by_var
        .query_drop(format!("SET @rwsplit_after_gtid = '{token}'"))
        .await
        .expect("set the token variable");
    let kept: Option<String> = by_var
        .query_first::<Option<String>, _>("SELECT @rwsplit_after_gtid")
        .await
        .expect("read the token variable")
        .flatten();
    assert_eq!(kept.as_deref(), Some(token.as_str()));
    for _ in 0..3 {
        let (v, port) = read_row(&mut by_var, "", "tokens", 1).await;
        assert_eq!(v, Some(5), "with the token variable B sees A's write");
        assert_eq!(port, c.primary_port());
    }
    let err = by_var
        .query_drop("SELECT @rwsplit_after_gtid, 1")
        .await
        .expect_err("the variable lives in the proxy, not on the servers");
    assert!(err.to_string().contains("kept by the proxy"), "{err}");
    let err = by_var
        .query_drop("SET @rwsplit_after_gtid = 'not a gtid'")
        .await
        .expect_err("not a GTID set");
    assert!(err.to_string().contains("GTID"), "{err}");
    by_var
        .query_drop("SET @rwsplit_after_gtid = NULL")
        .await
        .expect("clear the token variable");
    let kept: Option<String> = by_var
        .query_first::<Option<String>, _>("SELECT @rwsplit_after_gtid")
        .await
        .expect("read the token variable")
        .flatten();
    assert_eq!(kept, None);
    let (v, _) = read_row(&mut by_var, "", "tokens", 1).await;
    assert_eq!(v, None, "cleared: B reads a lagging replica again");
    by_var
        .query_drop(format!("SET @rwsplit_after_gtid = '{token}'"))
        .await
        .expect("set the token variable again");
    set_delay(&c, 0).await;
    wait_positions_caught_up(&b, &c).await;
    let (v, port) = read_row(&mut on_b, &hint, "tokens", 1).await;
    assert_eq!(v, Some(5));
    assert!(
        c.replica_ports().contains(&port),
        "a replica that applied the token serves it: {port}"
    );
    // The variable pins nothing: once a replica has the token, reads go there.
    let (v, port) = read_row(&mut by_var, "", "tokens", 1).await;
    assert_eq!(v, Some(5));
    assert!(
        c.replica_ports().contains(&port),
        "a replica that applied the token variable's position serves it: {port}"
    );
}

/// Share of reads served by replicas when each read follows the session's own write after
/// `gap`, with `routing.consistency: read_your_writes`.
async fn replica_share_after_writes(
    p: &Proxy,
    c: &Cluster,
    table: &str,
    gap: Duration,
    n: usize,
) -> (f64, Duration) {
    let mut conn = p.conn().await;
    conn.query_drop(format!(
        "CREATE TABLE IF NOT EXISTS {table} (id INT AUTO_INCREMENT PRIMARY KEY, v INT)"
    ))
    .await
    .expect("create");
    c.wait_replicas_caught_up(Duration::from_secs(10))
        .await
        .expect("caught up");
    let replicas = c.replica_ports();
    let (mut on_replica, mut read_time) = (0usize, Duration::ZERO);
    for i in 0..n {
        conn.query_drop(format!("INSERT INTO {table} (v) VALUES ({i})"))
            .await
            .expect("insert");
        let id: u64 = conn
            .query_first("SELECT LAST_INSERT_ID()")
            .await
            .expect("id")
            .expect("row");
        tokio::time::sleep(gap).await;
        let started = Instant::now();
        let (v, port) = read_row(&mut conn, "", table, id).await;
        read_time += started.elapsed();
        assert_eq!(v, Some(i as i64), "read-your-writes held");
        if replicas.contains(&port) {
            on_replica += 1;
        }
    }
    (on_replica as f64 / n as f64, read_time / n as u32)
}

/// Fresh positions (issue 10), with the DEFAULT poll settings: replicas are polled fast while
/// they are behind a commit the reader saw, and sessions see each poll as it lands, so a read
/// 20 ms after a write goes to a replica, embedded or through the sidecar; right after the
/// write, `causal_wait_ms: 10` (which asks for a poll at once) keeps it there. Prints the
/// figures recorded in docs/BENCHMARKS.md.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_after_writes_stay_on_replicas_with_fresh_positions() {
    let Some(c) =
        Cluster::private_or_skip("reads_after_writes_stay_on_replicas_with_fresh_positions")
    else {
        return;
    };
    let n = 200;
    let sidecar = start_sidecar(&c, 7400).await;
    // (source, causal_wait_ms, gap between write and read, sidecar settings); the last two are
    // for comparison only: fast polls off (the former default: every 100 ms), and no wait
    // right after a write.
    let fast_off = "  fast_poll_interval_ms: 0\n";
    let cases: [(&str, u64, u64, &str); 6] = [
        ("embedded", 0, 20, ""),
        ("sidecar", 0, 20, ""),
        ("embedded", 10, 0, ""),
        ("sidecar", 10, 0, ""),
        ("embedded", 0, 20, fast_off),
        ("embedded", 0, 0, ""),
    ];
    let mut results = Vec::new();
    for (i, (source, wait, gap, settings)) in cases.into_iter().enumerate() {
        let routing = format!("  consistency: read_your_writes\n  causal_wait_ms: {wait}\n");
        let p = if source == "embedded" {
            lag_sources::start_embedded(&c, 7500 + i as u32 * 10, &routing, settings).await
        } else {
            start_following(&c, &sidecar, &routing).await
        };
        let table = format!("fresh_{i}");
        let (share, read) =
            replica_share_after_writes(&p, &c, &table, Duration::from_millis(gap), n).await;
        let settings = if settings.is_empty() {
            "defaults"
        } else {
            settings.trim()
        };
        println!(
            "fresh positions: source={source} ({settings}) causal_wait_ms={wait} \
             read {gap} ms after the write: {:.1} % of {n} reads on replicas, mean read {:.2} ms",
            share * 100.0,
            read.as_secs_f64() * 1000.0
        );
        if i < 4 {
            results.push((source, wait, gap, share));
        }
    }
    for (source, wait, gap, share) in results {
        assert!(
            share >= 0.8,
            "{source}, causal_wait_ms {wait}, read {gap} ms after the write: only {:.1} % on replicas",
            share * 100.0
        );
    }
}

/// Mean time of `n` autocommit inserts through `conn`, each with `hint`.
async fn insert_latency(conn: &mut Conn, hint: &str, table: &str, n: u32) -> Duration {
    let started = Instant::now();
    for i in 0..n {
        conn.query_drop(format!("{hint} INSERT INTO {table} (v) VALUES ({i})"))
            .await
            .expect("insert");
    }
    started.elapsed() / n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_quorum_holds_the_ok_until_enough_replicas_applied_it() {
    let Some(c) =
        Cluster::private_or_skip("write_quorum_holds_the_ok_until_enough_replicas_applied_it")
    else {
        return;
    };
    let p = start_embedded(&c, 7700, "  write_quorum: 2\n  quorum_timeout_ms: 500\n").await;
    let mut conn = p.conn().await;
    conn.query_drop(
        "/* rwsplit:quorum=0 */ CREATE TABLE quorum (id INT AUTO_INCREMENT PRIMARY KEY, v INT)",
    )
    .await
    .expect("create");
    // Both replicas apply: quorum 2 is reached.
    let took = insert_latency(&mut conn, "", "quorum", 1).await;
    assert!(took < Duration::from_millis(500), "{took:?}");
    // Measure the added commit latency while both replicas keep up.
    let n = 100;
    let off = insert_latency(&mut conn, "/* rwsplit:quorum=0 */", "quorum", n).await;
    let one = insert_latency(&mut conn, "/* rwsplit:quorum=1 */", "quorum", n).await;
    let two = insert_latency(&mut conn, "/* rwsplit:quorum=2 */", "quorum", n).await;
    let majority = insert_latency(&mut conn, "/* rwsplit:quorum=majority */", "quorum", n).await;
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let ratio = |d: Duration| d.as_secs_f64() / off.as_secs_f64().max(1e-9);
    println!(
        "write quorum: mean autocommit INSERT {:.2} ms without, {:.2} ms with quorum=1 ({:.2}x), \
         {:.2} ms with quorum=2 ({:.2}x), {:.2} ms with quorum=majority ({:.2}x) ({n} each)",
        ms(off),
        ms(one),
        ratio(one),
        ms(two),
        ratio(two),
        ms(majority),
        ratio(majority)
    );
    // One of the two replicas stops applying: quorum 2 cannot be reached.
    c.stop_sql_thread(2).await.expect("stop sql thread");
    let started = Instant::now();
    let err = conn
        .query_drop("INSERT INTO quorum (v) VALUES (-1)")
        .await
        .expect_err("quorum 2 times out");
    let took = started.elapsed();
    let text = err.to_string();
    assert!(
        text.contains("committed on the primary") && text.contains("only 1 of the 2 replicas"),
        "{text}"
    );
    assert!(took >= Duration::from_millis(500), "{took:?}");
    let mut admin = c.admin(0).await.expect("admin");
    let n_rows: u64 = admin
        .query_first("SELECT COUNT(*) FROM rwsplit_test.quorum WHERE v = -1")
        .await
        .expect("count")
        .expect("row");
    assert_eq!(
        n_rows, 1,
        "the write is committed on the primary all the same"
    );
    // Quorum 1 is reached by the replica that still applies; the hint overrides the config.
    let started = Instant::now();
    conn.query_drop("/* rwsplit:quorum=1 */ INSERT INTO quorum (v) VALUES (-2)")
        .await
        .expect("quorum 1 reached");
    assert!(started.elapsed() < Duration::from_millis(500));
    conn.query_drop("/* rwsplit:quorum=majority */ INSERT INTO quorum (v) VALUES (-3)")
        .await
        .expect_err("a majority of two replicas is two");
    // A transaction's COMMIT waits the same way; the session goes on afterwards.
    conn.query_drop("BEGIN").await.expect("begin");
    conn.query_drop("INSERT INTO quorum (v) VALUES (-4)")
        .await
        .expect("insert in trx: nothing committed yet, no wait");
    let err = conn
        .query_drop("COMMIT")
        .await
        .expect_err("commit times out");
    assert!(
        err.to_string().contains("committed on the primary"),
        "{err}"
    );
    let in_trx: i64 = conn
        .query_first("SELECT @@in_transaction")
        .await
        .expect("select")
        .expect("row");
    assert_eq!(in_trx, 0, "the transaction is over");
    let m = &p.ctx.metrics.quorum_waits;
    assert!(m.with_label_values(&["timeout"]).get() >= 3);
    assert!(m.with_label_values(&["reached"]).get() >= 2);
    c.start_sql_thread(2).await.expect("start sql thread");
}

/// Write quorum on `received` (`routing.quorum_wait_for`): a replica whose SQL thread is
/// stopped but whose IO thread still receives counts; on `applied` it does not. Positions from
/// the embedded reader, then from a sidecar (the proxy asks it for fresh received positions
/// with `/kick?received=1` and learns them through its `/lag` long poll).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_quorum_on_received_counts_a_replica_that_only_receives() {
    let Some(c) =
        Cluster::private_or_skip("write_quorum_on_received_counts_a_replica_that_only_receives")
    else {
        return;
    };
    let quorum = "  write_quorum: 2\n  quorum_timeout_ms: 500\n";
    // A longer timeout on received: a slow quorum shows as its time, not as an error.
    let on_received = "  write_quorum: 2\n  quorum_timeout_ms: 3000\n  quorum_wait_for: received\n";
    {
        let received = start_embedded(&c, 7800, on_received).await;
        let applied = start_embedded(&c, 7810, quorum).await;
        received_reaches_the_quorum_applied_does_not(&c, &received, &applied, "embedded").await;
    }
    let sidecar = start_sidecar(&c, 7820).await;
    let received = start_following(&c, &sidecar, on_received).await;
    let applied = start_following(&c, &sidecar, quorum).await;
    received_reaches_the_quorum_applied_does_not(&c, &received, &applied, "sidecar").await;
}

/// With replica 2's SQL thread stopped (its IO thread running), `write_quorum: 2` commits
/// through `received` (a proxy on `quorum_wait_for: received`) are acknowledged, each well
/// within the 500 ms the reader's own status reads would take (the proxy asked for fresh
/// received positions), and through `applied` one times out with the documented error.
async fn received_reaches_the_quorum_applied_does_not(
    c: &Cluster,
    received: &Proxy,
    applied: &Proxy,
    source: &str,
) {
    let table = format!("received_{source}");
    let mut on_received = received.conn().await;
    let mut on_applied = applied.conn().await;
    on_received
        .query_drop(format!(
            "CREATE TABLE {table} (id INT AUTO_INCREMENT PRIMARY KEY, v INT)"
        ))
        .await
        .expect("create");
    c.stop_sql_thread(2).await.expect("stop sql thread");
    let mut took = Vec::new();
    for v in 1..=5 {
        let started = Instant::now();
        on_received
            .query_drop(format!("INSERT INTO {table} (v) VALUES ({v})"))
            .await
            .unwrap_or_else(|e| {
                panic!("{source}: both replicas received it: quorum 2 on received is reached: {e}")
            });
        took.push(started.elapsed());
    }
    println!("{source}: quorum 2 on received reached in {took:?}");
    // Received positions otherwise refresh with the replication status every 500 ms: five
    // commits all under 250 ms would then be luck (about 1 in 30).
    assert!(
        took.iter().all(|t| *t < Duration::from_millis(250)),
        "{source}: {took:?}"
    );
    let err = on_applied
        .query_drop(format!("INSERT INTO {table} (v) VALUES (-1)"))
        .await
        .expect_err("one replica applied it: quorum 2 on applied times out");
    let text = err.to_string();
    assert!(
        text.contains("committed on the primary") && text.contains("only 1 of the 2 replicas"),
        "{source}: {text}"
    );
    assert!(
        text.contains("applied it within 500 ms"),
        "{source}: {text}"
    );
    c.start_sql_thread(2).await.expect("start sql thread");
}

/// `routing.quorum_on_timeout: warning`: the client gets its OK with a warning, which the next
/// `SHOW WARNINGS` tells (the proxy answers it, with the backend's own warnings of the
/// statement), once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quorum_timeout_in_warning_mode_is_a_real_warning() {
    let Some(c) = Cluster::private_or_skip("a_quorum_timeout_in_warning_mode_is_a_real_warning")
    else {
        return;
    };
    let p = start_embedded(
        &c,
        7900,
        "  write_quorum: 2\n  quorum_timeout_ms: 300\n  quorum_on_timeout: warning\n",
    )
    .await;
    let mut conn = p.conn().await;
    conn.query_drop("CREATE TABLE warned (id INT PRIMARY KEY, v INT)")
        .await
        .expect("create");
    c.stop_sql_thread(2).await.expect("stop sql thread");
    conn.query_drop("INSERT INTO warned VALUES (1, 1)")
        .await
        .expect("warning mode: the OK comes");
    assert_eq!(conn.get_warnings(), 1, "one warning: the proxy's");
    let rows: Vec<(String, u32, String)> = conn.query("SHOW WARNINGS").await.expect("show");
    assert_eq!(rows.len(), 1, "{rows:?}");
    let (level, code, msg) = &rows[0];
    assert_eq!((level.as_str(), *code), ("Warning", 1105));
    assert!(
        msg.contains("committed on the primary") && msg.contains("only 1 of the 2 replicas"),
        "{msg}"
    );
    // A diagnostics statement leaves the list as it was, as on a server: asked again, told again.
    let again: Vec<(String, u32, String)> = conn.query("SHOW WARNINGS").await.expect("show");
    assert_eq!(again, rows);
    // The backend's own warnings of the statement come with the proxy's.
    let ignore = "INSERT IGNORE INTO warned VALUES (1, 2), (2, 2), (2, 3)";
    conn.query_drop(ignore).await.expect("insert ignore");
    assert_eq!(conn.get_warnings(), 3, "the duplicates' and the proxy's");
    let count: u32 = conn
        .query_first("SHOW COUNT(*) WARNINGS")
        .await
        .expect("count")
        .expect("row");
    assert_eq!(count, 3);
    let rows: Vec<(String, u32, String)> = conn.query("SHOW WARNINGS").await.expect("show");
    let codes: Vec<u32> = rows.iter().map(|r| r.1).collect();
    assert_eq!(codes, [1062, 1062, 1105], "{rows:?}");
    // The same statement on a direct connection: its list is the backend's part of the proxy's,
    // and LIMIT slices the proxy's list as the server slices its own.
    let mut direct = Conn::from_url(c.app_url(0).as_str()).await.expect("direct");
    direct
        .query_drop("CREATE TEMPORARY TABLE warned (id INT PRIMARY KEY, v INT)")
        .await
        .expect("create");
    direct
        .query_drop("INSERT INTO warned VALUES (1, 1)")
        .await
        .expect("insert");
    direct.query_drop(ignore).await.expect("insert ignore");
    let server: Vec<(String, u32, String)> = direct.query("SHOW WARNINGS").await.expect("show");
    assert_eq!(
        server,
        rows[..2],
        "the backend's warnings, then the proxy's"
    );
    for (limit, from, to) in [
        ("LIMIT 1", 0, 1),
        ("LIMIT 0", 0, 0),
        ("LIMIT 1, 1", 1, 2),
        (" limit 1,5 ", 1, 3),
        ("LIMIT 1 OFFSET 2", 2, 3),
        ("LIMIT 3, 1", 3, 3),
    ] {
        let sql = format!("SHOW WARNINGS {limit}");
        let got: Vec<(String, u32, String)> = conn.query(&sql).await.expect("show limit");
        assert_eq!(got, rows[from..to], "{sql} through the proxy");
        let want: Vec<(String, u32, String)> = direct.query(&sql).await.expect("show limit");
        assert_eq!(
            want,
            server[from.min(2)..to.min(2)],
            "{sql} on the server slices so"
        );
    }
    // SHOW ERRORS and @@error_count are the server's (the proxy's warning is no error), and
    // leave the list for the SHOW WARNINGS after them.
    for sql in ["SHOW ERRORS", "SHOW ERRORS LIMIT 1", "SHOW COUNT(*) ERRORS"] {
        let got: Vec<integration_tests::mysql_async::Row> = conn.query(sql).await.expect(sql);
        let want: Vec<integration_tests::mysql_async::Row> = direct.query(sql).await.expect(sql);
        assert_eq!(format!("{got:?}"), format!("{want:?}"), "{sql}");
    }
    let errors: u32 = conn
        .query_first("SELECT @@error_count")
        .await
        .expect("errors")
        .expect("row");
    assert_eq!(errors, 0);
    let after: Vec<(String, u32, String)> = conn.query("SHOW WARNINGS").await.expect("show");
    assert_eq!(after, rows);
    // Any other statement forgets it, as on a server.
    conn.query_drop("INSERT INTO warned VALUES (3, 3)")
        .await
        .expect("insert");
    conn.query_drop("SELECT 1").await.expect("select");
    let rows: Vec<(String, u32, String)> = conn.query("SHOW WARNINGS").await.expect("show");
    assert!(rows.is_empty(), "{rows:?}");
    c.start_sql_thread(2).await.expect("start sql thread");
}

/// The rows of the last result set of a multi-statement.
async fn last_rows(
    conn: &mut Conn,
    sql: &str,
) -> Result<Vec<i64>, integration_tests::mysql_async::Error> {
    let mut r = conn.query_iter(sql).await?;
    let mut last = Vec::new();
    while !r.is_empty() {
        last = r.collect::<i64>().await?;
    }
    Ok(last)
}

/// A multi-statement that commits and ends with a result set (`INSERT …; SELECT …`) is held
/// for the quorum too: only its last packet waits, the rows come first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multi_statement_ending_with_rows_waits_for_the_quorum() {
    let Some(c) =
        Cluster::private_or_skip("a_multi_statement_ending_with_rows_waits_for_the_quorum")
    else {
        return;
    };
    let p = start_embedded(&c, 7950, "  write_quorum: 2\n  quorum_timeout_ms: 500\n").await;
    let mut conn = p.conn().await;
    conn.query_drop("CREATE TABLE multi (id INT AUTO_INCREMENT PRIMARY KEY, v INT)")
        .await
        .expect("create");
    // Both replicas apply: the whole answer comes.
    let rows = last_rows(
        &mut conn,
        "INSERT INTO multi (v) VALUES (1); SELECT v FROM multi",
    )
    .await
    .expect("quorum reached");
    assert_eq!(rows, [1]);
    c.stop_sql_thread(2).await.expect("stop sql thread");
    let started = Instant::now();
    let err = last_rows(
        &mut conn,
        "INSERT INTO multi (v) VALUES (2); SELECT v FROM multi",
    )
    .await
    .expect_err("quorum 2 times out at the end of the multi-statement");
    let took = started.elapsed();
    assert!(
        err.to_string().contains("committed on the primary"),
        "{err}"
    );
    assert!(took >= Duration::from_millis(500), "{took:?}");
    // Quorum 1 is reached: the rows and the end come.
    let rows = last_rows(
        &mut conn,
        "/* rwsplit:quorum=1 */ INSERT INTO multi (v) VALUES (3); SELECT COUNT(*) FROM multi",
    )
    .await
    .expect("quorum 1 reached");
    assert_eq!(rows, [3]);
    c.start_sql_thread(2).await.expect("start sql thread");
}
