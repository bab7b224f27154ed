//! `POST /admin/servers/NAME`: runtime changes to a server's routing settings.
//!
//! ```json
//! {"maintenance": true, "drain_timeout_ms": 30000, "weight": 3, "max_lag_ms": 200}
//! ```
//!
//! Every key is optional; `null` clears that key's override (back to the file's value). The
//! change counts from the next statement: a server in maintenance takes no new reads, and
//! sessions that hold a connection there for their state (a transaction, locks, temporary
//! tables, an open cursor...) keep it until they are done. With `drain_timeout_ms`, sessions
//! still holding such a connection when it expires, while the server is still in maintenance,
//! are closed as by `KILL CONNECTION` (their transaction rolls back). Overrides are kept across
//! reloads until the file changes the same key (`context/overrides.rs`). The answer is the
//! server's `/servers` entry after the change.

use super::Reply;
use crate::backend::KillScope;
use crate::consistency::Positions;
use crate::context::overrides::Change;
use crate::context::Context;
use crate::session::registry::Registry;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

/// `/admin/servers/NAME`.
pub fn route(ctx: &Arc<Context>, positions: &Positions, req: &super::Request) -> Reply {
    let name = req
        .path
        .trim_start_matches("/admin/servers/")
        .trim_end_matches('/');
    match req.method.as_str() {
        "POST" => post(ctx, positions, name, &req.body, &req.peer.to_string()),
        _ => Reply::text(405, "use POST with a JSON body\n"),
    }
}

/// Handles `POST /admin/servers/NAME`.
pub fn post(
    ctx: &Arc<Context>,
    positions: &Positions,
    name: &str,
    body: &[u8],
    peer: &str,
) -> Reply {
    let (change, drain_timeout) = match parse(body) {
        Ok(x) => x,
        Err(e) => return Reply::json(400, &json!({ "error": e })),
    };
    let Some(now) = ctx.override_server(name, &change) else {
        return Reply::json(
            404,
            &json!({ "error": format!("no server named '{name}'") }),
        );
    };
    tracing::info!(%peer, server = name, change = ?change, overrides = ?now, "server settings changed through the admin API");
    let maintenance = ctx
        .config()
        .servers
        .iter()
        .find(|s| s.name == name)
        .is_some_and(|s| s.maintenance);
    if let (Some(timeout), true) = (drain_timeout, maintenance) {
        tokio::spawn(close_after_drain(ctx.clone(), name.to_string(), timeout));
    }
    let doc = super::servers::json(ctx, positions);
    let entry = doc["servers"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["name"] == name).cloned())
        .unwrap_or(Value::Null);
    Reply::json(200, &entry)
}

/// The body's change and drain timeout, or what is wrong with it.
fn parse(body: &[u8]) -> Result<(Change, Option<Duration>), String> {
    let text = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}".as_slice()
    } else {
        body
    };
    let v: Value = serde_json::from_slice(text).map_err(|e| format!("invalid JSON: {e}"))?;
    let Some(obj) = v.as_object() else {
        return Err("expected a JSON object".into());
    };
    let mut change = Change::default();
    let mut drain = None;
    for (k, v) in obj {
        match k.as_str() {
            "maintenance" => {
                change.maintenance = Some(match v {
                    Value::Null => None,
                    Value::Bool(b) => Some(*b),
                    _ => return Err("`maintenance`: expected true, false or null".into()),
                })
            }
            "weight" => {
                change.weight = Some(match v {
                    Value::Null => None,
                    _ => Some(
                        v.as_u64()
                            .and_then(|w| u32::try_from(w).ok())
                            .filter(|w| *w >= 1)
                            .ok_or("`weight`: expected a whole number ≥ 1, or null")?,
                    ),
                })
            }
            "max_lag_ms" => {
                change.max_lag_ms =
                    Some(match v {
                        Value::Null => None,
                        _ => Some(v.as_u64().ok_or(
                            "`max_lag_ms`: expected a whole number of milliseconds, or null",
                        )?),
                    })
            }
            "drain_timeout_ms" => {
                drain = Some(Duration::from_millis(v.as_u64().ok_or(
                    "`drain_timeout_ms`: expected a whole number of milliseconds",
                )?))
            }
            other => {
                return Err(format!(
                "unknown key `{other}`: expected maintenance, drain_timeout_ms, weight, max_lag_ms"
            ))
            }
        }
    }
    if change == Change::default() {
        return Err("nothing to change: give maintenance, weight or max_lag_ms".into());
    }
    if drain.is_some() && change.maintenance != Some(Some(true)) {
        return Err("`drain_timeout_ms` goes with \"maintenance\": true".into());
    }
    Ok((change, drain))
}

/// After a drain's timeout: closes the sessions that still need a connection to `server`
/// (unless the server left maintenance meanwhile).
async fn close_after_drain(ctx: Arc<Context>, server: String, timeout: Duration) {
    tokio::time::sleep(timeout).await;
    let still = ctx
        .config()
        .servers
        .iter()
        .any(|s| s.name == server && s.maintenance);
    if !still {
        return;
    }
    for entry in Registry::of(&ctx).all() {
        let holds = {
            let a = entry.activity();
            a.held
                .iter()
                .any(|h| h.backend.name() == server && h.needed())
        } || entry.running_on().is_some_and(|(b, _)| b.name() == server);
        if holds {
            tracing::warn!(session = entry.id, server = %server, timeout_ms = timeout.as_millis() as u64, "drain timeout: closing a session that still holds the server");
            let _ = crate::session::kill_entry(&ctx, &entry, KillScope::Connection).await;
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn bodies_are_checked_key_by_key() {
        let (c, d) = parse(br#"{"maintenance": true, "drain_timeout_ms": 500}"#).expect("ok");
        assert_eq!(c.maintenance, Some(Some(true)));
        assert_eq!(d, Some(Duration::from_millis(500)));
        let (c, _) = parse(br#"{"weight": null, "max_lag_ms": 30}"#).expect("ok");
        assert_eq!(c.weight, Some(None));
        assert_eq!(c.max_lag_ms, Some(Some(30)));
        for bad in [
            &br#"{"weight": 0}"#[..],
            br#"{"weight": "3"}"#,
            br#"{"maintenance": 1}"#,
            br#"{"mantenance": true}"#,
            br#"{}"#,
            b"",
            br#"[1]"#,
            br#"{"maintenance": false, "drain_timeout_ms": 5}"#,
            b"{",
        ] {
            assert!(parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }
}
