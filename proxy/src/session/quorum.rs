//! Write quorum (issue 10): the packet that ends a response that committed something on the
//! primary is held back (see `protocol::relay::Track`) until `routing.write_quorum` replicas
//! have applied, or with `routing.quorum_wait_for: received` received, the commit's GTIDs, or
//! until `routing.quorum_timeout_ms`. Then the client gets an ERR that says the write is
//! committed all the same, or (`quorum_on_timeout: warning`) the held packet with one warning
//! more, which `SHOW WARNINGS` then tells (see `warnings.rs`).

use super::warnings::OwnWarning;
use super::Session;
use crate::consistency::Positions;
use crate::protocol::consts::{code, com};
use crate::protocol::message;
use crate::protocol::packet::write_packet;
use crate::protocol::relay::Track;
use router::config::{QuorumOnTimeout, QuorumWaitFor};
use router::consistency::{Position, Quorum};
use std::time::Instant;

/// `result` label values of `rwsplit_write_quorum_waits_total`.
mod result {
    pub const REACHED: &str = "reached";
    pub const TIMEOUT: &str = "timeout";
}

/// What became of one held commit.
struct Wait {
    /// Replicas that had the commit when the wait ended.
    have: usize,
    required: usize,
}

impl Session {
    /// The relay's OK-packet handling for the current statement on server `idx`: on the
    /// primary with a write quorum, the end of a response that committed something is held
    /// back (see [`Self::release_held`]).
    pub(super) fn track(&self, idx: usize) -> Track {
        let mut t = Track::new(self.cons.strip());
        if self.ctx.topology().primary() == Some(idx) {
            t.hold = self.statement_quorum() != Quorum::Off;
        }
        t
    }

    /// The write quorum of the current statement: its hint, else the session's.
    fn statement_quorum(&self) -> Quorum {
        let hinted = match self.cmd.first() {
            Some(&com::QUERY) => router::consistency::hints(&self.cmd[1..]).quorum,
            _ => None,
        };
        hinted.unwrap_or(self.cons.quorum)
    }

    /// Sends the packet the relay held back once the quorum of replicas has the statement's
    /// GTIDs, or at `routing.quorum_timeout_ms` what `routing.quorum_on_timeout` says.
    /// `h` is the held connection the statement ran on.
    pub(super) async fn release_held(
        &mut self,
        track: &mut Track,
        h: usize,
    ) -> Result<(), super::Error> {
        let Some((seq, mut end)) = track.held.take() else {
            return Ok(());
        };
        let mut need = Position::default();
        for g in &track.gtids {
            if let Ok(p) = Position::parse(g) {
                need.merge(&p);
            }
        }
        let started = Instant::now();
        let wait = self.wait_for_quorum(&need).await;
        let reached = wait.have >= wait.required;
        let m = &self.ctx.metrics;
        m.quorum_wait.observe(started.elapsed().as_secs_f64());
        m.quorum_waits
            .with_label_values(&[if reached {
                result::REACHED
            } else {
                result::TIMEOUT
            }])
            .inc();
        if reached {
            write_packet(&mut self.stream, seq, &end).await?;
            return Ok(());
        }
        let gtid = track.gtids.join(",");
        let text = self.quorum_timeout_text(&gtid, &wait);
        // An ERR that ends the response already tells the client the statement failed; it is
        // sent as it is (the quorum's outcome is logged).
        let failed = end.first() == Some(&0xff);
        let warn = self.cons.on_timeout == QuorumOnTimeout::Warning && !failed;
        match warn.then(|| message::add_warning(&mut end)).flatten() {
            Some(backend_warnings) => {
                tracing::warn!(%gtid, have = wait.have, required = wait.required, "write quorum not reached in routing.quorum_timeout_ms: the client gets its OK with a warning (routing.quorum_on_timeout: warning)");
                let (c, _) = code::ER_UNKNOWN_ERROR;
                self.own_warning = Some(OwnWarning::new(c, text));
                write_packet(&mut self.stream, seq, &end).await?;
                self.keep_backend_warnings(h, backend_warnings).await;
            }
            None if failed => {
                tracing::warn!(%gtid, have = wait.have, required = wait.required, "write quorum not reached in routing.quorum_timeout_ms; the statement ended with an error of its own, sent as it is");
                write_packet(&mut self.stream, seq, &end).await?;
            }
            None => {
                let (c, st) = code::ER_UNKNOWN_ERROR;
                let p = message::err_payload(c, st, &text);
                write_packet(&mut self.stream, seq, &p).await?;
            }
        }
        Ok(())
    }

    /// "rwsplit: the write is committed on the primary … but only K of the N replicas …".
    fn quorum_timeout_text(&self, gtid: &str, wait: &Wait) -> String {
        format!(
            "rwsplit: the write is committed on the primary (GTID {gtid}) but only {} of the {} replicas routing.write_quorum requires {} it within {} ms (routing.quorum_timeout_ms); it was not rolled back",
            wait.have,
            wait.required,
            self.cons.wait_for.as_str(),
            self.cons.quorum_timeout.as_millis()
        )
    }

    /// Waits until the statement's quorum of replicas has `need` (applied or received, per
    /// `routing.quorum_wait_for`), at most `routing.quorum_timeout_ms`; asks the position
    /// source for fresh positions whenever the quorum is not there yet.
    async fn wait_for_quorum(&self, need: &Position) -> Wait {
        let topo = self.ctx.topology();
        let replicas: Vec<String> = self
            .view
            .backends
            .iter()
            .enumerate()
            .filter(|(i, _)| topo.primary() != Some(*i))
            .map(|(_, b)| b.name().to_string())
            .collect();
        drop(topo);
        let required = self.statement_quorum().required(replicas.len());
        let positions: &Positions = &self.cons.positions;
        let wait_for = self.cons.wait_for;
        let count = |p: &Positions| {
            replicas
                .iter()
                .filter(|r| match wait_for {
                    QuorumWaitFor::Applied => p.covers(r, need),
                    QuorumWaitFor::Received => p.covers_received(r, need),
                })
                .count()
        };
        let ask = || match wait_for {
            QuorumWaitFor::Applied => positions.kick(),
            QuorumWaitFor::Received => positions.kick_received(),
        };
        let deadline = tokio::time::Instant::now() + self.cons.quorum_timeout;
        let mut changes = positions.subscribe();
        let mut have = count(positions);
        while have < required {
            ask();
            if tokio::time::timeout_at(deadline, changes.changed())
                .await
                .is_err()
            {
                break;
            }
            have = count(positions);
        }
        Wait { have, required }
    }
}
