//! A statement's digest text: literals replaced by `?`, comments dropped, whitespace collapsed,
//! lowercased outside quoted identifiers, trailing `;` removed. Two statements that differ only
//! in their literal values have the same digest, so one rule matches every instance.
//!
//! Temporary: issue 12's statement statistics bring the project's own digest function (built on
//! the classifier's lexer); rules switch to it once it is on main. Rules normalise their own
//! `digest` text with the same function as statements, so what a rule matches does not depend
//! on which normaliser is in use as long as both sides use the same one.

/// The digest of `sql`, written into `out` (cleared first; reused to avoid an allocation per
/// statement).
pub fn digest_into(sql: &[u8], out: &mut String) {
    out.clear();
    let mut i = 0;
    let n = sql.len();
    while i < n {
        let b = sql[i];
        match b {
            b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c => i += 1,
            b'/' if sql.get(i + 1) == Some(&b'*') => {
                i = find(sql, i + 2, b"*/").map_or(n, |e| e + 2);
            }
            b'#' => i = line_end(sql, i),
            b'-' if sql.get(i + 1) == Some(&b'-')
                && sql.get(i + 2).is_none_or(|c| c.is_ascii_whitespace()) =>
            {
                i = line_end(sql, i);
            }
            b'\'' | b'"' => {
                i = skip_quoted(sql, i, b);
                token(out, "?");
            }
            b'`' => {
                let end = skip_quoted(sql, i, b'`');
                sep(out, b'`');
                push_bytes(out, &sql[i..end], false);
                i = end;
            }
            b'0'..=b'9' => {
                i = skip_number(sql, i);
                token(out, "?");
            }
            b'.' if sql.get(i + 1).is_some_and(u8::is_ascii_digit) && !out.ends_with('.') => {
                i = skip_number(sql, i + 1);
                token(out, "?");
            }
            _ if is_word(b) => {
                let start = i;
                while i < n && is_word(sql[i]) {
                    i += 1;
                }
                sep(out, b);
                push_bytes(out, &sql[start..i], true);
            }
            _ if is_operator(b) => {
                let start = i;
                while i < n
                    && is_operator(sql[i])
                    && !(sql[i] == b'-' && sql.get(i + 1) == Some(&b'-'))
                {
                    i += 1;
                }
                sep(out, b);
                push_bytes(out, &sql[start..i], false);
            }
            _ => {
                let mut tmp = [0u8; 4];
                let s = if b.is_ascii() {
                    (b as char).encode_utf8(&mut tmp)
                } else {
                    "\u{fffd}"
                };
                token(out, s);
                i += 1;
            }
        }
    }
    while out.ends_with(';') || out.ends_with(' ') {
        out.pop();
    }
}

/// Appends a token: one space between tokens, none before `,` `)` `;` `.` or after `(` `.`,
/// so that spacing in the statement never changes its digest.
fn token(out: &mut String, t: &str) {
    sep(out, t.as_bytes().first().copied().unwrap_or(b' '));
    out.push_str(t);
}

/// The separator before a token starting with `first`.
fn sep(out: &mut String, first: u8) {
    let tight_before = matches!(first, b',' | b')' | b';' | b'.');
    let tight_after = out.ends_with(['(', '.']);
    if !out.is_empty() && !tight_before && !tight_after {
        out.push(' ');
    }
}

/// Appends bytes of the statement without an allocation when they are ASCII (the usual case);
/// other text goes through a lossy UTF-8 conversion.
fn push_bytes(out: &mut String, b: &[u8], lower: bool) {
    if b.is_ascii() {
        out.extend(b.iter().map(|&c| {
            if lower {
                c.to_ascii_lowercase() as char
            } else {
                c as char
            }
        }));
    } else if lower {
        out.push_str(&String::from_utf8_lossy(b).to_lowercase());
    } else {
        out.push_str(&String::from_utf8_lossy(b));
    }
}

fn is_operator(b: u8) -> bool {
    matches!(
        b,
        b'<' | b'>'
            | b'='
            | b'!'
            | b':'
            | b'|'
            | b'&'
            | b'+'
            | b'-'
            | b'*'
            | b'/'
            | b'%'
            | b'^'
            | b'~'
    )
}

/// [`digest_into`] into a new string.
pub fn digest(sql: &[u8]) -> String {
    let mut s = String::with_capacity(sql.len());
    digest_into(sql, &mut s);
    s
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b == b'@' || b >= 0x80
}

fn find(hay: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

fn line_end(sql: &[u8], from: usize) -> usize {
    sql[from..]
        .iter()
        .position(|&c| c == b'\n')
        .map_or(sql.len(), |p| from + p)
}

/// Past the closing quote (a doubled quote or a backslash escape stays inside).
fn skip_quoted(sql: &[u8], start: usize, q: u8) -> usize {
    let mut i = start + 1;
    while i < sql.len() {
        let c = sql[i];
        if c == b'\\' && q != b'`' {
            i += 2;
            continue;
        }
        if c == q {
            if sql.get(i + 1) == Some(&q) {
                i += 2;
                continue;
            }
            return i + 1;
        }
        i += 1;
    }
    sql.len()
}

fn skip_number(sql: &[u8], start: usize) -> usize {
    let mut i = start;
    while i < sql.len() {
        let c = sql[i];
        let exp_sign = (c == b'+' || c == b'-') && i > start && matches!(sql[i - 1], b'e' | b'E');
        if c.is_ascii_alphanumeric() || c == b'.' || exp_sign {
            i += 1;
        } else {
            break;
        }
    }
    i
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn literals_comments_case_and_spacing_are_normalised() {
        for (sql, want) in [
            (
                "SELECT * FROM t WHERE id = 42",
                "select * from t where id = ?",
            ),
            (
                "select  *\n from T where id=7 ;",
                "select * from t where id = ?",
            ),
            (
                "SELECT name FROM users WHERE email = 'a''b@c' AND x = \"y\"",
                "select name from users where email = ? and x = ?",
            ),
            (
                "/* app */ INSERT INTO t1 (a, b) VALUES (1.5e3, 0x1F) -- end",
                "insert into t1 (a, b) values (?, ?)",
            ),
            ("SELECT `Weird Col` FROM t # c", "select `Weird Col` from t"),
            ("SELECT a.b, .5 FROM a", "select a.b, ? from a"),
            ("SELECT 'unterminated", "select ?"),
        ] {
            assert_eq!(digest(sql.as_bytes()), want, "{sql}");
        }
        assert_eq!(
            digest(b"SELECT * FROM t WHERE id = 1"),
            digest(b"select *   from t where id = 99999")
        );
    }

    #[test]
    fn never_panics_on_bytes() {
        for s in [
            &b""[..],
            b"'",
            b"`",
            b"/*",
            b"--",
            b"1e",
            b"\xff\xfe",
            b".",
            b"0x",
        ] {
            let _ = digest(s);
        }
    }
}
