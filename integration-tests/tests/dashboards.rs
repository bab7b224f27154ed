//! Every metric a Grafana panel or a Prometheus rule in `dashboards/` uses is exported by a
//! running proxy or sidecar (DESIGN.md §6: a renamed metric must fail a test, not leave a panel
//! empty or an alert silent), and every panel's query returns data from a real Prometheus that
//! scrapes the real binaries under load, in both lag modes.

use integration_tests::mysql_async::prelude::Queryable;
use integration_tests::{
    binary, free_port, mysql_async, repo_root, Cluster, APP_PASSWORD, APP_USER,
};
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
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

// Multi-threaded: the Prometheus queries block a thread while the load keeps running on another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_and_alert_metric_is_exported_with_the_sidecar() {
    every_dashboard_and_alert_metric_is_exported(LagMode::Sidecar).await;
}

/// With `lag_source: embedded` there is no sidecar: the proxy alone must export every metric
/// the dashboard and the rules use (the reader's included), or panels stay empty and the lag
/// alerts can never fire.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
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
    let mut targets = vec![("rwsplit-proxy", proxy_http)];
    if mode == LagMode::Sidecar {
        targets.push(("rwsplit-binlog-reader", sidecar_http));
    }
    let prometheus = Prometheus::start(&dir, &targets);

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
    // Load for the rest of the test, so that rates have samples when Prometheus is asked.
    let load = Load::start(&url, 2);
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

    every_panel_has_data(mode, &prometheus, &load).await;
    load.stop().await;
}

/// Every query of every dashboard panel, and every recording rule, returns at least one series
/// from Prometheus. Rates need two scrapes under load, so empty answers are retried until a
/// deadline; a query Prometheus rejects fails at once.
async fn every_panel_has_data(mode: LagMode, prometheus: &Prometheus, load: &Load) {
    prometheus.wait_targets_up().await;
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo_root().join("dashboards/rwsplit-overview.json")).unwrap(),
    )
    .expect("dashboards/rwsplit-overview.json is JSON");
    let mut queries = Vec::new();
    panel_queries(&dashboard["panels"], &mut queries);
    assert!(
        queries.len() >= 10,
        "expected panel queries, found {queries:?}"
    );
    let rules = std::fs::read_to_string(repo_root().join("dashboards/rwsplit.rules.yml")).unwrap();
    for line in rules.lines() {
        if let Some(name) = line.trim().strip_prefix("- record:") {
            queries.push((
                format!("recording rule {}", name.trim()),
                name.trim().to_string(),
            ));
        }
    }

    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut empty = Vec::new();
        for (panel, expr) in &queries {
            let mut promql = grafana_variables(expr);
            if MOVES_UNDER_LOAD.contains(&panel.as_str()) {
                promql = format!("({promql}) > 0");
            }
            match prometheus.series(&promql) {
                Ok(0) => empty.push(format!("{panel:?}: {promql}")),
                Ok(_) => {}
                Err(e) => panic!("{mode:?} mode: panel {panel:?}: query {promql} failed: {e}"),
            }
        }
        if empty.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{mode:?} mode: {} dashboard queries return no series from Prometheus after {} \
             statements of load (a panel would show \"No data\", or 0 under load):\n  {}",
            empty.len(),
            load.statements(),
            empty.join("\n  ")
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Panels whose every query must be above 0 under the test's load, not merely answer: a rate
/// stuck at 0 there means the load never reached the proxy, or the binlog reader saw none of it.
const MOVES_UNDER_LOAD: &[&str] = &[
    "Queries / s",
    "Queries by route and backend",
    "Routing reasons",
    "Binlog events by type",
];

/// `(panel title, expr)` of every target of every panel, rows' nested panels included.
fn panel_queries(panels: &serde_json::Value, out: &mut Vec<(String, String)>) {
    for panel in panels.as_array().into_iter().flatten() {
        let title = panel["title"].as_str().unwrap_or("(untitled)");
        for target in panel["targets"].as_array().into_iter().flatten() {
            if let Some(expr) = target["expr"].as_str() {
                out.push((title.to_string(), expr.to_string()));
            }
        }
        panel_queries(&panel["panels"], out);
    }
}

/// The query Grafana would send: its interval variables as they come out with a 1 s scrape
/// interval on a short time range, and any dashboard variable (`$backend`, `${replica}`) as
/// the "All" regex. An unknown `$name` stays, so Prometheus rejects the query by name.
fn grafana_variables(expr: &str) -> String {
    let mut out = String::with_capacity(expr.len());
    let mut rest = expr;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let (name, len) = match after.strip_prefix('{') {
            Some(braced) => match braced.find('}') {
                Some(end) => (&braced[..end], end + 2),
                None => ("", 0),
            },
            None => {
                let end = after
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(after.len());
                (&after[..end], end)
            }
        };
        let value = match name {
            "" => None,
            "__rate_interval" | "__range" => Some("1m"),
            "__interval" => Some("15s"),
            "__interval_ms" => Some("15000"),
            "__range_s" => Some("60"),
            "__range_ms" => Some("60000"),
            "datasource" => None,
            _ if !name.starts_with("__") => Some(".*"),
            _ => None,
        };
        match value {
            Some(value) => {
                out.push_str(value);
                rest = &after[len..];
            }
            None => {
                out.push('$');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Statements through the proxy from a few sessions until stopped: autocommit writes, reads
/// (replica traffic), and a transaction (primary reads, pins).
struct Load {
    stop: Arc<AtomicBool>,
    statements: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<Result<(), String>>>,
}

impl Load {
    fn start(url: &str, sessions: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let statements = Arc::new(AtomicU64::new(0));
        let tasks = (0..sessions)
            .map(|_| {
                let (url, stop, statements) = (url.to_string(), stop.clone(), statements.clone());
                tokio::spawn(async move {
                    let fail = |what: &str, e: mysql_async::Error| format!("load: {what}: {e}");
                    let mut conn = mysql_async::Conn::from_url(url.as_str())
                        .await
                        .map_err(|e| fail("connecting through the proxy", e))?;
                    let mut i = 0u32;
                    while !stop.load(Ordering::Relaxed) {
                        i += 1;
                        conn.exec_drop("INSERT INTO dashboards_probe (v) VALUES (?)", (i,))
                            .await
                            .map_err(|e| fail("insert", e))?;
                        let _: Vec<u32> = conn
                            .query("SELECT v FROM dashboards_probe ORDER BY id DESC LIMIT 3")
                            .await
                            .map_err(|e| fail("read", e))?;
                        conn.query_drop("BEGIN")
                            .await
                            .map_err(|e| fail("begin", e))?;
                        let _: Option<u32> = conn
                            .query_first("SELECT MAX(v) FROM dashboards_probe")
                            .await
                            .map_err(|e| fail("read in a transaction", e))?;
                        conn.query_drop("COMMIT")
                            .await
                            .map_err(|e| fail("commit", e))?;
                        statements.fetch_add(5, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    conn.disconnect().await.ok();
                    Ok(())
                })
            })
            .collect();
        Load {
            stop,
            statements,
            tasks,
        }
    }

    fn statements(&self) -> u64 {
        self.statements.load(Ordering::Relaxed)
    }

    /// Stops the sessions; a session that failed fails the test here.
    async fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            if let Err(e) = task.await.expect("a load session panicked") {
                panic!("{e}");
            }
        }
    }
}

/// Debian's `prometheus` (scripts/install-deps.sh) on a free loopback port, scraping the given
/// targets every second and evaluating the shipped rules (dashboards/rwsplit.rules.yml) every
/// second, with its data in the test's scratch folder.
struct Prometheus {
    port: u16,
    targets: usize,
    _process: Running,
}

impl Prometheus {
    fn start(dir: &Path, targets: &[(&str, u16)]) -> Prometheus {
        let port = free_port();
        let mut scrape = String::new();
        for (job, target) in targets {
            scrape.push_str(&format!(
                "  - job_name: {job}\n    static_configs:\n      - targets: ['127.0.0.1:{target}']\n"
            ));
        }
        let rules = repo_root().join("dashboards/rwsplit.rules.yml");
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
                 rule_files:\n  - {}\nscrape_configs:\n{scrape}",
                rules.display()
            ),
        )
        .unwrap();
        let data = dir.join("prometheus-data");
        let _ = std::fs::remove_dir_all(&data);
        let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
        let process = Running(
            Command::new("prometheus")
                .arg(format!("--config.file={}", config.display()))
                .arg(format!("--storage.tsdb.path={}", data.display()))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| {
                    panic!("starting prometheus (scripts/install-deps.sh installs it): {e}")
                }),
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        while !http_get(port, "/-/ready").is_some_and(|b| b.contains("Ready")) {
            assert!(
                Instant::now() < deadline,
                "prometheus did not become ready on port {port}: see {}",
                dir.join("prometheus.log").display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Prometheus {
            port,
            targets: targets.len(),
            _process: process,
        }
    }

    /// Waits until Prometheus has scraped every target successfully.
    async fn wait_targets_up(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.series("up == 1") != Ok(self.targets) {
            assert!(
                Instant::now() < deadline,
                "prometheus on port {} did not scrape all {} targets: {:?}",
                self.port,
                self.targets,
                self.get("/api/v1/targets")
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// How many series an instant query returns now (1 for a scalar), or Prometheus' error.
    fn series(&self, promql: &str) -> Result<usize, String> {
        let body = self.get(&format!("/api/v1/query?query={}", percent_encode(promql)))?;
        let answer: serde_json::Value =
            serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
        if answer["status"] != "success" {
            return Err(format!("{}: {}", answer["errorType"], answer["error"]));
        }
        match answer["data"]["resultType"].as_str() {
            Some("vector") | Some("matrix") => {
                Ok(answer["data"]["result"].as_array().map_or(0, Vec::len))
            }
            _ => Ok(1),
        }
    }

    fn get(&self, path: &str) -> Result<String, String> {
        http_get(self.port, path).ok_or_else(|| format!("no answer from prometheus to {path}"))
    }
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
