//! One health check of one server over a kept monitor connection: ping, `@@read_only`, and the
//! replica status (both the MySQL 5.7/MariaDB `SHOW SLAVE STATUS` and the MySQL 8
//! `SHOW REPLICA STATUS` column spellings).

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, OptsBuilder, Row, Value};
use router::config::BackendTlsConfig;
use std::time::Duration;

/// What one check failed on, worded for `/servers` and logs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckError {
    #[error("connect failed: {0}")]
    Connect(String),
    #[error("connect timed out after {0} ms")]
    ConnectTimeout(u64),
    #[error("query failed: {0}")]
    Query(String),
    #[error("no answer within {0} ms")]
    Timeout(u64),
}

impl CheckError {
    /// The server did not answer in time (frozen, partitioned, overloaded past the limit),
    /// as opposed to refusing: work waiting on it may wait forever.
    pub fn is_hang(&self) -> bool {
        matches!(self, CheckError::Timeout(_) | CheckError::ConnectTimeout(_))
    }

    /// Connect failures count in `rwsplit_backend_connect_errors_total`.
    pub fn is_connect(&self) -> bool {
        matches!(self, CheckError::Connect(_) | CheckError::ConnectTimeout(_))
    }
}

/// The replica status row, when the server replicates from another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replication {
    pub source_host: String,
    /// `Source_Port` / `Master_Port`, when reported.
    pub source_port: Option<u16>,
    pub io_running: bool,
    pub sql_running: bool,
    /// `Seconds_Behind_Master` / `Seconds_Behind_Source`; NULL while the threads are stopped.
    pub seconds_behind: Option<u64>,
}

/// What a successful check saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub read_only: bool,
    /// `None` when the server replicates from no one.
    pub replication: Option<Replication>,
}

/// A server's monitor session: reconnects when the connection breaks.
pub struct Checker {
    opts: OptsBuilder,
    tls: BackendTlsConfig,
    conn: Option<Conn>,
    /// `SHOW REPLICA STATUS` is refused by servers older than MySQL 8.0.22 / MariaDB 10.5:
    /// after one refusal use `SHOW SLAVE STATUS`.
    use_slave_syntax: bool,
    /// `@@version`, read once per monitor connection.
    version: Option<String>,
}

impl Checker {
    pub fn new(
        host: &str,
        port: u16,
        user: &str,
        password: &str,
        tls: &BackendTlsConfig,
    ) -> Checker {
        let opts = OptsBuilder::default()
            .ip_or_hostname(host)
            .tcp_port(port)
            .user(Some(user))
            .pass(Some(password))
            // The monitor must check the TCP address it was given, not a local socket.
            .prefer_socket(false)
            .stmt_cache_size(0)
            .tcp_nodelay(true);
        Checker {
            opts,
            tls: tls.clone(),
            conn: None,
            use_slave_syntax: false,
            version: None,
        }
    }

    /// Runs one check; `timeout` bounds the connect and, separately, the queries.
    pub async fn check(&mut self, timeout: Duration) -> Result<Observed, CheckError> {
        let ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        let fresh = self.conn.is_none();
        let mut conn = match self.conn.take() {
            Some(c) => c,
            None => tokio::time::timeout(
                timeout,
                binlog_reader::tls::connect(self.opts.clone(), &self.tls),
            )
            .await
            .map_err(|_| CheckError::ConnectTimeout(ms))?
            .map_err(|e| CheckError::Connect(e.to_string()))?,
        };
        let result = tokio::time::timeout(timeout, self.query(&mut conn, fresh))
            .await
            .map_err(|_| CheckError::Timeout(ms))
            .and_then(|r| r);
        if result.is_ok() {
            // Keep the connection only after a clean round trip; a timed-out one may still
            // have a half-read answer in flight.
            self.conn = Some(conn);
        }
        result
    }

    /// The server's `@@version` as of the last connection (e.g. `10.11.11-MariaDB-0+deb12u1`).
    pub fn version(&self) -> Option<&str> {
        self.version.as_deref()
    }

    async fn query(&mut self, conn: &mut Conn, fresh: bool) -> Result<Observed, CheckError> {
        let q = |e: mysql_async::Error| CheckError::Query(e.to_string());
        conn.ping().await.map_err(q)?;
        if fresh || self.version.is_none() {
            // A new connection: the server may have been upgraded or replaced.
            self.version = conn.query_first("SELECT @@version").await.map_err(q)?;
        }
        let read_only: Option<i64> = conn.query_first("SELECT @@read_only").await.map_err(q)?;
        let rows: Vec<Row> = if self.use_slave_syntax {
            conn.query("SHOW SLAVE STATUS").await.map_err(q)?
        } else {
            match conn.query("SHOW REPLICA STATUS").await {
                Ok(rows) => rows,
                Err(mysql_async::Error::Server(_)) => {
                    self.use_slave_syntax = true;
                    conn.query("SHOW SLAVE STATUS").await.map_err(q)?
                }
                Err(e) => return Err(q(e)),
            }
        };
        Ok(Observed {
            read_only: read_only.unwrap_or(0) != 0,
            replication: rows.first().and_then(parse_replica_status),
        })
    }
}

/// Reads a replica status row in either spelling. A row without a source host (after
/// `RESET SLAVE` without `ALL`) is not replication.
pub fn parse_replica_status(row: &Row) -> Option<Replication> {
    let get = |names: &[&str]| -> Option<String> {
        let cols = row.columns_ref();
        names.iter().find_map(|name| {
            let i = cols.iter().position(|c| c.name_str() == *name)?;
            value_str(row.as_ref(i)?)
        })
    };
    let source_host = get(&["Source_Host", "Master_Host"])?;
    if source_host.is_empty() {
        return None;
    }
    let yes = |v: Option<String>| v.is_some_and(|s| s.eq_ignore_ascii_case("yes"));
    Some(Replication {
        source_host,
        source_port: get(&["Source_Port", "Master_Port"]).and_then(|p| p.parse().ok()),
        io_running: yes(get(&["Replica_IO_Running", "Slave_IO_Running"])),
        sql_running: yes(get(&["Replica_SQL_Running", "Slave_SQL_Running"])),
        seconds_behind: get(&["Seconds_Behind_Source", "Seconds_Behind_Master"])
            .and_then(|s| s.parse().ok()),
    })
}

fn value_str(v: &Value) -> Option<String> {
    match v {
        Value::NULL => None,
        Value::Bytes(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::Int(i) => Some(i.to_string()),
        Value::UInt(u) => Some(u.to_string()),
        other => Some(format!("{other:?}")),
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use mysql_common::constants::ColumnType;
    use mysql_common::packets::Column;
    use mysql_common::row::new_row;
    use std::sync::Arc;

    fn row(cells: &[(&str, Value)]) -> Row {
        let columns: Arc<[Column]> = cells
            .iter()
            .map(|(n, _)| Column::new(ColumnType::MYSQL_TYPE_VAR_STRING).with_name(n.as_bytes()))
            .collect();
        new_row(cells.iter().map(|(_, v)| v.clone()).collect(), columns)
    }

    fn text(s: &str) -> Value {
        Value::Bytes(s.as_bytes().to_vec())
    }

    #[test]
    fn mysql8_replica_spelling() {
        let r = row(&[
            ("Source_Host", text("10.0.0.1")),
            ("Replica_IO_Running", text("Yes")),
            ("Replica_SQL_Running", text("No")),
            ("Seconds_Behind_Source", Value::NULL),
        ]);
        assert_eq!(
            parse_replica_status(&r),
            Some(Replication {
                source_host: "10.0.0.1".into(),
                source_port: None,
                io_running: true,
                sql_running: false,
                seconds_behind: None,
            })
        );
    }

    #[test]
    fn mariadb_slave_spelling() {
        let r = row(&[
            ("Master_Host", text("127.0.0.1")),
            ("Slave_IO_Running", text("Yes")),
            ("Slave_SQL_Running", text("Yes")),
            ("Seconds_Behind_Master", Value::UInt(3)),
        ]);
        let rep = parse_replica_status(&r).expect("replicating");
        assert!(rep.io_running && rep.sql_running);
        assert_eq!(rep.seconds_behind, Some(3));
    }

    #[test]
    fn reset_replica_without_all_is_not_replication() {
        let r = row(&[("Master_Host", text("")), ("Slave_IO_Running", text("No"))]);
        assert_eq!(parse_replica_status(&r), None);
    }
}
