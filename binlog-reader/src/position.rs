//! Applied positions as replicas report them, reduced to one watermark per replication stream:
//! "every transaction of stream K with sequence number ≤ N is applied".
//!
//! MariaDB's `@@gtid_slave_pos` is `domain-server-seq` per domain (sequence numbers count per
//! domain, so comparisons are per domain). MySQL's `@@gtid_executed` is a set of intervals per
//! source uuid (and tag); its watermark is the end of the interval that starts at 1. Without
//! GTIDs, file/position pairs become one number per file index (see [`encode_file_pos`]).

use crate::decode::Gtid;
use std::collections::BTreeMap;

/// Stream key → highest sequence number below which everything is applied.
pub type Watermarks = BTreeMap<String, u64>;

/// The stream key used for file/position bookkeeping when the primary writes no GTIDs.
pub const FILE_POS_KEY: &str = "";

/// A position string that could not be parsed.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error("cannot parse {what} {text:?}")]
pub struct ParseError {
    what: &'static str,
    text: String,
}

fn err(what: &'static str, text: &str) -> ParseError {
    ParseError {
        what,
        text: text.chars().take(200).collect(),
    }
}

/// Parses one MariaDB GTID `domain-server-seq`.
pub fn parse_mariadb_gtid(s: &str) -> Result<Gtid, ParseError> {
    let mut it = s.trim().splitn(3, '-');
    let parse = |p: Option<&str>| p.and_then(|p| p.trim().parse::<u64>().ok());
    match (parse(it.next()), parse(it.next()), parse(it.next())) {
        (Some(d), Some(sv), Some(seq)) if d <= u32::MAX as u64 && sv <= u32::MAX as u64 => {
            Ok(Gtid::MariaDb {
                domain: d as u32,
                server: sv as u32,
                seq,
            })
        }
        _ => Err(err("MariaDB GTID", s)),
    }
}

/// Parses a MariaDB GTID position list (`@@gtid_slave_pos`, `@@gtid_binlog_pos`, Gtid_IO_Pos).
pub fn parse_mariadb_pos(s: &str) -> Result<Vec<Gtid>, ParseError> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(parse_mariadb_gtid)
        .collect()
}

/// Watermarks from a MariaDB position list.
pub fn mariadb_watermarks(s: &str) -> Result<Watermarks, ParseError> {
    let mut w = Watermarks::new();
    for g in parse_mariadb_pos(s)? {
        let e = w.entry(g.stream_key()).or_insert(0);
        *e = (*e).max(g.seq());
    }
    Ok(w)
}

/// Formats a MariaDB GTID list (`0-1-5,1-2-9`) for `@slave_connect_state`.
pub fn format_mariadb_pos<'a>(gtids: impl IntoIterator<Item = &'a Gtid>) -> String {
    gtids
        .into_iter()
        .map(|g| g.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// Watermarks from a MySQL GTID set (`@@gtid_executed`, Retrieved_Gtid_Set), tags included
/// (`uuid:1-5:tag:1-3`). The watermark of a source is the end of its interval starting at 1.
pub fn mysql_watermarks(s: &str) -> Result<Watermarks, ParseError> {
    let mut w = Watermarks::new();
    for part in s.split(',') {
        let part: String = part.chars().filter(|c| !c.is_whitespace()).collect();
        if part.is_empty() {
            continue;
        }
        let mut fields = part.split(':');
        let uuid = fields
            .next()
            .filter(|u| u.len() == 36)
            .ok_or_else(|| err("MySQL GTID set", s))?
            .to_ascii_lowercase();
        let mut key = uuid.clone();
        for f in fields {
            if f.starts_with(|c: char| c.is_ascii_digit()) {
                let (lo, hi) = match f.split_once('-') {
                    Some((a, b)) => (a.parse::<u64>(), b.parse::<u64>()),
                    None => (f.parse::<u64>(), f.parse::<u64>()),
                };
                let (Ok(lo), Ok(hi)) = (lo, hi) else {
                    return Err(err("MySQL GTID set", s));
                };
                let e = w.entry(key.clone()).or_insert(0);
                // Contiguous from 1 (or from the current watermark) extends it.
                if lo <= *e + 1 && hi > *e {
                    *e = hi;
                }
            } else if !f.is_empty() {
                key = format!("{uuid}:{}", f.to_ascii_lowercase());
            } else {
                return Err(err("MySQL GTID set", s));
            }
        }
    }
    Ok(w)
}

/// Parses one GTID as a client would hand it to [`crate::LagHandle::covers`]: MariaDB
/// `0-1-123` or MySQL `uuid:123` / `uuid:tag:123`.
pub fn parse_gtid(s: &str) -> Result<Gtid, ParseError> {
    let s = s.trim();
    if s.contains(':') {
        let (source, gno) = s.rsplit_once(':').ok_or_else(|| err("GTID", s))?;
        let gno = gno.parse::<u64>().map_err(|_| err("GTID", s))?;
        if source.len() < 36 {
            return Err(err("GTID", s));
        }
        Ok(Gtid::MySql {
            source: source.to_ascii_lowercase(),
            gno,
        })
    } else {
        parse_mariadb_gtid(s)
    }
}

/// Whether `w` says `gtid` is applied.
pub fn covers(w: &Watermarks, gtid: &Gtid) -> bool {
    w.get(&gtid.stream_key())
        .is_some_and(|&done| done >= gtid.seq())
}

/// Encodes a binlog file/position as one increasing number: the file's numeric suffix in the
/// high 32 bits, the byte offset in the low 32 (binlog files are at most 1 GiB).
pub fn encode_file_pos(file: &str, pos: u64) -> Option<u64> {
    let index: u64 = file.rsplit('.').next()?.parse().ok()?;
    Some((index << 32) | (pos & 0xffff_ffff))
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn mariadb_positions_compare_per_domain() {
        let w = mariadb_watermarks("0-1-100, 1-2-7").unwrap();
        assert_eq!(w.get("0"), Some(&100));
        assert_eq!(w.get("1"), Some(&7));
        assert!(covers(&w, &parse_gtid("0-1-100").unwrap()));
        assert!(!covers(&w, &parse_gtid("0-1-101").unwrap()));
        // A different server id in the same domain counts in the same sequence.
        assert!(covers(&w, &parse_gtid("1-9-7").unwrap()));
        assert!(!covers(&w, &parse_gtid("2-1-1").unwrap()));
        assert_eq!(mariadb_watermarks("").unwrap().len(), 0);
        assert!(mariadb_watermarks("0-1").is_err());
        assert!(mariadb_watermarks("x-1-2").is_err());
    }

    #[test]
    fn mysql_sets_with_gaps_and_tags() {
        let u = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
        let w = mysql_watermarks(&format!(
            "{}:1-5:8-9:mytag:1-3,\n{}:1-2",
            u.to_uppercase(),
            "aaaaaaaa-71ca-11e1-9e33-c80aa9429562"
        ))
        .unwrap();
        assert_eq!(w.get(u), Some(&5), "gap at 6 stops the watermark");
        assert_eq!(w.get(&format!("{u}:mytag")), Some(&3));
        assert!(covers(&w, &parse_gtid(&format!("{u}:mytag:3")).unwrap()));
        assert!(!covers(&w, &parse_gtid(&format!("{u}:6")).unwrap()));
        assert!(mysql_watermarks("nonsense:1-2").is_err());
    }

    #[test]
    fn file_positions_order_across_files() {
        let a = encode_file_pos("binlog.000001", 1_000_000).unwrap();
        let b = encode_file_pos("binlog.000002", 4).unwrap();
        assert!(a < b);
        assert_eq!(encode_file_pos("nosuffix", 4), None);
    }
}
