//! One statement's digest, computed at most once and only when something asks for it.
//!
//! Several consumers want the digest of the statement a session is running: statement
//! statistics (`/admin/top`), query rules with a `digest` condition, the audit log. Each
//! computing its own would lex the statement up to three times; a rule scoped to a user or a
//! subnet should not compute it at all. The session keeps one [`StatementDigest`], calls
//! [`StatementDigest::reset`] when a command starts, and every consumer calls
//! [`StatementDigest::get`] with that command's text: the first call computes, the others read.
//! A prepared statement's executions share one text: [`StatementDigest::get_shared`] lexes it
//! once for a run of executions of the same statement (the common driver loop), not per execute.

use super::digest::digest;
use std::sync::Arc;

/// The digest of the current statement, cached. The buffer is reused across statements, so
/// computing it allocates only when a statement's digest is longer than any before it.
#[derive(Debug, Default, Clone)]
pub struct StatementDigest {
    text: String,
    hash: u64,
    /// `text` and `hash` belong to the current statement.
    fresh: bool,
    /// How many times a digest was computed (what the cache saves is visible in tests).
    computed: u64,
    /// The shared text `text` and `hash` were computed from, if it came shared (see
    /// [`Self::get_shared`]). Held, so its address cannot be reused by another text.
    source: Option<Arc<[u8]>>,
}

impl StatementDigest {
    /// A new statement starts: the next [`get`](Self::get) computes its digest.
    pub fn reset(&mut self) {
        self.fresh = false;
    }

    /// The digest of `sql` (the current statement's text, the same for every call between two
    /// resets): its hash and its text, computed on the first call.
    pub fn get(&mut self, sql: &[u8]) -> (u64, &str) {
        if !self.fresh {
            self.compute(sql);
            self.source = None;
        }
        (self.hash, &self.text)
    }

    /// [`Self::get`] for a text shared between statements (a prepared statement's): when the
    /// previous statement's digest came from the same text, it is the current one's too.
    pub fn get_shared(&mut self, sql: &Arc<[u8]>) -> (u64, &str) {
        if !self.fresh {
            if self.source.as_ref().is_some_and(|s| Arc::ptr_eq(s, sql)) {
                self.fresh = true;
            } else {
                self.compute(sql);
                self.source = Some(sql.clone());
            }
        }
        (self.hash, &self.text)
    }

    fn compute(&mut self, sql: &[u8]) {
        self.hash = digest(sql, &mut self.text);
        self.fresh = true;
        self.computed += 1;
    }

    /// The digest computed for the current statement, if something asked for it.
    pub fn computed(&self) -> Option<(u64, &str)> {
        self.fresh.then_some((self.hash, self.text.as_str()))
    }

    /// How many digests were computed since this cache was made.
    pub fn computations(&self) -> u64 {
        self.computed
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn computed_once_per_statement_and_only_on_demand() {
        let mut d = StatementDigest::default();
        d.reset();
        assert_eq!(d.computed(), None);
        assert_eq!(d.computations(), 0, "nobody asked");
        let sql = b"SELECT c FROM sbtest1 WHERE id=42";
        let (h1, t1) = d.get(sql);
        let t1 = t1.to_string();
        let (h2, t2) = d.get(sql);
        assert_eq!((h1, t1.as_str()), (h2, t2));
        assert_eq!(t1, "SELECT c FROM sbtest1 WHERE id = ?");
        assert_eq!(d.computed(), Some((h1, t1.as_str())));
        assert_eq!(d.computations(), 1, "the second caller read the cache");
        d.reset();
        assert_eq!(d.computed(), None);
        let (h3, t3) = d.get(b"DELETE FROM t WHERE id = 7");
        assert_eq!(t3, "DELETE FROM t WHERE id = ?");
        assert_ne!(h3, h1);
        assert_eq!(d.computations(), 2);
    }

    #[test]
    fn a_shared_text_is_lexed_once_for_a_run_of_executions() {
        let mut d = StatementDigest::default();
        let ps: Arc<[u8]> = Arc::from(&b"SELECT c FROM sbtest1 WHERE id=?"[..]);
        let copy: Arc<[u8]> = Arc::from(&b"SELECT c FROM sbtest1 WHERE id=?"[..]);
        for _ in 0..3 {
            d.reset();
            assert_eq!(d.get_shared(&ps).1, "SELECT c FROM sbtest1 WHERE id = ?");
        }
        assert_eq!(
            d.computations(),
            1,
            "executions of one statement reuse its digest"
        );
        // Another text in between (a COM_QUERY) replaces the digest: the next execution
        // computes again, and so does another statement with equal text.
        d.reset();
        assert_eq!(
            d.get(b"DELETE FROM t WHERE id = 7").1,
            "DELETE FROM t WHERE id = ?"
        );
        d.reset();
        assert_eq!(d.get_shared(&ps).1, "SELECT c FROM sbtest1 WHERE id = ?");
        d.reset();
        d.get_shared(&copy);
        assert_eq!(d.computations(), 4);
        // Not computed at all until asked, as with `get`.
        d.reset();
        assert_eq!(d.computed(), None);
    }
}
