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
    /// The inputs, applied in order (at least one).
    pub inputs: Vec<Input>,
    /// Workers, pinning, strict mode. What the engine keeps for reports
    /// follows from `verbosity` and `rejects`.
    pub engine: EngineBuilder,
    /// Write the accounts here instead of stdout (atomically).
    pub output: Option<PathBuf>,
    /// Write every malformed or rejected record here (a file: atomically).
    pub rejects: Option<Dest>,
    /// Per-row lines and the summary on stderr.
    pub verbosity: Verbosity,
    /// Print parse-to-applied latency percentiles on stderr.
    pub latency: bool,
    /// Show a progress bar when stderr is a terminal and the input is large.
    pub progress: bool,
    /// Write a JSON summary of the run here (a file: atomically).
    pub summary_json: Option<Dest>,
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

impl Options {
    /// More than one input: diagnostics name their input.
    pub fn several_inputs(&self) -> bool {
        self.inputs.len() > 1
    }
}

/// Where an output goes: standard output (`-`) or a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Dest {
    Stdout,
    File(PathBuf),
}

impl Dest {
    /// The file, if it is one.
    pub fn path(&self) -> Option<&PathBuf> {
        match self {
            Dest::File(path) => Some(path),
            Dest::Stdout => None,
        }
    }
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
        options.state.as_ref(),
        options.output.as_ref(),
        options.rejects.as_ref().and_then(Dest::path),
        options.summary_json.as_ref().and_then(Dest::path),
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
        Some(path) => {
            check_state_directory(path)?;
            Some(
                StateFile::new(path)
                    .lock()
                    .with_context(|| format!("state file {}", path.display()))?,
            )
        }
        None => None,
    };
    let outputs = Outputs::create(options)?;
    let stats = process(outputs, options, stop, stdout, stderr)?;
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
        inputs: vec![facts],
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
        ("--output", options.output.as_ref()),
        ("--rejects", options.rejects.as_ref().and_then(Dest::path)),
        (
            "--summary-json",
            options.summary_json.as_ref().and_then(Dest::path),
        ),
        ("--state", options.state.as_ref()),
    ];
    for (flag, path) in outputs {
        let Some(path) = path else { continue };
        for input in &options.inputs {
            // Replacing the file would lose the input.
            if let Input::Path(input) = input {
                if same(input, path) {
                    bail!(
                        "{flag} {} is the input file; refusing to overwrite it",
                        path.display()
                    );
                }
            }
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
    /// Every input, in the order applied.
    pub inputs: Vec<InputFacts>,
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

/// Checks, before anything is read, that the state file's directory exists
/// and takes new files (the next state is written beside it).
fn check_state_directory(path: &Path) -> anyhow::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    match std::fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => bail!(
            "state file {}: {} is not a directory",
            path.display(),
            dir.display()
        ),
        Err(error) if error.kind() == io::ErrorKind::NotFound => bail!(
            "state file {}: directory {} does not exist (create it, or name another path)",
            path.display(),
            dir.display()
        ),
        Err(error) => {
            return Err(error).with_context(|| {
                format!("state file {}: directory {}", path.display(), dir.display())
            })
        }
    }
    tempfile::Builder::new()
        .prefix(".payments-engine-check")
        .tempfile_in(dir)
        .map(drop)
        .with_context(|| {
            format!(
                "state file {}: cannot write in directory {}",
                path.display(),
                dir.display()
            )
        })
}

/// Loads the state file, if any, and the checkpoint an interrupted run
/// left beside it; refuses an input the state records as applied already,
/// before the input is read (for a file: only when a recorded input has its
/// size is the file hashed first). Says on `stderr` which state it starts
/// from (not with `--quiet`).
fn load_state(options: &Options, stderr: &mut dyn Write) -> anyhow::Result<Start> {
    let Some(path) = &options.state else {
        return Ok(Start::empty());
    };
    let file = StateFile::new(path);
    let context = || format!("state file {}", path.display());
    let saved = file.load().with_context(context)?;
    let loaded = saved.is_some();
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
    if options.verbosity != Verbosity::Quiet {
        let _ = writeln!(stderr, "{}", state_line(path, loaded, &start));
    }
    if !options.allow_replay {
        check_files_not_applied(options, &start.inputs)?;
    }
    Ok(start)
}

/// The line that says which state a run starts from.
fn state_line(path: &Path, loaded: bool, start: &Start) -> String {
    let ledger = &start.ledger;
    let holds = format!(
        "{} recorded, {}, {}",
        plural(start.inputs.len() as u64, "input", "inputs"),
        plural(ledger.account_count() as u64, "account", "accounts"),
        plural(ledger.deposit_count() as u64, "deposit", "deposits"),
    );
    match (&start.resume, loaded) {
        (Some(resume), _) => format!(
            "payments-engine: state {}: resuming from the checkpoint after line {} ({holds})",
            path.display(),
            resume.position().line,
        ),
        (None, true) => format!(
            "payments-engine: state {}: loaded ({holds})",
            path.display()
        ),
        (None, false) => format!(
            "payments-engine: state {}: new (no such file yet): starting from an empty ledger",
            path.display()
        ),
    }
}

/// `1 input`, `2 inputs`.
pub fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Refuses, before reading any, an input file that the state records as
/// applied or that this command names twice (same size and hash; a file is
/// hashed only when another has its size).
fn check_files_not_applied(options: &Options, recorded: &[InputId]) -> anyhow::Result<()> {
    let mut known: Vec<InputId> = recorded.to_vec();
    let sizes: Vec<Option<u64>> = options
        .inputs
        .iter()
        .map(|input| match input {
            Input::Path(path) => std::fs::metadata(path).ok().map(|m| m.len()),
            Input::Stdin => None,
        })
        .collect();
    for (k, input) in options.inputs.iter().enumerate() {
        let (Input::Path(path), Some(size)) = (input, sizes[k]) else {
            continue;
        };
        let shared = known.iter().any(|i| i.size == size)
            || sizes
                .iter()
                .enumerate()
                .any(|(j, s)| j > k && *s == Some(size));
        if !shared {
            continue;
        }
        let file =
            File::open(path).with_context(|| format!("cannot open input {}", path.display()))?;
        let identity =
            InputId::identify(file).with_context(|| format!("reading input {}", path.display()))?;
        check_replay(options, k, &known, identity)?;
        known.push(InputId {
            seq: known.last().map_or(1, |last| last.seq + 1),
            size: identity.0,
            hash: identity.1,
        });
    }
    Ok(())
}

/// Refuses input `k` when its size and hash are among `inputs` (unless
/// `--allow-replay`).
fn check_replay(
    options: &Options,
    k: usize,
    inputs: &[InputId],
    (size, hash): (u64, u128),
) -> anyhow::Result<()> {
    let applied = inputs.iter().find(|i| i.size == size && i.hash == hash);
    if let (Some(applied), false, Some(path)) = (applied, options.allow_replay, &options.state) {
        let input = match &options.inputs[k] {
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

/// The whole run but the summary: load the state, apply every input in
/// order (each input's diagnostics written as it ends), stage the next
/// state beside the old, then write and commit.
pub fn process(
    mut outputs: Outputs,
    options: &Options,
    stop: Arc<AtomicUsize>,
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
) -> anyhow::Result<RunStats> {
    let started = Instant::now();
    let mut start = load_state(options, stderr)?;
    let mut facts = Vec::with_capacity(options.inputs.len());
    let mut tally = Tally::default();
    let last = options.inputs.len() - 1;
    for k in 0..=last {
        let label = options
            .several_inputs()
            .then(|| input_label(&options.inputs[k]));
        let ((source, mut input), progress) = match &options.cluster {
            Some(_) => {
                crate::budget::tune_allocator_for_dataflow();
                let facts = cluster_input(options)?;
                ((Box::new(io::empty()) as Box<dyn Read + Send>, facts), None)
            }
            None => open_input(options, &options.inputs[k], &stop)?,
        };
        let mut inputs = start.inputs.clone();
        let file = input.file.take();
        let finished = run_engine(
            source,
            file,
            options,
            label.as_deref(),
            start,
            &stop,
            &progress,
        );
        // The bar goes before the diagnostics print, so it leaves no trace.
        if let Some(bar) = &progress {
            bar.finish_and_clear();
        }
        let mut finished = finished.map_err(|e| stopped_in(e, options, k))?;
        outputs.write_diagnostics(&mut finished, label.as_deref(), stdout, stderr)?;
        tally.add(finished.tally());
        input.rows_read = finished.tally().rows_read();
        input.bytes_read = finished.input_end().map_or(0, |end| end.offset);
        facts.push(input);
        if options.state.is_some() {
            // A run with a state file hashes each input as it reads it.
            let end = finished.input_end().expect("a CSV run ends somewhere");
            let identity = (end.offset, end.prefix_hash);
            check_replay(options, k, &inputs, identity)?;
            inputs.push(InputId {
                seq: inputs.last().map_or(1, |last| last.seq + 1),
                size: identity.0,
                hash: identity.1,
            });
        }
        if k < last {
            start = Start {
                ledger: finished.into_state(),
                inputs,
                resume: None,
            };
            continue;
        }
        let staged = stage_state(options, &inputs, &finished)?;
        let ran = Ran {
            started,
            inputs: facts,
            tally,
            staged,
        };
        return outputs.commit(options, &mut finished, ran, stdout);
    }
    unreachable!("a run has at least one input")
}

/// How diagnostics name an input among several.
fn input_label(input: &Input) -> String {
    match input {
        Input::Stdin => "stdin".into(),
        Input::Path(path) => path.display().to_string(),
    }
}

/// A run of several inputs says which one an error or a stop came in; and
/// with a state file, which it leaves as it was (such a run takes no
/// checkpoints).
fn stopped_in(error: anyhow::Error, options: &Options, k: usize) -> anyhow::Error {
    if !options.several_inputs() {
        return error;
    }
    let input = input_label(&options.inputs[k]);
    let stop = error
        .downcast_ref::<payments_engine::Error>()
        .and_then(|e| match e {
            payments_engine::Error::Interrupted { line, .. } => Some((e.stopped_by()?, *line)),
            _ => None,
        });
    let Some((signal, line)) = stop else {
        return error.context(input);
    };
    let n = options.inputs.len();
    let kept = match &options.state {
        Some(state) => format!(
            "state file {} is left as it was (a run of several inputs applies all of them or \
             none): the same command runs them again",
            state.display()
        ),
        None => "nothing was saved".to_string(),
    };
    // The whole message: a stop prints the outermost layer only.
    error.context(format!(
        "stopped by {signal} in {input} (input {} of {n}) after line {line}; {kept}",
        k + 1
    ))
}

/// Runs the engine from `start`: on this machine under a [`Control`] (a
/// stop, checkpoints, a resume), or as process 0 of a cluster. With several
/// inputs, warnings name the input (`label`).
fn run_engine(
    source: impl Read + Send,
    file: Option<Arc<File>>,
    options: &Options,
    label: Option<&str>,
    start: Start,
    stop: &Arc<AtomicUsize>,
    progress: &Option<indicatif::ProgressBar>,
) -> anyhow::Result<Finished> {
    let quiet = options.verbosity == Verbosity::Quiet;
    let stop = Arc::clone(stop);
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
        let progress = progress.clone();
        let prefix = label.map_or(String::new(), |label| format!("{label}: "));
        control = control.warnings(move |text| {
            let say = || eprintln!("payments-engine: warning: {prefix}{text}");
            match &progress {
                Some(bar) => bar.suspend(say),
                None => say(),
            }
        });
    }
    match &options.state {
        // Several inputs are applied all or none: no checkpoint, but each
        // input hashed for the state file's record.
        Some(_) if options.several_inputs() => control = control.hash_input(),
        Some(path) => {
            control = control.checkpoints(path, options.checkpoint_every, start.inputs.clone())
        }
        None => {}
    }
    if let Some(resume) = start.resume {
        control = control.resuming(resume);
    }
    if let Some(file) = file {
        control = control.read_by_position(file);
    }
    Ok(control.run_csv(&engine, start.ledger, source)?)
}

/// With a state file: the next state (`inputs`, this run's included),
/// written and synced beside the state file, not yet in place.
fn stage_state(
    options: &Options,
    inputs: &[InputId],
    finished: &Finished,
) -> anyhow::Result<Option<Staged>> {
    let Some(path) = &options.state else {
        return Ok(None);
    };
    let prepared = StateFile::new(path)
        .prepare(finished, inputs)
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
