//! The routing rules of DESIGN.md §2 applied to the scanner's tokens: dispatch on the leading
//! keyword, then the statement-specific checks. Anything not recognised goes to sqlparser.

use super::lexer::{leading_hints, split_statements, Kind, Lexer, Span, Token};
use super::reads::scan_read;
use super::{parsed, Classification, Effect, Reason, Target};

/// Token cursor with one-token lookahead over one statement.
#[derive(Clone)]
pub(crate) struct Cursor<'a> {
    pub sql: &'a [u8],
    lx: Lexer<'a>,
    peeked: Option<Option<Token>>,
}

impl<'a> Cursor<'a> {
    pub fn new(sql: &'a [u8]) -> Self {
        Self {
            sql,
            lx: Lexer::new(sql, 0),
            peeked: None,
        }
    }

    /// The next token of this statement (`None` at `;` or the end).
    pub fn next(&mut self) -> Option<Token> {
        let t = match self.peeked.take() {
            Some(t) => t,
            None => self.lx.next(),
        };
        match t {
            Some(t) if t.is_punct(b';') => {
                self.peeked = Some(Some(t));
                None
            }
            t => t,
        }
    }

    pub fn peek(&mut self) -> Option<Token> {
        if self.peeked.is_none() {
            self.peeked = Some(self.lx.next());
        }
        match self.peeked {
            Some(Some(t)) if !t.is_punct(b';') => Some(t),
            _ => None,
        }
    }

    /// True when the next token is the keyword `kw` (consumed if so).
    pub fn eat_kw(&mut self, kw: &[u8]) -> bool {
        match self.peek() {
            Some(t) if self.is_kw(&t, kw) => {
                self.next();
                true
            }
            _ => false,
        }
    }

    pub fn is_kw(&self, t: &Token, kw: &[u8]) -> bool {
        t.kind == Kind::Word && t.span.of(self.sql).eq_ignore_ascii_case(kw)
    }

    /// True once an unterminated quote or comment was met.
    pub fn malformed(&self) -> bool {
        self.lx.malformed()
    }

    /// True when another statement follows a `;` (a multi-statement packet).
    pub fn more_statements(&mut self) -> bool {
        // Fast path: no `;` byte at all after here means a single statement (a SIMD-friendly
        // scan instead of lexing the rest of, say, a long INSERT).
        let rest_start = match self.peeked {
            Some(Some(t)) => t.span.start as usize,
            _ => self.lx.offset(),
        };
        if !self.sql.get(rest_start..).unwrap_or(&[]).contains(&b';') {
            return false;
        }
        while self.next().is_some() {}
        loop {
            match self.peeked.take().unwrap_or_else(|| self.lx.next()) {
                None => return false,
                Some(t) if t.is_punct(b';') => continue,
                Some(_) => return true,
            }
        }
    }
}

/// Uppercases a word into `buf` for keyword matching; longer words come back empty (no keyword
/// is that long).
pub(crate) fn upper<'b>(sql: &[u8], span: Span, buf: &'b mut [u8; 32]) -> &'b [u8] {
    let w = span.of(sql);
    if w.len() > buf.len() {
        return &[];
    }
    for (d, s) in buf.iter_mut().zip(w) {
        *d = s.to_ascii_uppercase();
    }
    &buf[..w.len()]
}

const fn c(target: Target, reason: Reason, effect: Effect) -> Classification {
    Classification::new(target, reason, effect)
}
const PRIMARY_WRITE: Classification = c(Target::Primary, Reason::Write, Effect::Write);
const DDL: Classification = c(Target::Primary, Reason::Ddl, Effect::ImplicitCommit);
const ADMIN: Classification = c(Target::Primary, Reason::ServerAdmin, Effect::None);
const ADMIN_COMMIT: Classification =
    c(Target::Primary, Reason::ServerAdmin, Effect::ImplicitCommit);
const TRX: Classification = c(Target::Primary, Reason::Transaction, Effect::None);
const READ: Classification = c(Target::Replica, Reason::Read, Effect::None);
const PREVIOUS: Classification = c(Target::Previous, Reason::PreviousBackend, Effect::None);
pub(super) const UNPARSEABLE: Classification =
    c(Target::Primary, Reason::Unparseable, Effect::None);

pub(super) fn classify(sql: &[u8]) -> Classification {
    let hints = leading_hints(sql);
    let mut cur = Cursor::new(sql);
    let mut class = statement(&mut cur);
    if cur.more_statements() && !(class.target == Target::Primary && is_compound(sql)) {
        class = multi(sql);
    }
    if cur.malformed() {
        // An unterminated quote or comment: the server rejects it; do not guess.
        class = UNPARSEABLE;
    }
    class.hint_max_lag_ms = hints.max_lag_ms;
    if hints.primary && class.target == Target::Replica {
        class.target = Target::Primary;
        class.reason = Reason::HintPrimary;
    } else if hints.replica
        && class.target == Target::Primary
        && class.reason == Reason::StoredFunction
    {
        // The client vouches that its function only reads. Nothing else is overridden:
        // a replica hint never sends a write, lock or session-state statement to a replica.
        class.target = Target::Replica;
        class.reason = Reason::HintReplica;
    }
    class
}

/// Compound statements hold `;` inside their body and are one statement to the server:
/// `BEGIN NOT ATOMIC ... END`, `CREATE [OR REPLACE] [DEFINER=...] PROCEDURE/FUNCTION/TRIGGER/EVENT`.
fn is_compound(sql: &[u8]) -> bool {
    let mut cur = Cursor::new(sql);
    let Some(first) = cur.next() else {
        return false;
    };
    if cur.is_kw(&first, b"BEGIN") {
        return cur.eat_kw(b"NOT");
    }
    if !cur.is_kw(&first, b"CREATE") {
        return false;
    }
    for _ in 0..12 {
        match cur.next() {
            Some(t) if t.kind == Kind::Word => {
                for kw in [
                    &b"PROCEDURE"[..],
                    b"FUNCTION",
                    b"TRIGGER",
                    b"EVENT",
                    b"PACKAGE",
                ] {
                    if cur.is_kw(&t, kw) {
                        return true;
                    }
                }
                if cur.is_kw(&t, b"TABLE") || cur.is_kw(&t, b"VIEW") || cur.is_kw(&t, b"INDEX") {
                    return false;
                }
            }
            Some(_) => {}
            None => return false,
        }
    }
    false
}

/// A multi-statement packet: a plain read only if every piece is.
fn multi(sql: &[u8]) -> Classification {
    let all_reads = split_statements(sql).all(|piece| {
        let mut cur = Cursor::new(piece);
        let class = statement(&mut cur);
        class.target == Target::Replica && class.effect == Effect::None
    });
    if all_reads {
        READ
    } else {
        c(Target::Primary, Reason::MultiStatement, Effect::Multi)
    }
}

/// Classifies one statement, dispatching on its first keyword.
pub(super) fn statement(cur: &mut Cursor<'_>) -> Classification {
    let Some(first) = cur.next() else {
        return UNPARSEABLE;
    };
    if first.is_punct(b'(') {
        return scan_read(cur, false);
    }
    if first.kind != Kind::Word {
        return UNPARSEABLE;
    }
    let mut buf = [0u8; 32];
    let kw = upper(cur.sql, first.span, &mut buf);
    match kw {
        b"WITH" => scan_read(cur, true),
        b"SELECT" | b"VALUES" | b"TABLE" => scan_read(cur, false),
        b"INSERT" | b"UPDATE" | b"DELETE" | b"REPLACE" | b"LOAD" | b"CALL" | b"MERGE" => {
            PRIMARY_WRITE
        }
        b"DO" => do_statement(cur),
        // HANDLER keeps an open cursor on its connection: `Effect::Write` pins the primary.
        b"HANDLER" => PRIMARY_WRITE,
        b"SHOW" => show(cur),
        b"DESC" | b"DESCRIBE" | b"EXPLAIN" => explain(cur),
        b"ANALYZE" => {
            if cur.eat_kw(b"TABLE")
                || cur.eat_kw(b"TABLES")
                || cur.eat_kw(b"NO_WRITE_TO_BINLOG")
                || cur.eat_kw(b"LOCAL")
            {
                DDL
            } else {
                statement(cur)
            }
        }
        b"HELP" => READ,
        b"BEGIN" => {
            if cur.eat_kw(b"NOT") {
                PRIMARY_WRITE // `BEGIN NOT ATOMIC ... END`: a compound statement.
            } else {
                c(
                    Target::Primary,
                    Reason::Transaction,
                    Effect::Begin { read_only: false },
                )
            }
        }
        b"START" => {
            if cur.eat_kw(b"TRANSACTION") {
                start_transaction(cur)
            } else {
                ADMIN // START SLAVE / START REPLICA / START GROUP_REPLICATION
            }
        }
        b"COMMIT" => c(Target::Primary, Reason::Transaction, Effect::Commit),
        b"ROLLBACK" => {
            cur.eat_kw(b"WORK");
            if cur.eat_kw(b"TO") {
                TRX
            } else {
                c(Target::Primary, Reason::Transaction, Effect::Rollback)
            }
        }
        b"SAVEPOINT" | b"RELEASE" => TRX,
        b"XA" => xa(cur),
        b"SET" => super::set::set_statement(cur),
        b"USE" => match cur.next() {
            Some(t) if matches!(t.kind, Kind::Word | Kind::Quoted) => {
                c(Target::Primary, Reason::SessionState, Effect::UseDb(t.span))
            }
            _ => UNPARSEABLE,
        },
        b"CREATE" => create(cur),
        b"DROP" => drop(cur),
        b"ALTER" | b"RENAME" | b"TRUNCATE" | b"GRANT" | b"REVOKE" | b"OPTIMIZE" | b"REPAIR"
        | b"CHECK" | b"CACHE" | b"INSTALL" | b"UNINSTALL" | b"IMPORT" => DDL,
        b"CHECKSUM" => PRIMARY_WRITE,
        b"LOCK" => {
            if cur.eat_kw(b"TABLE") || cur.eat_kw(b"TABLES") {
                c(Target::Primary, Reason::LockTables, Effect::LockTables)
            } else {
                ADMIN // LOCK INSTANCE FOR BACKUP
            }
        }
        b"UNLOCK" => {
            if cur.eat_kw(b"TABLE") || cur.eat_kw(b"TABLES") {
                c(Target::Primary, Reason::LockTables, Effect::UnlockTables)
            } else {
                ADMIN
            }
        }
        b"FLUSH" => flush(cur),
        b"PREPARE" => match cur.next() {
            Some(t) if matches!(t.kind, Kind::Word | Kind::Quoted) => c(
                Target::Primary,
                Reason::PreparedStatement,
                Effect::PrepareText(t.span),
            ),
            _ => UNPARSEABLE,
        },
        b"EXECUTE" => c(Target::Primary, Reason::PreparedStatement, Effect::Write),
        b"DEALLOCATE" => {
            cur.eat_kw(b"PREPARE");
            deallocate(cur)
        }
        b"GET" => {
            cur.eat_kw(b"CURRENT");
            cur.eat_kw(b"STACKED");
            if cur.eat_kw(b"DIAGNOSTICS") {
                // It assigns user variables: they live on the primary connection, which the
                // session keeps from then on (the proxy runs it there, see
                // `classify::get_diagnostics`).
                c(
                    Target::Previous,
                    Reason::PreviousBackend,
                    Effect::UserVariable,
                )
            } else {
                UNPARSEABLE
            }
        }
        b"KILL" | b"RESET" | b"PURGE" | b"CHANGE" | b"STOP" | b"SHUTDOWN" | b"RESTART"
        | b"BINLOG" | b"BACKUP" | b"CLONE" => ADMIN,
        _ => parsed::classify_with_parser(cur.sql),
    }
}

fn do_statement(cur: &mut Cursor<'_>) -> Classification {
    // `DO GET_LOCK('x', 10)` is how many applications take named locks.
    let mut class = scan_read(cur, false);
    if class.reason != Reason::NamedLock {
        class = c(Target::Primary, Reason::Write, class.effect);
    }
    class.target = Target::Primary;
    class
}

fn start_transaction(cur: &mut Cursor<'_>) -> Classification {
    let mut read_only = false;
    while let Some(t) = cur.next() {
        if cur.is_kw(&t, b"ONLY") {
            read_only = true;
        }
        if cur.is_kw(&t, b"WRITE") {
            read_only = false;
        }
    }
    c(
        Target::Primary,
        Reason::Transaction,
        Effect::Begin { read_only },
    )
}

fn xa(cur: &mut Cursor<'_>) -> Classification {
    let mut buf = [0u8; 32];
    let Some(t) = cur.next() else {
        return UNPARSEABLE;
    };
    match upper(cur.sql, t.span, &mut buf) {
        b"START" | b"BEGIN" => c(Target::Primary, Reason::Transaction, Effect::XaStart),
        b"COMMIT" | b"ROLLBACK" => c(Target::Primary, Reason::Transaction, Effect::XaEnd),
        _ => TRX, // XA END, XA PREPARE, XA RECOVER
    }
}

fn show(cur: &mut Cursor<'_>) -> Classification {
    let mut buf = [0u8; 32];
    let Some(t) = cur.next() else {
        return UNPARSEABLE;
    };
    match upper(cur.sql, t.span, &mut buf) {
        b"WARNINGS" | b"ERRORS" | b"COUNT" | b"PROFILE" | b"PROFILES" | b"STATUS" => PREVIOUS,
        b"SESSION" | b"LOCAL" => {
            if cur.eat_kw(b"STATUS") {
                PREVIOUS
            } else {
                READ
            }
        }
        b"GLOBAL" => {
            if cur.eat_kw(b"STATUS") {
                ADMIN
            } else {
                READ
            }
        }
        b"FULL" => {
            if cur.eat_kw(b"PROCESSLIST") {
                ADMIN
            } else {
                READ
            }
        }
        b"MASTER" | b"SLAVE" | b"REPLICA" | b"REPLICAS" | b"BINARY" | b"BINLOG" | b"RELAYLOG"
        | b"PROCESSLIST" | b"ENGINE" | b"OPEN" | b"ALL" | b"EXPLAIN" | b"INNODB" => ADMIN,
        _ => READ,
    }
}

fn explain(cur: &mut Cursor<'_>) -> Classification {
    // EXPLAIN ANALYZE executes the statement; plain EXPLAIN / DESCRIBE does not.
    if cur.eat_kw(b"ANALYZE") {
        let mut inner = cur.clone();
        if inner.eat_kw(b"FORMAT") {
            // EXPLAIN ANALYZE FORMAT=TREE SELECT ...
            inner.next();
            inner.next();
        }
        return statement(&mut inner);
    }
    if cur.eat_kw(b"FOR") {
        return ADMIN; // EXPLAIN FOR CONNECTION n: about one server's thread
    }
    READ
}

fn create(cur: &mut Cursor<'_>) -> Classification {
    if cur.eat_kw(b"OR") {
        cur.eat_kw(b"REPLACE");
    }
    if cur.eat_kw(b"TEMPORARY") {
        if !cur.eat_kw(b"TABLE") {
            return UNPARSEABLE;
        }
        if cur.eat_kw(b"IF") {
            cur.eat_kw(b"NOT");
            cur.eat_kw(b"EXISTS");
        }
        return match table_name(cur) {
            Some(span) => c(
                Target::Primary,
                Reason::TempTable,
                Effect::CreateTempTable(span),
            ),
            None => UNPARSEABLE,
        };
    }
    DDL
}

fn drop(cur: &mut Cursor<'_>) -> Classification {
    if cur.eat_kw(b"PREPARE") {
        return deallocate(cur);
    }
    let temporary = cur.eat_kw(b"TEMPORARY");
    if !cur.eat_kw(b"TABLE") && !cur.eat_kw(b"TABLES") {
        return if temporary { UNPARSEABLE } else { DDL };
    }
    if cur.eat_kw(b"IF") {
        cur.eat_kw(b"EXISTS");
    }
    let Some(first) = cur.peek() else {
        return UNPARSEABLE;
    };
    let mut end = first.span.end;
    while let Some(t) = cur.next() {
        if cur.is_kw(&t, b"RESTRICT")
            || cur.is_kw(&t, b"CASCADE")
            || cur.is_kw(&t, b"WAIT")
            || cur.is_kw(&t, b"NOWAIT")
        {
            break;
        }
        end = t.span.end;
    }
    let list = Span {
        start: first.span.start,
        end,
    };
    if temporary {
        c(
            Target::Primary,
            Reason::TempTable,
            Effect::DropTables { temporary, list },
        )
    } else {
        c(
            Target::Primary,
            Reason::Ddl,
            Effect::DropTables { temporary, list },
        )
    }
}

fn deallocate(cur: &mut Cursor<'_>) -> Classification {
    match cur.next() {
        Some(t) if matches!(t.kind, Kind::Word | Kind::Quoted) => c(
            Target::Primary,
            Reason::PreparedStatement,
            Effect::DeallocateText(t.span),
        ),
        _ => UNPARSEABLE,
    }
}

fn flush(cur: &mut Cursor<'_>) -> Classification {
    // FLUSH TABLES [t1, t2] WITH READ LOCK holds a lock on this connection until UNLOCK TABLES.
    let mut saw_with = false;
    while let Some(t) = cur.next() {
        if cur.is_kw(&t, b"WITH") {
            saw_with = true;
        } else if saw_with && cur.is_kw(&t, b"READ") {
            return c(Target::Primary, Reason::LockTables, Effect::LockTables);
        }
    }
    ADMIN_COMMIT
}

/// A possibly qualified table name: `t`, `` `t` ``, `db.t`. Returns its span.
pub(super) fn table_name(cur: &mut Cursor<'_>) -> Option<Span> {
    let first = cur.next()?;
    if !matches!(first.kind, Kind::Word | Kind::Quoted) {
        return None;
    }
    let mut end = first.span.end;
    while matches!(cur.peek(), Some(t) if t.is_punct(b'.')) {
        cur.next();
        match cur.next() {
            Some(t) if matches!(t.kind, Kind::Word | Kind::Quoted) => end = t.span.end,
            _ => return None,
        }
    }
    Some(Span {
        start: first.span.start,
        end,
    })
}
