//! Streams one command's response from a backend to a client, frame by frame, reading only the
//! bytes that mark where results end (first byte, column count, EOF/OK status flags).
//!
//! Nothing is buffered beyond one frame and nothing is re-encoded: the client receives the
//! backend's bytes, including sequence ids, exactly as they were sent.

use super::consts::{status, MAX_FRAME};
use super::message::{self, is_eof, lenenc_int};
use super::packet::{read_header, Header};
use super::session_track::{self, Strip};
use std::pin::Pin;
use std::time::Duration;
use tokio::io::{
    AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt,
};

/// How far a relay got: once `forwarded` is set a failure can no longer be retried elsewhere,
/// and `last_seq` is what an ERR sent in place of the rest must follow.
#[derive(Debug, Clone, Copy, Default)]
pub struct Progress {
    pub forwarded: bool,
    pub last_seq: u8,
    /// Result-set rows relayed so far (for `/admin/top`).
    pub rows: u64,
    /// Result sets begun so far (`FOUND_ROWS()` is known only after exactly one).
    pub results: u32,
}

/// The shape of the response a command gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// COM_QUERY / COM_STMT_EXECUTE: OK, ERR, LOCAL INFILE request, or result sets, possibly
    /// several (`SERVER_MORE_RESULTS_EXISTS`).
    Results,
    /// COM_FIELD_LIST / COM_STMT_FETCH: rows or column definitions up to an EOF, or ERR.
    UntilEof,
    /// A single packet (OK, ERR, EOF or COM_STATISTICS' string).
    Single,
}

/// How a response ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Completed; the status flags of the last OK/EOF (0 if the end packet carried none), the
    /// last non-zero insert id an OK packet reported, the last result's warning count, and its
    /// affected rows (`None` when it was a result set: `ROW_COUNT()` is then -1).
    Ok {
        status: u16,
        last_insert_id: u64,
        warnings: u16,
        affected_rows: Option<u64>,
    },
    /// The backend answered with an ERR packet (which the client has received).
    Err { code: u16 },
}

/// Where a relay failed: the caller must tell a dead backend from a dead client.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("backend: {0}")]
    Backend(std::io::Error),
    #[error("client: {0}")]
    Client(std::io::Error),
    /// The backend sent bytes that do not fit the protocol.
    #[error("backend sent a malformed response")]
    Malformed,
    /// The backend sent nothing for longer than the read timeout.
    #[error("backend sent nothing for {0:?}")]
    Timeout(Duration),
    /// The health monitor found the backend hung while the statement waited on it.
    #[error("the server stopped answering its health checks")]
    Hung,
}

impl RelayError {
    fn backend(e: super::Error) -> RelayError {
        match e {
            super::Error::Io(e) => RelayError::Backend(e),
            super::Error::Closed => RelayError::Backend(std::io::ErrorKind::UnexpectedEof.into()),
            _ => RelayError::Malformed,
        }
    }
}

#[derive(Clone, Copy)]
enum Phase {
    First,
    Columns(u64),
    ColumnsEof,
    Rows,
}

/// What one complete (non-continuation) packet means for the response.
enum Step {
    /// More packets follow.
    More,
    /// The response is complete.
    Done(End),
    /// A LOCAL INFILE request: the client uploads a file before the server answers.
    Infile,
}

/// Where one response stands; fed each packet that starts a logical packet.
struct Tracker {
    shape: Shape,
    deprecate_eof: bool,
    phase: Phase,
    last_insert_id: u64,
    /// Rows seen in result sets.
    rows: u64,
    /// Result sets begun.
    results: u32,
}

/// The end of a response from its final OK packet.
fn ok_end(ok: &message::Ok, last_insert_id: u64) -> End {
    End::Ok {
        status: ok.status,
        last_insert_id,
        warnings: ok.warnings,
        affected_rows: Some(ok.affected_rows),
    }
}

/// The end of a response from the OK/EOF packet that closes a result set.
fn rows_end(p: &[u8], last_insert_id: u64) -> End {
    let (status, warnings) = end_packet_flags(p);
    End::Ok {
        status,
        last_insert_id,
        warnings,
        affected_rows: None,
    }
}

impl Tracker {
    fn new(shape: Shape, deprecate_eof: bool) -> Tracker {
        let phase = match shape {
            Shape::Results | Shape::Single => Phase::First,
            Shape::UntilEof => Phase::Rows,
        };
        Tracker {
            shape,
            deprecate_eof,
            phase,
            last_insert_id: 0,
            rows: 0,
            results: 0,
        }
    }

    /// True when `p` (a frame of `len` bytes starting a logical packet) is an OK packet, final
    /// or between results, that carries session-state information.
    fn ok_with_state(&self, p: &[u8], len: usize) -> bool {
        let ok = match (self.shape, self.phase) {
            (Shape::Single, _) | (Shape::Results, Phase::First) => p.first() == Some(&0x00),
            (_, Phase::Rows) => self.deprecate_eof && is_eof(p, len, true),
            _ => false,
        };
        ok && session_track::ok_status(p).is_some_and(|st| st & status::SESSION_STATE_CHANGED != 0)
    }

    /// True when `p` (a frame of `len` bytes starting a logical packet) could be the one that
    /// ends the response (OK, ERR, EOF): a held response takes the frame-by-frame path there.
    /// Cheap and may say yes too often; never no for an end.
    fn may_end(&self, p: &[u8], len: usize) -> bool {
        match (self.shape, self.phase) {
            (Shape::Single, _) => true,
            (_, Phase::First) => matches!(p.first(), Some(0x00 | 0xff)),
            (_, Phase::ColumnsEof) => p.first() == Some(&0xfe),
            (_, Phase::Rows) => p.first() == Some(&0xff) || is_eof(p, len, self.deprecate_eof),
            (_, Phase::Columns(_)) => false,
        }
    }

    /// True while the next packet is the first of a result (where 0xFB means LOCAL INFILE).
    fn at_first_packet(&self) -> bool {
        self.shape == Shape::Results && matches!(self.phase, Phase::First)
    }

    /// `p` is the first frame's payload, `len` its length (as framed).
    fn step(&mut self, p: &[u8], len: usize) -> Result<Step, RelayError> {
        if self.shape == Shape::Single {
            return Ok(Step::Done(match p.first() {
                Some(0xff) => End::Err { code: err_code(p) },
                Some(0x00) => {
                    let ok = message::parse_ok(p).unwrap_or_default();
                    ok_end(&ok, ok.last_insert_id)
                }
                Some(0xfe) if len < 9 => rows_end(p, 0),
                _ => End::Ok {
                    status: 0,
                    last_insert_id: 0,
                    warnings: 0,
                    affected_rows: None,
                },
            }));
        }
        match self.phase {
            Phase::First => match p.first() {
                Some(0x00) => {
                    let ok = message::parse_ok(p).ok_or(RelayError::Malformed)?;
                    if ok.last_insert_id != 0 {
                        self.last_insert_id = ok.last_insert_id;
                    }
                    if !message::more_results(ok.status) {
                        return Ok(Step::Done(ok_end(&ok, self.last_insert_id)));
                    }
                }
                Some(0xff) => return Ok(Step::Done(End::Err { code: err_code(p) })),
                Some(0xfb) => return Ok(Step::Infile),
                Some(_) => {
                    let (n, _) = lenenc_int(p).ok_or(RelayError::Malformed)?;
                    if n == 0 {
                        return Err(RelayError::Malformed);
                    }
                    self.results += 1;
                    self.phase = Phase::Columns(n);
                }
                None => return Err(RelayError::Malformed),
            },
            Phase::Columns(n) => {
                self.phase = if n > 1 {
                    Phase::Columns(n - 1)
                } else if self.deprecate_eof {
                    Phase::Rows
                } else {
                    Phase::ColumnsEof
                };
            }
            Phase::ColumnsEof => {
                if p.first() != Some(&0xfe) {
                    return Err(RelayError::Malformed);
                }
                let st = message::parse_eof_status(p).unwrap_or(0);
                if st & status::CURSOR_EXISTS != 0 {
                    // A cursor was opened: rows come later through COM_STMT_FETCH.
                    return Ok(Step::Done(rows_end(p, self.last_insert_id)));
                }
                self.phase = Phase::Rows;
            }
            Phase::Rows => {
                if p.first() == Some(&0xff) {
                    return Ok(Step::Done(End::Err { code: err_code(p) }));
                }
                if !is_eof(p, len, self.deprecate_eof) {
                    self.rows += 1;
                } else {
                    let (st, _) = end_packet_flags(p);
                    if message::more_results(st) && st & status::CURSOR_EXISTS == 0 {
                        self.phase = Phase::First;
                    } else {
                        return Ok(Step::Done(rows_end(p, self.last_insert_id)));
                    }
                }
            }
        }
        Ok(Step::More)
    }
}

/// What the relay does with OK packets that carry session state: records the GTIDs they
/// report (see [`session_track`]), removes what the client did not ask for, and with `hold`
/// keeps back the final packet of a response that committed something (write quorum: the
/// caller sends it once enough replicas have the commit). That final packet is the commit's OK,
/// or for a multi-statement such as `INSERT …; SELECT …` whatever ends the whole response (the
/// last result set's EOF/OK, or an ERR): only that one packet is kept, the rows before it
/// stream as usual.
#[derive(Debug)]
pub struct Track {
    pub strip: Strip,
    /// GTIDs the response's OK packets reported, in order (a multi-statement may commit
    /// several); the caller takes them.
    pub gtids: Vec<String>,
    /// Keep back the final packet of a response that committed something.
    pub hold: bool,
    /// The packet kept back (sequence id, payload as the client is to see it).
    pub held: Option<(u8, Vec<u8>)>,
    out: Vec<u8>,
}

impl Track {
    pub fn new(strip: Strip) -> Track {
        Track {
            strip,
            gtids: Vec::new(),
            hold: false,
            held: None,
            out: Vec::new(),
        }
    }

    /// Looks at one OK packet with session state: records its GTID and rewrites it for the
    /// client into `out`. True when the client is to get `out` instead of the packet.
    fn ok(&mut self, p: &[u8]) -> bool {
        if let Some(g) = session_track::gtid(p) {
            self.gtids.push(String::from_utf8_lossy(g).into_owned());
        }
        session_track::rewrite(p, self.strip, &mut self.out)
    }

    /// Whether the packet that ends the response is to be kept back: something committed.
    fn holds_end(&self) -> bool {
        self.hold && !self.gtids.is_empty()
    }
}

/// Relays one response. `buf` is a reusable frame buffer; `forwarded` becomes true as soon as
/// any byte has been handed to the client writer (after that a failure cannot be retried
/// elsewhere). The client writer is not flushed except before reading a LOCAL INFILE upload.
///
/// Whole frames already in the backend's read buffer go to the client in one write, straight
/// from that buffer (a 100-row result usually arrives in one read and leaves in one write);
/// a frame that is not wholly buffered, a continued packet and a LOCAL INFILE request take the
/// frame-by-frame path.
pub async fn relay<B, C>(
    backend: &mut B,
    client: &mut C,
    buf: &mut Vec<u8>,
    shape: Shape,
    deprecate_eof: bool,
    timeout: Option<Duration>,
    progress: &mut Progress,
) -> Result<End, RelayError>
where
    B: AsyncBufRead + AsyncWrite + Unpin,
    C: AsyncRead + AsyncWrite + Unpin,
{
    relay_tracked(
        backend,
        client,
        buf,
        (shape, deprecate_eof),
        timeout,
        progress,
        None,
    )
    .await
}

/// [`relay`] that hands every OK packet with session state to `track` (which may replace it).
/// Such packets take the frame-by-frame path; everything else is forwarded as by [`relay`].
pub async fn relay_tracked<B, C>(
    backend: &mut B,
    client: &mut C,
    buf: &mut Vec<u8>,
    (shape, deprecate_eof): (Shape, bool),
    timeout: Option<Duration>,
    progress: &mut Progress,
    mut track: Option<&mut Track>,
) -> Result<End, RelayError>
where
    B: AsyncBufRead + AsyncWrite + Unpin,
    C: AsyncRead + AsyncWrite + Unpin,
{
    let mut tracker = Tracker::new(shape, deprecate_eof);
    let mut continuation = false;
    loop {
        if !continuation {
            // A timer only when the bytes are not buffered yet (see `timer.rs`).
            let avail = match timeout {
                Some(t) => super::lazy_timeout(t, backend.fill_buf())
                    .await
                    .ok_or(RelayError::Timeout(t))?,
                None => backend.fill_buf().await,
            }
            .map_err(RelayError::Backend)?;
            if avail.is_empty() {
                return Err(RelayError::Backend(
                    std::io::ErrorKind::UnexpectedEof.into(),
                ));
            }
            let mut off = 0;
            let mut outcome = None;
            while let Some(head) = avail.get(off..off + 4) {
                let h = Header::parse([head[0], head[1], head[2], head[3]]);
                let Some(p) = avail.get(off + 4..off + 4 + h.len) else {
                    break;
                };
                if h.continues()
                    || (tracker.at_first_packet() && p.first() == Some(&0xfb))
                    || (track.is_some() && tracker.ok_with_state(p, h.len))
                    || (track.as_deref().is_some_and(Track::holds_end) && tracker.may_end(p, h.len))
                {
                    break;
                }
                let step = tracker.step(p, h.len);
                off += 4 + h.len;
                progress.last_seq = h.seq;
                progress.rows = tracker.rows;
                progress.results = tracker.results;
                match step {
                    Ok(Step::More) => {}
                    Ok(Step::Done(end)) => {
                        outcome = Some(Ok(end));
                        break;
                    }
                    // Excluded above: the frame-by-frame path handles the upload.
                    Ok(Step::Infile) => {}
                    Err(e) => {
                        outcome = Some(Err(e));
                        break;
                    }
                }
            }
            if off > 0 {
                progress.forwarded = true;
                client
                    .write_all(&avail[..off])
                    .await
                    .map_err(RelayError::Client)?;
                Pin::new(&mut *backend).consume(off);
                match outcome {
                    Some(o) => return o,
                    None => continue,
                }
            }
        }
        let h = match timeout {
            Some(t) => super::lazy_timeout(t, read_header(backend))
                .await
                .ok_or(RelayError::Timeout(t))?,
            None => read_header(backend).await,
        }
        .map_err(RelayError::backend)?;
        buf.clear();
        buf.resize(h.len, 0);
        backend.read_exact(buf).await.map_err(RelayError::Backend)?;
        progress.forwarded = true;
        progress.last_seq = h.seq;
        let with_state =
            !continuation && !h.continues() && track.is_some() && tracker.ok_with_state(buf, h.len);
        let replaced = match track.as_deref_mut() {
            Some(t) if with_state => t.ok(buf),
            _ => false,
        };
        // Stepped before it is written: the packet that ends a response that committed
        // something is kept back for the write quorum instead.
        let step = (!continuation).then(|| tracker.step(buf, h.len));
        let ends = matches!(step, Some(Ok(Step::Done(_))));
        match track.as_deref_mut() {
            Some(t) if ends && t.holds_end() => {
                let bytes = if replaced { t.out.clone() } else { buf.clone() };
                t.held = Some((h.seq, bytes));
            }
            Some(t) if replaced => {
                let h2 = Header {
                    len: t.out.len(),
                    seq: h.seq,
                };
                client
                    .write_all(&h2.bytes())
                    .await
                    .map_err(RelayError::Client)?;
                client.write_all(&t.out).await.map_err(RelayError::Client)?;
            }
            _ => {
                client
                    .write_all(&h.bytes())
                    .await
                    .map_err(RelayError::Client)?;
                client.write_all(buf).await.map_err(RelayError::Client)?;
            }
        }
        let Some(step) = step else {
            continuation = h.continues();
            continue;
        };
        continuation = h.continues();
        progress.rows = tracker.rows;
        progress.results = tracker.results;
        match step? {
            Step::More => {}
            Step::Done(end) => return Ok(end),
            Step::Infile => {
                // LOCAL INFILE: the client uploads the file, then the server answers.
                client.flush().await.map_err(RelayError::Client)?;
                upload(client, backend, buf).await?;
                progress.last_seq = progress.last_seq.wrapping_add(1);
            }
        }
    }
}

/// Status flags and warning count of a packet ending rows: a classic EOF is exactly 5 bytes
/// (0xFE, warnings, status), anything longer is an OK with header 0xFE (CLIENT_DEPRECATE_EOF).
fn end_packet_flags(p: &[u8]) -> (u16, u16) {
    if p.len() == 5 {
        let warnings = u16::from_le_bytes([p[1], p[2]]);
        (message::parse_eof_status(p).unwrap_or(0), warnings)
    } else {
        message::parse_ok(p)
            .map(|o| (o.status, o.warnings))
            .unwrap_or((0, 0))
    }
}

fn err_code(p: &[u8]) -> u16 {
    match (p.get(1), p.get(2)) {
        (Some(a), Some(b)) => u16::from_le_bytes([*a, *b]),
        _ => 0,
    }
}

/// Copies the client's LOCAL INFILE packets to the backend up to the empty packet that ends
/// the file. A client that goes away ends the upload with an empty packet so the backend's
/// connection stays in step.
async fn upload<B, C>(client: &mut C, backend: &mut B, buf: &mut Vec<u8>) -> Result<(), RelayError>
where
    B: AsyncRead + AsyncWrite + Unpin,
    C: AsyncRead + AsyncWrite + Unpin,
{
    let mut expect_seq: Option<u8> = None;
    let mut continued = false;
    loop {
        let h = match read_header(client).await {
            Ok(h) => h,
            Err(_) => {
                let seq = expect_seq.unwrap_or(2);
                let _ = backend.write_all(&Header { len: 0, seq }.bytes()).await;
                let _ = backend.flush().await;
                return Err(RelayError::Client(std::io::ErrorKind::UnexpectedEof.into()));
            }
        };
        buf.clear();
        buf.resize(h.len, 0);
        client.read_exact(buf).await.map_err(RelayError::Client)?;
        backend
            .write_all(&h.bytes())
            .await
            .map_err(RelayError::Backend)?;
        backend.write_all(buf).await.map_err(RelayError::Backend)?;
        expect_seq = Some(h.seq.wrapping_add(1));
        if h.len == 0 && !continued {
            backend.flush().await.map_err(RelayError::Backend)?;
            return Ok(());
        }
        continued = h.len == MAX_FRAME;
    }
}

#[cfg(test)]
mod test;
