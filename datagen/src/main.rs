//! `datagen`: writes a synthetic transactions CSV for payments-engine.

use std::fs::File;
use std::io::{self, BufWriter};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use datagen::{generate, Config, IdOrder, Mix, Preset, Skew, Spaces};

/// Deterministic synthetic load for payments-engine: the same options and
/// seed give the same bytes. Memory does not depend on --rows, so the output
/// can be piped straight into the engine:
///
///     datagen --rows 1000000000 | payments-engine -
///
/// The default (--preset realistic) is a valid file: nothing in it is
/// malformed. A preset sets several knobs; options given after it override.
#[derive(Debug, Parser)]
#[command(name = "datagen", version, about, long_about)]
struct Args {
    /// Rows to write (the header is extra).
    #[arg(long, default_value_t = 1_000_000)]
    rows: u64,

    /// Random seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,

    /// Write to FILE instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,

    /// realistic (default): valid, uniform clients, sequential ids.
    /// hot-client: Zipf(1.5) clients, the hottest gets ~40% of rows; no chargebacks.
    /// adversarial: sparse random ids, CRLF, spaces and tabs, 1% malformed
    /// rows, 1% duplicate ids, 2% disputes of another client's tx.
    /// dispute-heavy: 45% of rows dispute or resolve.
    #[arg(long, value_parser = Preset::parse, default_value = "realistic", verbatim_doc_comment)]
    preset: Preset,

    /// Distinct clients, spread over the u16 id space (1..=65536).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=65_536))]
    clients: Option<u32>,

    /// Client skew: `uniform`, or `zipf:S` (weight of the k-th client is 1/k^S;
    /// S = 1.5 makes one hot client).
    #[arg(long, value_parser = parse_skew)]
    skew: Option<Skew>,

    /// Weights of deposit,withdrawal,dispute,resolve,chargeback
    /// (default 60,30,5,5,0.005). Disputes pick a recent deposit of the same
    /// client; resolves and chargebacks an open dispute; a row with nothing to
    /// dispute or settle becomes a deposit.
    #[arg(long, value_parser = Mix::parse)]
    mix: Option<Mix>,

    /// Tx id order: `sequential`, `shuffled:W` (shuffled within a window of W
    /// ids), `sparse` (random-looking over all of u32), `sparse:B`
    /// (random-looking below 2^B, 16 <= B <= 31: 2^(B-16) leaves of 65536 ids
    /// that fill together), `stride` (multiples of 65536 first: hostile to
    /// tables keyed by low bits). Ids stay distinct (`sparse:B` refuses more
    /// than 2^B - 1 rows).
    #[arg(long, value_parser = parse_ids)]
    ids: Option<IdOrder>,

    /// Spaces: `none`, `half` (a space after commas in half the rows), `all`
    /// (spaces after every comma and a tab before every line end).
    #[arg(long, value_parser = parse_spaces)]
    spaces: Option<Spaces>,

    /// CRLF line ends.
    #[arg(long)]
    crlf: bool,

    /// Share of rows (0..1) replaced by a malformed row.
    #[arg(long, value_name = "RATE", value_parser = parse_rate)]
    malformed: Option<f64>,

    /// Share of deposits and withdrawals (0..1) that reuse an earlier tx id.
    #[arg(long, value_name = "RATE", value_parser = parse_rate)]
    duplicates: Option<f64>,

    /// Share of disputes, resolves and chargebacks (0..1) naming another
    /// client's tx.
    #[arg(long, value_name = "RATE", value_parser = parse_rate)]
    cross_client: Option<f64>,

    /// Leave out the `type,client,tx,amount` header.
    #[arg(long)]
    no_header: bool,
}

fn parse_skew(text: &str) -> Result<Skew, String> {
    match text.split_once(':') {
        None if text == "uniform" => Ok(Skew::Uniform),
        Some(("zipf", s)) => match s.parse::<f64>() {
            Ok(s) if s.is_finite() && s > 0.0 => Ok(Skew::Zipf(s)),
            _ => Err(format!("bad Zipf exponent {s:?}")),
        },
        _ => Err("expected `uniform` or `zipf:S`".into()),
    }
}

fn parse_ids(text: &str) -> Result<IdOrder, String> {
    match text.split_once(':') {
        None if text == "sequential" => Ok(IdOrder::Sequential),
        None if text == "sparse" => Ok(IdOrder::Sparse),
        None if text == "stride" => Ok(IdOrder::Stride65536),
        Some(("sparse", b)) => match b.parse::<u32>() {
            Ok(bits) if (16..=31).contains(&bits) => Ok(IdOrder::SparseBelow(bits)),
            _ => Err(format!("bad bit count {b:?} (16..=31)")),
        },
        Some(("shuffled", w)) => match w.parse::<u32>() {
            Ok(w) if (1..=1 << 24).contains(&w) => Ok(IdOrder::Shuffled(w)),
            _ => Err(format!("bad window {w:?} (1..=16777216)")),
        },
        _ => Err("expected sequential, shuffled:W, sparse, sparse:B or stride".into()),
    }
}

fn parse_spaces(text: &str) -> Result<Spaces, String> {
    match text {
        "none" => Ok(Spaces::None),
        "half" => Ok(Spaces::Half),
        "all" => Ok(Spaces::All),
        _ => Err("expected none, half or all".into()),
    }
}

fn parse_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(rate) if (0.0..=1.0).contains(&rate) => Ok(rate),
        _ => Err(format!("{text:?} is not a rate in 0..=1")),
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let base = Config::preset(args.preset);
    let config = Config {
        rows: args.rows,
        seed: args.seed,
        clients: args.clients.unwrap_or(base.clients),
        header: !args.no_header,
        skew: args.skew.unwrap_or(base.skew),
        mix: args.mix.unwrap_or(base.mix),
        ids: args.ids.unwrap_or(base.ids),
        spaces: args.spaces.unwrap_or(base.spaces),
        crlf: args.crlf || base.crlf,
        malformed_rate: args.malformed.unwrap_or(base.malformed_rate),
        duplicate_rate: args.duplicates.unwrap_or(base.duplicate_rate),
        cross_client_rate: args.cross_client.unwrap_or(base.cross_client_rate),
    };
    if let IdOrder::SparseBelow(bits) = config.ids {
        if config.rows >= 1 << bits {
            eprintln!("datagen: error: --ids sparse:{bits} has room for {} distinct ids, fewer than --rows", (1u64 << bits) - 1);
            return ExitCode::FAILURE;
        }
    }
    let (result, target) = match &args.output {
        Some(path) => (
            File::create(path).and_then(|file| generate(config, BufWriter::new(file))),
            path.display().to_string(),
        ),
        None => (
            generate(config, io::stdout().lock()),
            "standard output".into(),
        ),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) if error.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("datagen: error: writing {target}: {error}");
            ExitCode::FAILURE
        }
    }
}
