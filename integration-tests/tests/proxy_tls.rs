//! Client TLS (rustls) and caching_sha2_password through the proxy: `required` refuses plain
//! clients with ERR 3159, TLS clients get a cipher, and caching_sha2 logs in on the fast path
//! (with and without TLS) and rejects a wrong password with 1045.

mod proxy_support;

use proxy_support::{cluster, run_ok, start_with};

/// A self-signed certificate for 127.0.0.1 made with the openssl CLI; returns (cert, key).
fn test_cert() -> (String, String) {
    let dir = integration_tests::repo_root().join(".scratch/tls");
    std::fs::create_dir_all(&dir).unwrap();
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    if !cert.exists() || !key.exists() {
        let st = std::process::Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "30",
                "-subj",
                "/CN=127.0.0.1",
            ])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output()
            .expect("openssl runs");
        assert!(
            st.status.success(),
            "{}",
            String::from_utf8_lossy(&st.stderr)
        );
    }
    (cert.display().to_string(), key.display().to_string())
}

fn tls_section(mode: &str) -> String {
    let (cert, key) = test_cert();
    format!("  tls:\n    mode: {mode}\n    cert: {cert}\n    key: {key}\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_required_serves_tls_clients_and_refuses_plain_ones() {
    let Some(c) = cluster("tls_required_serves_tls_clients_and_refuses_plain_ones") else {
        return;
    };
    let p = start_with(&c, &tls_section("required")).await;
    let port = p.port.to_string();
    let base = [
        "-h",
        "127.0.0.1",
        "-P",
        &port,
        "-u",
        "app",
        "-papp-password",
        "--protocol=tcp",
        "rwsplit_test",
    ];
    let out = run_ok(
        "mariadb",
        &[&base[..], &["--ssl", "-e", "status; SELECT @@port"]].concat(),
    )
    .await;
    assert!(out.contains("Cipher in use"), "TLS in use:\n{out}");
    let plain = tokio::process::Command::new("mariadb")
        .args(base)
        .args(["--skip-ssl", "-e", "SELECT 1"])
        .output()
        .await
        .unwrap();
    let err = String::from_utf8_lossy(&plain.stderr);
    assert!(!plain.status.success());
    assert!(
        err.contains("3159") && err.contains("proxy.tls.mode"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caching_sha2_fast_path_with_and_without_tls() {
    let Some(c) = cluster("caching_sha2_fast_path_with_and_without_tls") else {
        return;
    };
    let py = integration_tests::repo_root().join(".scratch/venv-clients/bin/python");
    if !py.exists() {
        let ok = std::process::Command::new("bash")
            .arg(integration_tests::repo_root().join("integration-tests/clients/install.sh"))
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !ok {
            assert!(std::env::var_os("CI").is_none(), "client install failed");
            eprintln!("!!!!!!!! SKIPPED caching_sha2 test: no python clients");
            return;
        }
    }
    let p = start_with(&c, &tls_section("optional")).await;
    let port = p.port.to_string();
    let script = integration_tests::repo_root().join("integration-tests/clients/sha2_check.py");
    let script = script.to_string_lossy();
    let py = py.to_string_lossy();
    for mode in ["plain", "tls"] {
        let out = run_ok(
            &py,
            &[&script, &port, integration_tests::APP_PASSWORD, mode],
        )
        .await;
        let line = out.trim();
        assert!(line.starts_with("ok "), "{mode}: {line}");
        let served: u16 = line[3..].parse().unwrap();
        assert!(c.replica_ports().contains(&served), "{mode}: {line}");
        let out = run_ok(&py, &[&script, &port, "wrong", mode]).await;
        assert_eq!(out.trim(), "denied 1045", "{mode}");
    }
}
