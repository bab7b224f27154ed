//! Criterion benchmarks of the routing hot path (filled in below).
fn main() {}
