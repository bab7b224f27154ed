//! Query rules (`query_rules:` in the configuration): operator-written rules matched against
//! each client statement, first match wins. A rule matches on the statement's digest text, a
//! regular expression, the user, the current schema and the client's address, and can send
//! the statement to the primary, prefer a replica (only where the classification allows one),
//! bound replica lag, set a timeout, or block it with a message.
//!
//! Pure and cheap: matching runs before every statement, so the session-level conditions
//! (user, address) are checked first, the digest is computed only when a rule has one, and no
//! regular expression runs when no rule has one. Regular expressions use the `regex` crate
//! (linear time, no backtracking: a rule cannot make the proxy hang on a crafted statement).

mod addr;
mod config;
pub mod digest;

pub use addr::AddrMatch;
pub use config::{compile, QueryRuleConfig, RuleRoute};

use crate::classify::{Reason, Target};
use crate::session::{Decision, Pins};
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
    digest: Option<String>,
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
    needs_digest: bool,
    needs_schema: bool,
}

/// What a statement is matched on. `schema` is asked for only when a rule names one.
pub struct Input<'a, F: FnOnce() -> Option<String>> {
    pub sql: &'a [u8],
    pub user: &'a str,
    pub client: Option<IpAddr>,
    pub schema: F,
}

/// A reusable buffer for the digest, kept by the caller (one per session) so that matching a
/// digest rule does not allocate per statement.
#[derive(Debug, Default)]
pub struct Scratch(String);

impl QueryRules {
    /// Compiles checked rule configurations (see [`config::compile`] for the checks).
    pub fn new(rules: Vec<Rule>) -> QueryRules {
        QueryRules {
            needs_digest: rules.iter().any(|r| r.digest.is_some()),
            needs_schema: rules.iter().any(|r| r.schema.is_some()),
            rules,
        }
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

    /// The first rule that matches, with its index.
    pub fn first_match<F: FnOnce() -> Option<String>>(
        &self,
        input: Input<'_, F>,
        scratch: &mut Scratch,
    ) -> Option<(usize, &Rule)> {
        if self.rules.is_empty() {
            return None;
        }
        let mut digest_done = false;
        let mut schema_fn = Some(input.schema);
        let mut schema: Option<Option<String>> = None;
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
                if self.needs_schema && schema.is_none() {
                    schema = Some(schema_fn.take().and_then(|f| f()));
                }
                let have = schema.as_ref().and_then(|s| s.as_deref());
                if !have.is_some_and(|h| h.eq_ignore_ascii_case(want)) {
                    continue;
                }
            }
            if let Some(want) = &r.digest {
                if self.needs_digest && !digest_done {
                    digest::digest_into(input.sql, &mut scratch.0);
                    digest_done = true;
                }
                if scratch.0 != *want {
                    continue;
                }
            }
            if let Some(re) = &r.regex {
                if !re.is_match(input.sql) {
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
