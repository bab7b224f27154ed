//! `KILL` and `CONNECTION_ID()` through the proxy speak of the proxy's session ids (DESIGN.md
//! §5b): a driver that cancels a statement with `KILL QUERY <its handshake id>` on a second
//! connection stops that statement and nothing else, `KILL CONNECTION` ends the session, and
//! `CONNECTION_ID()` is the handshake id whichever server answers.

mod proxy_support;

use integration_tests::mysql_async::prelude::Queryable;
use integration_tests::mysql_async::{ChangeUserOpts, Conn, Error as MyError, Opts, OptsBuilder};
use integration_tests::{APP_PASSWORD, APP_USER, TEST_DB};
use proxy::session::registry::Registry;
use proxy_support::{cluster, run_ok, start, start_with, Proxy};
use std::collections::HashSet;
use std::time::{Duration, Instant};

/// A second application user, created on the servers by the tests that need one.
const OTHER_USER: &str = "app_kill2";
const OTHER_PASSWORD: &str = "app-kill2-password";

fn server_code(e: &MyError) -> Option<u16> {
    match e {
        MyError::Server(s) => Some(s.code),
        _ => None,
    }
}

/// Runs `sql` on `conn` in a task; yields the connection back with the result and how long the
/// statement took.
fn spawn_query(
    mut conn: Conn,
    sql: &'static str,
) -> tokio::task::JoinHandle<(Conn, Result<Option<i64>, MyError>, Duration)> {
    tokio::spawn(async move {
        let t = Instant::now();
        let r = conn.query_first::<i64, _>(sql).await;
        (conn, r, t.elapsed())
    })
}

/// Waits until the proxy has `n` live sessions (a killed session unregisters when it ends).
async fn wait_sessions(p: &Proxy, n: usize) {
    let registry = Registry::of(&p.ctx);
    let deadline = Instant::now() + Duration::from_secs(3);
    while registry.len() != n {
        assert!(
            Instant::now() < deadline,
            "expected {n} live sessions, the proxy has {}",
            registry.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_query_cancels_that_statement_only() {
    let Some(c) = cluster("kill_query_cancels_that_statement_only") else {
        return;
    };
    let p = start(&c).await;
    let mut a = p.conn().await;
    let a_id = a.id();
    let mut b = p.conn().await;
    // A bystander on the primary, connected directly: a KILL sent to the primary's thread with
    // the proxy session's number (what the proxy used to do) could hit it.
    let direct = Conn::from_url(c.app_url(0)).await.unwrap();
    let bystander = spawn_query(direct, "SELECT SLEEP(3)");
    for sql in ["SELECT SLEEP(10)", "/* rwsplit:primary */ SELECT SLEEP(10)"] {
        let sleeper = spawn_query(a, sql);
        tokio::time::sleep(Duration::from_millis(500)).await;
        let t = Instant::now();
        b.query_drop(format!("KILL QUERY {a_id}"))
            .await
            .expect("KILL QUERY of a session of the same user is allowed");
        let (back, r, _) = tokio::time::timeout(Duration::from_secs(3), sleeper)
            .await
            .expect("the killed statement returns")
            .unwrap();
        let took = t.elapsed();
        assert!(
            took < Duration::from_secs(1),
            "{sql}: returned {took:?} after the KILL"
        );
        match &r {
            Err(e) if server_code(e) == Some(1317) => {}
            Ok(Some(1)) => {} // SLEEP interrupted answers 1 on some servers
            other => panic!("{sql}: the killed statement got {other:?}"),
        }
        a = back;
        // The session goes on, and nothing is left to interrupt its next statements.
        for i in 0..5i64 {
            let v: Option<i64> = a.query_first(format!("SELECT {i}")).await.unwrap();
            assert_eq!(v, Some(i));
        }
    }
    let (_, r, took) = bystander.await.unwrap();
    assert_eq!(
        r.unwrap(),
        Some(0),
        "the bystander's SLEEP(3) ran to its end"
    );
    assert!(
        took >= Duration::from_millis(2900),
        "bystander took {took:?}"
    );
    // Inside a transaction KILL QUERY stops the statement, not the transaction (as on a server).
    a.query_drop("CREATE TABLE IF NOT EXISTS kill_trx (v BIGINT)")
        .await
        .unwrap();
    a.query_drop("BEGIN").await.unwrap();
    a.query_drop(format!("INSERT INTO kill_trx VALUES ({a_id})"))
        .await
        .unwrap();
    let sleeper = spawn_query(a, "SELECT SLEEP(10)");
    tokio::time::sleep(Duration::from_millis(500)).await;
    b.query_drop(format!("KILL QUERY {a_id}")).await.unwrap();
    let (mut a, r, took) = sleeper.await.unwrap();
    assert!(took < Duration::from_secs(2), "took {took:?}");
    assert!(
        matches!(&r, Err(e) if server_code(e) == Some(1317)),
        "{r:?}"
    );
    let (in_trx, rows): (i64, i64) = a
        .query_first(format!(
            "SELECT @@in_transaction, COUNT(*) FROM kill_trx WHERE v = {a_id}"
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (in_trx, rows),
        (1, 1),
        "the transaction and its write survive"
    );
    a.query_drop("ROLLBACK").await.unwrap();
    // KILL QUERY of a session that runs nothing: OK, and its next statement is not hit.
    b.query_drop(format!("KILL QUERY {a_id}")).await.unwrap();
    let v: Option<i64> = a.query_first("SELECT 7").await.unwrap();
    assert_eq!(v, Some(7));
}

/// Backend connections go back to the pool after every statement (`release_delay_ms: 0`) and
/// serve another session at once; KILLs fired at one session while it runs statements must never
/// interrupt the other session's statements on those same connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_never_reaches_a_thread_after_it_changed_hands() {
    let Some(c) = cluster("kill_never_reaches_a_thread_after_it_changed_hands") else {
        return;
    };
    let p = start_with(&c, "  pool:\n    release_delay_ms: 0\n").await;
    let target = p.conn().await;
    let target_id = target.id();
    let other = p.conn().await;
    let mut killer = p.conn().await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let run = |mut conn: Conn, stop: std::sync::Arc<std::sync::atomic::AtomicBool>| {
        tokio::spawn(async move {
            let (mut ok, mut interrupted, mut threads) = (0u32, 0u32, HashSet::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match conn
                    .query_first::<(i64, i64), _>("SELECT SLEEP(0.005), @@pseudo_thread_id")
                    .await
                {
                    Ok(Some((0, t))) => {
                        ok += 1;
                        threads.insert(t);
                    }
                    Ok(_) => interrupted += 1,
                    Err(e) if server_code(&e) == Some(1317) => interrupted += 1,
                    Err(e) => panic!("unexpected error: {e}"),
                }
            }
            (ok, interrupted, threads)
        })
    };
    let t1 = run(target, stop.clone());
    let t2 = run(other, stop.clone());
    let started = Instant::now();
    let mut kills = 0;
    while started.elapsed() < Duration::from_secs(3) {
        killer
            .query_drop(format!("KILL QUERY {target_id}"))
            .await
            .unwrap();
        kills += 1;
        tokio::time::sleep(Duration::from_millis(fastrand_ms(kills))).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (t_ok, t_int, t_threads) = t1.await.unwrap();
    let (o_ok, o_int, o_threads) = t2.await.unwrap();
    eprintln!(
        "{kills} kills; target {t_ok} ok / {t_int} interrupted; other {o_ok} ok / {o_int} interrupted; \
         backend threads shared: {}",
        t_threads.intersection(&o_threads).count()
    );
    assert!(
        t_int > 0,
        "the KILLs interrupted some of the target's statements"
    );
    assert_eq!(
        o_int, 0,
        "a KILL meant for session {target_id} hit another session"
    );
    assert!(
        t_threads.intersection(&o_threads).count() > 0,
        "the two sessions shared backend connections (else the test proves nothing)"
    );
}

/// A varying pause (0..=4 ms) so the KILLs land at every point of the statements.
fn fastrand_ms(i: u64) -> u64 {
    (i.wrapping_mul(2_654_435_761) >> 7) % 5
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_connection_ends_the_session() {
    let Some(c) = cluster("kill_connection_ends_the_session") else {
        return;
    };
    let p = start(&c).await;
    let mut killer = p.conn().await;
    // An idle session in a transaction.
    let mut idle = p.conn().await;
    idle.query_drop("BEGIN").await.unwrap();
    let _: Option<i64> = idle.query_first("SELECT 1").await.unwrap();
    wait_sessions(&p, 2).await;
    killer
        .query_drop(format!("KILL {}", idle.id()))
        .await
        .unwrap();
    wait_sessions(&p, 1).await;
    let r = idle.query_first::<i64, _>("SELECT 1").await;
    assert!(
        r.is_err() && server_code(r.as_ref().unwrap_err()).is_none(),
        "the killed session's connection is gone: {r:?}"
    );
    // A session running a statement: it ends at once, as a server's killed thread does.
    let busy = p.conn().await;
    let busy_id = busy.id();
    let sleeper = spawn_query(busy, "SELECT SLEEP(10)");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let t = Instant::now();
    killer
        .query_drop(format!("KILL CONNECTION {busy_id}"))
        .await
        .unwrap();
    let (_, r, _) = tokio::time::timeout(Duration::from_secs(3), sleeper)
        .await
        .expect("the killed statement returns")
        .unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "took {:?}",
        t.elapsed()
    );
    assert!(r.is_err(), "the killed session's statement fails: {r:?}");
    wait_sessions(&p, 1).await;
    // Killing yourself: ERR 1317 for KILL QUERY (the session goes on), ERR 1927 and the end
    // of the session for KILL CONNECTION, as MariaDB answers.
    let e = killer
        .query_drop("KILL QUERY CONNECTION_ID()")
        .await
        .unwrap_err();
    assert_eq!(server_code(&e), Some(1317), "{e}");
    let v: Option<i64> = killer.query_first("SELECT 2").await.unwrap();
    assert_eq!(v, Some(2));
    let e = killer
        .query_drop(format!("KILL {}", killer.id()))
        .await
        .unwrap_err();
    assert_eq!(server_code(&e), Some(1927), "{e}");
    wait_sessions(&p, 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_needs_the_owner_or_an_admin() {
    let Some(c) = cluster("kill_needs_the_owner_or_an_admin") else {
        return;
    };
    let mut admin = c.admin(0).await.unwrap();
    admin
        .query_drop(format!(
            "CREATE USER IF NOT EXISTS '{OTHER_USER}'@'%' IDENTIFIED BY '{OTHER_PASSWORD}'"
        ))
        .await
        .unwrap();
    admin
        .query_drop(format!("GRANT ALL ON {TEST_DB}.* TO '{OTHER_USER}'@'%'"))
        .await
        .unwrap();
    c.wait_replicas_caught_up(Duration::from_secs(10))
        .await
        .unwrap();
    let p = start_with(
        &c,
        &format!("    - name: {OTHER_USER}\n      password: {OTHER_PASSWORD}\n      admin: true\n"),
    )
    .await;
    let mut app = p.conn().await;
    let opts = OptsBuilder::from_opts(Opts::from_url(&p.url()).unwrap())
        .user(Some(OTHER_USER))
        .pass(Some(OTHER_PASSWORD))
        .prefer_socket(false);
    let mut other = Conn::new(opts).await.unwrap();
    let e = app.query_drop("KILL QUERY 4000000000").await.unwrap_err();
    assert_eq!(server_code(&e), Some(1094), "{e}");
    assert!(
        e.to_string().contains("Unknown thread id: 4000000000"),
        "{e}"
    );
    let e = app
        .query_drop(format!("KILL QUERY {}", other.id()))
        .await
        .unwrap_err();
    assert_eq!(server_code(&e), Some(1095), "{e}");
    assert!(
        e.to_string()
            .contains(&format!("You are not owner of thread {}", other.id())),
        "{e}"
    );
    let e = app.query_drop("KILL USER app").await.unwrap_err();
    assert_eq!(server_code(&e), Some(1235), "{e}");
    let e = app.prep("KILL QUERY ?").await.unwrap_err();
    assert_eq!(server_code(&e), Some(1235), "{e}");
    // An admin user kills another user's statement (the proxy logs in as the owner to do it).
    let app_id = app.id();
    let sleeper = spawn_query(app, "SELECT SLEEP(10)");
    tokio::time::sleep(Duration::from_millis(500)).await;
    other
        .query_drop(format!("KILL QUERY {app_id}"))
        .await
        .unwrap();
    let (mut app, r, took) = tokio::time::timeout(Duration::from_secs(3), sleeper)
        .await
        .expect("the killed statement returns")
        .unwrap();
    assert!(took < Duration::from_secs(2), "took {took:?}");
    assert!(
        matches!(&r, Err(e) if server_code(e) == Some(1317)) || matches!(r, Ok(Some(1))),
        "{r:?}"
    );
    let v: Option<i64> = app.query_first("SELECT 3").await.unwrap();
    assert_eq!(v, Some(3));
    // After COM_CHANGE_USER the session is the new user's: `app` may no longer kill it, and a
    // kill of its statements logs into the backend as the new user.
    let mut moved = p.conn().await;
    let moved_id = moved.id();
    moved
        .change_user(
            ChangeUserOpts::default()
                .with_user(Some(OTHER_USER.into()))
                .with_pass(Some(OTHER_PASSWORD.into()))
                .with_db_name(Some(TEST_DB.into())),
        )
        .await
        .unwrap();
    assert_eq!(moved.id(), moved_id, "the same session");
    let e = app
        .query_drop(format!("KILL QUERY {moved_id}"))
        .await
        .unwrap_err();
    assert_eq!(server_code(&e), Some(1095), "{e}");
    let sleeper = spawn_query(moved, "SELECT SLEEP(10)");
    tokio::time::sleep(Duration::from_millis(500)).await;
    other
        .query_drop(format!("KILL QUERY {moved_id}"))
        .await
        .unwrap();
    let (_, r, took) = sleeper.await.unwrap();
    assert!(took < Duration::from_secs(2), "took {took:?}");
    assert!(
        matches!(&r, Err(e) if server_code(e) == Some(1317)),
        "{r:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_id_is_the_session_id() {
    let Some(c) = cluster("connection_id_is_the_session_id") else {
        return;
    };
    let p = start(&c).await;
    let mut conn = p.conn().await;
    let id = i64::from(conn.id());
    let other = p.conn().await;
    assert_ne!(conn.id(), other.id(), "session ids are unique");
    // The column keeps the name a server gives it.
    let result = conn.query_iter("SELECT CONNECTION_ID()").await.unwrap();
    let name = result.columns().map(|c| c[0].name_str().into_owned());
    drop(result);
    assert_eq!(name.as_deref(), Some("CONNECTION_ID()"));
    let mut ports = HashSet::new();
    for sql in [
        "SELECT @@port, CONNECTION_ID()",
        "SELECT @@port, connection_id()",
        "/* rwsplit:primary */ SELECT @@port, CONNECTION_ID()",
    ] {
        for _ in 0..6 {
            let (port, got): (u16, i64) = conn.query_first(sql).await.unwrap().unwrap();
            assert_eq!(got, id, "{sql} on port {port}");
            ports.insert(port);
        }
    }
    assert!(
        ports.contains(&c.primary_port()) && ports.len() >= 2,
        "answered by several servers: {ports:?}"
    );
    conn.query_drop("CREATE TABLE IF NOT EXISTS kill_ids (session BIGINT, port INT)")
        .await
        .unwrap();
    conn.query_drop("BEGIN").await.unwrap();
    conn.query_drop("INSERT INTO kill_ids VALUES (CONNECTION_ID(), @@port)")
        .await
        .unwrap();
    let got: Option<i64> = conn
        .query_first("SELECT CONNECTION_ID() FROM kill_ids LIMIT 1")
        .await
        .unwrap();
    assert_eq!(got, Some(id));
    conn.query_drop("COMMIT").await.unwrap();
    let stored: Option<i64> = conn
        .query_first("/* rwsplit:primary */ SELECT MAX(session) FROM kill_ids WHERE session = CONNECTION_ID()")
        .await
        .unwrap();
    assert_eq!(stored, Some(id), "the write stored the session id");
    // Prepared statements too, wherever they are prepared and run.
    let stmt = conn.prep("SELECT CONNECTION_ID(), ? + 1").await.unwrap();
    for i in 0..4i64 {
        let got: Option<(i64, i64)> = conn.exec_first(&stmt, (i,)).await.unwrap();
        assert_eq!(got, Some((id, i + 1)));
    }
    // Strings and look-alike names are left alone.
    let (s, n): (String, i64) = conn
        .query_first("SELECT 'CONNECTION_ID()', CONNECTION_ID() + 0")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((s.as_str(), n), ("CONNECTION_ID()", id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_cli_thread_id_and_ctrl_c() {
    let Some(c) = cluster("mariadb_cli_thread_id_and_ctrl_c") else {
        return;
    };
    let p = start(&c).await;
    let port = p.port.to_string();
    let pw = format!("-p{APP_PASSWORD}");
    let args = [
        "-h127.0.0.1",
        "-P",
        port.as_str(),
        "-u",
        APP_USER,
        pw.as_str(),
        TEST_DB,
    ];
    // The CLI's own thread id (from the handshake) is what CONNECTION_ID() answers.
    let mut with = args.to_vec();
    with.extend(["-e", "status; SELECT CONNECTION_ID() AS me"]);
    let out = run_ok("mariadb", &with).await;
    let handshake = out
        .lines()
        .find_map(|l| l.strip_prefix("Connection id:"))
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|| panic!("no 'Connection id:' in {out}"));
    let me = out
        .lines()
        .skip_while(|l| l.trim() != "me")
        .nth(1)
        .map(|v| v.trim().to_string());
    assert_eq!(Some(handshake), me, "{out}");
    // Ctrl-C: the CLI sends `KILL QUERY <its thread id>` on a second connection.
    let mut with = args.to_vec();
    with.extend(["-e", "SELECT SLEEP(10)"]);
    let child = tokio::process::Command::new("mariadb")
        .args(&with)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("mariadb runs");
    let pid = child.id().expect("a pid").to_string();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let t = Instant::now();
    run_ok("kill", &["-INT", &pid]).await;
    let out = tokio::time::timeout(Duration::from_secs(3), child.wait_with_output())
        .await
        .expect("the CLI returns after Ctrl-C")
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "took {:?}",
        t.elapsed()
    );
    assert!(
        stderr.contains("ERROR 1317") && stderr.contains("Query execution was interrupted"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pymysql_com_process_kill() {
    let Some(c) = cluster("pymysql_com_process_kill") else {
        return;
    };
    let py = integration_tests::repo_root().join(".scratch/venv-clients/bin/python");
    let ok = std::process::Command::new("bash")
        .arg(integration_tests::repo_root().join("integration-tests/clients/install.sh"))
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        assert!(
            std::env::var_os("RWSPLIT_REQUIRE_CLUSTER").is_none(),
            "client install failed"
        );
        eprintln!("!!!!!!!! SKIPPED: PyMySQL could not be installed");
        return;
    }
    let p = start(&c).await;
    let script = integration_tests::repo_root().join("integration-tests/clients/kill_check.py");
    let out = run_ok(
        &py.to_string_lossy(),
        &[&script.to_string_lossy(), &p.port.to_string()],
    )
    .await;
    let verdict = out.lines().last().unwrap_or_default();
    assert!(verdict.contains("\"thread_id_matches\": true"), "{out}");
    assert!(verdict.contains("\"victim_error\": 2013"), "{out}");
    assert!(verdict.contains("\"fast\": true"), "{out}");
    assert!(verdict.contains("\"killer_alive\": true"), "{out}");
}
