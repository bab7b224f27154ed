//! Process lifecycle of the real binary: SIGTERM lets running statements finish and then exits,
//! sessions still open at `shutdown_timeout_s` are closed, and SIGHUP reloads a changed config
//! without dropping sessions while a broken one is rejected and the running config stays; SIGHUP
//! also re-reads the client TLS certificate at an unchanged path (a renewal).

mod ops_support;

use integration_tests::mysql_async::prelude::Queryable;
use ops_support::{config_yaml, shared_cluster, Ports, ProxyProcess};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_a_running_statement_finish_then_exits() {
    let Some(cluster) = shared_cluster("sigterm_lets_a_running_statement_finish_then_exits") else {
        return;
    };
    let ports = Ports::free();
    let mut proxy = ProxyProcess::start(&config_yaml(&cluster, ports, ""), ports);
    proxy.wait_healthy(Duration::from_secs(10)).await;
    let mut client = proxy.app().await.expect("client connects");
    let running = tokio::spawn(async move {
        let r: Result<Option<(i64, String)>, _> =
            client.query_first("SELECT SLEEP(1), 'finished'").await;
        r
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    proxy.signal("TERM");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        proxy.app().await.is_err(),
        "no new clients are accepted once shutdown began"
    );
    let answer = running.await.expect("task").expect("statement finishes");
    assert_eq!(answer.map(|(_, s)| s).as_deref(), Some("finished"));
    let status = tokio::task::block_in_place(|| proxy.wait_exit(Duration::from_secs(10)))
        .expect("proxy exits after its sessions end");
    assert!(
        status.success(),
        "exit status {status:?}\n{}",
        proxy.log_text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_sessions_still_open_at_the_deadline() {
    let Some(cluster) = shared_cluster("sigterm_closes_sessions_still_open_at_the_deadline") else {
        return;
    };
    let ports = Ports::free();
    let mut proxy = ProxyProcess::start(
        &config_yaml(&cluster, ports, "  shutdown_timeout_s: 1\n"),
        ports,
    );
    proxy.wait_healthy(Duration::from_secs(10)).await;
    let mut client = proxy.app().await.expect("client connects");
    let running = tokio::spawn(async move {
        let r: Result<Option<i64>, _> = client.query_first("SELECT SLEEP(20)").await;
        r
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let start = Instant::now();
    proxy.signal("TERM");
    let status = tokio::task::block_in_place(|| proxy.wait_exit(Duration::from_secs(10)))
        .expect("proxy exits at the deadline");
    let took = start.elapsed();
    assert!(status.success(), "{status:?}");
    assert!(
        took < Duration::from_secs(4),
        "exited after {took:?}, deadline 1 s"
    );
    let r = tokio::time::timeout(Duration::from_secs(5), running)
        .await
        .expect("the client is not left hanging")
        .expect("task");
    assert!(r.is_err(), "the cut-off statement reports an error: {r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_a_changed_config_and_rejects_a_broken_one() {
    let Some(cluster) = shared_cluster("sighup_reloads_a_changed_config_and_rejects_a_broken_one")
    else {
        return;
    };
    let ports = Ports::free();
    let yaml = config_yaml(&cluster, ports, "");
    let proxy = ProxyProcess::start(&yaml, ports);
    proxy.wait_healthy(Duration::from_secs(10)).await;
    let mut session = proxy.app().await.expect("client connects");
    session
        .query_drop("SET @kept = 42")
        .await
        .expect("session state");

    // A changed config: replica2 removed.
    let without_r2: String = yaml
        .lines()
        .filter(|l| !l.contains("name: replica2"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&proxy.config, &without_r2).expect("rewrite config");
    proxy.signal("HUP");
    proxy
        .wait_servers(Duration::from_secs(3), "replica2 gone after reload", |d| {
            d["servers"].as_array().is_some_and(|s| s.len() == 2)
        })
        .await;
    let (_, metrics) = proxy.get("/metrics").await;
    assert_eq!(
        ops_support::metric(&metrics, "rwsplit_config_reloads_total{result=\"ok\"}"),
        1.0
    );
    assert!(
        !metrics.contains("backend=\"replica2\""),
        "removed server still exported"
    );
    let kept: Option<i64> = session
        .query_first("SELECT @kept")
        .await
        .expect("the session survives the reload");
    assert_eq!(kept, Some(42));

    // A broken config is rejected; the running one stays.
    std::fs::write(
        &proxy.config,
        without_r2.replace("servers:", "servers_typo:"),
    )
    .expect("break config");
    proxy.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let (_, metrics) = proxy.get("/metrics").await;
        if ops_support::metric(&metrics, "rwsplit_config_reloads_total{result=\"error\"}") == 1.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "broken reload not counted:\n{metrics}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = proxy.log_text();
    let line = log
        .lines()
        .find(|l| l.contains("reload rejected"))
        .unwrap_or_else(|| panic!("no rejection logged:\n{log}"));
    assert!(
        line.contains(&proxy.config.display().to_string()) && line.contains("servers_typo"),
        "{line}"
    );
    let doc = proxy.servers().await;
    assert_eq!(doc["servers"].as_array().map(|s| s.len()), Some(2));
    let (status, _) = proxy.get("/healthz").await;
    assert_eq!(status, 200);
    let one: Option<i64> = session
        .query_first("SELECT 1")
        .await
        .expect("still serving");
    assert_eq!(one, Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_sigterm_exits_without_waiting() {
    let Some(cluster) = shared_cluster("a_second_sigterm_exits_without_waiting") else {
        return;
    };
    let ports = Ports::free();
    let mut proxy = ProxyProcess::start(
        &config_yaml(&cluster, ports, "  shutdown_timeout_s: 60\n"),
        ports,
    );
    proxy.wait_healthy(Duration::from_secs(10)).await;
    let mut client = proxy.app().await.expect("client connects");
    let _running = tokio::spawn(async move {
        let r: Result<Option<i64>, _> = client.query_first("SELECT SLEEP(20)").await;
        r
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    proxy.signal("TERM");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        tokio::task::block_in_place(|| proxy.wait_exit(Duration::from_millis(100))).is_none(),
        "the first SIGTERM waits for the running statement"
    );
    let start = Instant::now();
    proxy.signal("TERM");
    let status = tokio::task::block_in_place(|| proxy.wait_exit(Duration::from_secs(5)))
        .expect("the second SIGTERM exits at once");
    assert!(start.elapsed() < Duration::from_secs(2));
    assert_eq!(status.code(), Some(1));
    assert!(
        proxy.log_text().contains("second SIGTERM"),
        "{}",
        proxy.log_text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_adds_a_user_and_drains_a_replica_for_maintenance() {
    let Some(cluster) = shared_cluster("sighup_adds_a_user_and_drains_a_replica_for_maintenance")
    else {
        return;
    };
    let ports = Ports::free();
    let yaml = config_yaml(&cluster, ports, "");
    let proxy = ProxyProcess::start(&yaml, ports);
    proxy.wait_healthy(Duration::from_secs(10)).await;
    let admin_opts = || {
        ops_support::app_opts(ports.listen)
            .user(Some(integration_tests::ADMIN_USER))
            .pass(Some(integration_tests::ADMIN_PASSWORD))
    };
    let refused = integration_tests::mysql_async::Conn::new(admin_opts())
        .await
        .expect_err("admin is not a proxy user yet");
    assert!(
        refused.to_string().contains("1045") || refused.to_string().contains("denied"),
        "{refused}"
    );

    // Add the user and put replica2 in maintenance, in one reload.
    let changed = yaml
        .replace(
            "  users:\n",
            &format!(
                "  users:\n    - name: {}\n      password: {}\n",
                integration_tests::ADMIN_USER,
                integration_tests::ADMIN_PASSWORD
            ),
        )
        .replace(
            "role: replica, location: zone-a }\n",
            "role: replica, location: zone-a, maintenance: true }\n",
        );
    // Only the last replica goes into maintenance.
    let changed = changed.replacen(
        "maintenance: true",
        "maintenance: false",
        cluster.replicas() - 1,
    );
    std::fs::write(&proxy.config, &changed).expect("rewrite config");
    proxy.signal("HUP");
    let last = format!("replica{}", cluster.replicas());
    proxy
        .wait_servers(Duration::from_secs(3), "last replica drained", |d| {
            d["servers"]
                .as_array()
                .and_then(|s| s.iter().find(|s| s["name"] == last.as_str()))
                .is_some_and(|s| s["state"] == "maintenance" && s["in_rotation"] == false)
        })
        .await;
    let mut admin = integration_tests::mysql_async::Conn::new(admin_opts())
        .await
        .expect("the new user connects after the reload");
    for _ in 0..20 {
        let port: Option<u16> = admin.query_first("SELECT @@port").await.expect("read");
        assert_ne!(
            port,
            Some(cluster.port(cluster.replicas())),
            "no reads on the drained replica"
        );
    }
}

/// A self-signed P-256 certificate for `cn` made with the openssl CLI: (cert PEM, key PEM).
fn make_cert(cn: &str) -> (Vec<u8>, Vec<u8>) {
    let cert = ops_support::scratch_file(&format!("{cn}.crt"));
    let key = ops_support::scratch_file(&format!("{cn}.key"));
    let out = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"])
        .args(["-subj", &format!("/CN={cn}")])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pem = (std::fs::read(&cert).unwrap(), std::fs::read(&key).unwrap());
    let _ = std::fs::remove_file(cert);
    let _ = std::fs::remove_file(key);
    pem
}

/// The subject of the certificate the proxy on `port` serves, read with
/// `openssl s_client -starttls mysql` (the MySQL SSLRequest, then a TLS handshake).
async fn served_subject(port: u16) -> String {
    let out = tokio::process::Command::new("openssl")
        .args(["s_client", "-starttls", "mysql", "-connect"])
        .arg(format!("127.0.0.1:{port}"))
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("openssl runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines()
        .find(|l| l.starts_with("subject="))
        .map(|l| l.replace(' ', ""))
        .unwrap_or_else(|| {
            panic!(
                "no certificate served:\n{text}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_a_renewed_tls_certificate_at_the_same_path() {
    let Some(cluster) = shared_cluster("sighup_reloads_a_renewed_tls_certificate_at_the_same_path")
    else {
        return;
    };
    let (cert_a, key_a) = make_cert("rwsplit-cert-a");
    let (cert_b, key_b) = make_cert("rwsplit-cert-b");
    let cert = ops_support::scratch_file("served.crt");
    let key = ops_support::scratch_file("served.key");
    std::fs::write(&cert, &cert_a).unwrap();
    std::fs::write(&key, &key_a).unwrap();
    let ports = Ports::free();
    let tls = format!(
        "  tls:\n    mode: optional\n    cert: {}\n    key: {}\n",
        cert.display(),
        key.display()
    );
    let proxy = ProxyProcess::start(&config_yaml(&cluster, ports, &tls), ports);
    proxy.wait_healthy(Duration::from_secs(10)).await;
    assert_eq!(
        served_subject(ports.listen).await,
        "subject=CN=rwsplit-cert-a"
    );

    // A session on TLS negotiated with certificate A.
    let ssl = integration_tests::mysql_async::SslOpts::default()
        .with_danger_accept_invalid_certs(true)
        .with_danger_skip_domain_validation(true);
    let opts = ops_support::app_opts(ports.listen).ssl_opts(Some(ssl));
    let mut session = integration_tests::mysql_async::Conn::new(opts)
        .await
        .expect("TLS client connects");
    session.query_drop("SET @kept = 7").await.expect("state");

    // Renewal: new files at the same paths, then SIGHUP.
    std::fs::write(&key, &key_b).unwrap();
    std::fs::write(&cert, &cert_b).unwrap();
    proxy.signal("HUP");
    wait_reloads(&proxy, "ok", 1.0).await;
    assert_eq!(
        served_subject(ports.listen).await,
        "subject=CN=rwsplit-cert-b"
    );
    let kept: Option<i64> = session
        .query_first("SELECT @kept")
        .await
        .expect("the TLS session survives the reload");
    assert_eq!(kept, Some(7));

    // A certificate that does not load rejects the reload; the running acceptor stays.
    std::fs::write(&cert, b"not a certificate\n").unwrap();
    proxy.signal("HUP");
    wait_reloads(&proxy, "error", 1.0).await;
    let log = proxy.log_text();
    let line = log
        .lines()
        .find(|l| l.contains("reload rejected"))
        .unwrap_or_else(|| panic!("no rejection logged:\n{log}"));
    assert!(line.contains("proxy.tls.cert"), "{line}");
    assert_eq!(
        served_subject(ports.listen).await,
        "subject=CN=rwsplit-cert-b"
    );
    let one: Option<i64> = session
        .query_first("SELECT 1")
        .await
        .expect("still serving");
    assert_eq!(one, Some(1));
    let _ = std::fs::remove_file(cert);
    let _ = std::fs::remove_file(key);
}

/// Waits until `rwsplit_config_reloads_total{result}` reaches `want`.
async fn wait_reloads(proxy: &ProxyProcess, result: &str, want: f64) {
    let series = format!("rwsplit_config_reloads_total{{result=\"{result}\"}}");
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let (_, metrics) = proxy.get("/metrics").await;
        if ops_support::metric(&metrics, &series) == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{series} never reached {want}:\n{metrics}\n{}",
            proxy.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
