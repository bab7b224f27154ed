//! binlog reader
