//! Tails the primary's binlog and measures every replica's lag to the millisecond.
//!
//! Embed it ([`LagReader::spawn`] → [`LagHandle::snapshot`]) or run the `rwsplit-binlog-reader`
//! sidecar, which serves the same snapshot as `/lag` JSON ([`snapshot`] documents the format),
//! Prometheus `/metrics` ([`metrics`] lists the names) and `/healthz`.
#![forbid(unsafe_code)]

mod apply;
pub mod config_file;
pub mod decode;
pub mod file;
pub mod follow;
pub mod http;
pub mod metrics;
pub mod poll;
pub mod position;
pub mod reader;
pub mod secret;
pub mod snapshot;
pub mod start;
pub mod state;
pub mod stream;
#[cfg(test)]
mod testdata;
pub mod timeline;
pub mod tls;

pub use reader::{LagHandle, LagReader, Positions, StartError};
pub use snapshot::{LagSnapshot, PrimaryStatus, ReplicaLag};
pub use state::Transaction;
