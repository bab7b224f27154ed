//! Backend pool limits: with `proxy.pool.max_per_server: 1`, a session that needs the primary
//! while another holds its only connection waits for it (up to `proxy.pool.queue_timeout_ms`),
//! and gets ERR 1040 naming the setting when it does not come back in time. With a limit of 2,
//! many sessions share the two connections without an error, the server never sees a third,
//! and waiters are served in arrival order. `proxy.pool.release_delay_ms` decides how long an
//! idle session keeps a connection before the pool gets it back.

mod proxy_support;

use integration_tests::mysql_async::prelude::Queryable;
use integration_tests::mysql_async::{Conn, Opts, OptsBuilder};
use proxy_support::{cluster, start_with, Proxy};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_pool_waits_then_refuses_with_1040() {
    let Some(c) = cluster("full_pool_waits_then_refuses_with_1040") else {
        return;
    };
    let p = start_with(
        &c,
        "  pool:\n    max_per_server: 1\n    queue_timeout_ms: 1500\n",
    )
    .await;
    let mut a = p.conn().await;
    a.query_drop("BEGIN").await.unwrap();
    let _: Option<u16> = a.query_first("SELECT @@port").await.unwrap();

    // B waits while A's transaction holds the primary's only connection, and is refused once
    // queue_timeout_ms has passed, with a message naming the setting.
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
        msg.contains("1040")
            && msg.contains("proxy.pool.queue_timeout_ms")
            && msg.contains("max_per_server"),
        "{msg}"
    );
    // A busy server is not a failing one.
    let primary = p.ctx.backend("primary").expect("primary");
    assert_eq!(primary.breaker_state(), "closed");
    assert_eq!(primary.connections(), 1);

    // B waits in line and gets A's connection as soon as A's transaction ends.
    let waiting = tokio::spawn(async move {
        let t = Instant::now();
        b.query_drop("CREATE TABLE IF NOT EXISTS pool_t (id INT)")
            .await
            .map(|()| t.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    a.query_drop("COMMIT").await.unwrap();
    let waited = waiting
        .await
        .unwrap()
        .expect("served once A's connection came back");
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_millis(1450),
        "waited {waited:?}"
    );
}

/// A user of its own, so that the server's process list shows only this test's connections.
const POOL_USER: &str = "pool_limit";
const POOL_PASSWORD: &str = "pool-limit-pw";

async fn pool_user_conn(p: &Proxy) -> Conn {
    let url = format!(
        "mysql://{POOL_USER}:{POOL_PASSWORD}@127.0.0.1:{}/{}",
        p.port,
        integration_tests::TEST_DB
    );
    let opts = OptsBuilder::from_opts(Opts::from_url(&url).expect("url")).prefer_socket(false);
    Conn::new(opts).await.expect("connect through the proxy")
}

/// A proxy whose every server allows two connections, for `POOL_USER` (created on the
/// servers) as well as the usual application user.
async fn two_per_server(c: &integration_tests::Cluster) -> Proxy {
    for sql in [
        format!("CREATE USER IF NOT EXISTS '{POOL_USER}'@'%' IDENTIFIED BY '{POOL_PASSWORD}'"),
        format!(
            "GRANT ALL ON {}.* TO '{POOL_USER}'@'%'",
            integration_tests::TEST_DB
        ),
    ] {
        c.admin_exec(0, &sql).await.expect("create the test user");
    }
    c.wait_replicas_caught_up(Duration::from_secs(10))
        .await
        .expect("replicas have the user");
    start_with(
        c,
        &format!(
            "    - name: {POOL_USER}\n      password: {POOL_PASSWORD}\n  pool:\n    max_per_server: 2\n    release_delay_ms: 0\n    queue_timeout_ms: 20000\n"
        ),
    )
    .await
}

/// The primary's connections from `POOL_USER`, as the server counts them.
async fn server_side(admin: &mut Conn) -> usize {
    let n: Option<u64> = admin
        .query_first(format!(
            "SELECT COUNT(*) FROM information_schema.processlist WHERE user = '{POOL_USER}'"
        ))
        .await
        .expect("processlist");
    n.unwrap_or(0) as usize
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_sessions_share_two_connections_without_errors() {
    let Some(c) = cluster("many_sessions_share_two_connections_without_errors") else {
        return;
    };
    let p = two_per_server(&c).await;
    let primary = p.ctx.backend("primary").expect("primary");

    // Sample the proxy's count and the server's process list while the sessions run.
    let stop = Arc::new(AtomicBool::new(false));
    let most_proxy = Arc::new(AtomicUsize::new(0));
    let sampler = {
        let (stop, most, primary) = (stop.clone(), most_proxy.clone(), primary.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                most.fetch_max(primary.connections(), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
        })
    };
    let server_sampler = {
        let mut admin = c.admin(0).await.expect("admin");
        let stop = stop.clone();
        tokio::spawn(async move {
            let (mut most, mut samples) = (0, 0);
            while !stop.load(Ordering::Relaxed) {
                most = most.max(server_side(&mut admin).await);
                samples += 1;
            }
            (most, samples)
        })
    };

    const SESSIONS: usize = 40;
    let mut sessions = Vec::new();
    for i in 0..SESSIONS {
        let mut conn = pool_user_conn(&p).await;
        sessions.push(tokio::spawn(async move {
            for _ in 0..3 {
                conn.query_drop("BEGIN").await?;
                let _: Option<u64> = conn.query_first("SELECT CONNECTION_ID()").await?;
                tokio::time::sleep(Duration::from_millis(5 + (i % 5) as u64)).await;
                conn.query_drop("COMMIT").await?;
            }
            conn.disconnect().await
        }));
    }
    let mut errors = Vec::new();
    for s in sessions {
        if let Err(e) = s.await.expect("session task") {
            errors.push(e.to_string());
        }
    }
    stop.store(true, Ordering::Relaxed);
    sampler.await.expect("sampler");
    let (most_server, samples) = server_sampler.await.expect("server sampler");
    assert!(
        errors.is_empty(),
        "{} sessions failed: {errors:?}",
        errors.len()
    );
    assert!(
        most_proxy.load(Ordering::Relaxed) <= 2,
        "the proxy held {} connections to the primary",
        most_proxy.load(Ordering::Relaxed)
    );
    assert!(
        most_server <= 2,
        "the primary saw {most_server} connections from {POOL_USER}"
    );
    assert!(samples > 10, "only {samples} process list samples");
    let queued = primary.metrics().pool_wait.get_sample_count();
    assert!(queued > 0, "nobody had to wait: the test proves nothing");
    assert_eq!(primary.metrics().pool_queue.get(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn waiters_are_served_in_arrival_order() {
    let Some(c) = cluster("waiters_are_served_in_arrival_order") else {
        return;
    };
    let p = two_per_server(&c).await;
    let pools = proxy::backend::pools_for(&p.ctx);

    // Two transactions take the primary's two connections.
    let mut holders = Vec::new();
    for _ in 0..2 {
        let mut h = pool_user_conn(&p).await;
        h.query_drop("BEGIN").await.unwrap();
        let _: Option<u64> = h.query_first("SELECT CONNECTION_ID()").await.unwrap();
        holders.push(h);
    }
    // Six sessions queue one after another.
    const WAITERS: usize = 6;
    let served = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for i in 0..WAITERS {
        let mut w = pool_user_conn(&p).await;
        let served = served.clone();
        tasks.push(tokio::spawn(async move {
            // BEGIN takes the primary connection: it waits in line.
            w.query_drop("BEGIN").await?;
            let _: Option<u64> = w.query_first("SELECT CONNECTION_ID()").await?;
            served.lock().expect("served").push(i);
            w.query_drop("COMMIT").await?;
            w.disconnect().await
        }));
        let deadline = Instant::now() + Duration::from_secs(5);
        while pools.waiting("primary") < i + 1 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(pools.waiting("primary"), i + 1, "waiter {i} queued");
    }
    // One holder lets go: its connection passes from waiter to waiter, each taking it when the
    // one before commits, so the order they are served in is the order of the line.
    let mut still_holding = holders.pop().expect("two holders");
    for mut h in holders {
        h.query_drop("COMMIT").await.unwrap();
    }
    for t in tasks {
        t.await.expect("task").expect("served, no error");
    }
    still_holding.query_drop("COMMIT").await.unwrap();
    let order = served.lock().expect("served").clone();
    assert_eq!(
        order,
        (0..WAITERS).collect::<Vec<_>>(),
        "served out of order"
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
