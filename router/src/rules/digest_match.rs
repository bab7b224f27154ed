//! A rule's `digest` condition: the statement's digest (`router::classify::digest`, the text
//! `/admin/top` and the audit log show) equals the rule's. The rule's text is normalised by the
//! same function when the configuration loads, so it may be written with any literal values.
//!
//! Two checks that cost a few nanoseconds come first, so that most statements are turned away
//! without computing their digest: the statement must start with the keyword the digest starts
//! with (its kind: `SELECT`, `INSERT`...), and its text must hold the digest's longest name
//! (names are copied into a digest as written). Only then is the digest computed (once per
//! statement, shared with the other consumers) and its hash, then its text, compared.

use crate::classify::{digest, leading_keyword, longest_name, StatementDigest};
use memchr::memmem::Finder;

/// A compiled `digest` condition.
#[derive(Debug, Clone)]
pub(super) struct DigestMatch {
    text: String,
    hash: u64,
    /// The keyword the digest starts with, if it starts with one.
    lead: Option<&'static str>,
    /// The digest's longest name, searched in the statement text.
    name: Option<Finder<'static>>,
}

impl DigestMatch {
    /// Normalises the rule's text; `None` when nothing is left (a comment, blanks).
    pub fn new(rule_text: &str) -> Option<DigestMatch> {
        let mut text = String::new();
        let hash = digest(rule_text.as_bytes(), &mut text);
        if text.is_empty() {
            return None;
        }
        Some(DigestMatch {
            lead: leading_keyword(text.as_bytes()),
            name: longest_name(&text).map(|n| Finder::new(n.as_bytes()).into_owned()),
            hash,
            text,
        })
    }

    /// Whether a statement with `lead` as its leading keyword (see [`Statement`]) and text
    /// `sql` can have this digest, without computing it.
    pub fn may_match(&self, lead: Option<&'static str>, sql: &[u8]) -> bool {
        self.lead == lead && self.name.as_ref().is_none_or(|f| f.find(sql).is_some())
    }

    /// The full comparison, computing the statement's digest if nothing has yet.
    pub fn matches(&self, sql: &[u8], digest: &mut StatementDigest) -> bool {
        let (hash, text) = digest.get(sql);
        hash == self.hash && text == self.text
    }
}

#[cfg(test)]
mod test {
    use super::*;

    fn check(rule: &str, sql: &str) -> (bool, bool, u64) {
        let m = DigestMatch::new(rule).expect("a digest");
        let sql = sql.as_bytes();
        let mut d = StatementDigest::default();
        let may = m.may_match(leading_keyword(sql), sql);
        let full = m.matches(sql, &mut d);
        (may, full, d.computations())
    }

    #[test]
    fn the_rule_is_normalised_like_statements_and_prefilters_never_refuse_a_match() {
        let m = DigestMatch::new("select * from orders where id=1 -- any value").unwrap();
        assert_eq!(m.text, "SELECT * FROM orders WHERE id = ?");
        assert!(DigestMatch::new("/* nothing */ ;").is_none());
        for sql in [
            "SELECT * FROM orders WHERE id = 42",
            "/* app */ select *\n from orders where id='x';",
        ] {
            let (may, full, _) = check("SELECT * FROM orders WHERE id = 1", sql);
            assert!(may && full, "{sql}");
        }
        // Another table, another kind, other case of a name: no digest needed to say no.
        for sql in [
            "SELECT * FROM carts WHERE id = 1",
            "DELETE FROM orders WHERE id = 1",
            "SELECT * FROM Orders WHERE id = 1",
        ] {
            let (may, full, _) = check("SELECT * FROM orders WHERE id = 1", sql);
            assert!(!may && !full, "{sql}");
        }
        // A digest without a leading keyword or a name still compares in full.
        let (may, full, n) = check("(SELECT 1)", "( select 2 )");
        assert!(may && full);
        assert_eq!(n, 1);
    }
}
