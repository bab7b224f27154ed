//! Session consistency (DESIGN §5): which replica positions may serve a read, given what the
//! session wrote, what it already read, and the tokens it hands in. Pure: the proxy supplies
//! the positions (from the binlog reader or a sidecar) and the GTIDs its OK packets reported.
//!
//! A [`Position`] is one watermark per replication stream (MariaDB domain, MySQL source uuid
//! with its tag): "every transaction of stream K up to sequence N". A replica may serve a read
//! when its applied position [covers](Position::covered_by) the read's requirement.

use serde::Deserialize;
use std::fmt;

/// `routing.consistency`: what a read from a replica must have seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// Any replica within `max_lag_ms` (no session guarantee).
    #[default]
    Lag,
    /// The session's own writes.
    ReadYourWrites,
    /// Its own writes, and never older than anything the session already read.
    Monotonic,
    /// Everything committed on the primary before the read began (as the lag source last saw
    /// the primary), plus the above.
    Causal,
}

impl Level {
    /// The label of `rwsplit_consistent_reads_total{level}` and the hint's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Lag => "lag",
            Level::ReadYourWrites => "read_your_writes",
            Level::Monotonic => "monotonic",
            Level::Causal => "causal",
        }
    }

    /// Parses a level as written in a hint (`/* rwsplit:consistency=monotonic */`).
    pub fn parse(s: &[u8]) -> Option<Level> {
        [
            Level::Lag,
            Level::ReadYourWrites,
            Level::Monotonic,
            Level::Causal,
        ]
        .into_iter()
        .find(|l| s.eq_ignore_ascii_case(l.as_str().as_bytes()))
    }
}

/// A GTID text that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a GTID or GTID set: {0:?}")]
pub struct PositionError(String);

/// Per replication stream, the highest sequence number that is (or must be) applied. Keys are
/// the binlog reader's stream keys: the MariaDB domain id in decimal, the lower-case MySQL
/// source uuid (`uuid:tag` when tagged). Sorted by key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Position {
    streams: Vec<(Box<str>, u64)>,
}

impl Position {
    pub fn is_empty(&self) -> bool {
        self.streams.is_empty()
    }

    /// From watermarks (stream key, sequence number), as the binlog reader keeps them.
    pub fn from_watermarks<'a>(w: impl IntoIterator<Item = (&'a str, u64)>) -> Position {
        let mut p = Position::default();
        for (k, seq) in w {
            p.raise(k, seq);
        }
        p
    }

    /// Parses what a server or a client writes: a MariaDB GTID or GTID list (`0-1-5,1-2-9`),
    /// or a MySQL GTID or GTID set (`uuid:5`, `uuid:1-5:7-9,uuid2:tag:3`). For a MySQL
    /// interval the requirement is its end (replicas apply in order within a source).
    pub fn parse(text: &str) -> Result<Position, PositionError> {
        let bad = || PositionError(text.chars().take(200).collect());
        let mut p = Position::default();
        for part in text.split(',') {
            let part: String = part.chars().filter(|c| !c.is_whitespace()).collect();
            if part.is_empty() {
                continue;
            }
            if part.contains(':') {
                let mut fields = part.split(':');
                let uuid = fields
                    .next()
                    .filter(|u| u.len() == 36)
                    .ok_or_else(bad)?
                    .to_ascii_lowercase();
                let mut key = uuid.clone();
                let mut any = false;
                for f in fields {
                    if f.starts_with(|c: char| c.is_ascii_digit()) {
                        let end = f.rsplit('-').next().unwrap_or(f);
                        let seq: u64 = end.parse().map_err(|_| bad())?;
                        p.raise(&key, seq);
                        any = true;
                    } else if !f.is_empty() {
                        key = format!("{uuid}:{}", f.to_ascii_lowercase());
                    } else {
                        return Err(bad());
                    }
                }
                if !any {
                    return Err(bad());
                }
            } else {
                let mut it = part.splitn(3, '-');
                let num = |s: Option<&str>| s.and_then(|s| s.parse::<u64>().ok());
                match (num(it.next()), num(it.next()), num(it.next())) {
                    (Some(domain), Some(_server), Some(seq)) if domain <= u64::from(u32::MAX) => {
                        p.raise(&domain.to_string(), seq);
                    }
                    _ => return Err(bad()),
                }
            }
        }
        Ok(p)
    }

    /// Raises stream `key` to at least `seq`.
    pub fn raise(&mut self, key: &str, seq: u64) {
        match self.streams.binary_search_by(|(k, _)| (**k).cmp(key)) {
            Ok(i) => self.streams[i].1 = self.streams[i].1.max(seq),
            Err(i) => self.streams.insert(i, (key.into(), seq)),
        }
    }

    /// Raises every stream to at least `other`'s watermark.
    pub fn merge(&mut self, other: &Position) {
        for (k, seq) in &other.streams {
            self.raise(k, *seq);
        }
    }

    /// The watermark of stream `key` (0 when absent).
    pub fn get(&self, key: &str) -> u64 {
        self.streams
            .binary_search_by(|(k, _)| (**k).cmp(key))
            .map(|i| self.streams[i].1)
            .unwrap_or(0)
    }

    /// Whether `applied` includes everything this position requires.
    pub fn covered_by(&self, applied: &Position) -> bool {
        self.streams
            .iter()
            .all(|(k, seq)| *seq == 0 || applied.get(k) >= *seq)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, u64)> {
        self.streams.iter().map(|(k, s)| (&**k, *s))
    }
}

/// As the stream keys and watermarks (`0:12,3e11…:5`): for logs and `/servers`, not a GTID.
impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (k, s)) in self.streams.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{k}={s}")?;
        }
        Ok(())
    }
}

/// The consistency hints of a statement's leading comments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Hints<'a> {
    /// `/* rwsplit:consistency=monotonic */`
    pub level: Option<Level>,
    /// `/* rwsplit:after_gtid=0-1-42 */`: the text after `=`, up to the next space or `*/`.
    pub after_gtid: Option<&'a [u8]>,
    /// `/* rwsplit:quorum=2 */`, `/* rwsplit:quorum=majority */`
    pub quorum: Option<Quorum>,
}

/// Reads the consistency hints in the comments before a statement's first token (the same
/// comments `/* rwsplit:primary */` is read from).
pub fn hints(sql: &[u8]) -> Hints<'_> {
    let mut h = Hints::default();
    crate::classify::for_each_leading_hint(sql, |word, value| {
        if word.eq_ignore_ascii_case(b"consistency") {
            h.level = Level::parse(value).or(h.level);
        } else if word.eq_ignore_ascii_case(b"after_gtid") && !value.is_empty() {
            h.after_gtid = Some(value);
        } else if word.eq_ignore_ascii_case(b"quorum") {
            h.quorum = Quorum::parse(value).or(h.quorum);
        }
    });
    h
}

/// What one session has written and read, for its next read's requirement.
#[derive(Debug, Clone, Default)]
pub struct SessionPositions {
    /// Every write the session committed (merged).
    pub written: Position,
    /// The newest state the session has read (merged applied positions of the servers it read
    /// from, at the time it read).
    pub observed: Position,
    /// The GTID text of the session's last commit, as the server reported it
    /// (`SELECT @@last_gtid` / `@@rwsplit_last_gtid` answer it).
    pub last_gtid: Option<String>,
}

impl SessionPositions {
    /// Records a commit the server reported in an OK packet. A GTID that does not parse is
    /// kept as text but demands nothing (the caller counts it).
    pub fn wrote(&mut self, gtid: &str) -> Result<(), PositionError> {
        self.last_gtid = Some(gtid.to_string());
        let p = Position::parse(gtid)?;
        self.written.merge(&p);
        self.observed.merge(&p);
        Ok(())
    }

    /// Records a read served by a server whose applied position was `applied`.
    pub fn read_at(&mut self, applied: &Position) {
        self.observed.merge(applied);
    }

    /// The position a read at `level` must find applied; `token` is a position the statement
    /// demands (`/* rwsplit:after_gtid=… */`) and `primary` the primary's position as the lag
    /// source last saw it (for `causal`). An empty position demands nothing.
    pub fn requirement(
        &self,
        level: Level,
        token: Option<&Position>,
        primary: Option<&Position>,
    ) -> Position {
        let mut need = Position::default();
        match level {
            Level::Lag => {}
            Level::ReadYourWrites => need.merge(&self.written),
            Level::Monotonic => {
                need.merge(&self.written);
                need.merge(&self.observed);
            }
            Level::Causal => {
                need.merge(&self.written);
                need.merge(&self.observed);
                if let Some(p) = primary {
                    need.merge(p);
                }
            }
        }
        if let Some(t) = token {
            need.merge(t);
        }
        need
    }
}

/// `routing.write_quorum`: how many replicas must have applied a commit before its OK goes to
/// the client (`0` = off, a number, or `majority` of the replicas).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(try_from = "QuorumText")]
pub enum Quorum {
    #[default]
    Off,
    Count(u32),
    Majority,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum QuorumText {
    Number(u32),
    Word(String),
}

impl TryFrom<QuorumText> for Quorum {
    type Error = String;
    fn try_from(t: QuorumText) -> Result<Self, Self::Error> {
        match t {
            QuorumText::Number(0) => Ok(Quorum::Off),
            QuorumText::Number(n) => Ok(Quorum::Count(n)),
            QuorumText::Word(w) => Quorum::parse(w.as_bytes())
                .ok_or_else(|| format!("expected a number or `majority`, got {w:?}")),
        }
    }
}

impl Quorum {
    /// As written in a hint or the configuration: `0`, `2`, `majority`.
    pub fn parse(s: &[u8]) -> Option<Quorum> {
        if s.eq_ignore_ascii_case(b"majority") {
            return Some(Quorum::Majority);
        }
        let n: u32 = std::str::from_utf8(s).ok()?.trim().parse().ok()?;
        Some(if n == 0 {
            Quorum::Off
        } else {
            Quorum::Count(n)
        })
    }

    /// Replicas that must have applied a commit, out of `replicas` in the topology.
    pub fn required(self, replicas: usize) -> usize {
        match self {
            Quorum::Off => 0,
            Quorum::Count(n) => n as usize,
            Quorum::Majority => replicas / 2 + 1,
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;

    const U: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562";

    #[test]
    fn parses_both_flavours() {
        let p = Position::parse("0-1-5, 1-2-9").unwrap();
        assert_eq!(p.get("0"), 5);
        assert_eq!(p.get("1"), 9);
        let p = Position::parse(&format!("{U}:1-23:25,{U}:tag:3")).unwrap();
        assert_eq!(p.get(U), 25);
        assert_eq!(p.get(&format!("{U}:tag")), 3);
        assert!(Position::parse("0-1").is_err());
        assert!(Position::parse("abc:5").is_err());
        assert!(Position::parse("").unwrap().is_empty());
        assert!(
            Position::parse(U).is_err(),
            "a uuid alone names no transaction"
        );
    }

    #[test]
    fn coverage_is_per_stream() {
        let applied = Position::parse("0-1-100,1-1-7").unwrap();
        assert!(Position::parse("0-1-100").unwrap().covered_by(&applied));
        assert!(!Position::parse("0-1-101").unwrap().covered_by(&applied));
        assert!(!Position::parse("2-1-1").unwrap().covered_by(&applied));
        assert!(Position::default().covered_by(&Position::default()));
    }

    #[test]
    fn requirement_grows_with_the_level() {
        let mut s = SessionPositions::default();
        s.wrote("0-1-10").unwrap();
        s.read_at(&Position::parse("0-1-12").unwrap());
        let primary = Position::parse("0-1-20").unwrap();
        let token = Position::parse("1-1-3").unwrap();
        let req = |l| s.requirement(l, None, Some(&primary));
        assert!(req(Level::Lag).is_empty());
        assert_eq!(req(Level::ReadYourWrites).get("0"), 10);
        assert_eq!(req(Level::Monotonic).get("0"), 12);
        assert_eq!(req(Level::Causal).get("0"), 20);
        let with_token = s.requirement(Level::Lag, Some(&token), None);
        assert_eq!(with_token.get("1"), 3);
        assert_eq!(s.last_gtid.as_deref(), Some("0-1-10"));
    }

    #[test]
    fn hints_are_read_from_leading_comments() {
        let h = hints(b"/* rwsplit:consistency=causal rwsplit:after_gtid=0-1-42,1-1-3 */ SELECT 1");
        assert_eq!(h.level, Some(Level::Causal));
        assert_eq!(h.after_gtid, Some(&b"0-1-42,1-1-3"[..]));
        let h = hints(b"-- rwsplit:after_gtid=0-1-7\nSELECT 1");
        assert_eq!(h.after_gtid, Some(&b"0-1-7"[..]));
        assert_eq!(
            hints(b"SELECT '/* rwsplit:consistency=causal */'"),
            Hints::default()
        );
        assert_eq!(
            hints(b"/* rwsplit:consistency=nonsense */ SELECT 1").level,
            None
        );
        assert_eq!(
            hints(b"/* rwsplit:after_gtid= */ SELECT 1").after_gtid,
            None
        );
    }

    #[test]
    fn quorum_counts() {
        assert_eq!(Quorum::parse(b"majority").map(|q| q.required(2)), Some(2));
        assert_eq!(Quorum::Majority.required(3), 2);
        assert_eq!(
            Quorum::Majority.required(0),
            1,
            "no replica can never reach it"
        );
        assert_eq!(Quorum::parse(b"0"), Some(Quorum::Off));
        assert_eq!(Quorum::parse(b"2"), Some(Quorum::Count(2)));
        assert_eq!(Quorum::parse(b"most"), None);
        assert_eq!(
            hints(b"/* rwsplit:quorum=1 */ INSERT").quorum,
            Some(Quorum::Count(1))
        );
    }

    #[test]
    fn levels_parse_from_hints() {
        assert_eq!(Level::parse(b"MONOTONIC"), Some(Level::Monotonic));
        assert_eq!(
            Level::parse(b"read_your_writes"),
            Some(Level::ReadYourWrites)
        );
        assert_eq!(Level::parse(b"strong"), None);
    }
}
