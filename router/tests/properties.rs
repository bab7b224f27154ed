//! Property tests across the classifier and the session: no panic on any bytes (the stand-in
//! for a long fuzz run), and no replica for anything that must run on the primary.

use proptest::prelude::*;
use router::classify::{classify, split_statements, Target};
use router::session::{Session, SessionOptions, SERVER_STATUS_AUTOCOMMIT, SERVER_STATUS_IN_TRANS};

/// Statements that must never reach a replica, whatever the session did before.
const PRIMARY_ONLY: &[&str] = &[
    "INSERT INTO t VALUES (1)",
    "update t set a = 1 where id = 2",
    "DELETE FROM t",
    "REPLACE INTO t VALUES (1)",
    "SELECT * FROM t FOR UPDATE",
    "SELECT * FROM t LOCK IN SHARE MODE",
    "SELECT * FROM t INTO OUTFILE '/tmp/x'",
    "SELECT LAST_INSERT_ID()",
    "SELECT GET_LOCK('a', 1)",
    "SELECT NEXTVAL(s)",
    "SELECT @x := 1",
    "CREATE TABLE x (id INT)",
    "CALL p()",
    "LOAD DATA INFILE 'f' INTO TABLE t",
    "INSERT INTO t VALUES (1); SELECT 1",
    "SET NAMES utf8",
    "BEGIN",
];

/// Statements a session may send, for random conversations.
const POOL: &[&str] = &[
    "SELECT 1",
    "SELECT * FROM t WHERE id = 1",
    "BEGIN",
    "COMMIT",
    "ROLLBACK",
    "SET autocommit=0",
    "SET autocommit=1",
    "CREATE TEMPORARY TABLE tmp (id INT)",
    "DROP TEMPORARY TABLE tmp",
    "LOCK TABLES t READ",
    "UNLOCK TABLES",
    "START TRANSACTION READ ONLY",
    "SET sql_mode = ''",
    "USE app",
    "SHOW WARNINGS",
    "XA START 'x'",
    "XA COMMIT 'x'",
    "ALTER TABLE t ADD c INT",
];

fn decorate(sql: &str, prefix: u8, upper: bool) -> String {
    let body = if upper {
        sql.to_ascii_uppercase()
    } else {
        sql.to_string()
    };
    match prefix % 5 {
        0 => body,
        1 => format!("/* rwsplit:replica */ {body}"),
        2 => format!("  -- note\n{body}"),
        3 => format!("/* app=web */\t{body};"),
        _ => format!("# rwsplit:replica\n{body}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn classifier_never_panics_on_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let c = classify(&bytes);
        let _ = c.reason.as_str();
        for piece in split_statements(&bytes) {
            let _ = classify(piece);
        }
    }

    #[test]
    fn classifier_never_panics_on_sqlish_text(s in "[a-zA-Z@`'\"();,.:=*/#!M0-9 \\-\\n\\\\]{0,120}") {
        let _ = classify(s.as_bytes());
    }

    #[test]
    fn session_never_panics_on_any_conversation(
        steps in proptest::collection::vec(
            (proptest::collection::vec(any::<u8>(), 0..80), any::<u16>(), any::<bool>()),
            0..20,
        )
    ) {
        let mut s = Session::new(SessionOptions { read_only_transactions_on_replica: true, max_history: 4 });
        for (sql, flags, success) in steps {
            let _ = s.route_query(&sql);
            if success { s.on_ok(flags) } else { s.on_err(flags) }
            let class = s.on_prepare(&sql);
            let _ = s.route_execute(&class);
            s.on_ok(flags);
            let _ = s.history().count();
            let _ = s.needs_pinned_primary();
        }
    }

    /// A write or other primary-only statement never goes to a replica, after any conversation,
    /// with or without a replica hint.
    #[test]
    fn primary_only_statements_never_reach_a_replica(
        history in proptest::collection::vec((0..POOL.len(), any::<bool>()), 0..12),
        stmt in 0..PRIMARY_ONLY.len(),
        prefix in any::<u8>(),
        upper in any::<bool>(),
        ro in any::<bool>(),
    ) {
        let mut s = Session::new(SessionOptions { read_only_transactions_on_replica: ro, ..Default::default() });
        for (i, in_trans) in history {
            let _ = s.route_query(POOL[i].as_bytes());
            let flags = if in_trans { SERVER_STATUS_IN_TRANS | SERVER_STATUS_AUTOCOMMIT } else { SERVER_STATUS_AUTOCOMMIT };
            s.on_ok(flags);
        }
        let sql = decorate(PRIMARY_ONLY[stmt], prefix, upper);
        let d = s.route_query(sql.as_bytes());
        prop_assert_ne!(d.target, Target::Replica, "{:?} went to a replica", sql);
        if !s.in_replica_transaction() {
            prop_assert_eq!(d.target, Target::Primary, "{:?}", sql);
        }
    }

    /// Inside a transaction on the primary, nothing goes to a replica.
    #[test]
    fn nothing_leaves_an_open_primary_transaction(stmt in 0..POOL.len(), prefix in any::<u8>()) {
        let mut s = Session::new(SessionOptions::default());
        let _ = s.route_query(b"BEGIN");
        s.on_ok(SERVER_STATUS_IN_TRANS | SERVER_STATUS_AUTOCOMMIT);
        let sql = decorate(POOL[stmt], prefix, false);
        let d = s.route_query(sql.as_bytes());
        prop_assert_ne!(d.target, Target::Replica, "{:?}", sql);
    }
}
