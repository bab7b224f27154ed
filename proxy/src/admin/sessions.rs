//! `GET /admin/sessions` (who is connected and what each runs) and
//! `POST /admin/sessions/ID/kill` (`KILL` semantics: `{"query_only": true}` cancels the running
//! statement, otherwise the session is closed and its statement cancelled).
//!
//! ```json
//! {"sessions": [{"id": 12, "user": "app", "client": "10.0.0.7", "schema": "shop",
//!   "state": "query", "statement": "SELECT SLEEP(5)", "digest": "SELECT SLEEP(?)",
//!   "statement_ms": 1520, "running_on": {"server": "replica1", "thread": 845},
//!   "in_transaction": false, "held": [{"server": "replica1", "thread": 845, "why": []}],
//!   "age_s": 73, "idle_ms": null, "statements": 40}]}
//! ```
//!
//! `state` is `query` while a statement runs, `idle in transaction` between statements of an
//! open transaction, `idle` otherwise. `held` lists the backend connections the session holds
//! as of its last statement, each with why it keeps it (`transaction`, `autocommit_off`,
//! `temp_tables`, `lock_tables`, `named_locks`, `user_variables`, `prepared_text`,
//! `next_transaction`, `cursor`, `diagnostics`); an empty `why` is an idle connection kept for
//! `proxy.pool.release_delay_ms`.

use super::Reply;
use crate::backend::KillScope;
use crate::context::Context;
use crate::session::registry::{Entry, HeldInfo, Registry};
use serde_json::{json, Value};
use std::sync::Arc;

/// `/admin/sessions` and `/admin/sessions/ID/kill`.
pub fn route(ctx: Arc<Context>, req: super::Request) -> super::ReplyFuture {
    let path = req.path.trim_end_matches('/');
    let method = req.method.as_str();
    if path == "/admin/sessions" {
        let reply = match method {
            "GET" => list(&ctx),
            _ => Reply::text(405, "use GET\n"),
        };
        return Box::pin(async move { reply });
    }
    let Some(id) = path
        .strip_prefix("/admin/sessions/")
        .and_then(|r| r.strip_suffix("/kill"))
    else {
        return Box::pin(async { Reply::text(404, "no such admin endpoint\n") });
    };
    if method != "POST" {
        return Box::pin(async { Reply::text(405, "use POST\n") });
    }
    let (id, body, peer) = (id.to_string(), req.body.clone(), req.peer.to_string());
    Box::pin(async move { kill(ctx, &id, &body, peer).await })
}

/// `GET /admin/sessions`.
pub fn list(ctx: &Context) -> Reply {
    let sessions: Vec<Value> = Registry::of(ctx).all().iter().map(|e| one(e)).collect();
    Reply::json(200, &json!({ "sessions": sessions }))
}

fn one(e: &Entry) -> Value {
    let running_on = e.running_on();
    let creds = e.creds();
    let a = e.activity();
    let state = if a.started.is_some() {
        "query"
    } else if a.in_transaction {
        "idle in transaction"
    } else {
        "idle"
    };
    let (statement, digest) = if a.started.is_some() {
        let mut d = String::new();
        router::classify::digest(a.text.as_bytes(), &mut d);
        (Some(a.text.clone()), Some(d))
    } else {
        (None, None)
    };
    json!({
        "id": e.id,
        "user": creds.user,
        "client": e.client,
        "schema": a.schema,
        "state": state,
        "statement": statement,
        "digest": digest,
        "statement_ms": a.started.map(|t| t.elapsed().as_millis() as u64),
        "running_on": running_on.map(|(b, t)| json!({"server": b.name(), "thread": t})),
        "in_transaction": a.in_transaction,
        "held": a.held.iter().map(held).collect::<Vec<_>>(),
        "age_s": e.connected.elapsed().as_secs(),
        "idle_ms": a.started.is_none().then(|| a.idle_since.map(|t| t.elapsed().as_millis() as u64)).flatten(),
        "statements": a.statements,
    })
}

fn held(h: &HeldInfo) -> Value {
    let mut why = Vec::new();
    if h.transaction && !h.pins.is_some_and(|p| p.transaction) {
        why.push("transaction");
    }
    if let Some(p) = h.pins {
        for (name, on) in p.reasons() {
            if on {
                why.push(name);
            }
        }
    }
    if h.cursor {
        why.push("cursor");
    }
    if h.diagnostics {
        why.push("diagnostics");
    }
    json!({"server": h.backend.name(), "thread": h.thread, "why": why})
}

/// `POST /admin/sessions/ID/kill` with an optional `{"query_only": bool}` body.
pub async fn kill(ctx: Arc<Context>, id: &str, body: &[u8], peer: String) -> Reply {
    let Ok(id) = id.parse::<u64>() else {
        return Reply::json(400, &json!({"error": format!("not a session id: '{id}'")}));
    };
    let query_only = match parse(body) {
        Ok(q) => q,
        Err(e) => return Reply::json(400, &json!({ "error": e })),
    };
    let Some(target) = Registry::of(&ctx).get(id) else {
        return Reply::json(404, &json!({"error": format!("no session {id}")}));
    };
    let scope = if query_only {
        KillScope::Query
    } else {
        KillScope::Connection
    };
    let running = target.running_on().is_some();
    tracing::info!(%peer, session = id, query_only, "session killed through the admin API");
    match crate::session::kill_entry(&ctx, &target, scope).await {
        Ok(()) => Reply::json(
            200,
            &json!({
                "killed": id,
                "scope": if query_only { "query" } else { "connection" },
                "statement_was_running": running,
            }),
        ),
        Err((code, _, msg)) => Reply::json(
            502,
            &json!({"error": msg, "code": code, "closing": !query_only}),
        ),
    }
}

fn parse(body: &[u8]) -> Result<bool, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(false);
    }
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("invalid JSON: {e}"))?;
    let Some(obj) = v.as_object() else {
        return Err("expected a JSON object".into());
    };
    let mut query_only = false;
    for (k, v) in obj {
        match (k.as_str(), v) {
            ("query_only", Value::Bool(b)) => query_only = *b,
            ("query_only", _) => return Err("`query_only`: expected true or false".into()),
            (other, _) => return Err(format!("unknown key `{other}`: expected query_only")),
        }
    }
    Ok(query_only)
}
