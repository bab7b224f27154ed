//! Role, writer and split-brain derivation cases (DESIGN §3.6, §7).

use super::*;
use crate::health::check::Replication;
use router::choice::Choice;
use std::time::Duration;

const YAML: &str = "servers:
  - {name: p, host: 127.0.0.1, port: 3340, role: primary}
  - {name: r1, host: 127.0.0.1, port: 3341, role: replica}
  - {name: r2, host: 127.0.0.1, port: 3342, role: replica}
monitor: {user: m}
proxy: {}
";

fn config() -> Config {
    Config::from_yaml("t.yaml", YAML).expect("valid")
}

fn primary(read_only: bool) -> Option<Sample> {
    Some(Sample {
        result: Ok(Observed {
            read_only,
            replication: None,
        }),
        lag_ms: None,
        started: Instant::now(),
        at: Instant::now(),
    })
}

fn replica(read_only: bool, sql_running: bool, lag_ms: Option<u64>) -> Option<Sample> {
    Some(Sample {
        result: Ok(Observed {
            read_only,
            replication: Some(Replication {
                source_host: "127.0.0.1".into(),
                source_port: Some(3340),
                io_running: true,
                sql_running,
                seconds_behind: Some(0),
            }),
        }),
        lag_ms,
        started: Instant::now(),
        at: Instant::now(),
    })
}

fn down() -> Option<Sample> {
    Some(Sample {
        result: Err(CheckError::Connect("refused".into())),
        lag_ms: None,
        started: Instant::now(),
        at: Instant::now(),
    })
}

#[test]
fn healthy_topology_has_the_configured_primary() {
    let c = config();
    let t = derive(
        &c,
        &[
            primary(false),
            replica(true, true, Some(5)),
            replica(true, true, Some(7)),
        ],
        &Topology::initial(&c),
    );
    assert_eq!(t.primary(), Some(0));
    assert!(t.write_block.is_none());
    assert_eq!(t.servers[1].lag_ms, Some(5));
    assert_eq!(t.servers[1].role, ObservedRole::Replica);
    assert!(t.router.servers[1].replicating);
    assert!(
        t.router.servers[1].lag_gate.serving(),
        "{:?}",
        t.router.servers[1]
    );
}

#[test]
fn writes_follow_a_read_only_flip() {
    let c = config();
    // r1 promoted: replication reset, read_only off; old primary set read_only.
    let t = derive(
        &c,
        &[primary(true), primary(false), replica(true, true, Some(1))],
        &Topology::initial(&c),
    );
    assert_eq!(t.primary(), Some(1));
    assert_eq!(t.servers[0].role, ObservedRole::Replica);
    assert_eq!(t.router.servers[1].role, Role::Primary);
    assert_eq!(t.router.servers[0].role, Role::Replica);
}

#[test]
fn writable_replica_is_never_promoted() {
    let c = config();
    let t = derive(
        &c,
        &[
            primary(false),
            replica(false, true, Some(0)),
            replica(true, true, Some(0)),
        ],
        &Topology::initial(&c),
    );
    assert_eq!(t.primary(), Some(0));
    assert_eq!(t.servers[1].role, ObservedRole::Replica);
}

#[test]
fn two_writable_roots_are_split_brain_and_block_writes() {
    let c = config();
    let first = derive(
        &c,
        &[primary(false), primary(false), replica(true, true, Some(0))],
        &Topology::initial(&c),
    );
    assert!(
        !first.split_brain,
        "not declared on samples of different moments"
    );
    assert_eq!(first.primary(), None, "but no writes meanwhile");
    assert!(first.write_block.is_some());
    std::thread::sleep(std::time::Duration::from_millis(2));
    let t = derive(
        &c,
        &[primary(false), primary(false), replica(true, true, Some(0))],
        &first,
    );
    assert!(t.split_brain);
    assert_eq!(t.primary(), None);
    let msg = t.write_block.expect("writes blocked");
    assert!(
        msg.contains("split brain") && msg.contains("p and r1"),
        "{msg}"
    );
}

#[test]
fn a_switchover_seen_mid_way_is_not_split_brain() {
    let c = config();
    let mid = derive(
        &c,
        &[primary(false), primary(false), replica(true, true, Some(0))],
        &Topology::initial(&c),
    );
    let after = derive(
        &c,
        &[primary(true), primary(false), replica(true, true, Some(0))],
        &mid,
    );
    assert!(!after.split_brain);
    assert_eq!(after.primary(), Some(1));
    assert!(after.write_block.is_none());
    assert!(after.split_suspected_at.is_none());
}

#[test]
fn unchecked_primary_stays_the_write_target_until_checked() {
    let c = config();
    let t = derive(
        &c,
        &[
            None,
            replica(true, true, Some(0)),
            replica(true, true, Some(0)),
        ],
        &Topology::initial(&c),
    );
    assert_eq!(t.primary(), Some(0));
    assert!(t.primary_down.is_none());
}

/// A replica whose IO thread stopped (the primary is gone) and whose SQL thread runs.
fn orphan(sql_running: bool, lag_ms: Option<u64>) -> Option<Sample> {
    let mut s = replica(true, sql_running, lag_ms)?;
    if let Ok(o) = &mut s.result {
        if let Some(r) = &mut o.replication {
            r.io_running = false;
            r.seconds_behind = None;
        }
    }
    Some(s)
}

fn healthy(c: &Config) -> Topology {
    derive(
        c,
        &[
            primary(false),
            replica(true, true, Some(0)),
            replica(true, true, Some(0)),
        ],
        &Topology::initial(c),
    )
}

#[test]
fn primary_down_refuses_writes_with_the_reason_and_replicas_keep_serving() {
    let c = config();
    let before = healthy(&c);
    let t = derive(
        &c,
        &[down(), orphan(true, Some(0)), orphan(true, Some(250))],
        &before,
    );
    assert_eq!(t.primary(), None);
    let d = t.primary_down.expect("primary down");
    assert_eq!((d.server, d.reads), (0, true));
    let why = t.write_block.as_deref().expect("writes refused");
    assert!(
        why.starts_with("no writable primary (primary down since "),
        "{why}"
    );
    assert!(why.contains("refused"), "names the check's error: {why}");
    for i in [1, 2] {
        assert!(
            t.router.servers[i].replicating,
            "{i}: {:?}",
            t.router.servers[i]
        );
        assert!(t.router.servers[i].lag_gate.serving(), "{i}");
    }
    assert_eq!(
        t.servers[2].lag_ms,
        Some(250),
        "a replica behind keeps its lag"
    );
    // The next round keeps the moment it went down.
    let again = derive(
        &c,
        &[down(), orphan(true, Some(0)), orphan(true, Some(0))],
        &t,
    );
    assert_eq!(again.primary_down.map(|d| d.since), Some(d.since));
    // A replica that stopped applying, or whose lag is unknown, is out.
    let t = derive(
        &c,
        &[down(), orphan(false, Some(0)), orphan(true, None)],
        &before,
    );
    assert!(!t.router.servers[1].replicating);
}

#[test]
fn stopped_io_thread_with_the_primary_up_leaves_rotation() {
    let c = config();
    let mut before = healthy(&c);
    before.servers[1].last_lag = Some((5, Instant::now()));
    // The replica lost its IO thread after the primary's last check began: the primary may
    // be down; until its next check the replica serves on a growing bound of its lag.
    let r1 = orphan(true, Some(0));
    let r2 = replica(true, true, Some(0));
    let pending = derive(
        &c,
        &[before_now(primary(false)), r1.clone(), r2.clone()],
        &before,
    );
    assert!(pending.router.servers[1].replicating);
    assert!(
        pending.servers[1].lag_ms.is_some_and(|l| l >= 5),
        "the bound, not the source's 0"
    );
    // A check of the primary begun after that answers: it is up, the replica leaves.
    std::thread::sleep(Duration::from_millis(2));
    let t = derive(&c, &[primary(false), r1, r2], &pending);
    assert_eq!(t.primary(), Some(0));
    assert!(t.primary_down.is_none());
    assert!(!t.router.servers[1].replicating);
    assert_eq!(t.servers[1].lag_ms, None);
}

/// `sample` as if its check had begun a moment ago.
fn before_now(sample: Option<Sample>) -> Option<Sample> {
    let mut s = sample?;
    s.started -= Duration::from_millis(50);
    Some(s)
}

#[test]
fn blind_lag_source_right_after_the_outage_carries_a_growing_upper_bound() {
    let c = config();
    let mut before = healthy(&c);
    // Measured 40 ms before this round.
    let at = Instant::now() - Duration::from_millis(40);
    before.servers[1].last_lag = Some((5, at));
    let t = derive(
        &c,
        &[down(), orphan(true, None), orphan(true, Some(0))],
        &before,
    );
    let lag = t.servers[1].lag_ms.expect("bounded, not unknown");
    assert!(lag >= 45, "last lag plus the time since: {lag}");
    assert!(t.router.servers[1].replicating);
}

#[test]
fn primary_down_read_ms_bounds_reads_without_a_primary() {
    let yaml = YAML.replace("proxy: {}", "proxy: {}\nrouting: {primary_down_read_ms: 0}");
    let c = Config::from_yaml("t.yaml", &yaml).expect("valid");
    let t = derive(
        &c,
        &[down(), orphan(true, Some(0)), orphan(true, Some(0))],
        &healthy(&c),
    );
    assert_eq!(t.primary_down.map(|d| d.reads), Some(false));
    assert!(!t.router.servers[1].replicating && !t.router.servers[2].replicating);
}

#[test]
fn writes_come_back_with_the_primary_or_follow_a_new_writer() {
    let c = config();
    let down_t = derive(
        &c,
        &[down(), orphan(true, Some(0)), orphan(true, Some(0))],
        &healthy(&c),
    );
    let back = derive(
        &c,
        &[
            primary(false),
            replica(true, true, Some(0)),
            replica(true, true, Some(0)),
        ],
        &down_t,
    );
    assert_eq!(back.primary(), Some(0));
    assert!(back.primary_down.is_none() && back.write_block.is_none());
    // Promoted by hand while the old primary is down: r2 writable and replicating from no one.
    let moved = derive(
        &c,
        &[down(), replica(true, true, Some(0)), primary(false)],
        &down_t,
    );
    assert_eq!(moved.primary(), Some(2));
    assert!(moved.primary_down.is_none() && moved.write_block.is_none());
    // The old primary returns writable but replicating from the new one: fenced.
    let returned = derive(
        &c,
        &[
            replica(false, true, Some(0)),
            replica(true, true, Some(0)),
            primary(false),
        ],
        &moved,
    );
    assert_eq!(returned.primary(), Some(2));
    assert_eq!(returned.router.servers[0].role, Role::Replica);
}

#[test]
fn all_read_only_blocks_writes_with_a_reason() {
    let c = config();
    let t = derive(
        &c,
        &[
            primary(true),
            replica(true, true, Some(0)),
            replica(true, true, Some(0)),
        ],
        &Topology::initial(&c),
    );
    assert_eq!(t.primary(), None);
    assert!(t
        .write_block
        .expect("blocked")
        .contains("no writable primary"));
}

#[test]
fn mid_failover_without_a_writer_reads_fall_back_to_the_last_one() {
    let c = config();
    let choose = |t: &Topology| t.router.choose_replica(None, 0, 1);
    // The old primary set read-only, both replicas' replication stopped: no writer, no
    // replica in the rotation, but every server answers.
    let stopped = || {
        let mut s = replica(true, false, None)?;
        if let Ok(o) = &mut s.result {
            if let Some(r) = &mut o.replication {
                r.io_running = false;
            }
        }
        Some(s)
    };
    let mid = derive(&c, &[primary(true), stopped(), stopped()], &healthy(&c));
    assert_eq!(mid.primary(), None);
    assert!(mid.write_block.is_some(), "writes are refused meanwhile");
    assert_eq!(mid.router.last_writer, Some(0));
    assert!(matches!(choose(&mid), Choice::Primary { server: 0, .. }));
    // It stays the fallback round after round until a writer is known, also through a
    // moment where the new writer and a stale check of the old one are both writable.
    let still = derive(&c, &[primary(true), stopped(), stopped()], &mid);
    assert_eq!(still.router.last_writer, Some(0));
    let both = derive(&c, &[primary(false), stopped(), primary(false)], &still);
    assert_eq!(both.primary(), None);
    assert_eq!(both.router.last_writer, Some(0));
    assert!(matches!(choose(&both), Choice::Primary { server: 0, .. }));
    // r2 promoted and seen alone: it is the writer, and the fallback.
    let after = derive(&c, &[primary(true), stopped(), primary(false)], &both);
    assert_eq!(after.primary(), Some(2));
    assert_eq!(after.router.last_writer, None);
    assert!(matches!(choose(&after), Choice::Primary { server: 2, .. }));
    // A primary that is down is no fallback: it cannot answer.
    let gone = derive(&c, &[down(), stopped(), stopped()], &healthy(&c));
    assert!(gone.primary_down.is_some());
    assert_eq!(gone.router.last_writer, None);
}

#[test]
fn stopped_sql_thread_leaves_rotation_and_lag_is_unknown() {
    let c = config();
    let t = derive(
        &c,
        &[
            primary(false),
            replica(true, false, Some(0)),
            replica(true, true, Some(0)),
        ],
        &Topology::initial(&c),
    );
    assert!(!t.router.servers[1].replicating);
    assert_eq!(t.servers[1].lag_ms, None, "unknown, never 0");
    assert!(t.router.servers[2].replicating);
}

#[test]
fn unchecked_servers_keep_the_configured_primary() {
    let c = config();
    let t = derive(&c, &[None, None, None], &Topology::initial(&c));
    assert_eq!(t.primary(), Some(0));
    assert!(t.servers.iter().all(|s| !s.reachable && s.lag_ms.is_none()));
}

#[test]
fn old_primary_back_writable_after_a_failover_is_fenced_not_split_brain() {
    let c = config();
    let down_t = derive(
        &c,
        &[down(), orphan(true, Some(0)), orphan(true, Some(0))],
        &healthy(&c),
    );
    // r2 promoted by hand while the primary is down.
    let moved = derive(
        &c,
        &[down(), replica(true, true, Some(0)), primary(false)],
        &down_t,
    );
    assert_eq!(moved.primary(), Some(2));
    // The old primary restarts writable and replicating from no one.
    let back = derive(
        &c,
        &[primary(false), replica(true, true, Some(0)), primary(false)],
        &moved,
    );
    assert_eq!(back.primary(), Some(2), "writes stay with the new writer");
    assert_eq!(back.fenced, vec![0]);
    assert!(!back.split_brain && back.write_block.is_none());
    assert!(
        !back.router.servers[0].replicating,
        "no reads from it either"
    );
    // It stays fenced on later rounds, until it is read-only or replicates.
    let again = derive(
        &c,
        &[primary(false), replica(true, true, Some(0)), primary(false)],
        &back,
    );
    assert_eq!((again.primary(), again.fenced.clone()), (Some(2), vec![0]));
    let fixed = derive(
        &c,
        &[
            replica(true, true, Some(0)),
            replica(true, true, Some(0)),
            primary(false),
        ],
        &again,
    );
    assert!(fixed.fenced.is_empty());
    assert_eq!(fixed.primary(), Some(2));
}

#[test]
fn two_writable_roots_both_up_are_still_split_brain() {
    let c = config();
    let t = healthy(&c);
    // r2 made writable by hand while the primary stays up and writable: not told apart.
    let both = derive(
        &c,
        &[primary(false), replica(true, true, Some(0)), primary(false)],
        &t,
    );
    assert!(both.fenced.is_empty());
    assert_eq!(both.primary(), None);
    assert!(both.write_block.is_some());
}
