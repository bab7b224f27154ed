//! The bounded session-command history (MaxScale's term): `USE`, `SET NAMES`, session variables,
//! replayed in order on any backend connection before the session's first statement there.

/// Replayable session commands, with later assignments of a variable replacing earlier ones.
#[derive(Debug, Clone)]
pub struct History {
    entries: Vec<Entry>,
    max: usize,
    generation: u64,
    overflowed: bool,
}

#[derive(Debug, Clone)]
struct Entry {
    /// What the entry sets (lowercased variable name, `use`, `names`...): a later entry with the
    /// same key replaces it.
    key: Box<[u8]>,
    /// The command text to replay.
    text: Box<[u8]>,
}

impl History {
    pub fn new(max: usize) -> Self {
        Self {
            entries: Vec::new(),
            max,
            generation: 0,
            overflowed: false,
        }
    }

    /// The commands, oldest first.
    pub fn commands(&self) -> impl Iterator<Item = &[u8]> {
        self.entries.iter().map(|e| &*e.text)
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// True once more distinct commands were recorded than the bound: no backend other than
    /// the current one can be brought up to date.
    pub fn overflowed(&self) -> bool {
        self.overflowed
    }
}
