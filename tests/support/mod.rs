//! Runs the engine the way the binary does, through the library: every
//! output (accounts, stderr lines, rejects file) captured in memory.

#![allow(dead_code)] // each test binary uses a part

use payments_engine::engine::EngineBuilder;
use payments_engine::report::{Tally, REJECTS_HEADER};
use payments_engine::{Error, Ledger};

/// Everything a run writes.
#[derive(Debug, PartialEq, Eq)]
pub struct Outputs {
    pub stdout: String,
    pub stderr: String,
    pub rejects: String,
    pub tally: Tally,
}

/// Runs `input` with `engine`'s settings, keeping every rejected row.
pub fn run_csv(engine: &EngineBuilder, input: &[u8]) -> Result<Outputs, Error> {
    run_csv_from(engine, Ledger::new(), input).map(|(outputs, _)| outputs)
}

/// Runs `input` starting from `ledger`; also hands back the final state.
pub fn run_csv_from(
    engine: &EngineBuilder,
    ledger: Ledger,
    input: &[u8],
) -> Result<(Outputs, Ledger), Error> {
    let mut finished = engine.clone().keep_rejects(true).run_csv(ledger, input)?;
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    let mut rejects = REJECTS_HEADER.as_bytes().to_vec();
    finished
        .take_diagnostics()
        .expect("diagnostics not taken yet")
        .write_to(&mut stderr, Some(&mut rejects))
        .unwrap();
    finished.write_accounts(&mut stdout).unwrap();
    let text = |bytes: Vec<u8>| String::from_utf8(bytes).unwrap();
    let outputs = Outputs {
        stdout: text(stdout),
        stderr: text(stderr),
        rejects: text(rejects),
        tally: *finished.tally(),
    };
    Ok((outputs, finished.into_state()))
}

/// A datagen file of `rows` rows.
pub fn datagen_input(rows: u64, seed: u64) -> Vec<u8> {
    datagen::generate_vec(datagen::Config {
        rows,
        seed,
        ..datagen::Config::default()
    })
}
