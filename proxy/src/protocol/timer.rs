//! Timeouts that cost nothing when nothing waits.
//!
//! `tokio::time::timeout` builds its timer up front (a runtime handle taken, a deadline read)
//! and registers it in the timer wheel as soon as the work waits. Most reads on the data path
//! find their bytes already buffered: polling the work once first lets those complete with no
//! timer at all.

use std::future::Future;
use std::task::Poll;
use std::time::Duration;

/// Runs `work` for at most `limit`; `None` when the limit passed first. No timer is made when
/// `work` completes at its first poll.
pub async fn lazy_timeout<F: Future>(limit: Duration, work: F) -> Option<F::Output> {
    let mut work = std::pin::pin!(work);
    if let Poll::Ready(r) = std::future::poll_fn(|cx| Poll::Ready(work.as_mut().poll(cx))).await {
        return Some(r);
    }
    tokio::time::timeout(limit, work).await.ok()
}

#[cfg(test)]
mod test {
    use super::*;

    #[tokio::test]
    async fn ready_work_completes_and_waiting_work_times_out() {
        assert_eq!(
            lazy_timeout(Duration::from_secs(5), async { 7 }).await,
            Some(7)
        );
        let never = std::future::pending::<()>();
        assert_eq!(lazy_timeout(Duration::from_millis(20), never).await, None);
        let waits = async {
            tokio::time::sleep(Duration::from_millis(1)).await;
            8
        };
        assert_eq!(lazy_timeout(Duration::from_secs(5), waits).await, Some(8));
    }
}
