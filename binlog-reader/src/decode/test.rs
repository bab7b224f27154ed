//! Decoding the real MySQL and MariaDB binlog files in binlog-reader/testdata/binlogs
//! (where each comes from: testdata/README.md).

use super::*;
use crate::file::read_file;
use crate::testdata::binlog as testdata;

fn kinds(name: &str) -> Vec<EventKind> {
    read_file(&testdata(name))
        .unwrap_or_else(|e| panic!("{name}: {e}"))
        .iter()
        .map(|e| decode(e).unwrap())
        .collect()
}

fn starts(k: &[EventKind]) -> Vec<(Option<Gtid>, Option<u64>, bool)> {
    k.iter()
        .filter_map(|k| match k {
            EventKind::TransactionStart {
                gtid,
                commit_us,
                standalone,
            } => Some((gtid.clone(), *commit_us, *standalone)),
            _ => None,
        })
        .collect()
}

#[test]
fn mysql8_commit_timestamps_are_microseconds() {
    let k = kinds("transaction_compression.000001");
    let s = starts(&k);
    assert!(!s.is_empty(), "{k:?}");
    for (gtid, commit, _) in &s {
        assert_eq!(gtid, &None, "anonymous GTIDs");
        let us = commit.expect("MySQL 8 writes original_commit_timestamp");
        // 2020..2040 in microseconds, and not a whole second (it is µs resolution).
        assert!(
            (1_577_836_800_000_000..2_208_988_800_000_000).contains(&us),
            "{us}"
        );
    }
    assert!(s.iter().any(|(_, c, _)| c.unwrap() % 1_000_000 != 0));
    // The compressed payload's events are unpacked: the XID inside it is seen.
    assert!(k.contains(&EventKind::Xid), "{k:?}");
}

#[test]
fn mysql96_tagged_gtids_carry_the_tag() {
    let s = starts(&kinds("binlog_transaction_with_GTID_TAG.000001"));
    let tagged: Vec<_> = s
        .iter()
        .filter_map(|(g, c, _)| match g {
            Some(Gtid::MySql { source, gno }) if source.matches(':').count() == 1 => {
                Some((source.clone(), *gno, *c))
            }
            _ => None,
        })
        .collect();
    assert!(!tagged.is_empty(), "{s:?}");
    for (source, gno, commit) in tagged {
        assert!(source.len() > 37, "{source}");
        assert!(gno >= 1);
        assert!(commit.is_some(), "tagged events carry commit timestamps");
    }
}

#[test]
fn mysql56_gtids_have_no_commit_timestamp() {
    let s = starts(&kinds("binlog_transaction_with_GTID.000001"));
    assert!(!s.is_empty());
    for (g, c, _) in s {
        let g = g.expect("a real GTID");
        assert!(g.to_string().contains(':'), "{g}");
        assert_eq!(c, None);
    }
}

#[test]
fn mariadb_gtid_and_gtid_list_events() {
    let k = kinds("mariadb-bin.000001");
    let s = starts(&k);
    assert!(!s.is_empty(), "{k:?}");
    let mut last = 0;
    for (g, c, _) in &s {
        match g {
            Some(Gtid::MariaDb { seq, .. }) => {
                assert!(*seq > last, "sequence numbers increase");
                last = *seq;
            }
            other => panic!("expected a MariaDB GTID, got {other:?}"),
        }
        assert_eq!(*c, None, "MariaDB has no µs commit timestamp");
    }
    assert!(
        k.iter().any(|k| matches!(k, EventKind::GtidList(_))),
        "{k:?}"
    );
    assert!(
        k.iter()
            .any(|k| matches!(k, EventKind::FormatDescription { server_version } if server_version.contains("MariaDB"))),
        "{k:?}"
    );
}

#[test]
fn other_mysql_files_parse() {
    for f in [
        "binlog_transaction_previous_GTID_no_tag.000001",
        "binlog_transaction_with_anonymous_GTID.000001",
        "binlog_savepoint.000001",
    ] {
        let k = kinds(f);
        assert!(!k.is_empty(), "{f}");
    }
}

#[test]
fn truncated_and_corrupt_files_are_clear_errors() {
    for f in [
        "binlog_truncated_event.000001",
        "binlog_truncated_prev_gtid_event.000001",
        "corrupt-relay-bin.000624",
    ] {
        let r = read_file(&testdata(f));
        let e = r.expect_err(f).to_string();
        assert!(!e.is_empty(), "{f}");
        eprintln!("{f}: {e}");
    }
}

#[test]
fn every_truncation_and_bit_flip_is_an_error_not_a_panic() {
    let good = testdata("mariadb-bin.000001");
    assert!(read_file(&good).is_ok());
    for cut in 0..good.len() {
        let _ = read_file(&good[..cut]);
    }
    // Flipping any bit anywhere never panics; past the format description event (which says
    // whether events are checksummed) every flip is caught by the framing or the CRC32 (bit 0x01
    // of the header flags is LOG_EVENT_BINLOG_IN_USE_F, which checksums leave out by design).
    let fde_len = u32::from_le_bytes([good[13], good[14], good[15], good[16]]) as usize;
    let mut flipped = good.clone();
    for i in 4..good.len() {
        for bit in [0x02, 0x10, 0x80] {
            flipped[i] ^= bit;
            let r = read_file(&flipped);
            if i >= 4 + fde_len {
                assert!(r.is_err(), "flip {bit:#x} at {i} went unnoticed");
            }
            flipped[i] = good[i];
        }
    }
}
