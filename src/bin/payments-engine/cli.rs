//! Command-line arguments (clap derive), turned into [`Options`].

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::app::Options;
use crate::input::Input;
use payments_engine::cluster::ClusterOptions;
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
    override_usage = "payments-engine [OPTIONS] <INPUT>",
    after_long_help = EXAMPLES
)]
pub struct Cli {
    /// Transactions CSV file (plain, gzip or zstd), or `-` for standard input.
    #[arg(value_name = "INPUT", required_unless_present_any = ["completions", "man_page"])]
    pub input: Option<PathBuf>,

    /// Print a shell completion script (bash, zsh, fish, elvish, powershell)
    /// on stdout and exit.
    #[arg(long, value_name = "SHELL", exclusive = true)]
    pub completions: Option<clap_complete::Shell>,

    /// Print the man page (roff) on stdout and exit.
    #[arg(long, exclusive = true)]
    pub man_page: bool,

    /// Worker threads of the sharded pipeline (default: the available cores
    /// minus one, at least 1, on up to 3 cores; half the cores after the
    /// router's on more). 0 runs the single-threaded path. The output is
    /// byte-identical for every value.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(0..=payments_engine::EngineBuilder::MAX_WORKERS as i64))]
    pub workers: Option<u16>,

    /// Parser threads (default: the cores left after the router and the
    /// workers, at least 1, on 4 cores or more; else 0, and 0 with
    /// --workers 0). With N, a reader thread cuts the input
    /// into blocks of whole lines and N threads parse blocks at once; the
    /// router still claims tx ids in file order. 0 parses on the router
    /// thread. The output is byte-identical for every value; --verbose says
    /// what was chosen.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(0..=payments_engine::EngineBuilder::MAX_PARSERS as i64))]
    pub parsers: Option<u16>,

    /// Target size of a parser thread's block (default 1MiB; `64KiB`,
    /// `4MiB`, or bytes); a block ends at the first line end from there.
    /// Only throughput depends on it. At most 1GiB.
    #[arg(long, value_name = "SIZE", value_parser = parse_block_size)]
    pub block_size: Option<Size>,

    /// Do not pin worker threads to cores (by default each worker is pinned
    /// to its own core when there are more cores than workers).
    #[arg(long)]
    pub no_pin: bool,

    /// Print parse-to-applied latency percentiles (p50, p90, p99, p99.9, max
    /// in microseconds) on stderr, sampled on the first record of each batch.
    #[arg(long)]
    pub latency: bool,

    /// Treat the first malformed record as a fatal error (exit 1, no accounts
    /// printed). Rejections by the ledger rules are never fatal.
    #[arg(long)]
    pub strict: bool,

    /// Write the accounts to FILE instead of stdout. FILE appears whole when
    /// the run succeeds, and is left as it was when it fails.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// Write a JSON summary of the run to FILE: counts (with every reason),
    /// elapsed time, rows/s, input, workers, memory, latency (keys in the
    /// README). Written whole, when the run succeeds.
    #[arg(long, value_name = "FILE")]
    pub summary_json: Option<PathBuf>,

    /// Write every malformed or rejected record to FILE as CSV with the
    /// header line,reason,detail,record, in line order. Like --output, FILE
    /// appears whole when the run succeeds, and is left as it was otherwise.
    #[arg(long, value_name = "FILE")]
    pub rejects: Option<PathBuf>,

    /// Load the ledger's state (accounts, deposits, claimed tx ids) from FILE
    /// before reading the input, when FILE exists, and save it there after a
    /// successful run (atomically; the previous generation is kept as
    /// FILE.prev). Tomorrow's disputes then find today's deposits.
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,

    /// Apply an input that the state file records as already applied (by
    /// size and hash). Refused by default: it would repeat its disputes,
    /// resolves and chargebacks.
    #[arg(long, requires = "state")]
    pub allow_replay: bool,

    /// With --state: save a checkpoint this often (500ms, 30s, 5m; 0 for
    /// none but the one a stop saves), so that a run killed at any moment
    /// can be resumed with --resume. Default: 30s.
    #[arg(long, value_name = "DURATION", requires = "state", value_parser = parse_interval)]
    pub checkpoint_every: Option<Interval>,

    /// With --state: go on from the checkpoint an interrupted run left
    /// (same input, same --rejects/--verbose); outputs, counts and state end
    /// byte-identical to an uninterrupted run's. Without a pending
    /// checkpoint the run starts from the beginning on the saved state.
    #[arg(long, requires = "state")]
    pub resume: bool,

    /// The most memory the engine may hold (`512MiB`, `4GiB`, `2G`, or
    /// bytes). Past it the run ends with one error line (exit 1) naming the
    /// line reached, instead of an abort. Default: the cgroup's memory limit,
    /// else the machine's memory.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub max_memory: Option<Size>,

    /// Exit with status 3 (instead of 0) when the run completed but some rows
    /// were malformed. Unlike --strict the run goes on to the end and writes
    /// every output.
    #[arg(long, conflicts_with = "strict")]
    pub fail_on_malformed: bool,

    /// Print nothing on stderr but fatal errors: no per-row lines, no summary.
    #[arg(short, long, conflicts_with = "verbose")]
    pub quiet: bool,

    /// Print every malformed or rejected row on stderr (default: the first 10
    /// of each reason).
    #[arg(short, long)]
    pub verbose: bool,

    /// Never show the progress bar (shown by default only when stderr is a
    /// terminal and the input is a file of 64 MiB or more).
    #[arg(long)]
    pub no_progress: bool,

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
    #[arg(long, value_name = "HOSTFILE", requires = "process")]
    pub cluster: Option<PathBuf>,

    /// With --cluster: this process's line of the host file, from 0.
    #[arg(long, value_name = "I", requires = "cluster")]
    pub process: Option<usize>,

    /// With --cluster: how long to wait for every process to connect
    /// (default 30s).
    #[arg(long, value_name = "DURATION", requires = "cluster", value_parser = parse_timeout)]
    pub connect_timeout: Option<Duration>,

    /// With --cluster: a file holding a secret every process shares (at
    /// least 16 bytes; e.g. `head -c 32 /dev/urandom | base64 > FILE`).
    /// Processes prove they hold it (a challenge-response with fresh nonces
    /// and a keyed MAC) before they say anything else; without it the host
    /// file may name only loopback addresses. The data after the handshake
    /// is not encrypted: run a cluster on a private network.
    /// (Ignored without --cluster, so that the variable may be set for
    /// every run.)
    #[arg(long, value_name = "FILE", env = "PAYMENTS_ENGINE_CLUSTER_SECRET_FILE")]
    pub cluster_secret: Option<PathBuf>,
}

/// `--help`'s examples.
const EXAMPLES: &str = "Examples:
  payments-engine transactions.csv > accounts.csv
  payments-engine --rejects rejects.csv -o accounts.csv transactions.csv.gz
  zcat day.csv.gz | payments-engine --workers 3 - > accounts.csv
  payments-engine --state ledger.state monday.csv > monday.csv.out
  payments-engine --state ledger.state --resume monday.csv   # after a crash or Ctrl-C
  payments-engine --summary-json run.json --fail-on-malformed input.csv
  payments-engine --completions bash > ~/.local/share/bash-completion/completions/payments-engine
  payments-engine --man-page > payments-engine.1
  payments-engine --cluster hosts.txt --process 0 input.csv   # and --process 1, 2... on the others";

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
            clap_mangen::Man::new(Cli::command()).render(out)?;
            return Ok(true);
        }
        Ok(false)
    }

    pub fn into_options(self) -> Options {
        // Clap requires INPUT unless --completions or --man-page was given,
        // and those are handled before a run.
        let input = match self.input {
            Some(path) if path.as_os_str() != "-" => Input::Path(path),
            _ => Input::Stdin,
        };
        let verbosity = match (self.quiet, self.verbose) {
            (true, _) => Verbosity::Quiet,
            (false, true) => Verbosity::Verbose,
            (false, false) => Verbosity::Default,
        };
        let workers = self.workers.map_or_else(default_workers, usize::from);
        let parsers = self
            .parsers
            .map_or_else(|| default_parsers(workers), usize::from);
        let block = self
            .block_size
            .map_or(payments_engine::EngineBuilder::DEFAULT_BLOCK, |size| {
                usize::try_from(size.0).unwrap_or(usize::MAX)
            });
        let engine = EngineBuilder::new()
            .workers(workers)
            .parsers(parsers)
            .block_size(block)
            .pin(!self.no_pin)
            .strict(self.strict);
        Options {
            input,
            engine,
            output: self.output,
            summary_json: self.summary_json,
            fail_on_malformed: self.fail_on_malformed,
            rejects: self.rejects,
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
        }
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

/// A `--block-size`: a size of at most [`payments_engine::EngineBuilder::MAX_BLOCK`].
fn parse_block_size(text: &str) -> Result<Size, String> {
    let size = parse_size(text)?;
    if size.0 > payments_engine::EngineBuilder::MAX_BLOCK as u64 {
        return Err(format!(
            "{:?} is more than the largest block, 1GiB",
            text.trim()
        ));
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

/// Worker threads by default: the available cores minus one (the
/// router's), at least 1, on 3 cores or fewer; with more, half of the
/// cores after the router's, the other half being the parsers' (parsing a
/// row costs about what applying it does: perf.md).
pub fn default_workers() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    match cores {
        0..=3 => cores.saturating_sub(1).max(1),
        _ => (cores - 1) / 2,
    }
}

/// Parser threads by default: none for the single-threaded path, and none
/// on 3 cores or fewer, where a parser thread only takes a core from the
/// router or the workers (2 cores, 1 worker: the 20M-row realistic file
/// 1.70 s with none, 1.57 s with one, within noise; the adversarial and
/// sparse-id files 1.4-1.5 times slower with one; perf.md, "Parsing on
/// every core"). Else the cores left after the router and the workers, at
/// least 1.
pub fn default_parsers(workers: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if workers == 0 || cores <= 3 {
        return 0;
    }
    cores.saturating_sub(workers + 1).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn dash_means_stdin() {
        let options = Cli::parse_from(["payments-engine", "-"]).into_options();
        assert_eq!(options.input, Input::Stdin);
        let options = Cli::parse_from(["payments-engine", "--verbose", "x.csv"]).into_options();
        assert_eq!(options.input, Input::Path("x.csv".into()));
        assert_eq!(options.verbosity, Verbosity::Verbose);
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
            Cli::try_parse_from(all).map(|cli| cli.into_options().checkpoint_every)
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
        assert!(Cli::try_parse_from(["payments-engine", "--resume", "x.csv"]).is_err());
    }

    #[test]
    fn quiet_and_verbose_conflict() {
        assert!(Cli::try_parse_from(["payments-engine", "-q", "-v", "x"]).is_err());
    }
}
