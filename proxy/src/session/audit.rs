//! The session's side of the audit log (`proxy.audit`): after a client statement, decide
//! whether it is audited (writes, or all statements) and hand a record to the writer's queue.
//! Costs nothing but a configuration read when the audit log is off.

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
    /// Audits the COM_QUERY in `self.cmd` that ended with `out`, routed for `reason`, started
    /// at `started`.
    pub(super) fn audit_statement(&mut self, out: Outcome, reason: Reason, started: Instant) {
        let config = self.ctx.config();
        let Some(audit) = config.proxy.as_ref().and_then(|p| p.audit.as_ref()) else {
            return;
        };
        if audit.statements == AuditStatements::Writes && !is_write(reason) {
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
            text: Text::of(audit, self.cmd.get(1..).unwrap_or(&[]), &mut self.digest),
            affected_rows,
            duration: started.elapsed(),
            error,
        };
        self.audit.send(&self.ctx, audit, record);
    }
}
