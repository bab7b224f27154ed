//! `query_rules:` as written in the configuration, and its checks: every rule has a unique
//! `name` (its metric label), at least one condition and one action, a regular expression that
//! compiles, an address or CIDR block that parses, and `block` alone (a blocked statement has
//! nowhere to go and no time to take).

use super::{Action, AddrMatch, DigestMatch, QueryRules, Rule};
use crate::config::ConfigError;
use regex::bytes::RegexBuilder;
use serde::Deserialize;
use std::collections::HashSet;

/// Where a rule sends a statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleRoute {
    /// The primary (always allowed).
    Primary,
    /// A replica, where the classification allows one (a read outside anything that pins the
    /// session to the primary); otherwise the rule's override is refused and counted.
    Replica,
}

/// One entry of `query_rules:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryRuleConfig {
    /// Names the rule in `rwsplit_query_rule_hits_total{rule}` and in errors.
    pub name: String,
    /// The statement's digest, as `/admin/top` and the audit log show it (keywords upper-case,
    /// names as written, literals as `?`, lists of literals as `(...)`); the rule's text is
    /// normalised the same way, so any literal values may be written. Exact match.
    #[serde(default)]
    pub digest: Option<String>,
    /// A regular expression searched in the statement text (case-sensitive unless it starts
    /// with `(?i)`).
    #[serde(default, rename = "match")]
    pub pattern: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
    /// The session's current schema (case-insensitive).
    #[serde(default)]
    pub schema: Option<String>,
    /// The client's address, exact or a CIDR block.
    #[serde(default)]
    pub client_addr: Option<String>,
    #[serde(default)]
    pub route: Option<RuleRoute>,
    #[serde(default)]
    pub max_lag_ms: Option<u64>,
    #[serde(default)]
    pub block: Option<String>,
    #[serde(default)]
    pub timeout_ms: Option<u64>,
}

/// Largest compiled regular expression, so a rule cannot make the proxy hold megabytes.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// Checks and compiles the rules; errors name `file`, the rule's line in `text` and the key.
pub fn compile(
    rules: &[QueryRuleConfig],
    file: &str,
    text: &str,
) -> Result<QueryRules, ConfigError> {
    let mut names = HashSet::new();
    let mut out = Vec::with_capacity(rules.len());
    for (i, r) in rules.iter().enumerate() {
        let err = |key: &str, message: String| ConfigError::Invalid {
            file: file.to_string(),
            line: rule_line(text, &r.name, key),
            key: format!("query_rules[{i}].{key}"),
            message,
        };
        if r.name.trim().is_empty() {
            return Err(err("name", "must not be empty".into()));
        }
        if !names.insert(r.name.as_str()) {
            return Err(err("name", format!("duplicate rule name {:?}", r.name)));
        }
        let conditions = [
            r.digest.is_some(),
            r.pattern.is_some(),
            r.user.is_some(),
            r.schema.is_some(),
            r.client_addr.is_some(),
        ];
        if !conditions.contains(&true) {
            return Err(err(
                "name",
                "needs at least one of `digest`, `match`, `user`, `schema`, `client_addr`".into(),
            ));
        }
        let action = Action {
            route: r.route,
            max_lag_ms: r.max_lag_ms,
            block: r.block.clone(),
            timeout_ms: r.timeout_ms,
        };
        if action == Action::default() {
            return Err(err(
                "name",
                "needs at least one of `route`, `max_lag_ms`, `block`, `timeout_ms`".into(),
            ));
        }
        if action.block.is_some()
            && (action.route.is_some()
                || action.max_lag_ms.is_some()
                || action.timeout_ms.is_some())
        {
            return Err(err(
                "block",
                "a blocked statement reaches no server: give `block` alone".into(),
            ));
        }
        if r.timeout_ms == Some(0) {
            return Err(err("timeout_ms", "must be at least 1".into()));
        }
        let regex = match &r.pattern {
            Some(p) => Some(
                RegexBuilder::new(p)
                    .size_limit(REGEX_SIZE_LIMIT)
                    .build()
                    .map_err(|e| err("match", format!("not a valid regular expression: {e}")))?,
            ),
            None => None,
        };
        let client = match &r.client_addr {
            Some(a) => Some(AddrMatch::parse(a).map_err(|m| err("client_addr", m))?),
            None => None,
        };
        let digest = match &r.digest {
            Some(d) => {
                Some(DigestMatch::new(d).ok_or_else(|| err("digest", "must not be empty".into()))?)
            }
            None => None,
        };
        out.push(Rule {
            name: r.name.as_str().into(),
            digest,
            regex,
            user: r.user.clone(),
            schema: r.schema.clone(),
            client,
            action,
        });
    }
    Ok(QueryRules::new(out))
}

/// The line of `key:` in the rule named `name` (or of its name).
fn rule_line(text: &str, name: &str, key: &str) -> Option<usize> {
    let lines: Vec<&str> = text.lines().collect();
    let section = lines
        .iter()
        .position(|l| l.starts_with("query_rules:"))
        .unwrap_or(0);
    let start = lines
        .iter()
        .enumerate()
        .skip(section)
        .find(|(_, l)| l.contains("name:") && l.contains(name))
        .map(|(i, _)| i)?;
    if key == "name" {
        return Some(start + 1);
    }
    let needle = format!("{key}:");
    let end = lines
        .iter()
        .enumerate()
        .skip(start + 1)
        .find(|(_, l)| l.contains("name:"))
        .map_or(lines.len(), |(i, _)| i);
    // A rule on one line (`- {name: x, match: ...}`) holds its keys on the name's line.
    (start..end)
        .find(|&i| lines[i].contains(&needle))
        .map(|i| i + 1)
        .or(Some(start + 1))
}
