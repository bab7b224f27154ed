//! `KILL [HARD|SOFT] [CONNECTION|QUERY] <id>` read from statement text, so the proxy can answer
//! it about its own session ids instead of forwarding it to a server whose thread ids mean
//! nothing to the client (drivers cancel a statement with `KILL QUERY <handshake id>`).

use super::lexer::Kind;
use super::rules::Cursor;

/// A `KILL` statement, as far as the proxy acts on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kill {
    /// `KILL [HARD|SOFT] [CONNECTION|QUERY] <integer>`: `query_only` for `KILL QUERY` (the
    /// running statement only); otherwise the whole session goes.
    Thread { query_only: bool, id: u64 },
    /// A form of `KILL` the proxy does not take: `KILL USER`, `KILL QUERY ID` (query ids are a
    /// server's), an expression, or more statements after it. Forwarding any of them to a
    /// server would act on backend threads that other sessions share, so the proxy refuses it.
    Unsupported,
}

/// Reads a `KILL` statement; `None` when `sql` is not one (the cost on other statements is
/// lexing their first token). Run it after [`super::substitute_connection_id`] so that
/// `KILL QUERY CONNECTION_ID()` names the session's own id.
pub fn kill(sql: &[u8]) -> Option<Kill> {
    let mut cur = Cursor::new(sql);
    let first = cur.next()?;
    if !cur.is_kw(&first, b"KILL") {
        return None;
    }
    Some(kill_rest(&mut cur).unwrap_or(Kill::Unsupported))
}

fn kill_rest(cur: &mut Cursor<'_>) -> Option<Kill> {
    // `HARD` / `SOFT` (MariaDB) change how the server waits, not which thread.
    let _ = cur.eat_kw(b"HARD") || cur.eat_kw(b"SOFT");
    let query_only = if cur.eat_kw(b"QUERY") {
        true
    } else {
        cur.eat_kw(b"CONNECTION");
        false
    };
    let t = cur.next()?;
    if t.kind != Kind::Num {
        return None; // `USER x`, `ID n`, an expression, or nothing
    }
    let digits = t.span.of(cur.sql);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None; // `0x1f`, `1e3`, `12abc`
    }
    // Ids beyond u64 name no session: saturate and let the lookup say "unknown thread".
    let id = digits.iter().fold(0u64, |v, d| {
        v.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    });
    if cur.next().is_some() || cur.more_statements() || cur.malformed() {
        return None;
    }
    Some(Kill::Thread { query_only, id })
}

#[cfg(test)]
mod test {
    use super::*;

    fn thread(query_only: bool, id: u64) -> Option<Kill> {
        Some(Kill::Thread { query_only, id })
    }

    #[test]
    fn forms() {
        assert_eq!(kill(b"KILL 12"), thread(false, 12));
        assert_eq!(kill(b"kill connection 7"), thread(false, 7));
        assert_eq!(kill(b"Kill Query 7"), thread(true, 7));
        assert_eq!(kill(b"KILL HARD QUERY 3"), thread(true, 3));
        assert_eq!(kill(b"KILL SOFT CONNECTION 3"), thread(false, 3));
        assert_eq!(
            kill(b"  /* c */ KILL -- x\n QUERY /*q*/ 42 ;"),
            thread(true, 42)
        );
        assert_eq!(kill(b"/* rwsplit:primary */ KILL 5;;"), thread(false, 5));
        assert_eq!(kill(b"/*!KILL QUERY 9 */"), thread(true, 9));
        assert_eq!(
            kill(b"KILL 99999999999999999999999"),
            thread(false, u64::MAX)
        );
    }

    #[test]
    fn not_kill() {
        assert_eq!(kill(b"SELECT 1"), None);
        assert_eq!(kill(b"SELECT 'KILL 1'"), None);
        assert_eq!(kill(b"/* KILL 1 */ SELECT 1"), None);
        assert_eq!(kill(b"KILLS 1"), None);
        assert_eq!(kill(b"`KILL` 1"), None);
        assert_eq!(kill(b""), None);
    }

    #[test]
    fn unsupported() {
        for sql in [
            &b"KILL"[..],
            b"KILL QUERY",
            b"KILL USER app",
            b"KILL QUERY ID 5",
            b"KILL 0x10",
            b"KILL 1+1",
            b"KILL (5)",
            b"KILL 5; SELECT 1",
            b"KILL 'x",
            b"KILL CONNECTION_ID()",
        ] {
            assert_eq!(kill(sql), Some(Kill::Unsupported), "{:?}", sql);
        }
    }
}
