//! Transaction boundaries and commit times from real MySQL and MariaDB binlog files, fed
//! through the same code the live stream uses (no MySQL server can run here).

use super::*;
use crate::state::Settings;
use std::time::Duration;

fn replay(name: &str, mariadb: bool, caught_up: bool) -> Vec<Transaction> {
    let bytes = crate::testdata::binlog(name);
    let events = crate::file::read_file(&bytes).expect("file parses");
    let settings = Settings {
        poll_interval: Duration::from_millis(100),
        fast_poll_interval: None,
        poll_timeout: Duration::from_secs(1),
        heartbeat: Duration::from_millis(500),
        server_id: 1,
        start_from_replicas: Default::default(),
        replaces_same_id: Default::default(),
    };
    let shared = Shared::new(settings, "p".into(), vec![], 1000);
    {
        let mut p = lock(&shared.primary);
        p.file = name.to_string();
        p.caught_up = caught_up;
    }
    let mut t = Tracker {
        mariadb,
        catch_up: CatchUp::FilePos(u64::MAX),
        pending: None,
        in_txn: false,
    };
    for ev in &events {
        process(&shared, &mut t, ev).expect("event applies");
    }
    let recent = lock(&shared.recent).iter().cloned().collect();
    recent
}

#[test]
fn mysql96_tagged_gtid_transactions_keep_their_tag_and_microsecond_commit() {
    let txs = replay("binlog_transaction_with_GTID_TAG.000001", false, true);
    assert!(!txs.is_empty());
    for tx in &txs {
        let gtid = tx.gtid.as_deref().expect("GTID");
        assert_eq!(gtid.matches(':').count(), 2, "uuid:tag:n, got {gtid}");
        assert!(!tx.live, "MySQL gives the commit time; arrival is not used");
        assert!(tx.commit_us > 1_577_836_800_000_000, "{}", tx.commit_us);
    }
}

#[test]
fn mysql8_compressed_transactions_are_recorded_once_each() {
    let txs = replay("transaction_compression.000001", false, true);
    assert!(!txs.is_empty());
    for tx in &txs {
        assert_eq!(tx.gtid, None, "anonymous GTIDs fall back to file/position");
        assert!(tx.end_pos > 4, "{tx:?}");
        assert!(tx.commit_us > 1_577_836_800_000_000, "{tx:?}");
    }
    let mut ends: Vec<u64> = txs.iter().map(|t| t.end_pos).collect();
    ends.dedup();
    assert_eq!(ends.len(), txs.len(), "no transaction twice: {txs:?}");
}

#[test]
fn mysql56_gtids_without_commit_time_use_the_header_when_replaying() {
    let txs = replay("binlog_transaction_with_GTID.000001", false, false);
    assert!(!txs.is_empty());
    for tx in &txs {
        assert!(tx.gtid.as_deref().is_some_and(|g| g.contains(':')));
        assert_eq!(tx.commit_us % 1_000_000, 0, "whole seconds from the header");
        assert!(!tx.live);
    }
}

#[test]
fn mariadb_transactions_in_order_with_gtids() {
    let txs = replay("mariadb-bin.000001", true, false);
    let gtids: Vec<&str> = txs.iter().filter_map(|t| t.gtid.as_deref()).collect();
    assert_eq!(gtids.len(), txs.len());
    assert_eq!(gtids.len(), 2, "{txs:?}");
    let seqs: Vec<u64> = gtids
        .iter()
        .map(|g| g.rsplit('-').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(seqs[1], seqs[0] + 1, "{gtids:?}");
    // Streaming live, MariaDB's whole-second header is refined by the arrival instant.
    let live = replay("mariadb-bin.000001", true, true);
    let now = now_us();
    for t in &live {
        assert!(t.live, "{t:?}");
        assert!(
            now - t.commit_us < 5_000_000,
            "arrival time, not the 2022 header: {t:?}"
        );
    }
}
