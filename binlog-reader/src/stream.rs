//! Streams the primary's binlog as a replica would (its own server id), turns events into
//! timeline entries, and reconnects with backoff, resuming from the last complete transaction
//! (MariaDB: by GTID via `@slave_connect_state`; otherwise by file/position). While the stream is
//! down or catching up, lag is unknown: commit times read from the past are not live.

use crate::apply::{mark_caught_up, process, reached_gtid, CatchUp, Tracker};
use crate::decode::{self, EventKind, Gtid};
use crate::position::{self, FILE_POS_KEY};
use crate::state::{lock, Shared};
use futures_util::StreamExt;
use mysql_async::prelude::Queryable;
use mysql_async::{BinlogStreamRequest, Conn, Opts, OptsBuilder};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Why a binlog session ended.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("cannot connect to the primary {addr}: {source}")]
    Connect {
        addr: String,
        #[source]
        source: mysql_async::Error,
    },
    #[error("connecting to the primary {0} timed out")]
    ConnectTimeout(String),
    #[error("primary {addr}: {what}: {source}")]
    Query {
        addr: String,
        what: &'static str,
        #[source]
        source: mysql_async::Error,
    },
    #[error("binlog stream: {0}")]
    Stream(#[source] mysql_async::Error),
    #[error("binlog stream: {0}")]
    Decode(#[from] decode::DecodeError),
    #[error("binlog stream silent for {0:?} (no event, no heartbeat)")]
    Idle(Duration),
    #[error("the primary ended the binlog stream")]
    Ended,
    #[error("the binlog stream task panicked (malformed event?)")]
    Panicked,
    #[error("the primary reports no binlog position (is log_bin enabled?)")]
    NoBinlog,
}

impl StreamError {
    /// The primary refused or ignored the connection (down, hung, partitioned), as opposed
    /// to a stream that broke while the primary stays reachable.
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            StreamError::Connect { .. } | StreamError::ConnectTimeout(_)
        )
    }

    /// MariaDB's ERROR 4052: a binlog dump with this server id is still registered.
    fn is_same_server_id(&self) -> bool {
        let source = match self {
            StreamError::Connect { source, .. }
            | StreamError::Query { source, .. }
            | StreamError::Stream(source) => source,
            _ => return false,
        };
        matches!(source, mysql_async::Error::Server(e) if e.code == ER_SLAVE_SAME_ID)
    }
}

/// MariaDB's `ER_SLAVE_SAME_ID`.
const ER_SLAVE_SAME_ID: u16 = 4052;

/// How long a reader that replaces one with the same server id (a reload, the writer moving
/// back) retries quietly while MariaDB still has the old one's dump registered. The old
/// connection is closed as the new reader starts, but the server's dump thread notices only
/// when it next writes (a heartbeat, 500 ms) and refuses the new dump until then (ERROR 4052).
/// That is a hand-over, not a lost stream: not warned about, not counted as a reconnect. A
/// second reader with the same id (a misconfiguration) is still refused and warned about
/// once the grace is over.
pub const HANDOVER_GRACE: Duration = Duration::from_secs(3);

/// Where and how to connect to the primary.
#[derive(Clone)]
pub struct Target {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
    /// `servers[].tls` of the server.
    pub tls: router::config::BackendTlsConfig,
}

impl Target {
    pub fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    pub fn opts(&self) -> Opts {
        self.builder()
            .ssl_opts(crate::tls::ssl_opts(&self.tls))
            .into()
    }

    fn builder(&self) -> OptsBuilder {
        OptsBuilder::default()
            .ip_or_hostname(self.host.clone())
            .tcp_port(self.port)
            .user(Some(self.user.clone()))
            .pass(Some(self.password.clone()))
            .prefer_socket(false)
    }
}

/// Connects with a timeout; shared with the pollers.
pub async fn connect(target: &Target, timeout: Duration) -> Result<Conn, StreamError> {
    let conn = crate::tls::connect(target.builder(), &target.tls);
    match tokio::time::timeout(timeout, conn).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(source)) => Err(StreamError::Connect {
            addr: target.addr(),
            source,
        }),
        Err(_) => Err(StreamError::ConnectTimeout(target.addr())),
    }
}

/// Runs forever: one binlog session after another, with exponential backoff between failures.
/// Each session runs in its own task so that even a panic inside the event parser only costs a
/// reconnect.
pub async fn run(shared: Arc<Shared>, target: Target) {
    let mut backoff = Duration::from_millis(100);
    let mut first = true;
    let mut last_error: Option<String> = None;
    let handover = shared
        .settings
        .replaces_same_id
        .load(std::sync::atomic::Ordering::SeqCst)
        .then(|| Instant::now() + HANDOVER_GRACE);
    loop {
        let started = Instant::now();
        let mut session = AbortOnDrop(tokio::spawn(session(shared.clone(), target.clone())));
        let result = match (&mut session.0).await {
            Ok(r) => r,
            Err(e) if e.is_panic() => Err(StreamError::Panicked),
            Err(_) => return, // cancelled: the handle was dropped
        };
        if let Err(e) = &result {
            if first && e.is_same_server_id() && handover.is_some_and(|until| started < until) {
                tracing::debug!(error = %e, "the previous reader's binlog dump is still registered on the primary: retrying");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        }
        let was_connected = {
            let mut p = lock(&shared.primary);
            let was = p.connected;
            if p.connected {
                // Whether the timeline holds all the primary sent, should it be gone for good.
                p.complete_at_loss = p.caught_up;
            }
            p.connected = false;
            p.caught_up = false;
            if let Err(e) = &result {
                p.error = Some(e.to_string());
                if e.is_unreachable() && p.complete_at_loss && p.unreachable_since_ms.is_none() {
                    p.unreachable_since_ms = Some(crate::state::now_us() / 1000);
                }
            }
            was
        };
        if was_connected {
            last_error = None;
        }
        if let Err(e) = &result {
            if matches!(e, StreamError::Decode(decode::DecodeError::Checksum { .. })) {
                shared.metrics.checksum_errors.inc();
            }
            // One line per distinct failure, not one every retry while the primary stays down.
            let text = e.to_string();
            if last_error.as_deref() != Some(text.as_str()) {
                tracing::warn!(error = %text, retry_in = ?backoff, "binlog stream lost; lag is unknown until it is back (retrying with backoff)");
                last_error = Some(text);
            } else {
                tracing::debug!(error = %text, retry_in = ?backoff, "binlog stream still down");
            }
        }
        if !first || started.elapsed() > Duration::from_secs(1) {
            shared.metrics.reconnects.inc();
        }
        first = false;
        if started.elapsed() > Duration::from_secs(10) {
            backoff = Duration::from_millis(100);
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

/// Aborts the binlog session when the supervising task is itself dropped (the handle went away).
struct AbortOnDrop(tokio::task::JoinHandle<Result<(), StreamError>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn query_first<T: mysql_async::prelude::FromRow + Send + 'static>(
    conn: &mut Conn,
    target: &Target,
    what: &'static str,
    sql: &str,
) -> Result<Option<T>, StreamError> {
    conn.query_first::<T, _>(sql)
        .await
        .map_err(|source| StreamError::Query {
            addr: target.addr(),
            what,
            source,
        })
}

async fn exec(
    conn: &mut Conn,
    target: &Target,
    what: &'static str,
    sql: &str,
) -> Result<(), StreamError> {
    conn.query_drop(sql)
        .await
        .map_err(|source| StreamError::Query {
            addr: target.addr(),
            what,
            source,
        })
}

/// The primary's current binlog file and position.
async fn binlog_status(conn: &mut Conn, target: &Target) -> Result<(String, u64), StreamError> {
    let row: Option<mysql_async::Row> =
        match query_first(conn, target, "SHOW MASTER STATUS", "SHOW MASTER STATUS").await {
            Ok(r) => r,
            // MySQL 8.4 renamed it.
            Err(_) => {
                query_first(
                    conn,
                    target,
                    "SHOW BINARY LOG STATUS",
                    "SHOW BINARY LOG STATUS",
                )
                .await?
            }
        };
    let row = row.ok_or(StreamError::NoBinlog)?;
    let file: Option<String> = row.get(0);
    let pos: Option<u64> = row.get(1);
    match (file, pos) {
        (Some(f), Some(p)) => Ok((f, p)),
        _ => Err(StreamError::NoBinlog),
    }
}

async fn session(shared: Arc<Shared>, target: Target) -> Result<(), StreamError> {
    let mut conn = connect(&target, Duration::from_secs(5)).await?;
    let version: String = query_first(&mut conn, &target, "SELECT @@version", "SELECT @@version")
        .await?
        .unwrap_or_default();
    let mariadb = version.to_ascii_lowercase().contains("mariadb");
    let hb_ns = shared.settings.heartbeat.as_nanos();
    let server_id = shared.settings.server_id;
    let (request_file, request_pos, catch_up, caught_up_now);
    let mut replayed_start = false;
    if mariadb {
        exec(
            &mut conn,
            &target,
            "setting up a MariaDB binlog dump",
            &format!(
            "SET @mariadb_slave_capability=4, @master_binlog_checksum=@@global.binlog_checksum, \
             @master_heartbeat_period={hb_ns}"
        ),
        )
        .await?;
        let resume: Vec<Gtid> = lock(&shared.primary).gtid_state.values().cloned().collect();
        let start = if resume.is_empty() {
            let pos: String = query_first(
                &mut conn,
                &target,
                "reading @@gtid_binlog_pos",
                "SELECT @@gtid_binlog_pos",
            )
            .await?
            .unwrap_or_default();
            let current = position::parse_mariadb_pos(&pos).unwrap_or_default();
            if shared
                .settings
                .start_from_replicas
                .swap(false, Ordering::SeqCst)
            {
                let earliest = crate::start::earliest(&shared, current.clone()).await;
                replayed_start = earliest != current;
                earliest
            } else {
                current
            }
        } else {
            resume
        };
        let state = position::format_mariadb_pos(start.iter());
        exec(&mut conn, &target, "setting @slave_connect_state", &format!(
            "SET @slave_connect_state='{state}', @slave_gtid_strict_mode=0, @slave_gtid_ignore_duplicates=0"
        ))
        .await?;
        let end: String = query_first(
            &mut conn,
            &target,
            "reading @@gtid_binlog_pos",
            "SELECT @@gtid_binlog_pos",
        )
        .await?
        .unwrap_or_default();
        let end = position::mariadb_watermarks(&end).unwrap_or_default();
        {
            let mut t = lock(&shared.timeline);
            for g in &start {
                t.set_base(&g.stream_key(), g.seq());
            }
            drop(t);
            // Lock order everywhere: primary before timeline, never the reverse while nested.
            let mut p = lock(&shared.primary);
            for g in start {
                if let Gtid::MariaDb { domain, .. } = g {
                    p.gtid_seq.insert(g.stream_key(), g.seq());
                    p.gtid_state.insert(domain, g);
                }
            }
            caught_up_now = reached_gtid(&p.gtid_seq, &end);
        }
        catch_up = CatchUp::Gtid(end);
        request_file = String::new();
        request_pos = 4;
        tracing::info!(%state, "opening MariaDB binlog stream by GTID");
    } else {
        exec(
            &mut conn,
            &target,
            "setting up a binlog dump",
            &format!("SET @master_heartbeat_period={hb_ns}, @source_heartbeat_period={hb_ns}"),
        )
        .await?;
        let (end_file, end_pos) = binlog_status(&mut conn, &target).await?;
        let (file, pos) = {
            let p = lock(&shared.primary);
            if p.resume_file.is_empty() {
                (end_file.clone(), end_pos)
            } else {
                (p.resume_file.clone(), p.resume_pos)
            }
        };
        let executed: String = query_first(
            &mut conn,
            &target,
            "reading @@gtid_executed",
            "SELECT @@gtid_executed",
        )
        .await
        .ok()
        .flatten()
        .unwrap_or_default();
        {
            let mut t = lock(&shared.timeline);
            for (k, seq) in position::mysql_watermarks(&executed).unwrap_or_default() {
                t.set_base(&k, seq);
            }
            if let Some(e) = position::encode_file_pos(&file, pos) {
                t.set_base(FILE_POS_KEY, e);
            }
        }
        let end = position::encode_file_pos(&end_file, end_pos).unwrap_or(0);
        caught_up_now = position::encode_file_pos(&file, pos).unwrap_or(0) >= end;
        catch_up = CatchUp::FilePos(end);
        tracing::info!(%file, pos, "opening binlog stream by file/position");
        request_file = file;
        request_pos = pos;
    }
    let request = BinlogStreamRequest::new(server_id)
        .with_filename(request_file.as_bytes())
        .with_pos(request_pos);
    let mut stream = conn
        .get_binlog_stream(request)
        .await
        .map_err(StreamError::Stream)?;
    {
        let mut p = lock(&shared.primary);
        p.connected = true;
        p.complete_at_loss = false;
        p.unreachable_since_ms = None;
        if caught_up_now {
            mark_caught_up(&shared, &mut p);
        }
        p.error = None;
        p.last_event_at = Some(Instant::now());
        if !request_file.is_empty() {
            p.file = request_file.clone();
            p.pos = request_pos;
        }
    }
    let mut tracker = Tracker {
        mariadb,
        catch_up,
        pending: None,
        in_txn: false,
    };
    let idle_limit = shared.settings.heartbeat * 3;
    loop {
        let next = tokio::time::timeout(idle_limit, stream.next()).await;
        let ev = match next {
            Err(_) => return Err(StreamError::Idle(idle_limit)),
            Ok(None) => return Err(StreamError::Ended),
            Ok(Some(Err(e))) => {
                if replayed_start {
                    // The replicas' position is no longer in the primary's binlogs (purged):
                    // start over from the primary's current position.
                    forget_start(&shared);
                }
                return Err(StreamError::Stream(e));
            }
            Ok(Some(Ok(ev))) => ev,
        };
        if replayed_start && matches!(decode::decode(&ev), Ok(EventKind::TransactionStart { .. })) {
            replayed_start = false;
        }
        process(&shared, &mut tracker, &ev)?;
    }
}

/// Drops the position and timeline of a start that the primary refused.
fn forget_start(shared: &Shared) {
    let mut p = lock(&shared.primary);
    p.gtid_state.clear();
    p.gtid_seq.clear();
    drop(p);
    let mut t = lock(&shared.timeline);
    let capacity = t.capacity();
    *t = crate::timeline::Timeline::new(capacity);
}
