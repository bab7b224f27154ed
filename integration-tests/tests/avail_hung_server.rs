//! A hung server leaves the rotation fast (issue 11, DESIGN §3.1), on a private topology under
//! a 70 % read / 30 % write load from 8 sessions: the replica that serves the reads is frozen
//! (SIGSTOP, as a hung host or a network partition looks) for 5 s. Its health check gets no
//! answer within `monitor.timeout_ms`, it leaves the rotation at once, reads waiting on it are
//! re-run on the other replica, and no session waits longer than a second. A slow statement
//! on a server that answers its checks is not a hung server.

mod avail_support;
mod proxy_support;

use avail_support::{reads_ok, start_load, Load, Op, ONE_AT_A_TIME};
use integration_tests::mysql_async::prelude::Queryable;
use integration_tests::Cluster;
use proxy_support::{start_edited, Proxy};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SESSIONS: usize = 8;
/// How long the replica stays frozen.
const FROZEN: Duration = Duration::from_secs(5);
/// The longest any operation may wait, the hang included.
const LONGEST_WAIT: Duration = Duration::from_secs(1);
const RETRIED_HUNG: &str = "rwsplit_reads_retried_total{reason=\"server_hung\"}";

/// The proxy in zone-a with replica1 (zone-a) serving every read and replica2 (zone-b) as the
/// fallback, so "the replica serving reads" is one server. The monitor's check timeout is
/// left at its default (500 ms); the pool's connect timeout is the default too (2 s), so only
/// `monitor.timeout_ms` can make the hang short.
fn zoned(c: &Cluster) -> impl FnOnce(String) -> String {
    let (r1, r2) = (c.port(1), c.port(2));
    move |yaml: String| {
        let yaml = yaml
            .replace(
                &format!("port: {r1}, role: replica }}"),
                &format!("port: {r1}, role: replica, location: zone-a }}"),
            )
            .replace(
                &format!("port: {r2}, role: replica }}"),
                &format!("port: {r2}, role: replica, location: zone-b }}"),
            )
            .replace("routing:\n", "routing:\n  location_fallback: [zone-b]\n");
        format!("location: zone-a\n{yaml}")
    }
}

/// Resumes a frozen server however the test ends, so no topology stays stopped.
struct Thaw<'a> {
    cluster: &'a Cluster,
    index: usize,
}

impl Drop for Thaw<'_> {
    fn drop(&mut self) {
        let _ = self.cluster.resume_server(self.index);
    }
}

fn retried_hung(p: &Proxy) -> f64 {
    let text = p.ctx.metrics.render();
    text.lines()
        .find_map(|l| l.strip_prefix(RETRIED_HUNG))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn frozen_replica_under_load_leaves_rotation_and_no_session_waits() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(c) = Cluster::private_or_skip("frozen_replica_under_load") else {
        return;
    };
    let p = start_edited(&c, "", zoned(&c)).await;
    let mut setup = p.conn().await;
    setup
        .query_drop(
            "CREATE TABLE IF NOT EXISTS hung_t (id INT AUTO_INCREMENT PRIMARY KEY, session INT)",
        )
        .await
        .expect("create table");
    c.wait_replicas_caught_up(Duration::from_secs(10))
        .await
        .expect("replicas caught up");
    for _ in 0..10 {
        let port: Option<u16> = setup.query_first("SELECT @@port").await.expect("read");
        assert_eq!(port, Some(c.port(1)), "replica1 (zone-a) serves the reads");
    }
    drop(setup);
    let retried_before = retried_hung(&p);

    let stop = Arc::new(AtomicBool::new(false));
    let (ops, tasks) = start_load(
        Load {
            url: p.url(),
            sessions: SESSIONS,
            insert: "INSERT INTO hung_t (session) VALUES (1)",
        },
        stop.clone(),
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let baseline_from = Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;

    let frozen_at = Instant::now();
    c.pause_server(1).expect("SIGSTOP replica1");
    let thaw = Thaw {
        cluster: &c,
        index: 1,
    };
    // How soon the monitor takes it out of the rotation.
    let left_after = loop {
        if !p.ctx.topology().router.servers[1].reachable {
            break frozen_at.elapsed();
        }
        assert!(
            frozen_at.elapsed() < FROZEN,
            "the frozen replica stayed in the rotation"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    tokio::time::sleep(FROZEN.saturating_sub(frozen_at.elapsed())).await;
    let thawed_at = Instant::now();
    drop(thaw);

    // Back in the rotation once it answers its checks again.
    let back_after = loop {
        let served = ops
            .lock()
            .unwrap()
            .iter()
            .any(|o| o.at > thawed_at && o.port == Some(c.port(1)));
        if served {
            break Some(thawed_at.elapsed());
        }
        if thawed_at.elapsed() > Duration::from_secs(10) {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("load session");
    }
    let ops = ops.lock().unwrap().clone();

    let baseline = reads_ok(&ops, baseline_from, frozen_at) as f64 / 3.0;
    let frozen = reads_ok(&ops, frozen_at, thawed_at) as f64
        / thawed_at.duration_since(frozen_at).as_secs_f64();
    let errors: Vec<&Op> = ops.iter().filter(|o| o.error.is_some()).collect();
    let slowest = ops.iter().max_by_key(|o| o.took).cloned();
    let rel = |t: Instant| {
        t.saturating_duration_since(frozen_at).as_millis() as i64
            - frozen_at.saturating_duration_since(t).as_millis() as i64
    };
    let slow: Vec<String> = ops
        .iter()
        .filter(|o| o.took > LONGEST_WAIT / 2)
        .map(|o| {
            format!(
                "session {} {} at {} ms took {:?} ({:?})",
                o.session,
                if o.write { "write" } else { "read" },
                rel(o.at),
                o.took,
                o.error.as_deref().unwrap_or("ok")
            )
        })
        .collect();
    let retried = retried_hung(&p) - retried_before;
    eprintln!(
        "reads/s baseline {baseline:.0}, replica1 frozen {frozen:.0} ({:.0} %); out of the \
         rotation {left_after:?} after SIGSTOP, back {back_after:?} after SIGCONT; slowest \
         operation {:?}; {} errors; {retried} reads re-run (server_hung); over {:?}: {slow:#?}",
        100.0 * frozen / baseline,
        slowest.as_ref().map(|o| o.took),
        errors.len(),
        LONGEST_WAIT / 2,
    );
    assert!(
        errors.is_empty(),
        "operations failed: {:?}",
        errors.iter().take(5).collect::<Vec<_>>()
    );
    assert!(
        slowest.as_ref().is_none_or(|o| o.took <= LONGEST_WAIT),
        "an operation waited {:?}: {slowest:?}",
        slowest.as_ref().map(|o| o.took)
    );
    assert!(
        frozen >= 0.5 * baseline,
        "reads fell to {frozen:.0}/s from {baseline:.0}/s"
    );
    assert!(
        left_after <= LONGEST_WAIT,
        "the frozen replica left the rotation {left_after:?} after SIGSTOP"
    );
    assert!(
        retried >= 1.0,
        "reads in flight on the frozen replica were re-run elsewhere ({retried})"
    );
    assert!(
        back_after.is_some(),
        "replica1 serves reads again after SIGCONT"
    );
}

/// A statement that runs for a while on a replica that answers its checks is a slow
/// statement, not a hung server: it completes where it runs, is not re-run, and the replica
/// stays in the rotation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_statement_on_a_healthy_replica_is_not_a_hung_server() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(c) = proxy_support::cluster("slow_statement_on_a_healthy_replica") else {
        return;
    };
    let p = start_edited(&c, "", |y| y).await;
    let mut conn = p.conn().await;
    let before = retried_hung(&p);
    let t = Instant::now();
    // Three times the check timeout (500 ms by default), on a replica.
    let row: Option<(u16, i64)> = conn
        .query_first("SELECT @@port, SLEEP(1.5)")
        .await
        .expect("the slow read completes");
    let took = t.elapsed();
    let (port, slept) = row.expect("one row");
    assert!(
        c.replica_ports().contains(&port),
        "a read, served by a replica"
    );
    assert_eq!(slept, 0, "SLEEP ran to its end, not interrupted");
    assert!(took >= Duration::from_millis(1500), "{took:?}");
    assert_eq!(retried_hung(&p), before, "a slow read is not re-run");
    let topo = p.ctx.topology();
    assert!(
        topo.router.servers.iter().all(|s| s.reachable),
        "every server stays in the rotation: {:?}",
        topo.servers
    );
}
