//! The binary's contract with its user: exit statuses, fatal errors, strict
//! mode, stderr diagnostics and summary, the rejects file, a closed stdout.

mod support;

use std::io::{Read, Write};
use std::process::{Command, Stdio};

use support::{run, spawn, BIN};

const HEADER: &str = "client,available,held,total,locked\n";

#[test]
fn sample_file_from_the_readme_runs() {
    let sample = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/transactions.csv");
    let expected = include_str!("../examples/transactions.expected.csv");
    let r = run(&[sample], b"");
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout, expected);
    // Every row type and some rejections appear in the sample.
    r.assert_stderr_has(&[
        "summary: 324 rows read = 245 applied + 76 rejected + 3 malformed\n",
        "line 12: withdrawal of 97.4700 for client 2 rejected: insufficient funds\n",
        "rejected account_locked     38\n",
    ]);
}

#[test]
fn usage_errors_exit_2_and_name_the_program() {
    for args in [
        &["--no-such-flag", "x.csv"][..],
        &["--workers", "many", "x.csv"],
        &["--workers", "257", "x.csv"],
        &["-q", "-v", "x.csv"],
    ] {
        let r = run(args, b"");
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
        assert!(r.stdout.is_empty());
        assert!(
            r.stderr.starts_with("payments-engine: error: "),
            "{args:?}: {}",
            r.stderr
        );
    }
    let r = run(&["--version"], b"");
    assert_eq!(r.code, 0);
    assert!(r.stdout.starts_with("payments-engine "), "{}", r.stdout);
}

#[test]
fn help_explains_the_cli() {
    let r = run(&["--help"], b"");
    assert_eq!(r.code, 0);
    for needle in [
        "--workers",
        "--strict",
        "--rejects",
        "--quiet",
        "--verbose",
        "Exit status",
        "[INPUT]...",
    ] {
        assert!(
            r.stdout.contains(needle),
            "help lacks {needle}:\n{}",
            r.stdout
        );
    }
}

#[test]
fn unreadable_input_is_fatal_with_one_clear_message() {
    let r = run(&["/no/such/file.csv"], b"");
    r.assert_fatal("cannot open input /no/such/file.csv");
    assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);

    // A directory is named as one.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_str().unwrap();
    for workers in ["0", "1"] {
        let r = run(&["--workers", workers, path], b"");
        r.assert_fatal(&format!(
            "payments-engine: error: input {path} is a directory; name a CSV file in it\n"
        ));
        assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
    }
}

#[test]
fn a_spool_that_cannot_be_created_reads_the_same_on_both_paths() {
    let mut messages = Vec::new();
    for workers in ["0", "1", "3"] {
        let out = Command::new(BIN)
            .args(["--workers", workers, "--rejects", "/dev/null", "-"])
            .env("TMPDIR", "/no/such/tmpdir")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(out.stdout.is_empty());
        messages.push(stderr);
    }
    assert_eq!(
        messages[0],
        "payments-engine: error: creating a spool file: No such file or directory (os error 2)\n"
    );
    assert!(messages.iter().all(|m| *m == messages[0]), "{messages:?}");
}

#[test]
fn bad_header_is_fatal_and_prints_no_accounts() {
    let r = run(&["-"], b"type,client,amount\ndeposit,1,1\n");
    r.assert_fatal("line 1: bad header: missing column `tx`");

    let r = run(&["-"], b"\n\ntype,client,tx,tx\n");
    r.assert_fatal("line 3: bad header: column `tx` appears more than once");
}

#[test]
fn strict_mode_makes_the_first_malformed_record_fatal() {
    let input =
        b"type,client,tx,amount\ndeposit,1,1,1\nwithdrawal,1,2,5\ndeposit,1,3,abc\ndeposit,1,4,1\n";
    let r = run(&["--strict", "-"], input);
    r.assert_fatal("line 4: malformed record");
    assert!(r.stderr.contains("--strict"), "{}", r.stderr);
    // Rejections by the rules are not malformed: strict lets them through.
    let r = run(
        &["--strict", "-q", "-"],
        b"type,client,tx,amount\ndeposit,1,1,1\nwithdrawal,1,2,5\n",
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout, format!("{HEADER}1,1.0000,0.0000,1.0000,false\n"));
}

#[test]
fn strict_mode_is_fatal_in_the_pipeline_too() {
    let mut input = String::from("type,client,tx,amount\n");
    for tx in 0..50_000 {
        input.push_str(&format!("deposit,{},{tx},1\n", tx % 100));
    }
    input.push_str("deposit,1,x,1\n");
    for workers in ["1", "2", "4"] {
        let r = run(&["--strict", "--workers", workers, "-"], input.as_bytes());
        r.assert_fatal("line 50002: malformed record");
    }
}

#[test]
fn verbose_reports_workers_and_latency_is_printed_on_request() {
    let input = b"deposit,1,1,1\nwithdrawal,2,2,1\n";
    let r = run(
        &["--verbose", "--latency", "--workers", "2", "--no-pin", "-"],
        input,
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    r.assert_stderr_has(&[
        "workers: 2, not pinned (--no-pin)",
        "latency (parse to applied",
        "p99.9",
    ]);
    let r = run(&["--latency", "--workers", "0", "-"], input);
    assert!(
        r.stderr
            .contains("latency: not measured on the single-threaded path"),
        "{}",
        r.stderr
    );
}

#[test]
fn default_stderr_shows_diagnostics_and_a_summary_that_adds_up() {
    let mut input = String::from("type,client,tx,amount\ndeposit,1,1,1\n");
    for tx in 2..=14 {
        input.push_str(&format!("withdrawal,1,{tx},2.0\n"));
    }
    input.push_str("bogus,1,99,1\ndispute,1,77,\n");
    let r = run(&["-"], input.as_bytes());
    assert_eq!(r.code, 0);
    assert!(
        r.stderr
            .contains("line 3: withdrawal of 2.0000 for client 1 rejected: insufficient funds\n"),
        "{}",
        r.stderr
    );
    let shown = r
        .stderr
        .lines()
        .filter(|l| l.contains("insufficient funds"))
        .count();
    assert_eq!(shown, 10, "capped at 10 per reason:\n{}", r.stderr);
    assert!(r
        .stderr
        .contains("further insufficient_funds rows are not shown"));
    r.assert_stderr_has(&[
        "line 16: malformed record: type is not",
        "line 17: dispute of tx 77 for client 1 rejected: unknown tx",
        "summary: 16 rows read = 1 applied + 14 rejected + 1 malformed",
        "rejected insufficient_funds 13",
        "rejected unknown_tx         1",
        "rows/s",
    ]);

    let verbose = run(&["--verbose", "-"], input.as_bytes());
    assert_eq!(
        verbose
            .stderr
            .lines()
            .filter(|l| l.contains("insufficient funds"))
            .count(),
        13
    );
    let quiet = run(&["--quiet", "-"], input.as_bytes());
    assert_eq!(quiet.stderr, "");
    assert_eq!(quiet.stdout, r.stdout);
    assert_eq!(verbose.stdout, r.stdout);
}

#[test]
fn rejects_file_lists_every_row_in_line_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rejects.csv");
    let input = b"type,client,tx,amount\ndeposit,1,1,1\ndeposit,1,1,1\n\ndeposit,1,2,\"1,5\"\nwithdrawal,2,3,1\n";
    let r = run(&["-q", "--rejects", path.to_str().unwrap(), "-"], input);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let rejects = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        rejects,
        "line,reason,detail,record\n\
         3,duplicate_tx,tx 1 was already used by a deposit or withdrawal,\"deposit,1,1,1\"\n\
         5,malformed,amount is not a plain positive decimal,\"deposit,1,2,\"\"1,5\"\"\"\n\
         6,insufficient_funds,withdrawal of 1.0000 exceeds the available funds,\"withdrawal,2,3,1\"\n"
    );
}

#[test]
fn rejects_file_may_not_be_the_input() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.csv");
    std::fs::write(&input, "deposit,1,1,1\n").unwrap();
    let same = dir.path().join(".").join("in.csv");
    let r = run(
        &["--rejects", same.to_str().unwrap(), input.to_str().unwrap()],
        b"",
    );
    r.assert_fatal("is the input file");
    assert_eq!(
        std::fs::read_to_string(&input).unwrap(),
        "deposit,1,1,1\n",
        "input untouched"
    );
}

#[test]
fn unwritable_rejects_file_is_fatal() {
    let r = run(
        &["--rejects", "/no/such/dir/rejects.csv", "-"],
        b"deposit,1,1,1\n",
    );
    r.assert_fatal("cannot create rejects file");
}

#[test]
#[cfg_attr(
    not(target_os = "linux"),
    ignore = "needs /dev/full, a Linux device that fails every write"
)]
fn full_disk_on_rejects_is_fatal_and_prints_no_accounts() {
    let mut input = String::new();
    for tx in 0..100_000 {
        input.push_str(&format!("withdrawal,1,{tx},1\n"));
    }
    for workers in ["0", "2"] {
        let args = ["-q", "--workers", workers, "--rejects", "/dev/full", "-"];
        let r = run(&args, input.as_bytes());
        r.assert_fatal("payments-engine: error: writing rejects file");
        r.assert_stderr_has(&["No space left on device"]);
    }
}

#[test]
fn closed_stdout_ends_quietly() {
    // Many clients, so the accounts output is larger than a pipe buffer.
    let mut input = String::new();
    for client in 0..=65_535u32 {
        input.push_str(&format!("deposit,{client},{client},1.5\n"));
    }
    let mut child = spawn(&["-q", "-"]);
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    // Read one line, then close stdout, like `| head -1`.
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 10];
    stdout.read_exact(&mut first).unwrap();
    drop(stdout);
    writer.join().unwrap().unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(&first, b"client,ava");
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
}

#[test]
fn workers_flag_gives_identical_output() {
    let input = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/dispute_misuse.csv"
    ))
    .unwrap();
    let baseline = run(&["-q", "--workers", "0", "-"], &input);
    for workers in ["1", "2", "3", "4", "8", "16"] {
        let r = run(&["-q", "--workers", workers, "-"], &input);
        assert_eq!(r.code, 0);
        assert_eq!(r.stdout, baseline.stdout, "--workers {workers}");
    }
}

#[test]
fn parsers_and_block_sizes_give_identical_output_and_verbose_says_so() {
    let sample = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/transactions.csv");
    let baseline = run(&["--workers", "0", "--parsers", "0", sample], b"");
    assert_eq!(baseline.code, 0, "{}", baseline.stderr);
    for (workers, parsers, block) in [("0", "1", "1"), ("1", "2", "64"), ("3", "3", "1KiB")] {
        let args = [
            "--workers",
            workers,
            "--parsers",
            parsers,
            "--block-size",
            block,
            sample,
        ];
        let r = run(&args, b"");
        assert_eq!(r.code, 0, "{args:?}: {}", r.stderr);
        assert_eq!(r.stdout, baseline.stdout, "{args:?}");
        let timeless = |text: &str| {
            let lines = text.lines().filter(|line| !line.contains("elapsed"));
            lines.collect::<Vec<_>>().join("\n")
        };
        assert_eq!(timeless(&r.stderr), timeless(&baseline.stderr), "{args:?}");
    }
    let r = run(
        &["-v", "--parsers", "2", "--block-size", "100", sample],
        b"",
    );
    r.assert_stderr_has(&[
        "parsers: 2, blocks of 100 bytes, cut by a reader thread and read by the parsers at their offsets",
    ]);
    // Standard input is read in order by the reader thread.
    let input = std::fs::read(sample).unwrap();
    let r = run(
        &["-v", "--parsers", "2", "--block-size", "100", "-"],
        &input,
    );
    r.assert_stderr_has(&["parsers: 2, blocks of 100 bytes, and a reader thread"]);
    assert_eq!(r.stdout, baseline.stdout);
    // A plain file parsed on the calling thread is mapped, unless told not.
    let r = run(&["-v", "--parsers", "0", sample], b"");
    r.assert_stderr_has(&["parsers: 0 (parsing on the calling thread, the input mapped)"]);
    assert_eq!(r.stdout, baseline.stdout);
    let r = run(&["-v", "--parsers", "0", "--no-mmap", sample], b"");
    r.assert_stderr_has(&["parsers: 0 (parsing on the calling thread)"]);
    assert_eq!(r.stdout, baseline.stdout);
    let r = run(&["-v", "--parsers", "0", "-"], &input);
    r.assert_stderr_has(&["parsers: 0 (parsing on the calling thread)"]);
    assert_eq!(r.stdout, baseline.stdout);
    for args in [
        &["--parsers", "257", sample][..],
        &["--parsers", "-1", sample],
        &["--block-size", "0", sample],
        &["--block-size", "2GiB", sample],
    ] {
        let r = run(args, b"");
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
        assert!(
            r.stderr.starts_with("payments-engine: error: "),
            "{}",
            r.stderr
        );
    }
}

#[test]
fn arbitrary_bytes_never_panic() {
    // A deterministic spray of hostile inputs; a panic exits 101.
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    let alphabet = b"deposit,withdrawal,dispute,resolve,chargeback,type,client,tx,amount\"\r\n\t .-+e0123456789\xEF\xBB\xBF\x00\xFF";
    for _ in 0..200 {
        let mut input = Vec::new();
        for _ in 0..(seed % 2_000) as usize {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            input.push(alphabet[(seed % alphabet.len() as u64) as usize]);
        }
        let r = run(&["-q", "-"], &input);
        assert!(
            r.code == 0 || r.code == 1,
            "exit {} on {:?}: {}",
            r.code,
            String::from_utf8_lossy(&input),
            r.stderr
        );
        if r.code == 0 {
            assert!(r.stdout.starts_with(HEADER));
        } else {
            assert!(r.stdout.is_empty());
            assert!(r.stderr.contains("bad header"), "{}", r.stderr);
        }
    }
}

#[test]
fn output_file_gets_the_accounts_and_stdout_stays_empty() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("accounts.csv");
    let r = run(
        &["-q", "-o", out.to_str().unwrap(), "-"],
        b"deposit,1,1,2.5\n",
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout, "");
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        format!("{HEADER}1,2.5000,0.0000,2.5000,false\n")
    );
    // Nothing but the two files is left in the directory.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn a_failed_run_leaves_existing_output_and_rejects_files_as_they_were() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("accounts.csv");
    let rejects = dir.path().join("rejects.csv");
    std::fs::write(&out, "yesterday's accounts\n").unwrap();
    std::fs::write(&rejects, "yesterday's rejects\n").unwrap();
    let (o, j) = (out.to_str().unwrap(), rejects.to_str().unwrap());
    let failing: [(&[&str], &[u8], &str); 3] = [
        (&[], b"type,client,amount\ndeposit,1,1\n", "bad header"),
        (
            &["--strict"],
            b"deposit,1,1,1\nwithdrawal,1,2,9\ndeposit,1,x,1\n",
            "line 3: malformed record",
        ),
        (
            &["--workers", "3", "--strict"],
            b"deposit,1,1,oops\n",
            "line 1",
        ),
    ];
    for (extra, input, message) in failing {
        let mut args = vec!["-o", o, "--rejects", j];
        args.extend_from_slice(extra);
        args.push("-");
        let r = run(&args, input);
        r.assert_fatal(message);
        assert_eq!(
            std::fs::read_to_string(&out).unwrap(),
            "yesterday's accounts\n"
        );
        assert_eq!(
            std::fs::read_to_string(&rejects).unwrap(),
            "yesterday's rejects\n"
        );
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            2,
            "no temporaries left"
        );
    }
}

#[test]
fn output_paths_may_not_be_the_input_or_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.csv");
    std::fs::write(&input, "deposit,1,1,1\n").unwrap();
    let i = input.to_str().unwrap();
    let r = run(&["-o", i, i], b"");
    r.assert_fatal("--output");
    r.assert_stderr_has(&["is the input file"]);
    let other = dir.path().join("x.csv");
    let x = other.to_str().unwrap();
    let r = run(&["-o", x, "--rejects", x, i], b"");
    r.assert_fatal("--output and --rejects both name");
    assert_eq!(std::fs::read_to_string(&input).unwrap(), "deposit,1,1,1\n");
    assert!(!other.exists());
}

#[test]
fn concurrent_runs_on_one_rejects_file_leave_one_whole_file() {
    let dir = tempfile::tempdir().unwrap();
    let shared = dir.path().join("rejects.csv");
    // Two inputs whose every row is rejected, with different texts.
    let input = |client: u32| {
        let mut text = String::new();
        for tx in 0..200_000 {
            text.push_str(&format!("withdrawal,{client},{tx},1\n"));
        }
        text
    };
    let expected: Vec<String> = [1, 2]
        .iter()
        .map(|&client| {
            let alone = dir.path().join(format!("alone-{client}.csv"));
            let r = run(
                &["-q", "--rejects", alone.to_str().unwrap(), "-"],
                input(client).as_bytes(),
            );
            assert_eq!(r.code, 0, "{}", r.stderr);
            std::fs::read_to_string(alone).unwrap()
        })
        .collect();
    for round in 0..3 {
        let path = shared.to_str().unwrap().to_string();
        let runs: Vec<_> = [1, 2]
            .into_iter()
            .map(|client| {
                let (path, text) = (path.clone(), input(client));
                std::thread::spawn(move || run(&["-q", "--rejects", &path, "-"], text.as_bytes()))
            })
            .collect();
        for handle in runs {
            assert_eq!(handle.join().unwrap().code, 0);
        }
        let got = std::fs::read_to_string(&shared).unwrap();
        assert!(
            expected.contains(&got),
            "round {round}: the rejects file mixes the two runs ({} bytes)",
            got.len()
        );
    }
}

#[test]
fn gzip_and_zstd_inputs_print_what_the_plain_file_prints() {
    let plain = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/transactions.csv"
    ))
    .unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&plain).unwrap();
    let mut gz = gz.finish().unwrap();
    // Two gzip members, as `cat a.gz b.gz` makes: still one input.
    let mut second = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    second.write_all(b"deposit,777,99999,1\n").unwrap();
    let two_members = [gz.clone(), second.finish().unwrap()].concat();
    let zst = zstd::encode_all(&plain[..], 3).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let expected = run(&["-q", "-"], &plain);
    assert_eq!(expected.code, 0);
    for (name, bytes) in [
        ("in.csv.gz", &gz),
        ("in.csv.zst", &zst),
        ("no-extension", &zst),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let r = run(&["-q", path.to_str().unwrap()], b"");
        assert_eq!(r.stdout, expected.stdout, "{name}");
        let r = run(&["-q", "--workers", "2", "-"], bytes);
        assert_eq!(r.stdout, expected.stdout, "{name} on stdin");
    }
    let r = run(&["-q", "-"], &two_members);
    assert!(
        r.stdout.contains("777,1.0000,0.0000,1.0000,false"),
        "{}",
        r.stdout
    );
    // A corrupt gzip stream is an input error, not rows of garbage.
    gz.truncate(gz.len() / 2);
    run(&["-"], &gz).assert_fatal("reading input");
}

#[test]
fn other_compressed_formats_get_a_hint_not_a_run_of_malformed_rows() {
    for (magic, format) in [
        (&b"BZh91AY&SY"[..], "bzip2"),
        (b"\xFD7zXZ\x00\x00", "xz"),
        (b"PK\x03\x04\x14\x00", "zip"),
    ] {
        let r = run(&["-"], magic);
        r.assert_fatal(&format!("standard input is {format}-compressed"));
        r.assert_stderr_has(&["decompress it first"]);
    }
}

/// Runs the engine with `args` and `--summary-json`; the summary it wrote.
fn summary_of(args: &[&str]) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("summary.json");
    let mut all = vec!["-q", "--summary-json", path.to_str().unwrap()];
    all.extend_from_slice(args);
    let r = run(&all, b"");
    assert_eq!(r.code, 0, "{}", r.stderr);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

#[test]
fn summary_json_adds_up_and_names_every_reason() {
    let dir = tempfile::tempdir().unwrap();
    let sample = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/transactions.csv");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&std::fs::read(sample).unwrap()).unwrap();
    let gz_path = dir.path().join("sample.csv.gz");
    std::fs::write(&gz_path, gz.finish().unwrap()).unwrap();
    for (input, format, workers) in [
        (sample, "plain", "0"),
        (gz_path.to_str().unwrap(), "gzip", "2"),
    ] {
        let json = summary_of(&["--workers", workers, input]);
        let n = |key: &str| json[key].as_u64().unwrap();
        assert_eq!(n("rows_read"), 324);
        assert_eq!(
            n("rows_read"),
            n("applied") + n("rejected") + n("malformed")
        );
        let sum = |key: &str| -> u64 {
            json[key]
                .as_object()
                .unwrap()
                .values()
                .map(|v| v.as_u64().unwrap())
                .sum()
        };
        assert_eq!(sum("rejected_by_reason"), n("rejected"));
        assert_eq!(sum("malformed_by_reason"), n("malformed"));
        assert_eq!(json["rejected_by_reason"]["account_locked"], 38);
        assert_eq!(json["rejected_by_reason"].as_object().unwrap().len(), 7);
        assert_eq!(json["malformed_by_reason"].as_object().unwrap().len(), 12);
        assert_eq!(json["input"]["format"], format);
        assert_eq!(json["input"]["path"], input);
        assert_eq!(json["workers"], workers.parse::<u64>().unwrap());
        assert!(json["elapsed_s"].as_f64().unwrap() > 0.0);
        assert!(json["memory"]["stored_deposits"].as_u64().unwrap() > 0);
        // The key is there only with --latency.
        assert!(json.get("latency_us").is_none(), "{json}");
        assert_eq!(json["account_count"], json["accounts"]);
        assert!(json["account_count"].as_u64().unwrap() > 0);
        assert_eq!(json["version"], 1);
        assert_eq!(json["program"]["name"], "payments-engine");
        assert_eq!(json["program"]["version"], env!("CARGO_PKG_VERSION"));
        assert!(json["program"].get("commit").is_some(), "{json}");
        assert_eq!(json["inputs"][0], json["input"]);
        assert_eq!(json["input"]["rows_read"], 324);
    }
    // The text summary breaks malformed rows down by reason too.
    let r = run(&[sample], b"");
    r.assert_stderr_has(&["  malformed "]);
}

/// Every role's threads are counted, and their CPU time (each thread's own
/// clock) does not add up to more than the process's.
#[test]
fn summary_json_reports_threads_and_cpu_per_role() {
    let sample = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/transactions.csv");
    for (parsers, workers, reader) in [("0", "0", 0), ("2", "3", 1), ("1", "1", 1)] {
        let json = summary_of(&["--parsers", parsers, "--workers", workers, sample]);
        let roles = &json["cpu_by_role"];
        let threads = |role: &str| roles[role]["threads"].as_u64().unwrap();
        assert_eq!(threads("main"), 1, "{roles}");
        assert_eq!(threads("reader"), reader, "{roles}");
        assert_eq!(
            threads("parser"),
            parsers.parse::<u64>().unwrap(),
            "{roles}"
        );
        assert_eq!(
            threads("worker"),
            workers.parse::<u64>().unwrap(),
            "{roles}"
        );
        if cfg!(target_os = "linux") {
            let process = json["cpu_s"].as_f64().unwrap();
            let roles_sum: f64 = ["main", "reader", "parser", "worker"]
                .iter()
                .map(|role| roles[role]["cpu_s"].as_f64().unwrap())
                .sum();
            assert!(roles["main"]["cpu_s"].as_f64().unwrap() > 0.0, "{roles}");
            // The process's clock is read a moment before main's.
            assert!(roles_sum <= process + 0.005, "{roles} > {process}");
        }
        // Waits are wall time inside the run: at most the run's time per
        // thread, and none with no thread to wait on.
        let elapsed = json["elapsed_s"].as_f64().unwrap();
        for role in ["main", "reader", "parser", "worker"] {
            for kind in ["input", "room", "peers"] {
                let waited = roles[role][format!("{kind}_wait_s")].as_f64().unwrap();
                let bound = threads(role) as f64 * elapsed + 0.005;
                assert!((0.0..=bound).contains(&waited), "{role} {kind}: {roles}");
                if workers == "0" {
                    assert_eq!(waited, 0.0, "{role} {kind}: {roles}");
                }
            }
        }
    }
}

#[test]
fn header_typos_are_warned_about_before_the_run() {
    let r = run(&["-"], b"type,client,tx,amout\ndeposit,1,1,1\n");
    assert_eq!(r.code, 0);
    let first = r.stderr.lines().next().unwrap();
    assert_eq!(
        first,
        "payments-engine: warning: line 1: header column `amout` looks like `amount`, \
         which is missing: every deposit and withdrawal will be malformed"
    );
    let r = run(&["-"], b"type,client,tx\ndeposit,1,1\n");
    r.assert_stderr_has(&["warning: line 1: the header has no `amount` column"]);
    let r = run(&["-"], b"Typ,client,tx,amount\ndeposit,1,1,1\n");
    r.assert_stderr_has(&["warning: line 1 looks like a header with `typ` for `type`"]);
    run(&["-"], b"type,clinet,tx,amount\n")
        .assert_fatal("missing column `client` (is `clinet` meant to be `client`?)");
    // Quiet means quiet.
    let r = run(&["-q", "-"], b"type,client,tx,amout\ndeposit,1,1,1\n");
    assert_eq!(r.stderr, "");
    // A good header says nothing.
    let r = run(&["-"], b"type,client,tx,amount\ndeposit,1,1,1\n");
    assert!(!r.stderr.contains("warning"), "{}", r.stderr);
}

#[test]
fn an_input_whose_first_thousand_rows_are_malformed_is_called_out_early() {
    let mut input = String::new();
    for n in 0..1_500 {
        input.push_str(&format!("{n},deposit,1,1\n"));
    }
    let r = run(&["-"], input.as_bytes());
    assert_eq!(r.code, 0);
    let warning = r.stderr.lines().find(|l| l.contains("warning")).unwrap();
    assert!(
        warning.starts_with("payments-engine: warning: the first 1000 rows are all malformed"),
        "{warning}"
    );
    // It comes before the diagnostics and the summary.
    assert!(r.stderr.starts_with(warning));
    let mut mixed = input.clone();
    mixed.insert_str(0, "deposit,1,1,1\n");
    assert!(!run(&["-"], mixed.as_bytes()).stderr.contains("warning"));
}

#[test]
fn fail_on_malformed_exits_3_after_a_complete_run() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.csv");
    let o = out.to_str().unwrap();
    let r = run(
        &["--fail-on-malformed", "-o", o, "-"],
        b"deposit,1,1,1\ndeposit,1,2,x\n",
    );
    assert_eq!(r.code, 3, "{}", r.stderr);
    r.assert_stderr_has(&["payments-engine: 1 row was malformed (--fail-on-malformed)"]);
    assert!(
        std::fs::read_to_string(&out).unwrap().contains("1,1.0000"),
        "outputs written"
    );
    let r = run(
        &["--fail-on-malformed", "-"],
        b"deposit,1,1,1\nwithdrawal,1,2,5\n",
    );
    assert_eq!(r.code, 0, "rejections are not malformed rows");
    assert_eq!(run(&["--fail-on-malformed", "--strict", "-"], b"").code, 2);
}

#[test]
fn completions_man_page_and_version_are_generated() {
    for shell in ["bash", "zsh", "fish"] {
        let r = run(&["--completions", shell], b"");
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert!(r.stdout.contains("checkpoint-every"), "{shell}");
    }
    let r = run(&["--man-page"], b"");
    assert_eq!(r.code, 0);
    assert!(r.stdout.starts_with(".ie"), "roff");
    assert!(r.stdout.contains("payments\\-engine"));
    assert_eq!(
        run(&["--completions", "bash", "x.csv"], b"").code,
        2,
        "exclusive"
    );
    // Built from git, --version names the commit.
    let r = run(&["--version"], b"");
    let version = r.stdout.trim();
    assert!(version.starts_with("payments-engine 0."), "{version}");
    let in_git = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.git")).exists();
    assert_eq!(version.contains(" ("), in_git, "{version}");
    let r = run(&["--help"], b"");
    assert!(
        r.stdout
            .contains("Examples:\n  payments-engine transactions.csv"),
        "{}",
        r.stdout
    );
}

/// A file of deposits with random-looking ids over all of u32: the state
/// grows by tens of bytes a row.
fn scattered_deposits(rows: u64) -> Vec<u8> {
    datagen::generate_vec(datagen::Config {
        rows,
        seed: 9,
        mix: datagen::Mix::parse("1,0,0,0,0").unwrap(),
        ids: datagen::IdOrder::Sparse,
        ..datagen::Config::default()
    })
}

/// Out of memory is a fatal error like any other: one line naming the line
/// reached, exit 1, nothing on stdout, outputs untouched; never an abort.
#[test]
fn running_out_of_memory_is_one_clean_error() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("scattered.csv");
    std::fs::write(&input, scattered_deposits(1_500_000)).unwrap();
    let out = dir.path().join("accounts.csv");
    std::fs::write(&out, "old\n").unwrap();
    let (i, o) = (input.to_str().unwrap(), out.to_str().unwrap());
    let check = |r: &support::Run, how: &str| {
        assert_eq!(r.code, 1, "{how}: {}", r.stderr);
        assert!(r.stdout.is_empty(), "{how}");
        assert_eq!(r.stderr.lines().count(), 1, "{how}: {}", r.stderr);
        assert!(
            r.stderr
                .starts_with("payments-engine: error: out of memory after line "),
            "{how}: {}",
            r.stderr
        );
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "old\n", "{how}");
    };
    for workers in ["0", "3"] {
        let r = run(
            &[
                "-q",
                "--max-memory",
                "8MiB",
                "--workers",
                workers,
                "-o",
                o,
                i,
            ],
            b"",
        );
        check(&r, "--max-memory 8MiB");
        assert!(
            r.stderr.contains("the budget is 8.0 MiB (--max-memory)"),
            "{}",
            r.stderr
        );
    }
    // Under an address-space limit the system refuses: the same clean line.
    // (A header-only input needs under 30 MiB of address space here.)
    let limited = std::process::Command::new("prlimit")
        .args([
            &format!("--as={}", 48 << 20),
            support::BIN,
            "-q",
            "-o",
            o,
            i,
        ])
        .output()
        .expect("prlimit (util-linux) runs");
    let r = support::Run {
        stdout: String::from_utf8_lossy(&limited.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&limited.stderr).into_owned(),
        code: limited.status.code().unwrap_or(-1),
    };
    check(&r, "prlimit --as=48MiB");
    assert!(r.stderr.contains("the system refused them"), "{}", r.stderr);
}

/// Every `tools/*.sh` answers `--help` and `-h` with its usage (exit 0) and
/// no arguments with its usage line (exit 2), from any directory, before it
/// builds or writes anything.
#[test]
fn every_tool_script_guards_its_arguments() {
    let tools = concat!(env!("CARGO_MANIFEST_DIR"), "/tools");
    let mut scripts: Vec<_> = std::fs::read_dir(tools)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "sh"))
        .collect();
    scripts.sort();
    assert!(scripts.len() >= 8, "{scripts:?}");
    let elsewhere = std::env::temp_dir();
    let bash = |script: &std::path::Path, args: &[&str]| {
        Command::new("bash")
            .arg(script)
            .args(args)
            .current_dir(&elsewhere)
            .env_remove("PAYMENTS_ENGINE")
            .output()
            .unwrap()
    };
    for script in &scripts {
        let name = script.file_name().unwrap().to_str().unwrap();
        for flag in ["--help", "-h"] {
            let out = bash(script, &[flag]);
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert_eq!(out.status.code(), Some(0), "{name} {flag}: {stdout}");
            assert!(
                stdout.contains(&format!("tools/{name} ")),
                "{name} {flag} shows no usage:\n{stdout}"
            );
        }
        let out = bash(script, &[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {stderr}");
        assert!(
            stderr.starts_with(&format!("usage: tools/{name} ")),
            "{name}: {stderr}"
        );
    }
}
