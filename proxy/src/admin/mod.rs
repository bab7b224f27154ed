//! The operator's HTTP endpoint on `proxy.http_listen`. Read endpoints, open to anyone who
//! can reach the port: `/healthz` (can the proxy serve writes?), `/metrics` (Prometheus text)
//! and `/servers` (what the proxy knows about each server, as JSON). Endpoints that change the
//! running proxy live under `/admin/...`, JSON in and out, behind [`auth`].

pub mod auth;
pub mod servers;
pub mod servers_admin;
pub mod sessions;
pub mod switchover;
pub mod top;

use crate::consistency::Positions;
use crate::context::Context;
// The sidecar's small HTTP server serves the admin endpoint too: one implementation to fix.
use binlog_reader::http::{self, Reply, ReplyFuture, Request};
use std::sync::Arc;
use tokio::net::TcpListener;

/// Serves the admin endpoint until the task is dropped or aborted.
/// `positions` are the replica positions the sessions route on (shown in `/servers`).
pub async fn serve(listener: TcpListener, ctx: Arc<Context>, positions: Arc<Positions>) {
    if let Some(proxy) = &ctx.config().proxy {
        auth::announce(&proxy.admin);
    }
    http::serve(
        listener,
        Arc::new(move |req: Request| route(ctx.clone(), &positions, req)),
    )
    .await
}

/// Every endpoint: the read ones answer at once; `/admin/...` is authenticated first.
pub fn route(ctx: Arc<Context>, positions: &Positions, req: Request) -> ReplyFuture {
    if req.path.starts_with("/admin/") {
        let admin = ctx
            .config()
            .proxy
            .as_ref()
            .map(|p| p.admin.clone())
            .unwrap_or_default();
        if let Err(refused) = auth::check(&admin, &req) {
            tracing::warn!(peer = %req.peer, path = %req.path, status = refused.status, "admin request refused");
            return ready(refused);
        }
        return admin_route(ctx, positions, req);
    }
    ready(read_route(&ctx, positions, &req))
}

fn ready(reply: Reply) -> ReplyFuture {
    Box::pin(async move { reply })
}

fn read_route(ctx: &Context, positions: &Positions, req: &Request) -> Reply {
    if !req.is_read() {
        return Reply::text(
            405,
            "only GET is supported here; changes go through /admin/...\n",
        );
    }
    match req.path.as_str() {
        "/healthz" => healthz(ctx),
        "/metrics" => Reply::ok("text/plain; version=0.0.4; charset=utf-8", metrics(ctx)),
        "/servers" => Reply::ok(
            "application/json",
            servers::json(ctx, positions).to_string() + "\n",
        ),
        "/" => Reply::text(
            200,
            "rwsplit-proxy: /healthz /metrics /servers /admin/...\n",
        ),
        _ => Reply::text(404, "not found: try /healthz, /metrics or /servers\n"),
    }
}

/// The authenticated endpoints. Each logs what it changed, with the caller's address.
fn admin_route(ctx: Arc<Context>, positions: &Positions, req: Request) -> ReplyFuture {
    match (req.method.as_str(), req.path.as_str()) {
        ("POST", "/admin/reload") => ready(reload(&ctx, &req)),
        (_, "/admin/reload") => ready(Reply::text(405, "use POST\n")),
        (_, "/admin/switchover") => switchover::route(ctx, req),
        (_, p) if p.starts_with("/admin/servers/") => {
            ready(servers_admin::route(&ctx, positions, &req))
        }
        (_, p) if p.starts_with("/admin/sessions") => sessions::route(ctx, req),
        (_, p) if p.starts_with("/admin/top") => ready(top::route(&ctx, &req)),
        _ => ready(Reply::text(404, "no such admin endpoint\n")),
    }
}

/// `POST /admin/reload`: what SIGHUP does (re-read the config file), answering whether the
/// new file was taken.
fn reload(ctx: &Context, req: &Request) -> Reply {
    match ctx.reload() {
        Ok(()) => {
            tracing::info!(peer = %req.peer, "config reloaded through /admin/reload");
            Reply::json(200, &serde_json::json!({ "reloaded": true }))
        }
        Err(e) => {
            tracing::warn!(peer = %req.peer, error = %e, "config reload through /admin/reload rejected");
            Reply::json(
                422,
                &serde_json::json!({ "reloaded": false, "error": e.to_string() }),
            )
        }
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
