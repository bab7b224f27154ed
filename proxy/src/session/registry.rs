//! The proxy's live sessions by id: whose each is, and which backend thread runs its statement
//! right now, so that a `KILL` from another session can cancel that statement (and only it)
//! and ask the session to close; and what each does, for `GET /admin/sessions` (see
//! [`Activity`]).

use crate::backend::{Credential, KillScope};
use crate::context::{Backend, Context};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

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

/// Statement text kept for `GET /admin/sessions` (longer statements are cut).
pub const MAX_TEXT: usize = 1024;

/// A backend connection a session holds, and why it keeps it.
#[derive(Clone)]
pub struct HeldInfo {
    pub backend: Arc<Backend>,
    /// The server's thread id for the connection.
    pub thread: u32,
    /// The session's pinned state (transaction, locks, temporary tables...) lives here.
    pub pins: Option<router::Pins>,
    /// The session's open transaction runs here (on the primary, or a read-only one on a
    /// replica).
    pub transaction: bool,
    /// A cursor is open on it.
    pub cursor: bool,
    /// The previous statement's warnings or error are only on this connection.
    pub diagnostics: bool,
}

impl HeldInfo {
    /// The session needs this connection (it cannot be given back while idle).
    pub fn needed(&self) -> bool {
        self.pins.is_some_and(|p| p.any()) || self.transaction || self.cursor || self.diagnostics
    }
}

/// What a session publishes about itself: written by the session only when a statement
/// starts and ends (and when it gives connections back), read by the admin API. The buffers
/// are reused, so publishing allocates nothing once warm.
#[derive(Default)]
pub struct Activity {
    /// The statement running now (its first [`MAX_TEXT`] bytes); empty between statements.
    pub text: String,
    /// When it started; `None` between statements.
    pub started: Option<Instant>,
    /// When the previous statement ended (or the session started).
    pub idle_since: Option<Instant>,
    /// The default database, when known.
    pub schema: Option<String>,
    /// A transaction is open.
    pub in_transaction: bool,
    /// The backend connections held as of the last statement.
    pub held: Vec<HeldInfo>,
    /// Statements run.
    pub statements: u64,
}

/// One registered session.
pub struct Entry {
    pub id: u32,
    /// The client's address.
    pub client: String,
    /// When the session started.
    pub connected: Instant,
    pub connected_wall: SystemTime,
    activity: Mutex<Activity>,
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

    /// The session's published activity, locked briefly (see [`Activity`]).
    pub fn activity(&self) -> std::sync::MutexGuard<'_, Activity> {
        match self.activity.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Where the session's statement runs now (server, thread), unless a `KILL` holds the
    /// lock this instant. Never waits.
    pub fn running_on(&self) -> Option<(Arc<Backend>, u32)> {
        let r = self.running.try_lock().ok()?;
        r.as_ref().map(|r| (r.backend.clone(), r.thread))
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

    /// Registers session `id` of `user`, connected from `client`.
    pub fn register(
        self: &Arc<Self>,
        id: u32,
        user: &str,
        password: &Credential,
        client: &str,
    ) -> Registration {
        let entry = Arc::new(Entry {
            id,
            client: client.to_string(),
            connected: Instant::now(),
            connected_wall: SystemTime::now(),
            activity: Mutex::new(Activity {
                idle_since: Some(Instant::now()),
                ..Activity::default()
            }),
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

    /// Every live session, by id.
    pub fn all(&self) -> Vec<Arc<Entry>> {
        let mut v: Vec<Arc<Entry>> = self.lock().values().cloned().collect();
        v.sort_by_key(|e| e.id);
        v
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
        let a = registry.register(next_id(), "app", &"pw".into(), "127.0.0.1");
        let b = registry.register(next_id(), "other", &"pw2".into(), "127.0.0.1");
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
        let a = registry.register(next_id(), "app", &"pw".into(), "127.0.0.1");
        a.entry.request_close();
        tokio::time::timeout(std::time::Duration::from_secs(1), a.entry.close_requested())
            .await
            .expect("the request was remembered");
        assert!(a.entry.running().await.is_none());
    }
}
