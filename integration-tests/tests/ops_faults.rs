//! Faults the health monitor must follow, each on a private topology: an external switchover
//! by flipping `read_only` (writes follow within 2 s, the old primary is not written to), and a
//! replica whose SQL thread stops (it leaves the read rotation, and comes back).

mod ops_support;

use integration_tests::mysql_async::prelude::Queryable;
use integration_tests::Cluster;
use ops_support::{config_yaml, Ports, ProxyProcess};
use std::time::Duration;

#[tokio::test]
async fn writes_follow_a_read_only_flip_within_two_seconds() {
    let Some(cluster) =
        Cluster::private_or_skip("writes_follow_a_read_only_flip_within_two_seconds")
    else {
        return;
    };
    let ports = Ports::free();
    let proxy = ProxyProcess::start(&config_yaml(&cluster, ports, ""), ports);
    proxy.wait_healthy(Duration::from_secs(10)).await;
    let mut client = proxy.app().await.expect("client connects");
    client
        .query_drop("CREATE TABLE IF NOT EXISTS ops_flip (id INT PRIMARY KEY, note VARCHAR(20))")
        .await
        .expect("create on the primary");
    cluster
        .wait_replicas_caught_up(Duration::from_secs(10))
        .await
        .expect("replicas catch up");

    // Make replica1 the primary, as an external failover tool would.
    cluster
        .admin_exec(1, "STOP SLAVE; RESET SLAVE ALL; SET GLOBAL read_only = 0")
        .await
        .expect("promote replica1");
    cluster
        .admin_exec(0, "SET GLOBAL read_only = 1")
        .await
        .expect("demote the old primary");
    let took = proxy
        .wait_servers(
            Duration::from_secs(2),
            "replica1 becomes the primary",
            |d| d["primary"] == "replica1",
        )
        .await;
    eprintln!("writes followed the flip in {took:?}");
    let doc = proxy.servers().await;
    assert_eq!(doc["servers"][1]["role"], "primary", "{doc:#}");
    assert_eq!(doc["servers"][0]["role"], "replica", "{doc:#}");
    assert_eq!(doc["servers"][0]["read_only"], true, "{doc:#}");
    let (status, body) = proxy.get("/healthz").await;
    assert_eq!((status, body.trim()), (200, "ok: writes go to replica1"));

    // A write through the proxy now lands on replica1, not on the old primary.
    client
        .query_drop("INSERT INTO ops_flip VALUES (1, 'after flip')")
        .await
        .expect("write through the proxy succeeds on the new primary");
    let mut new_primary = cluster.admin(1).await.expect("admin on replica1");
    let on_new: Option<String> = new_primary
        .query_first("SELECT note FROM rwsplit_test.ops_flip WHERE id = 1")
        .await
        .expect("read new primary");
    assert_eq!(on_new.as_deref(), Some("after flip"));
    let mut old_primary = cluster.admin(0).await.expect("admin on the old primary");
    let on_old: Option<String> = old_primary
        .query_first("SELECT note FROM rwsplit_test.ops_flip WHERE id = 1")
        .await
        .expect("read old primary");
    assert_eq!(on_old, None, "the old primary was not written to");
}

#[tokio::test]
async fn a_writable_replica_is_not_promoted_and_two_writable_roots_refuse_writes() {
    let Some(cluster) = Cluster::private_or_skip(
        "a_writable_replica_is_not_promoted_and_two_writable_roots_refuse_writes",
    ) else {
        return;
    };
    let ports = Ports::free();
    let proxy = ProxyProcess::start(&config_yaml(&cluster, ports, ""), ports);
    proxy.wait_healthy(Duration::from_secs(10)).await;

    // A replica that lost read_only (e.g. restarted without it) stays a replica.
    cluster
        .admin_exec(2, "SET GLOBAL read_only = 0")
        .await
        .expect("replica2 writable");
    tokio::time::sleep(Duration::from_millis(600)).await;
    let doc = proxy.servers().await;
    assert_eq!(doc["primary"], "primary", "{doc:#}");
    assert_eq!(doc["servers"][2]["role"], "replica", "{doc:#}");
    let (_, metrics) = proxy.get("/metrics").await;
    assert_eq!(
        ops_support::metric(
            &metrics,
            "rwsplit_replica_misconfigured{backend=\"replica2\"}"
        ),
        1.0
    );

    // replica1 detached and writable: two writable servers replicate from no one.
    cluster
        .admin_exec(1, "STOP SLAVE; RESET SLAVE ALL; SET GLOBAL read_only = 0")
        .await
        .expect("detach replica1");
    proxy
        .wait_servers(Duration::from_secs(2), "split brain reported", |d| {
            d["split_brain"] == true
        })
        .await;
    let (status, body) = proxy.get("/healthz").await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("split brain") && body.contains("primary and replica1"),
        "{body}"
    );
    let (_, metrics) = proxy.get("/metrics").await;
    assert_eq!(ops_support::metric(&metrics, "rwsplit_split_brain"), 1.0);

    // A write through the proxy is refused with the reason instead of landing on either.
    let mut client = proxy.app().await.expect("client connects");
    let err = client
        .query_drop("CREATE TABLE rwsplit_test.ops_split_brain (id INT)")
        .await
        .expect_err("writes are refused during split brain");
    assert!(err.to_string().contains("split brain"), "{err}");
    for i in [0, 1] {
        let mut admin = cluster.admin(i).await.expect("admin");
        let found: Option<String> = admin
            .query_first(
                "SELECT table_name FROM information_schema.tables \
                 WHERE table_schema = 'rwsplit_test' AND table_name = 'ops_split_brain'",
            )
            .await
            .expect("query");
        assert_eq!(found, None, "server {i} was written to");
    }
}

#[tokio::test]
async fn a_replica_with_a_stopped_sql_thread_leaves_the_rotation() {
    let Some(cluster) =
        Cluster::private_or_skip("a_replica_with_a_stopped_sql_thread_leaves_the_rotation")
    else {
        return;
    };
    let ports = Ports::free();
    let proxy = ProxyProcess::start(&config_yaml(&cluster, ports, ""), ports);
    proxy.wait_healthy(Duration::from_secs(10)).await;
    let in_rotation = |name: &'static str, want: bool| {
        move |d: &ops_support::Json| {
            d["servers"]
                .as_array()
                .and_then(|s| s.iter().find(|s| s["name"] == name))
                .is_some_and(|s| s["in_rotation"] == want)
        }
    };
    proxy
        .wait_servers(
            Duration::from_secs(10),
            "replica1 in rotation",
            in_rotation("replica1", true),
        )
        .await;

    cluster.stop_sql_thread(1).await.expect("stop SQL thread");
    proxy
        .wait_servers(
            Duration::from_secs(2),
            "replica1 leaves rotation",
            in_rotation("replica1", false),
        )
        .await;
    let doc = proxy.servers().await;
    let r1 = &doc["servers"][1];
    assert_eq!(r1["state"], "replication_stopped", "{r1}");
    assert_eq!(r1["replication_running"], false, "{r1}");
    assert!(r1["lag_ms"].is_null(), "lag unknown, not 0: {r1}");
    assert_eq!(doc["servers"][2]["in_rotation"], true, "{doc:#}");

    // Reads keep working (served by replica2) while replica1 is out.
    let mut client = proxy.app().await.expect("client");
    for _ in 0..20 {
        let port: Option<u16> = client.query_first("SELECT @@port").await.expect("read");
        assert_ne!(
            port,
            Some(cluster.port(1)),
            "no read on the stopped replica"
        );
    }

    cluster.start_sql_thread(1).await.expect("start SQL thread");
    proxy
        .wait_servers(
            Duration::from_secs(5),
            "replica1 returns",
            in_rotation("replica1", true),
        )
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_or_frozen_replica_is_down_and_ejected_and_writes_stay_up() {
    let Some(cluster) = Cluster::private_or_skip(
        "a_stopped_or_frozen_replica_is_down_and_ejected_and_writes_stay_up",
    ) else {
        return;
    };
    let ports = Ports::free();
    let proxy = ProxyProcess::start(
        &config_yaml(&cluster, ports, "  pool:\n    connect_timeout_ms: 500\n"),
        ports,
    );
    proxy.wait_healthy(Duration::from_secs(10)).await;
    let state_of = |name: &'static str, want: &'static str| {
        move |d: &ops_support::Json| {
            d["servers"]
                .as_array()
                .and_then(|s| s.iter().find(|s| s["name"] == name))
                .is_some_and(|s| s["state"] == want)
        }
    };

    // SIGSTOP: the server holds its sockets but answers nothing; checks time out.
    cluster.pause_server(1).expect("SIGSTOP replica1");
    let took = proxy
        .wait_servers(
            Duration::from_secs(3),
            "frozen replica1 is down",
            state_of("replica1", "down"),
        )
        .await;
    eprintln!("frozen replica noticed in {took:?}");
    cluster.resume_server(1).expect("SIGCONT replica1");
    proxy
        .wait_servers(
            Duration::from_secs(10),
            "replica1 back",
            state_of("replica1", "up"),
        )
        .await;

    // A stopped server: down at once (connection refused), then ejected by its breaker.
    tokio::task::block_in_place(|| cluster.stop_server(2)).expect("stop replica2");
    proxy
        .wait_servers(
            Duration::from_secs(3),
            "stopped replica2 is down",
            state_of("replica2", "down"),
        )
        .await;
    proxy
        .wait_servers(Duration::from_secs(5), "replica2 breaker opens", |d| {
            d["servers"][2]["breaker"] != "closed"
        })
        .await;
    let (_, metrics) = proxy.get("/metrics").await;
    assert_eq!(
        ops_support::metric(&metrics, "rwsplit_backend_up{backend=\"replica2\"}"),
        0.0
    );
    assert!(
        ops_support::metric(
            &metrics,
            "rwsplit_backend_connect_errors_total{backend=\"replica2\"}"
        ) >= 1.0,
        "{metrics}"
    );
    let (status, body) = proxy.get("/healthz").await;
    assert_eq!(status, 200, "a replica down does not stop writes: {body}");

    tokio::task::block_in_place(|| cluster.start_servers()).expect("restart replica2");
    proxy
        .wait_servers(
            Duration::from_secs(10),
            "replica2 back",
            state_of("replica2", "up"),
        )
        .await;
}
