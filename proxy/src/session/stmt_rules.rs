//! Query rules for prepared statements (binary protocol). Without this a `block` rule would be
//! bypassed by COM_STMT_PREPARE + COM_STMT_EXECUTE, which most drivers use.
//!
//! - COM_STMT_PREPARE: the statement's text (with its `?` placeholders) is matched as a
//!   COM_QUERY's would be. A `block` rule answers the prepare with its ERR 1148, exactly as the
//!   text protocol does, and nothing reaches a server; its hit is counted. Any other rule is
//!   only remembered: nothing has run yet.
//! - COM_STMT_EXECUTE: each execution acts on the remembered rule as a COM_QUERY does (route,
//!   `max_lag_ms`, `timeout_ms`) and counts one hit, so an operator reads the same numbers
//!   whichever protocol the application uses. The match is kept per client statement handle
//!   and redone only when the rules may have changed since (a reload: the configuration
//!   generation moved) or, when a rule names a schema, after the session changed schema; a
//!   statement that a reloaded rule blocks is refused at its next execution.

use super::rules::Matched;
use super::{Error, Session};
use std::sync::Arc;

/// The rule a prepared statement matched, and what the match depended on.
pub(super) struct StmtRule {
    /// `Context::config_generation` when matched: another one means re-matching.
    generation: u64,
    /// The schema the match looked at, when a rule names a schema.
    schema: Option<Option<String>>,
    matched: Option<Arc<Matched>>,
}

impl Session {
    /// Matches the statement `sql` being prepared. `Ok(Err(()))`: a rule blocks it and the
    /// client has its answer.
    pub(super) async fn prepare_rule(&mut self, sql: &[u8]) -> Result<Result<StmtRule, ()>, Error> {
        let r = self.rule_for(sql);
        if let Some(m) = r.matched.as_deref().filter(|m| m.blocks()) {
            self.rule_hit(m).await?;
            return Ok(Err(()));
        }
        Ok(Ok(r))
    }

    /// The rule for an execution of the session's statement `id`, re-matched if the rules or
    /// (for schema rules) the schema changed since; counts its hit. `Ok(Err(()))`: blocked,
    /// answered.
    pub(super) async fn execute_rule(
        &mut self,
        id: u32,
    ) -> Result<Result<Option<Arc<Matched>>, ()>, Error> {
        let Some(st) = self.stmts.get(&id) else {
            return Ok(Ok(None));
        };
        let generation = self.ctx.config_generation();
        let fresh = st.rule.generation == generation
            && match &st.rule.schema {
                None => true,
                Some(schema) => *schema == self.current_schema(),
            };
        let matched = if fresh {
            st.rule.matched.clone()
        } else {
            let sql = st.sql_arc();
            let r = self.rule_for(&sql);
            let matched = r.matched.clone();
            if let Some(st) = self.stmts.get_mut(&id) {
                st.rule = r;
            }
            matched
        };
        let Some(m) = matched else {
            return Ok(Ok(None));
        };
        if self.rule_hit(&m).await? {
            return Ok(Err(()));
        }
        Ok(Ok(Some(m)))
    }

    /// Matches `sql` against the current rules. The generation is read before the
    /// configuration: a reload in between makes the next execution match again, never the
    /// reverse (an old match kept under the new generation).
    fn rule_for(&mut self, sql: &[u8]) -> StmtRule {
        let generation = self.ctx.config_generation();
        let config = self.ctx.config();
        if config.rules.is_empty() {
            return StmtRule {
                generation,
                schema: None,
                matched: None,
            };
        }
        let mut digest = std::mem::take(&mut self.digest);
        let found = self.find_rule(&config.rules, sql, &mut digest);
        self.digest = digest;
        StmtRule {
            generation,
            schema: found.schema,
            matched: found.matched.map(Arc::new),
        }
    }
}
