//! Where replica lag comes from (`proxy.lag_source`): the binlog reader embedded in the proxy,
//! a sidecar's `/lag` JSON over HTTP, or `Seconds_Behind_Master`. Whatever the source, a lag
//! that cannot be read is unknown (`None`), never 0.

use super::sidecar_client::Client;
pub use super::sidecar_client::SidecarError;
use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A sidecar answer older than this is treated as unknown lag (the sidecar is stuck).
const SIDECAR_MAX_AGE_MS: u64 = 5_000;

/// Lag per replica name from one sidecar `/lag` answer; replicas missing or `null` are unknown.
pub type LagMap = HashMap<String, Option<u64>>;

/// Fetches and parses the sidecar's `/lag` (see binlog-reader's `snapshot` module for the
/// format: `{"taken_at_ms": .., "replicas": {"name": {"lag_ms": 12 | null, ..}}}`).
/// Returns the lags and when the sidecar took them (ms since the epoch).
pub async fn fetch_sidecar(url: &str, timeout: Duration) -> Result<(LagMap, u64), SidecarError> {
    let body = get_body(&mut Client::one_shot(), url, timeout).await?;
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

/// Fetches the sidecar's whole `/lag` answer (positions included, for read-your-writes) on a
/// connection of its own.
pub async fn fetch_snapshot(
    url: &str,
    timeout: Duration,
) -> Result<binlog_reader::LagSnapshot, SidecarError> {
    fetch_snapshot_on(&mut Client::one_shot(), url, timeout).await
}

/// [`fetch_snapshot`] through `client` (a keep-alive one for a long poll that repeats).
pub async fn fetch_snapshot_on(
    client: &mut Client,
    url: &str,
    timeout: Duration,
) -> Result<binlog_reader::LagSnapshot, SidecarError> {
    let body = get_body(client, url, timeout).await?;
    serde_json::from_slice(&body).map_err(|e| SidecarError::Http {
        url: url.to_string(),
        message: format!("invalid /lag JSON: {e}"),
    })
}

/// The body of a 2xx answer to a GET of `url`, within `timeout`.
async fn get_body(
    client: &mut Client,
    url: &str,
    timeout: Duration,
) -> Result<Vec<u8>, SidecarError> {
    tokio::time::timeout(timeout, client.get(url))
        .await
        .map_err(|_| SidecarError::Timeout(url.to_string()))??
        .into_ok_body(url)
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

#[cfg(test)]
mod test {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

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
