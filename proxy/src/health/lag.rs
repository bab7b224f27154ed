//! Where replica lag comes from (`proxy.lag_source`): the binlog reader embedded in the proxy,
//! a sidecar's `/lag` JSON over HTTP, or `Seconds_Behind_Master`. Whatever the source, a lag
//! that cannot be read is unknown (`None`), never 0.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A sidecar answer older than this is treated as unknown lag (the sidecar is stuck).
const SIDECAR_MAX_AGE_MS: u64 = 5_000;
/// `/lag` answers are small; refuse anything absurd.
const MAX_BODY: usize = 4 << 20;

/// Why the sidecar could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SidecarError {
    #[error("lag_source.sidecar.url {0:?} is not an http://host:port/path URL")]
    Url(String),
    #[error("sidecar {url}: {source}")]
    Io {
        url: String,
        #[source]
        source: std::io::Error,
    },
    #[error("sidecar {0}: no answer in time")]
    Timeout(String),
    #[error("sidecar {url}: {message}")]
    Http { url: String, message: String },
}

/// Lag per replica name from one sidecar `/lag` answer; replicas missing or `null` are unknown.
pub type LagMap = HashMap<String, Option<u64>>;

/// Fetches and parses the sidecar's `/lag` (see binlog-reader's `snapshot` module for the
/// format: `{"taken_at_ms": .., "replicas": {"name": {"lag_ms": 12 | null, ..}}}`).
/// Returns the lags and when the sidecar took them (ms since the epoch).
pub async fn fetch_sidecar(url: &str, timeout: Duration) -> Result<(LagMap, u64), SidecarError> {
    let body = tokio::time::timeout(timeout, http_get(url))
        .await
        .map_err(|_| SidecarError::Timeout(url.to_string()))??;
    let now = now_ms();
    let lags = parse_lag_json(&body, now).map_err(|message| SidecarError::Http {
        url: url.to_string(),
        message,
    })?;
    let taken_at = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("taken_at_ms").and_then(|t| t.as_u64()))
        .unwrap_or(now);
    Ok((lags, taken_at))
}

/// Fetches the sidecar's whole `/lag` answer (positions included, for read-your-writes).
pub async fn fetch_snapshot(
    url: &str,
    timeout: Duration,
) -> Result<binlog_reader::LagSnapshot, SidecarError> {
    let body = tokio::time::timeout(timeout, http_get(url))
        .await
        .map_err(|_| SidecarError::Timeout(url.to_string()))??;
    serde_json::from_slice(&body).map_err(|e| SidecarError::Http {
        url: url.to_string(),
        message: format!("invalid /lag JSON: {e}"),
    })
}

/// One replica's lag from several sidecars' answers `(lags, taken_at_ms)`: the freshest
/// answer that knows it, plus that answer's age (lag grows at most with the clock, so the
/// sum is an upper bound). `None` when no answer knows it.
pub fn freshest<'a>(
    answers: impl Iterator<Item = &'a (LagMap, u64)>,
    replica: &str,
    now_ms: u64,
) -> Option<u64> {
    answers
        .filter_map(|(m, taken)| Some((m.get(replica).copied().flatten()?, *taken)))
        .max_by_key(|&(_, taken)| taken)
        .map(|(lag, taken)| lag.saturating_add(now_ms.saturating_sub(taken)))
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Parses a `/lag` body. A snapshot older than [`SIDECAR_MAX_AGE_MS`] yields every replica
/// unknown rather than trusting stale numbers.
pub fn parse_lag_json(body: &[u8], now_ms: u64) -> Result<LagMap, String> {
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("invalid /lag JSON: {e}"))?;
    let replicas = v
        .get("replicas")
        .and_then(|r| r.as_object())
        .ok_or("/lag JSON has no `replicas` object")?;
    let stale = v
        .get("taken_at_ms")
        .and_then(|t| t.as_u64())
        .is_some_and(|t| now_ms.saturating_sub(t) > SIDECAR_MAX_AGE_MS);
    Ok(replicas
        .iter()
        .map(|(name, r)| {
            let lag = if stale {
                None
            } else {
                r.get("lag_ms").and_then(|l| l.as_u64())
            };
            (name.clone(), lag)
        })
        .collect())
}

/// A minimal HTTP/1.1 GET (`Connection: close`): enough for a sidecar on a private address.
async fn http_get(url: &str) -> Result<Vec<u8>, SidecarError> {
    let bad_url = || SidecarError::Url(url.to_string());
    let rest = url.strip_prefix("http://").ok_or_else(bad_url)?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() {
        return Err(bad_url());
    }
    let io = |source| SidecarError::Io {
        url: url.to_string(),
        source,
    };
    let mut stream = TcpStream::connect(authority).await.map_err(io)?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.map_err(io)?;
    let mut response = Vec::new();
    (&mut stream)
        .take(MAX_BODY as u64)
        .read_to_end(&mut response)
        .await
        .map_err(io)?;
    split_response(&response).map_err(|message| SidecarError::Http {
        url: url.to_string(),
        message,
    })
}

/// Checks the status line and returns the body (de-chunked when needed).
fn split_response(response: &[u8]) -> Result<Vec<u8>, String> {
    let end = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("truncated HTTP response")?;
    let head = String::from_utf8_lossy(&response[..end]);
    let body = &response[end + 4..];
    let status = head.lines().next().unwrap_or("");
    let code = status.split_whitespace().nth(1).unwrap_or("");
    if code != "200" {
        return Err(format!("answered {status:?}"));
    }
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    if !chunked {
        return Ok(body.to_vec());
    }
    let mut out = Vec::new();
    let mut rest = body;
    loop {
        let line_end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("bad chunked body")?;
        let size_text = String::from_utf8_lossy(&rest[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| "bad chunk size")?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        let chunk = rest.get(..size).ok_or("truncated chunk")?;
        out.extend_from_slice(chunk);
        rest = rest.get(size + 2..).ok_or("truncated chunk")?;
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn sidecar_json_gives_lag_and_unknowns() {
        let body = br#"{"taken_at_ms": 1000, "primary": {},
            "replicas": {"r1": {"lag_ms": 12, "known": true}, "r2": {"lag_ms": null, "known": false}}}"#;
        let m = parse_lag_json(body, 1500).expect("parses");
        assert_eq!(m.get("r1"), Some(&Some(12)));
        assert_eq!(m.get("r2"), Some(&None));
        assert_eq!(m.get("r3"), None);
    }

    #[test]
    fn freshest_known_answer_wins_and_ages_into_the_lag() {
        let a: LagMap = [("r1".to_string(), Some(10)), ("r2".to_string(), None)].into();
        let b: LagMap = [("r1".to_string(), Some(50)), ("r2".to_string(), Some(7))].into();
        let answers = [(a, 1_000), (b, 900)];
        assert_eq!(freshest(answers.iter(), "r1", 1_000), Some(10));
        assert_eq!(
            freshest(answers.iter(), "r2", 1_000),
            Some(107),
            "only the older answer knows r2: its lag plus its age"
        );
        assert_eq!(freshest(answers.iter(), "r3", 1_000), None);
        assert_eq!(freshest([].iter(), "r1", 1_000), None);
    }

    #[test]
    fn stale_sidecar_answer_is_unknown_not_zero() {
        let body = br#"{"taken_at_ms": 1000, "replicas": {"r1": {"lag_ms": 0}}}"#;
        let m = parse_lag_json(body, 1000 + SIDECAR_MAX_AGE_MS + 1).expect("parses");
        assert_eq!(m.get("r1"), Some(&None));
    }

    #[test]
    fn http_bodies_plain_and_chunked() {
        let plain = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}";
        assert_eq!(split_response(plain).expect("ok"), b"{}");
        let chunked =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n1\r\n \r\n0\r\n\r\n";
        assert_eq!(split_response(chunked).expect("ok"), b"{} ");
        let err = split_response(b"HTTP/1.1 503 Service Unavailable\r\n\r\nx").unwrap_err();
        assert!(err.contains("503"), "{err}");
    }

    #[tokio::test]
    async fn fetch_from_a_real_listener() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            if let Ok((mut s, _)) = listener.accept().await {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let body = format!(
                    r#"{{"taken_at_ms": {}, "replicas": {{"r1": {{"lag_ms": 7}}}}}}"#,
                    now_ms()
                );
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
            }
        });
        let (m, _) = fetch_sidecar(&format!("http://{addr}/lag"), Duration::from_secs(2))
            .await
            .expect("fetch");
        assert_eq!(m.get("r1"), Some(&Some(7)));
    }
}
