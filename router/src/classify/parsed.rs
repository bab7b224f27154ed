//! The sqlparser fallback for statements the scanner cannot place (an unknown leading keyword),
//! with an LRU cache by text so a repeated odd statement is parsed once. Off the fast path: the
//! scanner handles every common statement without it.

use super::{Classification, Effect, Reason, Target};
use lru::LruCache;
use sqlparser::ast::Statement;
use sqlparser::dialect::MySqlDialect;
use sqlparser::parser::Parser;
use std::num::NonZeroUsize;
use std::sync::{Mutex, OnceLock};

/// Statements longer than this are not cached (they are rarely repeated verbatim).
const MAX_CACHED_LEN: usize = 4096;
const CACHE_ENTRIES: usize = 1024;

fn cache() -> &'static Mutex<LruCache<Box<[u8]>, Classification>> {
    static CACHE: OnceLock<Mutex<LruCache<Box<[u8]>, Classification>>> = OnceLock::new();
    CACHE.get_or_init(|| {
        Mutex::new(LruCache::new(
            NonZeroUsize::new(CACHE_ENTRIES).unwrap_or(NonZeroUsize::MIN),
        ))
    })
}

thread_local! {
    /// Parser fallbacks on this thread (cache hits included): lets tests prove the fast path
    /// never reaches sqlparser.
    static FALLBACKS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// How many statements this thread sent to the sqlparser fallback.
pub fn fallbacks_on_this_thread() -> u64 {
    FALLBACKS.with(|c| c.get())
}

/// Classifies with sqlparser: only a statement that parses as a query is a read; anything else
/// (including every parse failure) goes to the primary.
pub(super) fn classify_with_parser(sql: &[u8]) -> Classification {
    FALLBACKS.with(|c| c.set(c.get() + 1));
    if sql.len() <= MAX_CACHED_LEN {
        if let Ok(mut c) = cache().lock() {
            if let Some(hit) = c.get(sql) {
                return *hit;
            }
        }
    }
    let class = parse(sql);
    if sql.len() <= MAX_CACHED_LEN {
        if let Ok(mut c) = cache().lock() {
            c.put(sql.into(), class);
        }
    }
    class
}

fn parse(sql: &[u8]) -> Classification {
    let unparseable = Classification::new(Target::Primary, Reason::Unparseable, Effect::None);
    let Ok(text) = std::str::from_utf8(sql) else {
        return unparseable;
    };
    // sqlparser recurses on nesting; very deep input is not worth the stack.
    let parsed = Parser::new(&MySqlDialect {})
        .with_recursion_limit(64)
        .try_with_sql(text)
        .and_then(|mut p| p.parse_statements());
    match parsed {
        // Only a lone query is a read; its locking clauses would have been seen by the scanner
        // had it started with SELECT, so be strict and check the parser's view of them too.
        Ok(stmts) if stmts.len() == 1 && is_plain_query(&stmts[0]) => {
            Classification::new(Target::Replica, Reason::Read, Effect::None)
        }
        Ok(stmts) if !stmts.is_empty() => {
            Classification::new(Target::Primary, Reason::Write, Effect::None)
        }
        _ => unparseable,
    }
}

fn is_plain_query(stmt: &Statement) -> bool {
    match stmt {
        Statement::Query(q) => {
            q.locks.is_empty() && !format!("{q}").to_ascii_uppercase().contains(" INTO ")
        }
        _ => false,
    }
}

/// Entries in the parse cache (for tests and a gauge).
pub fn parse_cache_len() -> usize {
    cache().lock().map(|c| c.len()).unwrap_or(0)
}
