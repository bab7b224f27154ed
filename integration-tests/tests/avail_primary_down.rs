//! Availability with the primary gone (issue 11, DESIGN §3.1), on private topologies under a
//! 70 % read / 30 % write load from 8 sessions: reads keep their rate with no error, writes
//! fail fast with "no writable primary (primary down since …)" and work again within a second
//! of the primary's return; a fresh PyMySQL client can connect and read meanwhile.

mod avail_support;
mod proxy_support;

use avail_support::{reads_ok, start_load, Load, Op, ONE_AT_A_TIME};
use integration_tests::mysql_async::prelude::Queryable;
use integration_tests::Cluster;
use proxy_support::{start_edited, Proxy};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CONNECT_TIMEOUT_MS: u64 = 500;
const SESSIONS: usize = 8;
const DOWN_ERROR: &str = "no writable primary (primary down since ";

/// The load these tests run while the primary fails.
fn load(p: &Proxy) -> Load {
    Load {
        url: p.url(),
        sessions: SESSIONS,
        insert: "INSERT INTO avail_t (session) VALUES (1)",
    }
}

/// The table the load writes to.
async fn create_table(conn: &mut integration_tests::mysql_async::Conn) {
    conn.query_drop(
        "CREATE TABLE IF NOT EXISTS avail_t (id INT AUTO_INCREMENT PRIMARY KEY, session INT)",
    )
    .await
    .expect("create table");
}

fn timeouts() -> String {
    format!("  pool:\n    connect_timeout_ms: {CONNECT_TIMEOUT_MS}\n    read_timeout_ms: 3000\n")
}

/// The proxy's YAML with lag from the embedded binlog reader instead of Seconds_Behind_Master.
fn embedded(c: &Cluster) -> impl FnOnce(String) -> String {
    let server_id = 6000 + u32::from(c.base_port());
    move |yaml: String| {
        format!(
            "{}sidecar:\n  server_id: {server_id}\n  poll_interval_ms: 100\n",
            yaml.replace("lag_source: seconds_behind_master", "lag_source: embedded")
        )
    }
}

async fn primary_killed_under_load(c: Cluster, p: Proxy) {
    // Installed here, not left to whichever test happened to run first.
    let python = tokio::task::block_in_place(proxy_support::python_clients);
    let mut setup = p.conn().await;
    create_table(&mut setup).await;
    c.wait_replicas_caught_up(Duration::from_secs(10))
        .await
        .expect("replicas caught up");
    drop(setup);

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (ops, tasks) = start_load(load(&p), stop.clone());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let baseline_from = Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let killed_at = Instant::now();
    c.kill_server(0).expect("kill the primary");

    // A fresh PyMySQL client connects and reads while the primary is down.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let py = tokio::spawn(pymysql_connect_and_read(python, p.port));
    tokio::time::sleep(Duration::from_secs(4)).await;
    let py = py.await.expect("pymysql check");
    // Four seconds into the outage the lag source itself measures the replicas (a carried
    // bound would be past 4 s by now), and the proxy says the primary is down.
    // A replica may really lack the last transactions: SIGKILL can stop the primary after it
    // sent them to the reader and one replica but not the other. That replica is then as stale
    // as its lag says; every replica that has all another one has must be measured fresh.
    let topo = p.ctx.topology();
    let lags: Vec<Option<u64>> = topo.servers.iter().skip(1).map(|s| s.lag_ms).collect();
    let mut applied = Vec::new();
    for i in 1..=2 {
        let mut admin = c.admin(i).await.expect("replica admin");
        applied.push(applied_seq(&mut admin).await);
    }
    let most = applied.iter().copied().max().unwrap_or(0);
    for (lag, seq) in lags.iter().zip(&applied) {
        assert!(
            lag.is_some_and(|l| l < 3000) || (lag.is_some() && *seq < most),
            "replica lag while the primary is down: {lags:?}, applied {applied:?}"
        );
    }
    assert!(topo.primary_down.is_some() && topo.primary().is_none());
    let metrics = p.ctx.metrics.render();
    assert!(metrics.contains("rwsplit_primary_down 1"), "{metrics}");
    let restart_at = Instant::now();
    let cluster = Arc::new(c);
    let restarter = {
        let c = cluster.clone();
        tokio::task::spawn_blocking(move || c.start_servers())
    };
    // When the primary accepts connections and is writable again.
    let up_at = loop {
        if let Ok(mut a) = cluster.admin(0).await {
            let ro: Option<i64> = a.query_first("SELECT @@read_only").await.ok().flatten();
            if ro == Some(0) {
                break Instant::now();
            }
        }
        assert!(
            restart_at.elapsed() < Duration::from_secs(60),
            "the primary did not come back"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    restarter
        .await
        .expect("join")
        .expect("cluster.sh up after the kill");
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in tasks {
        t.await.expect("load session");
    }
    let ops = ops.lock().unwrap().clone();

    let baseline = reads_ok(&ops, baseline_from, killed_at) as f64 / 3.0;
    let down_secs = restart_at.duration_since(killed_at).as_secs_f64();
    let down = reads_ok(&ops, killed_at, restart_at) as f64 / down_secs;
    let read_errors: Vec<&Op> = ops
        .iter()
        .filter(|o| !o.write && o.error.is_some())
        .collect();
    let writes_down: Vec<&Op> = ops
        .iter()
        .filter(|o| o.write && o.at >= killed_at && o.at < up_at)
        .collect();
    let write_errors: Vec<&&Op> = writes_down.iter().filter(|o| o.error.is_some()).collect();
    let slowest_write_error = write_errors
        .iter()
        .map(|o| o.took)
        .max()
        .unwrap_or_default();
    // From connect_timeout_ms after the kill (the first monitor rounds), every refused write
    // names the cause.
    let undocumented: Vec<&String> = write_errors
        .iter()
        .filter(|o| o.at > killed_at + Duration::from_millis(CONNECT_TIMEOUT_MS))
        .filter_map(|o| o.error.as_ref())
        .filter(|e| !e.contains(DOWN_ERROR))
        .collect();
    let first_write_back = ops
        .iter()
        .filter(|o| o.write && o.error.is_none() && o.at >= up_at)
        .map(|o| o.at + o.took)
        .min();
    eprintln!(
        "reads/s baseline {baseline:.0}, primary down {down:.0} ({:.0} %); read errors {}; \
         writes while down {} ({} refused, slowest refusal {slowest_write_error:?}); \
         first write after the primary's return {:?} later; pymysql: {py}",
        100.0 * down / baseline,
        read_errors.len(),
        writes_down.len(),
        write_errors.len(),
        first_write_back.map(|t| t.duration_since(up_at)),
    );
    let rel = |t: Instant| {
        t.saturating_duration_since(killed_at).as_millis() as i64
            - killed_at.saturating_duration_since(t).as_millis() as i64
    };
    if let (Some(a), Some(b)) = (read_errors.first(), read_errors.last()) {
        eprintln!(
            "read errors from {} ms to {} ms after the kill; restart at {} ms, primary up at {} ms: {:?}",
            rel(a.at),
            rel(b.at),
            rel(restart_at),
            rel(up_at),
            read_errors
                .iter()
                .take(8)
                .map(|o| (rel(o.at), o.took, o.error.as_deref().unwrap_or("")))
                .collect::<Vec<_>>()
        );
    }
    // Not one read error: not while the primary is down, and not when it comes back. Then
    // the replicas reconnect their IO threads (and the reader its stream), so reads lean on
    // the primary for a moment: the sessions' connections that died with it must not count
    // as its failures (they once opened its breaker, and reads failed for about 1.5 s).
    assert!(
        read_errors.is_empty(),
        "reads failed (ms after the kill: restart at {}, primary up at {}): {:?}",
        rel(restart_at),
        rel(up_at),
        read_errors
            .iter()
            .take(5)
            .map(|o| (rel(o.at), o.error.as_deref().unwrap_or("")))
            .collect::<Vec<_>>()
    );
    assert!(
        down >= 0.8 * baseline,
        "reads fell to {down:.0}/s from {baseline:.0}/s"
    );
    assert!(!write_errors.is_empty(), "writes while down must fail");
    assert!(
        slowest_write_error <= Duration::from_millis(CONNECT_TIMEOUT_MS),
        "a refused write took {slowest_write_error:?}"
    );
    assert!(
        undocumented.is_empty(),
        "writes refused without the documented reason: {:?}",
        undocumented.iter().take(3).collect::<Vec<_>>()
    );
    let back = first_write_back
        .expect("writes work again")
        .duration_since(up_at);
    assert!(
        back <= Duration::from_secs(1),
        "writes came back {back:?} after the primary"
    );
    assert!(py.contains("\"ok\": true"), "PyMySQL while down: {py}");
}

/// Connects with PyMySQL's defaults (autocommit off: it sends `SET AUTOCOMMIT = 0`), with
/// `autocommit=True`, with a charset and a `USE`, and reads; prints JSON.
async fn pymysql_connect_and_read(python: Option<String>, port: u16) -> String {
    let Some(py) = python else {
        // Outside CI without the client libraries (python_clients() said so loudly).
        return "{\"ok\": true, \"skipped\": \"no PyMySQL\"}".into();
    };
    let script =
        integration_tests::repo_root().join("integration-tests/clients/primary_down_check.py");
    let out = tokio::process::Command::new(&py)
        .arg(&script)
        .arg(port.to_string())
        .output()
        .await
        .unwrap_or_else(|e| panic!("{py} could not run: {e}"));
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout).trim(),
        String::from_utf8_lossy(&out.stderr).trim()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn primary_killed_under_load_seconds_behind_master() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(c) = Cluster::private_or_skip("primary_killed_under_load_seconds_behind_master")
    else {
        return;
    };
    let p = start_edited(&c, &timeouts(), |y| y).await;
    primary_killed_under_load(c, p).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn primary_killed_under_load_embedded_reader() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(c) = Cluster::private_or_skip("primary_killed_under_load_embedded_reader") else {
        return;
    };
    let edit = embedded(&c);
    let p = start_edited(&c, &timeouts(), edit).await;
    primary_killed_under_load(c, p).await;
}

/// An external failover by hand while the load runs: writes follow the new writer within a
/// second and every acknowledged write is on it; the embedded reader's timeline continues on
/// the new primary with no GTID lost or repeated; lag stays measured for the other replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn external_failover_under_load_writes_and_reader_follow() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(c) = Cluster::private_or_skip("external_failover_under_load_writes_and_reader_follow")
    else {
        return;
    };
    let edit = embedded(&c);
    let p = start_edited(&c, &timeouts(), edit).await;
    let mut setup = p.conn().await;
    create_table(&mut setup).await;
    drop(setup);
    c.wait_replicas_caught_up(Duration::from_secs(10))
        .await
        .expect("caught up");
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (ops, tasks) = start_load(load(&p), stop.clone());
    tokio::time::sleep(Duration::from_secs(2)).await;

    // The failover: demote, let replica2 apply everything, promote it, repoint the others.
    let writable_at = c.promote(0, 2).await.expect("failover by hand");
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in tasks {
        t.await.expect("load session");
    }
    let ops = ops.lock().unwrap().clone();

    let first_ok = ops
        .iter()
        .filter(|o| o.write && o.error.is_none() && o.at >= writable_at)
        .map(|o| o.at + o.took)
        .min()
        .expect("writes work after the failover");
    let follow = first_ok.duration_since(writable_at);
    let late_errors: Vec<&Op> = ops
        .iter()
        .filter(|o| o.error.is_some() && o.at > writable_at + Duration::from_secs(1))
        .collect();
    let acked = ops.iter().filter(|o| o.write && o.error.is_none()).count();
    let read_errors: Vec<&Op> = ops
        .iter()
        .filter(|o| !o.write && o.error.is_some())
        .collect();
    // Which reads failed, when (ms relative to replica2 becoming writable) and in which session.
    let rel = |t: Instant| {
        t.saturating_duration_since(writable_at).as_millis() as i64
            - writable_at.saturating_duration_since(t).as_millis() as i64
    };
    let first_read_errors: Vec<(i64, usize, &str)> = read_errors
        .iter()
        .take(5)
        .map(|o| (rel(o.at), o.session, o.error.as_deref().unwrap_or("")))
        .collect();
    let mut admin = c.admin(2).await.expect("new primary");
    let rows: Option<u64> = admin
        .query_first("SELECT COUNT(*) FROM rwsplit_test.avail_t")
        .await
        .expect("count");
    eprintln!(
        "writes followed {follow:?} after replica2 became writable; {acked} writes acknowledged, \
         {rows:?} rows on the new primary; {} read errors (first: ms after writable, session, \
         error: {first_read_errors:?}); errors 1 s after: {}",
        read_errors.len(),
        late_errors.len()
    );
    assert!(
        follow <= Duration::from_secs(1),
        "writes followed after {follow:?}"
    );
    assert!(
        late_errors.is_empty(),
        "errors after the writer moved: {:?}",
        late_errors.iter().take(3).collect::<Vec<_>>()
    );
    assert_eq!(
        rows,
        Some(acked as u64),
        "every acknowledged write, and nothing else, is on the new primary"
    );
    assert!(
        read_errors.is_empty(),
        "reads are not disturbed: {} read errors, the first (ms after replica2 became writable, \
         session, error): {first_read_errors:?}",
        read_errors.len()
    );

    // The embedded reader moved to replica2 and its timeline runs on without a gap.
    let reader = p.ctx.lag_reader().expect("embedded reader");
    assert_eq!(reader.primary_name(), "replica2");
    let old_id = format!("-{}-", 1);
    let gtids: Vec<(u32, u64)> = reader
        .recent_transactions()
        .iter()
        .filter_map(|t| t.gtid.clone())
        .filter_map(|g| {
            let mut it = g.split('-');
            let (_domain, server, seq) = (it.next()?, it.next()?, it.next()?);
            Some((server.parse().ok()?, seq.parse().ok()?))
        })
        .collect();
    let servers: std::collections::BTreeSet<u32> = gtids.iter().map(|g| g.0).collect();
    assert!(
        servers.len() >= 2,
        "the timeline holds transactions of both primaries: {servers:?} ({old_id})"
    );
    for w in gtids.windows(2) {
        assert_eq!(
            w[1].1,
            w[0].1 + 1,
            "no gap or repeat in the timeline: {w:?}"
        );
    }
    // Lag stays measured for replica1, now replicating from replica2.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let t = p.ctx.topology();
        if t.primary() == Some(2)
            && t.servers[1].lag_ms.is_some()
            && t.router.servers[1].replicating
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "replica1 lag not measured after the failover: {:?}",
            t.servers[1]
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A session inside a transaction on the primary when it dies gets an error at its next
/// statement (never a continuation elsewhere), fast; the same session then reads from a
/// replica, and its writes are refused with the documented reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_on_the_lost_primary_errors_then_the_session_reads_on() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(c) = Cluster::private_or_skip("transaction_on_the_lost_primary") else {
        return;
    };
    let p = start_edited(&c, &timeouts(), |y| y).await;
    let mut conn = p.conn().await;
    create_table(&mut conn).await;
    conn.query_drop("BEGIN").await.expect("begin");
    conn.query_drop("INSERT INTO avail_t (session) VALUES (7)")
        .await
        .expect("insert in the transaction");
    c.kill_server(0).expect("kill the primary");
    let t = Instant::now();
    let next = conn
        .query_drop("INSERT INTO avail_t (session) VALUES (8)")
        .await;
    let took = t.elapsed();
    assert!(next.is_err(), "the transaction cannot continue elsewhere");
    assert!(
        took <= Duration::from_millis(CONNECT_TIMEOUT_MS),
        "the error took {took:?}"
    );
    // The application ends the failed transaction, as it would after any error in one; the
    // rollback of a transaction the server lost is answered (not refused for want of a writer).
    let rollback = conn.query_drop("ROLLBACK").await;
    eprintln!("after the loss: {next:?}; ROLLBACK: {rollback:?}");
    // Reads go on in the same session.
    conn.ping().await.expect("the client connection stays open");
    let deadline = Instant::now() + Duration::from_secs(2);
    let port = loop {
        match conn.query_first::<u16, _>("SELECT @@port").await {
            Ok(Some(port)) => break port,
            other => assert!(Instant::now() < deadline, "read failed: {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_ne!(port, c.port(0));
    let err = loop {
        let e = conn
            .query_drop("INSERT INTO avail_t (session) VALUES (9)")
            .await
            .expect_err("no writable primary");
        if e.to_string().contains(DOWN_ERROR) || Instant::now() > deadline {
            break e.to_string();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(err.contains(DOWN_ERROR), "{err}");
    assert!(err.contains("1290"), "ER_OPTION_PREVENTS_STATEMENT: {err}");
}

/// The middle of an external failover, held long enough for the monitor to see it: the old
/// primary is read-only and every replica has stopped replicating (as a failover tool does
/// before it promotes one), so no server is writable and no replica is in the read rotation.
/// The servers are all up and hold the data: reads go on (on the last writer), they do not
/// fail for want of a writer. The external failover under load above can meet a short spell of
/// this: replica2 checked mid-promotion (stopped, not yet writable), then replica1 checked
/// between its `STOP SLAVE` and `START SLAVE` before replica2's next check (27 reads failed
/// once in a CI rehearsal).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_go_on_while_no_server_is_writable_and_replication_is_stopped() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(c) = Cluster::private_or_skip("reads_go_on_while_no_server_is_writable") else {
        return;
    };
    let p = start_edited(&c, &timeouts(), |y| y).await;
    let mut conn = p.conn().await;
    create_table(&mut conn).await;
    let before = read_port(&mut conn)
        .await
        .expect("a read before the failover");
    assert_ne!(before, c.port(0), "reads start on a replica");

    c.admin_exec(0, "SET GLOBAL read_only = 1")
        .await
        .expect("demote");
    c.wait_replicas_caught_up(Duration::from_secs(10))
        .await
        .expect("caught up");
    for i in 1..=2 {
        c.admin_exec(i, "STOP SLAVE")
            .await
            .expect("stop replication");
    }
    // Several monitor rounds (100 ms each) with nothing writable and nothing replicating.
    let mut answered = Vec::new();
    let stopped_at = Instant::now();
    while stopped_at.elapsed() < Duration::from_secs(1) {
        match read_port(&mut conn).await {
            Ok(port) => answered.push(port),
            Err(e) => panic!(
                "a read failed {:?} after replication stopped: {e}",
                stopped_at.elapsed()
            ),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let write = conn
        .query_drop("INSERT INTO avail_t (session) VALUES (1)")
        .await;
    eprintln!("reads answered by {answered:?}; a write meanwhile: {write:?}");
    assert!(write.is_err(), "nothing is writable: the write is refused");

    // The failover completes: replica2 writes, the others replicate from it; reads go on.
    c.admin_exec(2, "RESET SLAVE ALL; SET GLOBAL read_only = 0")
        .await
        .expect("promote replica2");
    for i in [0, 1] {
        let use_gtid = if i == 0 { "current_pos" } else { "slave_pos" };
        c.admin_exec(
            i,
            &format!(
                "CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT={}, \
                 MASTER_USER='{}', MASTER_PASSWORD='{}', MASTER_USE_GTID={use_gtid}, \
                 MASTER_CONNECT_RETRY=1; START SLAVE",
                c.port(2),
                integration_tests::MONITOR_USER,
                integration_tests::MONITOR_PASSWORD
            ),
        )
        .await
        .expect("repoint");
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        read_port(&mut conn)
            .await
            .expect("reads after the failover");
        if conn
            .query_drop("INSERT INTO avail_t (session) VALUES (2)")
            .await
            .is_ok()
        {
            break;
        }
        assert!(Instant::now() < deadline, "writes did not follow replica2");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `@@port` of the server that answers a read through the proxy.
async fn read_port(
    conn: &mut integration_tests::mysql_async::Conn,
) -> Result<u16, integration_tests::mysql_async::Error> {
    conn.query_first::<u16, _>("SELECT @@port")
        .await
        .map(Option::unwrap_or_default)
}

/// The sequence number of the last transaction replica `admin` applied (one GTID domain).
async fn applied_seq(admin: &mut integration_tests::mysql_async::Conn) -> u64 {
    let pos: Option<String> = admin
        .query_first("SELECT @@gtid_slave_pos")
        .await
        .expect("gtid_slave_pos");
    pos.as_deref()
        .and_then(|p| p.rsplit('-').next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}
