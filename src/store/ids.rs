//! [`TxIdSet`]: the tx ids claimed so far (SPEC rule 2), a sorted list or
//! a bitset per leaf (the store's module docs say why).

use super::leaf::{populated, prefetch, rank, split, LEAF_BITS, LEAF_IDS, LEAVES};
use crate::tx::TxId;

/// A leaf of [`TxIdSet`] becomes a bitset once it holds this many ids: the
/// 8 KiB bitset then costs 5.3 bytes an id, and less as the leaf fills,
/// against 2.2 for the list; a list is kept short so that an insert moves
/// little.
pub const BITSET_AT: usize = 1_536;

/// The set of tx ids claimed so far (SPEC rule 2): the ledger's, or a
/// worker's share (`batch::IdShards`: numbered within the share).
#[derive(Clone)]
pub struct TxIdSet {
    /// Per leaf: its claimed slots, sorted (empty once it is a bitset).
    lists: Box<[Vec<u16>]>,
    /// Per leaf: index + 1 into `bitsets`, or 0 while it is a list.
    bitset_of: Box<[u32]>,
    /// (Arrays, not slices: a word found from a slot needs no bounds check.)
    bitsets: Vec<Box<[u64; LEAF_IDS / 64]>>,
    /// The id claimed last: [`TxIdSet::prefetch`] skips ids near it, whose
    /// memory the claims just made are keeping in cache.
    recent: TxId,
}

/// A *run* is 1 << RUN_BITS = 512 ids, one 64-byte line of a bitset leaf.
/// The workers' shares of the claims are made of whole runs
/// (`batch::IdShards`), so that each cache line of claims is written by
/// one worker, and a share joins the whole run by run
/// ([`TxIdSet::absorb_runs`]).
pub(crate) const RUN_BITS: u32 = 9;

/// How near the last claimed id an id must be for its memory to count as
/// in cache: a cache line of a bitset (512 ids), or a small part of a
/// leaf's list.
const NEAR: u32 = 512;

impl Default for TxIdSet {
    fn default() -> Self {
        TxIdSet {
            lists: (0..LEAVES).map(|_| Vec::new()).collect(),
            bitset_of: vec![0u32; LEAVES].into(),
            bitsets: Vec::new(),
            recent: 0,
        }
    }
}

impl TxIdSet {
    /// Claims `id`; true if it was not claimed before.
    ///
    /// A leaf that is a bitset (every leaf of a file with ascending ids) is
    /// claimed inline, in the caller; a list out of line. (As one function,
    /// the compiler left the claim a call: `--workers 0` on 1M rows spent
    /// 43.7M instructions in it, against 24.6M inlined.)
    #[inline(always)]
    pub fn claim(&mut self, id: TxId) -> bool {
        self.recent = id;
        let (leaf, slot) = split(id);
        match self.bitset_of[leaf].checked_sub(1) {
            Some(index) => set_bit(&mut self.bitsets[index as usize][..], slot),
            None => self.claim_in_list(leaf, slot),
        }
    }

    /// Claims every id from `first` to `last`, ascending, as [`TxIdSet::claim`]
    /// one by one would, and adds those claimed before to `repeated`. In a
    /// leaf that is a bitset, a word (64 ids) at a time.
    pub fn claim_range(&mut self, first: TxId, last: TxId, repeated: &mut Vec<TxId>) {
        debug_assert!(first <= last);
        let mut id = first;
        loop {
            let (leaf, slot) = split(id);
            let leaf_last = last.min(id | (LEAF_IDS as u32 - 1));
            match self.bitset_of[leaf].checked_sub(1) {
                Some(index) => {
                    let base = id - slot as u32;
                    let (words, end) = (&mut self.bitsets[index as usize], leaf_last - base);
                    for word in slot / 64..=end as usize / 64 {
                        let from = (slot.max(word * 64) % 64) as u32;
                        let to = (end as usize).min(word * 64 + 63) % 64;
                        let mask = (u64::MAX >> (63 - to)) & (u64::MAX << from);
                        for bit in set_bits(&[words[word] & mask]) {
                            repeated.push(base + (word * 64 + bit) as u32);
                        }
                        words[word] |= mask;
                    }
                    self.recent = leaf_last;
                }
                None => {
                    for id in id..=leaf_last {
                        if !self.claim(id) {
                            repeated.push(id);
                        }
                    }
                }
            }
            if leaf_last == last {
                return;
            }
            id = leaf_last + 1;
        }
    }

    /// [`TxIdSet::claim`] in a leaf that is still a list.
    #[inline(never)]
    fn claim_in_list(&mut self, leaf: usize, slot: usize) -> bool {
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
    /// the lines of its list a binary search reads first. Nothing for an id
    /// near the one claimed last (ascending ids, the common case: their
    /// memory is in cache, and the prefetch cost 25 instructions a row).
    ///
    /// In two stages where the caller has a lookahead: the first (`deep`
    /// false) loads the leaf's entries in the directories, the second (some
    /// rows later) reads them and loads the bitset word or the list. In one
    /// stage, reading a scattered id's list header waited on its miss:
    /// 72% of `prefetch_far`'s samples on the adversarial file, `--workers
    /// 0` (perf.md). A caller with no second stage passes `deep` true.
    #[inline(always)]
    pub fn prefetch(&self, id: TxId, deep: bool) {
        if id.abs_diff(self.recent) >= NEAR {
            self.prefetch_far(id, deep);
        }
    }

    /// [`TxIdSet::prefetch`] for an id far from the last claimed (out of
    /// line: the check before it is the common case).
    #[inline(never)]
    fn prefetch_far(&self, id: TxId, deep: bool) {
        let (leaf, slot) = split(id);
        if !deep {
            prefetch(&self.bitset_of[leaf]);
            prefetch(&self.lists[leaf]);
            return;
        }
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
        // Claims read a word before they set a bit in it (leaf::populate).
        let mut words: Box<[u64; LEAF_IDS / 64]> = populated();
        for &slot in &std::mem::take(&mut self.lists[leaf]) {
            set_bit(&mut words[..], usize::from(slot));
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
                Some((leaf, IdLeaf::Bitset(&words[..], count)))
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

    /// Adds every id of `other` (a cluster worker's share of the claims).
    #[cfg_attr(not(feature = "cluster"), allow(dead_code))]
    pub(crate) fn absorb(&mut self, other: &TxIdSet) {
        for (leaf, ids) in other.leaves() {
            match ids {
                IdLeaf::Bitset(words, _) => self.load_bitset(leaf, words),
                IdLeaf::Slots(slots) => {
                    let base = (leaf as u32) << LEAF_BITS;
                    for &slot in slots {
                        self.claim(base | u32::from(slot));
                    }
                }
            }
        }
    }

    /// Adds every id of `share`, a worker's share of the claims numbered by
    /// runs ([`RUN_BITS`], `batch::IdShards`): the id at offset `o` of the
    /// share's run `r` is the id at offset `o` of run `global_run(r)`. A
    /// run of a bitset leaf is eight words, OR-ed in whole where its place
    /// is a bitset already; elsewhere its ids are claimed one by one.
    pub(crate) fn absorb_runs(&mut self, share: &TxIdSet, global_run: impl Fn(u32) -> u32) {
        const RUN_WORDS: usize = (1 << RUN_BITS) / 64;
        const RUNS_PER_LEAF: u32 = 1 << (LEAF_BITS - RUN_BITS);
        let offset_mask = (1 << RUN_BITS) - 1;
        for (leaf, ids) in share.leaves() {
            let first_run = leaf as u32 * RUNS_PER_LEAF;
            match ids {
                IdLeaf::Bitset(words, _) => {
                    for (r, run) in words.chunks_exact(RUN_WORDS).enumerate() {
                        if run.iter().all(|&word| word == 0) {
                            continue;
                        }
                        let to = global_run(first_run + r as u32) << RUN_BITS;
                        let (to_leaf, to_slot) = split(to);
                        match self.bitset_of[to_leaf].checked_sub(1) {
                            Some(index) => {
                                let at = to_slot / 64;
                                let words = &mut self.bitsets[index as usize][at..at + RUN_WORDS];
                                for (word, &bits) in words.iter_mut().zip(run) {
                                    *word |= bits;
                                }
                            }
                            None => {
                                for offset in set_bits(run) {
                                    self.claim(to | offset as u32);
                                }
                            }
                        }
                    }
                }
                IdLeaf::Slots(slots) => {
                    for &slot in slots {
                        let local = (leaf as u32) << LEAF_BITS | u32::from(slot);
                        self.claim(
                            global_run(local >> RUN_BITS) << RUN_BITS | (local & offset_mask),
                        );
                    }
                }
            }
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

/// The set bits of `words`, ascending (the state file's id leaves and a
/// cluster checkpoint's touched clients use it too).
pub(crate) fn set_bits(words: &[u64]) -> impl Iterator<Item = usize> + '_ {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_range_claimed_whole_answers_as_its_ids_one_by_one() {
        // Ranges within a word, across words, across a list leaf turning
        // into a bitset, across leaves, at the top of the id space, and
        // over ids claimed before (in lists and in bitsets).
        let mut one = TxIdSet::default();
        let mut whole = TxIdSet::default();
        let before = (100..200)
            .chain(70_000..70_010)
            .chain([3 << 16, u32::MAX - 3]);
        for id in before.chain((1 << 17..(1 << 17) + 4000).step_by(3)) {
            assert_eq!(one.claim(id), whole.claim(id));
        }
        let ranges = [
            (5, 9),
            (10, 10),
            (60, 70),
            (90, 2_000),
            (65_000, 140_000),
            ((1 << 17) + 10, (1 << 17) + 5000),
            ((3 << 16) - 1, (3 << 16) + 1),
            (u32::MAX - 5, u32::MAX),
            (1_000, 1_100),
        ];
        for (first, last) in ranges {
            let expected: Vec<TxId> = (first..=last).filter(|&id| !one.claim(id)).collect();
            let mut repeated = Vec::new();
            whole.claim_range(first, last, &mut repeated);
            assert_eq!(repeated, expected, "{first}..={last}");
        }
        assert!(one.iter().eq(whole.iter()));
        assert_eq!(one.bitsets.len(), whole.bitsets.len());
    }

    #[test]
    fn absorbing_shares_gives_their_union() {
        // Three shares as a cluster's claim stages hold them (by id % 3),
        // with a bitset leaf, list leaves and the top of the range, and a
        // fourth that overlaps them.
        let ids: Vec<TxId> = (0..5000)
            .chain((1 << 20..(1 << 20) + 300).map(|i| i * 7))
            .chain([u32::MAX - 1, u32::MAX])
            .collect();
        let mut shares = vec![TxIdSet::default(), TxIdSet::default(), TxIdSet::default()];
        for &id in &ids {
            assert!(shares[id as usize % 3].claim(id));
        }
        let mut overlap = TxIdSet::default();
        for id in (0..3000).step_by(5) {
            overlap.claim(id);
        }
        shares.push(overlap);
        let mut union = TxIdSet::default();
        for share in &shares {
            union.absorb(share);
        }
        let mut expected = ids.clone();
        expected.sort_unstable();
        assert_eq!(union.iter().collect::<Vec<_>>(), expected);
        assert!(!union.claim(4999) && union.claim(5000));
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
