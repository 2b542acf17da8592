//! What a cluster process is told: where it stands in the cluster, and the
//! settings every process must share.

use std::path::PathBuf;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use super::restart::CheckpointOptions;
use crate::report::Verbosity;

impl ClusterOptions {
    /// Removes this process's checkpoint files beside `state`. Process 0
    /// calls it once it has committed the state file, never before: until
    /// then its checkpoints are what `--resume` goes on from. The other
    /// processes' go when they see the state file replaced, or at their
    /// next start.
    pub fn discard_checkpoints(&self, state: &std::path::Path) -> std::io::Result<()> {
        super::restart::discard_checkpoints(state, self.process)
    }
}

/// What a cluster run tells its caller as it goes; the caller decides what
/// to print (the library prints nothing).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// Every other process is connected and agrees on the settings.
    Connected {
        /// This process's index.
        process: usize,
        /// How many other processes there are.
        others: usize,
    },
    /// A warning a single run would give too (the header's, an input whose
    /// first rows are all malformed): process 0 only.
    Warning(String),
}

/// The block size of a cluster run when none is given: 4 MiB, ~135,000
/// rows of the realistic file. A block is the dataflow's timestamp, and
/// every block costs each stage a round of timely's progress tracking, a
/// batch per worker and a parser set-up; 4 MiB against 1 MiB took ~10%
/// less CPU over 3 processes (perf.md, "One exchange").
pub const DEFAULT_BLOCK: usize = 4 << 20;

/// How this process takes part in a cluster run.
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    /// One `host:port` per line, one line per process, the same file for all.
    pub hostfile: PathBuf,
    /// This process's line in the host file, from 0.
    pub process: usize,
    /// How long to wait for every other process to connect.
    pub connect_timeout: Duration,
    /// A file holding the secret every process shares (`--cluster-secret`);
    /// without one, the host file may name only loopback addresses.
    pub secret_file: Option<PathBuf>,
}

/// What every process of a run must agree on, besides the input.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Timely workers per process.
    pub workers: usize,
    /// Target block size in bytes.
    pub block: usize,
    /// What the stderr report keeps (process 0's choice counts).
    pub verbosity: Verbosity,
    /// Keep every row that was not applied, for a rejects file.
    pub keep_rejects: bool,
    /// The first malformed row is fatal (`--strict`).
    pub strict: bool,
    /// Checkpoints, and going on from one (`--state`).
    pub checkpoints: Option<CheckpointOptions>,
    /// Raised (to a signal's number) to stop the run: every process then
    /// stops, at once, with [`Stopped`](super::Stopped).
    pub stop: Option<Arc<AtomicUsize>>,
}
