//! The typed, validated YAML configuration shared by `rwsplit-proxy` and `rwsplit-binlog-reader`.
//!
//! Parsing is pure (text in, document out) so it lives here with the topology it describes;
//! the binaries read the file. Every error names the file, and where it can, the line and the key.

use serde::Deserialize;
use std::collections::HashSet;
use std::fmt;

mod audit;
mod users;
mod users_from_primary;
pub use audit::{AuditConfig, AuditStatements};
pub use users::PasswordHash;
pub use users_from_primary::{glob_match, UsersFromPrimary, ALWAYS_EXCLUDED};

/// What went wrong loading a configuration file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The YAML did not parse or did not match the expected shape.
    #[error("{file}: {message}")]
    Syntax { file: String, message: String },
    /// The document parsed but a value is not acceptable.
    #[error("{file}{line}: `{key}`: {message}", line = fmt_line(*.line))]
    Invalid {
        file: String,
        line: Option<usize>,
        key: String,
        message: String,
    },
}

fn fmt_line(line: Option<usize>) -> String {
    line.map(|l| format!(":{l}")).unwrap_or_default()
}

/// A server's role as configured. The health monitor may discover a different writer
/// (an external failover); this is where the topology starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Primary,
    Replica,
}

/// One database server.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// A unique, stable name used in metrics labels and logs.
    pub name: String,
    pub host: String,
    pub port: u16,
    pub role: Role,
    /// Where the server runs (zone, region, rack): reads prefer the proxy's own location.
    #[serde(default)]
    pub location: Option<String>,
    /// Relative share of reads among equally good replicas.
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// Overrides `routing.max_lag_ms` for this server.
    #[serde(default)]
    pub max_lag_ms: Option<u64>,
    /// Excluded from reads while true (drain for maintenance).
    #[serde(default)]
    pub maintenance: bool,
    /// TLS on every connection to this server: the data path, the health monitor and the
    /// binlog reader.
    #[serde(default)]
    pub tls: BackendTlsConfig,
}

/// Whether connections to a backend use TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackendTlsMode {
    /// Plain TCP.
    #[default]
    Disabled,
    /// TLS when the server offers it, plain otherwise.
    Preferred,
    /// TLS, or no connection.
    Required,
}

/// TLS towards one backend (`servers[].tls`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendTlsConfig {
    #[serde(default)]
    pub mode: BackendTlsMode,
    /// PEM file with the CA certificate(s) that sign the server's certificate.
    #[serde(default)]
    pub ca: Option<String>,
    /// Check the server's certificate against `ca` and its name against `host`. Turning it
    /// off encrypts without authenticating the server (a man in the middle goes unnoticed).
    #[serde(default = "default_true")]
    pub verify: bool,
}

impl Default for BackendTlsConfig {
    fn default() -> Self {
        Self {
            mode: BackendTlsMode::Disabled,
            ca: None,
            verify: true,
        }
    }
}

fn default_true() -> bool {
    true
}

fn default_weight() -> u32 {
    1
}

/// What to do with a read when no replica qualifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoReplicaPolicy {
    /// Send the read to the primary (and count the fallback).
    Primary,
    /// Answer the client with an error.
    Error,
}

/// Read/write splitting policy.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutingConfig {
    /// A replica whose lag exceeds this leaves the read rotation.
    #[serde(default = "default_max_lag_ms")]
    pub max_lag_ms: u64,
    /// ...and comes back only once its lag is below this (hysteresis). Must be ≤ max_lag_ms.
    #[serde(default = "default_lag_recovery_ms")]
    pub lag_recovery_ms: u64,
    /// Other locations to read from, in order, when the proxy's own has no healthy replica.
    #[serde(default)]
    pub location_fallback: Vec<String>,
    /// Never drain below this many serving replicas because of lag alone.
    #[serde(default = "default_min_serving")]
    pub min_serving: usize,
    #[serde(default = "default_no_replica")]
    pub no_replica: NoReplicaPolicy,
    /// `START TRANSACTION READ ONLY` may run on one replica for its whole duration.
    #[serde(default)]
    pub read_only_transactions_on_replica: bool,
    /// Consecutive connect/IO failures that eject a backend.
    #[serde(default = "default_breaker_failures")]
    pub breaker_failures: u32,
    /// How long an ejected backend rests before a trial request (half-open).
    #[serde(default = "default_breaker_cooldown_ms")]
    pub breaker_cooldown_ms: u64,
    /// How long replicas keep serving reads after the primary went down (DESIGN §3.1: a
    /// replica that applied all the primary sent stays in rotation); `None` = without limit.
    #[serde(default)]
    pub primary_down_read_ms: Option<u64>,
    /// What a replica read must have seen (DESIGN §5): `lag` (any replica within
    /// `max_lag_ms`), `read_your_writes`, `monotonic` or `causal`. Overridable per user and
    /// per statement (`/* rwsplit:consistency=… */`).
    #[serde(default)]
    pub consistency: crate::consistency::Level,
    /// How long a read may wait for a replica to apply what its consistency level requires
    /// before it goes to the primary instead; 0 = never wait.
    #[serde(default)]
    pub causal_wait_ms: u64,
    /// Replicas that must have applied a commit before the client gets its OK: `0` (off), a
    /// number, or `majority`. Per user and per statement (`/* rwsplit:quorum=… */`).
    #[serde(default)]
    pub write_quorum: crate::consistency::Quorum,
    /// How long a commit's OK waits for `write_quorum`.
    #[serde(default = "default_quorum_timeout_ms")]
    pub quorum_timeout_ms: u64,
    /// What the client gets when the quorum is not reached in time: `error` (ERR 1105 saying
    /// the write is committed on the primary but not yet on enough replicas) or `warning` (the
    /// OK with one more warning, which `SHOW WARNINGS` then tells; counted and logged).
    #[serde(default)]
    pub quorum_on_timeout: QuorumOnTimeout,
    /// What a replica must have done with a commit to count for `write_quorum`: `applied` it
    /// (its SQL thread did, so reads there see it) or merely `received` it (its IO thread wrote
    /// it to the relay log: durable on that replica, cheaper to wait for, not yet readable).
    #[serde(default)]
    pub quorum_wait_for: QuorumWaitFor,
    /// `manual` (default): a lost primary stays lost until someone promotes another server.
    /// `auto`: after `failover_after_ms` the proxy promotes the most advanced replica itself,
    /// unless that could lose a write it knows was committed (see docs/ADMIN.md).
    #[serde(default)]
    pub failover: FailoverMode,
    /// How long the primary must stay unreachable before `failover: auto` acts.
    #[serde(default = "default_failover_after_ms")]
    pub failover_after_ms: u64,
    /// How long a write waits for a running switchover (`POST /admin/switchover`) to finish
    /// before it is refused; the switchover gives up (and undoes its steps) within it too.
    #[serde(default = "default_switchover_write_wait_ms")]
    pub switchover_write_wait_ms: u64,
    /// A switchover is refused when its target's measured lag is above this.
    #[serde(default = "default_switchover_max_lag_ms")]
    pub switchover_max_lag_ms: u64,
}

/// `routing.quorum_on_timeout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QuorumOnTimeout {
    /// ERR 1105 in place of the OK (the write stays committed).
    #[default]
    Error,
    /// The OK with one warning more (`SHOW WARNINGS` tells it). `ok`, its former name, is
    /// still read.
    #[serde(alias = "ok")]
    Warning,
}

/// `routing.quorum_wait_for`: the replica position a write quorum counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QuorumWaitFor {
    /// The SQL thread applied the commit (`@@gtid_slave_pos`, `@@gtid_executed`).
    #[default]
    Applied,
    /// The IO thread received it (`Gtid_IO_Pos`, `Retrieved_Gtid_Set`).
    Received,
}

impl QuorumWaitFor {
    /// As written in the configuration (and in the proxy's timeout message).
    pub fn as_str(self) -> &'static str {
        match self {
            QuorumWaitFor::Applied => "applied",
            QuorumWaitFor::Received => "received",
        }
    }
}

fn default_quorum_timeout_ms() -> u64 {
    1000
}

/// Whether the proxy promotes a replica by itself when the primary stays down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailoverMode {
    /// Never: an operator (or Orchestrator, MHA...) promotes; the proxy follows.
    #[default]
    Manual,
    /// After `routing.failover_after_ms` of primary outage.
    Auto,
}

fn default_max_lag_ms() -> u64 {
    1000
}
fn default_lag_recovery_ms() -> u64 {
    500
}
fn default_min_serving() -> usize {
    0
}
fn default_no_replica() -> NoReplicaPolicy {
    NoReplicaPolicy::Primary
}
fn default_breaker_failures() -> u32 {
    3
}
fn default_breaker_cooldown_ms() -> u64 {
    5000
}
fn default_failover_after_ms() -> u64 {
    10_000
}
fn default_switchover_write_wait_ms() -> u64 {
    5000
}
fn default_switchover_max_lag_ms() -> u64 {
    1000
}

impl Default for RoutingConfig {
    fn default() -> Self {
        Self {
            max_lag_ms: default_max_lag_ms(),
            lag_recovery_ms: default_lag_recovery_ms(),
            location_fallback: Vec::new(),
            min_serving: default_min_serving(),
            no_replica: default_no_replica(),
            read_only_transactions_on_replica: false,
            breaker_failures: default_breaker_failures(),
            breaker_cooldown_ms: default_breaker_cooldown_ms(),
            primary_down_read_ms: None,
            consistency: crate::consistency::Level::Lag,
            causal_wait_ms: 0,
            write_quorum: crate::consistency::Quorum::Off,
            quorum_timeout_ms: default_quorum_timeout_ms(),
            quorum_on_timeout: QuorumOnTimeout::Error,
            quorum_wait_for: QuorumWaitFor::Applied,
            failover: FailoverMode::Manual,
            failover_after_ms: default_failover_after_ms(),
            switchover_write_wait_ms: default_switchover_write_wait_ms(),
            switchover_max_lag_ms: default_switchover_max_lag_ms(),
        }
    }
}

/// A secret given inline, from an environment variable, or from a file. Never logged.
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Secret {
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub password_env: Option<String>,
    #[serde(default)]
    pub password_file: Option<String>,
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Secret")
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("password_env", &self.password_env)
            .field("password_file", &self.password_file)
            .finish()
    }
}

/// The monitor account (a user name and where its password comes from) and how long one
/// health check may take.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    pub user: String,
    #[serde(flatten)]
    pub secret: Secret,
    /// How long one health check may take (the connect and, separately, its queries) before
    /// the server counts as hung: out of the read rotation at once, and statements waiting on
    /// it stop waiting. Apart from `proxy.pool.connect_timeout_ms` so that a hung server is
    /// noticed in well under a second without making slow networks' connects fail.
    #[serde(default = "default_monitor_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_monitor_timeout_ms() -> u64 {
    500
}

/// Below this a check cannot reach a loaded server even on loopback: every server would
/// look hung.
pub const MIN_MONITOR_TIMEOUT_MS: u64 = 10;
/// Above this a hung server holds sessions longer than any application waits.
pub const MAX_MONITOR_TIMEOUT_MS: u64 = 60_000;

/// An application user the proxy accepts and uses on the backends.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    pub name: String,
    #[serde(flatten)]
    pub secret: Secret,
    /// May `KILL` the sessions of other users through the proxy (as `PROCESS`/`CONNECTION
    /// ADMIN` allow on a server). Without it a user kills only its own sessions.
    #[serde(default)]
    pub admin: bool,
    /// This user's `routing.consistency` (unset: the routing default).
    #[serde(default)]
    pub consistency: Option<crate::consistency::Level>,
    /// This user's `routing.write_quorum` (unset: the routing default).
    #[serde(default)]
    pub write_quorum: Option<crate::consistency::Quorum>,
    /// A `mysql_native_password` hash (`*` + 40 hex digits) instead of a password: the
    /// proxy verifies clients against it and logs in to the backends with what a client's
    /// answer proves. Clients are asked for `mysql_native_password` (see [`PasswordHash`]).
    #[serde(default)]
    pub password_hash: Option<PasswordHash>,
    /// Client sessions this user may have open at once through this proxy (ERR 1226 beyond,
    /// as a server's `max_user_connections`). Unset: no limit but `proxy.max_connections`.
    #[serde(default)]
    pub max_connections: Option<usize>,
    /// Backend connections this user's sessions may hold on one server at once (within
    /// `proxy.pool.max_per_server`); beyond it a session waits in the pool's line, as for a
    /// full pool, up to `proxy.pool.queue_timeout_ms`. Unset: no limit of its own.
    #[serde(default)]
    pub max_backend_connections: Option<usize>,
}

/// Client-side TLS mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TlsMode {
    #[default]
    Off,
    Optional,
    Required,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    #[serde(default)]
    pub mode: TlsMode,
    #[serde(default)]
    pub cert: Option<String>,
    #[serde(default)]
    pub key: Option<String>,
}

/// Backend connection pools.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolConfig {
    #[serde(default = "default_pool_max")]
    pub max_per_server: usize,
    #[serde(default = "default_pool_idle_timeout_s")]
    pub idle_timeout_s: u64,
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Longest wait for a backend's answer to what the proxy asks itself (reset, state replay,
    /// lazy prepare). Client statements have no such limit: see `proxy.query_timeout_ms`.
    #[serde(default = "default_read_timeout_ms")]
    pub read_timeout_ms: u64,
    /// How long a session keeps a backend connection its state does not need after its last
    /// statement before giving it back to the pool. 0 (the default) gives it back as soon as a
    /// statement ends: statement-level multiplexing, whose hand-overs cost no reset.
    #[serde(default = "default_release_delay_ms")]
    pub release_delay_ms: u64,
    /// How long a session waits, in a first-come-first-served queue, for a connection to a
    /// server whose pool is full before its statement fails with ERR 1040. A full pool means
    /// the server is busy, not down: waiting briefly beats failing a web request.
    #[serde(default = "default_queue_timeout_ms")]
    pub queue_timeout_ms: u64,
}

/// A server runs about as many statements at once as it has cores; with statement-level
/// multiplexing a connection is busy only while a statement runs, so 64 (2–4× a 16–32-core
/// server) serves thousands of clients.
fn default_pool_max() -> usize {
    64
}
fn default_pool_idle_timeout_s() -> u64 {
    60
}
fn default_connect_timeout_ms() -> u64 {
    2000
}
fn default_read_timeout_ms() -> u64 {
    30_000
}
fn default_release_delay_ms() -> u64 {
    0
}
fn default_queue_timeout_ms() -> u64 {
    5000
}

/// Above this a client would wait longer than any application timeout for a pool place;
/// failing is more useful.
pub const MAX_QUEUE_TIMEOUT_MS: u64 = 600_000;

/// Above this, idle sessions would hold backend connections long enough to defeat pooling.
pub const MAX_RELEASE_DELAY_MS: u64 = 60_000;

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            max_per_server: default_pool_max(),
            idle_timeout_s: default_pool_idle_timeout_s(),
            connect_timeout_ms: default_connect_timeout_ms(),
            read_timeout_ms: default_read_timeout_ms(),
            release_delay_ms: default_release_delay_ms(),
            queue_timeout_ms: default_queue_timeout_ms(),
        }
    }
}

/// Where the proxy learns replica lag.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum LagSource {
    /// Run the binlog reader inside the proxy (default for a single proxy).
    #[default]
    Embedded,
    /// Follow a sidecar's `/lag` endpoint, e.g. `http://127.0.0.1:9034/lag` (`url`), or several
    /// (`urls`: for each replica the freshest known answer counts; with all of them gone the
    /// proxy uses its own monitor's Seconds_Behind_Master). Exactly one of the two.
    Sidecar {
        #[serde(default)]
        url: Option<String>,
        #[serde(default)]
        urls: Vec<String>,
    },
    /// Seconds_Behind_Master from `SHOW SLAVE STATUS` (whole seconds; a fallback).
    SecondsBehindMaster,
}

/// The proxy's own settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyConfig {
    #[serde(default = "default_listen")]
    pub listen: String,
    #[serde(default = "default_proxy_http")]
    pub http_listen: String,
    /// The version string clients see in the handshake. Unset: the writer's own version as
    /// the monitor reads it (drivers pick collations and features from this string, so it
    /// must match the backends' flavour).
    #[serde(default)]
    pub server_version: Option<String>,
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Close a client idle for longer than this.
    #[serde(default = "default_client_idle_timeout_s")]
    pub client_idle_timeout_s: u64,
    /// How long SIGTERM waits for sessions to finish.
    #[serde(default = "default_shutdown_timeout_s")]
    pub shutdown_timeout_s: u64,
    #[serde(default)]
    pub tls: TlsConfig,
    /// PEM RSA private key for `caching_sha2_password` full authentication without TLS; a
    /// key pair is generated at start when unset. Read once: changing it needs a restart.
    #[serde(default)]
    pub rsa_private_key: Option<String>,
    #[serde(default)]
    pub users: Vec<UserConfig>,
    /// Also serve the primary's own accounts (`mysql_native_password` ones), read with the
    /// monitor account and refreshed periodically; `users` wins for a name in both. Off when
    /// unset; see docs/USERS.md.
    #[serde(default)]
    pub users_from_primary: Option<UsersFromPrimary>,
    #[serde(default)]
    pub pool: PoolConfig,
    #[serde(default)]
    pub lag_source: LagSource,
    /// How often the health monitor checks each server.
    #[serde(default = "default_monitor_interval_ms")]
    pub monitor_interval_ms: u64,
    /// Largest packet a client may send, in bytes, as a server's `max_allowed_packet`: a
    /// bigger one is answered with ER_NET_PACKET_TOO_LARGE and the session closed. Also bounds
    /// the long data (`COM_STMT_SEND_LONG_DATA`) a session may buffer. A client's own declared
    /// maximum does not raise it.
    #[serde(default = "default_max_allowed_packet")]
    pub max_allowed_packet: usize,
    /// Prepared statements one session may hold at once (a server's `max_prepared_stmt_count`,
    /// per session here): each keeps its text in the proxy for lazy preparation elsewhere.
    #[serde(default = "default_max_prepared_statements")]
    pub max_prepared_statements: usize,
    /// Longest a client statement may run before the proxy cancels it on its server with
    /// `KILL QUERY` and answers ER_STATEMENT_TIMEOUT (1969). 0 (the default, as on a server):
    /// no limit.
    #[serde(default)]
    pub query_timeout_ms: u64,
    /// Longest a write to a client may make no progress (a client that stops reading its
    /// result) before the session is closed and its backend connection freed: a server's
    /// `net_write_timeout`. 0: no limit.
    #[serde(default = "default_client_write_timeout_ms")]
    pub client_write_timeout_ms: u64,
    /// Threads that run client sessions: 0 = one per CPU, but one thread on two CPUs or fewer.
    /// 1 runs everything on one thread with no cross-thread wake-ups, the cheapest per query
    /// when the proxy shares a small machine with the servers or clients it talks to.
    #[serde(default)]
    pub worker_threads: usize,
    /// Who may change the running proxy through `/admin/...` on `http_listen`.
    #[serde(default)]
    pub admin: AdminConfig,
    /// The audit log (off when unset); see docs/AUDIT.md.
    #[serde(default)]
    pub audit: Option<AuditConfig>,
}

/// The admin API's bearer token, given inline, from an environment variable or from a file
/// (read at each request, so a rotated file takes effect at once). Without one, only
/// loopback clients may use `/admin/...`; the read endpoints stay open either way.
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default)]
    pub token_env: Option<String>,
    #[serde(default)]
    pub token_file: Option<String>,
}

impl AdminConfig {
    /// The token's source as a [`Secret`], for the shared resolver.
    pub fn secret(&self) -> Secret {
        Secret {
            password: self.token.clone(),
            password_env: self.token_env.clone(),
            password_file: self.token_file.clone(),
        }
    }

    /// Whether any source is configured (an unset variable still counts: the API then
    /// refuses everyone rather than falling back to loopback-only).
    pub fn is_configured(&self) -> bool {
        self.token.is_some() || self.token_env.is_some() || self.token_file.is_some()
    }
}

impl fmt::Debug for AdminConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminConfig")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("token_env", &self.token_env)
            .field("token_file", &self.token_file)
            .finish()
    }
}

fn default_listen() -> String {
    "127.0.0.1:6033".into()
}
fn default_proxy_http() -> String {
    "127.0.0.1:9033".into()
}
fn default_max_connections() -> usize {
    10_000
}
fn default_client_idle_timeout_s() -> u64 {
    28_800
}
fn default_shutdown_timeout_s() -> u64 {
    30
}
/// A server's default `net_write_timeout` (60 s).
fn default_client_write_timeout_ms() -> u64 {
    60_000
}
/// MySQL 8's default `max_allowed_packet`.
fn default_max_allowed_packet() -> usize {
    64 << 20
}
/// `max_allowed_packet`'s range on a server: 1 KiB to 1 GiB.
pub const MIN_MAX_ALLOWED_PACKET: usize = 1024;
pub const MAX_MAX_ALLOWED_PACKET: usize = 1 << 30;
/// MySQL's default `max_prepared_stmt_count`.
fn default_max_prepared_statements() -> usize {
    16_382
}
/// The largest `max_prepared_stmt_count` a MySQL server accepts.
pub const MAX_PREPARED_STATEMENTS: usize = 1_048_576;
/// More session threads than this is a typo, not a tuning.
const MAX_WORKER_THREADS: usize = 1024;

fn default_monitor_interval_ms() -> u64 {
    500
}

/// The binlog reader's settings (sidecar binary or embedded in the proxy).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SidecarConfig {
    #[serde(default = "default_sidecar_http")]
    pub http_listen: String,
    /// The server id the reader presents to the primary; must be unique in the topology.
    #[serde(default = "default_reader_server_id")]
    pub server_id: u32,
    /// How often each replica's applied position is read while it has applied everything
    /// the binlog stream has seen (nothing to learn but that it is still there).
    #[serde(default = "default_poll_interval_ms")]
    pub poll_interval_ms: u64,
    /// How often a replica is polled while it is behind a commit the binlog stream saw in the
    /// last second (the reader learns every commit from the stream, so it knows when a replica
    /// has something to apply): positions are then at most this old when a replica catches
    /// up, so reads after writes stay on replicas. `0`, or anything at or above
    /// `poll_interval_ms`, polls every `poll_interval_ms` only.
    #[serde(default = "default_fast_poll_interval_ms")]
    pub fast_poll_interval_ms: u64,
    /// Transactions kept in the commit timeline before the oldest are dropped.
    #[serde(default = "default_timeline_capacity")]
    pub timeline_capacity: usize,
}

fn default_sidecar_http() -> String {
    "127.0.0.1:9034".into()
}
fn default_reader_server_id() -> u32 {
    4242
}
fn default_poll_interval_ms() -> u64 {
    100
}
fn default_fast_poll_interval_ms() -> u64 {
    5
}
fn default_timeline_capacity() -> usize {
    1_000_000
}

impl Default for SidecarConfig {
    fn default() -> Self {
        Self {
            http_listen: default_sidecar_http(),
            server_id: default_reader_server_id(),
            poll_interval_ms: default_poll_interval_ms(),
            fast_poll_interval_ms: default_fast_poll_interval_ms(),
            timeline_capacity: default_timeline_capacity(),
        }
    }
}

/// The whole configuration document.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// This proxy's location; reads prefer replicas here.
    #[serde(default)]
    pub location: Option<String>,
    /// The name of an environment variable that holds this proxy's location, instead of
    /// `location`: one file then serves proxies in every zone (on Kubernetes the variable comes
    /// from the node's `topology.kubernetes.io/zone` label). Read at start and on every reload;
    /// unset or empty is an error. Entries of `routing.location_fallback` equal to the value
    /// are skipped, so the same fallback list can name every zone.
    #[serde(default)]
    pub location_env: Option<String>,
    pub servers: Vec<ServerConfig>,
    #[serde(default)]
    pub routing: RoutingConfig,
    /// The account the monitor and binlog reader use (needs REPLICATION SLAVE, SLAVE MONITOR, BINLOG MONITOR).
    pub monitor: Credentials,
    /// The account a switchover or failover runs its statements as (`SET GLOBAL read_only`,
    /// `STOP SLAVE`, `RESET SLAVE ALL`, `CHANGE MASTER`): needs `SUPER` or, on MariaDB,
    /// `READ_ONLY ADMIN, REPLICATION SLAVE ADMIN, REPLICATION MASTER ADMIN, BINLOG ADMIN`.
    /// Default: the monitor account.
    #[serde(default)]
    pub switchover_account: Option<Account>,
    /// What replicas log in to a new primary with (`CHANGE MASTER TO MASTER_USER=...`): needs
    /// `REPLICATION SLAVE`. Default: the monitor account.
    #[serde(default)]
    pub replication: Option<Account>,
    pub proxy: Option<ProxyConfig>,
    #[serde(default)]
    pub sidecar: SidecarConfig,
    /// Query rules, first match wins (see [`crate::rules`] and docs/QUERY_RULES.md).
    #[serde(default)]
    pub query_rules: Vec<crate::rules::QueryRuleConfig>,
    /// `query_rules`, checked and compiled at load.
    #[serde(skip)]
    pub rules: crate::rules::QueryRules,
}

impl Config {
    /// Parses and validates a document; `file` names it in errors. `location_env` is read
    /// from the process environment.
    pub fn from_yaml(file: &str, text: &str) -> Result<Config, ConfigError> {
        Self::from_yaml_with_env(file, text, |name| std::env::var(name).ok())
    }

    /// [`Config::from_yaml`] with the environment given as a lookup function (tests, tools).
    pub fn from_yaml_with_env(
        file: &str,
        text: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let mut config: Config = serde_saphyr::from_str(text).map_err(|e| ConfigError::Syntax {
            file: file.to_string(),
            message: e.to_string(),
        })?;
        config.resolve_location_env(file, text, env)?;
        config.validate(file, text)?;
        config.rules = crate::rules::compile(&config.query_rules, file, text)?;
        Ok(config)
    }

    /// Replaces `location_env` by the location it names, before validation.
    fn resolve_location_env(
        &mut self,
        file: &str,
        text: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<(), ConfigError> {
        let Some(var) = self.location_env.as_deref() else {
            return Ok(());
        };
        let invalid = |message: String| ConfigError::Invalid {
            file: file.to_string(),
            line: find_line(text, "location_env:"),
            key: "location_env".into(),
            message,
        };
        if self.location.is_some() {
            return Err(invalid(
                "give only one of `location` and `location_env`".into(),
            ));
        }
        if var.is_empty() {
            return Err(invalid("must name an environment variable".into()));
        }
        let value = env(var)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .ok_or_else(|| {
                invalid(format!(
                    "environment variable {var} is not set or empty: set it to this proxy's \
                     location (on Kubernetes, from the node's topology.kubernetes.io/zone \
                     label), or give `location` instead"
                ))
            })?;
        self.routing.location_fallback.retain(|l| *l != value);
        self.location = Some(value);
        Ok(())
    }

    /// The user names of the proxy's own accounts (monitor, switchover, replication), which
    /// `proxy.users_from_primary` never serves to clients.
    pub fn service_accounts(&self) -> Vec<&str> {
        let mut names = vec![self.monitor.user.as_str()];
        names.extend(self.switchover_account.iter().map(|a| a.user.as_str()));
        names.extend(self.replication.iter().map(|a| a.user.as_str()));
        names
    }

    /// The server configured as primary.
    pub fn primary(&self) -> Option<&ServerConfig> {
        self.servers.iter().find(|s| s.role == Role::Primary)
    }

    fn validate(&self, file: &str, text: &str) -> Result<(), ConfigError> {
        let invalid = |key: String, needle: &str, message: String| ConfigError::Invalid {
            file: file.to_string(),
            line: find_line(text, needle),
            key,
            message,
        };
        if self.servers.is_empty() {
            return Err(invalid(
                "servers".into(),
                "servers:",
                "at least one server is required".into(),
            ));
        }
        let mut names = HashSet::new();
        let mut addrs = HashSet::new();
        for (i, s) in self.servers.iter().enumerate() {
            if s.name.is_empty() {
                return Err(invalid(
                    format!("servers[{i}].name"),
                    "name:",
                    "must not be empty".into(),
                ));
            }
            if !names.insert(s.name.as_str()) {
                return Err(invalid(
                    format!("servers[{i}].name"),
                    &s.name,
                    format!("duplicate server name {:?}", s.name),
                ));
            }
            if s.port == 0 {
                return Err(invalid(
                    format!("servers[{i}].port"),
                    "port:",
                    "must be 1-65535".into(),
                ));
            }
            if !addrs.insert((s.host.as_str(), s.port)) {
                return Err(invalid(
                    format!("servers[{i}].port"),
                    &s.name,
                    format!("{}:{} is listed twice", s.host, s.port),
                ));
            }
            if s.weight == 0 {
                return Err(invalid(
                    format!("servers[{i}].weight"),
                    "weight:",
                    "must be at least 1".into(),
                ));
            }
            if s.tls.mode != BackendTlsMode::Disabled && s.tls.verify && s.tls.ca.is_none() {
                return Err(invalid(
                    format!("servers[{i}].tls.ca"),
                    &s.name,
                    "required to verify the server's certificate (or set `verify: false` to \
                     encrypt without checking who answers)"
                        .into(),
                ));
            }
        }
        let primaries = self
            .servers
            .iter()
            .filter(|s| s.role == Role::Primary)
            .count();
        if primaries != 1 {
            return Err(invalid(
                "servers[].role".into(),
                "role: primary",
                format!("exactly one server must have `role: primary`, found {primaries}"),
            ));
        }
        let r = &self.routing;
        if r.lag_recovery_ms > r.max_lag_ms {
            return Err(invalid(
                "routing.lag_recovery_ms".into(),
                "lag_recovery_ms:",
                format!(
                    "must not exceed routing.max_lag_ms ({}), got {}",
                    r.max_lag_ms, r.lag_recovery_ms
                ),
            ));
        }
        if r.quorum_timeout_ms == 0 || r.quorum_timeout_ms > 600_000 {
            return Err(invalid(
                "routing.quorum_timeout_ms".into(),
                "quorum_timeout_ms:",
                format!("must be 1 to 600000, got {}", r.quorum_timeout_ms),
            ));
        }
        if r.causal_wait_ms > 60_000 {
            return Err(invalid(
                "routing.causal_wait_ms".into(),
                "causal_wait_ms:",
                format!("must be at most 60000, got {}", r.causal_wait_ms),
            ));
        }
        self.validate_topology(&invalid)?;
        if r.breaker_failures == 0 {
            return Err(invalid(
                "routing.breaker_failures".into(),
                "breaker_failures:",
                "must be at least 1".into(),
            ));
        }
        if let Some(proxy) = &self.proxy {
            check_addr(&proxy.listen).map_err(|m| invalid("proxy.listen".into(), "listen:", m))?;
            check_addr(&proxy.http_listen)
                .map_err(|m| invalid("proxy.http_listen".into(), "http_listen:", m))?;
            check_secret(&proxy.admin.secret())
                .map_err(|m| m.replace("password", "token"))
                .map_err(|m| invalid("proxy.admin".into(), "admin:", m))?;
            if proxy.worker_threads > MAX_WORKER_THREADS {
                return Err(invalid(
                    "proxy.worker_threads".into(),
                    "worker_threads:",
                    format!(
                        "{} is more than {MAX_WORKER_THREADS}; use 0 for one per CPU",
                        proxy.worker_threads
                    ),
                ));
            }
            if !(MIN_MAX_ALLOWED_PACKET..=MAX_MAX_ALLOWED_PACKET)
                .contains(&proxy.max_allowed_packet)
            {
                return Err(invalid(
                    "proxy.max_allowed_packet".into(),
                    "max_allowed_packet:",
                    format!(
                        "must be {MIN_MAX_ALLOWED_PACKET} (1 KiB) to {MAX_MAX_ALLOWED_PACKET} (1 GiB) bytes, got {}",
                        proxy.max_allowed_packet
                    ),
                ));
            }
            if proxy.max_prepared_statements > MAX_PREPARED_STATEMENTS {
                return Err(invalid(
                    "proxy.max_prepared_statements".into(),
                    "max_prepared_statements:",
                    format!(
                        "must be at most {MAX_PREPARED_STATEMENTS}, got {}",
                        proxy.max_prepared_statements
                    ),
                ));
            }
            if proxy.tls.mode != TlsMode::Off
                && (proxy.tls.cert.is_none() || proxy.tls.key.is_none())
            {
                return Err(invalid(
                    "proxy.tls".into(),
                    "tls:",
                    "`cert` and `key` are required unless `mode: off`".into(),
                ));
            }
            if proxy.pool.release_delay_ms > MAX_RELEASE_DELAY_MS {
                return Err(invalid(
                    "proxy.pool.release_delay_ms".into(),
                    "release_delay_ms:",
                    format!(
                        "must be at most {MAX_RELEASE_DELAY_MS} (a session would hold idle backend connections), got {}",
                        proxy.pool.release_delay_ms
                    ),
                ));
            }
            if proxy.pool.queue_timeout_ms > MAX_QUEUE_TIMEOUT_MS {
                return Err(invalid(
                    "proxy.pool.queue_timeout_ms".into(),
                    "queue_timeout_ms:",
                    format!(
                        "must be at most {MAX_QUEUE_TIMEOUT_MS} (10 minutes), got {}",
                        proxy.pool.queue_timeout_ms
                    ),
                ));
            }
            if proxy.pool.max_per_server == 0 {
                return Err(invalid(
                    "proxy.pool.max_per_server".into(),
                    "max_per_server:",
                    "must be at least 1 (every statement would wait for a connection that can never open)".into(),
                ));
            }
            if let Some(a) = &proxy.audit {
                audit::check(a).map_err(|(key, m)| {
                    invalid(format!("proxy.audit.{key}"), &format!("{key}:"), m)
                })?;
            }
            if let Some(u) = &proxy.users_from_primary {
                users_from_primary::check(u).map_err(|(key, m)| ConfigError::Invalid {
                    file: file.to_string(),
                    line: user_key_line(text, "users_from_primary", key),
                    key: format!("proxy.users_from_primary.{key}"),
                    message: m,
                })?;
            }
            let mut users = HashSet::new();
            for (i, u) in proxy.users.iter().enumerate() {
                if !users.insert(u.name.as_str()) {
                    return Err(invalid(
                        format!("proxy.users[{i}].name"),
                        &u.name,
                        format!("duplicate user {:?}", u.name),
                    ));
                }
                check_secret(&u.secret)
                    .map_err(|m| invalid(format!("proxy.users[{i}]"), &u.name, m))?;
                users::check_user(u).map_err(|(key, m)| {
                    // The offending line is the key's own under this user's entry.
                    let line = user_key_line(text, &u.name, key);
                    ConfigError::Invalid {
                        file: file.to_string(),
                        line,
                        key: format!("proxy.users[{i}].{key}"),
                        message: m,
                    }
                })?;
            }
        }
        if let Some(LagSource::Sidecar { url, urls }) = self.proxy.as_ref().map(|p| &p.lag_source) {
            if url.is_some() != urls.is_empty() {
                return Err(invalid(
                    "proxy.lag_source.sidecar".into(),
                    "sidecar:",
                    "give either `url` or `urls` (a list of at least one)".into(),
                ));
            }
        }
        check_addr(&self.sidecar.http_listen)
            .map_err(|m| invalid("sidecar.http_listen".into(), "http_listen:", m))?;
        check_secret(&self.monitor.secret).map_err(|m| invalid("monitor".into(), "monitor:", m))?;
        for (key, account) in [
            ("switchover_account", &self.switchover_account),
            ("replication", &self.replication),
        ] {
            if let Some(c) = account {
                check_secret(&c.secret).map_err(|m| invalid(key.into(), &format!("{key}:"), m))?;
            }
        }
        if self.routing.switchover_write_wait_ms < MIN_SWITCHOVER_WAIT_MS {
            return Err(invalid(
                "routing.switchover_write_wait_ms".into(),
                "switchover_write_wait_ms:",
                format!(
                    "must be at least {MIN_SWITCHOVER_WAIT_MS} (the switchover's own steps need that long), got {}",
                    self.routing.switchover_write_wait_ms
                ),
            ));
        }
        if !(MIN_MONITOR_TIMEOUT_MS..=MAX_MONITOR_TIMEOUT_MS).contains(&self.monitor.timeout_ms) {
            return Err(ConfigError::Invalid {
                file: file.to_string(),
                line: find_key_line(text, "monitor:", "timeout_ms:"),
                key: "monitor.timeout_ms".into(),
                message: format!(
                    "must be {MIN_MONITOR_TIMEOUT_MS} to {MAX_MONITOR_TIMEOUT_MS} ms, got {}",
                    self.monitor.timeout_ms
                ),
            });
        }
        Ok(())
    }
}

impl LagSource {
    /// The sidecar `/lag` URLs to follow (empty for other sources).
    pub fn sidecar_urls(&self) -> Vec<String> {
        match self {
            LagSource::Sidecar { url, urls } => url.iter().chain(urls).cloned().collect(),
            _ => Vec::new(),
        }
    }
}

impl Config {
    /// The topology part: lag limits, locations and the fallback order must make sense together.
    fn validate_topology(
        &self,
        invalid: &dyn Fn(String, &str, String) -> ConfigError,
    ) -> Result<(), ConfigError> {
        let r = &self.routing;
        for (i, s) in self.servers.iter().enumerate() {
            if let Some(max) = s.max_lag_ms {
                if max < r.lag_recovery_ms {
                    return Err(invalid(
                        format!("servers[{i}].max_lag_ms"),
                        &s.name,
                        format!(
                            "must be at least routing.lag_recovery_ms ({}), got {max}",
                            r.lag_recovery_ms
                        ),
                    ));
                }
            }
        }
        if !r.location_fallback.is_empty() && self.location.is_none() {
            return Err(invalid(
                "location".into(),
                "location_fallback:",
                "`routing.location_fallback` needs the proxy's own `location`".into(),
            ));
        }
        let mut seen = HashSet::new();
        for (i, loc) in r.location_fallback.iter().enumerate() {
            let key = format!("routing.location_fallback[{i}]");
            if Some(loc) == self.location.as_ref() {
                return Err(invalid(
                    key,
                    "location_fallback:",
                    format!("{loc:?} is this proxy's own location"),
                ));
            }
            if !seen.insert(loc) {
                return Err(invalid(
                    key,
                    "location_fallback:",
                    format!("{loc:?} is listed twice"),
                ));
            }
            // A listed location with no server yet is allowed (a topology may grow into it).
        }
        let replicas = self
            .servers
            .iter()
            .filter(|s| s.role == Role::Replica)
            .count();
        if r.min_serving > replicas {
            return Err(invalid(
                "routing.min_serving".into(),
                "min_serving:",
                format!(
                    "is {} but only {replicas} replicas are configured",
                    r.min_serving
                ),
            ));
        }
        Ok(())
    }
}

/// The shortest `routing.switchover_write_wait_ms`: demoting, waiting for the GTID and
/// promoting take a few round trips each.
const MIN_SWITCHOVER_WAIT_MS: u64 = 500;

/// An account other than the monitor's: a user name and where its password comes from.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Account {
    pub user: String,
    #[serde(flatten)]
    pub secret: Secret,
}

impl Config {
    /// The account switchovers and failovers run their statements as.
    pub fn switchover_account(&self) -> Account {
        self.switchover_account
            .clone()
            .unwrap_or_else(|| self.monitor_account())
    }

    /// The account replicas use to log in to a new primary.
    pub fn replication_account(&self) -> Account {
        self.replication
            .clone()
            .unwrap_or_else(|| self.monitor_account())
    }

    fn monitor_account(&self) -> Account {
        Account {
            user: self.monitor.user.clone(),
            secret: self.monitor.secret.clone(),
        }
    }
}

fn check_addr(addr: &str) -> Result<(), String> {
    addr.parse::<std::net::SocketAddr>()
        .map(|_| ())
        .map_err(|_| format!("{addr:?} is not an IP:port address"))
}

fn check_secret(s: &Secret) -> Result<(), String> {
    let given = [
        s.password.is_some(),
        s.password_env.is_some(),
        s.password_file.is_some(),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    if given > 1 {
        return Err("give only one of `password`, `password_env`, `password_file`".into());
    }
    Ok(())
}

/// The line of `key:` in the entry of user `name` (the first `key:` after the line naming
/// it), or the name's line.
fn user_key_line(text: &str, name: &str, key: &str) -> Option<usize> {
    let at = find_line(text, &format!("name: {name}")).or_else(|| find_line(text, name))?;
    let needle = format!("{key}:");
    text.lines()
        .enumerate()
        .skip(at - 1)
        .find(|(_, l)| l.contains(&needle))
        .map(|(i, _)| i + 1)
        .or(Some(at))
}

/// The 1-based line of the first occurrence of `needle`, to point a reader at the offending key.
fn find_line(text: &str, needle: &str) -> Option<usize> {
    text.lines().position(|l| l.contains(needle)).map(|i| i + 1)
}

/// The line of `key` (e.g. `timeout_ms:`, as a whole key: not `connect_timeout_ms:`) at or
/// after the top-level `section` line (e.g. `monitor:`), for keys whose name other sections
/// use too. Falls back to the section's line.
fn find_key_line(text: &str, section: &str, key: &str) -> Option<usize> {
    let start = text.lines().position(|l| l.starts_with(section))?;
    let whole_key = |l: &str| {
        l.match_indices(key).any(|(i, _)| {
            !l[..i]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_alphanumeric() || c == '_')
        })
    };
    let found = text
        .lines()
        .enumerate()
        .skip(start)
        .find(|(_, l)| whole_key(l))
        .map(|(i, _)| i);
    Some(found.unwrap_or(start) + 1)
}

#[cfg(test)]
mod test {
    use super::*;

    const EXAMPLE: &str = include_str!("../../examples/local-cluster.yaml");

    #[test]
    fn example_config_is_valid() {
        let c = Config::from_yaml("local-cluster.yaml", EXAMPLE).expect("example parses");
        assert_eq!(c.primary().map(|p| p.port), Some(3310));
        assert_eq!(c.servers.len(), 3);
        assert_eq!(
            c.proxy.as_ref().map(|p| p.listen.as_str()),
            Some("127.0.0.1:6033")
        );
    }

    #[test]
    fn switchover_settings_default_and_accounts_fall_back_to_the_monitor() {
        let base = "servers:\n  - {name: p, host: h, port: 1, role: primary}\nmonitor: {user: m}\n";
        let c = Config::from_yaml("c.yaml", base).expect("defaults");
        assert_eq!(c.routing.failover, FailoverMode::Manual);
        assert_eq!(c.routing.switchover_write_wait_ms, 5000);
        assert_eq!(c.switchover_account().user, "m");
        assert_eq!(c.replication_account().user, "m");
        let text = format!(
            "{base}routing: {{failover: auto, failover_after_ms: 3000}}\n\
             switchover_account: {{user: admin, password: x}}\nreplication: {{user: repl}}\n"
        );
        let c = Config::from_yaml("c.yaml", &text).expect("parses");
        assert_eq!(c.routing.failover, FailoverMode::Auto);
        assert_eq!(c.routing.failover_after_ms, 3000);
        assert_eq!(c.switchover_account().user, "admin");
        assert_eq!(c.replication_account().user, "repl");
        let err = Config::from_yaml(
            "c.yaml",
            &format!("{base}routing:\n  switchover_write_wait_ms: 10\n"),
        )
        .expect_err("too short");
        assert!(
            err.to_string().contains("routing.switchover_write_wait_ms"),
            "{err}"
        );
        assert!(
            Config::from_yaml("c.yaml", &format!("{base}routing: {{failover: yes}}\n")).is_err()
        );
    }

    #[test]
    fn users_are_not_admins_unless_configured() {
        let text = EXAMPLE.replace(
            "      password: app-password\n",
            "      password: app-password\n    - name: ops\n      password: x\n      admin: true\n",
        );
        let c = Config::from_yaml("c.yaml", &text).expect("parses");
        let users = &c.proxy.as_ref().expect("proxy section").users;
        let admin: Vec<(&str, bool)> = users.iter().map(|u| (u.name.as_str(), u.admin)).collect();
        assert_eq!(admin, [("app", false), ("ops", true)]);
    }

    #[test]
    fn consistency_and_write_quorum_keys() {
        use crate::consistency::{Level, Quorum};
        let base = "servers:\n  - {name: p, host: h, port: 1, role: primary}\nmonitor: {user: m}\n";
        let with = |extra: &str| Config::from_yaml("c.yaml", &format!("{base}{extra}"));
        let c = with(
            "routing:\n  consistency: monotonic\n  causal_wait_ms: 10\n  write_quorum: majority\n\
             proxy:\n  users:\n    - {name: a, password: x, consistency: causal, write_quorum: 2}\n",
        )
        .expect("valid");
        assert_eq!(c.routing.consistency, Level::Monotonic);
        assert_eq!(c.routing.causal_wait_ms, 10);
        assert_eq!(c.routing.write_quorum, Quorum::Majority);
        assert_eq!(c.routing.quorum_timeout_ms, 1000);
        let user = &c.proxy.as_ref().expect("proxy").users[0];
        assert_eq!(user.consistency, Some(Level::Causal));
        assert_eq!(user.write_quorum, Some(Quorum::Count(2)));
        let d = with("").expect("defaults");
        assert_eq!(d.routing.consistency, Level::Lag);
        assert_eq!(d.routing.write_quorum, Quorum::Off);
        assert_eq!(d.routing.quorum_on_timeout, QuorumOnTimeout::Error);
        assert_eq!(d.routing.quorum_wait_for, QuorumWaitFor::Applied);
        let w = with("routing: {quorum_on_timeout: warning, quorum_wait_for: received}\n")
            .expect("valid");
        assert_eq!(w.routing.quorum_on_timeout, QuorumOnTimeout::Warning);
        assert_eq!(w.routing.quorum_wait_for, QuorumWaitFor::Received);
        let old = with("routing: {quorum_on_timeout: ok}\n").expect("former name");
        assert_eq!(old.routing.quorum_on_timeout, QuorumOnTimeout::Warning);
        for bad in [
            "routing: {consistency: strong}\n",
            "routing: {write_quorum: most}\n",
            "routing: {causal_wait_ms: 600000}\n",
            "routing: {quorum_timeout_ms: 0}\n",
            "routing: {quorum_wait_for: synced}\n",
        ] {
            let err = with(bad).expect_err(bad).to_string();
            assert!(
                err.contains("c.yaml") && err.contains("routing"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn sidecar_lag_source_takes_url_or_urls_and_primary_down_read_ms() {
        let base = "servers:\n  - {name: p, host: h, port: 1, role: primary}\nmonitor: {user: m}\n";
        let with = |extra: &str| Config::from_yaml("c.yaml", &format!("{base}{extra}"));
        let c =
            with("proxy:\n  lag_source: {sidecar: {urls: [\"http://a/lag\", \"http://b/lag\"]}}\n")
                .expect("urls");
        let urls = c
            .proxy
            .map(|p| p.lag_source.sidecar_urls())
            .unwrap_or_default();
        assert_eq!(urls, ["http://a/lag", "http://b/lag"]);
        let err = with("proxy:\n  lag_source:\n    sidecar: {url: \"http://a/lag\", urls: [\"http://b/lag\"]}\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("c.yaml") && err.contains("proxy.lag_source.sidecar"),
            "{err}"
        );
        assert!(err.starts_with("c.yaml:6:"), "names the line: {err}");
        let c = with("routing: {primary_down_read_ms: 3000}\n").expect("bound");
        assert_eq!(c.routing.primary_down_read_ms, Some(3000));
        assert_eq!(
            with("").expect("default").routing.primary_down_read_ms,
            None
        );
    }

    #[test]
    fn unknown_key_names_the_key_and_line() {
        let text = EXAMPLE.replace("max_lag_ms:", "max_lagg_ms:");
        let err = Config::from_yaml("c.yaml", &text).unwrap_err().to_string();
        assert!(err.contains("c.yaml"), "{err}");
        assert!(err.contains("max_lagg_ms"), "{err}");
        assert!(err.contains("line") || err.contains(':'), "{err}");
    }

    #[test]
    fn two_primaries_rejected() {
        let text = EXAMPLE.replace("role: replica", "role: primary");
        let err = Config::from_yaml("c.yaml", &text).unwrap_err().to_string();
        assert!(err.contains("exactly one server"), "{err}");
    }

    #[test]
    fn lag_marks_in_order() {
        let text = EXAMPLE.replace("lag_recovery_ms: 500", "lag_recovery_ms: 5000");
        let err = Config::from_yaml("c.yaml", &text).unwrap_err().to_string();
        assert!(err.contains("routing.lag_recovery_ms"), "{err}");
        assert!(err.contains("c.yaml:"), "{err}");
    }

    #[test]
    fn fallback_locations_are_distinct_and_not_our_own() {
        let text = EXAMPLE.replace(
            "location_fallback: [zone-b]",
            "location_fallback: [zone-b, zone-b]",
        );
        let err = Config::from_yaml("c.yaml", &text).unwrap_err().to_string();
        assert!(err.contains("routing.location_fallback[1]"), "{err}");
        assert!(err.contains("twice"), "{err}");
        let text = EXAMPLE.replace("location_fallback: [zone-b]", "location_fallback: [zone-a]");
        let err = Config::from_yaml("c.yaml", &text).unwrap_err().to_string();
        assert!(err.contains("own location"), "{err}");
    }

    #[test]
    fn per_server_lag_limit_must_be_above_the_recovery_mark() {
        let text = EXAMPLE.replace("    port: 3311\n", "    port: 3311\n    max_lag_ms: 100\n");
        let err = Config::from_yaml("c.yaml", &text).unwrap_err().to_string();
        assert!(err.contains("servers[1].max_lag_ms"), "{err}");
    }

    #[test]
    fn min_serving_cannot_exceed_the_replicas() {
        let text = EXAMPLE.replace("min_serving: 0", "min_serving: 3");
        let err = Config::from_yaml("c.yaml", &text).unwrap_err().to_string();
        assert!(err.contains("routing.min_serving"), "{err}");
    }

    #[test]
    fn absurd_worker_thread_count_names_the_key_and_line() {
        let text = EXAMPLE.replace("\nproxy:\n", "\nproxy:\n  worker_threads: 5000\n");
        let line = text
            .lines()
            .position(|l| l.contains("worker_threads: 5000"))
            .map(|i| i + 1)
            .expect("inserted");
        let err = Config::from_yaml("c.yaml", &text).unwrap_err().to_string();
        assert!(err.contains("proxy.worker_threads"), "{err}");
        assert!(err.contains(&format!("c.yaml:{line}")), "{err}");
        let ok = EXAMPLE.replace("\nproxy:\n", "\nproxy:\n  worker_threads: 1\n");
        let c = Config::from_yaml("c.yaml", &ok).expect("one thread is valid");
        assert_eq!(c.proxy.map(|p| p.worker_threads), Some(1));
    }

    #[test]
    fn monitor_timeout_defaults_to_500_ms_and_is_bounded_naming_file_line_and_key() {
        const LINE: &str = "  timeout_ms: 500 ";
        assert_eq!(EXAMPLE.matches(LINE).count(), 1, "the example sets it");
        let unset: String = EXAMPLE
            .lines()
            .filter(|l| !l.starts_with(LINE))
            .map(|l| format!("{l}\n"))
            .collect();
        let c = Config::from_yaml("c.yaml", &unset).unwrap();
        assert_eq!(c.monitor.timeout_ms, 500, "the default");
        // With the monitor section last, a pool `connect_timeout_ms:` line comes first in the
        // file: the error must point at the monitor's own key, not at the first line that
        // ends in `timeout_ms:`.
        const MONITOR: &str = "monitor:\n  user: rwsplit_monitor\n  password: monitor-password\n";
        assert!(unset.contains(MONITOR), "the example's monitor section");
        let with = |ms: &str| {
            let text = unset.replace(MONITOR, "").replace(
                "  users:\n",
                "  pool:\n    connect_timeout_ms: 700\n  users:\n",
            );
            format!("{text}{MONITOR}  timeout_ms: {ms}\n")
        };
        let c = Config::from_yaml("c.yaml", &with("250")).expect("250 ms is valid");
        assert_eq!(c.monitor.timeout_ms, 250);
        assert_eq!(c.proxy.map(|p| p.pool.connect_timeout_ms), Some(700));
        for bad in ["0", "5", "600000"] {
            let text = with(bad);
            let line = text
                .lines()
                .position(|l| l == format!("  timeout_ms: {bad}"))
                .map(|i| i + 1)
                .expect("inserted");
            let err = Config::from_yaml("c.yaml", &text).unwrap_err().to_string();
            assert!(err.contains("monitor.timeout_ms"), "{err}");
            assert!(err.contains(&format!("c.yaml:{line}")), "{bad}: {err}");
        }
        // Flow style, on the `monitor:` line itself.
        let text = unset.replace(
            MONITOR,
            "monitor: {user: rwsplit_monitor, password: monitor-password, timeout_ms: 1}\n",
        );
        let line = text
            .lines()
            .position(|l| l.starts_with("monitor:"))
            .map(|i| i + 1)
            .expect("replaced");
        let err = Config::from_yaml("c.yaml", &text).unwrap_err().to_string();
        assert!(err.contains(&format!("c.yaml:{line}")), "{err}");
    }

    #[test]
    fn admin_token_takes_one_source_and_is_never_printed() {
        let c = Config::from_yaml("c.yaml", EXAMPLE).expect("valid");
        assert!(!c.proxy.as_ref().is_some_and(|p| p.admin.is_configured()));
        let text = EXAMPLE.replace("  users:\n", "  admin:\n    token: s3cret\n  users:\n");
        let c = Config::from_yaml("c.yaml", &text).expect("valid");
        let admin = &c.proxy.as_ref().expect("proxy").admin;
        assert_eq!(admin.secret().password.as_deref(), Some("s3cret"));
        assert!(!format!("{admin:?}").contains("s3cret"));
        let both = EXAMPLE.replace(
            "  users:\n",
            "  admin:\n    token: a\n    token_env: T\n  users:\n",
        );
        let err = Config::from_yaml("c.yaml", &both).unwrap_err().to_string();
        assert!(err.contains("proxy.admin"), "{err}");
        assert!(
            err.contains("only one of `token`, `token_env`, `token_file`"),
            "{err}"
        );
    }

    #[test]
    fn queue_timeout_defaults_and_is_bounded_naming_file_line_and_key() {
        let c = Config::from_yaml("c.yaml", EXAMPLE).unwrap();
        assert_eq!(
            c.proxy.as_ref().map(|p| p.pool.queue_timeout_ms),
            Some(5000)
        );
        let text = EXAMPLE.replace("  users:\n", "  pool:\n    queue_timeout_ms: 0\n  users:\n");
        let c = Config::from_yaml("c.yaml", &text).unwrap();
        assert_eq!(c.proxy.as_ref().map(|p| p.pool.queue_timeout_ms), Some(0));
        let text = EXAMPLE.replace(
            "  users:\n",
            "  pool:\n    queue_timeout_ms: 3600000\n  users:\n",
        );
        let line = text
            .lines()
            .position(|l| l.contains("queue_timeout_ms: 3600000"))
            .map(|i| i + 1)
            .expect("inserted");
        let err = Config::from_yaml("c.yaml", &text).unwrap_err().to_string();
        assert!(err.contains("proxy.pool.queue_timeout_ms"), "{err}");
        assert!(err.contains(&format!("c.yaml:{line}")), "{err}");
    }

    #[test]
    fn a_pool_limit_of_zero_is_refused() {
        let text = EXAMPLE.replace("  users:\n", "  pool:\n    max_per_server: 0\n  users:\n");
        let err = Config::from_yaml("c.yaml", &text).unwrap_err().to_string();
        assert!(err.contains("proxy.pool.max_per_server"), "{err}");
    }

    #[test]
    fn release_delay_defaults_and_is_bounded() {
        let c = Config::from_yaml("c.yaml", EXAMPLE).unwrap();
        assert_eq!(c.proxy.as_ref().map(|p| p.pool.release_delay_ms), Some(0));
        let text = EXAMPLE.replace(
            "  users:\n",
            "  pool:\n    release_delay_ms: 500\n  users:\n",
        );
        let c = Config::from_yaml("c.yaml", &text).unwrap();
        assert_eq!(c.proxy.as_ref().map(|p| p.pool.release_delay_ms), Some(500));
        let text = EXAMPLE.replace(
            "  users:\n",
            "  pool:\n    release_delay_ms: 600000\n  users:\n",
        );
        let err = Config::from_yaml("c.yaml", &text).unwrap_err().to_string();
        assert!(err.contains("proxy.pool.release_delay_ms"), "{err}");
        let line = text
            .lines()
            .position(|l| l.contains("release_delay_ms"))
            .map(|i| i + 1)
            .unwrap();
        assert!(err.starts_with(&format!("c.yaml:{line}:")), "{err}");
    }

    #[test]
    fn session_limits_default_like_mysql_and_are_bounded() {
        let c = Config::from_yaml("c.yaml", EXAMPLE).unwrap();
        let p = c.proxy.as_ref().unwrap();
        assert_eq!(p.max_allowed_packet, 64 << 20);
        assert_eq!(p.max_prepared_statements, 16_382);
        for (line, key) in [
            ("max_allowed_packet: 1023", "proxy.max_allowed_packet"),
            ("max_allowed_packet: 1073741825", "proxy.max_allowed_packet"),
            (
                "max_prepared_statements: 1048577",
                "proxy.max_prepared_statements",
            ),
        ] {
            let text = EXAMPLE.replace("\nproxy:\n", &format!("\nproxy:\n  {line}\n"));
            let at = text.lines().position(|l| l.contains(line)).unwrap() + 1;
            let err = Config::from_yaml("c.yaml", &text).unwrap_err().to_string();
            assert!(err.starts_with(&format!("c.yaml:{at}: `{key}`")), "{err}");
        }
        let text = EXAMPLE.replace(
            "\nproxy:\n",
            "\nproxy:\n  max_allowed_packet: 1024\n  max_prepared_statements: 0\n",
        );
        let c = Config::from_yaml("c.yaml", &text).expect("the bounds themselves are valid");
        assert_eq!(c.proxy.map(|p| p.max_allowed_packet), Some(1024));
    }

    #[test]
    fn backend_tls_needs_a_ca_to_verify() {
        let c = Config::from_yaml("c.yaml", EXAMPLE).unwrap();
        assert_eq!(c.servers[0].tls, BackendTlsConfig::default());
        let text = EXAMPLE.replace(
            "    port: 3311\n",
            "    port: 3311\n    tls: {mode: required}\n",
        );
        let err = Config::from_yaml("c.yaml", &text).unwrap_err().to_string();
        assert!(err.contains("servers[1].tls.ca"), "{err}");
        let text = EXAMPLE.replace(
            "    port: 3311\n",
            "    port: 3311\n    tls: {mode: preferred, verify: false}\n",
        );
        let c = Config::from_yaml("c.yaml", &text).unwrap();
        assert_eq!(c.servers[1].tls.mode, BackendTlsMode::Preferred);
        let text = EXAMPLE.replace(
            "    port: 3311\n",
            "    port: 3311\n    tls: {mode: sometimes, ca: x}\n",
        );
        assert!(Config::from_yaml("c.yaml", &text).is_err());
    }

    #[test]
    fn location_can_come_from_an_environment_variable() {
        let text = EXAMPLE
            .replace("\nlocation: zone-a\n", "\nlocation_env: RWSPLIT_LOCATION\n")
            .replace(
                "location_fallback: [zone-b]",
                "location_fallback: [zone-a, zone-b, zone-c]",
            );
        let env = |zone: &'static str| {
            move |name: &str| (name == "RWSPLIT_LOCATION").then(|| zone.to_string())
        };
        let c = Config::from_yaml_with_env("c.yaml", &text, env("zone-b")).expect("valid");
        assert_eq!(c.location.as_deref(), Some("zone-b"));
        // The same file serves every zone: its own is dropped from the fallback order.
        assert_eq!(c.routing.location_fallback, ["zone-a", "zone-c"]);
        let c = Config::from_yaml_with_env("c.yaml", &text, env(" zone-a\n")).expect("valid");
        assert_eq!(c.location.as_deref(), Some("zone-a"));
        assert_eq!(c.routing.location_fallback, ["zone-b", "zone-c"]);

        let line = text
            .lines()
            .position(|l| l.starts_with("location_env:"))
            .map(|i| i + 1)
            .expect("present");
        for missing in [None, Some(""), Some("  ")] {
            let err = Config::from_yaml_with_env("c.yaml", &text, |_| missing.map(String::from))
                .unwrap_err()
                .to_string();
            assert!(
                err.starts_with(&format!("c.yaml:{line}: `location_env`")),
                "{err}"
            );
            assert!(err.contains("RWSPLIT_LOCATION is not set"), "{err}");
        }

        let both = EXAMPLE.replace(
            "\nlocation: zone-a\n",
            "\nlocation: zone-a\nlocation_env: RWSPLIT_LOCATION\n",
        );
        let err = Config::from_yaml_with_env("c.yaml", &both, env("zone-a"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("only one of `location` and `location_env`"),
            "{err}"
        );
    }

    #[test]
    fn secrets_are_not_printed() {
        let c = Config::from_yaml("c.yaml", EXAMPLE).unwrap();
        let shown = format!("{:?}", c);
        assert!(!shown.contains("app-password"), "{shown}");
    }
}
