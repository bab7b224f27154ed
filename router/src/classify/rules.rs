//! The routing rules of DESIGN.md §2 applied to the scanner's tokens.

use super::{Classification, Effect, Reason, Target};

pub(super) fn classify(_sql: &[u8]) -> Classification {
    Classification::new(Target::Primary, Reason::Unparseable, Effect::None)
}
