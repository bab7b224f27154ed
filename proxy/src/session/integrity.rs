//! Keeping a session's promises about connection state: which backend connection its pinned
//! state lives on (the anchor), what happens when that connection is lost or the writer
//! changes under it, and the errors the client gets instead of a silent continuation.
//!
//! A transaction interrupted that way is rolled back by the server (its connection closed), and
//! the session stays in an *aborted* transaction, as PostgreSQL does: every statement gets an
//! error saying so until the client ends it with `ROLLBACK` (answered OK) or `COMMIT` (answered
//! with an error, since nothing was committed), or starts a new one. Running the rest of the
//! transaction in autocommit elsewhere would commit half of it.

use super::conns::ConnRef;
use super::exec::Outcome;
use super::{Error, Session};
use crate::metrics::PIN_DIAGNOSTICS;
use crate::protocol::relay::End;
use router::{Effect, Pins};

/// ERR code and SQLSTATE for a statement inside a transaction that was already rolled back:
/// 40001 is the standard "transaction rolled back" class that drivers map to a retryable
/// exception (JDBC's `SQLTransactionRollbackException`).
const ABORTED: (u16, &str) = (1105, "40001");
/// `ER_ERROR_DURING_COMMIT`: a COMMIT of a transaction that was rolled back.
const COMMIT_FAILED: (u16, &str) = (1180, "HY000");
/// State lost outside a transaction (temporary tables, locks, variables).
const STATE_LOST: (u16, &str) = (1105, "HY000");

impl Session {
    /// After each command that ran on a backend and was reported to the router: the anchor
    /// follows the router's pins, the pinned gauge follows the anchor, and newly started pins
    /// are counted by reason.
    pub(super) fn settle(&mut self) {
        if self.held.iter().any(|h| h.in_step) {
            self.refresh_want();
            for h in self.held.iter_mut() {
                if h.in_step {
                    h.conn.state = self.want.clone();
                    h.in_step = false;
                }
            }
        }
        let pins = self.router.pins();
        // A history too long to replay lives only where it ran: kept like pinned state.
        if pins.any() || self.router.in_replica_transaction() || self.router.history_overflowed() {
            if self.anchor.is_none() {
                self.anchor = self.previous.clone();
            }
        } else {
            self.anchor = None;
        }
        // What a transaction's end does not clean up (see `Held::tainted`).
        let lasting = pins.temp_tables
            || pins.lock_tables
            || pins.named_locks
            || pins.user_variables
            || pins.prepared_text
            || self.router.history_overflowed();
        for i in 0..self.held.len() {
            let pinned = self.is_anchor(&self.held[i]);
            self.set_pinned(i, pinned);
            self.held[i].tainted |= pinned && lasting;
        }
        if pins != self.pins_seen {
            for ((reason, now), (_, before)) in
                pins.reasons().into_iter().zip(self.pins_seen.reasons())
            {
                if now && !before {
                    self.ctx
                        .metrics
                        .session_pins
                        .with_label_values(&[reason])
                        .inc();
                }
            }
            self.pins_seen = pins;
        }
    }

    /// Records what the previous statement left on its connection: `conn` ran it and `end`
    /// is how it ended (`None`: the proxy answered itself). Warnings, an error or
    /// `SQL_CALC_FOUND_ROWS` keep that connection until the next statement, so `SHOW
    /// WARNINGS`, `SHOW ERRORS`, `GET DIAGNOSTICS` and `FOUND_ROWS()` answer as on a direct
    /// connection however long the client pauses. Diagnostics statements leave them as they are.
    pub(super) fn note_diagnostics(
        &mut self,
        conn: ConnRef,
        end: End,
        calc_found_rows: bool,
        diagnostics_statement: bool,
    ) {
        if self.diagnostics_rewritten {
            // A GET DIAGNOSTICS that ran as assignments on the primary connection (see
            // `get_diagnostics.rs`). Without conditions of its own it leaves the session's
            // list where it was, as on a direct connection; the user variables are on `conn`.
            let quiet = matches!(end, End::Ok { warnings: 0, .. });
            let ran_there = self.previous.as_ref().is_some_and(|p| {
                p.thread == conn.thread && p.backend.name() == conn.backend.name()
            });
            // The statement that ran there changed what ROW_COUNT() and FOUND_ROWS() answer.
            self.last_disturbed |= ran_there || !quiet;
            if quiet {
                if self.anchor.is_none() {
                    self.anchor = Some(conn);
                }
                return;
            }
        }
        if diagnostics_statement
            && self
                .previous
                .as_ref()
                .is_some_and(|p| p.thread == conn.thread)
        {
            return;
        }
        let keep = match end {
            End::Ok { warnings, .. } => warnings > 0 || calc_found_rows,
            End::Err { .. } => true,
        };
        if keep && !self.diag_pin {
            self.ctx
                .metrics
                .session_pins
                .with_label_values(&[PIN_DIAGNOSTICS])
                .inc();
        }
        self.diag_pin = keep;
        self.previous = Some(conn);
    }

    /// The connection that held the session's pinned state is gone (`why` says how): the
    /// router forgets that state and the client is told, at once if a statement is running,
    /// else at its next statement. `cause` labels `rwsplit_session_state_lost_total`.
    pub(super) fn lose_pinned_state(&mut self, why: &str, cause: &'static str) {
        let in_transaction = self.router.in_transaction();
        let lost = self.router.on_connection_lost();
        self.anchor = None;
        self.ctx
            .metrics
            .session_state_lost
            .with_label_values(&[cause])
            .inc();
        let what = describe(&lost, in_transaction);
        tracing::warn!(session = self.client.connection_id, user = %self.client.user, "{why}: {what}");
        let msg = format!("rwsplit: {why}: {what}");
        if in_transaction {
            self.aborted = Some(msg);
        } else {
            self.lost_notice = Some(msg);
        }
    }

    /// Before a statement runs (it has been routed, so the router knows its effect): answers it
    /// here when the session's state was lost. Returns `None` to let it run.
    pub(super) async fn gate(&mut self) -> Result<Option<Outcome>, Error> {
        if let Some(msg) = self.lost_notice.take() {
            let (c, st) = STATE_LOST;
            self.send_err(1, c, st, &msg).await?;
            return Ok(Some(Outcome::Failed(c)));
        }
        let Some(msg) = self.aborted.clone() else {
            return Ok(None);
        };
        match self.router.pending_effect() {
            Some(Effect::Rollback) => {
                self.aborted = None;
                self.send_ok(1).await?;
                Ok(Some(Outcome::Done(End::Ok {
                    status: self.status_flags(),
                    last_insert_id: 0,
                    warnings: 0,
                    affected_rows: Some(0),
                })))
            }
            Some(Effect::Begin { .. }) => {
                self.aborted = None;
                Ok(None)
            }
            Some(Effect::Commit) => {
                self.aborted = None;
                let (c, st) = COMMIT_FAILED;
                let msg = format!("{msg}; nothing was committed");
                self.send_err(1, c, st, &msg).await?;
                Ok(Some(Outcome::Failed(c)))
            }
            _ => {
                let (c, st) = ABORTED;
                let msg = format!("{msg}; send ROLLBACK to end the transaction");
                self.send_err(1, c, st, &msg).await?;
                Ok(Some(Outcome::Failed(c)))
            }
        }
    }

    /// The message for a statement that failed because its connection was lost, naming what
    /// the session lost with it (consumed: the client has now been told). A COMMIT or ROLLBACK
    /// that failed this way ended the transaction either way.
    pub(super) fn take_loss_message(&mut self) -> Option<String> {
        if let Some(m) = self.lost_notice.take() {
            return Some(m);
        }
        let ended = matches!(
            self.router.pending_effect(),
            Some(Effect::Commit | Effect::Rollback)
        );
        if ended {
            return self.aborted.take().map(|m| {
                format!("{m}; whether the server committed before the connection broke is unknown")
            });
        }
        self.aborted.clone()
    }
}

/// What a session lost with its connection, in words for the client.
fn describe(lost: &Pins, in_transaction: bool) -> String {
    let others: Vec<&str> = [
        ("temporary tables", lost.temp_tables),
        ("table locks", lost.lock_tables),
        ("named locks", lost.named_locks),
        ("user variables", lost.user_variables),
        ("prepared statements (PREPARE)", lost.prepared_text),
        ("SET TRANSACTION characteristics", lost.next_transaction),
    ]
    .into_iter()
    .filter_map(|(what, set)| set.then_some(what))
    .collect();
    match (in_transaction, others.is_empty()) {
        (true, true) => "the open transaction was rolled back".into(),
        (true, false) => format!(
            "the open transaction was rolled back; also lost: {}",
            others.join(", ")
        ),
        (false, false) => format!("the session's {} are gone", others.join(", ")),
        (false, true) => "the session's state on it is gone".into(),
    }
}
