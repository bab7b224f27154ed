//! Proxies that route on replica positions: with the embedded binlog reader, or following a
//! sidecar (`rwsplit-binlog-reader` process) started for the test topology. Both use the
//! default poll settings unless told otherwise, as users get them.

use super::{start_edited, Proxy};
use integration_tests::mysql_async::prelude::Queryable;
use integration_tests::Cluster;
use router::consistency::Position;
use std::time::{Duration, Instant};

/// A proxy with lag and positions from the embedded binlog reader (server id `server_id` + the
/// topology's base port), `routing` lines added under `routing:` and `sidecar` lines (e.g.
/// `"  poll_interval_ms: 10\n"`) under `sidecar:`; returns once every replica was polled.
pub async fn start_embedded(c: &Cluster, server_id: u32, routing: &str, sidecar: &str) -> Proxy {
    let routing = routing.to_string();
    let sidecar = sidecar.to_string();
    let server_id = server_id + u32::from(c.base_port());
    let p = start_edited(c, "", move |yaml: String| {
        format!(
            "{}sidecar:\n  server_id: {server_id}\n{sidecar}",
            yaml.replace("lag_source: seconds_behind_master", "lag_source: embedded")
                .replace("routing:\n", &format!("routing:\n{routing}"))
        )
    })
    .await;
    // Until the reader has polled every replica, no position is known.
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let known = p
            .ctx
            .lag_reader()
            .is_some_and(|r| r.positions().replicas.iter().all(|(_, a)| a.is_some()));
        if known {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    p
}

/// Waits (up to 10 s) until `p`'s sessions know that every replica applied everything the
/// primary has committed: after replicas catch up, how soon the proxy learns it depends on the
/// poll pace, which a test should not guess with a sleep.
pub async fn wait_positions_caught_up(p: &Proxy, c: &Cluster) {
    let mut admin = c.admin(0).await.expect("admin");
    let text: String = admin
        .query_first("SELECT @@gtid_binlog_pos")
        .await
        .expect("gtid_binlog_pos")
        .expect("a row");
    let need = Position::parse(&text).expect("a GTID position");
    let names: Vec<String> = (1..=c.replicas()).map(|i| format!("replica{i}")).collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !names.iter().all(|n| p.positions.covers(n, &need)) {
        assert!(
            Instant::now() < deadline,
            "the proxy never learnt that the replicas applied {text}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A sidecar (`rwsplit-binlog-reader`) for a topology, with the default poll settings; killed
/// on drop.
pub struct Sidecar {
    child: std::process::Child,
    pub port: u16,
    config: std::path::PathBuf,
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.config);
    }
}

/// Starts a sidecar for `c` (server id `server_id` + the topology's base port) and waits until
/// it has polled every replica.
pub async fn start_sidecar(c: &Cluster, server_id: u32) -> Sidecar {
    let port = integration_tests::free_port();
    let yaml = format!(
        "{}sidecar:\n  http_listen: 127.0.0.1:{port}\n  server_id: {}\n",
        super::config_yaml(c, integration_tests::free_port(), ""),
        server_id + u32::from(c.base_port())
    );
    let config = integration_tests::repo_root().join(format!(".scratch/sidecar-{port}.yaml"));
    std::fs::write(&config, yaml).expect("write sidecar config");
    let bin = integration_tests::binary("rwsplit-binlog-reader").expect("cargo build --bins");
    let child = std::process::Command::new(bin)
        .arg("--config")
        .arg(&config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn the sidecar");
    let s = Sidecar {
        child,
        port,
        config,
    };
    // Until it has polled every replica.
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        let url = format!("http://127.0.0.1:{port}/lag");
        if let Ok(snap) = proxy::health::lag::fetch_snapshot(&url, Duration::from_secs(1)).await {
            if snap.primary.connected
                && snap
                    .replicas
                    .values()
                    .all(|r| r.reachable && !r.applied_seq.is_empty())
            {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    s
}

/// A proxy following `sidecar`, `routing` lines added.
pub async fn start_following(c: &Cluster, sidecar: &Sidecar, routing: &str) -> Proxy {
    let url = format!("http://127.0.0.1:{}/lag", sidecar.port);
    let routing = routing.to_string();
    start_edited(c, "", move |yaml| {
        yaml.replace(
            "lag_source: seconds_behind_master",
            &format!("lag_source:\n    sidecar:\n      url: {url}"),
        )
        .replace("routing:\n", &format!("routing:\n{routing}"))
    })
    .await
}
