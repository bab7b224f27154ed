//! Criterion benchmarks of what `/admin/top` costs each statement on the data path: the digest
//! (router's bench) plus one record in the sharded table — a digest already known (the common
//! case), and a stream of always-new digests into full shards (the worst case: an eviction
//! scan per statement).

use criterion::{criterion_group, criterion_main, Criterion};
use proxy::session::top::{Sample, Top};
use std::hint::black_box;
use std::time::Duration;

fn bench(c: &mut Criterion) {
    let top = Top::default();
    let sample = Sample {
        elapsed: Duration::from_micros(250),
        error: false,
        rows: 1,
        on_replica: true,
    };
    let text = "SELECT c FROM sbtest1 WHERE id = ?";
    c.bench_function("top/record_known_digest", |b| {
        b.iter(|| top.record(black_box(0x3088_b13e_73f3_fad1), text, &sample))
    });
    let full = Top::default();
    let mut n = 0u64;
    c.bench_function("top/record_new_digest_full_table", |b| {
        b.iter(|| {
            n += 1;
            full.record(
                black_box(n.wrapping_mul(0x9E37_79B9_7F4A_7C15)),
                text,
                &sample,
            )
        })
    });
    let mut buf = String::new();
    c.bench_function("top/digest_and_record_point_select", |b| {
        b.iter(|| {
            let h = router::classify::digest(
                black_box(b"SELECT c FROM sbtest1 WHERE id=5017"),
                &mut buf,
            );
            top.record(h, &buf, &sample)
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
