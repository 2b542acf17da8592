//! The binary's environment around the engine: open the input (with a
//! progress bar), create the rejects file, run the engine, print the
//! accounts, the diagnostics and the summary. Environment failures (I/O, a
//! bad header, a strict-mode violation) come back as one error chain for
//! `main` to print; bad rows are outcomes, counted and reported.

use std::fs::File;
use std::io::{self, BufWriter, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use payments_engine::cluster::{self, ClusterOptions};
use payments_engine::durable::{self, AtomicFile, Control, InputId, Resume, StateFile};
use payments_engine::{EngineBuilder, Ledger, Malformed, Measures, Reject, Tally, Verbosity};

/// Where the transactions come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    Stdin,
    Path(PathBuf),
}

/// One run as the command line asked for it: the input, the engine's
/// settings, and what to write where.
#[derive(Clone, Debug)]
pub struct Options {
    pub input: Input,
    /// Workers, pinning, strict mode. What the engine keeps for reports
    /// follows from `verbosity` and `rejects`.
    pub engine: EngineBuilder,
    /// Write the accounts here instead of stdout (atomically).
    pub output: Option<PathBuf>,
    /// Write every malformed or rejected record here (atomically).
    pub rejects: Option<PathBuf>,
    /// Per-row lines and the summary on stderr.
    pub verbosity: Verbosity,
    /// Print parse-to-applied latency percentiles on stderr.
    pub latency: bool,
    /// Show a progress bar when stderr is a terminal and the input is large.
    pub progress: bool,
    /// Write a JSON summary of the run here (atomically).
    pub summary_json: Option<PathBuf>,
    /// A completed run with a malformed row exits with
    /// [`EXIT_MALFORMED`] instead of 0.
    pub fail_on_malformed: bool,
    /// Load the ledger's state from here (when it exists) and save it back.
    pub state: Option<PathBuf>,
    /// Apply an input the state file records as applied already.
    pub allow_replay: bool,
    /// With a state file: how often to save a checkpoint (`None`: only when
    /// stopped by a signal).
    pub checkpoint_every: Option<Duration>,
    /// With a state file: go on from a pending checkpoint.
    pub resume: bool,
    /// Run as one process of a cluster (`--cluster`).
    pub cluster: Option<ClusterOptions>,
}

/// The exit status of a completed run that had malformed rows, with
/// `--fail-on-malformed`.
pub const EXIT_MALFORMED: u8 = 3;

/// Progress bar redraws per second.
const PROGRESS_HZ: u8 = 4;

/// Inputs at least this large get a progress bar (when stderr is a terminal).
const PROGRESS_MIN_BYTES: u64 = 64 * 1024 * 1024;

/// Runs the engine: accounts to `stdout`, diagnostics and summary to
/// `stderr`. Returns what the run did.
pub fn run(
    options: &Options,
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
) -> anyhow::Result<RunStats> {
    check_output_paths(options)?;
    // A cluster process stops at a signal's default action: the others see
    // it go, and --resume goes on from the last checkpoint.
    let stop = match options.cluster {
        Some(_) => Arc::new(AtomicUsize::new(0)),
        None => stop_on_signals().context("installing signal handlers")?,
    };
    let (source, progress) = match &options.cluster {
        Some(member) => {
            crate::budget::tune_allocator_for_dataflow();
            let started = Instant::now();
            let facts = cluster_input(options)?;
            // Every process but 0 does its share and prints nothing.
            if member.process != 0 {
                cluster::run(
                    member,
                    input_path(options),
                    cluster_settings(options),
                    &mut |_| {},
                )?;
                return Ok(RunStats {
                    tally: Tally::default(),
                    elapsed: started.elapsed(),
                    account_count: 0,
                    measures: Measures::default(),
                    state: None,
                    input: facts,
                });
            }
            ((Box::new(io::empty()) as Box<dyn Read + Send>, facts), None)
        }
        None => open_input(options)?,
    };
    let stats = process(source, options, stop, progress.clone(), stdout, stderr);
    // Clear the bar before the summary, so the bar leaves no trace.
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    let stats = stats?;
    if options.verbosity != Verbosity::Quiet {
        let _ = stderr.write_all(stats.tally.summary(stats.elapsed).as_bytes());
    }
    if options.latency {
        let _ = writeln!(stderr, "{}", stats.measures.latency_text());
    }
    if options.verbosity == Verbosity::Verbose {
        let m = &stats.measures;
        for note in &m.notes {
            let _ = writeln!(stderr, "  {note}");
        }
        let per_deposit = |bytes: usize| bytes as f64 / m.deposits.max(1) as f64;
        let _ = writeln!(
            stderr,
            "  memory: state {} bytes ({:.1} bytes per stored deposit): {} stored deposits in {} \
             bytes, tx-id set {} bytes, {} accounts in {} bytes; peak RSS {}",
            m.state_bytes(),
            per_deposit(m.state_bytes()),
            m.deposits,
            m.deposit_bytes,
            m.id_set_bytes,
            stats.account_count,
            m.account_bytes,
            peak_rss_bytes().map_or("unknown".into(), |b| format!("{} bytes", b)),
        );
        if let (Some(path), Some(saved)) = (&options.state, &stats.state) {
            let _ = writeln!(
                stderr,
                "  state: {} holds {} inputs in {} bytes ({:.1} bytes per stored deposit)",
                path.display(),
                saved.inputs,
                saved.bytes,
                saved.bytes as f64 / m.deposits.max(1) as f64,
            );
        }
    }
    Ok(stats)
}

/// SIGINT and SIGTERM stop the run at the next record boundary (the
/// returned flag holds the signal's number); a second one ends the process
/// at once, with the usual status (128 + the signal).
fn stop_on_signals() -> io::Result<Arc<AtomicUsize>> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    use signal_hook::flag;
    let stop = Arc::new(AtomicUsize::new(0));
    let stopping = Arc::new(AtomicBool::new(false));
    for signal in [SIGINT, SIGTERM] {
        // In this order: the second signal finds `stopping` set.
        flag::register_conditional_shutdown(signal, 128 + signal, Arc::clone(&stopping))?;
        flag::register(signal, Arc::clone(&stopping))?;
        flag::register_usize(signal, Arc::clone(&stop), signal as usize)?;
    }
    Ok(stop)
}

/// Refuses output paths that would overwrite the input or each other.
fn check_output_paths(options: &Options) -> anyhow::Result<()> {
    let same = |a: &Path, b: &Path| {
        let a = std::fs::canonicalize(a).ok();
        a.is_some() && a == std::fs::canonicalize(b).ok()
    };
    let outputs = [
        ("--output", &options.output),
        ("--rejects", &options.rejects),
        ("--summary-json", &options.summary_json),
    ];
    for (flag, path) in outputs {
        let (Input::Path(input), Some(path)) = (&options.input, path) else {
            continue;
        };
        // Replacing the file would lose the input.
        if same(input, path) {
            bail!(
                "{flag} {} is the input file; refusing to overwrite it",
                path.display()
            );
        }
    }
    for (i, (flag, path)) in outputs.iter().enumerate() {
        for (other, other_path) in &outputs[i + 1..] {
            if let (Some(a), Some(b)) = (path, other_path) {
                if a == b || same(a, b) {
                    bail!(
                        "{flag} and {other} both name {}; give each its own file",
                        a.display()
                    );
                }
            }
        }
    }
    Ok(())
}

/// What a run did, for the summary.
#[derive(Clone, Debug)]
pub struct RunStats {
    pub tally: Tally,
    pub elapsed: Duration,
    /// Number of accounts printed.
    pub account_count: usize,
    pub measures: Measures,
    /// The state file saved, when there is one.
    pub state: Option<SavedState>,
    pub input: InputFacts,
}

/// What is known about the input besides its rows.
#[derive(Clone, Copy, Debug)]
pub struct InputFacts {
    /// `plain`, `gzip` or `zstd`.
    pub format: &'static str,
    /// The file's size as stored (`None` for standard input).
    pub size: Option<u64>,
    /// Bytes of CSV read (after decompression).
    pub bytes_read: u64,
}

/// The state file a run saved.
#[derive(Clone, Copy, Debug)]
pub struct SavedState {
    /// Its size.
    pub bytes: u64,
    /// Inputs applied to it so far, this run's included.
    pub inputs: usize,
}

/// The state a run starts from: the saved one, or an empty one, or a
/// checkpoint's.
struct Start {
    ledger: Ledger,
    /// The inputs applied before this one.
    inputs: Vec<InputId>,
    resume: Option<Resume>,
}

impl Start {
    fn empty() -> Start {
        Start {
            ledger: Ledger::new(),
            inputs: Vec::new(),
            resume: None,
        }
    }
}

/// Loads the state file, if any, and the checkpoint an interrupted run
/// left beside it; refuses an input the state records as applied already,
/// before the input is read (for a file: only when a recorded input has its
/// size is the file hashed first).
fn load_state(options: &Options) -> anyhow::Result<Start> {
    let Some(path) = &options.state else {
        return Ok(Start::empty());
    };
    let file = StateFile::new(path);
    let context = || format!("state file {}", path.display());
    let saved = file.load().with_context(context)?;
    let start = match saved {
        Some(saved) => Start {
            ledger: saved.ledger,
            inputs: saved.inputs,
            resume: None,
        },
        None => Start::empty(),
    };
    let checkpoint = file.checkpoint_path();
    let pending = file
        .load_checkpoint()
        .with_context(|| format!("checkpoint {}", checkpoint.display()))?;
    let start = match pending {
        // The run that left it saved its state after all (it died between
        // saving the state and removing its checkpoint): nothing to resume.
        Some(pending) if pending.saved.inputs.len() < start.inputs.len() => {
            file.discard_checkpoint()
                .with_context(|| format!("removing {}", checkpoint.display()))?;
            start
        }
        Some(pending) if options.resume => Start {
            ledger: pending.saved.ledger,
            inputs: pending.saved.inputs,
            resume: Some(pending.resume),
        },
        Some(pending) => bail!(
            "state file {} has the checkpoint of an interrupted run (stopped after line {}, \
             byte {}): add --resume to go on from it with the same input, or delete {} to \
             discard it",
            path.display(),
            pending.resume.position().line,
            pending.resume.position().offset,
            checkpoint.display()
        ),
        None => start,
    };
    if let (Input::Path(input), false) = (&options.input, options.allow_replay) {
        let size = std::fs::metadata(input).map(|m| m.len()).ok();
        if start.inputs.iter().any(|i| Some(i.size) == size) {
            let file = File::open(input)
                .with_context(|| format!("cannot open input {}", input.display()))?;
            let identity = durable::identify(file)
                .with_context(|| format!("reading input {}", input.display()))?;
            check_replay(options, &start.inputs, identity)?;
        }
    }
    Ok(start)
}

/// Refuses an input whose size and hash a state file records (unless
/// `--allow-replay`).
fn check_replay(
    options: &Options,
    inputs: &[InputId],
    (size, hash): (u64, u128),
) -> anyhow::Result<()> {
    let applied = inputs.iter().find(|i| i.size == size && i.hash == hash);
    if let (Some(applied), false, Some(path)) = (applied, options.allow_replay, &options.state) {
        let input = match &options.input {
            Input::Stdin => "the input (standard input)".to_string(),
            Input::Path(input) => input.display().to_string(),
        };
        bail!(
            "{input} was already applied to state file {} (input {} of {}, same size and hash); \
             applying it again would repeat its disputes, resolves and chargebacks \
             (--allow-replay applies it anyway)",
            path.display(),
            applied.seq,
            inputs.len()
        );
    }
    Ok(())
}

/// Runs the engine over `source` (`options.input` is not used): the whole
/// run except opening the input and printing the summary.
pub fn process(
    (source, input): (impl Read + Send, InputFacts),
    options: &Options,
    stop: Arc<AtomicUsize>,
    progress: Option<indicatif::ProgressBar>,
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
) -> anyhow::Result<RunStats> {
    let started = Instant::now();
    let start = load_state(options)?;
    // Both files are created now, so a bad path fails before the input is
    // read, and committed only after everything else succeeded.
    let mut rejects = match &options.rejects {
        Some(path) => {
            let mut out = AtomicFile::create(path)
                .with_context(|| format!("cannot create rejects file {}", path.display()))?;
            out.write_all(payments_engine::REJECTS_HEADER.as_bytes())
                .with_context(|| format!("writing rejects file {}", path.display()))?;
            Some(out)
        }
        None => None,
    };
    let create = |path: &Option<PathBuf>, what: &str| -> anyhow::Result<Option<AtomicFile>> {
        path.as_deref()
            .map(|path| {
                AtomicFile::create(path)
                    .with_context(|| format!("cannot create {what} file {}", path.display()))
            })
            .transpose()
    };
    let mut output = create(&options.output, "output")?;
    let mut summary = create(&options.summary_json, "summary")?;

    let engine = options
        .engine
        .clone()
        .diagnostics(options.verbosity)
        .keep_rejects(options.rejects.is_some());
    let mut control = Control::new(stop);
    if options.verbosity != Verbosity::Quiet {
        let bar = progress.clone();
        control = control.warnings(move |text| {
            let say = || eprintln!("payments-engine: warning: {text}");
            match &bar {
                Some(bar) => bar.suspend(say),
                None => say(),
            }
        });
    }
    if let Some(path) = &options.state {
        control = control.checkpoints(path, options.checkpoint_every, start.inputs.clone());
    }
    if let Some(resume) = start.resume {
        control = control.resuming(resume);
    }
    let mut finished = match &options.cluster {
        Some(member) => {
            drop(control);
            let quiet = options.verbosity == Verbosity::Quiet;
            let mut warn = |text: String| {
                if !quiet {
                    eprintln!("payments-engine: warning: {text}");
                }
            };
            let settings = cluster_settings(options);
            cluster::run(member, input_path(options), settings, &mut warn)?
                .expect("process 0 gathers the whole run")
        }
        None => control.run_csv(&engine, start.ledger, source)?,
    };
    // The next state, written and synced beside the state file; committed
    // after the outputs (a failure between the two leaves outputs that a
    // rerun will write again, never a state that a rerun would refuse).
    let prepared = match &options.state {
        Some(path) => {
            // A run with a state file hashes its whole input as it reads it.
            let end = finished.input_end().expect("a CSV run ends somewhere");
            let identity = (end.offset, end.prefix_hash);
            check_replay(options, &start.inputs, identity)?;
            let mut inputs = start.inputs;
            inputs.push(InputId {
                seq: inputs.last().map_or(1, |last| last.seq + 1),
                size: identity.0,
                hash: identity.1,
            });
            let prepared = StateFile::new(path)
                .prepare(&finished, &inputs)
                .with_context(|| format!("writing state file {}", path.display()))?;
            let saved = SavedState {
                bytes: prepared.bytes,
                inputs: inputs.len(),
            };
            Some((prepared, saved, path))
        }
        None => None,
    };

    // The bar goes before the diagnostics print, so it leaves no trace.
    if let Some(bar) = &progress {
        bar.finish_and_clear();
    }
    // Everything is written and synced before anything is committed, and
    // the accounts reach stdout only once the rejects file is in place: a
    // failure on the way leaves every existing file as it was.
    if let Some(diagnostics) = finished.take_diagnostics() {
        let rejects = rejects.as_mut().map(|w| w as &mut dyn Write);
        diagnostics
            .write_to(stderr, rejects)
            .context("writing rejects file")?;
    }
    let written = |file: &AtomicFile| file.target().display().to_string();
    if let Some(out) = rejects.as_mut() {
        out.sync()
            .with_context(|| format!("writing rejects file {}", written(out)))?;
    }
    if let Some(out) = output.as_mut() {
        finished
            .write_accounts(&mut *out)
            .and_then(|()| out.sync())
            .with_context(|| format!("writing output file {}", written(out)))?;
    }
    let stats = RunStats {
        tally: *finished.tally(),
        elapsed: started.elapsed(),
        account_count: finished.accounts().len(),
        measures: finished.measures().clone(),
        state: prepared.as_ref().map(|(_, saved, _)| *saved),
        input: InputFacts {
            bytes_read: finished.input_end().map_or(0, |end| end.offset),
            ..input
        },
    };
    if let Some(out) = summary.as_mut() {
        let json = summary_json(options, &stats);
        serde_json::to_writer_pretty(&mut *out, &json)
            .map_err(io::Error::from)
            .and_then(|()| out.write_all(b"\n"))
            .and_then(|()| out.sync())
            .with_context(|| format!("writing summary file {}", written(out)))?;
    }
    for (out, what) in [
        (rejects, "rejects"),
        (output, "output"),
        (summary, "summary"),
    ] {
        if let Some(out) = out {
            let path = written(&out);
            out.commit()
                .with_context(|| format!("writing {what} file {path}"))?;
        }
    }
    if let Some((prepared, _, path)) = prepared {
        prepared
            .commit()
            .with_context(|| format!("writing state file {}", path.display()))?;
        let file = StateFile::new(path);
        file.discard_checkpoint()
            .with_context(|| format!("removing {}", file.checkpoint_path().display()))?;
    }
    if options.output.is_none() {
        match finished.write_accounts(BufWriter::with_capacity(256 * 1024, stdout)) {
            // `| head`: the reader has gone; that is not an error.
            Err(error) if error.kind() == io::ErrorKind::BrokenPipe => {}
            other => other.context("writing accounts to stdout")?,
        }
    }
    Ok(stats)
}

/// The `--summary-json` object. Its keys are documented in the README and
/// stay stable; new keys may be added.
fn summary_json(options: &Options, stats: &RunStats) -> serde_json::Value {
    use serde_json::{json, Map, Value};
    let tally = &stats.tally;
    let rejected: Map<String, Value> = Reject::ALL
        .iter()
        .map(|r| (r.code().to_string(), json!(tally.rejected_by[*r as usize])))
        .collect();
    let malformed: Map<String, Value> = Malformed::CODES
        .iter()
        .zip(tally.malformed_by)
        .map(|(code, n)| (code.to_string(), json!(n)))
        .collect();
    let seconds = stats.elapsed.as_secs_f64();
    let m = &stats.measures;
    let latency = m.latency.as_ref().filter(|h| !h.is_empty()).map(|h| {
        let us = |ns: u64| ns as f64 / 1_000.0;
        json!({
            "samples": h.len(),
            "p50": us(h.value_at_quantile(0.50)),
            "p90": us(h.value_at_quantile(0.90)),
            "p99": us(h.value_at_quantile(0.99)),
            "p99_9": us(h.value_at_quantile(0.999)),
            "max": us(h.max()),
        })
    });
    let input = &stats.input;
    json!({
        "version": 1,
        "input": {
            "path": match &options.input {
                Input::Stdin => Value::Null,
                Input::Path(path) => json!(path.display().to_string()),
            },
            "format": input.format,
            "size_bytes": input.size,
            "bytes_read": input.bytes_read,
        },
        "rows_read": tally.rows_read(),
        "applied": tally.applied,
        "rejected": tally.rejected(),
        "malformed": tally.malformed(),
        "rejected_by_reason": rejected,
        "malformed_by_reason": malformed,
        "accounts": stats.account_count,
        "elapsed_s": seconds,
        "rows_per_s": if seconds > 0.0 { tally.rows_read() as f64 / seconds } else { 0.0 },
        "workers": options.engine.worker_count(),
        "memory": {
            "state_bytes": m.state_bytes(),
            "account_bytes": m.account_bytes,
            "stored_deposits": m.deposits,
            "deposit_store_bytes": m.deposit_bytes,
            "tx_id_set_bytes": m.id_set_bytes,
            "peak_rss_bytes": peak_rss_bytes(),
        },
        "latency_us": latency,
        "state": stats.state.map(|saved| json!({
            "path": options.state.as_ref().map(|p| p.display().to_string()),
            "bytes": saved.bytes,
            "inputs": saved.inputs,
        })),
    })
}

/// The process's peak resident memory so far (Linux's VmHWM), if known.
fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Opens the input, wrapped in a progress bar where one is wanted (over the
/// bytes as stored, so a compressed file's bar is exact too) and in a
/// decompressor when its first bytes say gzip or zstd.
fn open_input(options: &Options) -> anyhow::Result<(Opened, Option<indicatif::ProgressBar>)> {
    let (source, len): (Box<dyn Read + Send>, Option<u64>) = match &options.input {
        Input::Stdin => (Box::new(io::stdin()), None),
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
    // A bar for a large file, a line of bytes and lines for a pipe (its size
    // is unknown); none for a small file, a quiet run, or a stderr that is
    // not a terminal.
    let shown = options.progress
        && options.verbosity != Verbosity::Quiet
        && io::stderr().is_terminal()
        && len.map_or(true, |len| len >= PROGRESS_MIN_BYTES);
    let (source, bar): (Box<dyn Read + Send>, _) = if shown {
        // A few redraws a second: each one wakes the terminal, which on a
        // small machine takes a core from the engine for a moment (perf.md,
        // "Progress bar").
        let target = indicatif::ProgressDrawTarget::stderr_with_hz(PROGRESS_HZ);
        let (bar, template) = match len {
            Some(len) => (
                indicatif::ProgressBar::with_draw_target(Some(len), target),
                "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            ),
            None => (
                indicatif::ProgressBar::with_draw_target(None, target),
                "{spinner} {bytes} read, {msg} lines, {bytes_per_sec}",
            ),
        };
        bar.set_style(
            indicatif::ProgressStyle::with_template(template).expect("valid progress template"),
        );
        let counted = CountLines {
            inner: source,
            bar: bar.clone(),
            lines: 0,
            count: len.is_none(),
        };
        (Box::new(counted), Some(bar))
    } else {
        (source, None)
    };
    let (source, format) = decompressed(source, &input_name(&options.input))?;
    let facts = InputFacts {
        format,
        size: len,
        bytes_read: 0,
    };
    Ok(((source, facts), bar))
}

/// The input of a cluster run: a plain CSV file every process can read.
fn cluster_input(options: &Options) -> anyhow::Result<InputFacts> {
    let Input::Path(path) = &options.input else {
        bail!("--cluster reads a file (every process reads the same one), not standard input");
    };
    let mut file =
        File::open(path).with_context(|| format!("cannot open input {}", path.display()))?;
    let size = file.metadata().ok().map(|m| m.len());
    let mut magic = Vec::with_capacity(6);
    (&mut file)
        .take(6)
        .read_to_end(&mut magic)
        .context("reading input")?;
    if format_of(&magic) != Format::Plain {
        bail!(
            "--cluster reads plain CSV files; {} is compressed: decompress it first",
            path.display()
        );
    }
    Ok(InputFacts {
        format: "plain",
        size,
        bytes_read: size.unwrap_or(0),
    })
}

/// The input's path (a cluster run has one: [`cluster_input`] checked).
fn input_path(options: &Options) -> &Path {
    match &options.input {
        Input::Path(path) => path,
        Input::Stdin => Path::new("-"),
    }
}

/// What a cluster run takes from the options.
fn cluster_settings(options: &Options) -> cluster::Settings {
    cluster::Settings {
        workers: options.engine.worker_count(),
        block: options.engine.block(),
        verbosity: options.verbosity,
        keep_rejects: options.rejects.is_some(),
        strict: options.engine.is_strict(),
        checkpoints: options
            .state
            .as_ref()
            .map(|state| cluster::CheckpointOptions {
                state: state.clone(),
                every: options.checkpoint_every,
                resume: options.resume,
            }),
    }
}

/// An opened input: its bytes, and what is known of it.
type Opened = (Box<dyn Read + Send>, InputFacts);

/// A reader that moves the progress bar by the bytes read and, for an input
/// of unknown size, shows the lines read so far.
struct CountLines {
    inner: Box<dyn Read + Send>,
    bar: indicatif::ProgressBar,
    lines: u64,
    count: bool,
}

impl Read for CountLines {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bar.inc(n as u64);
        if self.count && n > 0 {
            self.lines += memchr::memchr_iter(b'\n', &buf[..n]).count() as u64;
            self.bar.set_message(self.lines.to_string());
        }
        Ok(n)
    }
}

/// The input as messages name it.
fn input_name(input: &Input) -> String {
    match input {
        Input::Stdin => "standard input".into(),
        Input::Path(path) => path.display().to_string(),
    }
}

/// What the first bytes of an input say it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Plain,
    Gzip,
    Zstd,
    /// A compressed or archive format this program does not read.
    Other(&'static str, &'static str),
}

/// The format of an input that starts with `magic` (its first 6 bytes, or
/// fewer if it is shorter).
fn format_of(magic: &[u8]) -> Format {
    const OTHERS: [(&[u8], &str, &str); 4] = [
        (b"BZh", "bzip2", "bzcat"),
        (b"\xFD7zXZ\x00", "xz", "xz -dc"),
        (b"PK\x03\x04", "zip", "unzip -p"),
        (b"7z\xBC\xAF\x27\x1C", "7z", "7z x -so"),
    ];
    if magic.starts_with(b"\x1F\x8B") {
        return Format::Gzip;
    }
    if magic.starts_with(b"\x28\xB5\x2F\xFD") {
        return Format::Zstd;
    }
    OTHERS
        .iter()
        .find(|(prefix, ..)| magic.starts_with(prefix))
        .map_or(Format::Plain, |&(_, name, tool)| Format::Other(name, tool))
}

/// `source`, decompressed if it is gzip or zstd (recognised by its magic
/// bytes, not its name); another compressed format is an error with a hint.
fn decompressed(
    mut source: Box<dyn Read + Send>,
    name: &str,
) -> anyhow::Result<(Box<dyn Read + Send>, &'static str)> {
    let mut magic = Vec::with_capacity(6);
    (&mut source)
        .take(6)
        .read_to_end(&mut magic)
        .context("reading input")?;
    let whole = io::Cursor::new(magic.clone()).chain(source);
    Ok(match format_of(&magic) {
        Format::Plain => (Box::new(whole), "plain"),
        Format::Gzip => (
            Box::new(flate2::bufread::MultiGzDecoder::new(
                io::BufReader::with_capacity(256 * 1024, whole),
            )),
            "gzip",
        ),
        Format::Zstd => (
            Box::new(
                zstd::stream::read::Decoder::new(whole)
                    .with_context(|| format!("starting to decompress {name}"))?,
            ),
            "zstd",
        ),
        Format::Other(format, tool) => bail!(
            "{name} is {format}-compressed; this program reads plain, gzip or zstd CSV: \
             decompress it first, for example `{tool} FILE | payments-engine -`"
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_told_by_their_magic_bytes() {
        let table: &[(&[u8], Format)] = &[
            (b"type,client,tx,amount", Format::Plain),
            (b"", Format::Plain),
            (b"\x1F", Format::Plain),
            (b"\x1F\x8B\x08\x00", Format::Gzip),
            (b"\x28\xB5\x2F\xFD\x00", Format::Zstd),
            (b"BZh91AY", Format::Other("bzip2", "bzcat")),
            (b"\xFD7zXZ\x00", Format::Other("xz", "xz -dc")),
            (b"PK\x03\x04", Format::Other("zip", "unzip -p")),
        ];
        for &(magic, expected) in table {
            assert_eq!(format_of(magic), expected, "{magic:?}");
        }
    }

    #[test]
    fn gzip_and_zstd_read_as_the_plain_bytes() {
        let plain = b"type,client,tx,amount\ndeposit,1,1,1.5\n".repeat(1_000);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        io::Write::write_all(&mut gz, &plain).unwrap();
        let gz = gz.finish().unwrap();
        let zst = zstd::encode_all(&plain[..], 3).unwrap();
        for packed in [plain.clone(), gz, zst] {
            let mut out = Vec::new();
            decompressed(Box::new(io::Cursor::new(packed)), "x")
                .unwrap()
                .0
                .read_to_end(&mut out)
                .unwrap();
            assert!(out == plain);
        }
    }
}
