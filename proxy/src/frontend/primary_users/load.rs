//! Reads the account table from the primary with the monitor account: on MariaDB
//! `mysql.global_priv` (each account's plugin, hash and lock state are in its JSON `Priv`; the
//! `mysql.user` view has no lock column), on MySQL `mysql.user`. Needs `SELECT` on that
//! table. Over the failover layer's bounded control connection.

use super::accounts::Row;
use crate::failover::server::{self, Error as ServerError};
use crate::failover::sql::Flavor;
use router::config::ServerConfig;
use std::time::Duration;

/// Why a refresh could not read the accounts. The last good list stays.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("no primary to read accounts from: {0}")]
    NoPrimary(String),
    #[error("the monitor account's password cannot be read: {0}")]
    Secret(String),
    #[error("{0} (the monitor account needs SELECT on mysql.global_priv on MariaDB, mysql.user on MySQL)")]
    Server(#[from] ServerError),
}

/// MariaDB 10.4+: every field from the account's JSON; `password_last_changed` 0 means expired
/// (`ALTER USER ... PASSWORD EXPIRE`).
const MARIADB: &str = "SELECT User, Host, \
     JSON_VALUE(Priv, '$.plugin'), \
     JSON_VALUE(Priv, '$.authentication_string'), \
     IFNULL(JSON_VALUE(Priv, '$.account_locked'), 'false') = 'true', \
     IFNULL(JSON_VALUE(Priv, '$.password_last_changed'), '1') = '0', \
     IFNULL(JSON_VALUE(Priv, '$.is_role'), 'false') = 'true' \
     FROM mysql.global_priv";

/// MySQL 5.7+ (roles are locked accounts there).
const MYSQL: &str = "SELECT User, Host, plugin, authentication_string, \
     account_locked = 'Y', password_expired = 'Y', 0 FROM mysql.user";

/// The account rows of `server`, read as `user`; `timeout` bounds the connect and the query.
pub async fn rows(
    server: &ServerConfig,
    user: &str,
    password: &str,
    timeout: Duration,
) -> Result<Vec<Row>, LoadError> {
    let mut conn = server::connect(server, user, password, timeout).await?;
    let sql = match conn.flavor {
        Flavor::MariaDb => MARIADB,
        Flavor::MySql => MYSQL,
    };
    let rows = conn.rows(sql).await?;
    Ok(rows.into_iter().filter_map(to_row).collect())
}

/// A row of seven text columns, as both statements select them.
fn to_row(columns: Vec<String>) -> Option<Row> {
    let [user, host, plugin, auth, locked, expired, role]: [String; 7] = columns.try_into().ok()?;
    Some(Row {
        user,
        host,
        plugin,
        auth,
        locked: locked == "1",
        password_expired: expired == "1",
        role: role == "1",
    })
}
