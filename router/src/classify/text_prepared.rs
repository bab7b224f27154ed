//! Text-protocol prepared statements (`PREPARE s FROM '...'`, `EXECUTE s`) whose text asks
//! about the session's previous statement (`FOUND_ROWS()`, `ROW_COUNT()`, `@@warning_count`...).
//!
//! Such a statement lives on the session's primary connection, while the statement before its
//! `EXECUTE` may have run on a replica: the server would answer for its own connection. The
//! proxy cannot write the recorded values into a text the server keeps, so it runs that text
//! with the values written in instead: `EXECUTE IMMEDIATE '<text>' [USING ...]` (MariaDB),
//! which binds the parameters and names the columns as `EXECUTE s` would.

use super::last_statement::{substitute_last_statement, LastStatement};
use super::lexer::{Kind, Lexer};
use super::rules::upper;

/// For `PREPARE name FROM 'text'`: the name as written and the text, unquoted. `None` for
/// another statement, a text in a variable (`FROM @q`), or one with a backslash (whose
/// meaning depends on `NO_BACKSLASH_ESCAPES`, which the proxy does not follow).
pub fn prepared_text(sql: &[u8]) -> Option<(&[u8], Vec<u8>)> {
    let mut buf = [0u8; 32];
    let mut lx = Lexer::new(sql, 0);
    let kw = lx.next().filter(|t| t.kind == Kind::Word)?;
    if upper(sql, kw.span, &mut buf) != b"PREPARE" {
        return None;
    }
    let name = lx
        .next()
        .filter(|t| matches!(t.kind, Kind::Word | Kind::Quoted))?;
    let from = lx.next().filter(|t| t.kind == Kind::Word)?;
    if upper(sql, from.span, &mut buf) != b"FROM" {
        return None;
    }
    let text = lx.next().filter(|t| t.kind == Kind::Str)?;
    if lx.any(|t| !t.is_punct(b';')) {
        return None;
    }
    let quoted = text.span.of(sql);
    let (&quote, inner) = quoted.split_first()?;
    let inner = inner.strip_suffix(&[quote])?;
    if inner.contains(&b'\\') {
        return None;
    }
    let mut body = Vec::with_capacity(inner.len());
    let mut i = 0;
    while let Some(&b) = inner.get(i) {
        body.push(b);
        // A doubled quote stands for one.
        i += if b == quote { 2 } else { 1 };
    }
    Some((name.span.of(sql), body))
}

/// For `EXECUTE name [USING ...]`: the name as written and the rest (`USING ...`, possibly
/// empty). Not `EXECUTE IMMEDIATE`.
pub fn executed_name(sql: &[u8]) -> Option<(&[u8], &[u8])> {
    let mut buf = [0u8; 32];
    let mut lx = Lexer::new(sql, 0);
    let kw = lx.next().filter(|t| t.kind == Kind::Word)?;
    if upper(sql, kw.span, &mut buf) != b"EXECUTE" {
        return None;
    }
    let name = lx
        .next()
        .filter(|t| matches!(t.kind, Kind::Word | Kind::Quoted))?;
    if name.kind == Kind::Word && upper(sql, name.span, &mut buf) == b"IMMEDIATE" {
        return None;
    }
    let rest = sql.get(name.span.end as usize..).unwrap_or_default();
    Some((name.span.of(sql), rest))
}

/// Writes to `out` an `EXECUTE IMMEDIATE` of `text` with the recorded values written in,
/// followed by `rest` (the `USING` clause of the `EXECUTE` it replaces). False, leaving `out`
/// untouched, when nothing in `text` was replaced.
pub fn execute_immediate(
    text: &[u8],
    rest: &[u8],
    last: &LastStatement,
    out: &mut Vec<u8>,
) -> bool {
    let mut body = Vec::with_capacity(text.len() + 32);
    if !substitute_last_statement(text, last, &mut body) {
        return false;
    }
    out.extend_from_slice(b"EXECUTE IMMEDIATE '");
    for &b in &body {
        if b == b'\'' {
            out.push(b'\'');
        }
        out.push(b);
    }
    out.push(b'\'');
    out.extend_from_slice(rest);
    true
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn prepared_texts_are_read_from_literals_only() {
        let (name, body) =
            prepared_text(b"PREPARE s FROM 'SELECT FOUND_ROWS(), ''x'''").expect("literal");
        assert_eq!(
            (name, body.as_slice()),
            (&b"s"[..], &b"SELECT FOUND_ROWS(), 'x'"[..])
        );
        let (name, body) =
            prepared_text(b"prepare `my s` from \"SELECT ?\";").expect("double quotes");
        assert_eq!((name, body.as_slice()), (&b"`my s`"[..], &b"SELECT ?"[..]));
        assert_eq!(prepared_text(b"PREPARE s FROM @q"), None);
        assert_eq!(prepared_text(b"PREPARE s FROM 'SELECT \\'a\\''"), None);
        assert_eq!(prepared_text(b"EXECUTE s"), None);
    }

    #[test]
    fn executions_name_their_statement() {
        assert_eq!(executed_name(b"EXECUTE s"), Some((&b"s"[..], &b""[..])));
        assert_eq!(
            executed_name(b"execute `S` USING @a, 5"),
            Some((&b"`S`"[..], &b" USING @a, 5"[..]))
        );
        assert_eq!(executed_name(b"EXECUTE IMMEDIATE 'SELECT 1'"), None);
        assert_eq!(executed_name(b"EXPLAIN SELECT 1"), None);
    }

    #[test]
    fn the_text_runs_with_the_values_written_in() {
        let last = LastStatement {
            row_count: Some(-1),
            found_rows: Some(7),
            warning_count: Some(0),
            error_count: Some(0),
        };
        let mut out = Vec::new();
        assert!(execute_immediate(
            b"SELECT FOUND_ROWS() + ?, 'it''s'",
            b" USING @a",
            &last,
            &mut out
        ));
        assert_eq!(
            String::from_utf8(out).expect("utf8"),
            "EXECUTE IMMEDIATE 'SELECT IF(TRUE, 7, FOUND_ROWS()) + ?, ''it''''s''' USING @a"
        );
        let mut out = Vec::new();
        assert!(!execute_immediate(b"SELECT 1", b"", &last, &mut out));
        assert!(out.is_empty());
    }
}
