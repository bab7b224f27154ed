//! The session's side of read-your-writes (DESIGN §5): the GTID of each of its commits (read
//! from OK packets on its primary connections), what it has read, and for each read the
//! position a replica must have applied to serve it (`routing.consistency`, the user's level,
//! `/* rwsplit:consistency=… */`, `/* rwsplit:after_gtid=… */`). The choice among the replicas
//! that qualify stays the router's; this only says which qualify, waits up to
//! `routing.causal_wait_ms` for one to, and records the outcome.

use super::Session;
use crate::consistency::Positions;
use crate::protocol::relay::Track;
use crate::protocol::session_track::Strip;
use router::config::{QuorumOnTimeout, QuorumWaitFor};
use router::consistency::{Level, Position, Quorum, SessionPositions};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `outcome` label values of `rwsplit_consistent_reads_total`.
pub mod outcome {
    pub const REPLICA: &str = "replica";
    pub const WAITED: &str = "waited";
    pub const PRIMARY: &str = "primary";
}

/// Per-session consistency state.
pub struct Consistency {
    pub positions: Arc<Positions>,
    /// The session's level (user override or `routing.consistency`), read at session start.
    level: Level,
    wait: Duration,
    pub pos: SessionPositions,
    /// The client announced `CLIENT_SESSION_TRACK`.
    client_tracks_state: bool,
    /// The client itself asked the server for the GTID in OK packets (its own
    /// `session_track_system_variables` / `session_track_gtids`): it keeps it.
    client_tracks_gtid: bool,
    /// The replica the last replica read ran on and when it ended: for `monotonic`, another
    /// replica qualifies only once that one's position is known from a poll sent after.
    last_replica: Option<(String, Instant)>,
    /// The current read: its level, requirement, whether it waited.
    pub current: Option<Current>,
    /// `routing.write_quorum` (or the user's), its timeout, what a timeout gives and what a
    /// replica must have done with the commit (see `quorum.rs`).
    pub(super) quorum: Quorum,
    pub(super) quorum_timeout: Duration,
    pub(super) on_timeout: QuorumOnTimeout,
    pub(super) wait_for: QuorumWaitFor,
    /// `SET @rwsplit_after_gtid = '…'`: the position every read of the session demands until
    /// it is cleared or replaced (see `token.rs`), with its text as the client set it.
    pub(super) token: Option<(String, Position)>,
}

/// A read under a consistency level (or with a token), between its planning and its end.
#[derive(Debug, Clone)]
pub struct Current {
    pub level: Level,
    /// What a replica must have applied to serve it (empty: any replica may).
    pub need: Position,
    /// Only this replica may serve it (monotonic: no other one is known to be as new).
    pub only: Option<String>,
    pub waited: bool,
}

impl Current {
    /// The plan of a read meant for a replica at `level`: `None` only for a `lag` read without
    /// a token, which promises nothing and is counted nowhere. Every other read is planned,
    /// even one whose requirement is already met or empty (nothing written or read yet), so
    /// that it is counted under exactly one outcome.
    fn plan(level: Level, token: bool, need: Position, only: Option<String>) -> Option<Current> {
        (level != Level::Lag || token).then_some(Current {
            level,
            need,
            only,
            waited: false,
        })
    }

    /// The `outcome` label of the read once it ran: on a replica at once, on a replica after
    /// waiting for one to catch up, or on the primary.
    fn outcome(&self, on_replica: bool) -> &'static str {
        match (on_replica, self.waited) {
            (false, _) => outcome::PRIMARY,
            (true, true) => outcome::WAITED,
            (true, false) => outcome::REPLICA,
        }
    }
}

impl Consistency {
    pub fn new(
        positions: Arc<Positions>,
        config: &router::config::Config,
        user: Option<&router::config::UserConfig>,
        client_caps: u32,
    ) -> Consistency {
        Consistency {
            positions,
            level: user
                .and_then(|u| u.consistency)
                .unwrap_or(config.routing.consistency),
            wait: Duration::from_millis(config.routing.causal_wait_ms),
            pos: SessionPositions::default(),
            client_tracks_state: client_caps & crate::protocol::consts::cap::SESSION_TRACK != 0,
            client_tracks_gtid: false,
            last_replica: None,
            current: None,
            quorum: user
                .and_then(|u| u.write_quorum)
                .unwrap_or(config.routing.write_quorum),
            quorum_timeout: Duration::from_millis(config.routing.quorum_timeout_ms),
            on_timeout: config.routing.quorum_on_timeout,
            wait_for: config.routing.quorum_wait_for,
            token: None,
        }
    }

    /// What the relay removes from OK packets before this client sees them.
    pub fn strip(&self) -> Strip {
        match (self.client_tracks_state, self.client_tracks_gtid) {
            (false, _) => Strip::All,
            (true, false) => Strip::Gtid,
            (true, true) => Strip::Nothing,
        }
    }
}

/// The statement asks the server for GTIDs in OK packets itself. Only short `SET` statements
/// are looked at (this runs after every statement).
fn mentions_gtid_tracking(sql: &[u8]) -> Option<bool> {
    let start = sql.iter().position(|b| !b.is_ascii_whitespace())?;
    let head = sql.get(start..start + 3)?;
    if sql.len() > 4096 || !(head.eq_ignore_ascii_case(b"set") || head.starts_with(b"/*")) {
        return None;
    }
    let has = |needle: &[u8]| {
        sql.windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle))
    };
    if has(b"session_track_system_variables") {
        return Some(has(b"last_gtid") || has(b"'*'") || has(b"\"*\""));
    }
    if has(b"session_track_gtids") {
        return Some(!has(b"off"));
    }
    None
}

impl Session {
    /// Before a statement runs on connection `h` of server `idx`: a primary connection is
    /// asked to report each commit's GTID, once per connection (a reset forgets it). Errors
    /// only log: without GTIDs the session's reads simply go to the primary.
    pub(super) async fn track_gtids_on(&mut self, h: usize, idx: usize) {
        if self.ctx.topology().primary() != Some(idx) {
            return;
        }
        let Some(held) = self.held.get_mut(h) else {
            return;
        };
        if held.conn.gtid_tracking || !held.conn.session_track() {
            return;
        }
        held.conn.gtid_tracking = true;
        let mariadb = held
            .backend
            .version()
            .is_none_or(|v| v.to_ascii_lowercase().contains("mariadb"));
        let sql: &[u8] = if mariadb {
            b"SET session_track_system_variables = IF(FIND_IN_SET('last_gtid', @@session_track_system_variables), @@session_track_system_variables, CONCAT_WS(',', NULLIF(@@session_track_system_variables, ''), 'last_gtid'))"
        } else {
            b"SET session_track_gtids = IF(@@session_track_gtids = 'ALL_GTIDS', 'ALL_GTIDS', 'OWN_GTID')"
        };
        if let Err(e) = held.conn.query_discard(sql).await {
            tracing::warn!(backend = held.backend.name(), error = %e, "cannot ask the primary for commit GTIDs: reads that must see this session's writes go to the primary");
        }
    }

    /// Plans a read routed to a replica: its requirement, and when no replica has applied it
    /// yet, a wait of up to `routing.causal_wait_ms` for one to. Sets `cons.current`.
    pub(super) async fn plan_read(&mut self) {
        self.cons.current = None;
        let (level, token) = {
            let sql = match self.cmd.first() {
                Some(&crate::protocol::consts::com::QUERY) => &self.cmd[1..],
                _ => &[][..],
            };
            let hints = router::consistency::hints(sql);
            let hinted = hints
                .after_gtid
                .and_then(|t| Position::parse(&String::from_utf8_lossy(t)).ok());
            (
                hints.level.unwrap_or(self.cons.level),
                self.session_token(hinted),
            )
        };
        if level == Level::Lag && token.is_none() {
            return;
        }
        let primary = (level == Level::Causal).then(|| self.cons.positions.primary());
        let mut need = self
            .cons
            .pos
            .requirement(level, token.as_ref(), primary.as_ref());
        let mut only = None;
        if matches!(level, Level::Monotonic | Level::Causal) {
            if let Some((name, ended)) = &self.cons.last_replica {
                // Another replica must be as new as that one was when the read ended.
                match self.cons.positions.replica(name) {
                    Some(a) if a.asked >= *ended => need.merge(&a.position),
                    _ => only = Some(name.clone()),
                }
            }
        }
        let Some(mut current) = Current::plan(level, token.is_some(), need, only) else {
            return;
        };
        if !current.need.is_empty()
            && !self.any_replica_covers(&current)
            && !self.cons.wait.is_zero()
        {
            let started = Instant::now();
            let deadline = tokio::time::Instant::now() + self.cons.wait;
            let mut changes = self.cons.positions.subscribe();
            self.cons.positions.kick();
            loop {
                if tokio::time::timeout_at(deadline, changes.changed())
                    .await
                    .is_err()
                {
                    break;
                }
                if let (Some((name, ended)), true) =
                    (&self.cons.last_replica, current.only.is_some())
                {
                    if let Some(a) = self.cons.positions.replica(name) {
                        if a.asked >= *ended {
                            current.need.merge(&a.position);
                            current.only = None;
                        }
                    }
                }
                if self.any_replica_covers(&current) {
                    current.waited = true;
                    break;
                }
            }
            self.ctx
                .metrics
                .consistency_wait
                .observe(started.elapsed().as_secs_f64());
        }
        self.cons.current = Some(current);
    }

    /// Whether a replica the topology serves reads from has applied the read's requirement.
    fn any_replica_covers(&self, c: &Current) -> bool {
        let topo = self.ctx.topology();
        self.view.backends.iter().enumerate().any(|(i, b)| {
            topo.primary() != Some(i)
                && c.only.as_deref().is_none_or(|o| o == b.name())
                && self.cons.positions.covers(b.name(), &c.need)
        })
    }

    /// Whether server `idx` (index into the configuration's servers) may serve the current read.
    pub(super) fn replica_may_serve(&self, idx: usize) -> bool {
        self.cons.current.is_none()
            || self
                .view
                .backends
                .get(idx)
                .is_some_and(|b| self.may_serve(b.name()))
    }

    /// Takes out of the scratch topology every replica that may not serve the current read.
    pub(super) fn keep_serving_replicas(&mut self) {
        let keep: Vec<bool> = self
            .view
            .snap
            .servers
            .iter()
            .map(|s| self.replica_may_serve(s.idx))
            .collect();
        self.view.snap.retain_servers(|i| keep[i]);
        self.view.snap_generation = None;
    }

    /// Whether backend `name` may serve the current read.
    fn may_serve(&self, name: &str) -> bool {
        match &self.cons.current {
            None => true,
            Some(c) => {
                c.only.as_deref().is_none_or(|o| o == name)
                    && (c.need.is_empty() || self.cons.positions.covers(name, &c.need))
            }
        }
    }

    /// After a statement: records the GTIDs its commits got, what a read observed, and the
    /// read's outcome.
    pub(super) fn after_statement(&mut self, track: &Track, server: Option<&str>, replica: bool) {
        for g in &track.gtids {
            let result = match self.cons.pos.wrote(g) {
                Ok(()) => "tracked",
                Err(_) => "unparsed",
            };
            self.ctx
                .metrics
                .write_gtids
                .with_label_values(&[result])
                .inc();
        }
        let query = self.cmd.first() == Some(&crate::protocol::consts::com::QUERY);
        if let Some(sql) = self.cmd.get(1..).filter(|_| query) {
            if let Some(on) = mentions_gtid_tracking(sql) {
                self.cons.client_tracks_gtid = on;
                // The client's SET replaced ours on that connection: ask again next time.
                for h in self.held.iter_mut() {
                    h.conn.gtid_tracking = false;
                }
            }
        }
        let Some(name) = server else { return };
        if replica {
            if let Some(a) = self.cons.positions.replica(name) {
                self.cons.pos.read_at(&a.position);
            }
            // In place: a read per statement must not allocate the name each time.
            match &mut self.cons.last_replica {
                Some((last, ended)) => {
                    if last != name {
                        last.clear();
                        last.push_str(name);
                    }
                    *ended = Instant::now();
                }
                None => self.cons.last_replica = Some((name.to_string(), Instant::now())),
            }
        } else if track.gtids.is_empty() {
            // A read on the primary saw its newest state: at least what the stream has read.
            let p = self.cons.positions.primary();
            self.cons.pos.read_at(&p);
            self.cons.last_replica = None;
        }
        if let Some(c) = self.cons.current.take() {
            self.ctx
                .metrics
                .consistent_reads
                .with_label_values(&[c.level.as_str(), c.outcome(replica)])
                .inc();
        }
    }

    /// After a read meant for a replica ran on the primary under `monotonic`/`causal`: the
    /// session saw the primary's newest state, which the lag source may not have read yet, so
    /// the primary's own position is asked for on the same connection (after the client has
    /// its answer) and becomes what later reads must not go behind. Returns whether it asked
    /// (the connection's `ROW_COUNT()` and `FOUND_ROWS()` are then those of its question).
    pub(super) async fn observe_primary(&mut self, h: usize) -> bool {
        let Some(c) = &self.cons.current else {
            return false;
        };
        if !matches!(c.level, Level::Monotonic | Level::Causal) {
            return false;
        }
        let Some(held) = self.held.get_mut(h) else {
            return false;
        };
        let mariadb = held
            .backend
            .version()
            .is_none_or(|v| v.to_ascii_lowercase().contains("mariadb"));
        let sql: &[u8] = if mariadb {
            b"SELECT @@gtid_binlog_pos"
        } else {
            b"SELECT @@gtid_executed"
        };
        match held.conn.query_value(sql).await {
            Ok(Some(text)) => {
                if let Ok(p) = Position::parse(&text) {
                    self.cons.pos.read_at(&p);
                }
            }
            Ok(None) => {}
            Err(e) => {
                tracing::debug!(error = %e, "cannot read the primary's position after a read");
            }
        }
        true
    }

    /// Answers `SELECT @@last_gtid` / `SELECT @@rwsplit_last_gtid` itself: the GTID of the
    /// session's last commit through any of its connections (a pooled connection that was
    /// reset, or another one, would answer empty). True when answered.
    pub(super) async fn answer_last_gtid(&mut self) -> Result<bool, super::Error> {
        let Some(sql) = self.cmd.get(1..) else {
            return Ok(false);
        };
        let Some(name) = last_gtid_query(sql) else {
            return Ok(false);
        };
        let value = self.cons.pos.last_gtid.clone().unwrap_or_default();
        let status = self.status_flags();
        let packets = crate::protocol::message::one_value_result(
            name,
            value.as_bytes(),
            self.client.caps,
            status,
        );
        for (seq, p) in packets.iter().enumerate() {
            crate::protocol::packet::write_packet(&mut self.stream, (seq + 1) as u8, p).await?;
        }
        tokio::io::AsyncWriteExt::flush(&mut self.stream).await?;
        Ok(true)
    }
}

/// `SELECT @@last_gtid` (any case, optional `@@session.`, optional trailing `;`) → the column
/// name the server would give it.
fn last_gtid_query(sql: &[u8]) -> Option<&'static str> {
    if sql.len() > 64 {
        return None;
    }
    let text = std::str::from_utf8(sql)
        .ok()?
        .trim()
        .trim_end_matches(';')
        .trim();
    let rest = text
        .get(..6)
        .filter(|s| s.eq_ignore_ascii_case("select"))
        .map(|_| &text[6..])?;
    if !rest.starts_with(|c: char| c.is_ascii_whitespace()) {
        return None;
    }
    // Compared without lowering a copy: every COM_QUERY of 64 bytes or less comes here.
    let var = rest.trim();
    ["@@last_gtid", "@@session.last_gtid", "@@rwsplit_last_gtid"]
        .into_iter()
        .find(|name| var.eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn every_read_but_a_plain_lag_read_is_counted_under_one_outcome() {
        let none = Position::default;
        assert!(Current::plan(Level::Lag, false, none(), None).is_none());
        for level in [Level::ReadYourWrites, Level::Monotonic, Level::Causal] {
            // Nothing demanded yet (no write, nothing read), or already met: still planned.
            let c = Current::plan(level, false, none(), None).expect("planned");
            assert_eq!(c.outcome(true), outcome::REPLICA);
            assert_eq!(c.outcome(false), outcome::PRIMARY);
        }
        let need = Position::parse("0-1-5").expect("gtid");
        let mut c = Current::plan(Level::Lag, true, need, None).expect("a token is planned");
        c.waited = true;
        assert_eq!(c.outcome(true), outcome::WAITED);
        assert_eq!(c.outcome(false), outcome::PRIMARY);
    }

    #[test]
    fn last_gtid_queries_are_recognised_exactly() {
        assert_eq!(last_gtid_query(b"SELECT @@last_gtid"), Some("@@last_gtid"));
        assert_eq!(
            last_gtid_query(b"  select   @@RWSPLIT_LAST_GTID ; "),
            Some("@@rwsplit_last_gtid")
        );
        assert_eq!(last_gtid_query(b"SELECT @@last_gtid, 1"), None);
        assert_eq!(last_gtid_query(b"SELECT@@last_gtid"), None);
        assert_eq!(last_gtid_query(b"SELECT @@last_gtidx"), None);
        assert_eq!(last_gtid_query(b"\xff\xfe"), None);
    }

    #[test]
    fn gtid_tracking_requests_are_noticed() {
        assert_eq!(
            mentions_gtid_tracking(b"SET session_track_system_variables='last_gtid'"),
            Some(true)
        );
        assert_eq!(
            mentions_gtid_tracking(b"SET session_track_system_variables='autocommit'"),
            Some(false)
        );
        assert_eq!(
            mentions_gtid_tracking(b"SET SESSION session_track_gtids=OWN_GTID"),
            Some(true)
        );
        assert_eq!(
            mentions_gtid_tracking(b"SET session_track_gtids=OFF"),
            Some(false)
        );
        assert_eq!(mentions_gtid_tracking(b"SELECT 1"), None);
        assert_eq!(
            mentions_gtid_tracking(b"SELECT 'session_track_gtids=OWN_GTID'"),
            None,
            "only SET statements"
        );
    }
}
