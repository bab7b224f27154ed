//! Real clients through the proxy: sysbench (`oltp_read_write`, `oltp_point_select`) with zero
//! errors, PyMySQL, mysql-connector-python with server-side prepared statements, Node mysql2.
//! The client libraries come from `integration-tests/clients/install.sh` (run by
//! `make test-deps`); a missing one is a loud skip outside CI and a failure under CI.

mod proxy_support;

use integration_tests::mysql_async::prelude::Queryable;

use proxy_support::{cluster, run_ok, start};
use std::collections::HashSet;
use std::path::PathBuf;

fn clients_dir() -> PathBuf {
    integration_tests::repo_root().join("integration-tests/clients")
}

fn required() -> bool {
    std::env::var_os("CI").is_some() || std::env::var_os("RWSPLIT_REQUIRE_CLUSTER").is_some()
}

/// Runs `install.sh` once (idempotent) and reports whether it worked.
fn ensure_clients() -> bool {
    static DONE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *DONE.get_or_init(|| {
        let ok = std::process::Command::new("bash")
            .arg(clients_dir().join("install.sh"))
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !ok {
            assert!(!required(), "integration-tests/clients/install.sh failed");
            eprintln!("!!!!!!!! SKIPPED: client libraries could not be installed");
        }
        ok
    })
}

/// Checks a client script's JSON verdict: reads on replicas only, the write on the primary.
fn check_verdict(out: &str, c: &integration_tests::Cluster, client: &str) {
    let line = out.lines().last().unwrap_or_default();
    let reads: HashSet<u16> = line
        .split("\"reads\":")
        .nth(1)
        .and_then(|s| s.split(']').next())
        .map(|s| {
            s.trim_start_matches([' ', '['])
                .split(',')
                .filter_map(|x| x.trim().parse().ok())
                .collect()
        })
        .unwrap_or_default();
    let replicas: HashSet<u16> = c.replica_ports().into_iter().collect();
    assert_eq!(
        reads, replicas,
        "{client}: reads spread over both replicas: {line}"
    );
    let primary = c.primary_port().to_string();
    assert!(
        line.contains(&format!("\"write_port\": {primary}"))
            || line.contains(&format!("\"write_port\":{primary}")),
        "{client}: write on the primary: {line}"
    );
    assert!(
        line.contains("\"last_insert_id_ok\": true") || line.contains("\"last_insert_id_ok\":true"),
        "{client}: {line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sysbench_read_write_and_point_select_have_zero_errors() {
    let Some(c) = cluster("sysbench_read_write_and_point_select_have_zero_errors") else {
        return;
    };
    let p = start(&c).await;
    let common = [
        "--mysql-host=127.0.0.1",
        "--mysql-user=app",
        "--mysql-password=app-password",
        "--mysql-db=rwsplit_test",
        "--tables=4",
        // Large enough that oltp_read_write's four threads rarely pick the same row: a
        // deadlock between them is InnoDB's doing, yet sysbench counts it as an ignored error.
        "--table-size=10000",
    ];
    let direct = format!("--mysql-port={}", c.primary_port());
    let mut args: Vec<&str> = vec!["oltp_read_write"];
    args.extend(common);
    args.push(&direct);
    let _ = tokio::process::Command::new("sysbench")
        .args(&args)
        .arg("cleanup")
        .output()
        .await;
    run_ok("sysbench", &[args.as_slice(), &["prepare"]].concat()).await;
    // Wait for the replicas to hold the prepared rows (the harness's exact-GTID wait cannot
    // be used: the other test of this file writes concurrently).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    for i in 1..=c.replicas() {
        let mut admin = c.admin(i).await.unwrap();
        loop {
            let n: Option<u64> = admin
                .query_first("SELECT COUNT(*) FROM rwsplit_test.sbtest4")
                .await
                .unwrap_or(None);
            if n == Some(10000) {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "replica {i} lacks the sysbench rows"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
    let via = format!("--mysql-port={}", p.port);
    for test in ["oltp_read_write", "oltp_point_select"] {
        let mut a: Vec<&str> = vec![test];
        a.extend(common);
        a.extend([
            via.as_str(),
            "--threads=4",
            "--time=4",
            "--report-interval=0",
            "run",
        ]);
        let out = run_ok("sysbench", &a).await;
        assert!(
            out.contains("ignored errors:                      0 "),
            "{test}:\n{out}"
        );
        assert!(!out.contains("FATAL"), "{test}:\n{out}");
        let queries: u64 = out
            .lines()
            .find(|l| l.trim_start().starts_with("queries:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        assert!(queries > 100, "{test} ran only {queries} queries:\n{out}");
    }
    let metrics = p.ctx.metrics.render();
    for r in ["replica1", "replica2"] {
        assert!(
            metrics.contains(&format!(
                "rwsplit_queries_total{{backend=\"{r}\",reason=\"read\",route=\"replica\"}}"
            )),
            "point selects reached {r}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_and_node_clients() {
    let Some(c) = cluster("python_and_node_clients") else {
        return;
    };
    if !ensure_clients() {
        return;
    }
    let p = start(&c).await;
    let port = p.port.to_string();
    let py = integration_tests::repo_root().join(".scratch/venv-clients/bin/python");
    let py = py.to_string_lossy().into_owned();
    let dir = clients_dir();
    let out = run_ok(
        &py,
        &[&dir.join("pymysql_check.py").to_string_lossy(), &port],
    )
    .await;
    check_verdict(&out, &c, "PyMySQL");
    let out = run_ok(
        &py,
        &[&dir.join("connector_check.py").to_string_lossy(), &port],
    )
    .await;
    check_verdict(&out, &c, "mysql-connector-python (prepared=True)");
    if dir.join("node/node_modules/mysql2").exists() {
        let out = run_ok(
            "node",
            &[&dir.join("node/check.js").to_string_lossy(), &port],
        )
        .await;
        check_verdict(&out, &c, "node mysql2");
    } else {
        assert!(!required(), "node mysql2 is not installed");
        eprintln!("!!!!!!!! SKIPPED node mysql2: npm install did not run");
    }
}
