//! Compact stores keyed by the u32 transaction id.
//!
//! Both stores split the id space into 65,536 *leaves* of 65,536 ids
//! (`leaf = id >> 16`, `slot = id & 0xFFFF`). A leaf with many ids gets a flat
//! array, allocated once; the few ids of other leaves are hashed.
//!
//! * [`TxIdSet`] (SPEC rule 2, ids claimed by deposits and withdrawals; the
//!   router's): the ids of a leaf sit in one shared hash set until the leaf
//!   holds [`BITSET_AT`] ids, then in an 8 KiB bitset (512 MiB if every id
//!   appears).
//! * [`DepositStore`] (applied deposits, for disputes; a worker's) keeps each
//!   leaf in one of two forms. A *sparse* leaf is a small hash map from slot
//!   to a 12-byte entry. When a leaf holds [`DENSE_AT`] deposits it becomes
//!   *dense*: two flat arrays indexed by slot (8-byte amount with the dispute
//!   flag in the sign bit, 2-byte client), 10 bytes per id with no hashing at
//!   all. The usual sequential ids therefore cost 10 bytes per id slot.
//!
//! Why one shared set for ids but a map per leaf for deposits: measured on
//! scattered ids (perf.md, "Sparse ids"), the shared set saves the router a
//! dependent cache miss per claim on random ids, while per-leaf deposit maps
//! keep ids that walk the leaves in order (multiples of 65,536) cache-friendly
//! on the worker; the other three combinations were slower on one pattern.
//!
//! A new deposit leaf whose left neighbour *earned* its density (reached
//! [`DENSE_AT`] deposits) starts dense: sequential ids then skip the sparse
//! phase, whose growth and conversion cost 16% of a run in page faults and
//! rehashing (perf, 20M-row datagen file). The bound still holds against
//! hostile ids: every leaf that starts dense has a distinct earned neighbour,
//! so dense leaves are at most twice the earned ones, and the store costs at
//! most 2 x 640 KiB / 20,000 = 66 bytes per deposit.
//!
//! Why not one `HashMap<u32, Deposit>`: its buckets cost 17+ bytes and sit at
//! 44-87% load, so 24-40 bytes per deposit, and every resize holds the old and
//! the new table at once (a 1.5x spike of the whole store).

use crate::amount::Amount;
use crate::tx::{ClientId, TxId};

const LEAF_BITS: u32 = 16;
const LEAF_IDS: usize = 1 << LEAF_BITS;
const LEAVES: usize = 1 << (32 - LEAF_BITS);

/// A sparse leaf becomes dense when it holds this many deposits. A dense leaf
/// costs `LEAF_IDS * 10` = 640 KiB; at this count the sparse map uses 32,768
/// buckets of 13 bytes (416 KiB) and would next double to 832 KiB.
pub const DENSE_AT: usize = 20_000;

#[inline]
fn split(id: TxId) -> (usize, usize) {
    ((id >> LEAF_BITS) as usize, (id as usize) & (LEAF_IDS - 1))
}

/// A leaf of [`TxIdSet`] becomes a bitset when it holds this many ids: by
/// then its ids cost more in the shared set (5 bytes a bucket at 44-87% load)
/// than the 8 KiB bitset.
pub const BITSET_AT: u32 = 1_536;

/// The set of tx ids claimed so far (SPEC rule 2).
///
/// The ids of a leaf (65,536 ids) live in one shared hash set until the leaf
/// holds [`BITSET_AT`] ids; then the leaf becomes an 8 KiB bitset. A plain
/// paged bitset costs 8 KiB for the first id of every leaf: sparse random ids
/// touch all 65,536 leaves (512 MiB) and ran 4.4x slower than sequential ids.
/// A hash set per leaf fixed the memory but cost three dependent cache misses
/// per claim; one shared set costs one or two (perf.md, "Sparse ids").
pub struct TxIdSet {
    /// Per leaf: index + 1 into `bitsets`, or 0 while its ids are in `sparse`.
    bitset_of: Box<[u32]>,
    /// Per leaf: ids claimed.
    counts: Box<[u32]>,
    bitsets: Vec<Box<[u64]>>,
    sparse: hashbrown::HashSet<u32>,
}

impl Default for TxIdSet {
    fn default() -> Self {
        TxIdSet {
            bitset_of: vec![0u32; LEAVES].into(),
            counts: vec![0u32; LEAVES].into(),
            bitsets: Vec::new(),
            sparse: hashbrown::HashSet::new(),
        }
    }
}

impl TxIdSet {
    /// Claims `id`; true if it was not claimed before.
    #[inline]
    pub fn claim(&mut self, id: TxId) -> bool {
        let (leaf, slot) = split(id);
        if let Some(index) = self.bitset_of[leaf].checked_sub(1) {
            let words = &mut self.bitsets[index as usize];
            let (word, bit) = (slot / 64, 1u64 << (slot % 64));
            let fresh = words[word] & bit == 0;
            words[word] |= bit;
            self.counts[leaf] += u32::from(fresh);
            return fresh;
        }
        if !self.sparse.insert(id) {
            return false;
        }
        self.counts[leaf] += 1;
        if self.counts[leaf] >= BITSET_AT {
            self.make_bitset(leaf);
        }
        true
    }

    /// Moves a leaf's ids out of the shared set into a new bitset.
    #[cold]
    fn make_bitset(&mut self, leaf: usize) {
        let mut words = vec![0u64; LEAF_IDS / 64].into_boxed_slice();
        let base = (leaf as u32) << LEAF_BITS;
        for slot in 0..LEAF_IDS {
            if self.sparse.remove(&(base | slot as u32)) {
                words[slot / 64] |= 1 << (slot % 64);
            }
        }
        self.bitsets.push(words);
        self.bitset_of[leaf] = self.bitsets.len() as u32;
    }

    /// Bytes held by the directories, bitsets and the shared set.
    pub fn heap_bytes(&self) -> usize {
        LEAVES * 8 + self.bitsets.len() * (LEAF_IDS / 8) + self.sparse.allocation_size()
    }
}

/// One applied deposit as the ledger sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deposit {
    pub client: ClientId,
    pub amount: Amount,
    pub disputed: bool,
}

/// Dispute flag in the top bit of the stored amount word: deposits are
/// positive, so the sign bit is free. 0 marks an empty slot.
const DISPUTED: u64 = 1 << 63;

#[inline]
fn pack(amount: Amount, disputed: bool) -> u64 {
    debug_assert!(amount.raw() > 0, "only positive deposits are stored");
    amount.raw() as u64 | if disputed { DISPUTED } else { 0 }
}

#[inline]
fn unpack(client: ClientId, word: u64) -> Deposit {
    Deposit {
        client,
        amount: Amount::from_raw((word & !DISPUTED) as i64),
        disputed: word & DISPUTED != 0,
    }
}

/// A sparse-leaf entry: 10 bytes, alignment 1, so a `(u16, SparseEntry)`
/// bucket is 12 bytes plus hashbrown's control byte.
#[derive(Clone, Copy)]
struct SparseEntry {
    word: [u8; 8],
    client: [u8; 2],
}

struct DenseLeaf {
    words: Box<[u64]>,
    clients: Box<[ClientId]>,
    /// Deposits stored in this leaf.
    count: u32,
}

impl DenseLeaf {
    fn new() -> Self {
        DenseLeaf {
            words: vec![0u64; LEAF_IDS].into(),
            clients: vec![0; LEAF_IDS].into(),
            count: 0,
        }
    }

    /// Dense by count, not just by neighbourhood.
    fn earned(&self, dense_at: usize) -> bool {
        self.count as usize >= dense_at
    }
}

enum Leaf {
    Sparse(hashbrown::HashMap<u16, SparseEntry>),
    Dense(DenseLeaf),
}

/// Applied deposits by tx id, for disputes, resolves and chargebacks.
pub struct DepositStore {
    /// `leaf_of[id >> 16]` is an index into `leaves`, plus one; 0 means none.
    leaf_of: Box<[u32]>,
    leaves: Vec<Leaf>,
    len: usize,
    /// Deposits at which a leaf turns dense.
    dense_at: usize,
}

impl Default for DepositStore {
    fn default() -> Self {
        DepositStore::for_share(1)
    }
}

impl DepositStore {
    /// A store for one of `shares` workers, each of which sees about
    /// 1/`shares` of the ids. A dense leaf costs 10 bytes for every id of its
    /// range, its own or not, so the threshold scales with the share count:
    /// with 2 workers a leaf of a realistic file (60% deposits) ends near
    /// 19,500 deposits, just under [`DENSE_AT`], and churned between sparse
    /// and dense forms (480 MiB on the 20M-row file; perf.md).
    pub fn for_share(shares: usize) -> DepositStore {
        DepositStore {
            leaf_of: vec![0u32; LEAVES].into(),
            leaves: Vec::new(),
            len: 0,
            dense_at: DENSE_AT.saturating_mul(shares.max(1)),
        }
    }

    /// The deposit with this id, if one was applied.
    #[inline]
    pub fn get(&self, id: TxId) -> Option<Deposit> {
        let (leaf, slot) = split(id);
        let index = self.leaf_of[leaf].checked_sub(1)?;
        match &self.leaves[index as usize] {
            Leaf::Dense(dense) => {
                let word = dense.words[slot];
                (word != 0).then(|| unpack(dense.clients[slot], word))
            }
            Leaf::Sparse(map) => map.get(&(slot as u16)).map(|entry| {
                unpack(
                    ClientId::from_ne_bytes(entry.client),
                    u64::from_ne_bytes(entry.word),
                )
            }),
        }
    }

    /// Stores an applied, undisputed deposit. Each id is inserted at most
    /// once: the ledger's claim on the id guarantees it.
    pub fn insert(&mut self, id: TxId, client: ClientId, amount: Amount) {
        let (leaf, slot) = split(id);
        let word = pack(amount, false);
        let index = match self.leaf_of[leaf].checked_sub(1) {
            Some(index) => index as usize,
            None => {
                let neighbour_earned = leaf > 0
                    && self.leaf_of[leaf - 1].checked_sub(1).is_some_and(
                        |i| matches!(&self.leaves[i as usize], Leaf::Dense(d) if d.earned(self.dense_at)),
                    );
                self.leaves.push(if neighbour_earned {
                    Leaf::Dense(DenseLeaf::new())
                } else {
                    Leaf::Sparse(hashbrown::HashMap::new())
                });
                self.leaf_of[leaf] = self.leaves.len() as u32;
                self.leaves.len() - 1
            }
        };
        let leaf = &mut self.leaves[index];
        match leaf {
            Leaf::Dense(dense) => {
                assert_eq!(dense.words[slot], 0, "deposit {id} stored twice");
                dense.words[slot] = word;
                dense.clients[slot] = client;
                dense.count += 1;
            }
            Leaf::Sparse(map) => {
                let entry = SparseEntry {
                    word: word.to_ne_bytes(),
                    client: client.to_ne_bytes(),
                };
                let previous = map.insert(slot as u16, entry);
                assert!(previous.is_none(), "deposit {id} stored twice");
                if map.len() >= self.dense_at {
                    *leaf = Leaf::Dense(Self::densify(map));
                }
            }
        }
        self.len += 1;
    }

    fn densify(map: &hashbrown::HashMap<u16, SparseEntry>) -> DenseLeaf {
        let mut dense = DenseLeaf::new();
        dense.count = map.len() as u32;
        for (&slot, entry) in map {
            dense.words[usize::from(slot)] = u64::from_ne_bytes(entry.word);
            dense.clients[usize::from(slot)] = ClientId::from_ne_bytes(entry.client);
        }
        dense
    }

    /// Marks a stored deposit disputed or not. The id must be stored.
    pub fn set_disputed(&mut self, id: TxId, disputed: bool) {
        let (leaf, slot) = split(id);
        let index = self.leaf_of[leaf]
            .checked_sub(1)
            .expect("set_disputed on a deposit that was never stored");
        let word = match &mut self.leaves[index as usize] {
            Leaf::Dense(dense) => &mut dense.words[slot],
            Leaf::Sparse(map) => {
                let entry = map
                    .get_mut(&(slot as u16))
                    .expect("set_disputed on a deposit that was never stored");
                let mut word = u64::from_ne_bytes(entry.word);
                set_flag(&mut word, disputed);
                entry.word = word.to_ne_bytes();
                return;
            }
        };
        assert_ne!(*word, 0, "set_disputed on a deposit that was never stored");
        set_flag(word, disputed);
    }

    /// Number of stored deposits.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no deposit is stored.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes held by the store (directory, leaves, sparse buckets), for
    /// reporting bytes per stored deposit.
    pub fn heap_bytes(&self) -> usize {
        let directory =
            self.leaf_of.len() * 4 + self.leaves.capacity() * std::mem::size_of::<Leaf>();
        let leaves: usize = self
            .leaves
            .iter()
            .map(|leaf| match leaf {
                Leaf::Dense(_) => LEAF_IDS * 10,
                Leaf::Sparse(map) => map.allocation_size(),
            })
            .sum();
        directory + leaves
    }
}

#[inline]
fn set_flag(word: &mut u64, disputed: bool) {
    if disputed {
        *word |= DISPUTED;
    } else {
        *word &= !DISPUTED;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_set_leaves_turn_into_bitsets_and_keep_every_claim() {
        let mut ids = TxIdSet::default();
        // Leaf 3 fills past the threshold; leaf 9 stays sparse.
        let dense: Vec<u32> = (0..BITSET_AT + 100).map(|i| 3 * 65_536 + i * 7).collect();
        for &id in &dense {
            assert!(ids.claim(id), "{id}");
        }
        assert!(ids.claim(9 * 65_536 + 5));
        assert_ne!(ids.bitset_of[3], 0, "leaf 3 is a bitset");
        assert_eq!(ids.bitset_of[9], 0, "leaf 9 is sparse");
        assert_eq!(ids.sparse.len(), 1, "leaf 3's ids left the shared set");
        for &id in &dense {
            assert!(!ids.claim(id), "{id} claimed twice");
        }
        assert!(!ids.claim(9 * 65_536 + 5));
        assert!(ids.claim(3 * 65_536 + 1));
        assert!(ids.heap_bytes() < 2 * 1024 * 1024 + 65_536 * 48);
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

    #[test]
    fn deposits_round_trip_in_sparse_and_dense_leaves() {
        let mut store = DepositStore::default();
        // Leaf 0 becomes dense, the others stay sparse.
        let dense_ids: Vec<u32> = (0..DENSE_AT as u32 + 10).map(|i| i * 3).collect();
        let sparse_ids = [65_536u32 * 7, 65_536 * 7 + 1, u32::MAX, 1 << 31];
        for (n, &id) in dense_ids.iter().chain(&sparse_ids).enumerate() {
            let amount = Amount::from_raw(n as i64 + 1);
            store.insert(id, (n % 65_536) as u16, amount);
        }
        assert_eq!(store.len(), dense_ids.len() + sparse_ids.len());
        assert!(matches!(store.leaves[0], Leaf::Dense(_)));
        for (n, &id) in dense_ids.iter().chain(&sparse_ids).enumerate() {
            let expected = Deposit {
                client: (n % 65_536) as u16,
                amount: Amount::from_raw(n as i64 + 1),
                disputed: false,
            };
            assert_eq!(store.get(id), Some(expected), "id {id}");
        }
        assert_eq!(store.get(1), None);
        assert_eq!(store.get(65_536 * 7 + 2), None);
        assert_eq!(store.get(65_536 * 9), None);
    }

    #[test]
    fn dispute_flag_survives_densify_and_keeps_the_full_amount() {
        let mut store = DepositStore::default();
        store.insert(5, 9, Amount::MAX);
        store.set_disputed(5, true);
        assert_eq!(
            store.get(5),
            Some(Deposit {
                client: 9,
                amount: Amount::MAX,
                disputed: true
            })
        );
        for id in 6..DENSE_AT as u32 + 5 {
            store.insert(id, 1, Amount::from_raw(1));
        }
        assert!(matches!(store.leaves[0], Leaf::Dense(_)));
        assert_eq!(
            store.get(5),
            Some(Deposit {
                client: 9,
                amount: Amount::MAX,
                disputed: true
            })
        );
        store.set_disputed(5, false);
        assert!(!store.get(5).unwrap().disputed);
        store.set_disputed(6, true);
        assert!(store.get(6).unwrap().disputed);
    }

    #[test]
    fn a_leaf_starts_dense_only_next_to_an_earned_dense_leaf() {
        let mut store = DepositStore::default();
        // Leaf 0 earns density by count.
        for id in 0..DENSE_AT as u32 {
            store.insert(id, 1, Amount::from_raw(1));
        }
        assert!(matches!(&store.leaves[0], Leaf::Dense(d) if d.earned(DENSE_AT)));
        // Leaf 1 starts dense (sequential ids skip the sparse phase)...
        store.insert(65_536, 1, Amount::from_raw(1));
        assert!(matches!(store.leaves[1], Leaf::Dense(_)));
        // ...but leaf 2, next to an unearned dense leaf, starts sparse, and
        // so does a leaf with no neighbour at all.
        store.insert(2 * 65_536, 1, Amount::from_raw(1));
        assert!(matches!(store.leaves[2], Leaf::Sparse(_)));
        store.insert(9 * 65_536, 1, Amount::from_raw(1));
        assert!(matches!(store.leaves[3], Leaf::Sparse(_)));
        assert_eq!(
            store.get(65_536).map(|d| d.amount),
            Some(Amount::from_raw(1))
        );
        assert_eq!(store.len(), DENSE_AT + 3);
    }

    /// Both stores against std collections, over a mix of id patterns that
    /// makes leaves turn dense (and bitsets) in the middle of the run.
    #[test]
    fn stores_agree_with_std_collections_over_mixed_id_patterns() {
        use std::collections::{HashMap, HashSet};
        let mut seed: u64 = 0x2545_F491_4F6C_DD1D;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let (mut ids, mut ids_model) = (TxIdSet::default(), HashSet::new());
        let (mut store, mut model) = (DepositStore::default(), HashMap::new());
        let mut sequential = 0u32;
        for step in 0..400_000u32 {
            let r = next();
            let id = match r % 4 {
                0 | 1 => {
                    sequential += 1 + (r >> 8) as u32 % 2;
                    sequential
                }
                2 => (r >> 16) as u32,
                _ => ((r >> 16) as u32 % 4096) << 16,
            };
            assert_eq!(
                ids.claim(id),
                ids_model.insert(id),
                "claim {id} at step {step}"
            );
            if !model.contains_key(&id) && r % 3 != 0 {
                let amount = Amount::from_raw(1 + (r >> 20) as i64 % 1_000_000);
                let client = (r >> 40) as u16;
                store.insert(id, client, amount);
                model.insert(
                    id,
                    Deposit {
                        client,
                        amount,
                        disputed: false,
                    },
                );
            }
            // Flip a dispute flag and read back a recent id.
            if let Some(deposit) = model.get_mut(&id) {
                if r % 5 == 0 {
                    deposit.disputed = !deposit.disputed;
                    store.set_disputed(id, deposit.disputed);
                }
            }
            let probe = id.wrapping_sub((r >> 60) as u32);
            assert_eq!(
                store.get(probe),
                model.get(&probe).copied(),
                "get {probe} at step {step}"
            );
        }
        assert!(
            store.leaves.iter().any(|l| matches!(l, Leaf::Dense(_))),
            "some leaf turned dense"
        );
        assert!(
            ids.bitset_of.iter().any(|&b| b != 0),
            "some leaf became a bitset"
        );
        assert_eq!(store.len(), model.len());
        for (&id, deposit) in &model {
            assert_eq!(store.get(id), Some(*deposit), "final {id}");
        }
    }

    #[test]
    fn a_share_of_the_ids_scales_the_dense_threshold() {
        let mut store = DepositStore::for_share(2);
        for id in 0..DENSE_AT as u32 + 10 {
            store.insert(id, 1, Amount::from_raw(1));
        }
        assert!(
            matches!(store.leaves[0], Leaf::Sparse(_)),
            "2 shares: 40,000 needed"
        );
        for id in DENSE_AT as u32 + 10..2 * DENSE_AT as u32 {
            store.insert(id, 1, Amount::from_raw(1));
        }
        assert!(matches!(store.leaves[0], Leaf::Dense(_)));
        assert_eq!(store.get(7).map(|d| d.amount), Some(Amount::from_raw(1)));
    }

    #[test]
    #[should_panic(expected = "stored twice")]
    fn storing_an_id_twice_is_a_bug() {
        let mut store = DepositStore::default();
        store.insert(1, 1, Amount::from_raw(1));
        store.insert(1, 1, Amount::from_raw(1));
    }

    #[test]
    fn sparse_entries_are_compact() {
        assert_eq!(std::mem::size_of::<(u16, SparseEntry)>(), 12);
    }
}
