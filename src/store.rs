//! Compact stores keyed by the u32 transaction id.
//!
//! Both stores split the id space into 65,536 *leaves* of 65,536 ids
//! (`leaf = id >> 16`, `slot = id & 0xFFFF`) and allocate a leaf only when an
//! id in it first appears. Nothing is ever reallocated as a whole, so there is
//! no doubling spike: memory grows one leaf at a time.
//!
//! * [`TxIdSet`] (SPEC rule 2, ids claimed by deposits and withdrawals): a
//!   leaf is a small hash set of slots until it holds [`BITSET_AT`] ids, then
//!   an 8 KiB bitset (512 MiB if every id appears).
//! * [`DepositStore`] (applied deposits, for disputes) keeps each leaf in one
//!   of two forms. A *sparse* leaf is a small hash map from slot to a 12-byte
//!   entry, which keeps scattered ids (random u32 ids, multiples of 65,536)
//!   cheap. When a leaf holds [`DENSE_AT`] deposits it becomes *dense*: two
//!   flat arrays indexed by slot (8-byte amount with the dispute flag in the
//!   sign bit, 2-byte client), 10 bytes per id with no hashing at all. The
//!   usual sequential ids therefore cost 10 bytes per id slot.
//!
//! A new leaf whose left neighbour *earned* its density (reached
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

/// A leaf of [`TxIdSet`] becomes a bitset when it holds this many ids: the
/// sparse set would next grow to 4,096 buckets of 3 bytes (12 KiB), more than
/// the 8 KiB bitset.
pub const BITSET_AT: usize = 1_536;

enum IdLeaf {
    Empty,
    /// Claimed slots of a leaf with few ids (scattered ids: random u32 ids,
    /// multiples of 65,536, ...).
    Sparse(hashbrown::HashSet<u16>),
    /// One bit per id of the leaf.
    Bits(Box<[u64]>),
}

/// The set of tx ids claimed so far (SPEC rule 2).
///
/// Each 65,536-id leaf starts as a small hash set of its claimed slots and
/// turns into an 8 KiB bitset at [`BITSET_AT`] ids. A plain paged bitset costs
/// 8 KiB for the first id of every leaf: sparse random ids then touch all
/// 65,536 leaves, 512 MiB of fresh pages, and ran 4.4x slower than sequential
/// ids (perf.md, "Sparse ids"). Now memory is at most ~7 bytes per claimed id
/// in sparse leaves and 8 KiB per dense leaf (512 MiB if every u32 id appears).
pub struct TxIdSet {
    leaves: Vec<IdLeaf>,
}

impl Default for TxIdSet {
    fn default() -> Self {
        TxIdSet {
            leaves: (0..LEAVES).map(|_| IdLeaf::Empty).collect(),
        }
    }
}

impl TxIdSet {
    /// Claims `id`; true if it was not claimed before.
    #[inline]
    pub fn claim(&mut self, id: TxId) -> bool {
        let (leaf, slot) = split(id);
        let leaf = &mut self.leaves[leaf];
        match leaf {
            IdLeaf::Bits(words) => {
                let (word, bit) = (slot / 64, 1u64 << (slot % 64));
                let fresh = words[word] & bit == 0;
                words[word] |= bit;
                fresh
            }
            IdLeaf::Sparse(set) => {
                let fresh = set.insert(slot as u16);
                if set.len() >= BITSET_AT {
                    let mut words = vec![0u64; LEAF_IDS / 64].into_boxed_slice();
                    for &slot in set.iter() {
                        words[usize::from(slot) / 64] |= 1 << (slot % 64);
                    }
                    *leaf = IdLeaf::Bits(words);
                }
                fresh
            }
            IdLeaf::Empty => {
                *leaf = IdLeaf::Sparse(hashbrown::HashSet::from_iter([slot as u16]));
                true
            }
        }
    }

    /// Bytes held by the directory and the leaves.
    pub fn heap_bytes(&self) -> usize {
        let leaves: usize = self
            .leaves
            .iter()
            .map(|leaf| match leaf {
                IdLeaf::Empty => 0,
                IdLeaf::Sparse(set) => set.allocation_size(),
                IdLeaf::Bits(_) => LEAF_IDS / 8,
            })
            .sum();
        leaves + self.leaves.len() * std::mem::size_of::<IdLeaf>()
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
    fn earned(&self) -> bool {
        self.count as usize >= DENSE_AT
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
}

impl Default for DepositStore {
    fn default() -> Self {
        DepositStore {
            leaf_of: vec![0u32; LEAVES].into(),
            leaves: Vec::new(),
            len: 0,
        }
    }
}

impl DepositStore {
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
                        |i| matches!(&self.leaves[i as usize], Leaf::Dense(d) if d.earned()),
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
                if map.len() >= DENSE_AT {
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
        let dense: Vec<u32> = (0..BITSET_AT as u32 + 100)
            .map(|i| 3 * 65_536 + i * 7)
            .collect();
        for &id in &dense {
            assert!(ids.claim(id), "{id}");
        }
        assert!(ids.claim(9 * 65_536 + 5));
        assert!(matches!(ids.leaves[3], IdLeaf::Bits(_)));
        assert!(matches!(ids.leaves[9], IdLeaf::Sparse(_)));
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
        assert!(matches!(&store.leaves[0], Leaf::Dense(d) if d.earned()));
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
