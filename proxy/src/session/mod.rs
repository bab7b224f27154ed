//! One client session: reads commands, asks the router where each goes, holds at most one
//! backend connection per server it needs (replaying session state on it first), and streams
//! the answers back as bytes.

mod activity;
mod audit;
mod change_user;
mod conns;
mod consistency;
mod counters;
mod exec;
mod get_diagnostics;
mod hung;
mod integrity;
mod kill;
mod last_statement;
mod limits;
mod quorum;
pub mod registry;
mod rules;
mod stmt;
mod stmt_rules;
mod token;
pub mod top;
mod view;
mod warnings;
mod write_gate;

use crate::backend::{pools_for, Pools};
use crate::context::Context;
use crate::frontend::{Client, ClientStream};
use crate::metrics::route;
use crate::protocol::consts::{code, com, status};
use crate::protocol::message::{eof_payload, err_payload, ok_payload};
use crate::protocol::packet::{read_packet, write_packet};
use conns::{ConnRef, Held};
pub use kill::kill_entry;
use prometheus::Histogram;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// Why a session ended abnormally.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Protocol(#[from] crate::protocol::Error),
    #[error("client idle for more than {0:?} (proxy.client_idle_timeout_s)")]
    IdleTimeout(Duration),
    #[error("client: {0}")]
    Client(std::io::Error),
    /// COM_CHANGE_USER failed (denied, timed out, broken): the session ends, as on a server.
    #[error("COM_CHANGE_USER: {0}")]
    ChangeUser(Box<crate::frontend::Error>),
    /// `KILL CONNECTION` from a client (this session's or another's).
    #[error("killed by KILL CONNECTION")]
    Killed,
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Client(e)
    }
}

/// Latency histograms resolved once per session.
struct Timers {
    primary: Histogram,
    replica: Histogram,
    previous: Histogram,
}

/// The state of one client session.
pub struct Session {
    ctx: Arc<Context>,
    pools: Arc<Pools>,
    client: Client,
    stream: ClientStream,
    router: router::Session,
    view: view::View,
    held: Vec<Held>,
    /// The connection that ran the previous statement (`SHOW WARNINGS`, `ROW_COUNT()`...).
    previous: Option<ConnRef>,
    /// The previous statement left warnings, an error or a `FOUND_ROWS()` count that only
    /// its connection can answer: that connection is kept until the next statement.
    diag_pin: bool,
    /// What the previous statement left for `ROW_COUNT()`, `FOUND_ROWS()`... (see
    /// `last_statement.rs`).
    last: router::classify::LastStatement,
    /// The proxy ran a statement of its own on the previous statement's connection since.
    last_disturbed: bool,
    /// The COM_QUERY running now is a `GET DIAGNOSTICS` rewritten to assign the recorded
    /// values (see `get_diagnostics.rs`): recorded as the statement it replaces.
    diagnostics_rewritten: bool,
    /// The COM_STMT_EXECUTE running now runs another text (see `last_statement.rs`).
    substituted: Option<last_statement::Substituted>,
    /// The connection the session's pinned state (transaction, locks, temporary tables...)
    /// lives on; every statement that needs that state runs there or fails.
    anchor: Option<ConnRef>,
    /// Pins as of the last statement, to count the ones that start.
    pins_seen: router::Pins,
    /// The transaction's connection was lost: the transaction is rolled back, and statements
    /// fail with this message until the client ends it.
    aborted: Option<String>,
    /// Pinned state outside a transaction was lost: the next statement fails with this.
    lost_notice: Option<String>,
    /// The last insert id a write reported, restored on a new primary connection.
    last_insert_id: u64,
    /// COM_SET_OPTION value to apply on every backend connection, when the client set one.
    set_option: Option<u16>,
    /// The session state every connection must be in before a statement runs there (its
    /// history and COM_SET_OPTION), rebuilt when they change: see `conns.rs`.
    want: Arc<crate::backend::Fingerprint>,
    /// The history generation `want` was built from.
    want_generation: u64,
    /// Pool keys per server, built once (see `Session::key_index`).
    keys: Vec<(Arc<crate::context::Backend>, crate::backend::Key)>,
    stmts: HashMap<u32, stmt::Stmt>,
    next_stmt_id: u32,
    /// The current command packet.
    cmd: Vec<u8>,
    /// Frame buffer for relaying responses.
    frame: Vec<u8>,
    /// A rewritten command packet (statement id and types for one backend).
    out: Vec<u8>,
    timers: Timers,
    /// `rwsplit_queries_total` series this session counts into (see `counters.rs`).
    counters: counters::QueryCounters,
    /// Packet, statement and long-data bounds (see `limits.rs`).
    limits: limits::Limits,
    /// This session in the registry `KILL` looks sessions up in (see `kill.rs`).
    registration: registry::Registration,
    /// Read-your-writes: its commits' GTIDs, what it read (see `consistency.rs`).
    cons: consistency::Consistency,
    /// A warning the proxy added to the previous statement's answer (see `warnings.rs`).
    own_warning: Option<warnings::OwnWarning>,
    /// Its way to the audit writer (see `audit.rs`).
    audit: crate::audit::SessionAudit,
    /// The statement running now, for the admin API (see `activity.rs`).
    track: activity::Track,
    /// The current command's digest, computed at most once and only when asked for: shared by
    /// statement statistics, query rules and the audit log. Reset as each command is read.
    digest: router::classify::StatementDigest,
}

/// Runs the command loop for an authenticated client.
pub async fn run(
    stream: ClientStream,
    client: Client,
    ctx: Arc<Context>,
    positions: Arc<crate::consistency::Positions>,
) -> Result<(), Error> {
    let cfg = ctx.proxy_config();
    let idle_timeout = Duration::from_secs(cfg.client_idle_timeout_s.max(1));
    // Idle time after which the session gives back the backend connections its state does not
    // need (`proxy.pool.release_delay_ms`, 0 by default: as each statement ends, which costs no
    // reset since connections carry their session state, see `conns.rs`). Read once per
    // session, like the timeouts above.
    let release_delay = Duration::from_millis(cfg.pool.release_delay_ms);
    let limits = limits::Limits::new(&cfg);
    let write_timeout = (cfg.client_write_timeout_ms > 0)
        .then(|| Duration::from_millis(cfg.client_write_timeout_ms));
    drop(cfg);
    let mut stream = stream;
    stream.set_write_timeout(write_timeout);
    let config = ctx.config();
    let mut router = router::Session::new(router::SessionOptions {
        read_only_transactions_on_replica: config.routing.read_only_transactions_on_replica,
        ..router::SessionOptions::default()
    });
    if let Some(db) = &client.database {
        router.on_init_db(db.as_bytes());
    }
    let timers = Timers {
        primary: ctx.metrics.query_duration_for(route::PRIMARY),
        replica: ctx.metrics.query_duration_for(route::REPLICA),
        previous: ctx.metrics.query_duration_for(route::PREVIOUS),
    };
    let cons = {
        let user = cfg_users_find(&ctx, &client.user);
        consistency::Consistency::new(positions, &config, user.as_ref(), client.caps)
    };
    let mut s = Session {
        cons,
        own_warning: None,
        pools: pools_for(&ctx),
        view: view::View::new(&ctx),
        registration: kill::register(&ctx, &client),
        audit: crate::audit::SessionAudit::default(),
        track: activity::Track::new(&ctx),
        digest: router::classify::StatementDigest::default(),
        ctx,
        client,
        stream,
        router,
        held: Vec::new(),
        previous: None,
        diag_pin: false,
        last: last_statement::FRESH,
        last_disturbed: false,
        diagnostics_rewritten: false,
        substituted: None,
        anchor: None,
        pins_seen: router::Pins::default(),
        aborted: None,
        lost_notice: None,
        last_insert_id: 0,
        set_option: None,
        want: crate::backend::Fingerprint::fresh(),
        want_generation: u64::MAX,
        keys: Vec::new(),
        stmts: HashMap::new(),
        next_stmt_id: 1,
        cmd: Vec::new(),
        frame: Vec::new(),
        out: Vec::new(),
        timers,
        counters: counters::QueryCounters::default(),
        limits,
    };
    let r = s.serve(idle_timeout, release_delay).await;
    s.track_abandoned();
    // Whatever ended the session (the client quit or vanished, an error, shutdown), its
    // transaction and locks end now, as on a direct connection: see `release_all`.
    s.release_all().await;
    r
}

/// The configuration of `user` among `proxy.users`, if listed.
fn cfg_users_find(ctx: &Context, user: &str) -> Option<router::config::UserConfig> {
    ctx.proxy_config()
        .users
        .iter()
        .find(|u| u.name == user)
        .cloned()
}

impl Session {
    async fn serve(
        &mut self,
        idle_timeout: Duration,
        release_delay: Duration,
    ) -> Result<(), Error> {
        let mut shutdown = self.ctx.shutdown_signal();
        // proxy.max_allowed_packet, never what the client declares (see limits.rs).
        let max_packet = self.limits.max_packet;
        let registered = self.registry_entry();
        // One idle timer for the whole session, armed at most once per `idle_timeout` rather
        // than once per command (a timer costs a registration and a removal in the runtime's
        // timer wheel): when it fires it looks at when the client last sent a command.
        let idle = tokio::time::sleep(idle_timeout);
        tokio::pin!(idle);
        // Waits made once per session, not per command: each registers with a list (the
        // shutdown signal's is shared by every session).
        let close = registered.close_requested();
        tokio::pin!(close);
        let shutdown_changed = shutdown.changed();
        tokio::pin!(shutdown_changed);
        let mut shutdown_seen = false;
        loop {
            // A statement boundary: after SIGTERM, no new statement starts here unless it
            // belongs to a transaction already open (which may finish, then the session ends).
            if self.ctx.is_shutting_down() && !self.router.in_transaction() {
                return Ok(());
            }
            // Wait for the next command; give back unneeded connections while idle.
            if release_delay.is_zero() && self.has_releasable() {
                // No delay: give back at once rather than through a zero-length timed read.
                self.release_idle().await;
            }
            let waiting_since = tokio::time::Instant::now();
            // Wait for the first byte of the next command (a wait that is safe to cut short:
            // nothing is consumed), then read the whole packet. Cutting a read in the middle of
            // a packet would lose its bytes and put the stream out of step.
            loop {
                // Only with `proxy.pool.release_delay_ms` > 0 and something to give back.
                let release_at = self
                    .has_releasable()
                    .then(|| tokio::time::Instant::now() + release_delay);
                let release = async {
                    match release_at {
                        Some(at) => tokio::time::sleep_until(at).await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    // A kill or a shutdown is seen even by a client that always has its next
                    // command sent already.
                    biased;
                    // KILL CONNECTION from another session.
                    () = &mut close => return Ok(()),
                    _ = &mut shutdown_changed, if !shutdown_seen => {
                        // Once: a transaction still open may finish (see the loop's top).
                        shutdown_seen = true;
                        if self.router.in_transaction() {
                            continue;
                        }
                        return Ok(());
                    }
                    r = self.stream.readable() => match r {
                        Ok(true) => break,
                        Ok(false) => return Ok(()),
                        Err(e) => return Err(Error::Client(e)),
                    },
                    () = release => self.release_idle().await,
                    () = &mut idle => {
                        let deadline = waiting_since + idle_timeout;
                        if tokio::time::Instant::now() >= deadline {
                            return Err(Error::IdleTimeout(idle_timeout));
                        }
                        idle.as_mut().reset(deadline);
                    }
                }
            }
            // A client that stops in the middle of a packet is cut off like an idle one. The
            // whole packet is usually buffered already: then no timer is set.
            let read = read_packet(&mut self.stream, &mut self.cmd, max_packet);
            let seq = match crate::protocol::lazy_timeout(idle_timeout, read).await {
                Some(Ok(seq)) => seq,
                Some(Err(crate::protocol::Error::Closed)) => return Ok(()),
                Some(Err(crate::protocol::Error::TooLarge(n))) => {
                    return self.packet_too_large(n).await;
                }
                Some(Err(e)) => return Err(e.into()),
                None => return Err(Error::IdleTimeout(idle_timeout)),
            };
            let Some(&command) = self.cmd.first() else {
                // An empty packet is not a command: the stream is out of step.
                let (c, st) = code::ER_NET_READ_ERROR;
                let _ = self
                    .send_err(
                        seq.wrapping_add(1),
                        c,
                        st,
                        "Got an empty packet instead of a command",
                    )
                    .await;
                return Err(crate::protocol::Error::Malformed("empty command packet").into());
            };
            let reply = seq.wrapping_add(1);
            self.digest.reset();
            if command != com::QUERY {
                // Only a query can ask for the previous statement's warnings.
                self.own_warning = None;
            }
            match command {
                com::QUIT => return Ok(()),
                com::QUERY => self.query().await?,
                com::PROCESS_KILL => self.process_kill().await?,
                com::PING => {
                    self.send_ok(reply).await?;
                }
                com::INIT_DB => self.init_db().await?,
                com::FIELD_LIST => self.field_list().await?,
                com::STATISTICS => self.statistics().await?,
                com::SET_OPTION => self.set_option().await?,
                com::RESET_CONNECTION => {
                    self.reset_session().await;
                    self.send_ok(reply).await?;
                }
                com::CHANGE_USER => self.change_user(reply).await?,
                com::STMT_PREPARE => self.stmt_prepare().await?,
                com::STMT_EXECUTE => self.stmt_execute().await?,
                com::STMT_SEND_LONG_DATA => self.stmt_long_data(),
                com::STMT_CLOSE => self.stmt_close().await,
                com::STMT_RESET => self.stmt_reset(reply).await?,
                com::STMT_FETCH => self.stmt_fetch().await?,
                other => {
                    let (c, st) = code::ER_UNKNOWN_COM_ERROR;
                    let msg =
                        format!("Unknown command 0x{other:02x}: rwsplit-proxy does not forward it");
                    self.send_err(reply, c, st, &msg).await?;
                }
            }
            self.shrink_buffers();
        }
    }

    /// Status flags for answers the proxy makes itself (the router trusts them as a
    /// server's, so they must say what the session's state is).
    fn status_flags(&self) -> u16 {
        let mut s = 0;
        if self.router.autocommit() {
            s |= status::AUTOCOMMIT;
        }
        if self.router.in_transaction() {
            s |= status::IN_TRANS;
        }
        s
    }

    async fn send_ok(&mut self, seq: u8) -> Result<(), Error> {
        let p = ok_payload(0, 0, self.status_flags(), 0);
        write_packet(&mut self.stream, seq, &p).await?;
        self.stream.flush().await?;
        Ok(())
    }

    async fn send_eof(&mut self, seq: u8) -> Result<(), Error> {
        let p = eof_payload(self.client.caps, self.status_flags());
        write_packet(&mut self.stream, seq, &p).await?;
        self.stream.flush().await?;
        Ok(())
    }

    async fn send_err(&mut self, seq: u8, code: u16, state: &str, msg: &str) -> Result<(), Error> {
        write_packet(&mut self.stream, seq, &err_payload(code, state, msg)).await?;
        self.stream.flush().await?;
        Ok(())
    }

    /// COM_RESET_CONNECTION: a fresh session; held connections are reset (their transaction
    /// rolled back, locks released) and go back to the pool.
    async fn reset_session(&mut self) {
        self.release_all().await;
        self.router.reset();
        self.forget_want();
        if let Some(db) = self.client.database.clone() {
            self.router.on_init_db(db.as_bytes());
        }
        self.last_insert_id = 0;
        self.last = last_statement::FRESH;
        self.pins_seen = router::Pins::default();
        self.aborted = None;
        self.lost_notice = None;
        self.forget_token();
        self.own_warning = None;
        self.stmts.clear();
        self.limits.long_data = 0;
    }
}

/// An ERR payload for a backend failure the client must hear about.
pub(crate) fn backend_err(server: &str, e: &crate::backend::Error) -> (u16, String, String) {
    use crate::backend::Error as B;
    match e {
        B::Server {
            code,
            state,
            message,
        } => (
            *code,
            state.clone(),
            format!("{message} (on backend '{server}')"),
        ),
        B::PoolExhausted { .. } => {
            let (c, st) = code::ER_CON_COUNT_ERROR;
            (c, st.into(), format!("rwsplit: {e}"))
        }
        B::UserBackendLimit { .. } => {
            let (c, st) = crate::frontend::user_limit::ER_USER_LIMIT_REACHED;
            (c, st.into(), format!("rwsplit: {e}"))
        }
        _ => {
            let (c, st) = code::ER_NET_READ_ERROR;
            (c, st.into(), format!("rwsplit: backend '{server}': {e}"))
        }
    }
}
