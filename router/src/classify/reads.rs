//! The scan of a read (`SELECT`, `WITH`, `VALUES`, `TABLE`, a parenthesised query, `DO`):
//! finds what makes a read need the primary or the previous backend, in one pass.

use super::builtins::{is_builtin, is_keyword_before_paren};
use super::lexer::Kind;
use super::rules::{upper, Cursor};
use super::{Classification, Effect, Reason, Target};

/// Scans the rest of a read. `with` is true when it started with `WITH` (MySQL 8 allows
/// `WITH ... UPDATE/DELETE`, and CTE names are followed by a column list in parentheses).
pub(super) fn scan_read(cur: &mut Cursor<'_>, with: bool) -> Classification {
    let sql = cur.sql;
    let mut found: Option<Classification> = None;
    let mut previous = false;
    let mut calc_found_rows = false;
    let mut depth: i32 = 0;
    // True until the first top-level SELECT of a WITH statement: names followed by `(` are CTEs.
    let mut in_cte_list = with;
    let mut prev_word_for = false;
    let mut prev_dot = false;
    let mut prev_lock = false;
    let mut buf = [0u8; 32];
    // The first reason found that needs the primary wins; effects are kept for the session.
    let set = |found: &mut Option<Classification>, reason: Reason, effect: Effect| match found {
        None => *found = Some(Classification::new(Target::Primary, reason, effect)),
        Some(f) if f.effect == Effect::None && effect != Effect::None => f.effect = effect,
        Some(_) => {}
    };
    while let Some(t) = cur.next() {
        let was_for = std::mem::replace(&mut prev_word_for, false);
        let was_dot = std::mem::replace(&mut prev_dot, false);
        let was_lock = std::mem::replace(&mut prev_lock, false);
        match t.kind {
            Kind::Punct(b'(') => depth += 1,
            Kind::Punct(b')') => depth -= 1,
            Kind::Punct(b'.') => prev_dot = true,
            // `` `f`(...) ``: a quoted name called like a function is never a built-in.
            Kind::Quoted
                if matches!(cur.peek(), Some(n) if n.is_punct(b'('))
                    && !(in_cte_list && depth == 0) =>
            {
                set(&mut found, Reason::StoredFunction, Effect::None)
            }
            Kind::UserVar => {
                let assigns = matches!(cur.peek(), Some(n) if n.kind == Kind::Assign);
                let effect = if assigns {
                    Effect::UserVariable
                } else {
                    Effect::None
                };
                set(&mut found, Reason::UserVariable, effect);
            }
            Kind::SysVar => match upper(sql, t.span, &mut buf) {
                b"IDENTITY" | b"LAST_INSERT_ID" | b"INSERT_ID" | b"LAST_GTID" => {
                    set(&mut found, Reason::LastInsertId, Effect::None)
                }
                b"WARNING_COUNT" | b"ERROR_COUNT" => previous = true,
                _ => {}
            },
            Kind::Word => {
                let w = upper(sql, t.span, &mut buf);
                let call = matches!(cur.peek(), Some(n) if n.is_punct(b'('));
                if call {
                    if was_dot {
                        // `db.func(...)`: built-ins are never qualified, so a stored function.
                        set(&mut found, Reason::StoredFunction, Effect::None);
                        continue;
                    }
                    match w {
                        b"LAST_INSERT_ID" => set(&mut found, Reason::LastInsertId, Effect::None),
                        b"ROW_COUNT" | b"FOUND_ROWS" => previous = true,
                        b"GET_LOCK" => set(&mut found, Reason::NamedLock, Effect::NamedLock),
                        b"RELEASE_LOCK" => set(
                            &mut found,
                            Reason::NamedLock,
                            Effect::ReleaseNamedLock { all: false },
                        ),
                        b"RELEASE_ALL_LOCKS" => set(
                            &mut found,
                            Reason::NamedLock,
                            Effect::ReleaseNamedLock { all: true },
                        ),
                        b"IS_USED_LOCK" | b"IS_FREE_LOCK" => {
                            set(&mut found, Reason::NamedLock, Effect::None)
                        }
                        b"NEXTVAL" | b"LASTVAL" | b"SETVAL" => {
                            set(&mut found, Reason::Sequence, Effect::None)
                        }
                        // INSERT() and REPLACE() are also string functions.
                        _ if is_builtin(w) || is_keyword_before_paren(w) => {}
                        _ if in_cte_list && depth == 0 => {} // `WITH cte (a, b) AS (...)`
                        _ => set(&mut found, Reason::StoredFunction, Effect::None),
                    }
                    continue;
                }
                match w {
                    b"SELECT" if depth == 0 => in_cte_list = false,
                    b"SQL_CALC_FOUND_ROWS" => calc_found_rows = true,
                    b"FOR" => prev_word_for = true,
                    b"UPDATE" | b"SHARE" if was_for => {
                        set(&mut found, Reason::LockingRead, Effect::None)
                    }
                    b"LOCK" => prev_lock = true,
                    b"IN" if was_lock => set(&mut found, Reason::LockingRead, Effect::None),
                    b"INTO" => {
                        let into_var = matches!(cur.peek(), Some(n) if n.kind == Kind::UserVar);
                        let effect = if into_var {
                            Effect::UserVariable
                        } else {
                            Effect::None
                        };
                        set(&mut found, Reason::SelectInto, effect);
                    }
                    b"NEXTVAL" | b"CURRVAL" | b"LASTVAL" if was_dot => {
                        set(&mut found, Reason::Sequence, Effect::None)
                    }
                    b"NEXT" | b"PREVIOUS" => {
                        let mut look = cur.clone();
                        if look.eat_kw(b"VALUE") && look.eat_kw(b"FOR") {
                            set(&mut found, Reason::Sequence, Effect::None);
                        }
                    }
                    // Data-changing keywords inside a "read": WITH ... UPDATE, or anything odd.
                    b"UPDATE" | b"DELETE" | b"INSERT" | b"REPLACE" => {
                        set(&mut found, Reason::Write, Effect::Write)
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
    let mut class = match found {
        Some(f) => f,
        None if previous => {
            Classification::new(Target::Previous, Reason::PreviousBackend, Effect::None)
        }
        None => Classification::new(Target::Replica, Reason::Read, Effect::None),
    };
    class.calc_found_rows = calc_found_rows;
    class.reads_last_statement = previous;
    class
}
