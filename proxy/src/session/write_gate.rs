//! A write's pass through the proxy's write gate: while a switchover moves the writer, new
//! writes wait (`routing.switchover_write_wait_ms` at most) and then go to the new primary,
//! instead of failing on an old primary that has just become read-only.

use super::Session;
use crate::context::WritePermit;
use router::{Decision, Target};
use std::time::Duration;

impl Session {
    /// The permit a statement for the primary holds while it runs (`None` for others), or
    /// the message of a write that waited for a switchover longer than allowed.
    pub(super) async fn pass_write_gate(
        &self,
        d: &Decision,
    ) -> Result<Option<WritePermit>, String> {
        if d.target != Target::Primary {
            return Ok(None);
        }
        // A session whose transaction (or other pinned state) lives on the old primary goes
        // on there: it can only finish where it began.
        let pinned = self.anchor.is_some();
        let ctx = &self.ctx;
        let wait_ms = || ctx.config().routing.switchover_write_wait_ms;
        self.view
            .writes
            .enter(pinned, || Duration::from_millis(wait_ms()))
            .await
            .map(Some)
            .map_err(|why| {
                format!(
                    "rwsplit: writes are refused: {why} did not finish within \
                     routing.switchover_write_wait_ms ({} ms)",
                    wait_ms()
                )
            })
    }
}
