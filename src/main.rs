//! The `payments-engine` binary: arguments -> run -> exit status.

use std::io;
use std::process::ExitCode;

use clap::Parser;
use payments_engine::cli::Cli;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // Usage errors exit 2 inside clap.
    let options = Cli::parse().into_options();
    match payments_engine::app::run(&options, &mut io::stdout().lock(), &mut io::stderr().lock()) {
        Ok(_) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("payments-engine: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
