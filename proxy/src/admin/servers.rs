//! `/servers`: one JSON object per configured server, in config order.
//!
//! ```json
//! {"primary": "primary", "write_block": null, "split_brain": false, "topology_generation": 42,
//!  "servers": [{"name": "replica1", "host": "127.0.0.1", "port": 3341,
//!   "configured_role": "replica", "role": "replica", "location": "zone-a",
//!   "state": "up", "in_rotation": true, "reachable": true, "read_only": true,
//!   "replicating": true, "replication_running": true, "lag_ms": 12, "in_flight": 0,
//!   "connections": 3, "breaker": "closed", "maintenance": false, "weight": 1,
//!   "last_error": null, "checked_ms_ago": 120, "overrides": {"maintenance": {"value": true,
//!   "file": false}}, "held_by_sessions": 0, "applied_position": "0=1042",
//!   "applied_position_age_ms": 4}]}
//! ```
//!
//! `maintenance`, `weight` and `max_lag_ms` are the values in force: the file's, or a runtime
//! override from `POST /admin/servers/NAME`, listed with the file's value in `overrides`.
//! `held_by_sessions` counts the sessions that hold a connection to the server for their state
//! (transaction, locks, temporary tables, cursor...): a drained server is free of work once it
//! is 0 and `in_flight` is 0.
//!
//! `state` is the first that applies of `maintenance`, `down` (the monitor cannot reach it),
//! `ejected` (circuit breaker open), `replication_stopped` (a replica whose IO or SQL thread is
//! not running), `lagging` (lag unknown or over the limit: out of the read rotation), `up`.
//! `lag_ms` is `null` when unknown (never 0 for unknown). `in_rotation` says a replica may
//! take reads now: `up`, and in this proxy's location or one of `routing.location_fallback`.
//!
//! `applied_position` is a replica's applied GTID position as read-your-writes sees it (per
//! replication stream, `domain=seq` on MariaDB, `uuid=seq` on MySQL) and
//! `applied_position_age_ms` how long ago the poll that read it was sent (the replica had
//! applied at least that much then): both `null` for the primary and while no position is
//! known (lag source `seconds_behind_master`, replica unreachable). A large age means reads
//! that must see recent writes go to the primary (`rwsplit_replica_position_age_seconds`
//! graphs it).

use crate::consistency::Positions;
use crate::context::{Context, ObservedRole};
use serde_json::json;
/// The JSON value type of `/servers` (re-exported for tools and tests).
pub use serde_json::Value;

/// The `/servers` document; `positions` are the replica positions sessions route on.
pub fn json(ctx: &Context, positions: &Positions) -> Value {
    let config = ctx.config();
    let topology = ctx.topology();
    let backends = ctx.backends();
    let sessions = crate::session::registry::Registry::of(ctx).all();
    let servers: Vec<Value> = config
        .servers
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let health = topology.servers.get(i).cloned().unwrap_or_default();
            let state = topology.router.servers.get(i);
            let backend = backends.get(i);
            let is_primary = topology.primary() == Some(i);
            let breaker = backend.map(|b| b.breaker_state()).unwrap_or("closed");
            let lag_ok = state.is_some_and(|st| st.lag_gate.serving());
            let status = if s.maintenance {
                "maintenance"
            } else if !health.reachable {
                "down"
            } else if breaker == "open" {
                "ejected"
            } else if is_primary {
                "up"
            } else if !health.threads_running {
                "replication_stopped"
            } else if !lag_ok || health.lag_ms.is_none() {
                "lagging"
            } else {
                "up"
            };
            let applied = positions.replica(&s.name).filter(|_| !is_primary);
            let role = if is_primary {
                "primary"
            } else {
                match health.role {
                    ObservedRole::Unknown => "unknown",
                    _ => "replica",
                }
            };
            json!({
                "name": s.name,
                "host": s.host,
                "port": s.port,
                "configured_role": match s.role {
                    router::config::Role::Primary => "primary",
                    router::config::Role::Replica => "replica",
                },
                "role": role,
                "location": s.location,
                "state": status,
                "in_rotation": !is_primary
                    && status == "up"
                    && state.is_some_and(|st| st.location_rank != router::choice::LOCATION_UNUSED),
                "reachable": health.reachable,
                "read_only": health.read_only,
                "replicating": health.replicating,
                "replication_running": health.threads_running,
                "lag_ms": if is_primary { Some(0) } else { health.lag_ms },
                "in_flight": backend.map(|b| b.in_flight()).unwrap_or(0),
                "connections": backend.map(|b| b.connections()).unwrap_or(0),
                "breaker": breaker,
                "maintenance": s.maintenance,
                "weight": s.weight,
                "max_lag_ms": s.max_lag_ms.unwrap_or(config.routing.max_lag_ms),
                "last_error": health.last_error,
                "checked_ms_ago": health.checked_at.map(|t| t.elapsed().as_millis() as u64),
                "overrides": overrides_json(&ctx.server_overrides(&s.name)),
                "held_by_sessions": sessions
                    .iter()
                    .filter(|e| e.activity().held.iter().any(|h| h.backend.name() == s.name && h.needed()))
                    .count(),
                "applied_position": applied.as_ref().map(|a| a.position.to_string()),
                "applied_position_age_ms": applied
                    .as_ref()
                    .map(|a| u64::try_from(a.asked.elapsed().as_millis()).unwrap_or(u64::MAX)),
            })
        })
        .collect();
    let primary = topology
        .primary()
        .and_then(|i| config.servers.get(i))
        .map(|s| s.name.clone());
    json!({
        "primary": primary,
        "write_block": topology.write_block,
        "split_brain": topology.split_brain,
        "primary_down_ms": topology.primary_down.map(|d| d.since.elapsed().as_millis() as u64),
        "fenced": topology
            .fenced
            .iter()
            .filter_map(|&i| config.servers.get(i).map(|s| s.name.clone()))
            .collect::<Vec<_>>(),
        "topology_generation": topology.generation,
        "servers": servers,
    })
}

/// A server's runtime overrides: `{"key": {"value": v, "file": f}}`.
pub fn overrides_json(o: &crate::context::overrides::ServerOverride) -> Value {
    let mut m = serde_json::Map::new();
    if let Some(p) = o.maintenance {
        m.insert(
            "maintenance".into(),
            json!({"value": p.value, "file": p.file}),
        );
    }
    if let Some(p) = o.weight {
        m.insert("weight".into(), json!({"value": p.value, "file": p.file}));
    }
    if let Some(p) = o.max_lag_ms {
        m.insert(
            "max_lag_ms".into(),
            json!({"value": p.value, "file": p.file}),
        );
    }
    Value::Object(m)
}

/// Parses a `/servers` answer, for tools and tests that talk to a running proxy.
pub fn parse(body: &str) -> Result<Value, String> {
    serde_json::from_str(body).map_err(|e| format!("invalid /servers JSON: {e}"))
}
