//! The session state a backend connection carries (its *fingerprint*): the replayable session
//! commands that brought it there (`USE`, `SET NAMES`, session variables, `sql_mode`, time
//! zone...) and its COM_SET_OPTION value. Connections change hands between sessions after every
//! statement, so a session takes one whose fingerprint already matches its own when it can, and
//! otherwise brings it to its state in one round trip: reverting what the connection has and
//! the session has not (`@@SESSION.x = DEFAULT`) and applying the differences in one combined
//! `SET`, pipelined with any `USE` or COM_SET_OPTION. Only state that cannot be reverted that
//! way (the character set, settings computed from other variables, `SET SESSION TRANSACTION`)
//! costs a `COM_RESET_CONNECTION`, pipelined in the same write.
//!
//! State that lives on a connection and cannot be replayed at all (transactions, locks,
//! temporary tables, user variables) is not described here: a session keeps the connection that
//! has it (the anchor, `session/conns.rs`) and resets it before giving it back.

use crate::protocol::consts::com;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// One replayable command: what it sets (the router's history key) and its text.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Entry {
    key: Box<[u8]>,
    text: Box<[u8]>,
}

/// A session state, as a connection carries it or a session wants it. Shared (`Arc`) between
/// a session and the connections it brought to that state, so a match is usually a pointer
/// comparison.
#[derive(Debug, PartialEq, Eq)]
pub struct Fingerprint {
    entries: Vec<Entry>,
    /// COM_SET_OPTION value (`None`: what the handshake gave).
    option: Option<u16>,
    hash: u64,
}

/// The key the router's history records `USE` and `COM_INIT_DB` under.
const USE_KEY: &[u8] = b"use";

impl Fingerprint {
    /// A fresh connection's state (or one just reset): nothing set.
    pub fn fresh() -> Arc<Fingerprint> {
        Self::build(std::iter::empty(), None)
    }

    /// The state `entries` (history key, command text; oldest first) and `option` describe.
    pub fn build<'a>(
        entries: impl Iterator<Item = (&'a [u8], &'a [u8])>,
        option: Option<u16>,
    ) -> Arc<Fingerprint> {
        let entries: Vec<Entry> = entries
            .map(|(k, t)| Entry {
                key: k.into(),
                text: t.into(),
            })
            .collect();
        let mut h = std::collections::hash_map::DefaultHasher::new();
        entries.hash(&mut h);
        option.hash(&mut h);
        Arc::new(Fingerprint {
            hash: h.finish(),
            entries,
            option,
        })
    }

    /// This state with COM_SET_OPTION `option`.
    pub fn with_option(&self, option: Option<u16>) -> Arc<Fingerprint> {
        Self::build(self.entries.iter().map(|e| (&*e.key, &*e.text)), option)
    }

    /// Whether two states are the same (cheap: a pointer, then a hash, comparison first).
    pub fn same(a: &Arc<Fingerprint>, b: &Arc<Fingerprint>) -> bool {
        Arc::ptr_eq(a, b) || (a.hash == b.hash && a.entries == b.entries && a.option == b.option)
    }

    /// The state selects a default database.
    pub fn has_schema(&self) -> bool {
        self.entries.iter().any(|e| &*e.key == USE_KEY)
    }

    pub fn option(&self) -> Option<u16> {
        self.option
    }

    fn get(&self, key: &[u8]) -> Option<&Entry> {
        self.entries.iter().find(|e| &*e.key == key)
    }
}

/// How a connection is brought from one state to another.
#[derive(Debug, PartialEq, Eq)]
pub enum Plan {
    /// Already there.
    Nothing,
    /// The command packets to pipeline (one write, one round trip).
    Send(Vec<Vec<u8>>),
}

/// What to send to a connection in state `have` (whose handshake enabled multi-statements if
/// `multi_default`) so that it is in state `want`: reverts and differences in one `SET`, a
/// `USE` and a COM_SET_OPTION beside it when needed; a `COM_RESET_CONNECTION` followed by the
/// whole of `want` when something cannot be reverted. Without `may_reset` (the connection
/// holds pinned state a reset would destroy) the whole of `want` is replayed over what the
/// connection has instead. Returns whether the plan starts with a reset, and the plan.
pub fn plan(
    have: &Fingerprint,
    want: &Fingerprint,
    multi_default: bool,
    may_reset: bool,
) -> (bool, Plan) {
    if have == want {
        return (false, Plan::Nothing);
    }
    let mut reverts: Vec<&[u8]> = Vec::new();
    let mut reset = false;
    for e in &have.entries {
        if want.get(&e.key).is_some() {
            continue;
        }
        match revert(&e.key) {
            Revert::Default => reverts.push(&e.key),
            Revert::Never => {
                reset = true;
                break;
            }
        }
    }
    // Applying in the session's order only what differs is right unless an entry depends on
    // another (its key carries `#`: a value computed from a variable): then replay it all.
    let changed = |e: &Entry| have.get(&e.key).is_none_or(|h| h.text != e.text);
    if !reset
        && want
            .entries
            .iter()
            .any(|e| changed(e) && e.key.contains(&b'#'))
    {
        reset = true;
    }
    // Replay everything, in order: after a reset, or instead of one.
    let replay_all = reset;
    let reset = reset && may_reset && !have.entries.is_empty();
    let mut packets = Vec::new();
    if reset {
        packets.push(vec![com::RESET_CONNECTION]);
    }
    let mut set: Vec<u8> = Vec::new();
    let flush_set = |set: &mut Vec<u8>, packets: &mut Vec<Vec<u8>>| {
        if !set.is_empty() {
            let mut p = Vec::with_capacity(5 + set.len());
            p.push(com::QUERY);
            p.extend_from_slice(b"SET ");
            p.extend_from_slice(set);
            packets.push(p);
            set.clear();
        }
    };
    if !replay_all {
        for key in reverts {
            if !set.is_empty() {
                set.extend_from_slice(b", ");
            }
            set.extend_from_slice(b"@@SESSION.");
            set.extend_from_slice(key);
            set.extend_from_slice(b" = DEFAULT");
        }
    }
    for e in &want.entries {
        if !replay_all && !changed(e) {
            continue;
        }
        match combinable(&e.text) {
            Some(assignment) if !e.key.contains(&b'#') => {
                if !set.is_empty() {
                    set.extend_from_slice(b", ");
                }
                set.extend_from_slice(assignment);
            }
            _ => {
                flush_set(&mut set, &mut packets);
                let mut p = Vec::with_capacity(1 + e.text.len());
                p.push(com::QUERY);
                p.extend_from_slice(&e.text);
                packets.push(p);
            }
        }
    }
    flush_set(&mut set, &mut packets);
    let have_option = if reset { None } else { have.option };
    let effective = |o: Option<u16>| match o {
        Some(v) => v == 0,
        None => multi_default,
    };
    if effective(have_option) != effective(want.option) {
        // MYSQL_OPTION_MULTI_STATEMENTS_ON = 0, _OFF = 1.
        let v: u16 = if effective(want.option) { 0 } else { 1 };
        let [a, b] = v.to_le_bytes();
        packets.push(vec![com::SET_OPTION, a, b]);
    }
    if packets.is_empty() {
        // Same commands in another order, or an option already in effect.
        return (false, Plan::Nothing);
    }
    (reset, Plan::Send(packets))
}

/// How a setting the session does not have is taken off a connection.
enum Revert {
    /// `@@SESSION.name = DEFAULT` gives what a fresh connection has.
    Default,
    /// Only a reset does: the character set (a fresh connection has the handshake's, not the
    /// server default), settings whose key is not a plain name, `SET SESSION TRANSACTION`,
    /// `USE` (a database cannot be unselected), roles.
    Never,
}

fn revert(key: &[u8]) -> Revert {
    const NEVER: &[&[u8]] = &[
        b"use",
        b"names",
        b"role",
        b"character_set_client",
        b"character_set_connection",
        b"character_set_results",
        b"collation_connection",
        b"transaction_isolation",
        b"transaction_read_only",
        b"pseudo_thread_id",
        b"insert_id",
        b"last_insert_id",
        b"identity",
    ];
    let plain = !key.is_empty()
        && key
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_');
    if plain && !NEVER.contains(&key) {
        Revert::Default
    } else {
        Revert::Never
    }
}

/// The assignment of a replay command that can join others in one `SET` (`SET x = 1` →
/// `x = 1`, `SET NAMES utf8mb4` → `NAMES utf8mb4`); `None` for `USE`, `SET SESSION
/// TRANSACTION`, `SET ROLE`, which are statements of their own.
fn combinable(text: &[u8]) -> Option<&[u8]> {
    let rest = strip_word(text, b"SET")?;
    let first = rest.split(|b| b.is_ascii_whitespace()).next()?;
    if first.eq_ignore_ascii_case(b"SESSION")
        || first.eq_ignore_ascii_case(b"ROLE")
        || first.eq_ignore_ascii_case(b"TRANSACTION")
        || first.eq_ignore_ascii_case(b"STATEMENT")
    {
        return None;
    }
    Some(rest)
}

fn strip_word<'a>(text: &'a [u8], word: &[u8]) -> Option<&'a [u8]> {
    let head = text.get(..word.len())?;
    if !head.eq_ignore_ascii_case(word) {
        return None;
    }
    let rest = &text[word.len()..];
    let trimmed = rest.trim_ascii_start();
    (trimmed.len() < rest.len()).then_some(trimmed)
}

#[cfg(test)]
mod test;
