//! Relay tests over in-memory pipes with responses shaped as MariaDB sends them.

use super::*;
use crate::protocol::consts::cap;
use crate::protocol::message::{eof_payload, err_payload, ok_payload, put_lenenc_str};
use crate::protocol::packet::frame_into;
use tokio::io::duplex;

fn column(name: &str) -> Vec<u8> {
    let mut p = Vec::new();
    for s in ["def", "db", "t", "t", name, name] {
        put_lenenc_str(&mut p, s.as_bytes());
    }
    p.extend_from_slice(&[0x0c, 0x21, 0, 0xff, 0, 0, 0, 0xfd, 0, 0, 0, 0, 0]);
    p
}

fn row(vals: &[&str]) -> Vec<u8> {
    let mut p = Vec::new();
    for v in vals {
        put_lenenc_str(&mut p, v.as_bytes());
    }
    p
}

/// A result set with `cols` columns and `rows` rows, framed from seq 1.
fn result_set(deprecate: bool, cols: usize, rows: &[Vec<u8>], end_status: u16) -> Vec<u8> {
    let caps = if deprecate { cap::DEPRECATE_EOF } else { 0 };
    let mut w = Vec::new();
    let mut seq = frame_into(&mut w, 1, &[cols as u8]);
    for i in 0..cols {
        seq = frame_into(&mut w, seq, &column(&format!("c{i}")));
    }
    if !deprecate {
        seq = frame_into(&mut w, seq, &eof_payload(0, status::AUTOCOMMIT));
    }
    for r in rows {
        seq = frame_into(&mut w, seq, r);
    }
    frame_into(&mut w, seq, &eof_payload(caps, end_status));
    w
}

async fn run(wire: Vec<u8>, shape: Shape, deprecate: bool) -> (Result<End, RelayError>, Vec<u8>) {
    run_buffered(wire, shape, deprecate, 16 * 1024).await
}

/// [`run`] with the backend read through a buffer of `capacity` bytes, so frames straddle
/// buffer refills wherever the capacity puts the boundaries.
async fn run_buffered(
    wire: Vec<u8>,
    shape: Shape,
    deprecate: bool,
    capacity: usize,
) -> (Result<End, RelayError>, Vec<u8>) {
    let (b_near, mut b_far) = duplex(1 << 26);
    let mut b_near = tokio::io::BufStream::with_capacity(capacity, capacity, b_near);
    let (mut c_near, mut c_far) = duplex(1 << 26);
    b_far.write_all(&wire).await.unwrap();
    drop(b_far);
    let mut buf = Vec::new();
    let mut progress = Progress::default();
    let r = relay(
        &mut b_near,
        &mut c_near,
        &mut buf,
        shape,
        deprecate,
        None,
        &mut progress,
    )
    .await;
    c_near.flush().await.unwrap();
    drop(c_near);
    let mut out = Vec::new();
    c_far.read_to_end(&mut out).await.unwrap();
    (r, out)
}

#[tokio::test]
async fn result_sets_are_forwarded_verbatim_both_eof_styles() {
    for deprecate in [false, true] {
        let rows = vec![row(&["1", "a"]), row(&["2", "b"])];
        let wire = result_set(deprecate, 2, &rows, status::AUTOCOMMIT);
        let (r, out) = run(wire.clone(), Shape::Results, deprecate).await;
        assert_eq!(
            r.unwrap(),
            End::Ok {
                status: status::AUTOCOMMIT,
                last_insert_id: 0,
                warnings: 0,
                affected_rows: None,
            }
        );
        assert_eq!(out, wire, "deprecate_eof={deprecate}");
    }
}

#[tokio::test]
async fn multi_results_continue_until_no_more_flag() {
    for deprecate in [false, true] {
        let mut wire = Vec::new();
        let ok = ok_payload(1, 42, status::AUTOCOMMIT | status::MORE_RESULTS_EXISTS, 0);
        frame_into(&mut wire, 1, &ok);
        let rs = result_set(
            deprecate,
            1,
            &[row(&["42"])],
            status::AUTOCOMMIT | status::MORE_RESULTS_EXISTS,
        );
        wire.extend_from_slice(&rs);
        frame_into(&mut wire, 9, &ok_payload(0, 0, status::IN_TRANS, 0));
        // Trailing bytes after the end must not be consumed.
        let (r, out) = run(wire.clone(), Shape::Results, deprecate).await;
        assert_eq!(
            r.unwrap(),
            End::Ok {
                status: status::IN_TRANS,
                last_insert_id: 42,
                warnings: 0,
                affected_rows: Some(0),
            }
        );
        assert_eq!(out, wire);
    }
}

#[tokio::test]
async fn err_mid_rows_ends_the_response() {
    let mut wire = Vec::new();
    let mut seq = frame_into(&mut wire, 1, &[1]);
    seq = frame_into(&mut wire, seq, &column("a"));
    seq = frame_into(&mut wire, seq, &row(&["x"]));
    frame_into(
        &mut wire,
        seq,
        &err_payload(1317, "70100", "Query execution was interrupted"),
    );
    let (r, out) = run(wire.clone(), Shape::Results, true).await;
    assert_eq!(r.unwrap(), End::Err { code: 1317 });
    assert_eq!(out, wire);
}

#[tokio::test]
async fn huge_row_spanning_frames_is_not_mistaken_for_an_end() {
    // A 20 MiB value: its row's first frame is full and starts with 0xFE (8-byte length).
    let big = "z".repeat(20 << 20);
    let rows = vec![row(&[&big]), row(&["small"])];
    let wire = result_set(true, 1, &rows, status::AUTOCOMMIT);
    let (r, out) = run(wire.clone(), Shape::Results, true).await;
    assert!(matches!(r.unwrap(), End::Ok { .. }));
    assert!(out == wire);
}

#[tokio::test]
async fn backend_closing_mid_result_is_a_backend_error() {
    let rows = vec![row(&["1"])];
    let mut wire = result_set(false, 1, &rows, 0);
    wire.truncate(wire.len() - 3);
    let (r, _) = run(wire, Shape::Results, false).await;
    assert!(matches!(r, Err(RelayError::Backend(_))), "{r:?}");
}

#[tokio::test]
async fn field_list_and_single_packets() {
    let mut wire = Vec::new();
    let seq = frame_into(&mut wire, 1, &column("a"));
    frame_into(&mut wire, seq, &eof_payload(0, status::AUTOCOMMIT));
    let (r, out) = run(wire.clone(), Shape::UntilEof, false).await;
    assert!(matches!(r.unwrap(), End::Ok { status: 2, .. }));
    assert_eq!(out, wire);

    let mut wire = Vec::new();
    frame_into(&mut wire, 1, b"Uptime: 5  Threads: 1");
    let (r, out) = run(wire.clone(), Shape::Single, false).await;
    assert!(matches!(r.unwrap(), End::Ok { .. }));
    assert_eq!(out, wire);
}

#[tokio::test]
async fn frames_straddling_buffer_refills_are_forwarded_verbatim() {
    let rows: Vec<Vec<u8>> = (0..100)
        .map(|i| row(&[&i.to_string(), &"x".repeat(i % 37)]))
        .collect();
    for deprecate in [false, true] {
        let mut wire = result_set(
            deprecate,
            2,
            &rows,
            status::AUTOCOMMIT | status::MORE_RESULTS_EXISTS,
        );
        // A second result (an OK) follows the first, as a CALL's final status does.
        frame_into(&mut wire, 1, &ok_payload(0, 0, status::AUTOCOMMIT, 0));
        for capacity in [1, 3, 4, 5, 7, 64, 1000, 1 << 16] {
            let (r, out) = run_buffered(wire.clone(), Shape::Results, deprecate, capacity).await;
            assert!(
                matches!(r, Ok(End::Ok { .. })),
                "capacity {capacity}: {r:?}"
            );
            assert!(out == wire, "capacity {capacity}, deprecate {deprecate}");
        }
    }
}

#[tokio::test]
async fn bytes_after_the_response_stay_for_the_next_command() {
    let mut wire = frame_into_vec(1, &ok_payload(1, 1, status::AUTOCOMMIT, 0));
    let next = frame_into_vec(1, &ok_payload(1, 2, status::AUTOCOMMIT, 0));
    wire.extend_from_slice(&next);
    let (b_near, mut b_far) = duplex(1 << 16);
    let mut backend = tokio::io::BufStream::new(b_near);
    b_far.write_all(&wire).await.unwrap();
    let (mut c_near, _c_far) = duplex(1 << 16);
    let mut buf = Vec::new();
    for want in [1, 2] {
        let mut progress = Progress::default();
        let r = relay(
            &mut backend,
            &mut c_near,
            &mut buf,
            Shape::Results,
            true,
            None,
            &mut progress,
        )
        .await;
        assert!(
            matches!(r, Ok(End::Ok { last_insert_id, .. }) if last_insert_id == want),
            "{r:?}"
        );
    }
}

fn frame_into_vec(seq: u8, payload: &[u8]) -> Vec<u8> {
    let mut w = Vec::new();
    frame_into(&mut w, seq, payload);
    w
}

/// An OK with `last_gtid` in its session state, as MariaDB sends it (captured; see
/// `session_track.rs`), with the given status.
fn ok_with_gtid(status_flags: u16, gtid: &str) -> Vec<u8> {
    let mut p = vec![0x00, 0x01, 0x00];
    p.extend_from_slice(&(status_flags | status::SESSION_STATE_CHANGED).to_le_bytes());
    p.extend_from_slice(&[0, 0, 0]); // warnings, empty info
    let mut entry = Vec::new();
    put_lenenc_str(&mut entry, b"last_gtid");
    put_lenenc_str(&mut entry, gtid.as_bytes());
    let mut block = vec![session_track::TRACK_SYSTEM_VARIABLES];
    put_lenenc_str(&mut block, &entry);
    put_lenenc_str(&mut p, &block);
    p
}

async fn run_tracked(wire: Vec<u8>, shape: Shape, strip: Strip) -> (End, Vec<u8>, Vec<String>) {
    let (end, out, track) = run_track(wire, shape, Track::new(strip)).await;
    (end, out, track.gtids)
}

async fn run_track(wire: Vec<u8>, shape: Shape, track: Track) -> (End, Vec<u8>, Track) {
    run_track_as(wire, (shape, true), track).await
}

/// Relays `wire` as a response of `shape` (with `deprecate_eof` as given) through `track`.
async fn run_track_as(
    wire: Vec<u8>,
    shape: (Shape, bool),
    mut track: Track,
) -> (End, Vec<u8>, Track) {
    let (b_near, mut b_far) = duplex(1 << 20);
    let mut b_near = tokio::io::BufStream::new(b_near);
    let (mut c_near, mut c_far) = duplex(1 << 20);
    b_far.write_all(&wire).await.unwrap();
    drop(b_far);
    let mut buf = Vec::new();
    let mut progress = Progress::default();
    let r = relay_tracked(
        &mut b_near,
        &mut c_near,
        &mut buf,
        shape,
        None,
        &mut progress,
        Some(&mut track),
    )
    .await
    .expect("relays");
    c_near.flush().await.unwrap();
    drop(c_near);
    let mut out = Vec::new();
    c_far.read_to_end(&mut out).await.unwrap();
    (r, out, track)
}

#[tokio::test]
async fn a_commits_final_ok_is_held_back_for_the_quorum() {
    let mut wire = Vec::new();
    let more = status::AUTOCOMMIT | status::MORE_RESULTS_EXISTS;
    let seq = frame_into(&mut wire, 1, &ok_with_gtid(more, "0-1-11"));
    frame_into(&mut wire, seq, &ok_with_gtid(status::AUTOCOMMIT, "0-1-12"));
    let mut track = Track::new(Strip::All);
    track.hold = true;
    let (_, out, track) = run_track(wire, Shape::Results, track).await;
    // The first OK went out; the last one waits, stripped, with its sequence id.
    let mut want = Vec::new();
    frame_into(&mut want, 1, &ok_payload(1, 0, more, 0));
    assert_eq!(out, want);
    assert_eq!(
        track.held,
        Some((2, ok_payload(1, 0, status::AUTOCOMMIT, 0)))
    );
    // A statement that committed nothing is never held.
    let mut wire = Vec::new();
    frame_into(&mut wire, 1, &ok_payload(0, 0, status::AUTOCOMMIT, 0));
    let mut track = Track::new(Strip::All);
    track.hold = true;
    let (_, out, track) = run_track(wire.clone(), Shape::Results, track).await;
    assert_eq!(out, wire);
    assert_eq!(track.held, None);
}

#[tokio::test]
async fn multi_statement_commits_are_all_tracked_and_stripped() {
    // INSERT; INSERT (autocommit): two OKs, the first with MORE_RESULTS.
    let mut wire = Vec::new();
    let more = status::AUTOCOMMIT | status::MORE_RESULTS_EXISTS;
    let seq = frame_into(&mut wire, 1, &ok_with_gtid(more, "0-1-11"));
    frame_into(&mut wire, seq, &ok_with_gtid(status::AUTOCOMMIT, "0-1-12"));
    let (end, out, gtids) = run_tracked(wire.clone(), Shape::Results, Strip::All).await;
    assert_eq!(gtids, ["0-1-11", "0-1-12"]);
    assert!(matches!(end, End::Ok { status: s, .. } if s & status::MORE_RESULTS_EXISTS == 0));
    // The client gets plain OKs, sequence ids kept.
    let mut want = Vec::new();
    let seq = frame_into(&mut want, 1, &ok_payload(1, 0, more, 0));
    frame_into(&mut want, seq, &ok_payload(1, 0, status::AUTOCOMMIT, 0));
    assert_eq!(out, want);
    // A client that asked for the GTID gets the bytes unchanged.
    let (_, out, gtids) = run_tracked(wire.clone(), Shape::Results, Strip::Nothing).await;
    assert_eq!(out, wire);
    assert_eq!(gtids.len(), 2);
}

#[tokio::test]
async fn rows_ending_ok_with_state_is_stripped_too() {
    // A result set whose DEPRECATE_EOF end (header 0xFE) carries session state.
    let mut wire = Vec::new();
    let mut seq = frame_into(&mut wire, 1, &[1]);
    seq = frame_into(&mut wire, seq, &column("c"));
    seq = frame_into(&mut wire, seq, &row(&["1"]));
    let mut end = ok_with_gtid(status::AUTOCOMMIT, "0-1-3");
    end[0] = 0xfe;
    frame_into(&mut wire, seq, &end);
    let (_, out, gtids) = run_tracked(wire, Shape::Results, Strip::All).await;
    assert_eq!(gtids, ["0-1-3"]);
    let mut want = Vec::new();
    let mut seq = frame_into(&mut want, 1, &[1]);
    seq = frame_into(&mut want, seq, &column("c"));
    seq = frame_into(&mut want, seq, &row(&["1"]));
    let mut plain = ok_payload(1, 0, status::AUTOCOMMIT, 0);
    plain[0] = 0xfe;
    frame_into(&mut want, seq, &plain);
    assert_eq!(out, want);
}

#[tokio::test]
async fn a_multi_statement_ending_with_rows_holds_only_its_last_packet() {
    // INSERT …; SELECT … (autocommit): the INSERT's OK commits, the SELECT's rows follow; the
    // response ends with the result set's EOF/OK (no session state of its own).
    for deprecate in [true, false] {
        let more = status::AUTOCOMMIT | status::MORE_RESULTS_EXISTS;
        let mut wire = Vec::new();
        frame_into(&mut wire, 1, &ok_with_gtid(more, "0-1-11"));
        let rows = [row(&["1"]), row(&["2"])];
        let rs = result_set(deprecate, 1, &rows, status::AUTOCOMMIT);
        // The result set's frames, renumbered from 2.
        let mut off = 0;
        let mut seq = 2u8;
        while off < rs.len() {
            let len = usize::from(rs[off]) | usize::from(rs[off + 1]) << 8;
            seq = frame_into(&mut wire, seq, &rs[off + 4..off + 4 + len]);
            off += 4 + len;
        }
        let last_seq = seq.wrapping_sub(1);
        let mut track = Track::new(Strip::All);
        track.hold = true;
        let (end, out, track) =
            run_track_as(wire.clone(), (Shape::Results, deprecate), track).await;
        assert!(matches!(end, End::Ok { .. }));
        assert_eq!(track.gtids, ["0-1-11"]);
        let caps = if deprecate { cap::DEPRECATE_EOF } else { 0 };
        let end_packet = eof_payload(caps, status::AUTOCOMMIT);
        assert_eq!(
            track.held,
            Some((last_seq, end_packet.clone())),
            "deprecate_eof {deprecate}"
        );
        // Everything else reached the client: the stripped OK, columns, rows.
        let mut want = Vec::new();
        frame_into(&mut want, 1, &ok_payload(1, 0, more, 0));
        let last_frame = 4 + end_packet.len();
        want.extend_from_slice(
            &wire[ok_with_gtid(more, "0-1-11").len() + 4..wire.len() - last_frame],
        );
        assert_eq!(out, want, "deprecate_eof {deprecate}");
    }
    // Without a commit, the same response streams through whole.
    let wire = result_set(true, 1, &[row(&["1"])], status::AUTOCOMMIT);
    let mut track = Track::new(Strip::All);
    track.hold = true;
    let (_, out, track) = run_track(wire.clone(), Shape::Results, track).await;
    assert_eq!(out, wire);
    assert_eq!(track.held, None);
}
