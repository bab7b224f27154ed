//! A byte scanner over MySQL statement text: skips whitespace and comments, understands quotes,
//! backticks and `/*! */` / `/*M! */` versioned comments (whose content is code), and yields
//! tokens without allocating. Malformed input (unterminated quotes or comments, invalid UTF-8)
//! simply ends the token stream; it never panics.

/// A byte range into the statement text (kept small and `Copy` so effects can carry it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    pub start: u32,
    pub end: u32,
}

impl Span {
    fn new(start: usize, end: usize) -> Self {
        // Statements are < 4 GiB (max_allowed_packet is at most 1 GiB); saturate to be safe.
        let clamp = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
        Self {
            start: clamp(start),
            end: clamp(end),
        }
    }

    /// The bytes this span covers in `sql` (empty if out of range).
    pub fn of<'a>(&self, sql: &'a [u8]) -> &'a [u8] {
        sql.get(self.start as usize..self.end as usize)
            .unwrap_or(&[])
    }
}

/// What kind of token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// An unquoted word: keyword or identifier.
    Word,
    /// A backquoted identifier (span includes the backquotes).
    Quoted,
    /// A string literal in single or double quotes (span includes the quotes).
    Str,
    /// A number (or anything starting with a digit).
    Num,
    /// A user variable `@name`, `@'name'`, `` @`name` `` (span includes the `@`).
    UserVar,
    /// A system variable `@@name` or `@@scope.name` (span covers the name after any scope).
    SysVar,
    /// `:=`
    Assign,
    /// Any other single byte: `(`, `)`, `,`, `;`, `.`, `=`, `?`...
    Punct(u8),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Token {
    pub kind: Kind,
    pub span: Span,
}

impl Token {
    pub fn is_punct(&self, b: u8) -> bool {
        self.kind == Kind::Punct(b)
    }
}

/// Iterates over the tokens of `sql` from a byte offset.
#[derive(Debug, Clone)]
pub(crate) struct Lexer<'a> {
    sql: &'a [u8],
    pos: usize,
    /// Inside `/*! ... */`: the next `*/` closes it and is skipped.
    in_versioned: bool,
    /// An unterminated quote or comment was seen: the server will reject the text.
    malformed: bool,
}

/// Bytes that continue an unquoted word: ASCII letters and digits, `_`, `$`, and any non-ASCII
/// byte (identifiers may be UTF-8). A table: one load per byte on the hottest loop.
static WORD_BYTE: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80;
        b += 1;
    }
    t
};

#[inline(always)]
fn is_word_byte(b: u8) -> bool {
    WORD_BYTE[b as usize]
}

impl<'a> Lexer<'a> {
    pub fn new(sql: &'a [u8], pos: usize) -> Self {
        Self {
            sql,
            pos,
            in_versioned: false,
            malformed: false,
        }
    }

    /// The byte offset of the next unread byte.
    pub fn offset(&self) -> usize {
        self.pos
    }

    /// True once an unterminated quote or comment was met.
    pub fn malformed(&self) -> bool {
        self.malformed
    }

    fn at(&self, i: usize) -> u8 {
        self.sql.get(i).copied().unwrap_or(0)
    }

    /// Skips whitespace and comments; returns false at the end of input.
    fn skip_trivia(&mut self) -> bool {
        loop {
            let b = match self.sql.get(self.pos) {
                Some(b) => *b,
                None => {
                    self.malformed |= self.in_versioned;
                    return false;
                }
            };
            match b {
                b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c => self.pos += 1,
                b'#' => self.skip_line(),
                b'-' if self.at(self.pos + 1) == b'-'
                    && matches!(self.at(self.pos + 2), 0..=b' ') =>
                {
                    self.skip_line()
                }
                b'/' if self.at(self.pos + 1) == b'*' => {
                    let p = self.pos + 2;
                    if self.at(p) == b'!' {
                        self.enter_versioned(p + 1);
                    } else if self.at(p) == b'M' && self.at(p + 1) == b'!' {
                        self.enter_versioned(p + 2);
                    } else {
                        self.pos = find_comment_end(self.sql, p);
                        if self.pos == self.sql.len() && !self.sql.ends_with(b"*/") {
                            self.malformed = true;
                        }
                    }
                }
                b'*' if self.in_versioned && self.at(self.pos + 1) == b'/' => {
                    self.in_versioned = false;
                    self.pos += 2;
                }
                _ => return true,
            }
        }
    }

    fn skip_line(&mut self) {
        while let Some(b) = self.sql.get(self.pos) {
            self.pos += 1;
            if *b == b'\n' {
                break;
            }
        }
    }

    /// `/*!` or `/*M!` seen: skip the optional version number; the content is code.
    fn enter_versioned(&mut self, mut p: usize) {
        let digits_start = p;
        while self.at(p).is_ascii_digit() && p - digits_start < 6 {
            p += 1;
        }
        self.pos = p;
        self.in_versioned = true;
    }

    /// Consumes a quoted run starting at the opening quote; returns the end (after the close).
    fn skip_quoted(&mut self, start: usize, quote: u8) -> usize {
        let mut p = start + 1;
        while let Some(&b) = self.sql.get(p) {
            if b == b'\\' && quote != b'`' {
                p += 2;
                continue;
            }
            if b == quote {
                if self.at(p + 1) == quote {
                    p += 2;
                    continue;
                }
                return p + 1;
            }
            p += 1;
        }
        self.malformed = true;
        self.sql.len()
    }

    fn word_end(&self, p: usize) -> usize {
        let rest = self.sql.get(p..).unwrap_or(&[]);
        p + rest
            .iter()
            .position(|b| !is_word_byte(*b))
            .unwrap_or(rest.len())
    }
}

/// Offset just after the `*/` that closes a comment whose body starts at `p` (or the end).
fn find_comment_end(sql: &[u8], mut p: usize) -> usize {
    while p + 1 < sql.len() {
        if sql[p] == b'*' && sql[p + 1] == b'/' {
            return p + 2;
        }
        p += 1;
    }
    sql.len()
}

impl Iterator for Lexer<'_> {
    type Item = Token;

    fn next(&mut self) -> Option<Token> {
        if !self.skip_trivia() {
            return None;
        }
        let start = self.pos;
        let b = self.sql[start];
        let (kind, end, span_start) = match b {
            b'\'' | b'"' => (Kind::Str, self.skip_quoted(start, b), start),
            b'`' => (Kind::Quoted, self.skip_quoted(start, b'`'), start),
            b'0'..=b'9' => (Kind::Num, self.word_end(start), start),
            b'@' if self.at(start + 1) == b'@' => {
                let mut p = start + 2;
                let mut name = p;
                let e = self.word_end(p);
                // `@@session.x`, `@@global.x`: the name is after the scope.
                if self.at(e) == b'.' && is_word_byte(self.at(e + 1)) {
                    name = e + 1;
                    p = self.word_end(e + 1);
                } else {
                    p = e;
                }
                (Kind::SysVar, p, name)
            }
            b'@' => {
                let q = self.at(start + 1);
                let end = if matches!(q, b'\'' | b'"' | b'`') {
                    self.skip_quoted(start + 1, q)
                } else {
                    let mut p = start + 1;
                    while p < self.sql.len() && (is_word_byte(self.sql[p]) || self.sql[p] == b'.') {
                        p += 1;
                    }
                    p
                };
                (Kind::UserVar, end, start)
            }
            b':' if self.at(start + 1) == b'=' => (Kind::Assign, start + 2, start),
            _ if is_word_byte(b) => (Kind::Word, self.word_end(start), start),
            _ => (Kind::Punct(b), start + 1, start),
        };
        self.pos = end.max(start + 1);
        Some(Token {
            kind,
            span: Span::new(span_start, end),
        })
    }
}

/// Splits a multi-statement text at top-level `;` (outside quotes and comments), skipping
/// pieces that hold no token.
pub fn split_statements(sql: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut lexer = Lexer::new(sql, 0);
    let mut done = false;
    std::iter::from_fn(move || {
        while !done {
            // The piece runs from its first token to its last, so versioned-comment delimiters
            // around it (`/*!40101 SET NAMES utf8 */;`) are left out.
            let mut first: Option<usize> = None;
            let mut end = 0;
            loop {
                match lexer.next() {
                    None => {
                        done = true;
                        break;
                    }
                    Some(t) if t.is_punct(b';') => break,
                    Some(t) => {
                        first.get_or_insert(t.span.start as usize);
                        end = t.span.end as usize;
                    }
                }
            }
            if let Some(f) = first {
                return sql.get(f..end);
            }
        }
        None
    })
}

/// Leading routing hints found in comments before the first token.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Hints {
    pub primary: bool,
    pub replica: bool,
    pub max_lag_ms: Option<u64>,
}

/// Reads `rwsplit:` hints from the comments that precede the first token.
pub(crate) fn leading_hints(sql: &[u8]) -> Hints {
    let mut hints = Hints::default();
    for_each_leading_comment(sql, |body| scan_hint_body(body, &mut hints));
    hints
}

/// Calls `f(word, value)` for every `rwsplit:word=value` in the comments that precede the
/// first token (`value` runs to the next blank or the comment's end; empty without `=`).
pub fn for_each_leading_hint<'a>(sql: &'a [u8], mut f: impl FnMut(&'a [u8], &'a [u8])) {
    const TAG: &[u8] = b"rwsplit:";
    for_each_leading_comment(sql, |body| {
        let mut i = 0;
        while i + TAG.len() <= body.len() {
            if !body[i..i + TAG.len()].eq_ignore_ascii_case(TAG) {
                i += 1;
                continue;
            }
            let rest = &body[i + TAG.len()..];
            let word_len = rest
                .iter()
                .position(|b| !(b.is_ascii_alphanumeric() || *b == b'_'))
                .unwrap_or(rest.len());
            let word = &rest[..word_len];
            let value = match rest[word_len..].strip_prefix(b"=") {
                Some(v) => {
                    let n = v
                        .iter()
                        .position(|b| b.is_ascii_whitespace())
                        .unwrap_or(v.len());
                    &v[..n]
                }
                None => &sql[..0],
            };
            f(word, value);
            i += TAG.len() + word_len + value.len();
        }
    });
}

/// Calls `f` with the body of each comment before the first token.
fn for_each_leading_comment<'a>(sql: &'a [u8], mut f: impl FnMut(&'a [u8])) {
    let mut p = 0;
    loop {
        while p < sql.len() && sql[p].is_ascii_whitespace() {
            p += 1;
        }
        let body_start;
        let body_end;
        if sql.get(p) == Some(&b'/') && sql.get(p + 1) == Some(&b'*') {
            if matches!(sql.get(p + 2), Some(b'!')) {
                return;
            }
            body_start = p + 2;
            let end = find_comment_end(sql, body_start);
            body_end = end.saturating_sub(2).max(body_start);
            p = end;
        } else if sql.get(p) == Some(&b'#')
            || (sql.get(p) == Some(&b'-') && sql.get(p + 1) == Some(&b'-'))
        {
            body_start = p + 1;
            let mut e = body_start;
            while e < sql.len() && sql[e] != b'\n' {
                e += 1;
            }
            body_end = e;
            p = e;
        } else {
            return;
        }
        f(&sql[body_start..body_end]);
    }
}

fn scan_hint_body(body: &[u8], hints: &mut Hints) {
    const TAG: &[u8] = b"rwsplit:";
    let mut i = 0;
    while i + TAG.len() <= body.len() {
        if body[i..i + TAG.len()].eq_ignore_ascii_case(TAG) {
            let rest = &body[i + TAG.len()..];
            let word_len = rest
                .iter()
                .position(|b| !(b.is_ascii_alphanumeric() || *b == b'_'))
                .unwrap_or(rest.len());
            let word = &rest[..word_len];
            if word.eq_ignore_ascii_case(b"primary") || word.eq_ignore_ascii_case(b"master") {
                hints.primary = true;
            } else if word.eq_ignore_ascii_case(b"replica") || word.eq_ignore_ascii_case(b"slave") {
                hints.replica = true;
            } else if word.eq_ignore_ascii_case(b"max_lag_ms") {
                let after = &rest[word_len..];
                let after = after.strip_prefix(b"=").unwrap_or(after);
                let digits = after.iter().take_while(|b| b.is_ascii_digit()).count();
                if digits > 0 {
                    let mut v: u64 = 0;
                    for d in &after[..digits] {
                        v = v.saturating_mul(10).saturating_add(u64::from(d - b'0'));
                    }
                    hints.max_lag_ms = Some(v);
                }
            }
            i += TAG.len() + word_len;
        } else {
            i += 1;
        }
    }
}
