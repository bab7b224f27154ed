//! The binlog reader sidecar against a real MariaDB primary and replicas: the commit timeline,
//! millisecond lag while a replica's SQL thread is stopped, MASTER_DELAY, an idle primary, a
//! replica that is down, and resuming after the stream is killed and the primary restarts.
//!
//! Each test runs `rwsplit-binlog-reader` on a private topology and reads its `/lag`,
//! `/metrics` and `/transactions` endpoints. The tests are timing-sensitive, so they run one at
//! a time (a process-wide lock) to keep the two cores of a CI machine for the servers.

use integration_tests::mysql_async::prelude::Queryable;
use integration_tests::{binary, free_port, mysql_async, Cluster};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The sidecar process, killed on drop.
struct Sidecar {
    child: Child,
    port: u16,
    log: std::path::PathBuf,
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            eprintln!("--- sidecar log ---\n{log}--- end of sidecar log ---");
        }
    }
}

impl Sidecar {
    async fn start(cluster: &Cluster) -> Sidecar {
        let port = free_port();
        let yaml = cluster.config_yaml(free_port(), free_port(), port);
        let path = cluster.dir().join("binlog-reader.yaml");
        std::fs::write(&path, yaml).expect("write config");
        let log_path = cluster.dir().join("binlog-reader.log");
        let log = std::fs::File::create(&log_path).expect("log file");
        let bin = binary("rwsplit-binlog-reader").expect("sidecar binary built");
        let child = Command::new(bin)
            .arg("--config")
            .arg(&path)
            .env("RUST_LOG", "info")
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("sidecar starts");
        let s = Sidecar {
            child,
            port,
            log: log_path,
        };
        // Known lag for every replica means: stream caught up and every replica polled.
        s.wait_for("every replica known", Duration::from_secs(15), |s| {
            s.replicas.iter().all(|r| r.known)
        })
        .await;
        s
    }

    async fn get(&self, path: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut stream = loop {
            match tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await {
                Ok(s) => break s,
                Err(e) if Instant::now() < deadline => {
                    tracing::debug!(error = %e, "sidecar not listening yet");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("sidecar does not listen on {}: {e}", self.port),
            }
        };
        stream
            .write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
            .await
            .expect("send");
        let mut buf = String::new();
        stream.read_to_string(&mut buf).await.expect("read");
        let (head, body) = buf.split_once("\r\n\r\n").unwrap_or((&buf, ""));
        assert!(head.starts_with("HTTP/1."), "{head}");
        body.to_string()
    }

    async fn lag(&self) -> Lag {
        Lag::parse(&self.get("/lag").await)
    }

    async fn transactions(&self) -> Vec<(String, String)> {
        self.get("/transactions")
            .await
            .lines()
            .filter_map(|l| {
                let mut f = l.split(' ');
                Some((f.next()?.to_string(), f.nth(2)?.to_string()))
            })
            .collect()
    }

    async fn wait_for(&self, what: &str, limit: Duration, ok: impl Fn(&Lag) -> bool) -> Lag {
        let deadline = Instant::now() + limit;
        loop {
            let lag = self.lag().await;
            if ok(&lag) {
                return lag;
            }
            assert!(
                Instant::now() < deadline,
                "waited {limit:?} for {what}; last /lag: {}",
                lag.raw
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The fields of `/lag` the tests read (parsed by hand: the tests crate has no JSON library).
#[derive(Debug)]
struct Lag {
    raw: String,
    replicas: Vec<ReplicaLag>,
}

#[derive(Debug)]
struct ReplicaLag {
    name: String,
    lag_ms: Option<u64>,
    io_lag_ms: Option<u64>,
    known: bool,
}

impl Lag {
    fn parse(raw: &str) -> Lag {
        let mut replicas = Vec::new();
        let section = raw.split("\"replicas\":{").nth(1).unwrap_or("");
        for part in section.split("},\"").map(|p| p.trim_start_matches('"')) {
            let Some((name, rest)) = part.split_once("\":{") else {
                continue;
            };
            // A nested object inside a replica (`applied_seq`, `received_seq`) also ends in
            // `},"`: what follows it is not a replica's name.
            if name.contains('"') {
                continue;
            }
            let field = |key: &str| {
                rest.split(&format!("\"{key}\":"))
                    .nth(1)
                    .map(|v| v.split([',', '}']).next().unwrap_or("").to_string())
            };
            replicas.push(ReplicaLag {
                name: name.to_string(),
                lag_ms: field("lag_ms").and_then(|v| v.parse().ok()),
                io_lag_ms: field("io_lag_ms").and_then(|v| v.parse().ok()),
                known: field("known").as_deref() == Some("true"),
            });
        }
        Lag {
            raw: raw.to_string(),
            replicas,
        }
    }

    fn replica(&self, name: &str) -> &ReplicaLag {
        self.replicas
            .iter()
            .find(|r| r.name == name)
            .unwrap_or_else(|| panic!("{name} missing from /lag: {}", self.raw))
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Commits recorded by the writer: (MariaDB GTID sequence number, commit time in ms).
type Commits = Arc<Mutex<Vec<(u64, u64)>>>;

/// Inserts a row every `every` on the primary until the returned flag is cleared, recording
/// each commit's GTID and the time its COMMIT returned.
async fn writer(
    cluster: &Cluster,
    every: Duration,
) -> (
    Commits,
    Arc<std::sync::atomic::AtomicBool>,
    tokio::task::JoinHandle<()>,
) {
    let mut conn = mysql_async::Conn::from_url(cluster.app_url(0))
        .await
        .expect("app connects to the primary");
    conn.query_drop(
        "CREATE TABLE IF NOT EXISTS binlog_lag_w (id INT AUTO_INCREMENT PRIMARY KEY, at BIGINT)",
    )
    .await
    .expect("create table");
    let commits: Commits = Arc::default();
    let run = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let (c, r) = (commits.clone(), run.clone());
    let task = tokio::spawn(async move {
        while r.load(std::sync::atomic::Ordering::SeqCst) {
            let before = now_ms();
            conn.exec_drop("INSERT INTO binlog_lag_w (at) VALUES (?)", (before,))
                .await
                .expect("insert");
            let after = now_ms();
            let gtid: Option<String> = conn.query_first("SELECT @@last_gtid").await.expect("gtid");
            let seq = gtid
                .and_then(|g| g.rsplit('-').next().and_then(|s| s.parse().ok()))
                .expect("a GTID per write");
            c.lock().unwrap().push((seq, (before + after) / 2));
            tokio::time::sleep(every).await;
        }
    });
    (commits, run, task)
}

async fn stop_writer(run: Arc<std::sync::atomic::AtomicBool>, task: tokio::task::JoinHandle<()>) {
    run.store(false, std::sync::atomic::Ordering::SeqCst);
    task.await.expect("writer ran cleanly");
}

async fn applied_seq(cluster: &Cluster, index: usize) -> u64 {
    let pos = cluster.gtid_position(index).await.expect("position");
    pos.split(',')
        .find(|g| g.starts_with("0-"))
        .and_then(|g| g.rsplit('-').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binlog_timeline_in_order_and_idle_primary_reads_zero() {
    let _serial = SERIAL.lock().await;
    let Some(cluster) =
        Cluster::private_or_skip("binlog_timeline_in_order_and_idle_primary_reads_zero")
    else {
        return;
    };
    let sidecar = Sidecar::start(&cluster).await;
    let (commits, run, task) = writer(&cluster, Duration::from_millis(10)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop_writer(run, task).await;
    let written: Vec<u64> = commits.lock().unwrap().iter().map(|c| c.0).collect();
    assert!(written.len() >= 10, "{written:?}");
    cluster
        .wait_replicas_caught_up(Duration::from_secs(10))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let seen = sidecar.transactions().await;
    let seqs: Vec<u64> = seen
        .iter()
        .map(|(g, _)| {
            assert!(g.starts_with("0-1-"), "MariaDB GTID expected, got {g}");
            g.rsplit('-').next().unwrap().parse().unwrap()
        })
        .collect();
    for w in &written {
        assert!(
            seqs.contains(w),
            "write 0-1-{w} missing from the timeline {seqs:?}"
        );
    }
    assert!(
        seqs.windows(2).all(|p| p[1] == p[0] + 1),
        "in order, no gaps, no repeats: {seqs:?}"
    );
    assert!(
        seen.iter().all(|(_, live)| live == "live"),
        "streamed live: {seen:?}"
    );

    // Idle primary: every replica has applied everything, so lag is exactly 0 (and stays 0
    // across several heartbeats, where Seconds_Behind_Master may not).
    for _ in 0..10 {
        let lag = sidecar.lag().await;
        for r in ["replica1", "replica2"] {
            assert_eq!(lag.replica(r).lag_ms, Some(0), "{}", lag.raw);
            assert!(lag.replica(r).known);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let metrics = sidecar.get("/metrics").await;
    for line in [
        "rwsplit_replica_lag_seconds{replica=\"replica1\"} 0",
        "rwsplit_replica_lag_known{replica=\"replica1\"} 1",
        "rwsplit_binlog_stream_connected 1",
    ] {
        assert!(metrics.contains(line), "{line} not in\n{metrics}");
    }
    assert!(
        metrics.contains("rwsplit_binlog_events_total{type=\"gtid\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("rwsplit_binlog_transactions_total"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binlog_stopped_sql_thread_lag_tracks_wall_time_then_returns_to_zero() {
    let _serial = SERIAL.lock().await;
    let Some(cluster) = Cluster::private_or_skip("binlog_stopped_sql_thread") else {
        return;
    };
    let sidecar = Sidecar::start(&cluster).await;
    let (commits, run, task) = writer(&cluster, Duration::from_millis(50)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    cluster.stop_sql_thread(1).await.unwrap();
    let stuck_at = applied_seq(&cluster, 1).await;
    // Truth: now − commit time of the first write the replica has not applied.
    let first_unapplied = || {
        commits
            .lock()
            .unwrap()
            .iter()
            .find(|(s, _)| *s > stuck_at)
            .map(|(_, at)| *at)
    };
    let started = Instant::now();
    let mut samples = Vec::new();
    while started.elapsed() < Duration::from_secs(3) {
        let lag = sidecar.lag().await;
        let at = now_ms();
        if let Some(c) = first_unapplied() {
            let truth = at.saturating_sub(c);
            let reported = lag.replica("replica1").lag_ms;
            samples.push((truth, reported));
            // The IO thread keeps receiving: what it lacks is only what is in flight (its
            // position is read every 500 ms).
            let io = lag.replica("replica1").io_lag_ms;
            assert!(
                io.is_some_and(|l| l < 600),
                "IO lag stays small: {}",
                lag.raw
            );
        }
        assert!(
            lag.replica("replica2").known,
            "the healthy replica stays known: {}",
            lag.raw
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Skip the first poll interval after the first unapplied write (the reader cannot know
    // sooner than its next poll); after that every sample is within 50 ms of the truth.
    let judged: Vec<_> = samples.iter().filter(|(t, _)| *t > 250).collect();
    assert!(judged.len() >= 20, "{samples:?}");
    for (truth, reported) in &judged {
        let r = reported
            .unwrap_or_else(|| panic!("lag unknown while the replica is readable: {samples:?}"));
        assert!(
            r.abs_diff(*truth) <= 50,
            "reported {r} ms, truth {truth} ms; all samples {samples:?}"
        );
    }
    let worst = judged
        .iter()
        .map(|(t, r)| r.unwrap_or(0).abs_diff(*t))
        .max()
        .unwrap_or(0);
    eprintln!(
        "stopped SQL thread: {} samples, worst |reported - truth| = {worst} ms",
        judged.len()
    );
    let last = judged.last().unwrap().0;
    assert!(last > 2_500, "lag grew with wall time: {samples:?}");

    // Catch up: stop writing, restart the SQL thread; within 250 ms of the replica having
    // applied everything, the reported lag is 0.
    stop_writer(run, task).await;
    let last_written = commits.lock().unwrap().last().unwrap().0;
    cluster.start_sql_thread(1).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while applied_seq(&cluster, 1).await < last_written {
        assert!(Instant::now() < deadline, "replica1 did not catch up");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let caught_up = Instant::now();
    sidecar
        .wait_for("lag back to 0", Duration::from_millis(250), |l| {
            l.replica("replica1").lag_ms == Some(0)
        })
        .await;
    eprintln!(
        "lag back to 0 {:?} after the replica caught up",
        caught_up.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binlog_master_delay_two_seconds_reads_about_two_seconds() {
    let _serial = SERIAL.lock().await;
    let Some(cluster) = Cluster::private_or_skip("binlog_master_delay") else {
        return;
    };
    cluster.set_replica_delay(1, 2).await.unwrap();
    let sidecar = Sidecar::start(&cluster).await;
    let (commits, run, task) = writer(&cluster, Duration::from_millis(50)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut admin = cluster.admin(1).await.unwrap();
    let mut seen = Vec::new();
    for _ in 0..30 {
        let lag = sidecar.lag().await;
        let at = now_ms();
        let pos: String = admin
            .query_first("SELECT @@gtid_slave_pos")
            .await
            .unwrap()
            .unwrap_or_default();
        let sbm: Option<u64> = admin
            .query_first::<mysql_async::Row, _>("SHOW SLAVE STATUS")
            .await
            .unwrap()
            .and_then(|r| {
                r.get_opt::<Option<u64>, _>("Seconds_Behind_Master")
                    .and_then(Result::ok)
                    .flatten()
            });
        let applied: u64 = pos
            .rsplit('-')
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let truth = commits
            .lock()
            .unwrap()
            .iter()
            .find(|(s, _)| *s > applied)
            .map(|(_, c)| at.saturating_sub(*c));
        seen.push((lag.replica("replica1").lag_ms, truth, sbm));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop_writer(run, task).await;
    eprintln!("MASTER_DELAY=2 (reported ms, truth ms, Seconds_Behind_Master): {seen:?}");
    // MariaDB sleeps whole seconds against whole-second event timestamps, so the real delay of
    // a steady stream's oldest unapplied transaction saws over one second between about 1 and
    // 3 s (the phase depends on MariaDB's integer clock difference with the primary). The
    // reader follows the truth; right after the replica applies a batch it may still show the
    // previous poll's (higher) value for up to one poll interval, never a lower one.
    let mut close = 0;
    for (reported, truth, _) in &seen {
        let r = reported.unwrap_or_else(|| panic!("known under MASTER_DELAY: {seen:?}"));
        assert!(
            (1_000..=3_300).contains(&r),
            "lag {r} ms not ≈ 2 s: {seen:?}"
        );
        if let Some(t) = truth {
            assert!(r + 150 >= *t, "reported {r} under the truth {t}: {seen:?}");
            if r.abs_diff(*t) <= 150 {
                close += 1;
            }
        }
    }
    assert!(
        close * 10 >= seen.len() * 8,
        "mostly within 150 ms of the truth: {seen:?}"
    );
    let max = seen.iter().filter_map(|s| s.0).max().unwrap_or(0);
    assert!(max >= 1_900, "the delay reaches ~2 s: {seen:?}");
    let healthy = sidecar.lag().await;
    assert!(
        healthy.replica("replica2").lag_ms.is_some_and(|l| l < 200),
        "{}",
        healthy.raw
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binlog_replica_down_reads_unknown_not_zero() {
    let _serial = SERIAL.lock().await;
    let Some(cluster) = Cluster::private_or_skip("binlog_replica_down") else {
        return;
    };
    let sidecar = Sidecar::start(&cluster).await;
    cluster.stop_server(2).unwrap();
    let lag = sidecar
        .wait_for("replica2 unknown", Duration::from_secs(3), |l| {
            !l.replica("replica2").known
        })
        .await;
    assert_eq!(lag.replica("replica2").lag_ms, None, "{}", lag.raw);
    assert!(lag.replica("replica1").known, "{}", lag.raw);
    let metrics = sidecar.get("/metrics").await;
    assert!(
        metrics.contains("rwsplit_replica_lag_known{replica=\"replica2\"} 0"),
        "{metrics}"
    );
    assert!(
        !metrics.contains("rwsplit_replica_lag_seconds{replica=\"replica2\"}"),
        "an unknown lag is absent, never 0: {metrics}"
    );
    assert!(
        !metrics.contains("rwsplit_replica_poll_errors_total{replica=\"replica2\"} 0"),
        "poll errors counted: {metrics}"
    );
    // A frozen replica (SIGSTOP: connections open, no answers) is unknown too.
    cluster.pause_server(1).unwrap();
    let lag = sidecar
        .wait_for(
            "replica1 unknown while frozen",
            Duration::from_secs(5),
            |l| !l.replica("replica1").known,
        )
        .await;
    assert_eq!(lag.replica("replica1").lag_ms, None);
    cluster.resume_server(1).unwrap();
    cluster.start_servers().unwrap();
    sidecar
        .wait_for("both known again", Duration::from_secs(15), |l| {
            l.replicas.iter().all(|r| r.known)
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binlog_resumes_after_killed_stream_and_primary_restart_without_loss_or_repeat() {
    let _serial = SERIAL.lock().await;
    let Some(cluster) = Cluster::private_or_skip("binlog_resume") else {
        return;
    };
    let sidecar = Sidecar::start(&cluster).await;
    let (commits, run, task) = writer(&cluster, Duration::from_millis(20)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Kill the reader's binlog dump connection on the primary while writes continue.
    let mut admin = cluster.admin(0).await.unwrap();
    let dumps: Vec<u64> = admin
        .query("SELECT ID FROM information_schema.PROCESSLIST WHERE COMMAND LIKE 'Binlog Dump%' AND USER = 'rwsplit_monitor'")
        .await
        .unwrap();
    assert!(!dumps.is_empty(), "the reader's dump thread is visible");
    for id in &dumps {
        // Replicas reconnect on their own; killing theirs too is harmless.
        let _ = admin.query_drop(format!("KILL {id}")).await;
    }
    drop(admin);
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop_writer(run, task).await;
    let mut written: Vec<u64> = commits.lock().unwrap().iter().map(|c| c.0).collect();

    // Restart the primary, then write more.
    cluster.stop_server(0).unwrap();
    // Issue 11: with the primary down, replicas that applied all it sent read 0 (they hold
    // everything there is), and /lag says the primary is down.
    let down = sidecar
        .wait_for(
            "replicas measured against the last transaction while the primary is down",
            Duration::from_secs(5),
            |l| l.raw.contains("\"down_since_ms\":1"),
        )
        .await;
    assert!(
        down.replicas.iter().all(|r| r.lag_ms == Some(0)),
        "{}",
        down.raw
    );
    cluster.start_servers().unwrap();
    let (commits, run, task) = writer(&cluster, Duration::from_millis(20)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop_writer(run, task).await;
    written.extend(commits.lock().unwrap().iter().map(|c| c.0));
    cluster
        .wait_replicas_caught_up(Duration::from_secs(10))
        .await
        .unwrap();
    sidecar
        .wait_for(
            "known again after the restart",
            Duration::from_secs(10),
            |l| l.replicas.iter().all(|r| r.lag_ms == Some(0)),
        )
        .await;
    let seqs: Vec<u64> = sidecar
        .transactions()
        .await
        .iter()
        .map(|(g, _)| g.rsplit('-').next().unwrap().parse().unwrap())
        .collect();
    assert!(
        seqs.windows(2).all(|p| p[1] == p[0] + 1),
        "no loss, no repeat: {seqs:?}"
    );
    for w in &written {
        assert!(seqs.contains(w), "write {w} lost: {seqs:?}");
    }
    let metrics = sidecar.get("/metrics").await;
    let reconnects: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("rwsplit_binlog_stream_reconnects_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    assert!(reconnects >= 2, "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binlog_replica_already_behind_at_start_has_a_known_lag() {
    let _serial = SERIAL.lock().await;
    let Some(cluster) = Cluster::private_or_skip("binlog_replica_already_behind") else {
        return;
    };
    cluster.stop_sql_thread(1).await.unwrap();
    let stuck_at = applied_seq(&cluster, 1).await;
    let (commits, run, task) = writer(&cluster, Duration::from_millis(50)).await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    stop_writer(run, task).await;
    let first = commits
        .lock()
        .unwrap()
        .iter()
        .find(|(s, _)| *s > stuck_at)
        .map(|(_, at)| *at)
        .expect("writes after the stop");
    // The reader starts from replica1's position, so it knows the commit times of what
    // replica1 still has to apply (whole seconds: up to 1 s high, never low).
    let sidecar = Sidecar::start(&cluster).await;
    let lag = sidecar.lag().await;
    let truth = now_ms() - first;
    eprintln!("{}", lag.raw);
    let r = lag
        .replica("replica1")
        .lag_ms
        .unwrap_or_else(|| panic!("known: {}", lag.raw));
    assert!(
        r + 50 >= truth && r <= truth + 1_050,
        "reported {r} ms, truth {truth} ms"
    );
    assert_eq!(lag.replica("replica2").lag_ms, Some(0), "{}", lag.raw);
    cluster.start_sql_thread(1).await.unwrap();
    sidecar
        .wait_for("replica1 caught up", Duration::from_secs(5), |l| {
            l.replica("replica1").lag_ms == Some(0)
        })
        .await;
}

/// Issue 11: the sidecar follows an external failover. Its stream moves to the new writer and
/// continues from the GTID it reached (no transaction lost or repeated), `/healthz` names the
/// primary it streams from, lag stays known for the replica left; SIGHUP reloads the config.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binlog_sidecar_follows_an_external_failover_and_reloads_on_sighup() {
    let _serial = SERIAL.lock().await;
    let Some(cluster) = Cluster::private_or_skip("binlog_sidecar_follows_failover") else {
        return;
    };
    let sidecar = Sidecar::start(&cluster).await;
    assert_eq!(
        sidecar.get("/healthz").await,
        "ok: streaming from primary\n"
    );
    let (commits, run, task) = writer(&cluster, Duration::from_millis(20)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop_writer(run, task).await;
    let mut written: Vec<u64> = commits.lock().unwrap().iter().map(|c| c.0).collect();

    cluster.promote(0, 2).await.expect("failover by hand");
    // Writes on the new primary (the harness writer writes to server 0: write by hand).
    let mut new_primary = cluster.admin(2).await.unwrap();
    for _ in 0..20 {
        new_primary
            .query_drop("INSERT INTO rwsplit_test.binlog_lag_w (at) VALUES (0)")
            .await
            .unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let health = sidecar.get("/healthz").await;
        if health == "ok: streaming from replica2\n" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the sidecar did not follow: {health}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let after: Vec<u64> = {
        let pos: String = new_primary
            .query_first("SELECT @@gtid_binlog_pos")
            .await
            .unwrap()
            .unwrap_or_default();
        vec![pos.rsplit('-').next().unwrap_or("0").parse().unwrap_or(0)]
    };
    written.extend(after);
    sidecar
        .wait_for(
            "replica1 known after the failover",
            Duration::from_secs(10),
            |l| l.replica("replica1").known,
        )
        .await;
    let txs = sidecar.transactions().await;
    let seqs: Vec<u64> = txs
        .iter()
        .map(|(g, _)| g.rsplit('-').next().unwrap().parse().unwrap())
        .collect();
    assert!(
        seqs.windows(2).all(|p| p[1] == p[0] + 1),
        "no loss, no repeat across the failover: {seqs:?}"
    );
    for w in &written {
        assert!(seqs.contains(w), "transaction {w} missing: {seqs:?}");
    }
    let servers: std::collections::BTreeSet<&str> = txs
        .iter()
        .filter_map(|(g, _)| g.split('-').nth(1))
        .collect();
    assert!(
        servers.len() >= 2,
        "both primaries' transactions: {servers:?}"
    );

    // SIGHUP: the configuration is read again; the sidecar keeps following replica2.
    let status = Command::new("kill")
        .arg("-HUP")
        .arg(sidecar.child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let log = std::fs::read_to_string(&sidecar.log).unwrap_or_default();
        if log.contains("configuration reloaded") {
            break;
        }
        assert!(Instant::now() < deadline, "no reload logged:\n{log}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while sidecar.get("/healthz").await != "ok: streaming from replica2\n" {
        assert!(
            Instant::now() < deadline,
            "not streaming from replica2 after SIGHUP"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
