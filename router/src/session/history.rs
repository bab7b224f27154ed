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

    /// The commands with the key each is recorded under (what it sets), oldest first.
    pub fn entries(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.entries.iter().map(|e| (&*e.key, &*e.text))
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

impl History {
    /// Records a command under `key`, replacing an earlier one with the same key.
    pub(crate) fn record(&mut self, key: &[u8], text: &[u8]) {
        self.entries.retain(|e| &*e.key != key);
        if self.entries.len() >= self.max {
            self.overflowed = true;
        } else {
            self.entries.push(Entry {
                key: key.into(),
                text: text.into(),
            });
        }
        self.generation += 1;
    }

    /// The session's state can no longer be reproduced elsewhere.
    pub(crate) fn poison(&mut self) {
        if !self.overflowed {
            self.overflowed = true;
            self.generation += 1;
        }
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}
