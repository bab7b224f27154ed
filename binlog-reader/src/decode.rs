//! Turns raw binlog events into the few facts the lag timeline needs (GTIDs, commit points,
//! rotations, heartbeats), verifies checksums, and frames binlog files without ever panicking.
//!
//! mysql_common parses MySQL events but not MariaDB's GTID (162) and GTID_LIST (163) events, so
//! those are decoded here from the raw event data. Whole files are framed by [`crate::file`].

use mysql_common::binlog::consts::{BinlogChecksumAlg, EventType};
use mysql_common::binlog::events::{
    Event, FormatDescriptionEvent, GtidEvent, QueryEvent, RotateEvent,
};

/// Raw event type numbers MariaDB adds above MySQL's.
pub mod mariadb {
    pub const ANNOTATE_ROWS: u8 = 160;
    pub const BINLOG_CHECKPOINT: u8 = 161;
    pub const GTID: u8 = 162;
    pub const GTID_LIST: u8 = 163;
    pub const START_ENCRYPTION: u8 = 164;
    pub const QUERY_COMPRESSED: u8 = 165;
    /// GTID event flag: a single statement with no XID/COMMIT after it (DDL, non-transactional).
    pub const FL_STANDALONE: u8 = 1;
    /// GTID event flag: an 8-byte commit id follows the flags.
    pub const FL_GROUP_COMMIT_ID: u8 = 2;
}

/// MySQL 8.0.26+ heartbeat (Heartbeat_log_event_v2), which mysql_common does not name.
pub const HEARTBEAT_V2: u8 = 0x29;

/// Header flag of events the server made up for the stream (fake rotate, fake GTID list).
pub const LOG_EVENT_ARTIFICIAL_F: u16 = 0x20;
pub(crate) const HEADER_LEN: usize = 19;
pub(crate) const CHECKSUM_LEN: usize = 4;

/// What could not be decoded. Never a panic: a bad event is an error the caller reports.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum DecodeError {
    #[error("not a binlog file: missing the \\xfebin magic header")]
    NoMagic,
    #[error("event at offset {offset} is truncated: header says {size} bytes, {available} remain")]
    Truncated {
        offset: usize,
        size: usize,
        available: usize,
    },
    #[error("event at offset {offset} has an impossible size {size} (less than its header)")]
    BadSize { offset: usize, size: usize },
    #[error("checksum mismatch on {kind} event at position {log_pos}: stored {stored:#010x}, computed {computed:#010x}")]
    Checksum {
        kind: &'static str,
        log_pos: u32,
        stored: u32,
        computed: u32,
    },
    #[error("malformed {kind} event at position {log_pos}: {message}")]
    Malformed {
        kind: &'static str,
        log_pos: u32,
        message: String,
    },
}

/// One GTID as the servers write it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gtid {
    /// MariaDB `domain-server-seq`.
    MariaDb { domain: u32, server: u32, seq: u64 },
    /// MySQL `uuid[:tag]:gno`; `source` is the lower-case uuid, with `:tag` appended when tagged.
    MySql { source: String, gno: u64 },
}

impl Gtid {
    /// The replication stream this GTID's sequence numbers count in: the MariaDB domain id or
    /// the MySQL source uuid (and tag). Applied positions are compared per stream.
    pub fn stream_key(&self) -> String {
        match self {
            Gtid::MariaDb { domain, .. } => domain.to_string(),
            Gtid::MySql { source, .. } => source.clone(),
        }
    }

    /// The sequence number within [`Gtid::stream_key`].
    pub fn seq(&self) -> u64 {
        match self {
            Gtid::MariaDb { seq, .. } => *seq,
            Gtid::MySql { gno, .. } => *gno,
        }
    }
}

impl std::fmt::Display for Gtid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Gtid::MariaDb {
                domain,
                server,
                seq,
            } => write!(f, "{domain}-{server}-{seq}"),
            Gtid::MySql { source, gno } => write!(f, "{source}:{gno}"),
        }
    }
}

/// The facts one event contributes to the timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    FormatDescription {
        server_version: String,
    },
    /// The stream moves to `file` at `pos`. `fake` ones are sent by the server at the start of a dump.
    Rotate {
        file: String,
        pos: u64,
        fake: bool,
    },
    /// The server is stopping; the stream will end.
    Stop,
    /// The primary has nothing new: we are caught up.
    Heartbeat,
    /// A transaction begins. `commit_us` is MySQL 8's microsecond original commit timestamp;
    /// `standalone` (MariaDB) means the next statement is the whole transaction.
    TransactionStart {
        gtid: Option<Gtid>,
        commit_us: Option<u64>,
        standalone: bool,
    },
    /// MariaDB's list of the last GTID per domain/server at the start of a binlog file.
    GtidList(Vec<Gtid>),
    /// An XID event: the transaction committed.
    Xid,
    /// A statement. `BEGIN` opens a transaction, `COMMIT`/`ROLLBACK` close one, others are DDL
    /// or statements inside one.
    Query {
        verb: QueryVerb,
    },
    /// Anything else (rows, table maps, checkpoints, ...).
    Other,
}

/// How a Query event affects transaction boundaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryVerb {
    Begin,
    Commit,
    Rollback,
    Other,
}

/// A stable, low-cardinality name for an event type, for metric labels.
pub fn type_name(raw: u8) -> &'static str {
    match raw {
        mariadb::ANNOTATE_ROWS => "annotate_rows",
        mariadb::BINLOG_CHECKPOINT => "binlog_checkpoint",
        mariadb::GTID => "gtid",
        mariadb::GTID_LIST => "gtid_list",
        mariadb::START_ENCRYPTION => "start_encryption",
        mariadb::QUERY_COMPRESSED => "query_compressed",
        166..=171 => "rows_compressed",
        HEARTBEAT_V2 => "heartbeat",
        _ => match EventType::try_from(raw) {
            Ok(EventType::QUERY_EVENT) => "query",
            Ok(EventType::STOP_EVENT) => "stop",
            Ok(EventType::ROTATE_EVENT) => "rotate",
            Ok(EventType::INTVAR_EVENT) => "intvar",
            Ok(EventType::RAND_EVENT) => "rand",
            Ok(EventType::USER_VAR_EVENT) => "user_var",
            Ok(EventType::FORMAT_DESCRIPTION_EVENT) => "format_description",
            Ok(EventType::XID_EVENT) => "xid",
            Ok(EventType::TABLE_MAP_EVENT) => "table_map",
            Ok(EventType::WRITE_ROWS_EVENT | EventType::WRITE_ROWS_EVENT_V1) => "write_rows",
            Ok(
                EventType::UPDATE_ROWS_EVENT
                | EventType::UPDATE_ROWS_EVENT_V1
                | EventType::PARTIAL_UPDATE_ROWS_EVENT,
            ) => "update_rows",
            Ok(EventType::DELETE_ROWS_EVENT | EventType::DELETE_ROWS_EVENT_V1) => "delete_rows",
            Ok(EventType::HEARTBEAT_EVENT) => "heartbeat",
            Ok(EventType::GTID_EVENT | EventType::GTID_TAGGED_LOG_EVENT) => "gtid",
            Ok(EventType::ANONYMOUS_GTID_EVENT) => "anonymous_gtid",
            Ok(EventType::PREVIOUS_GTIDS_EVENT) => "previous_gtids",
            Ok(EventType::TRANSACTION_PAYLOAD_EVENT) => "transaction_payload",
            Ok(EventType::ROWS_QUERY_EVENT) => "rows_query",
            Ok(EventType::XA_PREPARE_LOG_EVENT) => "xa_prepare",
            _ => "other",
        },
    }
}

/// Checks the CRC32 the server stored, when the stream carries one. Events unpacked from a
/// compressed transaction payload carry none (their footer has checksums disabled).
pub fn verify_checksum(ev: &Event) -> Result<(), DecodeError> {
    let footer = ev.footer();
    if !footer.get_checksum_enabled() {
        return Ok(());
    }
    let Ok(Some(BinlogChecksumAlg::BINLOG_CHECKSUM_ALG_CRC32)) = footer.get_checksum_alg() else {
        return Ok(());
    };
    let Some(stored) = ev.checksum() else {
        return Ok(());
    };
    let stored = u32::from_le_bytes(stored);
    let computed = ev.calc_checksum(BinlogChecksumAlg::BINLOG_CHECKSUM_ALG_CRC32);
    if stored != computed {
        return Err(DecodeError::Checksum {
            kind: type_name(ev.header().event_type_raw()),
            log_pos: ev.header().log_pos(),
            stored,
            computed,
        });
    }
    Ok(())
}

pub(crate) fn malformed(ev: &Event, message: impl std::fmt::Display) -> DecodeError {
    DecodeError::Malformed {
        kind: type_name(ev.header().event_type_raw()),
        log_pos: ev.header().log_pos(),
        message: message.to_string(),
    }
}

/// Extracts what the timeline needs from one event.
pub fn decode(ev: &Event) -> Result<EventKind, DecodeError> {
    let header = ev.header();
    let raw = header.event_type_raw();
    match raw {
        mariadb::GTID => return decode_mariadb_gtid(ev, header.server_id()),
        mariadb::GTID_LIST => return decode_mariadb_gtid_list(ev),
        HEARTBEAT_V2 => return Ok(EventKind::Heartbeat),
        _ => {}
    }
    let Ok(ty) = EventType::try_from(raw) else {
        return Ok(EventKind::Other);
    };
    Ok(match ty {
        EventType::FORMAT_DESCRIPTION_EVENT => {
            let fde = ev
                .read_event::<FormatDescriptionEvent<'_>>()
                .map_err(|e| malformed(ev, e))?;
            EventKind::FormatDescription {
                server_version: fde.server_version().trim_end_matches('\0').to_string(),
            }
        }
        EventType::ROTATE_EVENT => {
            let re = ev
                .read_event::<RotateEvent<'_>>()
                .map_err(|e| malformed(ev, e))?;
            EventKind::Rotate {
                file: rotate_name(re.name_raw()),
                pos: re.position(),
                fake: re.is_fake() || header.flags_raw() & LOG_EVENT_ARTIFICIAL_F != 0,
            }
        }
        EventType::STOP_EVENT => EventKind::Stop,
        EventType::HEARTBEAT_EVENT => EventKind::Heartbeat,
        EventType::XID_EVENT => EventKind::Xid,
        EventType::QUERY_EVENT => {
            let q = ev
                .read_event::<QueryEvent<'_>>()
                .map_err(|e| malformed(ev, e))?;
            EventKind::Query {
                verb: query_verb(q.query_raw()),
            }
        }
        EventType::GTID_EVENT | EventType::GTID_TAGGED_LOG_EVENT => {
            let g = ev.read_event::<GtidEvent>().map_err(|e| malformed(ev, e))?;
            let mut source = format_uuid(&g.sid());
            if let Some(tag) = g.tag() {
                source.push(':');
                source.push_str(tag.as_str());
            }
            EventKind::TransactionStart {
                gtid: Some(Gtid::MySql {
                    source,
                    gno: g.gno(),
                }),
                commit_us: nonzero(g.original_commit_timestamp()),
                standalone: false,
            }
        }
        EventType::ANONYMOUS_GTID_EVENT => {
            // Same layout as a GTID event; the sid and gno are meaningless.
            let g = ev.read_event::<GtidEvent>().map_err(|e| malformed(ev, e))?;
            EventKind::TransactionStart {
                gtid: None,
                commit_us: nonzero(g.original_commit_timestamp()),
                standalone: false,
            }
        }
        _ => EventKind::Other,
    })
}

/// The file name of a rotate event. The fake rotate that opens a dump arrives before the format
/// description, so the reader cannot know yet that it carries a CRC32; binlog names always end
/// in `.digits`, which tells the 4 checksum bytes apart from the name.
fn rotate_name(raw: &[u8]) -> String {
    let ends_in_index = |n: &[u8]| {
        n.iter()
            .rposition(|&b| b == b'.')
            .is_some_and(|dot| dot + 1 < n.len() && n[dot + 1..].iter().all(u8::is_ascii_digit))
    };
    let name = if !ends_in_index(raw)
        && raw.len() > CHECKSUM_LEN
        && ends_in_index(&raw[..raw.len() - CHECKSUM_LEN])
    {
        &raw[..raw.len() - CHECKSUM_LEN]
    } else {
        raw
    };
    String::from_utf8_lossy(name).into_owned()
}

fn nonzero(v: u64) -> Option<u64> {
    (v != 0).then_some(v)
}

fn query_verb(q: &[u8]) -> QueryVerb {
    let q = q.trim_ascii();
    if q.eq_ignore_ascii_case(b"BEGIN") {
        QueryVerb::Begin
    } else if q.eq_ignore_ascii_case(b"COMMIT") {
        QueryVerb::Commit
    } else if q.len() >= 8 && q[..8].eq_ignore_ascii_case(b"ROLLBACK") {
        QueryVerb::Rollback
    } else {
        QueryVerb::Other
    }
}

/// Formats a 16-byte server uuid the way `@@gtid_executed` prints it (lower case, dashed).
pub fn format_uuid(sid: &[u8; 16]) -> String {
    let mut s = String::with_capacity(36);
    for (i, b) in sid.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            s.push('-');
        }
        s.push_str(&format!("{b:02x}"));
    }
    s
}

pub(crate) fn le_u32(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

fn le_u64(b: &[u8], at: usize) -> Option<u64> {
    let s = b.get(at..at + 8)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(s);
    Some(u64::from_le_bytes(a))
}

/// MariaDB GTID event: seq_no (8), domain_id (4), flags2 (1), then optional extras we skip.
fn decode_mariadb_gtid(ev: &Event, server: u32) -> Result<EventKind, DecodeError> {
    let d = ev.data();
    let (Some(seq), Some(domain), Some(&flags)) = (le_u64(d, 0), le_u32(d, 8), d.get(12)) else {
        return Err(malformed(ev, format!("{} bytes, need 13", d.len())));
    };
    Ok(EventKind::TransactionStart {
        gtid: Some(Gtid::MariaDb {
            domain,
            server,
            seq,
        }),
        commit_us: None,
        standalone: flags & mariadb::FL_STANDALONE != 0,
    })
}

/// MariaDB GTID_LIST event: count (4, low 28 bits), then count × (domain 4, server 4, seq 8).
fn decode_mariadb_gtid_list(ev: &Event) -> Result<EventKind, DecodeError> {
    let d = ev.data();
    let Some(count) = le_u32(d, 0) else {
        return Err(malformed(ev, "no count"));
    };
    let count = (count & 0x0fff_ffff) as usize;
    let need = 4 + count.saturating_mul(16);
    if d.len() < need {
        return Err(malformed(
            ev,
            format!("{count} GTIDs need {need} bytes, have {}", d.len()),
        ));
    }
    let mut list = Vec::with_capacity(count);
    for i in 0..count {
        let at = 4 + i * 16;
        let (Some(domain), Some(server), Some(seq)) =
            (le_u32(d, at), le_u32(d, at + 4), le_u64(d, at + 8))
        else {
            return Err(malformed(ev, "short GTID entry"));
        };
        list.push(Gtid::MariaDb {
            domain,
            server,
            seq,
        });
    }
    Ok(EventKind::GtidList(list))
}

#[cfg(test)]
mod test;

#[cfg(test)]
mod rotate_test {
    #[test]
    fn fake_rotate_checksum_is_not_part_of_the_name() {
        assert_eq!(
            super::rotate_name(b"binlog.000001\x9a\x01\xffn"),
            "binlog.000001"
        );
        assert_eq!(super::rotate_name(b"binlog.000001"), "binlog.000001");
        assert_eq!(super::rotate_name(b"mysql-bin.000123"), "mysql-bin.000123");
    }
}
