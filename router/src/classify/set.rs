//! `SET` statements: which assignments they make (session variables to replay, user variables
//! that pin the primary, `autocommit`, global settings), shared by the classifier and the session.

use super::lexer::{Kind, Span};
use super::rules::{statement, upper, Cursor, UNPARSEABLE};
use super::{Classification, Effect, Reason, Target};

/// Where an assignment lands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The connection's session: replayed on every backend the session uses.
    Session,
    /// `GLOBAL`/`PERSIST`: the server itself, never replayed.
    Global,
    /// A user variable (`@x`): lives only on the connection that set it.
    User,
}

/// What an assignment sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sets {
    /// A variable named by `name`.
    Var,
    /// `SET NAMES ...` / `SET CHARACTER SET ...` / `SET CHARSET ...`.
    Names,
    /// `SET SESSION TRANSACTION ...`.
    Transaction,
    /// `SET ROLE ...`.
    Role,
}

/// One assignment of a `SET` statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Assignment {
    pub scope: Scope,
    pub what: Sets,
    /// The variable name as written (without `@@scope.`); empty for NAMES/TRANSACTION/ROLE.
    pub name: Span,
    /// The whole assignment text (for replay), e.g. `sql_mode = 'ANSI'` or `NAMES utf8mb4`.
    pub text: Span,
    /// The value's text.
    pub value: Span,
}

/// Classifies a `SET` statement (the cursor is just past `SET`).
pub(super) fn set_statement(cur: &mut Cursor<'_>) -> Classification {
    let mut look = cur.clone();
    if look.eat_kw(b"TRANSACTION") {
        return Classification::new(
            Target::Primary,
            Reason::Transaction,
            Effect::NextTransaction,
        );
    }
    if look.eat_kw(b"PASSWORD") || look.eat_kw(b"DEFAULT") {
        return Classification::new(Target::Primary, Reason::Write, Effect::None);
    }
    if look.eat_kw(b"STATEMENT") {
        // MariaDB `SET STATEMENT var=val [, ...] FOR stmt`: the settings apply to that statement
        // only, inline, so the inner statement decides.
        let mut depth = 0i32;
        while let Some(t) = look.next() {
            match t.kind {
                Kind::Punct(b'(') => depth += 1,
                Kind::Punct(b')') => depth -= 1,
                Kind::Word if depth == 0 && look.is_kw(&t, b"FOR") => return statement(&mut look),
                _ => {}
            }
        }
        return UNPARSEABLE;
    }
    let sql = cur.sql;
    let (mut user, mut global, mut session, mut insert_id) = (false, false, false, false);
    let mut count = 0;
    let mut autocommit: Option<Option<bool>> = None;
    let ok = assignments(sql, cur, |a| {
        count += 1;
        match a.scope {
            Scope::User => user = true,
            Scope::Global => global = true,
            Scope::Session
                if a.what == Sets::Var && a.name.of(sql).eq_ignore_ascii_case(b"autocommit") =>
            {
                autocommit = Some(bool_value(a.value.of(sql)));
            }
            Scope::Session if a.what == Sets::Var && sets_insert_id(a.name.of(sql)) => {
                insert_id = true
            }
            Scope::Session => session = true,
        }
    });
    if !ok {
        // The session cannot replay what it cannot parse: it will keep to the primary.
        return Classification::new(Target::Primary, Reason::Unparseable, Effect::Set);
    }
    let effect = match autocommit {
        Some(Some(on)) if count == 1 => Effect::SetAutocommit(on),
        _ => Effect::Set,
    };
    // The proxy learns the value it leaves (no OK packet says): see `sets_insert_id`.
    let reason = if insert_id {
        Reason::LastInsertId
    } else if user {
        Reason::UserVariable
    } else if session {
        Reason::SessionState
    } else if autocommit.is_some() {
        Reason::Transaction
    } else if global {
        Reason::ServerAdmin
    } else {
        Reason::SessionState
    };
    Classification::new(Target::Primary, reason, effect)
}

/// Parses the assignments of a `SET` (cursor just past `SET`), calling `f` for each. Returns
/// false when the text is not a well-formed assignment list.
pub(crate) fn assignments(
    sql: &[u8],
    cur: &mut Cursor<'_>,
    mut f: impl FnMut(&Assignment),
) -> bool {
    let mut buf = [0u8; 32];
    loop {
        let Some(first) = cur.next() else {
            return false;
        };
        let mut scope = Scope::Session;
        let mut tok = first;
        // Scope keyword.
        if tok.kind == Kind::Word {
            match upper(sql, tok.span, &mut buf) {
                b"GLOBAL" | b"PERSIST" | b"PERSIST_ONLY" => scope = Scope::Global,
                b"SESSION" | b"LOCAL" => scope = Scope::Session,
                _ => scope = Scope::Session,
            }
            if matches!(
                upper(sql, tok.span, &mut buf),
                b"GLOBAL" | b"PERSIST" | b"PERSIST_ONLY" | b"SESSION" | b"LOCAL"
            ) {
                match cur.next() {
                    Some(t) => tok = t,
                    None => return false,
                }
            }
        }
        let text_start = tok.span.start;
        let (what, name) = match tok.kind {
            Kind::UserVar => {
                scope = Scope::User;
                (Sets::Var, tok.span)
            }
            Kind::SysVar => {
                scope = sysvar_scope(sql, tok.span);
                (Sets::Var, tok.span)
            }
            Kind::Word => match upper(sql, tok.span, &mut buf) {
                b"NAMES" | b"CHARSET" => (Sets::Names, Span::default()),
                b"CHARACTER" => {
                    if !cur.eat_kw(b"SET") {
                        return false;
                    }
                    (Sets::Names, Span::default())
                }
                b"TRANSACTION" => (Sets::Transaction, Span::default()),
                b"ROLE" => (Sets::Role, Span::default()),
                _ => (Sets::Var, tok.span),
            },
            Kind::Quoted => (Sets::Var, tok.span),
            _ => return false,
        };
        if what == Sets::Var {
            match cur.next() {
                Some(t) if t.is_punct(b'=') || t.kind == Kind::Assign => {}
                _ => return false,
            }
        }
        // The value runs to the next top-level comma. For the special forms it is everything
        // after the keyword (SET TRANSACTION's options contain commas: take them all).
        let mut depth = 0i32;
        let mut value_start: Option<u32> = None;
        let mut end = tok.span.end;
        let mut more = false;
        while let Some(t) = cur.peek() {
            match t.kind {
                Kind::Punct(b'(') => depth += 1,
                Kind::Punct(b')') => depth -= 1,
                Kind::Punct(b',') if depth == 0 && what != Sets::Transaction => {
                    cur.next();
                    more = true;
                    break;
                }
                _ => {}
            }
            cur.next();
            value_start.get_or_insert(t.span.start);
            end = t.span.end;
        }
        let Some(vs) = value_start else {
            return false;
        };
        f(&Assignment {
            scope,
            what,
            name,
            text: Span {
                start: text_start,
                end,
            },
            value: Span { start: vs, end },
        });
        if !more {
            return true;
        }
    }
}

/// `last_insert_id` and `identity` (possibly backquoted): assigning one sets what
/// `LAST_INSERT_ID()` answers on that connection. That is the value of one connection at one
/// moment, not a setting: the next insert there replaces it, so replaying the assignment on
/// every connection the session takes later would bring back a stale id. The proxy keeps the
/// session's last insert id itself and restores it where a statement reads it.
pub(crate) fn sets_insert_id(name: &[u8]) -> bool {
    let n = name
        .strip_prefix(b"`")
        .and_then(|n| n.strip_suffix(b"`"))
        .unwrap_or(name);
    n.eq_ignore_ascii_case(b"last_insert_id") || n.eq_ignore_ascii_case(b"identity")
}

/// The scope written before a system variable's name: `@@global.x`, `@@session.x`, `@@x`.
fn sysvar_scope(sql: &[u8], name: Span) -> Scope {
    let start = name.start as usize;
    if start >= 1 && sql.get(start - 1) == Some(&b'.') {
        let before = &sql[..start - 1];
        let scope_start = before
            .iter()
            .rposition(|b| *b == b'@')
            .map(|p| p + 1)
            .unwrap_or(0);
        let scope = &before[scope_start..];
        if scope.eq_ignore_ascii_case(b"global")
            || scope.eq_ignore_ascii_case(b"persist")
            || scope.eq_ignore_ascii_case(b"persist_only")
        {
            return Scope::Global;
        }
    }
    Scope::Session
}

/// Reads a boolean setting: `0`, `1`, `ON`, `OFF`, `TRUE`, `FALSE`, possibly quoted.
pub(crate) fn bool_value(v: &[u8]) -> Option<bool> {
    let v = v
        .strip_prefix(b"'")
        .and_then(|v| v.strip_suffix(b"'"))
        .unwrap_or(v);
    if v == b"1" || v.eq_ignore_ascii_case(b"on") || v.eq_ignore_ascii_case(b"true") {
        Some(true)
    } else if v == b"0" || v.eq_ignore_ascii_case(b"off") || v.eq_ignore_ascii_case(b"false") {
        Some(false)
    } else {
        None
    }
}
