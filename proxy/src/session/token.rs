//! The consistency token as a session variable (issue 10, "Tokens"):
//! `SET @rwsplit_after_gtid = '0-1-42'` makes every following read of the session demand that
//! GTID set, as `/* rwsplit:after_gtid=0-1-42 */` does for one statement, until it is replaced
//! or cleared (`SET @rwsplit_after_gtid = NULL` or `''`, `COM_RESET_CONNECTION`,
//! `COM_CHANGE_USER`).
//!
//! Why a user variable: it is what an application can set through any pooler or ORM (a plain
//! `SET`), and the same code still works on a direct connection, where it is an ordinary user
//! variable. Why the proxy keeps it: a user variable is session state that pins a session to
//! one backend connection (or is replayed on each), which would undo multiplexing for every
//! session that carries a token; and it is the proxy, not a server, that routes on it. So the
//! proxy answers the `SET` itself (it never reaches a backend) and answers
//! `SELECT @rwsplit_after_gtid` from what it keeps. Any other statement that mentions the
//! variable would see the servers' NULL, so it gets a clear error instead.

use super::Session;
use crate::protocol::consts::code;
use crate::protocol::message;
use crate::protocol::packet::write_packet;
use router::consistency::Position;
use tokio::io::AsyncWriteExt;

/// The variable's name, lower case (user variable names are case-insensitive).
const NAME: &[u8] = b"@rwsplit_after_gtid";

/// What a statement does with the token variable.
#[derive(Debug, PartialEq, Eq)]
enum Use<'a> {
    /// `SET @rwsplit_after_gtid = '…'`: the text, `None` for `NULL` (an empty string clears too).
    Set(Option<&'a str>),
    /// `SELECT @rwsplit_after_gtid`, with the column name as the client wrote it.
    Select(&'a str),
    /// Mentions the variable any other way (in an expression, with other assignments).
    Other,
}

/// How `sql` uses the token variable; `None` when it does not mention it. Only statements
/// with an `@` are looked at closely.
fn token_use(sql: &[u8]) -> Option<Use<'_>> {
    if !sql.contains(&b'@') || !mentions(sql) {
        return None;
    }
    let Ok(text) = std::str::from_utf8(sql) else {
        return Some(Use::Other);
    };
    let text = text.trim().trim_end_matches(';').trim_end();
    Some(
        parse_set(text)
            .or_else(|| parse_select(text))
            .unwrap_or(Use::Other),
    )
}

/// The name appears as a whole word (not the start of a longer name).
fn mentions(sql: &[u8]) -> bool {
    sql.windows(NAME.len()).enumerate().any(|(i, w)| {
        w.eq_ignore_ascii_case(NAME)
            && !sql
                .get(i + NAME.len())
                .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b'$')
    })
}

/// Strips a case-insensitive keyword and the whitespace after it.
fn keyword<'a>(text: &'a str, word: &str) -> Option<&'a str> {
    let head = text.get(..word.len())?;
    let rest = &text[word.len()..];
    (head.eq_ignore_ascii_case(word) && rest.starts_with(char::is_whitespace))
        .then(|| rest.trim_start())
}

/// Strips the variable's name (not a longer one).
fn name(text: &str) -> Option<&str> {
    let head = text.get(..NAME.len())?;
    let rest = &text[NAME.len()..];
    let ends = !rest.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_' || c == '$');
    (head.as_bytes().eq_ignore_ascii_case(NAME) && ends).then_some(rest)
}

fn parse_set(text: &str) -> Option<Use<'_>> {
    let rest = name(keyword(text, "set")?)?.trim_start();
    let rest = rest
        .strip_prefix(":=")
        .or_else(|| rest.strip_prefix('='))?
        .trim();
    if rest.eq_ignore_ascii_case("null") {
        return Some(Use::Set(None));
    }
    let quote = rest.chars().next().filter(|c| *c == '\'' || *c == '"')?;
    let inner = rest.strip_prefix(quote)?.strip_suffix(quote)?;
    // A GTID set never holds a quote or a backslash: anything else is not one value.
    if inner.contains(['\'', '"', '\\']) {
        return None;
    }
    Some(Use::Set(Some(inner)))
}

fn parse_select(text: &str) -> Option<Use<'_>> {
    let rest = keyword(text, "select")?;
    name(rest)
        .filter(|r| r.is_empty())
        .map(|_| Use::Select(rest))
}

impl Session {
    /// The position a read demands by token: the statement's hint and the session's variable.
    pub(super) fn session_token(&self, hinted: Option<Position>) -> Option<Position> {
        match (hinted, &self.cons.token) {
            (Some(mut h), Some((_, t))) => {
                h.merge(t);
                Some(h)
            }
            (h, t) => h.or_else(|| t.as_ref().map(|(_, p)| p.clone())),
        }
    }

    /// Forgets the session's token (the session was reset).
    pub(super) fn forget_token(&mut self) {
        self.cons.token = None;
    }

    /// Answers a statement that sets or reads `@rwsplit_after_gtid` (see the module comment).
    /// True when answered.
    pub(super) async fn answer_token(&mut self) -> Result<bool, super::Error> {
        let Some(sql) = self.cmd.get(1..) else {
            return Ok(false);
        };
        let Some(u) = token_use(sql) else {
            return Ok(false);
        };
        let status = self.status_flags();
        match u {
            Use::Set(value) => {
                let value = value.map(str::trim).filter(|v| !v.is_empty());
                let token = match value.map(|v| (v, Position::parse(v))) {
                    None => None,
                    Some((v, Ok(p))) => Some((v.to_string(), p)),
                    Some((_, Err(e))) => {
                        let (c, st) = code::ER_WRONG_VALUE_FOR_VAR;
                        let msg = format!(
                            "rwsplit: @rwsplit_after_gtid must be a GTID or GTID set (as SELECT @@last_gtid answers it), or NULL: {e}"
                        );
                        self.send_err(1, c, st, &msg).await?;
                        return Ok(true);
                    }
                };
                self.cons.token = token;
                self.send_ok(1).await?;
            }
            Use::Select(column) => {
                let column = column.to_string();
                let value = self.cons.token.as_ref().map(|(t, _)| t.clone());
                let packets = message::text_result(
                    &[column.as_str()],
                    &[vec![value.as_deref().map(str::as_bytes)]],
                    self.client.caps,
                    status,
                );
                for (seq, p) in packets.iter().enumerate() {
                    write_packet(&mut self.stream, (seq + 1) as u8, p).await?;
                }
                self.stream.flush().await?;
            }
            Use::Other => {
                let (c, st) = code::ER_UNKNOWN_ERROR;
                self.send_err(
                    1,
                    c,
                    st,
                    "rwsplit: @rwsplit_after_gtid is kept by the proxy, not the server: set it alone (SET @rwsplit_after_gtid = '<gtid set>') and read it alone (SELECT @rwsplit_after_gtid)",
                )
                .await?;
            }
        }
        Ok(true)
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn sets_are_recognised() {
        assert_eq!(
            token_use(b"SET @rwsplit_after_gtid = '0-1-42'"),
            Some(Use::Set(Some("0-1-42")))
        );
        assert_eq!(
            token_use(b"  set  @RWSPLIT_AFTER_GTID:=\"0-1-4,1-1-2\" ; "),
            Some(Use::Set(Some("0-1-4,1-1-2")))
        );
        assert_eq!(
            token_use(b"SET @rwsplit_after_gtid = NULL"),
            Some(Use::Set(None))
        );
        assert_eq!(
            token_use(b"SET @rwsplit_after_gtid = ''"),
            Some(Use::Set(Some("")))
        );
    }

    #[test]
    fn selects_are_recognised() {
        assert_eq!(
            token_use(b"SELECT @rwsplit_after_gtid"),
            Some(Use::Select("@rwsplit_after_gtid"))
        );
        assert_eq!(
            token_use(b"select @RWSPLIT_after_gtid;"),
            Some(Use::Select("@RWSPLIT_after_gtid"))
        );
    }

    #[test]
    fn any_other_mention_is_refused_and_others_pass() {
        for sql in [
            &b"SET @rwsplit_after_gtid = '0-1-1', @a = 1"[..],
            b"SELECT @rwsplit_after_gtid, 1",
            b"SELECT CONCAT(@rwsplit_after_gtid)",
            b"SET @rwsplit_after_gtid = @@last_gtid",
            b"SET @rwsplit_after_gtid = '0-1-1' + '1'",
        ] {
            assert_eq!(
                token_use(sql),
                Some(Use::Other),
                "{}",
                String::from_utf8_lossy(sql)
            );
        }
        assert_eq!(token_use(b"SELECT 1"), None);
        assert_eq!(token_use(b"SET @a = 1"), None);
        assert_eq!(token_use(b"SELECT @rwsplit_after_gtidx"), None);
        assert_eq!(token_use(b"SET @rwsplit_after_gtid_old = 1"), None);
    }
}
