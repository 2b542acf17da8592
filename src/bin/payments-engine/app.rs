//! The binary's environment around the engine: open the input (with a
//! progress bar), create the rejects file, run the engine, print the
//! accounts, the diagnostics and the summary. Environment failures (I/O, a
//! bad header, a strict-mode violation) come back as one error chain for
//! `main` to print; bad rows are outcomes, counted and reported.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use payments_engine::cluster::{self, ClusterOptions};
use payments_engine::Finished;

use crate::commit::{peak_rss_bytes, Outputs, Ran, Staged};
use crate::input::{cluster_input, input_path, open_input, Input, InputFacts};
use payments_engine::durable::{AtomicFile, Control, InputId, Resume, StateFile};
use payments_engine::{EngineBuilder, Ledger, Measures, Tally, Verbosity};

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

/// Runs the engine: accounts to `stdout`, diagnostics and summary to
/// `stderr`. Returns what the run did.
pub fn run(
    options: &Options,
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
) -> anyhow::Result<RunStats> {
    check_output_paths(options)?;
    // Temporaries that runs which died left where this one writes.
    let written = [
        &options.state,
        &options.output,
        &options.rejects,
        &options.summary_json,
    ];
    for path in written.into_iter().flatten() {
        AtomicFile::remove_stale_temporaries(path);
    }
    // A signal stops a run at a record boundary; in a cluster, it stops
    // every process (the cluster tells the others).
    let stop = stop_on_signals().context("installing signal handlers")?;
    if let Some(member) = options.cluster.as_ref().filter(|m| m.process != 0) {
        return run_cluster_member(options, member, stop);
    }
    // The lock, then every output, before the input is opened: a second run
    // or a bad path fails at once, not once the input has begun to arrive.
    // The lock is held until the run returns, commit included.
    let _lock = match &options.state {
        Some(path) => Some(
            StateFile::new(path)
                .lock()
                .with_context(|| format!("state file {}", path.display()))?,
        ),
        None => None,
    };
    let outputs = Outputs::create(options)?;
    let (source, progress) = match &options.cluster {
        Some(_) => {
            crate::budget::tune_allocator_for_dataflow();
            let facts = cluster_input(options)?;
            ((Box::new(io::empty()) as Box<dyn Read + Send>, facts), None)
        }
        None => open_input(options, &stop)?,
    };
    let stats = process(
        source,
        outputs,
        options,
        stop,
        progress.clone(),
        stdout,
        stderr,
    );
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

/// A cluster process other than 0: it does its share and prints nothing
/// but, with `--verbose`, that it connected.
fn run_cluster_member(
    options: &Options,
    member: &ClusterOptions,
    stop: Arc<AtomicUsize>,
) -> anyhow::Result<RunStats> {
    crate::budget::tune_allocator_for_dataflow();
    let started = Instant::now();
    let facts = cluster_input(options)?;
    let verbose = options.verbosity == Verbosity::Verbose;
    let mut tell = |event| {
        if let (cluster::Event::Connected { process, others }, true) = (event, verbose) {
            eprintln!(
                "payments-engine: cluster process {process}: connected to {others} other processes"
            );
        }
    };
    cluster::run(
        member,
        input_path(options),
        cluster_settings(options, stop),
        &mut tell,
    )?;
    Ok(RunStats {
        tally: Tally::default(),
        elapsed: started.elapsed(),
        account_count: 0,
        measures: Measures::default(),
        state: None,
        input: facts,
    })
}

/// SIGINT, SIGTERM and SIGHUP (a closed terminal) stop the run at the next
/// record boundary (the returned flag holds the signal's number); a second
/// one ends the process at once, with the usual status (128 + the signal).
fn stop_on_signals() -> io::Result<Arc<AtomicUsize>> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    use signal_hook::flag;
    let stop = Arc::new(AtomicUsize::new(0));
    let stopping = Arc::new(AtomicBool::new(false));
    for signal in [SIGINT, SIGTERM, SIGHUP] {
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
            let identity = InputId::identify(file)
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
/// run except opening the input and printing the summary. Load the state,
/// run, stage the next state beside the old, then write and commit.
pub fn process(
    (source, input): (impl Read + Send, InputFacts),
    outputs: Outputs,
    options: &Options,
    stop: Arc<AtomicUsize>,
    progress: Option<indicatif::ProgressBar>,
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
) -> anyhow::Result<RunStats> {
    let started = Instant::now();
    let start = load_state(options)?;
    let inputs = start.inputs.clone();
    let mut finished = run_engine(source, options, start, stop, progress.clone())?;
    let staged = stage_state(options, &inputs, &finished)?;
    // The bar goes before the diagnostics print, so it leaves no trace.
    if let Some(bar) = &progress {
        bar.finish_and_clear();
    }
    let ran = Ran {
        started,
        input,
        staged,
    };
    outputs.commit(options, &mut finished, ran, stdout, stderr)
}

/// Runs the engine from `start`: on this machine under a [`Control`] (a
/// stop, checkpoints, a resume), or as process 0 of a cluster.
fn run_engine(
    source: impl Read + Send,
    options: &Options,
    start: Start,
    stop: Arc<AtomicUsize>,
    progress: Option<indicatif::ProgressBar>,
) -> anyhow::Result<Finished> {
    let quiet = options.verbosity == Verbosity::Quiet;
    if let Some(member) = &options.cluster {
        let mut tell = |event| {
            if let (cluster::Event::Warning(text), false) = (event, quiet) {
                eprintln!("payments-engine: warning: {text}");
            }
        };
        let settings = cluster_settings(options, stop);
        let finished = cluster::run(member, input_path(options), settings, &mut tell)?;
        return Ok(finished.expect("process 0 gathers the whole run"));
    }
    let engine = options
        .engine
        .clone()
        .diagnostics(options.verbosity)
        .keep_rejects(options.rejects.is_some());
    let mut control = Control::new(stop);
    if !quiet {
        control = control.warnings(move |text| {
            let say = || eprintln!("payments-engine: warning: {text}");
            match &progress {
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
    Ok(control.run_csv(&engine, start.ledger, source)?)
}

/// With a state file: the next state (this input recorded after `inputs`),
/// written and synced beside the state file, not yet in place.
fn stage_state(
    options: &Options,
    inputs: &[InputId],
    finished: &Finished,
) -> anyhow::Result<Option<Staged>> {
    let Some(path) = &options.state else {
        return Ok(None);
    };
    // A run with a state file hashes its whole input as it reads it.
    let end = finished.input_end().expect("a CSV run ends somewhere");
    let identity = (end.offset, end.prefix_hash);
    check_replay(options, inputs, identity)?;
    let mut inputs = inputs.to_vec();
    inputs.push(InputId {
        seq: inputs.last().map_or(1, |last| last.seq + 1),
        size: identity.0,
        hash: identity.1,
    });
    let prepared = StateFile::new(path)
        .prepare(finished, &inputs)
        .with_context(|| format!("writing state file {}", path.display()))?;
    let saved = SavedState {
        bytes: prepared.bytes,
        inputs: inputs.len(),
    };
    Ok(Some(Staged {
        prepared,
        saved,
        path: path.clone(),
    }))
}

/// What a cluster run takes from the options.
fn cluster_settings(options: &Options, stop: Arc<AtomicUsize>) -> cluster::Settings {
    cluster::Settings {
        stop: Some(stop),
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
