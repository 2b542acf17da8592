//! A naive reference model of SPEC (BTreeMap, i128, no cleverness) and
//! property tests that the engine agrees with it on generated streams biased
//! toward edge values: client and tx ids at the ends of their ranges and
//! colliding often, amounts at 0.0001 and near the top of the range.

mod reference;
mod support;

use std::collections::BTreeMap;

use reference::Model;

use payments_engine::EngineBuilder;
use payments_engine::Verbosity;
use payments_engine::{Amount, Kind, Ledger, Reject, Tx};
use proptest::prelude::*;

// ----------------------------------------------------------- generation

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        4 => Just(Kind::Deposit),
        3 => Just(Kind::Withdrawal),
        2 => Just(Kind::Dispute),
        1 => Just(Kind::Resolve),
        1 => Just(Kind::Chargeback),
    ]
}

fn client() -> impl Strategy<Value = u16> {
    prop_oneof![4 => 0u16..4, 1 => Just(u16::MAX), 1 => any::<u16>()]
}

fn tx_id() -> impl Strategy<Value = u32> {
    prop_oneof![6 => 0u32..12, 1 => Just(u32::MAX), 1 => any::<u32>()]
}

fn amount() -> impl Strategy<Value = i64> {
    prop_oneof![
        2 => Just(1i64),
        2 => Just(10_000i64),
        1 => Just(i64::MAX),
        1 => Just(i64::MAX / 2 + 1),
        4 => 1i64..2_000_000,
        1 => 1i64..=i64::MAX,
    ]
}

/// One generated row before ids are resolved: money rows mostly take a
/// fresh id and sometimes reuse one; dispute-type rows mostly name an earlier
/// row's id and client, so every rule and every rejection is reached often.
#[derive(Clone, Debug)]
struct Intent {
    kind: Kind,
    client: u16,
    id: u32,
    amount: i64,
    /// Which earlier row to refer to or duplicate.
    earlier: prop::sample::Index,
    /// 0..=9: how the id is chosen (see `resolve`).
    mode: u8,
}

fn intent() -> impl Strategy<Value = Intent> {
    (
        kind(),
        client(),
        tx_id(),
        amount(),
        any::<prop::sample::Index>(),
        0u8..10,
    )
        .prop_map(|(kind, client, id, amount, earlier, mode)| Intent {
            kind,
            client,
            id,
            amount,
            earlier,
            mode,
        })
}

fn resolve(intents: Vec<(Intent, u8)>) -> Vec<(Tx, u8)> {
    let mut out: Vec<(Tx, u8)> = Vec::with_capacity(intents.len());
    let mut next_id = 1u32;
    for (intent, style) in intents {
        let earlier = (!out.is_empty()).then(|| out[intent.earlier.index(out.len())].0);
        let (client, tx) = match (intent.kind.claims_id(), earlier, intent.mode) {
            // Money: a fresh id, a reused id, or an edge id.
            (true, Some(e), 0..=1) => (intent.client, e.tx),
            (true, _, 2) => (intent.client, intent.id),
            (true, _, _) => {
                next_id += 1;
                (intent.client, next_id)
            }
            // Disputes: an earlier row's tx, usually of the same client.
            (false, Some(e), 0..=6) => (e.client, e.tx),
            (false, Some(e), 7) => (intent.client, e.tx),
            (false, _, _) => (intent.client, intent.id),
        };
        let amount = if intent.kind.claims_id() {
            Amount::from_raw(intent.amount)
        } else {
            Amount::ZERO
        };
        out.push((
            Tx {
                kind: intent.kind,
                client,
                tx,
                amount,
            },
            style,
        ));
    }
    out
}

/// Lines that are malformed under SPEC, with or without a header.
const MALFORMED: &[&str] = &[
    "deposit,1,1,-1",
    "deposit,1,1,0",
    "deposit,1,1,1.00001",
    "deposit,1,1,1e3",
    "withdrawal,1,2,+5",
    "deposit,65536,1,1",
    "deposit,1,4294967296,1",
    "deposit,1,1",
    "deposit,1,1,1,1",
    "refund,1,1,1",
    "deposit,1,1,\"1",
    "dispute,-1,1,",
    "deposit,1,1,922337203685477.5808",
    "deposit,1,1,NaN",
    "deposit,1,1,1_0",
    "chargeback,1",
];

/// Renders a transaction as a CSV line in one of several equivalent styles.
fn render(tx: &Tx, style: u8) -> String {
    let kind = match style % 3 {
        0 => tx.kind.name().to_string(),
        1 => tx.kind.name().to_uppercase(),
        _ => format!("\"{}\"", tx.kind.name()),
    };
    let amount = if !tx.kind.claims_id() {
        ["", "", "0", "junk"][(style / 3 % 4) as usize].to_string()
    } else {
        let text = tx.amount.to_string();
        match style / 3 % 4 {
            0 => text,
            1 => text.trim_end_matches('0').to_string(),
            2 => format!("00{text}00"),
            _ => format!(" \"{text}\" "),
        }
    };
    let pad = if style & 0x20 != 0 { " " } else { "" };
    let line = format!("{kind},{pad}{},{pad}{},{pad}{amount}", tx.client, tx.tx);
    if !tx.kind.claims_id() && style & 0x40 != 0 {
        // Disputes may omit the amount field entirely.
        return format!("{kind},{},{}", tx.client, tx.tx);
    }
    line
}

fn to_csv(txs: &[(Tx, u8)], header: bool, crlf: bool) -> String {
    let end = if crlf { "\r\n" } else { "\n" };
    let mut out = String::new();
    if header {
        out.push_str("type,client,tx,amount");
        out.push_str(end);
    }
    for (tx, style) in txs {
        out.push_str(&render(tx, *style));
        out.push_str(end);
    }
    out
}

/// Runs the whole engine (parser, ledger, report) over CSV text.
fn engine(csv: &str) -> (String, payments_engine::Tally) {
    let outputs = support::run_csv(&EngineBuilder::new(), csv.as_bytes()).unwrap();
    (outputs.stdout, outputs.tally)
}

/// Up to 300 rows: with batches of 1, 2 or 7 records that is dozens of
/// batches per worker, so recycling, backpressure (a lane holds 4 batches)
/// and claims settled before a send are all reached.
fn stream() -> impl Strategy<Value = Vec<(Tx, u8)>> {
    prop::collection::vec((intent(), any::<u8>()), 0..300).prop_map(resolve)
}

// ------------------------------------------------------------- properties

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    /// Row by row, the ledger's outcome equals the model's; the final
    /// accounts are equal; and the CSV path prints exactly the model's output.
    #[test]
    fn engine_equals_model(txs in stream(), header: bool, crlf: bool) {
        let mut ledger = Ledger::new();
        let mut model = Model::default();
        for (n, (tx, _)) in txs.iter().enumerate() {
            let got = ledger.apply(*tx).map_err(Reject::code);
            let want = model.apply(tx.kind, tx.client, tx.tx, i128::from(tx.amount.raw()));
            prop_assert_eq!(got, want, "row {}: {:?}", n, tx);
        }
        let (stdout, tally) = engine(&to_csv(&txs, header, crlf));
        prop_assert_eq!(&stdout, &model.render());
        prop_assert_eq!(tally.rows_read(), txs.len() as u64);
        prop_assert_eq!(tally.malformed(), 0);
    }

    /// total == available + held for every account, and the sum of all
    /// totals is applied deposits - applied withdrawals - charged back.
    #[test]
    fn money_is_conserved(txs in stream()) {
        let mut ledger = Ledger::new();
        let mut deposit_amount = BTreeMap::new();
        let mut expected_sum: i128 = 0;
        for (tx, _) in &txs {
            if ledger.apply(*tx).is_ok() {
                let amount = i128::from(tx.amount.raw());
                match tx.kind {
                    Kind::Deposit => {
                        deposit_amount.insert(tx.tx, amount);
                        expected_sum += amount;
                    }
                    Kind::Withdrawal => expected_sum -= amount,
                    Kind::Chargeback => expected_sum -= deposit_amount[&tx.tx],
                    Kind::Dispute | Kind::Resolve => {}
                }
            }
        }
        let mut sum: i128 = 0;
        for (client, account) in ledger.sorted_accounts() {
            let (a, h) = (i128::from(account.available.raw()), i128::from(account.held.raw()));
            prop_assert_eq!(i128::from(account.total().raw()), a + h, "client {}", client);
            prop_assert!(h >= 0, "held negative for client {}", client);
            sum += a + h;
        }
        prop_assert_eq!(sum, expected_sum);
    }

    /// A malformed row inserted anywhere changes no balance, and is counted.
    #[test]
    fn malformed_rows_change_nothing(
        txs in stream(),
        header: bool,
        inserts in prop::collection::vec((any::<prop::sample::Index>(), 0..MALFORMED.len()), 1..4),
    ) {
        let csv = to_csv(&txs, header, false);
        let (clean_out, clean_tally) = engine(&csv);
        let mut lines: Vec<&str> = csv.lines().collect();
        let first_row = usize::from(header);
        for (at, which) in &inserts {
            let at = first_row + at.index(lines.len() - first_row + 1);
            lines.insert(at, MALFORMED[*which]);
        }
        let dirty = lines.join("\n") + "\n";
        let (dirty_out, dirty_tally) = engine(&dirty);
        prop_assert_eq!(dirty_out, clean_out);
        prop_assert_eq!(dirty_tally.malformed(), inserts.len() as u64);
        prop_assert_eq!(dirty_tally.applied, clean_tally.applied);
        prop_assert_eq!(dirty_tally.rejected_by, clean_tally.rejected_by);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// stdout, stderr and the rejects file are byte-identical for every
    /// worker count and batch size, on streams with tx ids reused across
    /// clients (which land on different workers), disputes naming another
    /// client's deposit, and malformed rows.
    #[test]
    fn every_worker_count_and_batch_size_gives_identical_output(
        txs in stream(),
        verbose: bool,
        inserts in prop::collection::vec((any::<prop::sample::Index>(), 0..MALFORMED.len()), 0..3),
    ) {
        let mut lines: Vec<String> = to_csv(&txs, true, false).lines().map(String::from).collect();
        for (at, which) in &inserts {
            let at = 1 + at.index(lines.len());
            lines.insert(at, MALFORMED[*which].to_string());
        }
        let csv = lines.join("\n") + "\n";
        let verbosity = if verbose { Verbosity::Verbose } else { Verbosity::Default };
        let engine = EngineBuilder::new().diagnostics(verbosity);
        let baseline = support::run_csv(&engine, csv.as_bytes()).unwrap();
        prop_assert_eq!(baseline.tally.rows_read(), (txs.len() + inserts.len()) as u64);
        for workers in [1, 2, 3, 8] {
            for batch in [1, 2, 7, 1024] {
                let sharded = engine.clone().workers(workers).batch_size(batch);
                let got = support::run_csv(&sharded, csv.as_bytes()).unwrap();
                prop_assert_eq!(&got, &baseline, "--workers {}, batch {}", workers, batch);
            }
        }
    }

    /// The same for every parser count and block size: blocks cut at every
    /// kind of place (a block of 1 byte is one line) give the rows, line
    /// numbers and reports of the single-threaded parser.
    #[test]
    fn every_parser_count_and_block_size_gives_identical_output(
        txs in stream(),
        crlf: bool,
        block in 1usize..400,
        inserts in prop::collection::vec((any::<prop::sample::Index>(), 0..MALFORMED.len()), 0..3),
    ) {
        let mut lines: Vec<String> = to_csv(&txs, true, false).lines().map(String::from).collect();
        for (at, which) in &inserts {
            let at = 1 + at.index(lines.len());
            lines.insert(at, MALFORMED[*which].to_string());
        }
        let end = if crlf { "\r\n" } else { "\n" };
        let csv = lines.join(end) + end;
        let engine = EngineBuilder::new().diagnostics(Verbosity::Verbose);
        let baseline = support::run_csv(&engine, csv.as_bytes()).unwrap();
        for (parsers, workers) in [(1, 0), (2, 1), (3, 3), (8, 2)] {
            let parallel = engine.clone().parsers(parsers).workers(workers).block_size(block);
            let got = support::run_csv(&parallel, csv.as_bytes()).unwrap();
            prop_assert_eq!(&got, &baseline, "--parsers {}, --workers {}, block {}", parsers, workers, block);
        }
    }
}

#[test]
fn model_agrees_with_a_hand_checked_case() {
    let mut model = Model::default();
    assert_eq!(model.apply(Kind::Deposit, 1, 1, 10_000), Ok(()));
    assert_eq!(
        model.apply(Kind::Deposit, 2, 1, 10_000),
        Err("duplicate_tx")
    );
    assert_eq!(model.apply(Kind::Dispute, 1, 1, 0), Ok(()));
    assert_eq!(model.apply(Kind::Chargeback, 1, 1, 0), Ok(()));
    assert_eq!(model.apply(Kind::Deposit, 1, 2, 1), Err("account_locked"));
    assert_eq!(
        model.render(),
        "client,available,held,total,locked\n1,0.0000,0.0000,0.0000,true\n2,0.0000,0.0000,0.0000,false\n"
    );
}

/// Guards the generator: every outcome of every kind must be common enough
/// that the properties above exercise it.
#[test]
fn generated_streams_reach_every_outcome() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let mut counts: BTreeMap<(String, &str), u32> = BTreeMap::new();
    for _ in 0..200 {
        let txs = stream().new_tree(&mut runner).unwrap().current();
        let mut ledger = Ledger::new();
        for (tx, _) in &txs {
            let outcome = ledger.apply(*tx).map_or_else(Reject::code, |()| "applied");
            *counts
                .entry((tx.kind.name().to_string(), outcome))
                .or_default() += 1;
        }
    }
    let expected = [
        ("deposit", "applied"),
        ("deposit", "duplicate_tx"),
        ("deposit", "account_locked"),
        ("deposit", "overflow"),
        ("withdrawal", "applied"),
        ("withdrawal", "insufficient_funds"),
        ("dispute", "applied"),
        ("dispute", "unknown_tx"),
        ("dispute", "already_disputed"),
        ("dispute", "overflow"),
        ("resolve", "applied"),
        ("resolve", "not_disputed"),
        ("chargeback", "applied"),
        ("chargeback", "not_disputed"),
    ];
    for key in expected {
        let n = counts
            .get(&(key.0.to_string(), key.1))
            .copied()
            .unwrap_or(0);
        // Dispute overflow needs maximal deposits withdrawn and then
        // disputed: rare by nature (and covered by the ledger's unit tests).
        let floor = if key == ("dispute", "overflow") { 1 } else { 5 };
        assert!(
            n >= floor,
            "{key:?} seen {n} times in 200 streams: {counts:?}"
        );
    }
}
