//! The record's JSON line, the timestamp, and a writer that rotates by size.

use super::writer::Writer;
use super::*;
use router::classify::StatementDigest;
use router::config::AuditStatements;
use std::time::{Duration, SystemTime};

fn config(path: &str, full_text: bool) -> AuditConfig {
    AuditConfig {
        path: path.into(),
        statements: AuditStatements::Writes,
        full_text,
        max_size_mb: 1,
        queue: 16,
    }
}

/// The record of `text` as a session under `config` hands it over.
fn record_under(config: &AuditConfig, text: &str) -> Record {
    let mut digest = StatementDigest::default();
    record(Text::of(config, text.as_bytes(), &mut digest))
}

fn record(text: Text) -> Record {
    Record {
        time: SystemTime::UNIX_EPOCH + Duration::from_millis(1_764_658_201_123),
        session: 7,
        user: "app".into(),
        client: "10.0.0.5".into(),
        schema: Some("shop".into()),
        server: Some("primary".into()),
        text,
        affected_rows: Some(1),
        gtid: None,
        duration: Duration::from_micros(1500),
        error: None,
    }
}

#[test]
fn timestamps_are_utc_rfc3339_with_milliseconds() {
    assert_eq!(
        record::rfc3339(SystemTime::UNIX_EPOCH),
        "1970-01-01T00:00:00.000Z"
    );
    let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_764_658_201_123);
    assert_eq!(record::rfc3339(t), "2025-12-02T06:50:01.123Z");
    let leap = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
    assert_eq!(record::rfc3339(leap), "2000-02-29T00:00:00.000Z");
}

#[test]
fn a_line_carries_the_digest_unless_full_text_is_on() {
    let mut out = Vec::new();
    record_under(&config("x", false), "INSERT INTO t VALUES (42, 'secret')").write_json(&mut out);
    let v: serde_json::Value = serde_json::from_slice(&out).expect("one JSON object");
    assert!(out.ends_with(b"\n"));
    assert!(
        out.starts_with(b"{\"time\":"),
        "fields in the documented order"
    );
    assert_eq!(v["digest"], "INSERT INTO t VALUES (...)");
    assert!(v.get("statement").is_none());
    assert_eq!(v["session"], 7);
    assert_eq!(v["user"], "app");
    assert_eq!(v["client"], "10.0.0.5");
    assert_eq!(v["schema"], "shop");
    assert_eq!(v["server"], "primary");
    assert_eq!(v["affected_rows"], 1);
    assert_eq!(v["gtid"], serde_json::Value::Null);
    assert_eq!(v["duration_ms"], 1.5);
    assert_eq!(v["error"], serde_json::Value::Null);
    assert_eq!(v["time"], "2025-12-02T06:50:01.123Z");
    out.clear();
    record_under(&config("x", true), "INSERT INTO t VALUES (42, 'secret')").write_json(&mut out);
    let v: serde_json::Value = serde_json::from_slice(&out).expect("one JSON object");
    assert_eq!(v["statement"], "INSERT INTO t VALUES (42, 'secret')");
}

#[test]
fn a_line_carries_the_gtid_the_statement_committed() {
    let mut out = Vec::new();
    let mut r = record_under(&config("x", false), "COMMIT");
    r.gtid = Some("0-1-42".into());
    r.write_json(&mut out);
    let v: serde_json::Value = serde_json::from_slice(&out).expect("one JSON object");
    assert_eq!(v["gtid"], "0-1-42");
    let mut a = SessionAudit::default();
    a.committed(&["0-1-7".into(), "0-1-8".into()]);
    assert_eq!(a.take_gtid().as_deref(), Some("0-1-7,0-1-8"));
    assert_eq!(a.take_gtid(), None, "taken once");
    a.committed(&[]);
    assert_eq!(a.take_gtid(), None);
}

#[test]
fn a_prepared_statements_placeholders_digest_like_literals() {
    // Audit lines (and digest rules) for COM_STMT_EXECUTE use the prepared text: the same
    // digest as the statement sent with its values.
    let digest = |sql: &str| {
        let mut d = StatementDigest::default();
        d.get(sql.as_bytes()).1.to_string()
    };
    assert_eq!(
        digest("INSERT INTO t VALUES (?, ?)"),
        digest("INSERT INTO t VALUES (42, 'secret')")
    );
    assert_eq!(
        digest("SELECT c FROM t WHERE id=?"),
        digest("SELECT c FROM t WHERE id = 7")
    );
}

#[test]
fn the_writer_rotates_past_max_size_and_keeps_every_line() {
    // Inside the repository (its ignored scratch folder), never elsewhere on the machine.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../.scratch")
        .join(format!("audit-rotation-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join("audit.log");
    let _ = std::fs::remove_file(&path);
    let rotated = dir.join("audit.log.1");
    let _ = std::fs::remove_file(&rotated);
    let cfg = config(&path.display().to_string(), true);
    let counter = prometheus::IntCounter::new("t", "t").unwrap();
    let w = Writer::new(cfg, Arc::new(AtomicU64::new(0)), counter.clone());
    let (tx, rx) = std::sync::mpsc::sync_channel(16);
    let t = std::thread::spawn(move || w.run(rx));
    // ~2.5 MiB of lines through a 1 MiB limit.
    let big = format!("INSERT INTO t VALUES ('{}')", "x".repeat(4000));
    let n = 640;
    for _ in 0..n {
        tx.send(record(Text::Statement(big.clone().into_bytes())))
            .unwrap();
    }
    drop(tx);
    t.join().unwrap();
    let lines = |p: &std::path::Path| {
        std::fs::read_to_string(p)
            .map(|s| s.lines().count())
            .unwrap_or(0)
    };
    let (now, old) = (lines(&path), lines(&rotated));
    assert!(old > 0 && now > 0, "rotated: {old} + {now}");
    assert!(std::fs::metadata(&path).unwrap().len() <= 1 << 20);
    assert_eq!(counter.get(), n);
    // Two rotations happened (2.5 MiB over 1 MiB files): the oldest lines are gone, as with
    // logrotate's `rotate 1`; the rest are whole lines.
    assert!(old + now < n as usize);
    let _ = std::fs::remove_dir_all(&dir);
}
