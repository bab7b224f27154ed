//! Unit tests of the classifier's building blocks (hints, effects and their spans, statement
//! splitting, the sqlparser fallback); the big statement table is in `tests/statements.txt`.

use super::*;

#[test]
fn leading_hints_are_read_from_any_leading_comment() {
    let c = classify(b"/* app=web */ /* rwsplit:max_lag_ms=250 */ SELECT 1");
    assert_eq!((c.target, c.hint_max_lag_ms), (Target::Replica, Some(250)));
    let c = classify(b"-- rwsplit:max_lag_ms=0\nSELECT 1");
    assert_eq!(c.hint_max_lag_ms, Some(0));
    let c = classify(b"/* rwsplit:max_lag_ms=abc */ SELECT 1");
    assert_eq!(c.hint_max_lag_ms, None, "not a number: ignored");
    let c = classify(b"/* rwsplit:max_lag_ms=99999999999999999999999 */ SELECT 1");
    assert_eq!(
        c.hint_max_lag_ms,
        Some(u64::MAX),
        "saturates instead of overflowing"
    );
    let c = classify(b"SELECT 1 /* rwsplit:max_lag_ms=5 */");
    assert_eq!(c.hint_max_lag_ms, None, "only leading comments carry hints");
    let c = classify(b"/*!40001 rwsplit:primary */ SELECT 1");
    assert_eq!(
        c.reason,
        Reason::Unparseable,
        "a versioned comment is code, not a hint"
    );
}

#[test]
fn effects_point_at_the_names() {
    let sql = b"CREATE TEMPORARY TABLE IF NOT EXISTS `db`.tmp_x (id INT)";
    match classify(sql).effect {
        Effect::CreateTempTable(span) => assert_eq!(span.of(sql), b"`db`.tmp_x"),
        other => panic!("{other:?}"),
    }
    let sql = b"USE `my db`";
    match classify(sql).effect {
        Effect::UseDb(span) => assert_eq!(span.of(sql), b"`my db`"),
        other => panic!("{other:?}"),
    }
    let sql = b"DROP TEMPORARY TABLE IF EXISTS a, db.b";
    match classify(sql).effect {
        Effect::DropTables { temporary, list } => {
            assert!(temporary);
            assert_eq!(list.of(sql), b"a, db.b");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        classify(b"SET autocommit = OFF").effect,
        Effect::SetAutocommit(false)
    );
    assert_eq!(
        classify(b"SET autocommit = 'ON'").effect,
        Effect::SetAutocommit(true)
    );
    assert_eq!(
        classify(b"START TRANSACTION READ ONLY").effect,
        Effect::Begin { read_only: true }
    );
    assert_eq!(classify(b"SELECT @a := 1").effect, Effect::UserVariable);
    assert_eq!(classify(b"SELECT 1 INTO @a").effect, Effect::UserVariable);
    assert_eq!(classify(b"ROLLBACK TO SAVEPOINT s").effect, Effect::None);
    assert_eq!(
        classify(b"INSERT INTO t VALUES (1); SELECT 1").effect,
        Effect::Multi
    );
}

#[test]
fn split_statements_skips_empty_pieces_and_versioned_delimiters() {
    let pieces: Vec<&[u8]> =
        split_statements(b"/*!40101 SET NAMES utf8 */; ; SELECT ';' ;\n-- end\n").collect();
    assert_eq!(pieces, [&b"SET NAMES utf8"[..], b"SELECT ';'"]);
    assert_eq!(split_statements(b"").count(), 0);
    assert_eq!(split_statements(b"SELECT 1").count(), 1);
}

#[test]
fn invalid_utf8_is_classified_not_rejected() {
    let c = classify(b"SELECT '\xff\xfe' FROM t WHERE a = 0x01");
    assert_eq!(c.target, Target::Replica);
    let c = classify(b"UPDATE t SET a = '\xc3\x28'");
    assert_eq!(c.reason, Reason::Write);
    let c = classify(b"\xff\xfe\xfd");
    assert_eq!(c.reason, Reason::Unparseable);
}

#[test]
fn parser_fallback_is_cached_and_never_an_error() {
    let before = parse_cache_len();
    let sql = b"FROBNICATE the_cache_test_statement";
    assert_eq!(classify(sql).reason, Reason::Unparseable);
    assert_eq!(classify(sql).reason, Reason::Unparseable);
    assert!(parse_cache_len() > before || parse_cache_len() == 1024);
}

#[test]
fn reasons_have_distinct_labels() {
    let mut labels: Vec<&str> = Reason::ALL.iter().map(Reason::as_str).collect();
    labels.sort_unstable();
    labels.dedup();
    assert_eq!(labels.len(), Reason::ALL.len());
}
