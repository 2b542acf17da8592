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

pub(crate) const LEAF_BITS: u32 = 16;
/// Ids per leaf of either store.
pub(crate) const LEAF_IDS: usize = 1 << LEAF_BITS;
/// Leaves in the u32 id space.
pub(crate) const LEAVES: usize = 1 << (32 - LEAF_BITS);

/// A sparse leaf becomes dense when it holds this many deposits. A dense leaf
/// costs `LEAF_IDS * 10` = 640 KiB; at this count the sparse map uses 32,768
/// buckets of 13 bytes (416 KiB) and would next double to 832 KiB.
pub const DENSE_AT: usize = 20_000;

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

/// One leaf of deposits, as [`DepositStore::leaf`] gives it.
pub(crate) enum DepositLeaf<'a> {
    /// Indexed by slot; a zero word is an empty slot.
    Dense {
        words: &'a [u64],
        clients: &'a [ClientId],
        count: usize,
    },
    /// (slot, client, packed word), in no order.
    Sparse(Vec<(u16, ClientId, u64)>),
}

impl DepositLeaf<'_> {
    /// Every (slot, client, packed word) of the leaf.
    pub(crate) fn for_each(&self, mut f: impl FnMut(u16, ClientId, u64)) {
        match self {
            DepositLeaf::Dense { words, clients, .. } => {
                for (slot, &word) in words.iter().enumerate() {
                    if word != 0 {
                        f(slot as u16, clients[slot], word);
                    }
                }
            }
            DepositLeaf::Sparse(entries) => {
                for &(slot, client, word) in entries {
                    f(slot, client, word);
                }
            }
        }
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
pub(crate) fn unpack(client: ClientId, word: u64) -> Deposit {
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

    /// Stores a deposit's packed word and client in an empty slot.
    #[inline]
    fn store(&mut self, id: TxId, slot: usize, client: ClientId, word: u64) {
        assert_eq!(self.words[slot], 0, "deposit {id} stored twice");
        self.words[slot] = word;
        self.clients[slot] = client;
        self.count += 1;
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
    ///
    /// The common case, a slot of a dense leaf, is inlined into the ledger;
    /// everything else (a new leaf, a sparse leaf) is out of line. With the
    /// whole function out of line, as the compiler chose once a second
    /// caller appeared, the single-threaded path ran 8-10% slower (perf.md).
    #[inline]
    pub fn insert(&mut self, id: TxId, client: ClientId, amount: Amount) {
        let (leaf, slot) = split(id);
        if let Some(index) = self.leaf_of[leaf].checked_sub(1) {
            if let Leaf::Dense(dense) = &mut self.leaves[index as usize] {
                dense.store(id, slot, client, pack(amount, false));
                self.len += 1;
                return;
            }
        }
        self.insert_slow(id, client, amount);
    }

    /// [`DepositStore::insert`] into a new or a sparse leaf.
    #[inline(never)]
    fn insert_slow(&mut self, id: TxId, client: ClientId, amount: Amount) {
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
            Leaf::Dense(dense) => dense.store(id, slot, client, word),
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

    /// Stores a deposit with its dispute flag, as taken from another store or
    /// a saved state. Each id at most once.
    pub fn restore(&mut self, id: TxId, deposit: Deposit) {
        self.insert(id, deposit.client, deposit.amount);
        if deposit.disputed {
            self.set_disputed(id, true);
        }
    }

    /// Every stored deposit, in ascending id order.
    pub fn iter(&self) -> impl Iterator<Item = (TxId, Deposit)> + '_ {
        let leaves = self.leaf_of.iter().enumerate();
        leaves.flat_map(
            move |(leaf, &index)| -> Box<dyn Iterator<Item = (TxId, Deposit)> + '_> {
                let base = (leaf as u32) << LEAF_BITS;
                let Some(index) = index.checked_sub(1) else {
                    return Box::new(std::iter::empty());
                };
                match &self.leaves[index as usize] {
                    Leaf::Dense(dense) => {
                        Box::new((0..LEAF_IDS).filter(|&slot| dense.words[slot] != 0).map(
                            move |slot| {
                                (
                                    base | slot as u32,
                                    unpack(dense.clients[slot], dense.words[slot]),
                                )
                            },
                        ))
                    }
                    Leaf::Sparse(map) => {
                        let mut entries: Vec<(TxId, Deposit)> = map
                            .iter()
                            .map(|(&slot, entry)| {
                                let client = ClientId::from_ne_bytes(entry.client);
                                let word = u64::from_ne_bytes(entry.word);
                                (base | u32::from(slot), unpack(client, word))
                            })
                            .collect();
                        entries.sort_unstable_by_key(|&(id, _)| id);
                        Box::new(entries.into_iter())
                    }
                }
            },
        )
    }

    /// The deposits of leaf `leaf`, if it has any: its dense arrays, or its
    /// sparse entries as (slot, client, packed word), in no order.
    pub(crate) fn leaf(&self, leaf: usize) -> Option<DepositLeaf<'_>> {
        let index = self.leaf_of[leaf].checked_sub(1)?;
        Some(match &self.leaves[index as usize] {
            Leaf::Dense(dense) => DepositLeaf::Dense {
                words: &dense.words,
                clients: &dense.clients,
                count: dense.count as usize,
            },
            Leaf::Sparse(map) => {
                let entries = map.iter().map(|(&slot, e)| {
                    let client = ClientId::from_ne_bytes(e.client);
                    (slot, client, u64::from_ne_bytes(e.word))
                });
                DepositLeaf::Sparse(entries.collect())
            }
        })
    }

    /// `parts` new stores (each for one of `parts` shares) holding the
    /// deposits of `stores`, each in store `to(client)`. Each leaf is built
    /// once at its final size: no map grows, nothing is hashed twice.
    pub(crate) fn redistribute(
        stores: &[&DepositStore],
        parts: usize,
        to: impl Fn(ClientId) -> usize,
    ) -> Vec<DepositStore> {
        let mut out: Vec<DepositStore> =
            (0..parts).map(|_| DepositStore::for_share(parts)).collect();
        let mut split: Vec<(Vec<u16>, Vec<ClientId>, Vec<u64>)> = vec![Default::default(); parts];
        for leaf in 0..LEAVES {
            let present: Vec<DepositLeaf<'_>> =
                stores.iter().filter_map(|s| s.leaf(leaf)).collect();
            if present.is_empty() {
                continue;
            }
            for (slots, clients, words) in &mut split {
                slots.clear();
                clients.clear();
                words.clear();
            }
            for part in &present {
                part.for_each(|slot, client, word| {
                    let (slots, clients, words) = &mut split[to(client)];
                    slots.push(slot);
                    clients.push(client);
                    words.push(word);
                });
            }
            for (store, (slots, clients, words)) in out.iter_mut().zip(&split) {
                if !slots.is_empty() {
                    store.load_sparse(leaf, slots, clients, words);
                }
            }
        }
        out
    }

    /// True when leaf `leaf` holds deposits.
    pub(crate) fn has_leaf(&self, leaf: usize) -> bool {
        self.leaf_of[leaf] != 0
    }

    /// Stores a leaf read back from a state file as parallel arrays of
    /// slots, clients and packed words; dense when it holds enough. The leaf
    /// must be new to this store.
    pub(crate) fn load_sparse(
        &mut self,
        leaf: usize,
        slots: &[u16],
        clients: &[ClientId],
        words: &[u64],
    ) {
        assert!(slots.len() == clients.len() && slots.len() == words.len());
        if slots.len() >= self.dense_at {
            let mut dense_words = vec![0u64; LEAF_IDS].into_boxed_slice();
            let mut dense_clients = vec![0; LEAF_IDS].into_boxed_slice();
            for ((&slot, &client), &word) in slots.iter().zip(clients).zip(words) {
                dense_words[usize::from(slot)] = word;
                dense_clients[usize::from(slot)] = client;
            }
            return self.load_dense(leaf, dense_words, dense_clients);
        }
        assert_eq!(self.leaf_of[leaf], 0, "leaf {leaf} loaded twice");
        let mut map = hashbrown::HashMap::with_capacity(slots.len());
        for ((&slot, &client), &word) in slots.iter().zip(clients).zip(words) {
            let entry = SparseEntry {
                word: word.to_ne_bytes(),
                client: client.to_ne_bytes(),
            };
            map.insert(slot, entry);
        }
        self.leaves.push(Leaf::Sparse(map));
        self.leaf_of[leaf] = self.leaves.len() as u32;
        self.len += slots.len();
    }

    /// Stores a whole leaf read back from a state file: `words` (packed
    /// amount and dispute flag, 0 for no deposit) and `clients`, indexed by
    /// slot. The leaf must be new to this store.
    pub(crate) fn load_dense(&mut self, leaf: usize, words: Box<[u64]>, clients: Box<[ClientId]>) {
        assert!(words.len() == LEAF_IDS && clients.len() == LEAF_IDS);
        assert_eq!(self.leaf_of[leaf], 0, "leaf {leaf} loaded twice");
        let count = words.iter().filter(|&&w| w != 0).count();
        self.leaves.push(Leaf::Dense(DenseLeaf {
            words,
            clients,
            count: count as u32,
        }));
        self.leaf_of[leaf] = self.leaves.len() as u32;
        self.len += count;
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
        let disputed_max = Some(Deposit {
            client: 9,
            amount: Amount::MAX,
            disputed: true,
        });
        store.insert(5, 9, Amount::MAX);
        store.set_disputed(5, true);
        assert_eq!(store.get(5), disputed_max);
        for id in 6..DENSE_AT as u32 + 5 {
            store.insert(id, 1, Amount::from_raw(1));
        }
        assert!(matches!(store.leaves[0], Leaf::Dense(_)));
        assert_eq!(store.get(5), disputed_max, "the same after densify");
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
            ids.leaves[1..].iter().any(|leaf| leaf.bitset != 0),
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
