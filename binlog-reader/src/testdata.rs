//! The real binlog files the unit tests decode, kept in `binlog-reader/testdata/binlogs`
//! (testdata/README.md says which server wrote each and what it exercises).

use std::path::PathBuf;

/// The bytes of `testdata/binlogs/<name>`; panics with the path and where to look if it is missing.
pub(crate) fn binlog(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/binlogs")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "test data {} is missing ({e}): see binlog-reader/testdata/README.md",
            path.display()
        )
    })
}
