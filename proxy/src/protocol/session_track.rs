//! The session-state information of OK packets (`CLIENT_SESSION_TRACK`): where the proxy learns
//! the GTID each write committed as, and how it removes what the client did not ask for.
//!
//! Every backend connection asks for `CLIENT_SESSION_TRACK`, and primary connections ask the
//! server to track the GTID (`session_track_system_variables` with `last_gtid` on MariaDB,
//! `session_track_gtids=OWN_GTID` on MySQL), so the OK packet of each commit carries it. A
//! client that did not announce `CLIENT_SESSION_TRACK` expects OK packets without the block;
//! one that did but never asked for the GTID gets the block without the GTID entry.
//!
//! OK packet layout with `CLIENT_SESSION_TRACK` (MySQL protocol docs, "OK_Packet"):
//! `header (0x00, or 0xFE ending rows)`, `affected_rows` lenenc, `last_insert_id` lenenc,
//! `status_flags` u16, `warnings` u16, `info` lenenc string, and when `status_flags` has
//! `SERVER_SESSION_STATE_CHANGED`: `session_state_info` lenenc string, a sequence of
//! `type` u8 + `data` lenenc string. Servers omit `info` too when it is empty and no state
//! changed (and without the capability they still send a non-empty `info` length-encoded).

use super::consts::status;
use super::message::{lenenc_int, put_lenenc_int, put_lenenc_str};

/// `SESSION_TRACK_SYSTEM_VARIABLES`: data = name lenenc + value lenenc.
pub const TRACK_SYSTEM_VARIABLES: u8 = 0;
/// `SESSION_TRACK_GTIDS`: data = encoding spec u8 (0 = text) + GTID set lenenc.
pub const TRACK_GTIDS: u8 = 3;

/// What to remove from an OK packet before the client gets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strip {
    /// The client does not speak `CLIENT_SESSION_TRACK`: the whole block goes, and the
    /// `SERVER_SESSION_STATE_CHANGED` flag with it.
    All,
    /// The client reads session state but did not ask for the GTID: only the proxy's entries go.
    Gtid,
    /// The client asked for the GTID too: the packet passes unchanged.
    Nothing,
}

/// The parts of an OK packet around its session-state block.
struct Layout<'a> {
    /// Header through warnings.
    head: &'a [u8],
    /// Offset of the status flags in `head`.
    status_at: usize,
    info: &'a [u8],
    /// The entries of the session-state block (empty when there is none).
    state: &'a [u8],
}

fn layout(p: &[u8]) -> Option<Layout<'_>> {
    let mut at = 1;
    let (_, n) = lenenc_int(p.get(at..)?)?;
    at += n;
    let (_, n) = lenenc_int(p.get(at..)?)?;
    at += n;
    let status_at = at;
    let flags = u16::from_le_bytes([*p.get(at)?, *p.get(at + 1)?]);
    at += 4;
    let head = p.get(..at)?;
    let mut info: &[u8] = &[];
    let mut state: &[u8] = &[];
    if at < p.len() {
        let (len, n) = lenenc_int(p.get(at..)?)?;
        at += n;
        let end = at.checked_add(usize::try_from(len).ok()?)?;
        info = p.get(at..end)?;
        at = end;
        if flags & status::SESSION_STATE_CHANGED != 0 && at < p.len() {
            let (len, n) = lenenc_int(p.get(at..)?)?;
            at += n;
            let end = at.checked_add(usize::try_from(len).ok()?)?;
            state = p.get(at..end)?;
        }
    }
    Some(Layout {
        head,
        status_at,
        info,
        state,
    })
}

/// One entry of a session-state block.
struct Entry<'a> {
    kind: u8,
    data: &'a [u8],
    /// The entry as it appears in the block (type and length included).
    raw: &'a [u8],
}

fn entries(mut block: &[u8]) -> impl Iterator<Item = Entry<'_>> {
    std::iter::from_fn(move || {
        let kind = *block.first()?;
        let (len, n) = lenenc_int(block.get(1..)?)?;
        let start = 1 + n;
        let end = start.checked_add(usize::try_from(len).ok()?)?;
        let data = block.get(start..end)?;
        let raw = &block[..end];
        block = &block[end..];
        Some(Entry { kind, data, raw })
    })
}

fn lenenc_str(b: &[u8]) -> Option<(&[u8], &[u8])> {
    let (len, n) = lenenc_int(b)?;
    let end = n.checked_add(usize::try_from(len).ok()?)?;
    Some((b.get(n..end)?, &b[end..]))
}

/// The GTID an entry carries: MariaDB's tracked `last_gtid` variable, or MySQL's GTIDS entry.
fn entry_gtid<'a>(e: &Entry<'a>) -> Option<&'a [u8]> {
    match e.kind {
        TRACK_SYSTEM_VARIABLES => {
            let (name, rest) = lenenc_str(e.data)?;
            if !name.eq_ignore_ascii_case(b"last_gtid") {
                return None;
            }
            let (value, _) = lenenc_str(rest)?;
            Some(value)
        }
        TRACK_GTIDS => {
            // Encoding specification 0: the GTID set as text.
            let (set, _) = lenenc_str(e.data.get(1..)?)?;
            Some(set)
        }
        _ => None,
    }
}

/// The status flags of an OK packet, when it parses.
pub fn ok_status(p: &[u8]) -> Option<u16> {
    layout(p).map(|l| u16::from_le_bytes([l.head[l.status_at], l.head[l.status_at + 1]]))
}

/// The GTID (MariaDB `0-1-9`, MySQL `uuid:5` or a set) an OK packet reports the statement
/// committed as; `None` when it reports none (a read, a statement inside a transaction, a
/// write that changed nothing) or is not an OK packet with session state.
pub fn gtid(p: &[u8]) -> Option<&[u8]> {
    let l = layout(p)?;
    entries(l.state)
        .filter_map(|e| entry_gtid(&e))
        .filter(|g| !g.is_empty())
        .last()
}

/// Writes into `out` the OK packet `p` as the client should see it under `strip`. Returns
/// false (and leaves `out` alone) when `p` is to be forwarded unchanged: nothing to remove, or
/// a packet the proxy cannot parse (forwarded as the server sent it).
pub fn rewrite(p: &[u8], strip: Strip, out: &mut Vec<u8>) -> bool {
    if strip == Strip::Nothing {
        return false;
    }
    let Some(l) = layout(p) else { return false };
    if l.state.is_empty() {
        return false;
    }
    let keep = |e: &Entry| strip == Strip::Gtid && entry_gtid(e).is_none();
    if strip == Strip::Gtid && entries(l.state).all(|e| keep(&e)) {
        return false;
    }
    let kept: usize = entries(l.state)
        .filter(|e| keep(e))
        .map(|e| e.raw.len())
        .sum();
    out.clear();
    out.extend_from_slice(l.head);
    if kept == 0 {
        let flags = u16::from_le_bytes([l.head[l.status_at], l.head[l.status_at + 1]])
            & !status::SESSION_STATE_CHANGED;
        out[l.status_at..l.status_at + 2].copy_from_slice(&flags.to_le_bytes());
        if !l.info.is_empty() {
            put_lenenc_str(out, l.info);
        }
        return true;
    }
    put_lenenc_str(out, l.info);
    put_lenenc_int(out, kept as u64);
    for e in entries(l.state).filter(|e| keep(e)) {
        out.extend_from_slice(e.raw);
    }
    true
}

#[cfg(test)]
mod test {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    // Captured from MariaDB 10.11 (a client with CLIENT_SESSION_TRACK after
    // `SET session_track_system_variables=CONCAT(@@session_track_system_variables,',last_gtid')`).
    /// `INSERT` in autocommit: 1 row, insert id 1, status AUTOCOMMIT|SESSION_STATE_CHANGED, and
    /// the state block: type 0, `last_gtid` = `0-1-9`.
    const MARIADB_INSERT: &str = "0001010240000000120010096c6173745f6774696405302d312d39";
    /// `COMMIT`: `last_gtid` = `0-1-10`.
    const MARIADB_COMMIT: &str = "0000000240000000130011096c6173745f6774696406302d312d3130";
    /// A statement inside a transaction: no state block.
    const MARIADB_IN_TRX: &str = "00010203000000";

    /// MySQL 8 with `session_track_gtids=OWN_GTID`, written by hand from the protocol docs
    /// (OK_Packet; "Session State Information": type SESSION_TRACK_GTIDS = 0x03, then the
    /// entry's data as a length-encoded string holding the encoding specification 0x00 and the
    /// GTID set as a length-encoded string). A `COMMIT` of GTID
    /// `3e11fa47-71ca-11e1-9e33-c80aa9429562:23`:
    /// `00` header, `00` affected rows, `00` insert id, `02 40` status AUTOCOMMIT |
    /// SESSION_STATE_CHANGED, `00 00` warnings, `00` info (empty), `2b` state length 43,
    /// `03` type, `29` data length 41, `00` encoding spec, `27` GTID length 39, the GTID text.
    fn mysql_commit() -> Vec<u8> {
        let gtid = b"3e11fa47-71ca-11e1-9e33-c80aa9429562:23";
        let mut p = hex("00000002400000");
        p.push(0); // info
        p.push(2 + 1 + 1 + gtid.len() as u8); // state block length
        p.push(TRACK_GTIDS);
        p.push(1 + 1 + gtid.len() as u8); // entry data length
        p.push(0); // encoding specification
        p.push(gtid.len() as u8);
        p.extend_from_slice(gtid);
        assert_eq!(p[8], 43);
        p
    }

    #[test]
    fn mariadb_last_gtid_is_read_from_the_ok() {
        assert_eq!(gtid(&hex(MARIADB_INSERT)), Some(&b"0-1-9"[..]));
        assert_eq!(gtid(&hex(MARIADB_COMMIT)), Some(&b"0-1-10"[..]));
        assert_eq!(gtid(&hex(MARIADB_IN_TRX)), None);
        assert_eq!(gtid(b"\x00"), None, "truncated: no GTID, no panic");
    }

    #[test]
    fn mysql_own_gtid_is_read_from_the_ok() {
        assert_eq!(
            gtid(&mysql_commit()),
            Some(&b"3e11fa47-71ca-11e1-9e33-c80aa9429562:23"[..])
        );
    }

    #[test]
    fn strip_all_gives_the_ok_a_client_without_session_track_expects() {
        let mut out = Vec::new();
        assert!(rewrite(&hex(MARIADB_INSERT), Strip::All, &mut out));
        // Status AUTOCOMMIT only, no info, no block: what the server sends such a client.
        assert_eq!(out, hex("00010102000000"));
        assert!(rewrite(&mysql_commit(), Strip::All, &mut out));
        assert_eq!(out, hex("00000002000000"));
        assert!(!rewrite(&hex(MARIADB_IN_TRX), Strip::All, &mut out));
    }

    #[test]
    fn strip_gtid_keeps_the_other_entries() {
        // Schema change (type 1, "db2") followed by last_gtid.
        let mut p = hex("00000002400000");
        p.push(0);
        let schema = [1u8, 4, 3, b'd', b'b', b'2'];
        let g = hex("0010096c6173745f6774696405302d312d39");
        p.push((schema.len() + g.len()) as u8);
        p.extend_from_slice(&schema);
        p.extend_from_slice(&g);
        let mut out = Vec::new();
        assert!(rewrite(&p, Strip::Gtid, &mut out));
        let mut want = hex("00000002400000");
        want.extend_from_slice(&[0, schema.len() as u8]);
        want.extend_from_slice(&schema);
        assert_eq!(out, want);
        assert_eq!(gtid(&out), None);
        // Only the GTID: the block and the flag go.
        assert!(rewrite(&hex(MARIADB_COMMIT), Strip::Gtid, &mut out));
        assert_eq!(out, hex("00000002000000"));
        // Nothing of ours: unchanged.
        let mut only_schema = hex("00000002400000");
        only_schema.extend_from_slice(&[0, schema.len() as u8]);
        only_schema.extend_from_slice(&schema);
        assert!(!rewrite(&only_schema, Strip::Gtid, &mut out));
        assert!(!rewrite(&hex(MARIADB_COMMIT), Strip::Nothing, &mut out));
    }

    #[test]
    fn info_text_survives_stripping() {
        // UPDATE with "Rows matched: 1  Changed: 1  Warnings: 0" and a GTID.
        let info = b"Rows matched: 1  Changed: 1  Warnings: 0";
        let mut p = hex("00010002400000");
        put_lenenc_str(&mut p, info);
        let g = hex("0010096c6173745f6774696405302d312d39");
        put_lenenc_int(&mut p, g.len() as u64);
        p.extend_from_slice(&g);
        assert_eq!(gtid(&p), Some(&b"0-1-9"[..]));
        let mut out = Vec::new();
        assert!(rewrite(&p, Strip::All, &mut out));
        let mut want = hex("00010002000000");
        put_lenenc_str(&mut want, info);
        assert_eq!(out, want);
    }

    #[test]
    fn garbage_never_panics() {
        let mut out = Vec::new();
        for n in 0..40 {
            let p: Vec<u8> = (0..n).map(|i| (i * 37 + 0x40) as u8).collect();
            let _ = gtid(&p);
            let _ = rewrite(&p, Strip::All, &mut out);
            let _ = rewrite(&p, Strip::Gtid, &mut out);
        }
        let mut p = hex(MARIADB_INSERT);
        for cut in 0..p.len() {
            let _ = gtid(&p[..cut]);
            let _ = rewrite(&p[..cut], Strip::All, &mut out);
        }
        p[8] = 0xff;
        let _ = rewrite(&p, Strip::All, &mut out);
    }
}
