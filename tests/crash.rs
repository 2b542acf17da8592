//! Crashes and signals through the binary: a checkpointed run killed with
//! SIGKILL at random moments and resumed until it finishes leaves the
//! uninterrupted run's accounts, rejects file, summary counts and state
//! file, byte for byte; SIGINT and SIGTERM stop at a record boundary, save
//! a checkpoint, exit 130 or 143, and leave every output as it was.

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::BIN;

/// A realistic file with some malformed rows, so that every journal
/// (rejects and verbose) and every reason has rows before and after a cut.
fn input(dir: &Path) -> PathBuf {
    let bytes = datagen::generate_vec(datagen::Config {
        rows: 200_000,
        seed: 21,
        ..datagen::Config::default()
    });
    let text = String::from_utf8(bytes).unwrap();
    let mut out = String::with_capacity(text.len());
    for (n, line) in text.lines().enumerate() {
        if n > 0 && n % 997 == 0 {
            out.push_str("deposit,1,oops,1\n");
        }
        out.push_str(line);
        out.push('\n');
    }
    let path = dir.join("input.csv");
    fs::write(&path, out).unwrap();
    path
}

/// The files one run writes, under `dir/name.*`. The run's stdout and
/// stderr go to files too: a pipe nobody reads would fill and stall it.
struct Files {
    state: PathBuf,
    output: PathBuf,
    rejects: PathBuf,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Files {
    fn new(dir: &Path, name: &str) -> Files {
        Files {
            state: dir.join(format!("{name}.state")),
            output: dir.join(format!("{name}.out")),
            rejects: dir.join(format!("{name}.rejects")),
            stdout: dir.join(format!("{name}.stdout")),
            stderr: dir.join(format!("{name}.stderr")),
        }
    }

    fn spawn(&self, input: &Path, extra: &[&str]) -> Child {
        let path = |p: &PathBuf| p.to_str().unwrap().to_string();
        let mut args = vec![
            "--verbose".to_string(),
            "--state".into(),
            path(&self.state),
            "--checkpoint-every".into(),
            "40ms".into(),
            "-o".into(),
            path(&self.output),
            "--rejects".into(),
            path(&self.rejects),
        ];
        args.extend(extra.iter().map(|a| a.to_string()));
        args.push(input.to_str().unwrap().into());
        Command::new(BIN)
            .args(args)
            .stdin(Stdio::null())
            .stdout(fs::File::create(&self.stdout).unwrap())
            .stderr(fs::File::create(&self.stderr).unwrap())
            .spawn()
            .unwrap()
    }

    /// Waits for the run to end, failing the test after 120 s: its exit
    /// status, stdout and stderr.
    fn wait(&self, mut child: Child) -> (i32, String, String) {
        let started = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            assert!(started.elapsed() < Duration::from_secs(120), "the run hung");
            std::thread::sleep(Duration::from_millis(5));
        };
        let read = |p: &PathBuf| fs::read_to_string(p).unwrap();
        (
            status.code().unwrap_or(-1),
            read(&self.stdout),
            read(&self.stderr),
        )
    }

    fn read(&self) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
        let read = |p: &PathBuf| fs::read(p).unwrap_or_default();
        (read(&self.output), read(&self.rejects), read(&self.state))
    }
}

/// The stderr lines that depend neither on time, the worker or parser count, memory
/// layout nor file names: every per-row diagnostic and the counts (not the
/// line that says which state a run starts from: a resumed run's differs).
fn counts(stderr: &str) -> Vec<String> {
    let varies = [
        "elapsed",
        "pipeline:",
        "workers:",
        "parsers:",
        "memory:",
        "state:",
        "payments-engine: state ",
    ];
    stderr
        .lines()
        .filter(|l| !varies.iter().any(|v| l.trim_start().starts_with(v)))
        .map(String::from)
        .collect()
}

/// The first line where two runs' stderr differ, for a readable failure.
fn first_difference(a: &[String], b: &[String]) -> String {
    match a.iter().zip(b).position(|(x, y)| x != y) {
        Some(i) => format!("line {i}: {:?} vs {:?}", a[i], b[i]),
        None => format!("{} lines vs {}", a.len(), b.len()),
    }
}

#[test]
fn killed_at_random_moments_and_resumed_the_run_ends_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    let input = input(dir.path());
    let reference = Files::new(dir.path(), "reference");
    let started = Instant::now();
    let (code, _, stderr) = reference.wait(reference.spawn(&input, &["--workers", "1"]));
    assert_eq!(code, 0, "{stderr}");
    let run_time = started.elapsed();
    let expected = reference.read();
    let expected_counts = counts(&stderr);
    assert!(expected_counts
        .iter()
        .any(|l| l.contains("rejected account_locked")));
    assert!(expected_counts
        .iter()
        .any(|l| l.contains("malformed record")));

    // Deterministic "random" moments, spread over a whole run.
    let mut seed: u64 = 0x5EED_1234_ABCD_0001;
    let mut moment = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        run_time.mul_f64((seed % 1_000) as f64 / 1_000.0 * 1.1)
    };
    let (mut kills, mut rounds) = (0, 0);
    while kills < 20 {
        rounds += 1;
        let files = Files::new(dir.path(), &format!("round-{rounds}"));
        let workers = ["0", "1", "3"][rounds % 3];
        let final_counts = loop {
            let mut child = files.spawn(&input, &["--resume", "--workers", workers]);
            let deadline = Instant::now() + moment();
            while Instant::now() < deadline && child.try_wait().unwrap().is_none() {
                std::thread::sleep(Duration::from_millis(2));
            }
            if child.try_wait().unwrap().is_none() {
                child.kill().unwrap(); // SIGKILL
                child.wait().unwrap();
                kills += 1;
                continue;
            }
            let (code, stdout, stderr) = files.wait(child);
            assert_eq!(stdout, "", "accounts go to -o");
            if code == 1 && stderr.contains("was already applied") {
                // Killed after saving its state, before removing its
                // checkpoint: the run had finished.
                break None;
            }
            assert_eq!(code, 0, "round {rounds}: {stderr}");
            break Some(counts(&stderr));
        };
        let got = files.read();
        assert!(got.0 == expected.0, "round {rounds}: accounts differ");
        assert!(got.1 == expected.1, "round {rounds}: rejects differ");
        assert!(got.2 == expected.2, "round {rounds}: state files differ");
        if let Some(final_counts) = final_counts {
            assert!(
                final_counts == expected_counts,
                "round {rounds}: stderr differs at {}",
                first_difference(&final_counts, &expected_counts)
            );
        }
        assert!(!checkpoint_left(&files.state), "round {rounds}");
        // The kills' temporaries and locks are gone with the clean run:
        // nothing but the state, its .prev and the outputs.
        let left: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".payments-engine-") || n.ends_with(".lock"))
            .collect();
        assert!(left.is_empty(), "round {rounds}: left behind: {left:?}");
        assert!(
            rounds < 60,
            "{kills} kills in {rounds} rounds: the runs are too short"
        );
    }
}

fn checkpoint_left(state: &Path) -> bool {
    let mut name = state.as_os_str().to_owned();
    name.push(".checkpoint");
    Path::new(&name).exists()
}

/// A named pipe at `dir/name.fifo`, for a run whose input the test feeds.
fn fifo(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(format!("{name}.fifo"));
    let status = Command::new("mkfifo").arg(&path).status().unwrap();
    assert!(status.success(), "mkfifo failed");
    path
}

/// Feeds `input` into `fifo`, which `child` reads, and sends it `signal`
/// (a `kill` name) midway, so that the run cannot have finished first: its
/// input is still open. Half the rows go in at once, then a few at a time
/// until `under_way()` holds (failing the test if it never does); then the
/// signal, then the rest, which the stopped run may not read.
fn feed_and_signal(
    fifo: &Path,
    input: &Path,
    child: &Child,
    signal: &str,
    under_way: impl Fn() -> bool,
) {
    use std::io::Write;
    let text = fs::read(input).unwrap();
    let lines: Vec<&[u8]> = text.split_inclusive(|&b| b == b'\n').collect();
    let (first, rest) = lines.split_at(lines.len() / 2);
    // Opening blocks until the run opens its end.
    let mut pipe = fs::OpenOptions::new().write(true).open(fifo).unwrap();
    pipe.write_all(&first.concat()).unwrap();
    let mut rest = rest.chunks(100);
    while !under_way() {
        let more = rest.next().expect("the run never got under way");
        pipe.write_all(&more.concat()).unwrap();
        std::thread::sleep(Duration::from_millis(2));
    }
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    // The run stops at its next record and closes the pipe: writes then
    // fail with a broken pipe, which is expected.
    for more in rest {
        if pipe.write_all(&more.concat()).is_err() {
            break;
        }
    }
}

#[test]
fn sigint_sigterm_and_sighup_stop_save_a_checkpoint_and_resume_identically() {
    let dir = tempfile::tempdir().unwrap();
    let input = input(dir.path());
    let reference = Files::new(dir.path(), "reference");
    assert_eq!(reference.wait(reference.spawn(&input, &[])).0, 0);
    let expected = reference.read();
    for (signal, code) in [("INT", 130), ("TERM", 143), ("HUP", 129)] {
        let files = Files::new(dir.path(), signal);
        fs::write(&files.output, "old accounts\n").unwrap();
        fs::write(&files.rejects, "old rejects\n").unwrap();
        let feed = fifo(dir.path(), signal);
        let child = files.spawn(&feed, &["--workers", "2"]);
        feed_and_signal(&feed, &input, &child, signal, || {
            checkpoint_left(&files.state)
        });
        let (got, stdout, stderr) = files.wait(child);
        assert_eq!(got, code, "{stderr}");
        assert_eq!(stdout, "");
        let last = stderr.lines().last().unwrap();
        assert!(
            last.starts_with(&format!(
                "payments-engine: stopped by SIG{signal} after line "
            )),
            "{stderr}"
        );
        assert!(last.contains("a checkpoint is saved: the same command with --resume"));
        assert_eq!(fs::read_to_string(&files.output).unwrap(), "old accounts\n");
        assert_eq!(fs::read_to_string(&files.rejects).unwrap(), "old rejects\n");
        assert!(
            !files.state.exists(),
            "a stopped run saves a checkpoint, not its state"
        );
        assert!(checkpoint_left(&files.state));
        let (code, _, stderr) = files.wait(files.spawn(&input, &["--resume", "--workers", "1"]));
        assert_eq!(code, 0, "{stderr}");
        assert!(
            files.read() == expected,
            "SIG{signal}: resumed outputs differ"
        );
        assert!(!checkpoint_left(&files.state));
    }
}

#[test]
fn a_signal_without_a_state_file_stops_and_saves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let input = input(dir.path());
    let files = Files::new(dir.path(), "plain");
    fs::write(&files.output, "old\n").unwrap();
    let feed = fifo(dir.path(), "plain");
    let child = Command::new(BIN)
        .args(["-o", files.output.to_str().unwrap(), feed.to_str().unwrap()])
        .stdout(fs::File::create(&files.stdout).unwrap())
        .stderr(fs::File::create(&files.stderr).unwrap())
        .spawn()
        .unwrap();
    feed_and_signal(&feed, &input, &child, "INT", || true);
    let (code, stdout, stderr) = files.wait(child);
    assert_eq!(code, 130, "{stderr}");
    assert_eq!(stdout, "");
    assert!(
        stderr.contains("nothing was saved (--state FILE makes a run resumable)"),
        "{stderr}"
    );
    assert_eq!(fs::read_to_string(&files.output).unwrap(), "old\n");
}

/// An idle standard input does not hide a stop or a fatal error: a signal
/// while the run waits for input stops it at once (at the last row read,
/// with a checkpoint), and a bad output path fails before any input comes.
#[test]
fn an_idle_stdin_stops_promptly() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.bin");
    let s = state.to_str().unwrap();
    let wait = |child: &mut Child| {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status.code();
            }
            assert!(Instant::now() < deadline, "no exit while stdin stays open");
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    // A bad -o with stdin open and silent: the run fails at once.
    let mut child = support::spawn(&["-o", "/nonexistent/dir/out.csv", "-"]);
    let _open = child.stdin.take().unwrap();
    assert_eq!(wait(&mut child), Some(1));
    // Two rows, then silence; SIGTERM.
    let mut child = support::spawn(&["--state", s, "-"]);
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(b"type,client,tx,amount\ndeposit,1,1,5\n")
        .unwrap();
    let lock = dir.path().join("state.bin.lock");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !lock.exists() {
        assert!(Instant::now() < deadline, "the run never started");
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(300));
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    assert_eq!(wait(&mut child), Some(143));
    drop(stdin);
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(
        stderr.contains("stopped by SIGTERM after line 2"),
        "{stderr}"
    );
    assert!(checkpoint_left(&state));
    // The same input, whole, with --resume: as if never stopped.
    let r = support::run(
        &["--state", s, "--resume", "-"],
        b"type,client,tx,amount\ndeposit,1,1,5\ndeposit,2,2,3\n",
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        r.stdout,
        "client,available,held,total,locked\n1,5.0000,0.0000,5.0000,false\n2,3.0000,0.0000,3.0000,false\n"
    );
}
