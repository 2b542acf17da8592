//! Command-line arguments (clap derive), turned into [`Options`].

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::app::{Dest, Options};
use crate::input::Input;
use payments_engine::cluster::{self, ClusterOptions};
use payments_engine::{EngineBuilder, Verbosity};

/// Exact payments engine: reads deposits, withdrawals, disputes, resolves and
/// chargebacks from CSV and prints every client's balances.
///
/// Input columns: type,client,tx,amount (a header row is detected and may
/// order the columns freely). Output on stdout: client,available,held,total,locked
/// sorted by client. Malformed and rejected rows are reported on stderr with
/// their line numbers and counted in a summary; the run goes on.
///
/// Exit status: 0 when the input was read to the end (whatever was rejected),
/// 1 on a fatal error (unreadable input, bad header, --strict violation,
/// unwritable output, damaged state file), 2 on a usage error, 3 with
/// --fail-on-malformed when a row was malformed, 130/143/129 when stopped by
/// SIGINT/SIGTERM/SIGHUP.
#[derive(Debug, Parser)]
#[command(
    name = "payments-engine",
    version = env!("PAYMENTS_ENGINE_VERSION"),
    about,
    long_about,
    after_help = "Examples and every option in full: payments-engine --help, or the man page (--man-page).",
    after_long_help = EXAMPLES
)]
pub struct Cli {
    /// Transactions CSV files (plain, gzip or zstd), applied in order, each
    /// with its own header; `-` (or no INPUT, when standard input is not a
    /// terminal) reads standard input.
    #[arg(value_name = "INPUT")]
    pub inputs: Vec<PathBuf>,

    /// Treat the first malformed record as a fatal error (exit 1, no accounts
    /// printed). Rejections by the ledger rules are never fatal.
    #[arg(long, help_heading = "Input")]
    pub strict: bool,

    /// Exit with status 3 (instead of 0) when the run completed but some rows
    /// were malformed. Unlike --strict the run goes on to the end and writes
    /// every output.
    #[arg(long, conflicts_with = "strict", help_heading = "Input")]
    pub fail_on_malformed: bool,

    /// Write the accounts to FILE instead of stdout (`-`: stdout). FILE
    /// appears whole when the run succeeds, and is left as it was when it
    /// fails.
    #[arg(short, long, value_name = "FILE", help_heading = "Output")]
    pub output: Option<PathBuf>,

    /// Write every malformed or rejected record to FILE as CSV with the
    /// header line,reason,detail,record (with several inputs:
    /// input,line,reason,detail,record), in line order. Like --output, FILE
    /// appears whole when the run succeeds, and is left as it was otherwise.
    /// `-` writes to stdout (then --output must name a file).
    #[arg(long, value_name = "FILE", help_heading = "Output")]
    pub rejects: Option<PathBuf>,

    /// Write a JSON summary of the run to FILE (`-`: stdout, then --output
    /// must name a file), whole, when the run succeeds. Keys: version,
    /// program (name, version, commit), input and inputs (path, format,
    /// size_bytes, bytes_read, rows_read), rows_read, applied, rejected,
    /// malformed, rejected_by_reason, malformed_by_reason, account_count,
    /// elapsed_s, rows_per_s, workers, cpu_s, cpu_by_role, memory, state,
    /// and latency_us with --latency. The man page (--man-page) describes
    /// each.
    #[arg(long, value_name = "FILE", help_heading = "Output")]
    pub summary_json: Option<PathBuf>,

    /// Print nothing on stderr but fatal errors: no per-row lines, no summary.
    #[arg(short, long, conflicts_with = "verbose", help_heading = "Output")]
    pub quiet: bool,

    /// Print every malformed or rejected row on stderr (default: the first 10
    /// of each reason).
    #[arg(short, long, help_heading = "Output")]
    pub verbose: bool,

    /// Never show the progress bar (shown by default only when stderr is a
    /// terminal and the input is a file of 64 MiB or more).
    #[arg(long, help_heading = "Output")]
    pub no_progress: bool,

    /// Print parse-to-applied latency percentiles (p50, p90, p99, p99.9, max
    /// in microseconds) on stderr, sampled on the first record of each
    /// block, per worker.
    #[arg(long, help_heading = "Output")]
    pub latency: bool,

    /// Load the ledger's state (accounts, deposits, claimed tx ids) from FILE
    /// before reading the input, when FILE exists, and save it there after a
    /// successful run (atomically; the previous generation is kept as
    /// FILE.prev). Tomorrow's disputes then find today's deposits. Says on
    /// stderr whether FILE was new or loaded.
    #[arg(long, value_name = "FILE", help_heading = "State and recovery")]
    pub state: Option<PathBuf>,

    /// With --state: go on from the checkpoint an interrupted run left
    /// (same input, same --rejects/--verbose); outputs, counts and state end
    /// byte-identical to an uninterrupted run's. Without a pending
    /// checkpoint the run starts from the beginning on the saved state.
    #[arg(long, help_heading = "State and recovery")]
    pub resume: bool,

    /// With --state: save a checkpoint this often (500ms, 30s, 5m; 0 for
    /// none but the one a stop saves), so that a run killed at any moment
    /// can be resumed with --resume. Default: 30s. (A run of several inputs
    /// takes none: it applies all of them or none.)
    #[arg(long, value_name = "DURATION", value_parser = parse_interval, help_heading = "State and recovery")]
    pub checkpoint_every: Option<Interval>,

    /// With --state: apply an input that the state file records as already
    /// applied (by size and hash). Refused by default: it would repeat its
    /// disputes, resolves and chargebacks.
    #[arg(long, help_heading = "State and recovery")]
    pub allow_replay: bool,

    /// Worker threads (default: three fifths of the cores, at least 1).
    /// Each applies the rows of its share of the clients and claims its
    /// share of the tx ids. 0 runs the single-threaded path. The output is
    /// byte-identical for every value.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(0..=payments_engine::EngineBuilder::MAX_WORKERS as i64), help_heading = "Performance")]
    pub workers: Option<u16>,

    /// Parser threads (default: the cores the workers leave, at least 1; 0
    /// on one core, with --workers 0, and when standard input is a pipe).
    /// With N, a reader thread cuts the input into blocks of whole lines,
    /// and N threads parse blocks at once and split each for the workers. 0
    /// parses on the calling thread. The output is byte-identical for every
    /// value; --verbose says what was chosen.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(0..=payments_engine::EngineBuilder::MAX_PARSERS as i64), help_heading = "Performance")]
    pub parsers: Option<u16>,

    /// Target size of a parser thread's block, from 1 byte to 1GiB (default
    /// 1MiB, 4MiB with --cluster; `64KiB`, `4MiB`, or bytes); a block ends
    /// at the first line end from there. Only throughput depends on it.
    #[arg(long, value_name = "SIZE", value_parser = parse_block_size, help_heading = "Performance")]
    pub block_size: Option<Size>,

    /// Do not pin worker threads to cores (by default each worker is pinned
    /// to its own core when there are more cores than workers).
    #[arg(long, help_heading = "Performance")]
    pub no_pin: bool,

    /// Read the input file with read(2) rather than mapping it into memory.
    /// A plain file parsed on the calling thread (--parsers 0, as with
    /// --workers 0) is mapped and read in place, which saves copying it; if
    /// another program truncates the file during the run, the kernel then
    /// ends the process (SIGBUS; nothing is written). Use this for a file
    /// that may change while it is read.
    #[arg(long, help_heading = "Performance")]
    pub no_mmap: bool,

    /// The most memory the engine may hold (`512MiB`, `4GiB`, `2G`, or
    /// bytes). Past it the run ends with one error line (exit 1) naming the
    /// line reached, instead of an abort. Default: the cgroup's memory limit,
    /// else the machine's memory.
    #[arg(long, value_name = "SIZE", value_parser = parse_size, help_heading = "Performance")]
    pub max_memory: Option<Size>,

    /// Run as one process of a cluster (timely-dataflow over TCP): HOSTFILE
    /// lists one host:port per line, one line per process, the same file for
    /// every process. Every process reads INPUT (a plain CSV file at the same
    /// path on each host) and parses its share of blocks; process 0 prints
    /// what a single-machine run prints, the others print nothing.
    /// --workers counts per process (timely workers, each one parsing,
    /// claiming and applying; --parsers does not apply). With --state, each
    /// process saves checkpoints beside the state file (every
    /// --checkpoint-every at a nominal 64 MiB/s per worker) and --resume goes
    /// on from the last one every process completed.
    #[arg(
        long,
        value_name = "HOSTFILE",
        requires = "process",
        help_heading = "Cluster"
    )]
    pub cluster: Option<PathBuf>,

    /// With --cluster: this process's line of the host file, from 0.
    #[arg(long, value_name = "I", requires = "cluster", help_heading = "Cluster")]
    pub process: Option<usize>,

    /// With --cluster: how long to wait for every process to connect
    /// (default 30s).
    #[arg(long, value_name = "DURATION", requires = "cluster", value_parser = parse_timeout, help_heading = "Cluster")]
    pub connect_timeout: Option<Duration>,

    /// With --cluster: a file holding a secret every process shares (at
    /// least 16 bytes; e.g. `head -c 32 /dev/urandom | base64 > FILE`).
    /// Processes prove they hold it (a challenge-response with fresh nonces
    /// and a keyed MAC) before they say anything else; without it the host
    /// file may name only loopback addresses. The data after the handshake
    /// is not encrypted: run a cluster on a private network.
    /// (Ignored without --cluster, so that the variable may be set for
    /// every run.)
    #[arg(
        long,
        value_name = "FILE",
        env = "PAYMENTS_ENGINE_CLUSTER_SECRET_FILE",
        help_heading = "Cluster"
    )]
    pub cluster_secret: Option<PathBuf>,

    /// Print a shell completion script (bash, zsh, fish, elvish, powershell)
    /// on stdout and exit.
    #[arg(
        long,
        value_name = "SHELL",
        exclusive = true,
        help_heading = "Shell integration"
    )]
    pub completions: Option<clap_complete::Shell>,

    /// Print the man page (roff) on stdout and exit.
    #[arg(long, exclusive = true, help_heading = "Shell integration")]
    pub man_page: bool,
}

/// `--help`'s examples (and the man page's EXAMPLES).
const EXAMPLES: &str = "Examples:
  payments-engine transactions.csv > accounts.csv
  payments-engine < transactions.csv > accounts.csv
  payments-engine mon.csv tue.csv wed.csv -o accounts.csv   # applied in order
  payments-engine --rejects rejects.csv -o accounts.csv transactions.csv.gz
  zcat day.csv.gz | payments-engine --workers 3 > accounts.csv
  payments-engine --state ledger.state monday.csv > monday.out.csv
  payments-engine --state ledger.state --resume monday.csv   # after a crash or Ctrl-C
  payments-engine --summary-json - -o accounts.csv input.csv | jq .rows_read
  payments-engine --completions bash > ~/.local/share/bash-completion/completions/payments-engine
  payments-engine --man-page > payments-engine.1
  payments-engine --cluster hosts.txt --process 0 input.csv   # and --process 1, 2... on the others";

/// The `--summary-json` keys, for the man page.
const SUMMARY_KEYS: &str = "The --summary-json object (keys are stable; new ones may be added):
version: the schema version, 1.
program: name, version and commit of this binary.
input: the first (or only) input: path (null for standard input), format (plain, gzip, zstd), size_bytes (as stored; null for standard input), bytes_read (CSV bytes after decompression), rows_read.
inputs: every input in the order applied, each as input.
rows_read, applied, rejected, malformed: counts over every input; rows_read = applied + rejected + malformed.
rejected_by_reason, malformed_by_reason: every reason with its count, 0 included.
account_count (and accounts, the same number): accounts printed.
elapsed_s, rows_per_s: wall time, and rows read per second.
workers: worker threads (0: the single-threaded path).
cpu_s: the process's CPU seconds (user + system).
cpu_by_role: main, reader, parser, worker: each threads, cpu_s (each thread's own clock), input_wait_s, room_wait_s, peers_wait_s (wall seconds its threads waited for work, for room downstream, for the other workers' claims).
memory: state_bytes, account_bytes, stored_deposits, deposit_store_bytes, tx_id_set_bytes, peak_rss_bytes (null where unknown).
latency_us (only with --latency): samples, p50, p90, p99, p99_9, max; null when not measured.
state: path, bytes and inputs of the state file saved; null without --state.";

/// Text for a roff document: backslashes and hyphens escaped, a leading
/// dot or quote kept from being read as a request.
fn roff_text(line: &str) -> String {
    let text = line.replace('\\', "\\e").replace('-', "\\-");
    if text.starts_with(['.', '\'']) {
        format!("\\&{text}")
    } else {
        text
    }
}

/// The man page: clap_mangen's sections, with hyphenation off (options
/// and commands are never broken mid-word), the examples under EXAMPLES
/// as typed (no filling), and the summary's keys.
fn write_man_page(out: &mut dyn std::io::Write) -> std::io::Result<()> {
    use clap::CommandFactory;
    let man = clap_mangen::Man::new(Cli::command());
    man.render_title(out)?;
    writeln!(out, ".nh")?;
    man.render_name_section(out)?;
    man.render_synopsis_section(out)?;
    man.render_description_section(out)?;
    man.render_options_section(out)?;
    writeln!(out, ".SH EXAMPLES\n.nf")?;
    for line in EXAMPLES.lines().skip(1) {
        writeln!(out, "{}", roff_text(line.trim_start()))?;
    }
    writeln!(out, ".fi\n.SH \"SUMMARY JSON\"")?;
    let mut keys = SUMMARY_KEYS.lines();
    writeln!(out, "{}", roff_text(keys.next().unwrap_or_default()))?;
    for line in keys {
        let (key, text) = line.split_once(": ").unwrap_or((line, ""));
        writeln!(out, ".TP\n\\fB{}\\fR\n{}", roff_text(key), roff_text(text))?;
    }
    man.render_version_section(out)
}

/// Where the accounts (`None`: stdout), the rejects and the summary go.
type Destinations = (Option<PathBuf>, Option<Dest>, Option<Dest>);

/// A usage error in clap's words and format (exit status 2).
fn usage_error(kind: clap::error::ErrorKind, message: impl std::fmt::Display) -> clap::Error {
    use clap::CommandFactory;
    Cli::command().error(kind, message)
}

impl Cli {
    /// Writes what `--completions` or `--man-page` asked for; true if one
    /// was asked for (then there is no run).
    pub fn write_generated(&self, out: &mut dyn std::io::Write) -> std::io::Result<bool> {
        use clap::CommandFactory;
        if let Some(shell) = self.completions {
            clap_complete::generate(shell, &mut Cli::command(), "payments-engine", out);
            return Ok(true);
        }
        if self.man_page {
            write_man_page(out)?;
            return Ok(true);
        }
        Ok(false)
    }

    /// The inputs, in order: the paths given (`-` for standard input, at
    /// most once), or standard input when none is given and it is not a
    /// terminal.
    fn inputs(&self, stdin_is_terminal: bool) -> Result<Vec<Input>, clap::Error> {
        use clap::error::ErrorKind;
        if self.inputs.is_empty() {
            if stdin_is_terminal {
                return Err(usage_error(
                    ErrorKind::MissingRequiredArgument,
                    "no INPUT: name a CSV file (or several), or pipe one in \
                     (`payments-engine < day.csv`)",
                ));
            }
            return Ok(vec![Input::Stdin]);
        }
        let inputs: Vec<Input> = self
            .inputs
            .iter()
            .map(|path| match path.as_os_str() == "-" {
                true => Input::Stdin,
                false => Input::Path(path.clone()),
            })
            .collect();
        if inputs.iter().filter(|i| **i == Input::Stdin).count() > 1 {
            return Err(usage_error(
                ErrorKind::ArgumentConflict,
                "`-` (standard input) may be given once",
            ));
        }
        let several = inputs.len() > 1;
        if several && self.cluster.is_some() {
            return Err(usage_error(
                ErrorKind::ArgumentConflict,
                "--cluster reads one input: every process reads the same file",
            ));
        }
        if several && self.resume {
            return Err(usage_error(
                ErrorKind::ArgumentConflict,
                "--resume goes on with one input, the one that was interrupted (a run of \
                 several inputs takes no checkpoints: it applies all of them or none)",
            ));
        }
        Ok(inputs)
    }

    /// The settings that need --state, named when it is missing.
    fn check_state_settings(&self) -> Result<(), clap::Error> {
        let needs_state = [
            (
                self.resume,
                "--resume goes on from a checkpoint kept beside the state file",
            ),
            (
                self.allow_replay,
                "--allow-replay overrides the state file's record of applied inputs",
            ),
            (
                self.checkpoint_every.is_some(),
                "--checkpoint-every saves checkpoints beside the state file",
            ),
        ];
        match needs_state.iter().find(|(given, _)| *given) {
            Some((_, why)) if self.state.is_none() => Err(usage_error(
                clap::error::ErrorKind::MissingRequiredArgument,
                format!("{why}: add --state FILE (the state file of the run to go on with)"),
            )),
            _ => Ok(()),
        }
    }

    /// The outputs: `-o -` is stdout (as without -o); `--rejects -` and
    /// `--summary-json -` are stdout too, which the accounts must then leave
    /// to them.
    fn outputs(&self) -> Result<Destinations, clap::Error> {
        let dest = |path: &Option<PathBuf>| {
            path.as_ref().map(|path| match path.as_os_str() == "-" {
                true => Dest::Stdout,
                false => Dest::File(path.clone()),
            })
        };
        let output = self.output.clone().filter(|path| path.as_os_str() != "-");
        let (rejects, summary) = (dest(&self.rejects), dest(&self.summary_json));
        let on_stdout: Vec<&str> = [
            (output.is_none(), "the accounts (no --output FILE)"),
            (rejects == Some(Dest::Stdout), "--rejects -"),
            (summary == Some(Dest::Stdout), "--summary-json -"),
        ]
        .iter()
        .filter_map(|&(there, what)| there.then_some(what))
        .collect();
        if on_stdout.len() > 1 {
            return Err(usage_error(
                clap::error::ErrorKind::ArgumentConflict,
                format!(
                    "{} would all go to stdout: send all but one to files (e.g. -o accounts.csv)",
                    on_stdout.join(" and ")
                ),
            ));
        }
        Ok((output, rejects, summary))
    }

    /// The run's options, or a usage error that names what is wrong.
    pub fn into_options(self, stdin_is_terminal: bool) -> Result<Options, clap::Error> {
        let inputs = self.inputs(stdin_is_terminal)?;
        self.check_state_settings()?;
        let (output, rejects, summary_json) = self.outputs()?;
        let verbosity = match (self.quiet, self.verbose) {
            (true, _) => Verbosity::Quiet,
            (false, true) => Verbosity::Verbose,
            (false, false) => Verbosity::Default,
        };
        let workers = self.workers.map_or_else(default_workers, usize::from);
        // A pipe's rows are parsed as they come: parser threads would hold
        // them back (and a stop's checkpoint) until a block filled.
        let piped = inputs.contains(&Input::Stdin) && !stdin_is_a_file();
        let parsers = self.parsers.map_or_else(
            || if piped { 0 } else { default_parsers(workers) },
            usize::from,
        );
        let default_block = match self.cluster {
            Some(_) => cluster::DEFAULT_BLOCK,
            None => payments_engine::EngineBuilder::DEFAULT_BLOCK,
        };
        let block = (self.block_size).map_or(default_block, |size| {
            usize::try_from(size.0).unwrap_or(usize::MAX)
        });
        let engine = EngineBuilder::new()
            .workers(workers)
            .parsers(parsers)
            .block_size(block)
            .pin(!self.no_pin)
            .map_input(!self.no_mmap)
            .strict(self.strict);
        Ok(Options {
            inputs,
            engine,
            output,
            summary_json,
            fail_on_malformed: self.fail_on_malformed,
            rejects,
            state: self.state,
            allow_replay: self.allow_replay,
            checkpoint_every: self
                .checkpoint_every
                .map_or(Some(DEFAULT_CHECKPOINT_EVERY), |interval| interval.0),
            resume: self.resume,
            verbosity,
            latency: self.latency,
            progress: !self.no_progress,
            cluster: self.cluster.map(|hostfile| ClusterOptions {
                hostfile,
                process: self.process.unwrap_or(0),
                connect_timeout: self.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT),
                secret_file: self.cluster_secret,
            }),
        })
    }
}

/// A size in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Size(pub u64);

/// `123`, `64KiB`, `512MiB`, `4GiB`, `1TiB`, or with K/M/G/T (and an optional
/// B): powers of 1024 either way.
fn parse_size(text: &str) -> Result<Size, String> {
    let text = text.trim();
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size (examples: 512MiB, 4GiB)"))?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => return Err(format!("unknown unit {unit:?} (examples: 512MiB, 4GiB)")),
    };
    number
        .checked_mul(1 << shift)
        .filter(|&bytes| bytes > 0)
        .map(Size)
        .ok_or_else(|| format!("{text:?} is out of range"))
}

/// A `--block-size`: from 1 byte to [`payments_engine::EngineBuilder::MAX_BLOCK`].
fn parse_block_size(text: &str) -> Result<Size, String> {
    let out_of_range = || format!("{:?} is out of range: from 1 byte to 1GiB", text.trim());
    let size = parse_size(text).map_err(|e| match e.contains("out of range") {
        true => out_of_range(),
        false => e,
    })?;
    if size.0 > payments_engine::EngineBuilder::MAX_BLOCK as u64 {
        return Err(out_of_range());
    }
    Ok(size)
}

/// How often a run with a state file saves a checkpoint, by default.
pub const DEFAULT_CHECKPOINT_EVERY: Duration = Duration::from_secs(30);

/// A checkpoint interval: `None` for none.
#[derive(Clone, Copy, Debug)]
pub struct Interval(pub Option<Duration>);

/// How long a cluster process waits for the others, by default.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// A positive duration (`500ms`, `30s`, `2m`).
fn parse_timeout(text: &str) -> Result<Duration, String> {
    match humantime::parse_duration(text) {
        Ok(duration) if !duration.is_zero() => Ok(duration),
        Ok(_) => Err("must be more than 0".into()),
        Err(e) => Err(format!("{e} (examples: 500ms, 30s, 2m)")),
    }
}

fn parse_interval(text: &str) -> Result<Interval, String> {
    if text.trim() == "0" {
        return Ok(Interval(None));
    }
    let duration = humantime::parse_duration(text)
        .map_err(|e| format!("{e} (examples: 500ms, 30s, 5m, 0 for none)"))?;
    Ok(Interval((!duration.is_zero()).then_some(duration)))
}

/// Worker threads by default: three fifths of the cores (rounded), at
/// least 1. A worker's row (claim and apply) costs about 1.6 times a
/// parser's (parse and split) with 2 workers (perf.md, "No serial stage"),
/// and the calling thread needs no core of its own any more.
pub fn default_workers() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    ((3 * cores + 2) / 5).max(1)
}

/// Whether standard input is a regular file (`< day.csv`), not a pipe or a
/// terminal.
fn stdin_is_a_file() -> bool {
    #[cfg(unix)]
    {
        use std::os::fd::AsFd;
        let file = std::io::stdin().as_fd().try_clone_to_owned();
        file.map(std::fs::File::from)
            .and_then(|file| file.metadata())
            .is_ok_and(|meta| meta.is_file())
    }
    #[cfg(not(unix))]
    false
}

/// Parser threads by default: the cores the workers leave, at least 1
/// (none on one core, with `--workers 0`, or when standard input is a
/// pipe: `into_options`). On 2 cores one parser
/// and one worker beat the calling thread parsing for the worker on every
/// file measured (realistic 0.84 against 0.90 s, adversarial 0.72 against
/// 0.87 s, quoted 0.72 against 0.85 s; perf.md, "No serial stage").
pub fn default_parsers(workers: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if workers == 0 || cores <= 1 {
        return 0;
    }
    cores.saturating_sub(workers).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    /// The options of a command line, stdin not a terminal.
    fn options(args: &[&str]) -> Result<Options, clap::Error> {
        let mut all = vec!["payments-engine"];
        all.extend_from_slice(args);
        Cli::try_parse_from(all)?.into_options(false)
    }

    #[test]
    fn dash_or_nothing_means_stdin() {
        assert_eq!(options(&["-"]).unwrap().inputs, [Input::Stdin]);
        assert_eq!(options(&[]).unwrap().inputs, [Input::Stdin]);
        let at_a_terminal = Cli::parse_from(["payments-engine"]).into_options(true);
        let message = at_a_terminal.unwrap_err().to_string();
        assert!(message.contains("no INPUT"), "{message}");
        let options = options(&["--verbose", "x.csv"]).unwrap();
        assert_eq!(options.inputs, [Input::Path("x.csv".into())]);
        assert_eq!(options.verbosity, Verbosity::Verbose);
    }

    #[test]
    fn several_inputs_in_order() {
        let inputs = options(&["a.csv", "-", "b.csv"]).unwrap().inputs;
        let expected = [
            Input::Path("a.csv".into()),
            Input::Stdin,
            Input::Path("b.csv".into()),
        ];
        assert_eq!(inputs, expected);
        for (args, words) in [
            (&["-", "a.csv", "-"][..], "given once"),
            (&["--state", "s", "--resume", "a", "b"], "one input"),
            (&["--cluster", "h", "--process", "0", "a", "b"], "one input"),
        ] {
            let message = options(args).unwrap_err().to_string();
            assert!(message.contains(words), "{args:?}: {message}");
        }
    }

    #[test]
    fn dash_outputs_mean_stdout_and_only_one_goes_there() {
        let o = options(&["-o", "-", "x"]).unwrap();
        assert_eq!(o.output, None);
        let o = options(&["-o", "a.csv", "--rejects", "-", "x"]).unwrap();
        assert_eq!(o.rejects, Some(Dest::Stdout));
        let o = options(&["-o", "a.csv", "--summary-json", "-", "x"]).unwrap();
        assert_eq!(o.summary_json, Some(Dest::Stdout));
        for args in [
            &["--rejects", "-", "x"][..],
            &["-o", "-", "--summary-json", "-", "x"],
            &["-o", "a", "--rejects", "-", "--summary-json", "-", "x"],
        ] {
            let message = options(args).unwrap_err().to_string();
            assert!(
                message.contains("would all go to stdout"),
                "{args:?}: {message}"
            );
        }
    }

    #[test]
    fn settings_that_need_a_state_file_say_so() {
        for (flag, value) in [
            ("--resume", None),
            ("--allow-replay", None),
            ("--checkpoint-every", Some("5s")),
        ] {
            let mut args = vec![flag];
            args.extend(value);
            args.push("x.csv");
            let message = options(&args).unwrap_err().to_string();
            assert!(message.contains(flag), "{message}");
            assert!(message.contains("add --state FILE"), "{message}");
        }
    }

    #[test]
    fn block_size_names_its_range() {
        for text in ["0", "2GiB"] {
            let message = parse_block_size(text).unwrap_err();
            assert!(message.contains("from 1 byte to 1GiB"), "{message}");
        }
        assert_eq!(parse_block_size("64KiB"), Ok(Size(64 << 10)));
    }

    #[test]
    fn help_groups_options_under_headings() {
        use clap::CommandFactory;
        let help = Cli::command().render_long_help().to_string();
        let mut at = 0;
        for heading in [
            "Input:",
            "Output:",
            "State and recovery:",
            "Performance:",
            "Cluster:",
            "Shell integration:",
        ] {
            let found = help[at..].find(heading).map(|i| at + i);
            at = found.unwrap_or_else(|| panic!("no {heading} after byte {at}:\n{help}"));
        }
        assert!(
            help.contains("Usage: payments-engine [OPTIONS] [INPUT]..."),
            "{help}"
        );
        assert!(help.contains("Arguments:\n  [INPUT]..."), "{help}");
    }

    #[test]
    fn man_page_has_examples_and_no_hyphenation() {
        let mut page = Vec::new();
        write_man_page(&mut page).unwrap();
        let page = String::from_utf8(page).unwrap();
        assert!(page.contains("\n.nh\n"), "{page}");
        assert!(
            page.contains(".SH EXAMPLES\n.nf\npayments\\-engine transactions.csv"),
            "{page}"
        );
        assert!(!page.contains("EXTRA"), "{page}");
        assert!(page.contains("account_count"), "{page}");
    }

    #[test]
    fn sizes() {
        let table = [
            ("123", Some(123)),
            ("64KiB", Some(64 << 10)),
            ("512MiB", Some(512 << 20)),
            ("4G", Some(4 << 30)),
            ("2 GB", Some(2 << 30)),
            ("1TiB", Some(1 << 40)),
            ("0", None),
            ("lots", None),
            ("5 parsecs", None),
            ("99999999999999999999", None),
        ];
        for (text, bytes) in table {
            assert_eq!(parse_size(text).ok().map(|s| s.0), bytes, "{text}");
        }
    }

    #[test]
    fn checkpoint_intervals() {
        let every = |args: &[&str]| {
            let mut all = vec!["payments-engine", "--state", "s"];
            all.extend_from_slice(args);
            all.push("x.csv");
            Cli::try_parse_from(all)
                .and_then(|cli| cli.into_options(false).map(|o| o.checkpoint_every))
        };
        assert_eq!(every(&[]).unwrap(), Some(DEFAULT_CHECKPOINT_EVERY));
        assert_eq!(
            every(&["--checkpoint-every", "500ms"]).unwrap(),
            Some(Duration::from_millis(500))
        );
        assert_eq!(
            every(&["--checkpoint-every", "5m"]).unwrap(),
            Some(Duration::from_secs(300))
        );
        assert_eq!(every(&["--checkpoint-every", "0"]).unwrap(), None);
        assert!(every(&["--checkpoint-every", "soon"]).is_err());
    }

    #[test]
    fn quiet_and_verbose_conflict() {
        assert!(Cli::try_parse_from(["payments-engine", "-q", "-v", "x"]).is_err());
    }
}
