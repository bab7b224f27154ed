//! The session's side of the audit log (`proxy.audit`): after a client statement (COM_QUERY or
//! COM_STMT_EXECUTE), decide whether it is audited (writes and commits, or all statements) and
//! hand a record to the writer's queue. Costs nothing but a configuration read when the audit
//! log is off.

use super::exec::Outcome;
use super::Session;
use crate::audit::{Record, Text};
use crate::protocol::relay::End;
use router::config::AuditStatements;
use router::Reason;
use std::time::{Instant, SystemTime};

/// Statements the `writes` setting audits: what changes data or schema, or may (a packet of
/// several statements, a stored function).
fn is_write(reason: Reason) -> bool {
    matches!(
        reason,
        Reason::Write
            | Reason::Ddl
            | Reason::SelectInto
            | Reason::MultiStatement
            | Reason::StoredFunction
    )
}

impl Session {
    /// Audits the client statement `text` (a COM_QUERY's text, or a prepared statement's text
    /// for COM_STMT_EXECUTE) that ended with `out`, routed for `reason`, started at `started`.
    /// A statement that committed (its OK reported a GTID: an autocommit write, a COMMIT, an
    /// implicit commit) is audited under `writes` too, carrying that GTID.
    pub(super) fn audit_statement(
        &mut self,
        out: Outcome,
        reason: Reason,
        started: Instant,
        text: &[u8],
    ) {
        let gtid = self.audit.take_gtid();
        let config = self.ctx.config();
        let Some(audit) = config.proxy.as_ref().and_then(|p| p.audit.as_ref()) else {
            return;
        };
        if audit.statements == AuditStatements::Writes && !is_write(reason) && gtid.is_none() {
            return;
        }
        let (server, affected_rows, error) = match out {
            Outcome::Done(End::Ok { affected_rows, .. }) => (true, affected_rows, None),
            Outcome::Done(End::Err { code }) => (true, None, Some(code)),
            Outcome::Failed(code) => (false, None, Some(code)),
        };
        let record = Record {
            time: SystemTime::now(),
            session: self.client.connection_id,
            user: self.client.user.clone(),
            client: self.client.host.clone(),
            schema: self.current_schema(),
            server: server
                .then(|| self.previous.as_ref().map(|p| p.backend.name().to_string()))
                .flatten(),
            text: Text::of(audit, text, &mut self.digest),
            affected_rows,
            gtid,
            duration: started.elapsed(),
            error,
        };
        self.audit.send(&self.ctx, audit, record);
    }
}
