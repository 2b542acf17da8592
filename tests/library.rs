//! The library as an embedder uses it, through its public API only: build
//! an engine with N shards, submit transactions from any source, finish,
//! read accounts, tallies and the state; carry the state into the next run.

mod support;

use std::error::Error as StdError;

use payments_engine::EngineBuilder;
use payments_engine::Verbosity;
use payments_engine::{Amount, Engine, Error, Kind, Ledger, Record, Reject, Tx};
use support::{datagen_input, run_csv, run_csv_from};

fn tx(kind: Kind, client: u16, id: u32, amount: &str) -> Tx {
    Tx {
        kind,
        client,
        tx: id,
        amount: Amount::parse(amount.as_bytes()).unwrap_or(Amount::ZERO),
    }
}

fn accounts_csv(finished: &payments_engine::Finished) -> String {
    let mut out = Vec::new();
    finished.write_accounts(&mut out).unwrap();
    String::from_utf8(out).unwrap()
}

#[test]
fn errors_are_std_errors_from_outside_the_crate() {
    let boxed: Box<dyn StdError + Send + Sync> = Box::new(Reject::InsufficientFunds);
    assert_eq!(boxed.to_string(), "insufficient funds");
    let amount: Box<dyn StdError> = Amount::parse(b"0").unwrap_err().into();
    assert_eq!(amount.to_string(), "amount is zero");
    let engine: Box<dyn StdError> = Box::new(Error::Stopped);
    assert!(engine.source().is_none());
}

#[test]
fn the_push_api_applies_in_order_for_every_shard_count() {
    let txs = [
        tx(Kind::Deposit, 1, 1, "10"),
        tx(Kind::Deposit, 2, 2, "5"),
        tx(Kind::Withdrawal, 1, 3, "4"),
        tx(Kind::Dispute, 2, 2, ""),
        tx(Kind::Withdrawal, 2, 4, "1"), // insufficient: 5.0 is held
        tx(Kind::Deposit, 3, 4, "1"),    // duplicate_tx: claimed just above
        tx(Kind::Chargeback, 2, 2, ""),
        tx(Kind::Deposit, 2, 5, "1"), // account_locked
    ];
    let expected = "client,available,held,total,locked\n\
                    1,6.0000,0.0000,6.0000,false\n\
                    2,0.0000,0.0000,0.0000,true\n\
                    3,0.0000,0.0000,0.0000,false\n";
    for shards in 0..=4 {
        let mut engine = Engine::new(shards).unwrap();
        for t in txs {
            engine.submit(t).unwrap();
        }
        let finished = engine.finish().unwrap();
        assert_eq!(accounts_csv(&finished), expected, "{shards} shards");
        let tally = finished.tally();
        assert_eq!(
            (tally.applied, tally.rejected(), tally.malformed()),
            (5, 3, 0)
        );
        assert_eq!(tally.rejected_by[Reject::AccountLocked as usize], 1);
    }
}

#[test]
fn records_carry_their_line_or_are_numbered_in_submission_order() {
    for shards in [0, 2] {
        let mut engine = EngineBuilder::new()
            .workers(shards)
            .diagnostics(Verbosity::Verbose)
            .build(Ledger::new())
            .unwrap();
        engine.submit(tx(Kind::Dispute, 1, 9, "")).unwrap(); // numbered 1
        let withdrawal = tx(Kind::Withdrawal, 1, 2, "3");
        engine.submit(Record::at_line(withdrawal, 40)).unwrap();
        let mut finished = engine.finish().unwrap();
        let mut stderr = Vec::new();
        let diagnostics = finished.take_diagnostics().unwrap();
        diagnostics.write_to(&mut stderr, None).unwrap();
        assert_eq!(
            String::from_utf8(stderr).unwrap(),
            "line 1: dispute of tx 9 for client 1 rejected: unknown tx\n\
             line 40: withdrawal of 3.0000 for client 1 rejected: insufficient funds\n"
        );
        assert!(finished.take_diagnostics().is_none(), "taken once");
    }
}

#[test]
fn a_non_positive_amount_is_malformed_and_fatal_when_strict() {
    for shards in [0, 3] {
        let mut engine = Engine::new(shards).unwrap();
        engine.submit(tx(Kind::Deposit, 1, 1, "1")).unwrap();
        let zero = Tx {
            amount: Amount::ZERO,
            ..tx(Kind::Deposit, 1, 2, "")
        };
        let negative = Tx {
            amount: Amount::from_raw(-5),
            ..tx(Kind::Withdrawal, 1, 3, "")
        };
        engine.submit(zero).unwrap();
        engine.submit(negative).unwrap();
        let finished = engine.finish().unwrap();
        assert_eq!(finished.tally().malformed(), 2);
        assert_eq!(finished.tally().applied, 1);
        // A malformed record claims nothing: id 2 is still free.
        let state = finished.into_state();
        assert_eq!(state.claimed_ids().collect::<Vec<_>>(), [1]);

        let mut strict = EngineBuilder::new()
            .workers(shards)
            .strict(true)
            .build(Ledger::new())
            .unwrap();
        let error = strict.submit(Record::at_line(zero, 7)).unwrap_err();
        assert_eq!(
            error.to_string(),
            "line 7: malformed record: amount is zero (--strict)"
        );
    }
}

#[test]
fn an_engine_dropped_without_finishing_stops_its_workers() {
    let mut engine = Engine::new(3).unwrap();
    for id in 0..10_000u32 {
        engine
            .submit(tx(Kind::Deposit, (id % 50) as u16, id, "1"))
            .unwrap();
    }
    drop(engine); // returns: the workers were stopped and joined
}

/// Input A, then input B from A's state, gives exactly what one run over A
/// followed by B's rows gives, whatever the worker count of each run.
#[test]
fn the_state_carries_a_run_into_the_next_for_any_worker_counts() {
    let input = datagen_input(60_000, 5);
    // Cut at a line end near the middle; B keeps the header so both parse
    // alike (a header is not a row).
    let cut = input[input.len() / 2..]
        .iter()
        .position(|&b| b == b'\n')
        .unwrap()
        + input.len() / 2
        + 1;
    let header_end = input.iter().position(|&b| b == b'\n').unwrap() + 1;
    let a = &input[..cut];
    let b = [&input[..header_end], &input[cut..]].concat();

    let whole = run_csv(&EngineBuilder::new(), &input).unwrap();
    let alone = run_csv(&EngineBuilder::new(), &b).unwrap();
    for (first, second) in [(0, 0), (0, 3), (2, 0), (1, 1), (3, 2), (4, 1)] {
        let (out_a, state) =
            run_csv_from(&EngineBuilder::new().workers(first), Ledger::new(), a).unwrap();
        let (out_b, _) = run_csv_from(&EngineBuilder::new().workers(second), state, &b).unwrap();
        assert!(
            out_b.stdout == whole.stdout,
            "{first} then {second} workers"
        );
        let mut tally = out_a.tally;
        tally.add(&out_b.tally);
        assert_eq!(tally, whole.tally, "{first} then {second} workers");
    }
    // Without the state, B's disputes of A's deposits are unknown.
    let unknown = |t: &payments_engine::Tally| t.rejected_by[Reject::UnknownTx as usize];
    assert!(unknown(&alone.tally) > 0);
    assert_ne!(alone.stdout, whole.stdout);
}
