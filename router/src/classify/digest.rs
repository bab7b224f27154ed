//! Statement digests: the text of a statement with its literals replaced by `?`, so that every
//! execution of the same statement shape counts under one entry (`/admin/top`). Built on the
//! classifier's lexer, so quotes, comments and versioned comments are read as the server reads
//! them:
//!
//! - string and number literals become `?` (a sign directly before a number goes with it);
//! - a parenthesised list of nothing but literals with a comma, or after `IN`, becomes `(...)`,
//!   and repeated lists (`VALUES (...), (...)`) become one, so `IN (1,2)` and `IN (3,4,5)`
//!   share a digest, as do multi-row inserts of any size;
//! - comments and whitespace go, tokens are separated by one space (none around `.` or inside
//!   parentheses), SQL keywords are upper-cased and identifiers kept as written;
//! - a trailing `;` goes.
//!
//! The text is bounded ([`MAX_DIGEST`] bytes): a longer statement is cut, marked with `…`.

use super::lexer::{Kind, Lexer};

/// The longest digest text kept; the hash covers only what is kept.
pub const MAX_DIGEST: usize = 1024;

/// Writes the digest text of `sql` into `out` (cleared first; reuse it to avoid allocating)
/// and returns its 64-bit hash, the key under which statements of the same shape are counted.
pub fn digest(sql: &[u8], out: &mut String) -> u64 {
    out.clear();
    // Token kinds of what was written, for spacing, list collapsing and signs.
    let mut prev = Prev::Start;
    // Where the open parenthesis of the list being written is, while it holds only literals.
    let mut list: Option<ListState> = None;
    let mut before_prev = Prev::Start;
    for t in Lexer::new(sql, 0) {
        if out.len() >= MAX_DIGEST {
            truncate(out);
            out.push('…');
            return hash(out.as_bytes());
        }
        let text = t.span.of(sql);
        let tok = match t.kind {
            Kind::Str | Kind::Num => Tok::Literal,
            Kind::Punct(b'?') => Tok::Literal,
            Kind::Punct(b) => Tok::Punct(b),
            Kind::Word => Tok::Word(text),
            Kind::Quoted => Tok::Ident(text),
            Kind::UserVar => Tok::Ident(text),
            Kind::SysVar => Tok::SysVar(text),
            Kind::Assign => Tok::Op(":="),
        };
        // `2.5` lexes as `2` `.` `5`, `.5` as `.` `5`: one literal.
        if tok == Tok::Literal && prev == Prev::Punct(b'.') {
            out.pop();
            if out.ends_with('?') {
                // The fraction of a literal already written.
                prev = Prev::Value;
                continue;
            }
            if out.ends_with(' ') {
                out.pop();
            }
            prev = before_prev;
        }
        // A sign directly before a number, where a value is expected, belongs to the literal.
        if tok == Tok::Literal
            && matches!(prev, Prev::Punct(b'-') | Prev::Punct(b'+'))
            && !matches!(before_prev, Prev::Value)
        {
            out.pop();
            if out.ends_with(' ') {
                out.pop();
            }
            prev = before_prev;
        }
        // Lists of literals: track them, collapse at the closing parenthesis.
        match tok {
            Tok::Punct(b'(') => {
                list = Some(ListState {
                    open: out.len(),
                    after_in: prev == Prev::In,
                    literals: 0,
                    commas: 0,
                    only_literals: true,
                });
            }
            Tok::Literal => {
                if let Some(l) = &mut list {
                    l.literals += 1;
                }
            }
            Tok::Punct(b',') => {
                if let Some(l) = &mut list {
                    l.commas += 1;
                }
            }
            Tok::Punct(b')') => {}
            _ => {
                if let Some(l) = &mut list {
                    l.only_literals = false;
                }
            }
        }
        let closing = if tok == Tok::Punct(b')') {
            list.take()
        } else {
            None
        };
        if let Some(l) = closing {
            if l.only_literals && l.literals > 0 && (l.commas > 0 || l.after_in) {
                out.truncate(l.open);
                // `(...), (...)` → `(...)`: drop this one if the text already ends with one.
                if out.ends_with("(...), ") || out.ends_with("(...),") {
                    let keep = out.trim_end().trim_end_matches(',').len();
                    out.truncate(keep);
                } else {
                    space_before(out, prev, Tok::Punct(b'('));
                    out.push_str("(...)");
                }
                before_prev = prev;
                prev = Prev::Value;
                continue;
            }
        }
        if tok == Tok::Punct(b';') {
            // Statement separators stay (multi-statements), a trailing one goes below.
            out.push(';');
            before_prev = prev;
            prev = Prev::Punct(b';');
            continue;
        }
        space_before(out, prev, tok);
        before_prev = prev;
        prev = match tok {
            Tok::Literal => {
                out.push('?');
                Prev::Value
            }
            Tok::Word(w) => {
                if let Some(k) = keyword(w) {
                    out.push_str(k);
                    if k == "IN" {
                        Prev::In
                    } else if k == "NULL" || k == "TRUE" || k == "FALSE" {
                        Prev::Value
                    } else {
                        Prev::Keyword
                    }
                } else {
                    out.push_str(&String::from_utf8_lossy(w));
                    Prev::Value
                }
            }
            Tok::Ident(w) => {
                out.push_str(&String::from_utf8_lossy(w));
                Prev::Value
            }
            Tok::SysVar(w) => {
                out.push_str("@@");
                out.push_str(&String::from_utf8_lossy(w));
                Prev::Value
            }
            Tok::Op(o) => {
                out.push_str(o);
                Prev::Punct(b'=')
            }
            Tok::Punct(b) => {
                out.push(char::from(b));
                if b == b')' {
                    Prev::Value
                } else {
                    Prev::Punct(b)
                }
            }
        };
    }
    while out.ends_with(';') || out.ends_with(' ') {
        out.pop();
    }
    hash(out.as_bytes())
}

/// The keyword a statement starts with (upper-cased, as its digest starts), or `None` when
/// its first token is not a keyword. One token of lexing: the cheap "statement kind" that lets
/// a digest comparison be skipped for statements that cannot have the wanted digest.
pub(crate) fn leading_keyword(sql: &[u8]) -> Option<&'static str> {
    let t = Lexer::new(sql, 0).next()?;
    match t.kind {
        Kind::Word => keyword(t.span.of(sql)),
        _ => None,
    }
}

/// The longest name (identifier, quoted identifier, variable) in a digest text that every
/// statement with this digest holds byte for byte: names are copied into a digest as written,
/// so a statement whose text lacks it cannot have this digest. Keywords (upper-cased in a
/// digest, any case in a statement) and names with non-ASCII bytes (a lossy conversion or
/// the cut mark `…` may have changed them) do not qualify.
pub(crate) fn longest_name(digest_text: &str) -> Option<&str> {
    let text = digest_text.as_bytes();
    Lexer::new(text, 0)
        .filter_map(|t| {
            let b = t.span.of(text);
            let name = match t.kind {
                Kind::Word if keyword(b).is_none() => b,
                Kind::Quoted | Kind::UserVar | Kind::SysVar => b,
                _ => return None,
            };
            std::str::from_utf8(name).ok().filter(|n| n.is_ascii())
        })
        .max_by_key(|n| n.len())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok<'a> {
    Literal,
    Word(&'a [u8]),
    Ident(&'a [u8]),
    SysVar(&'a [u8]),
    Op(&'static str),
    Punct(u8),
}

/// What was written last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Prev {
    Start,
    /// A literal, identifier, `)` or value keyword: a following `-` is subtraction.
    Value,
    Keyword,
    /// The keyword `IN`.
    In,
    Punct(u8),
}

struct ListState {
    open: usize,
    after_in: bool,
    literals: u32,
    commas: u32,
    only_literals: bool,
}

fn space_before(out: &mut String, prev: Prev, tok: Tok<'_>) {
    let tight = match (prev, tok) {
        (Prev::Start, _) => true,
        (_, Tok::Punct(b',' | b')' | b'.' | b';')) => true,
        (Prev::Punct(b'(' | b'.' | b'@'), _) => true,
        // `f(`, `t(`: a call or a column list, one form whatever the spacing was.
        (Prev::Value | Prev::Keyword, Tok::Punct(b'(')) => !out.ends_with(' ') && is_name_end(out),
        _ => false,
    };
    if !tight {
        out.push(' ');
    }
}

/// The text ends with a name (a function or table), not a keyword such as `IN` or `VALUES`.
fn is_name_end(out: &str) -> bool {
    let last = out.rsplit([' ', '(', ',']).next().unwrap_or("");
    !matches!(
        last,
        "IN" | "VALUES" | "VALUE" | "AND" | "OR" | "NOT" | "ON" | "USING" | "AS"
    )
}

fn truncate(out: &mut String) {
    let mut end = MAX_DIGEST.min(out.len());
    while !out.is_char_boundary(end) {
        end -= 1;
    }
    out.truncate(end);
}

/// A fast, stable 64-bit hash of the digest text (FNV-1a over 8-byte words, then mixed).
fn hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        h = (h ^ w).wrapping_mul(0x0000_0100_0000_01b3).rotate_left(23);
    }
    for &b in chunks.remainder() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= bytes.len() as u64;
    h = (h ^ (h >> 33)).wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^ (h >> 33)
}

/// The upper-case spelling of an SQL keyword, or `None` for an identifier.
fn keyword(w: &[u8]) -> Option<&'static str> {
    if w.len() > 16 {
        return None;
    }
    let mut buf = [0u8; 16];
    for (d, s) in buf.iter_mut().zip(w) {
        *d = s.to_ascii_uppercase();
    }
    keyword_of(&buf[..w.len()])
}

/// Keywords upper-cased in digests (the common ones; anything else is kept as written). A
/// `match` on the upper-cased bytes: the compiler decides by length and bytes, no search.
fn keyword_of(up: &[u8]) -> Option<&'static str> {
    Some(match up {
        b"ADD" => "ADD",
        b"ALL" => "ALL",
        b"ALTER" => "ALTER",
        b"AND" => "AND",
        b"ANY" => "ANY",
        b"AS" => "AS",
        b"ASC" => "ASC",
        b"BEGIN" => "BEGIN",
        b"BETWEEN" => "BETWEEN",
        b"BY" => "BY",
        b"CALL" => "CALL",
        b"CASE" => "CASE",
        b"CHECK" => "CHECK",
        b"COLUMN" => "COLUMN",
        b"COMMIT" => "COMMIT",
        b"CREATE" => "CREATE",
        b"CROSS" => "CROSS",
        b"DATABASE" => "DATABASE",
        b"DEFAULT" => "DEFAULT",
        b"DELETE" => "DELETE",
        b"DESC" => "DESC",
        b"DESCRIBE" => "DESCRIBE",
        b"DISTINCT" => "DISTINCT",
        b"DO" => "DO",
        b"DROP" => "DROP",
        b"DUPLICATE" => "DUPLICATE",
        b"ELSE" => "ELSE",
        b"END" => "END",
        b"ESCAPE" => "ESCAPE",
        b"EXISTS" => "EXISTS",
        b"EXPLAIN" => "EXPLAIN",
        b"FALSE" => "FALSE",
        b"FOR" => "FOR",
        b"FORCE" => "FORCE",
        b"FROM" => "FROM",
        b"FULL" => "FULL",
        b"GLOBAL" => "GLOBAL",
        b"GROUP" => "GROUP",
        b"HAVING" => "HAVING",
        b"IF" => "IF",
        b"IGNORE" => "IGNORE",
        b"IN" => "IN",
        b"INDEX" => "INDEX",
        b"INNER" => "INNER",
        b"INSERT" => "INSERT",
        b"INTERVAL" => "INTERVAL",
        b"INTO" => "INTO",
        b"IS" => "IS",
        b"JOIN" => "JOIN",
        b"KEY" => "KEY",
        b"KILL" => "KILL",
        b"LEFT" => "LEFT",
        b"LIKE" => "LIKE",
        b"LIMIT" => "LIMIT",
        b"LOCK" => "LOCK",
        b"MODE" => "MODE",
        b"NAMES" => "NAMES",
        b"NOT" => "NOT",
        b"NULL" => "NULL",
        b"OFFSET" => "OFFSET",
        b"ON" => "ON",
        b"OR" => "OR",
        b"ORDER" => "ORDER",
        b"OUTER" => "OUTER",
        b"READ" => "READ",
        b"REPLACE" => "REPLACE",
        b"RIGHT" => "RIGHT",
        b"ROLLBACK" => "ROLLBACK",
        b"SAVEPOINT" => "SAVEPOINT",
        b"SELECT" => "SELECT",
        b"SESSION" => "SESSION",
        b"SET" => "SET",
        b"SHARE" => "SHARE",
        b"SHOW" => "SHOW",
        b"START" => "START",
        b"TABLE" => "TABLE",
        b"TABLES" => "TABLES",
        b"TEMPORARY" => "TEMPORARY",
        b"THEN" => "THEN",
        b"TRANSACTION" => "TRANSACTION",
        b"TRUE" => "TRUE",
        b"TRUNCATE" => "TRUNCATE",
        b"UNION" => "UNION",
        b"UNIQUE" => "UNIQUE",
        b"UNLOCK" => "UNLOCK",
        b"UPDATE" => "UPDATE",
        b"USE" => "USE",
        b"USING" => "USING",
        b"VALUE" => "VALUE",
        b"VALUES" => "VALUES",
        b"WHEN" => "WHEN",
        b"WHERE" => "WHERE",
        b"WITH" => "WITH",
        b"WORK" => "WORK",
        b"WRITE" => "WRITE",
        b"XA" => "XA",
        _ => return None,
    })
}

#[cfg(test)]
mod test {
    use super::*;

    fn d(sql: &str) -> String {
        let mut out = String::new();
        digest(sql.as_bytes(), &mut out);
        out
    }

    fn h(sql: &str) -> u64 {
        digest(sql.as_bytes(), &mut String::new())
    }

    #[test]
    fn literals_become_placeholders_and_spacing_and_case_are_normalised() {
        assert_eq!(
            d("select  c from sbtest1\n where id=42"),
            "SELECT c FROM sbtest1 WHERE id = ?"
        );
        assert_eq!(
            d("SELECT c FROM sbtest1 WHERE id = 'x''y' /* hint */;"),
            "SELECT c FROM sbtest1 WHERE id = ?"
        );
        assert_eq!(d("SELECT -1, a - 1, 2.5e3, .5"), "SELECT ?, a - ?, ?, ?");
        assert_eq!(d("SELECT t.a FROM db.t"), "SELECT t.a FROM db.t");
        assert_eq!(d("SELECT `a`.`b` FROM t"), "SELECT `a`.`b` FROM t");
        assert_eq!(d("SELECT @@session.autocommit"), "SELECT @@autocommit");
        assert_eq!(d("select sleep(5)"), "SELECT sleep(?)");
        assert_eq!(
            d("SELECT c FROM t WHERE id=?"),
            "SELECT c FROM t WHERE id = ?"
        );
        assert_eq!(
            d("SELECT * FROM t WHERE a IS NULL"),
            "SELECT * FROM t WHERE a IS NULL"
        );
        assert_eq!(h("select 1"), h("SELECT   2"));
        assert_ne!(h("SELECT a FROM t"), h("SELECT b FROM t"));
    }

    #[test]
    fn keywords_match_in_any_case_and_identifiers_do_not() {
        assert_eq!(keyword(b"select"), Some("SELECT"));
        assert_eq!(keyword(b"TrAnSaCtIoN"), Some("TRANSACTION"));
        assert_eq!(keyword(b"sbtest1"), None);
        assert_eq!(keyword(b"selectx"), None);
        assert_eq!(keyword(&[b'a'; 40]), None);
    }

    #[test]
    fn in_lists_and_multi_row_values_collapse() {
        assert_eq!(
            d("SELECT * FROM t WHERE id IN (1, 2, 3)"),
            "SELECT * FROM t WHERE id IN (...)"
        );
        assert_eq!(
            d("SELECT * FROM t WHERE id in (7)"),
            d("SELECT * FROM t WHERE id IN (1,2,3,4,5)")
        );
        assert_eq!(
            d("INSERT INTO t(a,b) VALUES (1,'x'),(2,'y'),(3,'z')"),
            "INSERT INTO t(a, b) VALUES (...)"
        );
        assert_eq!(
            d("INSERT INTO t (a, b) VALUES (1, 'x')"),
            d("insert into t(a,b) values(5,'q'),(6,'r')")
        );
        // A list with something else than literals is kept.
        assert_eq!(
            d("SELECT * FROM t WHERE id IN (SELECT id FROM u WHERE x = 1)"),
            "SELECT * FROM t WHERE id IN (SELECT id FROM u WHERE x = ?)"
        );
    }

    #[test]
    fn a_statement_holds_the_leading_keyword_and_longest_name_of_its_digest() {
        for sql in [
            "select c from sbtest1 where id=1",
            "/* app */ SELECT `c`, @@session.sql_mode FROM sbtest1 WHERE id=?",
            "SELECT @v, t.col_name FROM db.t WHERE x IN (1,2)",
            "insert into t(a,b) values (1,'x'),(2,'y')",
        ] {
            let text = d(sql);
            assert_eq!(
                leading_keyword(sql.as_bytes()),
                keyword(&text.as_bytes()[..6])
            );
            let name = longest_name(&text).expect("a name");
            assert!(sql.contains(name), "{name} in {sql}");
        }
        assert_eq!(longest_name("SELECT ? FROM sbtest1"), Some("sbtest1"));
        assert_eq!(longest_name("SELECT @@sql_mode"), Some("sql_mode"));
        assert_eq!(longest_name("SELECT ?"), None, "keywords are not names");
        assert_eq!(longest_name("SELECT caf\u{e9}"), None, "non-ASCII");
        assert_eq!(leading_keyword(b"  -- c\n select 1"), Some("SELECT"));
        assert_eq!(leading_keyword(b"(SELECT 1)"), None);
        assert_eq!(leading_keyword(b"sbtest1"), None);
    }

    #[test]
    fn long_or_malformed_text_is_bounded_and_never_panics() {
        let long = format!("SELECT {}", "col, ".repeat(1000));
        let out = d(&long);
        assert!(out.len() <= MAX_DIGEST + '…'.len_utf8(), "{}", out.len());
        assert!(out.ends_with('…'));
        for bad in [
            "SELECT 'unterminated",
            "/* open",
            "SELECT \u{e9}t\u{e9} FROM t",
            ")))",
            "(((",
            "",
            "- - 1",
        ] {
            let _ = d(bad);
        }
        assert_eq!(
            d("SELECT 1 FROM t WHERE a = 'unterminated"),
            "SELECT ? FROM t WHERE a = ?"
        );
    }
}
