//! rwsplit-proxy as a library: the binary's pieces, so integration tests and benchmarks can run
//! the server in-process.
#![forbid(unsafe_code)]

pub mod context;
pub mod metrics;
