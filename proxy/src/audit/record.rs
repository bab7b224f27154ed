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
    /// The GTID the statement committed, as the server reported it in its OK packet (several,
    /// comma-separated, for a packet of statements that committed more than one).
    pub gtid: Option<String>,
    pub duration: Duration,
    /// The error code the client got, if any.
    pub error: Option<u16>,
}

impl Record {
    /// The JSON line (with its newline), into `out`: fields in the documented order.
    pub fn write_json(&self, config: &AuditConfig, out: &mut Vec<u8>) {
        let text = if config.full_text {
            String::from_utf8_lossy(&self.text).into_owned()
        } else {
            router::rules::digest::digest(&self.text)
        };
        let line = Line {
            time: rfc3339(self.time),
            session: self.session,
            user: &self.user,
            client: &self.client,
            schema: self.schema.as_deref(),
            server: self.server.as_deref(),
            digest: (!config.full_text).then_some(text.as_str()),
            statement: config.full_text.then_some(text.as_str()),
            affected_rows: self.affected_rows,
            gtid: self.gtid.as_deref(),
            duration_ms: (self.duration.as_secs_f64() * 1e6).round() / 1e3,
            error: self.error,
        };
        if serde_json::to_writer(&mut *out, &line).is_ok() {
            out.push(b'\n');
        }
    }
}

/// One line as serialised (no intermediate map: one allocation for the time string).
#[derive(serde::Serialize)]
struct Line<'a> {
    time: String,
    session: u32,
    user: &'a str,
    client: &'a str,
    schema: Option<&'a str>,
    server: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    digest: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    statement: Option<&'a str>,
    affected_rows: Option<u64>,
    gtid: Option<&'a str>,
    duration_ms: f64,
    error: Option<u16>,
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
