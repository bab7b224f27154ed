//! Runtime changes to a server's routing settings (`maintenance`, `weight`, `max_lag_ms`) made
//! through the admin API, and how they meet the config file.
//!
//! The context serves one configuration: the file's, with these overrides applied. So the
//! monitor, the replica choice and `/servers` see the effective value without a lookup of
//! their own, and a read costs nothing more. Each override remembers the file's value it
//! replaced: a reload keeps it while the file still says that, and drops it (the file wins)
//! once the file's value for that key changes — the operator edited the file since, and the
//! file is the newer word. Clearing an override (`null`) goes back to the file's value.

use router::config::{Config, ServerConfig};
use std::collections::BTreeMap;

/// A runtime value and the file's value it stands in for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pinned<T> {
    pub file: T,
    pub value: T,
}

/// The overrides of one server.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerOverride {
    pub maintenance: Option<Pinned<bool>>,
    pub weight: Option<Pinned<u32>>,
    pub max_lag_ms: Option<Pinned<Option<u64>>>,
}

impl ServerOverride {
    fn is_empty(&self) -> bool {
        self.maintenance.is_none() && self.weight.is_none() && self.max_lag_ms.is_none()
    }
}

/// What an operator asks to change on one server: `Some(Some(v))` sets `v`, `Some(None)`
/// clears the override (back to the file's value), `None` leaves the key alone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Change {
    pub maintenance: Option<Option<bool>>,
    pub weight: Option<Option<u32>>,
    pub max_lag_ms: Option<Option<u64>>,
}

/// Every server's overrides, by server name.
#[derive(Debug, Default)]
pub struct Overrides {
    by_server: BTreeMap<String, ServerOverride>,
}

/// One key's step in [`Overrides::set`] / [`Overrides::apply`]: the new override state and
/// the value the server gets.
fn step<T: Copy + PartialEq>(
    current: Option<Pinned<T>>,
    effective: T,
    asked: Option<Option<T>>,
) -> (Option<Pinned<T>>, T) {
    let file = current.map_or(effective, |p| p.file);
    match asked {
        None => (current, effective),
        Some(None) => (None, file),
        // The file's own value needs no override.
        Some(Some(v)) if v == file => (None, v),
        Some(Some(v)) => (Some(Pinned { file, value: v }), v),
    }
}

impl Overrides {
    /// Applies `change` to `server` (its entry in the effective config, changed in place)
    /// and records it.
    pub fn set(&mut self, server: &mut ServerConfig, change: &Change) {
        let entry = self.by_server.entry(server.name.clone()).or_default();
        let (m, v) = step(entry.maintenance, server.maintenance, change.maintenance);
        entry.maintenance = m;
        server.maintenance = v;
        let (w, v) = step(entry.weight, server.weight, change.weight);
        entry.weight = w;
        server.weight = v;
        let (l, v) = step(
            entry.max_lag_ms,
            server.max_lag_ms,
            change.max_lag_ms.map(|c| c.map(Some)),
        );
        entry.max_lag_ms = l;
        server.max_lag_ms = v;
        if entry.is_empty() {
            self.by_server.remove(&server.name);
        }
    }

    /// Applies the overrides to a freshly read file config. An override whose key the file now
    /// sets to another value than the one it replaced is dropped (the file wins), and so are
    /// those of servers the file no longer lists. Returns what was dropped, for the log.
    pub fn apply(&mut self, config: &mut Config) -> Vec<String> {
        let mut dropped = Vec::new();
        self.by_server.retain(|name, o| {
            let Some(s) = config.servers.iter_mut().find(|s| &s.name == name) else {
                dropped.push(format!("{name}: removed from the file"));
                return false;
            };
            keep(
                &mut o.maintenance,
                &mut s.maintenance,
                name,
                "maintenance",
                &mut dropped,
            );
            keep(&mut o.weight, &mut s.weight, name, "weight", &mut dropped);
            keep(
                &mut o.max_lag_ms,
                &mut s.max_lag_ms,
                name,
                "max_lag_ms",
                &mut dropped,
            );
            !o.is_empty()
        });
        dropped
    }

    /// The overrides of server `name`.
    pub fn of(&self, name: &str) -> Option<&ServerOverride> {
        self.by_server.get(name)
    }
}

fn keep<T: Copy + PartialEq + std::fmt::Debug>(
    o: &mut Option<Pinned<T>>,
    file_value: &mut T,
    name: &str,
    key: &str,
    dropped: &mut Vec<String>,
) {
    if let Some(p) = *o {
        if p.file == *file_value {
            *file_value = p.value;
        } else {
            dropped.push(format!(
                "{name}: {key} (the file changed it from {:?} to {:?})",
                p.file, file_value
            ));
            *o = None;
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;

    fn config(maintenance: bool, weight: u32) -> Config {
        let text = format!(
            "servers:\n  - {{name: p, host: 127.0.0.1, port: 1, role: primary}}\n  - {{name: r, host: 127.0.0.1, port: 2, role: replica, weight: {weight}, maintenance: {maintenance}}}\nmonitor: {{user: m}}\n"
        );
        Config::from_yaml("t.yaml", &text).expect("valid")
    }

    #[test]
    fn an_override_lasts_until_the_file_changes_that_key() {
        let mut o = Overrides::default();
        let mut effective = config(false, 1);
        o.set(
            &mut effective.servers[1],
            &Change {
                maintenance: Some(Some(true)),
                weight: Some(Some(5)),
                ..Change::default()
            },
        );
        assert!(effective.servers[1].maintenance);
        assert_eq!(effective.servers[1].weight, 5);

        // A reload of the same file keeps both.
        let mut same = config(false, 1);
        assert!(o.apply(&mut same).is_empty());
        assert!(same.servers[1].maintenance);
        assert_eq!(same.servers[1].weight, 5);

        // The file's weight changed: the file wins for weight only.
        let mut edited = config(false, 3);
        let dropped = o.apply(&mut edited);
        assert_eq!(dropped.len(), 1, "{dropped:?}");
        assert!(dropped[0].contains("weight"), "{dropped:?}");
        assert_eq!(edited.servers[1].weight, 3);
        assert!(edited.servers[1].maintenance);

        // Undrain: back to the file's value, nothing left to override.
        o.set(
            &mut edited.servers[1],
            &Change {
                maintenance: Some(Some(false)),
                ..Change::default()
            },
        );
        assert!(!edited.servers[1].maintenance);
        assert!(o.of("r").is_none());
    }

    #[test]
    fn clearing_restores_the_file_value_and_setting_it_twice_keeps_the_first_file_value() {
        let mut o = Overrides::default();
        let mut effective = config(false, 2);
        let set = |w| Change {
            weight: Some(Some(w)),
            ..Change::default()
        };
        o.set(&mut effective.servers[1], &set(7));
        o.set(&mut effective.servers[1], &set(9));
        assert_eq!(o.of("r").and_then(|s| s.weight).map(|p| p.file), Some(2));
        o.set(
            &mut effective.servers[1],
            &Change {
                weight: Some(None),
                ..Change::default()
            },
        );
        assert_eq!(effective.servers[1].weight, 2);
        assert!(o.of("r").is_none());
    }

    #[test]
    fn a_server_removed_from_the_file_loses_its_overrides() {
        let mut o = Overrides::default();
        let mut effective = config(false, 1);
        o.set(
            &mut effective.servers[1],
            &Change {
                max_lag_ms: Some(Some(50)),
                ..Change::default()
            },
        );
        assert_eq!(effective.servers[1].max_lag_ms, Some(50));
        let mut smaller = effective.clone();
        smaller.servers.truncate(1);
        assert_eq!(o.apply(&mut smaller).len(), 1);
        assert!(o.of("r").is_none());
    }
}
