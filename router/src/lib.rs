//! Pure routing logic for rwsplit: which server may run each statement.
//!
//! This crate holds no sockets and no async runtime: the proxy feeds it statement text and
//! server status and acts on its answers, so every rule can be tested as plain data.
#![forbid(unsafe_code)]

pub mod config;
