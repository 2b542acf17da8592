//! The comparison runner: generates inputs with datagen at several sizes and
//! presets, runs the engine at several worker counts (and `wc -l` as the scan
//! floor), checks every worker count prints the same accounts, and prints a
//! markdown table (rows/s, MB/s, ratio to the floor, peak RSS, latency
//! percentiles). It also draws SVG charts for perf.md: throughput against
//! worker count, throughput against file size, and latency percentiles.
//!
//!     cargo build --release --workspace
//!     cargo run --release -p compare -- --help
//!
//! It finds the engine and datagen beside its own binary (the workspace's
//! target directory), so it runs from any directory.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Parser;
use plotters::prelude::*;

#[derive(Debug, Parser)]
#[command(
    name = "compare",
    about = "Throughput, memory and latency of payments-engine over datagen inputs"
)]
struct Args {
    /// The engine binary (default: payments-engine beside this binary).
    #[arg(long)]
    engine: Option<PathBuf>,
    /// The datagen binary (default: datagen beside this binary).
    #[arg(long)]
    datagen: Option<PathBuf>,
    /// Row counts of the realistic preset.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "1000000,5000000,20000000"
    )]
    sizes: Vec<u64>,
    /// Other presets, each at --preset-rows.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "hot-client,adversarial,dispute-heavy"
    )]
    presets: Vec<String>,
    #[arg(long, default_value_t = 5_000_000)]
    preset_rows: u64,
    /// Worker counts (0 is the single-threaded path).
    #[arg(long, value_delimiter = ',', default_value = "0,1,2,3")]
    workers: Vec<usize>,
    /// Runs per measurement; the median is reported.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Where inputs and outputs are written.
    #[arg(long, default_value = "/tmp/pe-compare")]
    scratch: PathBuf,
    /// Where the SVG charts go (none if absent).
    #[arg(long)]
    charts: Option<PathBuf>,
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

struct Input {
    preset: String,
    rows: u64,
    path: PathBuf,
    bytes: u64,
}

#[derive(Clone)]
struct Measure {
    /// None: the `wc -l` floor.
    workers: Option<usize>,
    median_s: f64,
    peak_rss_kib: u64,
    /// p50, p90, p99, p99.9, max in microseconds.
    latency_us: Option<[f64; 5]>,
}

/// Runs `command` to completion; returns (wall seconds, peak RSS in KiB).
fn timed(command: &mut Command) -> Result<(f64, u64)> {
    let started = Instant::now();
    let child = command.spawn().context("spawning")?;
    let mut status = 0;
    // SAFETY: a zeroed rusage is a valid out-parameter for wait4.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child by pid, writing into the locals above.
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    let seconds = started.elapsed().as_secs_f64();
    if pid < 0 {
        bail!("wait4 failed: {}", std::io::Error::last_os_error());
    }
    if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
        bail!("{command:?} failed (status {status})");
    }
    Ok((seconds, usage.ru_maxrss as u64))
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// The numbers of the engine's `--latency` line.
fn parse_latency(stderr: &str) -> Option<[f64; 5]> {
    let line = stderr.lines().find(|l| l.starts_with("latency ("))?;
    let value = |key: &str| -> Option<f64> {
        let at = line.find(key)? + key.len();
        line[at..].split_whitespace().next()?.parse().ok()
    };
    Some([
        value(" p50 ")?,
        value(" p90 ")?,
        value(" p99 ")?,
        value(" p99.9 ")?,
        value(" max ")?,
    ])
}

fn generate(args: &Args, preset: &str, rows: u64) -> Result<Input> {
    let path = args
        .scratch
        .join(format!("{preset}-{rows}-{}.csv", args.seed));
    if !path.exists() {
        let datagen = args.datagen.as_ref().expect("resolved in main");
        let status = Command::new(datagen)
            .args([
                "--preset",
                preset,
                "--rows",
                &rows.to_string(),
                "--seed",
                &args.seed.to_string(),
                "-o",
            ])
            .arg(&path)
            .status()
            .with_context(|| format!("running {}", datagen.display()))?;
        if !status.success() {
            bail!("datagen failed writing {}", path.display());
        }
    }
    let bytes = fs::metadata(&path)
        .with_context(|| format!("reading {}", path.display()))?
        .len();
    Ok(Input {
        preset: preset.into(),
        rows,
        path,
        bytes,
    })
}

fn measure(args: &Args, input: &Input, workers: Option<usize>) -> Result<Measure> {
    let out = args.scratch.join("out.csv");
    let err = args.scratch.join("err.txt");
    let mut times = Vec::new();
    let mut peak = 0;
    for _ in 0..args.runs {
        let mut command = match workers {
            None => {
                let mut c = Command::new("wc");
                c.arg("-l").arg(&input.path);
                c
            }
            Some(w) => {
                let mut c = Command::new(args.engine.as_ref().expect("resolved in main"));
                c.args(["-q", "--latency", "--workers", &w.to_string()])
                    .arg(&input.path);
                c
            }
        };
        let create = |path: &Path| {
            File::create(path).with_context(|| format!("creating {}", path.display()))
        };
        command
            .stdout(create(&out)?)
            .stderr(create(&err)?)
            .stdin(Stdio::null());
        let (seconds, rss) = timed(&mut command)?;
        times.push(seconds);
        peak = peak.max(rss);
    }
    let latency_us = parse_latency(
        &fs::read_to_string(&err).with_context(|| format!("reading {}", err.display()))?,
    );
    if let Some(w) = workers {
        // Every worker count must print the accounts of the first one.
        let reference = args
            .scratch
            .join(format!("{}-{}.accounts", input.preset, input.rows));
        let read =
            |path: &Path| fs::read(path).with_context(|| format!("reading {}", path.display()));
        if w == args.workers[0] {
            fs::copy(&out, &reference)
                .with_context(|| format!("copying {} to {}", out.display(), reference.display()))?;
        } else if read(&out)? != read(&reference)? {
            bail!(
                "--workers {w} printed different accounts for {}",
                input.path.display()
            );
        }
    }
    Ok(Measure {
        workers,
        median_s: median(times),
        peak_rss_kib: peak,
        latency_us,
    })
}

/// `--NAME` if given, else the binary NAME beside this one; it must exist.
fn binary(given: &Option<PathBuf>, name: &str) -> Result<PathBuf> {
    let path = match given {
        Some(path) => path.clone(),
        None => std::env::current_exe()
            .context("finding this binary's directory")?
            .with_file_name(name),
    };
    if !path.is_file() {
        bail!(
            "{} not found: build it with `cargo build --release --workspace`, or pass --{}",
            path.display(),
            if name == "datagen" {
                "datagen"
            } else {
                "engine"
            }
        );
    }
    Ok(path)
}

fn main() -> std::process::ExitCode {
    match compare() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("compare: error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn compare() -> Result<()> {
    let mut args = Args::parse();
    args.engine = Some(binary(&args.engine, "payments-engine")?);
    args.datagen = Some(binary(&args.datagen, "datagen")?);
    fs::create_dir_all(&args.scratch)
        .with_context(|| format!("creating {}", args.scratch.display()))?;
    let mut inputs = Vec::new();
    for &rows in &args.sizes {
        inputs.push(generate(&args, "realistic", rows)?);
    }
    for preset in &args.presets {
        inputs.push(generate(&args, preset, args.preset_rows)?);
    }
    let mut results: Vec<(Input, Measure, Vec<Measure>)> = Vec::new();
    println!("| preset | rows | MB | workers | median s | M rows/s | MB/s | x floor | peak RSS MiB | p50 us | p99 us | p99.9 us | max us |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for input in inputs {
        let floor = measure(&args, &input, None)?;
        let mut rows = Vec::new();
        for &w in &args.workers {
            let m = measure(&args, &input, Some(w))?;
            let mb = input.bytes as f64 / 1e6;
            let lat = |i: usize| {
                m.latency_us
                    .map_or("-".to_string(), |l| format!("{:.0}", l[i]))
            };
            println!(
                "| {} | {} | {:.0} | {} | {:.2} | {:.2} | {:.0} | {:.1} | {} | {} | {} | {} | {} |",
                input.preset,
                input.rows,
                mb,
                w,
                m.median_s,
                input.rows as f64 / m.median_s / 1e6,
                mb / m.median_s,
                m.median_s / floor.median_s,
                m.peak_rss_kib / 1024,
                lat(0),
                lat(2),
                lat(3),
                lat(4),
            );
            rows.push(m);
        }
        println!(
            "| {} | {} | {:.0} | `wc -l` | {:.3} | {:.1} | {:.0} | 1.0 | {} | | | | |",
            input.preset,
            input.rows,
            input.bytes as f64 / 1e6,
            floor.median_s,
            input.rows as f64 / floor.median_s / 1e6,
            input.bytes as f64 / 1e6 / floor.median_s,
            floor.peak_rss_kib / 1024
        );
        results.push((input, floor, rows));
    }
    if let Some(dir) = &args.charts {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        charts(dir, &results)?;
        eprintln!("charts written to {}", dir.display());
    }
    Ok(())
}

const COLORS: [RGBColor; 6] = [BLUE, RED, GREEN, MAGENTA, CYAN, BLACK];

/// The legend box of the labelled lines.
fn draw_legend<'a, 'b: 'a, X, Y>(
    chart: &mut ChartContext<'a, SVGBackend<'b>, Cartesian2d<X, Y>>,
    position: SeriesLabelPosition,
) -> Result<()>
where
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE)
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

/// One labelled line with a dot on each point, in the `n`-th colour.
fn draw_line<X, Y>(
    chart: &mut ChartContext<'_, SVGBackend<'_>, Cartesian2d<X, Y>>,
    points: Vec<(f64, f64)>,
    label: String,
    n: usize,
) -> Result<()>
where
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    let color = COLORS[n % COLORS.len()];
    chart
        .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))?
        .label(label)
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
    chart.draw_series(
        points
            .into_iter()
            .map(|p| Circle::new(p, 3, color.filled())),
    )?;
    Ok(())
}

fn charts(dir: &Path, results: &[(Input, Measure, Vec<Measure>)]) -> Result<()> {
    let rate = |input: &Input, m: &Measure| input.rows as f64 / m.median_s / 1e6;
    let max_rate = results
        .iter()
        .flat_map(|(i, _, ms)| ms.iter().map(move |m| rate(i, m)))
        .fold(1.0, f64::max)
        * 1.15;

    // Throughput against worker count: each preset at its largest size.
    let path = dir.join("throughput_vs_workers.svg");
    let root = SVGBackend::new(&path, (720, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let max_workers = results
        .iter()
        .flat_map(|(_, _, ms)| ms.iter().filter_map(|m| m.workers))
        .max()
        .unwrap_or(1);
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Throughput against worker count (0 = single-threaded)",
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(55)
        .build_cartesian_2d(-0.2f64..max_workers as f64 + 0.2, 0f64..max_rate)?;
    chart
        .configure_mesh()
        .x_desc("--workers")
        .y_desc("M rows/s")
        .draw()?;
    let mut presets: Vec<&str> = results.iter().map(|(i, ..)| i.preset.as_str()).collect();
    presets.dedup();
    for (n, preset) in presets.iter().enumerate() {
        let Some((input, _, ms)) = results
            .iter()
            .filter(|(i, ..)| i.preset == *preset)
            .max_by_key(|(i, ..)| i.rows)
        else {
            continue;
        };
        let points: Vec<(f64, f64)> = ms
            .iter()
            .map(|m| (m.workers.unwrap_or(0) as f64, rate(input, m)))
            .collect();
        draw_line(
            &mut chart,
            points,
            format!("{preset} ({}M rows)", input.rows / 1_000_000),
            n,
        )?;
    }
    draw_legend(&mut chart, SeriesLabelPosition::LowerRight)?;
    root.present()?;

    // Throughput against file size (realistic), one line per worker count.
    let path = dir.join("throughput_vs_size.svg");
    let root = SVGBackend::new(&path, (720, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let sized: Vec<_> = results
        .iter()
        .filter(|(i, ..)| i.preset == "realistic")
        .collect();
    let max_rows = sized.iter().map(|(i, ..)| i.rows).max().unwrap_or(1) as f64 / 1e6;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Throughput against file size (realistic preset)",
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(55)
        .build_cartesian_2d(0f64..max_rows * 1.05, 0f64..max_rate)?;
    chart
        .configure_mesh()
        .x_desc("rows (millions)")
        .y_desc("M rows/s")
        .draw()?;
    let worker_counts: Vec<usize> = sized
        .first()
        .map(|(_, _, ms)| ms.iter().filter_map(|m| m.workers).collect())
        .unwrap_or_default();
    for (n, w) in worker_counts.iter().enumerate() {
        let points: Vec<(f64, f64)> = sized
            .iter()
            .filter_map(|(i, _, ms)| {
                ms.iter()
                    .find(|m| m.workers == Some(*w))
                    .map(|m| (i.rows as f64 / 1e6, rate(i, m)))
            })
            .collect();
        draw_line(&mut chart, points, format!("--workers {w}"), n)?;
    }
    draw_legend(&mut chart, SeriesLabelPosition::LowerRight)?;
    root.present()?;

    // Latency percentiles (HdrHistogram style: x = 1/(1-p) on a log scale).
    let path = dir.join("latency_percentiles.svg");
    let root = SVGBackend::new(&path, (720, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let Some((input, _, ms)) = sized.iter().max_by_key(|(i, ..)| i.rows) else {
        return Ok(());
    };
    let max_us = ms
        .iter()
        .filter_map(|m| m.latency_us)
        .map(|l| l[4])
        .fold(10.0, f64::max)
        * 2.0;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "Parse-to-applied latency by percentile ({}M rows)",
                input.rows / 1_000_000
            ),
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d((1f64..20_000f64).log_scale(), (1f64..max_us).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("percentile (first point: p50)")
        .y_desc("microseconds")
        .x_label_formatter(&|x| match *x as u64 {
            1 => String::new(),
            10 => "90%".into(),
            100 => "99%".into(),
            1000 => "99.9%".into(),
            10000 => "max".into(),
            _ => String::new(),
        })
        .draw()?;
    for (n, m) in ms.iter().enumerate() {
        let Some(l) = m.latency_us else { continue };
        let points = vec![
            (2.0, l[0]),
            (10.0, l[1]),
            (100.0, l[2]),
            (1000.0, l[3]),
            (10000.0, l[4]),
        ];
        draw_line(
            &mut chart,
            points,
            format!("--workers {}", m.workers.unwrap_or(0)),
            n,
        )?;
    }
    draw_legend(&mut chart, SeriesLabelPosition::UpperLeft)?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_engines_latency_line() {
        let stderr =
            "summary: ...\nlatency (parse to applied, first record of each batch, 977 samples): \
                      p50 70.5 us, p90 226.7 us, p99 397.6 us, p99.9 532.5 us, max 532.5 us\n";
        assert_eq!(
            parse_latency(stderr),
            Some([70.5, 226.7, 397.6, 532.5, 532.5])
        );
        assert_eq!(
            parse_latency("latency: not measured on the single-threaded path (--workers 0)"),
            None
        );
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), 3.0);
    }
}
