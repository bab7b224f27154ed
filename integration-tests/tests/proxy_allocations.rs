//! The session loop allocates nothing per point select in steady state (issue 14, per-query
//! cost): a read through the proxy must cost what the bytes cost, not the allocator's work.
//!
//! The proxy runs in this process with its sessions on a runtime of their own; a global
//! allocator counts only what that runtime's threads allocate, so the client driver and the
//! health monitor (on the test's runtime) do not count. After a warm-up (the pools hold their
//! connections, statements are prepared on each replica, buffers have grown), each kind of
//! point select runs `STATEMENTS` times on each of `CLIENTS` sessions against the real test
//! topology and the count must be zero.
//!
//! Steady state means the pools neither grow nor shrink: opening a server connection
//! allocates (buffers, a handshake), and `CLIENTS` sessions drawing from shared pools may
//! still meet a moment where all of one replica's connections are busy. A window in which any
//! server accepted a new connection is therefore measured again, and so is one with a few
//! allocations that do not come back in the next (growth that happens once), at most
//! `WINDOWS` times; the idle timeout is an hour so that nothing is closed meanwhile. Set
//! `RWSPLIT_ALLOC_TRACE=1` to print a backtrace of the first counted allocations when looking
//! for one.
//!
//! Counted by a global allocator, so this file holds a single test.

mod proxy_support;

use integration_tests::mysql_async::prelude::Queryable;
use integration_tests::TEST_DB;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

/// Statements measured per kind, after the warm-up.
const STATEMENTS: usize = 2_000;
/// Statements run per kind before counting.
const WARM_UP: usize = 500;
/// Sessions running at once: connections change hands between them (multiplexing).
const CLIENTS: usize = 4;
/// Backtraces printed with `RWSPLIT_ALLOC_TRACE=1`.
const TRACED: usize = 8;
/// Windows tried per kind before giving up on finding one without a new server connection.
const WINDOWS: usize = 4;

thread_local! {
    /// Set on the proxy runtime's threads.
    static PROXY_THREAD: Cell<bool> = const { Cell::new(false) };
    /// Inside the allocator's own tracing (which allocates).
    static TRACING: Cell<bool> = const { Cell::new(false) };
}

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);
static TRACE: AtomicBool = AtomicBool::new(false);
/// `ALLOCATIONS` when the current window began (the first `TRACED` of each are traced).
static WINDOW_START: AtomicUsize = AtomicUsize::new(0);

struct Counting;

impl Counting {
    fn count(&self) {
        if !COUNTING.load(Ordering::Relaxed)
            || !PROXY_THREAD.with(Cell::get)
            || TRACING.with(Cell::get)
        {
            return;
        }
        let n = ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        if n - WINDOW_START.load(Ordering::Relaxed) < TRACED && TRACE.load(Ordering::Relaxed) {
            TRACING.with(|t| t.set(true));
            eprintln!(
                "allocation {n} on a proxy thread:\n{}",
                std::backtrace::Backtrace::force_capture()
            );
            TRACING.with(|t| t.set(false));
        }
    }
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.count();
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        self.count();
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        self.count();
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations on the proxy's threads while `work` runs.
async fn counted<F: std::future::Future<Output = ()>>(work: F) -> usize {
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    WINDOW_START.store(before, Ordering::Relaxed);
    COUNTING.store(true, Ordering::Relaxed);
    work.await;
    COUNTING.store(false, Ordering::Relaxed);
    ALLOCATIONS.load(Ordering::Relaxed) - before
}

#[test]
fn point_selects_allocate_nothing_in_the_session_loop() {
    let Some(cluster) = proxy_support::cluster("proxy_allocations") else {
        return;
    };
    TRACE.store(
        std::env::var_os("RWSPLIT_ALLOC_TRACE").is_some(),
        Ordering::Relaxed,
    );
    // Two workers, as the proxy's default runtime has on this machine's two cores.
    let sessions = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("proxy-sessions")
        .on_thread_start(|| PROXY_THREAD.with(|t| t.set(true)))
        .enable_all()
        .build()
        .expect("the sessions' runtime");
    let driver = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("the test's runtime");
    let handle = sessions.handle().clone();
    driver.block_on(async move {
        for sql in [
            format!("CREATE TABLE IF NOT EXISTS {TEST_DB}.alloc_points (id INT PRIMARY KEY, c CHAR(60) NOT NULL)"),
            format!("INSERT IGNORE INTO {TEST_DB}.alloc_points SELECT seq, REPEAT('x', 60) FROM {TEST_DB}.seq_1_to_100"),
        ] {
            cluster.admin_exec(0, &sql).await.expect("set up the table");
        }
        cluster
            .wait_replicas_caught_up(Duration::from_secs(10))
            .await
            .expect("replicas have the table");
        let p = proxy_support::start_serving_on(
            &cluster,
            "  pool:\n    idle_timeout_s: 3600\n",
            |y| y,
            handle,
        )
        .await;
        let mut conns = Vec::new();
        for _ in 0..CLIENTS {
            conns.push(p.conn().await);
        }
        let mut admins = Vec::new();
        for i in 0..=cluster.replicas() {
            admins.push(cluster.admin(i).await.expect("admin connection"));
        }
        let mut results = Vec::new();
        for prepared in [false, true] {
            let kind = if prepared { "prepared" } else { "text" };
            conns = run_all(conns, WARM_UP, prepared).await;
            // Per kind: the counts of the steady windows measured, until one counts zero.
            let mut counts = Vec::new();
            for _ in 0..WINDOWS {
                let opened_before = connections_opened(&mut admins).await;
                let mut back = None;
                let n = counted(async { back = Some(run_all(conns, STATEMENTS, prepared).await) }).await;
                conns = back.take().expect("the clients");
                if connections_opened(&mut admins).await != opened_before {
                    eprintln!("{kind}: a server connection was opened during the window ({n} allocations): measuring again");
                    continue;
                }
                eprintln!(
                    "allocations on the proxy's threads, {kind}: {n} in {} statements",
                    STATEMENTS * CLIENTS
                );
                counts.push(n);
                if n == 0 {
                    break;
                }
            }
            results.push((kind, counts));
        }
        for (kind, counts) in results {
            // A statement that allocates shows in every window; growth that happens once (a
            // buffer of the runtime reaching its size) leaves the next window at zero.
            assert_eq!(
                counts.last(),
                Some(&0),
                "allocations in each steady window of {STATEMENTS}×{CLIENTS} {kind} point selects: {counts:?}"
            );
        }
        drop(conns);
        drop(p);
    });
    sessions.shutdown_background();
}

/// Connections the servers have accepted so far (their `Connections` counters, summed).
async fn connections_opened(admins: &mut [integration_tests::mysql_async::Conn]) -> u64 {
    let mut total = 0;
    for a in admins.iter_mut() {
        let row: Option<(String, u64)> = a
            .query_first("SHOW GLOBAL STATUS LIKE 'Connections'")
            .await
            .expect("SHOW GLOBAL STATUS");
        total += row.map_or(0, |(_, n)| n);
    }
    total
}

/// Runs `n` point selects on each connection at once, text or prepared, checking each row.
async fn run_all(
    conns: Vec<integration_tests::mysql_async::Conn>,
    n: usize,
    prepared: bool,
) -> Vec<integration_tests::mysql_async::Conn> {
    let mut tasks = Vec::new();
    for (k, mut c) in conns.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            for i in 0..n {
                let id = (i + k) % 100 + 1;
                let row: Option<String> = if prepared {
                    c.exec_first("SELECT c FROM alloc_points WHERE id = ?", (id,))
                        .await
                        .expect("prepared point select")
                } else {
                    c.query_first(format!("SELECT c FROM alloc_points WHERE id = {id}"))
                        .await
                        .expect("text point select")
                };
                assert_eq!(row.map(|r| r.len()), Some(60), "row {id} came back");
            }
            c
        }));
    }
    let mut back = Vec::new();
    for t in tasks {
        back.push(t.await.expect("client task"));
    }
    back
}
