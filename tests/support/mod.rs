//! Test helpers: the engine run the way the binary runs it, through the
//! library, with every output captured in memory; and the binary itself,
//! run with a time limit.

#![allow(dead_code)] // each test binary uses a part

use std::io::Write;
use std::process::{Child, Command, Stdio};

use payments_engine::EngineBuilder;
use payments_engine::{Error, Ledger};
use payments_engine::{Tally, REJECTS_HEADER};

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

// ------------------------------------------------------------- the binary

pub const BIN: &str = env!("CARGO_BIN_EXE_payments-engine");

pub struct Run {
    pub stdout: String,
    pub stderr: String,
    pub code: i32,
}

/// Starts the binary with piped stdin, stdout and stderr.
pub fn spawn(args: &[impl AsRef<std::ffi::OsStr>]) -> Child {
    Command::new(BIN)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Runs the binary; fails the test if it has not finished within 60 s.
pub fn run(args: &[&str], stdin: &[u8]) -> Run {
    let (args, stdin): (Vec<String>, Vec<u8>) =
        (args.iter().map(|a| a.to_string()).collect(), stdin.to_vec());
    let (send, receive) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut child = spawn(&args);
        let mut pipe = child.stdin.take().unwrap();
        // The child may exit before reading everything (fatal errors).
        let _ = pipe.write_all(&stdin);
        drop(pipe);
        let _ = send.send(child.wait_with_output().unwrap());
    });
    let out = receive
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("payments-engine hung: no exit within 60 s");
    Run {
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        code: out.status.code().unwrap_or(-1),
    }
}

impl Run {
    /// A fatal error: status 1, no accounts, and one clear message on stderr
    /// (one `payments-engine: error:` line) that contains `message`.
    #[track_caller]
    pub fn assert_fatal(&self, message: &str) {
        assert_eq!(self.code, 1, "{}", self.stderr);
        assert!(self.stdout.is_empty(), "no accounts: {}", self.stdout);
        let errors = self
            .stderr
            .lines()
            .filter(|l| l.starts_with("payments-engine: error:"));
        assert_eq!(errors.count(), 1, "{}", self.stderr);
        self.assert_stderr_has(&[message]);
    }

    /// stderr contains every one of `needles`.
    #[track_caller]
    pub fn assert_stderr_has(&self, needles: &[&str]) {
        for needle in needles {
            let found = self.stderr.contains(needle);
            assert!(found, "wanted {needle:?} in {}", self.stderr);
        }
    }
}
