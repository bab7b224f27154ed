//! Session conversations: whole client exchanges replayed step by step, checking every decision.

use super::*;

const AC: u16 = SERVER_STATUS_AUTOCOMMIT;
const IT: u16 = SERVER_STATUS_IN_TRANS;

/// Routes `sql`, checks the decision, and reports success with `flags`.
#[track_caller]
fn ok(s: &mut Session, sql: &str, target: Target, reason: Reason, flags: u16) {
    let d = s.route_query(sql.as_bytes());
    assert_eq!(
        (d.target, d.reason),
        (target, reason),
        "{sql:?} routed to {} ({})",
        d.target.as_str(),
        d.reason.as_str()
    );
    s.on_ok(flags);
}

#[track_caller]
fn err(s: &mut Session, sql: &str, target: Target, code: u16) {
    let d = s.route_query(sql.as_bytes());
    assert_eq!(d.target, target, "{sql:?}");
    s.on_err(code);
}

fn session() -> Session {
    Session::new(SessionOptions::default())
}

fn history(s: &Session) -> Vec<String> {
    s.history()
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect()
}

use Reason as R;
use Target::{Previous, Primary, Replica};

#[test]
fn explicit_transaction_keeps_reads_on_the_primary_until_commit() {
    let mut s = session();
    ok(&mut s, "SELECT 1", Replica, R::Read, AC);
    ok(&mut s, "BEGIN", Primary, R::Transaction, AC | IT);
    assert!(s.needs_pinned_primary() && s.in_transaction());
    ok(&mut s, "SELECT * FROM t", Primary, R::Transaction, AC | IT);
    ok(&mut s, "UPDATE t SET a = 1", Primary, R::Write, AC | IT);
    ok(
        &mut s,
        "/* rwsplit:replica */ SELECT 1",
        Primary,
        R::Transaction,
        AC | IT,
    );
    ok(&mut s, "COMMIT", Primary, R::Transaction, AC);
    assert!(!s.in_transaction());
    ok(&mut s, "SELECT * FROM t", Replica, R::Read, AC);
}

#[test]
fn autocommit_off_is_a_transaction_until_autocommit_is_back() {
    let mut s = session();
    ok(&mut s, "SET autocommit=0", Primary, R::Transaction, 0);
    assert!(!s.autocommit() && s.pins().autocommit_off);
    ok(&mut s, "SELECT * FROM t", Primary, R::AutocommitOff, IT);
    ok(&mut s, "SELECT * FROM u", Primary, R::Transaction, IT);
    ok(&mut s, "COMMIT", Primary, R::Transaction, 0);
    ok(&mut s, "SELECT * FROM t", Primary, R::AutocommitOff, IT);
    ok(&mut s, "SET autocommit=1", Primary, R::Transaction, AC);
    ok(&mut s, "SELECT * FROM t", Replica, R::Read, AC);
}

#[test]
fn status_flags_are_authoritative() {
    let mut s = session();
    // A stored procedure opened a transaction the router could not see in the text.
    ok(&mut s, "CALL open_trx()", Primary, R::Write, AC | IT);
    ok(&mut s, "SELECT 1", Primary, R::Transaction, AC | IT);
    // `SET autocommit = @v` cannot be read from the text; the flags say it is off.
    ok(&mut s, "ROLLBACK", Primary, R::Transaction, AC);
    ok(
        &mut s,
        "SET @@autocommit = (SELECT 0)",
        Primary,
        R::Transaction,
        0,
    );
    ok(&mut s, "SELECT 1", Primary, R::AutocommitOff, 0);
}

#[test]
fn ddl_commits_implicitly() {
    let mut s = session();
    ok(
        &mut s,
        "START TRANSACTION",
        Primary,
        R::Transaction,
        AC | IT,
    );
    ok(
        &mut s,
        "ALTER TABLE t ADD COLUMN c INT",
        Primary,
        R::Ddl,
        AC,
    );
    ok(&mut s, "SELECT c FROM t", Replica, R::Read, AC);
}

#[test]
fn deadlock_ends_the_transaction() {
    let mut s = session();
    ok(&mut s, "BEGIN", Primary, R::Transaction, AC | IT);
    err(&mut s, "UPDATE t SET a = 1 WHERE id = 1", Primary, 1213);
    ok(&mut s, "SELECT 1", Replica, R::Read, AC);
    // A lock wait timeout rolls back the statement only.
    ok(&mut s, "BEGIN", Primary, R::Transaction, AC | IT);
    err(&mut s, "UPDATE t SET a = 1 WHERE id = 1", Primary, 1205);
    ok(&mut s, "SELECT 1", Primary, R::Transaction, AC | IT);
}

#[test]
fn temporary_table_life_cycle() {
    let mut s = session();
    err(&mut s, "CREATE TEMPORARY TABLE tmp (id INT)", Primary, 1050);
    assert!(!s.pins().temp_tables, "a failed CREATE creates nothing");
    ok(
        &mut s,
        "CREATE TEMPORARY TABLE tmp (id INT)",
        Primary,
        R::TempTable,
        AC,
    );
    ok(
        &mut s,
        "CREATE TEMPORARY TABLE `db`.`Tmp2` (id INT)",
        Primary,
        R::TempTable,
        AC,
    );
    assert_eq!(s.temp_tables().count(), 2);
    ok(&mut s, "INSERT INTO tmp VALUES (1)", Primary, R::Write, AC);
    ok(&mut s, "SELECT * FROM tmp", Primary, R::TempTable, AC);
    ok(&mut s, "SELECT * FROM unrelated", Primary, R::TempTable, AC);
    ok(
        &mut s,
        "DROP TEMPORARY TABLE tmp",
        Primary,
        R::TempTable,
        AC,
    );
    ok(&mut s, "SELECT * FROM t", Primary, R::TempTable, AC);
    ok(&mut s, "DROP TABLE IF EXISTS db.tmp2", Primary, R::Ddl, AC);
    assert!(!s.pins().temp_tables);
    ok(&mut s, "SELECT * FROM t", Replica, R::Read, AC);
}

#[test]
fn lock_tables_keeps_everything_on_the_primary() {
    let mut s = session();
    ok(
        &mut s,
        "LOCK TABLES t READ, u WRITE",
        Primary,
        R::LockTables,
        AC,
    );
    assert!(s.pins().lock_tables);
    ok(&mut s, "SELECT * FROM t", Primary, R::LockTables, AC);
    ok(&mut s, "UNLOCK TABLES", Primary, R::LockTables, AC);
    ok(&mut s, "SELECT * FROM t", Replica, R::Read, AC);
    ok(
        &mut s,
        "FLUSH TABLES WITH READ LOCK",
        Primary,
        R::LockTables,
        AC,
    );
    ok(&mut s, "SHOW TABLES", Primary, R::LockTables, AC);
    ok(&mut s, "UNLOCK TABLES", Primary, R::LockTables, AC);
    ok(&mut s, "SHOW TABLES", Replica, R::Read, AC);
}

#[test]
fn prepared_statements_route_by_their_own_class_at_each_execution() {
    let mut s = session();
    let read = s.on_prepare(b"SELECT * FROM t WHERE id = ?");
    let write = s.on_prepare(b"UPDATE t SET a = ? WHERE id = ?");
    let locking = s.on_prepare(b"SELECT * FROM t WHERE id = ? FOR UPDATE");
    let exec = |s: &mut Session, c: &StmtClass, flags| {
        let d = s.route_execute(c);
        s.on_ok(flags);
        (d.target, d.reason)
    };
    assert_eq!(exec(&mut s, &read, AC), (Replica, R::Read));
    assert_eq!(exec(&mut s, &write, AC), (Primary, R::Write));
    assert_eq!(
        exec(&mut s, &read, AC),
        (Replica, R::Read),
        "not where it was prepared"
    );
    assert_eq!(exec(&mut s, &locking, AC), (Primary, R::LockingRead));
    ok(&mut s, "BEGIN", Primary, R::Transaction, AC | IT);
    assert_eq!(exec(&mut s, &read, AC | IT), (Primary, R::Transaction));
    ok(&mut s, "COMMIT", Primary, R::Transaction, AC);
    assert_eq!(exec(&mut s, &read, AC), (Replica, R::Read));
    // Executing a prepared CREATE TEMPORARY TABLE creates one.
    let tmp = s.on_prepare(b"CREATE TEMPORARY TABLE p_tmp (id INT)");
    assert_eq!(exec(&mut s, &tmp, AC), (Primary, R::TempTable));
    assert_eq!(exec(&mut s, &read, AC), (Primary, R::TempTable));
}

#[test]
fn text_prepared_statements_pin_the_primary() {
    let mut s = session();
    ok(
        &mut s,
        "PREPARE q FROM 'SELECT 1'",
        Primary,
        R::PreparedStatement,
        AC,
    );
    assert!(s.pins().prepared_text);
    ok(&mut s, "EXECUTE q", Primary, R::PreparedStatement, AC);
    ok(
        &mut s,
        "DEALLOCATE PREPARE q",
        Primary,
        R::PreparedStatement,
        AC,
    );
    assert!(!s.pins().prepared_text);
}

#[test]
fn session_variables_are_recorded_for_replay_and_stay_bounded() {
    let mut s = session();
    let g0 = s.history_generation();
    ok(&mut s, "SET NAMES utf8mb4", Primary, R::SessionState, AC);
    ok(&mut s, "USE app", Primary, R::SessionState, AC);
    ok(
        &mut s,
        "SET sql_mode = 'ANSI'",
        Primary,
        R::SessionState,
        AC,
    );
    ok(
        &mut s,
        "SET SESSION sql_mode = 'TRADITIONAL'",
        Primary,
        R::SessionState,
        AC,
    );
    ok(
        &mut s,
        "SET @@session.time_zone = '+00:00'",
        Primary,
        R::SessionState,
        AC,
    );
    ok(
        &mut s,
        "SET GLOBAL max_connections = 10",
        Primary,
        R::ServerAdmin,
        AC,
    );
    ok(
        &mut s,
        "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
        Primary,
        R::SessionState,
        AC,
    );
    ok(
        &mut s,
        "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE",
        Primary,
        R::Transaction,
        AC,
    );
    err(&mut s, "SET sql_mode = 'NOPE'", Primary, 1231);
    assert_eq!(
        history(&s),
        [
            "SET NAMES utf8mb4",
            "USE app",
            "SET sql_mode = 'TRADITIONAL'",
            "SET time_zone = '+00:00'",
            "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
        ]
    );
    assert!(s.history_generation() > g0);
    let g = s.history_generation();
    s.on_init_db(b"we`ird");
    assert!(s.history_generation() > g);
    assert_eq!(
        history(&s).last().map(String::as_str),
        Some("USE `we``ird`")
    );
    assert_eq!(
        history(&s).iter().filter(|c| c.starts_with("USE")).count(),
        1
    );
    // The next transaction's characteristics live on the primary connection: the next read
    // runs there and uses them up. Then reads go to replicas again: the proxy replays the
    // history there first.
    ok(&mut s, "SELECT 1", Primary, R::Transaction, AC);
    ok(&mut s, "SELECT 1", Replica, R::Read, AC);
    assert!(!s.needs_pinned_primary());
    s.reset();
    assert_eq!(history(&s).len(), 0);
}

#[test]
fn set_names_in_a_versioned_comment_and_mixed_assignments() {
    let mut s = session();
    ok(
        &mut s,
        "/*!40101 SET NAMES utf8 */",
        Primary,
        R::SessionState,
        AC,
    );
    ok(
        &mut s,
        "SET autocommit=1, sql_mode = concat(@@sql_mode,',STRICT_TRANS_TABLES')",
        Primary,
        R::SessionState,
        AC,
    );
    assert_eq!(
        history(&s),
        [
            "SET NAMES utf8",
            "SET sql_mode = concat(@@sql_mode,',STRICT_TRANS_TABLES')"
        ]
    );
}

#[test]
fn history_overflow_keeps_the_session_on_the_primary() {
    let mut s = Session::new(SessionOptions {
        max_history: 2,
        ..SessionOptions::default()
    });
    ok(&mut s, "SET a = 1", Primary, R::SessionState, AC);
    ok(&mut s, "SET b = 1", Primary, R::SessionState, AC);
    ok(&mut s, "SET a = 2", Primary, R::SessionState, AC);
    ok(&mut s, "SELECT 1", Replica, R::Read, AC);
    ok(&mut s, "SET c = 1", Primary, R::SessionState, AC);
    assert!(s.history_overflowed());
    ok(&mut s, "SELECT 1", Primary, R::SessionState, AC);
}

#[test]
fn user_variables_live_on_the_primary() {
    let mut s = session();
    ok(&mut s, "SET @x = 1", Primary, R::UserVariable, AC);
    assert!(s.pins().user_variables);
    assert!(history(&s).is_empty(), "user variables are not replayed");
    ok(&mut s, "SELECT @x", Primary, R::UserVariable, AC);
    ok(&mut s, "SELECT 1", Replica, R::Read, AC);
    let mut s = session();
    ok(
        &mut s,
        "SELECT @n := COUNT(*) FROM t",
        Primary,
        R::UserVariable,
        AC,
    );
    assert!(s.pins().user_variables);
    // Its variables too (the proxy runs it on the primary connection: see get_diagnostics).
    let mut s = session();
    ok(
        &mut s,
        "GET DIAGNOSTICS @r = ROW_COUNT",
        Previous,
        R::PreviousBackend,
        AC,
    );
    assert!(s.pins().user_variables);
}

#[test]
fn named_locks_pin_the_connection_but_not_reads() {
    let mut s = session();
    ok(
        &mut s,
        "SELECT GET_LOCK('job', 10)",
        Primary,
        R::NamedLock,
        AC,
    );
    assert!(s.pins().named_locks);
    ok(&mut s, "SELECT * FROM t", Replica, R::Read, AC);
    ok(&mut s, "DO RELEASE_LOCK('job')", Primary, R::NamedLock, AC);
    assert!(!s.pins().named_locks);
    ok(&mut s, "DO GET_LOCK('a', 1)", Primary, R::NamedLock, AC);
    ok(&mut s, "DO GET_LOCK('b', 1)", Primary, R::NamedLock, AC);
    ok(
        &mut s,
        "SELECT RELEASE_ALL_LOCKS()",
        Primary,
        R::NamedLock,
        AC,
    );
    assert!(!s.pins().named_locks);
}

#[test]
fn insert_then_last_insert_id_stays_on_the_primary_connection() {
    let mut s = session();
    ok(
        &mut s,
        "INSERT INTO t (v) VALUES ('a')",
        Primary,
        R::Write,
        AC,
    );
    // A write pins nothing: the proxy restores LAST_INSERT_ID() on the next primary connection.
    assert!(!s.needs_pinned_primary());
    ok(
        &mut s,
        "SELECT LAST_INSERT_ID()",
        Primary,
        R::LastInsertId,
        AC,
    );
    ok(&mut s, "SHOW WARNINGS", Previous, R::PreviousBackend, AC);
    ok(
        &mut s,
        "SELECT ROW_COUNT()",
        Previous,
        R::PreviousBackend,
        AC,
    );
}

#[test]
fn read_only_transaction_runs_on_one_replica_when_enabled() {
    let mut s = Session::new(SessionOptions {
        read_only_transactions_on_replica: true,
        ..SessionOptions::default()
    });
    ok(
        &mut s,
        "START TRANSACTION READ ONLY",
        Replica,
        R::ReadOnlyTransaction,
        AC | IT | SERVER_STATUS_IN_TRANS_READONLY,
    );
    assert!(s.in_replica_transaction());
    assert!(
        !s.pins().transaction,
        "the primary connection is not needed"
    );
    ok(
        &mut s,
        "SELECT * FROM t",
        Previous,
        R::ReadOnlyTransaction,
        AC | IT,
    );
    ok(
        &mut s,
        "SELECT * FROM u",
        Previous,
        R::ReadOnlyTransaction,
        AC | IT,
    );
    ok(&mut s, "COMMIT", Previous, R::ReadOnlyTransaction, AC);
    assert!(!s.in_transaction());
    ok(&mut s, "SELECT 1", Replica, R::Read, AC);
    // With session state on the primary (a temp table) it stays there.
    ok(
        &mut s,
        "CREATE TEMPORARY TABLE x (id INT)",
        Primary,
        R::TempTable,
        AC,
    );
    ok(
        &mut s,
        "START TRANSACTION READ ONLY",
        Primary,
        R::Transaction,
        AC | IT,
    );
    // Off by default.
    let mut s = session();
    ok(
        &mut s,
        "START TRANSACTION READ ONLY",
        Primary,
        R::Transaction,
        AC | IT,
    );
    ok(&mut s, "SELECT 1", Primary, R::Transaction, AC | IT);
}

#[test]
fn xa_transaction_pins_the_primary() {
    let mut s = session();
    ok(&mut s, "XA START 'x1'", Primary, R::Transaction, AC | IT);
    ok(&mut s, "SELECT * FROM t", Primary, R::Transaction, AC | IT);
    ok(&mut s, "XA END 'x1'", Primary, R::Transaction, AC);
    ok(&mut s, "SELECT * FROM t", Primary, R::Transaction, AC);
    ok(&mut s, "XA PREPARE 'x1'", Primary, R::Transaction, AC);
    ok(&mut s, "XA COMMIT 'x1'", Primary, R::Transaction, AC);
    ok(&mut s, "SELECT * FROM t", Replica, R::Read, AC);
}

#[test]
fn multi_statement_effects_apply_per_statement() {
    let mut s = session();
    ok(
        &mut s,
        "SET autocommit=0; SELECT 1",
        Primary,
        R::MultiStatement,
        IT,
    );
    ok(&mut s, "SELECT 1", Primary, R::Transaction, IT);
    let mut s = session();
    ok(
        &mut s,
        "SET NAMES latin1; USE app",
        Primary,
        R::MultiStatement,
        AC,
    );
    assert_eq!(history(&s), ["SET NAMES latin1", "USE app"]);
    // A failed multi-statement may have run its first statements: keep what pins.
    let mut s = session();
    err(
        &mut s,
        "CREATE TEMPORARY TABLE x (id INT); INSERT INTO nope VALUES (1)",
        Primary,
        1146,
    );
    ok(&mut s, "SELECT 1", Primary, R::TempTable, AC);
    let mut s = session();
    err(&mut s, "SET sql_mode = ''; SELEC 1", Primary, 1064);
    ok(&mut s, "SELECT 1", Primary, R::SessionState, AC);
}

#[test]
fn hints_choose_lag_and_primary_but_never_break_correctness() {
    let mut s = session();
    let d = s.route_query(b"/* rwsplit:max_lag_ms=200 */ SELECT * FROM t");
    assert_eq!((d.target, d.max_lag_ms), (Replica, Some(200)));
    s.on_ok(AC);
    ok(
        &mut s,
        "/* rwsplit:primary */ SELECT 1",
        Primary,
        R::HintPrimary,
        AC,
    );
    ok(
        &mut s,
        "/* rwsplit:replica */ DELETE FROM t",
        Primary,
        R::Write,
        AC,
    );
}

#[test]
fn reset_connection_forgets_everything() {
    let mut s = session();
    ok(&mut s, "SET autocommit=0", Primary, R::Transaction, 0);
    ok(
        &mut s,
        "CREATE TEMPORARY TABLE x (id INT)",
        Primary,
        R::TempTable,
        IT,
    );
    ok(&mut s, "SET @v = 1", Primary, R::UserVariable, IT);
    s.reset();
    assert!(!s.needs_pinned_primary());
    ok(&mut s, "SELECT 1", Replica, R::Read, AC);
}

#[test]
fn set_transaction_pins_until_the_next_transaction_uses_it() {
    let mut s = session();
    ok(
        &mut s,
        "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE",
        Primary,
        R::Transaction,
        AC,
    );
    assert!(s.pins().next_transaction && s.needs_pinned_primary());
    // Session set-up in between does not use it up; a read must see it, on the primary.
    ok(&mut s, "SET NAMES utf8mb4", Primary, R::SessionState, AC);
    assert!(s.pins().next_transaction);
    ok(&mut s, "SELECT * FROM t", Primary, R::Transaction, AC);
    assert!(!s.pins().next_transaction && !s.needs_pinned_primary());
    ok(&mut s, "SELECT * FROM t", Replica, R::Read, AC);

    ok(
        &mut s,
        "SET TRANSACTION READ ONLY",
        Primary,
        R::Transaction,
        AC,
    );
    ok(&mut s, "BEGIN", Primary, R::Transaction, AC | IT);
    assert!(!s.pins().next_transaction && s.pins().transaction);
    ok(&mut s, "COMMIT", Primary, R::Transaction, AC);
    assert!(!s.needs_pinned_primary());
}

#[test]
fn a_lost_connection_drops_the_pins_it_held_but_keeps_autocommit_and_history() {
    let mut s = session();
    ok(
        &mut s,
        "SET time_zone = '+01:00'",
        Primary,
        R::SessionState,
        AC,
    );
    ok(&mut s, "SET autocommit = 0", Primary, R::Transaction, 0);
    ok(&mut s, "UPDATE t SET v = 1", Primary, R::Write, IT);
    ok(
        &mut s,
        "CREATE TEMPORARY TABLE tmp (id INT)",
        Primary,
        R::TempTable,
        IT,
    );
    let lost = s.on_connection_lost();
    assert!(lost.transaction && lost.temp_tables && !lost.autocommit_off);
    assert!(!s.in_transaction() && !s.pins().temp_tables);
    assert!(!s.autocommit(), "autocommit=0 stays the session's mode");
    assert_eq!(history(&s), vec!["SET time_zone = '+01:00'"]);
}

#[test]
fn sql_calc_found_rows_is_flagged_for_the_proxy() {
    let mut s = session();
    let d = s.route_query(b"SELECT SQL_CALC_FOUND_ROWS * FROM t LIMIT 1");
    assert!(d.calc_found_rows && d.target == Replica);
    s.on_ok(AC);
    let d = s.route_query(b"SELECT * FROM t WHERE c = 'SQL_CALC_FOUND_ROWS'");
    assert!(!d.calc_found_rows);
}

#[test]
fn questions_about_the_previous_statement_are_flagged_wherever_they_go() {
    let mut s = session();
    let d = s.route_query(b"SELECT LAST_INSERT_ID(), ROW_COUNT()");
    assert!(d.reads_last_statement && d.target == Primary, "{d:?}");
    s.on_ok(AC);
    let d = s.route_query(b"SELECT FOUND_ROWS()");
    assert!(d.reads_last_statement && d.target == Previous, "{d:?}");
    s.on_ok(AC);
    let d = s.route_query(b"SHOW WARNINGS");
    assert!(d.reads_last_statement && d.target == Previous, "{d:?}");
    s.on_ok(AC);
    let d = s.route_query(b"SELECT * FROM t WHERE c = 'ROW_COUNT()'");
    assert!(!d.reads_last_statement, "{d:?}");
}

#[test]
fn session_setup_may_run_without_a_writer_and_nothing_else() {
    let setup = |s: &mut Session, sql: &str| {
        s.route_query(sql.as_bytes());
        s.pending_is_session_setup()
    };
    let mut s = session();
    for sql in [
        "SET NAMES utf8mb4",
        "SET NAMES utf8mb4 COLLATE utf8mb4_general_ci",
        "SET AUTOCOMMIT = 0",
        "SET autocommit=1",
        "USE rwsplit_test",
        "SET sql_mode='ANSI', time_zone='+00:00'",
        "SET @@session.wait_timeout = 600",
        "SET character_set_results = NULL",
    ] {
        assert!(setup(&mut s, sql), "{sql}");
        s.on_err(1290);
    }
    for sql in [
        "INSERT INTO t VALUES (1)",
        "SET @x = 1",
        "SET sql_mode = (SELECT f())",
        "SET GLOBAL read_only = 0",
        "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE",
        "SET PASSWORD = 'x'",
        "SELECT 1",
        "SET NAMES utf8mb4; DELETE FROM t",
    ] {
        assert!(!setup(&mut s, sql), "{sql}");
        s.on_err(1290);
    }
    // Inside a transaction even `SET autocommit=1` (it commits) stays with the writer.
    ok(
        &mut s,
        "BEGIN",
        Target::Primary,
        Reason::Transaction,
        AC | IT,
    );
    assert!(!setup(&mut s, "SET autocommit=1"));
}

#[test]
fn the_schema_is_the_last_use_unquoted() {
    let mut s = session();
    assert_eq!(s.schema(), None);
    s.on_init_db(b"app");
    assert_eq!(s.schema().as_deref(), Some("app"));
    ok(&mut s, "USE other", Primary, R::SessionState, AC);
    assert_eq!(s.schema().as_deref(), Some("other"));
    ok(&mut s, "use `we``ird`", Primary, R::SessionState, AC);
    assert_eq!(s.schema().as_deref(), Some("we`ird"));
    s.on_init_db(b"back`tick");
    assert_eq!(s.schema().as_deref(), Some("back`tick"));
}

#[test]
fn setting_the_insert_id_is_not_replayed() {
    let mut s = session();
    for sql in [
        "SET @@last_insert_id = 5",
        "SET LAST_INSERT_ID = 5",
        "SET @@session.identity = 7",
        "set session `last_insert_id` := 9",
    ] {
        ok(&mut s, sql, Primary, R::LastInsertId, AC);
        assert!(history(&s).is_empty(), "{sql}: {:?}", history(&s));
        assert!(!s.needs_pinned_primary(), "{sql}");
    }
    ok(
        &mut s,
        "SET sql_mode = 'ANSI', @@last_insert_id = 5",
        Primary,
        R::LastInsertId,
        AC,
    );
    assert_eq!(history(&s), ["SET sql_mode = 'ANSI'"]);
}

#[test]
fn executing_a_text_prepared_statement_that_asks_about_the_previous_one() {
    let mut s = session();
    let prepared = |s: &mut Session, sql: &str| ok(s, sql, Primary, R::PreparedStatement, AC);
    prepared(&mut s, "PREPARE s FROM 'SELECT FOUND_ROWS(), ?'");
    prepared(&mut s, "PREPARE t FROM 'SELECT 1'");
    let d = s.route_query(b"EXECUTE S USING @a");
    assert!(d.reads_last_statement && d.target == Primary, "{d:?}");
    let (text, rest) = s.executes_asking(b"EXECUTE S USING @a").expect("asks");
    assert_eq!(
        (&*text, rest),
        (&b"SELECT FOUND_ROWS(), ?"[..], &b" USING @a"[..])
    );
    s.on_ok(AC);
    let d = s.route_query(b"EXECUTE t");
    assert!(!d.reads_last_statement, "{d:?}");
    s.on_ok(AC);
    // Prepared again under the same name, from a text that does not ask.
    prepared(&mut s, "PREPARE s FROM 'SELECT 2'");
    assert!(s.executes_asking(b"EXECUTE s").is_none());
    prepared(&mut s, "PREPARE s FROM 'SELECT ROW_COUNT()'");
    assert!(s.executes_asking(b"EXECUTE s").is_some());
    prepared(&mut s, "DEALLOCATE PREPARE s");
    assert!(s.executes_asking(b"EXECUTE s").is_none());
    prepared(&mut s, "PREPARE s FROM 'SELECT @@warning_count'");
    s.on_connection_lost();
    assert!(s.executes_asking(b"EXECUTE s").is_none());
}
