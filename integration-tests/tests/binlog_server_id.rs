//! Two binlog readers for one database cluster (high availability): each must present its own
//! replication server id, as a primary serves one binlog dump per id (MariaDB refuses a second
//! reader with the same id, error 4052; MySQL ends the first one's dump). One shared
//! configuration file serves both with a per-instance override: `--server-id` /
//! `RWSPLIT_BINLOG_SERVER_ID` (replaces `sidecar.server_id`) and `--server-id-offset` /
//! `RWSPLIT_BINLOG_SERVER_ID_OFFSET` (adds to it: a StatefulSet's ordinal). Against the real
//! primary: with one id the readers cannot both stream; with distinct overrides both stream at
//! once and both see a write.

use integration_tests::{binary, free_port, gtid_covers, Cluster};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `rwsplit-binlog-reader`, killed when the test ends however it ends.
struct Reader {
    child: Child,
    http: u16,
    log: PathBuf,
}

impl Reader {
    /// Starts the reader on `config` (whose `sidecar.http_listen` is port `http`), with extra
    /// arguments and environment.
    fn start(config: &Path, http: u16, args: &[&str], env: &[(&str, &str)]) -> Reader {
        let log = config.with_extension(format!("{http}.log"));
        let mut cmd = Command::new(binary("rwsplit-binlog-reader").expect("sidecar binary built"));
        cmd.arg("--config")
            .arg(config)
            .args(args)
            .env_remove("RWSPLIT_BINLOG_SERVER_ID")
            .env_remove("RWSPLIT_BINLOG_SERVER_ID_OFFSET")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("reader log"));
        Reader {
            child: cmd.spawn().expect("reader starts"),
            http,
            log,
        }
    }

    fn get(&self, path: &str) -> (u16, String) {
        http_get(self.http, path).unwrap_or((0, String::new()))
    }

    fn reconnects(&self) -> f64 {
        let (_, metrics) = self.get("/metrics");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix("rwsplit_binlog_stream_reconnects_total "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(f64::NAN)
    }

    /// The last GTID the reader has read from the primary (`/lag` `primary.gtid`).
    fn gtid(&self) -> String {
        let (_, lag) = self.get("/lag");
        let Some(rest) = lag.split("\"gtid\":\"").nth(1) else {
            return String::new();
        };
        rest.split('"').next().unwrap_or("").to_string()
    }

    fn assert_streaming(&self) {
        let (status, body) = self.get("/healthz");
        assert_eq!(
            status,
            200,
            "reader on :{}: {body}\n{}",
            self.http,
            self.log_text()
        );
    }

    /// SIGHUP: the reader re-reads its file and restarts its stream.
    fn hangup(&self) {
        let ok = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill -HUP {}", self.child.id());
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn wait_streaming(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let (status, body) = self.get("/healthz");
            if status == 200 && body.starts_with("ok: streaming from primary") {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "reader on :{} not streaming: {status} {body}\n{}",
                self.http,
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let status = out.split_whitespace().nth(1)?.parse().ok()?;
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((status, body))
}

/// A scratch folder of this test process, one per test (tests run in parallel).
fn scratch(test: &str) -> PathBuf {
    let dir = integration_tests::repo_root().join(format!(
        ".scratch/binlog-server-id-{}-{test}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// The cluster's configuration with `sidecar.server_id: server_id` and the reader's HTTP on
/// `http`: readers on one host differ only in that port.
fn write_config(cluster: &Cluster, name: &str, http: u16, server_id: u32) -> PathBuf {
    let yaml = cluster.config_yaml(free_port(), free_port(), http).replace(
        &format!("server_id: {}", 4000 + u32::from(cluster.base_port())),
        &format!("server_id: {server_id}"),
    );
    assert!(
        yaml.contains(&format!("server_id: {server_id}\n")),
        "{yaml}"
    );
    let path = scratch(name.split('-').next().unwrap_or("x")).join(name);
    std::fs::write(&path, yaml).expect("write config");
    path
}

/// Control: two readers presenting one server id do not both keep a stream: the primary
/// refuses the second one's dump, which keeps failing and retrying.
/// This is what the override exists for, and what makes the next test able to fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_readers_with_one_server_id_take_the_binlog_dump_from_each_other() {
    let Some(cluster) = Cluster::shared_or_skip("two_readers_with_one_server_id") else {
        return;
    };
    let id = 6100 + u32::from(cluster.base_port());
    let (ha, hb) = (free_port(), free_port());
    let a = Reader::start(&write_config(&cluster, "same-a.yaml", ha, id), ha, &[], &[]);
    a.wait_streaming(Duration::from_secs(15));
    let b = Reader::start(&write_config(&cluster, "same-b.yaml", hb, id), hb, &[], &[]);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let lost = a.reconnects() + b.reconnects();
        if lost >= 2.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "two readers with server id {id} both kept their stream (reconnects {lost}):\n{}\n{}",
            a.log_text(),
            b.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Two readers with the same file and distinct overrides (one by flag, one by environment,
/// the latter with an offset as a StatefulSet pod gives it) stream from the primary at once:
/// both healthy, neither loses its stream, both read a new write; and again after a SIGHUP
/// reload, which must keep the overrides.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_readers_with_distinct_server_id_overrides_both_stream() {
    let Some(cluster) = Cluster::shared_or_skip("two_readers_with_distinct_server_ids") else {
        return;
    };
    let id = 6200 + u32::from(cluster.base_port());
    let (ha, hb) = (free_port(), free_port());
    let flag = (id + 1).to_string();
    let a = Reader::start(
        &write_config(&cluster, "distinct-a.yaml", ha, id),
        ha,
        &["--server-id", &flag],
        &[],
    );
    let env = id.to_string();
    let b = Reader::start(
        &write_config(&cluster, "distinct-b.yaml", hb, id),
        hb,
        &[],
        &[
            ("RWSPLIT_BINLOG_SERVER_ID", &env),
            ("RWSPLIT_BINLOG_SERVER_ID_OFFSET", "2"),
        ],
    );
    a.wait_streaming(Duration::from_secs(15));
    b.wait_streaming(Duration::from_secs(15));
    // The ids the readers present, as each logs them at start.
    assert!(
        a.log_text().contains(&format!("server_id={}", id + 1)),
        "{}",
        a.log_text()
    );
    assert!(
        b.log_text().contains(&format!("server_id={}", id + 2)),
        "{}",
        b.log_text()
    );

    cluster
        .admin_exec(
            0,
            "CREATE TABLE IF NOT EXISTS rwsplit_test.binlog_server_id (id INT PRIMARY KEY)",
        )
        .await
        .expect("create table");
    write_and_wait_seen(&cluster, &[&a, &b], 1).await;
    // And they keep streaming side by side: the control test loses a stream well within this.
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        for r in [&a, &b] {
            r.assert_streaming();
            assert_eq!(
                r.reconnects(),
                0.0,
                "reader on :{}\n{}",
                r.http,
                r.log_text()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A reload (SIGHUP) restarts each reader from the file: the overrides still apply, or
    // both would present the file's id and one would be refused.
    for r in [&a, &b] {
        r.hangup();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    for r in [&a, &b] {
        while !r.log_text().contains("configuration reloaded") {
            assert!(Instant::now() < deadline, "no reload:\n{}", r.log_text());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    write_and_wait_seen(&cluster, &[&a, &b], 2).await;
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        for r in [&a, &b] {
            r.assert_streaming();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for r in [&a, &b] {
        assert!(
            !r.log_text().contains("same server_uuid/server_id"),
            "{}",
            r.log_text()
        );
    }
}

/// Writes on the primary and waits until every reader has read it.
async fn write_and_wait_seen(cluster: &Cluster, readers: &[&Reader], n: u32) {
    cluster
        .admin_exec(
            0,
            &format!("REPLACE INTO rwsplit_test.binlog_server_id VALUES ({n})"),
        )
        .await
        .expect("write on the primary");
    let want = cluster.gtid_position(0).await.expect("primary position");
    let deadline = Instant::now() + Duration::from_secs(10);
    for r in readers {
        loop {
            let have = r.gtid();
            if gtid_covers(&have, &want) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "reader on :{} read {have:?}, the primary wrote {want}\n{}",
                r.http,
                r.log_text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A bad override stops the reader at start (exit 2) with a message naming the flag or the
/// variable and the range; a good one passes `--check-config`. No servers needed.
#[test]
fn a_bad_server_id_override_is_refused_at_start() {
    let dir = scratch("check");
    let path = dir.join("check.yaml");
    let yaml = |server_id: u32| {
        format!(
            "servers:\n  - {{name: primary, host: 127.0.0.1, port: {}, role: primary}}\n\
             monitor:\n  user: rwsplit_monitor\n  password: monitor-password\n\
             sidecar:\n  server_id: {server_id}\n",
            free_port()
        )
    };
    std::fs::write(&path, yaml(4242)).expect("write config");
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let out = Command::new(binary("rwsplit-binlog-reader").expect("sidecar binary built"))
            .arg("--config")
            .arg(&path)
            .arg("--check-config")
            .args(args)
            .env_remove("RWSPLIT_BINLOG_SERVER_ID")
            .env_remove("RWSPLIT_BINLOG_SERVER_ID_OFFSET")
            .envs(env.iter().copied())
            .output()
            .expect("reader runs");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    for (args, env, says) in [
        (
            &["--server-id", "0"][..],
            &[][..],
            "0 is not a replication server id",
        ),
        (&["--server-id", "x"][..], &[][..], "not a number"),
        (
            &[][..],
            &[("RWSPLIT_BINLOG_SERVER_ID", "4294967296")][..],
            "over 4294967295",
        ),
        (
            &[][..],
            &[("RWSPLIT_BINLOG_SERVER_ID_OFFSET", "-1")][..],
            "not a whole number",
        ),
        (
            &["--server-id", "4294967295", "--server-id-offset", "1"][..],
            &[][..],
            "server id 4294967295 (--server-id / RWSPLIT_BINLOG_SERVER_ID) + 1",
        ),
    ] {
        let (code, _, err) = run(args, env);
        assert_eq!(code, Some(2), "{args:?} {env:?}: {err}");
        assert!(err.contains(says), "{args:?} {env:?}: {err}");
        assert!(err.contains("--server-id"), "names the flag: {err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    }

    let (code, out, err) = run(&["--server-id", "4243"], &[]);
    assert_eq!((code, out.trim()), (Some(0), "config OK"), "{err}");
    let (code, out, err) = run(&[], &[("RWSPLIT_BINLOG_SERVER_ID_OFFSET", "1")]);
    assert_eq!((code, out.trim()), (Some(0), "config OK"), "{err}");

    // The file's own id is checked too once an offset could push it past the range.
    std::fs::write(&path, yaml(u32::MAX)).expect("write config");
    let (code, _, err) = run(&["--server-id-offset", "1"], &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("check.yaml") && err.contains("(sidecar.server_id) + 1"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(dir);
}
