//! Packet framing: a 3-byte little-endian length and a sequence id per frame; a logical packet
//! of 16 MiB − 1 bytes or more continues in the following frames (an exact multiple ends with
//! an empty frame).

use super::consts::MAX_FRAME;
use super::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// One frame header as it came off the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub len: usize,
    pub seq: u8,
}

impl Header {
    pub fn parse(h: [u8; 4]) -> Header {
        Header {
            len: usize::from(h[0]) | usize::from(h[1]) << 8 | usize::from(h[2]) << 16,
            seq: h[3],
        }
    }

    pub fn bytes(&self) -> [u8; 4] {
        [
            (self.len & 0xff) as u8,
            ((self.len >> 8) & 0xff) as u8,
            ((self.len >> 16) & 0xff) as u8,
            self.seq,
        ]
    }

    /// True when the next frame continues this packet.
    pub fn continues(&self) -> bool {
        self.len == MAX_FRAME
    }
}

/// Reads one frame header. A clean end of stream before the first byte is [`Error::Closed`].
pub async fn read_header<R: AsyncRead + Unpin>(r: &mut R) -> Result<Header, Error> {
    let mut h = [0u8; 4];
    let n = r.read(&mut h).await?;
    if n == 0 {
        return Err(Error::Closed);
    }
    if n < 4 {
        r.read_exact(&mut h[n..]).await?;
    }
    Ok(Header::parse(h))
}

/// Reads one frame into `buf` (replacing its contents) and returns its header.
pub async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
) -> Result<Header, Error> {
    let h = read_header(r).await?;
    buf.clear();
    buf.resize(h.len, 0);
    r.read_exact(buf).await?;
    Ok(h)
}

/// A packet refused for its size: how long it is known to be so far, and the frame whose body
/// is still unread. Displays as its length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Oversize {
    /// Bytes of the packet up to the end of the refused frame (more frames may follow).
    pub len: usize,
    pending: Header,
}

impl std::fmt::Display for Oversize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.len.fmt(f)
    }
}

/// Reads a whole logical packet into `buf`, joining continuation frames; returns the sequence
/// id of the last frame. Packets above `max` bytes are refused with [`Error::TooLarge`] as soon
/// as a frame header says so, before its body is read: the stream is then out of step until
/// [`skip_rest`] has read past the packet (or it is closed).
pub async fn read_packet<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> Result<u8, Error> {
    buf.clear();
    loop {
        let h = read_header(r).await?;
        let start = buf.len();
        if start + h.len > max {
            return Err(Error::TooLarge(Oversize {
                len: start + h.len,
                pending: h,
            }));
        }
        buf.resize(start + h.len, 0);
        r.read_exact(&mut buf[start..]).await?;
        if !h.continues() {
            return Ok(h.seq);
        }
    }
}

/// Reads and discards the rest of a packet [`read_packet`] refused, without holding it: at most
/// `budget` more bytes (a peer could send continuation frames for ever). Returns the sequence id
/// of the packet's last frame, so that an answer can follow in step, or `None` when the budget
/// ran out first.
pub async fn skip_rest<R: AsyncRead + Unpin>(
    r: &mut R,
    o: Oversize,
    mut budget: usize,
) -> Result<Option<u8>, Error> {
    let mut scratch = [0u8; 8 * 1024];
    let mut h = o.pending;
    loop {
        if h.len > budget {
            return Ok(None);
        }
        budget -= h.len;
        let mut left = h.len;
        while left > 0 {
            let n = left.min(scratch.len());
            r.read_exact(&mut scratch[..n]).await?;
            left -= n;
        }
        if !h.continues() {
            return Ok(Some(h.seq));
        }
        h = read_header(r).await?;
    }
}

/// Writes `payload` as one logical packet starting at sequence id `seq`, splitting it into
/// frames; returns the next sequence id. Does not flush.
pub async fn write_packet<W: AsyncWrite + Unpin>(
    w: &mut W,
    mut seq: u8,
    payload: &[u8],
) -> Result<u8, Error> {
    let mut rest = payload;
    loop {
        let n = rest.len().min(MAX_FRAME);
        w.write_all(&Header { len: n, seq }.bytes()).await?;
        w.write_all(&rest[..n]).await?;
        seq = seq.wrapping_add(1);
        rest = &rest[n..];
        if n < MAX_FRAME {
            return Ok(seq);
        }
    }
}

/// Appends `payload` framed as one logical packet to `out` (for small packets the proxy builds).
pub fn frame_into(out: &mut Vec<u8>, mut seq: u8, payload: &[u8]) -> u8 {
    let mut rest = payload;
    loop {
        let n = rest.len().min(MAX_FRAME);
        out.extend_from_slice(&Header { len: n, seq }.bytes());
        out.extend_from_slice(&rest[..n]);
        seq = seq.wrapping_add(1);
        rest = &rest[n..];
        if n < MAX_FRAME {
            return seq;
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[tokio::test]
    async fn small_packet_round_trips() {
        let mut wire = Vec::new();
        let next = write_packet(&mut wire, 3, b"hello").await.unwrap();
        assert_eq!(next, 4);
        assert_eq!(&wire[..4], &[5, 0, 0, 3]);
        let mut buf = Vec::new();
        let seq = read_packet(&mut &wire[..], &mut buf, 1 << 30)
            .await
            .unwrap();
        assert_eq!((seq, buf.as_slice()), (3, &b"hello"[..]));
    }

    #[tokio::test]
    async fn big_packet_is_split_and_joined() {
        for len in [MAX_FRAME - 1, MAX_FRAME, MAX_FRAME + 10, 2 * MAX_FRAME] {
            let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let mut wire = Vec::new();
            let next = write_packet(&mut wire, 0, &payload).await.unwrap();
            let frames = len / MAX_FRAME + 1;
            assert_eq!(usize::from(next), frames, "len {len}");
            assert_eq!(wire.len(), len + 4 * frames);
            let mut framed = Vec::new();
            frame_into(&mut framed, 0, &payload);
            assert_eq!(framed, wire);
            let mut buf = Vec::new();
            let seq = read_packet(&mut &wire[..], &mut buf, 1 << 30)
                .await
                .unwrap();
            assert_eq!(usize::from(seq), frames - 1);
            assert!(buf == payload, "len {len}");
        }
    }

    #[tokio::test]
    async fn truncated_and_oversized_packets_are_errors() {
        let wire = [0xff, 0xff, 0xff, 0, 1, 2, 3];
        let mut buf = Vec::new();
        assert!(matches!(
            read_packet(&mut &wire[..], &mut buf, 1 << 30).await,
            Err(Error::Io(_))
        ));
        assert!(matches!(
            read_packet(&mut &wire[..], &mut buf, 100).await,
            Err(Error::TooLarge(_))
        ));
        assert!(matches!(
            read_packet(&mut &[][..], &mut buf, 100).await,
            Err(Error::Closed)
        ));
    }

    #[tokio::test]
    async fn an_oversized_packet_is_skipped_and_the_stream_stays_in_step() {
        let big: Vec<u8> = vec![7; MAX_FRAME + 100];
        let mut wire = Vec::new();
        let next = write_packet(&mut wire, 0, &big).await.unwrap();
        write_packet(&mut wire, 0, b"after").await.unwrap();
        let mut r = &wire[..];
        let mut buf = Vec::new();
        let Err(Error::TooLarge(o)) = read_packet(&mut r, &mut buf, 1000).await else {
            panic!("refused");
        };
        assert_eq!(o.len, MAX_FRAME);
        assert!(buf.capacity() < 1000, "nothing of the packet was buffered");
        assert_eq!(skip_rest(&mut r, o, 1 << 30).await.unwrap(), Some(next - 1));
        read_packet(&mut r, &mut buf, 1000).await.unwrap();
        assert_eq!(buf, b"after");
        // A budget smaller than the rest gives up.
        let mut r = &wire[..];
        let Err(Error::TooLarge(o)) = read_packet(&mut r, &mut buf, 1000).await else {
            panic!("refused");
        };
        assert_eq!(skip_rest(&mut r, o, 1000).await.unwrap(), None);
    }
}
