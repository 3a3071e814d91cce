//! The primary-key map: a 128-bit hash of each key to the row that holds its latest version and
//! that version's comparison value, in 32 bytes a key plus the hash table's few bytes of index.
//!
//! Entries live in fixed-size chunks (no doubling of a large vector as the map grows) and the
//! hash table holds only their 4-byte slot numbers.

use hashbrown::HashTable;

/// Entries a chunk holds.
const CHUNK: usize = 1 << 16;

/// A primary key's hash (xxh3-128 of its values' row encoding).
pub(crate) type Key = u128;

/// Where a row is: the table-local segment id (high 32 bits) and the row in it (low 32 bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Loc(pub u64);

impl Loc {
    pub(crate) fn new(segment: u32, row: u32) -> Loc {
        Loc((u64::from(segment) << 32) | u64::from(row))
    }

    pub(crate) fn segment(self) -> u32 {
        (self.0 >> 32) as u32
    }

    pub(crate) fn row(self) -> usize {
        (self.0 & 0xFFFF_FFFF) as usize
    }
}

/// One key's entry.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Entry {
    key_lo: u64,
    key_hi: u64,
    /// The row of the key's latest version.
    pub loc: u64,
    /// Its comparison value: order-preserving bits of a number, or a slot of the map's owner
    /// for other values.
    pub cmp: u64,
}

impl Entry {
    fn key(&self) -> Key {
        (u128::from(self.key_hi) << 64) | u128::from(self.key_lo)
    }
}

/// The map.
#[derive(Default)]
pub(crate) struct KeyMap {
    index: HashTable<u32>,
    chunks: Vec<Box<[Entry]>>,
    /// Slots used so far (free ones below it are in `free`).
    used: usize,
    free: Vec<u32>,
}

impl std::fmt::Debug for KeyMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyMap").field("keys", &self.len()).finish()
    }
}

impl KeyMap {
    fn entry(&self, slot: u32) -> &Entry {
        let slot = slot as usize;
        &self.chunks[slot / CHUNK][slot % CHUNK]
    }

    /// The entry in `slot`, to change its location or comparison value.
    pub(crate) fn entry_mut(&mut self, slot: u32) -> &mut Entry {
        let slot = slot as usize;
        &mut self.chunks[slot / CHUNK][slot % CHUNK]
    }

    /// The slot and entry of `key`.
    pub(crate) fn get(&self, key: Key) -> Option<(u32, Entry)> {
        let slot = *self.index.find(key as u64, |&s| self.entry(s).key() == key)?;
        Some((slot, *self.entry(slot)))
    }

    /// Adds `key` (which must not be in the map).
    pub(crate) fn insert(&mut self, key: Key, loc: Loc, cmp: u64) -> u32 {
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                if self.used == self.chunks.len() * CHUNK {
                    self.chunks.push(vec![Entry::default(); CHUNK].into_boxed_slice());
                }
                self.used += 1;
                (self.used - 1) as u32
            }
        };
        *self.entry_mut(slot) = Entry { key_lo: key as u64, key_hi: (key >> 64) as u64, loc: loc.0, cmp };
        let chunks = &self.chunks;
        self.index.insert_unique(key as u64, slot, |&s| {
            let s = s as usize;
            chunks[s / CHUNK][s % CHUNK].key_lo
        });
        slot
    }

    /// Removes the entry in `slot`.
    pub(crate) fn remove(&mut self, slot: u32) {
        let key = self.entry(slot).key();
        if let Ok(found) = self.index.find_entry(key as u64, |&s| s == slot) {
            found.remove();
            self.free.push(slot);
        }
    }

    /// Keys held.
    pub(crate) fn len(&self) -> usize {
        self.index.len()
    }

    /// Every (slot, entry).
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u32, Entry)> + '_ {
        self.index.iter().map(|&s| (s, *self.entry(s)))
    }

    /// Bytes the map holds: entry chunks, free list and the hash table's buckets (a slot number
    /// and a control byte each).
    pub(crate) fn memory_bytes(&self) -> usize {
        let buckets = if self.index.capacity() == 0 {
            0
        } else {
            // hashbrown keeps at most 7/8 of its (power of two) buckets full.
            (self.index.capacity() * 8 / 7).next_power_of_two()
        };
        self.chunks.len() * CHUNK * size_of::<Entry>()
            + self.free.capacity() * size_of::<u32>()
            + buckets * (size_of::<u32>() + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_found_replaced_and_removed() {
        let mut map = KeyMap::default();
        for k in 0..200_000u128 {
            map.insert(k * 7919 + (k << 70), Loc::new(k as u32 % 5, k as u32), k as u64);
        }
        assert_eq!(map.len(), 200_000);
        let (slot, e) = map.get(42 * 7919 + (42 << 70)).expect("present");
        assert_eq!((Loc(e.loc).segment(), Loc(e.loc).row(), e.cmp), (2, 42, 42));
        map.entry_mut(slot).cmp = 7;
        assert_eq!(map.get(42 * 7919 + (42 << 70)).map(|(_, e)| e.cmp), Some(7));
        map.remove(slot);
        assert!(map.get(42 * 7919 + (42 << 70)).is_none());
        assert_eq!(map.len(), 199_999);
        // The freed slot is used again.
        let again = map.insert(5, Loc::new(0, 0), 0);
        assert_eq!(again, slot);
        assert!(map.get(5).is_some());
        assert!(map.memory_bytes() / map.len() < 64, "{} bytes a key", map.memory_bytes() / map.len());
    }
}
