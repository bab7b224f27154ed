//! The statements a switchover or failover sends, in the spelling of each flavour: MariaDB
//! (`MASTER_GTID_WAIT`, `CHANGE MASTER ... MASTER_USE_GTID=slave_pos`) and MySQL 8
//! (`WAIT_FOR_EXECUTED_GTID_SET`, `CHANGE REPLICATION SOURCE ... SOURCE_AUTO_POSITION=1`).
//! Pure text, so each spelling is a unit test; GTID positions are compared here too.

use binlog_reader::position::{mariadb_watermarks, mysql_watermarks, Watermarks};
use std::time::Duration;

/// Which server family a topology runs: the statements differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    MariaDb,
    MySql,
}

/// Where replicas are to replicate from, and as whom.
#[derive(Debug, Clone)]
pub struct Source<'a> {
    pub host: &'a str,
    pub port: u16,
    pub user: &'a str,
    pub password: &'a str,
}

impl Flavor {
    /// From a server's `@@version`.
    pub fn of_version(version: &str) -> Flavor {
        if version.contains("MariaDB") {
            Flavor::MariaDb
        } else {
            Flavor::MySql
        }
    }

    /// The server's own binlog position, everything it committed (read on the demoted primary).
    pub fn binlog_position(self) -> &'static str {
        match self {
            Flavor::MariaDb => "SELECT @@GLOBAL.gtid_binlog_pos",
            Flavor::MySql => "SELECT @@GLOBAL.gtid_executed",
        }
    }

    /// What a replica has applied.
    pub fn applied_position(self) -> &'static str {
        match self {
            Flavor::MariaDb => "SELECT @@GLOBAL.gtid_slave_pos",
            Flavor::MySql => "SELECT @@GLOBAL.gtid_executed",
        }
    }

    /// The replica status column holding what the IO thread has received.
    pub fn received_column(self) -> &'static str {
        match self {
            Flavor::MariaDb => "Gtid_IO_Pos",
            Flavor::MySql => "Retrieved_Gtid_Set",
        }
    }

    /// The replica status column saying whether it replicates by GTID.
    pub fn gtid_mode_column(self) -> &'static str {
        match self {
            Flavor::MariaDb => "Using_Gtid",
            Flavor::MySql => "Auto_Position",
        }
    }

    /// Whether a replica status value of [`Flavor::gtid_mode_column`] means GTID replication.
    pub fn uses_gtid(self, value: &str) -> bool {
        match self {
            Flavor::MariaDb => !value.eq_ignore_ascii_case("no") && !value.is_empty(),
            Flavor::MySql => value == "1",
        }
    }

    /// Waits until `position` is applied, at most `timeout`: answers 0 when it is (both
    /// flavours), -1 (MariaDB) or 1 (MySQL) on timeout.
    pub fn wait_for(self, position: &str, timeout: Duration) -> String {
        let secs = format!("{:.3}", timeout.as_secs_f64());
        match self {
            Flavor::MariaDb => format!("SELECT MASTER_GTID_WAIT({}, {secs})", quote(position)),
            Flavor::MySql => format!(
                "SELECT WAIT_FOR_EXECUTED_GTID_SET({}, {secs})",
                quote(position)
            ),
        }
    }

    /// Stops writes from clients without `SUPER` (the application): the old primary.
    pub fn demote(self) -> &'static str {
        "SET GLOBAL read_only = 1"
    }

    /// Undoes [`Flavor::demote`] when a switchover gives up before promoting anyone.
    pub fn undo_demote(self) -> &'static str {
        "SET GLOBAL read_only = 0"
    }

    /// Makes a caught-up replica the primary: replicates from no one, writable.
    pub fn promote(self) -> Vec<String> {
        let (stop, reset) = match self {
            Flavor::MariaDb => ("STOP SLAVE", "RESET SLAVE ALL"),
            Flavor::MySql => ("STOP REPLICA", "RESET REPLICA ALL"),
        };
        vec![stop.into(), reset.into(), "SET GLOBAL read_only = 0".into()]
    }

    /// Points a server at `source` by GTID and starts replication. `was_primary`: the demoted
    /// primary, which has no replica position of its own yet (MariaDB: it starts from its
    /// binlog, which the new primary has applied in full).
    pub fn replicate_from(self, source: &Source<'_>, was_primary: bool) -> Vec<String> {
        let (host, user, password) = (
            quote(source.host),
            quote(source.user),
            quote(source.password),
        );
        let port = source.port;
        match self {
            Flavor::MariaDb => {
                let mut v = vec!["STOP SLAVE".to_string()];
                if was_primary {
                    v.push("SET GLOBAL gtid_slave_pos = @@GLOBAL.gtid_binlog_pos".into());
                }
                v.push(format!(
                    "CHANGE MASTER TO MASTER_HOST={host}, MASTER_PORT={port}, \
                     MASTER_USER={user}, MASTER_PASSWORD={password}, MASTER_USE_GTID=slave_pos"
                ));
                v.push("START SLAVE".into());
                v
            }
            Flavor::MySql => vec![
                "STOP REPLICA".into(),
                format!(
                    "CHANGE REPLICATION SOURCE TO SOURCE_HOST={host}, SOURCE_PORT={port}, \
                     SOURCE_USER={user}, SOURCE_PASSWORD={password}, SOURCE_AUTO_POSITION=1, \
                     GET_SOURCE_PUBLIC_KEY=1"
                ),
                "START REPLICA".into(),
            ],
        }
    }

    /// A position as one watermark per replication stream, `None` when it does not parse.
    pub fn watermarks(self, position: &str) -> Option<Watermarks> {
        match self {
            Flavor::MariaDb => mariadb_watermarks(position).ok(),
            Flavor::MySql => mysql_watermarks(position).ok(),
        }
    }
}

/// Whether watermarks `have` include everything in `want`.
pub fn covers(have: &Watermarks, want: &Watermarks) -> bool {
    want.iter()
        .all(|(k, seq)| *seq == 0 || have.get(k).is_some_and(|h| h >= seq))
}

/// A string literal for SQL: quotes and backslashes escaped.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\'' => out.push_str("''"),
            '\\' => out.push_str("\\\\"),
            '\0' => out.push_str("\\0"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

#[cfg(test)]
mod test {
    use super::*;

    fn source() -> Source<'static> {
        Source {
            host: "10.0.0.2",
            port: 3306,
            user: "repl",
            password: "it's",
        }
    }

    #[test]
    fn mysql_statements() {
        let f = Flavor::of_version("8.4.3");
        assert_eq!(f, Flavor::MySql);
        assert_eq!(
            f.replicate_from(&source(), true),
            [
                "STOP REPLICA",
                "CHANGE REPLICATION SOURCE TO SOURCE_HOST='10.0.0.2', SOURCE_PORT=3306, \
                 SOURCE_USER='repl', SOURCE_PASSWORD='it''s', SOURCE_AUTO_POSITION=1, \
                 GET_SOURCE_PUBLIC_KEY=1",
                "START REPLICA",
            ]
        );
        assert_eq!(
            f.promote(),
            [
                "STOP REPLICA",
                "RESET REPLICA ALL",
                "SET GLOBAL read_only = 0"
            ]
        );
        assert_eq!(
            f.wait_for(
                "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5",
                Duration::from_millis(2500)
            ),
            "SELECT WAIT_FOR_EXECUTED_GTID_SET('3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5', 2.500)"
        );
        assert_eq!(f.binlog_position(), "SELECT @@GLOBAL.gtid_executed");
        assert!(f.uses_gtid("1") && !f.uses_gtid("0"));
    }

    #[test]
    fn mariadb_statements() {
        let f = Flavor::of_version("10.11.11-MariaDB-0+deb12u1");
        assert_eq!(f, Flavor::MariaDb);
        assert_eq!(
            f.replicate_from(&source(), true),
            [
                "STOP SLAVE",
                "SET GLOBAL gtid_slave_pos = @@GLOBAL.gtid_binlog_pos",
                "CHANGE MASTER TO MASTER_HOST='10.0.0.2', MASTER_PORT=3306, MASTER_USER='repl', \
                 MASTER_PASSWORD='it''s', MASTER_USE_GTID=slave_pos",
                "START SLAVE",
            ]
        );
        assert_eq!(f.replicate_from(&source(), false).len(), 3);
        assert_eq!(
            f.wait_for("0-1-42", Duration::from_secs(1)),
            "SELECT MASTER_GTID_WAIT('0-1-42', 1.000)"
        );
        assert!(f.uses_gtid("Slave_Pos") && !f.uses_gtid("No"));
    }

    #[test]
    fn positions_compare_per_stream() {
        let f = Flavor::MariaDb;
        let w = |s: &str| f.watermarks(s).expect("parses");
        assert!(covers(&w("0-1-10,1-2-5"), &w("0-1-9")));
        assert!(!covers(&w("0-1-10"), &w("0-1-9,1-2-5")));
        assert!(
            covers(&w("0-2-11"), &w("0-1-11")),
            "per domain, any server id"
        );
        assert!(covers(&w(""), &w("")));
        assert_eq!(quote("a\\b"), "'a\\\\b'");
    }
}
