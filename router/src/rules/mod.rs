//! Query rules (`query_rules:` in the configuration): operator-written rules matched against
//! each client statement, first match wins. A rule matches on the statement's digest text, a
//! regular expression, the user, the current schema and the client's address, and can send
//! the statement to the primary, prefer a replica (only where the classification allows one),
//! bound replica lag, set a timeout, or block it with a message.
//!
//! Pure and cheap: matching runs before every statement. Per rule, the session-level
//! conditions (user, address, schema) are checked first; a `digest` condition first checks the
//! statement's leading keyword and that its text holds the digest's longest name, and only then
//! asks for the statement's digest ([`StatementDigest`]: computed at most once per statement and
//! shared with statement statistics and the audit log, so a rule adds no second computation);
//! a rule's regular expression is searched only when its other conditions held. Each rule
//! searches its own: a `RegexSet` over all rules' expressions measured several times slower
//! on long statements (no literal prefilter for an overlapping multi-pattern search; see
//! docs/BENCHMARKS.md). Regular expressions use the `regex` crate (linear time, no
//! backtracking: a rule cannot make the proxy hang on a crafted statement).

mod addr;
mod config;
mod digest_match;

pub use addr::AddrMatch;
pub use config::{compile, QueryRuleConfig, RuleRoute};

use crate::classify::{leading_keyword, Reason, StatementDigest, Target};
use crate::session::{Decision, Pins};
use digest_match::DigestMatch;
use regex::bytes::Regex;
use std::net::IpAddr;
use std::sync::Arc;

/// What a matching rule does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Action {
    pub route: Option<RuleRoute>,
    /// Replica lag bound for this statement (as a `/* rwsplit:max_lag_ms=N */` hint; a hint in
    /// the statement itself wins).
    pub max_lag_ms: Option<u64>,
    /// Refuse the statement with this message (ERR 1148); it reaches no server.
    pub block: Option<String>,
    /// Cancel the statement after this long (as `proxy.query_timeout_ms`, for this statement).
    pub timeout_ms: Option<u64>,
}

/// One rule, ready to match.
#[derive(Debug, Clone)]
pub struct Rule {
    pub name: Arc<str>,
    digest: Option<DigestMatch>,
    regex: Option<Regex>,
    user: Option<String>,
    schema: Option<String>,
    client: Option<AddrMatch>,
    pub action: Action,
}

/// The configured rules, in order.
#[derive(Debug, Clone, Default)]
pub struct QueryRules {
    rules: Vec<Rule>,
}

/// What a statement is matched on. `schema` is asked for only when a rule names one.
pub struct Input<'a, F: FnOnce() -> Option<String>> {
    pub sql: &'a [u8],
    pub user: &'a str,
    pub client: Option<IpAddr>,
    pub schema: F,
}

/// What matching learnt about the statement so far, each part computed on first need.
struct Seen<F> {
    schema_fn: Option<F>,
    schema: Option<Option<String>>,
    lead: Option<Option<&'static str>>,
}

impl QueryRules {
    /// Rules in order (see [`config::compile`] for the checks).
    pub fn new(rules: Vec<Rule>) -> QueryRules {
        QueryRules { rules }
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// The rules' names, in order (for pre-resolving metric handles).
    pub fn names(&self) -> impl Iterator<Item = &Arc<str>> {
        self.rules.iter().map(|r| &r.name)
    }

    /// The first rule that matches, with its index. `digest` is the statement's (see
    /// [`StatementDigest`]): computed here only if a `digest` condition needs it and nothing
    /// computed it before.
    pub fn first_match<F: FnOnce() -> Option<String>>(
        &self,
        input: Input<'_, F>,
        digest: &mut StatementDigest,
    ) -> Option<(usize, &Rule)> {
        if self.rules.is_empty() {
            return None;
        }
        let mut seen = Seen {
            schema_fn: Some(input.schema),
            schema: None,
            lead: None,
        };
        let sql = input.sql;
        for (i, r) in self.rules.iter().enumerate() {
            if r.user.as_deref().is_some_and(|u| u != input.user) {
                continue;
            }
            if let Some(m) = &r.client {
                if !input.client.is_some_and(|a| m.contains(a)) {
                    continue;
                }
            }
            if let Some(want) = &r.schema {
                let have = seen
                    .schema
                    .get_or_insert_with(|| seen.schema_fn.take().and_then(|f| f()));
                if !have
                    .as_deref()
                    .is_some_and(|h| h.eq_ignore_ascii_case(want))
                {
                    continue;
                }
            }
            if let Some(m) = &r.digest {
                let lead = *seen.lead.get_or_insert_with(|| leading_keyword(sql));
                if !m.may_match(lead, sql) || !m.matches(sql, digest) {
                    continue;
                }
            }
            if let Some(re) = &r.regex {
                if !re.is_match(sql) {
                    continue;
                }
            }
            return Some((i, r));
        }
        None
    }
}

/// How a rule's `route` went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Override {
    /// No route in the rule, or the statement already goes there.
    None,
    /// The decision was changed.
    Applied,
    /// `route: replica` for a statement the classification keeps on the primary (a write, a
    /// lock, a transaction, session state...): refused, the statement runs where it must.
    Refused,
}

/// Applies a rule's routing action to the classifier's decision. `pins` and
/// `history_overflowed` are the session's: a replica is allowed only for a statement that
/// would go there with a `/* rwsplit:replica */` hint (a read, or a call to a stored function
/// the operator vouches for) while nothing ties the session to its primary connection.
pub fn apply(
    action: &Action,
    d: &mut Decision,
    pins: Pins,
    in_transaction: bool,
    history_overflowed: bool,
) -> Override {
    if d.max_lag_ms.is_none() {
        d.max_lag_ms = action.max_lag_ms;
    }
    match action.route {
        None => Override::None,
        Some(RuleRoute::Primary) => match d.target {
            Target::Replica => {
                d.target = Target::Primary;
                d.reason = Reason::HintPrimary;
                Override::Applied
            }
            _ => Override::None,
        },
        Some(RuleRoute::Replica) => match (d.target, d.reason) {
            (Target::Replica, _) => Override::None,
            (Target::Primary, Reason::StoredFunction)
                if !pins.any() && !in_transaction && !history_overflowed =>
            {
                d.target = Target::Replica;
                d.reason = Reason::HintReplica;
                Override::Applied
            }
            _ => Override::Refused,
        },
    }
}

#[cfg(test)]
mod test;
