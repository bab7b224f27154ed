//! Planned switchover (`POST /admin/switchover`) and automatic failover (`routing.failover:
//! auto`) of issue 11, through the real `rwsplit-proxy` binary in front of private topologies:
//! under load the switchover costs clients latency, never an error, and loses no acknowledged
//! write; a switchover that could not be safe is refused and changes nothing; an automatic
//! failover promotes the most advanced replica, and refuses when that would lose a write.

mod ops_support;

use integration_tests::mysql_async::prelude::Queryable;
use integration_tests::mysql_async::Conn;
use integration_tests::{gtid_covers, Cluster};
use ops_support::{config_with_lag, metric, Json, Ports, ProxyProcess};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const TOKEN: &str = "switch-token";

/// The proxy's config: an admin token, the cluster's superuser for the switchover's
/// statements (the monitor account has no right to change read_only), `routing` additions.
fn yaml(c: &Cluster, ports: Ports, lag_source: &str, routing: &str) -> String {
    let server_id = 7000 + u32::from(c.base_port());
    config_with_lag(
        c,
        ports,
        lag_source,
        &format!("  admin:\n    token: {TOKEN}\n  pool:\n    connect_timeout_ms: 500\n"),
        &format!(
            "switchover_account:\n  user: {}\n  password: {}\nsidecar:\n  server_id: {server_id}\n  poll_interval_ms: 100\n",
            integration_tests::ADMIN_USER,
            integration_tests::ADMIN_PASSWORD
        ),
    )
    .replace("routing:\n", &format!("routing:\n{routing}"))
}

async fn start(c: &Cluster, lag_source: &str, routing: &str) -> ProxyProcess {
    let ports = Ports::free();
    let p = ProxyProcess::start(&yaml(c, ports, lag_source, routing), ports);
    p.wait_healthy(Duration::from_secs(15)).await;
    p.wait_replicas_in_rotation(Duration::from_secs(15)).await;
    p
}

async fn switchover(p: &ProxyProcess, to: &str, token: Option<&str>) -> (u16, Json) {
    let (status, body) = p
        .admin(
            "POST",
            "/admin/switchover",
            token,
            &format!("{{\"to\": \"{to}\"}}"),
        )
        .await;
    let doc = proxy::admin::servers::parse(&body).unwrap_or(Json::Null);
    (status, doc)
}

async fn create_table(p: &ProxyProcess) {
    let mut conn = p.app().await.expect("connects");
    conn.query_drop(
        "CREATE TABLE IF NOT EXISTS sw_t (id INT AUTO_INCREMENT PRIMARY KEY, session INT, n INT)",
    )
    .await
    .expect("create table");
}

/// One operation of the load.
#[derive(Debug, Clone)]
struct Op {
    at: Instant,
    write: bool,
    took: Duration,
    error: Option<String>,
}

/// `sessions` sessions, each 30 % `INSERT` (its own numbered rows) / 70 % `SELECT @@port`, until
/// `stop`. Returns every operation and the acknowledged rows (session, n).
struct Load {
    ops: Arc<Mutex<Vec<Op>>>,
    acked: Arc<Mutex<Vec<(u32, u32)>>>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(p: &ProxyProcess, sessions: u32) -> Load {
        let ops = Arc::new(Mutex::new(Vec::new()));
        let acked = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        for s in 0..sessions {
            let (ops, acked, stop) = (ops.clone(), acked.clone(), stop.clone());
            let opts = ops_support::app_opts(p.ports.listen);
            tasks.push(tokio::spawn(async move {
                let mut conn = Conn::new(opts).await.expect("load session connects");
                let mut rng = u64::from(s) + 1;
                let mut n = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    rng = rng
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    let write = (rng >> 33) % 10 < 3;
                    let at = Instant::now();
                    let result = if write {
                        n += 1;
                        conn.query_drop(format!("INSERT INTO sw_t (session, n) VALUES ({s}, {n})"))
                            .await
                    } else {
                        conn.query_drop("SELECT @@port").await
                    };
                    let took = at.elapsed();
                    if write && result.is_ok() {
                        acked.lock().unwrap().push((s, n));
                    }
                    ops.lock().unwrap().push(Op {
                        at,
                        write,
                        took,
                        error: result.err().map(|e| e.to_string()),
                    });
                }
            }));
        }
        Load {
            ops,
            acked,
            stop,
            tasks,
        }
    }

    async fn finish(self) -> (Vec<Op>, BTreeSet<(u32, u32)>) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await.expect("load session");
        }
        let ops = self.ops.lock().unwrap().clone();
        let acked = self.acked.lock().unwrap().iter().copied().collect();
        (ops, acked)
    }
}

/// The rows of `sw_t` on server `index`, read as the superuser.
async fn rows_on(c: &Cluster, index: usize) -> BTreeSet<(u32, u32)> {
    let mut conn = c.admin(index).await.expect("admin connects");
    conn.query::<(u32, u32), _>("SELECT session, n FROM rwsplit_test.sw_t")
        .await
        .expect("rows")
        .into_iter()
        .collect()
}

/// Waits until every server in `others` applied what server `primary` has logged.
async fn wait_applied(c: &Cluster, primary: usize, others: &[usize]) {
    let mut conn = c.admin(primary).await.expect("admin");
    let want: String = conn
        .query_first("SELECT @@gtid_binlog_pos")
        .await
        .expect("pos")
        .unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(15);
    for &i in others {
        loop {
            let mut r = c.admin(i).await.expect("admin");
            let have: String = r
                .query_first("SELECT @@gtid_slave_pos")
                .await
                .expect("pos")
                .unwrap_or_default();
            if gtid_covers(&have, &want) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "server {i} did not apply {want} (has {have})"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// (Master_Port, Slave_IO_Running, Slave_SQL_Running) of server `index`, if it replicates.
async fn replicates_from(c: &Cluster, index: usize) -> Option<(u16, String, String)> {
    let mut conn = c.admin(index).await.expect("admin");
    let row: Option<integration_tests::mysql_async::Row> =
        conn.query_first("SHOW SLAVE STATUS").await.expect("status");
    row.map(|r| {
        let port: u16 = r.get("Master_Port").unwrap_or(0);
        let io: String = r.get("Slave_IO_Running").unwrap_or_default();
        let sql: String = r.get("Slave_SQL_Running").unwrap_or_default();
        (port, io, sql)
    })
}

async fn read_only(c: &Cluster, index: usize) -> i64 {
    let mut conn = c.admin(index).await.expect("admin");
    conn.query_first("SELECT @@read_only")
        .await
        .expect("read_only")
        .unwrap_or(-1)
}

/// The port a write through the proxy lands on.
async fn write_port(p: &ProxyProcess) -> u16 {
    let mut conn = p.app().await.expect("connects");
    conn.query_drop("INSERT INTO sw_t (session, n) VALUES (999, 0)")
        .await
        .expect("a write through the proxy works");
    conn.query_first("/* rwsplit:primary */ SELECT @@port")
        .await
        .expect("port")
        .unwrap_or(0)
}

/// The load tests run one at a time (2 cores: two at once measure the machine).
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Switchover under load: 0 client errors, every acknowledged write on the new primary and on
/// every replica (the old primary included) afterwards, reads never slower than 100 ms; the
/// old primary is a read-only replica of the new one and is not fenced; a second request
/// while one runs is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn switchover_under_load_loses_nothing_and_errs_nothing() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(c) = Cluster::private_or_skip("switchover_under_load_loses_nothing_and_errs_nothing")
    else {
        return;
    };
    // The embedded binlog reader (the default lag source) must follow the switchover too.
    let p = start(&c, "embedded", "").await;
    create_table(&p).await;
    let load = Load::start(&p, 6);
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let asked = Instant::now();
    let (first, second) = tokio::join!(switchover(&p, "replica1", Some(TOKEN)), async {
        tokio::time::sleep(Duration::from_millis(5)).await;
        switchover(&p, "replica1", Some(TOKEN)).await
    });
    let answered = Instant::now();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (ops, acked) = load.finish().await;
    eprintln!("switchover: {first:?}\nsecond request: {second:?}");
    assert_eq!(
        first.0,
        200,
        "switchover done: {}\n{}",
        first.1,
        p.log_text()
    );
    assert_eq!(first.1["switched"], true);
    assert_eq!(first.1["to"], "replica1");
    let steps: Vec<&str> = first.1["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter_map(|s| s["step"].as_str())
        .collect();
    assert_eq!(
        steps,
        [
            "hold_writes",
            "demote",
            "catch_up",
            "promote",
            "switch_writer",
            "repoint"
        ]
    );
    assert_eq!(second.0, 409, "one switchover at a time: {}", second.1);

    // Clients saw latency, not errors.
    let errors: Vec<&Op> = ops.iter().filter(|o| o.error.is_some()).collect();
    assert!(
        errors.is_empty(),
        "client errors: {:?}",
        &errors[..errors.len().min(5)]
    );
    let during = |o: &&Op| o.at + o.took >= asked && o.at <= answered;
    // Reads that overlapped the switchover: none paused.
    let max_read = ops
        .iter()
        .filter(|o| !o.write)
        .filter(during)
        .map(|o| o.took)
        .max()
        .unwrap_or_default();
    let max_write = ops
        .iter()
        .filter(|o| o.write)
        .map(|o| o.took)
        .max()
        .unwrap_or_default();
    let reads_during = ops.iter().filter(|o| !o.write).filter(during).count();
    eprintln!(
        "{} operations, {} writes acknowledged; {reads_during} reads during the switchover; \
         slowest read during it {max_read:?}, slowest write {max_write:?}",
        ops.len(),
        acked.len()
    );
    assert!(
        max_read <= Duration::from_millis(100),
        "a read took {max_read:?}"
    );
    assert!(reads_during > 0, "reads went on during the switchover");
    assert!(
        ops.iter().any(|o| o.write && o.at > answered),
        "writes went on after it"
    );

    // Writes land on replica1; the old primary is a read-only replica of it, not fenced.
    assert_eq!(write_port(&p).await, c.port(1));
    assert_eq!(read_only(&c, 1).await, 0);
    assert_eq!(read_only(&c, 0).await, 1);
    for i in [0, 2] {
        let r = replicates_from(&c, i).await.expect("replicates");
        assert_eq!(r, (c.port(1), "Yes".into(), "Yes".into()), "server {i}");
    }
    assert!(
        replicates_from(&c, 1).await.is_none(),
        "the new primary replicates from no one"
    );
    p.wait_servers(
        Duration::from_secs(5),
        "the monitor sees replica1 as the primary",
        |d| {
            d["primary"] == "replica1"
                && d["servers"]
                    .as_array()
                    .is_some_and(|s| s.iter().all(|s| s["role"] != "unknown"))
        },
    )
    .await;
    let (_, metrics) = p.get("/metrics").await;
    assert_eq!(
        metric(
            &metrics,
            "rwsplit_switchovers_total{kind=\"switchover\",result=\"ok\"}"
        ),
        1.0
    );
    assert_eq!(
        metric(&metrics, "rwsplit_writer_fenced{backend=\"primary\"}"),
        0.0
    );

    // Every acknowledged write is on the new primary and every replica.
    wait_applied(&c, 1, &[0, 2]).await;
    for i in [1, 0, 2] {
        let rows: BTreeSet<(u32, u32)> = rows_on(&c, i)
            .await
            .into_iter()
            .filter(|r| r.0 != 999)
            .collect();
        assert!(
            acked.is_subset(&rows),
            "server {i} lacks {} acknowledged writes",
            acked.difference(&rows).count()
        );
    }
    // The old primary, now a replica, serves reads again.
    p.wait_servers(
        Duration::from_secs(10),
        "the old primary back in rotation",
        |d| {
            d["servers"].as_array().is_some_and(|s| {
                s.iter()
                    .any(|s| s["name"] == "primary" && s["in_rotation"] == true)
            })
        },
    )
    .await;
}

/// What a refused switchover must leave as it was: the primary writable and the writer,
/// replica1 and replica2 replicating from it.
async fn assert_unchanged(c: &Cluster, p: &ProxyProcess, what: &str) {
    assert_eq!(read_only(c, 0).await, 0, "{what}: primary still writable");
    assert_eq!(
        write_port(p).await,
        c.port(0),
        "{what}: writes still go to the primary"
    );
    for i in [1, 2] {
        let r = replicates_from(c, i).await.expect("replicates");
        assert_eq!(
            r.0,
            c.port(0),
            "{what}: server {i} still replicates from the primary"
        );
        assert_eq!(
            read_only(c, i).await,
            1,
            "{what}: server {i} still read-only"
        );
    }
    assert_eq!(p.servers().await["primary"], "primary", "{what}");
}

/// Refusals change nothing: a wrong or missing token (401), an unknown server, the primary
/// itself, and a replica whose SQL thread is stopped after some writes (409).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsafe_or_unauthorised_switchovers_are_refused_and_change_nothing() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(c) = Cluster::private_or_skip(
        "unsafe_or_unauthorised_switchovers_are_refused_and_change_nothing",
    ) else {
        return;
    };
    let p = start(&c, "seconds_behind_master", "").await;
    create_table(&p).await;

    for token in [Some("wrong"), None] {
        let (status, _) = switchover(&p, "replica1", token).await;
        assert_eq!(status, 401, "token {token:?}");
    }
    assert_unchanged(&c, &p, "after 401").await;

    for (to, reason) in [("nosuch", "unknown_server"), ("primary", "already_primary")] {
        let (status, doc) = switchover(&p, to, Some(TOKEN)).await;
        assert_eq!(
            (status, doc["refused"].as_str()),
            (409, Some(reason)),
            "{doc}"
        );
    }

    // replica2 stops applying; more writes arrive that it has not applied.
    c.stop_sql_thread(2).await.expect("stop SQL thread");
    let mut conn = p.app().await.expect("connects");
    for n in 0..20 {
        conn.query_drop(format!("INSERT INTO sw_t (session, n) VALUES (7, {n})"))
            .await
            .expect("write");
    }
    let (status, doc) = switchover(&p, "replica2", Some(TOKEN)).await;
    assert_eq!(status, 409, "{doc}");
    assert_eq!(doc["switched"], false);
    assert_eq!(doc["refused"], "not_replicating", "{doc}");
    assert!(
        doc["error"]
            .as_str()
            .is_some_and(|e| e.contains("replica2")),
        "the reason names the server: {doc}"
    );
    // Nothing changed: the primary is writable and the writer, replication as before (replica2
    // still has its SQL thread stopped, as the operator left it).
    assert_unchanged(&c, &p, "after a refused switchover to a lagging replica").await;
    let r2 = replicates_from(&c, 2).await.expect("replicates");
    assert_eq!((r2.1.as_str(), r2.2.as_str()), ("Yes", "No"));
    let (_, metrics) = p.get("/metrics").await;
    assert_eq!(
        metric(
            &metrics,
            "rwsplit_switchovers_total{kind=\"switchover\",result=\"refused\"}"
        ),
        3.0
    );
    assert!(p.log_text().contains("switchover refused"), "logged");
    c.start_sql_thread(2).await.expect("start SQL thread");
}

/// A switchover whose target cannot catch up within `routing.switchover_write_wait_ms` (a
/// delayed replica) is undone: 500 with `rolled_back`, the primary writable and the writer
/// again, replication as before; a write held meanwhile goes to the primary, no error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_switchover_that_cannot_finish_in_time_is_undone() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(c) = Cluster::private_or_skip("a_switchover_that_cannot_finish_in_time_is_undone")
    else {
        return;
    };
    let p = start(
        &c,
        "seconds_behind_master",
        "  switchover_write_wait_ms: 1000\n  switchover_max_lag_ms: 60000\n",
    )
    .await;
    create_table(&p).await;
    c.set_replica_delay(2, 5).await.expect("delay replica2");
    p.wait_servers(Duration::from_secs(10), "replica2 replicating again", |d| {
        d["servers"].as_array().is_some_and(|s| {
            s.iter()
                .any(|s| s["name"] == "replica2" && s["replication_running"] == true)
        })
    })
    .await;
    let mut conn = p.app().await.expect("connects");
    conn.query_drop("INSERT INTO sw_t (session, n) VALUES (3, 1)")
        .await
        .expect("write");
    let held = {
        let opts = ops_support::app_opts(p.ports.listen);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let mut conn = Conn::new(opts).await.expect("connects");
            let at = Instant::now();
            let r = conn
                .query_drop("INSERT INTO sw_t (session, n) VALUES (3, 2)")
                .await;
            (r.map_err(|e| e.to_string()), at.elapsed())
        })
    };
    let (status, doc) = switchover(&p, "replica2", Some(TOKEN)).await;
    let (write, took) = held.await.expect("writer");
    eprintln!("{status} {doc}\nheld write: {write:?} after {took:?}");
    assert_eq!(status, 500, "{doc}");
    assert_eq!(doc["failed_step"], "catch_up");
    assert_eq!(doc["rolled_back"], true);
    assert_eq!(
        write,
        Ok(()),
        "the held write went to the primary after the undo"
    );
    assert_unchanged(&c, &p, "after an undone switchover").await;
    let (_, metrics) = p.get("/metrics").await;
    assert_eq!(
        metric(
            &metrics,
            "rwsplit_switchovers_total{kind=\"switchover\",result=\"rolled_back\"}"
        ),
        1.0
    );
    c.set_replica_delay(2, 0).await.expect("no delay");
}

/// `routing.failover: auto`: the primary killed under a write load; within failover_after_ms
/// plus a bound, writes work again on a former replica, which holds every acknowledged write;
/// the other replica follows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn auto_failover_promotes_the_most_advanced_replica() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(c) = Cluster::private_or_skip("auto_failover_promotes_the_most_advanced_replica")
    else {
        return;
    };
    const AFTER_MS: u64 = 1000;
    let p = start(
        &c,
        "embedded",
        &format!("  failover: auto\n  failover_after_ms: {AFTER_MS}\n"),
    )
    .await;
    create_table(&p).await;
    let load = Load::start(&p, 4);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(p.servers().await["primary"], "primary", "{}", p.log_text());
    let killed = Instant::now();
    c.kill_server(0).expect("kill the primary");
    eprintln!("the primary exited {:?} after SIGKILL", killed.elapsed());
    let took = p
        .wait_servers(Duration::from_secs(10), "a replica promoted", |d| {
            d["primary"] == "replica1" || d["primary"] == "replica2"
        })
        .await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let (ops, acked) = load.finish().await;
    let servers = p.servers().await;
    let new = if servers["primary"] == "replica1" {
        1
    } else {
        2
    };
    let other = 3 - new;
    // Writes fail once the primary is gone ("no writable primary"), then work again.
    let first_err = ops
        .iter()
        .filter(|o| o.write && o.error.is_some() && o.at > killed)
        .map(|o| o.at)
        .min()
        .expect("writes failed while the primary was down");
    let first_ok = ops
        .iter()
        .filter(|o| o.write && o.error.is_none() && o.at > first_err)
        .map(|o| (o.at + o.took).duration_since(killed))
        .min()
        .expect("writes work again");
    eprintln!(
        "promoted replica{new} (seen {took:?} after the kill); first write {first_ok:?} after it"
    );
    assert!(
        first_ok <= Duration::from_millis(AFTER_MS) + Duration::from_secs(3),
        "writes resumed {first_ok:?} after the kill"
    );
    assert_eq!(write_port(&p).await, c.port(new));
    let (_, metrics) = p.get("/metrics").await;
    assert_eq!(
        metric(
            &metrics,
            "rwsplit_switchovers_total{kind=\"failover\",result=\"ok\"}"
        ),
        1.0
    );
    let r = replicates_from(&c, other).await.expect("replicates");
    assert_eq!(
        r.0,
        c.port(new),
        "the other replica follows the new primary"
    );
    wait_applied(&c, new, &[other]).await;
    for i in [new, other] {
        let rows = rows_on(&c, i).await;
        assert!(
            acked.is_subset(&rows),
            "server {i} lacks {} acknowledged writes",
            acked.difference(&rows).count()
        );
    }
}

/// `routing.failover: auto` refuses when the replicas lack a write the binlog reader saw the
/// primary commit: replication stopped on both, a write acknowledged, the primary killed.
/// Writes keep failing with the primary-down error; the refusal is counted and logged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_failover_refuses_to_lose_an_acknowledged_write() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(c) = Cluster::private_or_skip("auto_failover_refuses_to_lose_an_acknowledged_write")
    else {
        return;
    };
    let p = start(
        &c,
        "embedded",
        "  failover: auto\n  failover_after_ms: 500\n",
    )
    .await;
    create_table(&p).await;
    for i in [1, 2] {
        c.admin_exec(i, "STOP SLAVE IO_THREAD")
            .await
            .expect("stop IO thread");
    }
    let mut conn = p.app().await.expect("connects");
    conn.query_drop("INSERT INTO sw_t (session, n) VALUES (1, 1)")
        .await
        .expect("acknowledged write");
    // The binlog reader has seen it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    c.kill_server(0).expect("kill the primary");
    tokio::time::sleep(Duration::from_millis(3000)).await;
    let err = conn
        .query_drop("INSERT INTO sw_t (session, n) VALUES (1, 2)")
        .await
        .expect_err("no writer");
    assert!(err.to_string().contains("no writable primary"), "{err}");
    let servers = p.servers().await;
    assert_ne!(servers["primary"], "replica1");
    assert_ne!(servers["primary"], "replica2");
    for i in [1, 2] {
        assert_eq!(read_only(&c, i).await, 1, "replica{i} not promoted");
    }
    let (_, metrics) = p.get("/metrics").await;
    assert!(
        metric(
            &metrics,
            "rwsplit_switchovers_total{kind=\"failover\",result=\"refused\"}"
        ) >= 1.0,
        "refusal counted"
    );
    assert!(
        p.log_text().contains("would_lose_writes"),
        "{}",
        p.log_text()
    );
}
