//! Replica choice: examples and properties.
