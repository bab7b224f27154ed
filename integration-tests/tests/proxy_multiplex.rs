//! Statement-level multiplexing (issue 14): with the default configuration a session holds a
//! backend connection only while a statement runs (or its state needs it), so hundreds of
//! clients share a few server connections without an error. Connections change hands carrying
//! their session state: every session sees its own character set, `sql_mode`, time zone,
//! schema and last insert id on every statement, whoever used the connection before; and
//! prepared statements are prepared again only on connections that never had their text.

mod proxy_support;

use integration_tests::mysql_async::prelude::Queryable;
use integration_tests::mysql_async::{Conn, Opts, OptsBuilder};
use integration_tests::TEST_DB;
use proxy_support::{cluster, start_with, Proxy};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A user of its own, so that the servers' process lists show only this file's connections.
const USER: &str = "mux_user";
const PASSWORD: &str = "mux-pw";
const OTHER_DB: &str = "rwsplit_mux_other";

async fn prepare_servers(c: &integration_tests::Cluster) {
    for sql in [
        format!("CREATE USER IF NOT EXISTS '{USER}'@'%' IDENTIFIED BY '{PASSWORD}'"),
        format!("GRANT ALL ON {TEST_DB}.* TO '{USER}'@'%'"),
        format!("CREATE DATABASE IF NOT EXISTS {OTHER_DB}"),
        format!("GRANT ALL ON {OTHER_DB}.* TO '{USER}'@'%'"),
        format!(
            "CREATE TABLE IF NOT EXISTS {TEST_DB}.mux_ids (id INT AUTO_INCREMENT PRIMARY KEY, who INT)"
        ),
    ] {
        c.admin_exec(0, &sql).await.expect("set up the servers");
    }
    c.wait_replicas_caught_up(Duration::from_secs(10))
        .await
        .expect("replicas have the user");
}

/// A proxy with the default pool settings but `max_per_server`, serving `USER`.
async fn proxy(c: &integration_tests::Cluster, max_per_server: usize) -> Proxy {
    prepare_servers(c).await;
    start_with(
        c,
        &format!(
            "    - name: {USER}\n      password: {PASSWORD}\n  pool:\n    max_per_server: {max_per_server}\n"
        ),
    )
    .await
}

async fn user_conn(p: &Proxy, db: Option<&str>) -> Conn {
    let url = format!(
        "mysql://{USER}:{PASSWORD}@127.0.0.1:{}/{}",
        p.port,
        db.unwrap_or("")
    );
    let opts = OptsBuilder::from_opts(Opts::from_url(&url).expect("url")).prefer_socket(false);
    Conn::new(opts).await.expect("connect through the proxy")
}

/// The most connections from `USER` any server showed in its process list while `stop` was
/// unset, sampled continuously; and how many samples were taken.
async fn sample_servers(
    c: &integration_tests::Cluster,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<(usize, usize)> {
    let mut admins = Vec::new();
    for i in 0..=c.replicas() {
        admins.push(c.admin(i).await.expect("admin"));
    }
    tokio::spawn(async move {
        let (mut most, mut samples) = (0usize, 0usize);
        while !stop.load(Ordering::Relaxed) {
            for a in admins.iter_mut() {
                let n: Option<u64> = a
                    .query_first(format!(
                        "SELECT COUNT(*) FROM information_schema.processlist WHERE user = '{USER}'"
                    ))
                    .await
                    .expect("processlist");
                most = most.max(n.unwrap_or(0) as usize);
            }
            samples += 1;
        }
        (most, samples)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_clients_share_eight_connections_per_server() {
    let Some(c) = cluster("two_hundred_clients_share_eight_connections_per_server") else {
        return;
    };
    let p = proxy(&c, 8).await;
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = sample_servers(&c, stop.clone()).await;

    const CLIENTS: usize = 200;
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        clients.push(user_conn(&p, Some(TEST_DB)).await);
    }
    let mut tasks = Vec::new();
    for (i, mut conn) in clients.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            let mut backends = HashSet::new();
            for j in 0..10 {
                // Reads (replicas) and autocommit writes (primary), as a web worker sends.
                let (port, thread): (u16, u64) = conn
                    .query_first("SELECT @@port, @@pseudo_thread_id")
                    .await?
                    .expect("a row");
                backends.insert((port, thread));
                if j % 5 == 0 {
                    conn.exec_drop(
                        format!("INSERT INTO {TEST_DB}.mux_ids (who) VALUES (?)"),
                        (i as i64,),
                    )
                    .await?;
                }
            }
            conn.disconnect().await?;
            Ok::<_, integration_tests::mysql_async::Error>(backends)
        }));
    }
    let mut errors = Vec::new();
    let mut shared = 0;
    for t in tasks {
        match t.await.expect("client task") {
            Ok(b) => shared += usize::from(b.len() > 1),
            Err(e) => errors.push(e.to_string()),
        }
    }
    stop.store(true, Ordering::Relaxed);
    let (most, samples) = sampler.await.expect("sampler");
    assert!(
        errors.is_empty(),
        "{} clients failed: {errors:?}",
        errors.len()
    );
    assert!(most <= 8, "a server saw {most} connections from {USER}");
    assert!(samples > 5, "only {samples} process list samples");
    // The clients really shared: most ran on more than one backend connection.
    assert!(
        shared > CLIENTS / 2,
        "only {shared} clients changed connection"
    );
    for b in p.ctx.backends().iter() {
        assert!(
            b.connections() <= 8,
            "the proxy holds {} connections to {}",
            b.connections(),
            b.name()
        );
    }
}

/// What a session checks on every statement.
type Seen = (String, String, String, Option<String>);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_session_keeps_its_own_state_across_hand_overs() {
    let Some(c) = cluster("every_session_keeps_its_own_state_across_hand_overs") else {
        return;
    };
    // Three connections per server for 24 sessions: every statement may land on a connection
    // another session (with another state) used last.
    let p = proxy(&c, 3).await;
    // A fresh connection's defaults, as the server gives them to this client library.
    let mut plain = user_conn(&p, None).await;
    let defaults: Seen = plain
        .query_first("SELECT @@character_set_client, @@sql_mode, @@time_zone, DATABASE()")
        .await
        .unwrap()
        .expect("a row");
    plain.disconnect().await.unwrap();

    const SESSIONS: usize = 24;
    let mut tasks = Vec::new();
    for i in 0..SESSIONS {
        let db = [Some(TEST_DB), None][i % 2];
        let mut conn = user_conn(&p, db).await;
        let defaults = defaults.clone();
        tasks.push(tokio::spawn(async move {
            // Session i: one of four states, set in different ways and orders.
            let mut want = defaults.clone();
            want.3 = db.map(str::to_string);
            match i % 4 {
                0 => {}
                1 => {
                    conn.query_drop("SET NAMES latin1").await?;
                    conn.query_drop("SET time_zone = '+01:00'").await?;
                    want.0 = "latin1".into();
                    want.2 = "+01:00".into();
                }
                2 => {
                    conn.query_drop("SET sql_mode = 'ANSI_QUOTES', time_zone = '-03:00'")
                        .await?;
                    want.1 = "ANSI_QUOTES".into();
                    want.2 = "-03:00".into();
                }
                _ => {
                    conn.query_drop(format!("USE {OTHER_DB}")).await?;
                    conn.query_drop("SET SESSION sql_mode = 'NO_ZERO_DATE'")
                        .await?;
                    want.1 = "NO_ZERO_DATE".into();
                    want.3 = Some(OTHER_DB.into());
                }
            }
            let mut own_id = 0u64;
            for j in 0..30 {
                let seen: Seen = conn
                    .query_first(
                        "SELECT @@character_set_client, @@sql_mode, @@time_zone, DATABASE()",
                    )
                    .await?
                    .expect("a row");
                assert_eq!(seen, want, "session {i}, statement {j}");
                if j % 10 == 3 {
                    conn.query_drop(format!("INSERT INTO {TEST_DB}.mux_ids (who) VALUES ({i})"))
                        .await?;
                    own_id = conn.last_insert_id().expect("an insert id");
                }
                if j % 10 == 7 {
                    // LAST_INSERT_ID() is this session's, whoever wrote on the connection since.
                    let id: Option<u64> = conn.query_first("SELECT LAST_INSERT_ID()").await?;
                    assert_eq!(id, Some(own_id), "session {i}, statement {j}");
                }
            }
            conn.disconnect().await?;
            Ok::<_, integration_tests::mysql_async::Error>(())
        }));
    }
    for t in tasks {
        t.await.expect("session task").expect("no error");
    }
    // Hand-overs happened, and most needed no reset.
    let (mut diffs, mut resets) = (0, 0);
    for b in p.ctx.backends().iter() {
        diffs += b.metrics().state_syncs_diff.get();
        resets += b.metrics().state_syncs_reset.get();
    }
    assert!(
        diffs > 0,
        "no connection was brought to another session's state"
    );
    assert!(
        resets < diffs,
        "{resets} resets for {diffs} diffs: hand-overs should rarely reset"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn prepared_statements_follow_sessions_across_connections() {
    let Some(c) = cluster("prepared_statements_follow_sessions_across_connections") else {
        return;
    };
    let p = proxy(&c, 2).await;
    const SESSIONS: usize = 12;
    const EXECUTIONS: usize = 20;
    let mut tasks = Vec::new();
    for i in 0..SESSIONS {
        let mut conn = user_conn(&p, Some(TEST_DB)).await;
        tasks.push(tokio::spawn(async move {
            // Server-side prepared statements (mysql_async prepares once per text and
            // connection, then executes, as most drivers do).
            let stmt = conn.prep("SELECT ? + 1, @@port").await?;
            for j in 0..EXECUTIONS {
                let n = (i * 1000 + j) as i64;
                let (v, _port): (i64, u16) = conn.exec_first(&stmt, (n,)).await?.expect("a row");
                assert_eq!(v, n + 1, "session {i}, execution {j}");
            }
            // Closing the client's handle leaves the statement on the connections for others.
            conn.close(stmt).await?;
            let stmt = conn.prep("SELECT ? + 1, @@port").await?;
            let (v, _): (i64, u16) = conn.exec_first(&stmt, (5,)).await?.expect("a row");
            assert_eq!(v, 6);
            conn.disconnect().await?;
            Ok::<_, integration_tests::mysql_async::Error>(())
        }));
    }
    for t in tasks {
        t.await.expect("session task").expect("no error");
    }
    let (mut prepares, mut hits) = (0, 0);
    for b in p.ctx.backends().iter() {
        prepares += b.metrics().prepares.get();
        hits += b.metrics().prepare_cache_hits.get();
    }
    let executions = (SESSIONS * (EXECUTIONS + 1)) as u64;
    // Every client prepare is answered from a server (2 per session); executions prepare only
    // on connections that never had the text: at most 2 per server.
    let bound = (SESSIONS * 2 + 2 * (c.replicas() + 1)) as u64;
    assert!(
        prepares <= bound,
        "{prepares} prepares for {executions} executions (bound {bound})"
    );
    assert!(
        hits >= executions - bound,
        "{hits} cache hits of {executions}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_connections_that_held_lasting_state_are_reset_before_reuse() {
    let Some(c) = cluster("only_connections_that_held_lasting_state_are_reset_before_reuse") else {
        return;
    };
    // One connection per server: every session gets the same primary connection.
    let p = proxy(&c, 1).await;
    let primary = p.ctx.backend("primary").expect("primary");
    let check_ins = || primary.metrics().state_syncs_check_in.get();

    // A finished transaction leaves nothing behind: its connection goes back as it is.
    let mut a = user_conn(&p, Some(TEST_DB)).await;
    a.query_drop("BEGIN").await.unwrap();
    a.query_drop(format!("INSERT INTO {TEST_DB}.mux_ids (who) VALUES (-1)"))
        .await
        .unwrap();
    a.query_drop("COMMIT").await.unwrap();
    let thread_a: u64 = a
        .query_first("/* rwsplit:primary */ SELECT @@pseudo_thread_id")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        check_ins(),
        0,
        "a committed transaction's connection was reset"
    );

    // User variables live on: the session keeps the connection, and resets it when it leaves.
    a.query_drop("SET @secret = 42").await.unwrap();
    let v: Option<i64> = a.query_first("SELECT @secret").await.unwrap();
    assert_eq!(v, Some(42));
    a.disconnect().await.unwrap();
    let mut b = user_conn(&p, Some(TEST_DB)).await;
    let (v, thread_b): (Option<i64>, u64) = b
        .query_first("SELECT @secret, @@pseudo_thread_id")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(thread_b, thread_a, "the same (only) primary connection");
    assert_eq!(v, None, "another session's user variable leaked");
    assert_eq!(check_ins(), 1);
    b.disconnect().await.unwrap();
}
