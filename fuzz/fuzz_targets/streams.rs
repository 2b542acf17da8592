//! Structured transaction streams: the engine equals the reference model row
//! by row, and the pipeline (1 and 3 workers, with batches of 1, 2 and 7
//! records, so that streams fill many batches) prints exactly what the
//! single-threaded path prints, through the CSV path and the push API.
#![no_main]

#[path = "../../tests/reference/mod.rs"]
mod reference;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use payments_engine::{Amount, Engine, EngineBuilder, Kind, Ledger, Reject, Tx};

#[derive(Arbitrary, Debug)]
struct Row {
    kind: u8,
    client: u8,
    tx: u8,
    amount: u64,
    wide: bool,
}

/// Biased toward collisions and edges: few clients and ids, and amounts
/// that are tiny, round or near the top of the range.
fn tx(row: &Row) -> Tx {
    let kind = [Kind::Deposit, Kind::Withdrawal, Kind::Dispute, Kind::Resolve, Kind::Chargeback][usize::from(row.kind % 5)];
    let client = if row.wide { u16::from(row.client) << 8 | 0xFF } else { u16::from(row.client % 4) };
    let id = if row.wide { u32::from(row.tx) << 24 } else { u32::from(row.tx % 16) };
    let raw = match row.amount % 4 {
        0 => 1 + (row.amount >> 2) % 100_000,
        1 => (row.amount >> 2) % 1_000 * 10_000 + 10_000,
        2 => i64::MAX as u64 - (row.amount >> 2) % 3,
        _ => 1 + (row.amount >> 2) % (i64::MAX as u64),
    } as i64;
    let amount = if kind.claims_id() { Amount::from_raw(raw) } else { Amount::ZERO };
    Tx { kind, client, tx: id, amount }
}

fuzz_target!(|rows: Vec<Row>| {
    let txs: Vec<Tx> = rows.iter().take(2_000).map(tx).collect();
    let mut ledger = Ledger::new();
    let mut model = reference::Model::default();
    for t in &txs {
        let got = ledger.apply(*t).map_err(Reject::code);
        let want = model.apply(t.kind, t.client, t.tx, i128::from(t.amount.raw()));
        assert_eq!(got, want, "{t:?}");
    }
    let mut csv = String::from("type,client,tx,amount\n");
    for t in &txs {
        let amount = if t.kind.claims_id() { t.amount.to_string() } else { String::new() };
        csv.push_str(&format!("{},{},{},{amount}\n", t.kind.name(), t.client, t.tx));
    }
    let text = |finished: payments_engine::Finished| {
        let mut out = Vec::new();
        finished.write_accounts(&mut out).unwrap();
        String::from_utf8(out).unwrap()
    };
    let run = |workers, batch| {
        let engine = EngineBuilder::new().workers(workers).batch_size(batch);
        text(engine.run_csv(Ledger::new(), csv.as_bytes()).unwrap())
    };
    let single = run(0, 1);
    assert_eq!(single, model.render());
    let batch = [1, 2, 7][txs.len() % 3];
    assert_eq!(run(1, batch), single);
    assert_eq!(run(3, batch), single);
    // The push API, from the same transactions.
    let mut engine = Engine::builder().workers(2).batch_size(batch).build(Ledger::new()).unwrap();
    for t in &txs {
        engine.submit(*t).unwrap();
    }
    assert_eq!(text(engine.finish().unwrap()), single);
});
