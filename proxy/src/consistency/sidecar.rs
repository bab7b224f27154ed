//! Positions from the sidecars (`lag_source: sidecar`): per sidecar, a `/lag?after=N` long
//! poll that publishes each answer as it lands, and beside it the sessions' kicks (`/kick`),
//! each on a keep-alive connection.

use super::{position_of, Applied, Positions};
use crate::context::Context;
use crate::health::sidecar_client::Client;
use router::config::LagSource;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Follows every sidecar of the configuration until it is reloaded: one long poll per sidecar
/// (`/lag?after=N`, answered as each replica poll lands there) and, beside it, the sessions'
/// kicks (`/kick`).
pub(super) async fn follow_sidecars(ctx: &Context, positions: &Positions, source: &LagSource) {
    let generation = ctx.config_generation();
    let urls = source.sidecar_urls();
    let followers = urls
        .iter()
        .map(|url| follow_sidecar(url, positions, &ctx.metrics));
    let reloaded = async {
        while ctx.config_generation() == generation {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    };
    tokio::select! {
        _ = futures_join_all(followers) => {}
        _ = reloaded => {}
    }
}

/// Runs the futures to completion together (no extra dependency for a handful of sidecars).
async fn futures_join_all<F: std::future::Future<Output = ()>>(fs: impl Iterator<Item = F>) {
    let mut set: Vec<std::pin::Pin<Box<F>>> = fs.map(Box::pin).collect();
    std::future::poll_fn(move |cx| {
        set.retain_mut(|f| f.as_mut().poll(cx).is_pending());
        if set.is_empty() {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await
}

/// Follows one sidecar forever: its long poll, and the kicks beside it. A kick never cuts the
/// long poll short: with several sessions waiting, each kick would otherwise start it anew
/// before the sidecar's answer lands, and positions would starve while reads wait for them.
async fn follow_sidecar(url: &str, positions: &Positions, metrics: &crate::metrics::Metrics) {
    tokio::join!(
        long_poll_sidecar(url, positions, metrics),
        forward_kicks(url, positions)
    );
}

/// Long-polls one sidecar's `/lag` forever on a keep-alive connection, publishing what it
/// reports.
async fn long_poll_sidecar(url: &str, positions: &Positions, metrics: &crate::metrics::Metrics) {
    let mut client = Client::keep_alive();
    let mut after = 0u64;
    let sep = if url.contains('?') { '&' } else { '?' };
    loop {
        let long = format!("{url}{sep}after={after}&timeout_ms=1000");
        let sent = Instant::now();
        let got =
            crate::health::lag::fetch_snapshot_on(&mut client, &long, Duration::from_secs(3)).await;
        let snap = match got {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(error = %e, "sidecar long poll failed; retrying");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if snap.polls > 0 {
            after = snap.polls;
        } else {
            // A sidecar without long polls answers at once: do not spin.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        publish_sidecar(&snap, sent, positions);
        positions.export_ages(metrics);
    }
}

/// Forwards the sessions' kicks to one sidecar: at most one kick request in flight, on a
/// keep-alive connection; kicks arriving meanwhile are folded into one follow-up (a received
/// kick among them makes it a received one). What the polls find comes back through the long
/// poll.
async fn forward_kicks(url: &str, positions: &Positions) {
    let mut kicks = positions.kick.subscribe();
    let mut received_kicks = positions.kick_received.subscribe();
    let mut client = Client::keep_alive();
    // The sidecar predates `/kick`: kick through `/lag` instead.
    let mut legacy = false;
    loop {
        let received = tokio::select! {
            r = kicks.changed() => match r {
                Ok(()) => false,
                Err(_) => return,
            },
            r = received_kicks.changed() => match r {
                Ok(()) => true,
                Err(_) => return,
            },
        };
        // Everything asked until now goes out in this one request.
        let received = received || received_kicks.has_changed().unwrap_or(false);
        kicks.borrow_and_update();
        received_kicks.borrow_and_update();
        loop {
            let target = kick_url(url, received, legacy);
            match tokio::time::timeout(Duration::from_secs(1), client.get(&target)).await {
                Ok(Ok(r)) if r.status == 404 && !legacy => {
                    tracing::info!(%url, "the sidecar has no /kick (older version): kicking through /lag");
                    legacy = true;
                }
                Ok(Ok(r)) if (200..300).contains(&r.status) => break,
                Ok(Ok(r)) => {
                    tracing::debug!(%url, status = %r.status_line, "sidecar refused a kick");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    break;
                }
                Ok(Err(e)) => {
                    // The long poll reports the sidecar gone; kicks wait a little meanwhile.
                    tracing::debug!(error = %e, "sidecar kick failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    break;
                }
                Err(_) => break,
            }
        }
    }
}

/// Where a kick goes: `/kick` beside the configured `/lag` (the same path prefix behind a
/// reverse proxy, the same query), or for a sidecar that predates it a `/lag` request that
/// kicks and answers at once (`after` beyond any poll count, `timeout_ms=0`).
fn kick_url(url: &str, received: bool, legacy: bool) -> String {
    let flag = if received { "received=1" } else { "" };
    if legacy {
        let sep = if url.contains('?') { '&' } else { '?' };
        let received = if received { "&received=1" } else { "" };
        return format!("{url}{sep}after={}&timeout_ms=0&kick=1{received}", u64::MAX);
    }
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let dir = match base
        .strip_prefix("http://")
        .and_then(|rest| rest.rfind('/'))
    {
        Some(i) => &base[..i + "http://".len()],
        None => base,
    };
    let query: Vec<&str> = [query, flag]
        .into_iter()
        .filter(|q| !q.is_empty())
        .collect();
    if query.is_empty() {
        format!("{dir}/kick")
    } else {
        format!("{dir}/kick?{}", query.join("&"))
    }
}

fn publish_sidecar(snap: &binlog_reader::LagSnapshot, sent: Instant, positions: &Positions) {
    let now_ms = crate::health::lag::now_ms();
    let at = |seq: &BTreeMap<String, u64>, asked_at_ms: Option<u64>| Applied {
        position: position_of(seq),
        asked: sidecar_instant(asked_at_ms, now_ms, sent),
    };
    // Each replica's applied or received position: unknown while unreachable or empty.
    type Pick = fn(&binlog_reader::ReplicaLag) -> (&BTreeMap<String, u64>, Option<u64>);
    let each = |pick: Pick| {
        snap.replicas
            .iter()
            .map(|(name, r)| {
                let (seq, asked_at_ms) = pick(r);
                let known = (r.reachable && !seq.is_empty()).then(|| at(seq, asked_at_ms));
                (name.clone(), known)
            })
            .collect()
    };
    positions.publish(
        position_of(&snap.primary.gtid_seq),
        each(|r| (&r.applied_seq, r.asked_at_ms)),
    );
    positions.publish_received(each(|r| (&r.received_seq, r.received_asked_at_ms)));
}

/// When a sidecar asked a replica (its clock, as `taken_at_ms`), as an instant here: never
/// later than our request went out; unknown means as old as a snapshot may be.
fn sidecar_instant(asked_at_ms: Option<u64>, now_ms: u64, sent: Instant) -> Instant {
    let age = asked_at_ms
        .map(|t| now_ms.saturating_sub(t))
        .unwrap_or(5_000)
        .min(3_600_000);
    Instant::now()
        .checked_sub(Duration::from_millis(age))
        .unwrap_or(sent)
        .min(sent)
}

#[cfg(test)]
mod test {
    use super::*;
    use binlog_reader::http::{Reply, ReplyFuture, Request, Routes};
    use std::sync::{Arc, Mutex};
    use tokio::sync::Semaphore;

    #[test]
    fn kicks_go_beside_the_configured_lag_path() {
        let url = "http://10.0.0.1:9034/lag";
        assert_eq!(kick_url(url, false, false), "http://10.0.0.1:9034/kick");
        assert_eq!(
            kick_url(url, true, false),
            "http://10.0.0.1:9034/kick?received=1"
        );
        assert_eq!(
            kick_url("http://r:80/readers/a/lag?zone=b", true, false),
            "http://r:80/readers/a/kick?zone=b&received=1"
        );
        assert_eq!(kick_url("http://r:80", false, false), "http://r:80/kick");
        assert_eq!(
            kick_url(url, true, true),
            format!("{url}?after={}&timeout_ms=0&kick=1&received=1", u64::MAX)
        );
    }

    /// A real sidecar's routes (a reader of a topology nobody answers: its long polls answer
    /// at their timeout) behind a layer that records every request as `(path?query, client
    /// port)`, holds each `/kick` until the test lets it through (`gate`), and with `no_kick`
    /// answers `/kick` 404 as a sidecar that predates it.
    struct Sidecar {
        url: String,
        seen: Arc<Mutex<Vec<(String, u16)>>>,
        gate: Arc<Semaphore>,
        server: tokio::task::JoinHandle<()>,
        _reader: binlog_reader::LagHandle,
    }

    impl Sidecar {
        async fn start(no_kick: bool) -> Sidecar {
            // A primary on a port nothing listens on: no replica poll ever lands.
            let closed = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
                .unwrap_or(1);
            let yaml = format!(
                "servers: [{{name: p, host: 127.0.0.1, port: {closed}, role: primary}}]\n\
                 monitor: {{user: u, password: x}}\n"
            );
            let config = router::config::Config::from_yaml("t.yaml", &yaml).expect("config");
            let reader = binlog_reader::LagReader::spawn(&config).expect("reader");
            let real = reader.routes();
            let seen = Arc::new(Mutex::new(Vec::new()));
            let gate = Arc::new(Semaphore::new(0));
            let (log, held) = (seen.clone(), gate.clone());
            let routes: Routes = Arc::new(move |req: Request| {
                let (real, held) = (real.clone(), held.clone());
                let target = if req.query.is_empty() {
                    req.path.clone()
                } else {
                    format!("{}?{}", req.path, req.query)
                };
                if let Ok(mut l) = log.lock() {
                    l.push((target, req.peer.port()));
                }
                Box::pin(async move {
                    if req.path == "/kick" {
                        if no_kick {
                            return Reply::not_found();
                        }
                        if let Ok(p) = held.acquire().await {
                            p.forget();
                        }
                    }
                    real(req).await
                }) as ReplyFuture
            });
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let addr = listener.local_addr().expect("addr");
            Sidecar {
                url: format!("http://{addr}/lag"),
                seen,
                gate,
                server: tokio::spawn(binlog_reader::http::serve(listener, routes)),
                _reader: reader,
            }
        }

        fn requests(&self, path: &str) -> Vec<(String, u16)> {
            self.seen
                .lock()
                .map(|l| {
                    l.iter()
                        .filter(|(t, _)| t.starts_with(path))
                        .cloned()
                        .collect()
                })
                .unwrap_or_default()
        }

        /// Waits (up to 5 s) until `n` requests to `path` arrived.
        async fn wait_for(&self, path: &str, n: usize) -> Vec<(String, u16)> {
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                let got = self.requests(path);
                if got.len() >= n || Instant::now() > deadline {
                    return got;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }

    impl Drop for Sidecar {
        fn drop(&mut self) {
            self.server.abort();
        }
    }

    #[tokio::test]
    async fn kicks_go_beside_the_long_poll_one_at_a_time_and_folded() {
        let sidecar = Sidecar::start(false).await;
        let positions = Positions::new();
        let metrics = crate::metrics::Metrics::new();
        let started = Instant::now();
        let follower = {
            let (url, positions) = (sidecar.url.clone(), positions.clone());
            tokio::spawn(async move { follow_sidecar(&url, &positions, &metrics).await })
        };
        assert_eq!(sidecar.wait_for("/lag", 1).await.len(), 1, "long poll sent");
        positions.kick();
        assert_eq!(sidecar.wait_for("/kick", 1).await.len(), 1, "kick sent");
        // While that kick is held, eleven more arrive: none goes out yet.
        for _ in 0..10 {
            positions.kick();
        }
        positions.kick_received();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(
            sidecar.requests("/kick").len(),
            1,
            "one kick in flight at most"
        );
        sidecar.gate.add_permits(1);
        let kicks = sidecar.wait_for("/kick", 2).await;
        assert_eq!(kicks.len(), 2, "{kicks:?}");
        assert_eq!(kicks[0].0, "/kick");
        assert_eq!(
            kicks[1].0, "/kick?received=1",
            "a received kick was among them"
        );
        sidecar.gate.add_permits(100);
        tokio::time::sleep(Duration::from_millis(200)).await;
        let kicks = sidecar.requests("/kick");
        assert_eq!(kicks.len(), 2, "the eleven were folded into one: {kicks:?}");
        assert_eq!(
            kicks[0].1, kicks[1].1,
            "kicks share one keep-alive connection"
        );
        // The long poll (answered at its 1 s timeout here: no replica poll succeeds) was never
        // restarted by a kick (twelve kicks so far), and it too keeps its connection.
        let polls = sidecar.requests("/lag");
        assert!(polls.iter().all(|(t, _)| !t.contains("kick")), "{polls:?}");
        let answered = started.elapsed().as_secs() as usize;
        assert!(polls.len() <= 1 + answered, "{polls:?} in {answered} s");
        positions.kick();
        let kicks = sidecar.wait_for("/kick", 3).await;
        assert_eq!(kicks.len(), 3);
        let polls = sidecar.wait_for("/lag", 3).await;
        assert!(polls.len() >= 2, "{polls:?}");
        assert!(
            polls.iter().all(|(_, port)| *port == polls[0].1),
            "{polls:?}"
        );
        follower.abort();
    }

    #[tokio::test]
    async fn kicks_reach_a_sidecar_without_kick_through_lag() {
        let sidecar = Sidecar::start(true).await;
        let positions = Positions::new();
        let follower = {
            let (url, positions) = (sidecar.url.clone(), positions.clone());
            tokio::spawn(async move { forward_kicks(&url, &positions).await })
        };
        // Let the forwarder subscribe before kicking.
        tokio::time::sleep(Duration::from_millis(50)).await;
        positions.kick_received();
        let legacy = format!("/lag?after={}&timeout_ms=0&kick=1&received=1", u64::MAX);
        let deadline = Instant::now() + Duration::from_secs(5);
        while !sidecar.requests("/lag").iter().any(|(t, _)| *t == legacy) {
            assert!(Instant::now() < deadline, "{:?}", sidecar.requests("/"));
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(sidecar.requests("/kick").len(), 1, "tried /kick once");
        positions.kick();
        let lag = sidecar.wait_for("/lag", 2).await;
        assert_eq!(lag.len(), 2, "{lag:?}");
        assert_eq!(
            sidecar.requests("/kick").len(),
            1,
            "and remembers it is missing"
        );
        follower.abort();
    }
}
