//! Reads whole binlog files (tests, tools) without ever panicking. mysql_common's `Event::read`
//! assumes its input is well formed (it unwraps a short read and subtracts the checksum length
//! from any size), so every event's framing is checked here before it is handed over.

use crate::decode::{
    decode, le_u32, malformed, type_name, verify_checksum, DecodeError, CHECKSUM_LEN, HEADER_LEN,
};
use mysql_common::binlog::consts::{BinlogChecksumAlg, BinlogVersion, EventType};
use mysql_common::binlog::events::Event;
use std::io::Cursor;

/// Splits a whole binlog file into events, checking each event's framing first so that a
/// truncated or corrupt file is an error, never a panic. Checksums are verified.
pub fn read_file(bytes: &[u8]) -> Result<Vec<Event>, DecodeError> {
    if bytes.len() < 4 || &bytes[..4] != b"\xfebin" {
        return Err(DecodeError::NoMagic);
    }
    let mut esr = mysql_common::binlog::EventStreamReader::new(BinlogVersion::Version4);
    let mut events = Vec::new();
    let mut offset = 4;
    let mut checksummed = false;
    while offset < bytes.len() {
        let rest = &bytes[offset..];
        if rest.len() < HEADER_LEN {
            return Err(DecodeError::Truncated {
                offset,
                size: HEADER_LEN,
                available: rest.len(),
            });
        }
        let size = le_u32(rest, 9).unwrap_or(0) as usize;
        let is_fde = rest[4] == EventType::FORMAT_DESCRIPTION_EVENT as u8;
        if offset == 4 && !is_fde && rest[4] != EventType::START_EVENT_V3 as u8 {
            return Err(DecodeError::Malformed {
                kind: type_name(rest[4]),
                log_pos: le_u32(rest, 13).unwrap_or(0),
                message: "a binlog file must start with a format description event".into(),
            });
        }
        let min = HEADER_LEN
            + if checksummed && !is_fde {
                CHECKSUM_LEN
            } else {
                0
            };
        if size < min {
            return Err(DecodeError::BadSize { offset, size });
        }
        if size > rest.len() {
            return Err(DecodeError::Truncated {
                offset,
                size,
                available: rest.len(),
            });
        }
        let ev = esr
            .read(Cursor::new(&rest[..size]))
            .map_err(|e| DecodeError::Malformed {
                kind: type_name(rest[4]),
                log_pos: le_u32(rest, 13).unwrap_or(0),
                message: e.to_string(),
            })?;
        let Some(ev) = ev else { break };
        if is_fde {
            checksummed = matches!(
                ev.footer().get_checksum_alg(),
                Ok(Some(BinlogChecksumAlg::BINLOG_CHECKSUM_ALG_CRC32))
            );
        }
        verify_checksum(&ev)?;
        decode(&ev)?;
        // Compressed transaction payloads (MySQL 8.0.20+) hold the transaction's events.
        if ev.header().event_type_raw() == EventType::TRANSACTION_PAYLOAD_EVENT as u8 {
            let payload = ev
                .read_event::<mysql_common::binlog::events::TransactionPayloadEvent<'_>>()
                .map_err(|e| malformed(&ev, e))?;
            let mut inner = payload.decompressed().map_err(|e| malformed(&ev, e))?;
            let mut unpacked = Vec::new();
            loop {
                match esr.read_decompressed(&mut inner) {
                    Ok(Some(inner_ev)) => {
                        decode(&inner_ev)?;
                        unpacked.push(inner_ev);
                    }
                    Ok(None) => break,
                    Err(e) => {
                        return Err(DecodeError::Malformed {
                            kind: "transaction_payload",
                            log_pos: 0,
                            message: e.to_string(),
                        })
                    }
                }
            }
            drop(inner);
            drop(payload);
            events.push(ev);
            events.extend(unpacked);
        } else {
            events.push(ev);
        }
        offset += size;
    }
    Ok(events)
}
