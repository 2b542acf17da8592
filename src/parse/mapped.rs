//! A plain input file read in place: its bytes mapped into memory, so that
//! the parser reads the page cache itself instead of a copy of it.
//!
//! Why: `read(2)` copies every byte from the page cache into the reader's
//! buffer. On the 20M-row file that copy (`_copy_to_iter`) was 6.8% of a
//! `--workers 0` run's samples; mapped, and with the parser loading a page
//! ahead of the line it reads (`fast::READ_AHEAD`), the run took 0.75 ->
//! 0.68 s of CPU (11 interleaved rounds; perf.md, "The input read in
//! place").
//!
//! What it costs a user: a mapped file is the file itself, not a copy. If
//! another program truncates it during the run, reading a page past the new
//! end kills the process (`SIGBUS`): the run ends with no output and no
//! state written, as after any crash; a file rewritten in place may be read
//! half old, half new. `--no-mmap` reads with `read(2)` instead, where that
//! matters. The run maps only what it may: a regular file, not compressed,
//! read by the calling thread, with no checkpoints to hash; anything else,
//! or a refused map (an address-space limit, say), is read as before.
//!
//! Pages the parser has passed are given back as it goes
//! ([`Mapped::release_before`]): without that, every page of the file would
//! stay mapped to the end of the run, and the process's resident memory
//! would grow by the input's size (the 20M-row file: 615 MB).

use std::fs::File;
use std::io;

use memmap2::{Advice, Mmap, MmapOptions, UncheckedAdvice};

/// How far the parser gets past the last release before it releases
/// again: a system call per this many bytes.
const RELEASE_EVERY: usize = 1 << 20;

/// A whole file, mapped read-only.
pub struct Mapped {
    map: Mmap,
    /// Bytes before this offset were given back (a page multiple).
    released: usize,
}

impl Mapped {
    /// Maps `file` whole.
    pub fn open(file: &File) -> io::Result<Mapped> {
        // SAFETY: the map is read-only and private; what it shows is the
        // file's bytes, which another process may change or cut while the
        // run reads them. A change is read as it is (bytes, never invalid
        // memory: the parser reads `u8`s, any value of which is valid); a
        // cut makes the kernel end the process with SIGBUS before a byte
        // past it is read. The module docs say so, and `--no-mmap` avoids it.
        let map = unsafe { MmapOptions::new().map(file)? };
        // Read ahead aggressively, once: a hint, ignored if refused.
        let _ = map.advise(Advice::Sequential);
        Ok(Mapped { map, released: 0 })
    }

    /// The file's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.map
    }

    /// The offset from which [`Mapped::release_before`] next gives pages
    /// back: a caller past it calls it.
    pub fn next_release(&self) -> usize {
        self.released + RELEASE_EVERY
    }

    /// Gives back the whole pages before `offset` (which the caller has
    /// passed and holds no reference into): they leave the process's
    /// resident memory, and stay in the page cache.
    pub fn release_before(&mut self, offset: usize) {
        let page = page_size();
        let end = offset.min(self.map.len()) / page * page;
        if end <= self.released {
            return;
        }
        // SAFETY: `MADV_DONTNEED` on a private, read-only file mapping
        // drops the pages' mappings; a later read of them maps the file's
        // bytes again, so nothing the program could read changes. No
        // reference into them is held: `&mut self`.
        let _ = unsafe {
            self.map.unchecked_advise_range(
                UncheckedAdvice::DontNeed,
                self.released,
                end - self.released,
            )
        };
        self.released = end;
    }
}

/// The system's page size (4 KiB where it cannot be asked).
fn page_size() -> usize {
    // SAFETY: sysconf only reads a value.
    match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
        size @ 1.. => size as usize,
        _ => 4096,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_mapped_file_reads_as_written_after_its_pages_are_released() {
        let mut file = tempfile::tempfile().unwrap();
        let bytes: Vec<u8> = (0..3 * RELEASE_EVERY + 12_345)
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        file.write_all(&bytes).unwrap();
        let mut map = Mapped::open(&file).unwrap();
        assert!(map.bytes() == &bytes[..]);
        map.release_before(map.next_release() + 100);
        assert_eq!(map.released % page_size(), 0);
        assert!(map.released > 0 && map.released <= RELEASE_EVERY + 100);
        // Released pages read the file again.
        assert!(map.bytes() == &bytes[..]);
        map.release_before(usize::MAX);
        assert!(map.bytes() == &bytes[..]);
    }

    #[test]
    fn an_empty_file_maps_to_no_bytes() {
        let file = tempfile::tempfile().unwrap();
        let mut map = Mapped::open(&file).unwrap();
        assert!(map.bytes().is_empty());
        map.release_before(usize::MAX);
        assert_eq!(map.released, 0);
    }
}
