//! The engine's configuration, shared by every path, and its limits.

use super::error::Error;
use crate::parse::{DEFAULT_BLOCK, MAX_BLOCK};
use crate::report::Verbosity;

/// The largest worker count accepted (a limit on threads and lane memory).
pub const MAX_WORKERS: usize = 256;

/// The largest parser-thread count accepted.
pub const MAX_PARSERS: usize = 256;

/// Records per batch handed to a worker, by default.
pub const BATCH: usize = 1024;
/// The most records a batch may hold: the raw-line arena's u32 offsets must
/// hold a full batch of the longest lines (65,536 x 4,097 bytes < 2^32).
pub const MAX_BATCH: usize = 65_536;

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
    /// A plain input file parsed on the calling thread may be mapped.
    pub map_input: bool,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            workers: 0,
            pin: false,
            strict: false,
            diagnostics: Verbosity::Quiet,
            keep_rejects: false,
            batch: BATCH,
            parsers: 0,
            block: DEFAULT_BLOCK,
            map_input: true,
        }
    }
}

impl Config {
    /// Refuses a configuration out of range.
    pub fn validate(&self) -> Result<(), Error> {
        let too_many = |what: &str, n: usize, max: usize| {
            Err(Error::Config(format!(
                "{n} {what} requested; at most {max} are allowed"
            )))
        };
        let outside = |what: &str, n: usize, max: usize| {
            Err(Error::Config(format!("{what} {n} is outside 1..={max}")))
        };
        if self.workers > MAX_WORKERS {
            return too_many("workers", self.workers, MAX_WORKERS);
        }
        if self.parsers > MAX_PARSERS {
            return too_many("parser threads", self.parsers, MAX_PARSERS);
        }
        if !(1..=MAX_BLOCK).contains(&self.block) {
            return outside("block size", self.block, MAX_BLOCK);
        }
        if !(1..=MAX_BATCH).contains(&self.batch) {
            return outside("batch size", self.batch, MAX_BATCH);
        }
        Ok(())
    }
}
