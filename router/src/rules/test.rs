//! Rules as an operator writes them: loading and its errors, first match wins, each kind of
//! condition, and routing overrides that never send a write to a replica.

use super::*;
use crate::config::Config;

const BASE: &str = "servers:\n  - {name: p, host: h, port: 1, role: primary}\nmonitor: {user: m}\n";

fn load(rules: &str) -> Result<Config, String> {
    Config::from_yaml("c.yaml", &format!("{BASE}query_rules:\n{rules}")).map_err(|e| e.to_string())
}

fn rules(text: &str) -> QueryRules {
    load(text).expect("valid rules").rules
}

fn hit(r: &QueryRules, sql: &str, user: &str, schema: Option<&str>, addr: &str) -> Option<String> {
    let input = Input {
        sql: sql.as_bytes(),
        user,
        client: addr.parse().ok(),
        schema: || schema.map(str::to_string),
    };
    r.first_match(input, &mut StatementDigest::default())
        .map(|(_, rule)| rule.name.to_string())
}

#[test]
fn first_match_wins_over_each_condition() {
    let r = rules(
        "  - name: by_digest\n    digest: \"SELECT * FROM orders WHERE id = 1\"\n    route: primary\n\
         \x20 - name: by_regex\n    match: \"(?i)^select .* from reports\"\n    max_lag_ms: 100\n\
         \x20 - name: by_user_schema\n    user: batch\n    schema: Analytics\n    timeout_ms: 5000\n\
         \x20 - name: by_addr\n    client_addr: 10.0.0.0/8\n    block: \"not from there\"\n",
    );
    assert_eq!(r.len(), 4);
    let ip = "192.168.1.1";
    assert_eq!(
        hit(&r, "select *  from orders where id=77", "app", None, ip).as_deref(),
        Some("by_digest")
    );
    assert_eq!(
        hit(&r, "SELECT x FROM reports", "app", None, ip).as_deref(),
        Some("by_regex")
    );
    assert_eq!(
        hit(&r, "SELECT 1", "batch", Some("analytics"), ip).as_deref(),
        Some("by_user_schema")
    );
    assert_eq!(hit(&r, "SELECT 1", "batch", Some("other"), ip), None);
    assert_eq!(
        hit(&r, "SELECT 1", "app", None, "10.2.3.4").as_deref(),
        Some("by_addr")
    );
    // The digest rule comes first even from a blocked address.
    assert_eq!(
        hit(
            &r,
            "SELECT * FROM orders WHERE id = 5",
            "app",
            None,
            "10.2.3.4"
        )
        .as_deref(),
        Some("by_digest")
    );
    assert_eq!(hit(&r, "SELECT 2", "app", None, ip), None);
}

#[test]
fn the_schema_is_asked_for_only_when_a_rule_needs_it() {
    let r = rules("  - name: r\n    match: x\n    route: primary\n");
    let input = Input {
        sql: b"select x",
        user: "u",
        client: None,
        schema: || -> Option<String> { panic!("not needed") },
    };
    assert!(r
        .first_match(input, &mut StatementDigest::default())
        .is_some());
}

/// The rule `sql` matches as a new statement of user `app` from 192.168.1.1 in schema `shop`
/// (`digest` counts the digests computed).
fn hit_counting(r: &QueryRules, sql: &str, digest: &mut StatementDigest) -> Option<String> {
    digest.reset();
    let input = Input {
        sql: sql.as_bytes(),
        user: "app",
        client: "192.168.1.1".parse().ok(),
        schema: || Some("shop".to_string()),
    };
    r.first_match(input, digest)
        .map(|(_, rule)| rule.name.to_string())
}

#[test]
fn the_digest_is_computed_at_most_once_and_only_when_a_digest_rule_may_match() {
    let session_only = rules(
        "  - {name: u, user: batch, route: primary}\n\
         \x20 - {name: s, schema: reports, route: primary}\n\
         \x20 - {name: a, client_addr: 10.0.0.0/8, route: primary}\n",
    );
    let mut d = StatementDigest::default();
    for sql in ["SELECT c FROM sbtest1 WHERE id=1", "UPDATE t SET a = 1"] {
        assert_eq!(hit_counting(&session_only, sql, &mut d), None);
    }
    assert_eq!(
        d.computations(),
        0,
        "user, schema and address rules need no digest"
    );
    // Three digest rules: a statement of another kind or table is turned away without its
    // digest; one that may match computes it once for all three.
    let by_digest = rules(
        "  - {name: d1, digest: \"SELECT c FROM sbtest1 WHERE id BETWEEN ? AND ?\", route: primary}\n\
         \x20 - {name: d2, digest: \"SELECT c FROM sbtest1 WHERE id IN (1, 2)\", route: primary}\n\
         \x20 - {name: d3, digest: \"SELECT c FROM sbtest1 WHERE id = ?\", route: primary}\n",
    );
    for sql in [
        "UPDATE sbtest1 SET k=k+1 WHERE id=5",
        "SELECT c FROM sbtest2 WHERE id=5",
    ] {
        assert_eq!(hit_counting(&by_digest, sql, &mut d), None);
    }
    assert_eq!(d.computations(), 0);
    assert_eq!(
        hit_counting(&by_digest, "select c from sbtest1 where id=5017", &mut d).as_deref(),
        Some("d3")
    );
    assert_eq!(d.computations(), 1, "one digest for the three rules");
    assert_eq!(
        hit_counting(
            &by_digest,
            "SELECT c FROM sbtest1 WHERE id in (1,2,3)",
            &mut d
        )
        .as_deref(),
        Some("d2")
    );
    assert_eq!(d.computations(), 2);
    // A digest computed before matching (statement statistics) is the one rules use.
    d.reset();
    d.get(b"SELECT c FROM sbtest1 WHERE id = 9");
    let input = Input {
        sql: b"SELECT c FROM sbtest1 WHERE id = 9",
        user: "app",
        client: None,
        schema: || None,
    };
    assert_eq!(
        by_digest.first_match(input, &mut d).map(|(i, _)| i),
        Some(2)
    );
    assert_eq!(d.computations(), 3, "shared, not recomputed");
}

#[test]
fn several_regular_expressions_answer_in_rule_order() {
    let r = rules(
        "  - {name: other_user, user: batch, match: \"sbtest\", route: primary}\n\
         \x20 - {name: sleepy, match: \"(?i)sleep\\\\(\", timeout_ms: 100}\n\
         \x20 - {name: any_sbtest, match: \"sbtest\\\\d\", max_lag_ms: 10}\n\
         \x20 - {name: outfile, match: \"(?i)into\\\\s+outfile\", block: no}\n",
    );
    let mut d = StatementDigest::default();
    for (sql, want) in [
        ("SELECT SLEEP(1) FROM sbtest1", Some("sleepy")),
        ("SELECT c FROM sbtest1", Some("any_sbtest")),
        ("SELECT * FROM t INTO OUTFILE '/tmp/x'", Some("outfile")),
        ("SELECT 1", None),
    ] {
        assert_eq!(hit_counting(&r, sql, &mut d).as_deref(), want, "{sql}");
    }
    assert_eq!(d.computations(), 0);
}

#[test]
fn bad_rules_name_file_line_and_key() {
    for (rules, want) in [
        ("  - name: a\n    match: \"(\"\n    route: primary\n", "c.yaml:6: `query_rules[0].match`"),
        ("  - name: a\n    client_addr: 10.0.0.0/40\n    route: primary\n", "c.yaml:6: `query_rules[0].client_addr`"),
        ("  - name: a\n    user: u\n", "c.yaml:5: `query_rules[0].name`"),
        ("  - name: a\n    route: primary\n", "c.yaml:5: `query_rules[0].name`"),
        ("  - name: a\n    user: u\n    block: no\n    route: primary\n", "c.yaml:7: `query_rules[0].block`"),
        ("  - name: a\n    user: u\n    route: primary\n  - name: a\n    user: v\n    route: primary\n", "`query_rules[1].name`: duplicate"),
        ("  - name: a\n    user: u\n    timeout_ms: 0\n", "c.yaml:7: `query_rules[0].timeout_ms`"),
    ] {
        let err = load(rules).unwrap_err();
        assert!(err.contains(want), "{want} in {err}");
    }
    let err = load("  - name: a\n    route: sideways\n    user: u\n").unwrap_err();
    assert!(err.contains("c.yaml"), "{err}");
}

fn decision(target: Target, reason: Reason) -> Decision {
    Decision {
        target,
        reason,
        max_lag_ms: None,
        calc_found_rows: false,
        reads_last_statement: false,
    }
}

#[test]
fn route_replica_never_overrides_the_classification_for_writes_or_pinned_sessions() {
    let to_replica = Action {
        route: Some(RuleRoute::Replica),
        max_lag_ms: Some(250),
        ..Action::default()
    };
    let none = Pins::default();
    for reason in [
        Reason::Write,
        Reason::Ddl,
        Reason::LockingRead,
        Reason::Transaction,
        Reason::SessionState,
        Reason::UserVariable,
        Reason::LastInsertId,
    ] {
        let mut d = decision(Target::Primary, reason);
        assert_eq!(
            apply(&to_replica, &mut d, none, false, false),
            Override::Refused,
            "{reason:?}"
        );
        assert_eq!(d.target, Target::Primary);
    }
    let mut d = decision(Target::Primary, Reason::StoredFunction);
    assert_eq!(
        apply(&to_replica, &mut d, none, false, false),
        Override::Applied
    );
    assert_eq!((d.target, d.max_lag_ms), (Target::Replica, Some(250)));
    let pinned = Pins {
        temp_tables: true,
        ..Pins::default()
    };
    let mut d = decision(Target::Primary, Reason::StoredFunction);
    assert_eq!(
        apply(&to_replica, &mut d, pinned, false, false),
        Override::Refused
    );
    let mut d = decision(Target::Primary, Reason::StoredFunction);
    assert_eq!(
        apply(&to_replica, &mut d, none, true, false),
        Override::Refused
    );
    let mut d = decision(Target::Primary, Reason::StoredFunction);
    assert_eq!(
        apply(&to_replica, &mut d, none, false, true),
        Override::Refused
    );
    let mut d = decision(Target::Replica, Reason::Read);
    assert_eq!(
        apply(&to_replica, &mut d, none, false, false),
        Override::None
    );
}

#[test]
fn route_primary_moves_reads_and_a_hint_keeps_its_lag_bound() {
    let to_primary = Action {
        route: Some(RuleRoute::Primary),
        max_lag_ms: Some(100),
        ..Action::default()
    };
    let mut d = decision(Target::Replica, Reason::Read);
    d.max_lag_ms = Some(7);
    assert_eq!(
        apply(&to_primary, &mut d, Pins::default(), false, false),
        Override::Applied
    );
    assert_eq!((d.target, d.max_lag_ms), (Target::Primary, Some(7)));
    let mut d = decision(Target::Previous, Reason::PreviousBackend);
    assert_eq!(
        apply(&to_primary, &mut d, Pins::default(), false, false),
        Override::None
    );
    assert_eq!(d.target, Target::Previous);
}
