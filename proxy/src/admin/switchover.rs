//! `POST /admin/switchover {"to": "replica1"}`: moves the writer to a caught-up replica (see
//! `failover::switchover`) and answers with the steps and their durations.

use crate::context::Context;
use crate::failover::{self, Error};
use binlog_reader::http::{Reply, ReplyFuture, Request};
use serde_json::json;
use std::sync::Arc;

/// The endpoint.
pub fn route(ctx: Arc<Context>, req: Request) -> ReplyFuture {
    Box::pin(async move { handle(ctx, req).await })
}

async fn handle(ctx: Arc<Context>, req: Request) -> Reply {
    if req.method != "POST" {
        return Reply::text(405, "use POST with {\"to\": \"<server>\"}\n");
    }
    let to = serde_json::from_slice::<serde_json::Value>(&req.body)
        .ok()
        .and_then(|v| v.get("to").and_then(|t| t.as_str()).map(str::to_string));
    let Some(to) = to else {
        return Reply::json(
            400,
            &json!({"switched": false, "error": "expected a JSON body {\"to\": \"<server name>\"}"}),
        );
    };
    tracing::info!(peer = %req.peer, to = %to, "switchover requested through /admin/switchover");
    // On its own task: a client that hangs up must not cancel a switchover half-way (writes
    // held, the old primary read-only).
    let task = tokio::spawn(async move { failover::switchover::run(&ctx, &to).await });
    let result = match task.await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "switchover task ended abnormally");
            return Reply::json(500, &json!({"switched": false, "error": e.to_string()}));
        }
    };
    match result {
        Ok(report) => Reply::json(
            200,
            &json!({
                "switched": true,
                "from": report.from,
                "to": report.to,
                "total_ms": report.total_ms,
                "writes_held_ms": report.writes_held_ms,
                "steps": report.steps,
            }),
        ),
        Err(Error::Refused { reason, message }) => Reply::json(
            409,
            &json!({"switched": false, "refused": reason, "error": message}),
        ),
        Err(Error::Failed {
            step,
            message,
            rolled_back,
            steps,
        }) => Reply::json(
            500,
            &json!({
                "switched": false,
                "failed_step": step,
                "error": message,
                "rolled_back": rolled_back,
                "steps": steps,
            }),
        ),
    }
}
