//! `proxy.audit`: the audit log's settings and their checks.

use serde::Deserialize;

/// Which statements the audit log records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditStatements {
    /// Statements that change data or schema (writes, DDL, multi-statement packets, calls to
    /// stored functions), whichever server ran them.
    #[default]
    Writes,
    /// Every client statement (COM_QUERY).
    All,
}

/// The audit log: JSON lines written off the hot path.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// The file; created if missing, appended to.
    pub path: String,
    #[serde(default)]
    pub statements: AuditStatements,
    /// Record the statement text as sent (with its values) instead of its digest (values as
    /// `?`). Off by default: values may be personal data.
    #[serde(default)]
    pub full_text: bool,
    /// Size at which the file is renamed to `<path>.1` (replacing an older one) and a new one
    /// started.
    #[serde(default = "default_max_size_mb")]
    pub max_size_mb: u64,
    /// Records waiting for the writer; when full, new records are dropped and counted
    /// (`rwsplit_audit_dropped_total`): a session never waits for the audit log.
    #[serde(default = "default_queue")]
    pub queue: usize,
}

fn default_max_size_mb() -> u64 {
    100
}
fn default_queue() -> usize {
    10_000
}

/// Largest queue: each waiting record holds a statement's text.
pub const MAX_AUDIT_QUEUE: usize = 1_000_000;

/// Checks the settings; returns the offending key (under `proxy.audit`) and the message.
pub(super) fn check(a: &AuditConfig) -> Result<(), (&'static str, String)> {
    if a.path.trim().is_empty() {
        return Err(("path", "must name a file".into()));
    }
    if a.max_size_mb == 0 {
        return Err(("max_size_mb", "must be at least 1".into()));
    }
    if a.queue == 0 || a.queue > MAX_AUDIT_QUEUE {
        return Err((
            "queue",
            format!("must be 1 to {MAX_AUDIT_QUEUE}, got {}", a.queue),
        ));
    }
    Ok(())
}
