//! The admin endpoint and admission control of a running `rwsplit-proxy` in front of a real
//! topology: `/healthz`, `/metrics` (every documented family), `/servers` (roles and lag), and
//! `max_connections` answered with MySQL error 1040.

mod ops_support;

use integration_tests::mysql_async::prelude::Queryable;
use ops_support::{config_yaml, shared_cluster, Ports, ProxyProcess};
use std::time::Duration;

#[tokio::test]
async fn healthz_metrics_and_servers_describe_the_topology() {
    let Some(cluster) = shared_cluster("healthz_metrics_and_servers_describe_the_topology") else {
        return;
    };
    let ports = Ports::free();
    let proxy = ProxyProcess::start(&config_yaml(&cluster, ports, ""), ports);
    let body = proxy.wait_healthy(Duration::from_secs(10)).await;
    assert_eq!(body.trim(), "ok: writes go to primary");

    // One statement through the proxy so per-query series exist.
    let mut conn = proxy
        .app()
        .await
        .expect("client connects through the proxy");
    let one: Option<i64> = conn.query_first("SELECT 1").await.expect("query");
    assert_eq!(one, Some(1));

    // Families with labels appear once they have a first series: per-replica lag once the lag
    // source has answered, a moment after /healthz. `seconds_behind_master` (this proxy's lag
    // source) knows no applied GTID positions, so the position-age family stays absent here;
    // the dashboards test sees it with the embedded reader and the sidecar. Query-rule
    // families are per rule, and this config has none (proxy_query_rules checks them).
    const ABSENT_HERE: [&str; 4] = [
        "rwsplit_replica_position_age_seconds",
        "rwsplit_query_rule_hits_total",
        "rwsplit_query_rule_overrides_refused_total",
        // Only with proxy.users_from_primary (proxy_users_from_primary.rs checks it).
        "rwsplit_users_from_primary_skipped",
    ];
    let expected = || {
        proxy::metrics::Metrics::NAMES
            .iter()
            .filter(|name| !ABSENT_HERE.contains(name))
    };
    let missing = |text: &str| expected().any(|name| !text.contains(&format!("# TYPE {name} ")));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let (status, metrics) = loop {
        let (status, metrics) = proxy.get("/metrics").await;
        if status != 200 || !missing(&metrics) || std::time::Instant::now() > deadline {
            break (status, metrics);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(status, 200);
    for name in expected() {
        assert!(
            metrics.contains(&format!("# TYPE {name} ")),
            "{name} missing from /metrics:\n{metrics}"
        );
    }
    assert!(
        metrics.contains("rwsplit_backend_up{backend=\"primary\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("rwsplit_split_brain 0"), "{metrics}");
    assert!(
        metrics.contains("rwsplit_backend_role{backend=\"replica1\",role=\"replica\"} 1"),
        "{metrics}"
    );

    // Replicas enter the rotation once their lag is known.
    proxy
        .wait_replicas_in_rotation(Duration::from_secs(10))
        .await;
    let doc = proxy.servers().await;
    assert_eq!(doc["primary"], "primary");
    assert_eq!(doc["split_brain"], false);
    let servers = doc["servers"].as_array().expect("servers array");
    assert_eq!(servers.len(), 1 + cluster.replicas());
    let p = &servers[0];
    assert_eq!(p["name"], "primary");
    assert_eq!(p["role"], "primary");
    assert_eq!(p["state"], "up");
    assert_eq!(p["read_only"], false);
    assert_eq!(p["replicating"], false);
    assert_eq!(p["location"], "zone-a");
    for r in &servers[1..] {
        assert_eq!(r["role"], "replica", "{r}");
        assert_eq!(r["state"], "up", "{r}");
        assert_eq!(r["read_only"], true, "{r}");
        assert_eq!(r["replicating"], true, "{r}");
        assert!(r["lag_ms"].is_u64(), "lag known: {r}");
        assert_eq!(r["breaker"], "closed", "{r}");
        assert!(r["in_flight"].is_u64() && r["connections"].is_u64(), "{r}");
    }
    let (status, _) = proxy.get("/nope").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn max_connections_answers_the_extra_client_with_error_1040() {
    let Some(cluster) = shared_cluster("max_connections_answers_the_extra_client_with_error_1040")
    else {
        return;
    };
    let ports = Ports::free();
    let proxy = ProxyProcess::start(
        &config_yaml(&cluster, ports, "  max_connections: 2\n"),
        ports,
    );
    proxy.wait_healthy(Duration::from_secs(10)).await;
    let mut a = proxy.app().await.expect("first client");
    let _b = proxy.app().await.expect("second client");
    let err = proxy.app().await.expect_err("third client is refused");
    match &err {
        integration_tests::mysql_async::Error::Server(e) => {
            assert_eq!(e.code, 1040, "{err}");
            assert!(e.message.contains("Too many connections"), "{err}");
        }
        other => panic!("expected a MySQL ERR 1040, got {other:?}"),
    }
    // The admitted clients are unharmed, and a slot frees up when one leaves.
    let one: Option<i64> = a.query_first("SELECT 1").await.expect("first still works");
    assert_eq!(one, Some(1));
    drop(a);
    let mut again = None;
    for _ in 0..50 {
        if let Ok(c) = proxy.app().await {
            again = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(again.is_some(), "a freed slot is reusable");
    let (_, metrics) = proxy.get("/metrics").await;
    let rejected = ops_support::metric(
        &metrics,
        "rwsplit_client_connections_rejected_total{reason=\"max_connections\"}",
    );
    assert!(rejected >= 1.0, "{metrics}");
}

/// Without `proxy.server_version` the handshake carries the writer's own version, so drivers
/// pick MariaDB collations for MariaDB backends (a MySQL 8 string made mysql-connector-python
/// ask MariaDB for `utf8mb4_0900_ai_ci`).
#[tokio::test]
async fn handshake_presents_the_writers_version_by_default() {
    let Some(cluster) = shared_cluster("handshake_presents_the_writers_version_by_default") else {
        return;
    };
    let mut admin = cluster.admin(0).await.expect("primary admin");
    let version: String = admin
        .query_first("SELECT @@version")
        .await
        .expect("version")
        .expect("a row");
    let ports = Ports::free();
    let proxy = ProxyProcess::start(&config_yaml(&cluster, ports, ""), ports);
    proxy.wait_healthy(Duration::from_secs(10)).await;

    use tokio::io::AsyncReadExt;
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", ports.listen))
        .await
        .expect("connect");
    let mut header = [0u8; 4];
    tcp.read_exact(&mut header).await.expect("greeting header");
    let len = u32::from_le_bytes([header[0], header[1], header[2], 0]) as usize;
    let mut greeting = vec![0u8; len];
    tcp.read_exact(&mut greeting).await.expect("greeting");
    assert_eq!(greeting[0], 10, "protocol v10");
    let end = greeting[1..]
        .iter()
        .position(|&b| b == 0)
        .expect("NUL-terminated version");
    let presented = String::from_utf8_lossy(&greeting[1..1 + end]).into_owned();
    assert_eq!(presented, format!("5.5.5-{version}-rwsplit"));
}

/// `/admin/...` changes the running proxy: with `proxy.admin.token` set, a request without the
/// token or with a wrong one gets 401 and changes nothing; the right one is obeyed. The read
/// endpoints stay open and refuse other methods.
#[tokio::test]
async fn admin_api_obeys_only_the_configured_token() {
    let Some(cluster) = shared_cluster("admin_api_obeys_only_the_configured_token") else {
        return;
    };
    let ports = Ports::free();
    let proxy = ProxyProcess::start(
        &config_yaml(
            &cluster,
            ports,
            "  admin:\n    token: \"t0ken-for-tests\"\n",
        ),
        ports,
    );
    proxy.wait_healthy(Duration::from_secs(10)).await;
    let reloads =
        |text: &str| ops_support::metric(text, "rwsplit_config_reloads_total{result=\"ok\"}");
    let before = reloads(&proxy.get("/metrics").await.1);

    let (status, body) = proxy.admin("POST", "/admin/reload", None, "").await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("Authorization: Bearer"), "{body}");
    let (status, body) = proxy
        .admin("POST", "/admin/reload", Some("t0ken-for-test"), "")
        .await;
    assert_eq!(
        (status, body.as_str()),
        (401, "unauthorized: wrong admin token\n")
    );
    assert_eq!(
        reloads(&proxy.get("/metrics").await.1),
        before,
        "nothing reloaded"
    );

    let (status, body) = proxy
        .admin("POST", "/admin/reload", Some("t0ken-for-tests"), "")
        .await;
    assert_eq!(status, 200, "{body}");
    let doc: ops_support::Json = serde_json::from_str(&body).expect("JSON reply");
    assert_eq!(doc["reloaded"], true);
    assert_eq!(reloads(&proxy.get("/metrics").await.1), before + 1.0);
    assert!(proxy.log_text().contains("admin request refused"));

    // Read endpoints: open, GET only.
    assert_eq!(proxy.get("/servers").await.0, 200);
    assert_eq!(proxy.admin("POST", "/servers", None, "{}").await.0, 405);
}

/// Without a token the proxy says at start that `/admin` is loopback-only, and serves it to
/// loopback clients (the tests' address).
#[tokio::test]
async fn without_a_token_admin_is_loopback_only_and_the_log_says_so() {
    let Some(cluster) =
        shared_cluster("without_a_token_admin_is_loopback_only_and_the_log_says_so")
    else {
        return;
    };
    let ports = Ports::free();
    let proxy = ProxyProcess::start(&config_yaml(&cluster, ports, ""), ports);
    proxy.wait_healthy(Duration::from_secs(10)).await;
    assert!(
        proxy.log_text().contains("open to loopback clients only"),
        "{}",
        proxy.log_text()
    );
    let (status, body) = proxy.admin("POST", "/admin/reload", None, "").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(proxy.admin("GET", "/admin/reload", None, "").await.0, 405);
    assert_eq!(proxy.admin("POST", "/admin/nothing", None, "").await.0, 404);
}
