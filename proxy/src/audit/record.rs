//! One audited statement, as the session hands it over, and its JSON line.

use router::config::AuditConfig;
use std::time::{Duration, SystemTime};

/// What the session knows about a statement once it is over. The text is the statement's
/// bytes as sent; the writer turns it into a digest unless `full_text` is on.
#[derive(Debug)]
pub struct Record {
    pub time: SystemTime,
    pub session: u32,
    pub user: String,
    pub client: String,
    pub schema: Option<String>,
    /// The server that ran it (`None`: answered by the proxy itself).
    pub server: Option<String>,
    pub text: Vec<u8>,
    pub affected_rows: Option<u64>,
    pub duration: Duration,
    /// The error code the client got, if any.
    pub error: Option<u16>,
}

impl Record {
    /// The JSON line (with its newline), into `out`.
    pub fn write_json(&self, config: &AuditConfig, out: &mut Vec<u8>) {
        let (key, text) = if config.full_text {
            (
                "statement",
                String::from_utf8_lossy(&self.text).into_owned(),
            )
        } else {
            ("digest", router::rules::digest::digest(&self.text))
        };
        let mut v = serde_json::Map::new();
        v.insert("time".into(), rfc3339(self.time).into());
        v.insert("session".into(), self.session.into());
        v.insert("user".into(), self.user.clone().into());
        v.insert("client".into(), self.client.clone().into());
        v.insert("schema".into(), self.schema.clone().into());
        v.insert("server".into(), self.server.clone().into());
        v.insert(key.into(), text.into());
        v.insert("affected_rows".into(), self.affected_rows.into());
        v.insert("gtid".into(), serde_json::Value::Null);
        v.insert(
            "duration_ms".into(),
            ((self.duration.as_secs_f64() * 1e6).round() / 1e3).into(),
        );
        v.insert("error".into(), self.error.into());
        if serde_json::to_writer(&mut *out, &v).is_ok() {
            out.push(b'\n');
        }
    }
}

/// `2026-12-02T06:50:01.123Z` (UTC, milliseconds).
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}
