//! End-to-end tests over fixture pairs, run through the release-built binary
//! exactly as a user runs it.
//!
//! * `tests/fixtures/NAME.csv` + `NAME.expected.csv`: stdout must match byte
//!   for byte; `NAME.rejects.csv`, when present, is the expected `--rejects`
//!   file. Each fixture runs with workers 0, 1, 2, 3, 4, 8 and 16, and from
//!   stdin too.
//! * `tests/adversarial/`: the same, for hostile inputs.
//! * `tests/peer/NAME.csv` + `NAME.expected.csv`: other implementations'
//!   pairs, compared after normalising numbers and row order.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_payments-engine");

/// The worker counts every fixture runs with (0 is the single-threaded path).
const WORKERS: [&str; 7] = ["0", "1", "2", "3", "4", "8", "16"];

fn dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join(name)
}

/// Input files with an `.expected.csv` partner, sorted by name.
fn pairs(folder: &str) -> Vec<(String, PathBuf, PathBuf)> {
    let mut pairs: Vec<_> = fs::read_dir(dir(folder))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter_map(|path| {
            let name = path
                .file_name()?
                .to_str()?
                .strip_suffix(".expected.csv")?
                .to_string();
            let input = path.with_file_name(format!("{name}.csv"));
            Some((name, input, path))
        })
        .collect();
    pairs.sort();
    pairs
}

/// Runs the binary; returns (stdout, stderr, exit code).
fn run(args: &[&str], stdin: Option<&[u8]>) -> (Vec<u8>, String, i32) {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(bytes) = stdin {
        child.stdin.take().unwrap().write_all(bytes).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    (
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.code().unwrap_or(-1),
    )
}

/// A line-by-line diff that is readable in a test failure.
fn diff(expected: &str, got: &str) -> String {
    let (e, g): (Vec<_>, Vec<_>) = (expected.lines().collect(), got.lines().collect());
    let mut text = String::new();
    for i in 0..e.len().max(g.len()) {
        match (e.get(i), g.get(i)) {
            (Some(a), Some(b)) if a == b => {}
            (a, b) => text.push_str(&format!(
                "  line {}:\n    expected {}\n    got      {}\n",
                i + 1,
                a.map_or("(nothing)".into(), |s| format!("{s:?}")),
                b.map_or("(nothing)".into(), |s| format!("{s:?}")),
            )),
        }
    }
    if text.is_empty() && expected != got {
        text.push_str("  (line ends differ)\n");
    }
    text
}

#[test]
fn fixtures_match_byte_for_byte() {
    check_folder("fixtures", 25);
}

/// `tests/adversarial/`: hostile inputs, one or more per class of issue 5.
#[test]
fn adversarial_corpus_matches_byte_for_byte() {
    check_folder("adversarial", 40);
}

fn check_folder(folder: &str, at_least: usize) {
    let pairs = pairs(folder);
    assert!(
        pairs.len() >= at_least,
        "expected at least {at_least} pairs in tests/{folder}, found {}",
        pairs.len()
    );
    let scratch = tempfile::tempdir().unwrap();
    let mut failures = String::new();
    for (name, input, expected) in &pairs {
        let expected = fs::read_to_string(expected).unwrap();
        let rejects_expected = fs::read(input.with_file_name(format!("{name}.rejects.csv"))).ok();
        let rejects_path = scratch.path().join(format!("{name}.rejects.csv"));
        let rejects_arg = rejects_path.to_str().unwrap();
        let bytes = fs::read(input).unwrap();
        // Every worker count from a path; the single-threaded path and the
        // pipeline also from stdin.
        // And parser threads, with blocks from one line to 1 MiB.
        let runs = WORKERS
            .iter()
            .map(|&w| (w, "0", "1MiB", false))
            .chain([("0", "0", "1MiB", true), ("2", "0", "1MiB", true)])
            .chain([
                ("0", "1", "1", false),
                ("1", "2", "7", false),
                ("3", "3", "64", false),
                ("1", "8", "1", false),
                ("0", "2", "1MiB", false),
                ("3", "1", "1", true),
            ]);
        for (workers, parsers, block, via_stdin) in runs {
            let how = format!(
                "--workers {workers} --parsers {parsers} --block-size {block}, {}",
                if via_stdin { "stdin" } else { "path" }
            );
            let input_arg = if via_stdin {
                "-"
            } else {
                input.to_str().unwrap()
            };
            let (stdout, stderr, code) = run(
                &[
                    "-q",
                    "--workers",
                    workers,
                    "--parsers",
                    parsers,
                    "--block-size",
                    block,
                    "--rejects",
                    rejects_arg,
                    input_arg,
                ],
                via_stdin.then_some(&bytes[..]),
            );
            let stdout = String::from_utf8(stdout).unwrap();
            if code != 0 || !stderr.is_empty() {
                failures.push_str(&format!("{name} ({how}): exit {code}, stderr {stderr:?}\n"));
            }
            if stdout != expected {
                failures.push_str(&format!(
                    "{name} ({how}): accounts differ\n{}",
                    diff(&expected, &stdout)
                ));
            }
            if let Some(rejects_expected) = &rejects_expected {
                let got = fs::read(&rejects_path).unwrap();
                if &got != rejects_expected {
                    failures.push_str(&format!(
                        "{name} ({how}): rejects differ\n{}",
                        diff(
                            &String::from_utf8_lossy(rejects_expected),
                            &String::from_utf8_lossy(&got)
                        )
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{folder} failures:\n{failures}");
}

/// Parses a decimal with an optional sign into ten-thousandths (i128), for
/// comparing number formats such as `1.5` and `1.5000`.
fn decimal(text: &str) -> Option<i128> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if frac.len() > 4 || (int.is_empty() && frac.is_empty()) {
        return None;
    }
    let int: i128 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let frac: i128 = format!("{frac:0<4}").parse().ok()?;
    let value = int * 10_000 + frac;
    Some(if negative { -value } else { value })
}

/// Rows of an accounts CSV with numbers normalised, sorted by client.
fn normalised(csv: &str) -> Vec<(u16, i128, i128, i128, bool)> {
    let mut rows: Vec<_> = csv
        .lines()
        .skip(1)
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let f: Vec<&str> = line.split(',').map(str::trim).collect();
            assert_eq!(f.len(), 5, "accounts row {line:?}");
            (
                f[0].parse().unwrap(),
                decimal(f[1]).unwrap(),
                decimal(f[2]).unwrap(),
                decimal(f[3]).unwrap(),
                f[4].parse().unwrap(),
            )
        })
        .collect();
    rows.sort();
    rows
}

#[test]
fn peer_suites_agree_after_normalising_numbers() {
    let pairs = pairs("peer");
    assert!(
        pairs.len() >= 25,
        "expected the peer pairs, found {}",
        pairs.len()
    );
    let mut failures = String::new();
    for (name, input, expected) in &pairs {
        let expected = fs::read_to_string(expected).unwrap();
        for workers in ["0", "3"] {
            let (stdout, stderr, code) =
                run(&["-q", "--workers", workers, input.to_str().unwrap()], None);
            let stdout = String::from_utf8(stdout).unwrap();
            assert_eq!(code, 0, "{name}: {stderr}");
            if normalised(&stdout) != normalised(&expected) {
                failures.push_str(&format!(
                    "{name} (--workers {workers}):\n{}",
                    diff(&expected, &stdout)
                ));
            }
        }
    }
    assert!(failures.is_empty(), "peer failures:\n{failures}");
}

#[test]
fn decimal_normaliser() {
    assert_eq!(decimal("1.5"), Some(15_000));
    assert_eq!(decimal("-0.0001"), Some(-1));
    assert_eq!(decimal("2"), Some(20_000));
    assert_eq!(decimal("1.00001"), None);
}
