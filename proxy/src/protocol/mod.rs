//! The proxy's own small MySQL wire codec: framing, the handful of packets the proxy must
//! understand, and the streaming relay of responses.

pub mod consts;
pub mod message;
pub mod packet;
pub mod relay;
pub mod session_track;
pub mod stall;
pub mod timer;
pub mod transport;

pub use timer::lazy_timeout;

/// What can go wrong reading or writing packets.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The peer closed the connection between packets.
    #[error("connection closed")]
    Closed,
    /// A packet larger than the proxy accepts (`max_allowed_packet`); its unread rest can be
    /// skipped with [`packet::skip_rest`].
    #[error("packet of {0} bytes exceeds the limit")]
    TooLarge(packet::Oversize),
    /// A packet that does not parse as what the protocol requires here.
    #[error("malformed packet: {0}")]
    Malformed(&'static str),
}
