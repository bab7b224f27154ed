//! Context behaviour: admission, counters, breakers, publication and reload.

use super::*;

const YAML: &str = "servers:\n  - {name: p, host: 127.0.0.1, port: 3340, role: primary}\n  - {name: r1, host: 127.0.0.1, port: 3341, role: replica}\nmonitor: {user: m, password: x}\nproxy: {max_connections: 2}\n";

fn ctx() -> Arc<Context> {
    let c = Config::from_yaml("t.yaml", YAML).expect("valid");
    Context::new(PathBuf::from("t.yaml"), c)
}

#[test]
fn admission_stops_at_max_and_slots_come_back() {
    let ctx = ctx();
    let a = ctx.try_admit(2).expect("first");
    let _b = ctx.try_admit(2).expect("second");
    assert!(ctx.try_admit(2).is_none());
    drop(a);
    assert!(ctx.try_admit(2).is_some());
    assert_eq!(ctx.metrics.client_connections_total.get(), 3);
}

fn file_ctx(name: &str, text: &str) -> (Arc<Context>, PathBuf) {
    let path = std::env::temp_dir().join(format!("rwsplit-ctx-{}-{name}.yaml", std::process::id()));
    std::fs::write(&path, text).expect("write");
    let ctx = Context::new(path.clone(), load_config(&path).expect("valid"));
    (ctx, path)
}

#[test]
fn reload_swaps_servers_and_keeps_counters_of_servers_that_stay() {
    let (ctx, path) = file_ctx("swap", YAML);
    let r1 = ctx.backend("r1").expect("r1");
    let _guard = r1.begin();
    let without_primary_first = YAML
        .replace(
            "  - {name: p, host: 127.0.0.1, port: 3340, role: primary}\n",
            "",
        )
        .replace("role: replica}", "role: primary}");
    std::fs::write(&path, &without_primary_first).expect("write");
    ctx.reload().expect("valid reload");
    assert_eq!(ctx.config().servers.len(), 1);
    let r1_after = ctx.backend("r1").expect("r1 stays");
    assert_eq!(r1_after.index, 0, "indices follow the new list");
    assert_eq!(r1_after.in_flight(), 1, "running statements still counted");
    assert!(ctx.backend("p").is_none());
    assert_eq!(ctx.config_generation(), 1);
    assert_eq!(
        ctx.metrics.config_reloads.with_label_values(&["ok"]).get(),
        1
    );
    let _ = std::fs::remove_file(path);
}

#[test]
fn reload_keeps_the_last_writer_by_name() {
    let (ctx, path) = file_ctx("last-writer", YAML);
    // Mid-failover: no writer known, p the last one.
    let mut t = Topology::initial(&ctx.config());
    t.router.primary = None;
    t.router.last_writer = Some(0);
    t.write_block = Some("no writable primary".into());
    assert!(ctx.publish_topology(ctx.config_generation(), t));
    let p_last = "servers:\n  - {name: r1, host: 127.0.0.1, port: 3341, role: replica}\n  - {name: p, host: 127.0.0.1, port: 3340, role: primary}\nmonitor: {user: m, password: x}\nproxy: {max_connections: 2}\n";
    std::fs::write(&path, p_last).expect("write");
    ctx.reload().expect("valid reload");
    let t = ctx.topology();
    assert_eq!(t.primary(), None);
    assert_eq!(t.router.last_writer, Some(1), "p, at its new index");
    let _ = std::fs::remove_file(path);
}

#[test]
fn reload_rejects_broken_files_and_listen_changes_keeping_the_old_config() {
    let (ctx, path) = file_ctx("reject", YAML);
    std::fs::write(&path, "servers: [").expect("write");
    let err = ctx.reload().expect_err("broken").to_string();
    assert!(err.contains(&path.display().to_string()), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    std::fs::write(
        &path,
        YAML.replace("proxy: {", "proxy: {listen: '127.0.0.1:1', "),
    )
    .expect("write");
    let err = ctx.reload().expect_err("listen change").to_string();
    assert!(
        err.contains("proxy.listen") && err.contains("restart"),
        "{err}"
    );
    std::fs::write(
        &path,
        YAML.replace("proxy: {", "proxy: {worker_threads: 1, "),
    )
    .expect("write");
    let err = ctx.reload().expect_err("thread count change").to_string();
    assert!(
        err.contains("proxy.worker_threads") && err.contains("restart"),
        "{err}"
    );
    assert_eq!(ctx.config().servers.len(), 2, "old config kept");
    assert_eq!(ctx.config_generation(), 0);
    assert_eq!(
        ctx.metrics
            .config_reloads
            .with_label_values(&["error"])
            .get(),
        3
    );
    let _ = std::fs::remove_file(path);
}

#[test]
fn extension_is_created_once_per_type() {
    let ctx = ctx();
    let a = ctx.extension(|| 7u32);
    let b = ctx.extension(|| 9u32);
    assert_eq!((*a, *b), (7, 7));
    assert_eq!(*ctx.extension(|| String::from("s")), "s");
}

#[test]
fn in_flight_guard_counts() {
    let ctx = ctx();
    let b = ctx.backend("r1").expect("r1");
    let g1 = b.begin();
    let g2 = b.begin();
    assert_eq!(b.in_flight(), 2);
    drop(g1);
    drop(g2);
    assert_eq!(b.in_flight(), 0);
}

#[test]
fn breaker_opens_after_threshold_and_closes_on_success() {
    let ctx = ctx();
    let b = ctx.backend("p").expect("p");
    let policy = BreakerPolicy {
        failures: 3,
        cooldown_ms: 60_000,
    };
    for _ in 0..2 {
        b.report_failure(&policy);
    }
    assert!(b.breaker_allows());
    b.report_failure(&policy);
    assert!(!b.breaker_allows());
    assert_eq!(b.breaker_state(), "open");
    assert_eq!(b.metrics().breaker_open.get(), 1);
    b.report_success();
    assert!(b.breaker_allows());
    assert_eq!(b.breaker_state(), "closed");
    assert_eq!(b.metrics().breaker_open.get(), 0);
}

#[test]
fn stale_topology_is_not_published_after_a_reload() {
    let ctx = ctx();
    let gen = ctx.config_generation();
    let t = Topology::initial(&ctx.config());
    assert!(ctx.publish_topology(gen, t.clone()));
    ctx.config_generation.fetch_add(1, Ordering::Relaxed);
    assert!(!ctx.publish_topology(gen, t));
}

#[test]
fn initial_topology_trusts_configured_primary() {
    let ctx = ctx();
    assert_eq!(ctx.topology().primary(), Some(0));
    assert_eq!(ctx.primary().map(|b| b.index), Ok(0));
    assert_eq!(ctx.proxy_config().max_connections, 2);
}

#[test]
fn handshake_version_keeps_the_flavour_drivers_look_for() {
    assert_eq!(
        handshake_version("10.11.11-MariaDB-0+deb12u1"),
        "5.5.5-10.11.11-MariaDB-0+deb12u1-rwsplit"
    );
    assert_eq!(handshake_version("8.0.36"), "8.0.36-rwsplit");
    assert_eq!(handshake_version("8.4.3-log"), "8.4.3-log-rwsplit");
    // A MariaDB 5.5 has no prefix to add.
    assert_eq!(
        handshake_version("5.5.68-MariaDB"),
        "5.5.68-MariaDB-rwsplit"
    );
}

#[test]
fn advertised_version_follows_what_the_monitor_read() {
    let ctx = ctx();
    assert_eq!(
        ctx.advertised_version(),
        "8.0.35-rwsplit",
        "nothing read yet"
    );
    ctx.backend("r1")
        .expect("r1")
        .set_version("10.11.11-MariaDB-log");
    assert_eq!(
        ctx.advertised_version(),
        "5.5.5-10.11.11-MariaDB-log-rwsplit",
        "any server's version until a writer is known"
    );
}
