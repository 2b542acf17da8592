//! One run of the engine: open the input, stream rows through the parser and
//! the ledger, report every outcome, print the accounts. Environment failures
//! (I/O, a bad header, a strict-mode violation) come back as one error chain
//! for `main` to print; bad rows are outcomes, counted and reported.

use std::fs::File;
use std::io::{self, BufWriter, IsTerminal, Read, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use hdrhistogram::Histogram;

use crate::ledger::{Account, Book, Ledger};
use crate::parse::{Malformed, Parser};
use crate::report::{self, EventLog, Outcome, Tally, Verbosity};
use crate::tx::ClientId;

/// Where the transactions come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    Stdin,
    Path(PathBuf),
}

/// Everything a run needs to know, independent of how it was asked for.
#[derive(Clone, Debug)]
pub struct Options {
    pub input: Input,
    /// Worker threads of the sharded pipeline; 0 is the single-threaded path.
    pub workers: usize,
    /// Pin worker threads to cores (when there are enough cores).
    pub pin: bool,
    /// Print parse-to-applied latency percentiles on stderr.
    pub latency: bool,
    /// Test-only fault injection: the worker that gets this line panics.
    #[doc(hidden)]
    pub panic_at_line: Option<u64>,
    /// The first malformed record is fatal.
    pub strict: bool,
    /// Write every malformed or rejected record here.
    pub rejects: Option<PathBuf>,
    pub verbosity: Verbosity,
    /// Show a progress bar when stderr is a terminal and the input is large.
    pub progress: bool,
}

impl Options {
    /// A quiet run over a reader (tests, benches, fuzzing): nothing on
    /// stderr, no rejects file, no progress bar, workers not pinned.
    pub fn quiet(workers: usize) -> Options {
        Options {
            input: Input::Stdin,
            workers,
            pin: false,
            latency: false,
            panic_at_line: None,
            strict: false,
            rejects: None,
            verbosity: Verbosity::Quiet,
            progress: false,
        }
    }
}

/// Progress bar redraws per second.
const PROGRESS_HZ: u8 = 4;

/// Inputs at least this large get a progress bar (when stderr is a terminal).
const PROGRESS_MIN_BYTES: u64 = 64 * 1024 * 1024;

/// Runs the engine: accounts to `stdout`, diagnostics and summary to
/// `stderr`. Returns the tally of all rows.
pub fn run(
    options: &Options,
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
) -> anyhow::Result<RunStats> {
    if let (Input::Path(input), Some(rejects)) = (&options.input, &options.rejects) {
        // Creating the rejects file truncates it: never let that be the input.
        let same = std::fs::canonicalize(input)
            .ok()
            .is_some_and(|input| std::fs::canonicalize(rejects).ok() == Some(input));
        if same {
            bail!(
                "--rejects {} is the input file; refusing to overwrite it",
                rejects.display()
            );
        }
    }
    let (source, progress) = open_input(options)?;
    let stats = process(source, options, stdout, stderr);
    // Clear the bar before the summary, so the bar leaves no trace.
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    let stats = stats?;
    if options.verbosity != Verbosity::Quiet {
        let _ = stderr.write_all(stats.tally.summary(stats.elapsed).as_bytes());
    }
    if options.latency {
        let _ = writeln!(stderr, "{}", latency_text(stats.measures.latency.as_ref()));
    }
    if options.verbosity == Verbosity::Verbose {
        let m = &stats.measures;
        for note in &m.notes {
            let _ = writeln!(stderr, "  {note}");
        }
        let _ = writeln!(
            stderr,
            "  memory: {} accounts; {} stored deposits in {} bytes ({:.1} bytes each); tx-id set {} bytes",
            stats.accounts,
            m.deposits,
            m.deposit_bytes,
            m.deposit_bytes as f64 / m.deposits.max(1) as f64,
            m.id_set_bytes
        );
    }
    Ok(stats)
}

/// What a run did, for the summary.
#[derive(Clone, Debug)]
pub struct RunStats {
    pub tally: Tally,
    pub elapsed: Duration,
    pub accounts: usize,
    pub measures: Measures,
}

/// What an engine run measured about itself, for `--verbose` and `--latency`.
#[derive(Clone, Debug)]
pub struct Measures {
    /// Applied deposits kept for disputes, and the bytes their stores hold.
    pub deposits: usize,
    pub deposit_bytes: usize,
    pub id_set_bytes: usize,
    /// Parse-to-applied latency samples (the sharded pipeline only).
    pub latency: Option<Histogram<u64>>,
    /// Lines for `--verbose` (workers, pinning).
    pub notes: Vec<String>,
}

impl Measures {
    /// The figures of `books` (one, or one per worker) and the tx-id set.
    pub fn new<'a>(
        books: impl IntoIterator<Item = &'a Book>,
        id_set_bytes: usize,
        latency: Option<Histogram<u64>>,
        notes: Vec<String>,
    ) -> Measures {
        let (deposits, deposit_bytes) = books.into_iter().fold((0, 0), |(n, bytes), book| {
            (
                n + book.deposits().len(),
                bytes + book.deposits().heap_bytes(),
            )
        });
        Measures {
            deposits,
            deposit_bytes,
            id_set_bytes,
            latency,
            notes,
        }
    }
}

/// Runs the engine over `source` (`options.input` is not used): the whole
/// run except opening the input and printing the summary.
pub fn process(
    source: impl Read,
    options: &Options,
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
) -> anyhow::Result<RunStats> {
    let started = Instant::now();
    let mut rejects = match &options.rejects {
        Some(path) => {
            let file = File::create(path)
                .with_context(|| format!("cannot create rejects file {}", path.display()))?;
            let mut out = BufWriter::with_capacity(256 * 1024, file);
            out.write_all(report::REJECTS_HEADER.as_bytes())
                .with_context(|| format!("writing rejects file {}", path.display()))?;
            Some(out)
        }
        None => None,
    };

    let run = if options.workers == 0 {
        single_threaded(source, options)?
    } else {
        crate::pipeline::run(source, options, options.workers)?
    };

    let tally = report::finish(
        run.logs,
        stderr,
        rejects.as_mut().map(|w| w as &mut dyn Write),
    )
    .context("writing rejects file")?;
    if let (Some(out), Some(path)) = (rejects.as_mut(), &options.rejects) {
        out.flush()
            .with_context(|| format!("writing rejects file {}", path.display()))?;
    }
    match report::write_accounts(&run.accounts, BufWriter::with_capacity(256 * 1024, stdout)) {
        // `| head`: the reader has gone; that is not an error.
        Err(error) if error.kind() == io::ErrorKind::BrokenPipe => {}
        other => other.context("writing accounts to stdout")?,
    }
    Ok(RunStats {
        tally,
        elapsed: started.elapsed(),
        accounts: run.accounts.len(),
        measures: run.measures,
    })
}

/// What an engine run hands to reporting.
pub struct EngineRun {
    /// All accounts, sorted by client.
    pub accounts: Vec<(ClientId, Account)>,
    /// One log per source, each in its own line order.
    pub logs: Vec<EventLog>,
    pub measures: Measures,
}

/// Checks the strict-mode rule for a malformed row.
pub fn strict_check(options: &Options, line: u64, reason: Malformed) -> anyhow::Result<()> {
    if options.strict {
        bail!(
            "line {line}: malformed record: {} (--strict)",
            reason.describe()
        );
    }
    Ok(())
}

/// The single-threaded path (`--workers 0`): the baseline every speed-up is
/// measured against.
fn single_threaded(source: impl Read, options: &Options) -> anyhow::Result<EngineRun> {
    let mut log = EventLog::new(options.verbosity, options.rejects.is_some())
        .context("creating a spool file")?;
    let mut parser = Parser::new(source);
    let mut ledger = Ledger::new();
    while let Some(row) = parser.next_row().context("reading input")? {
        let (tx, outcome) = match row.parsed {
            Ok(tx) => match ledger.apply(tx) {
                Ok(()) => (Some(tx), Outcome::Applied),
                Err(reject) => (Some(tx), Outcome::Rejected(reject)),
            },
            Err(reason) => {
                strict_check(options, row.line, reason)?;
                (None, Outcome::Malformed(reason))
            }
        };
        log.record(row.line, tx.as_ref(), outcome, row.raw)
            .context("writing a spool file")?;
    }
    ledger.check_invariants();
    Ok(EngineRun {
        accounts: ledger.sorted_accounts(),
        logs: vec![log],
        measures: Measures::new(
            [ledger.book()],
            ledger.id_set_bytes(),
            None,
            vec!["workers: 0 (the single-threaded path)".into()],
        ),
    })
}

/// The `--latency` line: percentiles of the parse-to-applied time, in µs.
pub fn latency_text(histogram: Option<&Histogram<u64>>) -> String {
    match histogram {
        None => "latency: not measured on the single-threaded path (--workers 0)".into(),
        Some(h) if h.is_empty() => "latency: no samples".into(),
        Some(h) => {
            let us = |ns: u64| ns as f64 / 1_000.0;
            format!(
                "latency (parse to applied, first record of each batch, {} samples): \
                 p50 {:.1} us, p90 {:.1} us, p99 {:.1} us, p99.9 {:.1} us, max {:.1} us",
                h.len(),
                us(h.value_at_quantile(0.50)),
                us(h.value_at_quantile(0.90)),
                us(h.value_at_quantile(0.99)),
                us(h.value_at_quantile(0.999)),
                us(h.max()),
            )
        }
    }
}

/// Opens the input, wrapped in a progress bar where one is wanted.
fn open_input(
    options: &Options,
) -> anyhow::Result<(Box<dyn Read>, Option<indicatif::ProgressBar>)> {
    let (source, len): (Box<dyn Read>, Option<u64>) = match &options.input {
        Input::Stdin => (Box::new(io::stdin().lock()), None),
        Input::Path(path) => {
            let file = File::open(path)
                .with_context(|| format!("cannot open input {}", path.display()))?;
            let len = file
                .metadata()
                .ok()
                .filter(|m| m.is_file())
                .map(|m| m.len());
            (Box::new(file), len)
        }
    };
    let wanted = options.progress
        && options.verbosity != Verbosity::Quiet
        && io::stderr().is_terminal()
        && len.is_some_and(|len| len >= PROGRESS_MIN_BYTES);
    if !wanted {
        return Ok((source, None));
    }
    // A few redraws a second: each one wakes the terminal, which on a small
    // machine takes a core from the engine for a moment (perf.md, "Progress
    // bar").
    let target = indicatif::ProgressDrawTarget::stderr_with_hz(PROGRESS_HZ);
    let bar = indicatif::ProgressBar::with_draw_target(len, target);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .expect("valid progress template"),
    );
    Ok((Box::new(bar.wrap_read(source)), Some(bar)))
}
