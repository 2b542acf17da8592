//! [`ClientTable`]: a value per client id (16 bits: at most 65,536), found
//! from the id without hashing, in one of two layouts:
//!
//! * *indexed*: 2 bytes per client id up to the highest seen, each the
//!   place of the id's value in a dense array of the values (which also
//!   name their client: a place is the id's only if that entry names it);
//! * *flat*: a slot per client id up to the highest seen, the value where
//!   the id points, once at least half of those ids have a value
//!   ([`FLAT_AT`]): then the index would save little.
//!
//! It replaced a `hashbrown::HashMap` for the accounts: a lookup there is
//! two dependent cache misses on a large table (the control bytes, then the
//! bucket; `perf annotate` put half of `Book::apply`'s samples on the
//! bucket's load), and where an entry lives is known only after hashing.
//! Here the index (128 KiB at most) stays in the second-level cache and
//! the values are dense, and the paths prefetch a value some records ahead
//! ([`ClientTable::prefetch`]). Why not always flat: a slot per id is up to
//! 2 MiB a book, which a worker of many pays for its scattered share of the
//! ids (64 workers took 142 MB more than the hash map on the 1M-row file's
//! 10,000 clients), and which misses the cache where rows come one at a
//! time with no prefetch (every line quoted: 1.21x the CPU of the hash
//! map, 0.98x indexed). Figures in perf.md, "A flat account table".

use super::leaf::prefetch;

/// Client ids: 16 bits.
type Client = u16;

/// A table is made flat once one id in this many (up to the highest) has a
/// value. The realistic files (10,000-20,000 clients over the id space)
/// stay indexed; a file of every id goes flat.
const FLAT_AT: usize = 2;

/// A flat table's slot: the value, and whether the client has one. 32
/// bytes for an account (24 + 1, aligned to 8): a slot never straddles two
/// cache lines.
#[derive(Clone, Copy, Default)]
struct Slot<V> {
    value: V,
    present: bool,
}

/// An indexed table's entry: a value and its client (32 bytes for an
/// account, as a slot).
#[derive(Clone, Copy)]
struct Entry<V> {
    client: Client,
    value: V,
}

/// A value per client id.
#[derive(Clone)]
pub struct ClientTable<V> {
    /// Flat: a slot per client id up to the highest seen (rounded up to a
    /// power of two); empty while indexed.
    slots: Vec<Slot<V>>,
    /// Indexed: for each client id up to the highest seen (rounded up to a
    /// power of two), the place of its entry if it has one; empty once flat.
    index: Vec<u16>,
    /// Indexed: the values, in the order their clients first came.
    entries: Vec<Entry<V>>,
    /// How many clients have a value.
    len: usize,
}

impl<V: Copy + Default> Default for ClientTable<V> {
    fn default() -> Self {
        ClientTable {
            slots: Vec::new(),
            index: Vec::new(),
            entries: Vec::new(),
            len: 0,
        }
    }
}

impl<V: Copy + Default> ClientTable<V> {
    /// How many clients have a value.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the table is flat.
    #[inline(always)]
    fn flat(&self) -> bool {
        !self.slots.is_empty()
    }

    /// An indexed table's place for `client`, if it has a value.
    #[inline(always)]
    fn place(&self, client: Client) -> Option<usize> {
        let place = usize::from(*self.index.get(usize::from(client))?);
        let entry = self.entries.get(place)?;
        (entry.client == client).then_some(place)
    }

    /// `client`'s value, if it has one.
    #[inline]
    pub fn get(&self, client: Client) -> Option<&V> {
        if self.flat() {
            let slot = self.slots.get(usize::from(client))?;
            return slot.present.then_some(&slot.value);
        }
        Some(&self.entries[self.place(client)?].value)
    }

    /// Whether `client` has a value.
    pub fn contains(&self, client: Client) -> bool {
        self.get(client).is_some()
    }

    /// `client`'s value, made (the default) if it has none.
    #[inline]
    pub fn get_or_default(&mut self, client: Client) -> &mut V {
        let id = usize::from(client);
        if self.flat() {
            if id >= self.slots.len() {
                self.grow_flat(id);
            }
            let slot = &mut self.slots[id];
            self.len += usize::from(!slot.present);
            slot.present = true;
            return &mut slot.value;
        }
        match self.place(client) {
            Some(place) => &mut self.entries[place].value,
            None => self.add(client),
        }
    }

    /// Sets `client`'s value; the one it had, if any.
    pub fn insert(&mut self, client: Client, value: V) -> Option<V> {
        let had = self.get(client).copied();
        *self.get_or_default(client) = value;
        had
    }

    /// Every client with a value and its value, in client order.
    pub fn iter(&self) -> impl Iterator<Item = (Client, &V)> + '_ {
        let ids = self.slots.len().max(self.index.len());
        (0..ids).filter_map(|id| {
            let client = id as Client;
            self.get(client).map(|value| (client, value))
        })
    }

    /// Bytes the table holds.
    pub fn allocation_size(&self) -> usize {
        self.slots.capacity() * std::mem::size_of::<Slot<V>>()
            + self.index.capacity() * std::mem::size_of::<u16>()
            + self.entries.capacity() * std::mem::size_of::<Entry<V>>()
    }

    /// Starts loading where `client`'s value is, in two stages: the first
    /// (`deep` false) loads a flat table's slot or an indexed table's index
    /// entry without waiting for it; the second (`deep`, some rows later)
    /// reads that index entry, in cache by then, and loads the value. A
    /// hint with no effect on the contents. One stage that read the index
    /// and loaded the value at once stalled on the index read: ~10% of a
    /// `--workers 0` run's samples sat on that load (perf.md).
    #[inline]
    pub fn prefetch(&self, client: Client, deep: bool) {
        let id = usize::from(client);
        if self.flat() {
            if let Some(slot) = self.slots.get(id).filter(|_| !deep) {
                prefetch(slot);
            }
        } else if let Some(place) = self.index.get(id) {
            if !deep {
                prefetch(place);
            } else if let Some(entry) = self.entries.get(usize::from(*place)) {
                prefetch(entry);
            }
        }
    }

    /// Gives `client` (which has none) in an indexed table the default
    /// value; made flat then if [`FLAT_AT`] allows.
    #[cold]
    #[inline(never)]
    fn add(&mut self, client: Client) -> &mut V {
        let id = usize::from(client);
        if id >= self.index.len() {
            self.index.resize(ids_past(id), 0);
        }
        // At most 65,536 clients: a place fits a u16.
        self.index[id] = self.entries.len() as u16;
        self.entries.push(Entry {
            client,
            value: V::default(),
        });
        self.len += 1;
        if self.len * FLAT_AT >= self.index.len() {
            self.make_flat();
            return &mut self.slots[id].value;
        }
        &mut self.entries.last_mut().expect("just pushed").value
    }

    /// Moves an indexed table's values to slots.
    fn make_flat(&mut self) {
        let mut slots = vec![Slot::default(); self.index.len()];
        for entry in &self.entries {
            slots[usize::from(entry.client)] = Slot {
                value: entry.value,
                present: true,
            };
        }
        self.slots = slots;
        self.index = Vec::new();
        self.entries = Vec::new();
    }

    /// Makes room in a flat table for slot `id`.
    #[cold]
    #[inline(never)]
    fn grow_flat(&mut self, id: usize) {
        self.slots.resize(ids_past(id), Slot::default());
    }
}

/// How many ids a table covers to hold `id`: the next power of two past
/// it, at least 64.
fn ids_past(id: usize) -> usize {
    (id + 1).next_power_of_two().max(64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn behaves_as_a_map_in_client_order() {
        let mut table = ClientTable::<u64>::default();
        let mut model = BTreeMap::new();
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for step in 0..20_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Small ids first, then the whole range: the table grows.
            let client = (x % if step < 1000 { 100 } else { 65_536 }) as u16;
            match x >> 62 {
                0 => assert_eq!(table.insert(client, step), model.insert(client, step)),
                1 => {
                    *table.get_or_default(client) += 1;
                    *model.entry(client).or_default() += 1;
                }
                _ => assert_eq!(table.get(client), model.get(&client)),
            }
            assert_eq!(table.contains(client), model.contains_key(&client));
            assert_eq!(table.len(), model.len());
        }
        let listed: Vec<_> = table.iter().map(|(c, &v)| (c, v)).collect();
        let expected: Vec<_> = model.into_iter().collect();
        assert_eq!(listed, expected);
        assert!(table.allocation_size() >= 65_536 * 2 + listed.len() * 16);
        table.prefetch(65_535, false);
        table.prefetch(65_535, true);
    }

    #[test]
    fn an_empty_table_holds_nothing_and_grows_only_to_its_highest_id() {
        let mut table = ClientTable::<u64>::default();
        assert_eq!(table.len(), 0);
        assert_eq!(table.get(u16::MAX), None);
        table.prefetch(7, false);
        table.prefetch(7, true);
        assert_eq!(table.allocation_size(), 0);
        *table.get_or_default(3) = 9;
        assert_eq!(table.index.len(), 64);
        *table.get_or_default(64) = 1;
        assert_eq!(table.index.len(), 128);
        assert_eq!(table.entries.len(), 2);
        assert_eq!(table.iter().count(), 2);
        assert_eq!(table.len(), 2);
    }

    #[test]
    fn every_client_id_holds_a_value() {
        let mut table = ClientTable::<u32>::default();
        for client in (0..=u16::MAX).rev() {
            *table.get_or_default(client) = u32::from(client) * 3;
        }
        assert_eq!(table.len(), 65_536);
        assert!(table
            .iter()
            .enumerate()
            .all(|(i, (client, &v))| usize::from(client) == i && v == u32::from(client) * 3));
        assert_eq!(table.get(u16::MAX), Some(&(65_535 * 3)));
    }

    #[test]
    fn a_scattered_share_stays_indexed_until_half_of_its_ids_have_values() {
        let mut table = ClientTable::<u64>::default();
        let mut model = BTreeMap::new();
        let check = |table: &ClientTable<u64>, model: &BTreeMap<u16, u64>| {
            assert_eq!(table.len(), model.len());
            let listed: Vec<_> = table.iter().map(|(c, &v)| (c, v)).collect();
            assert_eq!(
                listed,
                model.iter().map(|(&c, &v)| (c, v)).collect::<Vec<_>>()
            );
            for probe in (0..=u16::MAX).step_by(97) {
                assert_eq!(table.get(probe), model.get(&probe), "client {probe}");
            }
        };
        // One id in 61, as a worker's share of scattered clients: 1,075 of
        // 65,536 ids, indexed.
        for client in (0..=u16::MAX).rev().step_by(61) {
            *table.get_or_default(client) += u64::from(client);
            *model.entry(client).or_default() += u64::from(client);
            table.prefetch(client, false);
            table.prefetch(client, true);
        }
        assert!(!table.flat());
        assert!(table.allocation_size() <= 65_536 * 2 + 2048 * 16);
        check(&table, &model);
        // Updates find the same entries.
        for client in (0..=u16::MAX).step_by(122) {
            assert_eq!(table.insert(client, 7), model.insert(client, 7));
        }
        check(&table, &model);
        // More clients: flat from the 32,768th on, values kept.
        for client in (0..=u16::MAX).step_by(2) {
            *table.get_or_default(client) += 1;
            *model.entry(client).or_default() += 1;
        }
        assert!(table.flat());
        check(&table, &model);
    }
}
