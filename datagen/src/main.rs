//! `datagen`: writes a synthetic transactions CSV for payments-engine.

use std::fs::File;
use std::io::{self, BufWriter};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use datagen::{generate, Config};

/// Deterministic synthetic load: the same options and seed give the same
/// bytes. Memory does not depend on --rows, so the output can be piped
/// straight into the engine (`datagen --rows 1000000000 | payments-engine -`).
#[derive(Debug, Parser)]
#[command(name = "datagen", version, about)]
struct Args {
    /// Rows to write (the header is extra).
    #[arg(long, default_value_t = 1_000_000)]
    rows: u64,
    /// Random seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Distinct clients, spread over the u16 id space (1..=65536).
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=65_536))]
    clients: u32,
    /// Leave out the `type,client,tx,amount` header.
    #[arg(long)]
    no_header: bool,
    /// Write to FILE instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let config = Config {
        rows: args.rows,
        seed: args.seed,
        clients: args.clients,
        header: !args.no_header,
    };
    let result = match &args.output {
        Some(path) => File::create(path).and_then(|file| generate(config, BufWriter::new(file))),
        None => generate(config, io::stdout().lock()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) if error.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("datagen: error: {error}");
            ExitCode::FAILURE
        }
    }
}
