//! Compact stores keyed by the u32 transaction id, and the table of a
//! value per client id ([`ClientTable`], `clients.rs`).
//!
//! Both stores split the id space into 65,536 *leaves* of 65,536 ids
//! (`leaf = id >> 16`, `slot = id & 0xFFFF`), and give each leaf the smaller
//! of a flat page or a sorted list, so that memory follows the ids actually
//! used, whatever their pattern.
//!
//! * [`TxIdSet`] (SPEC rule 2, ids claimed by deposits and withdrawals; a
//!   worker's share, or the ledger's): a leaf's claimed slots as a sorted
//!   `u16` list (2 bytes an id), until it holds [`BITSET_AT`] of them, then
//!   an 8 KiB bitset (512 MiB if every id appears).
//! * [`DepositStore`] (applied deposits, for disputes; a worker's): dense
//!   leaves of 6 bytes a slot, leaves packed by rank (a worker's share of
//!   ascending ids), or sorted chunks of 8-byte entries; see `deposits.rs`.
//!
//! # Why sorted lists, not a hash table, for the claimed ids
//!
//! One shared hash table held scattered ids before: 4 bytes a slot at 3/8 to
//! 3/4 load, and at each doubling the old and the new table at once, 16
//! bytes an id at that moment. On 5M random ids the table alone was 32 MiB
//! at rest and 48 MiB at its peak; the sorted lists hold them in 11 MiB and
//! grow a leaf at a time, a quarter at a time. A list never exceeds
//! [`BITSET_AT`] slots (3 KiB), so an insert moves at most that much, and a
//! claim is a binary search in at most 48 cache lines. The claimer prefetches
//! a leaf's list some records before it claims (as it did the table's slot),
//! so scattered ids cost a few cache hits, not misses. Nothing is hashed, so
//! no input can be made to collide.
//!
//! `leaf.rs` holds the id space's layout and the search and prefetch
//! helpers both stores use; nothing here imports the rest of the engine but
//! the id and amount types.

mod clients;
mod deposits;
mod ids;
mod leaf;

pub use clients::ClientTable;
pub use deposits::{Deposit, DepositStore};
pub use ids::TxIdSet;
pub(crate) use ids::{set_bits, IdLeaf, RUN_BITS};
pub(crate) use leaf::{prefetch_at, LEAF_BITS, LEAF_IDS, LEAVES};
