//! [`ClientTable`]: a value per client id, in a flat array indexed by the
//! id (client ids are 16 bits: at most 65,536 slots).
//!
//! It replaced a `hashbrown::HashMap` for the accounts: a lookup there is
//! two dependent cache misses on a large table (the control bytes, then the
//! bucket; `perf annotate` put half of `Book::apply`'s samples on the
//! bucket's load), and where a slot lives is known only after hashing.
//! Here it is one load at an address known from the client id alone, so
//! the paths prefetch it some records ahead ([`ClientTable::prefetch`]).
//! Figures in perf.md, "A flat account table".

use super::leaf::prefetch;

/// Client ids: 16 bits.
type Client = u16;

/// One slot: the value, and whether the client has one. 32 bytes for an
/// account (24 + 1, aligned to 8), so that a slot never straddles two cache
/// lines.
#[derive(Clone, Copy, Default)]
struct Slot<V> {
    value: V,
    present: bool,
}

/// A value per client id, in client order. Grows to the highest id seen
/// (rounded up to a power of two), so a run with few, small ids stays small;
/// 65,536 slots of 32 bytes (2 MiB) at most for accounts.
#[derive(Clone)]
pub struct ClientTable<V> {
    slots: Vec<Slot<V>>,
    len: usize,
}

impl<V: Copy + Default> Default for ClientTable<V> {
    fn default() -> Self {
        ClientTable {
            slots: Vec::new(),
            len: 0,
        }
    }
}

impl<V: Copy + Default> ClientTable<V> {
    /// How many clients have a value.
    pub fn len(&self) -> usize {
        self.len
    }

    /// `client`'s value, if it has one.
    #[inline]
    pub fn get(&self, client: Client) -> Option<&V> {
        let slot = self.slots.get(usize::from(client))?;
        slot.present.then_some(&slot.value)
    }

    /// Whether `client` has a value.
    pub fn contains(&self, client: Client) -> bool {
        self.get(client).is_some()
    }

    /// `client`'s value, made (the default) if it has none.
    #[inline]
    pub fn get_or_default(&mut self, client: Client) -> &mut V {
        let index = usize::from(client);
        if index >= self.slots.len() {
            self.grow(index);
        }
        let slot = &mut self.slots[index];
        self.len += usize::from(!slot.present);
        slot.present = true;
        &mut slot.value
    }

    /// Sets `client`'s value; the one it had, if any.
    pub fn insert(&mut self, client: Client, value: V) -> Option<V> {
        let had = self.get(client).copied();
        *self.get_or_default(client) = value;
        had
    }

    /// Every client with a value and its value, in client order.
    pub fn iter(&self) -> impl Iterator<Item = (Client, &V)> + '_ {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, slot)| slot.present)
            .map(|(client, slot)| (client as Client, &slot.value))
    }

    /// Bytes the table holds.
    pub fn allocation_size(&self) -> usize {
        self.slots.capacity() * std::mem::size_of::<Slot<V>>()
    }

    /// Starts loading `client`'s slot, if the table has one yet: a hint
    /// with no effect on the contents.
    #[inline]
    pub fn prefetch(&self, client: Client) {
        if let Some(slot) = self.slots.get(usize::from(client)) {
            prefetch(slot);
        }
    }

    /// Makes room for slot `index`: the next power of two past it, at least
    /// 64 slots.
    #[cold]
    #[inline(never)]
    fn grow(&mut self, index: usize) {
        let len = (index + 1).next_power_of_two().max(64);
        self.slots.resize(len, Slot::default());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn a_slot_of_an_account_size_is_half_a_cache_line() {
        // 24 bytes (two i64 and a bool), as an account is.
        assert_eq!(std::mem::size_of::<Slot<(i64, i64, bool)>>(), 32);
    }

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
        assert_eq!(table.allocation_size(), 65_536 * 16);
        table.prefetch(65_535);
    }

    #[test]
    fn an_empty_table_holds_nothing_and_grows_only_to_its_highest_id() {
        let mut table = ClientTable::<u64>::default();
        assert_eq!(table.len(), 0);
        assert_eq!(table.get(u16::MAX), None);
        table.prefetch(7);
        assert_eq!(table.allocation_size(), 0);
        *table.get_or_default(3) = 9;
        assert_eq!(table.allocation_size(), 64 * 16);
        *table.get_or_default(64) = 1;
        assert_eq!(table.allocation_size(), 128 * 16);
        assert_eq!(table.iter().count(), 2);
        assert_eq!(table.len(), 2);
    }
}
