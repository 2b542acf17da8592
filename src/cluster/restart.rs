//! Checkpoints of a cluster run (`--cluster` with `--state`), and going on
//! from the last one every process saved (`--resume`).
//!
//! Timely has no recovery of its own. A checkpoint here is a block boundary
//! `c`: every worker saves what it holds for the blocks before `c` and
//! nothing of the blocks after. Three facts make that a consistent cut
//! without stopping the dataflow:
//!
//! * the claim and apply stages take blocks strictly in order, so each
//!   snapshots its state (claimed ids; accounts and deposits) right before
//!   its first block at or after `c`, or once its frontier shows every
//!   block before `c` done;
//! * what the parse side keeps (line counts, malformed rows, warnings) is
//!   tagged with its block, so the part before `c` is a filter;
//! * the checkpoint blocks follow from the settings alone (every `K`
//!   blocks, the same `K` on every process), so no message is needed to
//!   agree on them.
//!
//! Each worker writes its own file beside the state file,
//! `STATE.cluster-p<process>-w<worker>-b<c>`, atomically, and keeps the one
//! before it. The file is in the state file's format (kind 3): its claimed
//! ids, accounts and deposits sections, checksummed and checked on load as
//! the state file's are (the book validated on its own: the ids are another
//! stage's share), and one more section with the block and the parse side's
//! part. On `--resume` every process tells the others (in the
//! connection handshake) the last two checkpoints all its workers
//! completed; all go on from the latest one that every process has, and
//! finish with the bytes an uninterrupted run prints.

use std::collections::BTreeMap;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use timely::progress::frontier::MutableAntichain;

use super::input::Part;
use crate::durable::state::{self, StateFileError, KIND_CLUSTER};
use crate::durable::{directory_of, AtomicFile};
use crate::ledger::Book;
use crate::store::TxIdSet;

/// What the command line asked for: where, how often, and whether to go on
/// from a checkpoint.
#[derive(Clone, Debug)]
pub struct CheckpointOptions {
    /// The `--state` file; checkpoints are written beside it.
    pub state: PathBuf,
    /// `--checkpoint-every`; `None` for no checkpoints.
    pub every: Option<Duration>,
    /// `--resume`.
    pub resume: bool,
}

/// Input bytes per second per worker that `--checkpoint-every` is turned
/// into blocks with: a checkpoint every `duration x this x workers` bytes.
/// A nominal rate, the same on every process, so that all agree on the
/// checkpoint blocks without a message.
pub const NOMINAL_BYTES_PER_SECOND: f64 = 64.0 * 1024.0 * 1024.0;

/// Checkpoints of this process: every `every` blocks, named after the state
/// file.
#[derive(Clone, Debug)]
pub(super) struct Schedule {
    /// BlockStash between checkpoints (0: none).
    pub every: u64,
    /// The last block + 1: no checkpoint at or past it.
    pub end: u64,
    state: PathBuf,
    process: usize,
}

/// Everything a worker holds for the blocks before `block`: its claim
/// stage's ids, its apply stage's book, its parse side's part.
#[derive(Default)]
pub(super) struct Snapshot {
    pub block: u64,
    pub ids: TxIdSet,
    pub book: Book,
    pub part: Part,
}

impl Schedule {
    pub fn new(
        options: &CheckpointOptions,
        process: usize,
        workers: usize,
        block: usize,
        end: u64,
    ) -> Schedule {
        let every = options.every.map_or(0, |every| {
            let bytes = every.as_secs_f64() * NOMINAL_BYTES_PER_SECOND * workers as f64;
            ((bytes / block as f64) as u64).max(1)
        });
        Schedule {
            every,
            end,
            state: options.state.clone(),
            process,
        }
    }

    /// The first checkpoint block after `block`, if there is one.
    pub fn next_after(&self, block: u64) -> Option<u64> {
        let next = (block / self.every.max(1) + 1) * self.every;
        (self.every > 0 && next < self.end).then_some(next)
    }

    fn file(&self, worker: usize, block: u64) -> PathBuf {
        let mut name = self.state.as_os_str().to_owned();
        name.push(format!(".cluster-p{}-w{worker}-b{block}", self.process));
        PathBuf::from(name)
    }

    /// This process's checkpoint files: (worker, block, path).
    fn files(&self) -> io::Result<Vec<(usize, u64, PathBuf)>> {
        let dir = match self.state.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let Some(stem) = self.state.file_name().and_then(|n| n.to_str()) else {
            return Ok(Vec::new());
        };
        let prefix = format!("{stem}.cluster-p{}-w", self.process);
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut files = Vec::new();
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name();
            let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(&prefix)) else {
                continue;
            };
            let Some((worker, block)) = rest.split_once("-b") else {
                continue;
            };
            if let (Ok(worker), Ok(block)) = (worker.parse(), block.parse()) {
                files.push((worker, block, entry.path()));
            }
        }
        Ok(files)
    }

    /// The blocks at which every worker in `workers` saved, in order.
    pub fn complete(&self, workers: Range<usize>) -> io::Result<Vec<u64>> {
        let mut saved: BTreeMap<u64, usize> = BTreeMap::new();
        for (worker, block, _) in self.files()? {
            if workers.contains(&worker) {
                *saved.entry(block).or_default() += 1;
            }
        }
        Ok(saved
            .into_iter()
            .filter(|&(_, count)| count == workers.len())
            .map(|(block, _)| block)
            .collect())
    }

    /// Removes this process's checkpoint files, or those past `after`.
    pub fn remove(&self, after: Option<u64>) -> io::Result<()> {
        for (_, block, path) in self.files()? {
            if after.is_none_or(|after| block > after) {
                std::fs::remove_file(path)?;
            }
        }
        Ok(())
    }

    /// Writes `worker`'s snapshot whole or not at all, in the state file's
    /// format (its ids, accounts and deposits sections, and one more for the
    /// block and the part), then removes its files older than the one
    /// before it.
    pub fn save(&self, worker: usize, snapshot: &Snapshot) -> anyhow::Result<()> {
        let path = self.file(worker, snapshot.block);
        let mut extra = snapshot.block.to_le_bytes().to_vec();
        bincode::serialize_into(&mut extra, &snapshot.part).context("encoding a checkpoint")?;
        let mut out = AtomicFile::create_private(&path)
            .with_context(|| format!("cannot create checkpoint file {}", path.display()))?;
        let books = [&snapshot.book];
        state::write_kind(
            &mut out,
            KIND_CLUSTER,
            &snapshot.ids,
            &books,
            &[],
            &[&extra],
        )
        .and_then(|_| out.sync())
        .and_then(|()| out.commit())
        .with_context(|| format!("writing checkpoint file {}", path.display()))?;
        let mut older: Vec<(u64, PathBuf)> = self
            .files()?
            .into_iter()
            .filter(|&(w, block, _)| w == worker && block < snapshot.block)
            .map(|(_, block, path)| (block, path))
            .collect();
        older.sort();
        older.pop(); // the one before: kept
        for (_, path) in older {
            std::fs::remove_file(&path)
                .with_context(|| format!("removing old checkpoint file {}", path.display()))?;
        }
        Ok(())
    }

    /// `worker`'s snapshot at `block`, checked.
    pub fn load(&self, worker: usize, block: u64) -> anyhow::Result<Snapshot> {
        let path = self.file(worker, block);
        let read = || -> anyhow::Result<Snapshot> {
            let file = std::fs::File::open(&path)?;
            let read = state::read_sections(&mut io::BufReader::new(file), KIND_CLUSTER)?;
            // Validated as a book: the ids are a share of another stage.
            let book = Book::from_stores(read.accounts, read.deposits)
                .map_err(StateFileError::Inconsistent)?;
            let damaged = StateFileError::Damaged("cluster part section");
            let (head, part) = read.extras[0].split_at_checked(8).ok_or(damaged)?;
            if head != block.to_le_bytes() {
                return Err(StateFileError::Damaged("cluster part section").into());
            }
            let part = bincode::deserialize(part)
                .map_err(|_| StateFileError::Damaged("cluster part section"))?;
            Ok(Snapshot {
                block,
                ids: read.ids,
                book,
                part,
            })
        };
        read().with_context(|| format!("checkpoint file {}", path.display()))
    }
}

/// The checkpoints an operator of the claim or apply stage passes: it asks
/// before taking each block, and once more after, with its frontier.
#[derive(Clone, Copy, Debug)]
pub(super) struct Due {
    next: Option<u64>,
    every: u64,
    end: u64,
}

impl Due {
    pub fn new(schedule: Option<&Schedule>, start: u64) -> Due {
        let mut due = Due {
            next: None,
            every: 0,
            end: 0,
        };
        if let Some(schedule) = schedule {
            due = Due {
                next: schedule.next_after(start),
                every: schedule.every,
                end: schedule.end,
            };
        }
        due
    }

    fn advance(&mut self, c: u64) -> u64 {
        let next = c + self.every;
        self.next = (next < self.end).then_some(next);
        c
    }

    /// A checkpoint to take before taking `block` (call until `None`).
    pub fn before(&mut self, block: u64) -> Option<u64> {
        let c = self.next.filter(|&c| c <= block)?;
        Some(self.advance(c))
    }

    /// A checkpoint whose blocks before it are all done, by the frontier
    /// (call until `None`, after taking every complete block).
    pub fn passed(&mut self, frontier: &MutableAntichain<u64>) -> Option<u64> {
        let c = self.next.filter(|&c| !frontier.less_equal(&(c - 1)))?;
        Some(self.advance(c))
    }
}

/// Snapshots the stages took, waiting for the parse side to pass their
/// block: claimed ids, and books with their applied count.
#[derive(Default)]
pub(super) struct Assembling {
    /// The claim stage's ids at each checkpoint block.
    pub claims: BTreeMap<u64, TxIdSet>,
    /// The apply stage's book, and the rows it applied, at each.
    pub books: BTreeMap<u64, (Book, u64)>,
}

impl Assembling {
    /// The snapshots whose every part is there, once this worker has parsed
    /// all its blocks before `parsed`; `part` gives the parse side's share.
    pub fn ready(&mut self, parsed: u64, part: &Part) -> Vec<Snapshot> {
        let mut ready = Vec::new();
        while let Some((&c, _)) = self.claims.first_key_value() {
            if c > parsed || !self.books.contains_key(&c) {
                break;
            }
            let ids = self.claims.remove(&c).expect("first key");
            let (book, applied) = self.books.remove(&c).expect("checked");
            let mut part = part.before(c);
            part.applied = applied;
            ready.push(Snapshot {
                block: c,
                ids,
                book,
                part,
            });
        }
        ready
    }
}

/// Whether `path`'s directory can take checkpoint files (for a clear error
/// before connecting).
pub(super) fn check_writable(state: &Path) -> anyhow::Result<()> {
    if !directory_of(state).is_dir() {
        bail!(
            "the directory of state file {} does not exist",
            state.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::Account;
    use crate::store::DepositStore;

    fn schedule(dir: &Path, process: usize, every: Option<Duration>) -> Schedule {
        let options = CheckpointOptions {
            state: dir.join("ledger.state"),
            every,
            resume: false,
        };
        // 2 workers, 64 MiB blocks: one block per (nominal) 250 ms.
        Schedule::new(&options, process, 2, 64 << 20, 10)
    }

    #[test]
    fn checkpoint_blocks_follow_from_the_settings_alone() {
        let dir = tempfile::tempdir().unwrap();
        let s = schedule(dir.path(), 0, Some(Duration::from_secs(1)));
        assert_eq!(s.every, 2);
        assert_eq!(
            (s.next_after(0), s.next_after(1), s.next_after(2)),
            (Some(2), Some(2), Some(4))
        );
        assert_eq!(s.next_after(8), None, "none at or past the last block");
        let none = schedule(dir.path(), 0, None);
        assert_eq!((none.every, none.next_after(0)), (0, None));
        let tiny = schedule(dir.path(), 0, Some(Duration::from_millis(1)));
        assert_eq!(tiny.every, 1, "at least every block");
    }

    #[test]
    fn due_gives_each_checkpoint_once_before_its_block_or_when_passed() {
        let dir = tempfile::tempdir().unwrap();
        let s = schedule(dir.path(), 0, Some(Duration::from_secs(1)));
        let mut due = Due::new(Some(&s), 0);
        assert_eq!(due.before(1), None);
        assert_eq!(
            (due.before(5), due.before(5), due.before(5)),
            (Some(2), Some(4), None)
        );
        let mut frontier = MutableAntichain::new();
        frontier.update_iter([(6u64, 1)]);
        assert_eq!(
            due.passed(&frontier),
            Some(6),
            "every block before 6 is done"
        );
        assert_eq!(due.passed(&frontier), None);
        let mut resumed = Due::new(Some(&s), 4);
        assert_eq!(
            resumed.before(9),
            Some(6),
            "after the block it resumed from"
        );
    }

    #[test]
    fn snapshots_are_saved_whole_listed_per_process_and_checked_on_load() {
        let dir = tempfile::tempdir().unwrap();
        let p0 = schedule(dir.path(), 0, Some(Duration::from_secs(1)));
        let p1 = schedule(dir.path(), 1, Some(Duration::from_secs(1)));
        let snapshot = |block| {
            let mut ids = TxIdSet::default();
            for id in [1, 5, 70_000] {
                ids.claim(id);
            }
            let accounts = [(3, Account::default())];
            let book = Book::from_stores(accounts, DepositStore::default()).unwrap();
            Snapshot {
                block,
                ids,
                book,
                part: Part::default(),
            }
        };
        for block in [2, 4, 6] {
            p0.save(0, &snapshot(block)).unwrap();
        }
        p0.save(1, &snapshot(4)).unwrap();
        p1.save(2, &snapshot(2)).unwrap();
        // Worker 0 keeps 4 and 6; only 4 is complete for workers 0 and 1.
        assert_eq!(p0.complete(0..2).unwrap(), vec![4]);
        assert_eq!(p0.complete(0..1).unwrap(), vec![4, 6]);
        assert_eq!(
            p1.complete(2..3).unwrap(),
            vec![2],
            "another process's files are its own"
        );
        let loaded = p0.load(0, 6).unwrap();
        let ids: Vec<u32> = loaded.ids.iter().collect();
        assert_eq!((loaded.block, ids), (6, vec![1, 5, 70_000]));
        assert_eq!(loaded.book.accounts().count(), 1);
        // One flipped byte: refused, naming the file.
        let path = p0.file(0, 6);
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&path, bytes).unwrap();
        let error = format!("{:#}", p0.load(0, 6).err().unwrap());
        assert!(
            error.contains("damaged") && error.contains("-w0-b6"),
            "{error}"
        );
        p0.remove(Some(4)).unwrap();
        assert_eq!(p0.complete(0..1).unwrap(), vec![4]);
        p0.remove(None).unwrap();
        assert!(p0.complete(0..1).unwrap().is_empty());
        assert_eq!(p1.complete(2..3).unwrap(), vec![2]);
    }

    #[test]
    fn a_snapshot_is_ready_once_both_stages_and_the_parser_passed_it() {
        let mut pending = Assembling::default();
        let applied = crate::report::Outcome::Applied;
        let part = Part {
            lines: vec![(0, 10), (3, 7)],
            events: vec![(1, 2, applied, Vec::new()), (5, 2, applied, Vec::new())],
            ..Part::default()
        };
        pending.claims.insert(4, TxIdSet::default());
        assert!(
            pending.ready(10, &part).is_empty(),
            "the book's snapshot is missing"
        );
        pending.books.insert(4, (Book::default(), 17));
        assert!(
            pending.ready(3, &part).is_empty(),
            "its own blocks before 4 not parsed yet"
        );
        let ready = pending.ready(4, &part);
        assert_eq!(ready.len(), 1);
        let snapshot = &ready[0];
        assert_eq!((snapshot.block, snapshot.part.applied), (4, 17));
        assert_eq!(snapshot.part.lines, vec![(0, 10), (3, 7)]);
        assert_eq!(
            snapshot.part.events.len(),
            1,
            "rows of blocks from 4 on are left out"
        );
    }
}
