//! One run at a time per state file: an exclusive advisory lock (`flock`)
//! on `STATE.lock`, held for the whole run (checkpoints and resume
//! included). The kernel releases it when the process ends however it ends,
//! so a lock is never stale: a lock file left by a killed run is taken by
//! the next one. A run that ends normally removes the file.
//!
//! The file holds the owner's pid, for the message a second run gives.
//! Removing the file on the way out races with a run that opened it just
//! before: that run would lock an unlinked file. So a run that got the lock
//! checks that the path still names the file it locked, and tries again if
//! not.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Why a state file could not be locked.
#[derive(Debug)]
pub enum LockError {
    /// Another run holds it (its pid, when the lock file says).
    Busy {
        lock: PathBuf,
        pid: Option<u32>,
    },
    Io {
        lock: PathBuf,
        error: io::Error,
    },
}

impl std::fmt::Display for LockError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LockError::Busy { lock, pid } => {
                f.write_str("another run is using it")?;
                if let Some(pid) = pid {
                    write!(f, " (pid {pid})")?;
                }
                write!(f, "; its lock is {}", lock.display())
            }
            LockError::Io { lock, .. } => write!(f, "cannot lock {}", lock.display()),
        }
    }
}

impl std::error::Error for LockError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LockError::Io { error, .. } => Some(error),
            LockError::Busy { .. } => None,
        }
    }
}

/// The lock of a state file, held until dropped (then the lock file is
/// removed and the lock released).
#[derive(Debug)]
pub struct StateLock {
    file: File,
    path: PathBuf,
}

/// Where the lock of `state` is kept.
pub(crate) fn lock_path(state: &Path) -> PathBuf {
    let mut name = state.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

/// Takes the lock of `state` without waiting.
pub(crate) fn lock(state: &Path) -> Result<StateLock, LockError> {
    let path = lock_path(state);
    let io = |error| LockError::Io {
        lock: path.clone(),
        error,
    };
    loop {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                let pid = text.trim().parse().ok();
                return Err(LockError::Busy { lock: path, pid });
            }
            Err(TryLockError::Error(error)) => return Err(io(error)),
        }
        // The file locked must still be the one the path names (a run that
        // was finishing may have removed it meanwhile).
        let locked = file.metadata().map_err(io)?;
        match fs::metadata(&path) {
            Ok(now) if now.ino() == locked.ino() && now.dev() == locked.dev() => {}
            Ok(_) => continue,
            Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
            Err(error) => return Err(io(error)),
        }
        file.set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)).map(drop))
            .and_then(|()| writeln!(file, "{}", std::process::id()))
            .map_err(io)?;
        return Ok(StateLock { file, path });
    }
}

impl Drop for StateLock {
    fn drop(&mut self) {
        // Removed while still locked, so no other run can have it yet.
        let _ = fs::remove_file(&self.path);
        let _ = self.file.unlock();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_at_a_time_and_the_file_goes_with_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("s");
        let held = lock(&state).unwrap();
        let pid = std::process::id();
        match lock(&state) {
            Err(LockError::Busy { pid: Some(p), .. }) => assert_eq!(p, pid),
            other => panic!("a second lock: {other:?}"),
        }
        let text = lock(&state).unwrap_err().to_string();
        assert!(
            text.contains(&format!("another run is using it (pid {pid})")),
            "{text}"
        );
        drop(held);
        assert!(!lock_path(&state).exists(), "removed with the lock");
        let again = lock(&state).unwrap();
        drop(again);
        // A lock file left by a run that died is no lock.
        fs::write(lock_path(&state), "999999\n").unwrap();
        drop(lock(&state).unwrap());
    }

    #[test]
    fn a_missing_directory_is_an_io_error() {
        let error = lock(Path::new("/nonexistent/dir/s")).unwrap_err();
        assert!(matches!(error, LockError::Io { .. }), "{error:?}");
    }
}
