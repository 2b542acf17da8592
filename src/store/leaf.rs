//! The id space both stores share: 65,536 leaves of 65,536 ids each, and
//! the memory helpers their lookups use (an ordered search, prefetches).

use crate::tx::TxId;

pub(crate) const LEAF_BITS: u32 = 16;
/// Ids per leaf of either store.
pub(crate) const LEAF_IDS: usize = 1 << LEAF_BITS;
/// Leaves in the u32 id space.
pub(crate) const LEAVES: usize = 1 << (32 - LEAF_BITS);

/// An id's leaf and its slot within the leaf.
#[inline]
pub(crate) fn split(id: TxId) -> (usize, usize) {
    ((id >> LEAF_BITS) as usize, (id as usize) & (LEAF_IDS - 1))
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
    prefetch_at((item as *const T).cast());
}

/// Asks the CPU to start loading the cache line at `address`, which need
/// not be inside any allocation (it is never read: a hint for an address
/// that is not mapped is dropped). A no-op off x86-64.
#[inline]
pub(crate) fn prefetch_at(address: *const u8) {
    #[cfg(not(target_arch = "x86_64"))]
    let _ = address;
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is only a hint: it cannot fault, whatever the
    // address, changes no memory and has no effect the program can observe.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>(address.cast());
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

/// Asks the kernel to map every whole page of `items` writable now, in one
/// call, instead of one page fault per page as they are first touched: a
/// hint, with no effect on the contents. For large zeroed tables that are
/// read before they are written (a dense leaf checks a slot is empty before
/// filling it): a first read of a fresh page maps the shared zero page, so
/// the write after it faults again, and a copy-on-write fault flushes the
/// TLB of every core that runs one of the process's threads (an
/// inter-processor interrupt, a tenth of a worker's samples, perf.md).
/// Linux 5.14 and later; elsewhere, or if the kernel refuses, pages fault
/// in as before.
pub(crate) fn populate<T>(items: &mut [T]) {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: sysconf only reads a value (the page size: 4 KiB, or 16
        // or 64 KiB on some ARM kernels, where 4 KiB-aligned advice would be
        // refused).
        let page = match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
            size @ 1.. => size as usize,
            _ => return,
        };
        let start = items.as_mut_ptr() as usize;
        let end = start + std::mem::size_of_val(items);
        let first = start.next_multiple_of(page);
        let last = end / page * page;
        if last > first {
            // SAFETY: `first..last` lies inside `items`, which this borrow
            // holds; MADV_POPULATE_WRITE only faults its pages in (as a
            // write of what they hold would) and changes no byte. A kernel
            // that lacks it returns EINVAL, which is ignored.
            unsafe {
                libc::madvise(
                    first as *mut libc::c_void,
                    last - first,
                    libc::MADV_POPULATE_WRITE,
                );
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = items;
}

/// `N` zeros in a fixed-length array on the heap, its pages faulted in
/// ([`populate`]): a leaf's table. Fixed-length, so that a slot masked
/// from an id needs no bounds check in it.
pub(crate) fn populated<T: Copy + Default, const N: usize>() -> Box<[T; N]> {
    let mut items: Box<[T; N]> = vec![T::default(); N]
        .into_boxed_slice()
        .try_into()
        .unwrap_or_else(|_| unreachable!("a vector of N items"));
    populate(&mut items[..]);
    items
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn populate_changes_no_byte() {
        // Large enough to hold whole pages of any size, and cut so that its
        // ends are not on page boundaries.
        let mut table: Vec<u32> = (0..300_000u32)
            .map(|i| i.wrapping_mul(2_654_435_761))
            .collect();
        let before = table.clone();
        populate(&mut table[3..299_990]);
        assert!(table == before);
        let mut zeroed = vec![0u64; 1 << 16];
        populate(&mut zeroed);
        assert!(zeroed.iter().all(|&word| word == 0));
        populate::<u8>(&mut []);
    }

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
                    assert_eq!(rank(&starts, slot), expected, "{slot} in {starts:?}");
                }
                for &start in &starts {
                    let expected = starts.partition_point(|&s| s <= start);
                    assert_eq!(rank(&starts, start), expected);
                }
            }
        }
    }
}
