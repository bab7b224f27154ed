//! `proxy.users_from_primary`: serve the accounts of the primary's own account table besides
//! `proxy.users`, as MaxScale loads its users from the backends with its service account.
//! The settings and their checks live here; the proxy's `frontend::primary_users` loads them.

use serde::Deserialize;

/// Which accounts of the primary the proxy serves, and how often it reads them again.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsersFromPrimary {
    /// Off keeps the settings but serves no loaded account (a reload to `false` refuses new
    /// logins of loaded accounts at once).
    #[serde(default = "default_enabled")]
    pub enabled: bool,
    /// How often the account list is read again from the primary: a new, changed or dropped
    /// account takes effect for new logins at the next read.
    #[serde(default = "default_refresh_interval_ms")]
    pub refresh_interval_ms: u64,
    /// User-name patterns (`*` any run of characters, `?` one; case-sensitive like MySQL user
    /// names) of the accounts to serve. Empty: every account not excluded.
    #[serde(default)]
    pub include: Vec<String>,
    /// User-name patterns never served, on top of [`ALWAYS_EXCLUDED`] and the proxy's own
    /// service accounts (monitor, switchover, replication).
    #[serde(default)]
    pub exclude: Vec<String>,
}

fn default_enabled() -> bool {
    true
}
fn default_refresh_interval_ms() -> u64 {
    60_000
}

/// Accounts never loaded, whatever `include` says: the servers' administrator and internal
/// accounts. One of them is served only if `proxy.users` names it.
pub const ALWAYS_EXCLUDED: &[&str] = &[
    "root",
    "mariadb.sys",
    "mysql.sys",
    "mysql.session",
    "mysql.infoschema",
    "PUBLIC",
];

/// Shortest refresh interval: each read is a connection and a scan of the account table.
pub const MIN_REFRESH_INTERVAL_MS: u64 = 100;
/// Longest: a dropped account must stop logging in within a day at most.
pub const MAX_REFRESH_INTERVAL_MS: u64 = 86_400_000;

impl UsersFromPrimary {
    /// Whether the account named `user` may be served: not a built-in or service account
    /// (`service`: the monitor, switchover and replication user names), not excluded, and
    /// included (every name when `include` is empty).
    pub fn admits(&self, user: &str, service: &[&str]) -> bool {
        if ALWAYS_EXCLUDED.contains(&user) || service.contains(&user) {
            return false;
        }
        if self.exclude.iter().any(|p| glob_match(p, user)) {
            return false;
        }
        self.include.is_empty() || self.include.iter().any(|p| glob_match(p, user))
    }
}

/// `*` matches any run of characters (also none), `?` exactly one; everything else itself.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    // Iterative matcher with one backtrack point (the last `*`): linear in practice.
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(&c) if c == '?' || c == t[ti] => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Checks the settings; returns the offending key (under `proxy.users_from_primary`) and the
/// message.
pub(super) fn check(u: &UsersFromPrimary) -> Result<(), (&'static str, String)> {
    if !(MIN_REFRESH_INTERVAL_MS..=MAX_REFRESH_INTERVAL_MS).contains(&u.refresh_interval_ms) {
        return Err((
            "refresh_interval_ms",
            format!(
                "must be {MIN_REFRESH_INTERVAL_MS} to {MAX_REFRESH_INTERVAL_MS} (a day), got {}",
                u.refresh_interval_ms
            ),
        ));
    }
    for (key, list) in [("include", &u.include), ("exclude", &u.exclude)] {
        if list.iter().any(|p| p.is_empty()) {
            return Err((
                key,
                "a pattern must not be empty (`*` matches every name)".into(),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("app_*", "app_orders"));
        assert!(glob_match("app_*", "app_"));
        assert!(!glob_match("app_*", "ap"));
        assert!(glob_match("*", ""));
        assert!(glob_match("a?c", "abc"));
        assert!(!glob_match("a?c", "ac"));
        assert!(glob_match("*sys*", "mariadb.sys"));
        assert!(glob_match("a*b*c", "axxbyyc"));
        assert!(!glob_match("a*b*c", "axxbyy"));
        assert!(!glob_match("App", "app"), "user names are case-sensitive");
    }

    fn settings(include: &[&str], exclude: &[&str]) -> UsersFromPrimary {
        UsersFromPrimary {
            enabled: true,
            refresh_interval_ms: default_refresh_interval_ms(),
            include: include.iter().map(|s| s.to_string()).collect(),
            exclude: exclude.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn built_in_and_service_accounts_are_never_admitted() {
        let all = settings(&["*"], &[]);
        assert!(all.admits("app", &["monitor"]));
        assert!(!all.admits("root", &["monitor"]));
        assert!(!all.admits("mariadb.sys", &["monitor"]));
        assert!(!all.admits("monitor", &["monitor"]));
        let some = settings(&["app_*"], &["app_batch"]);
        assert!(some.admits("app_web", &[]));
        assert!(!some.admits("app_batch", &[]));
        assert!(!some.admits("reporting", &[]));
    }

    fn load(section: &str) -> Result<crate::config::Config, String> {
        let text = format!(
            "servers:\n  - {{name: p, host: h, port: 1, role: primary}}\nmonitor: {{user: m}}\n\
             proxy:\n  users_from_primary:\n{section}"
        );
        crate::config::Config::from_yaml("c.yaml", &text).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_and_errors_with_file_line_and_key() {
        let c = load("    include: [\"app_*\"]\n").expect("valid");
        let u = c.proxy.and_then(|p| p.users_from_primary).expect("section");
        assert!(u.enabled);
        assert_eq!(u.refresh_interval_ms, 60_000);
        assert_eq!(u.include, vec!["app_*".to_string()]);
        let err = load("    enabled: true\n    refresh_interval_ms: 5\n").unwrap_err();
        assert!(
            err.starts_with("c.yaml:7: `proxy.users_from_primary.refresh_interval_ms`"),
            "{err}"
        );
        let err = load("    exclude: [\"\"]\n").unwrap_err();
        assert!(
            err.starts_with("c.yaml:6: `proxy.users_from_primary.exclude`"),
            "{err}"
        );
        let err = load("    refresh: 5\n").unwrap_err();
        assert!(err.contains("refresh"), "{err}");
    }
}
