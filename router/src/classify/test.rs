//! Unit tests of the classifier's building blocks; the big statement table is in `tests/`.
