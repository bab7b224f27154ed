use super::*;

fn fp(entries: &[(&str, &str)]) -> Arc<Fingerprint> {
    Fingerprint::build(
        entries.iter().map(|(k, t)| (k.as_bytes(), t.as_bytes())),
        None,
    )
}

fn texts(p: Plan) -> Vec<String> {
    match p {
        Plan::Nothing => Vec::new(),
        Plan::Send(v) => v
            .into_iter()
            .map(|p| String::from_utf8_lossy(&p).into_owned())
            .collect(),
    }
}

#[test]
fn equal_states_need_nothing() {
    let a = fp(&[
        ("names", "SET NAMES utf8mb4"),
        ("sql_mode", "SET sql_mode = ''"),
    ]);
    let b = fp(&[
        ("names", "SET NAMES utf8mb4"),
        ("sql_mode", "SET sql_mode = ''"),
    ]);
    assert!(Fingerprint::same(&a, &b));
    assert_eq!(plan(&a, &b, false, true), (false, Plan::Nothing));
}

#[test]
fn differences_and_reverts_go_in_one_set() {
    let have = fp(&[
        ("names", "SET NAMES utf8mb4"),
        ("time_zone", "SET time_zone = '+01:00'"),
    ]);
    let want = fp(&[
        ("names", "SET NAMES utf8mb4"),
        ("sql_mode", "SET sql_mode = 'ANSI'"),
    ]);
    let (reset, p) = plan(&have, &want, false, true);
    assert!(!reset);
    assert_eq!(
        texts(p),
        vec!["\u{3}SET @@SESSION.time_zone = DEFAULT, sql_mode = 'ANSI'".to_string()]
    );
}

#[test]
fn use_stands_alone_beside_the_set() {
    let have = fp(&[]);
    let want = fp(&[("use", "USE `db`"), ("names", "SET NAMES latin1")]);
    let (reset, p) = plan(&have, &want, false, true);
    assert!(!reset);
    assert_eq!(
        texts(p),
        vec![
            "\u{3}USE `db`".to_string(),
            "\u{3}SET NAMES latin1".to_string()
        ]
    );
}

#[test]
fn what_cannot_be_reverted_costs_a_reset_and_a_full_replay() {
    let have = fp(&[
        ("names", "SET NAMES latin1"),
        ("sql_mode", "SET sql_mode = ''"),
    ]);
    let want = fp(&[("sql_mode", "SET sql_mode = ''")]);
    let (reset, p) = plan(&have, &want, false, true);
    assert!(reset);
    assert_eq!(
        texts(p),
        vec!["\u{1f}".to_string(), "\u{3}SET sql_mode = ''".to_string()]
    );
    // A schema cannot be unselected either.
    let (reset, _) = plan(&fp(&[("use", "USE a")]), &fp(&[]), false, true);
    assert!(reset);
}

#[test]
fn transaction_and_role_settings_are_statements_of_their_own() {
    let want = fp(&[
        (
            "transaction_isolation",
            "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
        ),
        ("a", "SET a = 1"),
        ("b", "SET b = 2"),
    ]);
    let (_, p) = plan(&fp(&[]), &want, false, true);
    assert_eq!(
        texts(p),
        vec![
            "\u{3}SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED".to_string(),
            "\u{3}SET a = 1, b = 2".to_string()
        ]
    );
}

#[test]
fn dependent_settings_replay_everything_in_order() {
    let have = fp(&[("sql_mode", "SET sql_mode = 'ANSI'")]);
    let want = fp(&[
        ("sql_mode", "SET sql_mode = 'ANSI'"),
        (
            "sql_mode#sql_mode = CONCAT(@@sql_mode, ',X')",
            "SET sql_mode = CONCAT(@@sql_mode, ',X')",
        ),
    ]);
    let (reset, p) = plan(&have, &want, false, true);
    assert!(reset);
    assert_eq!(texts(p).len(), 3);
}

#[test]
fn the_multi_statement_option_follows_the_session() {
    let have = fp(&[]);
    let want = have.with_option(Some(0));
    let (_, p) = plan(&have, &want, false, true);
    assert_eq!(texts(p), vec!["\u{1b}\u{0}\u{0}".to_string()]);
    // Already on from the handshake: nothing to send.
    assert_eq!(plan(&have, &want, true, true), (false, Plan::Nothing));
    // Back to the handshake's default.
    let (_, p) = plan(&want, &have, false, true);
    assert_eq!(texts(p), vec!["\u{1b}\u{1}\u{0}".to_string()]);
}

#[test]
fn a_connection_with_pinned_state_is_replayed_over_not_reset() {
    let have = fp(&[
        ("names", "SET NAMES latin1"),
        ("sql_mode", "SET sql_mode = ''"),
    ]);
    let want = fp(&[("sql_mode", "SET sql_mode = ''"), ("a#x", "SET a = @@b")]);
    let (reset, p) = plan(&have, &want, false, false);
    assert!(!reset);
    assert_eq!(
        texts(p),
        vec![
            "\u{3}SET sql_mode = ''".to_string(),
            "\u{3}SET a = @@b".to_string()
        ]
    );
}
