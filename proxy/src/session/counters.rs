//! The session's `rwsplit_queries_total` series, resolved once per (server, route, reason):
//! counting a statement is then one atomic add, with no lock and no hashing of labels.

use crate::context::Backend;
use prometheus::IntCounter;
use std::sync::Arc;

/// Entries kept at most; a session uses a handful (servers × routes × reasons it meets).
const MAX: usize = 32;

#[derive(Default)]
pub(super) struct QueryCounters {
    resolved: Vec<(Arc<Backend>, &'static str, &'static str, IntCounter)>,
}

impl QueryCounters {
    /// Counts one statement routed to `backend` by `route` for `reason`.
    pub fn count(&mut self, backend: &Arc<Backend>, route: &'static str, reason: &'static str) {
        // A reload that replaces the server's entry makes a new `Backend`: it misses here.
        let hit = self
            .resolved
            .iter()
            .find(|(b, ro, re, _)| Arc::ptr_eq(b, backend) && *ro == route && *re == reason);
        if let Some((.., c)) = hit {
            c.inc();
            return;
        }
        let c = backend.metrics().query_counter(route, reason);
        c.inc();
        if self.resolved.len() >= MAX {
            self.resolved.clear();
        }
        self.resolved.push((backend.clone(), route, reason, c));
    }
}
