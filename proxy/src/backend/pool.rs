//! Pools of idle backend connections per (server, user, capabilities), with a per-server limit
//! and an idle timeout. Connections come back clean: the session resets each one
//! (`COM_RESET_CONNECTION`) before it gives it back, so a client's transaction and locks end
//! when its session does, not when someone next takes the connection.
//!
//! The pools hold only idle connections; a session owns the connections it uses. The lock is
//! taken once when a session takes a connection and once when it gives it back, never per
//! packet.

use super::conn::{Conn, Key, Target};
use super::Error;
use crate::context::{Backend, Context};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

struct Idle {
    conn: Conn,
    expires: Instant,
}

/// Every pool of one proxy context.
pub struct Pools {
    idle: Mutex<HashMap<Key, Vec<Idle>>>,
    reaper_started: AtomicBool,
    /// Woken when a connection is given back or closed (sessions waiting on a full server).
    freed: tokio::sync::Notify,
}

/// The pools of a context, kept in the context's extension slot (created on first use).
pub fn pools_for(ctx: &Arc<Context>) -> Arc<Pools> {
    let pools = ctx.extension(|| Pools {
        idle: Mutex::new(HashMap::new()),
        reaper_started: AtomicBool::new(false),
        freed: tokio::sync::Notify::new(),
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

impl Pools {
    /// Takes an idle connection for `key` (reset at check-in, so it carries no other session's
    /// state) or opens a new one. `no_schema`: the session has no default database, so a connection
    /// that may still have one (a reset keeps it) does not qualify.
    pub async fn acquire(
        &self,
        ctx: &Context,
        backend: &Backend,
        key: &Key,
        password: &str,
        no_schema: bool,
    ) -> Result<Conn, Error> {
        let database: Option<&str> = None;
        let cfg = ctx.proxy_config();
        let deadline =
            tokio::time::Instant::now() + Duration::from_millis(cfg.pool.connect_timeout_ms);
        'wait: loop {
            loop {
                let candidate = {
                    let mut idle = self.lock();
                    idle.get_mut(key).and_then(|v| {
                        let i = v.iter().rposition(|c| !(no_schema && c.conn.has_schema))?;
                        Some(v.remove(i))
                    })
                };
                let Some(idle) = candidate else { break };
                backend.metrics().connections_idle.dec();
                if idle.expires <= Instant::now() || !idle.conn.looks_alive() {
                    self.close(backend, idle.conn, false);
                    continue;
                }
                backend.metrics().connections_in_use.inc();
                return Ok(idle.conn);
            }
            if backend.connections() >= cfg.pool.max_per_server && !self.evict_one(backend) {
                // Full: wait (up to the connect timeout) for a connection to come back or close.
                let freed = self.freed.notified();
                tokio::pin!(freed);
                freed.as_mut().enable();
                if backend.connections() < cfg.pool.max_per_server {
                    continue 'wait;
                }
                if tokio::time::timeout_at(deadline, freed).await.is_err() {
                    return Err(Error::PoolExhausted {
                        server: backend.name().to_string(),
                        max: cfg.pool.max_per_server,
                    });
                }
                continue 'wait;
            }
            break 'wait;
        }
        let addr = key.addr.clone();
        let tls = super::tls::target_for(
            ctx,
            backend.name(),
            &backend.config.host,
            &backend.config.tls,
        )?;
        backend.connection_opened();
        let r = Conn::connect(
            key.clone(),
            Target {
                addr: &addr,
                password,
                connect_timeout: Duration::from_millis(cfg.pool.connect_timeout_ms),
                read_timeout: Duration::from_millis(cfg.pool.read_timeout_ms),
                tls,
            },
            database,
        )
        .await;
        match r {
            Ok(c) => {
                backend.metrics().connections_in_use.inc();
                Ok(c)
            }
            Err(e) => {
                backend.connection_closed();
                if !matches!(e, Error::Server { .. }) {
                    backend.metrics().connect_errors.inc();
                }
                Err(e)
            }
        }
    }

    /// Gives a connection back (already reset by the session): kept idle if healthy, closed
    /// otherwise.
    pub fn release(&self, ctx: &Context, backend: &Backend, mut conn: Conn) {
        backend.metrics().connections_in_use.dec();
        if conn.broken {
            self.close(backend, conn, true);
            return;
        }
        let timeout = Duration::from_secs(ctx.proxy_config().pool.idle_timeout_s);
        let now = Instant::now();
        conn.last_used = now;
        backend.metrics().connections_idle.inc();
        {
            let mut idle = self.lock();
            idle.entry(conn.key.clone()).or_default().push(Idle {
                conn,
                expires: now + timeout,
            });
        }
        self.freed.notify_waiters();
    }

    /// Closes a connection the session owned (broken or no longer wanted).
    pub fn discard(&self, backend: &Backend, conn: Conn) {
        backend.metrics().connections_in_use.dec();
        self.close(backend, conn, true);
    }

    /// Idle connections across all pools (for tests and `/servers`).
    pub fn idle_count(&self) -> usize {
        self.lock().values().map(Vec::len).sum()
    }

    fn reap(&self, ctx: &Context, now: Instant) {
        let mut expired = Vec::new();
        {
            let mut idle = self.lock();
            for v in idle.values_mut() {
                let mut i = 0;
                while i < v.len() {
                    if v[i].expires <= now {
                        expired.push(v.swap_remove(i).conn);
                    } else {
                        i += 1;
                    }
                }
            }
            idle.retain(|_, v| !v.is_empty());
        }
        for conn in expired {
            let same = |b: &std::sync::Arc<Backend>| {
                format!("{}:{}", b.config.host, b.config.port) == conn.key.addr
            };
            if let Some(b) = ctx.backend(&conn.key.server).filter(same) {
                b.metrics().connections_idle.dec();
                self.close(&b, conn, false);
            }
        }
    }

    /// Makes room on a full server by closing the oldest idle connection of any user.
    fn evict_one(&self, backend: &Backend) -> bool {
        let victim = {
            let mut idle = self.lock();
            let key = idle
                .iter()
                .filter(|(k, v)| k.server == backend.name() && !v.is_empty())
                .min_by_key(|(_, v)| v[0].expires)
                .map(|(k, _)| k.clone());
            key.and_then(|k| idle.get_mut(&k).map(|v| v.remove(0)))
        };
        match victim {
            Some(i) => {
                backend.metrics().connections_idle.dec();
                self.close(backend, i.conn, false);
                true
            }
            None => false,
        }
    }

    fn close(&self, backend: &Backend, conn: Conn, _was_in_use: bool) {
        backend.connection_closed();
        drop(conn);
        self.freed.notify_waiters();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Vec<Idle>>> {
        match self.idle.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }
}
