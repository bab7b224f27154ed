//! The statement table (`statements.txt`): every statement with its expected route and reason.
//! All mismatches are reported at once so a rule change shows its whole blast radius.

use router::classify::{classify, parser_fallbacks_on_this_thread, Reason, Target};

const TABLE: &str = include_str!("statements.txt");

fn rows() -> Vec<(usize, Target, &'static str, String)> {
    let mut rows = Vec::new();
    for (n, line) in TABLE.lines().enumerate() {
        if line.starts_with("//") || line.trim().is_empty() {
            continue;
        }
        let mut parts = line.splitn(3, ' ');
        let target = match parts.next() {
            Some("primary") => Target::Primary,
            Some("replica") => Target::Replica,
            Some("previous") => Target::Previous,
            other => panic!("line {}: bad target {other:?}", n + 1),
        };
        let reason = parts
            .next()
            .unwrap_or_else(|| panic!("line {}: no reason", n + 1));
        assert!(
            Reason::ALL.iter().any(|r| r.as_str() == reason),
            "line {}: unknown reason {reason}",
            n + 1
        );
        let sql = parts.next().unwrap_or("").replace('⏎', "\n");
        rows.push((n + 1, target, reason, sql));
    }
    rows
}

#[test]
fn statement_table_routes_as_expected() {
    let rows = rows();
    assert!(rows.len() >= 250, "only {} statements", rows.len());
    let mut failures = Vec::new();
    for (line, target, reason, sql) in &rows {
        let c = classify(sql.as_bytes());
        if c.target != *target || c.reason.as_str() != *reason {
            failures.push(format!(
                "line {line}: {sql:?}\n    expected {} {reason}, got {} {}",
                target.as_str(),
                c.target.as_str(),
                c.reason.as_str()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} statements misrouted:\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n")
    );
}

#[test]
fn table_covers_every_reason() {
    let rows = rows();
    for r in Reason::ALL {
        if r == Reason::ReadOnlyTransaction || r == Reason::AutocommitOff {
            continue; // session-level reasons, covered by the session conversations
        }
        assert!(
            rows.iter().any(|(_, _, reason, _)| *reason == r.as_str()),
            "no statement in the table for reason {}",
            r.as_str()
        );
    }
}

#[test]
fn common_statements_never_reach_sqlparser() {
    let mut checked = 0;
    for (line, _, _, sql) in rows() {
        let first = sql
            .trim_start()
            .split([' ', '('])
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        let common = [
            "SELECT", "INSERT", "UPDATE", "DELETE", "REPLACE", "BEGIN", "COMMIT", "ROLLBACK",
            "SET", "SHOW", "USE", "START", "WITH", "CREATE", "ALTER", "DROP",
        ];
        if !common.contains(&first.as_str()) {
            continue;
        }
        let before = parser_fallbacks_on_this_thread();
        classify(sql.as_bytes());
        assert_eq!(
            parser_fallbacks_on_this_thread(),
            before,
            "line {line}: {sql:?} went to sqlparser"
        );
        checked += 1;
    }
    assert!(checked > 300, "{checked}");
    let before = parser_fallbacks_on_this_thread();
    classify(b"FROBNICATE x");
    assert_eq!(
        parser_fallbacks_on_this_thread(),
        before + 1,
        "the counter counts"
    );
}
