//! `--cluster` on loopback: 1, 2 and 3 local processes give exactly what
//! one process gives (stdout, stderr but the elapsed time, the rejects
//! file, the exit status) over the fixtures, the adversarial corpus and a
//! 1M-row generated file; the other processes print nothing; a process
//! killed mid-run stops the others with an error; settings that differ and
//! a process that never comes are clear errors. Every process is killed
//! when a test ends, whatever happens.

mod support;

use std::fs;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::BIN;

/// A run must end within this; a hang fails the test.
const LIMIT: Duration = Duration::from_secs(120);

/// A host file of `n` free loopback ports.
fn hostfile(dir: &Path, n: usize) -> PathBuf {
    // Held together so that the ports differ, then freed for the processes.
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let text: String = listeners
        .iter()
        .map(|l| format!("{}\n", l.local_addr().unwrap()))
        .collect();
    let path = dir.join(format!(
        "hosts-{}",
        listeners[0].local_addr().unwrap().port()
    ));
    fs::write(&path, text).unwrap();
    path
}

/// Processes that are killed when dropped (a failed assertion included).
struct Processes(Vec<Child>);

impl Drop for Processes {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Processes {
    fn start(hosts: &Path, n: usize, args: &[&str], input: &Path) -> Processes {
        Processes::start_with(hosts, n, args, &[], input)
    }

    /// Like [`Processes::start`], with `root` given to process 0 only.
    fn start_with(hosts: &Path, n: usize, args: &[&str], root: &[&str], input: &Path) -> Processes {
        let children = (0..n)
            .map(|i| {
                Command::new(BIN)
                    .arg("--cluster")
                    .arg(hosts)
                    .args(["--process", &i.to_string()])
                    .args(args)
                    .args(if i == 0 { root } else { &[] })
                    .arg(input)
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        Processes(children)
    }

    /// Every process's output, in process order; fails past [`LIMIT`].
    fn wait(mut self) -> Vec<Output> {
        let children = std::mem::take(&mut self.0);
        let (send, receive) = std::sync::mpsc::channel();
        let ids: Vec<u32> = children.iter().map(Child::id).collect();
        std::thread::spawn(move || {
            let outputs: Vec<Output> = children
                .into_iter()
                .map(|c| c.wait_with_output().unwrap())
                .collect();
            let _ = send.send(outputs);
        });
        match receive.recv_timeout(LIMIT) {
            Ok(outputs) => outputs,
            Err(_) => {
                for id in ids {
                    let _ = Command::new("kill").args(["-9", &id.to_string()]).status();
                }
                panic!("a cluster run did not end within {LIMIT:?}");
            }
        }
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// stderr without the lines that describe the machine, not the input: the
/// elapsed time, `--verbose`'s notes on threads, memory and the state file,
/// and the line that names the state file and what it held.
fn timeless(stderr: &[u8]) -> String {
    const MACHINE: [&str; 7] = [
        "elapsed ",
        "workers: ",
        "parsers: ",
        "cluster: ",
        "memory: ",
        "state: ",
        "payments-engine: state ",
    ];
    text(stderr)
        .lines()
        .filter(|line| !MACHINE.iter().any(|m| line.trim_start().starts_with(m)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Runs `input` on one process (`--workers 0`) and on `n` local processes
/// with `args`, both with `common`; returns every difference.
fn differences(dir: &Path, input: &Path, n: usize, args: &[&str], common: &[&str]) -> Vec<String> {
    let single_rejects = dir.join("single.rejects.csv");
    let cluster_rejects = dir.join("cluster.rejects.csv");
    let _ = fs::remove_file(&cluster_rejects);
    let single = Command::new(BIN)
        .args(["--workers", "0", "--rejects"])
        .arg(&single_rejects)
        .args(common)
        .arg(input)
        .output()
        .unwrap();
    let mut cluster_args = args.to_vec();
    cluster_args.extend_from_slice(common);
    // Only process 0 is told about the rejects file: the others learn from
    // it that records must carry their lines.
    let root = ["--rejects", cluster_rejects.to_str().unwrap()];
    let hosts = hostfile(dir, n);
    let outputs = Processes::start_with(&hosts, n, &cluster_args, &root, input).wait();
    let how = format!("{} with {n} processes {args:?}", input.display());
    let mut found = Vec::new();
    let root = &outputs[0];
    if root.status.code() != single.status.code() {
        found.push(format!(
            "{how}: exit {:?}, not {:?}: {}",
            root.status.code(),
            single.status.code(),
            text(&root.stderr)
        ));
    }
    if root.stdout != single.stdout {
        found.push(format!(
            "{how}: stdout differs:\n{}---\n{}",
            text(&root.stdout),
            text(&single.stdout)
        ));
    }
    if timeless(&root.stderr) != timeless(&single.stderr) {
        found.push(format!(
            "{how}: stderr differs:\n{}---\n{}",
            text(&root.stderr),
            text(&single.stderr)
        ));
    }
    if single.status.success() && fs::read(&single_rejects).ok() != fs::read(&cluster_rejects).ok()
    {
        found.push(format!("{how}: rejects file differs"));
    }
    for (i, other) in outputs.iter().enumerate().skip(1) {
        // With --verbose they say when they are connected; nothing else.
        let said = text(&other.stderr)
            .lines()
            .filter(|l| !l.contains(": connected to "))
            .count();
        if !other.status.success() || !other.stdout.is_empty() || said > 0 {
            found.push(format!(
                "{how}: process {i} exit {:?}, stdout {:?}, stderr {:?}",
                other.status.code(),
                text(&other.stdout),
                text(&other.stderr)
            ));
        }
    }
    found
}

/// The `.csv` inputs of a test folder that have an expected output.
fn inputs(folder: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join(folder);
    let mut inputs: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap()
        .filter_map(|entry| {
            let path = entry.unwrap().path();
            let name = path
                .file_name()?
                .to_str()?
                .strip_suffix(".expected.csv")?
                .to_string();
            Some(path.with_file_name(format!("{name}.csv")))
        })
        .collect();
    inputs.sort();
    inputs
}

fn check_folder(folder: &str, at_least: usize) {
    let inputs = inputs(folder);
    assert!(
        inputs.len() >= at_least,
        "{} inputs in tests/{folder}",
        inputs.len()
    );
    let dir = tempfile::tempdir().unwrap();
    let mut found = Vec::new();
    for (i, input) in inputs.iter().enumerate() {
        // 1, 2 and 3 processes, blocks from one line up, 1 or 2 workers each.
        let (n, block, workers) = [
            (1, "1", "2"),
            (2, "16", "1"),
            (3, "1", "1"),
            (2, "1MiB", "2"),
            (3, "64", "2"),
        ][i % 5];
        let args = ["--block-size", block, "--workers", workers];
        found.extend(differences(dir.path(), input, n, &args, &[]));
        // And every third input with --strict or --verbose.
        let common: &[&str] = [&[][..], &["--strict"], &["--verbose"]][i % 3];
        let args = ["--block-size", "7", "--workers", "1"];
        found.extend(differences(dir.path(), input, 2 + i % 2, &args, common));
    }
    assert!(found.is_empty(), "{}", found.join("\n\n"));
}

#[test]
fn fixtures_give_what_one_process_gives() {
    check_folder("fixtures", 25);
}

#[test]
fn the_adversarial_corpus_gives_what_one_process_gives() {
    check_folder("adversarial", 40);
}

#[test]
fn a_generated_million_rows_give_what_one_process_gives() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("million.csv");
    fs::write(&input, support::datagen_input(1_000_000, 12)).unwrap();
    let mut found = Vec::new();
    for (n, block, workers) in [(2, "1MiB", "1"), (3, "300KiB", "1")] {
        let args = ["--block-size", block, "--workers", workers];
        found.extend(differences(dir.path(), &input, n, &args, &[]));
    }
    assert!(found.is_empty(), "{}", found.join("\n\n"));
}

#[test]
fn warnings_are_the_ones_a_single_run_gives() {
    let dir = tempfile::tempdir().unwrap();
    // A misspelt header column, then 1,200 malformed rows before a good one.
    let mut text = String::from("type,client,tx,amuont\n");
    for i in 1..=1200 {
        text.push_str(&format!("bogus,1,{i},1.0\n"));
    }
    text.push_str("deposit,1,5000,2.0\n");
    let input = dir.path().join("warned.csv");
    fs::write(&input, text).unwrap();
    let mut found = Vec::new();
    for n in [2, 3] {
        found.extend(differences(
            dir.path(),
            &input,
            n,
            &["--block-size", "100"],
            &[],
        ));
    }
    assert!(found.is_empty(), "{}", found.join("\n\n"));
}

/// The blocks at which all of `processes` have a checkpoint file beside
/// `state` (one worker each).
fn complete_checkpoints(state: &Path, processes: usize) -> Vec<u64> {
    let dir = state.parent().unwrap();
    let stem = state.file_name().unwrap().to_str().unwrap();
    let mut seen: std::collections::BTreeMap<u64, usize> = Default::default();
    for entry in fs::read_dir(dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        let Some(rest) = name.strip_prefix(&format!("{stem}.cluster-p")) else {
            continue;
        };
        // Temporaries (".payments-engine-*") are not checkpoints.
        if let Some((_, block)) = rest.split_once("-b") {
            *seen.entry(block.parse().unwrap()).or_default() += 1;
        }
    }
    seen.into_iter()
        .filter(|&(_, n)| n == processes)
        .map(|(block, _)| block)
        .collect()
}

#[test]
fn a_cluster_killed_after_a_checkpoint_resumes_to_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input.csv");
    fs::write(&input, support::datagen_input(300_000, 9)).unwrap();
    let state = dir.path().join("ledger.state");
    let state_arg = state.to_str().unwrap();
    let rejects = dir.path().join("cluster.rejects.csv");
    let single_rejects = dir.path().join("single.rejects.csv");
    let single = Command::new(BIN)
        .args(["--workers", "0", "-v", "--rejects"])
        .arg(&single_rejects)
        .arg(&input)
        .output()
        .unwrap();
    let hosts = hostfile(dir.path(), 3);
    let args = [
        "--workers",
        "1",
        "--block-size",
        "64KiB",
        "--state",
        state_arg,
        "--checkpoint-every",
        "10ms",
    ];
    let root = ["--rejects", rejects.to_str().unwrap(), "-v"];
    let mut first = Processes::start_with(&hosts, 3, &args, &root, &input);
    // Killed once every process has completed a checkpoint.
    let deadline = Instant::now() + LIMIT;
    while complete_checkpoints(&state, 3).is_empty() {
        assert!(Instant::now() < deadline, "no checkpoint within {LIMIT:?}");
        for (i, child) in first.0.iter_mut().enumerate() {
            assert!(
                child.try_wait().unwrap().is_none(),
                "process {i} ended before a checkpoint"
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(first); // SIGKILL, all three
    assert!(!complete_checkpoints(&state, 3).is_empty());

    // Without --resume the checkpoint is not silently dropped.
    let refused = Processes::start_with(&hosts, 3, &args, &root, &input).wait();
    for (i, out) in refused.iter().enumerate() {
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "process {i}: {stderr}");
        assert!(
            stderr.contains("--resume goes on from it"),
            "process {i}: {stderr}"
        );
    }

    let mut resumed_args = args.to_vec();
    resumed_args.push("--resume");
    // A checkpoint goes on only with what it was taken on: not another
    // block size, not another input of the same size.
    let mut other_block = resumed_args.clone();
    other_block[3] = "32KiB";
    let mut other_input = fs::read(&input).unwrap();
    let digit = other_input.len() / 2
        + other_input[other_input.len() / 2..]
            .iter()
            .position(u8::is_ascii_digit)
            .unwrap();
    other_input[digit] = if other_input[digit] == b'1' {
        b'2'
    } else {
        b'1'
    };
    let same_size = dir.path().join("same-size.csv");
    fs::write(&same_size, other_input).unwrap();
    for (args, input, what) in [
        (&other_block, &input, "another --block-size"),
        (&resumed_args, &same_size, "another input"),
    ] {
        let refused = Processes::start_with(&hosts, 3, args, &root, input).wait();
        for (i, out) in refused.iter().enumerate() {
            let stderr = text(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "process {i}: {stderr}");
            assert!(stderr.contains(what), "process {i}: {stderr}");
        }
    }
    let resumed = Processes::start_with(&hosts, 3, &resumed_args, &root, &input).wait();
    let stderr = text(&resumed[0].stderr);
    assert_eq!(resumed[0].status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("resumed from the checkpoint at block "),
        "{stderr}"
    );
    assert_eq!(text(&resumed[0].stdout), text(&single.stdout));
    assert_eq!(timeless(&resumed[0].stderr), timeless(&single.stderr));
    assert_eq!(
        fs::read(&rejects).unwrap(),
        fs::read(&single_rejects).unwrap()
    );
    for (i, out) in resumed.iter().enumerate().skip(1) {
        assert_eq!(
            out.status.code(),
            Some(0),
            "process {i}: {}",
            text(&out.stderr)
        );
    }
    let left = fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains(".cluster-p")
        })
        .count();
    assert_eq!(left, 0, "checkpoints are removed after the run");
}

#[test]
fn state_carries_across_cluster_runs_as_across_single_runs() {
    let dir = tempfile::tempdir().unwrap();
    let (single_state, cluster_state) = (
        dir.path().join("single.state"),
        dir.path().join("cluster.state"),
    );
    for (i, seed) in [31, 32].into_iter().enumerate() {
        let input = dir.path().join(format!("day{i}.csv"));
        fs::write(&input, support::datagen_input(20_000, seed)).unwrap();
        let single = Command::new(BIN)
            .args(["--workers", "0", "--state"])
            .arg(&single_state)
            .arg(&input)
            .output()
            .unwrap();
        assert!(single.status.success(), "{}", text(&single.stderr));
        let hosts = hostfile(dir.path(), 2 + i);
        let args = [
            "--workers",
            "1",
            "--block-size",
            "4KiB",
            "--state",
            cluster_state.to_str().unwrap(),
        ];
        let outputs = Processes::start(&hosts, 2 + i, &args, &input).wait();
        assert_eq!(
            outputs[0].status.code(),
            Some(0),
            "{}",
            text(&outputs[0].stderr)
        );
        assert_eq!(text(&outputs[0].stdout), text(&single.stdout), "run {i}");
        assert_eq!(
            timeless(&outputs[0].stderr),
            timeless(&single.stderr),
            "run {i}"
        );
        // The state file is canonical: the same bytes however the run went.
        assert_eq!(
            fs::read(&cluster_state).unwrap(),
            fs::read(&single_state).unwrap(),
            "run {i}"
        );
    }
}

/// Waits for `child`'s exit; `None` past `limit`.
fn exit_within(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

#[test]
fn a_peer_killed_mid_run_stops_the_others_with_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("big.csv");
    // Long enough that the run is still going when the peer is killed.
    fs::write(&input, support::datagen_input(3_000_000, 5)).unwrap();
    let hosts = hostfile(dir.path(), 3);
    let mut processes = Processes::start(
        &hosts,
        3,
        &["-v", "--block-size", "64KiB", "--workers", "1"],
        &input,
    );
    // Process 2 says when it is connected: the run is under way.
    let stderr = processes.0[2].stderr.take().unwrap();
    let mut line = String::new();
    BufReader::new(stderr).read_line(&mut line).unwrap();
    assert!(line.contains("connected to 2 other processes"), "{line}");
    processes.0[2].kill().unwrap();
    for i in [0, 1] {
        let child = &mut processes.0[i];
        let status = exit_within(child, Duration::from_secs(10))
            .unwrap_or_else(|| panic!("process {i} still running 10 s after its peer was killed"));
        assert_eq!(status.code(), Some(1), "process {i}");
        let mut stderr = String::new();
        std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
        let errors: Vec<&str> = stderr
            .lines()
            .filter(|l| l.starts_with("payments-engine: error:"))
            .collect();
        assert_eq!(errors.len(), 1, "process {i}: {stderr}");
        assert!(
            errors[0].contains("lost the connection to process "),
            "{stderr}"
        );
        assert!(!stderr.contains("panicked"), "no panic trace: {stderr}");
        let mut stdout = String::new();
        std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut stdout).unwrap();
        assert!(stdout.is_empty(), "no accounts after a failure: {stdout}");
    }
}

#[test]
fn a_process_that_never_comes_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let input = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/transactions.csv");
    let hosts = hostfile(dir.path(), 2);
    for process in ["0", "1"] {
        let out = Command::new(BIN)
            .arg("--cluster")
            .arg(&hosts)
            .args(["--process", process, "--connect-timeout", "1s"])
            .arg(&input)
            .output()
            .unwrap();
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(out.stdout.is_empty());
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.starts_with("payments-engine: error: process "),
            "{stderr}"
        );
        assert!(stderr.contains("within 1s (--connect-timeout)"), "{stderr}");
    }
}

#[test]
fn processes_with_different_settings_refuse_to_run() {
    let dir = tempfile::tempdir().unwrap();
    let input = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/transactions.csv");
    let hosts = hostfile(dir.path(), 2);
    let start = |process: &str, workers: &str| {
        Command::new(BIN)
            .arg("--cluster")
            .arg(&hosts)
            .args([
                "--process",
                process,
                "--workers",
                workers,
                "--connect-timeout",
                "20s",
            ])
            .arg(&input)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let processes = Processes(vec![start("0", "1"), start("1", "2")]);
    for (i, out) in processes.wait().iter().enumerate() {
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "process {i}: {stderr}");
        assert!(stderr.contains("--workers"), "process {i}: {stderr}");
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn usage_errors_name_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let hosts = hostfile(dir.path(), 2);
    let hosts = hosts.to_str().unwrap();
    let sample = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/transactions.csv");
    let r = support::run(&["--cluster", hosts, sample], b"");
    assert_eq!(r.code, 2, "--process is required: {}", r.stderr);
    let r = support::run(&["--cluster", hosts, "--process", "2", sample], b"");
    r.assert_fatal("--process 2 is not a line of host file");
    let r = support::run(
        &["--cluster", hosts, "--process", "0", "-"],
        b"deposit,1,1,1\n",
    );
    r.assert_fatal("not standard input");
    let r = support::run(
        &["--cluster", "/nonexistent/hosts", "--process", "0", sample],
        b"",
    );
    r.assert_fatal("cannot read host file /nonexistent/hosts");
}

#[test]
fn tools_cluster_sh_prints_what_process_0_prints() {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new("bash")
        .arg(format!("{root}/tools/cluster.sh"))
        .args([
            "3",
            &format!("{root}/examples/transactions.csv"),
            "--workers",
            "1",
            "--block-size",
            "1KiB",
            "-q",
        ])
        .env("PAYMENTS_ENGINE", BIN)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let expected =
        fs::read_to_string(format!("{root}/examples/transactions.expected.csv")).unwrap();
    assert_eq!(text(&out.stdout), expected);
    // A failing run's status comes back.
    let out = Command::new("bash")
        .arg(format!("{root}/tools/cluster.sh"))
        .args([
            "2",
            &format!("{root}/examples/transactions.csv"),
            "--strict",
        ])
        .env("PAYMENTS_ENGINE", BIN)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("(--strict)"),
        "{}",
        text(&out.stderr)
    );
}

/// A generated input of `rows` rows in `dir`, and what one process prints
/// for it.
fn input_and_single(dir: &Path, rows: u64, seed: u64) -> (PathBuf, String) {
    let input = dir.join("input.csv");
    fs::write(&input, support::datagen_input(rows, seed)).unwrap();
    let single = Command::new(BIN)
        .args(["--workers", "0", "-q"])
        .arg(&input)
        .output()
        .unwrap();
    (input, text(&single.stdout))
}

/// Process 0 failing to commit (`-o /dev/full`) keeps every process's
/// checkpoints, and `--resume` goes on from them to the same bytes.
#[test]
fn checkpoints_outlive_a_failed_commit_on_process_0() {
    let dir = tempfile::tempdir().unwrap();
    let (input, single) = input_and_single(dir.path(), 200_000, 4);
    let state = dir.path().join("ledger.state");
    let hosts = hostfile(dir.path(), 3);
    let args = [
        "--workers",
        "1",
        "--block-size",
        "64KiB",
        "--state",
        state.to_str().unwrap(),
        "--checkpoint-every",
        "1ms",
        "--connect-timeout",
        "3s",
        "-q",
    ];
    let failed = Processes::start_with(&hosts, 3, &args, &["-o", "/dev/full"], &input).wait();
    let stderr = text(&failed[0].stderr);
    assert_eq!(failed[0].status.code(), Some(1), "{stderr}");
    assert!(!state.exists(), "no state was committed: {stderr}");
    assert!(
        !complete_checkpoints(&state, 3).is_empty(),
        "every process kept its checkpoints"
    );
    let mut resumed_args = args.to_vec();
    resumed_args.push("--resume");
    let resumed = Processes::start(&hosts, 3, &resumed_args, &input).wait();
    for (i, out) in resumed.iter().enumerate() {
        assert_eq!(
            out.status.code(),
            Some(0),
            "process {i}: {}",
            text(&out.stderr)
        );
    }
    assert_eq!(text(&resumed[0].stdout), single);
    assert!(state.exists());
    assert!(
        complete_checkpoints(&state, 1).is_empty(),
        "removed once committed"
    );
}

/// A secret file for `--cluster-secret`.
fn secret(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, text).unwrap();
    path
}

/// Processes prove they hold the same `--cluster-secret` before anything
/// else: the same secret runs, a different one on one side is refused on
/// both, and without a secret a host file may name only loopback addresses.
#[test]
fn processes_authenticate_with_the_cluster_secret() {
    let dir = tempfile::tempdir().unwrap();
    let sample = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/transactions.csv"
    ));
    let expected = fs::read_to_string(sample.with_extension("expected.csv")).unwrap();
    let (one, other) = (
        secret(dir.path(), "one", "0123456789abcdef0123\n"),
        secret(dir.path(), "other", "fedcba98765432100123\n"),
    );
    let hosts = hostfile(dir.path(), 2);
    let with = |s: &Path| vec!["--cluster-secret".to_string(), s.display().to_string()];
    let start = |i: usize, extra: Vec<String>| {
        Command::new(BIN)
            .arg("--cluster")
            .arg(&hosts)
            .args(["--process", &i.to_string(), "--connect-timeout", "3s", "-q"])
            .args(extra)
            .arg(sample)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let same = Processes(vec![start(0, with(&one)), start(1, with(&one))]).wait();
    assert_eq!(same[0].status.code(), Some(0), "{}", text(&same[0].stderr));
    assert_eq!(text(&same[0].stdout), expected);
    let differ = Processes(vec![start(0, with(&one)), start(1, with(&other))]).wait();
    for (i, out) in differ.iter().enumerate() {
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "process {i}: {stderr}");
        assert!(stderr.contains("--cluster-secret"), "process {i}: {stderr}");
    }
    let short = secret(dir.path(), "short", "tiny\n");
    let r = support::run(
        &[
            "--cluster",
            hosts.to_str().unwrap(),
            "--process",
            "0",
            "--cluster-secret",
            short.to_str().unwrap(),
            sample.to_str().unwrap(),
        ],
        b"",
    );
    r.assert_fatal("use at least 16 random bytes");
    // A documentation address (never contacted: refused before any
    // connection) in a host file without a secret.
    let remote = dir.path().join("remote-hosts");
    fs::write(&remote, "127.0.0.1:1\n192.0.2.1:7000\n").unwrap();
    let r = support::run(
        &[
            "--cluster",
            remote.to_str().unwrap(),
            "--process",
            "0",
            sample.to_str().unwrap(),
        ],
        b"",
    );
    r.assert_fatal("not a loopback address");
}

/// Connections that are not a process of the run (silent, garbage) reach
/// process 0 first: they are dropped and the run forms and ends as usual.
#[test]
fn silent_and_garbage_connections_do_not_stall_the_cluster() {
    use std::io::Write;
    use std::net::TcpStream;
    let dir = tempfile::tempdir().unwrap();
    let sample = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/transactions.csv"
    ));
    let expected = fs::read_to_string(sample.with_extension("expected.csv")).unwrap();
    let hosts = hostfile(dir.path(), 2);
    let address = fs::read_to_string(&hosts)
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .to_string();
    let start = |i: usize| {
        Command::new(BIN)
            .arg("--cluster")
            .arg(&hosts)
            .args([
                "--process",
                &i.to_string(),
                "--connect-timeout",
                "20s",
                "-q",
            ])
            .arg(sample)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let first = start(0);
    let deadline = Instant::now() + LIMIT;
    let silent = loop {
        match TcpStream::connect(&address) {
            Ok(stream) => break stream,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => panic!("process 0 never listened: {e}"),
        }
    };
    let mut garbage = TcpStream::connect(&address).unwrap();
    garbage.write_all(&[0xFF; 40]).unwrap();
    let mut huge = TcpStream::connect(&address).unwrap();
    huge.write_all(b"PAYENG\x00\x02").unwrap();
    huge.write_all(&(1u64 << 40).to_le_bytes()).unwrap();
    let outputs = Processes(vec![first, start(1)]).wait();
    for (i, out) in outputs.iter().enumerate() {
        assert_eq!(
            out.status.code(),
            Some(0),
            "process {i}: {}",
            text(&out.stderr)
        );
    }
    assert_eq!(text(&outputs[0].stdout), expected);
    drop((silent, garbage, huge));
}

/// A signal on one process stops every process at once (each exits 128 +
/// the signal, with one line saying so), and `--resume` goes on from the
/// last checkpoint they all completed, to the bytes of one run.
#[test]
fn a_signal_on_one_process_stops_every_process_and_resume_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let (input, single) = input_and_single(dir.path(), 300_000, 11);
    let state = dir.path().join("ledger.state");
    let hosts = hostfile(dir.path(), 3);
    let args = [
        "--workers",
        "1",
        "--block-size",
        "16KiB",
        "--state",
        state.to_str().unwrap(),
        "--checkpoint-every",
        "1ms",
        "-q",
    ];
    let run = Processes::start(&hosts, 3, &args, &input);
    let deadline = Instant::now() + LIMIT;
    while complete_checkpoints(&state, 3).is_empty() {
        assert!(Instant::now() < deadline, "no checkpoint within {LIMIT:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
    let signalled = Command::new("kill")
        .args(["-TERM", &run.0[1].id().to_string()])
        .status()
        .unwrap();
    assert!(signalled.success());
    for (i, out) in run.wait().iter().enumerate() {
        let stderr = text(&out.stderr);
        if out.status.code() == Some(0) {
            // The run had ended before the signal came: nothing to resume.
            assert_eq!(
                text(&out.stdout),
                if i == 0 { single } else { String::new() }
            );
            return;
        }
        assert_eq!(out.status.code(), Some(143), "process {i}: {stderr}");
        assert!(
            stderr.contains("stopped by SIGTERM, every process at once"),
            "process {i}: {stderr}"
        );
        assert!(out.stdout.is_empty());
    }
    assert!(
        !complete_checkpoints(&state, 3).is_empty(),
        "the checkpoints stay"
    );
    let mut resumed_args = args.to_vec();
    resumed_args.push("--resume");
    let resumed = Processes::start(&hosts, 3, &resumed_args, &input).wait();
    for (i, out) in resumed.iter().enumerate() {
        assert_eq!(
            out.status.code(),
            Some(0),
            "process {i}: {}",
            text(&out.stderr)
        );
    }
    assert_eq!(text(&resumed[0].stdout), single);
}

/// A cluster killed at random moments (one process, or all of them), then
/// started again with `--resume` until a run finishes, ends with the bytes
/// of one uninterrupted run.
#[test]
fn a_cluster_killed_at_random_moments_resumes_to_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let (input, single) = input_and_single(dir.path(), 150_000, 21);
    let state = dir.path().join("ledger.state");
    let hosts = hostfile(dir.path(), 3);
    let args = [
        "--workers",
        "1",
        "--block-size",
        "16KiB",
        "--state",
        state.to_str().unwrap(),
        "--checkpoint-every",
        "1ms",
        "--connect-timeout",
        "10s",
        "--resume",
        "-q",
    ];
    // Deterministic "random" moments and victims.
    let mut seed: u64 = 0x0C1A_57E2_0000_0001;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let (mut kills, mut runs) = (0, 0);
    let stdout = loop {
        runs += 1;
        assert!(
            runs < 30,
            "{kills} kills in {runs} runs: the run never finished"
        );
        let mut cluster = Processes::start(&hosts, 3, &args, &input);
        if kills < 5 {
            std::thread::sleep(Duration::from_millis(next() % 2_000));
            match next() % 4 {
                // All of them.
                0 => cluster.0.iter_mut().for_each(|c| drop(c.kill())),
                // One of them; the others see it go.
                n => drop(cluster.0[n as usize - 1].kill()),
            }
            kills += 1;
        }
        let outputs = cluster.wait();
        let stderr = text(&outputs[0].stderr);
        match outputs[0].status.code() {
            Some(0) => break text(&outputs[0].stdout),
            // Killed after it committed, before the others ended: done.
            Some(1) if stderr.contains("was already applied") => break String::new(),
            _ => {}
        }
    };
    if !stdout.is_empty() {
        assert_eq!(stdout, single, "after {kills} kills");
    }
    // Whatever the kills, the state is the one a single run saves, byte for
    // byte, and it records the input once.
    let single_state = dir.path().join("single.state");
    let saved = support::run(
        &[
            "--state",
            single_state.to_str().unwrap(),
            "-q",
            input.to_str().unwrap(),
        ],
        b"",
    );
    assert_eq!(saved.code, 0, "{}", saved.stderr);
    assert!(
        fs::read(&state).unwrap() == fs::read(&single_state).unwrap(),
        "state files differ"
    );
    let again = support::run(
        &["--state", state.to_str().unwrap(), input.to_str().unwrap()],
        b"",
    );
    again.assert_fatal("was already applied");
}
