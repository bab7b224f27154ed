//! Faults under the data path, on private topologies: a replica killed or frozen (SIGSTOP)
//! while a client reads. Reads that fail before any byte reached the client are retried once
//! on another server, so the client sees no error and never waits past the timeouts.

mod proxy_support;

use integration_tests::mysql_async::prelude::Queryable;
use integration_tests::Cluster;
use proxy_support::start_with;
use std::collections::HashSet;
use std::time::{Duration, Instant};

const FAST_TIMEOUTS: &str = "  pool:\n    connect_timeout_ms: 500\n    read_timeout_ms: 1500\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_replica_reads_keep_working_on_the_other() {
    let Some(c) = Cluster::private_or_skip("killed_replica_reads_keep_working_on_the_other") else {
        return;
    };
    let p = start_with(&c, FAST_TIMEOUTS).await;
    let mut conn = p.conn().await;
    let mut seen = HashSet::new();
    for _ in 0..20 {
        let port: u16 = conn.query_first("SELECT @@port").await.unwrap().unwrap();
        seen.insert(port);
    }
    assert_eq!(seen.len(), 2, "both replicas served before the fault");
    c.kill_server(1).unwrap();
    let mut after = HashSet::new();
    for i in 0..40 {
        let port: u16 = conn
            .query_first("SELECT @@port")
            .await
            .unwrap_or_else(|e| panic!("read {i} after the kill failed: {e}"))
            .unwrap();
        after.insert(port);
    }
    assert_eq!(
        after,
        HashSet::from([c.port(2)]),
        "reads moved to the surviving replica"
    );
    // Writes are unaffected.
    conn.query_drop("CREATE TABLE IF NOT EXISTS fault_t (id INT)")
        .await
        .unwrap();
    conn.query_drop("INSERT INTO fault_t VALUES (1)")
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frozen_replica_does_not_hang_clients() {
    let Some(c) = Cluster::private_or_skip("frozen_replica_does_not_hang_clients") else {
        return;
    };
    let p = start_with(&c, FAST_TIMEOUTS).await;
    let mut conn = p.conn().await;
    for _ in 0..10 {
        let _: Option<u16> = conn.query_first("SELECT @@port").await.unwrap();
    }
    c.pause_server(1).unwrap();
    let mut worst = Duration::ZERO;
    for i in 0..20 {
        let t = Instant::now();
        let port: u16 = conn
            .query_first("SELECT @@port")
            .await
            .unwrap_or_else(|e| panic!("read {i} with a frozen replica failed: {e}"))
            .unwrap();
        worst = worst.max(t.elapsed());
        assert_eq!(port, c.port(2), "read {i} answered by the live replica");
    }
    c.resume_server(1).unwrap();
    assert!(worst < Duration::from_secs(4), "a read waited {worst:?}");
}
