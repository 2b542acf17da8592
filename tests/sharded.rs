//! Failures inside the sharded pipeline: a worker that panics ends the run
//! with one error and no accounts, and nothing hangs, whether the router is
//! busy parsing or waiting on a full ring.

use std::sync::mpsc;
use std::time::Duration;

use payments_engine::app::{process, Input, Options};
use payments_engine::report::Verbosity;

fn options(workers: usize, panic_at_line: Option<u64>) -> Options {
    Options {
        input: Input::Stdin,
        workers,
        pin: false,
        latency: false,
        panic_at_line,
        strict: false,
        rejects: None,
        verbosity: Verbosity::Quiet,
        progress: false,
    }
}

/// Runs `process` on another thread, failing the test after 60 s (a hang).
fn run_bounded(input: Vec<u8>, options: Options) -> (Result<String, String>, Vec<u8>) {
    let (send, receive) = mpsc::channel();
    std::thread::spawn(move || {
        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        let result = process(&input[..], &options, &mut stdout, &mut stderr)
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
