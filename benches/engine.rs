//! Criterion benches, one group per area: amount parsing, csv parsing, ledger
//! apply, lane hand-off, the state file, the single-threaded stages of a
//! block-parallel run, end to end (single-threaded and pipeline). Inputs come from datagen with fixed seeds; each timed loop
//! checks its result so the work cannot be optimised away. End-to-end runs
//! also print the engine's latency percentiles.
//!
//! `cargo bench` runs them all in a few minutes on 2 cores;
//! `cargo bench -- parse` runs one group.

use std::hint::black_box;
use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{
    criterion_group, criterion_main, BatchSize, BenchmarkGroup, Criterion, Throughput,
};
use payments_engine::bench_support::Parser;
use payments_engine::EngineBuilder;
use payments_engine::{Amount, Ledger, Tx};

const ROWS: u64 = 1_000_000;

fn input() -> Vec<u8> {
    datagen::generate_vec(datagen::Config {
        rows: ROWS,
        seed: 42,
        ..datagen::Config::default()
    })
}

fn amount_parsing(c: &mut Criterion) {
    let samples: Vec<&[u8]> = vec![
        b"1",
        b"5.25",
        b"123.4567",
        b"0.0001",
        b"922337203685477.5807",
        b"1.500000",
    ];
    let mut group = c.benchmark_group("amount");
    group.throughput(Throughput::Elements(samples.len() as u64));
    group.bench_function("parse", |b| {
        b.iter(|| {
            let mut sum = 0i64;
            for s in &samples {
                sum = sum.wrapping_add(Amount::parse(black_box(s)).unwrap().raw());
            }
            assert_ne!(sum, 0);
            sum
        })
    });
    group.finish();
}

/// A group of whole-input benches: 10 samples of up to 8 s each.
fn long_group<'a>(
    c: &'a mut Criterion,
    name: &str,
    throughput: Throughput,
) -> BenchmarkGroup<'a, WallTime> {
    let mut group = c.benchmark_group(name);
    group
        .throughput(throughput)
        .sample_size(10)
        .measurement_time(Duration::from_secs(8));
    group
}

fn csv_parsing(c: &mut Criterion) {
    let data = input();
    let mut group = long_group(c, "parse", Throughput::Bytes(data.len() as u64));
    // The floor: finding line ends only.
    group.bench_function("memchr_lines", |b| {
        b.iter(|| {
            let lines = memchr::memchr_iter(b'\n', &data).count() as u64;
            assert_eq!(lines, ROWS + 1);
        })
    });
    // The ceiling of a csv-core parser: records and fields, nothing else.
    group.bench_function("csv_core_only", |b| {
        let mut out = vec![0u8; 1 << 16];
        let mut ends = vec![0usize; 64];
        b.iter(|| {
            let mut reader = csv_core::Reader::new();
            let (mut input, mut records) = (&data[..], 0u64);
            loop {
                let (result, nin, _, _) = reader.read_record(input, &mut out, &mut ends);
                input = &input[nin..];
                match result {
                    csv_core::ReadRecordResult::Record => records += 1,
                    csv_core::ReadRecordResult::End => break,
                    _ => {}
                }
            }
            assert_eq!(records, ROWS + 1);
        })
    });
    // simd-csv (the reader behind `xan`), finding records and fields only:
    // measured against `rows`, our whole parse (issue 11, perf.md).
    group.bench_function("simd_csv_fields", |b| {
        b.iter(|| {
            let mut reader = simd_csv::ZeroCopyReaderBuilder::new()
                .buffer_capacity(1 << 16)
                .from_reader(&data[..]);
            let (mut records, mut bytes) = (0u64, 0usize);
            while let Some(record) = reader.read_byte_record().unwrap() {
                records += 1;
                bytes += (0..record.len())
                    .map(|i| record.get(i).map_or(0, <[u8]>::len))
                    .sum::<usize>();
            }
            assert_eq!(records, ROWS);
            assert!(bytes > 0);
        })
    });
    // What adopting it would cost at least: its fields, then the same
    // conversions as ours (kind, ids, exact amount), without our checks.
    group.bench_function("simd_csv_rows", |b| {
        fn number(field: &[u8]) -> u64 {
            field
                .iter()
                .fold(0u64, |n, &d| n * 10 + u64::from(d.wrapping_sub(b'0')))
        }
        b.iter(|| {
            let mut reader = simd_csv::ZeroCopyReaderBuilder::new()
                .buffer_capacity(1 << 16)
                .from_reader(&data[..]);
            let (mut rows, mut sum) = (0u64, 0i64);
            while let Some(record) = reader.read_byte_record().unwrap() {
                let kind = record.get(0).unwrap_or_default();
                let field = |i| record.get(i).unwrap_or_default().trim_ascii();
                let client = number(field(1));
                let tx = number(field(2));
                let amount = match record.get(3).map(<[u8]>::trim_ascii) {
                    Some(field) if !field.is_empty() => Amount::parse(field).unwrap().raw(),
                    _ => 0,
                };
                rows += u64::from(!kind.is_empty());
                sum = sum.wrapping_add(amount ^ (client + tx) as i64);
            }
            assert_eq!(rows, ROWS);
            sum
        })
    });
    group.bench_function("simd_csv_lines", |b| {
        b.iter(|| {
            let mut splitter = simd_csv::SplitterBuilder::new()
                .buffer_capacity(1 << 16)
                .from_reader(&data[..]);
            let mut records = 0u64;
            while splitter.split_record().unwrap().is_some() {
                records += 1;
            }
            assert_eq!(records, ROWS);
        })
    });
    group.bench_function("rows", |b| {
        b.iter(|| {
            let mut parser = Parser::new(&data[..]);
            let mut rows = 0u64;
            while let Some(row) = parser.next_row().unwrap() {
                rows += u64::from(row.parsed.is_ok());
            }
            assert_eq!(rows, ROWS);
        })
    });
    // What the engine does: batches of common lines by the fast path, the
    // general path for the others (here the header only).
    group.bench_function("fast_rows", |b| {
        b.iter(|| {
            let mut parser = Parser::new(&data[..]);
            let mut rows = 0u64;
            loop {
                let fast = parser.fast_rows().unwrap().txs().len();
                if fast > 0 {
                    rows += fast as u64;
                    continue;
                }
                match parser.next_row().unwrap() {
                    Some(row) => rows += u64::from(row.parsed.is_ok()),
                    None => break,
                }
            }
            assert_eq!(rows, ROWS);
        })
    });
    group.finish();
}

fn ledger_apply(c: &mut Criterion) {
    let data = input();
    let mut parser = Parser::new(&data[..]);
    let mut txs: Vec<Tx> = Vec::with_capacity(ROWS as usize);
    while let Some(row) = parser.next_row().unwrap() {
        txs.push(row.parsed.unwrap());
    }
    let mut group = long_group(c, "ledger", Throughput::Elements(txs.len() as u64));
    group.bench_function("apply", |b| {
        b.iter_batched(
            Ledger::new,
            |mut ledger| {
                let applied = txs.iter().filter(|tx| ledger.apply(**tx).is_ok()).count();
                assert!(applied > txs.len() / 2);
                ledger
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

fn end_to_end(c: &mut Criterion) {
    let data = input();
    let mut group = long_group(c, "end_to_end", Throughput::Bytes(data.len() as u64));
    let run = |engine: &EngineBuilder| {
        let finished = engine.run_csv(Ledger::new(), &data[..]).unwrap();
        assert_eq!(finished.tally().rows_read(), ROWS);
        let mut out = Vec::with_capacity(1 << 20);
        finished.write_accounts(&mut out).unwrap();
        assert!(out.len() > 100_000, "accounts printed");
        finished
    };
    for workers in [0, 1, 2, 4] {
        let engine = EngineBuilder::new().workers(workers).pin(true);
        group.bench_function(format!("workers_{workers}"), |b| b.iter(|| run(&engine)));
        // Tail latency from the engine's own histogram, for one more run.
        eprintln!(
            "end_to_end/workers_{workers}: {}",
            run(&engine).measures().latency_text()
        );
    }
    group.finish();
}

/// Saving and loading the state file of the 1M-row input (in memory, so
/// the figure is the encoding and the checks, not the disk).
fn state_file(c: &mut Criterion) {
    use payments_engine::bench_support::{load_state, save_state};
    use std::io::Cursor;
    let finished = EngineBuilder::new()
        .run_csv(Ledger::new(), &input()[..])
        .unwrap();
    let deposits = finished.measures().deposits as u64;
    let ledger = finished.into_state();
    let mut bytes = Vec::new();
    save_state(&ledger, &mut Cursor::new(&mut bytes)).unwrap();
    let mut group = c.benchmark_group("state");
    group.throughput(Throughput::Elements(deposits));
    group.sample_size(10);
    group.bench_function("save", |b| {
        b.iter(|| {
            let mut out = Cursor::new(Vec::with_capacity(bytes.len()));
            let len = save_state(&ledger, &mut out).unwrap();
            assert_eq!(len as usize, bytes.len());
        })
    });
    group.bench_function("load", |b| {
        b.iter(|| {
            let saved = load_state(&mut Cursor::new(&bytes)).unwrap();
            assert_eq!(saved.ledger.deposits().count() as u64, deposits);
        })
    });
    group.finish();
}

/// CPU time of the calling thread (not wall time): what the single-threaded
/// stages cost while the parser and worker threads run beside them.
fn thread_cpu() -> Duration {
    let ns = payments_engine::cpu::thread_ns().expect("a thread CPU clock (Linux)");
    Duration::from_nanos(ns)
}

/// The single-threaded stages of a block-parallel run, per row: claims
/// alone, the in-order hand-out of parsed blocks (sequencing and merging the
/// parsers' output), and everything the calling thread does in a whole run
/// (hand-out, claims, routing). The last two are measured in the calling
/// thread's CPU time, so the parsers and workers beside it do not count.
fn single_threaded_stages(c: &mut Criterion) {
    use payments_engine::bench_support::block_rows;
    use payments_engine::bench_support::TxIdSet;
    let data = input();
    let mut parser = Parser::new(&data[..]);
    let mut claims: Vec<u32> = Vec::new();
    while let Some(row) = parser.next_row().unwrap() {
        let tx = row.parsed.unwrap();
        if tx.kind.claims_id() {
            claims.push(tx.tx);
        }
    }
    let mut group = c.benchmark_group("stages");
    group.throughput(Throughput::Elements(ROWS));
    group.sample_size(10);
    group.bench_function("claims", |b| {
        b.iter_batched(
            TxIdSet::default,
            |mut set| {
                let fresh = claims.iter().filter(|&&id| set.claim(id)).count();
                assert!(fresh > 0);
                set
            },
            BatchSize::LargeInput,
        )
    });
    let block = payments_engine::EngineBuilder::DEFAULT_BLOCK;
    group.bench_function("hand_out_parsers_2", |b| {
        b.iter_custom(|iters| {
            let start = thread_cpu();
            for _ in 0..iters {
                assert_eq!(block_rows(&data, 2, block), ROWS);
            }
            thread_cpu() - start
        })
    });
    group.bench_function("calling_thread_workers_1_parsers_2", |b| {
        let engine = EngineBuilder::new().workers(1).parsers(2);
        b.iter_custom(|iters| {
            let start = thread_cpu();
            for _ in 0..iters {
                let finished = engine.run_csv(Ledger::new(), &data[..]).unwrap();
                assert_eq!(finished.tally().rows_read(), ROWS);
            }
            thread_cpu() - start
        })
    });
    group.finish();
}

criterion_group!(
    benches,
    single_threaded_stages,
    state_file,
    amount_parsing,
    csv_parsing,
    ledger_apply,
    end_to_end
);
criterion_main!(benches);
