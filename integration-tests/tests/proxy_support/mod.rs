//! Shared helpers of the `proxy_*` tests: an in-process proxy (context, health monitor, accept
//! loop calling `frontend::serve_client`) in front of a real topology.
#![allow(dead_code)]

pub mod lag_sources;

use integration_tests::mysql_async::prelude::Queryable;
use integration_tests::mysql_async::{Conn, Opts, OptsBuilder};
use integration_tests::{Cluster, APP_PASSWORD, APP_USER, MONITOR_PASSWORD, MONITOR_USER, TEST_DB};
use proxy::context::Context;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Base port of the data-path tests' shared topology (kept apart from other engineers').
pub const BASE_PORT: u16 = 3330;

/// The shared topology for the proxy tests, or `None` (skip) when servers cannot be had.
pub fn cluster(test: &str) -> Option<Cluster> {
    if std::env::var_os("RWSPLIT_TEST_BASE_PORT").is_none() {
        std::env::set_var("RWSPLIT_TEST_BASE_PORT", BASE_PORT.to_string());
    }
    Cluster::shared_or_skip(test)
}

/// A proxy running inside the test process.
pub struct Proxy {
    pub port: u16,
    pub ctx: Arc<Context>,
    /// The replica positions its sessions route on (read-your-writes).
    pub positions: Arc<proxy::consistency::Positions>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    pub config_file: std::path::PathBuf,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        let _ = std::fs::remove_file(&self.config_file);
    }
}

/// Configuration for `cluster` with lag from Seconds_Behind_Master (no sidecar needed) and
/// `extra_proxy` lines appended to the `proxy:` section.
pub fn config_yaml(cluster: &Cluster, port: u16, extra_proxy: &str) -> String {
    let mut servers = format!(
        "  - {{ name: primary, host: 127.0.0.1, port: {}, role: primary }}\n",
        cluster.port(0)
    );
    for i in 1..=cluster.replicas() {
        servers.push_str(&format!(
            "  - {{ name: replica{i}, host: 127.0.0.1, port: {}, role: replica }}\n",
            cluster.port(i)
        ));
    }
    format!(
        "servers:\n{servers}routing:\n  max_lag_ms: 5000\n  lag_recovery_ms: 4000\n\
         monitor:\n  user: {MONITOR_USER}\n  password: {MONITOR_PASSWORD}\n\
         proxy:\n  listen: 127.0.0.1:{port}\n  http_listen: 127.0.0.1:{}\n  monitor_interval_ms: 100\n  lag_source: seconds_behind_master\n  users:\n    - name: {APP_USER}\n      password: {APP_PASSWORD}\n{extra_proxy}",
        integration_tests::free_port()
    )
}

/// Starts a proxy in front of `cluster` and waits until the monitor has put replicas in rotation.
pub async fn start(cluster: &Cluster) -> Proxy {
    start_with(cluster, "").await
}

pub async fn start_with(cluster: &Cluster, extra_proxy: &str) -> Proxy {
    start_edited(cluster, extra_proxy, |yaml| yaml).await
}

/// Like [`start_with`], with the generated YAML passed through `edit` first.
pub async fn start_edited(
    cluster: &Cluster,
    extra_proxy: &str,
    edit: impl FnOnce(String) -> String,
) -> Proxy {
    start_serving_on(
        cluster,
        extra_proxy,
        edit,
        tokio::runtime::Handle::current(),
    )
    .await
}

/// Like [`start_edited`], with the accept loop and every client session on the runtime of
/// `sessions` (the monitor stays on the caller's): a test can tell what the session loop does
/// from what the monitor does, e.g. count allocations on the sessions' threads only.
pub async fn start_serving_on(
    cluster: &Cluster,
    extra_proxy: &str,
    edit: impl FnOnce(String) -> String,
    sessions: tokio::runtime::Handle,
) -> Proxy {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let yaml = edit(config_yaml(cluster, port, extra_proxy));
    let dir = integration_tests::repo_root().join(".scratch");
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join(format!("proxy-test-{port}.yaml"));
    std::fs::write(&path, &yaml).expect("write config");
    let config = router::config::Config::from_yaml("test.yaml", &yaml).expect("valid config");
    let ctx = Context::new(path.clone(), config);
    let monitor = proxy::health::spawn(ctx.clone());
    let positions = proxy::consistency::Positions::new();
    let follower = tokio::spawn(proxy::consistency::follow(ctx.clone(), positions.clone()));
    let accept_ctx = ctx.clone();
    let accept_positions = positions.clone();
    let accept = sessions.spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let ctx = accept_ctx.clone();
            let positions = accept_positions.clone();
            tokio::spawn(async move {
                let _ = proxy::frontend::serve_client(stream, ctx, positions).await;
            });
        }
    });
    let p = Proxy {
        port,
        ctx,
        positions,
        tasks: vec![monitor, follower, accept],
        config_file: path,
    };
    // Wait for the monitor's first rounds: replicas join the rotation once checked.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let topo = p.ctx.topology();
        let ready = topo.primary().is_some()
            && topo
                .servers
                .iter()
                .skip(1)
                .all(|s| s.reachable && s.threads_running && s.lag_ms.is_some());
        if ready || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    p
}

impl Proxy {
    pub fn url(&self) -> String {
        format!(
            "mysql://{APP_USER}:{APP_PASSWORD}@127.0.0.1:{}/{TEST_DB}",
            self.port
        )
    }

    /// A mysql_async connection through the proxy (no connection pool, no reset on drop).
    pub async fn conn(&self) -> Conn {
        let opts =
            OptsBuilder::from_opts(Opts::from_url(&self.url()).expect("url")).prefer_socket(false);
        Conn::new(opts).await.expect("connect through the proxy")
    }
}

/// `@@port` of the server that answers this statement prefix.
pub async fn port_of(conn: &mut Conn, sql: &str) -> u16 {
    conn.query_first::<u16, _>(sql)
        .await
        .expect("query")
        .expect("a row")
}

/// Runs a program to completion and returns its stdout, failing the test with its stderr.
pub async fn run_ok(program: &str, args: &[&str]) -> String {
    let out = tokio::process::Command::new(program)
        .args(args)
        .output()
        .await
        .unwrap_or_else(|e| panic!("{program} could not run: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{program} {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn required() -> bool {
    std::env::var_os("CI").is_some() || std::env::var_os("RWSPLIT_REQUIRE_CLUSTER").is_some()
}

/// The client venv's python after `integration-tests/clients/install.sh` (idempotent), or
/// `None` (skip) outside CI; under CI or `make test` a failed install fails the test.
pub fn python_clients() -> Option<String> {
    let root = integration_tests::repo_root();
    let ok = std::process::Command::new("bash")
        .arg(root.join("integration-tests/clients/install.sh"))
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(!required(), "integration-tests/clients/install.sh failed");
        eprintln!("!!!!!!!! SKIPPED: client libraries could not be installed");
        return None;
    }
    Some(
        root.join(".scratch/venv-clients/bin/python")
            .to_string_lossy()
            .into_owned(),
    )
}

/// Logs in as the application user with raw packets (mysql_native_password), for tests that
/// send what no driver would; returns the stream after the OK.
pub async fn raw_login(port: u16) -> tokio::net::TcpStream {
    use proxy::protocol::consts::cap;
    raw_login_caps(port, cap::PROXY_OFFERS & !cap::CONNECT_ATTRS).await
}

/// Like [`raw_login`], announcing exactly `capabilities`.
pub async fn raw_login_caps(port: u16, capabilities: u32) -> tokio::net::TcpStream {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let answer = raw_auth(&mut s, APP_USER, APP_PASSWORD, capabilities).await;
    assert_eq!(answer.first(), Some(&0), "logged in");
    s
}

/// Answers the greeting on a fresh connection `s` as `user` with `mysql_native_password`,
/// announcing `capabilities`; returns the server's answer to the login (an OK `0x00` or an
/// ERR `0xff` packet).
pub async fn raw_auth(
    s: &mut tokio::net::TcpStream,
    user: &str,
    password: &str,
    capabilities: u32,
) -> Vec<u8> {
    use proxy::backend::handshake::{scramble, Greeting, Response};
    use proxy::protocol::packet::{read_packet, write_packet};
    use tokio::io::AsyncWriteExt;
    let mut buf = Vec::new();
    read_packet(&mut *s, &mut buf, 1 << 20)
        .await
        .expect("greeting");
    let g = Greeting::parse(&buf).expect("a greeting");
    let login = Response {
        capabilities,
        max_packet: 1 << 24,
        collation: 45,
        user: user.into(),
        auth: scramble("mysql_native_password", &g.nonce, password).expect("scramble"),
        database: Some(TEST_DB.into()),
        auth_plugin: Some("mysql_native_password".into()),
        attrs: Vec::new(),
    };
    write_packet(&mut *s, 1, &login.build())
        .await
        .expect("login");
    s.flush().await.expect("flush");
    read_packet(&mut *s, &mut buf, 1 << 20)
        .await
        .expect("auth answer");
    buf
}

/// Sends one COM_QUERY on a raw connection and returns the first packet of the answer.
pub async fn raw_query(s: &mut tokio::net::TcpStream, sql: &str) -> Vec<u8> {
    use proxy::protocol::packet::{read_packet, write_packet};
    use tokio::io::AsyncWriteExt;
    let mut p = vec![0x03];
    p.extend_from_slice(sql.as_bytes());
    write_packet(&mut *s, 0, &p).await.expect("send");
    s.flush().await.expect("flush");
    let mut buf = Vec::new();
    read_packet(&mut *s, &mut buf, 1 << 24)
        .await
        .expect("answer");
    buf
}
