//! Proxy users as operators configure them: with only the `mysql_native_password` hash the
//! servers store (`password_hash`), served through mysql_async, PyMySQL,
//! mysql-connector-python and the mariadb CLI and reaching the primary and the replicas; with
//! `max_connections` (ERR 1226 past it, as a server's MAX_USER_CONNECTIONS); with
//! `max_backend_connections` (a session waits for the user's connection, then gets 1226).

mod proxy_support;

use integration_tests::mysql_async::prelude::Queryable;
use integration_tests::mysql_async::{Conn, Error as MyError, Opts, OptsBuilder};
use integration_tests::{APP_PASSWORD, TEST_DB};
use proxy_support::{cluster, python_clients, run_ok, start_edited, Proxy};
use std::time::{Duration, Instant};

/// `app`'s entry with its hash from the primary's `mysql.user` instead of its password.
async fn hashed(c: &integration_tests::Cluster) -> impl FnOnce(String) -> String {
    let mut admin = c.admin(0).await.expect("admin connection");
    let hash: String = admin
        .query_first(
            "SELECT authentication_string FROM mysql.user WHERE user = 'app' AND host = '%'",
        )
        .await
        .expect("query")
        .expect("the app account");
    assert!(hash.starts_with('*') && hash.len() == 41, "{hash}");
    move |yaml: String| {
        let from = format!("      password: {APP_PASSWORD}\n");
        assert!(yaml.contains(&from));
        yaml.replace(&from, &format!("      password_hash: \"{hash}\"\n"))
    }
}

fn code(e: &MyError) -> Option<u16> {
    match e {
        MyError::Server(s) => Some(s.code),
        _ => None,
    }
}

async fn connect(p: &Proxy, password: &str) -> Result<Conn, MyError> {
    let url = format!("mysql://app:{password}@127.0.0.1:{}/{TEST_DB}", p.port);
    let opts = OptsBuilder::from_opts(Opts::from_url(&url).expect("url")).prefer_socket(false);
    Conn::new(opts).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_with_only_its_hash_logs_in_with_every_client_and_reaches_the_servers() {
    let Some(c) =
        cluster("a_user_with_only_its_hash_logs_in_with_every_client_and_reaches_the_servers")
    else {
        return;
    };
    let edit = hashed(&c).await;
    let p = start_edited(&c, "", edit).await;
    let replicas = c.replica_ports();
    // mysql_async: a write lands on the primary, a read outside a transaction on a replica.
    let mut conn = connect(&p, APP_PASSWORD)
        .await
        .expect("hashed user logs in");
    conn.query_drop("CREATE TABLE IF NOT EXISTS hashed_user_rows (id INT AUTO_INCREMENT PRIMARY KEY, client VARCHAR(32))")
        .await
        .expect("create");
    conn.query_drop("DELETE FROM hashed_user_rows")
        .await
        .expect("clean");
    conn.query_drop("INSERT INTO hashed_user_rows (client) VALUES ('mysql_async')")
        .await
        .expect("a write");
    let read: u16 = conn.query_first("SELECT @@port").await.unwrap().unwrap();
    assert!(
        replicas.contains(&read),
        "read on {read}, replicas {replicas:?}"
    );
    let wrong = connect(&p, "wrong").await.expect_err("refused");
    assert_eq!(code(&wrong), Some(1045), "{wrong}");
    // The mariadb CLI.
    let port = p.port.to_string();
    let out = run_ok(
        "mariadb",
        &[
            "-h127.0.0.1",
            "-P",
            &port,
            "-uapp",
            &format!("-p{APP_PASSWORD}"),
            TEST_DB,
            "-N",
            "-e",
            "INSERT INTO hashed_user_rows (client) VALUES ('mariadb'); SELECT @@port",
        ],
    )
    .await;
    let cli_port: u16 = out.trim().parse().expect("a port");
    assert!(replicas.contains(&cli_port), "{out}");
    let denied = tokio::process::Command::new("mariadb")
        .args([
            "-h127.0.0.1",
            "-P",
            &port,
            "-uapp",
            "-pwrong",
            "-e",
            "SELECT 1",
        ])
        .output()
        .await
        .expect("mariadb runs");
    let err = String::from_utf8_lossy(&denied.stderr);
    assert!(err.contains("ERROR 1045"), "{err}");
    // PyMySQL and mysql-connector-python (once offering caching_sha2_password).
    if let Some(py) = python_clients() {
        let script =
            integration_tests::repo_root().join("integration-tests/clients/hashed_user_check.py");
        let out = run_ok(&py, &[&script.to_string_lossy(), &port]).await;
        let v: serde_json::Value = serde_json::from_str(out.trim()).expect("json");
        for client in ["pymysql", "connector", "connector_sha2"] {
            let read = v[client]["read_port"].as_u64().unwrap_or(0) as u16;
            assert!(replicas.contains(&read), "{client}: {out}");
        }
        assert_eq!(v["wrong_pymysql"], 1045, "{out}");
        assert_eq!(v["wrong_connector"], 1045, "{out}");
    }
    // Every write reached the primary.
    let mut primary = c.admin(0).await.expect("admin");
    let mut rows: Vec<String> = primary
        .query(format!("SELECT client FROM {TEST_DB}.hashed_user_rows"))
        .await
        .expect("rows");
    rows.sort();
    let mut want = vec!["mariadb", "mysql_async"];
    if python_clients().is_some() {
        want.extend(["connector", "connector_sha2", "pymysql"]);
    }
    want.sort();
    assert_eq!(rows, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_a_users_max_connections_clients_get_1226() {
    let Some(c) = cluster("past_a_users_max_connections_clients_get_1226") else {
        return;
    };
    let p = start_edited(&c, "", |yaml| {
        yaml.replace(
            &format!("      password: {APP_PASSWORD}\n"),
            &format!("      password: {APP_PASSWORD}\n      max_connections: 2\n"),
        )
    })
    .await;
    let a = connect(&p, APP_PASSWORD).await.expect("first");
    let mut b = connect(&p, APP_PASSWORD).await.expect("second");
    let e = connect(&p, APP_PASSWORD).await.expect_err("third refused");
    assert_eq!(code(&e), Some(1226), "{e}");
    assert!(
        e.to_string().contains(
            "User 'app' has exceeded the 'max_user_connections' resource (current value: 2)"
        ),
        "{e}"
    );
    let port = p.port.to_string();
    let cli = tokio::process::Command::new("mariadb")
        .args([
            "-h127.0.0.1",
            "-P",
            &port,
            "-uapp",
            &format!("-p{APP_PASSWORD}"),
            "-e",
            "SELECT 1",
        ])
        .output()
        .await
        .expect("mariadb runs");
    let err = String::from_utf8_lossy(&cli.stderr);
    assert!(err.contains("ERROR 1226 (42000)"), "{err}");
    // The sessions already open are served; a place given back is usable again.
    let one: i64 = b.query_first("SELECT 1").await.unwrap().unwrap();
    assert_eq!(one, 1);
    a.disconnect().await.expect("quit");
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut c3 = loop {
        match connect(&p, APP_PASSWORD).await {
            Ok(c) => break c,
            Err(e) if Instant::now() < deadline => {
                assert_eq!(code(&e), Some(1226), "{e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("the place never came free: {e}"),
        }
    };
    let one: i64 = c3.query_first("SELECT 1").await.unwrap().unwrap();
    assert_eq!(one, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_past_max_backend_connections_waits_for_the_users_connection() {
    let Some(c) = cluster("a_session_past_max_backend_connections_waits_for_the_users_connection")
    else {
        return;
    };
    let p = start_edited(
        &c,
        "  pool:\n    release_delay_ms: 0\n    queue_timeout_ms: 1500\n",
        |yaml| {
            yaml.replace(
                &format!("      password: {APP_PASSWORD}\n"),
                &format!("      password: {APP_PASSWORD}\n      max_backend_connections: 1\n"),
            )
        },
    )
    .await;
    let mut a = connect(&p, APP_PASSWORD).await.expect("a");
    let mut b = connect(&p, APP_PASSWORD).await.expect("b");
    a.query_drop("CREATE TABLE IF NOT EXISTS user_cap (id INT PRIMARY KEY)")
        .await
        .expect("create");
    // `a` holds the user's one primary connection in its transaction.
    a.query_drop("BEGIN").await.unwrap();
    a.query_drop("SELECT COUNT(*) FROM user_cap FOR UPDATE")
        .await
        .unwrap();
    // `b` waits in line for it: the transaction ends within the queue timeout.
    let t = Instant::now();
    let commit_later = async {
        tokio::time::sleep(Duration::from_millis(400)).await;
        a.query_drop("COMMIT").await.unwrap();
    };
    let write = b.query_drop("DELETE FROM user_cap WHERE id = -1");
    let (r, ()) = tokio::join!(write, commit_later);
    r.expect("served once a's transaction ended");
    assert!(t.elapsed() >= Duration::from_millis(350), "it waited");
    // Held past the queue timeout: 1226 naming the setting, and nothing lost for `a`.
    a.query_drop("BEGIN").await.unwrap();
    a.query_drop("SELECT COUNT(*) FROM user_cap FOR UPDATE")
        .await
        .unwrap();
    let e = b
        .query_drop("DELETE FROM user_cap WHERE id = -1")
        .await
        .expect_err("refused after the queue timeout");
    assert_eq!(code(&e), Some(1226), "{e}");
    assert!(e.to_string().contains("max_backend_connections"), "{e}");
    a.query_drop("COMMIT").await.unwrap();
    b.query_drop("DELETE FROM user_cap WHERE id = -1")
        .await
        .expect("served again");
}
