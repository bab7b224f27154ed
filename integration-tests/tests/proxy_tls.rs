//! Client TLS (rustls) and caching_sha2_password through the proxy: `required` refuses plain
//! clients with ERR 3159, TLS clients get a cipher, caching_sha2 logs in on the fast path
//! (with and without TLS) and rejects a wrong password with 1045, and full authentication on a
//! plain connection works with the proxy's RSA key (generated, or `proxy.rsa_private_key`).

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
    let Some(py) = python_clients() else {
        return;
    };
    let p = start_with(&c, &tls_section("optional")).await;
    let port = p.port.to_string();
    let script = integration_tests::repo_root().join("integration-tests/clients/sha2_check.py");
    let script = script.to_string_lossy();
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

/// The client venv's python (installed on demand, with what the scripts import), or `None`
/// (skip) when it cannot be installed outside CI.
fn python_clients() -> Option<String> {
    let root = integration_tests::repo_root();
    let ok = std::process::Command::new("bash")
        .arg(root.join("integration-tests/clients/install.sh"))
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        assert!(std::env::var_os("CI").is_none(), "client install failed");
        eprintln!("!!!!!!!! SKIPPED: no python clients");
        return None;
    }
    Some(
        root.join(".scratch/venv-clients/bin/python")
            .to_string_lossy()
            .into_owned(),
    )
}

/// Runs openssl with `args`, failing the test on error.
fn openssl(args: &[&str]) {
    let out = std::process::Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caching_sha2_full_authentication_with_the_proxy_rsa_key() {
    let Some(c) = cluster("caching_sha2_full_authentication_with_the_proxy_rsa_key") else {
        return;
    };
    let Some(py) = python_clients() else {
        return;
    };
    let script = integration_tests::repo_root().join("integration-tests/clients/sha2_rsa_check.py");
    let script = script.to_string_lossy();

    // No key configured: the proxy generates one; the client asks for it (0x02).
    let p = start_with(&c, "").await;
    let port = p.port.to_string();
    let out = run_ok(&py, &[&script, &port, integration_tests::APP_PASSWORD]).await;
    let words: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(words.first(), Some(&"ok"), "{out}");
    assert_eq!(words.get(2), Some(&"fetched"), "{out}");
    let served: u16 = words[1].parse().unwrap();
    assert!(c.replica_ports().contains(&served), "{out}");
    let out = run_ok(&py, &[&script, &port, "wrong-password"]).await;
    assert_eq!(out.trim(), "denied 1045");
    drop(p);

    // proxy.rsa_private_key: a client that already has the public key sends the encrypted
    // password at once, and only the configured key decrypts it.
    let dir = integration_tests::repo_root().join(format!(".scratch/rsa-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let key = dir.join("private.pem");
    let public = dir.join("public.pem");
    let (key_s, public_s) = (key.to_string_lossy(), public.to_string_lossy());
    openssl(&["genrsa", "-out", &key_s, "2048"]);
    openssl(&["rsa", "-in", &key_s, "-pubout", "-out", &public_s]);
    let p = start_with(&c, &format!("  rsa_private_key: {key_s}\n")).await;
    let port = p.port.to_string();
    let out = run_ok(
        &py,
        &[&script, &port, integration_tests::APP_PASSWORD, &public_s],
    )
    .await;
    assert!(
        out.starts_with("ok ") && out.trim().ends_with(" given"),
        "{out}"
    );
    let _ = std::fs::remove_dir_all(dir);
}
