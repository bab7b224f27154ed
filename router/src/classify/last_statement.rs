//! Answering the functions that describe a session's previous statement (`ROW_COUNT()`,
//! `FOUND_ROWS()`, `@@warning_count`, `@@error_count`) with values the proxy recorded.
//!
//! Under statement-level multiplexing the connection that ran a session's previous statement
//! goes back to the pool as soon as the statement ends, and may run another session's
//! statements before this session asks. A server answers these functions for its connection,
//! so the question would get the other session's answer (or a fresh connection's). The proxy
//! records the values from each statement's answer (affected rows of its OK packet, rows it
//! relayed, warnings) and puts them into the statement text as literals before it runs:
//! exact, and no connection is held between statements for a question that rarely comes.

use super::connection_id::{stores_code, substitute, Name};
use super::lexer::{Kind, Lexer};
use super::rules::upper;

/// What a session's previous statement left for these functions, as the proxy recorded it.
/// `None`: not known to the proxy (the server that ran it answers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LastStatement {
    /// `ROW_COUNT()`: affected rows of an OK packet; -1 after a result set or an error.
    pub row_count: Option<i64>,
    /// `FOUND_ROWS()`: rows of the last result set a statement sent (without
    /// `SQL_CALC_FOUND_ROWS`); statements without a result set leave it as it was.
    pub found_rows: Option<u64>,
    /// `@@warning_count` (warnings and notes of the previous statement).
    pub warning_count: Option<u64>,
    /// `@@error_count`.
    pub error_count: Option<u64>,
}

/// Replaces each `ROW_COUNT()`, `FOUND_ROWS()`, `@@warning_count` and `@@error_count` (session
/// scope) outside quotes and comments with the recorded value, where known, appending the
/// rewritten text to `out`. Returns false, leaving `out` untouched, when nothing was replaced.
/// A bare select item keeps the column name a server would give it (`` AS `ROW_COUNT()` ``).
/// `CREATE` and `ALTER` are left alone: the text they store must keep the calls.
///
/// The value comes as `IF(TRUE, value, call)`: the server answers the value, in the column
/// type of the call (a literal `7` is a 1-digit INT to MariaDB, `ROW_COUNT()` a BIGINT(21),
/// `@@warning_count` an unsigned BIGINT that may be NULL; `IF` takes the type both branches
/// fit, measured on MariaDB 10.11). Clients of the binary protocol decode values by that type,
/// so it must be the server's.
pub fn substitute_last_statement(sql: &[u8], last: &LastStatement, out: &mut Vec<u8>) -> bool {
    let signed = |v: Option<i64>, call: &str| v.map(|v| format!("IF(TRUE, {v}, {call})"));
    let count =
        |v: Option<u64>, var: &str| v.map(|v| format!("IF(TRUE, CAST({v} AS UNSIGNED), {var})"));
    let found_rows = last
        .found_rows
        .map(|v| i64::try_from(v).unwrap_or(i64::MAX));
    !stores_code(sql)
        // In a multi-statement text, the later statements ask about the ones before them.
        && substitute(sql, out, true, |n| match n {
            Name::Call(_) if n.is(b"ROW_COUNT") => signed(last.row_count, "ROW_COUNT()"),
            Name::Call(_) if n.is(b"FOUND_ROWS") => signed(found_rows, "FOUND_ROWS()"),
            Name::SysVar(_) if n.is(b"WARNING_COUNT") => {
                count(last.warning_count, "@@warning_count")
            }
            Name::SysVar(_) if n.is(b"ERROR_COUNT") => count(last.error_count, "@@error_count"),
            _ => None,
        })
}

/// Which recorded values a diagnostics statement leaves as they were (measured on MariaDB
/// 10.11): `SHOW WARNINGS` / `SHOW ERRORS` change `ROW_COUNT()` (to -1) but not
/// `FOUND_ROWS()`; `GET DIAGNOSTICS` changes neither.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Keeps {
    pub row_count: bool,
    pub found_rows: bool,
}

/// See [`Keeps`]. Any other statement keeps nothing.
pub fn keeps_last_statement(sql: &[u8]) -> Keeps {
    // Runs for every statement that reaches a server: no allocation (issue 14's
    // zero-allocation session loop): each word is upper-cased into its own stack buffer.
    let (mut first, mut second) = ([0u8; 32], [0u8; 32]);
    let mut lx = Lexer::new(sql, 0);
    let word = |lx: &mut Lexer<'_>, buf: &mut [u8; 32]| -> usize {
        match lx.next() {
            Some(t) if t.kind == Kind::Word => upper(sql, t.span, buf).len(),
            _ => 0,
        }
    };
    let n = word(&mut lx, &mut first);
    match &first[..n] {
        b"SHOW" => {
            let m = word(&mut lx, &mut second);
            Keeps {
                row_count: false,
                found_rows: matches!(&second[..m], b"WARNINGS" | b"ERRORS"),
            }
        }
        b"GET" => Keeps {
            row_count: true,
            found_rows: true,
        },
        _ => Keeps::default(),
    }
}

/// The statement sets the connection's `LAST_INSERT_ID()` without inserting (no OK packet says
/// so): `LAST_INSERT_ID(expr)`, or an assignment to `@@last_insert_id` / `@@identity`.
pub fn sets_last_insert_id(sql: &[u8]) -> bool {
    let mut buf = [0u8; 32];
    let mut lx = Lexer::new(sql, 0);
    // `=` assigns in a SET statement and compares anywhere else.
    let set = matches!(lx.clone().next(), Some(t) if t.kind == Kind::Word && upper(sql, t.span, &mut buf) == b"SET");
    let mut after_dot = false;
    // In a SET, the token before a name: `SET`, `,` or a scope word (`SET SESSION x = 1`).
    let mut assignable = false;
    while let Some(t) = lx.next() {
        let qualified = std::mem::replace(&mut after_dot, t.is_punct(b'.'));
        let starts_assignment = std::mem::replace(
            &mut assignable,
            set && (t.is_punct(b',')
                || (t.kind == Kind::Word
                    && matches!(upper(sql, t.span, &mut buf), b"SET" | b"SESSION" | b"LOCAL"))),
        );
        let sets = match t.kind {
            Kind::Word | Kind::Quoted if starts_assignment => {
                super::set::sets_insert_id(t.span.of(sql))
                    && matches!(lx.clone().next(), Some(n) if n.is_punct(b'=') || n.kind == Kind::Assign)
            }
            Kind::Word if !qualified => {
                upper(sql, t.span, &mut buf) == b"LAST_INSERT_ID" && {
                    let mut look = lx.clone();
                    matches!(look.next(), Some(o) if o.is_punct(b'('))
                        && !matches!(look.next(), Some(c) if c.is_punct(b')'))
                }
            }
            Kind::SysVar => {
                matches!(
                    upper(sql, t.span, &mut buf),
                    b"LAST_INSERT_ID" | b"IDENTITY"
                ) && matches!(lx.clone().next(), Some(n) if (set && n.is_punct(b'=')) || n.kind == Kind::Assign)
            }
            _ => false,
        };
        if sets {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod test {
    use super::*;

    fn sub(sql: &str, last: &LastStatement) -> Option<String> {
        let mut out = Vec::new();
        if substitute_last_statement(sql.as_bytes(), last, &mut out) {
            Some(String::from_utf8(out).expect("utf8"))
        } else {
            assert!(out.is_empty(), "nothing written when nothing replaced");
            None
        }
    }

    const KNOWN: LastStatement = LastStatement {
        row_count: Some(3),
        found_rows: Some(7),
        warning_count: Some(0),
        error_count: Some(0),
    };

    #[test]
    fn each_function_is_replaced_with_its_recorded_value() {
        assert_eq!(
            sub("SELECT ROW_COUNT()", &KNOWN).as_deref(),
            Some("SELECT IF(TRUE, 3, ROW_COUNT()) AS `ROW_COUNT()`")
        );
        assert_eq!(
            sub(
                "select found_rows(), @@warning_count, @@session.error_count",
                &KNOWN
            )
            .as_deref(),
            Some(
                "select IF(TRUE, 7, FOUND_ROWS()) AS `found_rows()`, \
                 IF(TRUE, CAST(0 AS UNSIGNED), @@warning_count) AS `@@warning_count`, \
                 IF(TRUE, CAST(0 AS UNSIGNED), @@error_count) AS `@@session.error_count`"
            )
        );
        assert_eq!(
            sub(
                "SELECT row_count() + 1 AS n, 'ROW_COUNT()' FROM t WHERE @@LOCAL.warning_count = 0",
                &KNOWN
            )
            .as_deref(),
            Some(
                "SELECT IF(TRUE, 3, ROW_COUNT()) + 1 AS n, 'ROW_COUNT()' FROM t \
                 WHERE IF(TRUE, CAST(0 AS UNSIGNED), @@warning_count) = 0"
            )
        );
    }

    #[test]
    fn unknown_values_qualified_names_and_other_scopes_are_left_to_the_server() {
        let row_count_only = LastStatement {
            row_count: Some(-1),
            ..LastStatement::default()
        };
        assert_eq!(
            sub(
                "SELECT ROW_COUNT(), FOUND_ROWS(), @@warning_count",
                &row_count_only
            )
            .as_deref(),
            Some(
                "SELECT IF(TRUE, -1, ROW_COUNT()) AS `ROW_COUNT()`, FOUND_ROWS(), @@warning_count"
            )
        );
        assert_eq!(sub("SELECT FOUND_ROWS()", &row_count_only), None);
        assert_eq!(
            sub("SELECT db.row_count(), @@global.warning_count", &KNOWN),
            None
        );
        assert_eq!(sub("SELECT ROW_COUNT(1), `row_count`", &KNOWN), None);
        assert_eq!(sub("SHOW WARNINGS", &KNOWN), None);
        assert_eq!(
            sub("SELECT ROW_COUNT(); SELECT ROW_COUNT()", &KNOWN).as_deref(),
            Some("SELECT IF(TRUE, 3, ROW_COUNT()) AS `ROW_COUNT()`; SELECT ROW_COUNT()"),
            "a later statement asks about the one before it in the same text"
        );
        assert_eq!(
            sub("CREATE VIEW v AS SELECT ROW_COUNT() AS n", &KNOWN),
            None,
            "stored text keeps the call"
        );
    }

    #[test]
    fn statements_that_set_the_insert_id_without_inserting() {
        for sql in [
            "SELECT LAST_INSERT_ID(5)",
            "select last_insert_id( id + 1 ) from t",
            "UPDATE t SET c = LAST_INSERT_ID(c + 1)",
            "SET @@last_insert_id = 7",
            "SET @@session.identity := 7",
            "SET LAST_INSERT_ID = 5",
            "SET SESSION `identity` = 5",
            "SET sql_mode = '', last_insert_id = 5",
        ] {
            assert!(sets_last_insert_id(sql.as_bytes()), "{sql}");
        }
        for sql in [
            "SELECT LAST_INSERT_ID()",
            "SELECT 'LAST_INSERT_ID(5)'",
            "SELECT db.last_insert_id(5)",
            "SELECT @@last_insert_id",
            "SELECT @@identity = 3",
            "SET @x = last_insert_id",
            "SET sql_mode = last_insert_id",
        ] {
            assert!(!sets_last_insert_id(sql.as_bytes()), "{sql}");
        }
    }

    #[test]
    fn diagnostics_statements_keep_what_they_do_not_change() {
        let show = Keeps {
            row_count: false,
            found_rows: true,
        };
        assert_eq!(keeps_last_statement(b"SHOW WARNINGS"), show);
        assert_eq!(keeps_last_statement(b"show errors limit 1"), show);
        assert_eq!(
            keeps_last_statement(b"SHOW COUNT(*) WARNINGS"),
            Keeps::default(),
            "a one-row result like SELECT @@warning_count"
        );
        assert_eq!(
            keeps_last_statement(b"GET DIAGNOSTICS @n = NUMBER"),
            Keeps {
                row_count: true,
                found_rows: true
            }
        );
        assert_eq!(
            keeps_last_statement(b"SELECT FOUND_ROWS()"),
            Keeps::default()
        );
    }
}
