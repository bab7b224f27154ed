//! The few payloads the proxy reads or builds itself: OK, ERR and EOF packets and
//! length-encoded integers and strings. Rows and column definitions are never decoded.

use super::consts::{cap, status};

/// Reads a length-encoded integer at the start of `b`; returns it and the bytes consumed.
pub fn lenenc_int(b: &[u8]) -> Option<(u64, usize)> {
    let first = *b.first()?;
    let le = |n: usize| -> Option<(u64, usize)> {
        let bytes = b.get(1..1 + n)?;
        let mut v = 0u64;
        for (i, x) in bytes.iter().enumerate() {
            v |= u64::from(*x) << (8 * i);
        }
        Some((v, 1 + n))
    };
    match first {
        0..=0xfa => Some((u64::from(first), 1)),
        0xfc => le(2),
        0xfd => le(3),
        0xfe => le(8),
        _ => None,
    }
}

/// Appends a length-encoded integer.
pub fn put_lenenc_int(out: &mut Vec<u8>, v: u64) {
    if v < 0xfb {
        out.push(v as u8);
    } else if v <= 0xffff {
        out.push(0xfc);
        out.extend_from_slice(&(v as u16).to_le_bytes());
    } else if v <= 0xff_ffff {
        out.push(0xfd);
        out.extend_from_slice(&(v as u32).to_le_bytes()[..3]);
    } else {
        out.push(0xfe);
        out.extend_from_slice(&v.to_le_bytes());
    }
}

/// Appends a length-encoded string.
pub fn put_lenenc_str(out: &mut Vec<u8>, s: &[u8]) {
    put_lenenc_int(out, s.len() as u64);
    out.extend_from_slice(s);
}

/// The parts of an OK packet (header 0x00 or 0xFE) the proxy uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Ok {
    pub affected_rows: u64,
    pub last_insert_id: u64,
    pub status: u16,
    pub warnings: u16,
}

/// Parses an OK packet (or a DEPRECATE_EOF end-of-rows OK, header 0xFE).
pub fn parse_ok(p: &[u8]) -> Option<Ok> {
    let rest = p.get(1..)?;
    let (affected_rows, n1) = lenenc_int(rest)?;
    let rest = rest.get(n1..)?;
    let (last_insert_id, n2) = lenenc_int(rest)?;
    let rest = rest.get(n2..)?;
    let status = u16::from_le_bytes([*rest.first()?, *rest.get(1)?]);
    let warnings = match rest.get(2..4) {
        Some(w) => u16::from_le_bytes([w[0], w[1]]),
        None => 0,
    };
    Some(Ok {
        affected_rows,
        last_insert_id,
        status,
        warnings,
    })
}

/// Status flags of a classic EOF packet (0xFE, warnings, status).
pub fn parse_eof_status(p: &[u8]) -> Option<u16> {
    Some(u16::from_le_bytes([*p.get(3)?, *p.get(4)?]))
}

/// True for an EOF packet in a stream where rows may also start with 0xFE: an EOF (or, with
/// DEPRECATE_EOF, an OK standing in for it) is short, a row starting with 0xFE is not.
pub fn is_eof(p: &[u8], frame_len: usize, deprecate_eof: bool) -> bool {
    p.first() == Some(&0xfe)
        && if deprecate_eof {
            frame_len < super::consts::MAX_FRAME
        } else {
            frame_len < 9
        }
}

/// The status flags of a packet that ends a result set (EOF or OK-as-EOF).
pub fn end_status(p: &[u8], deprecate_eof: bool) -> u16 {
    if deprecate_eof {
        parse_ok(p).map(|o| o.status).unwrap_or(0)
    } else {
        parse_eof_status(p).unwrap_or(0)
    }
}

/// An ERR packet's code and message, for logs and retries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Err {
    pub code: u16,
    pub state: String,
    pub message: String,
}

pub fn parse_err(p: &[u8]) -> Option<Err> {
    if p.first() != Some(&0xff) {
        return None;
    }
    let code = u16::from_le_bytes([*p.get(1)?, *p.get(2)?]);
    let (state, msg) = if p.get(3) == Some(&b'#') && p.len() >= 9 {
        (String::from_utf8_lossy(&p[4..9]).into_owned(), &p[9..])
    } else {
        (String::new(), p.get(3..).unwrap_or(&[]))
    };
    Some(Err {
        code,
        state,
        message: String::from_utf8_lossy(msg).into_owned(),
    })
}

/// Builds an ERR payload (protocol 4.1 form with SQLSTATE).
pub fn err_payload(code: u16, state: &str, message: &str) -> Vec<u8> {
    let mut p = Vec::with_capacity(9 + message.len());
    p.push(0xff);
    p.extend_from_slice(&code.to_le_bytes());
    p.push(b'#');
    let mut st = [b'H', b'Y', b'0', b'0', b'0'];
    for (d, s) in st.iter_mut().zip(state.bytes()) {
        *d = s;
    }
    p.extend_from_slice(&st);
    p.extend_from_slice(message.as_bytes());
    p
}

/// Builds an OK payload.
pub fn ok_payload(affected: u64, last_insert_id: u64, status_flags: u16, warnings: u16) -> Vec<u8> {
    let mut p = vec![0x00];
    put_lenenc_int(&mut p, affected);
    put_lenenc_int(&mut p, last_insert_id);
    p.extend_from_slice(&status_flags.to_le_bytes());
    p.extend_from_slice(&warnings.to_le_bytes());
    p
}

/// Builds the packet that ends a result set or a column list: EOF, or an OK with header 0xFE
/// when the client asked for CLIENT_DEPRECATE_EOF.
pub fn eof_payload(caps: u32, status_flags: u16) -> Vec<u8> {
    if caps & cap::DEPRECATE_EOF != 0 {
        let mut p = ok_payload(0, 0, status_flags, 0);
        p[0] = 0xfe;
        p
    } else {
        let mut p = vec![0xfe, 0, 0];
        p.extend_from_slice(&status_flags.to_le_bytes());
        p
    }
}

/// The packets (payloads, sequence ids from 1) of a text result set with one string column
/// named `name` and one row holding `value`, as a server answers `SELECT @@var`.
pub fn one_value_result(name: &str, value: &[u8], caps: u32, status_flags: u16) -> Vec<Vec<u8>> {
    text_result(&[name], &[vec![Some(value)]], caps, status_flags)
}

/// The packets (payloads, sequence ids from 1) of a text result set with string columns
/// `names` and `rows` (`None` is NULL), for answers the proxy makes itself.
pub fn text_result(
    names: &[&str],
    rows: &[Vec<Option<&[u8]>>],
    caps: u32,
    status_flags: u16,
) -> Vec<Vec<u8>> {
    let mut count = Vec::with_capacity(9);
    put_lenenc_int(&mut count, names.len() as u64);
    let mut out = vec![count];
    for name in names {
        let mut col = Vec::with_capacity(32 + name.len());
        put_lenenc_str(&mut col, b"def");
        put_lenenc_str(&mut col, b"");
        put_lenenc_str(&mut col, b"");
        put_lenenc_str(&mut col, b"");
        put_lenenc_str(&mut col, name.as_bytes());
        put_lenenc_str(&mut col, b"");
        col.push(0x0c);
        col.extend_from_slice(&33u16.to_le_bytes()); // utf8_general_ci
        col.extend_from_slice(&1024u32.to_le_bytes()); // column length
        col.push(0xfd); // MYSQL_TYPE_VAR_STRING
        col.extend_from_slice(&0u16.to_le_bytes()); // flags
        col.push(0x27); // decimals: 39 = not fixed, as servers send for strings
        col.extend_from_slice(&[0, 0]);
        out.push(col);
    }
    if caps & cap::DEPRECATE_EOF == 0 {
        out.push(eof_payload(caps, status_flags));
    }
    for values in rows {
        let mut row = Vec::new();
        for v in values {
            match v {
                Some(v) => put_lenenc_str(&mut row, v),
                None => row.push(0xfb),
            }
        }
        out.push(row);
    }
    out.push(eof_payload(caps, status_flags));
    out
}

/// Adds one to the warning count of a packet that ends a response (OK, OK with header 0xFE,
/// classic EOF), for a warning the proxy adds: the count before. `None` (unchanged) for
/// anything else.
pub fn add_warning(p: &mut [u8]) -> Option<u16> {
    let at = match p.first() {
        Some(0xfe) if p.len() == 5 => 1,
        Some(0x00 | 0xfe) => {
            let (_, n1) = p.get(1..).and_then(lenenc_int)?;
            let (_, n2) = p.get(1 + n1..).and_then(lenenc_int)?;
            1 + n1 + n2 + 2
        }
        _ => return None,
    };
    let w = p.get_mut(at..at + 2)?;
    let before = u16::from_le_bytes([w[0], w[1]]);
    w.copy_from_slice(&before.saturating_add(1).to_le_bytes());
    Some(before)
}

/// True if the status says another result follows.
pub fn more_results(status_flags: u16) -> bool {
    status_flags & status::MORE_RESULTS_EXISTS != 0
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn lenenc_round_trips() {
        for v in [
            0u64,
            250,
            251,
            0xffff,
            0x10000,
            0xff_ffff,
            0x100_0000,
            u64::MAX,
        ] {
            let mut b = Vec::new();
            put_lenenc_int(&mut b, v);
            assert_eq!(lenenc_int(&b), Some((v, b.len())), "{v}");
        }
        assert_eq!(lenenc_int(&[0xfc, 1]), None);
        assert_eq!(lenenc_int(&[0xff]), None);
    }

    #[test]
    fn ok_packet_fields() {
        let p = ok_payload(3, 300, status::IN_TRANS | status::AUTOCOMMIT, 2);
        let ok = parse_ok(&p).unwrap();
        assert_eq!(ok.affected_rows, 3);
        assert_eq!(ok.last_insert_id, 300);
        assert_eq!(ok.status, status::IN_TRANS | status::AUTOCOMMIT);
        assert_eq!(ok.warnings, 2);
        assert_eq!(parse_ok(&[0, 1]), None);
    }

    #[test]
    fn eof_forms() {
        let classic = eof_payload(0, status::MORE_RESULTS_EXISTS);
        assert!(is_eof(&classic, classic.len(), false));
        assert_eq!(end_status(&classic, false), status::MORE_RESULTS_EXISTS);
        let new = eof_payload(cap::DEPRECATE_EOF, status::AUTOCOMMIT);
        assert!(is_eof(&new, new.len(), true));
        assert_eq!(end_status(&new, true), status::AUTOCOMMIT);
        // A text row whose first value is 8-byte length-encoded is not an EOF.
        let row = [0xfe, 1, 0, 0, 0, 0, 0, 0, 0, b'x'];
        assert!(!is_eof(&row, row.len(), false));
    }

    #[test]
    fn a_warning_is_added_to_any_end_packet() {
        let mut ok = ok_payload(300, 70000, status::AUTOCOMMIT, 2);
        assert_eq!(add_warning(&mut ok), Some(2));
        assert_eq!(
            parse_ok(&ok).map(|o| (o.warnings, o.last_insert_id)),
            Some((3, 70000))
        );
        let mut new = eof_payload(cap::DEPRECATE_EOF, status::AUTOCOMMIT);
        assert_eq!(add_warning(&mut new), Some(0));
        assert_eq!(parse_ok(&new).map(|o| o.warnings), Some(1));
        let mut classic = eof_payload(0, status::AUTOCOMMIT);
        assert_eq!(add_warning(&mut classic), Some(0));
        assert_eq!(classic[1..3], [1, 0]);
        assert_eq!(parse_eof_status(&classic), Some(status::AUTOCOMMIT));
        let mut err = err_payload(1062, "23000", "Duplicate entry");
        assert_eq!(add_warning(&mut err), None);
        assert_eq!(add_warning(&mut [0x00, 0x01]), None);
    }

    #[test]
    fn err_round_trip() {
        let p = err_payload(1045, "28000", "Access denied");
        let e = parse_err(&p).unwrap();
        assert_eq!(
            (e.code, e.state.as_str(), e.message.as_str()),
            (1045, "28000", "Access denied")
        );
    }
}
