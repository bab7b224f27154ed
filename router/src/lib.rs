//! Pure routing logic for rwsplit: which server may run each statement.
//!
//! This crate holds no sockets and no async runtime: the proxy feeds it statement text and
//! server status and acts on its answers, so every rule can be tested as plain data.
//!
//! - [`classify`]: what one statement needs (primary, replica, or the previous backend) and why.
//! - [`session`]: the per-client state machine (transactions, autocommit, temp tables, locks,
//!   prepared statements, session-variable history to replay on a newly used backend).
//! - [`choice`]: which replica serves a read, over a snapshot of the topology.
//! - [`config`]: the typed YAML configuration shared by both binaries.
//! - [`rules`]: operator query rules (match a statement, then route, bound, time or block it).
#![forbid(unsafe_code)]

pub mod choice;
pub mod classify;
pub mod config;
pub mod consistency;
pub mod rules;
pub mod session;

pub use choice::{Choice, FallbackReason, ServerState, TopologySnapshot};
pub use classify::{classify, Classification, Effect, Reason, Target};
pub use session::{Decision, Pins, Session, SessionOptions, StmtClass};
