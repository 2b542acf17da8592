//! What users pipe in and how many inputs they name: standard input without
//! an INPUT, `-` outputs on stdout, several inputs applied in order (against
//! the library run input after input), the line that says what the state
//! file did, and warnings about a file that is not comma-separated.

mod support;

use std::io::Write;
use std::time::{Duration, Instant};

use payments_engine::{EngineBuilder, Ledger, Verbosity};
use support::{run, run_csv_from, spawn};

/// Two datagen inputs written to `dir`, and what the library makes of them
/// one after the other: the accounts, and each input's stderr and rejects.
fn two_inputs(dir: &std::path::Path) -> ([String; 2], support::Outputs, [support::Outputs; 2]) {
    let input = |rows, seed| {
        datagen::generate_vec(datagen::Config {
            rows,
            seed,
            malformed_rate: 0.01,
            duplicate_rate: 0.01,
            ..datagen::Config::default()
        })
    };
    let (a, b) = (input(3_000, 1), input(2_000, 2));
    let paths = ["a.csv", "b.csv"].map(|name| dir.join(name).to_str().unwrap().to_string());
    std::fs::write(&paths[0], &a).unwrap();
    std::fs::write(&paths[1], &b).unwrap();
    let engine = EngineBuilder::new()
        .workers(0)
        .diagnostics(Verbosity::Verbose);
    let (first, ledger) = run_csv_from(&engine, Ledger::new(), &a).unwrap();
    let (second, _) = run_csv_from(&engine, ledger, &b).unwrap();
    let (last, _) = run_csv_from(&engine, Ledger::new(), b"").unwrap();
    let accounts = support::Outputs {
        stdout: second.stdout.clone(),
        ..last
    };
    (paths, accounts, [first, second])
}

#[test]
fn several_inputs_apply_in_order_and_name_their_rows() {
    let dir = tempfile::tempdir().unwrap();
    let (paths, expected, each) = two_inputs(dir.path());
    let rejects = dir.path().join("rejects.csv");
    for workers in ["0", "2"] {
        let args = [
            "--workers",
            workers,
            "-v",
            "--rejects",
            rejects.to_str().unwrap(),
            &paths[0],
            &paths[1],
        ];
        let r = run(&args, b"");
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert_eq!(r.stdout, expected.stdout);
        // Each input's diagnostics, in order, each line naming its input.
        let mut lines = String::new();
        let mut rows = String::from("input,line,reason,detail,record\n");
        for (path, outputs) in paths.iter().zip(&each) {
            for line in outputs.stderr.lines() {
                let line = line.strip_prefix("line ").unwrap();
                lines.push_str(&format!("{path}:{line}\n"));
            }
            for row in outputs.rejects.lines().skip(1) {
                rows.push_str(&format!("{path},{row}\n"));
            }
        }
        assert!(lines.lines().count() > 10, "{lines}");
        assert!(r.stderr.starts_with(&lines), "{}", r.stderr);
        assert_eq!(std::fs::read_to_string(&rejects).unwrap(), rows);
        let total = each[0].tally.rows_read() + each[1].tally.rows_read();
        r.assert_stderr_has(&[&format!("summary: {total} rows read = ")]);
    }
}

#[test]
fn several_inputs_are_recorded_one_by_one_in_the_state_and_the_summary() {
    let dir = tempfile::tempdir().unwrap();
    let (paths, expected, each) = two_inputs(dir.path());
    let state = dir.path().join("ledger.state");
    let state = state.to_str().unwrap();
    let json = dir.path().join("run.json");
    let json_arg = json.to_str().unwrap();
    let r = run(
        &[
            "--state",
            state,
            "--summary-json",
            json_arg,
            &paths[0],
            &paths[1],
        ],
        b"",
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout, expected.stdout);
    r.assert_stderr_has(&[&format!("payments-engine: state {state}: new")]);
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let inputs = summary["inputs"].as_array().unwrap();
    assert_eq!(inputs.len(), 2);
    for (k, input) in inputs.iter().enumerate() {
        assert_eq!(input["path"], paths[k].as_str());
        assert_eq!(input["rows_read"], each[k].tally.rows_read());
    }
    assert_eq!(summary["state"]["inputs"], 2);
    // Each input is recorded on its own: either one again is a replay.
    for path in &paths {
        let r = run(&["--state", state, path], b"");
        r.assert_fatal("was already applied to state file");
    }
    let r = run(&["--state", state, "-"], b"type,client,tx,amount\n");
    assert_eq!(r.code, 0, "{}", r.stderr);
    r.assert_stderr_has(&[&format!(
        "payments-engine: state {state}: loaded (2 inputs recorded, "
    )]);
    // Naming one file twice is a replay too, refused before anything runs.
    let fresh = dir.path().join("fresh.state");
    let r = run(
        &["--state", fresh.to_str().unwrap(), &paths[0], &paths[0]],
        b"",
    );
    r.assert_fatal("was already applied");
    assert!(!fresh.exists());
}

#[test]
fn standard_input_without_an_input_argument_and_dash_outputs() {
    let csv = b"type,client,tx,amount\ndeposit,1,1,2.5\nwithdrawal,1,2,9\n";
    let expected = "client,available,held,total,locked\n1,2.5000,0.0000,2.5000,false\n";
    let r = run(&[], csv);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout, expected);
    let r = run(&["-o", "-"], csv);
    assert_eq!(r.stdout, expected);
    let dir = tempfile::tempdir().unwrap();
    let accounts = dir.path().join("accounts.csv");
    let accounts = accounts.to_str().unwrap();
    let r = run(&["-o", accounts, "--summary-json", "-"], csv);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let json: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(json["rows_read"], 2);
    assert_eq!(json["input"]["path"], serde_json::Value::Null);
    assert_eq!(std::fs::read_to_string(accounts).unwrap(), expected);
    let r = run(&["-o", accounts, "--rejects", "-"], csv);
    assert_eq!(
        r.stdout,
        "line,reason,detail,record\n3,insufficient_funds,withdrawal of 9.0000 exceeds the \
         available funds,\"withdrawal,1,2,9\"\n"
    );
    assert!(!dir.path().join("-").exists());
    // Two outputs cannot share stdout.
    let r = run(&["--rejects", "-"], csv);
    assert_eq!(r.code, 2, "{}", r.stderr);
    r.assert_stderr_has(&["would all go to stdout"]);
}

#[test]
fn the_state_line_says_new_or_loaded_and_quiet_hides_it() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("s.state");
    let state = state.to_str().unwrap();
    let day = |n: u32| format!("type,client,tx,amount\ndeposit,{n},{n},1\n");
    let r = run(&["--state", state, "-"], day(1).as_bytes());
    r.assert_stderr_has(&[&format!(
        "payments-engine: state {state}: new (no such file yet): starting from an empty ledger\n"
    )]);
    let r = run(&["--state", state, "-"], day(2).as_bytes());
    r.assert_stderr_has(&[&format!(
        "payments-engine: state {state}: loaded (1 input recorded, 1 account, 1 deposit)\n"
    )]);
    let r = run(&["-q", "--state", state, "-"], day(3).as_bytes());
    assert_eq!(r.code, 0);
    assert_eq!(r.stderr, "");
}

#[test]
fn a_state_file_in_a_missing_directory_fails_before_the_input_is_read() {
    // Standard input stays open: the run must not wait for it.
    let mut child = spawn(&["--state", "/nonexistent/dir/ledger.state", "-"]);
    let mut stdin = child.stdin.take().unwrap();
    // (It may have failed already: then the write meets a closed pipe.)
    let _ = stdin.write_all(b"type,client,tx,amount\n");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "still waiting for its input"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    drop(stdin);
    assert_eq!(status.code(), Some(1));
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("directory /nonexistent/dir does not exist"),
        "{stderr}"
    );
}

#[test]
fn a_file_that_is_not_comma_separated_is_called_out() {
    for (text, name) in [
        ("type;client;tx;amount\ndeposit;1;1;5\n", "semicolon"),
        ("type\tclient\ttx\tamount\ndeposit\t1\t1\t5\n", "tab"),
    ] {
        let r = run(&["-"], text.as_bytes());
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert!(
            r.stderr.starts_with(&format!(
                "payments-engine: warning: line 1 has no comma but 3 {name}s: the input looks \
                 {name}-separated"
            )),
            "{}",
            r.stderr
        );
    }
    let r = run(&["-"], b"kind,who,id,value\ndeposit,1,1,5\n");
    r.assert_stderr_has(&["line 1 looks like a header but names none of the columns"]);
    // A plain file says nothing.
    let r = run(&["-"], b"type,client,tx,amount\ndeposit,1,1,5\n");
    assert!(!r.stderr.contains("warning"), "{}", r.stderr);
}
