//! Backend TLS (`servers[].tls`) against MariaDB servers that accept TLS: with the application
//! and monitor accounts declared `REQUIRE SSL`, the proxy still serves reads and writes, and the
//! backend sessions report a cipher, and the embedded binlog reader measures lag (replicas are
//! read from); `verify: false` (no CA) encrypts as well. A reload with a CA file that does not
//! load is rejected.

mod proxy_support;

use integration_tests::mysql_async::prelude::Queryable;
use integration_tests::{Cluster, APP_USER, MONITOR_PASSWORD, MONITOR_USER};
use proxy_support::start_edited;
use std::time::Duration;

/// The cipher of the backend session that answers, with its port.
async fn backend_cipher(conn: &mut integration_tests::mysql_async::Conn) -> (u16, String) {
    conn.query_first(
        "SELECT @@port, VARIABLE_VALUE FROM information_schema.SESSION_STATUS \
         WHERE VARIABLE_NAME = 'Ssl_cipher'",
    )
    .await
    .expect("query")
    .expect("a row")
}

/// Closes, on every server, the application user's backend connections that sit idle (the
/// proxy's pool), and gives the servers a moment to do it. Returns how many on each server.
async fn close_idle_backend_connections(c: &Cluster) -> Vec<usize> {
    let mut closed = Vec::new();
    for server in 0..=c.replicas() {
        let mut admin = c.admin(server).await.expect("admin connection");
        let ids: Vec<u64> = admin
            .query(format!(
                "SELECT ID FROM information_schema.PROCESSLIST \
                 WHERE USER = '{APP_USER}' AND COMMAND = 'Sleep'"
            ))
            .await
            .expect("processlist");
        closed.push(ids.len());
        for id in ids {
            let _ = admin.query_drop(format!("KILL CONNECTION {id}")).await;
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    closed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_connections_and_the_monitor_use_tls() {
    let c = match Cluster::private_tls(1) {
        Ok(c) => c,
        Err(e) => {
            let required = std::env::var_os("CI").is_some()
                || std::env::var_os("RWSPLIT_REQUIRE_CLUSTER").is_some();
            assert!(!required, "a TLS topology could not be started: {e}");
            eprintln!("!!!!!!!! SKIPPED backend TLS test: {e}");
            return;
        }
    };
    // Plain connections of these accounts are refused from now on (replicated to the replica).
    c.admin_exec(
        0,
        &format!(
            "CREATE USER tls_monitor@'%' IDENTIFIED BY '{MONITOR_PASSWORD}' REQUIRE SSL; \
             GRANT SELECT, PROCESS, REPLICATION SLAVE, REPLICATION CLIENT, SLAVE MONITOR, \
             BINLOG MONITOR \
             ON *.* TO tls_monitor@'%'; \
             ALTER USER {APP_USER}@'%' REQUIRE SSL"
        ),
    )
    .await
    .expect("accounts");
    c.wait_replicas_caught_up(Duration::from_secs(10))
        .await
        .expect("replicated");
    let ca = c.tls_ca().display().to_string();
    for (tls, lag) in [
        (format!("{{ mode: required, ca: {ca} }}"), "embedded"),
        (
            "{ mode: preferred, verify: false }".to_string(),
            "seconds_behind_master",
        ),
    ] {
        let p = start_edited(&c, "", |yaml| {
            yaml.replace(&format!("user: {MONITOR_USER}"), "user: tls_monitor")
                .replace(
                    "lag_source: seconds_behind_master",
                    &format!("lag_source: {lag}"),
                )
                .replace("role: primary }", &format!("role: primary, tls: {tls} }}"))
                .replace("role: replica }", &format!("role: replica, tls: {tls} }}"))
        })
        .await;
        // The monitor could only see the servers over TLS.
        let topo = p.ctx.topology();
        assert!(topo.primary().is_some(), "{tls}: no primary: {topo:?}");
        assert!(
            topo.servers.iter().all(|s| s.reachable),
            "{tls}: unreachable: {topo:?}"
        );
        let mut conn = p.conn().await;
        let (port, cipher) = backend_cipher(&mut conn).await;
        assert_eq!(port, c.port(1), "{tls}: a read goes to the replica");
        assert!(!cipher.is_empty(), "{tls}: replica session without TLS");
        conn.query_drop("BEGIN").await.unwrap();
        let (port, cipher) = backend_cipher(&mut conn).await;
        assert_eq!(port, c.port(0), "{tls}: in a transaction, the primary");
        assert!(!cipher.is_empty(), "{tls}: primary session without TLS");
        conn.query_drop("COMMIT").await.unwrap();
        // KILL QUERY reaches the statement's backend over a control connection, which must use
        // TLS as well: the account requires it.
        let id = conn.id();
        let mut killer = p.conn().await;
        let sleeper = tokio::spawn(async move {
            let r = conn.query_first::<i64, _>("SELECT SLEEP(10)").await;
            (conn, r)
        });
        tokio::time::sleep(Duration::from_millis(500)).await;
        let t = std::time::Instant::now();
        killer
            .query_drop(format!("KILL QUERY {id}"))
            .await
            .unwrap_or_else(|e| panic!("{tls}: KILL over a TLS control connection: {e}"));
        let (conn, r) = sleeper.await.unwrap();
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "{tls}: {:?}",
            t.elapsed()
        );
        assert!(
            matches!(&r, Err(integration_tests::mysql_async::Error::Server(e)) if e.code == 1317),
            "{tls}: {r:?}"
        );
        // Backend connections the servers closed while idle in the pool (KILL, as a restart or
        // wait_timeout would) are found closed over TLS as over plain TCP: the next statements
        // get fresh connections, a read still on the replica and a write without an error.
        let mut conn = conn;
        // A clean statement: the session keeps no connection for diagnostics (ERR 1317 above).
        conn.query_drop("SELECT 1").await.unwrap();
        let closed = close_idle_backend_connections(&c).await;
        assert!(
            closed.iter().all(|&n| n > 0),
            "{tls}: the pools kept idle connections on every server: {closed:?}"
        );
        let (port, _) = backend_cipher(&mut conn).await;
        assert_eq!(
            port,
            c.port(1),
            "{tls}: a read after its pooled connection was closed stays on the replica"
        );
        // The primary's pool still holds the connections closed above.
        conn.query_drop("DO 1").await.unwrap_or_else(|e| {
            panic!("{tls}: a write after its pooled connection was closed: {e}")
        });
        if tls.contains("ca:") {
            // A reload whose CA file does not load is rejected; TLS to the backends goes on.
            let path = p.ctx.config_path().to_path_buf();
            let yaml = std::fs::read_to_string(&path).unwrap();
            std::fs::write(&path, yaml.replace(&ca, "/nonexistent/ca.pem")).unwrap();
            let err = p.ctx.reload().expect_err("bad CA rejected").to_string();
            assert!(
                err.contains("servers[].tls.ca") && err.contains("/nonexistent/ca.pem"),
                "{err}"
            );
            drop(conn);
            let mut conn = p.conn().await;
            conn.query_drop("BEGIN").await.unwrap();
            let (port, cipher) = backend_cipher(&mut conn).await;
            assert_eq!(port, c.port(0));
            assert!(
                !cipher.is_empty(),
                "new primary session without TLS after the reload"
            );
        }
    }
}
