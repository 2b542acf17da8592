//! [`EngineBuilder`]: the configuration an embedder sets, and the entry
//! points that run a whole CSV input on the path it chooses.

use std::fs::File;
use std::io::Read;
use std::sync::Arc;

use super::config::{Config, BATCH, MAX_BATCH, MAX_PARSERS, MAX_WORKERS};
use super::drive::{block_size_text, drive, Supervise, Unsupervised};
use super::error::Error;
use super::finished::Finished;
use super::sequential::Sequential;
use super::sharded::Router;
use crate::batch::{Plan, Recycler};
use crate::ledger::Ledger;
#[cfg(unix)]
use crate::parse::Mapped;
use crate::parse::{BlockOptions, BlockRows, ParserBuilder, ParserState, RowSource};
use crate::parse::{DEFAULT_BLOCK, MAX_BLOCK};
use crate::report::Verbosity;

/// Builds an [`Engine`](crate::Engine) or runs a CSV input: the engine's configuration.
///
/// The defaults suit an embedder: the single-threaded path, no pinning, no
/// strict mode, nothing kept for reports but the tally.
///
/// ```
/// use payments_engine::EngineBuilder;
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
    pub(super) config: Config,
}

impl Default for EngineBuilder {
    fn default() -> Self {
        EngineBuilder::new()
    }
}

impl EngineBuilder {
    /// The most worker threads [`workers`](EngineBuilder::workers) takes.
    pub const MAX_WORKERS: usize = MAX_WORKERS;
    /// The most parser threads [`parsers`](EngineBuilder::parsers) takes.
    pub const MAX_PARSERS: usize = MAX_PARSERS;
    /// The default [`batch_size`](EngineBuilder::batch_size), in records.
    pub const BATCH: usize = BATCH;
    /// The largest [`batch_size`](EngineBuilder::batch_size), in records.
    pub const MAX_BATCH: usize = MAX_BATCH;
    /// The default [`block_size`](EngineBuilder::block_size), in bytes.
    pub const DEFAULT_BLOCK: usize = DEFAULT_BLOCK;
    /// The largest [`block_size`](EngineBuilder::block_size), in bytes.
    pub const MAX_BLOCK: usize = MAX_BLOCK;

    /// The default configuration (see the type's docs).
    pub fn new() -> EngineBuilder {
        EngineBuilder {
            config: Config::default(),
        }
    }

    /// Worker threads, each owning a fixed share of the clients (at most
    /// [`MAX_WORKERS`](EngineBuilder::MAX_WORKERS)). `0` applies every
    /// record on the calling thread. The results are identical for every
    /// value.
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

    /// Which per-row lines [`Diagnostics::write_to`](crate::engine::Diagnostics::write_to) prints: none, the first
    /// 10 of each reason, or all of them.
    pub fn diagnostics(mut self, verbosity: Verbosity) -> Self {
        self.config.diagnostics = verbosity;
        self
    }

    /// Keeps every malformed or rejected row, with its original line, for
    /// the rejects file that [`Diagnostics::write_to`](crate::engine::Diagnostics::write_to) writes.
    pub fn keep_rejects(mut self, keep: bool) -> Self {
        self.config.keep_rejects = keep;
        self
    }

    /// Records per batch handed to a worker (default
    /// [`BATCH`](EngineBuilder::BATCH), at most
    /// [`MAX_BATCH`](EngineBuilder::MAX_BATCH)). Smaller batches cut latency and
    /// cost throughput; the results never change.
    pub fn batch_size(mut self, records: usize) -> Self {
        self.config.batch = records;
        self
    }

    /// Parser threads for [`run_csv`](EngineBuilder::run_csv) (at most
    /// [`MAX_PARSERS`](EngineBuilder::MAX_PARSERS)). `0` parses on the
    /// calling thread. With `n`, one more thread reads the input and cuts it
    /// into blocks of whole lines, `n` threads parse blocks at once, and the
    /// calling thread takes their rows in file order. The results are
    /// identical for every value.
    pub fn parsers(mut self, parsers: usize) -> Self {
        self.config.parsers = parsers;
        self
    }

    /// Whether a plain input file that the calling thread parses may be
    /// read in place, mapped into memory (default true; see
    /// `parse::Mapped` for what that costs if another program cuts the
    /// file during the run). Only where the file is given by
    /// `Control::read_by_position` and nothing is hashed.
    pub fn map_input(mut self, map: bool) -> Self {
        self.config.map_input = map;
        self
    }

    /// The target size of a parser thread's block, in bytes (default
    /// [`DEFAULT_BLOCK`](EngineBuilder::DEFAULT_BLOCK), at most
    /// [`MAX_BLOCK`](EngineBuilder::MAX_BLOCK)); a block ends at the first
    /// line end from there. `1` gives each line a block of its own, which
    /// tests use to cut inputs everywhere. The results never change.
    pub fn block_size(mut self, bytes: usize) -> Self {
        self.config.block = bytes;
        self
    }

    /// What the run keeps for reports: the per-row lines, and whether
    /// every rejected row is kept for a rejects file.
    pub(crate) fn reporting(&self) -> (Verbosity, bool) {
        (self.config.diagnostics, self.config.keep_rejects)
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

    /// Runs a whole CSV input (SPEC's format; a BOM, a header, blank lines,
    /// CRLF and quotes all handled) through an engine whose state starts as
    /// `ledger`. Malformed rows are logged and counted, and the run goes on
    /// (unless strict). Fails on an unreadable input, a bad header, a strict
    /// violation or a failed worker.
    pub fn run_csv(&self, ledger: Ledger, source: impl Read + Send) -> Result<Finished, Error> {
        self.run_source(ledger, source, None, false, None, || Ok(Unsupervised))
    }

    /// Parses `source` on the calling thread or on parser threads, checks
    /// a resumed input's prefix, then starts the supervisor and the path.
    pub(crate) fn run_source<S: Supervise>(
        &self,
        ledger: Ledger,
        source: impl Read + Send,
        resume: Option<ParserState>,
        hashing: bool,
        file: Option<Arc<File>>,
        supervisor: impl FnOnce() -> Result<S, Error>,
    ) -> Result<Finished, Error> {
        let c = &self.config;
        c.validate()?;
        // Splits handed back by the workers, for the next blocks (either way
        // the rows are split: on the calling thread or on parser threads).
        let recycler = Recycler::new();
        if c.parsers == 0 {
            // A plain file read from its start with nothing to hash is read
            // in place (see `parse::Mapped`), where it can be mapped.
            #[cfg(unix)]
            if let Some(map) = file
                .filter(|_| c.map_input && !hashing && resume.is_none())
                .and_then(|file| Mapped::open(&file).ok())
            {
                let parser = ParserBuilder::default().over_map(map);
                let mut finished = self.drive_rows(|| Ok(parser), ledger, recycler, supervisor)?;
                let note = "parsers: 0 (parsing on the calling thread, the input mapped)";
                finished.measures.notes.insert(0, note.to_string());
                return Ok(finished);
            }
            let parser = match &resume {
                Some(at) => ParserBuilder::default()
                    .resume(source, at)
                    .map_err(Error::Input)?,
                None => ParserBuilder::default().hashing(hashing).build(source),
            };
            let mut finished = self.drive_rows(|| Ok(parser), ledger, recycler, supervisor)?;
            let note = "parsers: 0 (parsing on the calling thread)".to_string();
            finished.measures.notes.insert(0, note);
            return Ok(finished);
        }
        let plan = Plan {
            workers: c.workers,
            keep_raw: c.keep_rejects,
        };
        let options = BlockOptions {
            parsers: c.parsers,
            block: c.block,
            hashing,
            split: (c.workers > 0).then(|| (plan, recycler.clone())),
            file,
        };
        let by_position = options.by_position(resume.as_ref()).is_some();
        let mut finished = std::thread::scope(|scope| {
            let start = || {
                let (rows, _threads) = BlockRows::start(scope, source, options, resume.as_ref())
                    .map_err(Error::Input)?;
                Ok(rows)
            };
            self.drive_rows(start, ledger, recycler, supervisor)
        })?;
        let note = format!(
            "parsers: {}, blocks of {}, {}",
            c.parsers,
            block_size_text(c.block as u64),
            match by_position {
                true => "cut by a reader thread and read by the parsers at their offsets",
                false => "and a reader thread",
            }
        );
        finished.measures.notes.insert(0, note);
        Ok(finished)
    }

    /// Starts the path (its worker threads first), then the rows (`start`:
    /// the parser threads, which begin reading at once), then the
    /// supervisor, and drives the rows through the path. Threads start
    /// before any block is read, so that under a memory limit it is an
    /// allocation that fails, at a row, not a thread's start racing the
    /// readers (`tests/cli.rs`, out of memory under `prlimit --as`).
    fn drive_rows<S: Supervise, R: RowSource>(
        &self,
        start: impl FnOnce() -> Result<R, Error>,
        ledger: Ledger,
        recycler: Recycler,
        supervisor: impl FnOnce() -> Result<S, Error>,
    ) -> Result<Finished, Error> {
        let c = &self.config;
        match c.workers {
            0 => {
                let path = Sequential::new(c, ledger)?;
                let rows = start()?;
                drive(rows, c.strict, path, supervisor()?)
            }
            _ => {
                let router = Router::start_with(c, ledger, recycler)?;
                let rows = start()?;
                drive(rows, c.strict, router, supervisor()?)
            }
        }
    }
}
