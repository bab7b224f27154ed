//! `proxy.worker_threads: 1` runs the real binary on tokio's single-threaded scheduler (health
//! monitor, admin endpoint and every session on one thread): it must route and serve
//! concurrent clients exactly as the default pool of threads does.

mod ops_support;

use integration_tests::mysql_async::prelude::Queryable;
use ops_support::{config_yaml, metric, shared_cluster, Ports, ProxyProcess};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_worker_thread_routes_and_serves_concurrent_clients() {
    let Some(cluster) = shared_cluster("one_worker_thread_routes_and_serves_concurrent_clients")
    else {
        return;
    };
    let ports = Ports::free();
    let proxy = ProxyProcess::start(
        &config_yaml(&cluster, ports, "  worker_threads: 1\n"),
        ports,
    );
    proxy.wait_healthy(Duration::from_secs(10)).await;
    proxy
        .wait_replicas_in_rotation(Duration::from_secs(10))
        .await;

    let mut conn = proxy
        .app()
        .await
        .expect("client connects through the proxy");
    conn.query_drop("CREATE TABLE IF NOT EXISTS rwsplit_test.one_thread (id INT AUTO_INCREMENT PRIMARY KEY, v INT)")
        .await
        .expect("DDL");
    conn.query_drop("INSERT INTO rwsplit_test.one_thread (v) VALUES (1)")
        .await
        .expect("insert");
    let (id, port): (u64, u16) = conn
        .query_first("SELECT LAST_INSERT_ID(), @@port")
        .await
        .expect("select")
        .expect("a row");
    assert!(id > 0);
    assert_eq!(
        port,
        cluster.primary_port(),
        "LAST_INSERT_ID() on the primary"
    );

    // Eight clients at once, each with 50 autocommit reads: all answered, on replicas.
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let mut c = proxy.app().await.expect("client connects");
        tasks.push(tokio::spawn(async move {
            let mut ports = Vec::new();
            for _ in 0..50 {
                let p: Option<u16> = c.query_first("SELECT @@port").await.expect("read");
                ports.push(p.expect("a row"));
            }
            ports
        }));
    }
    let replicas: Vec<u16> = (1..=cluster.replicas()).map(|i| cluster.port(i)).collect();
    let mut answered = 0;
    for t in tasks {
        for p in t.await.expect("client task") {
            assert!(replicas.contains(&p), "read served on {p}, not a replica");
            answered += 1;
        }
    }
    assert_eq!(answered, 400);

    let (_, metrics) = proxy.get("/metrics").await;
    let replica_reads: f64 = (1..=cluster.replicas())
        .map(|i| {
            metric(
                &metrics,
                &format!(
                    "rwsplit_queries_total{{backend=\"replica{i}\",reason=\"read\",route=\"replica\"}}"
                ),
            )
        })
        .filter(|v| !v.is_nan())
        .sum();
    assert!(
        replica_reads >= 400.0,
        "{replica_reads} reads counted on replicas"
    );
    assert!(
        proxy.log_text().contains("rwsplit-proxy started"),
        "{}",
        proxy.log_text()
    );
}
