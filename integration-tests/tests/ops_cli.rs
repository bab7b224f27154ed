//! The command line users meet first: `--check-config` on good and broken files (exit code and
//! one clear line naming file, line and key; a client TLS certificate that does not load), and a
//! listen port that is already taken.

mod ops_support;

use ops_support::{run_cli, scratch_file, show};

const GOOD: &str = "location: zone-a
servers:
  - { name: primary, host: 127.0.0.1, port: 3340, role: primary }
  - { name: replica1, host: 127.0.0.1, port: 3341, role: replica }
  - { name: replica2, host: 127.0.0.1, port: 3342, role: replica }
routing:
  max_lag_ms: 1000
  lag_recovery_ms: 500
monitor:
  user: rwsplit_monitor
  password: monitor-password
proxy:
  listen: 127.0.0.1:16341
  http_listen: 127.0.0.1:19341
  users:
    - name: app
      password: app-password
    - name: reporting
      password_env: REPORTING_PASSWORD
";

fn write(name: &str, text: &str) -> String {
    let path = scratch_file(name);
    std::fs::write(&path, text).expect("write config");
    show(&path)
}

#[test]
fn check_config_accepts_a_good_file() {
    let file = write("good.yaml", GOOD);
    let (code, out, err) = run_cli(&["--config", &file, "--check-config"]);
    assert_eq!(code, Some(0), "stderr: {err}");
    assert_eq!(out.trim(), "config OK: 3 servers, 2 users");
}

#[test]
fn check_config_rejects_a_missing_file_in_one_line() {
    let file = show(&scratch_file("absent.yaml"));
    let (code, _, err) = run_cli(&["--config", &file, "--check-config"]);
    assert_eq!(code, Some(2));
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(err.contains(&file) && err.contains("cannot read"), "{err}");
}

#[test]
fn check_config_rejects_a_tls_certificate_that_does_not_load() {
    let cert = show(&scratch_file("absent-cert.pem"));
    let file = write(
        "tls.yaml",
        &GOOD.replace(
            "  users:\n",
            &format!("  tls: {{mode: optional, cert: {cert}, key: {cert}}}\n  users:\n"),
        ),
    );
    let (code, _, err) = run_cli(&["--config", &file, "--check-config"]);
    assert_eq!(code, Some(2));
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(
        err.contains(&file) && err.contains("proxy.tls.cert") && err.contains(&cert),
        "{err}"
    );
}

#[test]
fn check_config_rejects_a_backend_tls_ca_that_does_not_load() {
    let ca = show(&scratch_file("absent-ca.pem"));
    let file = write(
        "backend-tls.yaml",
        &GOOD.replace(
            "role: primary }",
            &format!("role: primary, tls: {{mode: required, ca: {ca}}} }}"),
        ),
    );
    let (code, _, err) = run_cli(&["--config", &file, "--check-config"]);
    assert_eq!(code, Some(2));
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(
        err.contains("servers[].tls.ca") && err.contains(&ca),
        "{err}"
    );
}

#[test]
fn check_config_names_file_line_and_key_of_an_unknown_key() {
    let file = write(
        "typo.yaml",
        &GOOD.replace("lag_recovery_ms", "lag_recovery_msec"),
    );
    let (code, _, err) = run_cli(&["--config", &file, "--check-config"]);
    assert_eq!(code, Some(2));
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(err.contains(&file), "{err}");
    assert!(err.contains("line 8"), "{err}");
    assert!(err.contains("lag_recovery_msec"), "{err}");
}

#[test]
fn check_config_names_the_key_of_an_invalid_value() {
    let file = write(
        "marks.yaml",
        &GOOD.replace("lag_recovery_ms: 500", "lag_recovery_ms: 5000"),
    );
    let (code, _, err) = run_cli(&["--config", &file, "--check-config"]);
    assert_eq!(code, Some(2));
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(err.contains(&format!("{file}:8")), "{err}");
    assert!(err.contains("routing.lag_recovery_ms"), "{err}");
}

#[test]
fn a_broken_file_stops_startup_too() {
    let file = write(
        "two-primaries.yaml",
        &GOOD.replace("role: replica", "role: primary"),
    );
    let (code, _, err) = run_cli(&["--config", &file]);
    assert_eq!(code, Some(2));
    assert!(err.contains("exactly one server"), "{err}");
}

#[test]
fn taken_listen_port_is_one_clear_line() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let http = integration_tests::free_port();
    let text = GOOD
        .replace("127.0.0.1:16341", &format!("127.0.0.1:{port}"))
        .replace("127.0.0.1:19341", &format!("127.0.0.1:{http}"));
    let file = write("taken.yaml", &text);
    let (code, _, err) = run_cli(&["--config", &file]);
    assert_eq!(code, Some(1), "{err}");
    assert_eq!(
        err.trim(),
        format!(
            "rwsplit-proxy: 127.0.0.1:{port} is already in use: stop the other process or change proxy.listen in {file}"
        )
    );
}

#[test]
fn version_and_help() {
    let (code, out, _) = run_cli(&["--version"]);
    assert_eq!(code, Some(0));
    assert!(out.starts_with("rwsplit-proxy "), "{out}");
    let (code, out, _) = run_cli(&["--help"]);
    assert_eq!(code, Some(0));
    assert!(
        out.contains("--check-config") && out.contains("--config"),
        "{out}"
    );
}
