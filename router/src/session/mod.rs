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
mod state;

use crate::classify::{classify, Classification, Effect, Reason, Target};
use std::sync::Arc;

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
    /// The statement is a `SELECT SQL_CALC_FOUND_ROWS`: a later `FOUND_ROWS()` asks the
    /// connection that ran it, so the proxy keeps that connection until the next statement.
    pub calc_found_rows: bool,
    /// The statement asks about the previous one (`ROW_COUNT()`, `FOUND_ROWS()`,
    /// `@@warning_count`...), also when something else sends it to the primary
    /// (`SELECT LAST_INSERT_ID(), ROW_COUNT()`): the proxy answers from what it recorded
    /// where that connection cannot.
    pub reads_last_statement: bool,
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
    /// `SET TRANSACTION ...` (no scope) ran: its characteristics wait on that connection for
    /// the next transaction only, so they cannot be replayed elsewhere.
    pub next_transaction: bool,
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
            || self.next_transaction
    }

    /// The pins as `(reason label, set)` pairs, for metrics and logs.
    pub fn reasons(&self) -> [(&'static str, bool); 8] {
        [
            ("transaction", self.transaction),
            ("autocommit_off", self.autocommit_off),
            ("temp_tables", self.temp_tables),
            ("lock_tables", self.lock_tables),
            ("named_locks", self.named_locks),
            ("user_variables", self.user_variables),
            ("prepared_text", self.prepared_text),
            ("next_transaction", self.next_transaction),
        ]
    }
}

/// The class of a prepared statement, kept by the proxy per statement id and passed to
/// [`Session::route_execute`] on each execution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StmtClass {
    pub class: Classification,
    /// The statement text, kept only when executing it changes session state (temporary
    /// tables, `SET`, ...): most prepared statements carry `None`.
    pub(crate) text: Option<Arc<[u8]>>,
}

/// One client session's routing state.
#[derive(Debug, Clone)]
pub struct Session {
    opts: SessionOptions,
    history: History,
    state: state::State,
    /// The statement awaiting its reply: its effect applies on `on_ok`.
    pending: Option<Pending>,
}

#[derive(Debug, Clone)]
struct Pending {
    class: Classification,
    /// The text, kept only when applying the effect needs it.
    text: Option<Arc<[u8]>>,
    /// A `START TRANSACTION READ ONLY` sent to a replica.
    read_only_on_replica: bool,
}

fn needs_text(effect: Effect) -> bool {
    !matches!(
        effect,
        Effect::None
            | Effect::Write
            | Effect::Begin { .. }
            | Effect::Commit
            | Effect::Rollback
            | Effect::XaStart
            | Effect::XaEnd
            | Effect::SetAutocommit(_)
            | Effect::NextTransaction
            | Effect::ImplicitCommit
            | Effect::LockTables
            | Effect::UnlockTables
            | Effect::NamedLock
            | Effect::ReleaseNamedLock { .. }
            | Effect::UserVariable
    )
}

impl Session {
    pub fn new(opts: SessionOptions) -> Self {
        Self {
            opts,
            history: History::new(opts.max_history),
            state: state::State::default(),
            pending: None,
        }
    }

    /// Decides where a `COM_QUERY` goes. Remembers the statement's effect until the reply.
    pub fn route_query(&mut self, sql: &[u8]) -> Decision {
        let class = classify(sql);
        let mut decision = self.decide(&class);
        if class.reason == Reason::PreparedStatement
            && !self.state.asking.is_empty()
            && self.executes_asking(sql).is_some()
        {
            decision.reads_last_statement = true;
        }
        self.pending = Some(Pending {
            class,
            text: needs_text(class.effect).then(|| Arc::from(sql)),
            read_only_on_replica: decision.reason == Reason::ReadOnlyTransaction
                && decision.target == Target::Replica,
        });
        decision
    }

    /// Whether the statement awaiting its reply only sets up the session (`SET NAMES`, session
    /// variables set to plain values, `USE`, `SET autocommit`) outside any transaction, so
    /// that it may run on a replica while no writer exists (issue 11: new connections never
    /// need the primary). It changes no data, and the history replays it on the writer's
    /// connection later. A value with a parenthesis (a subquery or function call, which could
    /// write) or a user variable keeps the statement on the writer.
    pub fn pending_is_session_setup(&self) -> bool {
        let Some(p) = &self.pending else {
            return false;
        };
        let st = &self.state;
        if st.in_trans || st.xa || st.next_trx || st.lock_tables || self.history.overflowed() {
            return false;
        }
        match p.class.effect {
            Effect::SetAutocommit(_) | Effect::UseDb(_) => true,
            Effect::Set => {
                p.class.reason == Reason::SessionState
                    && p.text
                        .as_deref()
                        .is_some_and(|t| !t.iter().any(|&b| b == b'(' || b == b';'))
            }
            _ => false,
        }
    }

    /// For `EXECUTE name [USING ...]` of a statement the session prepared (`PREPARE name FROM
    /// '...'`) from a text that asks about the previous statement: that text, and the rest of
    /// the `EXECUTE` (see `classify::execute_immediate`).
    pub fn executes_asking<'a>(&self, sql: &'a [u8]) -> Option<(Arc<[u8]>, &'a [u8])> {
        let (name, rest) = crate::classify::executed_name(sql)?;
        let name = state::last_name(name);
        self.state
            .asking
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, text)| (text.clone(), rest))
    }

    /// Classifies a `COM_STMT_PREPARE` text. The proxy stores the class with the statement id and
    /// prepares the statement lazily on whichever backend each execution goes to. The prepare
    /// itself may run anywhere (it changes no session state the router tracks).
    pub fn on_prepare(&self, sql: &[u8]) -> StmtClass {
        let class = classify(sql);
        StmtClass {
            class,
            text: needs_text(class.effect).then(|| Arc::from(sql)),
        }
    }

    /// Decides where a `COM_STMT_EXECUTE` goes, by the statement's own class and the session
    /// state (a prepared SELECT inside a transaction still goes to the primary).
    pub fn route_execute(&mut self, stmt: &StmtClass) -> Decision {
        let decision = self.decide(&stmt.class);
        self.pending = Some(Pending {
            class: stmt.class,
            text: stmt.text.clone(),
            read_only_on_replica: decision.reason == Reason::ReadOnlyTransaction
                && decision.target == Target::Replica,
        });
        decision
    }

    fn decide(&self, c: &Classification) -> Decision {
        let max_lag_ms = c.hint_max_lag_ms;
        let d = |target, reason| Decision {
            target,
            reason,
            max_lag_ms,
            calc_found_rows: c.calc_found_rows,
            reads_last_statement: c.reads_last_statement || c.target == Target::Previous,
        };
        let st = &self.state;
        if st.in_trans && st.trx_on_replica {
            // Everything in a read-only transaction, its end included, goes to its replica.
            return d(Target::Previous, Reason::ReadOnlyTransaction);
        }
        if let Effect::Begin { read_only: true } = c.effect {
            if self.opts.read_only_transactions_on_replica
                && !self.pins().any()
                && !self.history.overflowed()
            {
                return d(Target::Replica, Reason::ReadOnlyTransaction);
            }
        }
        match c.target {
            Target::Primary => d(Target::Primary, c.reason),
            Target::Previous => d(Target::Previous, c.reason),
            Target::Replica => {
                if st.in_trans || st.xa || st.next_trx {
                    d(Target::Primary, Reason::Transaction)
                } else if !st.autocommit {
                    d(Target::Primary, Reason::AutocommitOff)
                } else if st.lock_tables {
                    d(Target::Primary, Reason::LockTables)
                } else if !st.temp_tables.is_empty() {
                    // Simplest safe rule: while any temporary table exists, every read may
                    // touch one, and only the primary connection has them.
                    d(Target::Primary, Reason::TempTable)
                } else if self.history.overflowed() {
                    d(Target::Primary, Reason::SessionState)
                } else {
                    d(Target::Replica, c.reason)
                }
            }
        }
    }

    /// The statement succeeded; `status_flags` are those of the reply's final OK/EOF packet
    /// (authoritative for transaction state and autocommit).
    pub fn on_ok(&mut self, status_flags: u16) {
        if let Some(p) = self.pending.take() {
            if self.state.next_trx && consumes_next_transaction(&p.class) {
                self.state.next_trx = false;
            }
            let text = p.text.as_deref().unwrap_or(&[]);
            self.state
                .apply(p.class.effect, text, &mut self.history, false);
            if p.read_only_on_replica {
                self.state.trx_on_replica = true;
            }
        }
        self.state.in_trans = status_flags & SERVER_STATUS_IN_TRANS != 0;
        self.state.autocommit = status_flags & SERVER_STATUS_AUTOCOMMIT != 0;
        if !self.state.in_trans {
            self.state.trx_on_replica = false;
        }
    }

    /// The statement failed with this MySQL error code. A single statement's effects are
    /// dropped; for a multi-statement packet (where earlier statements did run) only the effects
    /// that keep the session on the primary are applied, and unknown session-variable state
    /// keeps it there too. A deadlock (1213) rolls the transaction back.
    pub fn on_err(&mut self, error_code: u16) {
        if let Some(p) = self.pending.take() {
            if p.class.effect == Effect::Multi {
                let text = p.text.as_deref().unwrap_or(&[]);
                self.state
                    .apply(p.class.effect, text, &mut self.history, true);
            }
        }
        if error_code == ER_LOCK_DEADLOCK {
            self.state.in_trans = false;
            self.state.trx_on_replica = false;
        }
    }

    /// `COM_INIT_DB` succeeded: record the schema for replay.
    pub fn on_init_db(&mut self, db: &[u8]) {
        let mut text = Vec::with_capacity(db.len() + 6);
        text.extend_from_slice(b"USE `");
        for b in db {
            if *b == b'`' {
                text.push(b'`');
            }
            text.push(*b);
        }
        text.push(b'`');
        self.history.record(b"use", &text);
    }

    /// `COM_RESET_CONNECTION` or `COM_CHANGE_USER` succeeded: back to a fresh session.
    pub fn reset(&mut self) {
        *self = Session::new(self.opts);
    }

    /// Session commands to run, in order, on a backend before its first statement for this
    /// session (and again whenever its generation is behind). Each is a complete statement
    /// (`USE ...`, `SET ...`) to send as `COM_QUERY`. Replaying all of them is idempotent.
    pub fn history(&self) -> impl Iterator<Item = &[u8]> {
        self.history.commands()
    }

    /// [`Session::history`] with the key of each command (what it sets: `use`, `names`, a
    /// lowercased variable name...), for proxies that compare and diff connection states.
    pub fn history_entries(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.history.entries()
    }

    /// The default schema the history leaves the session in: its last `USE` or `COM_INIT_DB`
    /// (the one it connected with included), unquoted. `None` when it never chose one, or when
    /// the history overflowed before it did (then only its connection knows).
    pub fn schema(&self) -> Option<String> {
        let (_, cmd) = self
            .history
            .entries()
            .filter(|(k, _)| *k == b"use")
            .last()?;
        let unquoted = match crate::classify::use_target(cmd)? {
            [b'`', inner @ .., b'`'] => String::from_utf8_lossy(inner).replace("``", "`"),
            text => String::from_utf8_lossy(text).into_owned(),
        };
        Some(unquoted)
    }

    /// Increases whenever the history changes: a backend connection that has replayed
    /// generation `g` is up to date while `history_generation() == g`.
    pub fn history_generation(&self) -> u64 {
        self.history.generation()
    }

    /// True once the session's state cannot be replayed (history bound exceeded, or a `SET` the
    /// router could not parse): it then reads from the primary only.
    pub fn history_overflowed(&self) -> bool {
        self.history.overflowed()
    }

    /// Why the session must keep its primary connection.
    pub fn pins(&self) -> Pins {
        let st = &self.state;
        Pins {
            transaction: (st.in_trans && !st.trx_on_replica) || st.xa,
            autocommit_off: !st.autocommit,
            temp_tables: !st.temp_tables.is_empty(),
            lock_tables: st.lock_tables,
            named_locks: st.named_locks > 0,
            user_variables: st.user_vars,
            prepared_text: !st.prepared_text.is_empty(),
            next_transaction: st.next_trx,
        }
    }

    /// The backend connection that held this session's pinned state is gone (I/O error, its
    /// server left, the writer changed): the server rolled back its transaction and dropped its
    /// temporary tables, locks, user variables and prepared statements. Returns the pins that
    /// were lost (what the client must be told); `autocommit` and the replay history stay,
    /// since the proxy re-applies them on the next connection.
    pub fn on_connection_lost(&mut self) -> Pins {
        let lost = self.pins();
        let st = &mut self.state;
        st.in_trans = false;
        st.trx_on_replica = false;
        st.xa = false;
        st.temp_tables.clear();
        st.lock_tables = false;
        st.named_locks = 0;
        st.user_vars = false;
        st.prepared_text.clear();
        st.asking.clear();
        st.next_trx = false;
        Pins {
            autocommit_off: false,
            ..lost
        }
    }

    /// True when the proxy must keep this session's primary connection between statements.
    pub fn needs_pinned_primary(&self) -> bool {
        self.pins().any()
    }

    /// The effect of the statement awaiting its reply (routed, not yet reported).
    pub fn pending_effect(&self) -> Option<Effect> {
        self.pending.as_ref().map(|p| p.class.effect)
    }

    /// True while a transaction is open (on the primary or, read-only, on a replica).
    pub fn in_transaction(&self) -> bool {
        self.state.in_trans || self.state.xa
    }

    /// True while a read-only transaction runs on a replica (statements go to `Previous`).
    pub fn in_replica_transaction(&self) -> bool {
        self.state.in_trans && self.state.trx_on_replica
    }

    /// The autocommit mode as last reported.
    pub fn autocommit(&self) -> bool {
        self.state.autocommit
    }

    /// Names of the temporary tables the session holds (lowercased, unqualified).
    pub fn temp_tables(&self) -> impl Iterator<Item = &[u8]> {
        self.state.temp_tables.iter().map(|t| &**t)
    }
}

/// Whether a statement runs in (and so uses up) the transaction `SET TRANSACTION` prepared:
/// anything but more session set-up and diagnostics.
fn consumes_next_transaction(c: &Classification) -> bool {
    !matches!(
        c.effect,
        Effect::NextTransaction | Effect::Set | Effect::UseDb(_) | Effect::SetAutocommit(_)
    ) && c.target != Target::Previous
}

/// MySQL's ER_LOCK_DEADLOCK: the server rolled the whole transaction back.
const ER_LOCK_DEADLOCK: u16 = 1213;

#[cfg(test)]
mod test;
