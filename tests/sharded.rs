//! Faults: a worker that panics, or an input that fails mid-stream, ends the
//! run with one error and no accounts, and nothing hangs, whether the router
//! is busy parsing or waiting on a full ring.

use std::io::{self, Read};
use std::sync::mpsc;
use std::time::Duration;

use payments_engine::app::{process, Options};
use payments_engine::ledger::Reject;

fn options(workers: usize, panic_at_line: Option<u64>) -> Options {
    Options {
        panic_at_line,
        ..Options::quiet(workers)
    }
}

/// Runs `process` on another thread, failing the test after 60 s (a hang).
fn run_bounded(input: Vec<u8>, options: Options) -> (Result<String, String>, Vec<u8>) {
    run_reader_bounded(
        Failing {
            data: input,
            pos: 0,
            fail_at: usize::MAX,
        },
        options,
    )
}

/// A reader that fails with an I/O error after `fail_at` bytes.
struct Failing {
    data: Vec<u8>,
    pos: usize,
    fail_at: usize,
}

impl Read for Failing {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.fail_at {
            return Err(io::Error::other("the disk caught fire"));
        }
        let end = self.data.len().min(self.fail_at).min(self.pos + buf.len());
        let n = end - self.pos;
        buf[..n].copy_from_slice(&self.data[self.pos..end]);
        self.pos = end;
        Ok(n)
    }
}

fn run_reader_bounded(input: Failing, options: Options) -> (Result<String, String>, Vec<u8>) {
    let (send, receive) = mpsc::channel();
    std::thread::spawn(move || {
        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        let result = process(input, &options, &mut stdout, &mut stderr)
            .map(|_| String::new())
            .map_err(|e| format!("{e:#}"));
        let _ = send.send((result, stdout));
    });
    receive
        .recv_timeout(Duration::from_secs(60))
        .expect("the run hung: no result within 60 s")
}

fn big_input(rows: u64) -> Vec<u8> {
    datagen::generate_vec(datagen::Config {
        rows,
        seed: 7,
        ..datagen::Config::default()
    })
}

#[test]
fn a_worker_panic_early_in_a_large_input_fails_the_run_without_hanging() {
    // 300k rows: the router soon waits on the dead worker's full ring.
    for workers in [1, 2, 3, 8] {
        let (result, stdout) = run_bounded(big_input(300_000), options(workers, Some(10)));
        let error = result.expect_err("a worker panicked: the run must fail");
        assert!(
            error.contains("panicked: injected panic at line 10"),
            "{error}"
        );
        assert!(stdout.is_empty(), "no accounts on a fatal error");
    }
}

#[test]
fn a_worker_panic_on_the_last_line_fails_the_run() {
    let input = big_input(5_000);
    let last_line = 5_001; // the header is line 1
    let (result, stdout) = run_bounded(input, options(4, Some(last_line)));
    let error = result.expect_err("a worker panicked: the run must fail");
    assert!(
        error.contains(&format!("injected panic at line {last_line}")),
        "{error}"
    );
    assert!(stdout.is_empty());
}

#[test]
fn without_a_fault_the_same_input_succeeds_for_every_worker_count() {
    let input = big_input(50_000);
    let (baseline, expected) = run_bounded(input.clone(), options(0, None));
    baseline.unwrap();
    assert!(expected.starts_with(b"client,available,held,total,locked\n"));
    for workers in [1, 2, 3, 4, 8, 16] {
        let (result, stdout) = run_bounded(input.clone(), options(workers, None));
        result.unwrap();
        assert!(stdout == expected, "--workers {workers} differs");
    }
}

#[test]
fn an_input_error_mid_stream_is_fatal_for_every_worker_count() {
    let data = big_input(200_000);
    let fail_at = data.len() / 2;
    for workers in [0, 1, 2, 8] {
        let reader = Failing {
            data: data.clone(),
            pos: 0,
            fail_at,
        };
        let (result, stdout) = run_reader_bounded(reader, options(workers, None));
        let error = result.expect_err("a read error must fail the run");
        assert!(
            error.contains("reading input") && error.contains("the disk caught fire"),
            "{error}"
        );
        assert!(
            stdout.is_empty(),
            "--workers {workers}: no accounts on a fatal error"
        );
    }
}

/// Many batches of scattered and duplicate ids: the router claims ids some
/// records behind parsing (with prefetching) and across batch hand-offs, and
/// every worker count must decide rule 2 exactly as the single-threaded
/// ledger does, row by row (the rejects file lists each rejected row).
#[test]
fn duplicate_ids_across_many_batches_are_decided_alike_for_every_worker_count() {
    let input = datagen::generate_vec(datagen::Config {
        rows: 60_000,
        seed: 11,
        duplicate_rate: 0.2,
        ..datagen::Config::preset(datagen::Preset::Adversarial)
    });
    let dir = tempfile::tempdir().unwrap();
    let run = |workers: usize| {
        let rejects = dir.path().join(format!("rejects-{workers}.csv"));
        let options = Options {
            rejects: Some(rejects.clone()),
            ..Options::quiet(workers)
        };
        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        let stats = process(input.as_slice(), &options, &mut stdout, &mut stderr).unwrap();
        (stdout, std::fs::read(rejects).unwrap(), stats.tally)
    };
    let expected = run(0);
    let duplicates = expected.2.rejected_by[Reject::DuplicateTx as usize];
    assert!(duplicates > 5_000, "{duplicates} duplicate-id rejects");
    for workers in [1, 2, 3, 5, 8] {
        assert!(run(workers) == expected, "--workers {workers} differs");
    }
}
