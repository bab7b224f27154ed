//! rwsplit-proxy as a library: the binary's pieces, so integration tests and benchmarks can run
//! the server in-process.
#![forbid(unsafe_code)]

pub mod admin;
pub mod audit;
pub mod config_watch;
pub mod consistency;
pub mod context;
pub mod ctl;
pub mod failover;
pub mod health;
pub mod metrics;
pub mod server;
// Data path (client protocol, backends, per-client routing).
pub mod backend;
pub mod frontend;
pub mod protocol;
pub mod session;
