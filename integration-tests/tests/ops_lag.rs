//! Lag sources the monitor follows (`proxy.lag_source`): the binlog reader embedded in the
//! proxy, and the `rwsplit-binlog-reader` sidecar's `/lag`. A delayed replica shows a growing
//! lag in `/servers`; a sidecar that goes away makes lag unknown (never 0) and takes replicas
//! out of the read rotation while writes stay available.

mod ops_support;

use integration_tests::Cluster;
use ops_support::{config_with_lag, shared_cluster, sidecar_binary, Json, Ports, ProxyProcess};
use std::process::{Command, Stdio};
use std::time::Duration;

fn server<'a>(doc: &'a Json, name: &str) -> &'a Json {
    doc["servers"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == name))
        .unwrap_or(&Json::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_lag_source_measures_a_delayed_replica() {
    let Some(cluster) = Cluster::private_or_skip("embedded_lag_source_measures_a_delayed_replica")
    else {
        return;
    };
    let ports = Ports::free();
    let sidecar_http = integration_tests::free_port();
    let yaml = config_with_lag(
        &cluster,
        ports,
        "embedded",
        "",
        &format!(
            "sidecar:\n  http_listen: 127.0.0.1:{sidecar_http}\n  server_id: {}\n",
            5000 + u32::from(cluster.base_port())
        ),
    );
    let proxy = ProxyProcess::start(&yaml, ports);
    proxy.wait_healthy(Duration::from_secs(10)).await;
    proxy
        .wait_servers(Duration::from_secs(10), "replica lag known", |d| {
            server(d, "replica1")["lag_ms"].is_u64() && server(d, "replica2")["lag_ms"].is_u64()
        })
        .await;

    cluster
        .set_replica_delay(1, 3)
        .await
        .expect("delay replica1");
    cluster
        .admin_exec(
            0,
            "CREATE TABLE IF NOT EXISTS rwsplit_test.ops_lag (id INT PRIMARY KEY)",
        )
        .await
        .expect("write on the primary");
    proxy
        .wait_servers(Duration::from_secs(4), "replica1 lag over 1 s", |d| {
            server(d, "replica1")["lag_ms"]
                .as_u64()
                .is_some_and(|l| l >= 1000)
        })
        .await;
    let doc = proxy.servers().await;
    assert!(
        server(&doc, "replica2")["lag_ms"]
            .as_u64()
            .is_some_and(|l| l < 1000),
        "the undelayed replica stays current: {doc:#}"
    );
    let (_, metrics) = proxy.get("/metrics").await;
    assert!(
        ops_support::metric(
            &metrics,
            "rwsplit_proxy_replica_lag_seconds{replica=\"replica1\"}"
        ) >= 1.0,
        "{metrics}"
    );
    // The embedded reader's own metrics are on the proxy's /metrics, as on a sidecar's.
    assert!(
        ops_support::metric(
            &metrics,
            "rwsplit_replica_lag_seconds{replica=\"replica1\"}"
        ) >= 1.0,
        "{metrics}"
    );
    for family in [
        "rwsplit_replica_lag_known{replica=\"replica2\"} 1",
        "rwsplit_binlog_stream_connected 1",
        "rwsplit_binlog_events_total{",
    ] {
        assert!(metrics.contains(family), "no {family} in:\n{metrics}");
    }
}

/// Kills the sidecar when the test ends, however it ends.
struct Sidecar(std::process::Child);

impl Drop for Sidecar {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sidecar_lag_source_follows_the_sidecar_and_goes_unknown_without_it() {
    let Some(cluster) =
        shared_cluster("sidecar_lag_source_follows_the_sidecar_and_goes_unknown_without_it")
    else {
        return;
    };
    let ports = Ports::free();
    let sidecar_http = integration_tests::free_port();
    let yaml = config_with_lag(
        &cluster,
        ports,
        &format!("{{sidecar: {{url: \"http://127.0.0.1:{sidecar_http}/lag\"}}}}"),
        "",
        &format!(
            "sidecar:\n  http_listen: 127.0.0.1:{sidecar_http}\n  server_id: {}\n",
            5000 + u32::from(cluster.base_port())
        ),
    );
    let proxy = ProxyProcess::start(&yaml, ports);
    let sidecar = Sidecar(
        Command::new(sidecar_binary())
            .arg("--config")
            .arg(&proxy.config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sidecar starts"),
    );
    proxy.wait_healthy(Duration::from_secs(10)).await;
    proxy
        .wait_servers(Duration::from_secs(10), "lag from the sidecar", |d| {
            ["replica1", "replica2"]
                .iter()
                .all(|r| server(d, r)["lag_ms"].is_u64() && server(d, r)["in_rotation"] == true)
        })
        .await;

    drop(sidecar);
    proxy
        .wait_servers(
            Duration::from_secs(3),
            "lag unknown without the sidecar",
            |d| {
                ["replica1", "replica2"].iter().all(|r| {
                    server(d, r)["lag_ms"].is_null() && server(d, r)["in_rotation"] == false
                })
            },
        )
        .await;
    let (status, body) = proxy.get("/healthz").await;
    assert_eq!(status, 200, "writes do not depend on lag: {body}");
    let (_, metrics) = proxy.get("/metrics").await;
    assert!(
        !metrics.contains("rwsplit_proxy_replica_lag_seconds{replica=\"replica1\"}"),
        "unknown lag is absent, not 0:\n{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_reader_follows_the_writer_after_a_switchover() {
    let Some(cluster) =
        Cluster::private_or_skip("embedded_reader_follows_the_writer_after_a_switchover")
    else {
        return;
    };
    let ports = Ports::free();
    let yaml = config_with_lag(
        &cluster,
        ports,
        "embedded",
        "",
        &format!(
            "sidecar:\n  http_listen: 127.0.0.1:{}\n  server_id: {}\n",
            integration_tests::free_port(),
            5000 + u32::from(cluster.base_port())
        ),
    );
    let proxy = ProxyProcess::start(&yaml, ports);
    proxy.wait_healthy(Duration::from_secs(10)).await;
    proxy
        .wait_servers(Duration::from_secs(10), "replica lag known", |d| {
            server(d, "replica2")["lag_ms"].is_u64()
        })
        .await;

    // Switchover: replica1 becomes the primary, replica2 replicates from it.
    cluster
        .admin_exec(0, "SET GLOBAL read_only = 1")
        .await
        .expect("demote");
    cluster
        .wait_replicas_caught_up(Duration::from_secs(10))
        .await
        .expect("caught up");
    cluster
        .admin_exec(1, "STOP SLAVE; RESET SLAVE ALL; SET GLOBAL read_only = 0")
        .await
        .expect("promote replica1");
    cluster
        .admin_exec(
            2,
            &format!(
                "STOP SLAVE; CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT={}, \
                 MASTER_USER='{}', MASTER_PASSWORD='{}', MASTER_USE_GTID=slave_pos; START SLAVE",
                cluster.port(1),
                integration_tests::MONITOR_USER,
                integration_tests::MONITOR_PASSWORD
            ),
        )
        .await
        .expect("repoint replica2");
    proxy
        .wait_servers(Duration::from_secs(2), "replica1 is the primary", |d| {
            d["primary"] == "replica1"
        })
        .await;
    // New transactions on the new primary: replica2's lag stays known and small, which it can
    // only be if the reader now tails replica1's binlog.
    cluster
        .admin_exec(
            1,
            "CREATE TABLE IF NOT EXISTS rwsplit_test.ops_follow (id INT PRIMARY KEY)",
        )
        .await
        .expect("write on the new primary");
    cluster
        .admin_exec(1, "INSERT INTO rwsplit_test.ops_follow VALUES (1)")
        .await
        .expect("write on the new primary");
    proxy
        .wait_servers(
            Duration::from_secs(10),
            "replica2 lag known behind the new primary",
            |d| {
                server(d, "replica2")["lag_ms"]
                    .as_u64()
                    .is_some_and(|l| l < 1000)
                    && server(d, "replica2")["in_rotation"] == true
            },
        )
        .await;
    let log = proxy.log_text();
    assert!(
        log.lines()
            .any(|l| l.contains("embedded binlog reader started") && l.contains("replica1")),
        "{log}"
    );
}

/// Issue 11, sidecar HA: with `lag_source.sidecar.urls`, one sidecar killed changes nothing
/// (the other's answers are used); with both gone the proxy measures lag on its own
/// (Seconds_Behind_Master from its monitor) instead of sending every read to the primary,
/// and says so in `rwsplit_lag_source_fallback`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sidecars_one_killed_keeps_lag_and_both_gone_falls_back_to_the_monitor() {
    let Some(cluster) = shared_cluster("two_sidecars_one_killed") else {
        return;
    };
    let ports = Ports::free();
    let (a, b) = (
        integration_tests::free_port(),
        integration_tests::free_port(),
    );
    let id = 5100 + u32::from(cluster.base_port());
    let yaml = config_with_lag(
        &cluster,
        ports,
        &format!(
            "{{sidecar: {{urls: [\"http://127.0.0.1:{a}/lag\", \"http://127.0.0.1:{b}/lag\"]}}}}"
        ),
        "",
        &format!("sidecar:\n  http_listen: 127.0.0.1:{a}\n  server_id: {id}\n"),
    );
    let proxy = ProxyProcess::start(&yaml, ports);
    // The second sidecar: its own port and server id (one binlog dump per id).
    let second = proxy.config.with_extension("second.yaml");
    std::fs::write(
        &second,
        yaml.replace(&format!("127.0.0.1:{a}\n"), &format!("127.0.0.1:{b}\n"))
            .replace(
                &format!("server_id: {id}"),
                &format!("server_id: {}", id + 1),
            ),
    )
    .expect("second sidecar config");
    let spawn = |config: &std::path::Path| {
        Sidecar(
            Command::new(sidecar_binary())
                .arg("--config")
                .arg(config)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("sidecar starts"),
        )
    };
    let sidecar_a = spawn(&proxy.config);
    let sidecar_b = spawn(&second);
    proxy.wait_healthy(Duration::from_secs(10)).await;
    let serving = |d: &Json| {
        ["replica1", "replica2"]
            .iter()
            .all(|r| server(d, r)["lag_ms"].is_u64() && server(d, r)["in_rotation"] == true)
    };
    proxy
        .wait_servers(Duration::from_secs(10), "lag from the sidecars", serving)
        .await;

    drop(sidecar_a);
    let until = std::time::Instant::now() + Duration::from_secs(2);
    while std::time::Instant::now() < until {
        let doc = proxy.servers().await;
        assert!(serving(&doc), "one sidecar gone: {doc:#}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, metrics) = proxy.get("/metrics").await;
    assert_eq!(
        ops_support::metric(&metrics, "rwsplit_lag_source_fallback"),
        0.0
    );

    drop(sidecar_b);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, metrics) = proxy.get("/metrics").await;
        if ops_support::metric(&metrics, "rwsplit_lag_source_fallback") == 1.0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no fallback: {metrics}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    proxy
        .wait_servers(
            Duration::from_secs(3),
            "lag from the monitor with both sidecars gone",
            serving,
        )
        .await;
    let _ = std::fs::remove_file(&second);
}
