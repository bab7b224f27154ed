//! The audit log (`proxy.audit`): one JSON line per audited statement — time, session id,
//! user, client address, schema, server, digest (or full text), affected rows, the GTID the
//! statement committed (when the server reported one), duration, error code.
//!
//! Off the hot path: a session hands a [`Record`] (its fields and the statement's digest, which
//! statement statistics computed already, or its bytes with `full_text`) to a bounded queue
//! with `try_send` and goes on; a writer thread serialises, writes and flushes. A full queue drops the record and counts it
//! (`rwsplit_audit_dropped_total`): a session never waits for the disk. The file is rotated by
//! size (renamed to `<path>.1`) and reopened after SIGHUP ([`reopen`]), so logrotate can move
//! it away and signal the proxy.

mod record;
mod writer;

pub use record::{Record, Text};

use crate::context::Context;
use router::config::AuditConfig;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

/// The writer of one context, for the `proxy.audit` it was started with. A reload that changes
/// `proxy.audit` starts a new one; the old one drains its queue and ends when its last sender
/// is gone.
#[derive(Default)]
pub struct Auditor {
    current: Mutex<Option<Handle>>,
    /// Bumped by [`reopen`]; writers reopen their file when they see it change.
    reopen: Arc<AtomicU64>,
}

/// A session's way to the writer: cloned from the [`Auditor`] once per configuration.
#[derive(Clone)]
pub struct Handle {
    config: AuditConfig,
    tx: SyncSender<Record>,
}

impl Auditor {
    /// The handle for `config`, starting a writer if none runs for it.
    fn handle(&self, ctx: &Context, config: &AuditConfig) -> Option<Handle> {
        let mut cur = match self.current.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if let Some(h) = cur.as_ref().filter(|h| h.config == *config) {
            return Some(h.clone());
        }
        let (tx, rx) = std::sync::mpsc::sync_channel(config.queue);
        let w = writer::Writer::new(
            config.clone(),
            self.reopen.clone(),
            ctx.metrics.audit_written.clone(),
        );
        let spawned = std::thread::Builder::new()
            .name("rwsplit-audit".into())
            .spawn(move || w.run(rx));
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the audit writer; statements are not audited");
            return None;
        }
        let h = Handle {
            config: config.clone(),
            tx,
        };
        *cur = Some(h.clone());
        Some(h)
    }
}

/// What a session keeps to audit its statements without a lock per statement.
#[derive(Default)]
pub struct SessionAudit {
    handle: Option<Handle>,
    /// The GTIDs the current statement's OK packets reported (what it committed), until the
    /// statement is audited.
    gtid: Option<String>,
}

impl SessionAudit {
    /// A statement is about to run: nothing committed yet.
    pub fn statement_started(&mut self) {
        self.gtid = None;
    }

    /// The GTIDs the statement's OK packets reported, in order (empty: it committed nothing,
    /// or the server does not report GTIDs).
    pub fn committed(&mut self, gtids: &[String]) {
        self.gtid = match gtids {
            [] => None,
            [one] => Some(one.clone()),
            many => Some(many.join(",")),
        };
    }

    /// What the statement committed; forgotten once taken.
    pub fn take_gtid(&mut self) -> Option<String> {
        self.gtid.take()
    }

    /// Queues `record` under `config` (the session's current `proxy.audit`); never waits.
    pub fn send(&mut self, ctx: &Context, config: &AuditConfig, record: Record) {
        if self.handle.as_ref().is_none_or(|h| h.config != *config) {
            self.handle = ctx.extension(Auditor::default).handle(ctx, config);
        }
        let Some(h) = &self.handle else { return };
        match h.tx.try_send(record) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => ctx.metrics.audit_dropped.inc(),
            Err(TrySendError::Disconnected(_)) => {
                // The writer ended (it cannot open its file): count, and try a new one next time.
                ctx.metrics.audit_dropped.inc();
                self.handle = None;
                if let Ok(mut cur) = ctx.extension(Auditor::default).current.lock() {
                    *cur = None;
                }
            }
        }
    }
}

/// Makes the writers reopen their file (SIGHUP, after logrotate moved it).
pub fn reopen(ctx: &Context) {
    ctx.extension(Auditor::default)
        .reopen
        .fetch_add(1, Ordering::Relaxed);
}

#[cfg(test)]
mod test;
