//! The session's two hooks for the admin API: [`Session::track_begin`] when a client
//! statement (COM_QUERY, COM_STMT_EXECUTE) starts and [`Session::track_end`] when it ends.
//! They publish what the session runs and holds in its registry entry (`GET /admin/sessions`)
//! and count the statement under its digest (`GET /admin/top`). Buffers are reused, so a
//! statement costs its digest (one pass of the lexer, shared with query rules and the audit
//! log through the session's `StatementDigest`), two uncontended locks and a copy of at most
//! [`registry::MAX_TEXT`] bytes.

use super::exec::Outcome;
use super::registry::{self, HeldInfo};
use super::top::{Sample, Top};
use super::Session;
use crate::protocol::relay::End;
use std::sync::Arc;
use std::time::Instant;

/// The statement being tracked.
pub(super) struct Track {
    top: Arc<Top>,
    started: Instant,
    /// The server the statement ran on last (set by `statement_started`).
    pub server: Option<usize>,
    /// Rows sent to the client (added by `statement_ended`).
    pub rows: u64,
    /// The history generation the published schema was taken from.
    schema_generation: u64,
    /// A statement began and has not ended.
    open: bool,
}

impl Track {
    pub fn new(ctx: &crate::context::Context) -> Track {
        Track {
            top: Top::of(ctx),
            started: Instant::now(),
            server: None,
            rows: 0,
            schema_generation: u64::MAX,
            open: false,
        }
    }
}

impl Session {
    /// A client statement with text `sql` starts. Its digest is computed here (or was, by a
    /// query rule), so the statement is counted under the text it had when it arrived.
    pub(super) fn track_begin(&mut self, sql: &[u8]) {
        self.digest.get(sql);
        self.begin_activity(sql);
    }

    /// [`Session::track_begin`] for an execution of a prepared statement with text `sql`:
    /// repeated executions of one statement reuse its digest rather than lex it each time.
    pub(super) fn track_begin_prepared(&mut self, sql: &Arc<[u8]>) {
        self.digest.get_shared(sql);
        self.begin_activity(sql);
    }

    fn begin_activity(&mut self, sql: &[u8]) {
        let t = &mut self.track;
        t.open = true;
        t.started = Instant::now();
        t.server = None;
        t.rows = 0;
        let mut a = self.registration.entry.activity();
        a.text.clear();
        let cut = &sql[..sql.len().min(registry::MAX_TEXT)];
        a.text.push_str(&String::from_utf8_lossy(cut));
        a.started = Some(t.started);
        a.statements += 1;
    }

    /// The statement begun by [`Session::track_begin`] ended with `out`.
    pub(super) fn track_end(&mut self, out: Outcome) {
        self.track.open = false;
        let elapsed = self.track.started.elapsed();
        let on_replica = self
            .track
            .server
            .is_some_and(|s| self.ctx.topology().primary() != Some(s));
        let error = matches!(out, Outcome::Failed(_) | Outcome::Done(End::Err { .. }));
        // Computed by `track_begin`; the command (and so the cache) cannot change in between.
        if let Some((hash, text)) = self.digest.computed() {
            self.track.top.record(
                hash,
                text,
                &Sample {
                    elapsed,
                    error,
                    rows: self.track.rows,
                    on_replica,
                },
            );
        }
        self.publish_held(true);
    }

    /// The session ends: a statement that did not finish (killed, client gone, backend lost
    /// with the session) still counts, as an error.
    pub(super) fn track_abandoned(&mut self) {
        if self.track.open {
            self.track_end(Outcome::Failed(0));
        }
    }

    /// Publishes the connections the session holds and why (after a statement, and after
    /// idle connections went back to their pools).
    pub(super) fn publish_held(&mut self, statement_ended: bool) {
        let pins = self.router.pins();
        let generation = self.router.history_generation();
        let schema = (generation != self.track.schema_generation).then(|| self.current_schema());
        self.track.schema_generation = generation;
        let mut a = self.registration.entry.activity();
        if statement_ended {
            a.text.clear();
            a.started = None;
            a.idle_since = Some(Instant::now());
        }
        if let Some(schema) = schema {
            a.schema = schema;
        }
        let in_transaction = self.router.in_transaction();
        a.in_transaction = in_transaction;
        a.held.clear();
        for h in &self.held {
            let anchor = self.anchor.as_ref().is_some_and(|r| r.is(h));
            a.held.push(HeldInfo {
                backend: h.backend.clone(),
                thread: h.conn.connection_id,
                pins: anchor.then_some(pins),
                transaction: anchor && in_transaction,
                cursor: h.cursor_open,
                diagnostics: self.diag_pin && self.previous.as_ref().is_some_and(|p| p.is(h)),
            });
        }
    }
}
