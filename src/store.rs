//! Compact stores keyed by the u32 transaction id.
//!
//! Both stores split the id space into 65,536 *leaves* of 65,536 ids
//! (`leaf = id >> 16`, `slot = id & 0xFFFF`). A leaf with many ids gets a flat
//! array, allocated once; the few ids of other leaves are hashed.
//!
//! * [`TxIdSet`] (SPEC rule 2, ids claimed by deposits and withdrawals; the
//!   router's): the ids of a leaf sit in one shared hash table until the leaf
//!   holds [`BITSET_AT`] ids, then (from the table's next rebuild) in an 8 KiB
//!   bitset (512 MiB if every id appears).
//! * [`DepositStore`] (applied deposits, for disputes; a worker's): dense
//!   leaves of 6 bytes a slot, or sorted chunks of 8-byte entries; see
//!   `deposits.rs`.
//!
//! Why one shared set for ids: measured on scattered ids (perf.md, "Sparse
//! ids"), the shared table saves the router a dependent cache miss per
//! claim on random ids, and lets it prefetch the slot records ahead.

use crate::tx::TxId;

pub use crate::deposits::{Deposit, DepositStore};

pub(crate) const LEAF_BITS: u32 = 16;
/// Ids per leaf of either store.
pub(crate) const LEAF_IDS: usize = 1 << LEAF_BITS;
/// Leaves in the u32 id space.
pub(crate) const LEAVES: usize = 1 << (32 - LEAF_BITS);

#[inline]
fn split(id: TxId) -> (usize, usize) {
    ((id >> LEAF_BITS) as usize, (id as usize) & (LEAF_IDS - 1))
}

/// A leaf of [`TxIdSet`] becomes a bitset once it holds this many ids: by
/// then its ids cost more in the table (4 bytes a slot at 3/8 to 3/4 load
/// while the table only grows) than the 8 KiB bitset.
pub const BITSET_AT: u32 = 1_536;

/// The id table's smallest size in slots (16 KiB).
const MIN_SLOTS: usize = 4_096;

/// Per leaf of [`TxIdSet`]: where its ids are, and how many the table holds.
#[derive(Clone, Copy, Default)]
struct LeafIds {
    /// Index + 1 into `bitsets`, or 0 while the leaf's ids are in the table.
    bitset: u32,
    /// Ids of this leaf in the table.
    count: u32,
}

/// The set of tx ids claimed so far (SPEC rule 2), kept by the router.
///
/// The ids of a leaf (65,536 ids) live in one shared `IdTable` until the
/// leaf holds [`BITSET_AT`] ids; at the table's next rebuild the leaf becomes
/// an 8 KiB bitset. Leaf 0 (ids below 65,536: every file has some) is a
/// bitset from the start, which also keeps id 0, the table's empty mark, out
/// of the table.
///
/// Converting at the rebuild, a scan of the table that happens anyway, costs
/// nothing extra. Converting the moment a leaf filled meant looking up all
/// 65,536 ids of the leaf in the table: random ids below 2^27 (2,048 leaves
/// that fill together) ran 4x slower than sequential ids, now 1.45x (perf.md,
/// "Sparse ids, third step"). A plain paged bitset cost 8 KiB for the first id
/// of every leaf: random ids over u32 touch all 65,536 leaves (512 MiB).
pub struct TxIdSet {
    leaves: Box<[LeafIds]>,
    bitsets: Vec<Box<[u64]>>,
    table: IdTable,
    /// Leaves that reached [`BITSET_AT`] ids in the table; they become
    /// bitsets at the next rebuild.
    due: Vec<u16>,
}

impl Default for TxIdSet {
    fn default() -> Self {
        let mut set = TxIdSet {
            leaves: vec![LeafIds::default(); LEAVES].into(),
            bitsets: Vec::new(),
            table: IdTable::new(MIN_SLOTS, IdTable::random_keys()),
            due: Vec::new(),
        };
        set.add_bitset(0);
        set
    }
}

impl TxIdSet {
    /// Claims `id`; true if it was not claimed before.
    #[inline]
    pub fn claim(&mut self, id: TxId) -> bool {
        let (leaf, slot) = split(id);
        if self.leaves[leaf].bitset == 0 && self.table.is_full() {
            self.rebuild();
        }
        let entry = &mut self.leaves[leaf];
        if let Some(index) = entry.bitset.checked_sub(1) {
            return set_bit(&mut self.bitsets[index as usize], slot);
        }
        if !self.table.insert(id) {
            return false;
        }
        entry.count += 1;
        if entry.count == BITSET_AT {
            self.due.push(leaf as u16);
        }
        true
    }

    /// Starts loading the memory that `claim(id)` will read, so that a claim
    /// made some rows later does not wait for it.
    #[inline]
    pub fn prefetch(&self, id: TxId) {
        prefetch(&self.leaves[split(id).0]);
        self.table.prefetch(id);
    }

    /// Turns the due leaves into bitsets and moves every other id into a new
    /// table at most half full. The cost is linear in the old table, which
    /// took at least a quarter of its slots in claims to fill.
    #[cold]
    fn rebuild(&mut self) {
        let due = std::mem::take(&mut self.due);
        let leaving: usize = due
            .iter()
            .map(|&leaf| self.leaves[usize::from(leaf)].count as usize)
            .sum();
        for leaf in due {
            self.add_bitset(usize::from(leaf));
        }
        let staying = self.table.len - leaving;
        let slots = (staying * 2).next_power_of_two().max(MIN_SLOTS);
        let fresh = IdTable::new(slots, self.table.keys);
        let old = std::mem::replace(&mut self.table, fresh);
        for id in old.ids() {
            let (leaf, slot) = split(id);
            match self.leaves[leaf].bitset.checked_sub(1) {
                Some(index) => {
                    set_bit(&mut self.bitsets[index as usize], slot);
                }
                None => {
                    self.table.insert(id);
                }
            }
        }
    }

    /// Every claimed id, ascending.
    pub fn iter(&self) -> impl Iterator<Item = TxId> + '_ {
        // The table's ids grouped by leaf, ascending: the leaves not (yet)
        // bitsets. Sorting a copy costs 4 bytes per id in the table, which
        // holds at most BITSET_AT ids of each such leaf.
        let mut table: Vec<u32> = self.table.ids().collect();
        table.sort_unstable();
        let mut table = table.into_iter().peekable();
        (0..LEAVES).flat_map(move |leaf| -> Box<dyn Iterator<Item = TxId> + '_> {
            let base = (leaf as u32) << LEAF_BITS;
            match self.leaves[leaf].bitset.checked_sub(1) {
                Some(index) => {
                    let words = &self.bitsets[index as usize];
                    Box::new(set_bits(words).map(move |slot| base | slot as u32))
                }
                None => {
                    let mut ids = Vec::new();
                    while let Some(id) = table.next_if(|&id| split(id).0 == leaf) {
                        ids.push(id);
                    }
                    Box::new(ids.into_iter())
                }
            }
        })
    }

    /// The claimed ids of every leaf that has any, ascending by leaf: the
    /// leaf's bitset words when it is one, else its sorted slots.
    pub(crate) fn leaves(&self) -> impl Iterator<Item = (usize, IdLeaf<'_>)> + '_ {
        let mut table: Vec<u32> = self.table.ids().collect();
        table.sort_unstable();
        let mut table = table.into_iter().peekable();
        (0..LEAVES).filter_map(move |leaf| {
            if let Some(index) = self.leaves[leaf].bitset.checked_sub(1) {
                let words = &self.bitsets[index as usize];
                let count = words.iter().map(|w| w.count_ones()).sum::<u32>();
                return (count > 0).then_some((leaf, IdLeaf::Bitset(words, count as usize)));
            }
            let mut slots = Vec::new();
            while let Some(id) = table.next_if(|&id| split(id).0 == leaf) {
                slots.push(split(id).1 as u16);
            }
            (!slots.is_empty()).then_some((leaf, IdLeaf::Slots(slots)))
        })
    }

    /// Restores a leaf's ids from a bitset of [`LEAF_IDS`] bits.
    pub(crate) fn load_bitset(&mut self, leaf: usize, words: &[u64]) {
        assert_eq!(words.len(), LEAF_IDS / 64);
        let index = match self.leaves[leaf].bitset.checked_sub(1) {
            Some(index) => index as usize,
            None => {
                self.add_bitset(leaf);
                self.bitsets.len() - 1
            }
        };
        for (word, &bits) in self.bitsets[index].iter_mut().zip(words) {
            *word |= bits;
        }
    }

    /// True when `id` is claimed.
    pub fn contains(&self, id: TxId) -> bool {
        let (leaf, slot) = split(id);
        match self.leaves[leaf].bitset.checked_sub(1) {
            Some(index) => self.bitsets[index as usize][slot / 64] & (1 << (slot % 64)) != 0,
            None => self.table.contains(id),
        }
    }

    fn add_bitset(&mut self, leaf: usize) {
        self.bitsets.push(vec![0u64; LEAF_IDS / 64].into());
        self.leaves[leaf].bitset = self.bitsets.len() as u32;
    }

    /// Bytes held by the directory, the bitsets and the table.
    pub fn heap_bytes(&self) -> usize {
        LEAVES * std::mem::size_of::<LeafIds>()
            + self.bitsets.len() * (LEAF_IDS / 8)
            + self.table.slots.len() * 4
            + self.due.capacity() * 2
    }
}

/// One leaf of claimed ids, as [`TxIdSet::leaves`] gives it.
pub(crate) enum IdLeaf<'a> {
    /// The leaf's bitset (65,536 bits) and how many are set.
    Bitset(&'a [u64], usize),
    /// The leaf's claimed slots, ascending.
    Slots(Vec<u16>),
}

/// Sets bit `slot`; true if it was clear.
#[inline]
fn set_bit(words: &mut [u64], slot: usize) -> bool {
    let (word, bit) = (slot / 64, 1u64 << (slot % 64));
    let fresh = words[word] & bit == 0;
    words[word] |= bit;
    fresh
}

/// The set bits of `words`, ascending.
fn set_bits(words: &[u64]) -> impl Iterator<Item = usize> + '_ {
    words.iter().enumerate().flat_map(|(w, &word)| {
        let mut rest = word;
        std::iter::from_fn(move || {
            (rest != 0).then(|| {
                let bit = rest.trailing_zeros() as usize;
                rest &= rest - 1;
                w * 64 + bit
            })
        })
    })
}

/// Asks the CPU to start loading `item`'s cache line (a no-op off x86-64).
#[inline]
fn prefetch<T>(item: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is only a hint: it cannot fault, changes no memory
    // and has no effect the program can observe, and the address comes from
    // a live reference.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>((item as *const T).cast());
    }
}

/// A set of nonzero u32 ids: linear probing over one `u32` per slot, 0
/// marking an empty slot, never more than 3/4 full.
///
/// Written by hand instead of a hashbrown set for one reason: the slot's
/// address follows from the id alone, so the router can prefetch it records
/// ahead (`prefetch`), which hashbrown does not allow. Alone it is no faster
/// than hashbrown (random u32 ids, 5M rows: 0.81 vs 0.76 s); prefetched it
/// is (0.57-0.70 s; perf.md, "Sparse ids, third step").
///
/// A slot's home is the top bits of a seeded 64-bit hash, so doubling the
/// table keeps the slots' order and a rebuild writes the new table front to
/// back. The seed is drawn per run: no file can be made to collide in
/// advance.
struct IdTable {
    slots: Box<[u32]>,
    len: usize,
    keys: [u64; 2],
}

impl IdTable {
    fn new(slots: usize, keys: [u64; 2]) -> IdTable {
        assert!(slots.is_power_of_two() && slots >= 4);
        IdTable {
            slots: vec![0u32; slots].into(),
            len: 0,
            keys,
        }
    }

    fn random_keys() -> [u64; 2] {
        use std::hash::{BuildHasher, RandomState};
        let state = RandomState::new();
        [state.hash_one(0u8), state.hash_one(1u8) | 1]
    }

    /// The slot where the search for `id` starts.
    #[inline]
    fn home(&self, id: u32) -> usize {
        // A folded multiply, as in foldhash: the 128-bit product's halves
        // xored together.
        let product = u128::from(u64::from(id) ^ self.keys[0]) * u128::from(self.keys[1]);
        let hash = (product as u64) ^ ((product >> 64) as u64);
        // The top log2(slots) bits.
        (hash >> (64 - self.slots.len().trailing_zeros())) as usize
    }

    #[inline]
    fn is_full(&self) -> bool {
        self.len >= self.slots.len() / 4 * 3
    }

    /// Inserts `id` (nonzero); false if it was already there. The table
    /// must not be full.
    #[inline]
    fn insert(&mut self, id: u32) -> bool {
        debug_assert!(id != 0 && self.len < self.slots.len());
        let mask = self.slots.len() - 1;
        let mut i = self.home(id);
        loop {
            let slot = &mut self.slots[i];
            if *slot == id {
                return false;
            }
            if *slot == 0 {
                *slot = id;
                self.len += 1;
                return true;
            }
            i = (i + 1) & mask;
        }
    }

    #[inline]
    fn prefetch(&self, id: u32) {
        prefetch(&self.slots[self.home(id)]);
    }

    fn contains(&self, id: u32) -> bool {
        if id == 0 {
            return false;
        }
        let mask = self.slots.len() - 1;
        let mut i = self.home(id);
        loop {
            match self.slots[i] {
                0 => return false,
                slot if slot == id => return true,
                _ => i = (i + 1) & mask,
            }
        }
    }

    /// The ids, in slot order.
    fn ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.slots.iter().copied().filter(|&id| id != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_set_leaves_turn_into_bitsets_at_the_next_rebuild_and_keep_every_claim() {
        let mut ids = TxIdSet::default();
        // Leaf 3 fills past the threshold; leaves 9.. stay in the table.
        let dense: Vec<u32> = (0..BITSET_AT + 100).map(|i| 3 * 65_536 + i * 7).collect();
        for &id in &dense {
            assert!(ids.claim(id), "{id}");
        }
        assert_eq!(ids.leaves[3].bitset, 0, "due, but no rebuild yet");
        assert_eq!(ids.due, [3]);
        // Scattered ids fill the table past 3/4: it rebuilds.
        let scattered: Vec<u32> = (0..2_000).map(|i| (9 + i % 50) * 65_536 + i).collect();
        for &id in &scattered {
            assert!(ids.claim(id), "{id}");
        }
        assert_ne!(ids.leaves[3].bitset, 0, "leaf 3 is a bitset");
        assert_eq!(ids.leaves[9].bitset, 0, "leaf 9 is in the table");
        assert!(ids.due.is_empty());
        assert_eq!(
            ids.table.len,
            scattered.len(),
            "leaf 3's ids left the table"
        );
        assert_eq!(ids.table.slots.len(), MIN_SLOTS, "half full at most");
        for &id in dense.iter().chain(&scattered) {
            assert!(!ids.claim(id), "{id} claimed twice");
        }
        assert!(ids.claim(3 * 65_536 + 1));
        assert!(ids.heap_bytes() < 2 * 8192 + 65_536 * 8 + MIN_SLOTS * 4 + 64);
    }

    #[test]
    fn id_table_is_rebuilt_for_the_ids_that_stay() {
        let mut ids = TxIdSet::default();
        // 20,000 ids in 20,000 leaves: the table doubles to hold them.
        let spread: Vec<u32> = (1..=20_000u32).map(|i| i << 16 | i).collect();
        for &id in &spread {
            assert!(ids.claim(id));
        }
        assert_eq!(ids.table.slots.len(), 32_768);
        // Leaf 1 then fills: its ids (65,537 among them) leave at the next
        // rebuild, and the new table is sized for the ids that stay.
        for slot in 2..40_000 {
            ids.claim(65_536 | slot);
        }
        assert_ne!(ids.leaves[1].bitset, 0);
        assert_eq!(
            ids.table.len,
            spread.len() - 1,
            "only 65,537 left the table"
        );
        assert_eq!(ids.table.slots.len(), 65_536, "at most half full");
        for &id in &spread {
            assert!(!ids.claim(id), "{id}");
        }
        assert!(!ids.claim(65_536 | 39_999));
        assert!(ids.claim(65_536 | 40_000));
    }

    #[test]
    fn id_set_claims_each_id_once_across_the_whole_range() {
        let mut ids = TxIdSet::default();
        for id in [0, 1, 63, 64, 65_535, 65_536, u32::MAX - 1, u32::MAX] {
            assert!(ids.claim(id), "first claim of {id}");
            assert!(!ids.claim(id), "second claim of {id}");
        }
        assert!(ids.claim(2));
    }

    /// Mean distance of the ids from their home slots.
    fn mean_displacement(table: &IdTable) -> f64 {
        let mask = table.slots.len() - 1;
        let total: usize = (0..table.slots.len())
            .filter(|&i| table.slots[i] != 0)
            .map(|i| i.wrapping_sub(table.home(table.slots[i])) & mask)
            .sum();
        total as f64 / table.len as f64
    }

    /// Structured id sets (runs, strides, only high bits or only low bits
    /// varying) spread like random ones: at 2/3 load, linear probing with a
    /// random hash expects a mean displacement of 1.0. Fixed seeds keep the
    /// test deterministic.
    #[test]
    fn id_table_spreads_structured_ids_like_random_ones() {
        type Pattern = (&'static str, fn(u32) -> u32);
        let patterns: [Pattern; 6] = [
            ("run", |i| 1_000_000 + i),
            ("stride 65,536", |i| (i + 1).rotate_left(16)),
            ("stride 2^12", |i| (i << 12) | 1),
            ("stride 3", |i| 1 + 3 * i),
            ("high bits only", |i| i.reverse_bits() | 1),
            ("xor pattern", |i| (i ^ (i << 16)) | 1 << 31),
        ];
        // Keys as random as the per-run ones: splitmix64 outputs.
        let splitmix = |n: u64| {
            let mut z = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        for seed in 1..=3u64 {
            let keys = [splitmix(2 * seed), splitmix(2 * seed + 1) | 1];
            for (name, id) in patterns {
                let mut table = IdTable::new(1 << 19, keys);
                for i in 0..350_000 {
                    assert!(table.insert(id(i)), "{name}: {i}");
                }
                let mean = mean_displacement(&table);
                assert!(mean < 2.0, "{name}, seed {seed}: mean displacement {mean}");
            }
        }
    }
}
