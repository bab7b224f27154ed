//! `proxy.users_from_primary`: accounts created on the primary log in through the real proxy
//! binary after a refresh (mysql_async and PyMySQL), reach the primary and the replicas, and
//! follow the primary's changes (a new password, a dropped account) at the next refresh; a
//! primary that is down keeps the last good list; accounts the proxy cannot verify with a
//! `mysql_native_password` hash are skipped with one log line; the account's `Host` is checked
//! against the client's address; a reload that turns the feature off takes effect at once.

mod ops_support;
mod proxy_support;

use integration_tests::mysql_async::prelude::Queryable;
use integration_tests::mysql_async::{Conn, Error as MyError, OptsBuilder};
use integration_tests::{Cluster, TEST_DB};
use ops_support::{config_yaml, metric, shared_cluster, Ports, ProxyProcess};
use proxy_support::{python_clients, raw_auth, run_ok};
use std::time::{Duration, Instant};

/// Every test's own accounts start with `ufp_`: the proxy serves only those (and `admin` is
/// excluded by name, to show `exclude` on top of the built-in exclusions).
const SECTION: &str = "  users_from_primary:\n    refresh_interval_ms: 300\n    include: [\"ufp_*\", \"rwsplit_monitor\", \"admin\", \"root\"]\n    exclude: [\"admin\"]\n";

/// How long a change on the primary may take to reach the proxy (a refresh every 300 ms, on a
/// loaded machine).
const REFRESH_WAIT: Duration = Duration::from_secs(20);

async fn start(c: &Cluster) -> ProxyProcess {
    let ports = Ports::free();
    let p = ProxyProcess::start(&config_yaml(c, ports, SECTION), ports);
    p.wait_healthy(Duration::from_secs(20)).await;
    p.wait_replicas_in_rotation(Duration::from_secs(20)).await;
    p
}

async fn admin(c: &Cluster, sql: &str) {
    c.admin_exec(0, sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// (Re)creates `user`@`host` on the primary with `password` and rights on the test schema.
async fn create(c: &Cluster, user: &str, host: &str, password: &str) {
    admin(c, &format!("DROP USER IF EXISTS '{user}'@'{host}'")).await;
    admin(
        c,
        &format!("CREATE USER '{user}'@'{host}' IDENTIFIED BY '{password}'"),
    )
    .await;
    admin(
        c,
        &format!("GRANT SELECT, INSERT, DELETE, CREATE ON {TEST_DB}.* TO '{user}'@'{host}'"),
    )
    .await;
}

async fn login(p: &ProxyProcess, user: &str, password: &str) -> Result<Conn, MyError> {
    let opts = OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(p.ports.listen)
        .user(Some(user))
        .pass(Some(password))
        .db_name(Some(TEST_DB))
        .prefer_socket(false);
    Conn::new(opts).await
}

fn code(e: &MyError) -> Option<u16> {
    match e {
        MyError::Server(s) => Some(s.code),
        _ => None,
    }
}

/// Logs in as soon as a refresh has loaded the account.
async fn wait_login(p: &ProxyProcess, user: &str, password: &str) -> Conn {
    let deadline = Instant::now() + REFRESH_WAIT;
    loop {
        match login(p, user, password).await {
            Ok(c) => return c,
            Err(e) => assert!(
                Instant::now() < deadline,
                "{user} never logged in: {e}\nlog:\n{}",
                p.log_text()
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until a login is refused with ERR 1045 (a refresh has removed or changed the
/// account); any other outcome after the deadline fails.
async fn wait_refused(p: &ProxyProcess, user: &str, password: &str) {
    let deadline = Instant::now() + REFRESH_WAIT;
    loop {
        match login(p, user, password).await {
            Err(e) if code(&e) == Some(1045) => return,
            other => assert!(
                Instant::now() < deadline,
                "{user} still not refused: {:?}",
                other.map(|_| "logged in")
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn refused_now(p: &ProxyProcess, user: &str, password: &str) {
    let e = login(p, user, password)
        .await
        .map(|_| ())
        .expect_err("refused");
    assert_eq!(code(&e), Some(1045), "{user}: {e}");
}

/// Connects to the proxy from the local address `from` (any 127.x address works on Linux) and
/// logs in as `user`: the proxy's answer (OK `0x00` or ERR `0xff` packet), decided before any
/// server is contacted.
async fn raw_auth_from(from: &str, port: u16, user: &str, password: &str) -> Vec<u8> {
    use proxy::protocol::consts::cap;
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    let local: std::net::SocketAddr = format!("{from}:0").parse().expect("address");
    socket.bind(local).expect("bind");
    let to: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().expect("address");
    let mut s = socket.connect(to).await.expect("connect");
    let caps = cap::PROXY_OFFERS & !cap::CONNECT_ATTRS;
    raw_auth(&mut s, user, password, caps).await
}

async fn metrics(p: &ProxyProcess) -> String {
    let (status, body) = p.get("/metrics").await;
    assert_eq!(status, 200);
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_created_on_the_primary_logs_in_after_a_refresh_and_reaches_the_servers() {
    let Some(c) = shared_cluster("an_account_created_on_the_primary_logs_in_after_a_refresh")
    else {
        return;
    };
    admin(&c, "DROP USER IF EXISTS 'ufp_web'@'%'").await;
    let p = start(&c).await;
    refused_now(&p, "ufp_web", "web-pass").await;
    // Created while the proxy runs: served from the next refresh on.
    create(&c, "ufp_web", "%", "web-pass").await;
    let mut conn = wait_login(&p, "ufp_web", "web-pass").await;
    let replicas = c.replica_ports();
    conn.query_drop("CREATE TABLE IF NOT EXISTS ufp_rows (id INT AUTO_INCREMENT PRIMARY KEY, client VARCHAR(32))")
        .await
        .expect("create");
    conn.query_drop("DELETE FROM ufp_rows")
        .await
        .expect("clean");
    conn.query_drop("INSERT INTO ufp_rows (client) VALUES ('mysql_async')")
        .await
        .expect("a write, on the primary (replicas are read_only)");
    let read: u16 = conn
        .query_first("SELECT @@port")
        .await
        .expect("read")
        .expect("row");
    assert!(
        replicas.contains(&read),
        "read on {read}, replicas {replicas:?}"
    );
    drop(conn);
    refused_now(&p, "ufp_web", "not-the-password").await;
    // PyMySQL.
    let mut want = vec!["mysql_async".to_string()];
    if let Some(py) = python_clients() {
        let script =
            integration_tests::repo_root().join("integration-tests/clients/primary_user_check.py");
        let port = p.ports.listen.to_string();
        let out = run_ok(
            &py,
            &[&script.to_string_lossy(), &port, "ufp_web", "web-pass"],
        )
        .await;
        let v: serde_json::Value = serde_json::from_str(out.trim()).expect("json");
        let read = v["read_port"].as_u64().unwrap_or(0) as u16;
        assert!(replicas.contains(&read), "pymysql: {out}");
        assert_eq!(v["wrong"], 1045, "{out}");
        want.push("pymysql".into());
    }
    let mut primary = c.admin(0).await.expect("admin");
    let mut rows: Vec<String> = primary
        .query(format!("SELECT client FROM {TEST_DB}.ufp_rows"))
        .await
        .expect("rows");
    rows.sort();
    assert_eq!(rows, want, "every write reached the primary");
    // The proxy's own accounts and excluded names are never served, even when included.
    refused_now(
        &p,
        integration_tests::MONITOR_USER,
        integration_tests::MONITOR_PASSWORD,
    )
    .await;
    refused_now(
        &p,
        integration_tests::ADMIN_USER,
        integration_tests::ADMIN_PASSWORD,
    )
    .await;
    let m = metrics(&p).await;
    assert!(
        metric(&m, "rwsplit_users_from_primary_accounts") >= 1.0,
        "{m}"
    );
    assert!(
        metric(
            &m,
            "rwsplit_users_from_primary_last_refresh_timestamp_seconds"
        ) > 1.7e9,
        "{m}"
    );
    admin(&c, "DROP USER IF EXISTS 'ufp_web'@'%'").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_or_dropped_account_takes_effect_at_the_next_refresh() {
    let Some(c) = shared_cluster("a_changed_or_dropped_account_takes_effect_at_the_next_refresh")
    else {
        return;
    };
    create(&c, "ufp_alter", "%", "old-pass").await;
    let p = start(&c).await;
    let mut kept = wait_login(&p, "ufp_alter", "old-pass").await;
    // An open transaction holds its connection on the primary across the changes below.
    kept.query_drop("BEGIN").await.expect("begin");
    admin(&c, "ALTER USER 'ufp_alter'@'%' IDENTIFIED BY 'new-pass'").await;
    drop(wait_login(&p, "ufp_alter", "new-pass").await);
    refused_now(&p, "ufp_alter", "old-pass").await;
    admin(&c, "DROP USER 'ufp_alter'@'%'").await;
    wait_refused(&p, "ufp_alter", "new-pass").await;
    // The session opened before both changes is not closed by them (as on a server after
    // ALTER USER or DROP USER).
    let one: Option<i64> = kept.query_first("SELECT 1").await.expect("kept session");
    assert_eq!(one, Some(1));
    kept.query_drop("COMMIT").await.expect("commit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_the_proxy_cannot_verify_are_skipped_with_one_log_line() {
    let Some(c) = shared_cluster("accounts_the_proxy_cannot_verify_are_skipped_with_one_log_line")
    else {
        return;
    };
    admin(&c, "DROP USER IF EXISTS 'ufp_sock'@'%', 'ufp_nopw'@'%'").await;
    admin(&c, "CREATE USER 'ufp_sock'@'%' IDENTIFIED VIA unix_socket").await;
    admin(&c, "CREATE USER 'ufp_nopw'@'%'").await;
    let p = start(&c).await;
    let line = "users_from_primary: skipped account 'ufp_sock'@'%': plugin unix_socket cannot be verified with a mysql_native_password hash";
    let deadline = Instant::now() + REFRESH_WAIT;
    while !p.log_text().contains(line) {
        assert!(Instant::now() < deadline, "no skip line:\n{}", p.log_text());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Several refreshes later, still one line per account.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let log = p.log_text();
    assert_eq!(log.matches(line).count(), 1, "{log}");
    assert_eq!(
        log.matches("skipped account 'ufp_nopw'@'%': it has no password")
            .count(),
        1,
        "{log}"
    );
    let m = metrics(&p).await;
    assert!(
        metric(
            &m,
            "rwsplit_users_from_primary_skipped{reason=\"unsupported_plugin\"}"
        ) >= 1.0,
        "{m}"
    );
    assert!(
        metric(
            &m,
            "rwsplit_users_from_primary_skipped{reason=\"no_password\"}"
        ) >= 1.0,
        "{m}"
    );
    refused_now(&p, "ufp_sock", "").await;
    refused_now(&p, "ufp_nopw", "").await;
    admin(&c, "DROP USER IF EXISTS 'ufp_sock'@'%', 'ufp_nopw'@'%'").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_accounts_host_is_checked_against_the_clients_address_and_a_reload_turns_it_off() {
    let Some(c) = shared_cluster("the_accounts_host_is_checked_against_the_clients_address") else {
        return;
    };
    // ufp_far admits only 127.0.0.1, the proxy's own address towards the servers.
    create(&c, "ufp_far", "127.0.0.1", "far-pass").await;
    create(&c, "ufp_two", "%", "any-pass").await;
    create(&c, "ufp_two", "127.0.0.1", "local-pass").await;
    let p = start(&c).await;
    // ufp_two@127.0.0.1 is the account a server picks for a client at 127.0.0.1 (the most
    // specific Host), and the one the servers pick for the proxy's own connections.
    let mut two = wait_login(&p, "ufp_two", "local-pass").await;
    let who: Option<String> = two.query_first("SELECT CURRENT_USER()").await.expect("q");
    assert_eq!(who.as_deref(), Some("ufp_two@127.0.0.1"));
    drop(two);
    refused_now(&p, "ufp_two", "any-pass").await;
    // A client at 127.0.0.2 with ufp_far's right password: the servers would accept the
    // proxy's login from 127.0.0.1, so only the proxy's own Host check can refuse it, and
    // does so in the handshake.
    let from_here = raw_auth_from("127.0.0.1", p.ports.listen, "ufp_far", "far-pass").await;
    assert_eq!(from_here.first(), Some(&0), "OK from 127.0.0.1");
    let from_elsewhere = raw_auth_from("127.0.0.2", p.ports.listen, "ufp_far", "far-pass").await;
    assert_eq!(from_elsewhere.first(), Some(&0xff), "ERR from 127.0.0.2");
    assert_eq!(from_elsewhere.get(1..3), Some(&1045u16.to_le_bytes()[..]));
    let text = String::from_utf8_lossy(&from_elsewhere);
    assert!(
        text.contains("Access denied for user 'ufp_far'@'127.0.0.2'"),
        "{text}"
    );
    // A reload that turns the feature off refuses loaded accounts at once.
    let text = std::fs::read_to_string(&p.config).expect("config");
    let off = text.replace("    refresh_interval_ms: 300\n", "    enabled: false\n");
    assert_ne!(off, text);
    std::fs::write(&p.config, off).expect("write config");
    p.signal("HUP");
    wait_refused(&p, "ufp_two", "local-pass").await;
    admin(
        &c,
        "DROP USER IF EXISTS 'ufp_far'@'127.0.0.1', 'ufp_two'@'%', 'ufp_two'@'127.0.0.1'",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_primary_down_refreshes_fail_and_loaded_accounts_still_log_in() {
    let Some(c) = Cluster::private_or_skip("users_from_primary_primary_down") else {
        return;
    };
    create(&c, "ufp_keep", "%", "keep-pass").await;
    let p = start(&c).await;
    drop(wait_login(&p, "ufp_keep", "keep-pass").await);
    let before = metric(
        &metrics(&p).await,
        "rwsplit_users_from_primary_refresh_failures_total",
    );
    assert_eq!(before, 0.0);
    c.stop_server(0).expect("stop the primary");
    let deadline = Instant::now() + REFRESH_WAIT;
    loop {
        let m = metrics(&p).await;
        if metric(&m, "rwsplit_users_from_primary_refresh_failures_total") >= 1.0 {
            break;
        }
        assert!(Instant::now() < deadline, "no failed refresh:\n{m}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        p.log_text().contains(
            "users_from_primary: refresh failed; the accounts of the last good refresh stay served"
        ),
        "{}",
        p.log_text()
    );
    // Still served from the last good list, and a read reaches a replica.
    let mut conn = login(&p, "ufp_keep", "keep-pass")
        .await
        .expect("a loaded account logs in with the primary down");
    let read: u16 =
        tokio::time::timeout(Duration::from_secs(10), conn.query_first("SELECT @@port"))
            .await
            .expect("in time")
            .expect("read")
            .expect("row");
    assert!(c.replica_ports().contains(&read), "{read}");
    refused_now(&p, "ufp_keep", "wrong").await;
    let m = metrics(&p).await;
    assert_eq!(
        metric(&m, "rwsplit_users_from_primary_accounts"),
        1.0,
        "{m}"
    );
}
