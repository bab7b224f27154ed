//! `proxy.users[].max_backend_connections`: how many connections one user's sessions may use
//! on one server at once. A session over it waits, first come first served (a fair
//! semaphore per server and user), for one of the user's connections to be given back, up to
//! `proxy.pool.queue_timeout_ms` like a wait for a full pool. Idle connections do not count:
//! only this user's sessions can take them, so they are bounded by the user's busiest moment.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The limit a semaphore was made for, and the semaphore.
type Places = (usize, Arc<Semaphore>);

/// Per (server, user): its places.
#[derive(Default)]
pub(super) struct PerUser(Mutex<HashMap<(String, String), Places>>);

/// No place came free in time.
pub(super) struct TimedOut;

impl PerUser {
    /// Waits until `deadline` for a place of `user` on `server` within `limit`. A changed
    /// limit (a reload) starts a new semaphore: places held under the old one are not
    /// counted against it, so for a moment the user may hold up to old + new.
    pub(super) async fn permit(
        &self,
        server: &str,
        user: &str,
        limit: usize,
        deadline: tokio::time::Instant,
    ) -> Result<OwnedSemaphorePermit, TimedOut> {
        let sem = {
            let mut m = match self.0.lock() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            let e = m
                .entry((server.to_string(), user.to_string()))
                .or_insert_with(|| (limit, Arc::new(Semaphore::new(limit))));
            if e.0 != limit {
                *e = (limit, Arc::new(Semaphore::new(limit)));
            }
            e.1.clone()
        };
        if let Ok(p) = sem.clone().try_acquire_owned() {
            return Ok(p);
        }
        match tokio::time::timeout_at(deadline, sem.acquire_owned()).await {
            Ok(Ok(p)) => Ok(p),
            _ => Err(TimedOut),
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn places_per_server_and_user_wait_in_line_then_time_out() {
        let p = PerUser::default();
        let soon = || tokio::time::Instant::now() + Duration::from_millis(50);
        let a = p.permit("s1", "u", 1, soon()).await.ok().expect("first");
        assert!(p.permit("s1", "u", 1, soon()).await.is_err(), "full");
        let _other_server = p.permit("s2", "u", 1, soon()).await.ok().expect("s2");
        let _other_user = p.permit("s1", "v", 1, soon()).await.ok().expect("v");
        let later = tokio::time::Instant::now() + Duration::from_secs(5);
        let waiter = p.permit("s1", "u", 1, later);
        let give_back = async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            drop(a);
        };
        let (got, ()) = tokio::join!(waiter, give_back);
        assert!(got.is_ok(), "served when the place came free");
    }
}
