//! The local topology itself: what `make cluster-up` promises users (a write on the primary is
//! visible on every replica; replicas refuse the application's writes; faults can be injected).

use integration_tests::mysql_async::prelude::Queryable;
use integration_tests::{mysql_async, Cluster};
use std::time::Duration;

async fn app(cluster: &Cluster, index: usize) -> mysql_async::Conn {
    mysql_async::Conn::from_url(cluster.app_url(index))
        .await
        .expect("app user connects")
}

#[tokio::test]
async fn write_on_primary_is_visible_on_every_replica() {
    let Some(cluster) = Cluster::shared_or_skip("write_on_primary_is_visible_on_every_replica")
    else {
        return;
    };
    let mut primary = app(&cluster, 0).await;
    primary
        .query_drop(
            "CREATE TABLE IF NOT EXISTS harness_visibility (id INT PRIMARY KEY, note VARCHAR(40))",
        )
        .await
        .unwrap();
    let id: u32 = fastrand_id();
    primary
        .exec_drop(
            "INSERT INTO harness_visibility VALUES (?, 'from the primary')",
            (id,),
        )
        .await
        .unwrap();
    cluster
        .wait_replicas_caught_up(Duration::from_secs(10))
        .await
        .unwrap();
    for replica in 1..=cluster.replicas() {
        let mut conn = app(&cluster, replica).await;
        let note: Option<String> = conn
            .exec_first("SELECT note FROM harness_visibility WHERE id = ?", (id,))
            .await
            .unwrap();
        assert_eq!(
            note.as_deref(),
            Some("from the primary"),
            "replica {replica}"
        );
    }
}

#[tokio::test]
async fn replicas_reject_application_writes() {
    let Some(cluster) = Cluster::shared_or_skip("replicas_reject_application_writes") else {
        return;
    };
    let mut conn = app(&cluster, 1).await;
    let err = conn
        .query_drop("CREATE TABLE harness_should_fail (x INT)")
        .await
        .expect_err("a replica must refuse the app user's writes");
    assert!(
        err.to_string().contains("read-only") || err.to_string().contains("1290"),
        "{err}"
    );
}

#[tokio::test]
async fn stopped_sql_thread_leaves_the_replica_behind_until_restarted() {
    let Some(cluster) = Cluster::private_or_skip("stopped_sql_thread_leaves_the_replica_behind")
    else {
        return;
    };
    cluster.stop_sql_thread(1).await.unwrap();
    let mut primary = app(&cluster, 0).await;
    primary
        .query_drop("CREATE TABLE lagging (x INT)")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_ne!(
        cluster.gtid_position(1).await.unwrap(),
        cluster.gtid_position(0).await.unwrap(),
        "replica 1 must not apply while its SQL thread is stopped"
    );
    cluster.start_sql_thread(1).await.unwrap();
    cluster
        .wait_replicas_caught_up(Duration::from_secs(10))
        .await
        .unwrap();

    // A stopped server comes back with `start_servers`, and replication resumes.
    cluster.stop_server(2).unwrap();
    primary
        .query_drop("INSERT INTO lagging VALUES (1)")
        .await
        .unwrap();
    cluster.start_servers().unwrap();
    cluster
        .wait_replicas_caught_up(Duration::from_secs(20))
        .await
        .unwrap();
}

/// A row id unlikely to collide with an earlier run's against the same shared topology.
fn fastrand_id() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(1)
}

#[test]
fn down_leaves_no_process_or_port_behind() {
    let Some(cluster) = Cluster::private_or_skip("down_leaves_no_process_or_port_behind") else {
        return;
    };
    let pids: Vec<u32> = (0..=cluster.replicas())
        .map(|i| cluster.pid(i).unwrap())
        .collect();
    let ports: Vec<u16> = (0..=cluster.replicas()).map(|i| cluster.port(i)).collect();
    let dir = cluster.dir().to_path_buf();
    drop(cluster); // runs `scripts/cluster.sh down`
    for pid in pids {
        // A live database server with that pid: not a zombie awaiting its reaper (the servers
        // are detached, so init reaps them), and not a later process or thread reusing the id.
        let running_server = || {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let state = stat
                .rsplit(')')
                .next()
                .and_then(|r| r.split_whitespace().next());
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            let is_server = comm.starts_with("mariadbd") || comm.starts_with("mysqld");
            (is_server && !matches!(state, None | Some("Z") | Some("X"))).then_some(stat)
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while running_server().is_some() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        if let Some(stat) = running_server() {
            panic!("server pid {pid} still runs after cluster down: {stat}");
        }
    }
    for port in ports {
        assert!(
            std::net::TcpListener::bind(("127.0.0.1", port)).is_ok(),
            "port {port} is still taken after cluster down"
        );
    }
    assert!(!dir.exists(), "{} was not removed", dir.display());
}

/// Runs `scripts/cluster.sh up` with the given environment; returns (exit code, stdout + stderr).
fn cluster_up_with(env: &[(&str, String)]) -> (Option<i32>, String) {
    let mut cmd = std::process::Command::new("bash");
    cmd.arg(integration_tests::repo_root().join("scripts/cluster.sh"))
        .arg("up");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("bash runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

#[test]
fn a_taken_port_is_one_clear_line() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let scratch = integration_tests::repo_root().join(format!(".scratch/taken-port-{port}"));
    let (code, text) = cluster_up_with(&[
        ("BASE_PORT", port.to_string()),
        ("REPLICAS", "1".into()),
        ("CLUSTER_DIR", scratch.display().to_string()),
    ]);
    let _ = std::fs::remove_dir_all(&scratch);
    assert_eq!(code, Some(1), "{text}");
    assert_eq!(text.trim().lines().count(), 1, "one line expected: {text}");
    assert!(
        text.contains(&format!("port {port}")) && text.contains("already in use"),
        "{text}"
    );
    assert!(text.contains("BASE_PORT"), "says how to fix it: {text}");
}

#[test]
fn a_missing_server_binary_is_one_clear_line() {
    // A PATH with the shell tools the script needs but no mariadbd, mysqld or apt-get.
    let bin = integration_tests::repo_root().join(".scratch/path-without-server");
    std::fs::create_dir_all(&bin).unwrap();
    for tool in [
        "bash", "id", "dirname", "seq", "cat", "mkdir", "rm", "sleep", "grep",
    ] {
        let link = bin.join(tool);
        if !link.exists() {
            let target = ["/usr/bin", "/bin"]
                .iter()
                .map(|d| std::path::Path::new(d).join(tool))
                .find(|p| p.exists())
                .unwrap();
            std::os::unix::fs::symlink(target, &link).unwrap();
        }
    }
    let (code, text) = cluster_up_with(&[
        ("PATH", bin.display().to_string()),
        ("SERVER_PATH", bin.display().to_string()),
        ("BASE_PORT", integration_tests::free_port().to_string()),
    ]);
    assert_eq!(code, Some(1), "{text}");
    assert_eq!(text.trim().lines().count(), 1, "one line expected: {text}");
    assert!(text.contains("no mariadbd or mysqld found"), "{text}");
    assert!(text.contains("install"), "says how to fix it: {text}");
}
