//! Pools of idle backend connections per (server, user, capabilities), with an exact
//! per-server limit, a first-come-first-served queue for sessions waiting on a full server,
//! and an idle timeout. Connections change hands after every statement (statement-level
//! multiplexing): each carries its session state as a fingerprint (`fingerprint.rs`), and a
//! checkout prefers an idle connection whose state already matches the session's, so that
//! most hand-overs cost no round trip at all. A connection that held state that cannot be
//! handed on (a transaction, locks, temporary tables, user variables) is reset by its session
//! (`COM_RESET_CONNECTION`) before it comes back, so a client's transaction and locks end when
//! its session does, not when someone next takes the connection.
//!
//! The limit: every open connection carries a [`Slot`] of its server (a semaphore permit), so
//! however many sessions open connections at once the server never sees more than
//! `proxy.pool.max_per_server`. A full server makes sessions wait, never fail at once: a
//! connection given back goes straight to the oldest waiter of the same key (no reset, no
//! connect); one nobody waiting can use is closed, and its slot goes to the oldest waiter
//! (the semaphore serves waiters in arrival order). After `proxy.pool.queue_timeout_ms` the
//! statement fails with ERR 1040. A full pool says the server is busy, not down.
//!
//! The pools hold only idle connections and the queue; a session owns the connections it
//! uses. The lock is taken once when a session takes a connection and once when it gives it
//! back, never per packet.

use super::conn::{Conn, Key};
use super::credential::Credential;
use super::fingerprint::Fingerprint;
use super::Error;
use crate::context::{Backend, Context, Slot};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

struct Idle {
    conn: Conn,
    expires: Instant,
}

/// A session waiting for a connection to a full server.
struct Waiter {
    key: Key,
    no_schema: bool,
    /// Where a connection given back for the same key is handed over. Closed once the
    /// waiter has stopped waiting (served by a slot, timed out, or gone).
    tx: oneshot::Sender<Conn>,
}

#[derive(Default)]
struct State {
    idle: HashMap<Key, Vec<Idle>>,
    /// Per server name: waiters in arrival order.
    waiters: HashMap<String, VecDeque<Waiter>>,
}

/// Every pool of one proxy context.
pub struct Pools {
    state: Mutex<State>,
    reaper_started: AtomicBool,
    per_user: per_user::PerUser,
}

/// The pools of a context, kept in the context's extension slot (created on first use).
pub fn pools_for(ctx: &Arc<Context>) -> Arc<Pools> {
    let pools = ctx.extension(|| Pools {
        state: Mutex::new(State::default()),
        reaper_started: AtomicBool::new(false),
        per_user: per_user::PerUser::default(),
    });
    if !pools.reaper_started.swap(true, Ordering::AcqRel) {
        spawn_reaper(Arc::downgrade(&pools), ctx.clone());
    }
    pools
}

/// Closes idle connections past their timeout every few seconds, for as long as the pools live.
fn spawn_reaper(pools: Weak<Pools>, ctx: Arc<Context>) {
    let ctx = Arc::downgrade(&ctx);
    if tokio::runtime::Handle::try_current().is_err() {
        return;
    }
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(2)).await;
            let (Some(p), Some(c)) = (pools.upgrade(), ctx.upgrade()) else {
                return;
            };
            p.reap(&c, Instant::now());
        }
    });
}

/// What a checkout does next, decided under the lock.
enum Step {
    /// An idle connection of the key (still to check outside the lock).
    Idle(Idle),
    /// Room for a new connection.
    Open(Slot),
    /// The server is full: an idle connection of another key, closed to make room.
    Evict(Idle),
    /// The server is full: wait in line.
    Wait(oneshot::Receiver<Conn>),
}

/// How a wait in line ended. Lives on the stack for one checkout: boxing the connection
/// would cost an allocation per served waiter for nothing.
#[allow(clippy::large_enum_variant)]
enum Served {
    Conn(Conn),
    Slot(Slot),
    TimedOut,
}

impl Pools {
    /// Takes an idle connection for `key` (one already in session state `want` if any, else
    /// the most recently used) or opens a new one, waiting in line while the server is at
    /// `proxy.pool.max_per_server`. `no_schema`: the session has no default database, so a
    /// connection that may have one (nothing unselects a database) does not qualify.
    /// Within `proxy.users[].max_backend_connections` first, when the user has one.
    pub async fn acquire(
        &self,
        ctx: &Context,
        backend: &Backend,
        key: &Key,
        password: &Credential,
        no_schema: bool,
        want: &Arc<Fingerprint>,
    ) -> Result<Conn, Error> {
        let (limit, queue_ms) = {
            let cfg = ctx.proxy_config();
            (user_limit(&cfg, &key.user), cfg.pool.queue_timeout_ms)
        };
        let Some(limit) = limit else {
            return self
                .acquire_conn(ctx, backend, key, password, no_schema, want)
                .await;
        };
        let deadline = tokio::time::Instant::now() + Duration::from_millis(queue_ms);
        let permit = self
            .per_user
            .permit(&key.server, &key.user, limit, deadline)
            .await
            .map_err(|per_user::TimedOut| Error::UserBackendLimit {
                user: key.user.clone(),
                server: key.server.clone(),
                max: limit,
                waited_ms: queue_ms,
            })?;
        let mut conn = self
            .acquire_conn(ctx, backend, key, password, no_schema, want)
            .await?;
        conn.user_permit = Some(permit);
        Ok(conn)
    }

    /// What [`Pools::acquire`] hands out first, when it is there now: an idle connection for
    /// `key` that passes its checks. `None` when a checkout would have to connect, wait in
    /// line, or first take a place under the user's `max_backend_connections` (then
    /// [`Pools::acquire`] does it all). The common case of statement-level multiplexing, done
    /// without a future: a checkout per statement is on every query's path.
    pub fn take_ready(
        &self,
        ctx: &Context,
        backend: &Backend,
        key: &Key,
        no_schema: bool,
        want: &Arc<Fingerprint>,
    ) -> Option<Conn> {
        if user_limit(&ctx.proxy_config(), &key.user).is_some() {
            return None;
        }
        loop {
            let idle = take_idle(&mut self.lock().idle, key, no_schema, want)?;
            if let Some(conn) = checked_out(backend, idle) {
                return Some(conn);
            }
        }
    }

    async fn acquire_conn(
        &self,
        ctx: &Context,
        backend: &Backend,
        key: &Key,
        password: &Credential,
        no_schema: bool,
        want: &Arc<Fingerprint>,
    ) -> Result<Conn, Error> {
        let database: Option<&str> = None;
        let cfg = ctx.proxy_config();
        backend.set_pool_limit(cfg.pool.max_per_server);
        let mut waited: Option<(tokio::time::Instant, tokio::time::Instant)> = None;
        let slot = loop {
            let step = {
                let mut st = self.lock();
                if let Some(idle) = take_idle(&mut st.idle, key, no_schema, want) {
                    Step::Idle(idle)
                } else if let Some(slot) = backend.try_slot() {
                    Step::Open(slot)
                } else if let Some(victim) = take_oldest_of_server(&mut st.idle, backend.name()) {
                    Step::Evict(victim)
                } else {
                    let (tx, rx) = oneshot::channel();
                    st.waiters
                        .entry(key.server.clone())
                        .or_default()
                        .push_back(Waiter {
                            key: key.clone(),
                            no_schema,
                            tx,
                        });
                    Step::Wait(rx)
                }
            };
            match step {
                Step::Idle(idle) => match checked_out(backend, idle) {
                    Some(conn) => return Ok(conn),
                    None => continue,
                },
                Step::Open(slot) => break slot,
                Step::Evict(mut victim) => {
                    backend.metrics().connections_idle.dec();
                    // The slot moves to this checkout: the server's count never goes up.
                    match victim.conn.slot.take() {
                        Some(slot) => break slot,
                        None => continue,
                    }
                }
                Step::Wait(rx) => {
                    let now = tokio::time::Instant::now();
                    let (start, deadline) = *waited.get_or_insert((
                        now,
                        now + Duration::from_millis(cfg.pool.queue_timeout_ms),
                    ));
                    let served = wait_in_line(backend, rx, deadline).await;
                    backend
                        .metrics()
                        .pool_wait
                        .observe(start.elapsed().as_secs_f64());
                    match served {
                        Served::Conn(conn) if conn.looks_alive() => {
                            backend.metrics().connections_in_use.inc();
                            return Ok(conn);
                        }
                        // Closed under us: its slot is free again; queue again (same deadline).
                        Served::Conn(conn) => drop(conn),
                        Served::Slot(slot) => break slot,
                        Served::TimedOut => {
                            return Err(Error::PoolExhausted {
                                server: backend.name().to_string(),
                                max: cfg.pool.max_per_server,
                                waited_ms: cfg.pool.queue_timeout_ms,
                            })
                        }
                    }
                }
            }
        };
        // Read before connecting: a failed check during the connect makes the connection
        // look older than it is (one liveness probe), never younger.
        let outages = backend.outages();
        let r = super::open::open(ctx, backend, key.clone(), password, database).await;
        match r {
            Ok(mut c) => {
                c.slot = Some(slot);
                c.outages_seen = outages;
                backend.metrics().connections_in_use.inc();
                Ok(c)
            }
            Err(e) => {
                // `slot` drops here: the place goes to the next waiter.
                if !matches!(e, Error::Server { .. }) {
                    backend.metrics().connect_errors.inc();
                }
                Err(e)
            }
        }
    }

    /// Gives a connection back (carrying no pinned state): to the oldest session waiting
    /// for the same key if there is one; closed if sessions of other keys wait for this
    /// server (its slot goes to the oldest of them); kept idle otherwise.
    pub fn release(&self, ctx: &Context, backend: &Backend, mut conn: Conn) {
        backend.metrics().connections_in_use.dec();
        // The user's place goes to its next session at once, whoever gets the connection.
        drop(conn.user_permit.take());
        if conn.broken {
            drop(conn);
            return;
        }
        let timeout = Duration::from_secs(ctx.proxy_config().pool.idle_timeout_s);
        let now = Instant::now();
        conn.last_used = now;
        let surplus = {
            let mut st = self.lock();
            match hand_over(&mut st.waiters, conn) {
                None => return,
                Some((c, Unwanted::Close)) => Some(c),
                Some((c, Unwanted::Keep)) => {
                    backend.metrics().connections_idle.inc();
                    let idle = Idle {
                        conn: c,
                        expires: now + timeout,
                    };
                    // No key clone (an allocation) once the key has a list.
                    match st.idle.get_mut(&idle.conn.key) {
                        Some(v) => v.push(idle),
                        None => {
                            let k = idle.conn.key.clone();
                            st.idle.insert(k, vec![idle]);
                        }
                    }
                    None
                }
            }
        };
        // Closed outside the lock; its slot wakes the oldest waiter.
        drop(surplus);
    }

    /// Closes a connection the session owned (broken or no longer wanted); its slot goes to
    /// the next session waiting for the server.
    pub fn discard(&self, backend: &Backend, conn: Conn) {
        backend.metrics().connections_in_use.dec();
        drop(conn);
    }

    /// Idle connections across all pools (for tests and `/servers`).
    pub fn idle_count(&self) -> usize {
        self.lock().idle.values().map(Vec::len).sum()
    }

    /// Sessions waiting in line for `server` now (for tests).
    pub fn waiting(&self, server: &str) -> usize {
        self.lock()
            .waiters
            .get(server)
            .map_or(0, |q| q.iter().filter(|w| !w.tx.is_closed()).count())
    }

    fn reap(&self, ctx: &Context, now: Instant) {
        let mut expired = Vec::new();
        {
            let mut st = self.lock();
            for v in st.idle.values_mut() {
                let mut i = 0;
                while i < v.len() {
                    if v[i].expires <= now {
                        expired.push(v.swap_remove(i).conn);
                    } else {
                        i += 1;
                    }
                }
            }
            st.idle.retain(|_, v| !v.is_empty());
            // Waiters that gave up (timed out, served by a slot) while nothing was given back.
            for q in st.waiters.values_mut() {
                q.retain(|w| !w.tx.is_closed());
            }
            st.waiters.retain(|_, q| !q.is_empty());
        }
        for conn in expired {
            let same = |b: &std::sync::Arc<Backend>| {
                format!("{}:{}", b.config.host, b.config.port) == conn.key.addr
            };
            if let Some(b) = ctx.backend(&conn.key.server).filter(same) {
                b.metrics().connections_idle.dec();
            }
            drop(conn);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        match self.state.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }
}

/// Waits for a connection handed over for this key or a slot of the server, whichever comes
/// first, until `deadline`. Counted in `rwsplit_pool_queue_length` meanwhile.
async fn wait_in_line(
    backend: &Backend,
    mut rx: oneshot::Receiver<Conn>,
    deadline: tokio::time::Instant,
) -> Served {
    let queue = &backend.metrics().pool_queue;
    queue.inc();
    let served = tokio::select! {
        biased;
        c = &mut rx => match c {
            Ok(c) => Served::Conn(c),
            // The pools dropped the sender: they are going away.
            Err(_) => Served::TimedOut,
        },
        s = backend.slot() => match s {
            Some(s) => Served::Slot(s),
            None => Served::TimedOut,
        },
        () = tokio::time::sleep_until(deadline) => Served::TimedOut,
    };
    queue.dec();
    // Stop being offered connections; one handed over in the meantime is still ours, and
    // better than a slot (no connect): the slot goes back to the next waiter.
    rx.close();
    match (served, rx.try_recv()) {
        (_, Ok(c)) => Served::Conn(c),
        (s, Err(_)) => s,
    }
}

/// What to do with a connection no waiter took.
enum Unwanted {
    /// Sessions of other keys wait for this server: close it to make room for them.
    Close,
    /// Nobody waits for this server: keep it idle.
    Keep,
}

/// Gives `conn` to the oldest live waiter of its key (dropping waiters that gave up); `None`
/// once handed over, else the connection back with what to do with it.
fn hand_over(
    waiters: &mut HashMap<String, VecDeque<Waiter>>,
    mut conn: Conn,
) -> Option<(Conn, Unwanted)> {
    let Some(q) = waiters.get_mut(&conn.key.server) else {
        return Some((conn, Unwanted::Keep));
    };
    let mut i = 0;
    while i < q.len() {
        if q[i].tx.is_closed() {
            q.remove(i);
            continue;
        }
        if q[i].key == conn.key && !(q[i].no_schema && conn.has_schema) {
            let Some(w) = q.remove(i) else { break };
            match w.tx.send(conn) {
                Ok(()) => return None,
                // Gave up between the check and the send.
                Err(c) => conn = c,
            }
            continue;
        }
        i += 1;
    }
    if q.is_empty() {
        waiters.remove(&conn.key.server);
        return Some((conn, Unwanted::Keep));
    }
    Some((conn, Unwanted::Close))
}

/// Takes the newest idle connection of `key` already in state `want`, else the newest that
/// suits the session.
/// `proxy.users[].max_backend_connections` of `user`, if it has one.
fn user_limit(cfg: &router::config::ProxyConfig, user: &str) -> Option<usize> {
    cfg.users
        .iter()
        .find(|u| u.name == user)
        .and_then(|u| u.max_backend_connections)
}

/// An idle connection taken from the pool, counted as in use if it is still good (not past
/// its idle timeout, not closed by the server meanwhile); dropped otherwise.
fn checked_out(backend: &Backend, idle: Idle) -> Option<Conn> {
    backend.metrics().connections_idle.dec();
    if idle.expires <= Instant::now() || !idle.conn.looks_alive() {
        return None;
    }
    backend.metrics().connections_in_use.inc();
    Some(idle.conn)
}

fn take_idle(
    idle: &mut HashMap<Key, Vec<Idle>>,
    key: &Key,
    no_schema: bool,
    want: &Arc<Fingerprint>,
) -> Option<Idle> {
    let v = idle.get_mut(key)?;
    let suits = |c: &Idle| !(no_schema && c.conn.has_schema);
    let i = v
        .iter()
        .rposition(|c| suits(c) && Fingerprint::same(&c.conn.state, want))
        .or_else(|| v.iter().rposition(suits))?;
    Some(v.remove(i))
}

/// Takes the idle connection of `server` (any user) closest to its idle timeout.
fn take_oldest_of_server(idle: &mut HashMap<Key, Vec<Idle>>, server: &str) -> Option<Idle> {
    let key = idle
        .iter()
        .filter(|(k, v)| k.server == server && !v.is_empty())
        .min_by_key(|(_, v)| v[0].expires)
        .map(|(k, _)| k.clone())?;
    let v = idle.get_mut(&key)?;
    Some(v.remove(0))
}

mod per_user;
#[cfg(test)]
mod test;
