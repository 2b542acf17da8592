//! Applied deposits by tx id, for disputes, resolves and chargebacks: a
//! worker's store, compact on every id pattern.
//!
//! # What a deposit costs
//!
//! A deposit needs its client (2 bytes), its amount and a dispute bit; its
//! tx id can be implicit. Nearly every real amount is below 214,748.3647
//! (2^31 ten-thousandths), so the amount and the flag share one 32-bit
//! *word* (bit 31: disputed); a larger amount's word holds a marker
//! (`BIG`) and the amount sits in a small side table. So:
//!
//! * a *dense* leaf (65,536 ids) is two flat arrays indexed by the id's low
//!   16 bits: 4-byte words and 2-byte clients, **6 bytes per id slot**, no
//!   search at all. Sequential ids, one worker: 6 bytes per deposit.
//! * a *sparse* leaf is a sorted list of 8-byte entries (slot, client,
//!   word), cut into chunks of at most [`CHUNK`] entries so that an insert
//!   moves at most a few KiB, grown by a quarter at a time instead of
//!   doubled: about **9 bytes per deposit** on every other pattern (random
//!   u32 ids, strides, a worker's share of sequential ids).
//!
//! * a *ranked* leaf ([`RANKED_AT`] deposits or more, reached by appends:
//!   a worker's share of ascending ids) is a bit per slot, a count per 64
//!   slots, and the words and clients in slot order: one popcount finds a
//!   deposit, **about 6.5 bytes a deposit** at a third of the slots.
//!
//! A sparse or ranked leaf turns dense at [`DENSE_AT`] deposits (half its slots); a
//! new leaf whose left neighbour *earned* its density starts dense, so
//! sequential ids skip the sparse phase. Every leaf that starts dense has a
//! distinct earned neighbour, so dense leaves are at most twice the earned
//! ones: hostile ids cannot make the store cost more than 2 x 384 KiB /
//! 32,768 = 24 bytes a deposit that way.
//!
//! Nothing here doubles a whole table: memory grows one chunk at a time, so
//! a run's peak is its end state, not 1.5x of it (the old per-leaf hash maps
//! cost 22 bytes a deposit at 44-87% load, and doubled).

use super::leaf::{
    populate, populated, prefetch, prefetch_all, rank, split, LEAF_BITS, LEAF_IDS, LEAVES,
};
use crate::amount::Amount;
use crate::tx::{ClientId, TxId};

/// A sparse leaf becomes dense when it holds this many deposits, half its
/// slots: a dense leaf (6 x 65,536 = 384 KiB) then costs 12 bytes a deposit
/// at most, and finds a deposit with no search. (At 44,000, where the two
/// forms cost the same, the 20M-row file's leaves, 60% deposits, stayed
/// sparse, and the single-threaded run took 1.7x as long.)
pub const DENSE_AT: usize = 32_768;

/// The most entries a chunk of a sparse leaf holds; a full one splits in
/// two. An insert moves at most this many 8-byte entries.
pub const CHUNK: usize = 128;

/// Bit 31 of a word: the deposit is under dispute.
const DISPUTED: u32 = 1 << 31;
/// A word's amount part when the amount is in the side table.
const BIG: u32 = DISPUTED - 1;

/// One applied deposit as the ledger sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Deposit {
    pub client: ClientId,
    pub amount: Amount,
    pub disputed: bool,
}

/// A sparse leaf's entry. 0 is no valid word: every deposit is positive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    slot: u16,
    client: ClientId,
    word: u32,
}

#[derive(Clone)]
struct DenseLeaf {
    /// Indexed by slot; 0 is an empty slot. Arrays of a leaf's length, not
    /// slices: a slot (masked from an id) needs no bounds check in them
    /// (four a deposit, in the ledger's loop).
    words: Box<[u32; LEAF_IDS]>,
    clients: Box<[ClientId; LEAF_IDS]>,
    /// Deposits stored in this leaf.
    count: u32,
}

impl DenseLeaf {
    fn new() -> Self {
        DenseLeaf {
            words: populated(),
            clients: populated(),
            count: 0,
        }
    }

    /// Dense by count, not just by neighbourhood.
    fn earned(&self) -> bool {
        self.count as usize >= DENSE_AT
    }
}

/// Sorted chunks of sorted entries: every entry of a chunk has a smaller
/// slot than every entry of the next. The first chunk sits in the leaf
/// itself, and the rest behind one pointer: a worker holds a leaf per 65,536
/// ids however few deposits it has there, so a leaf must be small (32
/// bytes; with three inline vectors it was 80, 4 bytes a deposit on the
/// adversarial preset with 3 workers).
#[derive(Clone, Default)]
struct SparseLeaf {
    first: Vec<Entry>,
    /// Chunks 1.. (none until the first chunk splits).
    more: Option<Box<Chunks>>,
}

/// The chunks after the first, with their first slots side by side.
#[derive(Clone, Default)]
struct Chunks {
    rest: Vec<Vec<Entry>>,
    /// The first slot of each chunk of `rest`: finding a chunk reads this
    /// array, not every chunk's first entry (a cache miss a step: the 20M-row
    /// file ran 1.7x slower that way).
    starts: Vec<u16>,
    /// Entries in `rest`.
    count: u32,
}

impl SparseLeaf {
    fn count(&self) -> usize {
        self.first.len() + self.more.as_ref().map_or(0, |m| m.count as usize)
    }

    fn chunk(&self, index: usize) -> &Vec<Entry> {
        match (index, &self.more) {
            (0, _) => &self.first,
            (_, Some(more)) => &more.rest[index - 1],
            (_, None) => unreachable!("chunk {index} of a one-chunk leaf"),
        }
    }

    fn chunk_mut(&mut self, index: usize) -> &mut Vec<Entry> {
        match (index, &mut self.more) {
            (0, _) => &mut self.first,
            (_, Some(more)) => &mut more.rest[index - 1],
            (_, None) => unreachable!("chunk {index} of a one-chunk leaf"),
        }
    }

    /// The chunk that holds, or would hold, `slot` (only the first chunk
    /// can be empty, and only while it is the only one).
    #[inline]
    fn chunk_of(&self, slot: u16) -> usize {
        self.more
            .as_ref()
            .map_or(0, |more| rank(&more.starts, slot))
    }

    #[inline]
    fn find(&self, slot: u16) -> Option<&Entry> {
        let chunk = self.chunk(self.chunk_of(slot));
        let at = search(chunk, slot).ok()?;
        Some(&chunk[at])
    }

    fn find_mut(&mut self, slot: u16) -> Option<&mut Entry> {
        let chunk = self.chunk_mut(self.chunk_of(slot));
        let at = search(chunk, slot).ok()?;
        Some(&mut chunk[at])
    }

    /// Inserts an entry whose slot is new to the leaf; `appends` when its
    /// slot is above every slot of the leaf (no search then).
    fn insert(&mut self, entry: Entry, appends: bool) {
        if appends {
            return self.append(entry);
        }
        let chunks = 1 + self.more.as_ref().map_or(0, |more| more.rest.len());
        let index = self.chunk_of(entry.slot);
        let last = index + 1 == chunks;
        let upper = {
            let chunk = self.chunk_mut(index);
            let at = match search(chunk, entry.slot) {
                Ok(_) => panic!("deposit slot {} stored twice", entry.slot),
                Err(at) => at,
            };
            if chunk.len() == chunk.capacity() {
                // Grow by a quarter: less slack than doubling, still amortised.
                chunk.reserve_exact((chunk.len() / 4).max(4));
            }
            let appended = at == chunk.len() && last;
            chunk.insert(at, entry);
            (chunk.len() > CHUNK).then(|| {
                // Ascending slots (a worker's share of sequential ids) leave
                // the lower chunk full and exact; anything else splits in
                // halves.
                let cut = if appended { CHUNK } else { chunk.len() / 2 };
                let mut upper = chunk.split_off(cut);
                chunk.shrink_to(if appended { cut } else { cut + cut / 4 });
                upper.reserve_exact(4);
                upper
            })
        };
        if index > 0 {
            self.more.as_mut().expect("chunk > 0 is in `more`").count += 1;
        }
        if let Some(upper) = upper {
            let more = self.more.get_or_insert_with(Box::default);
            if index == 0 {
                // These entries left the first chunk for `rest`.
                more.count += upper.len() as u32;
            }
            // Chunk `index + 1` sits at `rest[index]`.
            more.starts.insert(index, upper[0].slot);
            more.rest.insert(index, upper);
        }
    }

    /// Appends an entry above every slot of the leaf: to the tail chunk,
    /// given room for a whole chunk at once, or, when it holds [`CHUNK`],
    /// to a new one (no split, no shrink). Growing by a quarter and
    /// splitting cost a reallocation every 5.5 deposits in each worker with
    /// `--workers 2`; doubling from 4 still cost five a chunk, 9 of the
    /// run's instructions a row (perf.md). Only the store's top leaf takes
    /// appends, so only its tail has that slack (at most a chunk, 1 KiB),
    /// and [`SparseLeaf::trim`] takes it back.
    fn append(&mut self, entry: Entry) {
        let tail = self.tail_mut();
        debug_assert!(tail.last().is_none_or(|e| e.slot < entry.slot));
        if tail.len() < CHUNK {
            if tail.len() == tail.capacity() {
                tail.reserve_exact(CHUNK - tail.len());
            }
            tail.push(entry);
            if let Some(more) = &mut self.more {
                more.count += 1;
            }
            return;
        }
        let mut chunk = Vec::with_capacity(CHUNK);
        chunk.push(entry);
        let more = self.more.get_or_insert_with(Box::default);
        more.starts.push(entry.slot);
        more.rest.push(chunk);
        more.count += 1;
    }

    /// Appends an entry above every slot of the leaf to the tail chunk if
    /// that has room and spare capacity (nothing to grow or split); false,
    /// and nothing done, if not. (Out of line: see `DepositStore::store`.)
    #[inline(never)]
    fn try_append(&mut self, entry: Entry) -> bool {
        let (tail, count) = match &mut self.more {
            Some(more) => (
                more.rest.last_mut().expect("`more` has a chunk"),
                Some(&mut more.count),
            ),
            None => (&mut self.first, None),
        };
        if tail.len() >= CHUNK || tail.len() == tail.capacity() {
            return false;
        }
        debug_assert!(tail.last().is_none_or(|e| e.slot < entry.slot));
        tail.push(entry);
        if let Some(count) = count {
            *count += 1;
        }
        true
    }

    /// The last chunk.
    fn tail_mut(&mut self) -> &mut Vec<Entry> {
        match &mut self.more {
            Some(more) => more.rest.last_mut().expect("`more` has a chunk"),
            None => &mut self.first,
        }
    }

    /// Gives back the tail chunk's slack (once the leaf takes no appends).
    fn trim(&mut self) {
        self.tail_mut().shrink_to_fit();
    }

    fn entries(&self) -> impl Iterator<Item = &Entry> + '_ {
        let rest = self.more.iter().flat_map(|more| more.rest.iter().flatten());
        self.first.iter().chain(rest)
    }

    fn heap_bytes(&self) -> usize {
        let entry = std::mem::size_of::<Entry>();
        self.first.capacity() * entry
            + self.more.as_ref().map_or(0, |more| {
                std::mem::size_of::<Chunks>()
                    + more
                        .rest
                        .iter()
                        .map(|c| c.capacity() * entry)
                        .sum::<usize>()
                    + more.rest.capacity() * std::mem::size_of::<Vec<Entry>>()
                    + more.starts.capacity() * 2
            })
    }
}

/// Where `slot` is, or would go, in a chunk. The chunk's lines (at most
/// nine) are all requested first: with scattered ids the chunk is rarely
/// cached, and a plain binary search would wait on four misses in a row.
///
/// A slot past the chunk's last entry (a worker's share of ascending ids
/// appends to its tail chunk) skips the search: it was most of
/// `store_slow`'s samples in each worker on the 20M-row file with
/// `--workers 2` (perf.md).
#[inline]
fn search(chunk: &[Entry], slot: u16) -> Result<usize, usize> {
    prefetch_all(chunk);
    match chunk.last() {
        Some(last) if last.slot < slot => Err(chunk.len()),
        _ => chunk.binary_search_by_key(&slot, |e| e.slot),
    }
}

/// A leaf packed by rank, for the deposits a worker gets of ascending ids
/// (with 2 workers, every other one; perf.md, "No serial stage"): a bit per
/// slot, the deposits before each 64-slot word, and the deposits' words and
/// clients in slot order, found by one popcount. About 6.5 bytes a deposit
/// at the 20M-row file's 19,600 a leaf, where a sparse leaf takes 9 and a
/// search. A deposit below the last one packed waits in `late`, a short
/// sorted list, until [`LATE_MAX`] of them are merged in.
#[derive(Clone)]
struct RankedLeaf {
    /// One bit per slot packed in `words`.
    bits: Box<[u64]>,
    /// Deposits packed in the words of `bits` before each one, for the
    /// words up to `filled` (the rest are empty).
    before: Box<[u16]>,
    filled: usize,
    words: Vec<u32>,
    clients: Vec<ClientId>,
    /// The last slot packed (-1: none).
    last: i32,
    late: Vec<Entry>,
}

/// Late deposits a ranked leaf holds before it merges them in: a late
/// insert then moves at most 2 KiB, and a merge (6 bytes a deposit) comes
/// once per this many.
const LATE_MAX: usize = 256;

/// A sparse leaf whose deposit number this is an append becomes a ranked
/// one (its 10 KiB of bits and counts are then under 2.5 bytes a deposit);
/// one that fills out of order stays sparse until dense.
pub const RANKED_AT: usize = 4_096;

impl RankedLeaf {
    /// A ranked leaf holding `entries` (sorted by slot).
    fn of(entries: impl Iterator<Item = Entry>, len: usize) -> RankedLeaf {
        let mut leaf = RankedLeaf {
            bits: vec![0u64; LEAF_IDS / 64].into(),
            before: vec![0u16; LEAF_IDS / 64].into(),
            filled: 0,
            words: Vec::with_capacity(len + len / 4),
            clients: Vec::with_capacity(len + len / 4),
            last: -1,
            late: Vec::new(),
        };
        for entry in entries {
            leaf.append(entry);
        }
        leaf
    }

    fn count(&self) -> usize {
        self.words.len() + self.late.len()
    }

    /// Whether `slot` goes after every slot packed.
    #[inline]
    fn appends(&self, slot: u16) -> bool {
        i32::from(slot) > self.last
    }

    /// Packs an entry above every slot packed. The arrays double as they
    /// grow (one copy a deposit; growing by a quarter took five, 30M
    /// instructions of `memcpy` on 1M rows with 2 workers): only the top
    /// leaf takes appends, and [`RankedLeaf::trim`] takes its slack back.
    #[inline(always)]
    fn append(&mut self, entry: Entry) {
        debug_assert!(self.appends(entry.slot));
        let word = usize::from(entry.slot) / 64;
        if word > self.filled {
            let packed = self.words.len() as u16;
            self.before[self.filled + 1..=word].fill(packed);
            self.filled = word;
        }
        self.bits[word] |= 1 << (entry.slot % 64);
        self.words.push(entry.word);
        self.clients.push(entry.client);
        self.last = i32::from(entry.slot);
    }

    /// [`RankedLeaf::append`], not inlined into the ledger's loop, whose
    /// registers it crowded: the dense store beside it spilled.
    #[inline(never)]
    fn append_out_of_line(&mut self, entry: Entry) {
        self.append(entry);
    }

    /// Where a packed slot's deposit is in `words` and `clients`.
    #[inline]
    fn index(&self, slot: u16) -> Option<usize> {
        let word = usize::from(slot) / 64;
        let bits = self.bits[word];
        let bit = u32::from(slot % 64);
        if bits >> bit & 1 == 0 {
            return None;
        }
        let below = (bits & ((1u64 << bit) - 1)).count_ones() as usize;
        Some(usize::from(self.before[word]) + below)
    }

    #[inline]
    fn find(&self, slot: u16) -> Option<(ClientId, u32)> {
        match self.index(slot) {
            Some(i) => Some((self.clients[i], self.words[i])),
            None => {
                let at = self.late.binary_search_by_key(&slot, |e| e.slot).ok()?;
                Some((self.late[at].client, self.late[at].word))
            }
        }
    }

    fn word_mut(&mut self, slot: u16) -> Option<&mut u32> {
        match self.index(slot) {
            Some(i) => Some(&mut self.words[i]),
            None => {
                let at = self.late.binary_search_by_key(&slot, |e| e.slot).ok()?;
                Some(&mut self.late[at].word)
            }
        }
    }

    /// Stores an entry whose slot is new to the leaf.
    fn insert(&mut self, entry: Entry) {
        if self.appends(entry.slot) {
            return self.append(entry);
        }
        assert!(
            self.index(entry.slot).is_none(),
            "deposit slot {} stored twice",
            entry.slot
        );
        match self.late.binary_search_by_key(&entry.slot, |e| e.slot) {
            Ok(_) => panic!("deposit slot {} stored twice", entry.slot),
            Err(at) => self.late.insert(at, entry),
        }
        if self.late.len() >= LATE_MAX {
            let entries = self.entries();
            *self = RankedLeaf::of(entries.into_iter(), self.count());
        }
    }

    /// Every entry, in slot order (the packed ones merged with the late).
    fn entries(&self) -> Vec<Entry> {
        let mut out = Vec::with_capacity(self.count());
        let mut late = self.late.iter().peekable();
        let mut i = 0;
        for (w, &bits) in self.bits.iter().enumerate().take(self.filled + 1) {
            let mut rest = bits;
            while rest != 0 {
                let slot = (w * 64) as u16 + rest.trailing_zeros() as u16;
                rest &= rest - 1;
                while let Some(e) = late.next_if(|e| e.slot < slot) {
                    out.push(*e);
                }
                out.push(Entry {
                    slot,
                    client: self.clients[i],
                    word: self.words[i],
                });
                i += 1;
            }
        }
        out.extend(late);
        out
    }

    /// Gives back the slack (once the leaf takes no appends).
    fn trim(&mut self) {
        // (Little slack, as the room made for the expected count leaves,
        // is not worth a copy.)
        if self.words.capacity() > self.words.len() + self.words.len() / 8 {
            self.words.shrink_to_fit();
            self.clients.shrink_to_fit();
        }
        self.late.shrink_to_fit();
    }

    fn heap_bytes(&self) -> usize {
        LEAF_IDS / 64 * (8 + 2)
            + self.words.capacity() * 4
            + self.clients.capacity() * 2
            + self.late.capacity() * std::mem::size_of::<Entry>()
    }
}

#[derive(Clone)]
enum Leaf {
    Sparse(SparseLeaf),
    /// Boxed: a ranked leaf is rare, and the directory holds a leaf per
    /// 65,536 ids however few deposits it has.
    Ranked(Box<RankedLeaf>),
    /// Not boxed: its two table pointers and count fit in a sparse leaf's
    /// room (the directory's entries stay 32 bytes), and a slot is reached
    /// through one pointer fewer (callgrind, 1M rows `--workers 0`: 445.0M
    /// -> 443.0M instructions).
    Dense(DenseLeaf),
}

/// Applied deposits by tx id (see the module docs).
#[derive(Clone)]
pub struct DepositStore {
    /// `leaf_of[id >> 16]` is an index into `leaves`, plus one; 0 means none.
    leaf_of: Box<[u32]>,
    leaves: Vec<Leaf>,
    /// Amounts of [`BIG`] ten-thousandths or more, by tx id.
    big: hashbrown::HashMap<TxId, i64>,
    len: usize,
    /// One more than the highest id stored (0: none). An id at or above it
    /// goes after every entry of its leaf: ascending ids (one worker's share
    /// of sequential ids) append to the tail chunk with no search.
    top: u64,
    /// The last deposit stored out of line went below `top`: ids come
    /// scattered, and where the next ones go is worth prefetching (see
    /// [`DepositStore::scattered`]).
    scattered: bool,
    /// Leaves that are not dense (sparse or ranked): while there are none,
    /// [`DepositStore::prefetch`]'s first stage has nothing to load.
    undense: u32,
}

impl Default for DepositStore {
    fn default() -> Self {
        DepositStore {
            leaf_of: vec![0u32; LEAVES].into(),
            // Room for every leaf from the start: the addresses are
            // reserved, the pages untouched until used, and the directory
            // never doubles (which held the old and the new one at once).
            leaves: Vec::with_capacity(LEAVES),
            big: hashbrown::HashMap::new(),
            len: 0,
            top: 0,
            scattered: false,
            undense: 0,
        }
    }
}

impl DepositStore {
    /// The word of `amount` (disputed or not), recording a big amount.
    #[inline]
    fn word(&mut self, id: TxId, amount: Amount, disputed: bool) -> u32 {
        debug_assert!(amount.is_positive(), "only positive deposits are stored");
        let raw = amount.raw();
        let value = if raw < i64::from(BIG) {
            raw as u32
        } else {
            self.big.insert(id, raw);
            BIG
        };
        value | if disputed { DISPUTED } else { 0 }
    }

    /// The deposit a stored word stands for.
    #[inline]
    fn unpack(&self, id: TxId, client: ClientId, word: u32) -> Deposit {
        let value = word & !DISPUTED;
        let raw = if value == BIG {
            self.big[&id]
        } else {
            i64::from(value)
        };
        Deposit {
            client,
            amount: Amount::from_raw(raw),
            disputed: word & DISPUTED != 0,
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
                (word != 0).then(|| self.unpack(id, dense.clients[slot], word))
            }
            Leaf::Sparse(sparse) => sparse
                .find(slot as u16)
                .map(|e| self.unpack(id, e.client, e.word)),
            Leaf::Ranked(ranked) => ranked
                .find(slot as u16)
                .map(|(client, word)| self.unpack(id, client, word)),
        }
    }

    /// Whether deposits come with scattered ids (the last one stored out of
    /// line went below the highest): then a path that applies records from
    /// a lookahead prefetches where each deposit will go, as it does what
    /// a dispute reads. With ascending ids (the realistic file) that is
    /// an append to a chunk in cache, and the prefetch's check alone took
    /// `--workers 0` 1.08-1.15x the CPU (20M rows, 9 interleaved rounds,
    /// perf.md); with scattered ids the insert's chunk was a cache miss,
    /// 68% of `store_slow`'s samples.
    #[inline]
    pub fn scattered(&self) -> bool {
        self.scattered
    }

    /// Starts loading the memory that storing or finding `id` will read, so
    /// that a worker can ask for it some records ahead. A sparse leaf's chunk
    /// is reached through its `Vec` header, which is itself rarely cached
    /// with scattered ids: the first call (`deep` false) loads the header,
    /// and a later one (`deep` true) reads it and loads the entries. A
    /// dense leaf's slot is loaded by the second call alone: while every
    /// leaf is dense (the realistic file) the first returns at once. (It
    /// had loaded the same slot, and the call with its look for the leaf
    /// was 5.5% of a `--workers 0` run's samples: 20M rows, 0.79 -> 0.76
    /// s of CPU, perf.md.)
    #[inline(always)]
    pub fn prefetch(&self, id: TxId, deep: bool) {
        if u64::from(id) >= self.top || (!deep && self.undense == 0) {
            // Not stored; stored later, it is an append (see `top`), whose
            // chunk is in cache: loading it was a sixth of a worker's
            // instructions with `--workers 2` (perf.md).
            return;
        }
        self.prefetch_stored(id, deep);
    }

    /// [`DepositStore::prefetch`] for an id below the top (out of line: the
    /// check before it answers most calls, and the call itself was 24
    /// instructions a row with 2 workers).
    #[inline(never)]
    fn prefetch_stored(&self, id: TxId, deep: bool) {
        let (leaf, slot) = split(id);
        let Some(index) = self.leaf_of[leaf].checked_sub(1) else {
            return;
        };
        match &self.leaves[index as usize] {
            Leaf::Dense(dense) => {
                if deep {
                    prefetch(&dense.words[slot]);
                    prefetch(&dense.clients[slot]);
                }
            }
            Leaf::Sparse(sparse) => {
                let chunk = match (&sparse.more, sparse.chunk_of(slot as u16)) {
                    (Some(more), chunk @ 1..) if !deep => return prefetch(&more.rest[chunk - 1]),
                    (_, chunk) => sparse.chunk(chunk),
                };
                if deep {
                    prefetch_all(chunk);
                }
            }
            Leaf::Ranked(ranked) if !deep => {
                prefetch(&ranked.bits[slot / 64]);
                prefetch(&ranked.before[slot / 64]);
            }
            Leaf::Ranked(ranked) => {
                if let Some(i) = ranked.index(slot as u16) {
                    prefetch(&ranked.words[i]);
                    prefetch(&ranked.clients[i]);
                }
            }
        }
    }

    /// Stores an applied, undisputed deposit. Each id is inserted at most
    /// once: the ledger's claim on the id guarantees it.
    ///
    /// The common case, a slot of a dense leaf, is inlined into the ledger;
    /// everything else is out of line. (With the whole function out of
    /// line, the single-threaded path ran 8-10% slower; perf.md.)
    #[inline]
    pub fn insert(&mut self, id: TxId, client: ClientId, amount: Amount) {
        self.store(id, client, amount, false);
    }

    /// Stores a deposit with its dispute flag, as taken from another store or
    /// a saved state. Each id at most once.
    pub fn restore(&mut self, id: TxId, deposit: Deposit) {
        self.store(id, deposit.client, deposit.amount, deposit.disputed);
    }

    /// (Always inlined: with a plain `#[inline]` the compiler had made it a
    /// call again, 43.0M instructions on 1M rows against 31.4M inlined.)
    /// The commonest stores are made here: into a dense leaf (one worker,
    /// ascending ids) and an append to a ranked or sparse one (a worker's
    /// share of ascending ids); such an append out of line took 95-98
    /// instructions a deposit, a third of them the call and a second look
    /// for the leaf (callgrind, `--parsers 2 --workers 2` and `16`,
    /// perf.md). The appends themselves stay out of line: inlined, they
    /// crowded the ledger loop's registers and the dense store spilled.
    #[inline(always)]
    fn store(&mut self, id: TxId, client: ClientId, amount: Amount, disputed: bool) {
        let (leaf, slot) = split(id);
        let raw = amount.raw();
        if let (Some(index), true) = (self.leaf_of[leaf].checked_sub(1), raw < i64::from(BIG)) {
            let word = raw as u32 | if disputed { DISPUTED } else { 0 };
            let top = self.top;
            let found = &mut self.leaves[index as usize];
            if let Leaf::Dense(dense) = found {
                assert_eq!(dense.words[slot], 0, "deposit {id} stored twice");
                dense.words[slot] = word;
                dense.clients[slot] = client;
                dense.count += 1;
                self.len += 1;
                self.top = top.max(u64::from(id) + 1);
                return;
            }
            // An id above every id stored is above every slot of its leaf.
            let entry = Entry {
                slot: slot as u16,
                client,
                word,
            };
            let appended = u64::from(id) >= top
                && match found {
                    Leaf::Ranked(ranked) if ranked.count() + 1 < DENSE_AT => {
                        ranked.append_out_of_line(entry);
                        true
                    }
                    Leaf::Sparse(sparse) => {
                        let count = sparse.count() + 1;
                        count != RANKED_AT && count < DENSE_AT && sparse.try_append(entry)
                    }
                    _ => false,
                };
            if appended {
                self.len += 1;
                self.top = u64::from(id) + 1;
                return;
            }
        }
        self.store_slow(id, client, amount, disputed);
    }

    /// [`DepositStore::store`] where it takes no shortcut: a new leaf, an
    /// insert below the top, a full chunk, a leaf that changes form, a large
    /// amount. Its set-up alone cost 30 instructions an insert (callgrind,
    /// `--workers 2`, perf.md), which the appends in `store` skip.
    #[inline(never)]
    fn store_slow(&mut self, id: TxId, client: ClientId, amount: Amount, disputed: bool) {
        let (leaf, slot) = split(id);
        let word = self.word(id, amount, disputed);
        let appends = u64::from(id) >= self.top;
        self.scattered = !appends;
        if appends && self.top > 0 {
            // The top moves on to another leaf: the last one's appends end.
            let (was, _) = split((self.top - 1) as TxId);
            if was != leaf {
                self.trim_leaf(was);
            }
        }
        self.top = self.top.max(u64::from(id) + 1);
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
                    self.undense += 1;
                    Leaf::Sparse(SparseLeaf::default())
                });
                self.leaf_of[leaf] = self.leaves.len() as u32;
                self.leaves.len() - 1
            }
        };
        match &mut self.leaves[index] {
            Leaf::Dense(dense) => {
                assert_eq!(dense.words[slot], 0, "deposit {id} stored twice");
                dense.words[slot] = word;
                dense.clients[slot] = client;
                dense.count += 1;
            }
            leaf => {
                let entry = Entry {
                    slot: slot as u16,
                    client,
                    word,
                };
                let count = match leaf {
                    Leaf::Sparse(sparse) => {
                        sparse.insert(entry, appends);
                        sparse.count()
                    }
                    Leaf::Ranked(ranked) => {
                        ranked.insert(entry);
                        ranked.count()
                    }
                    Leaf::Dense(_) => unreachable!("matched above"),
                };
                if count >= DENSE_AT {
                    self.make_dense(index);
                } else if count == RANKED_AT && appends {
                    self.make_ranked(index);
                }
            }
        }
        self.len += 1;
    }

    /// Turns leaf `index` dense.
    #[cold]
    fn make_dense(&mut self, index: usize) {
        let mut dense = DenseLeaf::new();
        let entries = match &self.leaves[index] {
            Leaf::Sparse(sparse) => sparse.entries().copied().collect(),
            Leaf::Ranked(ranked) => ranked.entries(),
            Leaf::Dense(_) => return,
        };
        for entry in &entries {
            dense.words[usize::from(entry.slot)] = entry.word;
            dense.clients[usize::from(entry.slot)] = entry.client;
        }
        dense.count = entries.len() as u32;
        self.leaves[index] = Leaf::Dense(dense);
        self.undense -= 1;
    }

    /// Turns leaf `index`, if sparse, into a ranked one.
    #[cold]
    fn make_ranked(&mut self, index: usize) {
        if let Leaf::Sparse(sparse) = &self.leaves[index] {
            // Room for the deposits the leaf will hold at the density it
            // has so far (its ids ascend): no doubling, and the pages mapped
            // at once (a page fault each had made a `--parsers 2 --workers
            // 2` run fault 10 times as often as `--workers 0`; perf.md).
            let last = sparse.entries().last().map_or(0, |e| usize::from(e.slot));
            let count = sparse.count();
            let expected = (count * LEAF_IDS / (last + 1)).clamp(count, DENSE_AT);
            let mut ranked = RankedLeaf::of(sparse.entries().copied(), expected + expected / 16);
            populate(ranked.words.spare_capacity_mut());
            populate(ranked.clients.spare_capacity_mut());
            self.leaves[index] = Leaf::Ranked(Box::new(ranked));
        }
    }

    /// Gives back the slack of `leaf`'s tail chunk, if it is sparse.
    #[cold]
    fn trim_leaf(&mut self, leaf: usize) {
        if let Some(index) = self.leaf_of[leaf].checked_sub(1) {
            match &mut self.leaves[index as usize] {
                Leaf::Sparse(sparse) => sparse.trim(),
                Leaf::Ranked(ranked) => ranked.trim(),
                Leaf::Dense(_) => {}
            }
        }
    }

    /// Marks a stored deposit disputed or not. The id must be stored.
    pub fn set_disputed(&mut self, id: TxId, disputed: bool) {
        let (leaf, slot) = split(id);
        let index = self.leaf_of[leaf]
            .checked_sub(1)
            .expect("set_disputed on a deposit that was never stored");
        let word = match &mut self.leaves[index as usize] {
            Leaf::Dense(dense) => &mut dense.words[slot],
            Leaf::Sparse(sparse) => {
                &mut sparse
                    .find_mut(slot as u16)
                    .expect("set_disputed on a deposit that was never stored")
                    .word
            }
            Leaf::Ranked(ranked) => ranked
                .word_mut(slot as u16)
                .expect("set_disputed on a deposit that was never stored"),
        };
        assert_ne!(*word, 0, "set_disputed on a deposit that was never stored");
        if disputed {
            *word |= DISPUTED;
        } else {
            *word &= !DISPUTED;
        }
    }

    /// Number of stored deposits.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Bytes held by the store (directory, leaves, chunks, big amounts),
    /// counted from capacities.
    pub fn heap_bytes(&self) -> usize {
        let directory = self.leaf_of.len() * 4 + self.leaves.len() * std::mem::size_of::<Leaf>();
        let leaves: usize = self
            .leaves
            .iter()
            .map(|leaf| match leaf {
                Leaf::Dense(_) => LEAF_IDS * 6,
                Leaf::Sparse(sparse) => sparse.heap_bytes(),
                Leaf::Ranked(ranked) => ranked.heap_bytes(),
            })
            .sum();
        directory + leaves + self.big.allocation_size()
    }

    /// True when leaf `leaf` holds deposits.
    pub(crate) fn has_leaf(&self, leaf: usize) -> bool {
        self.leaf_of[leaf] != 0
    }

    /// Calls `f(slot, client, amount, disputed)` for every deposit of leaf
    /// `leaf`, in ascending slot order.
    pub(crate) fn for_each_in_leaf(&self, leaf: usize, mut f: impl FnMut(u16, ClientId, Deposit)) {
        let Some(index) = self.leaf_of[leaf].checked_sub(1) else {
            return;
        };
        let base = (leaf as u32) << LEAF_BITS;
        match &self.leaves[index as usize] {
            Leaf::Dense(dense) => {
                for (slot, &word) in dense.words.iter().enumerate() {
                    if word != 0 {
                        let client = dense.clients[slot];
                        let id = base | slot as u32;
                        f(slot as u16, client, self.unpack(id, client, word));
                    }
                }
            }
            Leaf::Sparse(sparse) => {
                for e in sparse.entries() {
                    let id = base | u32::from(e.slot);
                    f(e.slot, e.client, self.unpack(id, e.client, e.word));
                }
            }
            Leaf::Ranked(ranked) => {
                for e in ranked.entries() {
                    let id = base | u32::from(e.slot);
                    f(e.slot, e.client, self.unpack(id, e.client, e.word));
                }
            }
        }
    }

    /// Every stored deposit, in ascending id order.
    pub fn iter(&self) -> impl Iterator<Item = (TxId, Deposit)> + '_ {
        (0..LEAVES)
            .filter(|&leaf| self.has_leaf(leaf))
            .flat_map(move |leaf| {
                let base = (leaf as u32) << LEAF_BITS;
                let mut deposits = Vec::new();
                self.for_each_in_leaf(leaf, |slot, _, deposit| {
                    deposits.push((base | u32::from(slot), deposit));
                });
                deposits
            })
    }

    /// `parts` new stores holding the deposits of `stores` (disjoint sets of
    /// ids), each in store `to(client)`. Every leaf is built once, in slot
    /// order, dense when it holds enough.
    pub(crate) fn redistribute(
        stores: &[&DepositStore],
        parts: usize,
        to: impl Fn(ClientId) -> usize,
    ) -> Vec<DepositStore> {
        let mut out: Vec<DepositStore> = (0..parts).map(|_| DepositStore::default()).collect();
        let mut split: Vec<Vec<(u16, Deposit)>> = vec![Vec::new(); parts];
        for leaf in 0..LEAVES {
            if !stores.iter().any(|s| s.has_leaf(leaf)) {
                continue;
            }
            split.iter_mut().for_each(Vec::clear);
            for store in stores {
                store.for_each_in_leaf(leaf, |slot, client, deposit| {
                    split[to(client)].push((slot, deposit));
                });
            }
            let base = (leaf as u32) << LEAF_BITS;
            for (store, deposits) in out.iter_mut().zip(&mut split) {
                // Several source stores: restore the slots in order, so each
                // insert appends.
                deposits.sort_unstable_by_key(|&(slot, _)| slot);
                store.load_leaf(
                    leaf,
                    deposits
                        .iter()
                        .map(|&(slot, d)| (base | u32::from(slot), d)),
                );
            }
        }
        out
    }

    /// Stores a whole leaf of deposits (ascending ids of one new leaf), read
    /// back from a state file or split for workers: dense from the start if
    /// there are enough.
    pub(crate) fn load_leaf(
        &mut self,
        leaf: usize,
        deposits: impl ExactSizeIterator<Item = (TxId, Deposit)>,
    ) {
        assert_eq!(self.leaf_of[leaf], 0, "leaf {leaf} loaded twice");
        if deposits.len() == 0 {
            return;
        }
        if deposits.len() >= DENSE_AT {
            self.leaves.push(Leaf::Dense(DenseLeaf::new()));
            self.leaf_of[leaf] = self.leaves.len() as u32;
        }
        for (id, deposit) in deposits {
            debug_assert_eq!(split(id).0, leaf);
            self.restore(id, deposit);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The next value of a xorshift64 sequence: the tests' id patterns.
    fn xorshift(seed: &mut u64) -> u64 {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        *seed
    }

    /// `undense` is the number of leaves that are not dense.
    fn assert_undense_counted(store: &DepositStore) {
        let counted = store
            .leaves
            .iter()
            .filter(|leaf| !matches!(leaf, Leaf::Dense(_)));
        assert_eq!(store.undense as usize, counted.count(), "undense");
    }

    fn amount(raw: i64) -> Amount {
        Amount::from_raw(raw)
    }

    #[test]
    fn deposits_round_trip_in_sparse_and_dense_leaves_with_any_amount() {
        let mut store = DepositStore::default();
        // Leaf 0 becomes dense, the others stay sparse.
        let dense_ids: Vec<u32> = (0..DENSE_AT as u32 + 10).collect();
        let sparse_ids = [65_536u32 * 7, 65_536 * 7 + 1, u32::MAX, 1 << 31];
        let raw = |n: usize| match n % 5 {
            0 => i64::MAX,
            1 => i64::from(BIG),
            2 => i64::from(BIG) - 1,
            _ => n as i64 + 1,
        };
        let ids = dense_ids.iter().chain(&sparse_ids);
        for (n, &id) in ids.clone().enumerate() {
            store.insert(id, (n % 65_536) as u16, amount(raw(n)));
        }
        assert_eq!(store.len(), dense_ids.len() + sparse_ids.len());
        assert!(matches!(store.leaves[0], Leaf::Dense(_)));
        assert!(matches!(store.leaves[1], Leaf::Sparse(_)));
        for (n, &id) in ids.enumerate() {
            let expected = Deposit {
                client: (n % 65_536) as u16,
                amount: amount(raw(n)),
                disputed: false,
            };
            assert_eq!(store.get(id), Some(expected), "id {id}");
        }
        assert_eq!(store.get(65_536 * 7 + 2), None);
        assert_eq!(store.get(65_536 * 9), None);
        assert_eq!(store.get(DENSE_AT as u32 + 10), None);
    }

    #[test]
    fn the_dispute_flag_survives_densify_and_keeps_a_big_amount() {
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
            store.insert(id, 1, amount(1));
        }
        assert!(matches!(store.leaves[0], Leaf::Dense(_)));
        assert_eq!(store.get(5), disputed_max, "the same after densify");
        store.set_disputed(5, false);
        assert!(!store.get(5).unwrap().disputed);
        store.set_disputed(6, true);
        assert_eq!(store.get(6).unwrap().amount, amount(1));
        assert!(store.get(6).unwrap().disputed);
    }

    #[test]
    fn a_leaf_starts_dense_only_next_to_an_earned_dense_leaf() {
        let mut store = DepositStore::default();
        for id in 0..DENSE_AT as u32 {
            store.insert(id, 1, amount(1));
        }
        assert!(matches!(&store.leaves[0], Leaf::Dense(d) if d.earned()));
        // Leaf 1 starts dense (sequential ids skip the sparse phase)...
        store.insert(65_536, 1, amount(1));
        assert!(matches!(store.leaves[1], Leaf::Dense(_)));
        // ...but leaf 2, next to an unearned dense leaf, starts sparse, and
        // so does a leaf with no neighbour at all.
        store.insert(2 * 65_536, 1, amount(1));
        assert!(matches!(store.leaves[2], Leaf::Sparse(_)));
        store.insert(9 * 65_536, 1, amount(1));
        assert!(matches!(store.leaves[3], Leaf::Sparse(_)));
        assert_eq!(store.len(), DENSE_AT + 3);
    }

    /// Random inserts into one leaf: chunks split, stay sorted and bounded,
    /// and every deposit is found; memory stays near 8 bytes an entry.
    #[test]
    fn sparse_leaves_stay_sorted_chunked_and_compact() {
        let mut store = DepositStore::default();
        let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut slots = Vec::new();
        while slots.len() < 20_000 {
            xorshift(&mut seed);
            let slot = (seed % 65_536) as u32;
            if store.get(3 << 16 | slot).is_none() {
                store.insert(3 << 16 | slot, slot as u16, amount(i64::from(slot) + 1));
                slots.push(slot);
            }
        }
        let Leaf::Sparse(sparse) = &store.leaves[0] else {
            panic!("still sparse")
        };
        let more = sparse.more.as_ref().expect("the leaf has split");
        assert_eq!(sparse.count(), slots.len());
        let chunks = std::iter::once(&sparse.first).chain(&more.rest);
        assert!(chunks.clone().all(|c| !c.is_empty() && c.len() <= CHUNK));
        let entries: Vec<u16> = sparse.entries().map(|e| e.slot).collect();
        assert!(entries.windows(2).all(|w| w[0] < w[1]), "sorted");
        for &slot in &slots {
            let deposit = store.get(3 << 16 | slot).unwrap();
            assert_eq!(deposit.amount, amount(i64::from(slot) + 1));
        }
        let per_entry = sparse.heap_bytes() as f64 / slots.len() as f64;
        assert!(per_entry < 11.0, "{per_entry} bytes an entry");
    }

    /// Against a std map, over a mix of id patterns that makes leaves turn
    /// dense in the middle of the run.
    #[test]
    fn the_store_agrees_with_a_std_map_over_mixed_id_patterns() {
        use std::collections::HashMap;
        let mut seed: u64 = 0x2545_F491_4F6C_DD1D;
        let mut next = move || xorshift(&mut seed);
        let (mut store, mut model) = (DepositStore::default(), HashMap::new());
        let mut sequential = 0u32;
        for step in 0..300_000u32 {
            let r = next();
            let id = match r % 4 {
                0 | 1 => {
                    sequential += 1;
                    sequential
                }
                2 => (r >> 16) as u32,
                _ => ((r >> 16) as u32 % 4096) << 16,
            };
            // Every sequential id, a third of the others: leaves fill up.
            if !model.contains_key(&id) && (r % 4 < 2 || r % 3 != 0) {
                let raw = if r % 97 == 0 {
                    i64::MAX - (r >> 40) as i64
                } else {
                    1 + (r >> 20) as i64 % 1_000_000
                };
                let client = (r >> 40) as u16;
                store.insert(id, client, amount(raw));
                model.insert(
                    id,
                    Deposit {
                        client,
                        amount: amount(raw),
                        disputed: false,
                    },
                );
            }
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
            if step % 10_000 == 0 {
                assert_undense_counted(&store);
            }
        }
        assert_undense_counted(&store);
        assert!(store.leaves.iter().any(|l| matches!(l, Leaf::Dense(_))));
        assert_eq!(store.len(), model.len());
        let mut sorted: Vec<_> = model.into_iter().collect();
        sorted.sort_unstable_by_key(|&(id, _)| id);
        assert!(store.iter().eq(sorted), "iter: every deposit, ascending");
    }

    /// A worker's share of ascending ids (sparse: one in 7 to 40) appends
    /// past `top` with no search, while late ids below it (into the tail
    /// chunk, earlier chunks and earlier leaves) still go where they
    /// belong: every leaf stays sorted and every deposit is found.
    #[test]
    fn ascending_ids_append_and_late_ids_still_land_in_order() {
        let mut store = DepositStore::default();
        let mut model = std::collections::BTreeMap::new();
        let mut seed: u64 = 0x5851_F42D_4C95_7F2D;
        let (mut id, mut late) = (0u32, Vec::new());
        for _ in 0..60_000 {
            xorshift(&mut seed);
            id += 7 + (seed % 34) as u32;
            if seed.is_multiple_of(5) {
                late.push(id); // skipped now, stored later below the top
                continue;
            }
            store.insert(id, (id % 11) as u16, amount(i64::from(id)));
            model.insert(id, id);
            if seed.is_multiple_of(9) {
                if let Some(back) = late.pop() {
                    // Half of them far back, most often in an earlier leaf.
                    let back = if seed >> 40 & 1 == 0 { back } else { back / 2 };
                    if let std::collections::btree_map::Entry::Vacant(v) = model.entry(back) {
                        store.insert(back, (back % 11) as u16, amount(i64::from(back)));
                        v.insert(back);
                    }
                }
            }
        }
        assert!(store.top > u64::from(*model.keys().last().unwrap()));
        assert_undense_counted(&store);
        let (mut sparse_entries, mut sparse_bytes) = (0, 0);
        for leaf in &store.leaves {
            if let Leaf::Sparse(sparse) = leaf {
                let slots: Vec<u16> = sparse.entries().map(|e| e.slot).collect();
                assert!(slots.windows(2).all(|w| w[0] < w[1]), "sorted");
                let more = sparse.more.as_ref().expect("the leaf has split");
                assert_eq!(sparse.count(), slots.len());
                let mut chunks = std::iter::once(&sparse.first).chain(&more.rest);
                assert!(chunks.all(|c| !c.is_empty() && c.len() <= CHUNK));
                let firsts = more.rest.iter().map(|c| c[0].slot);
                assert!(firsts.eq(more.starts.iter().copied()), "starts");
                sparse_entries += slots.len();
                sparse_bytes += sparse.heap_bytes();
            }
        }
        // Appends grow a tail chunk by doubling; the slack goes when the
        // top moves on.
        let per_entry = sparse_bytes as f64 / sparse_entries as f64;
        assert!(per_entry < 10.0, "{per_entry} bytes an entry");
        let stored: Vec<(TxId, i64)> = store.iter().map(|(id, d)| (id, d.amount.raw())).collect();
        let expected: Vec<(TxId, i64)> = model.iter().map(|(&id, &a)| (id, i64::from(a))).collect();
        assert_eq!(stored, expected);
        for &id in model.keys() {
            assert_eq!(store.get(id).map(|d| d.client), Some((id % 11) as u16));
        }
        assert_eq!(store.get(id + 1), None);
    }

    /// A worker's share of ascending ids (two in five) packs by rank once a
    /// leaf holds [`RANKED_AT`]; deposits that come late (below the last
    /// one) wait in the late list and are merged in; every deposit is
    /// found, flagged and listed in order, at under 7.5 bytes a deposit.
    #[test]
    fn a_workers_share_of_ascending_ids_packs_by_rank() {
        let mut store = DepositStore::default();
        let mut model = std::collections::BTreeMap::new();
        let mut seed: u64 = 0x1405_7B7E_F767_814F;
        let (mut id, mut late) = (0u32, Vec::new());
        for n in 0..150_000u32 {
            xorshift(&mut seed);
            id += 1 + (seed % 4) as u32;
            if seed.is_multiple_of(13) {
                late.push(id);
                continue;
            }
            let mut put = |id: u32| {
                store.insert(id, (id % 13) as u16, amount(i64::from(id) + 1));
                model.insert(id, false);
            };
            put(id);
            if seed % 7 == 1 {
                if let Some(back) = late.pop() {
                    put(back);
                }
            }
            if n % 5 == 0 {
                let probe = id.saturating_sub((seed >> 50) as u32 % 5_000);
                if let Some(disputed) = model.get_mut(&probe) {
                    *disputed = !*disputed;
                    store.set_disputed(probe, *disputed);
                }
            }
        }
        let ranked: Vec<&RankedLeaf> = store
            .leaves
            .iter()
            .filter_map(|leaf| match leaf {
                Leaf::Ranked(ranked) => Some(&**ranked),
                _ => None,
            })
            .collect();
        assert!(ranked.len() >= 4, "{} ranked leaves", ranked.len());
        for (&id, &disputed) in &model {
            let deposit = store.get(id).expect("stored");
            assert_eq!(
                (deposit.client, deposit.disputed),
                ((id % 13) as u16, disputed)
            );
            assert_eq!(deposit.amount, amount(i64::from(id) + 1));
            assert_eq!(store.get(id + 1).is_some(), model.contains_key(&(id + 1)));
        }
        let listed: Vec<(TxId, bool)> = store.iter().map(|(id, d)| (id, d.disputed)).collect();
        assert!(listed.into_iter().eq(model.iter().map(|(&id, &d)| (id, d))));
        // The leaves the top has left are trimmed.
        let done = &ranked[..ranked.len() - 1];
        let bytes: usize = done.iter().map(|leaf| leaf.heap_bytes()).sum();
        let deposits: usize = done.iter().map(|leaf| leaf.count()).sum();
        let per_deposit = bytes as f64 / deposits as f64;
        assert!(per_deposit < 7.5, "{per_deposit} bytes a deposit");
        assert!(done.iter().all(|leaf| leaf.late.len() < LATE_MAX));
        assert_undense_counted(&store);
    }

    #[test]
    fn redistribute_splits_and_merges_without_a_change() {
        let mut store = DepositStore::default();
        for id in (0..120_000u32).step_by(2).chain([u32::MAX, 1 << 30]) {
            store.insert(id, (id % 7) as u16, amount(i64::from(id % 1000) + 1));
        }
        store.set_disputed(4, true);
        let all: Vec<_> = store.iter().collect();
        let parts = DepositStore::redistribute(&[&store], 3, |client| usize::from(client) % 3);
        for (n, part) in parts.iter().enumerate() {
            assert!(part.iter().all(|(_, d)| usize::from(d.client) % 3 == n));
        }
        let refs: Vec<&DepositStore> = parts.iter().collect();
        let merged = DepositStore::redistribute(&refs, 1, |_| 0);
        assert!(merged[0].iter().eq(all.iter().copied()));
        parts.iter().chain(&merged).for_each(assert_undense_counted);
        assert_eq!(merged[0].len(), all.len());
    }

    #[test]
    fn ids_below_the_highest_say_deposits_come_scattered() {
        let mut store = DepositStore::default();
        assert!(!store.scattered());
        for id in [5, 10, 70_000, 70_001] {
            store.insert(id, 1, amount(1));
            assert!(!store.scattered(), "{id} ascends");
        }
        store.insert(7, 1, amount(1));
        assert!(store.scattered(), "7 is below the highest");
        store.insert(3_000_000, 1, amount(1));
        assert!(!store.scattered(), "a new leaf above every other");
        assert!([5, 7, 10, 70_000, 70_001, 3_000_000]
            .iter()
            .all(|&id| store.get(id).is_some()));
    }

    #[test]
    #[should_panic(expected = "stored twice")]
    fn storing_an_id_twice_is_a_bug() {
        let mut store = DepositStore::default();
        store.insert(70_000, 1, amount(1));
        store.insert(70_000, 1, amount(1));
    }

    #[test]
    fn entries_are_eight_bytes_and_a_leaf_is_small() {
        assert_eq!(std::mem::size_of::<Entry>(), 8);
        assert_eq!(std::mem::size_of::<Leaf>(), 32);
    }
}
