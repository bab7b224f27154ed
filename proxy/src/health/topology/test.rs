//! Role, writer and split-brain derivation cases (DESIGN §3.6, §7).

use super::*;
use crate::health::check::Replication;

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
        at: Instant::now(),
    })
}

fn replica(read_only: bool, sql_running: bool, lag_ms: Option<u64>) -> Option<Sample> {
    Some(Sample {
        result: Ok(Observed {
            read_only,
            replication: Some(Replication {
                source_host: "127.0.0.1".into(),
                io_running: true,
                sql_running,
                seconds_behind: Some(0),
            }),
        }),
        lag_ms,
        at: Instant::now(),
    })
}

fn down() -> Option<Sample> {
    Some(Sample {
        result: Err(CheckError::Connect("refused".into())),
        lag_ms: None,
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
fn unreachable_primary_stays_the_write_target() {
    let c = config();
    let t = derive(
        &c,
        &[
            down(),
            replica(true, true, Some(0)),
            replica(true, true, Some(0)),
        ],
        &Topology::initial(&c),
    );
    assert_eq!(t.primary(), Some(0));
    assert!(!t.servers[0].reachable);
    assert!(t.servers[0]
        .last_error
        .as_deref()
        .unwrap_or("")
        .contains("refused"));
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
