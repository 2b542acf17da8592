//! Checkpoints, resume and a graceful stop.
//!
//! A checkpoint is a cut of the run at a record boundary: everything before
//! it applied, nothing after it. It is what a run over the input's first
//! `offset` bytes would have left behind, so a run resumed from it, over the
//! rest of the same input, ends exactly as the uninterrupted run does.
//!
//! What a checkpoint holds (file `STATE.checkpoint`, the state file's format
//! with `kind` 2 and two more sections):
//!
//! * the ledger's state and the inputs applied before this run (the state
//!   file's four sections, written from the live stores);
//! * **progress**: the parser's position (byte offset, line number, xxh3-128
//!   of the bytes consumed, the header's column map), and how long the
//!   journals were;
//! * **diagnostics**: the tally of the rows before the cut and the first
//!   lines of each reason shown on stderr by default.
//!
//! Beside it, two append-only *journals* (`STATE.checkpoint.rejects`,
//! `STATE.checkpoint.verbose`) hold every rejects row and every `--verbose`
//! stderr line of the rows before the cut, in line order. A checkpoint
//! appends the rows logged since the last one (every source's spool, merged
//! by line, then emptied), fsyncs the journals, then writes the checkpoint
//! file atomically. A crash between the two leaves journals longer than the
//! last checkpoint says; a resumed run cuts them back.
//!
//! In the sharded pipeline a checkpoint is an aligned barrier (Flink's
//! barrier snapshot with a single source): the router (the calling thread)
//! hands out the block it was filling and sends every worker a barrier, and
//! each worker, once it has applied every block before it, hands its book,
//! its share of the claimed ids and its log to the router and waits. The
//! router writes the checkpoint from all of them and hands them back. It
//! waits while it writes (about 0.3 s for the 20M-row file's state;
//! perf.md): simpler than a copy-on-write
//! snapshot, and at the default interval under 1% of a run.
//!
//! A stop (SIGINT, SIGTERM) is checked before each record: the run takes a
//! checkpoint when it has a state file, and ends with
//! [`Error::Interrupted`].

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::io::Read;

use super::atomic::AtomicFile;
use super::state::{self, InputId, Saved, StateFileError, KIND_CHECKPOINT};
use crate::engine::{EngineBuilder, Error, Executor, Finished, Paused, Supervise};
use crate::ledger::Ledger;
use crate::parse::{self, Columns, Position};
use crate::report::{self, Carried, EventLog, Journals, Tally, Verbosity};

/// Where the checkpoint of a run with state file `state` is kept.
pub fn checkpoint_path(state: &Path) -> PathBuf {
    with_suffix(state, ".checkpoint")
}

fn journal_path(state: &Path, which: &str) -> PathBuf {
    with_suffix(state, &format!(".checkpoint.{which}"))
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Removes the checkpoint and its journals (after a run that finished).
pub fn discard(state: &Path) -> io::Result<()> {
    for path in [
        checkpoint_path(state),
        journal_path(state, "rejects"),
        journal_path(state, "verbose"),
    ] {
        match fs::remove_file(&path) {
            Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(error),
            _ => {}
        }
    }
    Ok(())
}

/// A checkpoint found on disk: the state it holds, and where to go on.
pub struct Pending {
    /// The ledger at the cut, and the inputs applied before this run.
    pub saved: Saved,
    /// How to go on: hand it to [`Control::resuming`].
    pub resume: Resume,
}

/// What a resumed run needs besides the ledger.
#[derive(Clone, Debug)]
pub struct Resume {
    progress: Progress,
    carried: Carried,
}

impl Resume {
    /// The position of the cut in the input.
    pub fn position(&self) -> Position {
        self.progress.parser.at
    }

    /// The rows before the cut.
    pub fn tally(&self) -> &Tally {
        &self.carried.tally
    }
}

/// Loads the checkpoint of `state`, if there is one.
pub fn load(state: &Path) -> Result<Option<Pending>, StateFileError> {
    let Some(file) = state::open_regular(&checkpoint_path(state))? else {
        return Ok(None);
    };
    let mut input = io::BufReader::with_capacity(1 << 20, file);
    let (saved, extras) = state::read_kind(&mut input, KIND_CHECKPOINT)?;
    let progress =
        decode_progress(&extras[0]).ok_or(StateFileError::Damaged("progress section"))?;
    let carried =
        decode_carried(&extras[1]).ok_or(StateFileError::Damaged("diagnostics section"))?;
    Ok(Some(Pending {
        saved,
        resume: Resume { progress, carried },
    }))
}

/// Where the run stood at a checkpoint, and what it kept for its reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Progress {
    parser: parse::ParserState,
    /// The journals' lengths at the cut.
    verbose_len: u64,
    rejects_len: u64,
    /// What the run kept for reports: a resumed run must keep the same.
    verbosity: Verbosity,
    keep_rejects: bool,
    /// The state file the run started from (size and xxh3-128; size 0 and
    /// the empty hash when there was none): the checkpoint goes on from
    /// that ledger and no other.
    base: Identity,
}

/// A file's size and xxh3-128 hash.
type Identity = (u64, u128);

const PROGRESS_LEN: usize = 8 * 4 + 4 * 5 + 4 + 8 * 2 + 8 * 3;

fn encode_progress(p: &Progress) -> Vec<u8> {
    let mut out = Vec::with_capacity(PROGRESS_LEN);
    let at = &p.parser.at;
    out.extend_from_slice(&at.offset.to_le_bytes());
    out.extend_from_slice(&at.line.to_le_bytes());
    out.extend_from_slice(&(at.prefix_hash as u64).to_le_bytes());
    out.extend_from_slice(&((at.prefix_hash >> 64) as u64).to_le_bytes());
    let c = &p.parser.columns;
    let amount = c.amount.map_or(u32::MAX, |a| a as u32);
    for field in [
        c.kind as u32,
        c.client as u32,
        c.tx as u32,
        amount,
        c.width as u32,
    ] {
        out.extend_from_slice(&field.to_le_bytes());
    }
    let verbosity = match p.verbosity {
        Verbosity::Quiet => 0,
        Verbosity::Default => 1,
        Verbosity::Verbose => 2,
    };
    out.extend_from_slice(&[
        u8::from(p.parser.seen_first),
        verbosity,
        u8::from(p.keep_rejects),
        0,
    ]);
    out.extend_from_slice(&p.verbose_len.to_le_bytes());
    out.extend_from_slice(&p.rejects_len.to_le_bytes());
    out.extend_from_slice(&p.base.0.to_le_bytes());
    out.extend_from_slice(&(p.base.1 as u64).to_le_bytes());
    out.extend_from_slice(&((p.base.1 >> 64) as u64).to_le_bytes());
    debug_assert_eq!(out.len(), PROGRESS_LEN);
    out
}

/// Little-endian fields, read one after the other.
struct Fields<'a>(&'a [u8]);

impl Fields<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.0.split_first_chunk::<N>()?;
        self.0 = rest;
        Some(*head)
    }

    fn u64(&mut self) -> Option<u64> {
        self.take().map(u64::from_le_bytes)
    }

    fn u32(&mut self) -> Option<u32> {
        self.take().map(u32::from_le_bytes)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take::<1>().map(|[b]| b)
    }
}

fn decode_progress(bytes: &[u8]) -> Option<Progress> {
    if bytes.len() != PROGRESS_LEN {
        return None;
    }
    let mut f = Fields(bytes);
    let (offset, line) = (f.u64()?, f.u64()?);
    let prefix_hash = u128::from(f.u64()?) | u128::from(f.u64()?) << 64;
    let (kind, client, tx, amount, width) = (f.u32()?, f.u32()?, f.u32()?, f.u32()?, f.u32()?);
    let columns = Columns {
        kind: kind as usize,
        client: client as usize,
        tx: tx as usize,
        amount: (amount != u32::MAX).then_some(amount as usize),
        width: width as usize,
    };
    let fits = |i: usize| i < columns.width;
    if !(fits(columns.kind) && fits(columns.client) && fits(columns.tx))
        || columns.amount.is_some_and(|a| !fits(a))
        || columns.width > parse::MAX_LINE
    {
        return None;
    }
    let (seen_first, verbosity, keep_rejects, zero) = (f.u8()?, f.u8()?, f.u8()?, f.u8()?);
    let verbosity = match verbosity {
        0 => Verbosity::Quiet,
        1 => Verbosity::Default,
        2 => Verbosity::Verbose,
        _ => return None,
    };
    if seen_first > 1 || keep_rejects > 1 || zero != 0 {
        return None;
    }
    Some(Progress {
        parser: parse::ParserState {
            at: Position {
                offset,
                line,
                prefix_hash,
            },
            columns,
            seen_first: seen_first == 1,
        },
        verbose_len: f.u64()?,
        rejects_len: f.u64()?,
        verbosity,
        keep_rejects: keep_rejects == 1,
        base: (f.u64()?, u128::from(f.u64()?) | u128::from(f.u64()?) << 64),
    })
}

fn encode_carried(c: &Carried) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&c.tally.applied.to_le_bytes());
    for n in c.tally.rejected_by.iter().chain(&c.tally.malformed_by) {
        out.extend_from_slice(&n.to_le_bytes());
    }
    out.extend_from_slice(&(c.first.len() as u64).to_le_bytes());
    for (line, slot, text) in &c.first {
        out.extend_from_slice(&line.to_le_bytes());
        out.extend_from_slice(&u32::from(*slot).to_le_bytes());
        out.extend_from_slice(&(text.len() as u32).to_le_bytes());
        out.extend_from_slice(text.as_bytes());
    }
    out
}

fn decode_carried(bytes: &[u8]) -> Option<Carried> {
    let mut f = Fields(bytes);
    let mut tally = Tally {
        applied: f.u64()?,
        ..Tally::default()
    };
    for n in tally.rejected_by.iter_mut().chain(&mut tally.malformed_by) {
        *n = f.u64()?;
    }
    let count = f.u64()?;
    // At most CAP + 1 lines for each of the 8 reasons.
    if count > u64::from(report::CAP + 1) * 8 {
        return None;
    }
    let mut first = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let (line, slot, len) = (f.u64()?, f.u32()?, f.u32()? as usize);
        if slot >= 8 || len > f.0.len() {
            return None;
        }
        let (text, rest) = f.0.split_at(len);
        f.0 = rest;
        first.push((line, slot as u8, String::from_utf8(text.to_vec()).ok()?));
    }
    f.0.is_empty().then_some(Carried { tally, first })
}

/// Where a run's warnings go.
type WarningSink = Box<dyn FnMut(&str)>;

/// What a run watches between records: a stop flag (set by a signal
/// handler to the signal's number), and, with a state file, when to take a
/// checkpoint and where to go on from.
pub struct Control {
    stop: Arc<AtomicUsize>,
    plan: Option<CheckpointSpec>,
    resume: Option<Resume>,
    warn: Option<WarningSink>,
    /// Hash the input without checkpoints ([`Control::hash_input`]).
    hash: bool,
    /// The input as a file its parsers may read by position
    /// ([`Control::read_by_position`]).
    file: Option<Arc<File>>,
}

struct CheckpointSpec {
    state: PathBuf,
    every: Option<Duration>,
    inputs: Vec<InputId>,
}

impl Control {
    /// A run that stops at the next record boundary once `stop` is not 0
    /// (the signal number, for the message).
    pub fn new(stop: Arc<AtomicUsize>) -> Control {
        Control {
            stop,
            plan: None,
            resume: None,
            warn: None,
            hash: false,
            file: None,
        }
    }

    /// Hashes the input as it is read (as a run with checkpoints does), so
    /// that [`Finished::input_end`] holds its hash, without taking
    /// checkpoints: for a state file that records each of several inputs.
    pub fn hash_input(mut self) -> Control {
        self.hash = true;
        self
    }

    /// Hands warnings to `sink` as the run finds them: a header without an
    /// `amount` column or with a misspelt name, an input whose first 1,000
    /// rows are all malformed.
    pub fn warnings(mut self, sink: impl FnMut(&str) + 'static) -> Control {
        self.warn = Some(Box::new(sink) as WarningSink);
        self
    }

    /// Takes a checkpoint beside `state` every `every` (`None`: only when
    /// stopped); `inputs` are the inputs applied to the state before this
    /// run, which each checkpoint records.
    pub fn checkpoints(
        mut self,
        state: &Path,
        every: Option<Duration>,
        inputs: Vec<InputId>,
    ) -> Control {
        self.plan = Some(CheckpointSpec {
            state: state.to_path_buf(),
            every,
            inputs,
        });
        self
    }

    /// Goes on from a checkpoint (the ledger given to the run must be the
    /// checkpoint's).
    pub fn resuming(mut self, resume: Resume) -> Control {
        self.resume = Some(resume);
        self
    }

    /// The source is `file` from its first byte, unchanged while the run
    /// reads it: parser threads may then read their blocks themselves, at
    /// their offsets (`BlockOptions::file`; not when hashing or resuming).
    pub fn read_by_position(mut self, file: Arc<File>) -> Control {
        self.file = Some(file);
        self
    }

    /// Runs a whole CSV input through `engine` under this control: stop
    /// when the flag is raised ([`Error::Interrupted`]), take checkpoints,
    /// or go on from one (then `ledger` must be the checkpoint's, and
    /// `source` the same input from its start: its prefix is checked, then
    /// skipped). Otherwise as [`EngineBuilder::run_csv`].
    pub fn run_csv(
        self,
        engine: &EngineBuilder,
        ledger: Ledger,
        source: impl Read + Send,
    ) -> Result<Finished, Error> {
        let resume = self.resume.as_ref().map(|r| r.progress.parser);
        let hashing = self.plan.is_some() || self.hash;
        let (verbosity, keep_rejects) = engine.reporting();
        engine.run_source(ledger, source, resume, hashing, self.file.clone(), || {
            self.start(verbosity, keep_rejects)
        })
    }

    /// The supervisor of one run: opens the journals (cut back to the
    /// checkpoint's lengths when resuming).
    fn start(self, verbosity: Verbosity, keep_rejects: bool) -> Result<Supervisor, Error> {
        let (progress, carried) = match self.resume {
            Some(Resume { progress, carried }) => (Some(progress), carried),
            None => (None, Carried::default()),
        };
        if let Some(progress) = &progress {
            if let Some(missing) = settings_differ(progress, verbosity, keep_rejects) {
                return Err(Error::Config(format!(
                    "--resume needs the interrupted run's settings: {missing} (the \
                     checkpoint's rows were kept for them)"
                )));
            }
        }
        let plan = match self.plan {
            None => None,
            Some(spec) => {
                let base = state::file_identity(&spec.state).map_err(Error::Checkpoint)?;
                if progress.is_some_and(|p| p.base != base) {
                    return Err(Error::Config(format!(
                        "the checkpoint {} was not taken on state file {} as it is now (the \
                         state file changed since, or the checkpoint is another ledger's): \
                         delete the checkpoint to run without it",
                        checkpoint_path(&spec.state).display(),
                        spec.state.display()
                    )));
                }
                let journals = open_journals(&spec.state, verbosity, keep_rejects, progress)
                    .map_err(Error::Checkpoint)?;
                Some(Checkpointing {
                    next: spec.every.map(|every| Instant::now() + every),
                    spec,
                    journals,
                    base,
                })
            }
        };
        Ok(Supervisor {
            stop: self.stop,
            plan,
            carried,
            rows: 0,
            verbosity,
            keep_rejects,
            warn: self.warn,
        })
    }
}

/// What differs between the interrupted run's reporting settings and
/// this run's, in words: the setting to add or drop.
fn settings_differ(
    progress: &Progress,
    verbosity: Verbosity,
    keep_rejects: bool,
) -> Option<String> {
    let flag = |v: Verbosity| match v {
        Verbosity::Quiet => Some("--quiet"),
        Verbosity::Verbose => Some("--verbose"),
        Verbosity::Default => None,
    };
    let mut differences = Vec::new();
    if progress.keep_rejects != keep_rejects {
        differences.push(match progress.keep_rejects {
            true => "it had --rejects FILE, this run has none".to_string(),
            false => "it had no --rejects, this run has one".to_string(),
        });
    }
    if progress.verbosity != verbosity {
        differences.push(match (flag(progress.verbosity), flag(verbosity)) {
            (Some(then), Some(now)) => format!("it had {then}, this run has {now}"),
            (Some(then), None) => format!("it had {then}, this run has not"),
            (None, Some(now)) => {
                format!("it had neither --quiet nor --verbose, this run has {now}")
            }
            (None, None) => unreachable!("two verbosities that differ"),
        });
    }
    (!differences.is_empty()).then(|| differences.join("; "))
}

struct Checkpointing {
    spec: CheckpointSpec,
    journals: Journals,
    /// When the next periodic checkpoint is due.
    next: Option<Instant>,
    /// The state file the run started from, which every checkpoint records.
    base: Identity,
}

/// Opens the journals a run keeps (cut back to the checkpoint's lengths
/// when resuming).
fn open_journals(
    state: &Path,
    verbosity: Verbosity,
    keep_rejects: bool,
    progress: Option<Progress>,
) -> io::Result<Journals> {
    let open = |which: &str, wanted: bool, len: u64| -> io::Result<Option<File>> {
        if !wanted {
            return Ok(None);
        }
        let path = journal_path(state, which);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        if file.metadata()?.len() < len {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the {which} journal is shorter than the checkpoint says"),
            ));
        }
        file.set_len(len)?;
        Ok(Some(file))
    };
    let (verbose_len, rejects_len) = progress.map_or((0, 0), |p| (p.verbose_len, p.rejects_len));
    Ok(Journals {
        verbose: open("verbose", verbosity == Verbosity::Verbose, verbose_len)?,
        rejects: open("rejects", keep_rejects, rejects_len)?,
    })
}

/// Rows between two looks at the clock.
const CLOCK_EVERY: u32 = 1024;

/// [`Control`] during a run.
pub(crate) struct Supervisor {
    stop: Arc<AtomicUsize>,
    plan: Option<Checkpointing>,
    /// The rows before the checkpoint this run resumed from.
    carried: Carried,
    rows: u32,
    verbosity: Verbosity,
    keep_rejects: bool,
    warn: Option<WarningSink>,
}

impl Supervisor {
    /// Appends the logs' rows to the journals and writes the checkpoint.
    fn write(
        plan: &mut Checkpointing,
        carried: &Carried,
        at: &parse::ParserState,
        paused: &mut Paused<'_>,
        verbosity: Verbosity,
        keep_rejects: bool,
    ) -> io::Result<()> {
        report::drain(&mut paused.logs, &mut plan.journals)?;
        let carried = Carried::of(carried, paused.logs.iter().map(|log| &**log));
        let len = |file: &Option<File>| {
            file.as_ref()
                .map_or(Ok(0), |f| f.metadata().map(|m| m.len()))
        };
        let progress = Progress {
            parser: *at,
            verbose_len: len(&plan.journals.verbose)?,
            rejects_len: len(&plan.journals.rejects)?,
            verbosity,
            keep_rejects,
            base: plan.base,
        };
        let extras = [encode_progress(&progress), encode_carried(&carried)];
        let mut file = AtomicFile::create_private(&checkpoint_path(&plan.spec.state))?;
        state::write_kind(
            &mut file,
            KIND_CHECKPOINT,
            paused.ids,
            &paused.books,
            &plan.spec.inputs,
            &[&extras[0], &extras[1]],
        )?;
        file.commit()
    }
}

impl Supervise for Supervisor {
    const WARNS: bool = true;

    fn warn(&mut self, text: String) {
        if let Some(sink) = &mut self.warn {
            sink(&text);
        }
    }

    #[inline]
    fn due(&mut self, rows: u32) -> bool {
        if self.stop.load(Ordering::Relaxed) != 0 {
            return true;
        }
        self.rows = self.rows.saturating_add(rows);
        if self.rows < CLOCK_EVERY {
            return false;
        }
        self.rows = 0;
        self.plan
            .as_ref()
            .and_then(|plan| plan.next)
            .is_some_and(|next| Instant::now() >= next)
    }

    fn act<E: Executor>(&mut self, at: &parse::ParserState, path: &mut E) -> Result<(), Error> {
        let signal = self.stop.load(Ordering::Relaxed);
        let (carried, verbosity, keep_rejects) = (&self.carried, self.verbosity, self.keep_rejects);
        if let Some(plan) = &mut self.plan {
            path.pause(&mut |mut paused| {
                Supervisor::write(plan, carried, at, &mut paused, verbosity, keep_rejects)
                    .map_err(Error::Checkpoint)
            })?;
            plan.next = plan.spec.every.map(|every| Instant::now() + every);
        }
        if signal != 0 {
            return Err(Error::Interrupted {
                signal: signal as i32,
                line: at.at.line,
                offset: at.at.offset,
                checkpointed: self.plan.is_some(),
            });
        }
        Ok(())
    }

    fn finish(self, finished: &mut Finished) {
        if let Some(plan) = self.plan {
            let log = EventLog::carried(self.verbosity, self.carried, plan.journals);
            finished.add_source(log);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_and_diagnostics_round_trip_and_reject_nonsense() {
        let progress = Progress {
            parser: parse::ParserState {
                at: Position {
                    offset: 1 << 40,
                    line: 77,
                    prefix_hash: u128::MAX - 5,
                },
                columns: Columns {
                    kind: 1,
                    client: 0,
                    tx: 3,
                    amount: None,
                    width: 5,
                },
                seen_first: true,
            },
            verbose_len: 9,
            rejects_len: 1 << 33,
            verbosity: Verbosity::Verbose,
            keep_rejects: true,
            base: (1 << 50, u128::MAX - 9),
        };
        let bytes = encode_progress(&progress);
        assert_eq!(decode_progress(&bytes), Some(progress));
        assert_eq!(decode_progress(&bytes[1..]), None);
        let mut bad = bytes.clone();
        bad[32] = 9; // the type column past the width
        assert_eq!(decode_progress(&bad), None);

        let carried = Carried {
            tally: Tally {
                applied: 3,
                rejected_by: [1, 2, 3, 4, 5, 6, 7],
                malformed_by: [8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9],
            },
            first: vec![(4, 0, "malformed record: x".into()), (9, 3, "é".into())],
        };
        let bytes = encode_carried(&carried);
        assert_eq!(decode_carried(&bytes), Some(carried));
        assert_eq!(decode_carried(&bytes[..bytes.len() - 1]), None);
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(decode_carried(&longer), None);
    }
}
