//! The local topology itself: what `make cluster-up` promises users (a write on the primary is
//! visible on every replica; replicas refuse the application's writes; faults can be injected).

use integration_tests::mysql_async::prelude::Queryable;
use integration_tests::{mysql_async, Cluster};
use std::time::Duration;

async fn app(cluster: &Cluster, index: usize) -> mysql_async::Conn {
    mysql_async::Conn::from_url(cluster.app_url(index))
        .await
        .expect("app user connects")
}

#[tokio::test]
async fn write_on_primary_is_visible_on_every_replica() {
    let Some(cluster) = Cluster::shared_or_skip("write_on_primary_is_visible_on_every_replica")
    else {
        return;
    };
    let mut primary = app(&cluster, 0).await;
    primary
        .query_drop(
            "CREATE TABLE IF NOT EXISTS harness_visibility (id INT PRIMARY KEY, note VARCHAR(40))",
        )
        .await
        .unwrap();
    let id: u32 = fastrand_id();
    primary
        .exec_drop(
            "INSERT INTO harness_visibility VALUES (?, 'from the primary')",
            (id,),
        )
        .await
        .unwrap();
    cluster
        .wait_replicas_caught_up(Duration::from_secs(10))
        .await
        .unwrap();
    for replica in 1..=cluster.replicas() {
        let mut conn = app(&cluster, replica).await;
        let note: Option<String> = conn
            .exec_first("SELECT note FROM harness_visibility WHERE id = ?", (id,))
            .await
            .unwrap();
        assert_eq!(
            note.as_deref(),
            Some("from the primary"),
            "replica {replica}"
        );
    }
}

#[tokio::test]
async fn replicas_reject_application_writes() {
    let Some(cluster) = Cluster::shared_or_skip("replicas_reject_application_writes") else {
        return;
    };
    let mut conn = app(&cluster, 1).await;
    let err = conn
        .query_drop("CREATE TABLE harness_should_fail (x INT)")
        .await
        .expect_err("a replica must refuse the app user's writes");
    assert!(
        err.to_string().contains("read-only") || err.to_string().contains("1290"),
        "{err}"
    );
}

#[tokio::test]
async fn stopped_sql_thread_leaves_the_replica_behind_until_restarted() {
    let Some(cluster) = Cluster::private_or_skip("stopped_sql_thread_leaves_the_replica_behind")
    else {
        return;
    };
    cluster.stop_sql_thread(1).await.unwrap();
    let mut primary = app(&cluster, 0).await;
    primary
        .query_drop("CREATE TABLE lagging (x INT)")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_ne!(
        cluster.gtid_position(1).await.unwrap(),
        cluster.gtid_position(0).await.unwrap(),
        "replica 1 must not apply while its SQL thread is stopped"
    );
    cluster.start_sql_thread(1).await.unwrap();
    cluster
        .wait_replicas_caught_up(Duration::from_secs(10))
        .await
        .unwrap();

    // A stopped server comes back with `start_servers`, and replication resumes.
    cluster.stop_server(2).unwrap();
    primary
        .query_drop("INSERT INTO lagging VALUES (1)")
        .await
        .unwrap();
    cluster.start_servers().unwrap();
    cluster
        .wait_replicas_caught_up(Duration::from_secs(20))
        .await
        .unwrap();
}

/// A row id unlikely to collide with an earlier run's against the same shared topology.
fn fastrand_id() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(1)
}
