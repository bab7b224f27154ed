//! The per-server limit and the queue: exact under concurrency, resized by reloads, served in
//! arrival order, handing connections to waiters of their key, refusing after the queue timeout.

use super::*;
use router::config::Config;
use std::path::PathBuf;
use std::sync::atomic::AtomicUsize;

/// One server on port 1, where nothing listens: a checkout that gets past the queue fails to
/// connect, which tells it apart from one refused by the queue.
fn ctx(pool: &str) -> Arc<Context> {
    let yaml = format!(
        "servers:\n  - {{name: p, host: 127.0.0.1, port: 1, role: primary}}\nmonitor: {{user: m, password: x}}\nproxy:\n  pool: {{{pool}}}\n"
    );
    let c = Config::from_yaml("t.yaml", &yaml).expect("valid");
    Context::new(PathBuf::from("t.yaml"), c)
}

fn key(b: &Backend, user: &str) -> Key {
    Key {
        server: b.name().to_string(),
        addr: format!("{}:{}", b.config.host, b.config.port),
        user: user.to_string(),
        caps: 0,
        collation: 33,
        tls: b.config.tls.mode,
    }
}

/// A connection holding one of `b`'s slots, over a local socket pair (the peer is returned to
/// keep it open).
async fn fake_conn(b: &Backend, user: &str, id: u32) -> (Conn, tokio::net::TcpStream) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = l.local_addr().expect("addr");
    let (c, a) = tokio::join!(tokio::net::TcpStream::connect(addr), l.accept());
    let mut conn = Conn::for_test(c.expect("connect"), key(b, user), id);
    conn.slot = Some(b.try_slot().expect("room for the fake connection"));
    (conn, a.expect("accept").0)
}

async fn until(mut f: impl FnMut() -> bool) {
    for _ in 0..500 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    panic!("condition not reached");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_limit_is_exact_under_concurrency() {
    let ctx = ctx("max_per_server: 3");
    let b = ctx.backend("p").expect("p");
    b.set_pool_limit(3);
    let held = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let (b, held, most) = (b.clone(), held.clone(), most.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..20 {
                let slot = b.slot().await.expect("slot");
                let now = held.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                assert!(b.connections() <= 3, "{} connections", b.connections());
                tokio::task::yield_now().await;
                held.fetch_sub(1, Ordering::SeqCst);
                drop(slot);
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    assert_eq!(most.load(Ordering::SeqCst), 3);
    assert_eq!(b.connections(), 0);
}

#[tokio::test]
async fn a_reload_raises_or_lowers_the_limit() {
    let ctx = ctx("max_per_server: 2");
    let b = ctx.backend("p").expect("p");
    b.set_pool_limit(2);
    let s1 = b.try_slot().expect("1");
    let s2 = b.try_slot().expect("2");
    assert!(b.try_slot().is_none());
    // Lowered below what is open: the open ones stay, their places are not given out again.
    b.set_pool_limit(1);
    drop(s1);
    assert!(b.try_slot().is_none(), "still 1 open, limit 1");
    drop(s2);
    let s = b.try_slot().expect("room again");
    assert!(b.try_slot().is_none());
    // Raised: room at once.
    b.set_pool_limit(3);
    let t1 = b.try_slot().expect("raised");
    let t2 = b.try_slot().expect("raised");
    assert!(b.try_slot().is_none());
    assert_eq!(b.connections(), 3);
    // Lowered then raised before anything closed: the debt cancels, no permit is lost.
    b.set_pool_limit(1);
    b.set_pool_limit(3);
    drop((s, t1, t2));
    let all: Vec<_> = (0..3).filter_map(|_| b.try_slot()).collect();
    assert_eq!(all.len(), 3);
    assert!(b.try_slot().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiters_get_slots_in_arrival_order() {
    let ctx = ctx("max_per_server: 1");
    let b = ctx.backend("p").expect("p");
    b.set_pool_limit(1);
    let first = b.try_slot().expect("slot");
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for i in 0..6 {
        let (b, order) = (b.clone(), order.clone());
        tasks.push(tokio::spawn(async move {
            let s = b.slot().await.expect("slot");
            order.lock().expect("order").push(i);
            tokio::time::sleep(Duration::from_millis(2)).await;
            drop(s);
        }));
        // Let it queue before the next one arrives.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(first);
    for t in tasks {
        t.await.expect("task");
    }
    assert_eq!(*order.lock().expect("order"), vec![0, 1, 2, 3, 4, 5]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_given_back_goes_to_a_waiter_of_its_key() {
    let ctx = ctx("max_per_server: 1, queue_timeout_ms: 5000");
    let pools = pools_for(&ctx);
    let b = ctx.backend("p").expect("p");
    b.set_pool_limit(1);
    let (conn, _peer) = fake_conn(&b, "u", 42).await;
    let waiter = {
        let (ctx, pools, b) = (ctx.clone(), pools.clone(), b.clone());
        tokio::spawn(async move {
            pools
                .acquire(&ctx, &b, &key(&b, "u"), "", false, &Fingerprint::fresh())
                .await
        })
    };
    until(|| pools.waiting("p") == 1).await;
    assert_eq!(b.metrics().pool_queue.get(), 1);
    pools.release(&ctx, &b, conn);
    let got = waiter.await.expect("task").expect("handed over");
    assert_eq!(got.connection_id, 42);
    assert_eq!(pools.idle_count(), 0);
    assert_eq!(b.connections(), 1, "the same connection, not a new one");
    assert_eq!(b.metrics().pool_queue.get(), 0);
    assert_eq!(b.metrics().pool_wait.get_sample_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_pool_refuses_after_the_queue_timeout_naming_the_setting() {
    let ctx = ctx("max_per_server: 1, queue_timeout_ms: 300");
    let pools = pools_for(&ctx);
    let b = ctx.backend("p").expect("p");
    b.set_pool_limit(1);
    let (_conn, _peer) = fake_conn(&b, "u", 1).await;
    let t = Instant::now();
    let e = pools
        .acquire(&ctx, &b, &key(&b, "u"), "", false, &Fingerprint::fresh())
        .await
        .err()
        .expect("refused");
    assert!(
        t.elapsed() >= Duration::from_millis(290),
        "{:?}",
        t.elapsed()
    );
    assert!(matches!(e, Error::PoolExhausted { .. }), "{e}");
    let msg = e.to_string();
    assert!(msg.contains("proxy.pool.queue_timeout_ms"), "{msg}");
    assert!(msg.contains("proxy.pool.max_per_server"), "{msg}");
    assert_eq!(b.metrics().pool_queue.get(), 0);
    assert_eq!(pools.waiting("p"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_nobody_of_its_key_waits_for_makes_room_for_another_user() {
    let ctx = ctx("max_per_server: 1, queue_timeout_ms: 5000, connect_timeout_ms: 500");
    let pools = pools_for(&ctx);
    let b = ctx.backend("p").expect("p");
    b.set_pool_limit(1);
    let (conn, _peer) = fake_conn(&b, "a", 1).await;
    let waiter = {
        let (ctx, pools, b) = (ctx.clone(), pools.clone(), b.clone());
        tokio::spawn(async move {
            pools
                .acquire(
                    &ctx,
                    &b,
                    &key(&b, "other"),
                    "",
                    false,
                    &Fingerprint::fresh(),
                )
                .await
        })
    };
    until(|| pools.waiting("p") == 1).await;
    pools.release(&ctx, &b, conn);
    // Past the queue: it tried to connect (nothing listens on port 1).
    let e = waiter.await.expect("task").err().expect("no server");
    assert!(!matches!(e, Error::PoolExhausted { .. }), "{e}");
    assert_eq!(pools.idle_count(), 0, "closed, not kept idle");
    assert_eq!(b.connections(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_of_another_user_is_closed_for_a_newcomer() {
    let ctx = ctx("max_per_server: 1, queue_timeout_ms: 5000, connect_timeout_ms: 500");
    let pools = pools_for(&ctx);
    let b = ctx.backend("p").expect("p");
    b.set_pool_limit(1);
    let (conn, _peer) = fake_conn(&b, "a", 1).await;
    pools.release(&ctx, &b, conn);
    assert_eq!(pools.idle_count(), 1);
    let t = Instant::now();
    let e = pools
        .acquire(
            &ctx,
            &b,
            &key(&b, "other"),
            "",
            false,
            &Fingerprint::fresh(),
        )
        .await
        .err()
        .expect("no server");
    assert!(!matches!(e, Error::PoolExhausted { .. }), "{e}");
    assert!(t.elapsed() < Duration::from_secs(2), "did not queue");
    assert_eq!(pools.idle_count(), 0);
}
