//! Backend pool limits: with `proxy.pool.max_per_server: 1`, a session that needs the primary
//! while another holds its only connection waits for it (up to `connect_timeout_ms`), and gets
//! ERR 1040 naming the setting when it does not come back in time. `proxy.pool.release_delay_ms`
//! decides how long an idle session keeps a connection before the pool gets it back.

mod proxy_support;

use integration_tests::mysql_async::prelude::Queryable;
use proxy_support::{cluster, start_with, Proxy};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_pool_waits_then_refuses_with_1040() {
    let Some(c) = cluster("full_pool_waits_then_refuses_with_1040") else {
        return;
    };
    let p = start_with(
        &c,
        "  pool:\n    max_per_server: 1\n    connect_timeout_ms: 1500\n",
    )
    .await;
    let mut a = p.conn().await;
    a.query_drop("BEGIN").await.unwrap();
    let _: Option<u16> = a.query_first("SELECT @@port").await.unwrap();

    // B waits while A's transaction holds the primary's only connection, and is refused.
    let mut b = p.conn().await;
    let t = Instant::now();
    let err = b
        .query_drop("CREATE TABLE IF NOT EXISTS pool_t (id INT)")
        .await
        .expect_err("refused while the pool is full");
    assert!(
        t.elapsed() >= Duration::from_millis(1400),
        "waited {:?}",
        t.elapsed()
    );
    let msg = err.to_string();
    assert!(
        msg.contains("1040") && msg.contains("max_per_server"),
        "{msg}"
    );

    // Once A commits and goes idle, its connection returns to the pool and B proceeds.
    a.query_drop("COMMIT").await.unwrap();
    let t = Instant::now();
    b.query_drop("CREATE TABLE IF NOT EXISTS pool_t (id INT)")
        .await
        .unwrap();
    assert!(
        t.elapsed() < Duration::from_millis(1500),
        "waited {:?}",
        t.elapsed()
    );
}

/// Idle connections in the proxy's pools `after` the client's last statement.
async fn idle_after(p: &Proxy, after: Duration) -> usize {
    let mut conn = p.conn().await;
    let _: Option<u16> = conn.query_first("SELECT @@port").await.unwrap();
    tokio::time::sleep(after).await;
    let idle = proxy::backend::pools_for(&p.ctx).idle_count();
    drop(conn);
    idle
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_delay_decides_when_an_idle_session_gives_back_its_connection() {
    let Some(c) = cluster("release_delay_decides_when_an_idle_session_gives_back_its_connection")
    else {
        return;
    };
    // 0: the replica connection is back in the pool as soon as the statement ends.
    let p = start_with(&c, "  pool:\n    release_delay_ms: 0\n").await;
    assert!(idle_after(&p, Duration::from_millis(200)).await >= 1);
    drop(p);
    // A long delay: the idle session still holds it well after the default 500 ms.
    let p = start_with(&c, "  pool:\n    release_delay_ms: 5000\n").await;
    assert_eq!(idle_after(&p, Duration::from_millis(1200)).await, 0);
}
