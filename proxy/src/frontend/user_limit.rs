//! `proxy.users[].max_connections`: how many client sessions one user may have open through
//! this proxy at once. Checked once the client has authenticated (as a server checks an
//! account's `MAX_USER_CONNECTIONS`), so a stranger cannot use up a user's places; beyond the
//! limit the client gets the server's ERR 1226 instead of the OK.

use crate::context::Context;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// ER_USER_LIMIT_REACHED, as MariaDB sends it for an account's `MAX_USER_CONNECTIONS`.
pub const ER_USER_LIMIT_REACHED: (u16, &str) = (1226, "42000");

/// Open sessions per user, for one proxy context (kept in its extension slot). Every user is
/// counted, limited or not, so a limit added by a reload applies to the sessions already open.
#[derive(Default)]
pub struct UserCounts(Mutex<HashMap<String, usize>>);

/// One session's place in its user's count, given back when dropped.
pub struct UserSlot {
    counts: Arc<UserCounts>,
    user: String,
}

impl std::fmt::Debug for UserSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserSlot")
            .field("user", &self.user)
            .finish()
    }
}

impl Drop for UserSlot {
    fn drop(&mut self) {
        let mut m = self.counts.lock();
        if let Some(n) = m.get_mut(&self.user) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&self.user);
            }
        }
    }
}

impl UserCounts {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, usize>> {
        match self.0.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Sessions of `user` open now.
    pub fn count(&self, user: &str) -> usize {
        self.lock().get(user).copied().unwrap_or(0)
    }
}

/// Why a session was refused: the limit, for the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exceeded {
    pub limit: usize,
}

impl Exceeded {
    /// The message a server gives.
    pub fn message(&self, user: &str) -> String {
        format!(
            "User '{user}' has exceeded the 'max_user_connections' resource (current value: {})",
            self.limit
        )
    }
}

/// Takes a place for a session of `user`, within `limit` (`None`: no limit).
pub fn take(ctx: &Context, user: &str, limit: Option<usize>) -> Result<UserSlot, Exceeded> {
    take_from(ctx.extension(UserCounts::default), user, limit)
}

fn take_from(
    counts: Arc<UserCounts>,
    user: &str,
    limit: Option<usize>,
) -> Result<UserSlot, Exceeded> {
    {
        let mut m = counts.lock();
        let n = m.entry(user.to_string()).or_insert(0);
        if let Some(limit) = limit {
            if *n >= limit {
                if *n == 0 {
                    m.remove(user);
                }
                return Err(Exceeded { limit });
            }
        }
        *n += 1;
    }
    Ok(UserSlot {
        counts,
        user: user.to_string(),
    })
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn places_are_counted_per_user_and_given_back() {
        let counts = Arc::new(UserCounts::default());
        let a = take_from(counts.clone(), "app", Some(2)).expect("first");
        let b = take_from(counts.clone(), "app", Some(2)).expect("second");
        assert_eq!(
            take_from(counts.clone(), "app", Some(2)).unwrap_err(),
            Exceeded { limit: 2 }
        );
        let other = take_from(counts.clone(), "other", None).expect("no limit");
        assert_eq!(counts.count("app"), 2);
        drop(a);
        let c = take_from(counts.clone(), "app", Some(2)).expect("a place came free");
        drop((b, c, other));
        assert_eq!(counts.count("app"), 0);
        assert!(counts.lock().is_empty());
    }

    #[test]
    fn message_is_the_servers() {
        assert_eq!(
            Exceeded { limit: 3 }.message("app"),
            "User 'app' has exceeded the 'max_user_connections' resource (current value: 3)"
        );
    }
}
