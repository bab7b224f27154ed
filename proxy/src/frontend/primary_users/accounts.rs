//! The primary's accounts as the proxy serves them: which rows of the account table can be
//! verified with a `mysql_native_password` hash (and why the others cannot), and, for a
//! client, the account a server would pick for its user name and address.

use super::host::HostPattern;
use router::config::PasswordHash;
use std::collections::HashMap;
use std::net::IpAddr;

/// One row of the primary's account table, as [`super::load`] reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub user: String,
    pub host: String,
    /// The authentication plugin; empty on old servers for `mysql_native_password`.
    pub plugin: String,
    /// `authentication_string`: for `mysql_native_password`, `*` and 40 hex digits. Never
    /// logged.
    pub auth: String,
    pub locked: bool,
    pub password_expired: bool,
    /// A MariaDB role: not an account anyone logs in as.
    pub role: bool,
}

/// Why a row is not served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    /// A role, not a login account.
    Role,
    /// A built-in or service account, or not admitted by `include` / `exclude`.
    Excluded,
    /// `ACCOUNT LOCK`: a server refuses it too.
    Locked,
    /// Its password is expired: a server lets it in only to change the password.
    PasswordExpired,
    /// Another plugin: a `mysql_native_password` hash cannot verify it.
    UnsupportedPlugin(String),
    /// `mysql_native_password` with an empty password.
    NoPassword,
    /// `authentication_string` is not `*` and 40 hex digits.
    BadHash,
    /// `Host` is a host name: the proxy matches addresses only (no DNS).
    HostName,
}

impl Skip {
    /// The `reason` label of `rwsplit_users_from_primary_skipped`.
    pub fn label(&self) -> &'static str {
        match self {
            Skip::Role => "role",
            Skip::Excluded => "excluded",
            Skip::Locked => "locked",
            Skip::PasswordExpired => "password_expired",
            Skip::UnsupportedPlugin(_) => "unsupported_plugin",
            Skip::NoPassword => "no_password",
            Skip::BadHash => "bad_hash",
            Skip::HostName => "host_name",
        }
    }

    /// Every label, so each series exists (at 0) from the first successful load.
    pub const LABELS: &'static [&'static str] = &[
        "role",
        "excluded",
        "locked",
        "password_expired",
        "unsupported_plugin",
        "no_password",
        "bad_hash",
        "host_name",
    ];

    /// Whether the operator should hear about it: an account someone may expect to log in
    /// through the proxy. Roles and excluded accounts are skipped on purpose.
    pub fn worth_logging(&self) -> bool {
        !matches!(self, Skip::Role | Skip::Excluded)
    }
}

impl std::fmt::Display for Skip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Skip::Role => f.write_str("a role"),
            Skip::Excluded => f.write_str("excluded"),
            Skip::Locked => f.write_str("the account is locked"),
            Skip::PasswordExpired => f.write_str("its password is expired"),
            Skip::UnsupportedPlugin(p) => write!(
                f,
                "plugin {p} cannot be verified with a mysql_native_password hash; list the user \
                 in proxy.users with its password to serve it"
            ),
            Skip::NoPassword => f.write_str("it has no password"),
            Skip::BadHash => {
                f.write_str("its authentication_string is not a mysql_native_password hash")
            }
            Skip::HostName => f.write_str(
                "its Host is a host name; the proxy matches client addresses only (no DNS)",
            ),
        }
    }
}

/// An account the proxy serves.
#[derive(Debug, Clone)]
pub struct Account {
    pub host: HostPattern,
    /// SHA1(SHA1(password)). Never logged (`Debug` of the list shows no account's hash: see
    /// [`Accounts`]).
    stage2: [u8; 20],
}

/// The served accounts by user name, each user's most specific `Host` first.
#[derive(Default)]
pub struct Accounts {
    by_user: HashMap<String, Vec<Account>>,
    count: usize,
}

impl std::fmt::Debug for Accounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Accounts")
            .field("count", &self.count)
            .finish()
    }
}

/// Why `row` cannot be served, or the account it gives. `admits` says whether the user name
/// may be served (`proxy.users_from_primary` include / exclude).
pub fn classify(row: &Row, admits: impl Fn(&str) -> bool) -> Result<Account, Skip> {
    if row.role {
        return Err(Skip::Role);
    }
    if !admits(&row.user) {
        return Err(Skip::Excluded);
    }
    if row.locked {
        return Err(Skip::Locked);
    }
    if row.password_expired {
        return Err(Skip::PasswordExpired);
    }
    if !(row.plugin.is_empty() || row.plugin == "mysql_native_password") {
        return Err(Skip::UnsupportedPlugin(row.plugin.clone()));
    }
    if row.auth.is_empty() {
        return Err(Skip::NoPassword);
    }
    let stage2 = PasswordHash::new(&row.auth).stage2().ok_or(Skip::BadHash)?;
    let host = HostPattern::parse(&row.host).ok_or(Skip::HostName)?;
    Ok(Account { host, stage2 })
}

impl Accounts {
    /// The served accounts among `rows`, and the skipped ones as (`'user'@'host'`, why).
    pub fn build(rows: &[Row], admits: impl Fn(&str) -> bool) -> (Accounts, Vec<(String, Skip)>) {
        let mut accounts = Accounts::default();
        let mut skipped = Vec::new();
        for row in rows {
            match classify(row, &admits) {
                Ok(a) => {
                    accounts
                        .by_user
                        .entry(row.user.clone())
                        .or_default()
                        .push(a);
                    accounts.count += 1;
                }
                Err(why) => skipped.push((format!("'{}'@'{}'", row.user, row.host), why)),
            }
        }
        for list in accounts.by_user.values_mut() {
            list.sort_by_key(|a| a.host.rank());
        }
        (accounts, skipped)
    }

    /// Accounts served.
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// SHA1(SHA1(password)) of the account a server would pick for `user` connecting from
    /// `client` (its most specific matching `Host`); `None` when no account admits it.
    pub fn stage2(&self, user: &str, client: IpAddr) -> Option<[u8; 20]> {
        self.by_user
            .get(user)?
            .iter()
            .find(|a| a.host.matches(client))
            .map(|a| a.stage2)
    }
}

#[cfg(test)]
mod test {
    use super::*;

    const HASH_A: &str = "*F142931D9296BB66D4600D47418DBC1475D27D29";
    const HASH_B: &str = "*277E50F89B447235AE8C93F3D975CABD52171BB5";

    fn row(user: &str, host: &str, plugin: &str, auth: &str) -> Row {
        Row {
            user: user.into(),
            host: host.into(),
            plugin: plugin.into(),
            auth: auth.into(),
            locked: false,
            password_expired: false,
            role: false,
        }
    }

    fn stage2(h: &str) -> Option<[u8; 20]> {
        PasswordHash::new(h).stage2()
    }

    #[test]
    fn only_native_accounts_with_a_hash_are_served_and_the_rest_say_why() {
        let native = "mysql_native_password";
        let mut locked = row("locked", "%", native, HASH_A);
        locked.locked = true;
        let mut expired = row("expired", "%", native, HASH_A);
        expired.password_expired = true;
        let mut role = row("a_role", "", "", "");
        role.role = true;
        let rows = vec![
            row("app", "%", native, HASH_A),
            row("old", "%", "", HASH_A),
            row("sha2", "%", "caching_sha2_password", "$A$005$xyz"),
            row("sock", "localhost", "unix_socket", ""),
            row("nopw", "%", native, ""),
            row("bad", "%", native, "invalid"),
            row("named", "app1.example.com", native, HASH_A),
            row("root", "%", native, HASH_A),
            locked,
            expired,
            role,
        ];
        let (accounts, skipped) = Accounts::build(&rows, |u| u != "root");
        assert_eq!(accounts.len(), 2);
        let any: IpAddr = "192.0.2.1".parse().expect("ip");
        assert_eq!(accounts.stage2("app", any), stage2(HASH_A));
        assert_eq!(accounts.stage2("old", any), stage2(HASH_A));
        let reasons: Vec<(&str, &str)> = skipped
            .iter()
            .map(|(who, why)| (who.as_str(), why.label()))
            .collect();
        assert_eq!(
            reasons,
            [
                ("'sha2'@'%'", "unsupported_plugin"),
                ("'sock'@'localhost'", "unsupported_plugin"),
                ("'nopw'@'%'", "no_password"),
                ("'bad'@'%'", "bad_hash"),
                ("'named'@'app1.example.com'", "host_name"),
                ("'root'@'%'", "excluded"),
                ("'locked'@'%'", "locked"),
                ("'expired'@'%'", "password_expired"),
                ("'a_role'@''", "role"),
            ]
        );
        assert!(skipped[1].1.to_string().contains("plugin unix_socket"));
        assert!(
            !format!("{accounts:?}").contains("F142"),
            "no hash in Debug output"
        );
    }

    #[test]
    fn a_client_gets_the_most_specific_account_its_address_matches() {
        let native = "mysql_native_password";
        let rows = vec![
            row("app", "%", native, HASH_A),
            row("app", "10.1.%", native, HASH_B),
            row("lan", "10.%", native, HASH_A),
        ];
        let (accounts, _) = Accounts::build(&rows, |_| true);
        let inside: IpAddr = "10.1.2.3".parse().expect("ip");
        let outside: IpAddr = "192.0.2.1".parse().expect("ip");
        assert_eq!(accounts.stage2("app", inside), stage2(HASH_B));
        assert_eq!(accounts.stage2("app", outside), stage2(HASH_A));
        assert_eq!(accounts.stage2("lan", inside), stage2(HASH_A));
        assert_eq!(accounts.stage2("lan", outside), None);
        assert_eq!(accounts.stage2("nobody", inside), None);
    }
}
