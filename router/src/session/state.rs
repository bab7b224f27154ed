//! What a session holds on its backends (transaction, autocommit, temporary tables, locks, user
//! variables, text prepared statements) and how each statement's [`Effect`] changes it.

use super::history::History;
use crate::classify::set::{assignments, bool_value, sets_insert_id, Scope, Sets};
use crate::classify::{classify, prepared_text, split_statements, Effect, Target};
use std::sync::Arc;

/// A text-prepared statement's name (lowercased) and text, when the text asks about the
/// previous statement.
pub(super) type Asking = (Box<[u8]>, Arc<[u8]>);

#[derive(Debug, Clone)]
pub(super) struct State {
    pub autocommit: bool,
    pub in_trans: bool,
    pub trx_on_replica: bool,
    pub xa: bool,
    /// Lowercased, unqualified names.
    pub temp_tables: Vec<Box<[u8]>>,
    pub lock_tables: bool,
    /// GET_LOCK calls not yet matched by a release (over-counts when GET_LOCK times out: safe).
    pub named_locks: u32,
    pub user_vars: bool,
    pub prepared_text: Vec<Box<[u8]>>,
    /// Those of `prepared_text` whose text asks about the previous statement, with the text
    /// (see `classify::text_prepared`).
    pub asking: Vec<Asking>,
    /// `SET TRANSACTION` characteristics wait for the next transaction.
    pub next_trx: bool,
}

impl Default for State {
    fn default() -> Self {
        Self {
            autocommit: true,
            in_trans: false,
            trx_on_replica: false,
            xa: false,
            temp_tables: Vec::new(),
            lock_tables: false,
            named_locks: 0,
            user_vars: false,
            prepared_text: Vec::new(),
            asking: Vec::new(),
            next_trx: false,
        }
    }
}

impl State {
    /// Applies a statement's effect. `conservative` (a failed multi-statement, where some
    /// statements may have run) applies only what keeps the session on the primary.
    pub fn apply(
        &mut self,
        effect: Effect,
        text: &[u8],
        history: &mut History,
        conservative: bool,
    ) {
        match effect {
            Effect::None | Effect::Write => {}
            Effect::NextTransaction => self.next_trx = true,
            Effect::Begin { .. } => {
                if !conservative {
                    self.in_trans = true;
                }
            }
            Effect::Commit | Effect::Rollback | Effect::ImplicitCommit => {
                if !conservative {
                    self.in_trans = false;
                }
            }
            Effect::XaStart => self.xa = true,
            Effect::XaEnd => {
                if !conservative {
                    self.xa = false;
                }
            }
            Effect::SetAutocommit(on) => {
                if !conservative || !on {
                    self.autocommit = on;
                }
            }
            Effect::Set => self.apply_set(text, history, conservative),
            Effect::UseDb(span) => {
                if conservative {
                    history.poison();
                } else {
                    let mut cmd = b"USE ".to_vec();
                    cmd.extend_from_slice(span.of(text));
                    history.record(b"use", &cmd);
                }
            }
            Effect::CreateTempTable(span) => {
                let name = last_name(span.of(text));
                if !self.temp_tables.contains(&name) {
                    self.temp_tables.push(name);
                }
            }
            Effect::DropTables { list, .. } => {
                if !conservative {
                    for_each_name(list.of(text), |n| self.temp_tables.retain(|t| *t != n));
                }
            }
            Effect::LockTables => self.lock_tables = true,
            Effect::UnlockTables => {
                if !conservative {
                    self.lock_tables = false;
                }
            }
            Effect::NamedLock => self.named_locks = self.named_locks.saturating_add(1),
            Effect::ReleaseNamedLock { all } => {
                if !conservative {
                    self.named_locks = if all {
                        0
                    } else {
                        self.named_locks.saturating_sub(1)
                    };
                }
            }
            Effect::UserVariable => self.user_vars = true,
            Effect::PrepareText(span) => {
                let name = last_name(span.of(text));
                // A statement prepared under the name before is gone, whatever the new one is.
                self.asking.retain(|(n, _)| *n != name);
                if !conservative {
                    if let Some((_, body)) = prepared_text(text) {
                        let c = classify(&body);
                        if c.reads_last_statement || c.target == Target::Previous {
                            self.asking.push((name.clone(), body.into()));
                        }
                    }
                }
                if !self.prepared_text.contains(&name) {
                    self.prepared_text.push(name);
                }
            }
            Effect::DeallocateText(span) => {
                if !conservative {
                    let name = last_name(span.of(text));
                    self.prepared_text.retain(|p| *p != name);
                    self.asking.retain(|(n, _)| *n != name);
                }
            }
            Effect::Multi => {
                for piece in split_statements(text) {
                    let c = classify(piece);
                    if c.effect != Effect::Multi {
                        self.apply(c.effect, piece, history, conservative);
                    }
                }
            }
        }
    }

    /// A `SET`: session variables go to the replay history, user variables pin the primary,
    /// `autocommit` changes the mode, global settings are the server's business.
    fn apply_set(&mut self, text: &[u8], history: &mut History, conservative: bool) {
        if conservative {
            // Unknown whether it ran: neither replay it nor read elsewhere.
            history.poison();
            self.user_vars = true;
            return;
        }
        let mut cur = crate::classify::rules_cursor_after_set(text);
        let mut records: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let mut poison = false;
        let ok = assignments(text, &mut cur, |a| match a.scope {
            Scope::Global => {}
            Scope::User => self.user_vars = true,
            Scope::Session => {
                let value = a.value.of(text);
                let name = a.name.of(text);
                if a.what == Sets::Var && name.eq_ignore_ascii_case(b"autocommit") {
                    if let Some(on) = bool_value(value) {
                        self.autocommit = on;
                    }
                    return;
                }
                if a.what == Sets::Var && sets_insert_id(name) {
                    // Not replayed: the proxy restores the session's insert id itself.
                    return;
                }
                if contains_user_var(value) {
                    // Its value lives on the primary connection only.
                    poison = true;
                    return;
                }
                let (key, prefix): (Vec<u8>, &[u8]) = match a.what {
                    Sets::Var => (unquote_lower(name), b"SET "),
                    Sets::Names => (b"names".to_vec(), b"SET "),
                    Sets::Role => (b"role".to_vec(), b"SET "),
                    Sets::Transaction => (transaction_key(value), b"SET SESSION "),
                };
                // A value that reads a variable (`CONCAT(@@sql_mode, ...)`) depends on what came
                // before: keep every such entry instead of replacing.
                let key = if value.contains(&b'@') {
                    let mut k = key;
                    k.extend_from_slice(b"#");
                    k.extend_from_slice(a.text.of(text));
                    k
                } else {
                    key
                };
                let mut cmd = prefix.to_vec();
                cmd.extend_from_slice(a.text.of(text));
                records.push((key, cmd));
            }
        });
        if !ok || poison {
            history.poison();
        }
        for (key, cmd) in records {
            history.record(&key, &cmd);
        }
    }
}

fn transaction_key(value: &[u8]) -> Vec<u8> {
    let upper = value.to_ascii_uppercase();
    let has = |w: &[u8]| upper.windows(w.len()).any(|x| x == w);
    match (has(b"ISOLATION"), has(b"READ ONLY") || has(b"READ WRITE")) {
        (true, false) => b"transaction_isolation".to_vec(),
        (false, true) => b"transaction_read_only".to_vec(),
        _ => {
            let mut k = b"transaction#".to_vec();
            k.extend_from_slice(&upper);
            k
        }
    }
}

fn contains_user_var(value: &[u8]) -> bool {
    crate::classify::lex_has_user_var(value)
}

/// Strips backquotes and lowercases a name.
fn unquote_lower(name: &[u8]) -> Vec<u8> {
    let n = name
        .strip_prefix(b"`")
        .and_then(|n| n.strip_suffix(b"`"))
        .unwrap_or(name);
    n.to_ascii_lowercase()
}

/// The last component of a possibly qualified name (`db`.`t` → t), unquoted and lowercased.
pub(super) fn last_name(qualified: &[u8]) -> Box<[u8]> {
    let mut last: &[u8] = qualified;
    crate::classify::for_each_name_part(qualified, |part| last = part);
    unquote_lower(last).into_boxed_slice()
}

/// Calls `f` with the unqualified, lowercased name of each table in a comma-separated list.
fn for_each_name(list: &[u8], mut f: impl FnMut(Box<[u8]>)) {
    for item in list.split(|b| *b == b',') {
        let item = trim(item);
        if !item.is_empty() {
            f(last_name(item));
        }
    }
}

fn trim(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map(|p| p + 1)
        .unwrap_or(start);
    &b[start..end.max(start)]
}
