//! Checkpoints and resume through the library: a run stopped at any record
//! boundary (by its stop flag, as a signal would) and resumed from its
//! checkpoint, with any worker count, ends with the uninterrupted run's
//! accounts, stderr lines, rejects rows and tally.

mod support;

use std::io::{self, Read};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use payments_engine::durable::{Control, StateFile};
use payments_engine::EngineBuilder;
use payments_engine::{Error, Finished, Ledger};
use payments_engine::{Verbosity, REJECTS_HEADER};
use support::Outputs;

/// A reader that raises the stop flag once `after` bytes have been read.
struct StopAfter<'a> {
    data: &'a [u8],
    at: usize,
    after: usize,
    stop: Arc<AtomicUsize>,
}

impl Read for StopAfter<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // Small reads, so the stop lands anywhere.
        let n = buf.len().min(4096).min(self.data.len() - self.at);
        buf[..n].copy_from_slice(&self.data[self.at..self.at + n]);
        self.at += n;
        if self.at >= self.after {
            self.stop.store(2, Ordering::Relaxed);
        }
        Ok(n)
    }
}

fn outputs(mut finished: Finished) -> Outputs {
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    let mut rejects = REJECTS_HEADER.as_bytes().to_vec();
    finished
        .take_diagnostics()
        .unwrap()
        .write_to(&mut stderr, Some(&mut rejects))
        .unwrap();
    finished.write_accounts(&mut stdout).unwrap();
    let text = |bytes: Vec<u8>| String::from_utf8(bytes).unwrap();
    Outputs {
        stdout: text(stdout),
        stderr: text(stderr),
        rejects: text(rejects),
        tally: *finished.tally(),
    }
}

fn engine(workers: usize, verbosity: Verbosity) -> EngineBuilder {
    EngineBuilder::new()
        .workers(workers)
        .batch_size(7)
        .diagnostics(verbosity)
        .keep_rejects(true)
}

/// Runs `input` with stops after each of `stops` bytes, resuming each time
/// (worker and parser counts cycling through `paths`), until it finishes.
fn interrupted(
    state: &Path,
    input: &[u8],
    stops: &[usize],
    paths: &[Threads],
    verbosity: Verbosity,
) -> Outputs {
    StateFile::new(state).discard_checkpoint().unwrap();
    let mut resume = None;
    let mut ledger = Ledger::new();
    for (n, &after) in stops.iter().chain([&usize::MAX]).enumerate() {
        let stop = Arc::new(AtomicUsize::new(0));
        let mut control =
            Control::new(Arc::clone(&stop)).checkpoints(state, Some(Duration::ZERO), Vec::new());
        if let Some(resume) = resume.take() {
            control = control.resuming(resume);
        }
        let reader = StopAfter {
            data: input,
            at: 0,
            after,
            stop,
        };
        let (w, parsers) = paths[n % paths.len()];
        let engine = engine(w, verbosity).parsers(parsers).block_size(3_000);
        match control.run_csv(&engine, ledger, reader) {
            Ok(finished) => {
                StateFile::new(state).discard_checkpoint().unwrap();
                return outputs(finished);
            }
            Err(Error::Interrupted { checkpointed, .. }) => {
                assert!(checkpointed);
                let pending = StateFile::new(state)
                    .load_checkpoint()
                    .unwrap()
                    .expect("a checkpoint");
                ledger = pending.saved.ledger;
                resume = Some(pending.resume);
            }
            Err(other) => panic!("{other}"),
        }
    }
    unreachable!("the last run has no stop")
}

fn datagen(preset: datagen::Preset, rows: u64, seed: u64) -> Vec<u8> {
    datagen::generate_vec(datagen::Config {
        rows,
        seed,
        ..datagen::Config::preset(preset)
    })
}

/// (workers, parsers) of one leg of an interrupted run.
type Threads = (usize, usize);

#[test]
fn a_run_stopped_anywhere_and_resumed_ends_as_if_never_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.bin");
    for (preset, verbosity) in [
        (datagen::Preset::Adversarial, Verbosity::Default),
        (datagen::Preset::Realistic, Verbosity::Verbose),
    ] {
        let input = datagen(preset, 20_000, 3);
        let expected = support::run_csv(&engine(0, verbosity), &input).unwrap();
        assert!(expected.tally.rejected() > 0);
        let len = input.len();
        let cases: [(&[usize], &[Threads]); 7] = [
            (&[1], &[(0, 0)]),
            (&[len / 3], &[(1, 0), (3, 0)]),
            (&[len / 5, len / 2, 4 * len / 5], &[(3, 0), (0, 0), (2, 0)]),
            (&[len - 10], &[(2, 0)]),
            (&[100, 200, 300], &[(0, 0), (1, 0)]),
            (&[len / 4, len / 2], &[(1, 2), (0, 1), (3, 3)]),
            (&[7_000, len / 3, 2 * len / 3], &[(0, 3), (2, 0), (1, 1)]),
        ];
        for (stops, paths) in cases {
            let got = interrupted(&state, &input, stops, paths, verbosity);
            assert!(
                got == expected,
                "{preset:?}, stops {stops:?}, (workers, parsers) {paths:?}:\n{}\n---\n{}",
                got.stderr,
                expected.stderr
            );
        }
    }
}

/// Runs `input` with a checkpoint plan beside `state`, stopped halfway.
fn stop_halfway(state: &Path, input: &[u8], workers: usize) {
    let stop = Arc::new(AtomicUsize::new(0));
    let control = Control::new(Arc::clone(&stop)).checkpoints(state, None, Vec::new());
    let reader = StopAfter {
        data: input,
        at: 0,
        after: input.len() / 2,
        stop,
    };
    let stopped = control.run_csv(&engine(workers, Verbosity::Default), Ledger::new(), reader);
    assert!(matches!(stopped, Err(Error::Interrupted { .. })));
}

#[test]
fn resuming_on_another_input_or_with_other_reports_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.bin");
    let input = datagen(datagen::Preset::Realistic, 20_000, 1);
    stop_halfway(&state, &input, 1);
    let mut other = input.clone();
    other[100] ^= 1;
    for (data, verbosity, message) in [
        (
            &other,
            Verbosity::Default,
            "not the one the checkpoint was taken on",
        ),
        (
            &input,
            Verbosity::Verbose,
            "--resume needs the interrupted run's settings: it had neither --quiet nor \
             --verbose, this run has --verbose",
        ),
    ] {
        let pending = StateFile::new(&state).load_checkpoint().unwrap().unwrap();
        let control = Control::new(Arc::new(AtomicUsize::new(0)))
            .checkpoints(&state, None, Vec::new())
            .resuming(pending.resume);
        let error = control
            .run_csv(&engine(1, verbosity), pending.saved.ledger, &data[..])
            .map(drop)
            .unwrap_err();
        assert!(error.to_string().contains(message), "{error}");
    }
}

/// A damaged checkpoint is an error naming the problem, never a resume
/// from a wrong place: a flipped byte anywhere, or a cut-off file.
#[test]
fn a_damaged_checkpoint_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.bin");
    let input = datagen(datagen::Preset::Adversarial, 5_000, 2);
    stop_halfway(&state, &input, 2);
    let path = StateFile::new(&state).checkpoint_path();
    let good = std::fs::read(&path).unwrap();
    assert!(StateFile::new(&state).load_checkpoint().is_ok());
    let mut at = 0;
    while at < good.len() {
        let mut bad = good.clone();
        bad[at] ^= 0x41;
        std::fs::write(&path, &bad).unwrap();
        assert!(
            StateFile::new(&state).load_checkpoint().is_err(),
            "a flip at byte {at} went unnoticed"
        );
        at += 1 + at / 7;
    }
    std::fs::write(&path, &good[..good.len() - 1]).unwrap();
    let error = StateFile::new(&state).load_checkpoint().err().unwrap();
    assert!(error.to_string().starts_with("truncated"), "{error}");
}

/// A checkpoint goes on from the state file it was taken on and no other:
/// copied beside another ledger's state file, it is refused, and a state
/// file that changed since is refused too.
#[test]
fn a_checkpoint_of_another_ledger_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let save = |name: &str, seed: u64| {
        let path = dir.path().join(name);
        let input = datagen(datagen::Preset::Realistic, 500, seed);
        let finished = engine(0, Verbosity::Default)
            .run_csv(Ledger::new(), &input[..])
            .unwrap();
        let (size, hash) = payments_engine::durable::InputId::identify(&input[..]).unwrap();
        let inputs = [payments_engine::durable::InputId { seq: 1, size, hash }];
        StateFile::new(&path)
            .prepare(&finished, &inputs)
            .unwrap()
            .commit()
            .unwrap();
        path
    };
    let (a, b) = (save("a.state", 1), save("b.state", 2));
    let input = datagen(datagen::Preset::Realistic, 20_000, 3);
    stop_halfway(&a, &input, 1);
    let resume = |state: &Path| {
        let pending = StateFile::new(state).load_checkpoint().unwrap().unwrap();
        Control::new(Arc::new(AtomicUsize::new(0)))
            .checkpoints(state, None, Vec::new())
            .resuming(pending.resume)
            .run_csv(
                &engine(1, Verbosity::Default),
                pending.saved.ledger,
                &input[..],
            )
            .map(drop)
    };
    // A's checkpoint beside B's state file.
    let checkpoint = StateFile::new(&a).checkpoint_path();
    std::fs::copy(&checkpoint, StateFile::new(&b).checkpoint_path()).unwrap();
    let error = resume(&b).unwrap_err().to_string();
    assert!(error.contains("was not taken on state file"), "{error}");
    // A's state file changed since its checkpoint was taken.
    let saved = std::fs::read(&a).unwrap();
    std::fs::write(&a, std::fs::read(&b).unwrap()).unwrap();
    let error = resume(&a).unwrap_err().to_string();
    assert!(error.contains("was not taken on state file"), "{error}");
    // The state it was taken on: it goes on.
    std::fs::write(&a, saved).unwrap();
    resume(&a).unwrap();
}
