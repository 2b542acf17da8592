//! What outlives a run: files that appear whole or not at all, the ledger's
//! state file, and the checkpoints of a run in progress.
//!
//! * `atomic.rs`: [`AtomicFile`], written beside its target and renamed
//!   over it on commit;
//! * `state.rs`: the state file, a sectioned, checksummed image of a
//!   [`Ledger`](crate::Ledger) and the inputs applied to it;
//! * `lock.rs`: one run at a time per state file (`flock`);
//! * `checkpoint.rs`: the same format with two more sections (where the
//!   run stood, what it had reported), written at a record boundary by the
//!   engine's supervisor ([`Control`]), and read back by `--resume`.
//!
//! The engine knows nothing of files: [`Control::run_csv`]
//! hands it a supervisor that it calls between records, and the supervisor
//! writes the checkpoints.

mod atomic;
mod checkpoint;
mod lock;
pub(crate) mod state;

#[cfg(feature = "cluster")]
pub(crate) use atomic::directory_of;
pub use atomic::AtomicFile;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

pub use checkpoint::{Control, Pending, Resume};
pub use lock::{LockError, StateLock};
pub use state::{InputId, Prepared, Saved, StateFileError};

use crate::engine::Finished;

/// A state file, and the files kept beside it: its previous generation
/// (`FILE.prev`), and the checkpoint of an interrupted run
/// (`FILE.checkpoint`, with its journals).
///
/// ```no_run
/// use payments_engine::durable::{InputId, StateFile};
/// use payments_engine::{EngineBuilder, Ledger};
///
/// let state = StateFile::new("ledger.state");
/// let (ledger, mut inputs) = match state.load()? {
///     Some(saved) => (saved.ledger, saved.inputs),
///     None => (Ledger::new(), Vec::new()),
/// };
/// let input = std::fs::read("day.csv")?;
/// let finished = EngineBuilder::new().run_csv(ledger, &input[..])?;
/// let (size, hash) = InputId::identify(&input[..])?;
/// inputs.push(InputId { seq: inputs.len() as u64 + 1, size, hash });
/// // Written and synced beside the file; in place only on commit.
/// state.prepare(&finished, &inputs)?.commit()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateFile {
    path: PathBuf,
}

impl StateFile {
    /// The state file at `path` (which need not exist yet).
    pub fn new(path: impl Into<PathBuf>) -> StateFile {
        StateFile { path: path.into() }
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Loads it: `None` when there is no state file yet (a first run).
    pub fn load(&self) -> Result<Option<Saved>, StateFileError> {
        state::load(&self.path)
    }

    /// Writes the state a run finished with, and the inputs applied to it,
    /// to a temporary file beside it, and syncs it; [`Prepared::commit`]
    /// puts it in place.
    pub fn prepare(&self, finished: &Finished, inputs: &[InputId]) -> io::Result<Prepared> {
        let (ids, books) = finished.state_parts();
        state::prepare(&self.path, ids, &books, inputs)
    }

    /// Takes the state file's lock (`FILE.lock`), without waiting: one run
    /// at a time, for as long as the returned guard lives. Two runs on one
    /// state would each apply their input to the state they loaded, and the
    /// second to commit would lose the first's.
    pub fn lock(&self) -> Result<StateLock, LockError> {
        lock::lock(&self.path)
    }

    /// Where the checkpoint of an interrupted run is kept.
    pub fn checkpoint_path(&self) -> PathBuf {
        checkpoint::checkpoint_path(&self.path)
    }

    /// The checkpoint an interrupted run left, if any.
    pub fn load_checkpoint(&self) -> Result<Option<Pending>, StateFileError> {
        checkpoint::load(&self.path)
    }

    /// Removes the checkpoint and its journals (after a run that finished).
    pub fn discard_checkpoint(&self) -> io::Result<()> {
        checkpoint::discard(&self.path)
    }
}

impl InputId {
    /// Reads a whole input, returning its size and xxh3-128 hash: the
    /// identity a state file records for it.
    pub fn identify(input: impl Read) -> io::Result<(u64, u128)> {
        state::identify(input)
    }
}
