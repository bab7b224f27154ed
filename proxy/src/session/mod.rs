//! One client session: reads commands, asks the router where each goes, holds at most one
//! backend connection per server it needs (replaying session state on it first), and streams
//! the answers back as bytes.

mod change_user;
mod conns;
mod exec;
mod kill;
pub mod registry;
mod stmt;
mod view;

use crate::backend::{pools_for, Pools};
use crate::context::Context;
use crate::frontend::{Client, ClientStream};
use crate::metrics::route;
use crate::protocol::consts::{code, com, status};
use crate::protocol::message::{eof_payload, err_payload, ok_payload};
use crate::protocol::packet::{read_packet, write_packet};
use conns::Held;
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
    /// Name of the server that ran the previous statement.
    previous: Option<Arc<str>>,
    /// The last insert id a write reported, restored on a new primary connection.
    last_insert_id: u64,
    /// COM_SET_OPTION value to apply on every backend connection, when the client set one.
    set_option: Option<u16>,
    stmts: HashMap<u32, stmt::Stmt>,
    next_stmt_id: u32,
    /// The current command packet.
    cmd: Vec<u8>,
    /// Frame buffer for relaying responses.
    frame: Vec<u8>,
    /// A rewritten command packet (statement id and types for one backend).
    out: Vec<u8>,
    timers: Timers,
    read_timeout: Duration,
    /// This session in the registry `KILL` looks sessions up in (see `kill.rs`).
    registration: registry::Registration,
}

/// Runs the command loop for an authenticated client.
pub async fn run(stream: ClientStream, client: Client, ctx: Arc<Context>) -> Result<(), Error> {
    let cfg = ctx.proxy_config();
    let idle_timeout = Duration::from_secs(cfg.client_idle_timeout_s.max(1));
    let read_timeout = Duration::from_millis(cfg.pool.read_timeout_ms.max(1));
    // Idle time after which the session gives back the backend connections its state does not
    // need (`proxy.pool.release_delay_ms`): short enough that idle clients hold nothing, long
    // enough that a busy client keeps its connections between statements (no reset and replay
    // per statement). Read once per session, like the timeouts above.
    let release_delay = Duration::from_millis(cfg.pool.release_delay_ms);
    drop(cfg);
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
    let mut s = Session {
        pools: pools_for(&ctx),
        view: view::View::new(&ctx),
        registration: kill::register(&ctx, &client),
        ctx,
        client,
        stream,
        router,
        held: Vec::new(),
        previous: None,
        last_insert_id: 0,
        set_option: None,
        stmts: HashMap::new(),
        next_stmt_id: 1,
        cmd: Vec::new(),
        frame: Vec::new(),
        out: Vec::new(),
        timers,
        read_timeout,
    };
    let r = s.serve(idle_timeout, release_delay).await;
    s.release_all();
    r
}

impl Session {
    async fn serve(
        &mut self,
        idle_timeout: Duration,
        release_delay: Duration,
    ) -> Result<(), Error> {
        let mut shutdown = self.ctx.shutdown_signal();
        let max_packet = self.client.max_packet.max(64 << 20);
        let registered = self.registry_entry();
        loop {
            // Wait for the next command; give back unneeded connections while idle.
            let mut waited = Duration::ZERO;
            if release_delay.is_zero() && self.has_releasable() {
                // No delay: give back at once rather than through a zero-length timed read.
                self.release_idle();
            }
            let seq = loop {
                let wait = if self.has_releasable() {
                    release_delay
                } else {
                    idle_timeout.saturating_sub(waited)
                };
                tokio::select! {
                    r = tokio::time::timeout(wait, read_packet(&mut self.stream, &mut self.cmd, max_packet)) => match r {
                        Ok(Ok(seq)) => break seq,
                        Ok(Err(crate::protocol::Error::Closed)) => return Ok(()),
                        Ok(Err(crate::protocol::Error::TooLarge(n))) => {
                            let (c, st) = code::ER_NET_PACKET_TOO_LARGE;
                            let msg = format!("Got a packet bigger than 'max_allowed_packet' bytes ({n} bytes)");
                            let _ = self.send_err(1, c, st, &msg).await;
                            return Err(crate::protocol::Error::TooLarge(n).into());
                        }
                        Ok(Err(e)) => return Err(e.into()),
                        Err(_) => {
                            waited += wait;
                            if self.has_releasable() {
                                self.release_idle();
                            } else if waited >= idle_timeout {
                                return Err(Error::IdleTimeout(idle_timeout));
                            }
                        }
                    },
                    // KILL CONNECTION from another session.
                    _ = registered.close_requested() => return Ok(()),
                    _ = shutdown.changed() => {
                        if self.router.in_transaction() {
                            continue;
                        }
                        return Ok(());
                    }
                }
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
                    self.reset_session();
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
        }
    }

    /// Status flags for answers the proxy makes itself.
    fn status_flags(&self) -> u16 {
        let mut s = status::AUTOCOMMIT;
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

    /// COM_RESET_CONNECTION: a fresh session; held connections go back to the pool (which
    /// resets them before their next use).
    fn reset_session(&mut self) {
        self.release_all();
        self.router.reset();
        if let Some(db) = self.client.database.clone() {
            self.router.on_init_db(db.as_bytes());
        }
        self.previous = None;
        self.last_insert_id = 0;
        self.stmts.clear();
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
        _ => {
            let (c, st) = code::ER_NET_READ_ERROR;
            (c, st.into(), format!("rwsplit: backend '{server}': {e}"))
        }
    }
}
