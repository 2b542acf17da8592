//! The sharded pipeline through the library: every worker count and batch
//! size gives the single-threaded path's outputs, an input that fails
//! mid-stream ends the run with one error and no accounts, and nothing
//! hangs. (A worker that panics is tested inside the crate, where the
//! test-only fault hook exists: `src/pipeline/mod.rs`.)

mod support;

use std::io::{self, Read};
use std::sync::mpsc;
use std::time::Duration;

use payments_engine::EngineBuilder;
use payments_engine::Error;
use payments_engine::Reject;
use support::{datagen_input, run_csv, Outputs};

/// Runs on another thread, failing the test after 60 s (a hang).
fn bounded<T: Send + 'static>(run: impl FnOnce() -> T + Send + 'static) -> T {
    let (send, receive) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = send.send(run());
    });
    receive
        .recv_timeout(Duration::from_secs(60))
        .expect("the run hung: no result within 60 s")
}

/// A reader that fails with an I/O error after `fail_at` bytes.
struct Failing {
    data: Vec<u8>,
    pos: usize,
    fail_at: usize,
}

impl Read for Failing {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.fail_at {
            return Err(io::Error::other("the disk caught fire"));
        }
        let end = self.data.len().min(self.fail_at).min(self.pos + buf.len());
        let n = end - self.pos;
        buf[..n].copy_from_slice(&self.data[self.pos..end]);
        self.pos = end;
        Ok(n)
    }
}

fn workers(n: usize) -> EngineBuilder {
    EngineBuilder::new().workers(n)
}

#[test]
fn every_worker_count_and_batch_size_gives_the_single_threaded_outputs() {
    let input = datagen_input(50_000, 7);
    let expected = run_csv(&workers(0), &input).unwrap();
    assert!(expected
        .stdout
        .starts_with("client,available,held,total,locked\n"));
    assert_eq!(expected.tally.rows_read(), 50_000);
    for n in [1, 2, 3, 4, 8, 16] {
        for batch in [1, 2, 7, 1024] {
            let engine = workers(n).batch_size(batch);
            let input = input.clone();
            let got = bounded(move || run_csv(&engine, &input).unwrap());
            assert!(got == expected, "--workers {n}, batch {batch} differs");
        }
    }
}

#[test]
fn every_parser_count_and_block_size_gives_the_single_threaded_outputs() {
    let input = datagen_input(50_000, 8);
    let expected = run_csv(&workers(0), &input).unwrap();
    for parsers in [1, 2, 3, 8] {
        for w in [0, 1, 3] {
            for block in [1, 100, 4_096, 65_536, 1 << 20] {
                let engine = workers(w).parsers(parsers).block_size(block);
                let input = input.clone();
                let got = bounded(move || run_csv(&engine, &input).unwrap());
                assert!(
                    got == expected,
                    "--parsers {parsers}, --workers {w}, block {block} differs"
                );
            }
        }
    }
}

#[test]
fn an_input_error_mid_stream_is_fatal_for_every_worker_count() {
    let data = datagen_input(200_000, 7);
    let fail_at = data.len() / 2;
    for (n, parsers) in [(0, 0), (1, 0), (2, 0), (8, 0), (0, 2), (3, 1)] {
        let reader = Failing {
            data: data.clone(),
            pos: 0,
            fail_at,
        };
        let engine = workers(n).parsers(parsers);
        let result = bounded(move || engine.run_csv(Default::default(), reader).map(drop));
        let error = result.expect_err("a read error must fail the run");
        assert!(matches!(error, Error::Input(_)), "{error:?}");
        let chain = format!("{}: {}", error, std::error::Error::source(&error).unwrap());
        assert_eq!(
            chain, "reading input: the disk caught fire",
            "--workers {n}, --parsers {parsers}"
        );
    }
}

/// Many batches of scattered and duplicate ids: the router claims ids some
/// records behind parsing (with prefetching) and across batch hand-offs, and
/// every worker count must decide rule 2 exactly as the single-threaded
/// ledger does, row by row (the rejects file lists each rejected row).
#[test]
fn duplicate_ids_across_many_batches_are_decided_alike_for_every_worker_count() {
    let input = datagen::generate_vec(datagen::Config {
        rows: 60_000,
        seed: 11,
        duplicate_rate: 0.2,
        ..datagen::Config::preset(datagen::Preset::Adversarial)
    });
    let expected: Outputs = run_csv(&workers(0), &input).unwrap();
    let duplicates = expected.tally.rejected_by[Reject::DuplicateTx as usize];
    assert!(duplicates > 5_000, "{duplicates} duplicate-id rejects");
    assert!(expected.rejects.lines().count() as u64 > duplicates);
    for n in [1, 2, 3, 5, 8] {
        for batch in [2, 7, 1024] {
            let got = run_csv(&workers(n).batch_size(batch), &input).unwrap();
            assert!(got == expected, "--workers {n}, batch {batch} differs");
        }
    }
    for (n, parsers, block) in [(0, 3, 1000), (3, 2, 64), (2, 8, 1 << 16)] {
        let engine = workers(n).parsers(parsers).block_size(block);
        let got = run_csv(&engine, &input).unwrap();
        assert!(
            got == expected,
            "--workers {n}, --parsers {parsers} differs"
        );
    }
}

/// Ids that count up, some repeated a little later (in the same block or
/// a later one): a block whose claims ascend carries them as ranges (a
/// repeat of an earlier block's id can open one), any other lists them,
/// and every worker count must decide rule 2 as the single-threaded
/// ledger does, row by row.
#[test]
fn repeats_among_ascending_ids_are_decided_alike_for_every_worker_count() {
    let input = datagen::generate_vec(datagen::Config {
        rows: 60_000,
        seed: 5,
        duplicate_rate: 0.01,
        ..datagen::Config::default()
    });
    let expected: Outputs = run_csv(&workers(0), &input).unwrap();
    let duplicates = expected.tally.rejected_by[Reject::DuplicateTx as usize];
    assert!(duplicates > 300, "{duplicates} duplicate-id rejects");
    for (n, parsers, block) in [(2, 1, 64), (3, 2, 300), (5, 2, 4096), (8, 3, 1 << 16)] {
        let engine = workers(n).parsers(parsers).block_size(block);
        let got = run_csv(&engine, &input).unwrap();
        assert!(
            got == expected,
            "--workers {n}, --parsers {parsers}, block {block} differs"
        );
    }
    for (n, batch) in [(2, 7), (3, 1024)] {
        let got = run_csv(&workers(n).batch_size(batch), &input).unwrap();
        assert!(got == expected, "--workers {n}, batch {batch} differs");
    }
}

#[test]
fn out_of_range_settings_are_errors_not_panics() {
    for engine in [
        workers(257),
        workers(2).batch_size(0),
        workers(2).batch_size(65_537),
        workers(1).parsers(257),
        workers(1).parsers(1).block_size(0),
        workers(0).parsers(2).block_size((1 << 30) + 1),
    ] {
        let error = engine.run_csv(Default::default(), &b""[..]).map(drop);
        assert!(matches!(error, Err(Error::Config(_))), "{engine:?}");
    }
}

/// Rows that fill batches exactly, one short or one over (the parser hands
/// out `BATCH` rows at a time, its `FAST_ROWS`; `--workers 0` prefetches
/// 16 rows ahead and claims a batch whose ids run consecutively at once),
/// each ending in a rejected row; from row `BATCH + 1` the ids start again
/// at `BATCH - 6`, so a run of ids repeats ids claimed in the batch before:
/// every path gives what the ledger gives applying the rows one by one, and
/// the last row is rejected.
#[test]
fn batch_boundaries_with_a_rejected_last_row_are_decided_as_row_by_row() {
    use payments_engine::{Amount, Kind, Ledger, Tx};
    const BATCH: u32 = 1024;
    for n in [
        1,
        15,
        16,
        17,
        31,
        32,
        33,
        BATCH - 1,
        BATCH,
        BATCH + 1,
        BATCH + 7,
        BATCH + 8,
        2 * BATCH - 1,
        2 * BATCH,
        2 * BATCH + 1,
    ] {
        let client = |id: u32| (id % 3 + 1) as u16;
        let mut txs: Vec<Tx> = (0..n - 1)
            .map(|i: u32| {
                let id = if i < BATCH { i + 1 } else { i - 6 };
                if i % 10 == 9 {
                    let disputed = id - 3;
                    let kind = Kind::Dispute;
                    let amount = Amount::ZERO;
                    Tx {
                        kind,
                        client: client(disputed),
                        tx: disputed,
                        amount,
                    }
                } else {
                    let amount = Amount::from_raw(10_000);
                    Tx {
                        kind: Kind::Deposit,
                        client: client(id),
                        tx: id,
                        amount,
                    }
                }
            })
            .collect();
        // The next id of the run: a withdrawal no account can pay.
        let last = txs
            .iter()
            .filter(|t| t.kind == Kind::Deposit)
            .map(|t| t.tx)
            .max();
        let id = last.map_or(1, |id| id + 1);
        let amount = Amount::from_raw(1_000_000_000);
        txs.push(Tx {
            kind: Kind::Withdrawal,
            client: client(id),
            tx: id,
            amount,
        });
        let mut input = String::from("type,client,tx,amount\n");
        let mut ledger = Ledger::new();
        let mut rejected = 0;
        for tx in &txs {
            let kind = format!("{:?}", tx.kind).to_lowercase();
            let amount = if tx.kind.claims_id() {
                tx.amount.to_string()
            } else {
                String::new()
            };
            input += &format!("{kind},{},{},{amount}\n", tx.client, tx.tx);
            rejected += u64::from(ledger.apply(*tx).is_err());
        }
        let expected = run_csv(&workers(0), input.as_bytes()).unwrap();
        assert_eq!(expected.tally.rejected(), rejected, "{n} rows");
        let last_line = format!("\n{},insufficient_funds,", n + 1);
        assert!(
            expected.rejects.contains(&last_line),
            "{n} rows: {}",
            expected.rejects
        );
        let (_, state) =
            support::run_csv_from(&workers(0), Ledger::new(), input.as_bytes()).unwrap();
        assert_eq!(
            state.sorted_accounts(),
            ledger.sorted_accounts(),
            "{n} rows"
        );
        for engine in [
            workers(1),
            workers(2).batch_size(7),
            workers(0).parsers(2).block_size(100),
        ] {
            let got = run_csv(&engine, input.as_bytes()).unwrap();
            assert!(got == expected, "{n} rows: {engine:?} differs");
        }
    }
}
