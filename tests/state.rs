//! `--state FILE` through the binary: a chain of inputs equals one run over
//! all of them, whatever the worker count of each run; a replay is refused;
//! a damaged state file is a fatal error that leaves everything as it was.

mod support;

use std::fs;
use std::path::{Path, PathBuf};

use proptest::prelude::*;
use support::{run, Run};

const HEADER: &str = "client,available,held,total,locked\n";

/// Runs the binary with `args` then the input path.
fn run_file(args: &[&str], input: &Path) -> Run {
    let mut all: Vec<&str> = args.to_vec();
    all.push(input.to_str().unwrap());
    run(&all, b"")
}

/// Splits `text` at `cuts` (line indexes, after the header), repeating the
/// header line, if any, at the top of every part.
fn split_lines(text: &str, cuts: &[usize]) -> Vec<String> {
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let has_header = lines
        .first()
        .is_some_and(|l| l.to_ascii_lowercase().contains("type"));
    let (header, body) = if has_header {
        (lines[0], &lines[1..])
    } else {
        ("", &lines[..])
    };
    let mut bounds: Vec<usize> = cuts.iter().map(|&c| c.min(body.len())).collect();
    bounds.sort_unstable();
    bounds.insert(0, 0);
    bounds.push(body.len());
    bounds
        .windows(2)
        .map(|w| format!("{header}{}", body[w[0]..w[1]].concat()))
        .collect()
}

/// Runs the parts in order against one state file, each with its worker
/// count; returns the last run's stdout and the rows read in all. Two parts
/// may have the same bytes (two header-only parts of a small fixture):
/// `--allow-replay` lets the second through, as it should here.
fn chain(dir: &Path, parts: &[String], workers: &[usize]) -> (String, u64) {
    let state = dir.join("state.bin");
    let _ = fs::remove_file(&state);
    let _ = fs::remove_file(dir.join("state.bin.prev"));
    let (mut stdout, mut rows) = (String::new(), 0);
    for (n, (part, workers)) in parts.iter().zip(workers).enumerate() {
        let input = dir.join(format!("part-{n}.csv"));
        fs::write(&input, part).unwrap();
        let w = workers.to_string();
        let s = state.to_str().unwrap();
        let r = run_file(&["--state", s, "--allow-replay", "--workers", &w], &input);
        assert_eq!(r.code, 0, "part {n}: {}", r.stderr);
        rows += rows_read(&r.stderr);
        stdout = r.stdout;
    }
    (stdout, rows)
}

/// The `rows read` figure of a summary.
fn rows_read(stderr: &str) -> u64 {
    let line = stderr.lines().find(|l| l.starts_with("summary: ")).unwrap();
    line["summary: ".len()..]
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

fn whole(dir: &Path, text: &str) -> Run {
    let input = dir.join("whole.csv");
    fs::write(&input, text).unwrap();
    run_file(&["--workers", "0"], &input)
}

#[test]
fn a_chain_over_every_fixture_equals_one_run() {
    let dir = tempfile::tempdir().unwrap();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut checked = 0;
    for entry in fs::read_dir(fixtures).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        if !name.ends_with(".csv") || name.contains(".expected") || name.contains(".rejects") {
            continue;
        }
        let Ok(text) = fs::read_to_string(&path) else {
            continue; // not UTF-8: the line splitting here assumes text
        };
        let expected = whole(dir.path(), &text);
        if expected.code != 0 {
            continue; // a fixture of a fatal error
        }
        let lines = text.lines().count();
        let parts = split_lines(&text, &[lines / 3, 2 * lines / 3]);
        let (stdout, rows) = chain(dir.path(), &parts, &[0, 2, 1]);
        assert_eq!(stdout, expected.stdout, "{name}");
        assert_eq!(rows, rows_read(&expected.stderr), "{name}");
        checked += 1;
    }
    assert!(checked >= 8, "{checked} fixtures checked");
}

fn datagen(preset: datagen::Preset, rows: u64, seed: u64) -> String {
    let bytes = datagen::generate_vec(datagen::Config {
        rows,
        seed,
        ..datagen::Config::preset(preset)
    });
    String::from_utf8(bytes).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    /// Generated files split at random lines, each part run with a random
    /// worker count: the chain prints what one run over the whole prints.
    #[test]
    fn a_chain_split_at_random_lines_equals_one_run(
        adversarial: bool,
        seed in 0u64..1_000,
        cuts in prop::collection::vec(0usize..3_000, 1..4),
        workers in prop::collection::vec(0usize..5, 4),
    ) {
        let preset = if adversarial { datagen::Preset::Adversarial } else { datagen::Preset::Realistic };
        let text = datagen(preset, 3_000, seed);
        let dir = tempfile::tempdir().unwrap();
        let expected = whole(dir.path(), &text);
        prop_assert_eq!(expected.code, 0);
        let parts = split_lines(&text, &cuts);
        let (stdout, rows) = chain(dir.path(), &parts, &workers);
        prop_assert_eq!(stdout, expected.stdout);
        prop_assert_eq!(rows, rows_read(&expected.stderr));
    }
}

/// The state file's bytes, to check it is left as it was.
fn bytes(path: &Path) -> Vec<u8> {
    fs::read(path).unwrap()
}

fn setup() -> (tempfile::TempDir, PathBuf, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.csv");
    let b = dir.path().join("b.csv");
    fs::write(&a, "type,client,tx,amount\ndeposit,1,1,10\ndeposit,2,2,5\n").unwrap();
    fs::write(
        &b,
        "type,client,tx,amount\ndispute,1,1,\nwithdrawal,2,3,1\n",
    )
    .unwrap();
    let state = dir.path().join("state.bin");
    (dir, a, b, state)
}

#[test]
fn tomorrows_dispute_finds_todays_deposit() {
    let (_dir, a, b, state) = setup();
    let s = state.to_str().unwrap();
    let r = run_file(&["--state", s], &a);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = run_file(&["--state", s, "--workers", "2"], &b);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        r.stdout,
        format!("{HEADER}1,0.0000,10.0000,10.0000,false\n2,4.0000,0.0000,4.0000,false\n")
    );
    // Without the state, the dispute names an unknown deposit.
    let alone = run_file(&[], &b);
    assert!(alone
        .stderr
        .contains("line 2: dispute of tx 1 for client 1 rejected: unknown tx"));
}

#[test]
fn an_input_applied_already_is_refused_unless_allowed() {
    let (_dir, a, b, state) = setup();
    let s = state.to_str().unwrap();
    assert_eq!(run_file(&["--state", s], &a).code, 0);
    assert_eq!(run_file(&["--state", s], &b).code, 0);
    let saved = bytes(&state);
    // The same file again, by path or on stdin.
    let r = run_file(&["--state", s], &a);
    r.assert_fatal("was already applied to state file");
    r.assert_stderr_has(&["input 1 of 2", "--allow-replay"]);
    let r = run(&["--state", s, "-"], &fs::read(&b).unwrap());
    r.assert_fatal("the input (standard input) was already applied");
    assert_eq!(bytes(&state), saved, "the state is left as it was");
    // Explicitly allowed: applied again (the deposits are duplicates now).
    let r = run_file(&["--state", s, "--allow-replay"], &a);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("rejected duplicate_tx       2"),
        "{}",
        r.stderr
    );
    // --allow-replay means nothing without a state file.
    assert_eq!(run_file(&["--allow-replay"], &a).code, 2);
}

#[test]
fn a_damaged_state_file_is_fatal_and_leaves_everything_as_it_was() {
    let (dir, a, b, state) = setup();
    let s = state.to_str().unwrap();
    assert_eq!(run_file(&["--state", s], &a).code, 0);
    let good = bytes(&state);
    let out = dir.path().join("out.csv");
    fs::write(&out, "old\n").unwrap();
    let o = out.to_str().unwrap();
    let mut newer = good.clone();
    newer[8] = 9; // the version (the header's checksum then fails first)
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "flipped",
            {
                let mut d = good.clone();
                let at = d.len() - 3;
                d[at] ^= 1;
                d
            },
            "damaged: the deposits section does not pass its checks",
        ),
        ("truncated", good[..good.len() / 2].to_vec(), "truncated"),
        ("empty", Vec::new(), "truncated: 0 of 64 bytes"),
        (
            "foreign",
            b"client,available\n".to_vec(),
            "not a payments-engine state file",
        ),
        ("newer", newer, "damaged: the header"),
    ];
    for (what, content, message) in cases {
        fs::write(&state, &content).unwrap();
        let r = run_file(&["--state", s, "-o", o], &b);
        r.assert_fatal(&format!(
            "payments-engine: error: state file {s}: {message}"
        ));
        assert_eq!(r.stderr.lines().count(), 1, "{what}: {}", r.stderr);
        assert_eq!(
            bytes(&state),
            content,
            "{what}: the state file is left as it was"
        );
        assert_eq!(fs::read_to_string(&out).unwrap(), "old\n", "{what}");
    }
    // A state file gone, its previous generation still there.
    fs::write(&state, &good).unwrap();
    assert_eq!(run_file(&["--state", s], &b).code, 0);
    fs::remove_file(&state).unwrap();
    let r = run_file(&["--state", s], &a);
    r.assert_fatal("missing, but its previous generation");
}

#[test]
fn a_failed_run_leaves_the_state_file_as_it_was() {
    let (dir, a, _b, state) = setup();
    let s = state.to_str().unwrap();
    assert_eq!(run_file(&["--state", s], &a).code, 0);
    let saved = bytes(&state);
    let bad = dir.path().join("bad.csv");
    fs::write(&bad, "type,client,amount\ndeposit,1,1\n").unwrap();
    run_file(&["--state", s], &bad).assert_fatal("bad header");
    let strict = dir.path().join("strict.csv");
    fs::write(&strict, "deposit,3,3,1\ndeposit,3,4,x\n").unwrap();
    run_file(&["--state", s, "--strict", "--workers", "2"], &strict).assert_fatal("--strict");
    assert_eq!(bytes(&state), saved);
    let names: Vec<String> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.iter().all(|n| !n.starts_with(".payments-engine")),
        "{names:?}"
    );
}

/// The state moves on only once the accounts were delivered: a stdout that
/// cannot be written (a full disk, a reader gone) fails the run and leaves
/// the state as it was, so the same command runs again instead of being
/// refused as a replay.
#[test]
fn accounts_are_delivered_before_the_state_moves_on() {
    use std::process::{Command, Stdio};
    let (_dir, a, b, state) = setup();
    let s = state.to_str().unwrap();
    assert_eq!(run_file(&["--state", s], &a).code, 0);
    let saved = bytes(&state);
    // stdout on a full disk.
    let full = fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let out = Command::new(support::BIN)
        .args(["--state", s, b.to_str().unwrap()])
        .stdout(full)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("writing accounts to stdout"), "{stderr}");
    assert!(stderr.contains("left as it was"), "{stderr}");
    assert_eq!(bytes(&state), saved, "the state did not move");
    // A reader that has gone before the accounts come (EPIPE).
    let mut child = Command::new(support::BIN)
        .args(["--state", s, b.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("Broken pipe"), "{stderr}");
    assert_eq!(bytes(&state), saved, "the state did not move");
    // The same command, delivered: b is applied once, now.
    let r = run_file(&["--state", s], &b);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        r.stdout,
        format!("{HEADER}1,0.0000,10.0000,10.0000,false\n2,4.0000,0.0000,4.0000,false\n")
    );
    assert_ne!(bytes(&state), saved);
    run_file(&["--state", s], &b).assert_fatal("already applied");
}

/// Without a state file, a reader that goes away early (`| head`) is not an
/// error: nothing depends on what it did not read.
#[test]
fn a_vanished_reader_without_a_state_file_is_not_an_error() {
    use std::process::{Command, Stdio};
    let (_dir, a, _b, _state) = setup();
    let mut child = Command::new(support::BIN)
        .arg(a.to_str().unwrap())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Two runs on one state file: the second is refused at once, naming the
/// file and the first run's pid, instead of both applying their inputs to
/// the state they loaded and the last commit losing the other's.
#[test]
fn a_second_run_on_a_locked_state_is_refused_at_once() {
    use std::io::Write;
    let (_dir, a, b, state) = setup();
    let s = state.to_str().unwrap();
    // The first run reads a pipe that stays open: it holds the lock meanwhile.
    let mut first = support::spawn(&["--state", s, "-"]);
    let mut input = first.stdin.take().unwrap();
    input.write_all(&fs::read(&a).unwrap()).unwrap();
    let lock = state.with_extension("bin.lock");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !fs::read_to_string(&lock).is_ok_and(|t| t.ends_with('\n')) {
        assert!(
            std::time::Instant::now() < deadline,
            "the first run took no lock"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let second = run_file(&["--state", s], &b);
    second.assert_fatal("another run is using it");
    second.assert_stderr_has(&[s, &format!("(pid {})", first.id())]);
    drop(input);
    let out = first.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!lock.exists(), "the lock file goes with the run");
    // Both inputs are applied, each once.
    let r = run_file(&["--state", s], &b);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        r.stdout,
        format!("{HEADER}1,0.0000,10.0000,10.0000,false\n2,4.0000,0.0000,4.0000,false\n")
    );
}

/// A FIFO (or any other non-regular file) as the state file or its
/// checkpoint is refused before it is opened (opening a FIFO waits for a
/// writer, forever); a symlink to a regular file is followed, and the file
/// it names is the one replaced.
#[test]
fn a_fifo_state_is_refused_and_a_symlinked_one_followed() {
    let (dir, a, b, state) = setup();
    let s = state.to_str().unwrap();
    let mkfifo = |path: &Path| {
        let made = std::process::Command::new("mkfifo")
            .arg(path)
            .status()
            .unwrap();
        assert!(made.success());
    };
    mkfifo(&state);
    run_file(&["--state", s], &a).assert_fatal("not a regular file");
    fs::remove_file(&state).unwrap();
    let checkpoint = dir.path().join("state.bin.checkpoint");
    mkfifo(&checkpoint);
    run_file(&["--state", s], &a).assert_fatal("not a regular file");
    fs::remove_file(&checkpoint).unwrap();
    // A symlink to the real state file, elsewhere.
    let real = dir.path().join("real.state");
    let link = dir.path().join("link.state");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let l = link.to_str().unwrap();
    assert_eq!(run_file(&["--state", l], &a).code, 0);
    assert!(fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    let after_a = bytes(&real);
    let r = run_file(&["--state", l], &b);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink(),
        "the link stays"
    );
    assert_ne!(bytes(&real), after_a, "its target moved on");
    assert_eq!(
        r.stdout,
        format!("{HEADER}1,0.0000,10.0000,10.0000,false\n2,4.0000,0.0000,4.0000,false\n")
    );
}
