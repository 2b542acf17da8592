//! Compact stores keyed by the u32 transaction id.
//!
//! Both stores split the id space into 65,536 *leaves* of 65,536 ids
//! (`leaf = id >> 16`, `slot = id & 0xFFFF`), and give each leaf the smaller
//! of a flat page or a sorted list, so that memory follows the ids actually
//! used, whatever their pattern.
//!
//! * [`TxIdSet`] (SPEC rule 2, ids claimed by deposits and withdrawals; the
//!   router's): a leaf's claimed slots as a sorted `u16` list (2 bytes an id),
//!   until it holds [`BITSET_AT`] of them, then an 8 KiB bitset (512 MiB if
//!   every id appears).
//! * [`DepositStore`] (applied deposits, for disputes; a worker's): dense
//!   leaves of 6 bytes a slot, or sorted chunks of 8-byte entries; see
//!   `deposits.rs`.
//!
//! # Why sorted lists, not a hash table, for the claimed ids
//!
//! One shared hash table held scattered ids before: 4 bytes a slot at 3/8 to
//! 3/4 load, and at each doubling the old and the new table at once, 16
//! bytes an id at that moment. On 5M random ids the table alone was 32 MiB
//! at rest and 48 MiB at its peak; the sorted lists hold them in 11 MiB and
//! grow a leaf at a time, a quarter at a time. A list never exceeds
//! [`BITSET_AT`] slots (3 KiB), so an insert moves at most that much, and a
//! claim is a binary search in at most 48 cache lines. The router prefetches
//! a leaf's list some records before it claims (as it did the table's slot),
//! so scattered ids cost a few cache hits, not misses. Nothing is hashed, so
//! no input can be made to collide.

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

/// A leaf of [`TxIdSet`] becomes a bitset once it holds this many ids: the
/// 8 KiB bitset then costs 5.3 bytes an id, and less as the leaf fills,
/// against 2.2 for the list; a list is kept short so that an insert moves
/// little.
pub const BITSET_AT: usize = 1_536;

/// The set of tx ids claimed so far (SPEC rule 2), kept by the router.
pub struct TxIdSet {
    /// Per leaf: its claimed slots, sorted (empty once it is a bitset).
    lists: Box<[Vec<u16>]>,
    /// Per leaf: index + 1 into `bitsets`, or 0 while it is a list.
    bitset_of: Box<[u32]>,
    bitsets: Vec<Box<[u64]>>,
}

impl Default for TxIdSet {
    fn default() -> Self {
        TxIdSet {
            lists: (0..LEAVES).map(|_| Vec::new()).collect(),
            bitset_of: vec![0u32; LEAVES].into(),
            bitsets: Vec::new(),
        }
    }
}

impl TxIdSet {
    /// Claims `id`; true if it was not claimed before.
    #[inline]
    pub fn claim(&mut self, id: TxId) -> bool {
        let (leaf, slot) = split(id);
        if let Some(index) = self.bitset_of[leaf].checked_sub(1) {
            return set_bit(&mut self.bitsets[index as usize], slot);
        }
        let list = &mut self.lists[leaf];
        let at = rank(list, slot as u16);
        if at > 0 && list[at - 1] == slot as u16 {
            return false;
        }
        if list.len() == list.capacity() {
            // Grow by a quarter: less slack than doubling, still amortised.
            list.reserve_exact((list.len() / 4).max(4));
        }
        list.insert(at, slot as u16);
        if list.len() >= BITSET_AT {
            self.make_bitset(leaf);
        }
        true
    }

    /// Starts loading the memory that `claim(id)` will read, so that a claim
    /// made some rows later does not wait for it: the leaf's bitset word, or
    /// the lines of its list a binary search reads first.
    #[inline]
    pub fn prefetch(&self, id: TxId) {
        let (leaf, slot) = split(id);
        match self.bitset_of[leaf].checked_sub(1) {
            Some(index) => prefetch(&self.bitsets[index as usize][slot / 64]),
            None => {
                let list = &self.lists[leaf];
                if let Some(middle) = list.get(list.len() / 2) {
                    prefetch(middle);
                    prefetch(&list[list.len() / 4]);
                    prefetch(&list[list.len() * 3 / 4]);
                }
            }
        }
    }

    /// Moves a leaf's list into a new bitset.
    #[cold]
    fn make_bitset(&mut self, leaf: usize) {
        let mut words = vec![0u64; LEAF_IDS / 64].into_boxed_slice();
        for &slot in &std::mem::take(&mut self.lists[leaf]) {
            set_bit(&mut words, usize::from(slot));
        }
        self.bitsets.push(words);
        self.bitset_of[leaf] = self.bitsets.len() as u32;
    }

    /// True when `id` is claimed.
    pub fn contains(&self, id: TxId) -> bool {
        let (leaf, slot) = split(id);
        match self.bitset_of[leaf].checked_sub(1) {
            Some(index) => self.bitsets[index as usize][slot / 64] & (1 << (slot % 64)) != 0,
            None => {
                let list = &self.lists[leaf];
                let at = rank(list, slot as u16);
                at > 0 && list[at - 1] == slot as u16
            }
        }
    }

    /// Every claimed id, ascending.
    pub fn iter(&self) -> impl Iterator<Item = TxId> + '_ {
        self.leaves().flat_map(|(leaf, ids)| {
            let base = (leaf as u32) << LEAF_BITS;
            let slots: Box<dyn Iterator<Item = u32> + '_> = match ids {
                IdLeaf::Bitset(words, _) => Box::new(set_bits(words).map(|slot| slot as u32)),
                IdLeaf::Slots(slots) => Box::new(slots.iter().map(|&slot| u32::from(slot))),
            };
            slots.map(move |slot| base | slot)
        })
    }

    /// The claimed ids of every leaf that has any, ascending by leaf: the
    /// leaf's bitset words when it is one, else its sorted slots.
    pub(crate) fn leaves(&self) -> impl Iterator<Item = (usize, IdLeaf<'_>)> + '_ {
        (0..LEAVES).filter_map(move |leaf| match self.bitset_of[leaf].checked_sub(1) {
            Some(index) => {
                let words = &self.bitsets[index as usize];
                let count = words.iter().map(|w| w.count_ones() as usize).sum();
                Some((leaf, IdLeaf::Bitset(words, count)))
            }
            None => {
                let list = &self.lists[leaf];
                (!list.is_empty()).then_some((leaf, IdLeaf::Slots(list)))
            }
        })
    }

    /// Restores a leaf's ids from a bitset of [`LEAF_IDS`] bits.
    pub(crate) fn load_bitset(&mut self, leaf: usize, words: &[u64]) {
        assert_eq!(words.len(), LEAF_IDS / 64);
        if self.bitset_of[leaf] == 0 {
            self.make_bitset(leaf);
        }
        let index = self.bitset_of[leaf] as usize - 1;
        for (word, &bits) in self.bitsets[index].iter_mut().zip(words) {
            *word |= bits;
        }
    }

    /// Bytes held by the directories, the lists and the bitsets.
    pub fn heap_bytes(&self) -> usize {
        let lists: usize = self.lists.iter().map(|list| list.capacity() * 2).sum();
        LEAVES * (std::mem::size_of::<Vec<u16>>() + 4) + lists + self.bitsets.len() * (LEAF_IDS / 8)
    }
}

/// One leaf of claimed ids, as [`TxIdSet::leaves`] gives it.
pub(crate) enum IdLeaf<'a> {
    /// The leaf's bitset (65,536 bits) and how many are set.
    Bitset(&'a [u64], usize),
    /// The leaf's claimed slots, ascending.
    Slots(&'a [u16]),
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

/// How many of `starts` (ascending) are at most `slot`: the same answer as
/// `starts.partition_point(|&s| s <= slot)`, found faster. An append (ids
/// that ascend) is answered at once; any other slot starts where a uniform
/// spread of `starts` would put it and gallops from there, so scattered ids
/// read one or two cache lines of a 3 KiB list where a binary search waits
/// on ten in a row, and clustered ids cost at most twice its steps.
#[inline]
pub(crate) fn rank(starts: &[u16], slot: u16) -> usize {
    let n = starts.len();
    match starts.last() {
        Some(&last) if slot >= last => return n,
        None => return 0,
        _ => {}
    }
    let guess = (usize::from(slot) * n) >> 16;
    // The answer is in (lo, hi]: starts[lo - 1] <= slot < starts[hi].
    let (mut lo, mut hi);
    if starts[guess] <= slot {
        let mut step = 1;
        lo = guess + 1;
        hi = (guess + step).min(n - 1);
        while starts[hi] <= slot {
            lo = hi + 1;
            step *= 2;
            hi = (hi + step).min(n - 1);
        }
    } else {
        let mut step = 1;
        hi = guess;
        lo = guess.saturating_sub(step);
        while lo > 0 && starts[lo] > slot {
            hi = lo;
            step *= 2;
            lo = lo.saturating_sub(step);
        }
        if starts[lo] <= slot {
            lo += 1;
        }
    }
    lo + starts[lo..hi].partition_point(|&start| start <= slot)
}

/// Asks the CPU to start loading `item`'s cache line (a no-op off x86-64).
#[inline]
pub(crate) fn prefetch<T>(item: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is only a hint: it cannot fault, changes no memory
    // and has no effect the program can observe, and the address comes from
    // a live reference.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>((item as *const T).cast());
    }
}

/// Asks the CPU to start loading every cache line of `items` at once, so a
/// search through them waits for memory once rather than once per step.
#[inline]
pub(crate) fn prefetch_all<T>(items: &[T]) {
    let bytes = std::mem::size_of_val(items);
    let base = items.as_ptr().cast::<u8>();
    for offset in (0..bytes).step_by(64) {
        // SAFETY: `offset < bytes`, so the address is inside `items`.
        prefetch(unsafe { &*base.add(offset) });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rank_is_partition_point() {
        let mut seed: u64 = 3;
        for n in [1usize, 2, 3, 7, 64, 300, 1000] {
            for skew in [1u64, 7, 251] {
                let mut starts: Vec<u16> = (0..n)
                    .map(|_| {
                        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                        ((seed >> 33) % (65_536 / skew)) as u16
                    })
                    .collect();
                starts.sort_unstable();
                starts.dedup();
                for slot in (0..=65_535u16).step_by(13).chain([0, 65_535]) {
                    let expected = starts.partition_point(|&s| s <= slot);
                    assert_eq!(
                        crate::store::rank(&starts, slot),
                        expected,
                        "{slot} in {starts:?}"
                    );
                }
                for &start in &starts {
                    let expected = starts.partition_point(|&s| s <= start);
                    assert_eq!(crate::store::rank(&starts, start), expected);
                }
            }
        }
    }

    #[test]
    fn id_set_claims_each_id_once_across_the_whole_range() {
        let mut ids = TxIdSet::default();
        for id in [0, 1, 63, 64, 65_535, 65_536, u32::MAX - 1, u32::MAX] {
            assert!(!ids.contains(id));
            assert!(ids.claim(id), "first claim of {id}");
            assert!(!ids.claim(id), "second claim of {id}");
            assert!(ids.contains(id));
        }
        assert!(ids.claim(2));
    }

    #[test]
    fn a_leaf_turns_bitset_at_the_threshold_and_keeps_every_claim() {
        let mut ids = TxIdSet::default();
        // Leaf 3 in descending order (every insert at the front), leaf 9 a
        // few: only leaf 3 becomes a bitset.
        let leaf3: Vec<u32> = (0..BITSET_AT as u32 + 100)
            .rev()
            .map(|i| (3 << 16) | (i * 7))
            .collect();
        for &id in &leaf3 {
            assert!(ids.claim(id), "{id}");
        }
        for slot in 0..50 {
            assert!(ids.claim(9 << 16 | slot));
        }
        assert_ne!(ids.bitset_of[3], 0, "leaf 3 is a bitset");
        assert!(ids.lists[3].is_empty(), "its list was freed");
        assert_eq!(ids.bitset_of[9], 0, "leaf 9 is a list");
        for &id in &leaf3 {
            assert!(!ids.claim(id), "{id} claimed twice");
        }
        let mut expected: Vec<u32> = leaf3.clone();
        expected.extend((0..50).map(|slot| 9 << 16 | slot));
        expected.sort_unstable();
        assert!(ids.iter().eq(expected.iter().copied()), "iter: ascending");
    }

    /// Against a std set, over sequential, scattered and clustered ids that
    /// turn leaves into bitsets in the middle of the run.
    #[test]
    fn the_set_agrees_with_a_std_set_over_mixed_id_patterns() {
        use std::collections::BTreeSet;
        let mut seed: u64 = 0x2545_F491_4F6C_DD1D;
        let (mut ids, mut model) = (TxIdSet::default(), BTreeSet::new());
        let mut sequential = 0u32;
        for step in 0..300_000u32 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let id = match seed % 4 {
                0 => {
                    sequential += 1 + (seed >> 8) as u32 % 2;
                    sequential
                }
                1 => (seed >> 16) as u32,
                2 => (((seed >> 16) as u32 % 64) << 16) | ((seed >> 40) as u32 % 4096),
                _ => (seed >> 24) as u32 % 200_000,
            };
            assert_eq!(ids.claim(id), model.insert(id), "claim {id} at step {step}");
        }
        assert!(ids.bitsets.len() > 3, "some leaves became bitsets");
        assert!(ids.iter().eq(model.iter().copied()));
        for probe in (0..400_000u32).step_by(7) {
            assert_eq!(ids.contains(probe), model.contains(&probe), "{probe}");
        }
    }

    #[test]
    fn scattered_ids_cost_about_two_bytes_each() {
        let mut ids = TxIdSet::default();
        let mut seed: u64 = 7;
        for _ in 0..1_000_000 {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            ids.claim((seed >> 32) as u32);
        }
        let lists: usize = ids.lists.iter().map(|l| l.capacity() * 2).sum();
        let per_id = lists as f64 / 1_000_000.0;
        assert!(per_id < 2.6, "{per_id} bytes an id");
    }
}
