//! What a session's previous statement left for `ROW_COUNT()`, `FOUND_ROWS()`,
//! `@@warning_count` and `@@error_count`: recorded from each answer, and written into a
//! statement that asks when the server could not answer for this session (its connection went
//! back to the pool, or the proxy ran a statement of its own there since). See
//! `router::classify::last_statement` for why this, rather than keeping connections.

use super::conns::reads_insert_id;
use super::Session;
use crate::protocol::consts::com;
use crate::protocol::relay::End;
use router::classify::{
    execute_immediate, keeps_last_statement, sets_last_insert_id, substitute_last_statement,
    LastStatement,
};
use router::Reason;
use std::sync::Arc;

/// What a fresh connection answers (MariaDB 10.11): `ROW_COUNT()` 0 and `FOUND_ROWS()` 1.
pub(super) const FRESH: LastStatement = LastStatement {
    row_count: Some(0),
    found_rows: Some(1),
    warning_count: Some(0),
    error_count: Some(0),
};

/// A COM_STMT_EXECUTE that runs a text of the proxy's own: its statement's text with the
/// recorded values written in (see [`Session::answer_last_statement`]).
pub(super) struct Substituted {
    /// The text prepared and run instead of the statement's.
    pub text: Arc<[u8]>,
    /// Where it was prepared (connection, server's statement id): closed after the execution,
    /// since its text, holding values, is of no use to anyone later.
    pub prepared: Option<(super::conns::ConnRef, u32)>,
}

/// How a statement that ran on a backend ended, as far as these values go.
#[derive(Debug, Clone, Copy)]
pub(super) struct Ran {
    pub end: End,
    /// Rows relayed, and result sets among them.
    pub rows: u64,
    pub results: u32,
    /// A `SELECT SQL_CALC_FOUND_ROWS`: `FOUND_ROWS()` is the server's count.
    pub calc_found_rows: bool,
    /// The proxy ran a statement of its own on the connection after this one.
    pub disturbed: bool,
}

impl Session {
    /// Records what the statement that just ran (a COM_QUERY or COM_STMT_EXECUTE in
    /// `self.cmd`) left, per the server's rules (measured on MariaDB 10.11): a result set
    /// sets `ROW_COUNT()` to -1 and `FOUND_ROWS()` to its rows, an OK packet sets
    /// `ROW_COUNT()` to its affected rows, an error sets it to -1; `SHOW WARNINGS/ERRORS` and
    /// `GET DIAGNOSTICS` leave some of them (see `router::classify::Keeps`).
    pub(super) fn record_last_statement(&mut self, ran: Ran) {
        let keeps = match self.cmd.first() {
            // `self.cmd` holds the text that ran in its place: what GET DIAGNOSTICS keeps.
            Some(&com::QUERY) if self.diagnostics_rewritten => keeps_last_statement(b"GET"),
            Some(&com::QUERY) => keeps_last_statement(self.cmd.get(1..).unwrap_or_default()),
            Some(&com::STMT_EXECUTE) => Default::default(),
            // COM_INIT_DB, COM_STATISTICS, COM_FIELD_LIST: not statements.
            _ => return,
        };
        let last = &mut self.last;
        let (row_count, found_rows) = match ran.end {
            End::Ok {
                affected_rows: Some(n),
                ..
            } => {
                // An OK after result sets (a CALL): the procedure's own statements set
                // FOUND_ROWS() in ways the proxy cannot see.
                let found = if ran.results > 0 {
                    None
                } else {
                    last.found_rows
                };
                (Some(i64::try_from(n).unwrap_or(i64::MAX)), found)
            }
            End::Ok {
                affected_rows: None,
                ..
            } if ran.results == 0 => (Some(-1), last.found_rows),
            End::Ok {
                affected_rows: None,
                ..
            } => {
                let found = if ran.calc_found_rows || ran.results != 1 {
                    // The server's count, or the last of several results (rows are counted
                    // for all of them together).
                    None
                } else {
                    Some(ran.rows)
                };
                (Some(-1), found)
            }
            End::Err { .. } => (Some(-1), last.found_rows),
        };
        if !keeps.row_count {
            last.row_count = row_count;
        }
        if !keeps.found_rows {
            last.found_rows = found_rows;
        }
        if !self.diagnostics_rewritten {
            // Otherwise `note_diagnostics` decides, knowing which connection stays previous.
            self.last_disturbed = ran.disturbed;
        }
    }

    /// After a statement that set `LAST_INSERT_ID()` without inserting (`SELECT
    /// LAST_INSERT_ID(5)`): no OK packet reports the value, so it is asked for on the same
    /// connection, once, and becomes the session's (restored on whichever connection reads it
    /// next, like an insert's id). Returns whether it asked (the connection then answered a
    /// statement of the proxy's own).
    pub(super) async fn learn_insert_id(&mut self, h: usize, reason: Reason, end: End) -> bool {
        // A multi-statement may hold such a statement; any other reason is no such statement.
        let may_set = matches!(reason, Reason::LastInsertId | Reason::MultiStatement);
        if !may_set || matches!(end, End::Err { .. }) {
            return false;
        }
        let sets = match self.cmd.split_first() {
            Some((&com::QUERY, sql)) => sets_last_insert_id(sql),
            _ => false,
        };
        let Some(held) = self.held.get_mut(h).filter(|_| sets) else {
            return false;
        };
        match held.conn.query_value(b"SELECT LAST_INSERT_ID()").await {
            Ok(Some(v)) => match v.parse::<u64>() {
                Ok(id) => {
                    held.conn.last_insert_id = Some(id);
                    self.last_insert_id = id;
                }
                Err(_) => held.conn.last_insert_id = None,
            },
            Ok(None) => held.conn.last_insert_id = None,
            Err(e) => {
                held.conn.last_insert_id = None;
                tracing::debug!(backend = held.backend.name(), error = %e, "cannot read the insert id a statement set");
            }
        }
        true
    }

    /// Whether the session still holds the connection that ran its previous statement. Asked
    /// before a connection is taken for the current one: once given back, that connection may
    /// come back from the pool with another session's statement run on it in between.
    pub(super) fn previous_kept(&self) -> bool {
        self.previous
            .as_ref()
            .is_some_and(|p| self.held.iter().any(|c| p.is(c)))
    }

    /// The values to write into a statement that asks about the previous one and is about to
    /// run on held connection `h`, or `None` when `h` is the connection that ran the previous
    /// statement, kept since (`kept`, from [`Session::previous_kept`] before `h` was taken)
    /// and undisturbed, and so answers exactly. Decided only once the connection is known: the
    /// one routed to may have been replaced (found closed after an outage) by a pooled one,
    /// whose server would answer for whichever session used it last.
    fn last_statement_values(&self, kept: bool, h: usize, text: &[u8]) -> Option<LastStatement> {
        let runs_there = kept
            && match (&self.previous, self.held.get(h)) {
                (Some(p), Some(conn)) => p.is(conn),
                _ => false,
            };
        // Restoring the session's insert id runs a SELECT on the connection first.
        if runs_there && !self.last_disturbed && !reads_insert_id(text) {
            return None;
        }
        let mut last = self.last;
        // Warning and error counts are 0 when the previous statement's connection went back
        // to the pool (a statement that left any keeps it), else unknown: that server still
        // has the diagnostics (a SELECT without tables keeps them).
        let counts = (!kept).then_some(0);
        last.warning_count = counts;
        last.error_count = counts;
        Some(last)
    }

    /// Just before the current statement, asking about the previous one, is sent on held
    /// connection `h` (`kept`: see [`Session::last_statement_values`]): when `h` cannot answer
    /// for the session, the recorded values go into a COM_QUERY's text (in `self.cmd`), or into
    /// the text a COM_STMT_EXECUTE of statement `stmt` runs instead (`self.substituted`,
    /// prepared by `ready_execute`).
    pub(super) fn answer_last_statement(&mut self, kept: bool, h: usize, stmt: Option<u32>) {
        let Some(id) = stmt else {
            let Some(sql) = self.cmd.get(1..) else { return };
            if let Some(last) = self.last_statement_values(kept, h, sql) {
                self.write_last_statement(&last);
            }
            return;
        };
        let Some(sql) = self.stmts.get(&id).map(|st| st.sql_arc()) else {
            return;
        };
        self.substituted = self
            .last_statement_values(kept, h, &sql)
            .and_then(|last| {
                let mut out = Vec::with_capacity(sql.len() + 32);
                substitute_last_statement(&sql, &last, &mut out).then(|| Arc::from(out))
            })
            .map(|text| Substituted {
                text,
                prepared: None,
            });
    }

    /// Writes `last` into the COM_QUERY in `self.cmd` where it asks about the previous
    /// statement.
    fn write_last_statement(&mut self, last: &LastStatement) {
        let Some(sql) = self.cmd.get(1..) else { return };
        let mut out = std::mem::take(&mut self.out);
        out.clear();
        out.push(self.cmd[0]);
        let replaced = substitute_last_statement(sql, last, &mut out)
            || match self.router.executes_asking(sql) {
                // `EXECUTE s` of a text that asks: that text runs, with the values written in
                // (`EXECUTE IMMEDIATE`, MariaDB only; elsewhere the server answers).
                Some((text, rest)) if self.primary_is_mariadb() => {
                    execute_immediate(&text, rest, last, &mut out)
                }
                _ => false,
            };
        if replaced {
            std::mem::swap(&mut self.cmd, &mut out);
        }
        self.out = out;
    }

    /// The writer is a MariaDB server (as the monitor last read its version).
    fn primary_is_mariadb(&self) -> bool {
        self.ctx
            .primary()
            .ok()
            .and_then(|b| b.version())
            .is_some_and(|v| v.contains("MariaDB"))
    }
}
