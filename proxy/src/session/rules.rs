//! The session's side of `query_rules`: match each client statement (COM_QUERY) against the
//! rules of the configuration it runs under, count the hit, and act: answer a blocked
//! statement with ERR 1148 (it reaches no server), or adjust the routing decision, the lag
//! bound and the statement's timeout. The matching itself is pure (`router::rules`).

use super::{Error, Session};
use router::classify::StatementDigest;
use router::rules::{self, Input, Override};
use router::Decision;
use std::cell::RefCell;
use std::time::Duration;

/// ER_NOT_ALLOWED_COMMAND: what a server answers for a statement it refuses to run.
const ER_NOT_ALLOWED_COMMAND: (u16, &str) = (1148, "42000");

/// The action of the rule a statement matched.
pub(super) struct Matched {
    name: std::sync::Arc<str>,
    action: rules::Action,
}

impl Matched {
    /// The rule refuses the statement.
    pub(super) fn blocks(&self) -> bool {
        self.action.block.is_some()
    }
}

/// A match and the schema it looked at: `Some` only when a rule names a schema, so that a
/// prepared statement's cached match is redone after a `USE` (see `stmt_rules.rs`).
pub(super) struct Found {
    pub matched: Option<Matched>,
    pub schema: Option<Option<String>>,
}

impl Session {
    /// Matches the current COM_QUERY. `Ok(None)` also when no rule matches; a blocked
    /// statement is answered here and reported as `Err(())` inside `Ok`.
    pub(super) async fn match_rules(&mut self) -> Result<Result<Option<Matched>, ()>, Error> {
        let config = self.ctx.config();
        if config.rules.is_empty() {
            return Ok(Ok(None));
        }
        let sql = self.cmd.get(1..).unwrap_or(&[]);
        let mut digest = std::mem::take(&mut self.digest);
        let found = self.find_rule(&config.rules, sql, &mut digest);
        self.digest = digest;
        let Some(m) = found.matched else {
            return Ok(Ok(None));
        };
        if self.rule_hit(&m).await? {
            return Ok(Err(()));
        }
        Ok(Ok(Some(m)))
    }

    /// The first rule of `rules` that statement `sql` matches in this session. No metric, no
    /// answer; the statement's digest, if a rule computes it, stays in `digest` (the session's, for
    /// top statements and audit).
    pub(super) fn find_rule(
        &self,
        rules: &rules::QueryRules,
        sql: &[u8],
        digest: &mut StatementDigest,
    ) -> Found {
        let client = self.client.host.parse().ok();
        let seen = RefCell::new(None);
        let input = Input {
            sql,
            user: &self.client.user,
            client,
            schema: || {
                let schema = self.current_schema();
                *seen.borrow_mut() = Some(schema.clone());
                schema
            },
        };
        let matched = rules.first_match(input, digest).map(|(_, r)| Matched {
            name: r.name.clone(),
            action: r.action.clone(),
        });
        Found {
            matched,
            schema: seen.into_inner(),
        }
    }

    /// Counts a statement's hit on rule `m` and, when the rule blocks, answers the statement
    /// with ERR 1148 (sequence 1: the answer to a command). True when blocked.
    pub(super) async fn rule_hit(&mut self, m: &Matched) -> Result<bool, Error> {
        self.ctx
            .metrics
            .query_rule_hits
            .with_label_values(&[&*m.name])
            .inc();
        let Some(msg) = &m.action.block else {
            return Ok(false);
        };
        let (c, st) = ER_NOT_ALLOWED_COMMAND;
        self.send_err(1, c, st, msg).await?;
        Ok(true)
    }

    /// Applies a matched rule to the routing decision and the statement's timeout; returns the
    /// session's own timeout, to restore once the statement is over.
    pub(super) fn apply_rule(
        &mut self,
        m: Option<&Matched>,
        d: &mut Decision,
    ) -> Option<Option<Duration>> {
        let m = m?;
        let how = rules::apply(
            &m.action,
            d,
            self.router.pins(),
            self.router.in_transaction(),
            self.router.history_overflowed(),
        );
        if how == Override::Refused {
            self.ctx
                .metrics
                .query_rule_refused
                .with_label_values(&[&*m.name])
                .inc();
        }
        let t = m.action.timeout_ms?;
        Some(self.limits.query_timeout.replace(Duration::from_millis(t)))
    }

    /// The session's current schema: the last `USE` (or COM_INIT_DB) it ran, or the one it
    /// connected with.
    pub(super) fn current_schema(&self) -> Option<String> {
        self.router
            .schema()
            .or_else(|| self.client.database.clone())
    }
}
