//! The proxy reloads when its configuration file changes, with no signal: a Kubernetes
//! ConfigMap volume changes by a symlink swap, and nothing tells the process.

mod ops_support;

use integration_tests::mysql_async::prelude::Queryable;
use ops_support::{config_yaml, metric, scratch_file, shared_cluster, Ports, ProxyProcess};
use std::os::unix::fs::symlink;
use std::path::Path;
use std::time::{Duration, Instant};

/// Lays out `dir` as the kubelet does for a mounted ConfigMap: `rwsplit.yaml` ->
/// `..data/rwsplit.yaml`, `..data` -> `..<version>/`, and swaps `..data` atomically.
fn publish(dir: &Path, version: &str, yaml: &str) {
    let data = dir.join(format!("..{version}"));
    std::fs::create_dir_all(&data).expect("version dir");
    std::fs::write(data.join("rwsplit.yaml"), yaml).expect("write config");
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    symlink(format!("..{version}"), &tmp).expect("symlink");
    std::fs::rename(&tmp, dir.join("..data")).expect("swap ..data");
    if !dir.join("rwsplit.yaml").exists() {
        symlink("..data/rwsplit.yaml", dir.join("rwsplit.yaml")).expect("symlink file");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_config_file_is_applied_without_a_signal() {
    let Some(cluster) = shared_cluster("a_changed_config_file_is_applied_without_a_signal") else {
        return;
    };
    let ports = Ports::free();
    let yaml = config_yaml(&cluster, ports, "");
    let dir = scratch_file("configmap");
    std::fs::create_dir_all(&dir).expect("dir");
    publish(&dir, "v1", &yaml);
    let proxy = ProxyProcess::start_at(dir.join("rwsplit.yaml"), ports);
    proxy.wait_healthy(Duration::from_secs(10)).await;
    let mut session = proxy.app().await.expect("client connects");
    session.query_drop("SET @kept = 7").await.expect("state");

    // A new version of the ConfigMap without replica2: no SIGHUP.
    let without_r2: String = yaml
        .lines()
        .filter(|l| !l.contains("name: replica2"))
        .map(|l| format!("{l}\n"))
        .collect();
    publish(&dir, "v2", &without_r2);
    let started = Instant::now();
    proxy
        .wait_servers(
            Duration::from_secs(5),
            "replica2 gone without a signal",
            |d| d["servers"].as_array().is_some_and(|s| s.len() == 2),
        )
        .await;
    println!("applied after {:?}", started.elapsed());
    let (_, metrics) = proxy.get("/metrics").await;
    assert_eq!(
        metric(&metrics, "rwsplit_config_reloads_total{result=\"ok\"}"),
        1.0,
        "{metrics}"
    );
    assert!(
        proxy
            .log_text()
            .contains("configuration reloaded (the configuration file changed)"),
        "{}",
        proxy.log_text()
    );
    let kept: Option<i64> = session
        .query_first("SELECT @kept")
        .await
        .expect("the session survives");
    assert_eq!(kept, Some(7));

    // A broken version is rejected once (not on every poll) and the running config stays.
    publish(&dir, "v3", &without_r2.replace("servers:", "servers_typo:"));
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, metrics) = proxy.get("/metrics").await;
        if metric(&metrics, "rwsplit_config_reloads_total{result=\"error\"}") == 1.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "broken file not rejected:\n{metrics}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (_, metrics) = proxy.get("/metrics").await;
    assert_eq!(
        metric(&metrics, "rwsplit_config_reloads_total{result=\"error\"}"),
        1.0,
        "a broken file is reported once per change"
    );
    let doc = proxy.servers().await;
    assert_eq!(doc["servers"].as_array().map(|s| s.len()), Some(2));

    // Fixed again: applied.
    publish(&dir, "v4", &yaml);
    proxy
        .wait_servers(Duration::from_secs(5), "replica2 back", |d| {
            d["servers"].as_array().is_some_and(|s| s.len() == 3)
        })
        .await;
    let _ = std::fs::remove_dir_all(&dir);
}
