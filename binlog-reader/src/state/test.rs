//! The lag arithmetic: when a lag is known, and what number it is.

use super::*;
use crate::position::Watermarks;

const MS: u64 = 1_000;

fn shared() -> Shared {
    let settings = Settings {
        poll_interval: Duration::from_millis(100),
        fast_poll_interval: None,
        poll_timeout: Duration::from_secs(1),
        heartbeat: Duration::from_millis(500),
        server_id: 1,
        start_from_replicas: Default::default(),
        replaces_same_id: Default::default(),
    };
    Shared::new(settings, "primary".into(), vec!["r1".into()], 100)
}

fn live(s: &Shared) {
    let mut p = lock(&s.primary);
    p.connected = true;
    p.caught_up = true;
    p.caught_up_index = 0;
    p.last_event_at = Some(Instant::now());
}

fn poll(s: &Shared, applied: u64, polled_at_us: u64) {
    let cutoff = lock(&s.timeline).next_index();
    let mut r = lock(&s.replicas[0].1);
    r.reachable = true;
    r.applied = Some(Watermarks::from([("0".to_string(), applied)]));
    r.cutoff = cutoff;
    r.polled_at_us = polled_at_us;
    r.polled_instant = Some(Instant::now());
}

fn lag(s: &Shared) -> Option<u64> {
    let snap = s.snapshot();
    let r = &snap.replicas["r1"];
    assert_eq!(r.known, r.lag_ms.is_some());
    r.lag_ms
}

#[test]
fn applied_everything_is_zero() {
    let s = shared();
    live(&s);
    lock(&s.timeline).set_base("0", 10);
    lock(&s.timeline).push("0", 11, now_us() - 5_000 * MS);
    poll(&s, 11, now_us());
    assert_eq!(lag(&s), Some(0));
}

#[test]
fn stuck_replica_lag_grows_with_wall_time() {
    let s = shared();
    live(&s);
    let commit = now_us() - 700 * MS;
    lock(&s.timeline).set_base("0", 10);
    lock(&s.timeline).push("0", 11, commit);
    poll(&s, 10, now_us());
    let first = lag(&s).unwrap();
    assert!((700..800).contains(&first), "{first}");
    std::thread::sleep(Duration::from_millis(30));
    let later = lag(&s).unwrap();
    assert!(later >= first + 30, "{first} then {later}");
}

#[test]
fn in_flight_at_the_poll_reports_the_poll_time_value() {
    let s = shared();
    live(&s);
    let polled = now_us();
    lock(&s.timeline).set_base("0", 10);
    lock(&s.timeline).push("0", 11, polled - 20 * MS);
    poll(&s, 10, polled);
    std::thread::sleep(Duration::from_millis(30));
    assert_eq!(lag(&s), Some(20), "does not grow: it was merely in flight");
}

#[test]
fn unknown_while_the_stream_is_down_or_catching_up() {
    let s = shared();
    lock(&s.timeline).set_base("0", 10);
    poll(&s, 10, now_us());
    assert_eq!(lag(&s), None, "never connected");
    live(&s);
    assert_eq!(lag(&s), Some(0));
    lock(&s.primary).caught_up = false;
    assert_eq!(lag(&s), None, "replaying history");
    live(&s);
    lock(&s.primary).last_event_at = Some(Instant::now() - Duration::from_secs(5));
    assert_eq!(lag(&s), None, "silent stream");
    live(&s);
    lock(&s.primary).connected = false;
    assert_eq!(lag(&s), None, "disconnected");
}

#[test]
fn unknown_when_the_replica_cannot_be_read_or_the_poll_predates_catch_up() {
    let s = shared();
    live(&s);
    lock(&s.timeline).set_base("0", 10);
    poll(&s, 10, now_us());
    assert_eq!(lag(&s), Some(0));
    lock(&s.replicas[0].1).reachable = false;
    assert_eq!(lag(&s), None, "last poll failed");
    poll(&s, 10, now_us());
    lock(&s.replicas[0].1).polled_instant = Some(Instant::now() - Duration::from_secs(3));
    assert_eq!(lag(&s), None, "no answer for too long");
    poll(&s, 10, now_us());
    lock(&s.timeline).push("0", 11, now_us());
    lock(&s.primary).caught_up_index = 1;
    assert_eq!(lag(&s), None, "polled before the stream caught up");
    poll(&s, 10, now_us());
    assert!(lag(&s).is_some());
}

#[test]
fn behind_the_start_of_the_timeline_is_unknown() {
    let s = shared();
    live(&s);
    lock(&s.timeline).set_base("0", 10);
    poll(&s, 5, now_us());
    assert_eq!(lag(&s), None);
}

/// The stream ended caught up and the primary refuses connections since.
fn primary_down(s: &Shared) {
    let mut p = lock(&s.primary);
    p.connected = false;
    p.caught_up = false;
    p.complete_at_loss = true;
    p.unreachable_since_ms = Some(now_us() / 1000);
}

fn io_running(s: &Shared, running: bool) {
    lock(&s.replicas[0].1).io_running = Some(running);
}

#[test]
fn primary_down_replica_that_applied_everything_is_fresh() {
    let s = shared();
    live(&s);
    lock(&s.timeline).set_base("0", 10);
    lock(&s.timeline).push("0", 11, now_us() - 5_000 * MS);
    primary_down(&s);
    io_running(&s, false);
    poll(&s, 11, now_us());
    assert_eq!(lag(&s), Some(0));
    assert!(s.snapshot().primary.down_since_ms.is_some());
}

#[test]
fn primary_down_replica_already_behind_keeps_growing_lag() {
    let s = shared();
    live(&s);
    let commit = now_us() - 700 * MS;
    lock(&s.timeline).set_base("0", 10);
    lock(&s.timeline).push("0", 11, commit);
    primary_down(&s);
    io_running(&s, false);
    poll(&s, 10, now_us());
    let first = lag(&s).expect("measured against the last transaction seen");
    assert!((700..800).contains(&first), "{first}");
    std::thread::sleep(Duration::from_millis(30));
    assert!(lag(&s).unwrap() >= first + 30);
}

#[test]
fn blind_without_proof_the_primary_is_down_stays_unknown() {
    let s = shared();
    live(&s);
    lock(&s.timeline).set_base("0", 10);
    primary_down(&s);
    poll(&s, 10, now_us());
    // The replica still receives (IO thread running) from a primary we cannot see.
    io_running(&s, true);
    assert_eq!(lag(&s), None);
    // The stream had not caught up when it dropped: the timeline may lack transactions.
    io_running(&s, false);
    lock(&s.primary).complete_at_loss = false;
    assert_eq!(lag(&s), None);
    // The stream broke but the primary still answers: not down.
    let mut p = lock(&s.primary);
    p.complete_at_loss = true;
    p.unreachable_since_ms = None;
    drop(p);
    assert_eq!(lag(&s), None);
    assert_eq!(s.snapshot().primary.down_since_ms, None);
}
