//! The health monitor: checks every server each `proxy.monitor_interval_ms`, learns replica lag
//! from `proxy.lag_source`, derives the topology (who writes, who may serve reads) and publishes
//! it to the [`Context`] for the router's chooser. It also feeds the circuit breakers and the
//! backend metrics, and logs every change of role.

pub mod check;
pub mod lag;
pub mod sidecar_client;
pub mod topology;

use crate::context::{Context, ObservedRole, Topology};
use check::Checker;
use router::config::{Config, LagSource};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use topology::Sample;

/// Starts the monitor; it runs until shutdown begins and follows config reloads.
pub fn spawn(ctx: Arc<Context>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut shutdown = ctx.shutdown_signal();
        loop {
            if *shutdown.borrow() {
                return;
            }
            // One generation per config: a reload restarts the checkers for the new list.
            tokio::select! {
                _ = run_generation(&ctx) => {}
                _ = shutdown.changed() => return,
            }
        }
    })
}

/// The latest sample of each server, shared by its checker task and the coordinator.
type Slots = Arc<Mutex<Vec<Option<Sample>>>>;
/// The latest answer of one sidecar (lags, when it took them in ms since the epoch) and when
/// it arrived.
type SidecarSlot = Arc<Mutex<Option<((lag::LagMap, u64), Instant)>>>;

async fn run_generation(ctx: &Arc<Context>) {
    let generation = ctx.config_generation();
    let config = ctx.config();
    let interval = Duration::from_millis(ctx.proxy_config().monitor_interval_ms.max(50));
    // A health check's own limit (`monitor.timeout_ms`): a server that does not answer within
    // it is hung, out of the rotation at once. The sidecars' HTTP polls keep the pool's
    // connect timeout: a slow sidecar is not a hung database.
    let check_timeout = Duration::from_millis(config.monitor.timeout_ms.max(1));
    let timeout = Duration::from_millis(ctx.proxy_config().pool.connect_timeout_ms.max(100));
    let password = match binlog_reader::secret::resolve(&config.monitor.secret) {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %e, "monitor password unavailable; every server will look down");
            String::new()
        }
    };
    let slots: Slots = Arc::new(Mutex::new(vec![None; config.servers.len()]));
    let changed = Arc::new(Notify::new());
    let mut tasks = JoinSet::new();
    let backends = ctx.backends();
    for (i, server) in config.servers.iter().enumerate() {
        let Some(backend) = backends.get(i).cloned() else {
            continue;
        };
        let checker = Checker::new(
            &server.host,
            server.port,
            &config.monitor.user,
            &password,
            &server.tls,
        );
        tasks.spawn(check_loop(
            ctx.clone(),
            backend,
            i,
            checker,
            Timing {
                interval,
                timeout: check_timeout,
            },
            (slots.clone(), changed.clone()),
        ));
    }
    let lag_source = ctx.proxy_config().lag_source.clone();
    let urls = lag_source.sidecar_urls();
    let sidecars: Vec<SidecarSlot> = urls.iter().map(|_| Arc::new(Mutex::new(None))).collect();
    // With a list of sidecars, losing them all falls back to the monitor's own view.
    let fallback = matches!(&lag_source, LagSource::Sidecar { urls, .. } if !urls.is_empty());
    let mut fell_back = false;
    match &lag_source {
        LagSource::Sidecar { .. } => {
            for (url, slot) in urls.iter().zip(&sidecars) {
                tasks.spawn(sidecar_loop(url.clone(), interval, timeout, slot.clone()));
            }
        }
        LagSource::Embedded => start_embedded_reader(ctx, &config, None),
        LagSource::SecondsBehindMaster => {}
    }
    // The primary the embedded reader tails (None = the configured one).
    // The servers it polls, once it follows an observed primary (None: the configured list).
    let mut reader_members: Option<Vec<usize>> = None;
    let mut reader_primary = config
        .primary()
        .and_then(|p| config.servers.iter().position(|s| s.name == p.name));
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = changed.notified() => {}
        }
        if ctx.config_generation() != generation {
            tasks.shutdown().await;
            return;
        }
        let mut samples = match slots.lock() {
            Ok(s) => s.clone(),
            Err(_) => continue,
        };
        let embedded = ctx.lag_reader().map(|h| h.snapshot());
        let answers = sidecar_answers(&sidecars);
        let source = if fallback && answers.is_empty() {
            if !fell_back {
                tracing::error!(
                    sidecars = %urls.join(", "),
                    "every lag sidecar is unavailable: lag now comes from the monitor's \
                     Seconds_Behind_Master (whole seconds)"
                );
                fell_back = true;
            }
            LagSource::SecondsBehindMaster
        } else {
            if fell_back {
                tracing::info!("a lag sidecar answers again: lag comes from the sidecars");
                fell_back = false;
            }
            lag_source.clone()
        };
        ctx.metrics.lag_source_fallback.set(i64::from(fell_back));
        fill_lag(&config, &source, &answers, embedded.as_ref(), &mut samples);
        let previous = ctx.topology();
        // Runtime overrides (admin API) change the served config within a generation: derive
        // with their maintenance, weight and lag limit.
        let live = ctx.config();
        let settings = if live.servers.len() == config.servers.len() {
            &live
        } else {
            &config
        };
        let next = topology::derive(settings, &samples, &previous);
        // A switchover or failover in progress holds the writer it published.
        let next = crate::failover::steer(ctx, &config, next);
        // Refused only if a reload happened in between: the next round uses the new config.
        if ctx.publish_topology(generation, next.clone()) {
            report(ctx, &config, &previous, &next);
            // Follow the writer with the binlog stream too: after a failover the old primary's
            // binlog no longer carries new transactions.
            // And a server that starts replicating after that (the old primary repointed
            // by a switchover once the writer moved) gets its lag measured too.
            let members = replicating(&next);
            if lag_source == LagSource::Embedded
                && next.primary().is_some()
                && (next.primary() != reader_primary
                    || (reader_members.is_some()
                        && !members
                            .iter()
                            .all(|m| reader_members.as_ref().is_some_and(|r| r.contains(m)))))
            {
                reader_primary = next.primary();
                reader_members = Some(members);
                start_embedded_reader(ctx, &config, Some(&next));
            }
        }
    }
}

/// The servers seen replicating: the ones an embedded reader following `t` polls.
fn replicating(t: &Topology) -> Vec<usize> {
    t.servers
        .iter()
        .enumerate()
        .filter(|(i, h)| h.replicating == Some(true) && t.primary() != Some(*i))
        .map(|(i, _)| i)
        .collect()
}

/// (Re)starts the embedded binlog reader. With `observed`, it tails the observed primary and
/// polls only the servers seen replicating (a stand-alone old primary has no replica position
/// to poll); otherwise it follows the configuration. A reader that cannot start leaves lag
/// unknown (replicas out of rotation, reads on the primary) rather than guessed.
fn start_embedded_reader(ctx: &Context, config: &Config, observed: Option<&Topology>) {
    let mut config = config.clone();
    if let Some(t) = observed.filter(|t| t.primary().is_some()) {
        let keep: Vec<bool> = (0..config.servers.len())
            .map(|i| {
                t.primary() == Some(i)
                    || t.servers
                        .get(i)
                        .is_some_and(|h| h.replicating == Some(true))
            })
            .collect();
        for (i, s) in config.servers.iter_mut().enumerate() {
            s.role = if t.primary() == Some(i) {
                router::config::Role::Primary
            } else {
                router::config::Role::Replica
            };
        }
        let mut i = 0;
        config.servers.retain(|_| {
            i += 1;
            keep[i - 1]
        });
    }
    // Drop the old reader first: only one binlog dump per server id at a time. On a writer
    // change the new stream continues from the GTID the old one reached, with its timeline.
    let previous = observed.and_then(|_| ctx.lag_reader());
    ctx.set_lag_reader(None);
    match binlog_reader::LagReader::spawn_following(&config, previous.as_ref()) {
        Ok(handle) => {
            if let Some(p) = config.primary() {
                tracing::info!(primary = %p.name, "embedded binlog reader started");
            }
            ctx.set_lag_reader(Some(handle));
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot start the embedded binlog reader: replica lag is unknown");
        }
    }
}

/// How often to check, and how long one check may take.
#[derive(Clone, Copy)]
struct Timing {
    interval: Duration,
    timeout: Duration,
}

/// Checks one server every `interval`, stores the sample in its slot, and wakes the
/// coordinator when the result changed.
async fn check_loop(
    ctx: Arc<Context>,
    backend: Arc<crate::context::Backend>,
    index: usize,
    mut checker: Checker,
    Timing { interval, timeout }: Timing,
    (slots, changed): (Slots, Arc<Notify>),
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut down = false;
    loop {
        tick.tick().await;
        let started = Instant::now();
        let result = checker.check(timeout).await;
        let was_down = std::mem::replace(&mut down, result.is_err());
        {
            let b = &backend;
            b.metrics().up.set(i64::from(result.is_ok()));
            b.metrics()
                .check_duration
                .observe(started.elapsed().as_secs_f64());
            match &result {
                Ok(_) => {
                    if let Some(v) = checker.version() {
                        b.set_version(v);
                    }
                    // Respect the cool-down of a breaker the data path opened: only a closed
                    // or half-open breaker is reset by a good check. But the first good check
                    // after failed ones ends an outage the monitor itself saw (a primary
                    // restarted): the server takes work again at once, not a cool-down later.
                    if b.breaker_allows() || was_down {
                        b.report_success();
                    }
                    if b.mark_answering() {
                        tracing::info!(
                            server = b.name(),
                            "server answers its health checks again: back in the rotation"
                        );
                    }
                }
                Err(e) => {
                    b.note_outage();
                    if e.is_connect() {
                        b.metrics().connect_errors.inc();
                    }
                    // A switchover's own statements (STOP SLAVE, the read lock of read_only)
                    // hold up checks for a moment: that is not a hung server.
                    if e.is_hang() && !crate::failover::is_moving(&ctx) && b.mark_hung() {
                        tracing::warn!(
                            server = b.name(),
                            timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
                            "server did not answer its health check within monitor.timeout_ms: \
                             hung, out of the rotation; reads waiting on it are re-run elsewhere"
                        );
                    }
                    ctx.report_failure(b);
                }
            }
        }
        let sample = Sample {
            result,
            lag_ms: None,
            started,
            at: Instant::now(),
        };
        let was_ok = match slots.lock() {
            Ok(mut s) => {
                let was = s
                    .get(index)
                    .and_then(|x| x.as_ref())
                    .map(|x| x.result.clone());
                if let Some(slot) = s.get_mut(index) {
                    *slot = Some(sample.clone());
                }
                was
            }
            Err(_) => return,
        };
        // Publish at once when something changed (a read_only flip must reach writes fast).
        if was_ok.as_ref() != Some(&sample.result) {
            changed.notify_one();
        }
    }
}

/// Polls the sidecar's `/lag` every `interval`; a failed poll clears the slot (lag unknown).
async fn sidecar_loop(url: String, interval: Duration, timeout: Duration, slot: SidecarSlot) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tick.tick().await;
        let got = lag::fetch_sidecar(&url, timeout).await;
        let value = match got {
            Ok(map) => {
                if failing {
                    tracing::info!(%url, "lag sidecar answers again");
                    failing = false;
                }
                Some((map, Instant::now()))
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e, "lag sidecar unavailable: replica lag is unknown");
                    failing = true;
                }
                None
            }
        };
        if let Ok(mut s) = slot.lock() {
            *s = value;
        }
    }
}

/// The sidecars' answers younger than 5 s.
fn sidecar_answers(slots: &[SidecarSlot]) -> Vec<(lag::LagMap, u64)> {
    slots
        .iter()
        .filter_map(|s| s.lock().ok().and_then(|s| s.clone()))
        .filter(|(_, at)| at.elapsed() < Duration::from_secs(5))
        .map(|(answer, _)| answer)
        .collect()
}

/// Sets each sample's lag from the configured source.
fn fill_lag(
    config: &Config,
    source: &LagSource,
    sidecars: &[(lag::LagMap, u64)],
    embedded: Option<&binlog_reader::LagSnapshot>,
    samples: &mut [Option<Sample>],
) {
    let now = lag::now_ms();
    for (server, sample) in config.servers.iter().zip(samples.iter_mut()) {
        let Some(sample) = sample else { continue };
        let Ok(observed) = &sample.result else {
            continue;
        };
        sample.lag_ms = match source {
            LagSource::Sidecar { .. } => lag::freshest(sidecars.iter(), &server.name, now),
            LagSource::Embedded => embedded.and_then(|snap| snap.lag_ms(&server.name)),
            LagSource::SecondsBehindMaster => observed.replication.as_ref().and_then(|r| {
                match r.seconds_behind {
                    Some(s) => Some(s.saturating_mul(1000)),
                    // NULL with the SQL thread running and the IO thread stopped: the relay
                    // log is applied to its end. That counts only while the primary is down
                    // (topology::derive): the replica then holds all the primary sent.
                    None if r.sql_running && !r.io_running => Some(0),
                    None => None,
                }
            }),
        };
    }
}

/// Updates per-server metrics and logs what changed between two topologies.
fn report(ctx: &Context, config: &Config, previous: &Topology, next: &Topology) {
    let m = &ctx.metrics;
    let same_list = previous.servers.len() == next.servers.len();
    for (i, (server, health)) in config.servers.iter().zip(&next.servers).enumerate() {
        let name = server.name.as_str();
        for role in [
            ObservedRole::Primary,
            ObservedRole::Replica,
            ObservedRole::Unknown,
        ] {
            m.backend_role
                .with_label_values(&[name, role.as_str()])
                .set(i64::from(health.role == role));
        }
        let is_primary = next.primary() == Some(i);
        match health.lag_ms {
            Some(ms) if !is_primary => m
                .replica_lag_seconds
                .with_label_values(&[name])
                .set(ms as f64 / 1000.0),
            _ => {
                let _ = m.replica_lag_seconds.remove_label_values(&[name]);
            }
        }
        let fenced = next.fenced.contains(&i);
        m.writer_fenced
            .with_label_values(&[name])
            .set(i64::from(fenced));
        if fenced && !(same_list && previous.fenced.contains(&i)) {
            tracing::error!(
                server = name,
                "server came back writable and replicating from no one after another became \
                 the writer: fenced (no writes); set read_only=1 on it and point it at the writer"
            );
        }
        let writable_replica = health.replicating == Some(true) && health.read_only == Some(false);
        m.replica_writable
            .with_label_values(&[name])
            .set(i64::from(writable_replica));
        let before = same_list.then(|| &previous.servers[i]);
        if writable_replica
            && before.is_none_or(|b| !(b.replicating == Some(true) && b.read_only == Some(false)))
        {
            tracing::warn!(
                server = name,
                "server replicates from another but has read_only=0: it stays a replica and is \
                 never promoted; set read_only=1 on it"
            );
        }
        if let Some(b) = before {
            if b.reachable && !health.reachable && health.checked_at.is_some() {
                tracing::warn!(
                    server = name,
                    error = health.last_error.as_deref().unwrap_or(""),
                    "server is down"
                );
            } else if !b.reachable && health.reachable && b.checked_at.is_some() {
                tracing::info!(server = name, "server is reachable again");
            }
        }
    }
    if previous.primary() != next.primary() && same_list {
        let name = |i: Option<usize>| {
            i.and_then(|i| config.servers.get(i))
                .map(|s| s.name.as_str())
                .unwrap_or("none")
        };
        tracing::warn!(
            from = name(previous.primary()),
            to = name(next.primary()),
            "writes now go to a different primary"
        );
    }
    match (&previous.primary_down, &next.primary_down) {
        (None, Some(d)) => {
            let serving: Vec<&str> = config
                .servers
                .iter()
                .zip(&next.router.servers)
                .filter(|(_, s)| s.replicating && s.lag_ms.is_some())
                .map(|(c, _)| c.name.as_str())
                .collect();
            tracing::error!(
                primary = config.servers.get(d.server).map(|s| s.name.as_str()).unwrap_or("?"),
                serving = %serving.join(", "),
                read_limit_ms = ?config.routing.primary_down_read_ms,
                "primary is down: writes are refused; replicas that applied all it sent keep \
                 serving reads"
            );
        }
        (Some(d), None) => tracing::warn!(
            down_for = ?d.since.elapsed(),
            primary = next
                .primary()
                .and_then(|i| config.servers.get(i))
                .map(|s| s.name.as_str())
                .unwrap_or("none"),
            "primary down no more"
        ),
        (Some(before), Some(d)) => {
            if before.reads && !d.reads {
                tracing::error!(
                    limit_ms = ?config.routing.primary_down_read_ms,
                    "primary down longer than routing.primary_down_read_ms: replicas leave \
                     the read rotation"
                );
            }
        }
        (None, None) => {}
    }
    if next.split_brain && !previous.split_brain {
        tracing::error!(
            reason = next.write_block.as_deref().unwrap_or(""),
            "split brain"
        );
    }
    if let (Some(reason), None) = (&next.write_block, &previous.write_block) {
        if !next.split_brain {
            tracing::error!(reason = %reason, "writes are refused");
        }
    }
}
