//! Offline parse throughput: framing, CRC32 verification and decoding of real binlog files
//! (binlog-reader/testdata/binlogs), in events per second of one core.
//!
//!     cargo bench -p binlog-reader --bench decode

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::path::PathBuf;

fn testdata(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/binlogs")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("read_file");
    for name in [
        "mariadb-bin.000001",
        "binlog_transaction_with_GTID_TAG.000001",
    ] {
        let bytes = testdata(name);
        let events = binlog_reader::file::read_file(&bytes).expect("parses");
        g.throughput(Throughput::Elements(events.len() as u64));
        g.bench_function(name, |b| {
            b.iter(|| binlog_reader::file::read_file(std::hint::black_box(&bytes)))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
