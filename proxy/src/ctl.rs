//! What `rwsplit-ctl` needs besides its argument parsing: a small blocking HTTP/1.1 client for
//! the admin API (plain `http://`, one request per connection: the CLI makes one call) and the
//! human tables it prints. In the library so that both are unit-tested.

use serde_json::Value;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// How long a call may take (connect, send, answer) before the CLI gives up.
const TIMEOUT: Duration = Duration::from_secs(30);
/// Largest answer read (a long session list is well under this).
const MAX_ANSWER: u64 = 64 << 20;

/// The admin API of one proxy.
#[derive(Debug, Clone)]
pub struct Client {
    host: String,
    port: u16,
    token: Option<String>,
}

impl Client {
    /// `url` is `http://HOST[:PORT]` (port 80 when absent; a trailing `/` is fine).
    pub fn new(url: &str, token: Option<String>) -> Result<Client, String> {
        let rest = url.strip_prefix("http://").ok_or_else(|| {
            format!("--url {url}: expected http://HOST:PORT (the admin API speaks plain HTTP)")
        })?;
        let hostport = rest.trim_end_matches('/');
        if hostport.contains('/') || hostport.is_empty() {
            return Err(format!(
                "--url {url}: expected http://HOST:PORT, without a path"
            ));
        }
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, _)) if !h.ends_with(']') && h.contains(':') => (hostport.to_string(), 80),
            Some((h, p)) => (
                h.to_string(),
                p.parse()
                    .map_err(|_| format!("--url {url}: '{p}' is not a port"))?,
            ),
            None => (hostport.to_string(), 80),
        };
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        Ok(Client {
            host,
            port,
            token: token.filter(|t| !t.is_empty()),
        })
    }

    /// Sends `method path` with an optional JSON body; the JSON answer of a 2xx, or an error
    /// that says what the proxy answered.
    pub fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value, String> {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let (status, text) = self
            .send(method, path, &body)
            .map_err(|e| format!("{}:{}: {e}", self.host, self.port))?;
        let doc: Option<Value> = serde_json::from_str(&text).ok();
        if (200..300).contains(&status) {
            return doc.ok_or_else(|| {
                format!(
                    "{method} {path}: {status} with a body that is not JSON: {}",
                    text.trim()
                )
            });
        }
        let why = doc
            .as_ref()
            .and_then(|d| d["error"].as_str().map(str::to_string))
            .unwrap_or_else(|| text.trim().to_string());
        let hint = match status {
            401 => " (give the token with --token, --token-file or RWSPLIT_ADMIN_TOKEN)",
            403 => " (without proxy.admin.token the API serves loopback clients only)",
            _ => "",
        };
        Err(format!("{method} {path}: {status}: {why}{hint}"))
    }

    fn send(&self, method: &str, path: &str, body: &str) -> std::io::Result<(u16, String)> {
        let addr = (self.host.as_str(), self.port)
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| std::io::Error::other("no address"))?;
        let mut s = TcpStream::connect_timeout(&addr, TIMEOUT)?;
        s.set_read_timeout(Some(TIMEOUT))?;
        s.set_write_timeout(Some(TIMEOUT))?;
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}:{}\r\nConnection: close\r\nAccept: application/json\r\nContent-Length: {}\r\n",
            self.host,
            self.port,
            body.len()
        );
        if !body.is_empty() {
            req.push_str("Content-Type: application/json\r\n");
        }
        if let Some(t) = &self.token {
            req.push_str(&format!("Authorization: Bearer {t}\r\n"));
        }
        req.push_str("\r\n");
        req.push_str(body);
        s.write_all(req.as_bytes())?;
        let mut raw = Vec::new();
        s.take(MAX_ANSWER).read_to_end(&mut raw)?;
        parse_response(&raw).ok_or_else(|| std::io::Error::other("malformed HTTP answer"))
    }
}

/// Status and body of a complete HTTP/1.1 response (fixed length, chunked, or to the end).
pub fn parse_response(raw: &[u8]) -> Option<(u16, String)> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..end]).ok()?;
    let status: u16 = head.split_whitespace().nth(1)?.parse().ok()?;
    let body = &raw[end + 4..];
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let body = if chunked {
        let mut out = Vec::new();
        let mut rest = body;
        loop {
            let line_end = rest.windows(2).position(|w| w == b"\r\n")?;
            let size = std::str::from_utf8(&rest[..line_end]).ok()?;
            let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
            rest = &rest[line_end + 2..];
            if size == 0 {
                break;
            }
            out.extend_from_slice(rest.get(..size)?);
            rest = rest.get(size + 2..)?;
        }
        out
    } else {
        body.to_vec()
    };
    Some((status, String::from_utf8_lossy(&body).into_owned()))
}

/// A server name as a path segment (names are plain, but never trust a command line).
pub fn escape(name: &str) -> String {
    name.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Left-aligned columns, two spaces apart.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<String>| {
        let mut l = String::new();
        for (i, (c, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                l.push_str(c);
            } else {
                l.push_str(&format!("{c:<w$}  "));
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(header.iter().map(|h| h.to_string()).collect());
    for r in rows {
        line(r.clone());
    }
    out
}

fn s(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Cuts `text` to `n` characters, marking the cut.
fn cut(text: &str, n: usize) -> String {
    if text.chars().count() <= n {
        return text.to_string();
    }
    let mut t: String = text.chars().take(n.saturating_sub(1)).collect();
    t.push('…');
    t
}

fn overrides(v: &Value) -> String {
    v.as_object()
        .map(|o| {
            o.iter()
                .map(|(k, p)| format!("{k}={} (file {})", s(&p["value"]), s(&p["file"])))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

/// `/servers` as a table.
pub fn servers_table(doc: &Value) -> String {
    let rows: Vec<Vec<String>> = doc["servers"]
        .as_array()
        .map(|a| a.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|r| {
            vec![
                s(&r["name"]),
                s(&r["role"]),
                s(&r["state"]),
                s(&r["lag_ms"]),
                s(&r["weight"]),
                s(&r["max_lag_ms"]),
                s(&r["in_flight"]),
                s(&r["connections"]),
                s(&r["held_by_sessions"]),
                overrides(&r["overrides"]),
            ]
        })
        .collect();
    table(
        &[
            "NAME",
            "ROLE",
            "STATE",
            "LAG_MS",
            "WEIGHT",
            "MAX_LAG",
            "IN_FLIGHT",
            "CONNS",
            "HELD",
            "OVERRIDES",
        ],
        &rows,
    )
}

/// One server's entry after a change.
pub fn server_line(r: &Value) -> String {
    let o = overrides(&r["overrides"]);
    format!(
        "{}: state {}, weight {}, max_lag_ms {}, {} session(s) holding it, {} in flight{}\n",
        s(&r["name"]),
        s(&r["state"]),
        s(&r["weight"]),
        s(&r["max_lag_ms"]),
        s(&r["held_by_sessions"]),
        s(&r["in_flight"]),
        if o.is_empty() {
            String::new()
        } else {
            format!("; overrides: {o}")
        }
    )
}

/// `/admin/sessions` as a table.
pub fn sessions_table(doc: &Value) -> String {
    let rows: Vec<Vec<String>> = doc["sessions"]
        .as_array()
        .map(|a| a.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|r| {
            let held = r["held"]
                .as_array()
                .map(|a| a.as_slice())
                .unwrap_or_default()
                .iter()
                .map(|h| {
                    let why: Vec<String> = h["why"]
                        .as_array()
                        .map(|w| w.iter().map(s).collect())
                        .unwrap_or_default();
                    if why.is_empty() {
                        s(&h["server"])
                    } else {
                        format!("{}({})", s(&h["server"]), why.join(","))
                    }
                })
                .collect::<Vec<_>>()
                .join(" ");
            let time = match (&r["statement_ms"], &r["idle_ms"]) {
                (Value::Number(ms), _) => format!("{ms} ms"),
                (_, Value::Number(ms)) => format!("idle {ms} ms"),
                _ => "-".into(),
            };
            vec![
                s(&r["id"]),
                s(&r["user"]),
                s(&r["client"]),
                s(&r["schema"]),
                s(&r["state"]),
                time,
                format!("{} s", s(&r["age_s"])),
                if held.is_empty() { "-".into() } else { held },
                cut(&s(&r["statement"]).replace(['\n', '\r', '\t'], " "), 60),
            ]
        })
        .collect();
    table(
        &[
            "ID",
            "USER",
            "CLIENT",
            "SCHEMA",
            "STATE",
            "TIME",
            "AGE",
            "HELD",
            "STATEMENT",
        ],
        &rows,
    )
}

/// The answer to a kill.
pub fn kill_line(r: &Value) -> String {
    format!(
        "session {} killed ({}){}\n",
        s(&r["killed"]),
        s(&r["scope"]),
        if r["statement_was_running"] == true {
            ", its running statement cancelled"
        } else {
            ""
        }
    )
}

/// `/admin/top` as a table.
pub fn top_table(doc: &Value) -> String {
    let num = |v: &Value, d: usize| match v.as_f64() {
        Some(f) => format!("{f:.d$}"),
        None => s(v),
    };
    let row = |r: &Value, name: String| {
        vec![
            s(&r["count"]),
            s(&r["errors"]),
            num(&r["total_ms"], 1),
            num(&r["mean_ms"], 3),
            num(&r["p99_ms"], 3),
            s(&r["rows"]),
            format!("{:.0}%", r["replica_share"].as_f64().unwrap_or(0.0) * 100.0),
            name,
        ]
    };
    let mut rows: Vec<Vec<String>> = doc["statements"]
        .as_array()
        .map(|a| a.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|r| row(r, cut(&s(&r["digest"]), 100)))
        .collect();
    let other = &doc["other"];
    if other["count"].as_u64().unwrap_or(0) > 0 {
        rows.push(row(
            other,
            format!("(other: {} digests)", s(&other["digests"])),
        ));
    }
    table(
        &[
            "COUNT", "ERRORS", "TOTAL_MS", "MEAN_MS", "P99_MS", "ROWS", "REPLICA", "DIGEST",
        ],
        &rows,
    )
}

/// Any other answer, as compact JSON.
pub fn generic(r: &Value) -> String {
    format!("{r}\n")
}

#[cfg(test)]
mod test {
    use super::*;
    use serde_json::json;

    #[test]
    fn urls_are_checked() {
        let c = Client::new("http://127.0.0.1:9033/", None).expect("valid");
        assert_eq!((c.host.as_str(), c.port), ("127.0.0.1", 9033));
        let c = Client::new("http://[::1]:9", Some(String::new())).expect("valid");
        assert_eq!((c.host.as_str(), c.port, c.token), ("::1", 9, None));
        assert!(Client::new("https://x:1", None).is_err());
        assert!(Client::new("http://x:port", None).is_err());
        assert!(Client::new("http://x:1/admin", None).is_err());
    }

    #[test]
    fn responses_parse_with_length_or_chunks() {
        let fixed = b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 2\r\n\r\nno";
        assert_eq!(parse_response(fixed), Some((401, "no".into())));
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"a\r\n3\r\n\":1\r\n1\r\n}\r\n0\r\n\r\n";
        assert_eq!(parse_response(chunked), Some((200, "{\"a\":1}".into())));
        assert_eq!(parse_response(b"garbage"), None);
    }

    #[test]
    fn tables_show_what_operators_look_for() {
        let servers = json!({"servers": [{"name": "replica1", "role": "replica", "state": "maintenance",
            "lag_ms": 3, "weight": 1, "max_lag_ms": 1000, "in_flight": 0, "connections": 2,
            "held_by_sessions": 1, "overrides": {"maintenance": {"value": true, "file": false}}}]});
        let t = servers_table(&servers);
        assert!(t.starts_with("NAME"), "{t}");
        assert!(t.contains("replica1  replica"), "{t}");
        assert!(t.contains("maintenance=true (file false)"), "{t}");
        let sessions = json!({"sessions": [{"id": 7, "user": "app", "client": "127.0.0.1",
            "schema": "shop", "state": "query", "statement": "SELECT SLEEP(5)", "statement_ms": 1200,
            "age_s": 3, "held": [{"server": "primary", "why": ["transaction"]}]}]});
        let t = sessions_table(&sessions);
        assert!(
            t.contains("SELECT SLEEP(5)")
                && t.contains("primary(transaction)")
                && t.contains("1200 ms"),
            "{t}"
        );
        let top = json!({"statements": [{"digest": "SELECT ?", "count": 3, "errors": 0, "total_ms": 1.5,
            "mean_ms": 0.5, "p99_ms": 0.7, "rows": 3, "replica_share": 1.0}], "other": {"count": 0}});
        let t = top_table(&top);
        assert!(t.contains("SELECT ?") && t.contains("100%"), "{t}");
        assert_eq!(escape("a b/c"), "a%20b%2Fc");
        assert_eq!(cut("abcdef", 4), "abc…");
    }
}
