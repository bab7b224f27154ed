//! A warning the proxy adds to a statement's answer (write quorum not reached:
//! `routing.quorum_on_timeout: warning`). The backend that ran the statement does not have it,
//! so the diagnostics statement that follows (`SHOW WARNINGS`, `SHOW COUNT(*) WARNINGS`,
//! `SELECT @@warning_count`) is answered by the proxy: the backend's own warnings of that
//! statement (read from it when there were any) and the proxy's. `SHOW WARNINGS` answers it
//! once; any other statement forgets it, as a server's next statement would.

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

/// The diagnostics statements answered for an [`OwnWarning`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Diagnostics {
    /// `SHOW WARNINGS`
    Show,
    /// `SHOW COUNT(*) WARNINGS`, named as the server names its column.
    Count(&'static str),
}

/// Recognises the diagnostics statements (any case and spacing, optional trailing `;`).
fn diagnostics(sql: &[u8]) -> Option<Diagnostics> {
    if sql.len() > 64 {
        return None;
    }
    let text = std::str::from_utf8(sql).ok()?.trim().trim_end_matches(';');
    let words: Vec<String> = text
        .split_whitespace()
        .map(|w| w.to_ascii_lowercase())
        .collect();
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    match words.as_slice() {
        ["show", "warnings"] => Some(Diagnostics::Show),
        ["show", "count(*)", "warnings"] => Some(Diagnostics::Count("@@session.warning_count")),
        ["select", "@@warning_count"] => Some(Diagnostics::Count("@@warning_count")),
        ["select", "@@session.warning_count"] => {
            Some(Diagnostics::Count("@@session.warning_count"))
        }
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
            Diagnostics::Show => {
                let rows: Vec<Vec<Option<&[u8]>>> = rows
                    .iter()
                    .map(|r| r.iter().map(|v| v.as_deref().map(str::as_bytes)).collect())
                    .collect();
                message::text_result(&["Level", "Code", "Message"], &rows, caps, status)
            }
            Diagnostics::Count(name) => {
                let n = rows.len().to_string();
                // Counting does not consume the list: SHOW WARNINGS may follow.
                self.own_warning = Some(w);
                message::one_value_result(name, n.as_bytes(), caps, status)
            }
        };
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
        assert_eq!(diagnostics(b"SHOW WARNINGS"), Some(Diagnostics::Show));
        assert_eq!(
            diagnostics(b"  show   warnings ; "),
            Some(Diagnostics::Show)
        );
        assert_eq!(
            diagnostics(b"SHOW COUNT(*) WARNINGS"),
            Some(Diagnostics::Count("@@session.warning_count"))
        );
        assert_eq!(
            diagnostics(b"select @@warning_count"),
            Some(Diagnostics::Count("@@warning_count"))
        );
        assert_eq!(diagnostics(b"SHOW WARNINGS LIMIT 1"), None);
        assert_eq!(diagnostics(b"SHOW ERRORS"), None);
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
