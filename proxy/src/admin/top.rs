//! `GET /admin/top?n=20` (the statements that cost most, by digest) and
//! `POST /admin/top/reset`.
//!
//! ```json
//! {"since_unix": 1796018400, "statements": [{"digest": "SELECT c FROM sbtest1 WHERE id = ?",
//!   "digest_id": "9f3c2a1b0d4e5f60", "count": 10000, "errors": 0, "total_ms": 812.5,
//!   "mean_ms": 0.081, "p99_ms": 0.255, "rows": 10000, "replica_share": 1.0}],
//!  "other": {"digests": 0, "count": 0, "errors": 0, "total_ms": 0.0, "rows": 0}}
//! ```
//!
//! Ordered by total time. Counted per client statement (COM_QUERY, COM_STMT_EXECUTE), from
//! the moment the proxy reads it to the end of its answer; `p99_ms` is within 19% (a log
//! histogram); `replica_share` is the fraction that ran on a replica. `other` holds the digests
//! beyond `n` and those the bounded table folded away (`session/top.rs`).

use super::Reply;
use crate::context::Context;
use crate::session::top::{Stats, Top};
use serde_json::{json, Value};

/// Default and largest `n`.
const DEFAULT_N: usize = 20;
const MAX_N: usize = 1000;

/// `/admin/top` and `/admin/top/reset`.
pub fn route(ctx: &Context, req: &super::Request) -> Reply {
    match (req.method.as_str(), req.path.trim_end_matches('/')) {
        ("GET", "/admin/top") => get(ctx, req.query_param("n")),
        ("POST", "/admin/top/reset") => reset(ctx, &req.peer.to_string()),
        (_, "/admin/top") => Reply::text(405, "use GET\n"),
        (_, "/admin/top/reset") => Reply::text(405, "use POST\n"),
        _ => Reply::text(404, "no such admin endpoint\n"),
    }
}

/// `GET /admin/top`.
pub fn get(ctx: &Context, n: Option<&str>) -> Reply {
    let n = match n {
        None => DEFAULT_N,
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=MAX_N).contains(&n) => n,
            _ => {
                return Reply::json(
                    400,
                    &json!({"error": format!("n: expected 1 to {MAX_N}, got '{v}'")}),
                )
            }
        },
    };
    let snap = Top::of(ctx).snapshot(n);
    let rows: Vec<Value> = snap
        .rows
        .iter()
        .map(|r| {
            let mut v = stats(&r.stats);
            v["digest"] = json!(&*r.text);
            v["digest_id"] = json!(format!("{:016x}", r.digest));
            v
        })
        .collect();
    let mut other = stats(&snap.other);
    other["digests"] = json!(snap.other_digests);
    let since = snap
        .since
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    Reply::json(
        200,
        &json!({"since_unix": since, "statements": rows, "other": other}),
    )
}

fn stats(s: &Stats) -> Value {
    let ms = |us: u64| us as f64 / 1000.0;
    json!({
        "count": s.count,
        "errors": s.errors,
        "total_ms": ms(s.total_us),
        "mean_ms": if s.count > 0 { ms(s.total_us) / s.count as f64 } else { 0.0 },
        "p99_ms": ms(s.p99_us()),
        "rows": s.rows,
        "replica_share": if s.count > 0 { s.replica as f64 / s.count as f64 } else { 0.0 },
    })
}

/// `POST /admin/top/reset`.
pub fn reset(ctx: &Context, peer: &str) -> Reply {
    Top::of(ctx).reset();
    tracing::info!(%peer, "statement statistics reset through the admin API");
    Reply::json(200, &json!({"reset": true}))
}
