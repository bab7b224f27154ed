//! The operator's runtime controls against a real topology, through the admin API and the
//! `rwsplit-ctl` CLI (issue 12): draining a replica under load (no new read reaches it from
//! the next statement, in-flight work completes, undrain brings it back), overrides kept
//! across SIGHUP until the file changes the key, a drain timeout closing the sessions that
//! still hold the server, the session list showing a running `SELECT SLEEP(5)` and killing it,
//! top statements after a sysbench run counting exactly what sysbench ran, and a wrong token
//! changing nothing.

mod ops_support;

use integration_tests::mysql_async::prelude::Queryable;
use integration_tests::mysql_async::{Conn, Error as MyError};
use ops_support::{config_yaml, shared_cluster, Json, Ports, ProxyProcess};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

const TOKEN: &str = "ops-t0ken";

fn token_yaml() -> String {
    format!("  admin:\n    token: \"{TOKEN}\"\n")
}

fn json(body: &str) -> Json {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// `method path body` with the right token; panics unless the status is `want`.
async fn call(proxy: &ProxyProcess, method: &str, path: &str, body: &str, want: u16) -> Json {
    let (status, text) = proxy.admin(method, path, Some(TOKEN), body).await;
    assert_eq!(status, want, "{method} {path} {body}: {text}");
    json(&text)
}

fn server<'a>(doc: &'a Json, name: &str) -> &'a Json {
    doc["servers"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["name"] == name))
        .unwrap_or_else(|| panic!("no server {name} in {doc}"))
}

/// The configured name of the server listening on `port`.
fn name_of(cluster: &integration_tests::Cluster, port: u16) -> String {
    (0..=cluster.replicas())
        .find(|&i| cluster.port(i) == port)
        .map(|i| {
            if i == 0 {
                "primary".to_string()
            } else {
                format!("replica{i}")
            }
        })
        .unwrap_or_else(|| panic!("no server on port {port}"))
}

/// The entry of session `id` in `/admin/sessions`, once `pred` holds for it.
async fn wait_session(
    proxy: &ProxyProcess,
    id: u32,
    what: &str,
    pred: impl Fn(&Json) -> bool,
) -> Json {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let doc = call(proxy, "GET", "/admin/sessions", "", 200).await;
        let found = doc["sessions"]
            .as_array()
            .and_then(|a| a.iter().find(|s| s["id"] == id).cloned());
        if let Some(s) = found.filter(|s| pred(s)) {
            return s;
        }
        assert!(Instant::now() < deadline, "session {id}: {what}: {doc}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn server_code(e: &MyError) -> Option<u16> {
    match e {
        MyError::Server(s) => Some(s.code),
        _ => None,
    }
}

/// Drain a replica while four clients read as fast as they can: from the statement after the
/// API answered, none reads there; the long read already running there finishes with its
/// result; after SIGHUP (same file) the drain stands; undrain brings reads back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_replica_gets_no_new_read_and_finishes_its_work_and_undrain_returns_it() {
    let Some(cluster) = shared_cluster("a_drained_replica_gets_no_new_read") else {
        return;
    };
    let ports = Ports::free();
    let proxy = ProxyProcess::start(&config_yaml(&cluster, ports, &token_yaml()), ports);
    proxy.wait_healthy(Duration::from_secs(10)).await;
    proxy
        .wait_replicas_in_rotation(Duration::from_secs(20))
        .await;

    // In-flight work: a long read, on whichever replica it lands; that one is drained.
    let mut sleeper = proxy.app().await.expect("connect");
    let sleeper_id = sleeper.id();
    let long = tokio::spawn(async move {
        let r: Result<Option<(i64, u16)>, MyError> =
            sleeper.query_first("SELECT SLEEP(2), @@port").await;
        r
    });
    let s = wait_session(&proxy, sleeper_id, "running on a server", |s| {
        s["running_on"]["server"].is_string()
    })
    .await;
    let target = s["running_on"]["server"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(target.starts_with("replica"), "{s}");
    let target_port = cluster.port(target.trim_start_matches("replica").parse().expect("index"));

    let drained = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let violations = Arc::new(Mutex::new(Vec::new()));
    let (after, before_on_target) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut load = Vec::new();
    for _ in 0..4 {
        let mut conn: Conn = proxy.app().await.expect("connect");
        let (drained, stop, violations) = (drained.clone(), stop.clone(), violations.clone());
        let (after, before_on_target) = (after.clone(), before_on_target.clone());
        load.push(tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let started_after = drained.load(Ordering::SeqCst);
                let port: Option<u16> = conn.query_first("SELECT @@port").await.expect("read");
                let port = port.expect("a row");
                if started_after {
                    after.fetch_add(1, Ordering::Relaxed);
                    if port == target_port {
                        violations.lock().expect("lock").push(port);
                    }
                } else if port == target_port {
                    before_on_target.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let doc = call(
        &proxy,
        "POST",
        &format!("/admin/servers/{target}"),
        r#"{"maintenance": true}"#,
        200,
    )
    .await;
    drained.store(true, Ordering::SeqCst);
    assert_eq!(doc["state"], "maintenance", "{doc}");
    assert_eq!(doc["overrides"]["maintenance"]["value"], true, "{doc}");
    assert_eq!(doc["overrides"]["maintenance"]["file"], false, "{doc}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::SeqCst);
    for t in load {
        t.await.expect("load task");
    }
    assert!(
        before_on_target.load(Ordering::Relaxed) > 0,
        "the load read from {target} before the drain"
    );
    assert!(
        after.load(Ordering::Relaxed) > 50,
        "reads went on after the drain"
    );
    assert!(
        violations.lock().expect("lock").is_empty(),
        "reads begun after the drain answered reached {target}: {:?}",
        violations.lock().expect("lock").len()
    );
    let (slept, port) = long
        .await
        .expect("task")
        .expect("the in-flight read completes")
        .expect("a row");
    assert_eq!(
        (slept, port),
        (0, target_port),
        "it ran to its end on {target}"
    );

    // SIGHUP with the same file: the runtime drain stays.
    let reloads =
        |text: &str| ops_support::metric(text, "rwsplit_config_reloads_total{result=\"ok\"}");
    let before = reloads(&proxy.get("/metrics").await.1);
    proxy.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    while reloads(&proxy.get("/metrics").await.1) < before + 1.0 {
        assert!(Instant::now() < deadline, "SIGHUP was not taken");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let doc = proxy.servers().await;
    assert_eq!(server(&doc, &target)["state"], "maintenance", "{doc}");
    let mut conn = proxy.app().await.expect("connect");
    for _ in 0..40 {
        let port: Option<u16> = conn.query_first("SELECT @@port").await.expect("read");
        assert_ne!(port, Some(target_port), "{target} is drained");
    }

    // Undrain: reads come back.
    let doc = call(
        &proxy,
        "POST",
        &format!("/admin/servers/{target}"),
        r#"{"maintenance": false}"#,
        200,
    )
    .await;
    assert_ne!(doc["state"], "maintenance", "{doc}");
    assert_eq!(
        doc["overrides"],
        serde_json::json!({}),
        "back to the file: {doc}"
    );
    let mut back = false;
    for _ in 0..400 {
        let port: Option<u16> = conn.query_first("SELECT @@port").await.expect("read");
        if port == Some(target_port) {
            back = true;
            break;
        }
    }
    assert!(back, "{target} takes reads again after undrain");
}

/// Weight and lag-limit overrides show in `/servers`; a reload keeps them until the file
/// changes that key, then the file wins (for that key only).
#[tokio::test]
async fn overrides_survive_reloads_until_the_file_changes_the_key() {
    let Some(cluster) = shared_cluster("overrides_survive_reloads_until_the_file_changes_the_key")
    else {
        return;
    };
    let ports = Ports::free();
    let yaml = config_yaml(&cluster, ports, &token_yaml());
    let proxy = ProxyProcess::start(&yaml, ports);
    proxy.wait_healthy(Duration::from_secs(10)).await;
    let doc = call(
        &proxy,
        "POST",
        "/admin/servers/replica1",
        r#"{"weight": 5, "max_lag_ms": 250}"#,
        200,
    )
    .await;
    assert_eq!(
        (doc["weight"].as_u64(), doc["max_lag_ms"].as_u64()),
        (Some(5), Some(250)),
        "{doc}"
    );
    assert_eq!(doc["overrides"]["weight"]["file"], 1, "{doc}");

    let reloads =
        |text: &str| ops_support::metric(text, "rwsplit_config_reloads_total{result=\"ok\"}");
    let reload = |file_text: String| {
        let proxy = &proxy;
        async move {
            let before = reloads(&proxy.get("/metrics").await.1);
            std::fs::write(&proxy.config, file_text).expect("write config");
            call(proxy, "POST", "/admin/reload", "", 200).await;
            assert_eq!(reloads(&proxy.get("/metrics").await.1), before + 1.0);
            proxy.servers().await
        }
    };
    // The same file: both stay.
    let doc = reload(yaml.clone()).await;
    let r1 = server(&doc, "replica1");
    assert_eq!(
        (r1["weight"].as_u64(), r1["max_lag_ms"].as_u64()),
        (Some(5), Some(250)),
        "{doc}"
    );
    // The file now sets the weight: the file wins for the weight, the lag limit stays.
    let line = format!(
        "name: replica1, host: 127.0.0.1, port: {}, role: replica",
        cluster.port(1)
    );
    assert!(yaml.contains(&line), "{yaml}");
    let edited = yaml.replace(&line, &format!("{line}, weight: 2"));
    let doc = reload(edited).await;
    let r1 = server(&doc, "replica1");
    assert_eq!(
        (r1["weight"].as_u64(), r1["max_lag_ms"].as_u64()),
        (Some(2), Some(250)),
        "{doc}"
    );
    assert!(r1["overrides"]["weight"].is_null(), "{doc}");
    assert!(
        proxy.log_text().contains("runtime override dropped"),
        "{}",
        proxy.log_text()
    );
    // null clears an override.
    let doc = call(
        &proxy,
        "POST",
        "/admin/servers/replica1",
        r#"{"max_lag_ms": null}"#,
        200,
    )
    .await;
    assert_eq!(
        doc["max_lag_ms"].as_u64(),
        Some(5000),
        "routing.max_lag_ms again: {doc}"
    );
    assert_eq!(doc["overrides"], serde_json::json!({}), "{doc}");
    // Unknown server, bad bodies.
    call(
        &proxy,
        "POST",
        "/admin/servers/nope",
        r#"{"weight": 2}"#,
        404,
    )
    .await;
    call(
        &proxy,
        "POST",
        "/admin/servers/replica1",
        r#"{"weight": 0}"#,
        400,
    )
    .await;
    call(
        &proxy,
        "POST",
        "/admin/servers/replica1",
        r#"{"drain": true}"#,
        400,
    )
    .await;
}

/// A session in a read-only transaction on a replica keeps it through a drain, shown in
/// `/admin/sessions` and `/servers`; when the drain timeout expires the session is closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_timeout_closes_the_sessions_still_holding_the_server() {
    let Some(cluster) = shared_cluster("a_drain_timeout_closes_the_sessions_still_holding") else {
        return;
    };
    let ports = Ports::free();
    let yaml = config_yaml(&cluster, ports, &token_yaml()).replace(
        "routing:\n",
        "routing:\n  read_only_transactions_on_replica: true\n",
    );
    let proxy = ProxyProcess::start(&yaml, ports);
    proxy.wait_healthy(Duration::from_secs(10)).await;
    proxy
        .wait_replicas_in_rotation(Duration::from_secs(20))
        .await;
    let mut a = proxy.app().await.expect("connect");
    a.query_drop("START TRANSACTION READ ONLY")
        .await
        .expect("begin");
    let port: Option<u16> = a.query_first("SELECT @@port").await.expect("read");
    let target = name_of(&cluster, port.expect("row"));
    assert!(
        target.starts_with("replica"),
        "read-only transaction on a replica"
    );
    let s = wait_session(&proxy, a.id(), "holding its replica", |s| {
        s["state"] == "idle in transaction"
    })
    .await;
    let held = s["held"].as_array().expect("held");
    assert!(
        held.iter()
            .any(|h| h["server"] == target.as_str()
                && h["why"] == serde_json::json!(["transaction"])),
        "{s}"
    );
    // Any other connection it holds is idle (kept for proxy.pool.release_delay_ms).
    assert!(
        held.iter()
            .all(|h| h["server"] == target.as_str() || h["why"] == serde_json::json!([])),
        "{s}"
    );

    let doc = call(
        &proxy,
        "POST",
        &format!("/admin/servers/{target}"),
        r#"{"maintenance": true, "drain_timeout_ms": 1500}"#,
        200,
    )
    .await;
    assert_eq!(doc["held_by_sessions"], 1, "{doc}");
    // Within the timeout the transaction goes on where it is.
    let again: Option<u16> = a.query_first("SELECT @@port").await.expect("read");
    assert_eq!(again, port);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let r: Result<Option<u16>, MyError> = a.query_first("SELECT @@port").await;
    assert!(
        r.is_err(),
        "the session was closed at the drain timeout: {r:?}"
    );
    assert!(
        proxy
            .log_text()
            .contains("drain timeout: closing a session"),
        "{}",
        proxy.log_text()
    );
    let doc = proxy.servers().await;
    assert_eq!(server(&doc, &target)["held_by_sessions"], 0, "{doc}");
    call(
        &proxy,
        "POST",
        &format!("/admin/servers/{target}"),
        r#"{"maintenance": false}"#,
        200,
    )
    .await;
}

/// `SELECT SLEEP(5)` shows in `/admin/sessions` with its user, schema, digest, server and
/// duration; killing the session through the API ends it at once with an error for the
/// client; `query_only` cancels the statement and the session goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_statement_is_listed_and_killed_through_the_api() {
    let Some(cluster) = shared_cluster("a_running_statement_is_listed_and_killed") else {
        return;
    };
    let ports = Ports::free();
    let proxy = ProxyProcess::start(&config_yaml(&cluster, ports, &token_yaml()), ports);
    proxy.wait_healthy(Duration::from_secs(10)).await;

    let mut a = proxy.app().await.expect("connect");
    let id = a.id();
    let sleeper = tokio::spawn(async move {
        let t = Instant::now();
        let r: Result<Option<i64>, MyError> = a.query_first("SELECT SLEEP(5)").await;
        (r, t.elapsed())
    });
    let s = wait_session(&proxy, id, "running SELECT SLEEP(5)", |s| {
        s["running_on"]["server"].is_string() && s["statement_ms"].as_u64().unwrap_or(0) >= 300
    })
    .await;
    assert_eq!(s["statement"], "SELECT SLEEP(5)", "{s}");
    assert_eq!(s["digest"], "SELECT SLEEP(?)", "{s}");
    assert_eq!(s["user"], "app", "{s}");
    assert_eq!(s["client"], "127.0.0.1", "{s}");
    assert_eq!(s["schema"], "rwsplit_test", "{s}");
    assert!(s["running_on"]["server"].is_string(), "{s}");
    assert!(s["age_s"].is_u64(), "{s}");

    let doc = call(
        &proxy,
        "POST",
        &format!("/admin/sessions/{id}/kill"),
        "",
        200,
    )
    .await;
    assert_eq!(doc["scope"], "connection", "{doc}");
    assert_eq!(doc["statement_was_running"], true, "{doc}");
    let (r, took) = tokio::time::timeout(Duration::from_secs(4), sleeper)
        .await
        .expect("the killed statement returns")
        .expect("task");
    assert!(r.is_err(), "the client gets an error: {r:?}");
    assert!(
        took < Duration::from_secs(4),
        "it ended at the kill, not after 5 s: {took:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let doc = call(&proxy, "GET", "/admin/sessions", "", 200).await;
        let listed = doc["sessions"]
            .as_array()
            .is_some_and(|a| a.iter().any(|s| s["id"] == id));
        if !listed {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "killed session still listed: {doc}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // KILL QUERY semantics: the statement stops, the session stays.
    let mut b = proxy.app().await.expect("connect");
    let bid = b.id();
    let sleeper = tokio::spawn(async move {
        let r: Result<Option<i64>, MyError> = b.query_first("SELECT SLEEP(5)").await;
        (b, r)
    });
    wait_session(&proxy, bid, "running on a server", |s| {
        s["running_on"]["server"].is_string()
    })
    .await;
    let doc = call(
        &proxy,
        "POST",
        &format!("/admin/sessions/{bid}/kill"),
        r#"{"query_only": true}"#,
        200,
    )
    .await;
    assert_eq!(doc["scope"], "query", "{doc}");
    let (mut b, r) = tokio::time::timeout(Duration::from_secs(4), sleeper)
        .await
        .expect("returns")
        .expect("task");
    match &r {
        Err(e) if server_code(e) == Some(1317) => {}
        Ok(Some(1)) => {} // SLEEP interrupted answers 1 on some servers
        other => panic!("the cancelled statement got {other:?}"),
    }
    let one: Option<i64> = b.query_first("SELECT 1").await.expect("session goes on");
    assert_eq!(one, Some(1));
    call(&proxy, "POST", "/admin/sessions/4000000000/kill", "", 404).await;
    call(
        &proxy,
        "POST",
        &format!("/admin/sessions/{bid}/kill"),
        r#"{"query": 1}"#,
        400,
    )
    .await;
}

/// After a sysbench oltp_read_only run through the proxy, `/admin/top` names sysbench's
/// statements, and its counts add up to exactly what sysbench reports (reads; `other` is
/// BEGIN/COMMIT, none with `--skip_trx`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn top_statements_count_exactly_what_sysbench_ran() {
    let Some(cluster) = shared_cluster("top_statements_count_exactly_what_sysbench_ran") else {
        return;
    };
    if Command::new("sysbench").arg("--version").output().is_err() {
        assert!(std::env::var_os("CI").is_none(), "sysbench is missing");
        eprintln!("skipping: sysbench not installed");
        return;
    }
    let ports = Ports::free();
    let proxy = ProxyProcess::start(&config_yaml(&cluster, ports, &token_yaml()), ports);
    proxy.wait_healthy(Duration::from_secs(10)).await;
    proxy
        .wait_replicas_in_rotation(Duration::from_secs(20))
        .await;
    let common = [
        "--mysql-host=127.0.0.1",
        "--mysql-user=app",
        "--mysql-password=app-password",
        "--mysql-db=rwsplit_test",
        "--tables=1",
        "--table-size=1000",
    ];
    let direct = format!("--mysql-port={}", cluster.primary_port());
    let sysbench = |args: &[&str]| {
        let out = Command::new("sysbench")
            .args(args)
            .output()
            .expect("sysbench runs");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "sysbench {args:?}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    };
    let with = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = vec!["oltp_read_only".into()];
        v.extend(common.iter().map(|s| s.to_string()));
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let args = with(&[&direct, "cleanup"]);
    let _ = Command::new("sysbench").args(&args).output();
    let args = with(&[&direct, "prepare"]);
    sysbench(&args.iter().map(String::as_str).collect::<Vec<_>>());
    cluster
        .wait_replicas_caught_up(Duration::from_secs(60))
        .await
        .expect("replicas have the table");

    call(&proxy, "POST", "/admin/top/reset", "", 200).await;
    let via = format!("--mysql-port={}", ports.listen);
    let args = with(&[
        &via,
        "--threads=2",
        // Outside transactions, so that the reads go to the replicas.
        "--skip_trx=on",
        "--events=300",
        "--time=0",
        "--report-interval=0",
        "run",
    ]);
    let report = sysbench(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let reported = |key: &str| -> u64 {
        report
            .lines()
            .find_map(|l| {
                l.trim()
                    .strip_prefix(&format!("{key}:"))?
                    .split_whitespace()
                    .next()?
                    .parse()
                    .ok()
            })
            .unwrap_or_else(|| panic!("no `{key}:` in sysbench's report:\n{report}"))
    };
    let (reads, other, transactions) = (
        reported("read"),
        reported("other"),
        reported("transactions"),
    );
    assert_eq!(transactions, 300, "{report}");

    let doc = call(&proxy, "GET", "/admin/top?n=100", "", 200).await;
    let rows = doc["statements"].as_array().expect("statements").clone();
    assert_eq!(doc["other"]["count"], 0, "every digest fits: {doc}");
    let count_where = |pred: &dyn Fn(&str) -> bool| -> u64 {
        rows.iter()
            .filter(|r| pred(r["digest"].as_str().unwrap_or_default()))
            .map(|r| r["count"].as_u64().unwrap_or(0))
            .sum()
    };
    assert_eq!(count_where(&|d| d.starts_with("SELECT")), reads, "{doc}");
    assert_eq!(
        count_where(&|d| d == "BEGIN" || d == "COMMIT"),
        other,
        "{doc}"
    );
    assert_eq!(
        rows.iter()
            .map(|r| r["count"].as_u64().unwrap_or(0))
            .sum::<u64>(),
        reads + other,
        "nothing else was counted: {doc}"
    );
    let point = rows
        .iter()
        .find(|r| r["digest"] == "SELECT c FROM sbtest1 WHERE id = ?")
        .unwrap_or_else(|| panic!("sysbench's point select is named: {doc}"));
    assert_eq!(point["count"], 10 * transactions, "{point}");
    assert_eq!(point["rows"], 10 * transactions, "one row each: {point}");
    assert_eq!(point["errors"], 0, "{point}");
    assert!(
        point["replica_share"].as_f64().unwrap_or(0.0) > 0.9,
        "reads on replicas: {point}"
    );
    assert!(point["p99_ms"].as_f64().unwrap_or(0.0) > 0.0, "{point}");
    let ranges = rows
        .iter()
        .find(|r| r["digest"] == "SELECT c FROM sbtest1 WHERE id BETWEEN ? AND ?")
        .unwrap_or_else(|| panic!("the simple range is named: {doc}"));
    assert_eq!(ranges["count"], transactions, "{ranges}");
    // Heaviest first.
    let totals: Vec<f64> = rows
        .iter()
        .map(|r| r["total_ms"].as_f64().unwrap_or(0.0))
        .collect();
    assert!(totals.windows(2).all(|w| w[0] >= w[1]), "{totals:?}");
    let doc = call(&proxy, "GET", "/admin/top?n=2", "", 200).await;
    assert_eq!(doc["statements"].as_array().map(Vec::len), Some(2));
    assert_eq!(
        doc["other"]["count"].as_u64().unwrap_or(0)
            + doc["statements"]
                .as_array()
                .map(|a| a
                    .iter()
                    .map(|r| r["count"].as_u64().unwrap_or(0))
                    .sum::<u64>())
                .unwrap_or(0),
        reads + other
    );
    call(&proxy, "GET", "/admin/top?n=0", "", 400).await;
    call(&proxy, "POST", "/admin/top/reset", "", 200).await;
    let doc = call(&proxy, "GET", "/admin/top", "", 200).await;
    assert_eq!(doc["statements"], serde_json::json!([]), "{doc}");
}

/// With a token configured, a wrong or missing one gets 401 from every new endpoint and
/// changes nothing.
#[tokio::test]
async fn a_wrong_token_gets_401_and_changes_nothing() {
    let Some(cluster) = shared_cluster("a_wrong_token_gets_401_and_changes_nothing") else {
        return;
    };
    let ports = Ports::free();
    let proxy = ProxyProcess::start(&config_yaml(&cluster, ports, &token_yaml()), ports);
    proxy.wait_healthy(Duration::from_secs(10)).await;
    let mut a = proxy.app().await.expect("connect");
    let one: Option<i64> = a.query_first("SELECT 1").await.expect("query");
    assert_eq!(one, Some(1));
    let id = a.id();
    for token in [None, Some("wrong"), Some("ops-t0ke")] {
        for (method, path, body) in [
            (
                "POST",
                "/admin/servers/replica1",
                r#"{"maintenance": true, "weight": 9}"#,
            ),
            ("POST", &format!("/admin/sessions/{id}/kill") as &str, ""),
            ("POST", "/admin/top/reset", ""),
            ("GET", "/admin/sessions", ""),
            ("GET", "/admin/top", ""),
        ] {
            let (status, text) = proxy.admin(method, path, token, body).await;
            assert_eq!(status, 401, "{method} {path} with {token:?}: {text}");
        }
    }
    let doc = proxy.servers().await;
    let r1 = server(&doc, "replica1");
    assert_ne!(r1["state"], "maintenance", "{doc}");
    assert_eq!(r1["weight"], 1, "{doc}");
    assert_eq!(r1["overrides"], serde_json::json!({}), "{doc}");
    let one: Option<i64> = a.query_first("SELECT 1").await.expect("not killed");
    assert_eq!(one, Some(1));
    let top = call(&proxy, "GET", "/admin/top", "", 200).await;
    let counted: u64 = top["statements"]
        .as_array()
        .map(|a| a.iter().map(|r| r["count"].as_u64().unwrap_or(0)).sum())
        .unwrap_or(0);
    assert!(counted >= 2, "statistics not reset: {top}");
}

/// The CLI binary, built once per test process.
fn ctl_binary() -> std::path::PathBuf {
    static BUILT: OnceLock<std::path::PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let status = Command::new(cargo)
                .args(["build", "-q", "-p", "proxy", "--bin", "rwsplit-ctl"])
                .current_dir(integration_tests::repo_root())
                .status()
                .expect("cargo runs");
            assert!(status.success(), "building rwsplit-ctl failed");
            integration_tests::binary("rwsplit-ctl").expect("just built")
        })
        .clone()
}

/// Runs `rwsplit-ctl` against the proxy with `env` set: (exit code, stdout, stderr).
fn ctl(proxy: &ProxyProcess, env: &[(&str, &str)], args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(ctl_binary())
        .arg("--url")
        .arg(format!("http://127.0.0.1:{}", proxy.ports.http))
        .args(args)
        .env_remove("RWSPLIT_ADMIN_TOKEN")
        .envs(env.iter().copied())
        .output()
        .expect("rwsplit-ctl runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `rwsplit-ctl` over the same API: tables and `--json`, the token from the environment or a
/// file, drain/undrain/weight visible in `servers`, a running statement in `sessions` killed
/// with `kill`, `top`; a wrong token fails with exit 1 and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_drains_lists_kills_and_shows_top_statements() {
    let Some(cluster) = shared_cluster("the_cli_drains_lists_kills_and_shows_top") else {
        return;
    };
    let ports = Ports::free();
    let proxy = ProxyProcess::start(&config_yaml(&cluster, ports, &token_yaml()), ports);
    proxy.wait_healthy(Duration::from_secs(10)).await;
    let env = [("RWSPLIT_ADMIN_TOKEN", TOKEN)];

    let (code, out, err) = ctl(&proxy, &env, &["servers"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.starts_with("NAME") && out.contains("replica1") && out.contains("primary"),
        "{out}"
    );

    // A wrong token: exit 1, the reason, nothing changed.
    let (code, _, err) = ctl(
        &proxy,
        &[("RWSPLIT_ADMIN_TOKEN", "nope")],
        &["drain", "replica1"],
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("401"), "{err}");
    assert_ne!(
        server(&proxy.servers().await, "replica1")["state"],
        "maintenance"
    );

    let token_file = ops_support::scratch_file("admin-token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).expect("token file");
    let tf = token_file.display().to_string();
    let (code, out, err) = ctl(&proxy, &[], &["--token-file", &tf, "drain", "replica1"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("replica1: state maintenance"), "{out}");
    let (code, out, err) = ctl(&proxy, &env, &["--json", "servers"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        server(&json(&out), "replica1")["state"],
        "maintenance",
        "{out}"
    );
    let (code, out, err) = ctl(&proxy, &env, &["undrain", "replica1"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(!out.contains("state maintenance"), "{out}");
    let (code, out, err) = ctl(&proxy, &env, &["weight", "replica1", "3"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("weight 3") && out.contains("weight=3 (file 1)"),
        "{out}"
    );
    let (code, _, err) = ctl(&proxy, &env, &["reset", "replica1"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(server(&proxy.servers().await, "replica1")["weight"], 1);

    // sessions and kill.
    let mut a = proxy.app().await.expect("connect");
    let id = a.id();
    let sleeper = tokio::spawn(async move {
        let r: Result<Option<i64>, MyError> = a.query_first("SELECT SLEEP(5)").await;
        r
    });
    wait_session(&proxy, id, "running on a server", |s| {
        s["running_on"]["server"].is_string()
    })
    .await;
    let (code, out, err) = ctl(&proxy, &env, &["sessions"]);
    assert_eq!(code, Some(0), "{err}");
    let line = out
        .lines()
        .find(|l| l.starts_with(&format!("{id} ")))
        .unwrap_or_else(|| panic!("session {id} listed:\n{out}"));
    assert!(
        line.contains("SELECT SLEEP(5)") && line.contains("query") && line.contains("app"),
        "{out}"
    );
    let (code, out, err) = ctl(&proxy, &env, &["kill", &id.to_string()]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains(&format!("session {id} killed (connection)")),
        "{out}"
    );
    let r = tokio::time::timeout(Duration::from_secs(4), sleeper)
        .await
        .expect("returns at once")
        .expect("task");
    assert!(r.is_err(), "{r:?}");

    // top: the table and the JSON.
    let (code, out, err) = ctl(&proxy, &env, &["top", "-n", "5"]);
    assert_eq!(code, Some(0), "{err}");
    let line = out
        .lines()
        .find(|l| l.ends_with("SELECT SLEEP(?)"))
        .unwrap_or_else(|| panic!("the killed statement is counted:\n{out}"));
    assert!(out.starts_with("COUNT"), "{out}");
    assert!(
        line.starts_with("1      1 "),
        "one execution, an error: {out}"
    );
    let (code, out, err) = ctl(&proxy, &env, &["--json", "top"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(json(&out)["statements"].is_array(), "{out}");
    let (code, out, err) = ctl(&proxy, &env, &["top", "--reset"]);
    assert_eq!(
        (code, out.as_str()),
        (Some(0), "statistics reset\n"),
        "{err}"
    );
    // Errors name what the proxy said.
    let (code, _, err) = ctl(&proxy, &env, &["kill", "4000000000"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("404") && err.contains("no session"), "{err}");
    let (code, _, err) = ctl(&proxy, &env, &["weight", "nosuch", "2"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("no server named 'nosuch'"), "{err}");
}
