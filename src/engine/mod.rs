//! The engine core: its configuration, its state, both execution paths, and
//! the result of a run. The binary is one user of it; an embedder is another.
//!
//! # Shape
//!
//! An [`EngineBuilder`] holds the configuration (workers, pinning, strict
//! mode, what to keep for reports, batch size). It builds an [`Engine`] from a
//! starting [`Ledger`] (empty, or one a previous run handed back), or runs a
//! whole CSV input in one call ([`EngineBuilder::run_csv`]). Either way the
//! run ends in a [`Finished`]: the accounts, the tally of outcomes, the
//! engine's own measures, the per-row diagnostics, and the ledger's state as a
//! value for the next run.
//!
//! # Two paths, one contract
//!
//! As in ripgrep's `search` / `search_parallel`, the two execution paths are
//! siblings behind one entry point, chosen by the worker count:
//!
//! * `workers == 0`: the sequential path (`sequential.rs`), every record applied on the calling
//!   thread by one [`Ledger`]. The baseline every speed-up is measured
//!   against, kept forever.
//! * `workers >= 1`: the sharded pipeline (`src/pipeline/`), the only
//!   module that knows threads exist: the calling thread claims tx ids in file
//!   order and routes each record by client to the worker that owns it.
//!
//! Both implement one internal trait (apply a record, log a malformed one,
//! finish), so the CSV loop ([`EngineBuilder::run_csv`]) is written once and
//! compiled once per path, and the push API ([`Engine::submit`]) is a thin
//! dispatch over the two. Their outputs are byte-identical for every worker
//! count: the tests prove it on fixtures and generated streams.
//!
//! Data flows one way: `app` (files, progress, printing) calls `engine`,
//! which calls `sequential` or `pipeline`, which call `ledger` and `report`.
//! Nothing downstream calls back upstream.

mod error;
pub(crate) mod sequential;

use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};

use hdrhistogram::Histogram;

pub use error::Error;

use crate::amount::AmountError;
use crate::checkpoint::Control;
use crate::ledger::{sorted_accounts, Account, Book, Ledger};
use crate::parse::{self, Checkpoint, Malformed, Parser, Position, RowSource};
use crate::pipeline::{self, BlockOptions, BlockRows, Router};
use crate::report::{self, EventLog, Tally, Verbosity};
use crate::store::TxIdSet;
use crate::tx::{ClientId, Tx};
use sequential::Sequential;

/// The engine's configuration, shared by both paths.
#[derive(Clone, Debug)]
pub(crate) struct Config {
    /// Worker threads; 0 is the single-threaded path.
    pub workers: usize,
    /// Pin worker threads to cores (when there are enough cores).
    pub pin: bool,
    /// The first malformed record is fatal.
    pub strict: bool,
    /// Which per-row lines to keep for stderr.
    pub diagnostics: Verbosity,
    /// Keep every malformed or rejected row for a rejects file.
    pub keep_rejects: bool,
    /// Records per batch handed to a worker.
    pub batch: usize,
    /// Parser threads for CSV input; 0 parses on the calling thread.
    pub parsers: usize,
    /// Target block size for the parser threads, in bytes.
    pub block: usize,
    /// Test-only fault injection: the worker that gets this line panics.
    #[cfg(test)]
    pub panic_at_line: Option<u64>,
}

/// Builds an [`Engine`] or runs a CSV input: the engine's configuration.
///
/// The defaults suit an embedder: the single-threaded path, no pinning, no
/// strict mode, nothing kept for reports but the tally.
///
/// ```
/// use payments_engine::engine::EngineBuilder;
/// use payments_engine::Ledger;
///
/// let csv = "type,client,tx,amount\ndeposit,1,1,2.5\nwithdrawal,1,2,9\n";
/// let finished = EngineBuilder::new()
///     .workers(2)
///     .run_csv(Ledger::new(), csv.as_bytes())
///     .unwrap();
/// assert_eq!(finished.tally().applied, 1);
/// assert_eq!(finished.tally().rejected(), 1);
/// let mut out = Vec::new();
/// finished.write_accounts(&mut out).unwrap();
/// assert_eq!(
///     String::from_utf8(out).unwrap(),
///     "client,available,held,total,locked\n1,2.5000,0.0000,2.5000,false\n"
/// );
/// ```
#[derive(Clone, Debug)]
pub struct EngineBuilder {
    config: Config,
}

impl Default for EngineBuilder {
    fn default() -> Self {
        EngineBuilder::new()
    }
}

impl EngineBuilder {
    /// The default configuration (see the type's docs).
    pub fn new() -> EngineBuilder {
        EngineBuilder {
            config: Config {
                workers: 0,
                pin: false,
                strict: false,
                diagnostics: Verbosity::Quiet,
                keep_rejects: false,
                batch: pipeline::BATCH,
                parsers: 0,
                block: pipeline::DEFAULT_BLOCK,
                #[cfg(test)]
                panic_at_line: None,
            },
        }
    }

    /// Worker threads, each owning the clients that
    /// [`shard`](crate::ledger::shard) gives it (at most
    /// [`MAX_WORKERS`](crate::limits::MAX_WORKERS)). `0` applies every record on
    /// the calling thread. The results are identical for every value.
    pub fn workers(mut self, workers: usize) -> Self {
        self.config.workers = workers;
        self
    }

    /// Pins each worker to a core of its own, when there are more cores than
    /// workers (core 0 is left to the calling thread).
    pub fn pin(mut self, pin: bool) -> Self {
        self.config.pin = pin;
        self
    }

    /// Makes the first malformed record of a CSV input a fatal
    /// [`Error::Strict`]. Rejections by the rules are never fatal.
    pub fn strict(mut self, strict: bool) -> Self {
        self.config.strict = strict;
        self
    }

    /// Which per-row lines [`Diagnostics::write_to`] prints: none, the first
    /// 10 of each reason, or all of them.
    pub fn diagnostics(mut self, verbosity: Verbosity) -> Self {
        self.config.diagnostics = verbosity;
        self
    }

    /// Keeps every malformed or rejected row, with its original line, for
    /// the rejects file that [`Diagnostics::write_to`] writes.
    pub fn keep_rejects(mut self, keep: bool) -> Self {
        self.config.keep_rejects = keep;
        self
    }

    /// Records per batch handed to a worker (default
    /// [`BATCH`](crate::limits::BATCH), at most
    /// [`MAX_BATCH`](crate::limits::MAX_BATCH)). Smaller batches cut latency and
    /// cost throughput; the results never change.
    pub fn batch_size(mut self, records: usize) -> Self {
        self.config.batch = records;
        self
    }

    /// Parser threads for [`run_csv`](EngineBuilder::run_csv) (at most
    /// [`MAX_PARSERS`](crate::limits::MAX_PARSERS)). `0` parses on the
    /// calling thread. With `n`, one more thread reads the input and cuts it
    /// into blocks of whole lines, `n` threads parse blocks at once, and the
    /// calling thread takes their rows in file order. The results are
    /// identical for every value.
    pub fn parsers(mut self, parsers: usize) -> Self {
        self.config.parsers = parsers;
        self
    }

    /// The target size of a parser thread's block, in bytes (default
    /// [`DEFAULT_BLOCK`](crate::limits::DEFAULT_BLOCK), at most
    /// [`MAX_BLOCK`](crate::limits::MAX_BLOCK)); a block ends at the first
    /// line end from there. `1` gives each line a block of its own, which
    /// tests use to cut inputs everywhere. The results never change.
    pub fn block_size(mut self, bytes: usize) -> Self {
        self.config.block = bytes;
        self
    }

    /// The configured parser-thread count.
    pub fn parser_count(&self) -> usize {
        self.config.parsers
    }

    /// The configured worker count.
    pub fn worker_count(&self) -> usize {
        self.config.workers
    }

    /// Whether the first malformed record is fatal.
    pub fn is_strict(&self) -> bool {
        self.config.strict
    }

    /// The target block size of the parser threads, in bytes.
    pub fn block(&self) -> usize {
        self.config.block
    }

    /// The configuration itself, for the paths.
    #[cfg(test)]
    pub(crate) fn config(&self) -> &Config {
        &self.config
    }

    /// Test-only: the worker that receives `line` panics.
    #[cfg(test)]
    pub(crate) fn panic_at_line(mut self, line: u64) -> Self {
        self.config.panic_at_line = Some(line);
        self
    }

    fn validate(&self) -> Result<(), Error> {
        let c = &self.config;
        if c.workers > pipeline::MAX_WORKERS {
            return Err(Error::Config(format!(
                "{} workers requested; at most {} are allowed",
                c.workers,
                pipeline::MAX_WORKERS
            )));
        }
        if c.parsers > pipeline::MAX_PARSERS {
            return Err(Error::Config(format!(
                "{} parser threads requested; at most {} are allowed",
                c.parsers,
                pipeline::MAX_PARSERS
            )));
        }
        if !(1..=pipeline::MAX_BLOCK).contains(&c.block) {
            return Err(Error::Config(format!(
                "block size {} is outside 1..={}",
                c.block,
                pipeline::MAX_BLOCK
            )));
        }
        if !(1..=pipeline::MAX_BATCH).contains(&c.batch) {
            return Err(Error::Config(format!(
                "batch size {} is outside 1..={}",
                c.batch,
                pipeline::MAX_BATCH
            )));
        }
        Ok(())
    }

    /// Starts an engine whose state is `ledger` (use [`Ledger::new`] for a
    /// first run). With workers, their threads start now.
    pub fn build(&self, ledger: Ledger) -> Result<Engine, Error> {
        self.validate()?;
        let path = match self.config.workers {
            0 => Path::Sequential(Sequential::new(&self.config, ledger)?),
            _ => Path::Sharded(Router::start(&self.config, ledger)?),
        };
        Ok(Engine {
            path,
            strict: self.config.strict,
            submitted: 0,
        })
    }

    /// Runs a whole CSV input (SPEC's format; a BOM, a header, blank lines,
    /// CRLF and quotes all handled) through an engine whose state starts as
    /// `ledger`. Malformed rows are logged and counted, and the run goes on
    /// (unless strict). Fails on an unreadable input, a bad header, a strict
    /// violation or a failed worker.
    pub fn run_csv(&self, ledger: Ledger, source: impl Read + Send) -> Result<Finished, Error> {
        self.validate()?;
        self.run_source(ledger, source, None, false, || Ok(Unsupervised))
    }

    /// [`run_csv`](EngineBuilder::run_csv) under `control`: stop when its
    /// flag is raised ([`Error::Interrupted`]), take checkpoints, or go on
    /// from one (then `ledger` must be the checkpoint's, and `source` the
    /// same input from its start: its prefix is checked, then skipped).
    pub fn run_csv_controlled(
        &self,
        ledger: Ledger,
        source: impl Read + Send,
        control: Control,
    ) -> Result<Finished, Error> {
        self.validate()?;
        let c = &self.config;
        let resume = control.resume_point().copied();
        let hashing = control.checkpointing();
        self.run_source(ledger, source, resume, hashing, || {
            control.start(c.diagnostics, c.keep_rejects)
        })
    }

    /// Parses `source` on the calling thread or on parser threads, checks
    /// a resumed input's prefix, then starts the supervisor and the path.
    fn run_source<S: Supervise>(
        &self,
        ledger: Ledger,
        source: impl Read + Send,
        resume: Option<Checkpoint>,
        hashing: bool,
        supervisor: impl FnOnce() -> Result<S, Error>,
    ) -> Result<Finished, Error> {
        let c = &self.config;
        if c.parsers == 0 {
            let parser = match &resume {
                Some(at) => Parser::resume(source, at).map_err(Error::Input)?,
                None if hashing => Parser::hashing(source),
                None => Parser::new(source),
            };
            let mut finished = self.drive_rows(parser, ledger, supervisor()?)?;
            let note = "parsers: 0 (parsing on the calling thread)".to_string();
            finished.measures.notes.insert(0, note);
            return Ok(finished);
        }
        let options = BlockOptions {
            parsers: c.parsers,
            block: c.block,
            hashing,
        };
        let mut finished = std::thread::scope(|scope| {
            let (rows, _threads) =
                BlockRows::start(scope, source, options, resume.as_ref()).map_err(Error::Input)?;
            self.drive_rows(rows, ledger, supervisor()?)
        })?;
        let note = format!(
            "parsers: {}, blocks of {}, and a reader thread",
            c.parsers,
            block_size_text(c.block as u64)
        );
        finished.measures.notes.insert(0, note);
        Ok(finished)
    }

    fn drive_rows<S: Supervise>(
        &self,
        rows: impl RowSource,
        ledger: Ledger,
        supervisor: S,
    ) -> Result<Finished, Error> {
        let c = &self.config;
        match c.workers {
            0 => drive(rows, c.strict, Sequential::new(c, ledger)?, supervisor),
            _ => drive(rows, c.strict, Router::start(c, ledger)?, supervisor),
        }
    }
}

/// What each execution path does with a stream of records.
pub(crate) trait Executor {
    /// Applies one well-formed record found at `line`; `raw` is its original
    /// line (kept only for a rejects file).
    fn apply(&mut self, line: u64, tx: &Tx, raw: &[u8]) -> Result<(), Error>;
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
pub(crate) const EARLY_ROWS: u32 = 1_000;

/// What the CSV loop asks between records (checkpoints, a stop), and tells
/// as it goes (warnings).
pub(crate) trait Supervise {
    /// Whether the loop reports warnings (the header's, an input whose first
    /// rows are all malformed). False compiles the watching away.
    const WARNS: bool;
    /// A warning for the user, while the run goes on.
    fn warn(&mut self, text: String);
    /// Whether to call [`Supervise::act`] before the next record: cheap,
    /// asked before every one.
    fn due(&mut self) -> bool;
    /// At a record boundary (`at`): take a checkpoint, or stop with
    /// [`Error::Interrupted`].
    fn act<E: Executor>(&mut self, at: &parse::Checkpoint, path: &mut E) -> Result<(), Error>;
    /// Adds what the supervisor carried (rows before a checkpoint).
    fn finish(self, finished: &mut Finished);
}

/// A run nobody watches: compiled away.
struct Unsupervised;

impl Supervise for Unsupervised {
    const WARNS: bool = false;

    fn warn(&mut self, _: String) {}

    #[inline(always)]
    fn due(&mut self) -> bool {
        false
    }

    fn act<E: Executor>(&mut self, _: &parse::Checkpoint, _: &mut E) -> Result<(), Error> {
        Ok(())
    }

    fn finish(self, _: &mut Finished) {}
}

/// The CSV loop, once for both paths: parse, apply or log, finish.
fn drive<E: Executor, S: Supervise>(
    mut parser: impl RowSource,
    strict: bool,
    mut path: E,
    mut supervisor: S,
) -> Result<Finished, Error> {
    // Rows watched so far at the start, and how many of them were malformed.
    let (mut watched, mut early_malformed) = (0u32, 0u32);
    loop {
        if supervisor.due() {
            supervisor.act(&parser.checkpoint(), &mut path)?;
        }
        if S::WARNS && watched < EARLY_ROWS {
            for text in parser.take_warnings() {
                supervisor.warn(text);
            }
        }
        // Matched in place, not through `map_err` and `?`: converting the
        // result moved every row into a new enum layout, byte by byte.
        let row = match parser.next_row() {
            Ok(Some(row)) => row,
            Ok(None) => break,
            Err(error) => return Err(Error::Input(error)),
        };
        LINE_REACHED.store(row.line, Ordering::Relaxed);
        if S::WARNS && watched < EARLY_ROWS {
            watched += 1;
            early_malformed += u32::from(row.parsed.is_err());
            if watched == EARLY_ROWS && early_malformed == EARLY_ROWS {
                let reason = row.parsed.err().map_or("", Malformed::describe);
                supervisor.warn(early_malformed_warning(row.line, reason));
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
    let end = parser.checkpoint().at;
    let mut finished = path.finish()?;
    supervisor.finish(&mut finished);
    finished.input = Some(end);
    Ok(finished)
}

/// The warning for an input whose first [`EARLY_ROWS`] rows are all
/// malformed, the last of them at `line`.
pub(crate) fn early_malformed_warning(line: u64, reason: &str) -> String {
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

/// A transaction to submit, with the line number its diagnostics carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record {
    pub tx: Tx,
    /// Where the record came from (for diagnostics and the rejects file).
    /// `None` numbers it by its place among the records submitted, from 1.
    pub line: Option<u64>,
}

impl Record {
    /// A record found at `line` of some input.
    pub fn at_line(tx: Tx, line: u64) -> Record {
        Record {
            tx,
            line: Some(line),
        }
    }
}

impl From<Tx> for Record {
    fn from(tx: Tx) -> Record {
        Record { tx, line: None }
    }
}

enum Path {
    Sequential(Sequential),
    Sharded(Router),
}

/// A running engine: submit transactions from any source, then
/// [`finish`](Engine::finish).
///
/// Transactions are applied in the order submitted, with SPEC's rules:
/// `submit` returns once a record is queued, not when it is applied, so a
/// rejection is an outcome counted in the [`Finished`] tally, not an error.
/// Dropping an engine without finishing stops its workers.
///
/// ```
/// use payments_engine::engine::Engine;
/// use payments_engine::{Amount, Kind, Tx};
///
/// let mut engine = Engine::new(2)?; // two worker threads (shards)
/// let tx = |kind, client, tx, amount: &str| Tx {
///     kind,
///     client,
///     tx,
///     amount: Amount::parse(amount.as_bytes()).unwrap_or(Amount::ZERO),
/// };
/// engine.submit(tx(Kind::Deposit, 1, 1, "10"))?;
/// engine.submit(tx(Kind::Deposit, 2, 2, "5"))?;
/// engine.submit(tx(Kind::Withdrawal, 1, 3, "4"))?;
/// engine.submit(tx(Kind::Dispute, 2, 2, ""))?;
/// engine.submit(tx(Kind::Withdrawal, 2, 4, "1"))?; // rejected: 5.0 is held
/// let finished = engine.finish()?;
///
/// assert_eq!(finished.tally().applied, 4);
/// assert_eq!(finished.tally().rejected(), 1);
/// finished.write_accounts(std::io::stdout())?;
/// // client,available,held,total,locked
/// // 1,6.0000,0.0000,6.0000,false
/// // 2,0.0000,5.0000,5.0000,false
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Engine {
    path: Path,
    strict: bool,
    /// Records submitted so far: the line number of one that has none.
    submitted: u64,
}

impl Engine {
    /// An engine with `shards` worker threads (0: the calling thread does
    /// the work) and an empty ledger; nothing kept for reports but counts.
    /// [`EngineBuilder`] has every other setting.
    pub fn new(shards: usize) -> Result<Engine, Error> {
        EngineBuilder::new().workers(shards).build(Ledger::new())
    }

    /// The configuration to build one with more settings.
    pub fn builder() -> EngineBuilder {
        EngineBuilder::new()
    }

    /// Submits one transaction (a [`Tx`] or a [`Record`] with its line).
    ///
    /// A deposit or withdrawal whose amount is not positive is malformed, as
    /// the CSV parser would have found it: counted, logged, and (in strict
    /// mode) an [`Error::Strict`]. An error means the engine has stopped: a
    /// worker failed, and every later call fails too.
    pub fn submit(&mut self, record: impl Into<Record>) -> Result<(), Error> {
        let Record { tx, line } = record.into();
        self.submitted += 1;
        let line = line.unwrap_or(self.submitted);
        if tx.kind.claims_id() && !tx.amount.is_positive() {
            let reason = Malformed::BadAmount(if tx.amount.is_negative() {
                AmountError::Syntax
            } else {
                AmountError::Zero
            });
            if self.strict {
                return Err(Error::Strict { line, reason });
            }
            return match &mut self.path {
                Path::Sequential(path) => path.malformed(line, reason, &[]),
                Path::Sharded(path) => path.malformed(line, reason, &[]),
            };
        }
        match &mut self.path {
            Path::Sequential(path) => path.apply(line, &tx, &[]),
            Path::Sharded(path) => path.apply(line, &tx, &[]),
        }
    }

    /// Drains every record in flight, stops the workers, and hands back the
    /// result.
    pub fn finish(self) -> Result<Finished, Error> {
        match self.path {
            Path::Sequential(path) => path.finish(),
            Path::Sharded(path) => path.finish(),
        }
    }
}

/// What an engine run measured about itself, for `--verbose` and `--latency`.
#[derive(Clone, Debug, Default)]
pub struct Measures {
    /// Applied deposits kept for disputes.
    pub deposits: usize,
    /// Bytes held by the deposit stores.
    pub deposit_bytes: usize,
    /// Bytes held by the set of claimed tx ids.
    pub id_set_bytes: usize,
    /// Bytes held by the accounts tables.
    pub account_bytes: usize,
    /// Queue-to-applied latency samples (the sharded pipeline only).
    pub latency: Option<Histogram<u64>>,
    /// Lines for `--verbose` (workers, pinning, batches).
    pub notes: Vec<String>,
}

impl Measures {
    /// The whole ledger state's bytes: deposits, claimed ids, accounts.
    pub fn state_bytes(&self) -> usize {
        self.deposit_bytes + self.id_set_bytes + self.account_bytes
    }

    /// The latency percentiles in one line, in µs.
    pub fn latency_text(&self) -> String {
        match &self.latency {
            None => "latency: not measured on the single-threaded path (--workers 0)".into(),
            Some(h) if h.is_empty() => "latency: no samples".into(),
            Some(h) => {
                let us = |ns: u64| ns as f64 / 1_000.0;
                format!(
                    "latency (parse to applied, first record of each batch, {} samples): \
                     p50 {:.1} us, p90 {:.1} us, p99 {:.1} us, p99.9 {:.1} us, max {:.1} us",
                    h.len(),
                    us(h.value_at_quantile(0.50)),
                    us(h.value_at_quantile(0.90)),
                    us(h.value_at_quantile(0.99)),
                    us(h.value_at_quantile(0.999)),
                    us(h.max()),
                )
            }
        }
    }
}

/// The per-row diagnostics of a run, one log per source (the calling
/// thread, each worker), each in its own line order until written.
pub struct Diagnostics {
    logs: Vec<EventLog>,
}

impl Diagnostics {
    /// Writes the kept per-row lines to `stderr` (best effort: a closed
    /// stderr is not an error) and, when rejects were kept, every malformed
    /// or rejected row to `rejects` (after its header, which the caller
    /// writes), all merged into line order: byte-identical for every worker
    /// count.
    pub fn write_to(
        self,
        stderr: &mut dyn Write,
        rejects: Option<&mut dyn Write>,
    ) -> io::Result<()> {
        report::finish(self.logs, stderr, rejects).map(drop)
    }
}

/// The result of a run: accounts, tally, measures, diagnostics, and the
/// ledger's state, in parts until [`Finished::into_state`] joins them.
pub struct Finished {
    accounts: Vec<(ClientId, Account)>,
    tally: Tally,
    measures: Measures,
    diagnostics: Option<Diagnostics>,
    ids: TxIdSet,
    books: Vec<Book>,
    /// Where the CSV input ended (its size, and its hash when hashed).
    input: Option<Position>,
}

impl Finished {
    /// Gathers a run's parts: the claimed ids, the books (one, or one per
    /// worker), the logs of every source.
    pub(crate) fn new(
        ids: TxIdSet,
        books: Vec<Book>,
        logs: Vec<EventLog>,
        latency: Option<Histogram<u64>>,
        notes: Vec<String>,
    ) -> Finished {
        let mut tally = Tally::default();
        for log in &logs {
            tally.add(&log.tally);
        }
        let (deposits, deposit_bytes) = books.iter().fold((0, 0), |(n, bytes), book| {
            (
                n + book.deposits().len(),
                bytes + book.deposits().heap_bytes(),
            )
        });
        let measures = Measures {
            deposits,
            deposit_bytes,
            id_set_bytes: ids.heap_bytes(),
            account_bytes: books.iter().map(Book::account_bytes).sum(),
            latency,
            notes,
        };
        Finished {
            accounts: sorted_accounts(&books),
            tally,
            measures,
            diagnostics: Some(Diagnostics { logs }),
            ids,
            books,
            input: None,
        }
    }

    /// A run gathered from several processes (`--cluster`): every account
    /// (in any order), one log of every row, in line order, and with a
    /// state file the whole ledger.
    #[cfg(feature = "cli")]
    pub(crate) fn gathered(
        mut accounts: Vec<(ClientId, Account)>,
        log: EventLog,
        deposits: usize,
        notes: Vec<String>,
        input: Position,
        state: Option<Ledger>,
    ) -> Finished {
        accounts.sort_unstable_by_key(|&(client, _)| client);
        let (ids, books) = match state {
            Some(ledger) => ledger.split(1),
            None => (TxIdSet::default(), Vec::new()),
        };
        Finished {
            accounts,
            tally: log.tally,
            measures: Measures {
                deposits,
                deposit_bytes: 0,
                id_set_bytes: 0,
                account_bytes: 0,
                latency: None,
                notes,
            },
            diagnostics: Some(Diagnostics { logs: vec![log] }),
            ids,
            books,
            input: Some(input),
        }
    }

    /// Adds one more source of rows: the rows before a checkpoint.
    pub(crate) fn add_source(&mut self, log: EventLog) {
        self.tally.add(&log.tally);
        if let Some(diagnostics) = &mut self.diagnostics {
            diagnostics.logs.push(log);
        }
    }

    /// Where the CSV input ended: its size in bytes (`offset`), its lines,
    /// and, for a run that could checkpoint, the xxh3-128 of all its bytes.
    pub fn input_end(&self) -> Option<Position> {
        self.input
    }

    /// Every account, in ascending client order.
    pub fn accounts(&self) -> &[(ClientId, Account)] {
        &self.accounts
    }

    /// Writes the accounts CSV (SPEC's output format) to `out`.
    pub fn write_accounts(&self, out: impl Write) -> io::Result<()> {
        report::write_accounts(&self.accounts, out)
    }

    /// Counts of every outcome: rows read = applied + rejected + malformed.
    pub fn tally(&self) -> &Tally {
        &self.tally
    }

    /// Memory, latency and notes about the run.
    pub fn measures(&self) -> &Measures {
        &self.measures
    }

    /// The per-row diagnostics, to write once; `None` once taken.
    pub fn take_diagnostics(&mut self) -> Option<Diagnostics> {
        self.diagnostics.take()
    }

    /// The ledger's state at the end of the run, in parts: the claimed ids
    /// and one book per worker (what the state file is written from).
    pub fn state_parts(&self) -> (&TxIdSet, Vec<&Book>) {
        (&self.ids, self.books.iter().collect())
    }

    /// The ledger's state at the end of the run: start the next run from it
    /// to continue where this one stopped.
    pub fn into_state(self) -> Ledger {
        Ledger::merge(self.ids, self.books)
    }
}
