//! A warning the proxy adds to a statement's answer (write quorum not reached:
//! `routing.quorum_on_timeout: warning`). The backend that ran the statement does not have it,
//! so the diagnostics statement that follows (`SHOW WARNINGS`, `SHOW COUNT(*) WARNINGS`,
//! `SELECT @@warning_count`) is answered by the proxy: the backend's own warnings of that
//! statement (read from it when there were any) and the proxy's, sliced by a `LIMIT` as a
//! server slices its list. Diagnostics statements (these, `SHOW ERRORS`, `@@error_count`) leave
//! it for the next one, as on a server; any other statement forgets it.

use super::Session;
use crate::protocol::message;
use crate::protocol::packet::write_packet;
use tokio::io::AsyncWriteExt;

/// The proxy's warning on the previous statement, and the backend's own warnings of it.
#[derive(Debug, Clone)]
pub struct OwnWarning {
    code: u16,
    message: String,
    /// `(Level, Code, Message)` rows the backend reported for the same statement.
    backend: Vec<Vec<Option<String>>>,
}

impl OwnWarning {
    pub fn new(code: u16, message: String) -> OwnWarning {
        OwnWarning {
            code,
            message,
            backend: Vec::new(),
        }
    }

    /// Every row `SHOW WARNINGS` shows: the backend's, then the proxy's.
    fn rows(&self) -> Vec<Vec<Option<String>>> {
        let mut rows = self.backend.clone();
        rows.push(vec![
            Some("Warning".to_string()),
            Some(self.code.to_string()),
            Some(self.message.clone()),
        ]);
        rows
    }
}

/// The diagnostics statements that read the list an [`OwnWarning`] belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Diagnostics {
    /// `SHOW WARNINGS [LIMIT [offset,] count]` (or `LIMIT count OFFSET offset`): the rows from
    /// `offset`, at most `count` of them, as a server slices its own list.
    Show { offset: u64, count: Option<u64> },
    /// `SHOW COUNT(*) WARNINGS`, named as the server names its column.
    Count(&'static str),
    /// `SHOW ERRORS [LIMIT ...]`, `SHOW COUNT(*) ERRORS`, `SELECT @@error_count`: the proxy's
    /// warning is no error, so the server answers; like any diagnostics statement, they leave
    /// the list (the proxy's warning with it) for a `SHOW WARNINGS` after them.
    Errors,
}

/// Recognises the diagnostics statements (any case and spacing, optional trailing `;`).
fn diagnostics(sql: &[u8]) -> Option<Diagnostics> {
    if sql.len() > 96 {
        return None;
    }
    let text = std::str::from_utf8(sql).ok()?.trim().trim_end_matches(';');
    let words = words(text);
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    match words.as_slice() {
        ["show", "warnings", limit @ ..] => {
            let (offset, count) = limit_clause(limit)?;
            Some(Diagnostics::Show { offset, count })
        }
        ["show", "errors", limit @ ..] => limit_clause(limit).map(|_| Diagnostics::Errors),
        ["show", "count", "(", "*", ")", "warnings"] => {
            Some(Diagnostics::Count("@@session.warning_count"))
        }
        ["show", "count", "(", "*", ")", "errors"] => Some(Diagnostics::Errors),
        ["select", "@@warning_count"] => Some(Diagnostics::Count("@@warning_count")),
        ["select", "@@session.warning_count"] => {
            Some(Diagnostics::Count("@@session.warning_count"))
        }
        ["select", "@@error_count" | "@@session.error_count"] => Some(Diagnostics::Errors),
        _ => None,
    }
}

/// Lower-cased words (letters, digits, `_`, `@`, `.`) and single punctuation characters.
fn words(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut word = String::new();
    for c in text.chars() {
        if c.is_ascii_alphanumeric() || matches!(c, '_' | '@' | '.') {
            word.push(c.to_ascii_lowercase());
            continue;
        }
        if !word.is_empty() {
            out.push(std::mem::take(&mut word));
        }
        if !c.is_whitespace() {
            out.push(c.to_string());
        }
    }
    if !word.is_empty() {
        out.push(word);
    }
    out
}

/// `[LIMIT [offset,] count]` or `[LIMIT count OFFSET offset]`: the offset and the count (none
/// without LIMIT). `None`: not a limit clause a server accepts here.
fn limit_clause(words: &[&str]) -> Option<(u64, Option<u64>)> {
    let n = |w: &str| w.parse::<u64>().ok();
    match words {
        [] => Some((0, None)),
        ["limit", count] => Some((0, Some(n(count)?))),
        ["limit", offset, ",", count] => Some((n(offset)?, Some(n(count)?))),
        ["limit", count, "offset", offset] => Some((n(offset)?, Some(n(count)?))),
        _ => None,
    }
}

impl Session {
    /// Reads the backend's own warnings of the statement that ran on held connection `h`, when
    /// it reported any: the proxy answers `SHOW WARNINGS` for both (see the module comment).
    pub(super) async fn keep_backend_warnings(&mut self, h: usize, backend_count: u16) {
        if backend_count == 0 {
            return;
        }
        let (Some(w), Some(held)) = (self.own_warning.as_mut(), self.held.get_mut(h)) else {
            return;
        };
        match held.conn.query_rows(b"SHOW WARNINGS").await {
            Ok(rows) => w.backend = rows,
            Err(e) => {
                tracing::debug!(error = %e, "cannot read the backend's warnings to show them with the proxy's");
            }
        }
    }

    /// Answers the statement when it asks for the previous statement's warnings and the proxy
    /// added one; forgets that warning otherwise. True when answered.
    pub(super) async fn answer_own_warnings(&mut self) -> Result<bool, super::Error> {
        let Some(w) = self.own_warning.take() else {
            return Ok(false);
        };
        let Some(kind) = self.cmd.get(1..).and_then(diagnostics) else {
            return Ok(false);
        };
        let status = self.status_flags();
        let caps = self.client.caps;
        let rows = w.rows();
        let packets = match kind {
            Diagnostics::Show { offset, count } => {
                let rows: Vec<Vec<Option<&[u8]>>> = rows
                    .iter()
                    .skip(usize::try_from(offset).unwrap_or(usize::MAX))
                    .take(count.map_or(usize::MAX, |c| usize::try_from(c).unwrap_or(usize::MAX)))
                    .map(|r| r.iter().map(|v| v.as_deref().map(str::as_bytes)).collect())
                    .collect();
                message::text_result(&["Level", "Code", "Message"], &rows, caps, status)
            }
            Diagnostics::Count(name) => {
                let n = rows.len().to_string();
                message::one_value_result(name, n.as_bytes(), caps, status)
            }
            Diagnostics::Errors => {
                // The server answers; the list stays for a SHOW WARNINGS after it.
                self.own_warning = Some(w);
                return Ok(false);
            }
        };
        // Diagnostics statements leave the list as it was: the next may ask again.
        self.own_warning = Some(w);
        for (seq, p) in packets.iter().enumerate() {
            write_packet(&mut self.stream, (seq + 1) as u8, p).await?;
        }
        self.stream.flush().await?;
        Ok(true)
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn diagnostics_statements_are_recognised_exactly() {
        let all = Diagnostics::Show {
            offset: 0,
            count: None,
        };
        assert_eq!(diagnostics(b"SHOW WARNINGS"), Some(all));
        assert_eq!(diagnostics(b"  show   warnings ; "), Some(all));
        assert_eq!(
            diagnostics(b"SHOW WARNINGS LIMIT 1"),
            Some(Diagnostics::Show {
                offset: 0,
                count: Some(1)
            })
        );
        let second = Some(Diagnostics::Show {
            offset: 1,
            count: Some(1),
        });
        assert_eq!(diagnostics(b"show warnings limit 1,1"), second);
        assert_eq!(diagnostics(b"SHOW WARNINGS LIMIT 1 OFFSET 1"), second);
        assert_eq!(diagnostics(b"SHOW WARNINGS LIMIT x"), None);
        assert_eq!(diagnostics(b"SHOW WARNINGS LIMIT 1,"), None);
        assert_eq!(diagnostics(b"SHOW ERRORS"), Some(Diagnostics::Errors));
        assert_eq!(
            diagnostics(b"show count( * ) errors"),
            Some(Diagnostics::Errors)
        );
        assert_eq!(
            diagnostics(b"SELECT @@session.error_count"),
            Some(Diagnostics::Errors)
        );
        assert_eq!(
            diagnostics(b"SHOW COUNT(*) WARNINGS"),
            Some(Diagnostics::Count("@@session.warning_count"))
        );
        assert_eq!(
            diagnostics(b"select @@warning_count"),
            Some(Diagnostics::Count("@@warning_count"))
        );
        assert_eq!(diagnostics(b"SELECT 'SHOW WARNINGS'"), None);
    }

    #[test]
    fn the_proxys_warning_follows_the_backends() {
        let mut w = OwnWarning::new(1105, "committed on the primary".into());
        w.backend = vec![vec![
            Some("Note".into()),
            Some("1265".into()),
            Some("Data truncated".into()),
        ]];
        let rows = w.rows();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1][1].as_deref(), Some("1105"));
        assert_eq!(rows[0][2].as_deref(), Some("Data truncated"));
    }
}
