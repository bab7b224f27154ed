//! Statement classification: what one statement needs (primary, any replica, or the backend that
//! ran the previous statement), why, and what it does to session state.
//!
//! A byte scanner ([`lexer`]) decides common statements without allocating; statements it cannot
//! place go to sqlparser ([`parsed`]) whose verdicts are cached by text. Anything neither
//! understands goes to the primary with [`Reason::Unparseable`]: classification never fails.

mod builtins;
mod connection_id;
mod digest;
mod get_diagnostics;
mod kill;
mod last_statement;
mod lexer;
mod parsed;
mod reads;
mod rules;
pub(crate) mod set;
mod statement_digest;
mod text_prepared;

pub use connection_id::substitute_connection_id;
pub use digest::{digest, MAX_DIGEST};
pub(crate) use digest::{leading_keyword, longest_name};
pub use get_diagnostics::{get_diagnostics, Conditions, GetDiagnostics, Property};
pub use kill::{kill, Kill};
pub use last_statement::{
    keeps_last_statement, sets_last_insert_id, substitute_last_statement, Keeps, LastStatement,
};
pub use lexer::{for_each_leading_hint, split_statements, Span};
pub use statement_digest::StatementDigest;
pub use text_prepared::{execute_immediate, executed_name, prepared_text};

/// Where a statement may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target {
    /// The writable server (or the session's primary connection).
    Primary,
    /// Any healthy replica (the chooser decides which; the primary if none qualifies).
    Replica,
    /// The backend that ran the session's previous statement: `SHOW WARNINGS`, `ROW_COUNT()`,
    /// `FOUND_ROWS()`, `@@warning_count` describe that connection's last statement. When there is
    /// no previous backend, the proxy uses the primary.
    Previous,
}

impl Target {
    /// A stable label for metrics.
    pub fn as_str(&self) -> &'static str {
        match self {
            Target::Primary => "primary",
            Target::Replica => "replica",
            Target::Previous => "previous",
        }
    }
}

/// Why a statement was routed where it was. Fieldless so it can label a metric without
/// allocating: `rwsplit_queries_total{reason=...}` uses [`Reason::as_str`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// A plain read (`SELECT`, `SHOW`, `DESCRIBE`, `EXPLAIN`, `WITH ... SELECT`).
    Read,
    /// DML or anything that writes: INSERT/UPDATE/DELETE/REPLACE/LOAD DATA/CALL/DO/HANDLER/KILL...
    Write,
    /// DDL and other statements that implicitly commit (CREATE/ALTER/DROP/RENAME/TRUNCATE/GRANT...).
    Ddl,
    /// `FOR UPDATE`, `FOR SHARE`, `LOCK IN SHARE MODE`.
    LockingRead,
    /// `SELECT ... INTO OUTFILE/DUMPFILE/@var`.
    SelectInto,
    /// Transaction control, or any statement inside an open transaction on the primary.
    Transaction,
    /// `START TRANSACTION READ ONLY` sent to one replica for its whole duration (option).
    ReadOnlyTransaction,
    /// Any statement while `autocommit=0`.
    AutocommitOff,
    /// `LAST_INSERT_ID()`, `@@identity`, `@@last_insert_id`: per-connection, set by a write.
    LastInsertId,
    /// Assigns or reads a user variable (`@x := ...`, `SET @x`, `SELECT @x`): they live on the
    /// connection that set them, which is the primary.
    UserVariable,
    /// The session holds a temporary table, or the statement creates/drops one.
    TempTable,
    /// `LOCK TABLES` / `UNLOCK TABLES`, `FLUSH TABLES WITH READ LOCK`, or statements while held.
    LockTables,
    /// `GET_LOCK`, `RELEASE_LOCK`, `IS_USED_LOCK`, `IS_FREE_LOCK`, `RELEASE_ALL_LOCKS`, or any
    /// statement while the session may hold a named lock.
    NamedLock,
    /// Sequences: `NEXTVAL`, `LASTVAL`, `SETVAL`, `NEXT/PREVIOUS VALUE FOR`.
    Sequence,
    /// A multi-statement packet that is not entirely plain reads.
    MultiStatement,
    /// Neither the scanner nor sqlparser could place it.
    Unparseable,
    /// A leading `/* rwsplit:primary */` hint.
    HintPrimary,
    /// A leading `/* rwsplit:replica */` hint (honoured only for reads outside transactions).
    HintReplica,
    /// `SHOW WARNINGS/ERRORS`, `ROW_COUNT()`, `FOUND_ROWS()`, `@@warning_count`, `GET DIAGNOSTICS`.
    PreviousBackend,
    /// Changes session state that is replayed on other backends (`SET` session variables,
    /// `SET NAMES`, `USE`), or anything while that history overflowed.
    SessionState,
    /// Calls a function that is not a known built-in: a stored function may write.
    StoredFunction,
    /// Text-protocol prepared statements (`PREPARE`, `EXECUTE`, `DEALLOCATE`) live on the
    /// primary connection.
    PreparedStatement,
    /// Describes or controls one server (`SHOW MASTER STATUS`, `SHOW PROCESSLIST`, `SET GLOBAL`,
    /// `FLUSH`, replication control): the primary is the server users mean.
    ServerAdmin,
}

impl Reason {
    /// A stable label for metrics and logs.
    pub fn as_str(&self) -> &'static str {
        match self {
            Reason::Read => "read",
            Reason::Write => "write",
            Reason::Ddl => "ddl",
            Reason::LockingRead => "locking_read",
            Reason::SelectInto => "select_into",
            Reason::Transaction => "transaction",
            Reason::ReadOnlyTransaction => "read_only_transaction",
            Reason::AutocommitOff => "autocommit_off",
            Reason::LastInsertId => "last_insert_id",
            Reason::UserVariable => "user_variable",
            Reason::TempTable => "temp_table",
            Reason::LockTables => "lock_tables",
            Reason::NamedLock => "named_lock",
            Reason::Sequence => "sequence",
            Reason::MultiStatement => "multi_statement",
            Reason::Unparseable => "unparseable",
            Reason::HintPrimary => "hint_primary",
            Reason::HintReplica => "hint_replica",
            Reason::PreviousBackend => "previous_backend",
            Reason::SessionState => "session_state",
            Reason::StoredFunction => "stored_function",
            Reason::PreparedStatement => "prepared_statement",
            Reason::ServerAdmin => "server_admin",
        }
    }

    /// Every reason, for pre-registering metric label values.
    pub const ALL: [Reason; 23] = [
        Reason::Read,
        Reason::Write,
        Reason::Ddl,
        Reason::LockingRead,
        Reason::SelectInto,
        Reason::Transaction,
        Reason::ReadOnlyTransaction,
        Reason::AutocommitOff,
        Reason::LastInsertId,
        Reason::UserVariable,
        Reason::TempTable,
        Reason::LockTables,
        Reason::NamedLock,
        Reason::Sequence,
        Reason::MultiStatement,
        Reason::Unparseable,
        Reason::HintPrimary,
        Reason::HintReplica,
        Reason::PreviousBackend,
        Reason::SessionState,
        Reason::StoredFunction,
        Reason::PreparedStatement,
        Reason::ServerAdmin,
    ];
}

/// What a statement does to session state, once the server accepts it. The [`Session`]
/// applies it when the proxy reports the reply; spans point into the statement text.
///
/// [`Session`]: crate::session::Session
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Nothing the session must remember.
    None,
    /// A write: `LAST_INSERT_ID()` and `ROW_COUNT()` now live on the primary connection.
    Write,
    /// `BEGIN`, `START TRANSACTION [READ ONLY]`. Implicitly commits an open transaction.
    Begin { read_only: bool },
    /// `COMMIT` (also `COMMIT AND CHAIN`: the OK status flags say whether a transaction remains).
    Commit,
    /// `ROLLBACK` (not `ROLLBACK TO SAVEPOINT`, which keeps the transaction).
    Rollback,
    /// `XA START/BEGIN`: an XA transaction pins the primary.
    XaStart,
    /// `XA COMMIT` / `XA ROLLBACK`.
    XaEnd,
    /// `SET autocommit = 0|1` as the only assignment.
    SetAutocommit(bool),
    /// Any other `SET`: the session parses its assignments (session variables are recorded for
    /// replay, user variables pin the primary, `autocommit` changes the transaction mode,
    /// `GLOBAL`/`PERSIST` are neither).
    Set,
    /// `SET TRANSACTION ...` without a scope: applies to the next transaction only, never replayed.
    NextTransaction,
    /// `USE db`: the span is the schema name as written (may be backquoted).
    UseDb(Span),
    /// `CREATE TEMPORARY TABLE name`: the span is the (possibly qualified, quoted) name.
    CreateTempTable(Span),
    /// `DROP [TEMPORARY] TABLE a, b`: the span covers the table list.
    DropTables { temporary: bool, list: Span },
    /// DDL that implicitly commits an open transaction.
    ImplicitCommit,
    /// `LOCK TABLES` / `FLUSH TABLES WITH READ LOCK` (implicitly commits).
    LockTables,
    /// `UNLOCK TABLES` (implicitly commits when tables were locked).
    UnlockTables,
    /// `GET_LOCK(...)` called (possibly also releases; the session counts holds).
    NamedLock,
    /// `RELEASE_LOCK(...)` / `RELEASE_ALL_LOCKS()` only.
    ReleaseNamedLock { all: bool },
    /// Assigns a user variable (`@x := ...`, `SELECT ... INTO @x`).
    UserVariable,
    /// `PREPARE name FROM ...` (text protocol): the span is the statement name.
    PrepareText(Span),
    /// `DEALLOCATE PREPARE name` / `DROP PREPARE name`.
    DeallocateText(Span),
    /// A multi-statement packet: the session applies each statement's effect in turn.
    Multi,
}

/// The verdict on one statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Classification {
    pub target: Target,
    pub reason: Reason,
    /// From a leading `/* rwsplit:max_lag_ms=N */` hint: replicas further behind do not qualify.
    pub hint_max_lag_ms: Option<u64>,
    pub effect: Effect,
    /// `SELECT SQL_CALC_FOUND_ROWS ...`: `FOUND_ROWS()` will ask the connection that ran it.
    pub calc_found_rows: bool,
    /// Asks about the session's previous statement (`ROW_COUNT()`, `FOUND_ROWS()`,
    /// `@@warning_count`, `@@error_count`), whatever else sends it where it goes.
    pub reads_last_statement: bool,
}

impl Classification {
    pub(crate) const fn new(target: Target, reason: Reason, effect: Effect) -> Self {
        Self {
            target,
            reason,
            hint_max_lag_ms: None,
            effect,
            calc_found_rows: false,
            reads_last_statement: false,
        }
    }

    /// True when the statement may run on a replica outside any session pin.
    pub fn is_read(&self) -> bool {
        self.target == Target::Replica
    }
}

/// Classifies one `COM_QUERY` (or `COM_STMT_PREPARE`) text. Takes bytes because clients may
/// send invalid UTF-8; never fails: what cannot be understood goes to the primary.
pub fn classify(sql: &[u8]) -> Classification {
    rules::classify(sql)
}

/// A cursor positioned just after the leading `SET` of `text` (for the session's `SET` parse).
pub(crate) fn rules_cursor_after_set(text: &[u8]) -> rules::Cursor<'_> {
    let mut cur = rules::Cursor::new(text);
    cur.next();
    cur
}

/// The schema a `USE name` command selects, as written (backquotes included).
pub(crate) fn use_target(cmd: &[u8]) -> Option<&[u8]> {
    let mut lx = lexer::Lexer::new(cmd, 0);
    lx.next()?;
    lx.next()
        .filter(|t| {
            matches!(
                t.kind,
                lexer::Kind::Word | lexer::Kind::Quoted | lexer::Kind::Num
            )
        })
        .map(|t| t.span.of(cmd))
}

/// True when `text` mentions a user variable outside quotes and comments.
pub(crate) fn lex_has_user_var(text: &[u8]) -> bool {
    lexer::Lexer::new(text, 0).any(|t| t.kind == lexer::Kind::UserVar)
}

/// Calls `f` with each identifier of a possibly qualified name (`db`.`t`: db, then t).
pub(crate) fn for_each_name_part<'a>(name: &'a [u8], mut f: impl FnMut(&'a [u8])) {
    for t in lexer::Lexer::new(name, 0) {
        if matches!(t.kind, lexer::Kind::Word | lexer::Kind::Quoted) {
            f(t.span.of(name));
        }
    }
}

/// How many statements this thread sent to the sqlparser fallback (for tests and debugging).
pub fn parser_fallbacks_on_this_thread() -> u64 {
    parsed::fallbacks_on_this_thread()
}

/// Entries in the sqlparser verdict cache.
pub fn parse_cache_len() -> usize {
    parsed::parse_cache_len()
}

#[cfg(test)]
mod test;
