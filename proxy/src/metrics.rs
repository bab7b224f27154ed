//! The proxy's Prometheus metrics: one registry, handles resolved once so the hot path never
//! looks up a label set per query.
//!
//! Metric names are a user interface (dashboards and alert rules use them): keep them stable.
//! [`Metrics::NAMES`] lists every exported family; a test checks the registry matches it.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// Why a client connection was refused before a session started (`reason` label).
pub mod reject {
    /// `proxy.max_connections` reached: the client got ERR 1040.
    pub const MAX_CONNECTIONS: &str = "max_connections";
    /// Authentication failed (reported by the front end).
    pub const AUTH: &str = "auth";
    /// The handshake failed (TLS, malformed packets, timeouts; reported by the front end).
    pub const HANDSHAKE: &str = "handshake";
    /// The user's `proxy.users[].max_connections` reached: the client got ERR 1226.
    pub const USER_MAX_CONNECTIONS: &str = "user_max_connections";
}

/// `cause` label values of `rwsplit_session_state_lost_total`.
pub mod lost {
    /// The connection holding the session's pinned state failed (I/O error, server gone).
    pub const CONNECTION: &str = "connection_lost";
    /// The writer changed while the session's state lived on the old one.
    pub const WRITER_CHANGED: &str = "writer_changed";
    /// The server holding the state went down and no writer replaced it (issue 11).
    pub const PRIMARY_DOWN: &str = "primary_down";
}

/// `reason` label values of `rwsplit_reads_retried_total`: why a read that had sent nothing
/// to its client yet was run again on another server.
pub mod retried {
    /// Its server stopped answering its health checks (`monitor.timeout_ms`).
    pub const SERVER_HUNG: &str = "server_hung";
    /// No connection to its server could be had (refused, timed out, broken during set-up).
    pub const CONNECT_FAILED: &str = "connect_failed";
    /// The connection failed during the statement (I/O error, malformed answer).
    pub const CONNECTION_LOST: &str = "connection_lost";
}

/// `route` label values for queries and latency.
pub mod route {
    pub const PRIMARY: &str = "primary";
    pub const REPLICA: &str = "replica";
    /// The backend that ran the previous statement (`SHOW WARNINGS`, `ROW_COUNT()`).
    pub const PREVIOUS: &str = "previous";
    /// Answered by the proxy itself (COM_PING, COM_QUIT, ...).
    pub const PROXY: &str = "proxy";
}

/// Everything the proxy exports, registered in one [`Registry`].
///
/// Cloning a handle (`IntCounter`, `IntGauge`, ...) is an `Arc` clone; keep the clone and
/// increment it instead of calling `with_label_values` on the hot path.
pub struct Metrics {
    pub registry: Registry,
    /// `rwsplit_client_connections`: client sessions open now.
    pub client_connections: IntGauge,
    /// `rwsplit_client_connections_total`: client connections accepted since start.
    pub client_connections_total: IntCounter,
    /// `rwsplit_client_connections_rejected_total{reason}`; see [`reject`].
    pub client_connections_rejected: IntCounterVec,
    /// `rwsplit_queries_total{route,backend,reason}`: prefer [`Metrics::query_counter`].
    pub queries: IntCounterVec,
    /// `rwsplit_query_duration_seconds{route}`: from the command's arrival to the last byte sent.
    pub query_duration: HistogramVec,
    /// `rwsplit_query_errors_total{backend,kind}`; `kind` e.g. `connect`, `io`, `timeout`,
    /// `server` (an ERR packet from the backend).
    pub query_errors: IntCounterVec,
    /// `rwsplit_routing_fallbacks_total{reason}`: a read sent to the primary (or refused)
    /// because no replica qualified, or any other "safe default" decision.
    pub routing_fallbacks: IntCounterVec,
    /// `rwsplit_backend_connections{backend,state}`; `state` is `idle` or `in_use`.
    pub backend_connections: IntGaugeVec,
    /// `rwsplit_backend_up{backend}`: 1 when the monitor's last check succeeded.
    pub backend_up: IntGaugeVec,
    /// `rwsplit_backend_connect_errors_total{backend}`: failed connects (monitor and pools).
    pub backend_connect_errors: IntCounterVec,
    /// `rwsplit_proxy_replica_lag_seconds{replica}`: the lag the router uses, from the
    /// configured `lag_source`; absent (not 0) while unknown. The binlog reader's own
    /// measurement is `rwsplit_replica_lag_seconds` (one name per meaning).
    pub replica_lag_seconds: prometheus::GaugeVec,
    /// `rwsplit_backend_role{backend,role}`: 1 for the role the monitor observes now
    /// (`primary`, `replica`, `unknown`), 0 for the others.
    pub backend_role: IntGaugeVec,
    /// `rwsplit_circuit_breaker_open{backend}`: 1 while the backend is ejected.
    pub circuit_breaker_open: IntGaugeVec,
    /// `rwsplit_config_reloads_total{result}`; `result` is `ok` or `error`.
    pub config_reloads: IntCounterVec,
    /// `rwsplit_split_brain`: 1 while two writable servers replicate from no one (writes refused).
    pub split_brain: IntGauge,
    /// `rwsplit_primary_down`: 1 while the primary is unreachable and no other server is the
    /// writer: writes are refused, reads continue on replicas that applied all it sent.
    pub primary_down: IntGauge,
    /// `rwsplit_lag_source_fallback`: 1 while every sidecar of `lag_source.sidecar.urls` is
    /// unavailable and lag comes from the monitor's Seconds_Behind_Master.
    pub lag_source_fallback: IntGauge,
    /// `rwsplit_writer_fenced{backend}`: 1 for a writable server that replicates from no one
    /// but returned from an outage after another became the writer (never written to).
    pub writer_fenced: IntGaugeVec,
    /// `rwsplit_replica_misconfigured{backend}`: 1 for a replicating server with read_only=0.
    pub replica_writable: IntGaugeVec,
    /// `rwsplit_monitor_check_duration_seconds{backend}`: how long one health check took.
    pub monitor_check_duration: HistogramVec,
    /// `rwsplit_session_pins_total{reason}`: times a session began to hold a backend connection
    /// for a reason (transaction, temp_tables, diagnostics...): why connections are pinned.
    pub session_pins: IntCounterVec,
    /// `rwsplit_session_state_lost_total{cause}`: sessions whose pinned state (transaction,
    /// temporary tables, locks) was lost with its connection; the client got an error.
    pub session_state_lost: IntCounterVec,
    /// `rwsplit_query_timeouts_total`: statements cancelled by `proxy.query_timeout_ms`.
    pub query_timeouts: IntCounter,
    /// `rwsplit_reads_retried_total{reason}`: reads run again on another server because theirs
    /// failed or hung before any byte reached the client; see [`retried`].
    pub reads_retried: IntCounterVec,
    /// `rwsplit_pool_queue_length{backend}`: sessions waiting for a connection to a full server.
    pub pool_queue_length: IntGaugeVec,
    /// `rwsplit_pool_wait_seconds{backend}`: how long sessions that had to queue waited.
    pub pool_wait_seconds: HistogramVec,
    /// `rwsplit_consistent_reads_total{level,outcome}`: reads with a consistency requirement
    /// (`routing.consistency` other than `lag`, or a GTID token), by where they ran:
    /// `replica` at once, `waited` (a replica caught up within `routing.causal_wait_ms`),
    /// `primary` (none did).
    pub consistent_reads: IntCounterVec,
    /// `rwsplit_consistency_wait_seconds`: how long reads waited for a replica to catch up.
    pub consistency_wait: Histogram,
    /// `rwsplit_write_gtids_total{result}`: commits whose GTID the proxy read from the OK
    /// packet (`tracked`), or whose GTID did not parse (`unparsed`).
    pub write_gtids: IntCounterVec,
    /// `rwsplit_write_quorum_waits_total{result}`: commits whose OK waited for
    /// `routing.write_quorum` replicas, by `reached` or `timeout`.
    pub quorum_waits: IntCounterVec,
    /// `rwsplit_write_quorum_wait_seconds`: how long those OKs were held.
    pub quorum_wait: Histogram,
    /// `rwsplit_replica_position_age_seconds{replica}`: age of the newest applied position the
    /// proxy knows for the replica (read-your-writes); absent while unknown.
    pub replica_position_age: prometheus::GaugeVec,
    /// `rwsplit_query_rule_hits_total{rule}`: statements each query rule matched.
    pub query_rule_hits: IntCounterVec,
    /// `rwsplit_query_rule_overrides_refused_total{rule}`: `route: replica` refused because the
    /// classification keeps the statement on the primary (a write, a lock, a transaction...).
    pub query_rule_refused: IntCounterVec,
    /// `rwsplit_audit_dropped_total`: audit records dropped because the writer's queue was full.
    pub audit_dropped: IntCounter,
    /// `rwsplit_audit_records_total`: audit records written.
    pub audit_written: IntCounter,
    /// `rwsplit_backend_state_syncs_total{backend,kind}`: connections brought to a session's
    /// state when they changed hands (`diff`: one combined statement; `reset`: a reset and a
    /// replay, pipelined) or reset before going back to the pool (`check_in`: they held
    /// pinned state). Hand-overs to a connection already in the session's state count nothing.
    pub state_syncs: IntCounterVec,
    /// `rwsplit_backend_prepares_total{backend}`: statements the proxy prepared on a server.
    pub backend_prepares: IntCounterVec,
    /// `rwsplit_backend_prepare_cache_hits_total{backend}`: executions and prepares that found
    /// the statement already prepared on their connection.
    pub prepare_cache_hits: IntCounterVec,
    /// `rwsplit_switchovers_total{kind,result}`: switchovers (`kind="switchover"`) and
    /// automatic failovers (`kind="failover"`) by result: ok, refused, rolled_back, failed.
    pub switchovers: IntCounterVec,
    /// `rwsplit_switchover_duration_seconds{kind}`: how long a successful one took.
    pub switchover_duration: HistogramVec,
    /// `rwsplit_users_from_primary_accounts`: accounts loaded from the primary and served
    /// (`proxy.users_from_primary`), as of the last successful refresh.
    pub users_from_primary_accounts: IntGauge,
    /// `rwsplit_users_from_primary_skipped{reason}`: accounts of the primary not served, by
    /// reason, as of the last successful refresh.
    pub users_from_primary_skipped: IntGaugeVec,
    /// `rwsplit_users_from_primary_refresh_failures_total`: refreshes that could not read the
    /// accounts (the last good list stayed).
    pub users_from_primary_refresh_failures: IntCounter,
    /// `rwsplit_users_from_primary_last_refresh_timestamp_seconds`: Unix time of the last
    /// successful refresh.
    pub users_from_primary_last_refresh: IntGauge,
}

/// Buckets from 100 µs to 10 s: proxied point selects take well under a millisecond.
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

impl Metrics {
    /// Every metric family the proxy exports (for dashboards, alert rules and the test that
    /// checks them).
    pub const NAMES: &'static [&'static str] = &[
        "rwsplit_client_connections",
        "rwsplit_client_connections_total",
        "rwsplit_client_connections_rejected_total",
        "rwsplit_queries_total",
        "rwsplit_query_duration_seconds",
        "rwsplit_query_errors_total",
        "rwsplit_routing_fallbacks_total",
        "rwsplit_backend_connections",
        "rwsplit_backend_up",
        "rwsplit_backend_connect_errors_total",
        "rwsplit_proxy_replica_lag_seconds",
        "rwsplit_backend_role",
        "rwsplit_circuit_breaker_open",
        "rwsplit_config_reloads_total",
        "rwsplit_split_brain",
        "rwsplit_primary_down",
        "rwsplit_lag_source_fallback",
        "rwsplit_writer_fenced",
        "rwsplit_replica_misconfigured",
        "rwsplit_monitor_check_duration_seconds",
        "rwsplit_session_pins_total",
        "rwsplit_session_state_lost_total",
        "rwsplit_query_timeouts_total",
        "rwsplit_reads_retried_total",
        "rwsplit_pool_queue_length",
        "rwsplit_pool_wait_seconds",
        "rwsplit_consistent_reads_total",
        "rwsplit_consistency_wait_seconds",
        "rwsplit_write_gtids_total",
        "rwsplit_write_quorum_waits_total",
        "rwsplit_write_quorum_wait_seconds",
        "rwsplit_replica_position_age_seconds",
        "rwsplit_query_rule_hits_total",
        "rwsplit_query_rule_overrides_refused_total",
        "rwsplit_audit_dropped_total",
        "rwsplit_audit_records_total",
        "rwsplit_backend_state_syncs_total",
        "rwsplit_backend_prepares_total",
        "rwsplit_backend_prepare_cache_hits_total",
        "rwsplit_switchovers_total",
        "rwsplit_switchover_duration_seconds",
        "rwsplit_users_from_primary_accounts",
        "rwsplit_users_from_primary_skipped",
        "rwsplit_users_from_primary_refresh_failures_total",
        "rwsplit_users_from_primary_last_refresh_timestamp_seconds",
    ];

    /// Builds and registers every metric.
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let reg = Registrar(&registry);
        let metrics = Metrics {
            client_connections: reg.gauge(
                "rwsplit_client_connections",
                "Client sessions open now.",
            ),
            client_connections_total: reg.counter(
                "rwsplit_client_connections_total",
                "Client connections accepted since start.",
            ),
            client_connections_rejected: reg.counter_vec(
                "rwsplit_client_connections_rejected_total",
                "Client connections refused before a session started, by reason.",
                &["reason"],
            ),
            queries: reg.counter_vec(
                "rwsplit_queries_total",
                "Statements routed, by route, backend and routing reason.",
                &["route", "backend", "reason"],
            ),
            query_duration: reg.histogram_vec(
                "rwsplit_query_duration_seconds",
                "Time from a command's arrival to the last byte of its answer, by route.",
                &["route"],
                LATENCY_BUCKETS,
            ),
            query_errors: reg.counter_vec(
                "rwsplit_query_errors_total",
                "Statements that failed, by backend and kind (connect, io, timeout, server).",
                &["backend", "kind"],
            ),
            routing_fallbacks: reg.counter_vec(
                "rwsplit_routing_fallbacks_total",
                "Routing decisions that fell back to a safe default, by reason.",
                &["reason"],
            ),
            backend_connections: reg.gauge_vec(
                "rwsplit_backend_connections",
                "Backend connections, by backend and state: idle in a pool, in_use by a session, or pinned (held for a session's transaction, locks, temporary tables or diagnostics).",
                &["backend", "state"],
            ),
            backend_up: reg.gauge_vec(
                "rwsplit_backend_up",
                "1 when the health monitor's last check of the backend succeeded.",
                &["backend"],
            ),
            backend_connect_errors: reg.counter_vec(
                "rwsplit_backend_connect_errors_total",
                "Failed connection attempts to a backend (monitor and pools).",
                &["backend"],
            ),
            replica_lag_seconds: {
                let g = prometheus::GaugeVec::new(
                    Opts::new(
                        "rwsplit_proxy_replica_lag_seconds",
                        "Replica lag the proxy routes on, from its lag_source; absent while unknown.",
                    ),
                    &["replica"],
                )
                .expect("valid metric definition");
                reg.register(g.clone());
                g
            },
            backend_role: reg.gauge_vec(
                "rwsplit_backend_role",
                "1 for the role the monitor observes for the backend now (primary, replica, unknown).",
                &["backend", "role"],
            ),
            circuit_breaker_open: reg.gauge_vec(
                "rwsplit_circuit_breaker_open",
                "1 while the backend's circuit breaker is open (ejected).",
                &["backend"],
            ),
            config_reloads: reg.counter_vec(
                "rwsplit_config_reloads_total",
                "Configuration reloads (SIGHUP or a changed file), by result (ok, error).",
                &["result"],
            ),
            split_brain: reg.gauge(
                "rwsplit_split_brain",
                "1 while two or more writable servers replicate from no one; writes are refused.",
            ),
            primary_down: reg.gauge(
                "rwsplit_primary_down",
                "1 while the primary is unreachable and no other server is writable; writes are refused, reads continue on replicas.",
            ),
            lag_source_fallback: reg.gauge(
                "rwsplit_lag_source_fallback",
                "1 while every lag sidecar is unavailable and lag comes from the monitor's Seconds_Behind_Master.",
            ),
            writer_fenced: reg.gauge_vec(
                "rwsplit_writer_fenced",
                "1 for a writable server that replicates from no one but came back after another became the writer; never written to.",
                &["backend"],
            ),
            replica_writable: reg.gauge_vec(
                "rwsplit_replica_misconfigured",
                "1 for a server that replicates from another but has read_only=0 (never promoted).",
                &["backend"],
            ),
            monitor_check_duration: reg.histogram_vec(
                "rwsplit_monitor_check_duration_seconds",
                "Duration of one health check of a backend.",
                &["backend"],
                LATENCY_BUCKETS,
            ),
            session_pins: reg.counter_vec(
                "rwsplit_session_pins_total",
                "Times a session began holding a backend connection, by reason.",
                &["reason"],
            ),
            session_state_lost: reg.counter_vec(
                "rwsplit_session_state_lost_total",
                "Sessions whose transaction or other pinned state was lost with its backend connection, by cause.",
                &["cause"],
            ),
            query_timeouts: reg.counter(
                "rwsplit_query_timeouts_total",
                "Statements cancelled on the server after proxy.query_timeout_ms.",
            ),
            reads_retried: reg.counter_vec(
                "rwsplit_reads_retried_total",
                "Reads run again on another server because theirs hung (no health check answer within monitor.timeout_ms) or failed before any byte reached the client, by reason.",
                &["reason"],
            ),
            pool_queue_length: reg.gauge_vec(
                "rwsplit_pool_queue_length",
                "Sessions waiting for a connection to a backend whose pool is full (proxy.pool.max_per_server).",
                &["backend"],
            ),
            pool_wait_seconds: reg.histogram_vec(
                "rwsplit_pool_wait_seconds",
                "Time sessions waited for a connection to a backend whose pool was full (only checkouts that had to wait).",
                &["backend"],
                LATENCY_BUCKETS,
            ),
            consistent_reads: reg.counter_vec(
                "rwsplit_consistent_reads_total",
                "Reads with a consistency requirement, by level and outcome: replica (one had applied what the read needs), waited (one caught up within routing.causal_wait_ms), primary (none did).",
                &["level", "outcome"],
            ),
            consistency_wait: {
                let h = Histogram::with_opts(
                    HistogramOpts::new(
                        "rwsplit_consistency_wait_seconds",
                        "Time reads waited for a replica to apply the position their consistency level requires.",
                    )
                    .buckets(LATENCY_BUCKETS.to_vec()),
                )
                .expect("valid metric definition");
                reg.register(h.clone());
                h
            },
            write_gtids: reg.counter_vec(
                "rwsplit_write_gtids_total",
                "Commits whose GTID the proxy read from the OK packet (tracked) or could not parse (unparsed).",
                &["result"],
            ),
            quorum_waits: reg.counter_vec(
                "rwsplit_write_quorum_waits_total",
                "Commits whose OK waited for routing.write_quorum replicas to apply them, by result (reached, timeout).",
                &["result"],
            ),
            quorum_wait: {
                let h = Histogram::with_opts(
                    HistogramOpts::new(
                        "rwsplit_write_quorum_wait_seconds",
                        "Time commits' OKs were held for routing.write_quorum.",
                    )
                    .buckets(LATENCY_BUCKETS.to_vec()),
                )
                .expect("valid metric definition");
                reg.register(h.clone());
                h
            },
            replica_position_age: {
                let g = prometheus::GaugeVec::new(
                    Opts::new(
                        "rwsplit_replica_position_age_seconds",
                        "Age of the newest applied GTID position the proxy knows for the replica (read-your-writes); absent while unknown.",
                    ),
                    &["replica"],
                )
                .expect("valid metric definition");
                reg.register(g.clone());
                g
            },
            query_rule_hits: reg.counter_vec(
                "rwsplit_query_rule_hits_total",
                "Statements matched by each query rule (query_rules[].name).",
                &["rule"],
            ),
            query_rule_refused: reg.counter_vec(
                "rwsplit_query_rule_overrides_refused_total",
                "Query rules' route: replica refused because the statement must run on the primary.",
                &["rule"],
            ),
            audit_dropped: reg.counter(
                "rwsplit_audit_dropped_total",
                "Audit records dropped because the audit writer's queue was full (proxy.audit.queue).",
            ),
            audit_written: reg.counter(
                "rwsplit_audit_records_total",
                "Audit records written to proxy.audit.path.",
            ),
            state_syncs: reg.counter_vec(
                "rwsplit_backend_state_syncs_total",
                "Backend connections brought to a session's state as they changed hands (kind=diff: one combined statement; reset: reset and replay) or reset before going back to the pool (kind=check_in).",
                &["backend", "kind"],
            ),
            backend_prepares: reg.counter_vec(
                "rwsplit_backend_prepares_total",
                "Statements the proxy prepared on a backend server (COM_STMT_PREPARE sent).",
                &["backend"],
            ),
            prepare_cache_hits: reg.counter_vec(
                "rwsplit_backend_prepare_cache_hits_total",
                "Prepared-statement executions and prepares that found the statement already prepared on their backend connection.",
                &["backend"],
            ),
            switchovers: reg.counter_vec(
                "rwsplit_switchovers_total",
                "Switchovers (kind=switchover) and automatic failovers (kind=failover), by result (ok, refused, rolled_back, failed).",
                &["kind", "result"],
            ),
            switchover_duration: reg.histogram_vec(
                "rwsplit_switchover_duration_seconds",
                "Duration of successful switchovers and failovers, from holding writes to the last replica repointed.",
                &["kind"],
                LATENCY_BUCKETS,
            ),
            users_from_primary_accounts: reg.gauge(
                "rwsplit_users_from_primary_accounts",
                "Accounts loaded from the primary and served (proxy.users_from_primary), as of the last successful refresh.",
            ),
            users_from_primary_skipped: reg.gauge_vec(
                "rwsplit_users_from_primary_skipped",
                "Accounts of the primary not served, by reason (unsupported_plugin, no_password, locked, ...), as of the last successful refresh.",
                &["reason"],
            ),
            users_from_primary_refresh_failures: reg.counter(
                "rwsplit_users_from_primary_refresh_failures_total",
                "Refreshes of proxy.users_from_primary that could not read the primary's accounts (the last good list stayed served).",
            ),
            users_from_primary_last_refresh: reg.gauge(
                "rwsplit_users_from_primary_last_refresh_timestamp_seconds",
                "Unix time of the last successful refresh of the accounts loaded from the primary.",
            ),
            registry,
        };
        metrics.touch_known_series();
        metrics
    }

    /// Creates the label sets known in advance at 0, so dashboards and alert rules see every
    /// family from the first scrape (a counter that appears only on its first event breaks
    /// `rate()` and `absent()` alerts).
    fn touch_known_series(&self) {
        for reason in [reject::MAX_CONNECTIONS, reject::AUTH, reject::HANDSHAKE] {
            self.client_connections_rejected
                .with_label_values(&[reason]);
        }
        for r in [
            route::PRIMARY,
            route::REPLICA,
            route::PREVIOUS,
            route::PROXY,
        ] {
            self.query_duration.with_label_values(&[r]);
        }
        for reason in [
            router::choice::FallbackReason::NoReplicas.as_str(),
            router::choice::FallbackReason::NoHealthyReplica.as_str(),
        ] {
            self.routing_fallbacks.with_label_values(&[reason]);
        }
        for result in ["ok", "error"] {
            self.config_reloads.with_label_values(&[result]);
        }
        for level in ["lag", "read_your_writes", "monotonic", "causal"] {
            for outcome in ["replica", "waited", "primary"] {
                self.consistent_reads.with_label_values(&[level, outcome]);
            }
        }
        for result in ["reached", "timeout"] {
            self.quorum_waits.with_label_values(&[result]);
        }
        for result in ["tracked", "unparsed"] {
            self.write_gtids.with_label_values(&[result]);
        }
        for kind in ["switchover", "failover"] {
            for result in ["ok", "refused", "rolled_back", "failed"] {
                self.switchovers.with_label_values(&[kind, result]);
            }
            self.switchover_duration.with_label_values(&[kind]);
        }
        for (reason, _) in router::Pins::default().reasons() {
            self.session_pins.with_label_values(&[reason]);
        }
        self.session_pins.with_label_values(&[PIN_DIAGNOSTICS]);
        for cause in [lost::CONNECTION, lost::WRITER_CHANGED] {
            self.session_state_lost.with_label_values(&[cause]);
        }
        for reason in [
            retried::SERVER_HUNG,
            retried::CONNECT_FAILED,
            retried::CONNECTION_LOST,
        ] {
            self.reads_retried.with_label_values(&[reason]);
        }
    }

    /// The `rwsplit_queries_total` counter for this (route, backend, reason). This does a label
    /// lookup: on the hot path use [`BackendMetrics::query`], which caches per backend.
    pub fn query_counter(&self, route: &str, backend: &str, reason: &str) -> IntCounter {
        self.queries.with_label_values(&[route, backend, reason])
    }

    /// The latency histogram for a route (resolve once per session or keep in a struct).
    pub fn query_duration_for(&self, route: &str) -> Histogram {
        self.query_duration.with_label_values(&[route])
    }

    /// Counts a routing fallback (rare path: the label lookup is fine here).
    pub fn fallback(&self, reason: &str) {
        self.routing_fallbacks.with_label_values(&[reason]).inc();
    }

    /// Counts a read run again elsewhere (rare path: the label lookup is fine here).
    pub fn read_retried(&self, reason: &str) {
        self.reads_retried.with_label_values(&[reason]).inc();
    }

    /// Counts a connection refused before its session started.
    pub fn rejected(&self, reason: &str) {
        self.client_connections_rejected
            .with_label_values(&[reason])
            .inc();
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let encoder = TextEncoder::new();
        if let Err(e) = encoder.encode(&self.registry.gather(), &mut buf) {
            tracing::warn!(error = %e, "encoding metrics failed");
        }
        String::from_utf8(buf).unwrap_or_default()
    }

    /// Handles for one backend, resolved once (see [`BackendMetrics`]).
    pub fn backend(&self, name: &str) -> BackendMetrics {
        BackendMetrics {
            connections_idle: self.backend_connections.with_label_values(&[name, "idle"]),
            connections_in_use: self
                .backend_connections
                .with_label_values(&[name, "in_use"]),
            connections_pinned: self
                .backend_connections
                .with_label_values(&[name, "pinned"]),
            connect_errors: self.backend_connect_errors.with_label_values(&[name]),
            errors_connect: self.query_errors.with_label_values(&[name, "connect"]),
            errors_io: self.query_errors.with_label_values(&[name, "io"]),
            errors_timeout: self.query_errors.with_label_values(&[name, "timeout"]),
            errors_server: self.query_errors.with_label_values(&[name, "server"]),
            up: self.backend_up.with_label_values(&[name]),
            breaker_open: self.circuit_breaker_open.with_label_values(&[name]),
            check_duration: self.monitor_check_duration.with_label_values(&[name]),
            pool_queue: self.pool_queue_length.with_label_values(&[name]),
            pool_wait: self.pool_wait_seconds.with_label_values(&[name]),
            state_syncs_diff: self.state_syncs.with_label_values(&[name, "diff"]),
            state_syncs_reset: self.state_syncs.with_label_values(&[name, "reset"]),
            state_syncs_check_in: self.state_syncs.with_label_values(&[name, "check_in"]),
            prepares: self.backend_prepares.with_label_values(&[name]),
            prepare_cache_hits: self.prepare_cache_hits.with_label_values(&[name]),
            name: Arc::from(name),
            queries: self.queries.clone(),
            query_cache: Arc::new(RwLock::new(HashMap::new())),
        }
    }

    /// Forgets the label sets of a server removed by a reload, so it stops being exported:
    /// gauges, the error and connect counters, the monitor histogram, and every
    /// `rwsplit_queries_total` series counted through `backend`'s cache.
    pub fn forget_backend(&self, name: &str, backend: Option<&BackendMetrics>) {
        for kind in QUERY_ERROR_KINDS {
            let _ = self.query_errors.remove_label_values(&[name, kind]);
        }
        let _ = self.backend_connect_errors.remove_label_values(&[name]);
        let _ = self.monitor_check_duration.remove_label_values(&[name]);
        let _ = self.pool_queue_length.remove_label_values(&[name]);
        let _ = self.pool_wait_seconds.remove_label_values(&[name]);
        for kind in ["diff", "reset", "check_in"] {
            let _ = self.state_syncs.remove_label_values(&[name, kind]);
        }
        let _ = self.backend_prepares.remove_label_values(&[name]);
        let _ = self.prepare_cache_hits.remove_label_values(&[name]);
        if let Some(cache) = backend.and_then(|b| b.query_cache.read().ok()) {
            for (route, reason) in cache.keys() {
                let _ = self.queries.remove_label_values(&[route, name, reason]);
            }
        }
        for state in ["idle", "in_use", "pinned"] {
            let _ = self.backend_connections.remove_label_values(&[name, state]);
        }
        let _ = self.backend_up.remove_label_values(&[name]);
        let _ = self.circuit_breaker_open.remove_label_values(&[name]);
        let _ = self.replica_lag_seconds.remove_label_values(&[name]);
        let _ = self.replica_writable.remove_label_values(&[name]);
        let _ = self.writer_fenced.remove_label_values(&[name]);
        for role in ["primary", "replica", "unknown"] {
            let _ = self.backend_role.remove_label_values(&[name, role]);
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// `reason` of `rwsplit_session_pins_total` for a connection kept because its previous
/// statement left warnings, an error or a `FOUND_ROWS()` count.
pub const PIN_DIAGNOSTICS: &str = "diagnostics";

/// `kind` values of `rwsplit_query_errors_total` created per backend.
const QUERY_ERROR_KINDS: [&str; 4] = ["connect", "io", "timeout", "server"];

/// Pre-resolved per-backend handles: the pools and sessions update these without label lookups.
#[derive(Clone)]
pub struct BackendMetrics {
    /// `rwsplit_backend_connections{state="idle"}`.
    pub connections_idle: IntGauge,
    /// `rwsplit_backend_connections{state="in_use"}`.
    pub connections_in_use: IntGauge,
    /// `rwsplit_backend_connections{state="pinned"}`: held by a session for its state.
    pub connections_pinned: IntGauge,
    /// `rwsplit_backend_connect_errors_total`.
    pub connect_errors: IntCounter,
    /// `rwsplit_query_errors_total{kind="connect"}`.
    pub errors_connect: IntCounter,
    /// `rwsplit_query_errors_total{kind="io"}`.
    pub errors_io: IntCounter,
    /// `rwsplit_query_errors_total{kind="timeout"}`.
    pub errors_timeout: IntCounter,
    /// `rwsplit_query_errors_total{kind="server"}`.
    pub errors_server: IntCounter,
    /// `rwsplit_backend_up`.
    pub up: IntGauge,
    /// `rwsplit_circuit_breaker_open`.
    pub breaker_open: IntGauge,
    /// `rwsplit_monitor_check_duration_seconds`.
    pub check_duration: Histogram,
    /// `rwsplit_pool_queue_length`.
    pub pool_queue: IntGauge,
    /// `rwsplit_pool_wait_seconds`.
    pub pool_wait: Histogram,
    /// `rwsplit_backend_state_syncs_total{kind="diff"}`.
    pub state_syncs_diff: IntCounter,
    /// `rwsplit_backend_state_syncs_total{kind="reset"}`.
    pub state_syncs_reset: IntCounter,
    /// `rwsplit_backend_state_syncs_total{kind="check_in"}`.
    pub state_syncs_check_in: IntCounter,
    /// `rwsplit_backend_prepares_total`.
    pub prepares: IntCounter,
    /// `rwsplit_backend_prepare_cache_hits_total`.
    pub prepare_cache_hits: IntCounter,
    name: Arc<str>,
    queries: IntCounterVec,
    /// (route, reason) → resolved `rwsplit_queries_total` series for this backend.
    query_cache: Arc<RwLock<HashMap<(&'static str, &'static str), IntCounter>>>,
}

impl BackendMetrics {
    /// Counts one statement routed to this backend.
    pub fn query(&self, route: &'static str, reason: &'static str) {
        self.query_counter(route, reason).inc();
    }

    /// The `rwsplit_queries_total` series of this backend for (`route`, `reason`): a
    /// read-locked lookup of two static strings after the first time. Sessions keep what it
    /// returns (`session/counters.rs`), so a statement is counted without a lock or a lookup.
    pub fn query_counter(&self, route: &'static str, reason: &'static str) -> IntCounter {
        if let Ok(cache) = self.query_cache.read() {
            if let Some(c) = cache.get(&(route, reason)) {
                return c.clone();
            }
        }
        let c = self.queries.with_label_values(&[route, &self.name, reason]);
        if let Ok(mut cache) = self.query_cache.write() {
            cache.insert((route, reason), c.clone());
        }
        c
    }
}

/// Registers metrics; a definition error is a programming error caught by the unit tests.
struct Registrar<'a>(&'a Registry);

impl Registrar<'_> {
    fn register<C: prometheus::core::Collector + 'static>(&self, c: C) {
        if let Err(e) = self.0.register(Box::new(c)) {
            tracing::error!(error = %e, "registering a metric failed");
        }
    }
    fn gauge(&self, name: &str, help: &str) -> IntGauge {
        let g = IntGauge::new(name, help).expect("valid metric definition");
        self.register(g.clone());
        g
    }
    fn counter(&self, name: &str, help: &str) -> IntCounter {
        let c = IntCounter::new(name, help).expect("valid metric definition");
        self.register(c.clone());
        c
    }
    fn counter_vec(&self, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
        let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric definition");
        self.register(c.clone());
        c
    }
    fn gauge_vec(&self, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
        let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric definition");
        self.register(g.clone());
        g
    }
    fn histogram_vec(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
        buckets: &[f64],
    ) -> HistogramVec {
        let h = HistogramVec::new(
            HistogramOpts::new(name, help).buckets(buckets.to_vec()),
            labels,
        )
        .expect("valid metric definition");
        self.register(h.clone());
        h
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn every_listed_name_is_exported_once_touched() {
        let m = Metrics::new();
        // Vec families appear in the text only once a label set exists.
        m.client_connections_rejected.with_label_values(&["x"]);
        m.backend("r1").query(route::REPLICA, "plain_select");
        m.query_duration_for(route::REPLICA).observe(0.001);
        let _ = m.backend("r1");
        m.fallback("no_replica");
        m.replica_lag_seconds.with_label_values(&["r1"]).set(0.5);
        m.backend_role.with_label_values(&["r1", "replica"]).set(1);
        m.config_reloads.with_label_values(&["ok"]).inc();
        m.replica_writable.with_label_values(&["r1"]).set(0);
        m.writer_fenced.with_label_values(&["r1"]).set(0);
        m.monitor_check_duration
            .with_label_values(&["r1"])
            .observe(0.01);
        m.consistent_reads
            .with_label_values(&["read_your_writes", "replica"])
            .inc();
        m.write_gtids.with_label_values(&["tracked"]).inc();
        m.quorum_waits.with_label_values(&["reached"]).inc();
        m.replica_position_age.with_label_values(&["r1"]).set(0.01);
        m.query_rule_hits.with_label_values(&["r"]).inc();
        m.query_rule_refused.with_label_values(&["r"]).inc();
        m.users_from_primary_skipped
            .with_label_values(&["unsupported_plugin"])
            .set(1);
        let text = m.render();
        for name in Metrics::NAMES {
            assert!(
                text.contains(&format!("# TYPE {name} ")),
                "{name} missing:\n{text}"
            );
        }
        let families = m.registry.gather().len();
        assert_eq!(families, Metrics::NAMES.len(), "NAMES out of date");
    }

    #[test]
    fn cached_query_counter_is_the_same_series() {
        let m = Metrics::new();
        let b = m.backend("p");
        b.query(route::PRIMARY, "write");
        b.clone().query(route::PRIMARY, "write");
        let v = m
            .queries
            .with_label_values(&["primary", "p", "write"])
            .get();
        assert_eq!(v, 2);
    }

    #[test]
    fn forgotten_backend_disappears() {
        let m = Metrics::new();
        let b = m.backend("gone");
        b.up.set(1);
        b.query(route::REPLICA, "read");
        m.backend_role
            .with_label_values(&["gone", "replica"])
            .set(1);
        m.forget_backend("gone", Some(&b));
        assert!(!m.render().contains("\"gone\""), "{}", m.render());
    }
}
