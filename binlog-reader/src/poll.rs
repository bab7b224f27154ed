//! Polls one replica's applied position with the cheapest query the server offers (`SELECT
//! @@gtid_slave_pos` on MariaDB, `SELECT @@gtid_executed` on MySQL) at the [`Pace`] its state
//! calls for (every `poll_interval_ms` when caught up, every `fast_poll_interval_ms` while it
//! is behind a recent commit, at once when a session waits), and its replication status
//! (IO/SQL threads, IO position, Seconds_Behind_Master) at a slower cadence. A failed or slow
//! poll makes the replica's lag unknown at once.

mod pace;

pub use pace::{Pace, FAST_FOR};

use crate::position::{self, Watermarks, FILE_POS_KEY};
use crate::state::{lock, now_us, Shared};
use crate::stream::{connect, Target};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The least time between two polls of one replica when sessions ask for polls.
const MIN_GAP: Duration = Duration::from_millis(1);

/// How often the (heavier) replication status is read, at most.
const STATUS_EVERY: Duration = Duration::from_millis(500);

/// Polls replica `index` of `shared.replicas` forever.
pub async fn run(shared: Arc<Shared>, index: usize, target: Target) {
    let mut backoff = shared.settings.poll_interval;
    loop {
        match connect(
            &target,
            shared.settings.poll_timeout.max(Duration::from_secs(1)),
        )
        .await
        {
            Ok(conn) => {
                backoff = shared.settings.poll_interval;
                let e = poll_loop(&shared, index, conn).await;
                fail(&shared, index, e);
            }
            Err(e) => fail(&shared, index, e.to_string()),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

fn fail(shared: &Shared, index: usize, error: String) {
    let Some((name, slot)) = shared.replicas.get(index) else {
        return;
    };
    shared
        .metrics
        .poll_errors
        .with_label_values(&[name.as_str()])
        .inc();
    let mut r = lock(slot);
    if r.reachable || r.error.as_deref() != Some(error.as_str()) {
        tracing::warn!(replica = %name, %error, "replica cannot be polled; its lag is unknown");
    }
    r.reachable = false;
    r.error = Some(error);
}

async fn timed<T>(
    limit: Duration,
    what: &str,
    f: impl std::future::Future<Output = mysql_async::Result<T>>,
) -> Result<T, String> {
    match tokio::time::timeout(limit, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(format!("{what}: {e}")),
        Err(_) => Err(format!("{what}: no answer within {limit:?}")),
    }
}

/// Polls until something fails; returns the failure.
async fn poll_loop(shared: &Shared, index: usize, mut conn: Conn) -> String {
    let limit = shared.settings.poll_timeout;
    let version: String = match timed(
        limit,
        "SELECT @@version",
        conn.query_first("SELECT @@version"),
    )
    .await
    {
        Ok(v) => v.unwrap_or_default(),
        Err(e) => return e,
    };
    let mariadb = version.to_ascii_lowercase().contains("mariadb");
    let applied_sql = if mariadb {
        "SELECT @@gtid_slave_pos"
    } else {
        "SELECT @@gtid_executed"
    };
    let pace = Pace {
        slow: shared.settings.poll_interval,
        fast: shared.settings.fast_poll_interval,
    };
    let mut tick = tokio::time::interval(pace.slow);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_status: Option<Instant> = None;
    let slot = &shared.replicas[index].1;
    let polls = shared
        .metrics
        .polls
        .with_label_values(&[shared.replicas[index].0.as_str()]);
    let mut kicks = shared.kick.subscribe();
    let mut commits = shared.committed.subscribe();
    let mut last_poll: Option<Instant> = None;
    let mut last_news = Instant::now();
    // When a session last asked for a poll (it waits for a position).
    let mut kicked_at: Option<Instant> = None;
    // A fast poll is due then (the replica is behind a recent commit, or one just arrived).
    let mut due: Option<tokio::time::Instant> = None;
    loop {
        // The slow tick, a due fast poll, or sooner when a session waits for a position (but
        // never two polls within MIN_GAP: many waiting sessions cost one poll stream, not one
        // poll each). A commit while caught up makes a fast poll due: the replica has it to
        // apply, and will have within about one fast interval on a healthy topology.
        let mut fast_poll = false;
        tokio::select! {
            _ = tick.tick() => {}
            _ = tokio::time::sleep_until(due.unwrap_or_else(tokio::time::Instant::now)), if due.is_some() => {
                fast_poll = true;
            }
            r = commits.changed(), if due.is_none() && pace.fast.is_some() => {
                match (r, pace.fast) {
                    // Without GTIDs (file/position) a poll cannot tell whether the replica
                    // has applied the commit: the slow pace then.
                    (Ok(()), Some(fast)) => {
                        if !lock(&shared.primary).gtid_seq.is_empty() {
                            due = Some(tokio::time::Instant::now() + fast);
                        }
                    }
                    _ => {
                        tick.tick().await;
                    }
                }
                continue;
            }
            r = kicks.changed() => {
                if r.is_err() {
                    tick.tick().await;
                }
                kicked_at = Some(Instant::now());
                if let Some(gap) = last_poll.map(|t| MIN_GAP.saturating_sub(t.elapsed())) {
                    tokio::time::sleep(gap).await;
                }
            }
        }
        last_poll = Some(Instant::now());
        polls.inc();
        let cutoff = lock(&shared.timeline).next_index();
        let asked = Instant::now();
        let text: String = match timed(limit, applied_sql, conn.query_first(applied_sql)).await {
            Ok(v) => v.unwrap_or_default(),
            Err(e) => return e,
        };
        let polled_at_us = now_us();
        let parsed = if mariadb {
            position::mariadb_watermarks(&text)
        } else {
            position::mysql_watermarks(&text)
        };
        let mut applied = match parsed {
            Ok(w) => w,
            Err(e) => return e.to_string(),
        };
        // Also right after the stream caught up: IO positions read before it are not usable.
        // (One lock at a time: the stream takes primary → timeline, snapshots timeline → replica.)
        let (caught_up_index, stream_down) = {
            let p = lock(&shared.primary);
            (p.caught_up_index, !p.connected)
        };
        let io_stale = lock(slot).io_cutoff < caught_up_index;
        // While the stream is down, whether the replica still receives decides whether it can
        // be measured at all (primary down, DESIGN §3.1): ask at every poll, not every 500 ms.
        let need_status = text.trim().is_empty()
            || io_stale
            || stream_down
            || status_wanted(shared)
            || last_status.is_none_or(|t| t.elapsed() >= STATUS_EVERY);
        let mut status = None;
        if need_status {
            let io_cutoff = lock(&shared.timeline).next_index();
            let io_asked = Instant::now();
            match read_status(&mut conn, mariadb, limit).await {
                Ok(s) => status = Some((s, io_cutoff, now_us(), io_asked)),
                Err(e) => return e,
            }
            last_status = Some(Instant::now());
        }
        let mut applied_text = text.trim().replace('\n', "");
        if applied.is_empty() {
            // No GTIDs: fall back to the executed file/position.
            if let Some(Some(e)) = status.as_ref().map(|(s, ..)| s.exec_pos) {
                applied.insert(FILE_POS_KEY.to_string(), e);
                if let Some((s, ..)) = &status {
                    applied_text = s.exec_text.clone();
                }
            }
        }
        // Commits seen from here on wake the loop; those before are in the comparison.
        commits.borrow_and_update();
        let behind = {
            let p = lock(&shared.primary);
            pace.after_poll(
                &applied,
                &p.gtid_seq,
                p.last_commit_at.map(|t| t.elapsed()),
                kicked_at.map(|t| t.elapsed()),
            )
        };
        let mut r = lock(slot);
        // A fast poll that found the replica where it was has nothing to tell sessions or
        // proxies (the replica is still behind): it wakes no one. Slow and asked-for polls
        // always do, and any poll a slow interval after the last that did, so positions are
        // never older than the slow pace to those who follow.
        let news = !fast_poll
            || !r.reachable
            || r.applied.as_ref() != Some(&applied)
            || last_news.elapsed() >= pace.slow;
        r.reachable = true;
        r.error = None;
        r.applied = Some(applied);
        r.applied_text = Some(applied_text);
        r.cutoff = cutoff;
        r.polled_at_us = polled_at_us;
        r.polled_instant = Some(Instant::now());
        r.asked_instant = Some(asked);
        if let Some((s, io_cutoff, at, io_asked)) = status {
            r.io_running = s.io_running;
            r.sql_running = s.sql_running;
            r.seconds_behind_master = s.seconds_behind_master;
            // The IO thread has received at least what the SQL thread applied (MariaDB leaves
            // Gtid_IO_Pos empty until the first transaction after it connects).
            let mut io = s.io_pos.unwrap_or_default();
            for (k, done) in r.applied.iter().flatten() {
                let e = io.entry(k.clone()).or_insert(0);
                *e = (*e).max(*done);
            }
            r.io_applied = Some(io);
            r.io_asked_instant = Some(io_asked);
            r.io_cutoff = io_cutoff;
            r.io_polled_at_us = at;
        }
        drop(r);
        due = behind.map(|fast| tokio::time::Instant::from_std(asked + fast));
        tick.reset();
        if news {
            last_news = Instant::now();
            shared.polled.send_modify(|n| *n = n.wrapping_add(1));
        }
    }
}

/// Whether a session asked for fresh received positions lately (see
/// `Shared::status_wanted_until_us`).
fn status_wanted(shared: &Shared) -> bool {
    now_us()
        < shared
            .status_wanted_until_us
            .load(std::sync::atomic::Ordering::Relaxed)
}

/// The parts of SHOW SLAVE/REPLICA STATUS the reader uses.
struct Status {
    io_running: Option<bool>,
    sql_running: Option<bool>,
    seconds_behind_master: Option<u64>,
    io_pos: Option<Watermarks>,
    exec_pos: Option<u64>,
    exec_text: String,
}

fn col(row: &Row, names: &[&str]) -> Option<String> {
    names
        .iter()
        .find_map(|n| row.get_opt::<Option<String>, _>(*n).and_then(Result::ok))
        .flatten()
}

async fn read_status(conn: &mut Conn, mariadb: bool, limit: Duration) -> Result<Status, String> {
    let row: Option<Row> = if mariadb {
        timed(
            limit,
            "SHOW SLAVE STATUS",
            conn.query_first("SHOW SLAVE STATUS"),
        )
        .await?
    } else {
        match timed(
            limit,
            "SHOW REPLICA STATUS",
            conn.query_first("SHOW REPLICA STATUS"),
        )
        .await
        {
            Ok(r) => r,
            Err(_) => {
                timed(
                    limit,
                    "SHOW SLAVE STATUS",
                    conn.query_first("SHOW SLAVE STATUS"),
                )
                .await?
            }
        }
    };
    let Some(row) = row else {
        // Not configured as a replica.
        return Ok(Status {
            io_running: Some(false),
            sql_running: Some(false),
            seconds_behind_master: None,
            io_pos: None,
            exec_pos: None,
            exec_text: String::new(),
        });
    };
    Ok(status_from(mariadb, |names| col(&row, names)))
}

/// The status from one row of SHOW SLAVE/REPLICA STATUS, given as its column lookup (first of
/// `names` present, `None` for NULL): separate from the query so that both flavours' column
/// sets are tested on rows built by hand (no MySQL server here).
fn status_from(mariadb: bool, col: impl Fn(&[&str]) -> Option<String>) -> Status {
    let yes = |v: Option<String>| v.map(|s| s.eq_ignore_ascii_case("yes"));
    let io_running = yes(col(&["Slave_IO_Running", "Replica_IO_Running"]));
    let sql_running = yes(col(&["Slave_SQL_Running", "Replica_SQL_Running"]));
    let seconds_behind_master =
        col(&["Seconds_Behind_Master", "Seconds_Behind_Source"]).and_then(|s| s.parse().ok());
    let io_pos = if mariadb {
        col(&["Gtid_IO_Pos"]).and_then(|s| position::mariadb_watermarks(&s).ok())
    } else {
        col(&["Retrieved_Gtid_Set"])
            .filter(|s| !s.trim().is_empty())
            .and_then(|s| position::mysql_watermarks(&s).ok())
    };
    let read_file = col(&["Master_Log_File", "Source_Log_File"]);
    let read_pos =
        col(&["Read_Master_Log_Pos", "Read_Source_Log_Pos"]).and_then(|s| s.parse().ok());
    let io_pos = io_pos.filter(|w| !w.is_empty()).or_else(|| {
        let e = position::encode_file_pos(&read_file?, read_pos?)?;
        Some([(FILE_POS_KEY.to_string(), e)].into_iter().collect())
    });
    let exec_file = col(&["Relay_Master_Log_File", "Relay_Source_Log_File"]);
    let exec_p: Option<u64> =
        col(&["Exec_Master_Log_Pos", "Exec_Source_Log_Pos"]).and_then(|s| s.parse().ok());
    let exec_text = match (&exec_file, exec_p) {
        (Some(f), Some(p)) => format!("{f}:{p}"),
        _ => String::new(),
    };
    let exec_pos = exec_file.and_then(|f| position::encode_file_pos(&f, exec_p?));
    Status {
        io_running,
        sql_running,
        seconds_behind_master,
        io_pos,
        exec_pos,
        exec_text,
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use std::collections::HashMap;

    fn row(cols: &[(&str, &str)]) -> impl Fn(&[&str]) -> Option<String> {
        let m: HashMap<String, String> = cols
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |names: &[&str]| names.iter().find_map(|n| m.get(*n).cloned())
    }

    const U: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562";

    #[test]
    fn mysql_received_position_is_the_retrieved_gtid_set() {
        // SHOW REPLICA STATUS (MySQL 8.4 names) with the SQL thread stopped: received 1-9,
        // executed 1-5.
        let retrieved = format!("{U}:1-9");
        let executed = format!("{U}:1-5");
        let s = status_from(
            false,
            row(&[
                ("Replica_IO_Running", "Yes"),
                ("Replica_SQL_Running", "No"),
                ("Retrieved_Gtid_Set", retrieved.as_str()),
                ("Executed_Gtid_Set", executed.as_str()),
                ("Source_Log_File", "binlog.000002"),
                ("Read_Source_Log_Pos", "4242"),
            ]),
        );
        assert_eq!((s.io_running, s.sql_running), (Some(true), Some(false)));
        assert_eq!(s.io_pos.and_then(|w| w.get(U).copied()), Some(9));
        // MySQL 5.7 names, tagged GTIDs (8.3+).
        let retrieved = format!("{U}:1-3:fast:1-7");
        let s = status_from(
            false,
            row(&[
                ("Slave_IO_Running", "Yes"),
                ("Retrieved_Gtid_Set", retrieved.as_str()),
            ]),
        );
        let io = s.io_pos.unwrap_or_default();
        assert_eq!(io.get(U), Some(&3));
        assert_eq!(io.get(&format!("{U}:fast")), Some(&7));
    }

    #[test]
    fn mysql_without_gtids_receives_by_file_and_position() {
        let s = status_from(
            false,
            row(&[
                ("Retrieved_Gtid_Set", ""),
                ("Source_Log_File", "binlog.000002"),
                ("Read_Source_Log_Pos", "4242"),
            ]),
        );
        let io = s.io_pos.unwrap_or_default();
        assert_eq!(
            io.get(FILE_POS_KEY).copied(),
            position::encode_file_pos("binlog.000002", 4242)
        );
    }

    #[test]
    fn mariadb_received_position_is_gtid_io_pos() {
        let s = status_from(
            true,
            row(&[
                ("Slave_IO_Running", "Yes"),
                ("Slave_SQL_Running", "No"),
                ("Gtid_IO_Pos", "0-1-42,1-2-7"),
                ("Seconds_Behind_Master", "NULL-is-not-a-number"),
            ]),
        );
        let io = s.io_pos.unwrap_or_default();
        assert_eq!((io.get("0"), io.get("1")), (Some(&42), Some(&7)));
        assert_eq!(s.seconds_behind_master, None);
    }
}
