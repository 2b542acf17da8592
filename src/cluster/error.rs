//! Why a cluster run ended early: one error type for the whole module, so
//! the library returns its own errors (no `anyhow`) while messages keep
//! one context per layer, as the engine's do.

use std::fmt;
use std::io;

/// Why a cluster run stopped.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The engine's own error, as a single run gives it (a bad header, a
    /// strict-mode violation, a spool that could not be written).
    Engine(crate::Error),
    /// A signal on one of the processes stopped every process.
    Stopped(Stopped),
    /// What this process was doing (a file, a process, a setting named),
    /// and why it failed, when something else said why.
    Failed {
        what: String,
        cause: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
    },
    /// Another error, as it is (an I/O error, a damaged checkpoint file).
    Other(Box<dyn std::error::Error + Send + Sync + 'static>),
}

/// The run was stopped by a signal on one of its processes: every process
/// stopped feeding blocks, drained what was in flight, and ends with this.
/// The checkpoints every process completed stay for `--resume`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stopped {
    /// The signal's number.
    pub signal: i32,
}

impl fmt::Display for Stopped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self.signal {
            1 => "SIGHUP".to_string(),
            2 => "SIGINT".to_string(),
            15 => "SIGTERM".to_string(),
            n => format!("signal {n}"),
        };
        write!(
            f,
            "the cluster was stopped by {name}, every process at once; with --state, the same \
             commands with --resume go on from the last checkpoint every process completed"
        )
    }
}

impl std::error::Error for Stopped {}

/// A cluster run's result.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// A failure described by `what` alone.
    pub(super) fn msg(what: impl Into<String>) -> Error {
        Error::Failed {
            what: what.into(),
            cause: None,
        }
    }

    /// The whole chain on one line (`what: cause: ...`), as the binary
    /// prints errors.
    pub(super) fn chain(error: &dyn std::error::Error) -> String {
        crate::engine::error_chain(error)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // Transparent: the engine's error is this layer.
            Error::Engine(error) => error.fmt(f),
            Error::Stopped(stopped) => stopped.fmt(f),
            Error::Failed { what, .. } => f.write_str(what),
            Error::Other(error) => error.fmt(f),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Engine(error) => error.source(),
            Error::Stopped(_) => None,
            Error::Failed { cause, .. } => cause
                .as_deref()
                .map(|cause| cause as &(dyn std::error::Error + 'static)),
            Error::Other(error) => error.source(),
        }
    }
}

impl From<Stopped> for Error {
    fn from(stopped: Stopped) -> Error {
        Error::Stopped(stopped)
    }
}

impl From<crate::Error> for Error {
    fn from(error: crate::Error) -> Error {
        Error::Engine(error)
    }
}

impl From<io::Error> for Error {
    fn from(error: io::Error) -> Error {
        Error::Other(Box::new(error))
    }
}

impl From<crate::durable::StateFileError> for Error {
    fn from(error: crate::durable::StateFileError) -> Error {
        Error::Other(Box::new(error))
    }
}

/// Adds what this process was doing to an error, as one layer of the
/// chain.
pub(super) trait Context<T> {
    fn context(self, what: impl Into<String>) -> Result<T>;
    fn with_context<S: Into<String>>(self, what: impl FnOnce() -> S) -> Result<T>;
}

impl<T, E: std::error::Error + Send + Sync + 'static> Context<T> for std::result::Result<T, E> {
    fn context(self, what: impl Into<String>) -> Result<T> {
        self.map_err(|cause| Error::Failed {
            what: what.into(),
            cause: Some(Box::new(cause)),
        })
    }

    fn with_context<S: Into<String>>(self, what: impl FnOnce() -> S) -> Result<T> {
        self.map_err(|cause| Error::Failed {
            what: what().into(),
            cause: Some(Box::new(cause)),
        })
    }
}

/// Returns an [`Error::Failed`] with a formatted message.
macro_rules! bail {
    ($($arg:tt)*) => {
        return Err($crate::cluster::error::Error::msg(format!($($arg)*)))
    };
}
pub(super) use bail;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_layer_is_named_once() {
        let io = || io::Error::from_raw_os_error(2);
        let failed: Result<()> = Err(io()).context("cannot read host file h");
        let error = failed.unwrap_err();
        assert_eq!(
            Error::chain(&error),
            "cannot read host file h: No such file or directory (os error 2)"
        );
        assert_eq!(
            Error::chain(&Error::from(io())),
            "No such file or directory (os error 2)"
        );
        let outer: Result<()> = Err(error).context("process 1");
        assert_eq!(
            Error::chain(&outer.unwrap_err()),
            "process 1: cannot read host file h: No such file or directory (os error 2)"
        );
    }
}
