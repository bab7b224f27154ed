//! The prepared statements of one backend connection, by statement text. Connections change
//! hands between sessions after every statement, and web clients prepare the same few texts:
//! a session that executes a statement on a connection where another session (or itself, on
//! an earlier visit) prepared the same text reuses the server's statement instead of preparing
//! again. Bounded per connection (least recently used first out; the evicted statement is
//! closed on the server), so a connection never nears the server's `max_prepared_stmt_count`.

use std::collections::HashMap;
use std::sync::Arc;

/// Most statements kept prepared on one connection. With `proxy.pool.max_per_server`
/// connections per server, the server holds at most this many times as many.
pub const MAX_PER_CONNECTION: usize = 128;

/// A statement as it exists on the connection.
#[derive(Debug, Clone)]
pub struct Cached {
    /// The server's statement id on this connection.
    pub id: u32,
    /// The parameter types last bound on this connection (`new_params_bound_flag`); an
    /// execution that relies on earlier types sends them again when they differ (another
    /// session may have bound other types). `None`: unknown, send them.
    pub types: Option<Box<[u8]>>,
    /// An execution left a cursor open on this statement.
    pub cursor: bool,
    used: u64,
}

/// Text → statement, with a use counter for eviction.
#[derive(Debug, Default)]
pub struct StmtCache {
    by_text: HashMap<Arc<[u8]>, Cached>,
    tick: u64,
}

impl StmtCache {
    /// The statement prepared from `sql` on this connection, marked as just used.
    pub fn get(&mut self, sql: &[u8]) -> Option<&mut Cached> {
        self.tick += 1;
        let tick = self.tick;
        let c = self.by_text.get_mut(sql)?;
        c.used = tick;
        Some(c)
    }

    /// Looks a statement up without marking it used.
    pub fn peek(&self, sql: &[u8]) -> Option<&Cached> {
        self.by_text.get(sql)
    }

    /// Records statement `id` prepared from `sql`. Returns the server ids to close: one
    /// replaced under the same text, and the least recently used when the cache is full.
    pub fn insert(&mut self, sql: Arc<[u8]>, id: u32) -> Vec<u32> {
        let mut close = Vec::new();
        self.tick += 1;
        if let Some(old) = self.by_text.remove(&*sql) {
            if old.id != id {
                close.push(old.id);
            }
        }
        if self.by_text.len() >= MAX_PER_CONNECTION {
            let oldest = self
                .by_text
                .iter()
                .filter(|(_, c)| !c.cursor)
                .min_by_key(|(_, c)| c.used)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                if let Some(c) = self.by_text.remove(&k) {
                    close.push(c.id);
                }
            }
        }
        self.by_text.insert(
            sql,
            Cached {
                id,
                types: None,
                cursor: false,
                used: self.tick,
            },
        );
        close
    }

    /// Forgets a statement (closed on the server by the caller). Returns its id.
    pub fn remove(&mut self, sql: &[u8]) -> Option<u32> {
        self.by_text.remove(sql).map(|c| c.id)
    }

    /// Forgets everything (the connection was reset: the server closed them all).
    pub fn clear(&mut self) {
        self.by_text.clear();
    }

    pub fn len(&self) -> usize {
        self.by_text.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_text.is_empty()
    }

    /// Whether an execution left a cursor open on any statement here.
    pub fn any_cursor(&self) -> bool {
        self.by_text.values().any(|c| c.cursor)
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn full_cache_evicts_the_least_recently_used_and_says_which_to_close() {
        let mut c = StmtCache::default();
        for i in 0..MAX_PER_CONNECTION as u32 {
            assert!(c
                .insert(Arc::from(format!("s{i}").as_bytes()), i)
                .is_empty());
        }
        // s0 used again: s1 is now the oldest.
        assert_eq!(c.get(b"s0").map(|s| s.id), Some(0));
        let closed = c.insert(Arc::from(&b"new"[..]), 999);
        assert_eq!(closed, vec![1]);
        assert_eq!(c.len(), MAX_PER_CONNECTION);
        assert!(c.peek(b"s1").is_none());
        assert!(c.peek(b"s0").is_some());
        // The same text prepared again replaces (and closes) the old statement.
        assert_eq!(c.insert(Arc::from(&b"new"[..]), 1000), vec![999]);
    }
}
