//! The `rwsplit-binlog-reader` command line as an operator meets it: `--check-config`, clear
//! one-line errors, and an unreachable primary that is retried rather than fatal. No database
//! servers are needed.

use integration_tests::{binary, free_port};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn sidecar() -> Command {
    Command::new(binary("rwsplit-binlog-reader").expect("sidecar binary built"))
}

fn write_config(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("rwsplit-binlog-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write config");
    path
}

fn config(primary_port: u16, http_port: u16) -> String {
    format!(
        "servers:\n  - {{name: primary, host: 127.0.0.1, port: {primary_port}, role: primary}}\n  \
         - {{name: replica1, host: 127.0.0.1, port: {}, role: replica}}\n\
         monitor:\n  user: rwsplit_monitor\n  password: monitor-password\n\
         sidecar:\n  http_listen: 127.0.0.1:{http_port}\n  server_id: 4999\n",
        free_port()
    )
}

#[test]
fn binlog_cli_check_config_accepts_a_good_file_and_names_the_bad_key() {
    let good = write_config("good.yaml", &config(3306, free_port()));
    let out = sidecar()
        .arg("--config")
        .arg(&good)
        .arg("--check-config")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "config OK");

    let bad = write_config(
        "bad.yaml",
        &config(3306, free_port()).replace("server_id:", "server_idd:"),
    );
    let out = sidecar()
        .arg("--config")
        .arg(&bad)
        .arg("--check-config")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(
        err.contains("bad.yaml") && err.contains("server_idd"),
        "{err}"
    );

    let env = write_config(
        "env.yaml",
        &config(3306, free_port()).replace(
            "password: monitor-password",
            "password_env: RWSPLIT_BINLOG_CLI_UNSET_VAR",
        ),
    );
    let out = sidecar()
        .arg("--config")
        .arg(&env)
        .arg("--check-config")
        .env_remove("RWSPLIT_BINLOG_CLI_UNSET_VAR")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("RWSPLIT_BINLOG_CLI_UNSET_VAR"), "{err}");
}

#[test]
fn binlog_cli_missing_file_is_one_clear_line() {
    let out = sidecar()
        .args(["--config", "/nonexistent/rwsplit.yaml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("/nonexistent/rwsplit.yaml") && err.contains("cannot read"),
        "{err}"
    );
}

#[test]
fn binlog_cli_help_and_version() {
    let out = sidecar().arg("--version").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("rwsplit-binlog-reader"));
    let out = sidecar().arg("--help").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("--check-config"));
}

#[test]
fn binlog_cli_unreachable_primary_is_retried_and_reported_unknown() {
    let http = free_port();
    let path = write_config("unreachable.yaml", &config(free_port(), http));
    let mut child = sidecar()
        .arg("--config")
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let (health, lag) = loop {
        if let (Some(h), Some(l)) = (http_get(http, "/healthz"), http_get(http, "/lag")) {
            if l.contains("cannot connect to the primary") {
                break (h, l);
            }
        }
        assert!(
            Instant::now() < deadline,
            "no report of the unreachable primary"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        health.starts_with("HTTP/1.0 503") || health.starts_with("HTTP/1.1 503"),
        "{health}"
    );
    assert!(lag.contains("\"connected\":false"), "{lag}");
    assert!(
        lag.contains("\"lag_ms\":null") && lag.contains("\"known\":false"),
        "{lag}"
    );
    // Still running: it keeps retrying with backoff.
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the sidecar must not exit"
    );
    child.kill().unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot connect to the primary"), "{err}");
}

fn http_get(port: u16, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}
