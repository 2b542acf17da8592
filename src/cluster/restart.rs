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
//! `STATE.cluster-p<process>-w<worker>-b<c>` (`-w<worker>-d<base>-b<c>` for a
//! delta), atomically. The file is in the
//! state file's format (kind 3): its claimed ids, accounts and deposits
//! sections, checksummed and checked on load as the state file's are (the
//! book validated on its own: the ids are another stage's share), and one
//! more section with the block, the base and the parse side's part.
//!
//! Only the first checkpoint of a run and every [`WHOLE_EVERY`]-th after it
//! hold the whole state; the others are deltas on the checkpoint before
//! them: the ids claimed since, and the accounts and deposits touched since,
//! as they are now (the stages note them as they go, only when checkpoints
//! are taken). Loading a delta loads its base and lays the delta over it
//! (`Book::overlay`, `TxIdSet::absorb`), then checks the book. A worker
//! keeps its newest `WHOLE_EVERY + 1` files: the newest, the one before,
//! and the chain that one may stand on. A worker that ran ahead of the
//! others may have removed the start of an older checkpoint's chain: a
//! checkpoint counts as complete only where every worker's chain is there. On `--resume` every process tells the others (in the
//! connection handshake) the last two checkpoints all its workers
//! completed; all go on from the latest one that every process has, and
//! finish with the bytes an uninterrupted run prints.

use std::collections::BTreeMap;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::error::{bail, Context};
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

/// What a cluster checkpoint goes on from, recorded in every checkpoint
/// file and compared on load: the input, how it was cut, the cluster's
/// shape, and the state file the run started from. A checkpoint bound to
/// anything else would resume to wrong balances, and the replay check would
/// then protect them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Binding {
    /// The input's size and xxh3-128.
    pub input: (u64, u128),
    pub block: u64,
    pub processes: u64,
    /// Workers per process.
    pub workers: u64,
    /// The state file's size and xxh3-128 when the run started (size 0 and
    /// the empty hash when there was none).
    pub base: (u64, u128),
}

impl Binding {
    const LEN: usize = 8 * 10;

    fn encode(&self, out: &mut Vec<u8>) {
        for word in [
            self.input.0,
            self.input.1 as u64,
            (self.input.1 >> 64) as u64,
            self.block,
            self.processes,
            self.workers,
            self.base.0,
            self.base.1 as u64,
            (self.base.1 >> 64) as u64,
            0,
        ] {
            out.extend_from_slice(&word.to_le_bytes());
        }
    }

    fn decode(bytes: &[u8]) -> Option<Binding> {
        let word = |i: usize| {
            let at = bytes.get(i * 8..i * 8 + 8)?;
            Some(u64::from_le_bytes(at.try_into().ok()?))
        };
        let wide = |i: usize| Some(u128::from(word(i)?) | u128::from(word(i + 1)?) << 64);
        Some(Binding {
            input: (word(0)?, wide(1)?),
            block: word(3)?,
            processes: word(4)?,
            workers: word(5)?,
            base: (word(6)?, wide(7)?),
        })
    }

    /// What differs between a checkpoint's binding (`self`) and this run's.
    fn mismatch(&self, run: &Binding) -> Option<&'static str> {
        if self.base != run.base {
            Some("another state file (or the state file changed since)")
        } else if self.input != run.input {
            Some("another input")
        } else if self.block != run.block {
            Some("another --block-size")
        } else if (self.processes, self.workers) != (run.processes, run.workers) {
            Some("another number of processes or --workers")
        } else {
            None
        }
    }
}

/// Checkpoints of this process: every `every` blocks, named after the state
/// file.
#[derive(Clone, Debug)]
pub(super) struct Schedule {
    /// Blocks between checkpoints (0: none).
    pub every: u64,
    /// The last block + 1: no checkpoint at or past it.
    pub end: u64,
    state: PathBuf,
    process: usize,
    /// What this run's checkpoints are bound to.
    binding: Binding,
}

/// Everything a worker holds for the blocks before `block`: its claim
/// stage's ids, its apply stage's book, its parse side's part.
#[derive(Default)]
pub(super) struct Snapshot {
    pub block: u64,
    /// A delta's base: the checkpoint whose state `ids` and `book` hold the
    /// changes since (`None`: they hold the whole state).
    pub base: Option<u64>,
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
        binding: Binding,
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
            binding,
        }
    }

    /// The xxh3-128 of the whole input, taken at the start of the run: the
    /// identity the state file records for it.
    pub fn input_hash(&self) -> u128 {
        self.binding.input.1
    }

    /// The first checkpoint block after `block`, if there is one.
    pub fn next_after(&self, block: u64) -> Option<u64> {
        let next = (block / self.every.max(1) + 1) * self.every;
        (self.every > 0 && next < self.end).then_some(next)
    }

    /// A checkpoint file's name: `-w<worker>-b<block>`, and for a delta
    /// `-w<worker>-d<base>-b<block>` (the chain is known from the names).
    fn file(&self, worker: usize, block: u64, base: Option<u64>) -> PathBuf {
        let mut name = self.state.as_os_str().to_owned();
        name.push(format!(".cluster-p{}-w{worker}", self.process));
        if let Some(base) = base {
            name.push(format!("-d{base}"));
        }
        name.push(format!("-b{block}"));
        PathBuf::from(name)
    }

    /// This process's checkpoint files: (worker, block, path).
    fn files(&self) -> io::Result<Vec<(usize, u64, PathBuf)>> {
        let files = checkpoint_files(&self.state, self.process)?;
        Ok(files
            .into_iter()
            .map(|f| (f.worker, f.block, f.path))
            .collect())
    }

    /// `worker`'s checkpoints that can be loaded: those whose chain back
    /// to a whole checkpoint is all there (a worker that ran ahead of the
    /// others may have removed the start of an older one's chain).
    fn loadable(&self, worker: usize) -> io::Result<BTreeMap<u64, (Option<u64>, PathBuf)>> {
        let files: BTreeMap<u64, (Option<u64>, PathBuf)> =
            (checkpoint_files(&self.state, self.process)?.into_iter())
                .filter(|f| f.worker == worker)
                .map(|f| (f.block, (f.base, f.path)))
                .collect();
        let whole = |mut block: u64| loop {
            match files.get(&block) {
                None => return false,
                Some((None, _)) => return true,
                Some((Some(base), _)) if *base < block => block = *base,
                Some(_) => return false,
            }
        };
        let keep: Vec<u64> = files.keys().copied().filter(|&b| whole(b)).collect();
        Ok(files
            .into_iter()
            .filter(|(b, _)| keep.contains(b))
            .collect())
    }

    /// The blocks at which every worker in `workers` saved, in order.
    pub fn complete(&self, workers: Range<usize>) -> io::Result<Vec<u64>> {
        let mut saved: BTreeMap<u64, usize> = BTreeMap::new();
        for worker in workers.clone() {
            for block in self.loadable(worker)?.into_keys() {
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
    /// block, the delta's base and the part), then removes its files that
    /// neither this checkpoint nor the one before it can need: a delta
    /// needs its chain back to a whole checkpoint, at most
    /// [`WHOLE_EVERY`] files, so the newest `WHOLE_EVERY + 1` are kept.
    pub fn save(&self, worker: usize, snapshot: &Snapshot) -> super::error::Result<()> {
        let path = self.file(worker, snapshot.block, snapshot.base);
        let mut extra = snapshot.block.to_le_bytes().to_vec();
        self.binding.encode(&mut extra);
        // 0: a whole checkpoint (a base is a checkpoint block, never 0).
        extra.extend_from_slice(&snapshot.base.unwrap_or(0).to_le_bytes());
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
        // The one before, and the chain it may stand on: kept.
        older.truncate(older.len().saturating_sub(WHOLE_EVERY as usize));
        for (_, path) in older {
            std::fs::remove_file(&path)
                .with_context(|| format!("removing old checkpoint file {}", path.display()))?;
        }
        Ok(())
    }

    /// The binding a checkpoint file records (its sections checked).
    fn binding_of(path: &Path) -> super::error::Result<(state::Sectioned, Binding)> {
        let file = std::fs::File::open(path)?;
        let read = state::read_sections(&mut io::BufReader::new(file), KIND_CLUSTER)?;
        let binding = read.extras[0]
            .get(8..)
            .and_then(Binding::decode)
            .ok_or(StateFileError::Damaged("cluster part section"))?;
        Ok((read, binding))
    }

    /// Removes this process's checkpoints of runs that finished: those
    /// taken on another state file than the one there now (process 0
    /// committed the state after them). Any other checkpoint is an
    /// interrupted run's; with `resume`, one bound to anything but this
    /// run's input, block size, cluster shape and state is refused.
    pub fn settle(&self, resume: bool) -> super::error::Result<()> {
        for (_, _, path) in self.files()? {
            let (_, binding) = Schedule::binding_of(&path)
                .with_context(|| format!("checkpoint file {}", path.display()))?;
            if binding.base != self.binding.base {
                std::fs::remove_file(&path)
                    .with_context(|| format!("removing {}", path.display()))?;
                continue;
            }
            if let (true, Some(what)) = (resume, binding.mismatch(&self.binding)) {
                bail!(
                    "process {}: checkpoint file {} was taken on {what}: --resume goes on \
                     only with the interrupted run's input, --block-size, host file, --workers \
                     and state file",
                    self.process,
                    path.display()
                );
            }
        }
        Ok(())
    }

    /// `worker`'s snapshot at `block`, checked: a delta laid over its
    /// base's snapshot, back to a whole one.
    pub fn load(&self, worker: usize, block: u64) -> super::error::Result<Snapshot> {
        let (named, path) = self.loadable(worker)?.remove(&block).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("worker {worker} has no whole checkpoint chain at block {block}"),
            )
        })?;
        let read = || -> super::error::Result<Snapshot> {
            let (read, binding) = Schedule::binding_of(&path)?;
            if let Some(what) = binding.mismatch(&self.binding) {
                bail!("taken on {what}");
            }
            let damaged = StateFileError::Damaged("cluster part section");
            let (head, part) = read.extras[0]
                .split_at_checked(8 + Binding::LEN + 8)
                .ok_or(damaged)?;
            if head[..8] != block.to_le_bytes() {
                return Err(StateFileError::Damaged("cluster part section").into());
            }
            let base = u64::from_le_bytes(head[8 + Binding::LEN..].try_into().expect("8 bytes"));
            let base = (base != 0).then_some(base);
            let part = bincode::deserialize(part)
                .map_err(|_| StateFileError::Damaged("cluster part section"))?;
            if base != named || base.is_some_and(|base| base >= block) {
                return Err(StateFileError::Damaged("cluster part section").into());
            }
            let Some(base) = base else {
                // Validated as a book: the ids are a share of another stage.
                let book = Book::from_stores(read.accounts, read.deposits)
                    .map_err(StateFileError::Inconsistent)?;
                return Ok(Snapshot {
                    block,
                    base: None,
                    ids: read.ids,
                    book,
                    part,
                });
            };
            let mut whole = self.load(worker, base)?;
            let changes = Book::with_accounts(read.accounts, read.deposits)
                .map_err(StateFileError::Inconsistent)?;
            whole.book.overlay(&changes);
            whole.book.check().map_err(StateFileError::Inconsistent)?;
            whole.ids.absorb(&read.ids);
            whole.part.extend(part);
            Ok(Snapshot {
                block,
                base: None,
                ids: whole.ids,
                book: whole.book,
                part: whole.part,
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
    /// The checkpoint this run took last, if any: a delta's base.
    last: Option<u64>,
    /// Deltas taken since the last whole checkpoint.
    deltas: u64,
}

/// A checkpoint to take: its block, and `base` when it saves only what
/// changed since that checkpoint (taken earlier in this run).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Checkpoint {
    pub block: u64,
    pub base: Option<u64>,
}

/// Every how many checkpoints one saves the whole state: the others save
/// what changed since the one before, and a resume reads at most this
/// many files a worker.
pub(super) const WHOLE_EVERY: u64 = 8;

impl Due {
    pub fn new(schedule: Option<&Schedule>, start: u64) -> Due {
        let mut due = Due {
            next: None,
            every: 0,
            end: 0,
            last: None,
            deltas: 0,
        };
        if let Some(schedule) = schedule {
            due.next = schedule.next_after(start);
            due.every = schedule.every;
            due.end = schedule.end;
        }
        due
    }

    /// Both stages pass the same checkpoints in the same order, so both
    /// decide alike which are whole and which are deltas.
    fn advance(&mut self, c: u64) -> Checkpoint {
        let next = c + self.every;
        self.next = (next < self.end).then_some(next);
        let base = self.last.filter(|_| self.deltas + 1 < WHOLE_EVERY);
        self.deltas = if base.is_some() { self.deltas + 1 } else { 0 };
        self.last = Some(c);
        Checkpoint { block: c, base }
    }

    /// A checkpoint to take before taking `block` (call until `None`).
    pub fn before(&mut self, block: u64) -> Option<Checkpoint> {
        let c = self.next.filter(|&c| c <= block)?;
        Some(self.advance(c))
    }

    /// A checkpoint whose blocks before it are all done, by the frontier
    /// (call until `None`, after taking every complete block).
    pub fn passed(&mut self, frontiers: &[&MutableAntichain<u64>]) -> Option<Checkpoint> {
        let c = (self.next).filter(|&c| frontiers.iter().all(|f| !f.less_equal(&(c - 1))))?;
        Some(self.advance(c))
    }
}

/// Snapshots the stages took, waiting for the parse side to pass their
/// block: claimed ids, and books with their applied count.
#[derive(Default)]
pub(super) struct Assembling {
    /// The claim stage's ids at each checkpoint block (all of them, or
    /// those claimed since the delta's base).
    pub claims: BTreeMap<u64, (TxIdSet, Option<u64>)>,
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
            let (ids, base) = self.claims.remove(&c).expect("first key");
            let (book, applied) = self.books.remove(&c).expect("checked");
            let mut part = part.between(base.unwrap_or(0), c);
            part.applied = applied;
            ready.push(Snapshot {
                block: c,
                base,
                ids,
                book,
                part,
            });
        }
        ready
    }
}

/// One checkpoint file, as its name describes it.
struct CheckpointFile {
    worker: usize,
    block: u64,
    /// A delta's base.
    base: Option<u64>,
    path: PathBuf,
}

/// The checkpoint files of `process` beside `state`.
fn checkpoint_files(state: &Path, process: usize) -> io::Result<Vec<CheckpointFile>> {
    let dir = directory_of(state);
    let Some(stem) = state.file_name().and_then(|n| n.to_str()) else {
        return Ok(Vec::new());
    };
    let prefix = format!("{stem}.cluster-p{process}-w");
    let entries = match std::fs::read_dir(dir) {
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
        let (worker, base) = match worker.split_once("-d") {
            Some((worker, base)) => match base.parse() {
                Ok(base) => (worker, Some(base)),
                Err(_) => continue,
            },
            None => (worker, None),
        };
        if let (Ok(worker), Ok(block)) = (worker.parse(), block.parse()) {
            let path = entry.path();
            files.push(CheckpointFile {
                worker,
                block,
                base,
                path,
            });
        }
    }
    Ok(files)
}

/// Removes the checkpoint files of `process` beside `state`. Process 0
/// calls it once it has committed the state file, never before: until then
/// its checkpoints are what `--resume` goes on from. The other processes'
/// files go at their next start, as taken on a state file that has moved on.
pub(super) fn discard_checkpoints(state: &Path, process: usize) -> io::Result<()> {
    for file in checkpoint_files(state, process)? {
        std::fs::remove_file(file.path)?;
    }
    Ok(())
}

/// Whether `path`'s directory can take checkpoint files (for a clear error
/// before connecting).
pub(super) fn check_writable(state: &Path) -> super::error::Result<()> {
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
    use crate::amount::Amount;
    use crate::ledger::Account;
    use crate::report::Outcome;
    use crate::store::Deposit;
    use crate::store::DepositStore;
    use crate::tx::{ClientId, TxId};

    fn schedule(dir: &Path, process: usize, every: Option<Duration>) -> Schedule {
        let options = CheckpointOptions {
            state: dir.join("ledger.state"),
            every,
            resume: false,
        };
        // 2 workers, 64 MiB blocks: one block per (nominal) 250 ms.
        Schedule::new(&options, process, 2, 64 << 20, 10, binding())
    }

    fn binding() -> Binding {
        Binding {
            input: (1 << 30, 7),
            block: 64 << 20,
            processes: 2,
            workers: 1,
            base: (0, 9),
        }
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
        let at = |block, base| Some(Checkpoint { block, base });
        assert_eq!(
            (due.before(5), due.before(5), due.before(5)),
            (at(2, None), at(4, Some(2)), None),
            "the run's first checkpoint is whole, the next a delta on it"
        );
        let mut frontier = MutableAntichain::new();
        frontier.update_iter([(6u64, 1)]);
        assert_eq!(
            due.passed(&[&frontier]),
            at(6, Some(4)),
            "every block before 6 is done"
        );
        assert_eq!(due.passed(&[&frontier]), None);
        let mut resumed = Due::new(Some(&s), 4);
        assert_eq!(
            resumed.before(9),
            at(6, None),
            "after the block it resumed from, whole"
        );
        // Every WHOLE_EVERY-th checkpoint is whole again.
        let mut long = Due::new(
            Some(&schedule(dir.path(), 0, Some(Duration::from_millis(1)))),
            0,
        );
        let bases: Vec<Option<u64>> = (1..=9).map(|b| long.before(b).unwrap().base).collect();
        let whole: Vec<usize> = (0..9).filter(|&i| bases[i].is_none()).collect();
        assert_eq!(whole, vec![0, WHOLE_EVERY as usize]);
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
                base: None,
                ids,
                book,
                part: Part::default(),
            }
        };
        let blocks: Vec<u64> = (1..=WHOLE_EVERY + 3).map(|k| 2 * k).collect();
        for &block in &blocks {
            p0.save(0, &snapshot(block)).unwrap();
        }
        let last = *blocks.last().unwrap();
        p0.save(1, &snapshot(last - 2)).unwrap();
        p1.save(2, &snapshot(2)).unwrap();
        // Worker 0 keeps its newest WHOLE_EVERY + 1 (the one before the
        // newest and the chain it may stand on); only `last - 2` is
        // complete for workers 0 and 1.
        assert_eq!(p0.complete(0..2).unwrap(), vec![last - 2]);
        let kept = blocks[blocks.len() - WHOLE_EVERY as usize - 1..].to_vec();
        assert_eq!(p0.complete(0..1).unwrap(), kept);
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
        let path = p0.file(0, 6, None);
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&path, bytes).unwrap();
        let error = crate::cluster::error::Error::chain(&p0.load(0, 6).err().unwrap());
        assert!(
            error.contains("damaged") && error.contains("-w0-b6"),
            "{error}"
        );
        p0.remove(Some(8)).unwrap();
        assert_eq!(p0.complete(0..1).unwrap(), vec![6, 8]);
        p0.remove(None).unwrap();
        assert!(p0.complete(0..1).unwrap().is_empty());
        assert_eq!(p1.complete(2..3).unwrap(), vec![2]);
    }

    #[test]
    fn a_delta_checkpoint_loads_as_its_chain_laid_over_the_whole_one() {
        let dir = tempfile::tempdir().unwrap();
        let p0 = schedule(dir.path(), 0, Some(Duration::from_secs(1)));
        let account = |available: i64, held: i64| Account {
            available: Amount::from_raw(available),
            held: Amount::from_raw(held),
            locked: false,
        };
        let deposit = |client: ClientId, amount: i64, disputed: bool| Deposit {
            client,
            amount: Amount::from_raw(amount),
            disputed,
        };
        let book = |accounts: Vec<(ClientId, Account)>, deposits: Vec<(TxId, Deposit)>| {
            let mut store = DepositStore::default();
            for (id, d) in deposits {
                store.restore(id, d);
            }
            Book::with_accounts(accounts, store).unwrap()
        };
        let ids = |list: &[TxId]| {
            let mut ids = TxIdSet::default();
            for &id in list {
                ids.claim(id);
            }
            ids
        };
        let save = |block, base, claimed: &[TxId], book: Book| {
            let snapshot = Snapshot {
                block,
                base,
                ids: ids(claimed),
                book,
                // The parse side's events of the blocks since the base.
                part: Part {
                    applied: block,
                    events: vec![(block - 1, block, Outcome::Applied)],
                    lines: vec![(block - 1, 10)],
                    ..Part::default()
                },
            };
            p0.save(0, &snapshot).unwrap();
        };
        // Whole at 2: client 1 with deposit 10; a delta at 4: deposit 11
        // for client 2, deposit 10 disputed; a delta at 6: client 1's
        // dispute resolved, client 3 new with deposit 70,000.
        save(
            2,
            None,
            &[10],
            book(vec![(1, account(5, 0))], vec![(10, deposit(1, 5, false))]),
        );
        let changes = book(
            vec![(1, account(0, 5)), (2, account(7, 0))],
            vec![(10, deposit(1, 5, true)), (11, deposit(2, 7, false))],
        );
        save(4, Some(2), &[11, 12], changes);
        let changes = book(
            vec![(1, account(5, 0)), (3, account(9, 0))],
            vec![(10, deposit(1, 5, false)), (70_000, deposit(3, 9, false))],
        );
        save(6, Some(4), &[70_000], changes);
        let at4 = p0.load(0, 4).unwrap();
        assert_eq!(at4.book.deposits().get(10), Some(deposit(1, 5, true)));
        assert_eq!(at4.ids.iter().collect::<Vec<_>>(), vec![10, 11, 12]);
        let at6 = p0.load(0, 6).unwrap();
        let accounts: Vec<(ClientId, Account)> = at6
            .book
            .accounts()
            .map(|(c, a)| (c, *a))
            .collect::<std::collections::BTreeMap<_, _>>()
            .into_iter()
            .collect();
        assert_eq!(
            accounts,
            vec![(1, account(5, 0)), (2, account(7, 0)), (3, account(9, 0))]
        );
        let deposits: Vec<(TxId, Deposit)> = at6.book.deposits().iter().collect();
        assert_eq!(
            deposits,
            vec![
                (10, deposit(1, 5, false)),
                (11, deposit(2, 7, false)),
                (70_000, deposit(3, 9, false))
            ]
        );
        assert_eq!(at6.ids.iter().collect::<Vec<_>>(), vec![10, 11, 12, 70_000]);
        assert_eq!((at6.block, at6.part.applied, at6.base), (6, 6, None));
        let events: Vec<(u64, u64)> = at6.part.events.iter().map(|e| (e.0, e.1)).collect();
        assert_eq!(events, vec![(1, 2), (3, 4), (5, 6)]);
        assert_eq!(at6.part.lines, vec![(1, 10), (3, 10), (5, 10)]);
        // A chain that does not add up (a held amount with no disputed
        // deposit under it) is refused.
        save(8, Some(6), &[], book(vec![(2, account(0, 7))], vec![]));
        let error = crate::cluster::error::Error::chain(&p0.load(0, 8).err().unwrap());
        assert_eq!(p0.complete(0..1).unwrap(), vec![2, 4, 6, 8]);
        // A chain whose start is gone (a worker that ran ahead removed it)
        // is neither complete nor loaded.
        std::fs::remove_file(p0.file(0, 2, None)).unwrap();
        assert!(p0.complete(0..1).unwrap().is_empty());
        let gone = crate::cluster::error::Error::chain(&p0.load(0, 6).err().unwrap());
        assert!(
            gone.contains("no whole checkpoint chain at block 6"),
            "{gone}"
        );
        assert!(
            error.contains("-w0-d6-b8") && error.contains("held amount"),
            "{error}"
        );
    }

    #[test]
    fn checkpoints_are_bound_to_their_run_and_settled_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let p0 = schedule(dir.path(), 0, Some(Duration::from_secs(1)));
        let mut bytes = Vec::new();
        binding().encode(&mut bytes);
        assert_eq!(bytes.len(), Binding::LEN);
        assert_eq!(Binding::decode(&bytes), Some(binding()));
        p0.save(0, &Snapshot::default()).unwrap();
        let with = |binding: Binding| {
            let options = CheckpointOptions {
                state: dir.path().join("ledger.state"),
                every: Some(Duration::from_secs(1)),
                resume: true,
            };
            Schedule::new(&options, 0, 2, 64 << 20, 10, binding)
        };
        // Another input: refused on resume, by settle and by load.
        let other_input = with(Binding {
            input: (1 << 30, 8),
            ..binding()
        });
        let error = crate::cluster::error::Error::chain(&other_input.settle(true).unwrap_err());
        assert!(error.contains("taken on another input"), "{error}");
        other_input.settle(false).unwrap();
        let error = crate::cluster::error::Error::chain(&other_input.load(0, 0).err().unwrap());
        assert!(error.contains("taken on another input"), "{error}");
        assert_eq!(p0.complete(0..1).unwrap(), vec![0], "kept");
        // The state file moved on since (process 0 committed): settled away.
        with(Binding {
            base: (5, 5),
            ..binding()
        })
        .settle(true)
        .unwrap();
        assert!(p0.complete(0..1).unwrap().is_empty(), "removed");
    }

    #[test]
    fn a_snapshot_is_ready_once_both_stages_and_the_parser_passed_it() {
        let mut pending = Assembling::default();
        let applied = crate::report::Outcome::Applied;
        let part = Part {
            lines: vec![(0, 10), (3, 7)],
            events: vec![(1, 2, applied), (5, 2, applied)],
            ..Part::default()
        };
        pending.claims.insert(4, (TxIdSet::default(), None));
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
