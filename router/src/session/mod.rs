//! The per-client session state machine: fed each statement and each server reply, it says where
//! the next statement must go and what session state must be replayed on a backend first.
//!
//! Protocol between proxy and session, per command:
//! 1. `route_query(sql)` (COM_QUERY) or `route_execute(&class)` (COM_STMT_EXECUTE) → [`Decision`];
//! 2. the proxy picks the backend (for `Target::Replica`, with [`crate::choice`]), replays
//!    [`Session::history`] there first if that connection's generation differs from
//!    [`Session::history_generation`], and runs the statement;
//! 3. the proxy reports the reply: `on_ok(status_flags)` (the final OK/EOF's flags) or
//!    `on_err(error_code)`. Effects of the statement apply only on `on_ok`.
//!
//! The OK packet's status flags are authoritative for transaction state
//! (`SERVER_STATUS_IN_TRANS`, `SERVER_STATUS_AUTOCOMMIT`).

mod history;

use crate::classify::{Classification, Reason, Target};

pub use history::History;

/// `SERVER_STATUS_IN_TRANS`: a transaction is open on the connection that replied.
pub const SERVER_STATUS_IN_TRANS: u16 = 0x0001;
/// `SERVER_STATUS_AUTOCOMMIT`: autocommit is on for the connection that replied.
pub const SERVER_STATUS_AUTOCOMMIT: u16 = 0x0002;
/// `SERVER_STATUS_IN_TRANS_READONLY`: the open transaction is read-only.
pub const SERVER_STATUS_IN_TRANS_READONLY: u16 = 0x2000;

/// Where the next statement must go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub target: Target,
    pub reason: Reason,
    /// A per-statement lag limit from a hint; `None` means each server's configured limit.
    pub max_lag_ms: Option<u64>,
}

/// Session behaviour taken from the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionOptions {
    /// `START TRANSACTION READ ONLY` runs on one replica for its whole duration
    /// (`routing.read_only_transactions_on_replica`).
    pub read_only_transactions_on_replica: bool,
    /// Most entries kept in the replay history; past it the session stays on the primary.
    pub max_history: usize,
}

impl Default for SessionOptions {
    fn default() -> Self {
        Self {
            read_only_transactions_on_replica: false,
            max_history: 64,
        }
    }
}

/// Why the session must keep its primary connection (all false: the proxy may return it to
/// the pool between statements).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pins {
    /// A transaction is open on the primary (explicit, XA, or implicit under autocommit=0).
    pub transaction: bool,
    /// autocommit is off.
    pub autocommit_off: bool,
    /// At least one temporary table exists.
    pub temp_tables: bool,
    /// `LOCK TABLES` / `FLUSH TABLES WITH READ LOCK` held.
    pub lock_tables: bool,
    /// A named lock (`GET_LOCK`) may be held.
    pub named_locks: bool,
    /// User variables were assigned on the primary connection.
    pub user_variables: bool,
    /// Text-protocol prepared statements exist on the primary connection.
    pub prepared_text: bool,
    /// The session wrote: `LAST_INSERT_ID()`/`ROW_COUNT()` live on that connection.
    pub wrote: bool,
}

impl Pins {
    /// Any pin at all.
    pub fn any(&self) -> bool {
        self.transaction
            || self.autocommit_off
            || self.temp_tables
            || self.lock_tables
            || self.named_locks
            || self.user_variables
            || self.prepared_text
            || self.wrote
    }
}

/// The class of a prepared statement, kept by the proxy per statement id and passed to
/// [`Session::route_execute`] on each execution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StmtClass {
    pub class: Classification,
    /// The statement text, kept only when executing it changes session state (temporary
    /// tables, `SET`, ...): most prepared statements carry `None`.
    pub(crate) text: Option<std::sync::Arc<[u8]>>,
}

/// One client session's routing state.
#[derive(Debug, Clone)]
pub struct Session {
    opts: SessionOptions,
    history: History,
}

impl Session {
    pub fn new(opts: SessionOptions) -> Self {
        Self {
            opts,
            history: History::new(opts.max_history),
        }
    }

    /// Decides where a `COM_QUERY` goes. Remembers the statement's effect until the reply.
    pub fn route_query(&mut self, sql: &[u8]) -> Decision {
        let c = crate::classify::classify(sql);
        Decision {
            target: c.target,
            reason: c.reason,
            max_lag_ms: c.hint_max_lag_ms,
        }
    }

    /// Classifies a `COM_STMT_PREPARE` text. The proxy stores the class with the statement id and
    /// prepares the statement lazily on whichever backend each execution goes to.
    pub fn on_prepare(&self, sql: &[u8]) -> StmtClass {
        StmtClass {
            class: crate::classify::classify(sql),
            text: None,
        }
    }

    /// Decides where a `COM_STMT_EXECUTE` goes, by the statement's own class and the session.
    pub fn route_execute(&mut self, stmt: &StmtClass) -> Decision {
        Decision {
            target: stmt.class.target,
            reason: stmt.class.reason,
            max_lag_ms: stmt.class.hint_max_lag_ms,
        }
    }

    /// The statement succeeded; `status_flags` are those of the reply's final OK/EOF packet.
    pub fn on_ok(&mut self, _status_flags: u16) {}

    /// The statement failed with this MySQL error code; its effects are dropped
    /// (a deadlock, 1213, also ends the transaction).
    pub fn on_err(&mut self, _error_code: u16) {}

    /// `COM_INIT_DB` succeeded: record the schema for replay.
    pub fn on_init_db(&mut self, _db: &[u8]) {}

    /// `COM_RESET_CONNECTION` or `COM_CHANGE_USER` succeeded: back to a fresh session.
    pub fn reset(&mut self) {
        *self = Session::new(self.opts);
    }

    /// Session commands to run, in order, on a backend before its first statement for this
    /// session (and again whenever its generation is behind).
    pub fn history(&self) -> impl Iterator<Item = &[u8]> {
        self.history.commands()
    }

    /// Increases whenever the history changes: a backend connection that has replayed
    /// generation `g` is up to date while `history_generation() == g`.
    pub fn history_generation(&self) -> u64 {
        self.history.generation()
    }

    /// Why the session must keep its primary connection.
    pub fn pins(&self) -> Pins {
        Pins::default()
    }

    /// True when the proxy must keep this session's primary connection between statements.
    pub fn needs_pinned_primary(&self) -> bool {
        self.pins().any()
    }

    /// True while a transaction is open (on the primary or, read-only, on a replica).
    pub fn in_transaction(&self) -> bool {
        false
    }
}
