//! [`ClientTable`]: one value per client id, found by indexing, not hashing.
//!
//! Client ids are 16 bits, so a table can be an array indexed by the id.
//! One flat array of 65,536 accounts is 1.5 MiB, which is right for one
//! ledger and wrong for 64 workers that each own a scattered 1/64th of the
//! clients. So the array is cut into pages of [`PAGE`] clients behind a
//! directory indexed by the id's top 12 bits: a page exists once one of its
//! clients does. A lookup is two dependent loads (the directory, 32 KiB,
//! stays in cache; then the page), against a hash, a control-group probe and
//! a key comparison for the hash table it replaced (`ledger/apply` and the
//! 20M-row file in perf.md, "Per-core speed"). Memory: 24 bytes an account
//! in pages of 384 bytes, plus the directory; a worker with 1,000 scattered
//! clients holds about 1,000 pages (384 KiB) and the 32 KiB directory.
//!
//! Iteration is in ascending client order, for free.

use crate::tx::ClientId;

/// Clients per page.
pub const PAGE: usize = 16;
const PAGE_BITS: u32 = PAGE.trailing_zeros();
/// Pages in the directory: every client id has one.
const PAGES: usize = (ClientId::MAX as usize + 1) / PAGE;

type Page<T> = [Option<T>; PAGE];

/// A value per client, in pages behind a directory (see the module docs).
#[derive(Clone)]
pub struct ClientTable<T> {
    pages: Box<[Option<Box<Page<T>>>]>,
    len: usize,
}

impl<T: Copy> Default for ClientTable<T> {
    fn default() -> Self {
        ClientTable {
            pages: (0..PAGES).map(|_| None).collect(),
            len: 0,
        }
    }
}

/// The page and the slot in it that hold `client`.
#[inline(always)]
fn split(client: ClientId) -> (usize, usize) {
    let client = usize::from(client);
    (client >> PAGE_BITS, client & (PAGE - 1))
}

impl<T: Copy> ClientTable<T> {
    /// Clients in the table.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.len
    }

    /// `client`'s value, inserting `T::default()` first if there is none.
    #[inline]
    pub fn get_or_default(&mut self, client: ClientId) -> &mut T
    where
        T: Default,
    {
        let (page, slot) = split(client);
        let page = self.pages[page].get_or_insert_with(|| Box::new([None; PAGE]));
        let value = &mut page[slot];
        if value.is_none() {
            self.len += 1;
        }
        value.get_or_insert_with(T::default)
    }

    /// `client`'s value, if it has one.
    #[inline]
    pub fn get(&self, client: ClientId) -> Option<&T> {
        let (page, slot) = split(client);
        self.pages[page].as_ref()?[slot].as_ref()
    }

    /// Sets `client`'s value; the previous one, if any.
    pub fn insert(&mut self, client: ClientId, value: T) -> Option<T> {
        let (page, slot) = split(client);
        let page = self.pages[page].get_or_insert_with(|| Box::new([None; PAGE]));
        let previous = page[slot].replace(value);
        self.len += usize::from(previous.is_none());
        previous
    }

    /// Every client and its value, ascending by client.
    pub fn iter(&self) -> impl Iterator<Item = (ClientId, &T)> + '_ {
        self.pages
            .iter()
            .enumerate()
            .filter_map(|(page, values)| Some((page, values.as_ref()?)))
            .flat_map(|(page, values)| {
                values.iter().enumerate().filter_map(move |(slot, value)| {
                    let client = (page << PAGE_BITS | slot) as ClientId;
                    Some((client, value.as_ref()?))
                })
            })
    }

    /// Bytes held: the directory and the pages.
    pub fn allocation_size(&self) -> usize {
        let pages = self.pages.iter().flatten().count();
        std::mem::size_of_val(&*self.pages) + pages * std::mem::size_of::<Page<T>>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn a_table_behaves_as_a_sorted_map() {
        let mut table = ClientTable::<u64>::default();
        let mut model = BTreeMap::new();
        let mut seed = 7u64;
        for step in 0..20_000u64 {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let client = match step % 3 {
                0 => (seed >> 48) as u16,
                1 => (seed >> 60) as u16,
                _ => u16::MAX - (seed >> 61) as u16,
            };
            if step % 2 == 0 {
                *table.get_or_default(client) += step;
                *model.entry(client).or_default() += step;
            } else {
                assert_eq!(table.insert(client, step), model.insert(client, step));
            }
            assert_eq!(table.get(client), model.get(&client));
        }
        assert_eq!(table.len(), model.len());
        let listed: Vec<(u16, u64)> = table.iter().map(|(c, &v)| (c, v)).collect();
        assert_eq!(listed, model.into_iter().collect::<Vec<_>>());
        assert_eq!(
            table.get(12_345).is_some(),
            table.iter().any(|(c, _)| c == 12_345)
        );
    }

    #[test]
    fn memory_follows_the_pages_in_use() {
        let mut table = ClientTable::<[u64; 3]>::default();
        let empty = table.allocation_size();
        assert_eq!(empty, PAGES * 8);
        table.get_or_default(0);
        table.get_or_default(PAGE as u16 - 1);
        let page = PAGE * std::mem::size_of::<Option<[u64; 3]>>();
        assert_eq!(table.allocation_size(), empty + page);
        table.get_or_default(u16::MAX);
        assert_eq!(table.allocation_size(), empty + 2 * page);
        assert_eq!(table.len(), 3);
    }
}
