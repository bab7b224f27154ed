//! Every metric a Grafana panel or a Prometheus rule in `dashboards/` uses is exported by a
//! running proxy or sidecar (DESIGN.md §6: a renamed metric must fail a test, not leave a panel
//! empty or an alert silent). Scrapes the real binaries after real traffic.

use integration_tests::mysql_async::prelude::Queryable;
use integration_tests::{
    binary, free_port, mysql_async, repo_root, Cluster, APP_PASSWORD, APP_USER,
};
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Kills the child on drop so a failing assertion leaves no process behind.
struct Running(Child);
impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn http_get(port: u16, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut body = String::new();
    stream.read_to_string(&mut body).ok()?;
    body.split_once("\r\n\r\n").map(|(_, b)| b.to_string())
}

fn wait_http(port: u16, path: &str, what: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(body) = http_get(port, path) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not answer {path} on port {port}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Metric names (`rwsplit_…`) used in a text, without recording-rule outputs (`rwsplit:…`).
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(pos) = text[i..].find("rwsplit_") {
        let start = i + pos;
        let preceded_by_word =
            start > 0 && (bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        if !preceded_by_word {
            names.insert(text[start..end].to_string());
        }
        i = end;
    }
    names
}

/// Names of the metric families a `/metrics` page exports (from its `# TYPE` lines and samples).
fn exported(page: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in page.lines() {
        let name = if let Some(rest) = line.strip_prefix("# TYPE ") {
            rest.split_whitespace().next()
        } else if line.starts_with('#') {
            None
        } else {
            line.split(['{', ' ']).next()
        };
        if let Some(name) = name.filter(|n| !n.is_empty()) {
            names.insert(name.to_string());
        }
    }
    names
}

/// Where the proxy gets replica lag: the sidecar's `/lag`, or its own embedded reader.
#[derive(Clone, Copy, Debug, PartialEq)]
enum LagMode {
    Sidecar,
    Embedded,
}

#[tokio::test]
async fn every_dashboard_and_alert_metric_is_exported_with_the_sidecar() {
    every_dashboard_and_alert_metric_is_exported(LagMode::Sidecar).await;
}

/// With `lag_source: embedded` there is no sidecar: the proxy alone must export every metric
/// the dashboard and the rules use (the reader's included), or panels stay empty and the lag
/// alerts can never fire.
#[tokio::test]
async fn every_dashboard_and_alert_metric_is_exported_by_an_embedded_mode_proxy() {
    every_dashboard_and_alert_metric_is_exported(LagMode::Embedded).await;
}

async fn every_dashboard_and_alert_metric_is_exported(mode: LagMode) {
    let test = format!("every_dashboard_and_alert_metric_is_exported ({mode:?})");
    let Some(cluster) = Cluster::shared_or_skip(&test) else {
        return;
    };
    let (proxy_port, proxy_http, sidecar_http) = (free_port(), free_port(), free_port());
    let dir = repo_root().join(format!(".scratch/dashboards-test-{mode:?}"));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("rwsplit.yaml");
    let mut yaml = cluster.config_yaml(proxy_port, proxy_http, sidecar_http);
    if mode == LagMode::Embedded {
        let sidecar_source = format!(
            "  lag_source:\n    sidecar:\n      url: http://127.0.0.1:{sidecar_http}/lag\n"
        );
        assert!(yaml.contains(&sidecar_source), "{yaml}");
        yaml = yaml.replace(&sidecar_source, "  lag_source: embedded\n");
        // Its own server id: the sidecar test's reader streams from the same primary.
        let id = 4000 + u32::from(cluster.base_port());
        yaml = yaml.replace(
            &format!("server_id: {id}"),
            &format!("server_id: {}", id + 500),
        );
    }
    std::fs::write(&config, yaml).unwrap();

    let spawn = |name: &str, log: &str| {
        let log = std::fs::File::create(dir.join(log)).unwrap();
        Running(
            Command::new(binary(name).unwrap())
                .arg("--config")
                .arg(&config)
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("starting {name}: {e}")),
        )
    };
    let _sidecar =
        (mode == LagMode::Sidecar).then(|| spawn("rwsplit-binlog-reader", "sidecar.log"));
    let _proxy = spawn("rwsplit-proxy", "proxy.log");
    if mode == LagMode::Sidecar {
        wait_http(sidecar_http, "/metrics", "the sidecar");
    }
    wait_http(proxy_http, "/metrics", "the proxy");

    // Real traffic so that per-route and per-backend series exist.
    // prefer_socket=false: otherwise mysql_async asks for @@socket and reconnects to the unix
    // socket of whichever server answered, bypassing the proxy (and writing to a read-only
    // replica when a replica answered).
    let url = format!(
        "{}?prefer_socket=false",
        integration_tests::url(APP_USER, APP_PASSWORD, proxy_port)
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut conn = loop {
        match mysql_async::Conn::from_url(url.as_str()).await {
            Ok(c) => break c,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            Err(e) => panic!("connecting through the proxy: {e}"),
        }
    };
    conn.query_drop(
        "CREATE TABLE IF NOT EXISTS dashboards_probe (id INT PRIMARY KEY AUTO_INCREMENT, v INT)",
    )
    .await
    .unwrap();
    for i in 0..20 {
        conn.exec_drop("INSERT INTO dashboards_probe (v) VALUES (?)", (i,))
            .await
            .unwrap();
        let _: Vec<u32> = conn
            .query("SELECT v FROM dashboards_probe LIMIT 3")
            .await
            .unwrap();
    }
    conn.disconnect().await.ok();
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let mut have = exported(&wait_http(proxy_http, "/metrics", "the proxy"));
    match mode {
        LagMode::Sidecar => have.extend(exported(&wait_http(
            sidecar_http,
            "/metrics",
            "the sidecar",
        ))),
        LagMode::Embedded => {
            // The embedded reader starts once the monitor has found the primary.
            let deadline = Instant::now() + Duration::from_secs(15);
            while !have.contains("rwsplit_binlog_stream_connected") && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(200)).await;
                have = exported(&wait_http(proxy_http, "/metrics", "the proxy"));
            }
        }
    }

    let mut used = BTreeSet::new();
    for entry in std::fs::read_dir(repo_root().join("dashboards")).unwrap() {
        let path = entry.unwrap().path();
        let is_dashboard = path.extension().is_some_and(|e| e == "json" || e == "yml");
        if is_dashboard {
            used.extend(metric_names(&std::fs::read_to_string(&path).unwrap()));
        }
    }
    assert!(
        used.len() >= 10,
        "expected the dashboards to use metrics, found {used:?}"
    );
    let missing: Vec<&String> = used.iter().filter(|n| !have.contains(*n)).collect();
    assert!(
        missing.is_empty(),
        "{mode:?} mode: dashboards/ use metrics that nothing exports: {missing:?}\nexported: {have:?}"
    );
}
