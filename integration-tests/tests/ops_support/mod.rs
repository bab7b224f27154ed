//! Shared helpers of the `ops_*` tests: the real `rwsplit-proxy` binary started as a child
//! process with a generated config (so signals, exit codes and stderr are what users get),
//! plain HTTP against its admin endpoint, and the ops tests' own topology on BASE_PORT 3340.
#![allow(dead_code)]

use integration_tests::mysql_async::{Conn, OptsBuilder};
use integration_tests::{Cluster, APP_PASSWORD, APP_USER, MONITOR_PASSWORD, MONITOR_USER, TEST_DB};
/// `serde_json::Value`, reached through the proxy library (this crate has no JSON dependency).
pub use proxy::admin::servers::Value as Json;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Base port of the ops tests' shared topology (kept apart from other engineers').
pub const BASE_PORT: u16 = 3340;

/// The shared topology for non-destructive ops tests, or `None` (skip).
pub fn shared_cluster(test: &str) -> Option<Cluster> {
    if std::env::var_os("RWSPLIT_TEST_BASE_PORT").is_none() {
        std::env::set_var("RWSPLIT_TEST_BASE_PORT", BASE_PORT.to_string());
    }
    Cluster::shared_or_skip(test)
}

/// The proxy binary, built once per test process (`cargo build` is a no-op when up to date).
pub fn proxy_binary() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| build_binary("proxy", "rwsplit-proxy"))
        .clone()
}

/// The lag sidecar binary, built once per test process.
pub fn sidecar_binary() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| build_binary("binlog-reader", "rwsplit-binlog-reader"))
        .clone()
}

fn build_binary(package: &str, bin: &str) -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "-q", "-p", package, "--bin", bin])
        .current_dir(integration_tests::repo_root())
        .status()
        .expect("cargo runs");
    assert!(status.success(), "building {bin} failed");
    integration_tests::binary(bin).expect("the binary was just built")
}

/// A scratch file path unique to this test process and call.
pub fn scratch_file(name: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = integration_tests::repo_root().join(".scratch/ops-tests");
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir.join(format!(
        "{}-{}-{name}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ))
}

/// Ports a proxy listens on.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    pub listen: u16,
    pub http: u16,
}

impl Ports {
    pub fn free() -> Ports {
        Ports {
            listen: integration_tests::free_port(),
            http: integration_tests::free_port(),
        }
    }
}

/// A config for `cluster` (lag from Seconds_Behind_Master, a fast monitor) with
/// `extra_proxy` lines appended to the `proxy:` section.
pub fn config_yaml(cluster: &Cluster, ports: Ports, extra_proxy: &str) -> String {
    config_with_lag(cluster, ports, "seconds_behind_master", extra_proxy, "")
}

/// Like [`config_yaml`] with `lag_source` given as YAML (e.g. `embedded`, or
/// `{sidecar: {url: ...}}`) and `extra_top` appended at the top level (e.g. a `sidecar:`
/// section).
pub fn config_with_lag(
    cluster: &Cluster,
    ports: Ports,
    lag_source: &str,
    extra_proxy: &str,
    extra_top: &str,
) -> String {
    let mut servers = format!(
        "  - {{ name: primary, host: 127.0.0.1, port: {}, role: primary, location: zone-a }}\n",
        cluster.port(0)
    );
    for i in 1..=cluster.replicas() {
        servers.push_str(&format!(
            "  - {{ name: replica{i}, host: 127.0.0.1, port: {}, role: replica, location: zone-a }}\n",
            cluster.port(i)
        ));
    }
    format!(
        "location: zone-a\nservers:\n{servers}routing:\n  max_lag_ms: 5000\n  lag_recovery_ms: 4000\n\
         monitor:\n  user: {MONITOR_USER}\n  password: {MONITOR_PASSWORD}\n\
         proxy:\n  listen: 127.0.0.1:{}\n  http_listen: 127.0.0.1:{}\n  monitor_interval_ms: 100\n  \
         lag_source: {lag_source}\n  users:\n    - name: {APP_USER}\n      password: {APP_PASSWORD}\n{extra_proxy}{extra_top}",
        ports.listen, ports.http
    )
}

/// The real binary, running; killed on drop if still alive.
pub struct ProxyProcess {
    child: Child,
    pub ports: Ports,
    pub config: PathBuf,
    pub log: PathBuf,
}

impl ProxyProcess {
    /// Writes `yaml` to a scratch file and starts `rwsplit-proxy --config` on it.
    pub fn start(yaml: &str, ports: Ports) -> ProxyProcess {
        let config = scratch_file("proxy.yaml");
        std::fs::write(&config, yaml).expect("write config");
        Self::start_at(config, ports)
    }

    /// Starts `rwsplit-proxy --config` on an existing file (or symlink) at `config`.
    pub fn start_at(config: PathBuf, ports: Ports) -> ProxyProcess {
        let log = config.with_extension("log");
        let log_file = std::fs::File::create(&log).expect("log file");
        let child = Command::new(proxy_binary())
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("rwsplit-proxy starts");
        ProxyProcess {
            child,
            ports,
            config,
            log,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal by name (`TERM`, `HUP`, ...) to this process only.
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "kill -{sig} {}", self.pid());
    }

    /// Waits for the process to exit, up to `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// What the proxy logged so far (ANSI colours stripped).
    pub fn log_text(&self) -> String {
        strip_ansi(&std::fs::read_to_string(&self.log).unwrap_or_default())
    }

    /// GET `path` on the admin endpoint: (status, body).
    pub async fn get(&self, path: &str) -> (u16, String) {
        http_get(self.ports.http, path).await
    }

    /// `method path` on the admin endpoint with an optional bearer token: (status, body).
    pub async fn admin(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: &str,
    ) -> (u16, String) {
        http_request(self.ports.http, method, path, token, body).await
    }

    /// Waits until `/healthz` answers 200 (the monitor found the primary).
    pub async fn wait_healthy(&self, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let (status, body) = self.get("/healthz").await;
            if status == 200 {
                return body;
            }
            assert!(
                Instant::now() < deadline,
                "proxy not healthy after {timeout:?}: {status} {body}\nlog:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The `/servers` document.
    pub async fn servers(&self) -> Json {
        let (status, body) = self.get("/servers").await;
        assert_eq!(status, 200, "{body}");
        proxy::admin::servers::parse(&body).expect("valid JSON")
    }

    /// Polls `/servers` until `pred` holds for it, up to `timeout`; returns the elapsed time.
    pub async fn wait_servers(
        &self,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&Json) -> bool,
    ) -> Duration {
        let start = Instant::now();
        loop {
            let doc = self.servers().await;
            if pred(&doc) {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < timeout,
                "{what}: not within {timeout:?}; /servers = {doc:#}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Waits until every replica is in the read rotation (lag known, threads running).
    pub async fn wait_replicas_in_rotation(&self, timeout: Duration) {
        self.wait_servers(timeout, "replicas in rotation", |d| {
            d["servers"].as_array().is_some_and(|s| {
                s.iter()
                    .filter(|s| s["role"] == "replica")
                    .all(|s| s["in_rotation"] == true)
            })
        })
        .await;
    }

    /// An application connection through the proxy.
    pub async fn app(&self) -> Result<Conn, integration_tests::mysql_async::Error> {
        Conn::new(app_opts(self.ports.listen)).await
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Options for the application user through a proxy on `port`.
pub fn app_opts(port: u16) -> OptsBuilder {
    OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(port)
        .user(Some(APP_USER))
        .pass(Some(APP_PASSWORD))
        .db_name(Some(TEST_DB))
        .prefer_socket(false)
}

/// A minimal HTTP/1.1 GET against 127.0.0.1:`port` (status 0 when nothing answers).
pub async fn http_get(port: u16, path: &str) -> (u16, String) {
    http_request(port, "GET", path, None, "").await
}

/// A minimal HTTP/1.1 request against 127.0.0.1:`port`, with an optional bearer token and a
/// body (status 0 when nothing answers).
pub async fn http_request(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, String) {
    let Ok(Ok(mut stream)) = tokio::time::timeout(
        Duration::from_secs(2),
        tokio::net::TcpStream::connect(("127.0.0.1", port)),
    )
    .await
    else {
        return (0, String::new());
    };
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    if stream.write_all(req.as_bytes()).await.is_err() {
        return (0, String::new());
    }
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// Runs the binary with `args` to completion: (exit code, stdout, stderr).
pub fn run_cli(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(proxy_binary())
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("rwsplit-proxy runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        strip_ansi(&String::from_utf8_lossy(&out.stderr)),
    )
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Path helper for messages.
pub fn show(p: &Path) -> String {
    p.display().to_string()
}

/// The value of one series (`name{labels}` exactly as exported) in a `/metrics` text; NaN when
/// absent.
pub fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(series)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(f64::NAN)
}
