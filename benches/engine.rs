//! Criterion benches, one group per area: amount parsing, csv parsing, ledger
//! apply, end to end. Inputs come from datagen with fixed seeds; each timed
//! loop checks its result so the work cannot be optimised away.
//!
//! `cargo bench` runs them all in a few minutes on 2 cores;
//! `cargo bench -- parse` runs one group.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use payments_engine::app::{process, Input, Options};
use payments_engine::parse::Parser;
use payments_engine::report::Verbosity;
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

fn csv_parsing(c: &mut Criterion) {
    let data = input();
    let mut group = c.benchmark_group("parse");
    group.throughput(Throughput::Bytes(data.len() as u64));
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(8));
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
    group.finish();
}

fn ledger_apply(c: &mut Criterion) {
    let data = input();
    let mut parser = Parser::new(&data[..]);
    let mut txs: Vec<Tx> = Vec::with_capacity(ROWS as usize);
    while let Some(row) = parser.next_row().unwrap() {
        txs.push(row.parsed.unwrap());
    }
    let mut group = c.benchmark_group("ledger");
    group.throughput(Throughput::Elements(txs.len() as u64));
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(8));
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
    let mut group = c.benchmark_group("end_to_end");
    group.throughput(Throughput::Bytes(data.len() as u64));
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(10));
    let options = Options {
        input: Input::Stdin,
        workers: 0,
        pin: false,
        latency: false,
        panic_at_line: None,
        strict: false,
        rejects: None,
        verbosity: Verbosity::Quiet,
        progress: false,
    };
    group.bench_function("workers_0", |b| {
        b.iter(|| {
            let (mut out, mut err) = (Vec::with_capacity(1 << 20), Vec::new());
            let tally = process(&data[..], &options, &mut out, &mut err)
                .unwrap()
                .tally;
            assert_eq!(tally.rows_read(), ROWS);
            out
        })
    });
    group.finish();
}

criterion_group!(
    benches,
    amount_parsing,
    csv_parsing,
    ledger_apply,
    end_to_end
);
criterion_main!(benches);
