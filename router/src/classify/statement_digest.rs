//! One statement's digest, computed at most once and only when something asks for it.
//!
//! Several consumers want the digest of the statement a session is running: statement
//! statistics (`/admin/top`), query rules with a `digest` condition, the audit log. Each
//! computing its own would lex the statement up to three times; a rule scoped to a user or a
//! subnet should not compute it at all. The session keeps one [`StatementDigest`], calls
//! [`StatementDigest::reset`] when a command starts, and every consumer calls
//! [`StatementDigest::get`] with that command's text: the first call computes, the others read.
//! A prepared statement's executions share one text: [`StatementDigest::get_shared`] lexes it
//! once per statement (kept among the last few such texts), not per execute.

use super::digest::digest;
use std::sync::Arc;

/// How many shared texts keep their digest: a driver loop runs a handful of prepared
/// statements in turn (sysbench's point select, one per table), so one entry would be lexed
/// again on nearly every execute. Looked up by address, so a few more cost next to nothing.
const SHARED_ENTRIES: usize = 16;

/// The digest of the current statement, cached. The buffers are reused across statements, so
/// computing it allocates only when a statement's digest is longer than any before it.
#[derive(Debug, Default, Clone)]
pub struct StatementDigest {
    text: String,
    hash: u64,
    /// Where the current statement's digest is, once something asked for it.
    current: Option<Current>,
    /// How many times a digest was computed (what the cache saves is visible in tests).
    computed: u64,
    /// Digests of shared texts (see [`Self::get_shared`]), replaced in turn.
    shared: Vec<Shared>,
    /// The entry of `shared` the next new text replaces.
    next_shared: usize,
}

/// Which of the cache's digests is the current statement's.
#[derive(Debug, Clone, Copy)]
enum Current {
    Own,
    Shared(usize),
}

/// A shared text's digest.
#[derive(Debug, Clone)]
struct Shared {
    /// Held, so that its address cannot be reused by another text.
    source: Arc<[u8]>,
    text: String,
    hash: u64,
}

impl StatementDigest {
    /// A new statement starts: the next [`get`](Self::get) computes its digest.
    pub fn reset(&mut self) {
        self.current = None;
    }

    /// The digest of `sql` (the current statement's text, the same for every call between two
    /// resets): its hash and its text, computed on the first call.
    pub fn get(&mut self, sql: &[u8]) -> (u64, &str) {
        if self.current.is_none() {
            self.hash = digest(sql, &mut self.text);
            self.computed += 1;
            self.current = Some(Current::Own);
        }
        self.computed().unwrap_or_default()
    }

    /// [`Self::get`] for a text shared between statements (a prepared statement's): computed
    /// once for as long as the text is among the last few shared texts asked for.
    pub fn get_shared(&mut self, sql: &Arc<[u8]>) -> (u64, &str) {
        if self.current.is_none() {
            let i = match self.shared.iter().position(|e| Arc::ptr_eq(&e.source, sql)) {
                Some(i) => i,
                None => self.compute_shared(sql),
            };
            self.current = Some(Current::Shared(i));
        }
        self.computed().unwrap_or_default()
    }

    /// Computes `sql`'s digest into a new entry (or the oldest one), returning its index.
    fn compute_shared(&mut self, sql: &Arc<[u8]>) -> usize {
        self.computed += 1;
        if self.shared.len() < SHARED_ENTRIES {
            let mut text = String::new();
            let hash = digest(sql, &mut text);
            self.shared.push(Shared {
                source: sql.clone(),
                text,
                hash,
            });
            return self.shared.len() - 1;
        }
        let i = self.next_shared % SHARED_ENTRIES;
        self.next_shared = i + 1;
        let e = &mut self.shared[i];
        e.hash = digest(sql, &mut e.text);
        e.source = sql.clone();
        i
    }

    /// The digest computed for the current statement, if something asked for it.
    pub fn computed(&self) -> Option<(u64, &str)> {
        match self.current? {
            Current::Own => Some((self.hash, self.text.as_str())),
            Current::Shared(i) => self.shared.get(i).map(|e| (e.hash, e.text.as_str())),
        }
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
        // A text in between (a COM_QUERY) does not lose it; another statement with equal
        // text (another handle) is another entry.
        d.reset();
        assert_eq!(
            d.get(b"DELETE FROM t WHERE id = 7").1,
            "DELETE FROM t WHERE id = ?"
        );
        d.reset();
        assert_eq!(d.get_shared(&ps).1, "SELECT c FROM sbtest1 WHERE id = ?");
        assert_eq!(d.computations(), 2);
        d.reset();
        d.get_shared(&copy);
        assert_eq!(d.computations(), 3);
        // Not computed at all until asked, as with `get`.
        d.reset();
        assert_eq!(d.computed(), None);
    }

    #[test]
    fn statements_executed_in_turn_are_each_lexed_once() {
        let mut d = StatementDigest::default();
        let texts: Vec<Arc<[u8]>> = (1..=4)
            .map(|t| Arc::from(format!("SELECT c FROM sbtest{t} WHERE id=?").as_bytes()))
            .collect();
        for round in 0..50 {
            let t = &texts[round % 4];
            d.reset();
            let want = format!("SELECT c FROM sbtest{} WHERE id = ?", round % 4 + 1);
            assert_eq!(d.get_shared(t).1, want);
            assert_eq!(d.computed().map(|c| c.1), Some(want.as_str()));
        }
        assert_eq!(
            d.computations(),
            4,
            "one lexing per statement, not per execute"
        );
    }

    #[test]
    fn more_shared_texts_than_entries_replace_the_oldest() {
        let mut d = StatementDigest::default();
        let texts: Vec<Arc<[u8]>> = (0..SHARED_ENTRIES + 1)
            .map(|t| Arc::from(format!("SELECT {t} FROM t").as_bytes()))
            .collect();
        for t in &texts {
            d.reset();
            d.get_shared(t);
        }
        assert_eq!(d.computations(), SHARED_ENTRIES as u64 + 1);
        // The first one made room for the last: asked again, it is computed again, and its
        // digest is its own, not the entry's previous text's.
        d.reset();
        assert_eq!(d.get_shared(&texts[0]).1, "SELECT ? FROM t");
        assert_eq!(d.computations(), SHARED_ENTRIES as u64 + 2);
        d.reset();
        d.get_shared(&texts[SHARED_ENTRIES]);
        assert_eq!(
            d.computations(),
            SHARED_ENTRIES as u64 + 2,
            "the newest is kept"
        );
    }
}
