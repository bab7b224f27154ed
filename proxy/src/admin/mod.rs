//! The operator's HTTP endpoint on `proxy.http_listen`: `/healthz` (can the proxy serve
//! writes?), `/metrics` (Prometheus text) and `/servers` (what the proxy knows about each
//! server, as JSON).

pub mod servers;

use crate::context::Context;
// The sidecar's small HTTP server serves the admin endpoint too: one implementation to fix.
use binlog_reader::http::{self, Reply};
use std::sync::Arc;
use tokio::net::TcpListener;

/// Serves the admin endpoint until the task is dropped or aborted.
pub async fn serve(listener: TcpListener, ctx: Arc<Context>) {
    http::serve(
        listener,
        Arc::new(move |method, path| route(&ctx, method, path)),
    )
    .await
}

fn route(ctx: &Context, method: &str, path: &str) -> Reply {
    if method != "GET" && method != "HEAD" {
        return Reply::text(405, "only GET is supported\n");
    }
    match path {
        "/healthz" => healthz(ctx),
        "/metrics" => Reply::ok("text/plain; version=0.0.4; charset=utf-8", metrics(ctx)),
        "/servers" => Reply::ok("application/json", servers::json(ctx).to_string() + "\n"),
        "/" => Reply::text(200, "rwsplit-proxy: /healthz /metrics /servers\n"),
        _ => Reply::text(404, "not found: try /healthz, /metrics or /servers\n"),
    }
}

/// The proxy's metrics, followed with `lag_source: embedded` by the embedded binlog reader's
/// (`rwsplit_binlog_*`, `rwsplit_replica_*`: the same families the sidecar exports), so the
/// dashboard and the lag alerts work in every mode. The two sets share no family name.
pub fn metrics(ctx: &Context) -> String {
    let mut text = ctx.metrics.render();
    if let Some(reader) = ctx.lag_reader() {
        text.push_str(&reader.metrics_text());
    }
    text
}

/// 200 when the proxy can serve writes now; 503 with the reason otherwise (shutting down,
/// split brain, no writable primary, primary unreachable or ejected).
pub fn healthz(ctx: &Context) -> Reply {
    match write_readiness(ctx) {
        Ok(primary) => Reply::text(200, format!("ok: writes go to {primary}\n")),
        Err(reason) => Reply::text(503, format!("unavailable: {reason}\n")),
    }
}

/// The primary's name, or why writes cannot be served.
pub fn write_readiness(ctx: &Context) -> Result<String, String> {
    if ctx.is_shutting_down() {
        return Err("shutting down".into());
    }
    let topology = ctx.topology();
    let backend = ctx.primary()?;
    let health = topology.servers.get(backend.index);
    if health.and_then(|h| h.checked_at).is_none() {
        return Err(format!("primary {} not checked yet", backend.name()));
    }
    if !health.is_some_and(|h| h.reachable) {
        let why = health
            .and_then(|h| h.last_error.clone())
            .unwrap_or_default();
        return Err(format!("primary {} is unreachable: {why}", backend.name()));
    }
    if !backend.breaker_allows() {
        return Err(format!(
            "primary {} is ejected by its circuit breaker",
            backend.name()
        ));
    }
    Ok(backend.name().to_string())
}
