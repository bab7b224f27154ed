//! Test harness: gives each end-to-end test a real MariaDB primary with replicas, and the fault
//! controls (stop, kill, pause a server; stop a replica's SQL thread; delay a replica) that tests
//! of routing and lag need.
//!
//! Topologies come from `scripts/cluster.sh`, so tests run against exactly what `make cluster-up`
//! and `make demo` give users. `Cluster::shared()` reuses one topology for tests that do not harm
//! it; `Cluster::private()` starts a fresh one on free ports for tests that break things, and
//! removes it when dropped.
//!
//! Servers that cannot be had are a skip with a loud message on a developer's machine, and a
//! failure under CI (`CI` or `RWSPLIT_REQUIRE_CLUSTER` set): CI must test against real servers.

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub use mysql_async;

/// Application account created on every server by the cluster script (no SUPER: replicas'
/// `read_only` rejects its writes, which is how misrouting shows up).
pub const APP_USER: &str = "app";
pub const APP_PASSWORD: &str = "app-password";
/// Monitor / replication account.
pub const MONITOR_USER: &str = "rwsplit_monitor";
pub const MONITOR_PASSWORD: &str = "monitor-password";
/// Superuser account for fault injection.
pub const ADMIN_USER: &str = "admin";
pub const ADMIN_PASSWORD: &str = "admin-password";
/// Database created on the primary (and replicated).
pub const TEST_DB: &str = "rwsplit_test";

/// What went wrong setting up or driving a topology.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    #[error("scripts/cluster.sh {action} failed (exit {code:?}): {output}")]
    Script {
        action: String,
        code: Option<i32>,
        output: String,
    },
    #[error("could not run {what}: {source}")]
    Spawn {
        what: String,
        source: std::io::Error,
    },
    #[error("no free port range for a private topology")]
    NoFreePorts,
    #[error("server {index} has no pid file (is it running?)")]
    NoPid { index: usize },
    #[error("database error on server {index}: {source}")]
    Sql {
        index: usize,
        source: mysql_async::Error,
    },
    #[error("timed out after {0:?}: {1}")]
    Timeout(Duration, String),
    #[error("{0} not found at {1}: run `cargo build --workspace --bins` first (make test does)")]
    MissingBinary(String, PathBuf),
}

pub type Result<T, E = HarnessError> = std::result::Result<T, E>;

/// One running topology: server 0 is the primary, 1..=replicas the replicas.
#[derive(Debug)]
pub struct Cluster {
    base_port: u16,
    replicas: usize,
    dir: PathBuf,
    /// Private topologies are torn down on drop; the shared one stays up for the next test.
    owned: bool,
    port_claim: Option<PathBuf>,
    /// Servers accept TLS (`TLS=1` for the cluster script).
    tls: bool,
}

/// Serialises `cluster.sh up` for the shared topology across the tests of one binary.
static SHARED_UP: Mutex<()> = Mutex::new(());

impl Cluster {
    /// The shared topology (port from `RWSPLIT_TEST_BASE_PORT`, default 3310), started if needed.
    /// For tests that leave every server running and replicating.
    pub fn shared() -> Result<Cluster> {
        let base_port = std::env::var("RWSPLIT_TEST_BASE_PORT")
            .ok()
            .and_then(|p| p.parse().ok())
            .unwrap_or(3310);
        let cluster = Cluster {
            base_port,
            replicas: 2,
            dir: repo_root().join(format!(".scratch/cluster-{base_port}")),
            owned: false,
            port_claim: None,
            tls: false,
        };
        let _guard = SHARED_UP.lock().unwrap_or_else(|e| e.into_inner());
        cluster.script("up")?;
        Ok(cluster)
    }

    /// A fresh topology with two replicas on free ports, removed when dropped.
    pub fn private() -> Result<Cluster> {
        Self::private_with(2)
    }

    /// A fresh topology with `replicas` replicas on free ports, removed when dropped.
    pub fn private_with(replicas: usize) -> Result<Cluster> {
        Self::private_inner(replicas, false)
    }

    /// A fresh topology whose servers accept TLS with a certificate for 127.0.0.1 signed by
    /// [`Cluster::tls_ca`], removed when dropped.
    pub fn private_tls(replicas: usize) -> Result<Cluster> {
        Self::private_inner(replicas, true)
    }

    fn private_inner(replicas: usize, tls: bool) -> Result<Cluster> {
        let (base_port, claim) = claim_ports(replicas)?;
        let cluster = Cluster {
            base_port,
            replicas,
            dir: repo_root().join(format!(".scratch/cluster-{base_port}")),
            owned: true,
            port_claim: Some(claim),
            tls,
        };
        cluster.script("up")?;
        Ok(cluster)
    }

    /// Like [`Cluster::shared`], but when servers cannot be had outside CI, prints a loud
    /// message and returns `None` so the test can return early. Under CI it panics.
    pub fn shared_or_skip(test: &str) -> Option<Cluster> {
        skip_or_fail(test, Self::shared())
    }

    /// Like [`Cluster::private`], with the same skip rule as [`Cluster::shared_or_skip`].
    pub fn private_or_skip(test: &str) -> Option<Cluster> {
        skip_or_fail(test, Self::private())
    }

    pub fn base_port(&self) -> u16 {
        self.base_port
    }
    pub fn replicas(&self) -> usize {
        self.replicas
    }
    /// Port of server `index` (0 = primary).
    pub fn port(&self, index: usize) -> u16 {
        self.base_port + index as u16
    }
    pub fn primary_port(&self) -> u16 {
        self.base_port
    }
    /// Ports of the replicas, in order.
    pub fn replica_ports(&self) -> Vec<u16> {
        (1..=self.replicas).map(|i| self.port(i)).collect()
    }
    /// The CA certificate (PEM) that signs a TLS topology's server certificate.
    pub fn tls_ca(&self) -> PathBuf {
        self.dir.join("tls/ca.pem")
    }

    /// The scratch folder holding the servers' data, logs and pid files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Connection URL for the application user on server `index`.
    pub fn app_url(&self, index: usize) -> String {
        url(APP_USER, APP_PASSWORD, self.port(index))
    }
    /// Connection URL for the admin user on server `index`.
    pub fn admin_url(&self, index: usize) -> String {
        url(ADMIN_USER, ADMIN_PASSWORD, self.port(index))
    }

    /// A superuser connection to server `index`.
    pub async fn admin(&self, index: usize) -> Result<Conn> {
        let opts = Opts::from_url(&self.admin_url(index)).map_err(|e| HarnessError::Sql {
            index,
            source: e.into(),
        })?;
        Conn::new(opts)
            .await
            .map_err(|source| HarnessError::Sql { index, source })
    }

    /// Runs statements as the admin on server `index`.
    pub async fn admin_exec(&self, index: usize, sql: &str) -> Result<()> {
        let mut conn = self.admin(index).await?;
        conn.query_drop(sql)
            .await
            .map_err(|source| HarnessError::Sql { index, source })?;
        conn.disconnect().await.ok();
        Ok(())
    }

    /// The server's GTID position: the binlog position on the primary, the applied
    /// (`gtid_slave_pos`) position on a replica.
    pub async fn gtid_position(&self, index: usize) -> Result<String> {
        let var = if index == 0 {
            "@@gtid_binlog_pos"
        } else {
            "@@gtid_slave_pos"
        };
        let mut conn = self.admin(index).await?;
        let pos: Option<String> = conn
            .query_first(format!("SELECT {var}"))
            .await
            .map_err(|source| HarnessError::Sql { index, source })?;
        conn.disconnect().await.ok();
        Ok(pos.unwrap_or_default())
    }

    /// Waits until every replica has applied at least what the primary had logged when the
    /// wait began (other tests may keep writing meanwhile, so "at least", not "equal").
    pub async fn wait_replicas_caught_up(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let want = self.gtid_position(0).await?;
        for i in 1..=self.replicas {
            loop {
                if gtid_covers(&self.gtid_position(i).await?, &want) {
                    break;
                }
                if Instant::now() > deadline {
                    return Err(HarnessError::Timeout(
                        timeout,
                        format!("replica {i} did not reach {want}"),
                    ));
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        Ok(())
    }

    /// An external failover by hand, as an operator (or Orchestrator) does it: `old` set
    /// read-only, `new` promoted once it has applied everything (`STOP SLAVE; RESET SLAVE ALL;
    /// read_only=0`), then every other server, `old` included, pointed at `new` by GTID.
    /// Returns the moment `new` became writable.
    pub async fn promote(&self, old: usize, new: usize) -> Result<Instant> {
        self.admin_exec(old, "SET GLOBAL read_only = 1").await?;
        self.wait_replicas_caught_up(Duration::from_secs(10))
            .await?;
        self.admin_exec(new, "STOP SLAVE; RESET SLAVE ALL; SET GLOBAL read_only = 0")
            .await?;
        let writable_at = Instant::now();
        for i in (0..=self.replicas).filter(|&i| i != new) {
            // The old primary has no replica position of its own: it starts from its binlog.
            let use_gtid = if i == old { "current_pos" } else { "slave_pos" };
            self.admin_exec(
                i,
                &format!(
                    "STOP SLAVE; CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT={}, \
                     MASTER_USER='{MONITOR_USER}', MASTER_PASSWORD='{MONITOR_PASSWORD}', \
                     MASTER_USE_GTID={use_gtid}, MASTER_CONNECT_RETRY=1; START SLAVE",
                    self.port(new)
                ),
            )
            .await?;
        }
        Ok(writable_at)
    }

    /// Stops a replica's SQL (apply) thread; its IO thread keeps receiving.
    pub async fn stop_sql_thread(&self, index: usize) -> Result<()> {
        self.admin_exec(index, "STOP SLAVE SQL_THREAD").await
    }
    pub async fn start_sql_thread(&self, index: usize) -> Result<()> {
        self.admin_exec(index, "START SLAVE SQL_THREAD").await
    }
    /// Makes a replica apply each transaction `seconds` after the primary committed it.
    pub async fn set_replica_delay(&self, index: usize, seconds: u32) -> Result<()> {
        self.admin_exec(
            index,
            &format!("STOP SLAVE; CHANGE MASTER TO MASTER_DELAY={seconds}; START SLAVE"),
        )
        .await
    }

    /// Stops server `index` cleanly (SIGTERM) and waits for it to exit.
    pub fn stop_server(&self, index: usize) -> Result<()> {
        let pid = self.pid(index)?;
        signal(pid, "CONT")?;
        signal(pid, "TERM")?;
        wait_exit(pid, Duration::from_secs(30))
    }

    /// Kills server `index` (SIGKILL), as a crash would.
    pub fn kill_server(&self, index: usize) -> Result<()> {
        let pid = self.pid(index)?;
        signal(pid, "KILL")?;
        wait_exit(pid, Duration::from_secs(10))
    }

    /// Starts every stopped server of this topology again and waits for replication.
    pub fn start_servers(&self) -> Result<()> {
        self.script("up")
    }

    /// Freezes server `index` (SIGSTOP): it holds its connections but answers nothing.
    pub fn pause_server(&self, index: usize) -> Result<()> {
        signal(self.pid(index)?, "STOP")
    }
    /// Resumes a paused server (SIGCONT).
    pub fn resume_server(&self, index: usize) -> Result<()> {
        signal(self.pid(index)?, "CONT")
    }

    /// The pid of server `index`, from its pid file.
    pub fn pid(&self, index: usize) -> Result<u32> {
        let file = self.dir.join(format!("server{index}/mysqld.pid"));
        std::fs::read_to_string(&file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or(HarnessError::NoPid { index })
    }

    /// A YAML configuration for this topology, in the format of `examples/local-cluster.yaml`:
    /// replica 1 in `zone-a` (the proxy's location), the others in `zone-b`.
    pub fn config_yaml(
        &self,
        proxy_port: u16,
        proxy_http_port: u16,
        sidecar_http_port: u16,
    ) -> String {
        let mut servers = format!(
            "  - {{ name: primary, host: 127.0.0.1, port: {}, role: primary, location: zone-a }}\n",
            self.port(0)
        );
        for i in 1..=self.replicas {
            let zone = if i == 1 { "zone-a" } else { "zone-b" };
            servers.push_str(&format!(
                "  - {{ name: replica{i}, host: 127.0.0.1, port: {}, role: replica, location: {zone} }}\n",
                self.port(i)
            ));
        }
        format!(
            "location: zone-a\nservers:\n{servers}routing:\n  max_lag_ms: 1000\n  lag_recovery_ms: 500\n  location_fallback: [zone-b]\n\
             monitor:\n  user: {MONITOR_USER}\n  password: {MONITOR_PASSWORD}\n\
             proxy:\n  listen: 127.0.0.1:{proxy_port}\n  http_listen: 127.0.0.1:{proxy_http_port}\n  monitor_interval_ms: 200\n  users:\n    - name: {APP_USER}\n      password: {APP_PASSWORD}\n  lag_source:\n    sidecar:\n      url: http://127.0.0.1:{sidecar_http_port}/lag\n\
             sidecar:\n  http_listen: 127.0.0.1:{sidecar_http_port}\n  server_id: {}\n  poll_interval_ms: 100\n",
            4000 + self.base_port as u32
        )
    }

    fn script(&self, action: &str) -> Result<()> {
        let out = Command::new("bash")
            .arg(repo_root().join("scripts/cluster.sh"))
            .arg(action)
            .env("BASE_PORT", self.base_port.to_string())
            .env("REPLICAS", self.replicas.to_string())
            .env("CLUSTER_DIR", &self.dir)
            .env("TLS", if self.tls { "1" } else { "0" })
            .output()
            .map_err(|source| HarnessError::Spawn {
                what: "scripts/cluster.sh".into(),
                source,
            })?;
        if !out.status.success() {
            return Err(HarnessError::Script {
                action: action.into(),
                code: out.status.code(),
                output: format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ),
            });
        }
        Ok(())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.owned {
            if let Err(e) = self.script("down") {
                eprintln!(
                    "warning: tearing down topology on port {}: {e}",
                    self.base_port
                );
            }
        }
        if let Some(claim) = &self.port_claim {
            let _ = std::fs::remove_file(claim);
        }
    }
}

/// Whether the MariaDB GTID position `have` (`domain-server-seq,…`) includes every domain's
/// sequence number in `want`. Positions in another format (MySQL GTID sets) must match exactly.
pub fn gtid_covers(have: &str, want: &str) -> bool {
    fn parse(pos: &str) -> Option<Vec<(u32, u64)>> {
        pos.split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| {
                let mut parts = p.split('-');
                let domain = parts.next()?.parse().ok()?;
                let _server: u32 = parts.next()?.parse().ok()?;
                let seq = parts.next()?.parse().ok()?;
                parts.next().is_none().then_some((domain, seq))
            })
            .collect()
    }
    match (parse(have), parse(want)) {
        (Some(have), Some(want)) => want
            .iter()
            .all(|(d, seq)| have.iter().any(|(hd, hs)| hd == d && hs >= seq)),
        _ => have == want,
    }
}

/// The repository root (this crate's parent folder).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(".."))
}

/// A workspace binary (e.g. `rwsplit-proxy`), built by `cargo build --workspace --bins`.
pub fn binary(name: &str) -> Result<PathBuf> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"));
    let path = target.join("debug").join(name);
    if path.exists() {
        Ok(path)
    } else {
        Err(HarnessError::MissingBinary(name.into(), path))
    }
}

/// A TCP port on 127.0.0.1 that nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// A `mysql://` URL on loopback.
pub fn url(user: &str, password: &str, port: u16) -> String {
    format!("mysql://{user}:{password}@127.0.0.1:{port}/{TEST_DB}")
}

fn skip_or_fail(test: &str, result: Result<Cluster>) -> Option<Cluster> {
    match result {
        Ok(c) => Some(c),
        Err(e) => {
            let required = std::env::var_os("CI").is_some()
                || std::env::var_os("RWSPLIT_REQUIRE_CLUSTER").is_some();
            if required {
                panic!("{test}: a real MariaDB topology is required here but could not be started: {e}");
            }
            eprintln!(
                "\n!!!!!!!! SKIPPED {test}: no MariaDB topology could be started: {e}\n\
                 !!!!!!!! install mariadb-server (make test does) to run it\n"
            );
            None
        }
    }
}

/// Finds a base port with `replicas + 1` free ports after it and claims it with a lock file, so
/// concurrent tests (and concurrent test binaries) never share a private topology.
fn claim_ports(replicas: usize) -> Result<(u16, PathBuf)> {
    let claims = repo_root().join(".scratch/port-claims");
    std::fs::create_dir_all(&claims).map_err(|source| HarnessError::Spawn {
        what: "mkdir .scratch/port-claims".into(),
        source,
    })?;
    let start = 3400 + (std::process::id() % 50) as u16 * 10;
    for step in 0..60u16 {
        let base = 3400 + (start - 3400 + step * 10) % 600;
        let claim = claims.join(base.to_string());
        if let Ok(text) = std::fs::read_to_string(&claim) {
            let holder_alive = text
                .trim()
                .parse::<u32>()
                .map(|pid| Path::new(&format!("/proc/{pid}")).exists())
                .unwrap_or(false);
            if holder_alive {
                continue;
            }
            let _ = std::fs::remove_file(&claim);
        }
        let ports_free =
            (0..=replicas as u16).all(|i| TcpListener::bind(("127.0.0.1", base + i)).is_ok());
        if !ports_free {
            continue;
        }
        // The claim appears with its holder's pid already in it (written aside, then hard-linked
        // into place, which fails if a claim exists): a claim created empty and filled after
        // looked stale to a concurrent test in that instant, which removed it and took the same
        // ports, so two topologies shared one set of servers.
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let tmp = claims.join(format!(
            ".{base}.{}.{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        if std::fs::write(&tmp, std::process::id().to_string()).is_err() {
            continue;
        }
        let linked = std::fs::hard_link(&tmp, &claim);
        let _ = std::fs::remove_file(&tmp);
        if linked.is_ok() {
            return Ok((base, claim));
        }
    }
    Err(HarnessError::NoFreePorts)
}

fn signal(pid: u32, sig: &str) -> Result<()> {
    let status = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .map_err(|source| HarnessError::Spawn {
            what: "kill".into(),
            source,
        })?;
    if status.success() {
        Ok(())
    } else {
        Err(HarnessError::Timeout(
            Duration::ZERO,
            format!("kill -{sig} {pid} failed"),
        ))
    }
}

fn wait_exit(pid: u32, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while Path::new(&format!("/proc/{pid}")).exists() {
        if Instant::now() > deadline {
            return Err(HarnessError::Timeout(
                timeout,
                format!("pid {pid} still running"),
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

#[cfg(test)]
mod test {
    use super::gtid_covers;

    #[test]
    fn gtid_positions_cover_per_domain() {
        assert!(gtid_covers("0-1-10", "0-1-10"));
        assert!(gtid_covers("0-1-12", "0-1-10"));
        assert!(!gtid_covers("0-1-9", "0-1-10"));
        assert!(gtid_covers("0-1-10,1-2-5", "0-1-10"));
        assert!(!gtid_covers("1-2-50", "0-1-10"));
        assert!(gtid_covers("0-1-3", ""));
        assert!(!gtid_covers(
            "3E11FA47-71CA-11E1-9E33-C80AA9429562:1-5",
            "3E11FA47-71CA-11E1-9E33-C80AA9429562:1-6"
        ));
    }
}
