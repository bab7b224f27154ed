//! Top-level `GET [CURRENT] DIAGNOSTICS`: it reads the session's previous statement and
//! assigns user variables, which live on the session's primary connection. It runs there,
//! answering from what the proxy recorded when that connection did not run the previous
//! statement (see `router::classify::get_diagnostics` for the rewrite and why it is exact).
//!
//! Three places the previous statement's connection can be:
//! - held, on the primary: the statement runs there as sent (the server answers exactly), or,
//!   when the proxy ran a statement of its own there since, with the recorded row count;
//! - back in the pool: it left no conditions (a statement that leaves any keeps its
//!   connection), so the recorded row count and an empty list answer;
//! - held on a replica (a read that left warnings, an error or an `SQL_CALC_FOUND_ROWS`
//!   count): its number of conditions is read there (`SELECT @@warning_count`, which leaves the
//!   list as it is) and the statement items are assigned on the primary; condition items
//!   cannot be copied there exactly while that list holds conditions, so the client gets an
//!   error saying so rather than values that differ from a direct connection's.

use super::exec::Outcome;
use super::{Error, Session};
use crate::protocol::consts::code;
use router::classify::{get_diagnostics, Conditions};
use router::{Decision, Effect, Target};

impl Session {
    /// Before a COM_QUERY the router routed as `PreviousBackend`: when it is a `GET
    /// DIAGNOSTICS`, decides where it runs and rewrites `self.cmd` when the values must come
    /// from the proxy's records. `Some` when the proxy answered it (an error) instead.
    pub(super) async fn route_get_diagnostics(
        &mut self,
        d: &mut Decision,
    ) -> Result<Option<Outcome>, Error> {
        // The only statement the router sends to the previous backend that assigns variables
        // (the caller routes only `PreviousBackend` statements here).
        let assigns = self.router.pending_effect() == Some(Effect::UserVariable);
        if !assigns || self.router.in_replica_transaction() {
            // In a read-only transaction on a replica every statement runs there.
            return Ok(None);
        }
        let Some(g) = self.cmd.get(1..).and_then(get_diagnostics) else {
            // A text every server rejects alike (see `get_diagnostics`): where variables live.
            d.target = Target::Primary;
            d.reads_last_statement = false;
            return Ok(None);
        };
        let primary = self.ctx.topology().primary();
        let held = self
            .previous
            .as_ref()
            .and_then(|p| self.held.iter().position(|h| p.is(h)));
        let conditions = match held {
            Some(i) if Some(self.held[i].backend.index) == primary => {
                if !self.last_disturbed || g.reads_conditions() {
                    // Its connection holds the session's list and values: it answers.
                    return Ok(None);
                }
                Conditions::Server
            }
            Some(i) => {
                let count = self.held[i]
                    .conn
                    .query_value(b"SELECT @@warning_count")
                    .await;
                // The connection ran a statement of the proxy's: ROW_COUNT() and FOUND_ROWS()
                // there are no longer the session's.
                self.last_disturbed = true;
                let count = match count {
                    Ok(Some(v)) => v.parse::<u64>().ok(),
                    Ok(None) => None,
                    Err(e) => {
                        tracing::debug!(backend = self.held[i].backend.name(), error = %e, "cannot read the previous statement's warning count");
                        None
                    }
                };
                match count {
                    Some(n) if n == 0 || !g.reads_conditions() => Conditions::Count(n),
                    Some(_) => {
                        let msg = "rwsplit: GET DIAGNOSTICS CONDITION after a statement that \
                                   left conditions on a replica cannot set user variables on \
                                   the session's primary connection; read them with SHOW \
                                   WARNINGS, or send that statement to the primary \
                                   (/* rwsplit:primary */)";
                        return self.refuse_get_diagnostics(msg).await.map(Some);
                    }
                    None => {
                        let msg = "rwsplit: GET DIAGNOSTICS: cannot read the previous \
                                   statement's conditions from its replica connection";
                        return self.refuse_get_diagnostics(msg).await.map(Some);
                    }
                }
            }
            None => Conditions::Count(0),
        };
        let Some(row_count) = self.last.row_count else {
            d.target = Target::Primary;
            d.reads_last_statement = false;
            return Ok(None);
        };
        let mut out = std::mem::take(&mut self.out);
        out.clear();
        out.push(self.cmd[0]);
        g.rewrite(&self.cmd[1..], row_count, conditions, &mut out);
        std::mem::swap(&mut self.cmd, &mut out);
        self.out = out;
        self.diagnostics_rewritten = true;
        d.target = Target::Primary;
        d.reads_last_statement = false;
        Ok(None)
    }

    /// Answers the statement with an error instead of values a direct connection would not
    /// give (DESIGN §5b: where the proxy cannot keep the promise, the client hears so).
    async fn refuse_get_diagnostics(&mut self, msg: &str) -> Result<Outcome, Error> {
        let (c, st) = code::ER_NOT_SUPPORTED_YET;
        self.send_err(1, c, st, msg).await?;
        Ok(Outcome::Failed(c))
    }
}
