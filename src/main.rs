//! The `payments-engine` binary: arguments -> run -> exit status.

use std::io;
use std::process::ExitCode;

use clap::Parser;
use payments_engine::cli::Cli;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // A worker's panic is reported once, by the pipeline, as the run's error;
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
