//! The audit writer thread: takes records off the queue, writes them as JSON lines, flushes
//! when the queue is empty, rotates by size and reopens its file when asked (SIGHUP).

use super::Record;
use router::config::AuditConfig;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::Duration;

/// How often an idle writer looks for a reopen request.
const IDLE_CHECK: Duration = Duration::from_millis(500);

pub(super) struct Writer {
    config: AuditConfig,
    path: PathBuf,
    reopen: Arc<AtomicU64>,
    written: prometheus::IntCounter,
}

struct Open {
    file: BufWriter<File>,
    size: u64,
    generation: u64,
}

impl Writer {
    pub(super) fn new(
        config: AuditConfig,
        reopen: Arc<AtomicU64>,
        written: prometheus::IntCounter,
    ) -> Writer {
        Writer {
            path: PathBuf::from(&config.path),
            config,
            reopen,
            written,
        }
    }

    fn open(&self) -> Option<Open> {
        let generation = self.reopen.load(Ordering::Relaxed);
        match OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
        {
            Ok(f) => {
                let size = f.metadata().map(|m| m.len()).unwrap_or(0);
                Some(Open {
                    file: BufWriter::with_capacity(64 * 1024, f),
                    size,
                    generation,
                })
            }
            Err(e) => {
                tracing::error!(path = %self.path.display(), error = %e, "cannot open the audit log");
                None
            }
        }
    }

    /// Runs until every sender is gone and the queue is drained.
    pub(super) fn run(self, rx: Receiver<Record>) {
        let Some(mut out) = self.open() else { return };
        let max = self.config.max_size_mb.saturating_mul(1 << 20);
        let mut line = Vec::with_capacity(512);
        loop {
            let first = match rx.recv_timeout(IDLE_CHECK) {
                Ok(r) => Some(r),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            };
            if self.reopen.load(Ordering::Relaxed) != out.generation {
                let _ = out.file.flush();
                match self.open() {
                    Some(o) => out = o,
                    None => return,
                }
            }
            let Some(first) = first else { continue };
            // Everything queued now, then one flush.
            for r in std::iter::once(first).chain(rx.try_iter()) {
                line.clear();
                r.write_json(&mut line);
                if out.size > 0 && out.size + line.len() as u64 > max {
                    let _ = out.file.flush();
                    let mut rotated = self.path.clone().into_os_string();
                    rotated.push(".1");
                    if let Err(e) = std::fs::rename(&self.path, &rotated) {
                        tracing::warn!(error = %e, "cannot rotate the audit log");
                    }
                    match self.open() {
                        Some(o) => out = o,
                        None => return,
                    }
                }
                if out.file.write_all(&line).is_ok() {
                    out.size += line.len() as u64;
                    self.written.inc();
                }
            }
            if let Err(e) = out.file.flush() {
                tracing::warn!(error = %e, "cannot write the audit log");
            }
        }
        let _ = out.file.flush();
    }
}
