//! The CSV loop, written once and compiled once per path: parse a row,
//! apply it or log it, ask the supervisor between rows.

use std::sync::atomic::{AtomicU64, Ordering};

use super::error::Error;
use super::finished::Finished;
use crate::batch::Parts;
use crate::ledger::Book;
use crate::parse::{FastRows, Malformed, ParserState, RowSource};
use crate::report::EventLog;
use crate::store::TxIdSet;
use crate::tx::Tx;

/// What each execution path does with a stream of records.
pub(crate) trait Executor {
    /// Applies one well-formed record found at `line`; `raw` is its original
    /// line (kept only for a rejects file).
    fn apply(&mut self, line: u64, tx: &Tx, raw: &[u8]) -> Result<(), Error>;
    /// Applies consecutive well-formed records, in order: as many calls to
    /// [`Executor::apply`], unless the path does better with them together.
    fn apply_rows(&mut self, rows: &FastRows<'_>) -> Result<(), Error> {
        for (i, tx) in rows.txs().iter().enumerate() {
            self.apply(rows.line(i), tx, rows.raw(i))?;
        }
        Ok(())
    }
    /// Applies a block a parser thread split for this path's workers: its
    /// records in file order through [`Executor::apply`], unless the path
    /// hands the block on as it is.
    fn apply_block(&mut self, parts: Parts) -> Result<(), Error> {
        for (line, tx, raw) in parts.in_order() {
            self.apply(line, tx, raw)?;
        }
        Ok(())
    }
    /// Logs one malformed record.
    fn malformed(&mut self, line: u64, reason: Malformed, raw: &[u8]) -> Result<(), Error>;
    /// Brings every record submitted so far to its book (the pipeline's
    /// barrier), then lends `f` the whole state and every log, and goes on
    /// when it returns.
    fn pause(&mut self, f: &mut dyn FnMut(Paused<'_>) -> Result<(), Error>) -> Result<(), Error>;
    /// Drains everything in flight and hands back the result.
    fn finish(self) -> Result<Finished, Error>;
}

/// Everything a paused run holds: the claimed ids, every book, every log.
pub(crate) struct Paused<'a> {
    pub ids: &'a TxIdSet,
    pub books: Vec<&'a Book>,
    pub logs: Vec<&'a mut EventLog>,
}

/// The line the CSV loop last read (any run in this process), for a message
/// that must be written without allocating: the binary's out-of-memory
/// line. One relaxed store per row.
pub static LINE_REACHED: AtomicU64 = AtomicU64::new(0);

/// Rows watched at the start of a run: if all are malformed, say so then.
const EARLY_ROWS: u32 = 1_000;

/// What the CSV loop asks between records (checkpoints, a stop), and tells
/// as it goes (warnings).
pub(crate) trait Supervise {
    /// Whether the loop reports warnings (the header's, an input whose first
    /// rows are all malformed). False compiles the watching away.
    const WARNS: bool;
    /// A warning for the user, while the run goes on.
    fn warn(&mut self, text: String);
    /// Whether to call [`Supervise::act`] before the next record: cheap,
    /// asked before every one, or every batch or block of rows, with the
    /// rows handed out since it was last asked.
    fn due(&mut self, rows: u32) -> bool;
    /// At a record boundary (`at`): take a checkpoint, or stop with
    /// [`Error::Interrupted`].
    fn act<E: Executor>(&mut self, at: &ParserState, path: &mut E) -> Result<(), Error>;
    /// Adds what the supervisor carried (rows before a checkpoint).
    fn finish(self, finished: &mut Finished);
}

/// A run nobody watches: compiled away.
pub(crate) struct Unsupervised;

impl Supervise for Unsupervised {
    const WARNS: bool = false;

    fn warn(&mut self, _: String) {}

    #[inline(always)]
    fn due(&mut self, _: u32) -> bool {
        false
    }

    fn act<E: Executor>(&mut self, _: &ParserState, _: &mut E) -> Result<(), Error> {
        Ok(())
    }

    fn finish(self, _: &mut Finished) {}
}

/// The CSV loop, once for both paths: parse, apply or log, finish.
pub(crate) fn drive<E: Executor, S: Supervise>(
    mut parser: impl RowSource,
    strict: bool,
    mut path: E,
    mut supervisor: S,
) -> Result<Finished, Error> {
    let mut early = EarlyRows::default();
    // Rows handed out since the supervisor was last asked.
    let mut handed = 0;
    loop {
        if supervisor.due(handed) {
            supervisor.act(&parser.state(), &mut path)?;
        }
        handed = 1;
        if S::WARNS && early.watching() {
            for text in parser.take_warnings() {
                supervisor.warn(text);
            }
        } else {
            // A whole block, split for the workers already (once the first
            // rows have been watched one by one), or none.
            match parser.next_block(strict) {
                Ok(None) => {}
                Ok(Some(block)) => {
                    LINE_REACHED.store(block.last_line, Ordering::Relaxed);
                    handed = (block.parts.rows() + block.malformed.len()) as u32;
                    for row in &block.malformed {
                        if let Err(reason) = row.parsed {
                            path.malformed(row.line, reason, row.raw)?;
                        }
                    }
                    path.apply_block(block.parts)?;
                    continue;
                }
                Err(error) => return Err(input_error(error, &parser, &mut path, &mut supervisor)),
            }
        }
        // The fast path first: a batch of common lines, or none.
        match parser.fast_rows() {
            Ok(rows) if rows.txs().is_empty() => {}
            Ok(rows) => {
                let last = rows.line(rows.txs().len() - 1);
                LINE_REACHED.store(last, Ordering::Relaxed);
                handed = rows.txs().len() as u32;
                if S::WARNS && early.watching() {
                    for line in rows.line(0)..=last {
                        early.see(line, None);
                    }
                }
                path.apply_rows(&rows)?;
                continue;
            }
            Err(error) => return Err(input_error(error, &parser, &mut path, &mut supervisor)),
        }
        // Matched in place, not through `map_err` and `?`: converting the
        // result moved every row into a new enum layout, byte by byte.
        let row = match parser.next_row() {
            Ok(Some(row)) => row,
            Ok(None) => break,
            Err(error) => return Err(input_error(error, &parser, &mut path, &mut supervisor)),
        };
        LINE_REACHED.store(row.line, Ordering::Relaxed);
        if S::WARNS && early.watching() {
            if let Some(text) = early.see(row.line, row.parsed.as_ref().err()) {
                supervisor.warn(text);
            }
        }
        // The record is borrowed where the parser left it: copying it out
        // of the row first cost the single-threaded path 13% (perf.md).
        match &row.parsed {
            Ok(tx) => path.apply(row.line, tx, row.raw)?,
            &Err(reason) if strict => {
                return Err(Error::Strict {
                    line: row.line,
                    reason,
                })
            }
            &Err(reason) => path.malformed(row.line, reason, row.raw)?,
        }
    }
    if S::WARNS {
        for text in parser.take_warnings() {
            supervisor.warn(text);
        }
    }
    let end = parser.state().at;
    let mut finished = path.finish()?;
    supervisor.finish(&mut finished);
    finished.input = Some(end);
    Ok(finished)
}

/// The error that ends a run whose input failed: a stop, if one came while
/// the input was waiting (a reader that gives up on it), at the last row
/// read; else the input's error.
#[cold]
fn input_error<E: Executor, S: Supervise>(
    error: crate::parse::InputError,
    parser: &impl RowSource,
    path: &mut E,
    supervisor: &mut S,
) -> Error {
    if supervisor.due(0) {
        if let Err(stop) = supervisor.act(&parser.state(), path) {
            return stop;
        }
    }
    Error::Input(error)
}

/// Watches the first [`EARLY_ROWS`] rows of an input, to say once if all of
/// them are malformed (a wrong file or format, most likely). The CSV loop
/// shows it every row; the cluster shows it the rows before the first
/// well-formed one, in line order.
#[derive(Default)]
pub(crate) struct EarlyRows {
    watched: u32,
    malformed: u32,
}

impl EarlyRows {
    /// Whether the first rows are still being watched.
    #[inline]
    pub fn watching(&self) -> bool {
        self.watched < EARLY_ROWS
    }

    /// Sees the row at `line` (`malformed`: why, if it is); the warning when
    /// it is the last of the first rows and they were all malformed.
    pub fn see(&mut self, line: u64, malformed: Option<&Malformed>) -> Option<String> {
        if !self.watching() {
            return None;
        }
        self.watched += 1;
        self.malformed += u32::from(malformed.is_some());
        let all = self.watched == EARLY_ROWS && self.malformed == EARLY_ROWS;
        all.then(|| early_malformed_warning(line, malformed.map_or("", |m| m.describe())))
    }
}

/// The warning for an input whose first [`EARLY_ROWS`] rows are all
/// malformed, the last of them at `line`.
fn early_malformed_warning(line: u64, reason: &str) -> String {
    format!(
        "the first {EARLY_ROWS} rows are all malformed (the last: line {line}, {reason}); \
         is this the right file and format?"
    )
}

/// A block size as `--verbose` prints it: bytes below 1 KiB, else KiB.
pub(crate) fn block_size_text(bytes: u64) -> String {
    match bytes {
        0..1024 => format!("{bytes} bytes"),
        _ => format!("{} KiB", bytes.div_ceil(1024)),
    }
}
