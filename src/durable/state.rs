//! The state file: the ledger's whole state between runs.
//!
//! # Format (version 1)
//!
//! Little-endian throughout. A 64-byte header, then four sections, each a
//! 24-byte section header (tag, length, xxh3-64 checksum of the payload) and
//! its payload:
//!
//! ```text
//! header    magic "PAYLEDGR" | version u32 | kind u32 (1) | sections u32 (4) | 0 u32
//!           | file length u64 | 24 zero bytes | xxh3-64 of the 56 bytes before
//! inputs    count u64, then per input applied: sequence u64, size u64, xxh3-128 of
//!           its bytes (low u64, high u64)
//! accounts  count u64, then per client, ascending: client u16, locked u8, 0 u8, 0 u32,
//!           available i64, held i64 (ten-thousandths)
//! ids       leaves u64, then per 65,536-id leaf with a claimed id, ascending:
//!           leaf u32, form u32, count u64, then the slots (u16 each, ascending) or,
//!           past 4,096 ids (form 1), the leaf's 65,536-bit bitset (1,024 u64)
//! deposits  leaves u64, then per leaf with a deposit, ascending: leaf u32, form u32,
//!           count u64, then slots u16[count], clients u16[count], words u64[count]
//!           or, past 54,613 deposits (form 1), words u64[65,536], clients u16[65,536]
//! ```
//!
//! A deposit's *word* in the file is its whole amount in ten-thousandths with
//! the dispute flag in bit 63. It is not the deposit store's own word (32
//! bits: the amount in 31, the dispute flag in bit 31, a larger amount in a
//! side table), so the file stays the same when the store's layout changes:
//! each leaf's deposits are gathered from every book slot by slot and
//! written in the file's words. A bitset id leaf is written from the id
//! set's own 1,024 words, and read straight back into one.
//!
//! # Why this shape
//!
//! * **Canonical**: each leaf's form follows from its count alone (whichever
//!   form is smaller), never from the history of the run that wrote it, and
//!   the workers' books are merged leaf by leaf while writing. So the same
//!   state gives the same bytes whatever the worker count, and whether the
//!   run was interrupted and resumed or not.
//! * **Checked**: every section is checksummed and every count is bounded
//!   before anything is allocated; a file that passes is then validated as a
//!   ledger ([`Ledger::validate`]: held amounts equal the disputed deposits,
//!   every deposit's id claimed, ...). A damaged, truncated, foreign or newer
//!   file is an error naming the problem, never an empty state.
//! * **Atomic** ([`Prepared::commit`]): written to a temporary file beside the
//!   target, fsynced, the old file kept as `FILE.prev` (a hard link, so the
//!   target exists at every moment), renamed into place, directory fsynced.
//!
//! The inputs section is what refuses a replay: applying a file twice would
//! apply its disputes and resolves twice.
//!
//! # Kinds
//!
//! One format serves every file that holds ledger state: a state file (kind
//! 1), a run's checkpoint (kind 2: two more sections, where the run stood and
//! what it reported; `checkpoint.rs`), and a cluster worker's checkpoint
//! (kind 3: its share of the ids and of the book, and its part;
//! `cluster/restart.rs`).

use std::fmt;
use std::fs::{self, File};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use xxhash_rust::xxh3::{xxh3_64, Xxh3};

use super::atomic::{self, AtomicFile};
use crate::ledger::{sorted_accounts, Account, Book, Ledger, StateError};
use crate::store::{set_bits, Deposit, DepositStore, IdLeaf, TxIdSet, LEAF_BITS, LEAF_IDS, LEAVES};
use crate::tx::ClientId;

/// The first 8 bytes of every state file.
pub const MAGIC: [u8; 8] = *b"PAYLEDGR";
/// The format this program writes, and the newest it reads.
pub const VERSION: u32 = 1;

const HEADER_LEN: usize = 64;
const SECTION_HEADER_LEN: usize = 24;
/// The header's `kind` of a state file.
pub(crate) const KIND_STATE: u32 = 1;
/// The header's `kind` of a checkpoint: a state file with more sections.
pub(crate) const KIND_CHECKPOINT: u32 = 2;
/// The header's `kind` of a cluster worker's checkpoint: its share of the
/// claimed ids and of the accounts and deposits, and one more section.
#[cfg_attr(not(feature = "cluster"), allow(dead_code))]
pub(crate) const KIND_CLUSTER: u32 = 3;
/// The sections: tag and name. Every kind has the first four, in this
/// order; a checkpoint adds progress and diagnostics, a cluster worker's
/// checkpoint its part.
const SECTIONS: [(u32, &str); 7] = [
    (1, "inputs section"),
    (2, "accounts section"),
    (3, "claimed ids section"),
    (4, "deposits section"),
    (5, "progress section"),
    (6, "diagnostics section"),
    (7, "cluster part section"),
];

/// The sections a file of `kind` has past the first four.
fn extra_sections(kind: u32) -> &'static [(u32, &'static str)] {
    match kind {
        KIND_CHECKPOINT => &SECTIONS[4..6],
        KIND_CLUSTER => &SECTIONS[6..7],
        _ => &[],
    }
}
/// The sections every kind of file has.
const STATE_SECTIONS: usize = 4;
/// An id leaf is written as a bitset (8 KiB) once its slots (2 bytes each)
/// would take more.
const ID_BITSET_OVER: usize = LEAF_IDS / 16;
/// A deposit leaf is written dense (10 bytes a slot) once its entries (12
/// bytes each) would take more.
const DEPOSIT_DENSE_OVER: usize = LEAF_IDS * 10 / 12;

/// The identity of one input applied to a state: its place in the sequence,
/// its size and a 128-bit hash of its bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InputId {
    pub seq: u64,
    pub size: u64,
    pub hash: u128,
}

/// What a state file holds.
pub struct Saved {
    pub ledger: Ledger,
    /// Every input applied to it, oldest first.
    pub inputs: Vec<InputId>,
}

/// Why a state file cannot be loaded.
#[derive(Debug)]
pub enum StateFileError {
    Io(io::Error),
    /// Not a state file at all (wrong magic).
    Foreign,
    /// Written by a newer program.
    Newer(u32),
    /// Shorter than its header says.
    Truncated {
        have: u64,
        want: u64,
    },
    /// A checksum or a structure check failed in this part of the file.
    Damaged(&'static str),
    /// Checksums pass but the state is not one the rules can reach.
    Inconsistent(StateError),
    /// The file is missing but its previous generation is there: a state
    /// file that was removed or lost, not a first run.
    MissingWithPrevious(PathBuf),
    /// It exists but is not a regular file (a FIFO, a device, a directory):
    /// opening it could hang, and it cannot be replaced atomically.
    NotAFile,
}

impl fmt::Display for StateFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StateFileError::Io(_) => f.write_str("cannot read it"),
            StateFileError::Foreign => f.write_str("not a payments-engine state file"),
            StateFileError::Newer(version) => write!(
                f,
                "written in format {version} by a newer version; this one reads format {VERSION}"
            ),
            StateFileError::Truncated { have, want } => {
                write!(f, "truncated: {have} of {want} bytes")
            }
            StateFileError::Damaged(part) => {
                write!(f, "damaged: the {part} does not pass its checks")
            }
            StateFileError::Inconsistent(error) => write!(f, "inconsistent: {error}"),
            StateFileError::NotAFile => f.write_str("not a regular file"),
            StateFileError::MissingWithPrevious(prev) => write!(
                f,
                "missing, but its previous generation {} exists; restore one or remove both",
                prev.display()
            ),
        }
    }
}

impl std::error::Error for StateFileError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StateFileError::Io(error) => Some(error),
            _ => None,
        }
    }
}

/// Where the previous generation of `path` is kept.
pub fn previous_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".prev");
    PathBuf::from(name)
}

/// Opens `path` for reading, refusing anything but a regular file (a
/// symlink to one is followed) before opening it: opening a FIFO waits for
/// a writer, forever. `None` when there is nothing there.
pub(crate) fn open_regular(path: &Path) -> Result<Option<File>, StateFileError> {
    match fs::metadata(path) {
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(StateFileError::Io(error)),
        Ok(meta) if !meta.is_file() => return Err(StateFileError::NotAFile),
        Ok(_) => {}
    }
    match File::open(path) {
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(StateFileError::Io(error)),
        Ok(file) => Ok(Some(file)),
    }
}

/// Where a state file at `path` is written: `path` itself, or the file a
/// symlink there names, even one that does not exist yet (the link stays,
/// its target is written).
fn target_of(path: &Path) -> PathBuf {
    let mut target = path.to_path_buf();
    // A chain of links, as the kernel follows them (at most 40).
    for _ in 0..40 {
        let Ok(link) = fs::read_link(&target) else {
            break;
        };
        target = atomic::directory_of(&target).join(link);
    }
    target
}

/// Loads `path`: `None` when there is no state file yet.
pub fn load(path: &Path) -> Result<Option<Saved>, StateFileError> {
    if let Some(file) = open_regular(path)? {
        return read(&mut BufReader::with_capacity(1 << 20, file)).map(Some);
    }
    let prev = previous_path(path);
    if prev.exists() {
        return Err(StateFileError::MissingWithPrevious(prev));
    }
    Ok(None)
}

/// A state file written and synced beside its target, not yet in place.
pub struct Prepared {
    file: AtomicFile,
    path: PathBuf,
    /// The file's size.
    pub bytes: u64,
}

/// Writes the state (`ids` and the books of every worker) and the inputs
/// applied to it to a temporary file beside `path`, and syncs it.
pub fn prepare(
    path: &Path,
    ids: &TxIdSet,
    books: &[&Book],
    inputs: &[InputId],
) -> io::Result<Prepared> {
    let path = &target_of(path);
    if fs::metadata(path).is_ok_and(|m| !m.is_file()) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    let mut file = AtomicFile::create_private(path)?;
    let bytes = write(&mut file, ids, books, inputs)?;
    file.sync()?;
    Ok(Prepared {
        file,
        path: path.to_path_buf(),
        bytes,
    })
}

impl Prepared {
    /// Puts the file in place, keeping the old one as `FILE.prev`.
    pub fn commit(self) -> io::Result<()> {
        if self.path.exists() {
            keep_previous(&self.path)?;
        }
        self.file.commit()
    }
}

/// Makes `FILE.prev` a copy of `path` without `path` ever missing: a hard
/// link under a temporary name, renamed over the old `.prev` (a copy where
/// the file system has no hard links).
fn keep_previous(path: &Path) -> io::Result<()> {
    let temp = atomic::directory_of(path).join(format!("{}prev", atomic::own_prefix()));
    let _ = fs::remove_file(&temp);
    if fs::hard_link(path, &temp).is_err() {
        fs::copy(path, &temp)?;
    }
    fs::rename(&temp, previous_path(path))
}

/// The whole state file: header, then the sections. Returns its length.
pub fn write<W: Write + Seek>(
    out: &mut W,
    ids: &TxIdSet,
    books: &[&Book],
    inputs: &[InputId],
) -> io::Result<u64> {
    write_kind(out, KIND_STATE, ids, books, inputs, &[])
}

/// A file of `kind`: the state's sections, then `extras` (a checkpoint's
/// progress and diagnostics, encoded by their owner).
pub(crate) fn write_kind<W: Write + Seek>(
    out: &mut W,
    kind: u32,
    ids: &TxIdSet,
    books: &[&Book],
    inputs: &[InputId],
    extras: &[&[u8]],
) -> io::Result<u64> {
    let start = out.stream_position()?;
    out.write_all(&[0u8; HEADER_LEN])?;
    section(out, SECTIONS[0].0, |w| write_inputs(w, inputs))?;
    section(out, SECTIONS[1].0, |w| write_accounts(w, books))?;
    section(out, SECTIONS[2].0, |w| write_ids(w, ids))?;
    section(out, SECTIONS[3].0, |w| write_deposits(w, books))?;
    assert_eq!(
        extras.len(),
        extra_sections(kind).len(),
        "sections of the kind"
    );
    for (extra, (tag, _)) in extras.iter().zip(extra_sections(kind)) {
        section(out, *tag, |w| w.write_all(extra))?;
    }
    let end = out.stream_position()?;
    let len = end - start;
    let mut header = [0u8; HEADER_LEN];
    header[..8].copy_from_slice(&MAGIC);
    header[8..12].copy_from_slice(&VERSION.to_le_bytes());
    header[12..16].copy_from_slice(&kind.to_le_bytes());
    header[16..20].copy_from_slice(&((STATE_SECTIONS + extras.len()) as u32).to_le_bytes());
    header[24..32].copy_from_slice(&len.to_le_bytes());
    let checksum = xxh3_64(&header[..56]);
    header[56..].copy_from_slice(&checksum.to_le_bytes());
    out.seek(SeekFrom::Start(start))?;
    out.write_all(&header)?;
    out.seek(SeekFrom::Start(end))?;
    Ok(len)
}

/// A writer that counts and hashes what passes through it.
struct Hashed<'a, W> {
    out: &'a mut W,
    hasher: Xxh3,
    len: u64,
}

impl<W: Write> Write for Hashed<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.out.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// Writes one section: its header (filled in afterwards) and its payload.
fn section<W: Write + Seek>(
    out: &mut W,
    tag: u32,
    body: impl FnOnce(&mut Hashed<'_, W>) -> io::Result<()>,
) -> io::Result<()> {
    let start = out.stream_position()?;
    out.write_all(&[0u8; SECTION_HEADER_LEN])?;
    let mut payload = Hashed {
        out,
        hasher: Xxh3::new(),
        len: 0,
    };
    body(&mut payload)?;
    let (len, checksum) = (payload.len, payload.hasher.digest());
    let end = out.stream_position()?;
    let mut header = [0u8; SECTION_HEADER_LEN];
    header[..4].copy_from_slice(&tag.to_le_bytes());
    header[8..16].copy_from_slice(&len.to_le_bytes());
    header[16..].copy_from_slice(&checksum.to_le_bytes());
    out.seek(SeekFrom::Start(start))?;
    out.write_all(&header)?;
    out.seek(SeekFrom::Start(end))?;
    Ok(())
}

fn put_u64(w: &mut impl Write, value: u64) -> io::Result<()> {
    w.write_all(&value.to_le_bytes())
}

/// A leaf's header: leaf, form, count.
fn put_leaf(w: &mut impl Write, leaf: usize, form: u32, count: usize) -> io::Result<()> {
    w.write_all(&(leaf as u32).to_le_bytes())?;
    w.write_all(&form.to_le_bytes())?;
    put_u64(w, count as u64)
}

/// An array of integers, little-endian: straight from memory on
/// little-endian machines, else each through `to_le`.
fn put_array<T: bytemuck::Pod, const N: usize>(
    w: &mut impl Write,
    values: &[T],
    to_le: fn(T) -> [u8; N],
) -> io::Result<()> {
    if cfg!(target_endian = "little") {
        w.write_all(bytemuck::cast_slice(values))
    } else {
        values.iter().try_for_each(|&v| w.write_all(&to_le(v)))
    }
}

fn write_inputs(w: &mut impl Write, inputs: &[InputId]) -> io::Result<()> {
    put_u64(w, inputs.len() as u64)?;
    for input in inputs {
        put_u64(w, input.seq)?;
        put_u64(w, input.size)?;
        put_u64(w, input.hash as u64)?;
        put_u64(w, (input.hash >> 64) as u64)?;
    }
    Ok(())
}

fn write_accounts(w: &mut impl Write, books: &[&Book]) -> io::Result<()> {
    let accounts = sorted_accounts(books.iter().copied());
    put_u64(w, accounts.len() as u64)?;
    for (client, account) in accounts {
        let mut row = [0u8; 24];
        row[..2].copy_from_slice(&client.to_le_bytes());
        row[2] = u8::from(account.locked);
        row[8..16].copy_from_slice(&account.available.raw().to_le_bytes());
        row[16..].copy_from_slice(&account.held.raw().to_le_bytes());
        w.write_all(&row)?;
    }
    Ok(())
}

fn write_ids(w: &mut impl Write, ids: &TxIdSet) -> io::Result<()> {
    let leaves: Vec<(usize, IdLeaf<'_>)> = ids.leaves().collect();
    put_u64(w, leaves.len() as u64)?;
    for (leaf, ids) in leaves {
        match ids {
            IdLeaf::Bitset(words, count) if count > ID_BITSET_OVER => {
                put_leaf(w, leaf, 1, count)?;
                put_array(w, words, u64::to_le_bytes)?;
            }
            IdLeaf::Bitset(words, count) => {
                put_leaf(w, leaf, 0, count)?;
                let slots: Vec<u16> = set_bits(words).map(|slot| slot as u16).collect();
                put_array(w, &slots, u16::to_le_bytes)?;
            }
            IdLeaf::Slots(slots) if slots.len() > ID_BITSET_OVER => {
                put_leaf(w, leaf, 1, slots.len())?;
                let mut words = vec![0u64; LEAF_IDS / 64];
                for &slot in slots {
                    words[usize::from(slot) / 64] |= 1 << (slot % 64);
                }
                put_array(w, &words, u64::to_le_bytes)?;
            }
            IdLeaf::Slots(slots) => {
                put_leaf(w, leaf, 0, slots.len())?;
                put_array(w, slots, u16::to_le_bytes)?;
            }
        }
    }
    Ok(())
}

fn write_deposits(w: &mut impl Write, books: &[&Book]) -> io::Result<()> {
    let stores: Vec<&DepositStore> = books.iter().map(|book| book.deposits()).collect();
    let present = |leaf: usize| stores.iter().any(|store| store.has_leaf(leaf));
    let leaves = (0..LEAVES).filter(|&leaf| present(leaf)).count();
    put_u64(w, leaves as u64)?;
    // Each leaf's deposits, gathered from every book into slot-indexed
    // scratch arrays (so several books need no sort), in the file's words.
    let mut words = vec![0u64; LEAF_IDS];
    let mut clients = vec![0u16; LEAF_IDS];
    for leaf in (0..LEAVES).filter(|&leaf| present(leaf)) {
        let mut slots: Vec<u16> = Vec::new();
        for store in &stores {
            store.for_each_in_leaf(leaf, |slot, client, deposit| {
                words[usize::from(slot)] = file_word(&deposit);
                clients[usize::from(slot)] = client;
                slots.push(slot);
            });
        }
        if slots.len() > DEPOSIT_DENSE_OVER {
            put_leaf(w, leaf, 1, slots.len())?;
            put_array(w, &words, u64::to_le_bytes)?;
            put_array(w, &clients, u16::to_le_bytes)?;
        } else {
            slots.sort_unstable();
            put_leaf(w, leaf, 0, slots.len())?;
            let owners: Vec<u16> = slots.iter().map(|&s| clients[usize::from(s)]).collect();
            let packed: Vec<u64> = slots.iter().map(|&s| words[usize::from(s)]).collect();
            put_array(w, &slots, u16::to_le_bytes)?;
            put_array(w, &owners, u16::to_le_bytes)?;
            put_array(w, &packed, u64::to_le_bytes)?;
        }
        for slot in slots {
            words[usize::from(slot)] = 0;
        }
    }
    Ok(())
}

/// Bit 63 of a file word: the deposit is under dispute; the rest is its
/// amount in ten-thousandths (always positive).
const FILE_DISPUTED: u64 = 1 << 63;

fn file_word(deposit: &Deposit) -> u64 {
    deposit.amount.raw() as u64 | if deposit.disputed { FILE_DISPUTED } else { 0 }
}

fn from_file_word(client: ClientId, word: u64) -> Deposit {
    Deposit {
        client,
        amount: crate::amount::Amount::from_raw((word & !FILE_DISPUTED) as i64),
        disputed: word & FILE_DISPUTED != 0,
    }
}

/// Reads a whole state file, checking everything.
pub fn read<R: Read + Seek>(input: &mut R) -> Result<Saved, StateFileError> {
    read_kind(input, KIND_STATE).map(|(saved, _)| saved)
}

/// A file of `kind`, read back as a ledger (validated as one) and the
/// payloads of its extra sections.
pub(crate) fn read_kind<R: Read + Seek>(
    input: &mut R,
    kind: u32,
) -> Result<(Saved, Vec<Vec<u8>>), StateFileError> {
    let read = read_sections(input, kind)?;
    let ledger = Ledger::from_stores(read.ids, read.accounts, read.deposits)
        .map_err(StateFileError::Inconsistent)?;
    let saved = Saved {
        ledger,
        inputs: read.inputs,
    };
    Ok((saved, read.extras))
}

/// What a file's sections hold, each checked against its checksum and
/// parsed, but not yet put together.
#[cfg_attr(not(feature = "cluster"), allow(dead_code))]
pub(crate) struct Sectioned {
    pub inputs: Vec<InputId>,
    pub accounts: Vec<(ClientId, Account)>,
    pub ids: TxIdSet,
    pub deposits: DepositStore,
    /// The payloads of the kind's extra sections, in order.
    pub extras: Vec<Vec<u8>>,
}

/// Reads a file of `kind`: its header, then every section, checked.
pub(crate) fn read_sections<R: Read + Seek>(
    input: &mut R,
    kind: u32,
) -> Result<Sectioned, StateFileError> {
    let file_len = input.seek(SeekFrom::End(0)).map_err(StateFileError::Io)?;
    input.seek(SeekFrom::Start(0)).map_err(StateFileError::Io)?;
    let mut header = [0u8; HEADER_LEN];
    let have = read_up_to(input, &mut header).map_err(StateFileError::Io)?;
    let magic_len = have.min(MAGIC.len());
    if header[..magic_len] != MAGIC[..magic_len] {
        return Err(StateFileError::Foreign);
    }
    if have < HEADER_LEN {
        return Err(StateFileError::Truncated {
            have: file_len,
            want: HEADER_LEN as u64,
        });
    }
    let u32_at = |at: usize| u32::from_le_bytes(header[at..at + 4].try_into().expect("4 bytes"));
    let u64_at = |at: usize| u64::from_le_bytes(header[at..at + 8].try_into().expect("8 bytes"));
    if xxh3_64(&header[..56]) != u64_at(56) {
        return Err(StateFileError::Damaged("header"));
    }
    let version = u32_at(8);
    if version > VERSION {
        return Err(StateFileError::Newer(version));
    }
    let extras = extra_sections(kind);
    if version != VERSION
        || u32_at(12) != kind
        || u32_at(16) as usize != STATE_SECTIONS + extras.len()
        || u32_at(20) != 0
        || header[32..56] != [0; 24]
    {
        return Err(StateFileError::Damaged("header"));
    }
    let want = u64_at(24);
    if file_len < want {
        return Err(StateFileError::Truncated {
            have: file_len,
            want,
        });
    }
    if file_len > want {
        return Err(StateFileError::Damaged("file length"));
    }

    let mut sections = Sections {
        input,
        at: HEADER_LEN as u64,
        file_len,
    };
    let inputs = sections.next(SECTIONS[0], |r, len| read_inputs(r, len))?;
    let accounts = sections.next(SECTIONS[1], |r, len| read_accounts(r, len))?;
    let ids = sections.next(SECTIONS[2], |r, _| read_ids(r))?;
    let deposits = sections.next(SECTIONS[3], |r, _| read_deposits(r))?;
    let mut payloads = Vec::with_capacity(extras.len());
    for &section in extras {
        payloads.push(sections.next(section, |r, len| {
            let mut payload = Vec::with_capacity(len.min(1 << 20) as usize);
            r.read_to_end(&mut payload)?;
            Ok(payload)
        })?);
    }
    Ok(Sectioned {
        inputs,
        accounts,
        ids,
        deposits,
        extras: payloads,
    })
}

/// The sections of a file being read, one after the other.
struct Sections<'a, R> {
    input: &'a mut R,
    /// Where the next section starts.
    at: u64,
    file_len: u64,
}

impl<R: Read + Seek> Sections<'_, R> {
    /// Checks the next section, which must be `(tag, name)`, and parses its
    /// payload, which `parse` must consume exactly.
    fn next<T>(
        &mut self,
        (tag, name): (u32, &'static str),
        parse: impl FnOnce(&mut dyn Read, u64) -> Result<T, Bad>,
    ) -> Result<T, StateFileError> {
        let len = check_section(self.input, self.at, self.file_len, tag, name)?;
        self.at += SECTION_HEADER_LEN as u64 + len;
        let mut payload = (&mut *self.input).take(len);
        let value = parse(&mut payload, len).map_err(|Bad| StateFileError::Damaged(name))?;
        if payload.limit() != 0 {
            return Err(StateFileError::Damaged(name));
        }
        Ok(value)
    }
}

/// Fills `buf` as far as the input allows; returns the bytes read.
fn read_up_to(input: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(filled)
}

/// Checks the section at `at`: its tag, that it fits the file, and its
/// checksum (a pass over its bytes); leaves the input at its payload.
fn check_section<R: Read + Seek>(
    input: &mut R,
    at: u64,
    file_len: u64,
    tag: u32,
    name: &'static str,
) -> Result<u64, StateFileError> {
    let damaged = |_| StateFileError::Damaged(name);
    let mut header = [0u8; SECTION_HEADER_LEN];
    input
        .seek(SeekFrom::Start(at))
        .map_err(StateFileError::Io)?;
    input.read_exact(&mut header).map_err(damaged)?;
    let len = u64::from_le_bytes(header[8..16].try_into().expect("8 bytes"));
    let checksum = u64::from_le_bytes(header[16..].try_into().expect("8 bytes"));
    let payload_at = at + SECTION_HEADER_LEN as u64;
    if u32::from_le_bytes(header[..4].try_into().expect("4 bytes")) != tag
        || header[4..8] != [0; 4]
        || len > file_len.saturating_sub(payload_at)
    {
        return Err(StateFileError::Damaged(name));
    }
    let mut hasher = Xxh3::new();
    let mut left = len;
    let mut buf = vec![0u8; 1 << 16];
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        input.read_exact(&mut buf[..n]).map_err(damaged)?;
        hasher.update(&buf[..n]);
        left -= n as u64;
    }
    if hasher.digest() != checksum {
        return Err(StateFileError::Damaged(name));
    }
    input
        .seek(SeekFrom::Start(payload_at))
        .map_err(StateFileError::Io)?;
    Ok(len)
}

/// A structure check failed while parsing a section whose checksum passed:
/// a file made by hand, or a bug. Either way, not a state to trust.
#[derive(Debug)]
struct Bad;

impl From<io::Error> for Bad {
    fn from(_: io::Error) -> Bad {
        Bad
    }
}

fn ensure(condition: bool) -> Result<(), Bad> {
    condition.then_some(()).ok_or(Bad)
}

fn get_u64(r: &mut (impl Read + ?Sized)) -> Result<u64, Bad> {
    let mut bytes = [0u8; 8];
    r.read_exact(&mut bytes)?;
    Ok(u64::from_le_bytes(bytes))
}

fn get_u64s(r: &mut (impl Read + ?Sized), n: usize) -> Result<Box<[u64]>, Bad> {
    let mut values = vec![0u64; n];
    r.read_exact(bytemuck::cast_slice_mut(&mut values))?;
    if cfg!(target_endian = "big") {
        values.iter_mut().for_each(|v| *v = u64::from_le(*v));
    }
    Ok(values.into())
}

fn get_u16s(r: &mut (impl Read + ?Sized), n: usize) -> Result<Box<[u16]>, Bad> {
    let mut values = vec![0u16; n];
    r.read_exact(bytemuck::cast_slice_mut(&mut values))?;
    if cfg!(target_endian = "big") {
        values.iter_mut().for_each(|v| *v = u16::from_le(*v));
    }
    Ok(values.into())
}

/// A leaf's header: leaf (ascending after `previous`), form, count.
fn get_leaf(
    r: &mut (impl Read + ?Sized),
    previous: Option<usize>,
) -> Result<(usize, u32, usize), Bad> {
    let mut bytes = [0u8; 8];
    r.read_exact(&mut bytes)?;
    let leaf = u32::from_le_bytes(bytes[..4].try_into().expect("4 bytes")) as usize;
    let form = u32::from_le_bytes(bytes[4..].try_into().expect("4 bytes"));
    let count = get_u64(r)?;
    ensure(leaf < LEAVES && previous.is_none_or(|p| leaf > p) && form <= 1)?;
    ensure((1..=LEAF_IDS as u64).contains(&count))?;
    Ok((leaf, form, count as usize))
}

fn read_inputs(r: &mut (impl Read + ?Sized), len: u64) -> Result<Vec<InputId>, Bad> {
    let count = get_u64(r)?;
    ensure(count.checked_mul(32).and_then(|n| n.checked_add(8)) == Some(len))?;
    let mut inputs: Vec<InputId> = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let (seq, size) = (get_u64(r)?, get_u64(r)?);
        let hash = u128::from(get_u64(r)?) | u128::from(get_u64(r)?) << 64;
        ensure(inputs.last().is_none_or(|last| seq > last.seq))?;
        inputs.push(InputId { seq, size, hash });
    }
    Ok(inputs)
}

fn read_accounts(r: &mut (impl Read + ?Sized), len: u64) -> Result<Vec<(ClientId, Account)>, Bad> {
    let count = get_u64(r)?;
    ensure(count <= 1 << 16 && count * 24 + 8 == len)?;
    let mut accounts: Vec<(ClientId, Account)> = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let mut row = [0u8; 24];
        r.read_exact(&mut row)?;
        let client = u16::from_le_bytes([row[0], row[1]]);
        ensure(row[2] <= 1 && row[3..8] == [0; 5])?;
        ensure(accounts.last().is_none_or(|&(last, _)| client > last))?;
        let money = |at: usize| {
            crate::amount::Amount::from_raw(i64::from_le_bytes(
                row[at..at + 8].try_into().expect("8"),
            ))
        };
        accounts.push((
            client,
            Account {
                available: money(8),
                held: money(16),
                locked: row[2] == 1,
            },
        ));
    }
    Ok(accounts)
}

fn read_ids(r: &mut (impl Read + ?Sized)) -> Result<TxIdSet, Bad> {
    let leaves = get_u64(r)?;
    ensure(leaves <= LEAVES as u64)?;
    let mut ids = TxIdSet::default();
    let mut previous = None;
    for _ in 0..leaves {
        let (leaf, form, count) = get_leaf(r, previous)?;
        previous = Some(leaf);
        let base = (leaf as u32) << LEAF_BITS;
        if form == 1 {
            ensure(count > ID_BITSET_OVER)?;
            let words = get_u64s(r, LEAF_IDS / 64)?;
            let set: u32 = words.iter().map(|w| w.count_ones()).sum();
            ensure(set as usize == count)?;
            ids.load_bitset(leaf, &words);
        } else {
            ensure(count <= ID_BITSET_OVER)?;
            let slots = get_u16s(r, count)?;
            ensure(slots.windows(2).all(|pair| pair[0] < pair[1]))?;
            for &slot in slots.iter() {
                ids.claim(base | u32::from(slot));
            }
        }
    }
    Ok(ids)
}

fn read_deposits(r: &mut (impl Read + ?Sized)) -> Result<DepositStore, Bad> {
    let leaves = get_u64(r)?;
    ensure(leaves <= LEAVES as u64)?;
    let mut store = DepositStore::default();
    let mut previous = None;
    for _ in 0..leaves {
        let (leaf, form, count) = get_leaf(r, previous)?;
        previous = Some(leaf);
        let base = (leaf as u32) << LEAF_BITS;
        // (slot, client, word) of each deposit, ascending.
        let entries: Vec<(u16, u16, u64)> = if form == 1 {
            ensure(count > DEPOSIT_DENSE_OVER)?;
            let words = get_u64s(r, LEAF_IDS)?;
            let clients = get_u16s(r, LEAF_IDS)?;
            (0..LEAF_IDS)
                .filter(|&slot| words[slot] != 0)
                .map(|slot| (slot as u16, clients[slot], words[slot]))
                .collect()
        } else {
            ensure(count <= DEPOSIT_DENSE_OVER)?;
            let slots = get_u16s(r, count)?;
            let clients = get_u16s(r, count)?;
            let words = get_u64s(r, count)?;
            ensure(slots.windows(2).all(|pair| pair[0] < pair[1]))?;
            (0..count)
                .map(|i| (slots[i], clients[i], words[i]))
                .collect()
        };
        ensure(entries.len() == count)?;
        // A word is a positive amount, with or without the dispute flag.
        ensure(
            entries
                .iter()
                .all(|&(_, _, word)| word & !FILE_DISPUTED != 0),
        )?;
        let deposits = entries
            .iter()
            .map(|&(slot, client, word)| (base | u32::from(slot), from_file_word(client, word)));
        store.load_leaf(leaf, deposits);
    }
    Ok(store)
}

/// The identity ([`identify`]) of the regular file at `path`, or of
/// nothing (size 0 and the empty hash) when there is none: what a
/// checkpoint records of the state file it started from, and of its input.
pub(crate) fn file_identity(path: &Path) -> io::Result<(u64, u128)> {
    match open_regular(path) {
        Ok(Some(file)) => identify(file),
        Ok(None) => identify(io::empty()),
        Err(StateFileError::Io(error)) => Err(error),
        Err(error) => Err(io::Error::other(error.to_string())),
    }
}

/// Reads a whole input, returning its size and xxh3-128 hash: the identity
/// a state file records.
pub fn identify(mut input: impl Read) -> io::Result<(u64, u128)> {
    let mut hasher = Xxh3::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        match input.read(&mut buf) {
            Ok(0) => return Ok((size, hasher.digest128())),
            Ok(n) => {
                hasher.update(&buf[..n]);
                size += n as u64;
            }
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;
    use crate::amount::Amount;
    use crate::tx::{Kind, Tx};

    /// A ledger with accounts (one locked), disputed and undisputed
    /// deposits, scattered ids, and, when `big`, a full dense deposit leaf
    /// and a bitset id leaf.
    fn ledger(big: bool) -> Ledger {
        let mut ledger = Ledger::new();
        let mut apply = |kind, client, tx, raw| {
            let amount = Amount::from_raw(raw);
            let _ = ledger.apply(Tx {
                kind,
                client,
                tx,
                amount,
            });
        };
        for (i, id) in [5u32, 70_000, 70_001, 3_000_000_000, u32::MAX]
            .into_iter()
            .enumerate()
        {
            apply(Kind::Deposit, i as u16 % 3, id, 10_000 * (i as i64 + 1));
        }
        apply(Kind::Withdrawal, 9, 77, 1); // rejected, but claims 77
        apply(Kind::Dispute, 1, 70_000, 0);
        apply(Kind::Dispute, 2, 70_001, 0);
        apply(Kind::Chargeback, 2, 70_001, 0);
        if big {
            for id in 1u32 << 20..(1 << 20) + 60_000 {
                apply(
                    Kind::Deposit,
                    3 + (id % 4) as u16,
                    id,
                    1 + i64::from(id % 1_000),
                );
            }
            apply(Kind::Dispute, 3, (1 << 20) + 3, 0);
        }
        ledger
    }

    fn bytes_of(ids: &TxIdSet, books: &[&Book], inputs: &[InputId]) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        let len = write(&mut out, ids, books, inputs).unwrap();
        assert_eq!(len as usize, out.get_ref().len());
        out.into_inner()
    }

    fn save(ledger: &Ledger, inputs: &[InputId]) -> Vec<u8> {
        let (ids, books) = ledger.parts();
        bytes_of(ids, &books, inputs)
    }

    type Parts = (
        Vec<(ClientId, Account)>,
        Vec<(u32, crate::store::Deposit)>,
        Vec<u32>,
    );

    fn parts(ledger: &Ledger) -> Parts {
        (
            ledger.accounts().collect(),
            ledger.deposits().collect(),
            ledger.claimed_ids().collect(),
        )
    }

    const INPUTS: [InputId; 2] = [
        InputId {
            seq: 1,
            size: 10,
            hash: 7 << 70 | 3,
        },
        InputId {
            seq: 2,
            size: 99,
            hash: u128::MAX,
        },
    ];

    #[test]
    fn a_state_round_trips_and_its_bytes_do_not_depend_on_layout_or_workers() {
        for big in [false, true] {
            let original = ledger(big);
            let bytes = save(&original, &INPUTS);
            let saved = read(&mut Cursor::new(&bytes)).unwrap();
            assert_eq!(saved.inputs, INPUTS);
            assert!(parts(&saved.ledger) == parts(&original));
            // Read back (another memory layout), it writes the same bytes.
            assert!(save(&saved.ledger, &INPUTS) == bytes);
            // Split for workers, written from the books: the same bytes.
            for workers in 1..=4 {
                let rebuilt = Ledger::from_parts(
                    original.accounts(),
                    original.deposits(),
                    original.claimed_ids(),
                )
                .unwrap();
                let (ids, books) = rebuilt.split(workers);
                let books: Vec<&Book> = books.iter().collect();
                assert!(
                    bytes_of(&ids, &books, &INPUTS) == bytes,
                    "{workers} workers"
                );
            }
        }
    }

    #[test]
    fn full_leaves_are_written_from_their_pages() {
        let bytes = save(&ledger(true), &[]);
        // One dense deposit leaf (655,360 bytes) and one id bitset (8 KiB).
        assert!(bytes.len() > 655_360 + 8_192, "{}", bytes.len());
        assert!(bytes.len() < 655_360 + 8_192 + 4_096, "{}", bytes.len());
    }

    /// Every single flipped byte of a small file ends in an error, never in
    /// a state: the header and every section are checksummed, and every
    /// field outside a checksum is checked.
    #[test]
    fn every_flipped_byte_is_caught() {
        let bytes = save(&ledger(false), &INPUTS);
        for at in 0..bytes.len() {
            for flip in [0x01u8, 0x80, 0xFF] {
                let mut damaged = bytes.clone();
                damaged[at] ^= flip;
                assert!(
                    read(&mut Cursor::new(&damaged)).is_err(),
                    "a flip of {flip:#x} at byte {at} went unnoticed"
                );
            }
        }
    }

    #[test]
    fn flipped_bytes_in_full_leaves_are_caught() {
        let bytes = save(&ledger(true), &INPUTS);
        let mut at = 0;
        while at < bytes.len() {
            let mut damaged = bytes.clone();
            damaged[at] ^= 0x10;
            assert!(read(&mut Cursor::new(&damaged)).is_err(), "byte {at}");
            at += 997;
        }
    }

    #[test]
    fn truncated_foreign_and_newer_files_are_named() {
        let bytes = save(&ledger(false), &INPUTS);
        for len in 0..bytes.len() {
            match read(&mut Cursor::new(&bytes[..len])) {
                Err(StateFileError::Truncated { have, want }) => {
                    assert_eq!(have, len as u64);
                    assert!(want > have);
                }
                Err(other) => panic!("{len} bytes: {other}"),
                Ok(_) => panic!("{len} bytes read as a state"),
            }
        }
        let text = b"type,client,tx,amount\ndeposit,1,1,1\n".repeat(3);
        assert!(matches!(
            read(&mut Cursor::new(&text)),
            Err(StateFileError::Foreign)
        ));
        let mut newer = bytes.clone();
        newer[8..12].copy_from_slice(&2u32.to_le_bytes());
        let checksum = xxh3_64(&newer[..56]);
        newer[56..64].copy_from_slice(&checksum.to_le_bytes());
        let error = read(&mut Cursor::new(&newer)).err().unwrap();
        assert!(matches!(error, StateFileError::Newer(2)));
        assert_eq!(
            error.to_string(),
            "written in format 2 by a newer version; this one reads format 1"
        );
    }

    /// A file whose checksums all pass but whose accounts section says a
    /// client holds money no disputed deposit explains: refused by the
    /// ledger's validation, never loaded.
    #[test]
    fn an_inconsistent_state_with_good_checksums_is_refused() {
        let mut bytes = save(&ledger(false), &INPUTS);
        // The accounts section follows the header and the inputs section.
        let accounts = HEADER_LEN + SECTION_HEADER_LEN + 8 + 32 * INPUTS.len();
        let payload = accounts + SECTION_HEADER_LEN;
        let len = u64::from_le_bytes(bytes[accounts + 8..accounts + 16].try_into().unwrap());
        // Client 0's row: 1 moves from available to held.
        let row = payload + 8;
        assert_eq!(&bytes[row..row + 2], &0u16.to_le_bytes());
        let field =
            |bytes: &[u8], at: usize| i64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
        let (available, held) = (field(&bytes, row + 8), field(&bytes, row + 16));
        bytes[row + 8..row + 16].copy_from_slice(&(available - 1).to_le_bytes());
        bytes[row + 16..row + 24].copy_from_slice(&(held + 1).to_le_bytes());
        let checksum = xxh3_64(&bytes[payload..payload + len as usize]);
        bytes[accounts + 16..accounts + 24].copy_from_slice(&checksum.to_le_bytes());
        let error = read(&mut Cursor::new(&bytes)).err().unwrap();
        assert!(
            matches!(
                error,
                StateFileError::Inconsistent(StateError::HeldMismatch(0))
            ),
            "{error}"
        );
    }

    #[test]
    fn saving_keeps_the_previous_generation_and_loading_needs_one_of_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.bin");
        assert!(load(&path).unwrap().is_none(), "no state yet");
        let first = ledger(false);
        let (ids, books) = first.parts();
        prepare(&path, ids, &books, &INPUTS[..1])
            .unwrap()
            .commit()
            .unwrap();
        assert!(!previous_path(&path).exists());
        let second = ledger(true);
        let (ids, books) = second.parts();
        let prepared = prepare(&path, ids, &books, &INPUTS).unwrap();
        // Prepared but not committed: the old file is still the state.
        assert_eq!(load(&path).unwrap().unwrap().inputs, INPUTS[..1]);
        prepared.commit().unwrap();
        assert_eq!(load(&path).unwrap().unwrap().inputs, INPUTS);
        let prev = read(&mut File::open(previous_path(&path)).unwrap()).unwrap();
        assert_eq!(prev.inputs, INPUTS[..1]);
        // Only the two generations are left in the directory.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 2);
        // The state file gone but its previous generation there: an error.
        fs::remove_file(&path).unwrap();
        assert!(matches!(
            load(&path),
            Err(StateFileError::MissingWithPrevious(_))
        ));
    }

    #[test]
    fn identify_hashes_every_byte() {
        let (size, hash) = identify(&b"deposit,1,1,1\n"[..]).unwrap();
        assert_eq!(size, 14);
        assert_ne!(hash, identify(&b"deposit,1,1,2\n"[..]).unwrap().1);
        assert_eq!(hash, identify(&b"deposit,1,1,1\n"[..]).unwrap().1);
    }
}
