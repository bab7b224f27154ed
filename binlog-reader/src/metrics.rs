//! Prometheus metrics of the reader. Counters are bumped where things happen, through handles
//! resolved once per label value; gauges that describe the current lag are filled in from a
//! fresh snapshot at scrape time, so they can never disagree with `/lag`.
//!
//! An unknown lag is exported as an ABSENT `rwsplit_replica_lag_seconds` series (never 0, never
//! NaN) together with `rwsplit_replica_lag_known{replica} 0`: alert on `lag_known == 0`, graph
//! `lag_seconds`, and aggregations over known lags stay meaningful.
//!
//! Names (a user interface: keep them stable):
//! - per replica: `rwsplit_replica_lag_seconds`, `rwsplit_replica_lag_known`,
//!   `rwsplit_replica_io_lag_seconds`, `rwsplit_replica_applied_gtid_seq{replica,domain}`,
//!   `rwsplit_replica_seconds_behind_master`, `rwsplit_replica_up`,
//!   `rwsplit_replica_polls_total`, `rwsplit_replica_poll_errors_total`;
//! - the stream: `rwsplit_binlog_events_total{type}`, `rwsplit_binlog_bytes_total{type}`,
//!   `rwsplit_binlog_transactions_total`, `rwsplit_binlog_stream_reconnects_total`,
//!   `rwsplit_binlog_checksum_errors_total`, `rwsplit_binlog_stream_connected`,
//!   `rwsplit_binlog_last_event_age_seconds`, `rwsplit_binlog_position`,
//!   `rwsplit_binlog_file_index`, `rwsplit_binlog_gtid_seq{domain}`;
//! - the timeline: `rwsplit_binlog_timeline_entries`, `rwsplit_binlog_timeline_capacity`,
//!   `rwsplit_binlog_timeline_dropped_total`, `rwsplit_binlog_timeline_duplicates_total`.

use crate::snapshot::LagSnapshot;
use prometheus::{
    Encoder, Gauge, GaugeVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};
use std::sync::Mutex;

/// The timeline's size and totals, for [`Metrics::render`].
#[derive(Debug, Clone, Copy)]
pub struct TimelineStats {
    pub entries: usize,
    pub capacity: usize,
    pub dropped: u64,
    pub duplicates: u64,
}

/// Every metric the reader exports.
pub struct Metrics {
    registry: Registry,
    events: IntCounterVec,
    bytes: IntCounterVec,
    /// Pre-resolved (events, bytes) handles per raw event type.
    by_type: Mutex<Vec<Option<(IntCounter, IntCounter)>>>,
    pub transactions: IntCounter,
    pub reconnects: IntCounter,
    pub checksum_errors: IntCounter,
    pub poll_errors: IntCounterVec,
    pub polls: IntCounterVec,
    timeline_entries: IntGauge,
    timeline_capacity: IntGauge,
    timeline_dropped: IntCounter,
    timeline_duplicates: IntCounter,
    lag: GaugeVec,
    lag_known: GaugeVec,
    io_lag: GaugeVec,
    applied_seq: GaugeVec,
    sbm: GaugeVec,
    replica_up: GaugeVec,
    binlog_position: IntGauge,
    binlog_file_index: IntGauge,
    binlog_gtid_seq: GaugeVec,
    connected: IntGauge,
    last_event_age: Gauge,
}

fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("static metric definition");
    r.register(Box::new(c.clone()))
        .expect("metric registered once");
    c
}

fn gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> GaugeVec {
    let g = GaugeVec::new(Opts::new(name, help), labels).expect("static metric definition");
    r.register(Box::new(g.clone()))
        .expect("metric registered once");
    g
}

fn counter(r: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).expect("static metric definition");
    r.register(Box::new(c.clone()))
        .expect("metric registered once");
    c
}

fn int_gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).expect("static metric definition");
    r.register(Box::new(g.clone()))
        .expect("metric registered once");
    g
}

impl Metrics {
    /// Builds the metrics in their own registry (so an embedding proxy can expose or merge them).
    pub fn new() -> Self {
        let r = Registry::new();
        let last_event_age = Gauge::new(
            "rwsplit_binlog_last_event_age_seconds",
            "Seconds since the last binlog event or heartbeat arrived from the primary",
        )
        .expect("static metric definition");
        r.register(Box::new(last_event_age.clone()))
            .expect("metric registered once");
        Self {
            events: counter_vec(&r, "rwsplit_binlog_events_total", "Binlog events read, by event type", &["type"]),
            bytes: counter_vec(&r, "rwsplit_binlog_bytes_total", "Binlog bytes read, by event type", &["type"]),
            by_type: Mutex::new(vec![None; 256]),
            transactions: counter(&r, "rwsplit_binlog_transactions_total", "Committed transactions added to the timeline"),
            reconnects: counter(&r, "rwsplit_binlog_stream_reconnects_total", "Times the binlog stream was lost and re-opened"),
            checksum_errors: counter(&r, "rwsplit_binlog_checksum_errors_total", "Events whose CRC32 did not match (the stream is re-opened)"),
            polls: counter_vec(&r, "rwsplit_replica_polls_total", "Queries for a replica's applied position (the reader's cost on the replica)", &["replica"]),
            poll_errors: counter_vec(&r, "rwsplit_replica_poll_errors_total", "Failed polls of a replica's applied position", &["replica"]),
            timeline_entries: int_gauge(&r, "rwsplit_binlog_timeline_entries", "Transactions held in the commit timeline"),
            timeline_capacity: int_gauge(&r, "rwsplit_binlog_timeline_capacity", "sidecar.timeline_capacity: transactions the timeline holds before dropping the oldest"),
            timeline_dropped: counter(&r, "rwsplit_binlog_timeline_dropped_total", "Timeline entries dropped because timeline_capacity was reached"),
            timeline_duplicates: counter(&r, "rwsplit_binlog_timeline_duplicates_total", "Transactions seen twice (after a reconnect) and not recorded again"),
            lag: gauge_vec(&r, "rwsplit_replica_lag_seconds", "Now minus the commit time of the oldest transaction the replica has not applied; absent when unknown", &["replica"]),
            lag_known: gauge_vec(&r, "rwsplit_replica_lag_known", "1 when the replica's lag is known, 0 when the replica or the binlog stream cannot be read", &["replica"]),
            io_lag: gauge_vec(&r, "rwsplit_replica_io_lag_seconds", "Like lag_seconds for what the replica's IO thread has received; absent when unknown", &["replica"]),
            applied_seq: gauge_vec(&r, "rwsplit_replica_applied_gtid_seq", "Highest contiguously applied GTID sequence number, per replication domain/source", &["replica", "domain"]),
            sbm: gauge_vec(&r, "rwsplit_replica_seconds_behind_master", "Seconds_Behind_Master as the replica reports it, for comparison; absent when NULL", &["replica"]),
            replica_up: gauge_vec(&r, "rwsplit_replica_up", "1 when the last poll of the replica succeeded", &["replica"]),
            binlog_position: int_gauge(&r, "rwsplit_binlog_position", "Byte offset in the primary's current binlog file the reader has reached"),
            binlog_file_index: int_gauge(&r, "rwsplit_binlog_file_index", "Numeric suffix of the primary's binlog file the reader is in"),
            binlog_gtid_seq: gauge_vec(&r, "rwsplit_binlog_gtid_seq", "Last GTID sequence number read from the primary, per domain/source", &["domain"]),
            connected: int_gauge(&r, "rwsplit_binlog_stream_connected", "1 while the binlog stream is open and caught up"),
            last_event_age,
            registry: r,
        }
    }

    /// Counts one event of raw type `raw` and `size` bytes (handles resolved once per type).
    pub fn event(&self, raw: u8, size: u64) {
        let mut by_type = match self.by_type.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let slot = &mut by_type[raw as usize];
        let (e, b) = slot.get_or_insert_with(|| {
            let name = crate::decode::type_name(raw);
            (
                self.events.with_label_values(&[name]),
                self.bytes.with_label_values(&[name]),
            )
        });
        e.inc();
        b.inc_by(size);
    }

    /// Renders the text exposition format, refreshing the gauges from `snap` first.
    pub fn render(&self, snap: &LagSnapshot, timeline: TimelineStats) -> String {
        let TimelineStats {
            entries,
            capacity,
            dropped,
            duplicates,
        } = timeline;
        self.timeline_entries.set(entries as i64);
        self.timeline_capacity.set(capacity as i64);
        // Counters mirror the timeline's own totals, which only grow.
        self.timeline_dropped
            .inc_by(dropped.saturating_sub(self.timeline_dropped.get()));
        self.timeline_duplicates
            .inc_by(duplicates.saturating_sub(self.timeline_duplicates.get()));
        self.connected
            .set(i64::from(snap.primary.connected && snap.primary.caught_up));
        self.binlog_position.set(snap.primary.position as i64);
        self.binlog_file_index.set(
            snap.primary
                .file
                .rsplit('.')
                .next()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0),
        );
        match snap.primary.last_event_age_ms {
            Some(ms) => self.last_event_age.set(ms as f64 / 1000.0),
            None => self.last_event_age.set(f64::NAN),
        }
        self.binlog_gtid_seq.reset();
        for (domain, seq) in &snap.primary.gtid_seq {
            self.binlog_gtid_seq
                .with_label_values(&[domain])
                .set(*seq as f64);
        }
        self.lag.reset();
        self.io_lag.reset();
        self.sbm.reset();
        self.applied_seq.reset();
        for (name, r) in &snap.replicas {
            // Make the poll error counter visible at 0 before the first error.
            self.poll_errors.with_label_values(&[name]);
            self.lag_known
                .with_label_values(&[name])
                .set(if r.known { 1.0 } else { 0.0 });
            self.replica_up
                .with_label_values(&[name])
                .set(if r.reachable { 1.0 } else { 0.0 });
            if let Some(ms) = r.lag_ms {
                self.lag.with_label_values(&[name]).set(ms as f64 / 1000.0);
            }
            if let Some(ms) = r.io_lag_ms {
                self.io_lag
                    .with_label_values(&[name])
                    .set(ms as f64 / 1000.0);
            }
            if let Some(s) = r.seconds_behind_master {
                self.sbm.with_label_values(&[name]).set(s as f64);
            }
            for (domain, seq) in &r.applied_seq {
                self.applied_seq
                    .with_label_values(&[name, domain])
                    .set(*seq as f64);
            }
        }
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::warn!(error = %e, "metrics encoding failed");
        }
        String::from_utf8(out).unwrap_or_default()
    }

    /// The registry, for an embedding process that wants to gather these metrics itself.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
