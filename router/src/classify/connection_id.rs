//! `CONNECTION_ID()` answered with the proxy's session id: each call in the statement text is
//! replaced by the id as a literal before the statement is routed, so the answer is the id the
//! client saw in its handshake (and passes to `KILL`), whichever server runs the statement.

use super::lexer::{Kind, Lexer, Token};
use super::rules::upper;

/// Replaces each `CONNECTION_ID()` call in `sql` (outside quotes and comments, not a qualified
/// `db.connection_id()`, which is a stored function) with `id`, appending the rewritten text to
/// `out`. Returns false, leaving `out` untouched, when there is nothing to replace.
///
/// A call that is a whole select item without an alias (`SELECT CONNECTION_ID()`) gets
/// `` AS `CONNECTION_ID()` `` in the spelling the client used, so the column keeps the name a
/// server would give it. `CREATE` and `ALTER` statements are left alone: views, routines,
/// triggers, events and column defaults store their text, and a literal there would outlive
/// the session (inside them `CONNECTION_ID()` answers the backend's thread id).
///
/// Statements that do not contain the name cost a scan of their bytes (see [`mentions`]) and
/// allocate nothing: about 5 ns for a point select, 0.9 µs for a 2 KB ORM select, 15 µs for a
/// 1 MB INSERT (`cargo bench -p router -- session_id`).
pub fn substitute_connection_id(sql: &[u8], id: u64, out: &mut Vec<u8>) -> bool {
    mentions(sql) && !stores_code(sql) && substitute_call(sql, b"CONNECTION_ID", id, out)
}

/// A name the substitution may replace: a call `name()` (no arguments, not qualified) or a
/// session system variable `@@name` / `@@session.name` / `@@local.name`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Name<'a> {
    Call(&'a [u8]),
    SysVar(&'a [u8]),
}

impl Name<'_> {
    /// The name is `want` (any case).
    pub(super) fn is(&self, want: &[u8]) -> bool {
        match self {
            Name::Call(n) | Name::SysVar(n) => n.eq_ignore_ascii_case(want),
        }
    }
}

/// Replaces each call `name()` outside quotes and comments (not qualified) with `literal`,
/// keeping the column name of a bare select item with `` AS `...` ``.
fn substitute_call(
    sql: &[u8],
    name: &[u8],
    literal: impl std::fmt::Display,
    out: &mut Vec<u8>,
) -> bool {
    substitute(sql, out, false, |n| match n {
        Name::Call(_) if n.is(name) => Some(literal.to_string()),
        _ => None,
    })
}

/// Replaces each [`Name`] outside quotes and comments for which `literal` has a value, keeping
/// the column name of a bare select item with `` AS `...` `` (in the spelling the client used).
/// Appends the rewritten text to `out`; returns false, leaving `out` untouched, when nothing
/// was replaced. `first_only`: only in the first statement of a multi-statement text.
pub(super) fn substitute(
    sql: &[u8],
    out: &mut Vec<u8>,
    first_only: bool,
    mut literal: impl FnMut(Name<'_>) -> Option<String>,
) -> bool {
    let mut lx = Lexer::new(sql, 0);
    let mut copied = 0usize;
    let mut depth = 0usize;
    // Bit `d`: the tokens at parenthesis depth `d` are a select list (up to depth 63).
    let mut select_list: u64 = 0;
    let bit = |d: usize| 1u64.checked_shl(d as u32).unwrap_or(0);
    let mut prev: Option<Token> = None;
    let mut buf = [0u8; 32];
    while let Some(t) = lx.next() {
        // What to replace: the byte range, the literal, and where the lexer goes on from.
        let mut found: Option<(usize, usize, String, Lexer<'_>, Token)> = None;
        match t.kind {
            Kind::Punct(b'(') => {
                depth += 1;
                select_list &= !bit(depth);
            }
            Kind::Punct(b')') => {
                select_list &= !bit(depth);
                depth = depth.saturating_sub(1);
            }
            Kind::Punct(b';') if first_only => break,
            Kind::Punct(b';') => {
                depth = 0;
                select_list = 0;
            }
            Kind::Word | Kind::Quoted if !prev.is_some_and(|p| p.is_punct(b'.')) => {
                let mut look = lx.clone();
                if let (Some(open), Some(close)) = (look.next(), look.next()) {
                    if open.is_punct(b'(') && close.is_punct(b')') {
                        if let Some(l) = literal(Name::Call(unquoted(sql, &t))) {
                            found = Some((
                                t.span.start as usize,
                                close.span.end as usize,
                                l,
                                look,
                                close,
                            ));
                        }
                    }
                }
                if found.is_none() && t.kind == Kind::Word {
                    match upper(sql, t.span, &mut buf) {
                        b"SELECT" | b"RETURNING" => select_list |= bit(depth),
                        w if ends_select_list(w) => select_list &= !bit(depth),
                        _ => {}
                    }
                }
            }
            Kind::SysVar => {
                if let Some(start) = session_sysvar_start(sql, &t) {
                    if let Some(l) = literal(Name::SysVar(t.span.of(sql))) {
                        found = Some((start, t.span.end as usize, l, lx.clone(), t));
                    }
                }
            }
            _ => {}
        }
        let Some((start, end, lit, look, last)) = found else {
            prev = Some(t);
            continue;
        };
        let bare = select_list & bit(depth) != 0
            && item_start(sql, prev)
            && item_end(sql, look.clone().next());
        out.extend_from_slice(sql.get(copied..start).unwrap_or(&[]));
        out.extend_from_slice(lit.as_bytes());
        if bare {
            out.extend_from_slice(b" AS `");
            for &b in sql.get(start..end).unwrap_or(&[]) {
                if b == b'`' {
                    out.push(b'`');
                }
                out.push(b);
            }
            out.push(b'`');
        }
        copied = end;
        lx = look;
        prev = Some(last);
    }
    if copied == 0 {
        return false;
    }
    out.extend_from_slice(sql.get(copied..).unwrap_or(&[]));
    true
}

/// Where a session variable's `@@` starts (`@@x`, `@@session.x`, `@@local.x`); `None` for
/// `@@global.x`, which names another value (or is an error the server must report).
fn session_sysvar_start(sql: &[u8], t: &Token) -> Option<usize> {
    let name = t.span.start as usize;
    let head = sql.get(..name)?;
    let at = head.windows(2).rposition(|w| w == b"@@")?;
    let scope = head.get(at + 2..)?;
    let scope = scope.strip_suffix(b".").unwrap_or(scope);
    (scope.is_empty()
        || scope.eq_ignore_ascii_case(b"session")
        || scope.eq_ignore_ascii_case(b"local"))
    .then_some(at)
}

/// Whether `sql` may contain the name (case-insensitively). Text without `_` is skipped by
/// memchr at SIMD speed; where underscores are dense (ORM SQL: `order0_.customer_id`), eight
/// bytes at a time are tested for a `_` followed by `i`/`I` before any closer look.
fn mentions(sql: &[u8]) -> bool {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    // A byte of `v` is zero (exact for the lowest, possibly spurious above it: then the closer
    // look says no).
    let zero_bytes = |v: u64| v.wrapping_sub(LO) & !v & HI;
    let Some(mut i) = memchr::memchr(b'_', sql) else {
        return false;
    };
    while let (Some(w), Some(n)) = (sql.get(i..i + 8), sql.get(i + 1..i + 9)) {
        let (Ok(w), Ok(n)) = (<[u8; 8]>::try_from(w), <[u8; 8]>::try_from(n)) else {
            break;
        };
        let under = u64::from_le_bytes(w) ^ (u64::from(b'_') * LO);
        let then_i = (u64::from_le_bytes(n) | (0x20 * LO)) ^ (u64::from(b'i') * LO);
        if zero_bytes(under | then_i) != 0 && (i..i + 8).any(|j| name_at(sql, j)) {
            return true;
        }
        if zero_bytes(under) == 0 {
            // No `_` in these eight bytes: hop to the next one.
            match memchr::memchr(b'_', &sql[i + 8..]) {
                Some(off) => i += 8 + off,
                None => return false,
            }
        } else {
            i += 8;
        }
    }
    (i..sql.len()).any(|j| name_at(sql, j))
}

/// `sql[j]` is the `_` of `connection_id` (any case).
fn name_at(sql: &[u8], j: usize) -> bool {
    j >= 10
        && sql.get(j) == Some(&b'_')
        && sql
            .get(j - 10..j)
            .is_some_and(|w| w.eq_ignore_ascii_case(b"connection"))
        && sql
            .get(j + 1..j + 3)
            .is_some_and(|w| w.eq_ignore_ascii_case(b"id"))
}

/// `CREATE ...` / `ALTER ...`: statements whose text the server may store.
pub(super) fn stores_code(sql: &[u8]) -> bool {
    let mut buf = [0u8; 32];
    match Lexer::new(sql, 0).next() {
        Some(t) if t.kind == Kind::Word => {
            matches!(upper(sql, t.span, &mut buf), b"CREATE" | b"ALTER")
        }
        _ => false,
    }
}

/// A name token without its backticks: servers look native functions up by name, quoted or
/// not (`` `connection_id`() `` is `CONNECTION_ID()`).
fn unquoted<'a>(sql: &'a [u8], t: &Token) -> &'a [u8] {
    let w = t.span.of(sql);
    match t.kind {
        Kind::Quoted => w
            .strip_prefix(b"`")
            .and_then(|w| w.strip_suffix(b"`"))
            .unwrap_or(w),
        _ => w,
    }
}

/// What may come just before a select item: the `SELECT` keyword, a select option, or a comma.
fn item_start(sql: &[u8], prev: Option<Token>) -> bool {
    let Some(p) = prev else { return false };
    if p.is_punct(b',') {
        return true;
    }
    let mut buf = [0u8; 32];
    p.kind == Kind::Word
        && matches!(
            upper(sql, p.span, &mut buf),
            b"SELECT"
                | b"RETURNING"
                | b"ALL"
                | b"DISTINCT"
                | b"DISTINCTROW"
                | b"HIGH_PRIORITY"
                | b"STRAIGHT_JOIN"
                | b"SQL_SMALL_RESULT"
                | b"SQL_BIG_RESULT"
                | b"SQL_BUFFER_RESULT"
                | b"SQL_CACHE"
                | b"SQL_NO_CACHE"
                | b"SQL_CALC_FOUND_ROWS"
        )
}

/// What may come just after a select item that has no alias.
fn item_end(sql: &[u8], next: Option<Token>) -> bool {
    let Some(n) = next else { return true };
    if n.is_punct(b',') || n.is_punct(b';') || n.is_punct(b')') {
        return true;
    }
    let mut buf = [0u8; 32];
    n.kind == Kind::Word && ends_select_list(upper(sql, n.span, &mut buf))
}

/// Keywords that end a select list at their depth.
fn ends_select_list(w: &[u8]) -> bool {
    matches!(
        w,
        b"FROM"
            | b"INTO"
            | b"WHERE"
            | b"GROUP"
            | b"HAVING"
            | b"ORDER"
            | b"LIMIT"
            | b"WINDOW"
            | b"FOR"
            | b"LOCK"
            | b"UNION"
            | b"EXCEPT"
            | b"INTERSECT"
    )
}

#[cfg(test)]
mod test {
    use super::*;

    fn sub(sql: &str) -> Option<String> {
        let mut out = Vec::new();
        if substitute_connection_id(sql.as_bytes(), 42, &mut out) {
            Some(String::from_utf8(out).expect("utf8"))
        } else {
            assert!(out.is_empty(), "nothing written when nothing replaced");
            None
        }
    }

    #[test]
    fn bare_select_items_keep_their_column_name() {
        assert_eq!(
            sub("SELECT CONNECTION_ID()").as_deref(),
            Some("SELECT 42 AS `CONNECTION_ID()`")
        );
        assert_eq!(
            sub("select connection_id(), Connection_Id ( ) from dual").as_deref(),
            Some("select 42 AS `connection_id()`, 42 AS `Connection_Id ( )` from dual")
        );
        assert_eq!(
            sub("SELECT DISTINCT CONNECTION_ID();").as_deref(),
            Some("SELECT DISTINCT 42 AS `CONNECTION_ID()`;")
        );
        assert_eq!(
            sub("SELECT 1; SELECT CONNECTION_ID() INTO @x").as_deref(),
            Some("SELECT 1; SELECT 42 AS `CONNECTION_ID()` INTO @x")
        );
        assert_eq!(
            sub("SELECT a, (SELECT CONNECTION_ID()) FROM t").as_deref(),
            Some("SELECT a, (SELECT 42 AS `CONNECTION_ID()`) FROM t")
        );
        assert_eq!(
            sub("SELECT `connection_id`()").as_deref(),
            Some("SELECT 42 AS ```connection_id``()`")
        );
        assert_eq!(
            sub("/*!SELECT CONNECTION_ID() */").as_deref(),
            Some("/*!SELECT 42 AS `CONNECTION_ID()` */")
        );
        assert_eq!(
            sub("DELETE FROM t RETURNING CONNECTION_ID()").as_deref(),
            Some("DELETE FROM t RETURNING 42 AS `CONNECTION_ID()`")
        );
    }

    #[test]
    fn other_positions_get_the_literal_only() {
        assert_eq!(
            sub("SELECT CONNECTION_ID() AS id").as_deref(),
            Some("SELECT 42 AS id")
        );
        assert_eq!(
            sub("SELECT CONNECTION_ID() id").as_deref(),
            Some("SELECT 42 id")
        );
        assert_eq!(
            sub("SELECT CONNECTION_ID()+1").as_deref(),
            Some("SELECT 42+1")
        );
        assert_eq!(
            sub("SELECT f(a, CONNECTION_ID())").as_deref(),
            Some("SELECT f(a, 42)")
        );
        assert_eq!(
            sub("SELECT a FROM t WHERE c = CONNECTION_ID() ORDER BY a, CONNECTION_ID()").as_deref(),
            Some("SELECT a FROM t WHERE c = 42 ORDER BY a, 42")
        );
        assert_eq!(
            sub("INSERT INTO t VALUES (CONNECTION_ID(), 'connection_id()')").as_deref(),
            Some("INSERT INTO t VALUES (42, 'connection_id()')")
        );
        assert_eq!(
            sub("KILL QUERY CONNECTION_ID()").as_deref(),
            Some("KILL QUERY 42")
        );
        assert_eq!(
            sub("SET @me = connection_id()").as_deref(),
            Some("SET @me = 42")
        );
    }

    #[test]
    fn no_false_positives() {
        for sql in [
            "SELECT 1",
            "SELECT 'CONNECTION_ID()'",
            "SELECT \"connection_id()\"",
            "SELECT `connection_id()` FROM t",
            "SELECT my_connection_id(), connection_id_x(), connection_idx()",
            "SELECT db.CONNECTION_ID()",
            "SELECT `db`.`connection_id`()",
            "SELECT connection_id FROM t",
            "SELECT 1 /* CONNECTION_ID() */",
            "SELECT 1 -- CONNECTION_ID()\n",
            "SELECT 1 # CONNECTION_ID()",
            "SELECT @connection_id, @@connection_id",
            "SELECT CONNECTION_ID(1)",
            "CREATE VIEW v AS SELECT CONNECTION_ID()",
            "create procedure p() select connection_id()",
            "ALTER TABLE t ALTER c SET DEFAULT (CONNECTION_ID())",
            "SELECT 'unterminated CONNECTION_ID()",
        ] {
            assert_eq!(sub(sql), None, "{sql}");
        }
    }

    #[test]
    fn precheck_finds_the_name_anywhere() {
        let naive = |s: &[u8]| (0..s.len()).any(|j| name_at(s, j));
        let name = b"CoNnEcTiOn_Id";
        for len in 0..40 {
            for at in 0..=len {
                let mut s = vec![b'_'; len];
                s.splice(at..at, name.iter().copied());
                assert!(mentions(&s), "{:?}", String::from_utf8_lossy(&s));
                let mut t = vec![b'x'; len];
                t.splice(at..at, name.iter().copied());
                assert!(mentions(&t), "{:?}", String::from_utf8_lossy(&t));
                s[at + 10] = b'-';
                assert_eq!(mentions(&s), naive(&s));
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn precheck_agrees_with_a_byte_by_byte_search(
            parts in proptest::collection::vec(
                proptest::sample::select(vec![
                    "_", "_i", "_I", "id", "connection", "CONNECTION_ID", "connection_iD",
                    "Connection_", "x", " ", "order0_.", "(", "ion_id",
                ]),
                0..40,
            )
        ) {
            let s = parts.concat();
            let naive = (0..s.len()).any(|j| name_at(s.as_bytes(), j));
            proptest::prop_assert_eq!(mentions(s.as_bytes()), naive, "{}", s);
        }
    }

    #[test]
    fn appends_to_what_out_holds() {
        let mut out = vec![3u8];
        assert!(substitute_connection_id(
            b"SELECT CONNECTION_ID() AS c",
            7,
            &mut out
        ));
        assert_eq!(out, b"\x03SELECT 7 AS c");
    }
}
