//! A segment's row bitmap that grows with the segment and hands queries an immutable copy,
//! made once per change.

use arrow::buffer::{BooleanBuffer, Buffer};

#[derive(Debug, Default, Clone)]
pub(crate) struct Bits {
    words: Vec<u64>,
    len: usize,
    /// The last copy handed out, while nothing changed since.
    copy: Option<BooleanBuffer>,
}

impl Bits {
    /// Rows covered.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Covers `len` rows (new ones unset).
    pub(crate) fn grow(&mut self, len: usize) {
        if len > self.len {
            self.words.resize(len.div_ceil(64), 0);
            self.len = len;
            self.copy = None;
        }
    }

    pub(crate) fn get(&self, row: usize) -> bool {
        row < self.len && self.words[row / 64] & (1 << (row % 64)) != 0
    }

    pub(crate) fn set(&mut self, row: usize, on: bool) {
        if row >= self.len {
            self.grow(row + 1);
        }
        let (word, bit) = (row / 64, 1u64 << (row % 64));
        let before = self.words[word];
        self.words[word] = if on { before | bit } else { before & !bit };
        if self.words[word] != before {
            self.copy = None;
        }
    }

    /// Set bits.
    #[cfg(test)]
    pub(crate) fn count(&self) -> usize {
        self.words.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// An immutable copy of the first `rows` bits (unset past the end).
    pub(crate) fn buffer(&mut self, rows: usize) -> BooleanBuffer {
        if rows == self.len
            && let Some(c) = &self.copy
        {
            return c.clone();
        }
        let mut words = self.words.clone();
        words.resize(rows.div_ceil(64).max(words.len()), 0);
        let buffer = BooleanBuffer::new(Buffer::from_vec(words), 0, rows);
        if rows == self.len {
            self.copy = Some(buffer.clone());
        }
        buffer
    }

    /// Bytes held.
    pub(crate) fn memory_bytes(&self) -> usize {
        self.words.capacity() * 8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_grow_change_and_copy() {
        let mut b = Bits::default();
        b.set(3, true);
        b.set(130, true);
        assert_eq!(b.len(), 131);
        let copy = b.buffer(131);
        b.set(3, false);
        assert!(copy.value(3) && copy.value(130) && !copy.value(4));
        assert!(!b.get(3) && b.get(130));
        assert_eq!(b.count(), 1);
        let longer = b.buffer(200);
        assert_eq!(longer.len(), 200);
        assert!(!longer.value(199) && longer.value(130));
    }
}
