//! The sqlparser fallback for statements the scanner cannot place, with an LRU cache by text.
