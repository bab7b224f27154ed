//! What one session may hold, whatever its client asks: packets up to
//! `proxy.max_allowed_packet`, at most `proxy.max_prepared_statements` statements, long data
//! up to `proxy.max_allowed_packet` in all, and buffers that shrink back after a large packet,
//! each refused with the error a server gives for it.

use super::{Error, Session};
use crate::protocol::consts::code;
use crate::protocol::packet::{skip_rest, Oversize};
use std::time::Duration;

/// A buffer with more capacity than this after a command is shrunk: one large statement must
/// not keep its memory for the session's lifetime.
pub const SHRINK_ABOVE: usize = 1 << 20;
/// What a shrunk buffer keeps (enough for typical statements without regrowing).
pub const SHRINK_TO: usize = 16 * 1024;

/// How long the proxy reads past a packet it refused, so that the client, which writes a
/// whole packet before it reads, is not cut off mid-write and does see the error.
const SKIP_TIMEOUT: Duration = Duration::from_secs(10);

/// A session's limits (read from the configuration once, when it starts) and its usage.
#[derive(Debug)]
pub(super) struct Limits {
    /// `proxy.max_allowed_packet`.
    pub max_packet: usize,
    /// `proxy.max_prepared_statements`.
    pub max_stmts: usize,
    /// Long-data bytes buffered across all statements, bounded by `max_packet`.
    pub long_data: usize,
    /// `proxy.query_timeout_ms` (`None`: statements run as long as they take).
    pub query_timeout: Option<std::time::Duration>,
}

impl Limits {
    pub fn new(cfg: &router::config::ProxyConfig) -> Limits {
        Limits {
            max_packet: cfg.max_allowed_packet,
            max_stmts: cfg.max_prepared_statements,
            long_data: 0,
            query_timeout: (cfg.query_timeout_ms > 0)
                .then(|| std::time::Duration::from_millis(cfg.query_timeout_ms)),
        }
    }

    /// Whether `more` long-data bytes fit beside what the session holds.
    pub fn long_data_fits(&self, more: usize) -> bool {
        self.long_data.saturating_add(more) <= self.max_packet
    }
}

/// Gives back a buffer's memory after a large packet (keeps [`SHRINK_TO`]); a no-op otherwise.
pub fn shrink(buf: &mut Vec<u8>) {
    if buf.capacity() > SHRINK_ABOVE {
        buf.clear();
        buf.shrink_to(SHRINK_TO);
    }
}

/// The message of ER_MAX_PREPARED_STMT_COUNT_REACHED, as a server words it.
pub fn too_many_statements(limit: usize) -> String {
    format!("Can't create more than max_prepared_stmt_count statements (current value: {limit})")
}

/// What a server answers the execution of a statement whose long data exceeded
/// `max_allowed_packet` (ER_UNKNOWN_ERROR, measured on MariaDB 10.11 and MySQL 8).
pub const LONG_DATA_TOO_LARGE: &str = "Parameter of prepared statement which is set through \
     mysql_send_long_data() is longer than 'max_allowed_packet' bytes";

impl Session {
    /// After each command: buffers that grew with a large packet shrink back.
    pub(super) fn shrink_buffers(&mut self) {
        shrink(&mut self.cmd);
        shrink(&mut self.out);
        shrink(&mut self.frame);
    }

    /// A client packet over `proxy.max_allowed_packet`: read past it (discarding, within
    /// [`SKIP_TIMEOUT`]), answer ER_NET_PACKET_TOO_LARGE in step, and end the session, as a
    /// server does.
    pub(super) async fn packet_too_large(&mut self, o: Oversize) -> Result<(), Error> {
        let budget = crate::protocol::consts::MAX_FRAME * 64;
        let skipped = tokio::time::timeout(SKIP_TIMEOUT, skip_rest(&mut self.stream, o, budget))
            .await
            .ok()
            .and_then(Result::ok)
            .flatten();
        if let Some(last) = skipped {
            let (c, st) = code::ER_NET_PACKET_TOO_LARGE;
            let msg = "Got a packet bigger than 'max_allowed_packet' bytes";
            let _ = self.send_err(last.wrapping_add(1), c, st, msg).await;
        }
        Err(crate::protocol::Error::TooLarge(o).into())
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn buffers_shrink_after_a_large_packet_only() {
        let mut small = Vec::with_capacity(64 * 1024);
        small.extend_from_slice(b"SELECT 1");
        shrink(&mut small);
        assert_eq!(small, b"SELECT 1", "a small buffer is left alone");
        assert!(small.capacity() >= 64 * 1024);

        let mut big = vec![0u8; 8 << 20];
        shrink(&mut big);
        assert!(big.is_empty());
        assert!(big.capacity() <= SHRINK_TO, "{}", big.capacity());
        big.extend_from_slice(b"next");
        assert_eq!(big, b"next", "still usable");
    }

    #[test]
    fn long_data_bound_is_the_packet_limit() {
        let mut l = Limits {
            max_packet: 1000,
            max_stmts: 1,
            long_data: 0,
            query_timeout: None,
        };
        assert!(l.long_data_fits(1000));
        l.long_data = 600;
        assert!(l.long_data_fits(400));
        assert!(!l.long_data_fits(401));
        assert!(!l.long_data_fits(usize::MAX));
    }

    #[test]
    fn messages_are_the_servers() {
        assert_eq!(
            too_many_statements(16382),
            "Can't create more than max_prepared_stmt_count statements (current value: 16382)"
        );
        assert!(LONG_DATA_TOO_LARGE
            .contains("mysql_send_long_data() is longer than 'max_allowed_packet' bytes"));
    }
}
