//! One control connection to one server, opened with `switchover_account` for the length of a
//! switchover or failover (and with the monitor account to read the account table, see
//! `frontend::primary_users`): every statement bounded in time, errors that name the server
//! and the statement (never a password).

use super::sql::Flavor;
use crate::health::check::{parse_replica_status, Replication};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, OptsBuilder, Row, Value};
use router::config::ServerConfig;
use std::time::Duration;

/// What went wrong talking to a server.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    #[error("'{server}': cannot connect: {message}")]
    Connect { server: String, message: String },
    #[error("'{server}': `{statement}` failed: {message}")]
    Statement {
        server: String,
        statement: String,
        message: String,
    },
    #[error("'{server}': no answer to `{statement}` within {ms} ms")]
    Timeout {
        server: String,
        statement: String,
        ms: u64,
    },
}

/// The replica status row, with what a switchover needs beyond the monitor's view.
#[derive(Debug, Clone)]
pub struct Status {
    pub replication: Replication,
    /// Replicates by GTID (MariaDB `Using_Gtid` not `No`, MySQL `Auto_Position` 1).
    pub gtid: bool,
    /// What the IO thread has received (`Gtid_IO_Pos`, `Retrieved_Gtid_Set`).
    pub received: String,
}

/// A control connection to one configured server.
pub struct ServerConn {
    pub name: String,
    pub flavor: Flavor,
    conn: Conn,
    /// Bound on each statement (a statement that waits on purpose passes its own).
    timeout: Duration,
}

/// Opens a control connection to `server` as `user`, within `timeout` (which then bounds
/// each statement too).
pub async fn connect(
    server: &ServerConfig,
    user: &str,
    password: &str,
    timeout: Duration,
) -> Result<ServerConn, Error> {
    let opts = OptsBuilder::default()
        .ip_or_hostname(server.host.as_str())
        .tcp_port(server.port)
        .user(Some(user))
        .pass(Some(password))
        .prefer_socket(false)
        .stmt_cache_size(0);
    let fail = |message: String| Error::Connect {
        server: server.name.clone(),
        message,
    };
    let conn = tokio::time::timeout(timeout, binlog_reader::tls::connect(opts, &server.tls))
        .await
        .map_err(|_| fail(format!("timed out after {} ms", timeout.as_millis())))?
        .map_err(|e| fail(e.to_string()))?;
    let mut c = ServerConn {
        name: server.name.clone(),
        flavor: Flavor::MariaDb,
        conn,
        timeout,
    };
    let version = c.value("SELECT @@version").await?.unwrap_or_default();
    c.flavor = Flavor::of_version(&version);
    Ok(c)
}

impl ServerConn {
    /// Runs one statement, bounded by the connection's timeout.
    pub async fn exec(&mut self, sql: &str) -> Result<(), Error> {
        let timeout = self.timeout;
        self.exec_within(sql, timeout).await
    }

    /// Runs one statement, bounded by `timeout`.
    pub async fn exec_within(&mut self, sql: &str, timeout: Duration) -> Result<(), Error> {
        let r = tokio::time::timeout(timeout, self.conn.query_drop(sql)).await;
        self.result(sql, timeout, r)
    }

    /// Runs statements in order; stops at the first failure.
    pub async fn exec_all(&mut self, statements: &[String]) -> Result<(), Error> {
        for s in statements {
            self.exec(s).await?;
        }
        Ok(())
    }

    /// The first column of the first row, as text (`None` for no row or NULL).
    pub async fn value(&mut self, sql: &str) -> Result<Option<String>, Error> {
        let timeout = self.timeout;
        self.value_within(sql, timeout).await
    }

    /// [`ServerConn::value`] bounded by `timeout` (for statements that wait on purpose).
    pub async fn value_within(
        &mut self,
        sql: &str,
        timeout: Duration,
    ) -> Result<Option<String>, Error> {
        let r = tokio::time::timeout(timeout, self.conn.query_first::<Row, _>(sql)).await;
        let row = self.result(sql, timeout, r)?;
        Ok(row.and_then(|r| r.as_ref(0).and_then(text)))
    }

    /// Every row of a statement's answer, each column as text (NULL as empty).
    pub async fn rows(&mut self, sql: &str) -> Result<Vec<Vec<String>>, Error> {
        let timeout = self.timeout;
        let r = tokio::time::timeout(timeout, self.conn.query::<Row, _>(sql)).await;
        let rows = self.result(sql, timeout, r)?;
        Ok(rows
            .iter()
            .map(|row| {
                (0..row.len())
                    .map(|i| row.as_ref(i).and_then(text).unwrap_or_default())
                    .collect()
            })
            .collect())
    }

    /// The replica status, `None` when the server replicates from no one.
    pub async fn replica_status(&mut self) -> Result<Option<Status>, Error> {
        let sql = match self.flavor {
            Flavor::MariaDb => "SHOW SLAVE STATUS",
            Flavor::MySql => "SHOW REPLICA STATUS",
        };
        let timeout = self.timeout;
        let r = tokio::time::timeout(timeout, self.conn.query::<Row, _>(sql)).await;
        let rows = self.result(sql, timeout, r)?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        let Some(replication) = parse_replica_status(row) else {
            return Ok(None);
        };
        let column = |name: &str| {
            row.columns_ref()
                .iter()
                .position(|c| c.name_str() == name)
                .and_then(|i| row.as_ref(i))
                .and_then(text)
                .unwrap_or_default()
        };
        Ok(Some(Status {
            replication,
            gtid: self
                .flavor
                .uses_gtid(&column(self.flavor.gtid_mode_column())),
            // MySQL prints GTID sets over several lines.
            received: column(self.flavor.received_column()).replace('\n', ""),
        }))
    }

    /// Whether the server writes a binlog that includes what it replicates: what its replicas
    /// need once it is the primary.
    pub async fn logs_replicated_writes(&mut self) -> Result<bool, Error> {
        let sql = match self.flavor {
            Flavor::MariaDb => "SELECT @@log_bin AND @@log_slave_updates",
            Flavor::MySql => "SELECT @@log_bin AND @@log_replica_updates",
        };
        Ok(self.value(sql).await?.is_some_and(|v| v == "1"))
    }

    fn result<T>(
        &self,
        sql: &str,
        timeout: Duration,
        r: Result<Result<T, mysql_async::Error>, tokio::time::error::Elapsed>,
    ) -> Result<T, Error> {
        match r {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(Error::Statement {
                server: self.name.clone(),
                statement: redact(sql),
                message: e.to_string(),
            }),
            Err(_) => Err(Error::Timeout {
                server: self.name.clone(),
                statement: redact(sql),
                ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
            }),
        }
    }
}

/// A statement as it may be logged: nothing after a password keyword.
fn redact(sql: &str) -> String {
    let upper = sql.to_ascii_uppercase();
    match upper.find("_PASSWORD") {
        Some(i) => format!("{} …", sql[..i].trim_end_matches(|c: char| c != ',')),
        None => sql.to_string(),
    }
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::NULL => None,
        Value::Bytes(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::Int(i) => Some(i.to_string()),
        Value::UInt(u) => Some(u.to_string()),
        other => Some(other.as_sql(true)),
    }
}

#[cfg(test)]
mod test {
    #[test]
    fn passwords_never_reach_messages() {
        let s = super::redact(
            "CHANGE MASTER TO MASTER_HOST='h', MASTER_USER='u', MASTER_PASSWORD='secret'",
        );
        assert!(!s.contains("secret"), "{s}");
        assert!(
            s.starts_with("CHANGE MASTER TO MASTER_HOST='h', MASTER_USER='u',"),
            "{s}"
        );
    }
}
