//! Fuzzes the classifier and the session state machine with arbitrary bytes (including invalid
//! UTF-8): nothing may panic, and a statement the classifier sends to the primary must never be
//! routed to a replica by the session.
#![no_main]

use libfuzzer_sys::fuzz_target;
use router::classify::{classify, split_statements, Target};
use router::session::{Session, SessionOptions};

fuzz_target!(|data: &[u8]| {
    let c = classify(data);
    let _ = c.reason.as_str();
    for piece in split_statements(data) {
        let _ = classify(piece);
    }
    // Treat the input as a conversation: statements separated by 0xFF, each followed by a
    // status-flags byte pair taken from the input.
    let mut s = Session::new(SessionOptions {
        read_only_transactions_on_replica: data.first().is_some_and(|b| b & 1 == 1),
        max_history: 8,
    });
    for chunk in data.split(|b| *b == 0xFF) {
        let (sql, flags) = match chunk.len() {
            0..=2 => (chunk, 0x0002),
            n => (&chunk[..n - 2], u16::from_le_bytes([chunk[n - 2], chunk[n - 1]])),
        };
        let class = classify(sql);
        let d = s.route_query(sql);
        if class.target == Target::Primary && !s.in_replica_transaction() {
            assert_eq!(d.target, Target::Primary, "{:?}", String::from_utf8_lossy(sql));
        }
        if flags & 0x8000 != 0 {
            s.on_err(flags);
        } else {
            s.on_ok(flags);
        }
        let stmt = s.on_prepare(sql);
        let _ = s.route_execute(&stmt);
        s.on_ok(flags);
        let _ = s.history().count();
        let _ = s.pins();
        if flags == 0x7777 {
            s.reset();
        }
    }
});
