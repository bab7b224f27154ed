//! The proxy's live sessions by id: whose each is, and which backend thread runs its statement
//! right now, so that a `KILL` from another session can cancel that statement (and only it)
//! and ask the session to close.

use crate::backend::{Credential, KillScope};
use crate::context::{Backend, Context};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

/// Session ids, shown to clients in the handshake and by `CONNECTION_ID()`. One counter for the
/// whole process, so ids never repeat between sessions however many proxies a process runs.
static NEXT_ID: AtomicU32 = AtomicU32::new(1);

/// A fresh session id (never 0, which clients read as "no id").
pub fn next_id() -> u32 {
    loop {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        if id != 0 {
            return id;
        }
    }
}

/// The sessions of one proxy context (kept in its extension slot).
#[derive(Default)]
pub struct Registry {
    sessions: Mutex<HashMap<u32, Arc<Entry>>>,
}

/// Who a session is: a kill of its statement logs into the backend as this user (who owns the
/// thread). The password is never logged.
pub struct Creds {
    pub user: String,
    pub password: Credential,
}

impl std::fmt::Debug for Creds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Creds")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// The statement a session is running now: on which backend, on which of its threads.
pub struct Running {
    pub backend: Arc<Backend>,
    /// The backend connection's thread id (`Conn::connection_id`).
    pub thread: u32,
    /// A `KILL` was sent to `thread` during this statement.
    pub killed: Option<KillScope>,
}

/// One registered session.
pub struct Entry {
    pub id: u32,
    creds: Mutex<Arc<Creds>>,
    /// Set by the session before it sends a statement and cleared after the response, before
    /// the connection can serve anything else; a killer holds the lock while its `KILL` is on
    /// the wire. So a `KILL` reaches the thread only while it runs this session's statement,
    /// never after the connection went back to the pool (and to another session).
    running: tokio::sync::Mutex<Option<Running>>,
    close: tokio::sync::Notify,
}

impl Entry {
    /// The session's current user and password.
    pub fn creds(&self) -> Arc<Creds> {
        match self.creds.lock() {
            Ok(c) => c.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// After COM_CHANGE_USER.
    pub fn set_creds(&self, user: &str, password: &Credential) {
        let creds = Arc::new(Creds {
            user: user.to_string(),
            password: password.clone(),
        });
        match self.creds.lock() {
            Ok(mut c) => *c = creds,
            Err(p) => *p.into_inner() = creds,
        }
    }

    /// The running statement, locked (see [`Entry::running`]).
    pub async fn running(&self) -> tokio::sync::MutexGuard<'_, Option<Running>> {
        self.running.lock().await
    }

    /// Asks the session to close (`KILL CONNECTION`). Remembered if the session is busy.
    pub fn request_close(&self) {
        self.close.notify_one();
    }

    /// Completes once a close was requested.
    pub async fn close_requested(&self) {
        self.close.notified().await;
    }
}

/// A session's place in the registry, removed when dropped.
pub struct Registration {
    registry: Arc<Registry>,
    pub entry: Arc<Entry>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        // Only our own entry: after 2^32 sessions an id may have been given out again.
        let mut sessions = self.registry.lock();
        if sessions
            .get(&self.entry.id)
            .is_some_and(|e| Arc::ptr_eq(e, &self.entry))
        {
            sessions.remove(&self.entry.id);
        }
    }
}

impl Registry {
    /// The registry of `ctx`.
    pub fn of(ctx: &Context) -> Arc<Registry> {
        ctx.extension(Registry::default)
    }

    /// Registers session `id` of `user`.
    pub fn register(self: &Arc<Self>, id: u32, user: &str, password: &Credential) -> Registration {
        let entry = Arc::new(Entry {
            id,
            creds: Mutex::new(Arc::new(Creds {
                user: user.to_string(),
                password: password.clone(),
            })),
            running: tokio::sync::Mutex::new(None),
            close: tokio::sync::Notify::new(),
        });
        self.lock().insert(id, entry.clone());
        Registration {
            registry: self.clone(),
            entry,
        }
    }

    /// The live session with this id.
    pub fn get(&self, id: u64) -> Option<Arc<Entry>> {
        let id = u32::try_from(id).ok()?;
        self.lock().get(&id).cloned()
    }

    /// Live sessions (for tests and the admin API).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// No session is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u32, Arc<Entry>>> {
        match self.sessions.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn sessions_leave_the_registry_when_they_end() {
        let registry = Arc::new(Registry::default());
        let a = registry.register(next_id(), "app", &"pw".into());
        let b = registry.register(next_id(), "other", &"pw2".into());
        assert_ne!(a.entry.id, b.entry.id);
        assert_eq!(registry.len(), 2);
        let found = registry.get(u64::from(b.entry.id)).expect("registered");
        assert_eq!(found.creds().user, "other");
        assert!(registry.get(u64::from(u32::MAX) + 1).is_none());
        drop(b);
        assert!(registry.get(u64::from(found.id)).is_none());
        assert_eq!(registry.len(), 1);
        a.entry.set_creds("changed", &"pw3".into());
        assert_eq!(a.entry.creds().user, "changed");
        assert!(!format!("{:?}", a.entry.creds()).contains("pw3"));
    }

    #[tokio::test]
    async fn a_close_request_is_kept_until_the_session_looks() {
        let registry = Arc::new(Registry::default());
        let a = registry.register(next_id(), "app", &"pw".into());
        a.entry.request_close();
        tokio::time::timeout(std::time::Duration::from_secs(1), a.entry.close_requested())
            .await
            .expect("the request was remembered");
        assert!(a.entry.running().await.is_none());
    }
}
