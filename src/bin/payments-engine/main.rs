//! The `payments-engine` binary: arguments -> run -> exit status.

use std::io::{self, IsTerminal};
use std::process::ExitCode;

use clap::Parser;
mod app;
mod budget;
mod cli;
mod commit;
mod input;
mod sys;

use cli::Cli;
use payments_engine::cluster;
use payments_engine::{Error, InputError};

/// mimalloc under a memory budget: running out is a clean fatal error.
#[global_allocator]
static GLOBAL: budget::Budget = budget::Budget;

/// Every message this program prints on stderr starts with its name.
const NAME: &str = "payments-engine";

fn main() -> ExitCode {
    budget::tune_allocator();
    // A worker's panic is reported once, by the engine, as the run's error;
    // any other thread's panic keeps the default report.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let worker = std::thread::current()
            .name()
            .is_some_and(|name| name.starts_with("worker-"));
        if !worker {
            default_hook(info);
        }
    }));
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // --help and --version: printed on stdout, exit 0.
        Err(error) if !error.use_stderr() => error.exit(),
        // A usage error: clap's text (which starts with `error:`), exit 2.
        Err(error) => {
            eprint!("{NAME}: {error}");
            return ExitCode::from(2);
        }
    };
    match cli.write_generated(&mut io::stdout().lock()) {
        Ok(true) => return ExitCode::SUCCESS,
        Ok(false) => {}
        Err(error) => {
            eprintln!("{NAME}: error: writing to stdout: {error}");
            return ExitCode::FAILURE;
        }
    }
    if let Some(bytes) = cli.max_memory.map(|m| m.0).or_else(budget::default_limit) {
        budget::set_limit(bytes);
    }
    let options = match cli.into_options(io::stdin().is_terminal()) {
        Ok(options) => options,
        Err(error) => {
            eprint!("{NAME}: {error}");
            return ExitCode::from(2);
        }
    };
    match app::run(&options, &mut io::stdout().lock(), &mut io::stderr().lock()) {
        Ok(stats) if options.fail_on_malformed && stats.tally.malformed() > 0 => {
            let malformed = stats.tally.malformed();
            eprintln!(
                "{NAME}: {} malformed (--fail-on-malformed)",
                app::plural(malformed, "row was", "rows were")
            );
            ExitCode::from(app::EXIT_MALFORMED)
        }
        Ok(_) => ExitCode::SUCCESS,
        // No memory for a thread's stack is running out of memory.
        Err(error) if thread_refused_memory(&error) => budget::thread_refused(),
        Err(error) => {
            // Stopped by a signal (here, or on another process of a
            // cluster): where, and how to go on; 128 + the signal.
            let signal = match (
                error.downcast_ref::<Error>(),
                error.downcast_ref::<cluster::Error>(),
            ) {
                (Some(Error::Interrupted { signal, .. }), _) => Some(*signal),
                (_, Some(cluster::Error::Stopped(stopped))) => Some(stopped.signal),
                _ => None,
            };
            match signal {
                Some(signal) => {
                    eprintln!("{NAME}: {error}");
                    ExitCode::from(128 + signal as u8)
                }
                None => {
                    eprintln!("{NAME}: error: {error:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// Whether the run failed because the system would not start one of its
/// threads for want of memory (`EAGAIN` or `ENOMEM` from `spawn`: no room
/// for the thread's stack, as under `prlimit --as`).
fn thread_refused_memory(error: &anyhow::Error) -> bool {
    error
        .chain()
        .any(|cause| match cause.downcast_ref::<Error>() {
            Some(Error::StartWorker(spawn) | Error::Input(InputError::StartThread(spawn))) => {
                matches!(spawn.raw_os_error(), Some(libc::EAGAIN | libc::ENOMEM))
            }
            _ => false,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;
    use std::io;

    fn os(code: i32) -> io::Error {
        io::Error::from_raw_os_error(code)
    }

    #[test]
    fn a_thread_refused_for_want_of_memory_is_told_from_other_failures() {
        let reading = |error| anyhow::Error::from(Error::Input(InputError::StartThread(error)));
        assert!(thread_refused_memory(&reading(os(libc::EAGAIN))));
        assert!(thread_refused_memory(&reading(os(libc::ENOMEM))));
        let worker = anyhow::Error::from(Error::StartWorker(os(libc::EAGAIN)));
        assert!(thread_refused_memory(&worker.context("running the engine")));
        // Another reason to refuse a thread, or the same code from a read,
        // is not running out of memory.
        assert!(!thread_refused_memory(&reading(os(libc::EPERM))));
        let read = anyhow::Error::from(Error::Input(InputError::Io(os(libc::EAGAIN))));
        assert!(!thread_refused_memory(&read));
        let read: Result<(), _> = Err(os(libc::ENOMEM));
        assert!(!thread_refused_memory(
            &read.context("reading input").unwrap_err()
        ));
    }
}
