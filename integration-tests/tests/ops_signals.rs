//! Process lifecycle of the real binary: SIGTERM lets running statements finish and then exits,
//! sessions still open at `shutdown_timeout_s` are closed, and SIGHUP reloads a changed config
//! without dropping sessions while a broken one is rejected and the running config stays.

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
