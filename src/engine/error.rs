//! The engine's own errors: what ends a run. Bad records are not here; they
//! are outcomes, counted and logged.
//!
//! One context per layer: an error whose cause is another error says only
//! what it was doing and returns the cause from `source`, so a printed chain
//! (`{:#}` in anyhow, or a walk over `source`) names each thing once.

use std::fmt;
use std::io;

use crate::parse::{InputError, Malformed};

/// Why a run stopped.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is out of range (too many workers, a zero batch).
    Config(String),
    /// The input could not be read, or its header is unusable.
    Input(InputError),
    /// Strict mode: the first malformed record.
    Strict { line: u64, reason: Malformed },
    /// A spool file (where per-row reports wait until they are merged in
    /// line order) could not be created.
    CreateSpool(io::Error),
    /// A spool file could not be written.
    WriteSpool(io::Error),
    /// A worker thread could not be started.
    StartWorker(io::Error),
    /// A worker thread panicked: a bug, reported instead of a hang.
    WorkerPanicked { worker: usize, message: String },
    /// The engine had already stopped on an earlier error.
    Stopped,
    /// A checkpoint could not be written.
    Checkpoint(io::Error),
    /// Stopped on request (a signal) at a record boundary, after `line`
    /// (`offset` bytes of the input); with a checkpoint when the run has a
    /// state file.
    Interrupted {
        signal: i32,
        line: u64,
        offset: u64,
        checkpointed: bool,
    },
}

/// A signal's name, for messages.
fn signal_name(signal: i32) -> String {
    match signal {
        1 => "SIGHUP".into(),
        2 => "SIGINT".into(),
        15 => "SIGTERM".into(),
        n => format!("signal {n}"),
    }
}

impl Error {
    /// The signal that stopped the run (`SIGINT`...), if one did.
    pub fn stopped_by(&self) -> Option<String> {
        match self {
            Error::Interrupted { signal, .. } => Some(signal_name(*signal)),
            _ => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Config(text) => f.write_str(text),
            // Transparent: the input error is this layer.
            Error::Input(error) => error.fmt(f),
            Error::Strict { line, reason } => {
                write!(f, "line {line}: malformed record: {reason} (--strict)")
            }
            Error::CreateSpool(_) => f.write_str("creating a spool file"),
            Error::WriteSpool(_) => f.write_str("writing a spool file"),
            Error::StartWorker(_) => f.write_str("starting a worker thread"),
            Error::WorkerPanicked { worker, message } => {
                write!(f, "worker {worker} panicked: {message}")
            }
            Error::Stopped => f.write_str("the engine stopped after an earlier error"),
            Error::Checkpoint(_) => f.write_str("writing a checkpoint"),
            Error::Interrupted {
                signal,
                line,
                offset,
                checkpointed,
            } => {
                write!(
                    f,
                    "stopped by {} after line {line} (byte {offset}); ",
                    signal_name(*signal)
                )?;
                if *checkpointed {
                    f.write_str(
                        "a checkpoint is saved: the same command with --resume goes on from there",
                    )
                } else {
                    f.write_str("nothing was saved (--state FILE makes a run resumable)")
                }
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Input(error) => error.source(),
            Error::CreateSpool(error)
            | Error::WriteSpool(error)
            | Error::StartWorker(error)
            | Error::Checkpoint(error) => Some(error),
            Error::Config(_)
            | Error::Strict { .. }
            | Error::WorkerPanicked { .. }
            | Error::Stopped
            | Error::Interrupted { .. } => None,
        }
    }
}

/// An error and its causes on one line, each layer's text once
/// (`what: cause: ...`), as the binary prints errors.
#[cfg_attr(not(any(test, feature = "cluster")), allow(dead_code))]
pub(crate) fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut next = error.source();
    while let Some(cause) = next {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        next = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_layer_is_named_once() {
        let eisdir = || io::Error::from_raw_os_error(21);
        let table: Vec<(Error, &str)> = vec![
            (
                Error::Input(InputError::Io(eisdir())),
                "reading input: Is a directory (os error 21)",
            ),
            (
                Error::Input(InputError::BadHeader {
                    line: 3,
                    reason: "missing column `tx`".into(),
                }),
                "line 3: bad header: missing column `tx`",
            ),
            (
                Error::CreateSpool(io::Error::from_raw_os_error(2)),
                "creating a spool file: No such file or directory (os error 2)",
            ),
            (
                Error::Strict {
                    line: 4,
                    reason: Malformed::BadTx,
                },
                "line 4: malformed record: tx is not an integer in 0..=4294967295 (--strict)",
            ),
        ];
        for (error, expected) in table {
            assert_eq!(chain(&error), expected);
        }
    }

    #[test]
    fn errors_are_send_and_sync_for_error_chains() {
        fn is_send_sync<T: Send + Sync + 'static>() {}
        is_send_sync::<Error>();
    }
}
