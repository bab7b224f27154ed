//! One audited statement, as the session hands it over, and its JSON line.

use router::classify::StatementDigest;
use router::config::AuditConfig;
use std::time::{Duration, SystemTime};

/// What a line says the statement was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Text {
    /// Its digest (`router::classify::digest`, as `/admin/top` shows it): the session's, which
    /// statement statistics computed already, so auditing adds no second pass over the text.
    Digest(String),
    /// The statement as sent (`full_text: true`).
    Statement(Vec<u8>),
}

impl Text {
    /// What `config` asks to record of `sql`, whose digest is `digest` (the session's cache:
    /// computed only if nothing did yet, and only when the digest is what is recorded).
    pub fn of(config: &AuditConfig, sql: &[u8], digest: &mut StatementDigest) -> Text {
        if config.full_text {
            Text::Statement(sql.to_vec())
        } else {
            Text::Digest(digest.get(sql).1.to_string())
        }
    }
}

/// What the session knows about a statement once it is over.
#[derive(Debug)]
pub struct Record {
    pub time: SystemTime,
    pub session: u32,
    pub user: String,
    pub client: String,
    pub schema: Option<String>,
    /// The server that ran it (`None`: answered by the proxy itself).
    pub server: Option<String>,
    pub text: Text,
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
    pub fn write_json(&self, out: &mut Vec<u8>) {
        let (digest, statement) = match &self.text {
            Text::Digest(d) => (Some(d.as_str()), None),
            Text::Statement(s) => (None, Some(String::from_utf8_lossy(s))),
        };
        let line = Line {
            time: rfc3339(self.time),
            session: self.session,
            user: &self.user,
            client: &self.client,
            schema: self.schema.as_deref(),
            server: self.server.as_deref(),
            digest,
            statement: statement.as_deref(),
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
