//! Structured transaction streams: the engine equals the reference model row
//! by row, and the pipeline (1 and 3 workers) prints exactly what the
//! single-threaded path prints.
#![no_main]

#[path = "../../tests/reference/mod.rs"]
mod reference;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use payments_engine::app::{process, Options};
use payments_engine::{Amount, Kind, Ledger, Reject, Tx};

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
    let amount = if kind.moves_money() { Amount::from_raw(raw) } else { Amount::ZERO };
    Tx { kind, client, tx: id, amount }
}

fn options(workers: usize) -> Options {
    Options::quiet(workers)
}

fuzz_target!(|rows: Vec<Row>| {
    let txs: Vec<Tx> = rows.iter().take(400).map(tx).collect();
    let mut ledger = Ledger::new();
    let mut model = reference::Model::default();
    for t in &txs {
        let got = ledger.apply(*t).map_err(Reject::code);
        let want = model.apply(t.kind, t.client, t.tx, i128::from(t.amount.raw()));
        assert_eq!(got, want, "{t:?}");
    }
    let mut csv = String::from("type,client,tx,amount\n");
    for t in &txs {
        let amount = if t.kind.moves_money() { t.amount.to_string() } else { String::new() };
        csv.push_str(&format!("{},{},{},{amount}\n", t.kind.name(), t.client, t.tx));
    }
    let run = |workers| {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        process(csv.as_bytes(), &options(workers), &mut out, &mut err).unwrap();
        String::from_utf8(out).unwrap()
    };
    let single = run(0);
    assert_eq!(single, model.render());
    assert_eq!(run(1), single);
    assert_eq!(run(3), single);
});
