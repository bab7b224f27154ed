//! A consistency checker of our own, Jepsen-style (issue 10): sessions increment their own
//! counters and read counters back through the proxy while one replica's SQL thread pauses and
//! resumes in a loop. Every operation is recorded with its invoke and complete times; the
//! history is then checked for lost writes, read-your-writes violations (a session reads its own
//! counter below what it has acknowledged), monotonic-read violations (a session reads a counter
//! below what it read of it before) and reads staler than `max_lag_ms`. Under
//! `read_your_writes`, `monotonic` and `causal` the guaranteed counts must be 0; the share of
//! reads still served by replicas is reported. Private topology: the pauses would disturb
//! other tests.

mod proxy_support;

use integration_tests::mysql_async::prelude::Queryable;
use integration_tests::Cluster;
use proxy_support::lag_sources::{self, start_following, start_sidecar, Sidecar};
use proxy_support::Proxy;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SESSIONS: usize = 6;
const OPS_PER_SESSION: usize = 300;
/// `routing.max_lag_ms` of the proxy configuration in `proxy_support`.
const MAX_LAG_MS: u128 = 5000;

/// One operation of the history.
#[derive(Debug, Clone)]
struct Op {
    session: usize,
    /// `None` for an increment of the session's own counter, `Some(counter)` for a read.
    read: Option<usize>,
    /// The value read (reads) or the counter's value after the increment (writes).
    value: i64,
    invoke: Instant,
    complete: Instant,
    on_replica: bool,
}

#[derive(Debug, Default)]
struct Verdict {
    ops: usize,
    reads: usize,
    replica_reads: usize,
    /// Sum of the reads' durations (invoke to complete).
    read_time: Duration,
    lost_writes: usize,
    ryw: usize,
    monotonic: usize,
    stale: usize,
}

/// Checks one history against the final counter values read from the primary.
fn check(history: &[Op], finals: &[i64]) -> Verdict {
    let mut v = Verdict {
        ops: history.len(),
        ..Verdict::default()
    };
    for s in 0..SESSIONS {
        let mine: Vec<&Op> = history.iter().filter(|o| o.session == s).collect();
        let acked = mine.iter().filter(|o| o.read.is_none()).count() as i64;
        // Increments are acknowledged one at a time and only this session writes its counter.
        if finals.get(s).copied().unwrap_or(0) != acked {
            v.lost_writes += usize::try_from((acked - finals[s]).abs()).unwrap_or(0);
        }
        // When the session's own counter reached each value.
        let mut acked_at: Vec<Instant> = Vec::new();
        let mut seen = [i64::MIN; SESSIONS];
        for o in &mine {
            match o.read {
                None => acked_at.push(o.complete),
                Some(c) => {
                    v.reads += 1;
                    v.replica_reads += usize::from(o.on_replica);
                    v.read_time += o.complete.saturating_duration_since(o.invoke);
                    if c == s {
                        let own = acked_at.len() as i64;
                        if o.value < own {
                            v.ryw += 1;
                            // The first write the read missed was acknowledged when?
                            let missed = usize::try_from(o.value).unwrap_or(0);
                            if acked_at.get(missed).is_some_and(|t| {
                                o.invoke.saturating_duration_since(*t).as_millis() > MAX_LAG_MS
                            }) {
                                v.stale += 1;
                            }
                        }
                    }
                    if o.value < seen[c] {
                        v.monotonic += 1;
                    }
                    seen[c] = seen[c].max(o.value);
                }
            }
        }
    }
    v
}

impl Verdict {
    fn replica_share(&self) -> f64 {
        self.replica_reads as f64 / self.reads.max(1) as f64
    }

    fn mean_read_ms(&self) -> f64 {
        self.read_time.as_secs_f64() * 1000.0 / self.reads.max(1) as f64
    }
}

/// A proxy at `level` with `causal_wait_ms: wait_ms` and the default poll settings, with the
/// embedded reader (own server id) or following `sidecar`.
async fn start_level(
    c: &Cluster,
    level: &str,
    wait_ms: u64,
    server_id: u32,
    sidecar: Option<&Sidecar>,
) -> Proxy {
    let routing = format!("  consistency: {level}\n  causal_wait_ms: {wait_ms}\n");
    match sidecar {
        Some(s) => start_following(c, s, &routing).await,
        None => lag_sources::start_embedded(c, server_id, &routing, "").await,
    }
}

/// A fresh counters table with one row per session, on every replica.
async fn counters(c: &Cluster, name: &str) -> String {
    let mut admin = c.admin(0).await.expect("admin");
    let t = format!("rwsplit_test.{name}");
    admin
        .query_drop(format!(
            "CREATE TABLE {t} (id INT PRIMARY KEY, v BIGINT NOT NULL)"
        ))
        .await
        .expect("create");
    let rows: Vec<String> = (0..SESSIONS).map(|i| format!("({i}, 0)")).collect();
    admin
        .query_drop(format!("INSERT INTO {t} VALUES {}", rows.join(",")))
        .await
        .expect("rows");
    c.wait_replicas_caught_up(Duration::from_secs(10))
        .await
        .expect("caught up");
    name.to_string()
}

/// Runs the sessions on `table` through `p` and checks their history against the final values.
async fn run_sessions(p: &Arc<Proxy>, c: &Cluster, table: &str) -> (Verdict, Duration) {
    let primary = c.primary_port();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for s in 0..SESSIONS {
        let (p, table) = (p.clone(), table.to_string());
        tasks.push(tokio::spawn(
            async move { session(&p, table, s, primary).await },
        ));
    }
    let mut history = Vec::new();
    for t in tasks {
        history.extend(t.await.expect("session"));
    }
    let took = started.elapsed();
    let mut admin = c.admin(0).await.expect("admin");
    let mut finals = Vec::new();
    for s in 0..SESSIONS {
        let v: i64 = admin
            .query_first(format!("SELECT v FROM rwsplit_test.{table} WHERE id = {s}"))
            .await
            .expect("final")
            .expect("row");
        finals.push(v);
    }
    (check(&history, &finals), took)
}

/// One session's operations: 40 % increments of its own counter, reads of its own counter
/// (half the reads) or another's.
async fn session(p: &Proxy, table: String, s: usize, primary: u16) -> Vec<Op> {
    let mut conn = p.conn().await;
    let mut history = Vec::with_capacity(OPS_PER_SESSION);
    let mut own = 0i64;
    for _ in 0..OPS_PER_SESSION {
        let invoke = Instant::now();
        if fastrand::u8(..100) < 40 {
            conn.query_drop(format!("UPDATE {table} SET v = v + 1 WHERE id = {s}"))
                .await
                .expect("increment");
            own += 1;
            history.push(Op {
                session: s,
                read: None,
                value: own,
                invoke,
                complete: Instant::now(),
                on_replica: false,
            });
        } else {
            let c = if fastrand::bool() {
                s
            } else {
                fastrand::usize(..SESSIONS)
            };
            let (value, port): (i64, u16) = conn
                .query_first(format!("SELECT v, @@port FROM {table} WHERE id = {c}"))
                .await
                .expect("read")
                .expect("a row");
            history.push(Op {
                session: s,
                read: Some(c),
                value,
                invoke,
                complete: Instant::now(),
                on_replica: port != primary,
            });
        }
    }
    history
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consistency_checker_under_a_pausing_replica() {
    let Some(c) = Cluster::private_or_skip("consistency_checker_under_a_pausing_replica") else {
        return;
    };
    let c = Arc::new(c);
    let levels = ["lag", "read_your_writes", "monotonic", "causal"];
    let mut report = Vec::new();
    for (i, level) in levels.into_iter().enumerate() {
        let table = counters(&c, &format!("counters_{level}")).await;
        let p = Arc::new(start_level(&c, level, 10, 7800 + i as u32 * 10, None).await);
        // replica1's SQL thread pauses 150 ms out of every 300 ms while the sessions run.
        let stop = Arc::new(AtomicBool::new(false));
        let pauser = {
            let (c, stop) = (c.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    c.stop_sql_thread(1).await.expect("stop sql thread");
                    tokio::time::sleep(Duration::from_millis(150)).await;
                    c.start_sql_thread(1).await.expect("start sql thread");
                    tokio::time::sleep(Duration::from_millis(150)).await;
                }
            })
        };
        let (v, took) = run_sessions(&p, &c, &table).await;
        stop.store(true, Ordering::Relaxed);
        pauser.await.expect("pauser");
        let line = format!(
            "{level:>16}: {} ops in {:.1} s, lost writes {}, read-your-writes violations {}, \
             monotonic-read violations {}, reads staler than max_lag_ms {}, reads on replicas \
             {:.1} % of {}",
            v.ops,
            took.as_secs_f64(),
            v.lost_writes,
            v.ryw,
            v.monotonic,
            v.stale,
            100.0 * v.replica_share(),
            v.reads
        );
        println!("consistency checker: {line}");
        report.push((level, v));
    }
    for (level, v) in &report {
        assert_eq!(v.lost_writes, 0, "{level}: {v:?}");
        assert_eq!(v.stale, 0, "{level}: {v:?}");
        if *level != "lag" {
            assert_eq!(v.ryw, 0, "{level}: read-your-writes violated: {v:?}");
        }
        if matches!(*level, "monotonic" | "causal") {
            assert_eq!(v.monotonic, 0, "{level}: monotonic reads violated: {v:?}");
        }
        assert!(
            v.replica_reads > 0,
            "{level}: no read reached a replica: {v:?}"
        );
    }
}

/// The share of reads replicas still serve (issue 10: at least 80 % with `causal_wait_ms: 10`)
/// with replicas keeping up, the DEFAULT poll settings, the embedded reader and a sidecar; the
/// same workload under `lag` gives the read time the guarantee adds. No read may miss its
/// session's write. Prints the figures recorded in docs/BENCHMARKS.md.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_keep_serving_reads_under_consistency_levels() {
    let Some(c) = Cluster::private_or_skip("replicas_keep_serving_reads_under_consistency_levels")
    else {
        return;
    };
    let sidecar = start_sidecar(&c, 7900).await;
    // (level, causal_wait_ms); `lag` is the baseline, `0` ms for comparison only.
    let cases = [
        ("lag", 0),
        ("read_your_writes", 10),
        ("read_your_writes", 0),
        ("causal", 10),
    ];
    let mut failures = Vec::new();
    for (s, source) in ["embedded", "sidecar"].into_iter().enumerate() {
        let mut baseline_ms = None;
        for (i, (level, wait)) in cases.into_iter().enumerate() {
            let table = counters(&c, &format!("share_{source}_{level}_{wait}")).await;
            let id = 7910 + (s * cases.len() + i) as u32 * 10;
            let on = (source == "sidecar").then_some(&sidecar);
            let p = Arc::new(start_level(&c, level, wait, id, on).await);
            let (v, took) = run_sessions(&p, &c, &table).await;
            let base = *baseline_ms.get_or_insert(v.mean_read_ms());
            println!(
                "replica share: {source:>8} {level:>16} causal_wait_ms={wait:>2}: {} ops in \
                 {:.1} s, reads on replicas {:.1} % of {}, mean read {:.2} ms ({:+.2} ms against \
                 lag), read-your-writes violations {}",
                v.ops,
                took.as_secs_f64(),
                100.0 * v.replica_share(),
                v.reads,
                v.mean_read_ms(),
                v.mean_read_ms() - base,
                v.ryw
            );
            if level != "lag" && v.ryw > 0 {
                failures.push(format!(
                    "{source} {level}: read-your-writes violated: {v:?}"
                ));
            }
            // The target, for both sources (measured 91-99 % on the shared machine: see
            // docs/BENCHMARKS.md).
            if level != "lag" && wait == 10 && v.replica_share() < 0.8 {
                failures.push(format!(
                    "{source} {level} causal_wait_ms 10: only {:.1} % of reads on replicas",
                    100.0 * v.replica_share()
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn the_checker_finds_what_it_looks_for() {
    let t0 = Instant::now();
    let at = |ms: u64| t0 + Duration::from_millis(ms);
    let op = |session, read, value, ms| Op {
        session,
        read,
        value,
        invoke: at(ms),
        complete: at(ms + 1),
        on_replica: read.is_some(),
    };
    let history = vec![
        op(0, None, 1, 0),
        op(0, Some(0), 0, 10),   // misses its own write: read-your-writes
        op(0, Some(1), 3, 20),   // reads session 1's counter at 3...
        op(0, Some(1), 2, 30),   // ...then at 2: monotonic
        op(0, Some(0), 0, 7000), // misses a write acknowledged 7 s ago: stale too
        op(1, None, 1, 0),
    ];
    // Session 1's counter ended at 1 although it acknowledged 1: fine; session 0 lost nothing.
    let v = check(&history, &[1, 1, 0, 0, 0, 0]);
    assert_eq!((v.ryw, v.monotonic, v.stale, v.lost_writes), (2, 1, 1, 0));
    let v = check(&history, &[0, 1, 0, 0, 0, 0]);
    assert_eq!(v.lost_writes, 1);
}
