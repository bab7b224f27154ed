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
    keeps_last_statement, sets_last_insert_id, substitute_last_statement, LastStatement,
};
use router::Reason;

/// What a fresh connection answers (MariaDB 10.11): `ROW_COUNT()` 0 and `FOUND_ROWS()` 1.
pub(super) const FRESH: LastStatement = LastStatement {
    row_count: Some(0),
    found_rows: Some(1),
    warning_count: Some(0),
    error_count: Some(0),
};

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
        self.last_disturbed = ran.disturbed;
    }

    /// After a statement that set `LAST_INSERT_ID()` without inserting (`SELECT
    /// LAST_INSERT_ID(5)`): no OK packet reports the value, so it is asked for on the same
    /// connection, once, and becomes the session's (restored on whichever connection reads it
    /// next, like an insert's id). Returns whether it asked (the connection then answered a
    /// statement of the proxy's own).
    pub(super) async fn learn_insert_id(&mut self, h: usize, reason: Reason, end: End) -> bool {
        if reason != Reason::LastInsertId || matches!(end, End::Err { .. }) {
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

    /// Before a COM_QUERY routed to the previous statement's backend: when that connection
    /// cannot answer for the session, the recorded values go into the text (in `self.cmd`).
    /// Warning and error counts are 0 then: a statement that left any keeps its connection.
    pub(super) fn answer_last_statement(&mut self) {
        let Some(sql) = self.cmd.get(1..) else { return };
        let held = self
            .previous
            .as_ref()
            .is_some_and(|p| self.held.iter().any(|h| p.is(h)));
        // Restoring the session's insert id runs a SELECT on the connection first.
        let exact = held && !self.last_disturbed && !reads_insert_id(sql);
        if exact {
            return;
        }
        let mut last = self.last;
        if held {
            // The server still has the diagnostics (a SELECT without tables keeps them).
            last.warning_count = None;
            last.error_count = None;
        } else {
            last.warning_count = Some(0);
            last.error_count = Some(0);
        }
        let mut out = std::mem::take(&mut self.out);
        out.clear();
        out.push(self.cmd[0]);
        if substitute_last_statement(sql, &last, &mut out) {
            std::mem::swap(&mut self.cmd, &mut out);
        }
        self.out = out;
    }
}
