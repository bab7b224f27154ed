//! Top-level `GET [CURRENT] DIAGNOSTICS`, rewritten so that it can run on the session's
//! primary connection (where its user variables live) while answering for the session's
//! previous statement.
//!
//! Under statement-level multiplexing the connection that ran the previous statement may be
//! back in the pool: run there, the statement would read another session's diagnostics area
//! and leave the variables on a connection the session no longer has. The proxy recorded what
//! the statement's items describe (see `last_statement.rs`), so it writes them in as values:
//! statement items become `SET @a = <row count>, @b = CAST(<number> AS UNSIGNED)` (the types
//! the server gives them, measured on MariaDB 10.11: `ROW_COUNT` a signed, `NUMBER` an unsigned
//! BIGINT). A `SET` without tables leaves the diagnostics area as it was, as `GET DIAGNOSTICS`
//! does. Condition items after a statement that left no conditions are answered by the same
//! text with the condition number `0`: on any connection, whatever it holds, that is the
//! server's answer to an invalid number (OK, `@m` unchanged, error 1758 added to the list).

use super::lexer::{Kind, Lexer, Span};
use super::rules::upper;

/// What a statement item reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Property {
    Number,
    RowCount,
}

/// The items of a top-level `GET [CURRENT] DIAGNOSTICS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GetDiagnostics {
    /// `@a = NUMBER, @b = ROW_COUNT`: each target user variable with what it reads.
    Statement(Vec<(Span, Property)>),
    /// `CONDITION <n> @m = MESSAGE_TEXT, ...`: the span of the condition number.
    Condition(Span),
}

/// The number of conditions `NUMBER` reads, as SQL the rewritten statement evaluates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conditions {
    /// The previous statement left this many (`@@warning_count` of its connection); the server
    /// keeps at most `@@max_error_count` of them, which is what `NUMBER` counts.
    Count(u64),
    /// The connection the rewritten statement runs on ran the previous statement and still
    /// holds its list: its own `@@warning_count` (read by a `SET` without tables, which keeps
    /// the list).
    Server,
}

/// Parses `sql` as a top-level `GET [CURRENT] DIAGNOSTICS` whose targets are user variables.
/// `None` for anything else, including texts a server rejects (`GET STACKED DIAGNOSTICS`
/// outside a handler, local variables, unknown items, several statements): those are left to
/// the server, which answers them alike on every connection.
pub fn get_diagnostics(sql: &[u8]) -> Option<GetDiagnostics> {
    let mut buf = [0u8; 32];
    let mut lx = Lexer::new(sql, 0);
    let mut word = |lx: &mut Lexer<'_>| -> Option<Vec<u8>> {
        let t = lx.next()?;
        (t.kind == Kind::Word).then(|| upper(sql, t.span, &mut buf).to_vec())
    };
    if word(&mut lx)?.as_slice() != b"GET" {
        return None;
    }
    let mut w = word(&mut lx)?;
    if w.as_slice() == b"CURRENT" {
        w = word(&mut lx)?;
    }
    if w.as_slice() != b"DIAGNOSTICS" {
        return None;
    }
    let first = lx.clone().next()?;
    let condition =
        first.kind == Kind::Word && upper(sql, first.span, &mut [0u8; 32]) == b"CONDITION";
    let number = if condition {
        lx.next();
        let n = lx.next()?;
        if !matches!(n.kind, Kind::Num | Kind::UserVar | Kind::Str | Kind::Word) {
            return None;
        }
        Some(n.span)
    } else {
        None
    };
    let mut items = Vec::new();
    loop {
        let target = lx.next()?;
        let eq = lx.next()?;
        let name = lx.next()?;
        if target.kind != Kind::UserVar || !eq.is_punct(b'=') || name.kind != Kind::Word {
            return None;
        }
        let name = upper(sql, name.span, &mut [0u8; 32]).to_vec();
        if number.is_none() {
            let p = match name.as_slice() {
                b"NUMBER" => Property::Number,
                b"ROW_COUNT" => Property::RowCount,
                _ => return None,
            };
            items.push((target.span, p));
        }
        match lx.next() {
            None => break,
            Some(t) if t.is_punct(b',') => continue,
            Some(t) if t.is_punct(b';') => match lx.next() {
                None => break,
                Some(_) => return None,
            },
            Some(_) => return None,
        }
    }
    if lx.malformed() {
        return None;
    }
    Some(match number {
        Some(n) => GetDiagnostics::Condition(n),
        None => GetDiagnostics::Statement(items),
    })
}

impl GetDiagnostics {
    /// Condition items (`CONDITION n ...`) rather than statement items.
    pub fn reads_conditions(&self) -> bool {
        matches!(self, GetDiagnostics::Condition(_))
    }

    /// Appends to `out` the statement `sql` (which parsed as `self`) rewritten to answer with
    /// `row_count` and `conditions`, for a session whose previous statement left those. For
    /// condition items this is only right when that statement left no conditions (the
    /// caller's to know): the number becomes `0`.
    pub fn rewrite(&self, sql: &[u8], row_count: i64, conditions: Conditions, out: &mut Vec<u8>) {
        match self {
            GetDiagnostics::Condition(n) => {
                out.extend_from_slice(sql.get(..n.start as usize).unwrap_or_default());
                out.push(b'0');
                out.extend_from_slice(sql.get(n.end as usize..).unwrap_or_default());
            }
            GetDiagnostics::Statement(items) => {
                out.extend_from_slice(b"SET ");
                for (i, (target, p)) in items.iter().enumerate() {
                    if i > 0 {
                        out.extend_from_slice(b", ");
                    }
                    out.extend_from_slice(target.of(sql));
                    out.extend_from_slice(b" = ");
                    let value = match (p, conditions) {
                        (Property::RowCount, _) => row_count.to_string(),
                        (Property::Number, Conditions::Count(n)) => {
                            format!("CAST(LEAST({n}, @@max_error_count) AS UNSIGNED)")
                        }
                        (Property::Number, Conditions::Server) => {
                            "CAST(LEAST(@@warning_count, @@max_error_count) AS UNSIGNED)".into()
                        }
                    };
                    out.extend_from_slice(value.as_bytes());
                }
            }
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;

    fn rewrite(sql: &str, row_count: i64, conditions: Conditions) -> Option<String> {
        let g = get_diagnostics(sql.as_bytes())?;
        let mut out = Vec::new();
        g.rewrite(sql.as_bytes(), row_count, conditions, &mut out);
        Some(String::from_utf8(out).expect("utf8"))
    }

    #[test]
    fn statement_items_become_assignments_of_the_recorded_values() {
        assert_eq!(
            rewrite("GET DIAGNOSTICS @r = ROW_COUNT", 2, Conditions::Count(0)).as_deref(),
            Some("SET @r = 2")
        );
        assert_eq!(
            rewrite(
                "get current diagnostics @n = number, @`r 2` = row_count;",
                -1,
                Conditions::Count(3)
            )
            .as_deref(),
            Some("SET @n = CAST(LEAST(3, @@max_error_count) AS UNSIGNED), @`r 2` = -1")
        );
        assert_eq!(
            rewrite("GET /* c */ DIAGNOSTICS @n=NUMBER", 0, Conditions::Server).as_deref(),
            Some("SET @n = CAST(LEAST(@@warning_count, @@max_error_count) AS UNSIGNED)")
        );
    }

    #[test]
    fn condition_items_ask_for_condition_zero() {
        let g = get_diagnostics(b"GET DIAGNOSTICS CONDITION 1 @m = MESSAGE_TEXT");
        assert!(g.as_ref().is_some_and(GetDiagnostics::reads_conditions));
        assert_eq!(
            rewrite(
                "GET DIAGNOSTICS CONDITION 1 @m = MESSAGE_TEXT, @e = MYSQL_ERRNO",
                5,
                Conditions::Count(0)
            )
            .as_deref(),
            Some("GET DIAGNOSTICS CONDITION 0 @m = MESSAGE_TEXT, @e = MYSQL_ERRNO")
        );
        assert_eq!(
            rewrite(
                "GET DIAGNOSTICS CONDITION @k @m = RETURNED_SQLSTATE",
                5,
                Conditions::Count(0)
            )
            .as_deref(),
            Some("GET DIAGNOSTICS CONDITION 0 @m = RETURNED_SQLSTATE")
        );
    }

    #[test]
    fn anything_else_is_left_to_the_server() {
        for sql in [
            "GET STACKED DIAGNOSTICS @r = ROW_COUNT",
            "GET DIAGNOSTICS r = ROW_COUNT",
            "GET DIAGNOSTICS @r = ROW_COUNT()",
            "GET DIAGNOSTICS @r = MESSAGE_TEXT",
            "GET DIAGNOSTICS @r := ROW_COUNT",
            "GET DIAGNOSTICS",
            "GET DIAGNOSTICS CONDITION -1 @m = MESSAGE_TEXT",
            "GET DIAGNOSTICS CONDITION 1",
            "GET DIAGNOSTICS @r = ROW_COUNT; SELECT @r",
            "GET DIAGNOSTICS @r = ROW_COUNT @n = NUMBER",
            "SELECT ROW_COUNT()",
            "GET DIAGNOSTICS @r = 'ROW_COUNT",
        ] {
            assert_eq!(get_diagnostics(sql.as_bytes()), None, "{sql}");
        }
    }
}
