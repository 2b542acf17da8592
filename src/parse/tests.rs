//! The parser's tables and properties: every line shape through the fast
//! path, the general path and block-split parsing.

use std::io::{self, Read};

use super::error::*;
use super::fields::*;
use super::lines::*;
use super::parser::*;
use super::record::*;
use crate::amount::{Amount, AmountError};
use crate::tx::{Kind, Tx};

/// Collects `(line, parsed)` for every row of `input`.
type Rows = Vec<(u64, Result<Tx, Malformed>)>;

fn rows(input: &[u8]) -> Result<Rows, String> {
    let mut parser = Parser::new(input);
    let mut out = Vec::new();
    while let Some(row) = parser.next_row().map_err(|e| e.to_string())? {
        out.push((row.line, row.parsed));
    }
    Ok(out)
}

fn strings(fields: &Fields<'_>) -> Vec<String> {
    (0..fields.len())
        .map(|i| String::from_utf8_lossy(fields.get(i)).into_owned())
        .collect()
}

fn fields(line: &str) -> Result<Vec<String>, Malformed> {
    let mut splitter = FieldSplitter::default();
    splitter.split(line.as_bytes()).map(|f| strings(&f))
}

proptest::proptest! {
    /// Without a quote, the hand-written split gives exactly csv-core's
    /// fields (including CRs, tabs and empty fields).
    #[test]
    fn plain_lines_split_exactly_as_csv_core_does(
        line in proptest::collection::vec(
            proptest::sample::select(&b"ab1.,, \t\r\xFF"[..]), 1..60)
    ) {
        let mut splitter = FieldSplitter::default();
        let count = splitter.split_plain(&line).unwrap();
        let plain = strings(&Fields { bytes: &line, spans: &splitter.spans[..count] });
        let core = strings(&splitter.split_csv_core(&line).unwrap());
        proptest::prop_assert_eq!(plain, core);
    }
}

/// What the general path makes of one line with the columns in order.
fn general(line: &[u8]) -> Result<Tx, Malformed> {
    let mut splitter = FieldSplitter::default();
    splitter
        .split(line)
        .and_then(|fields| record(&fields, &Columns::POSITIONAL))
}

/// Lines near the common shape: each piece of a record usually in a
/// valid spelling, sometimes in an unusual or invalid one, plus stray
/// bytes at either end.
fn near_plain_line() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
    use proptest::prelude::*;
    fn pick(items: &'static [&'static str]) -> BoxedStrategy<String> {
        prop::sample::select(items).prop_map(String::from).boxed()
    }
    let kind = prop_oneof![
        8 => pick(&["deposit", "withdrawal", "dispute", "resolve", "chargeback"]),
        1 => pick(&["Deposit", "DISPUTE", "deposits", "depo", "", "x"]),
    ];
    let sep = prop_oneof![
        8 => pick(&[",", ", ", " ,", "\t,\t", " , "]),
        1 => pick(&[",,", "", ";", "\","]),
    ];
    let number = prop_oneof![
        4 => any::<u16>().prop_map(|n| n.to_string()),
        4 => any::<u32>().prop_map(|n| n.to_string()),
        1 => any::<u64>().prop_map(|n| n.to_string()),
        1 => pick(&[
            "0", "007", "65536", "0065535", "4294967296", "00004294967295", "", "-1", "+1",
            "1 2", "\u{663}",
        ]),
    ];
    let digits = |max: usize| prop::collection::vec(prop::char::range('0', '9'), 0..=max);
    let amount = prop_oneof![
        6 => (digits(16), prop::option::of(digits(6))).prop_map(|(int, frac)| {
            let mut text: String = int.into_iter().collect();
            if let Some(frac) = frac {
                text.push('.');
                text.extend(frac);
            }
            text
        }),
        1 => pick(&[
            "922337203685477.5807", "922337203685477.5808", "1e3", "-1", "+1", "1.2.3",
            " 7 ", "\"1\"", "\u{FF}",
        ]),
    ];
    let stray = prop_oneof![
        8 => Just(String::new()),
        1 => pick(&[",", "\"", " ", "\t", "\r", "a", "\0"]),
    ];
    (
        (
            stray.clone(),
            kind,
            sep.clone(),
            number.clone(),
            sep.clone(),
        ),
        (number, sep, prop::option::weighted(0.8, amount), stray),
    )
        .prop_map(|((lead, kind, s1, client, s2), (tx, s3, amount, tail))| {
            let mut line = format!("{lead}{kind}{s1}{client}{s2}{tx}");
            if let Some(amount) = amount {
                line.push_str(&s3);
                line.push_str(&amount);
            }
            line.push_str(&tail);
            line.into_bytes()
        })
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(20_000))]
    /// Wherever the fast path takes a line, the general path makes the
    /// same record of it. (About 15% of these lines take the fast path:
    /// 3,000 agreements a run.)
    #[test]
    fn the_fast_path_agrees_with_the_general_path(line in near_plain_line()) {
        if let Some(tx) = plain_record(&line) {
            proptest::prop_assert_eq!(general(&line), Ok(tx), "{:?}", String::from_utf8_lossy(&line));
        }
    }
}

#[test]
fn the_fast_path_takes_common_lines_and_leaves_the_rest() {
    use Kind::*;
    let taken: &[(&str, Kind, u16, u32, i64)] = &[
        ("deposit,1,2,1.5", Deposit, 1, 2, 15_000),
        (
            "  deposit , 65535 ,\t4294967295 , 0.0001 \t",
            Deposit,
            65_535,
            u32::MAX,
            1,
        ),
        (
            "deposit,007,0,99999999999999.9999",
            Deposit,
            7,
            0,
            999_999_999_999_999_999,
        ),
        ("withdrawal,3,4,5", Withdrawal, 3, 4, 50_000),
        ("dispute,3,4", Dispute, 3, 4, 0),
        ("resolve, 3, 4,", Resolve, 3, 4, 0),
        ("chargeback,3,4, ignored", Chargeback, 3, 4, 0),
    ];
    for &(line, kind, client, tx, raw) in taken {
        let want = Tx {
            kind,
            ..dep(client, tx, raw)
        };
        assert_eq!(plain_record(line.as_bytes()), Some(want), "{line:?}");
        assert_eq!(general(line.as_bytes()), Ok(want), "{line:?}");
    }
    // Valid but unusual, or malformed: the general path decides.
    for line in [
        "Deposit,1,2,1.5",
        "deposit,1,2,1.",
        "deposit,1,2,.5",
        "deposit,1,2,1.50000",
        "deposit,000001,2,1",
        "deposit,1,2,0",
        "deposit,65536,2,1",
        "deposit,1,2",
        "deposit,1,2,1,",
        "deposit,1,2,\"1\"",
        "dispute,1,2,a,b",
        "dispute,1,2,\"",
        "deposit,1,2,1\r",
        "deposit,1,2,999999999999999",
    ] {
        assert_eq!(plain_record(line.as_bytes()), None, "{line:?}");
    }
}

/// The fast path is the path: every row of a realistic file takes it
/// (spaces after commas and all).
#[test]
fn every_row_of_a_datagen_file_takes_the_fast_path() {
    let text = datagen::generate_vec(datagen::Config {
        rows: 20_000,
        spaces: datagen::Spaces::All,
        ..datagen::Config::default()
    });
    let text = String::from_utf8(text).unwrap();
    for line in text.lines().skip(1) {
        assert!(plain_record(line.as_bytes()).is_some(), "{line:?}");
    }
}

fn dep(client: u16, tx: u32, raw: i64) -> Tx {
    Tx {
        kind: Kind::Deposit,
        client,
        tx,
        amount: Amount::from_raw(raw),
    }
}

#[test]
fn field_splitting_table() {
    let table: &[(&str, Result<&[&str], Malformed>)] = &[
        ("a,b,c", Ok(&["a", "b", "c"])),
        (" a , b\t,\tc ", Ok(&["a", "b", "c"])),
        ("a,,c,", Ok(&["a", "", "c", ""])),
        ("\"a\",\"b\"", Ok(&["a", "b"])),
        (" \"a\" ,  \"b\"\t", Ok(&["a", "b"])),
        ("\"a,b\",c", Ok(&["a,b", "c"])),
        (" \"a,b\" ,c", Ok(&["a,b", "c"])),
        ("\"a\"\"b\",c", Ok(&["a\"b", "c"])),
        ("\"\",x", Ok(&["", "x"])),
        ("a\rb,c", Ok(&["a\rb", "c"])),
        ("\"a", Err(Malformed::UnbalancedQuote)),
        ("a\"b,c", Err(Malformed::UnbalancedQuote)),
        ("\"a\"\"", Err(Malformed::UnbalancedQuote)),
        // Even count, but the line ends inside a quoted field.
        ("a\"b,\"c", Err(Malformed::UnbalancedQuote)),
    ];
    for &(line, expected) in table {
        let expected = expected.map(|f| f.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(fields(line), expected, "line {line:?}");
    }
    // The splitter recovers after an unbalanced line.
    assert_eq!(fields("x,y").unwrap(), vec!["x", "y"]);
}

#[test]
fn splitter_reused_across_lines_including_bad_ones() {
    let mut splitter = FieldSplitter::default();
    for line in ["a,b", "a\"b,\"c", "\"q\",r", "s"] {
        let _ = splitter.split(line.as_bytes());
    }
    let fields = splitter.split(b"1,2,3").unwrap();
    assert_eq!(fields.len(), 3);
    assert_eq!(fields.get(2), b"3");
}

#[test]
fn positional_rows_with_line_numbers() {
    let got = rows(b"deposit,1,1,1.0\n\nwithdrawal, 2, 2, 0.5\r\n  ,\t, \ndispute,1,1\n").unwrap();
    assert_eq!(
        got,
        vec![
            (1, Ok(dep(1, 1, 10_000))),
            (
                3,
                Ok(Tx {
                    kind: Kind::Withdrawal,
                    client: 2,
                    tx: 2,
                    amount: Amount::from_raw(5_000)
                })
            ),
            (
                5,
                Ok(Tx {
                    kind: Kind::Dispute,
                    client: 1,
                    tx: 1,
                    amount: Amount::ZERO
                })
            ),
        ]
    );
}

#[test]
fn header_detection_and_column_mapping() {
    let got =
        rows(b"\n  \nAmount , TX,note, Client,TYPE\n1.5,7,hi,3,deposit\n,8,,3,dispute\n").unwrap();
    assert_eq!(
        got,
        vec![
            (4, Ok(dep(3, 7, 15_000))),
            (
                5,
                Ok(Tx {
                    kind: Kind::Dispute,
                    client: 3,
                    tx: 8,
                    amount: Amount::ZERO
                })
            ),
        ]
    );
    // Only the first non-blank line can be a header; later it is malformed.
    let got = rows(b"type,client,tx,amount\ndeposit,1,1,1\ntype,client,tx,amount\n").unwrap();
    assert_eq!(
        got,
        vec![(2, Ok(dep(1, 1, 10_000))), (3, Err(Malformed::BadType))]
    );
    // A header without amount: deposits are too short, disputes are fine.
    let got = rows(b"type,client,tx\ndeposit,1,1\ndispute,1,1\n").unwrap();
    assert_eq!(got[0].1, Err(Malformed::TooFewFields));
    assert!(got[1].1.is_ok());
}

/// Lines that the one-pass fast path would read in SPEC order must follow
/// a header that orders the columns otherwise; a header in SPEC order
/// (any case, padded) reads them as usual.
#[test]
fn a_reordered_header_governs_plain_lines_too() {
    let swapped = rows(b"type,tx,client,amount\ndeposit,5,7,1.0\nwithdrawal, 6 , 8 , 2\n");
    let withdrawal = Tx {
        kind: Kind::Withdrawal,
        ..dep(8, 6, 20_000)
    };
    assert_eq!(
        swapped.unwrap(),
        vec![(2, Ok(dep(7, 5, 10_000))), (3, Ok(withdrawal))]
    );
    let widened = rows(b"type,client,tx,amount,note\ndeposit,5,7,1.0\n").unwrap();
    assert_eq!(widened, vec![(2, Ok(dep(5, 7, 10_000)))]);
    let in_order = rows(b" TYPE , Client,tx,amount\ndeposit,5,7,1.0\n").unwrap();
    assert_eq!(in_order, vec![(2, Ok(dep(5, 7, 10_000)))]);
}

#[test]
fn bad_headers_are_fatal() {
    for input in [
        "type,client,amount\n",
        "type,tx,amount\n",
        "Type,client,tx,amount,client\n",
    ] {
        let error = rows(input.as_bytes()).unwrap_err();
        assert!(error.contains("line 1: bad header"), "{input:?}: {error}");
    }
}

#[test]
fn bom_only_at_the_very_start() {
    let got = rows(b"\xEF\xBB\xBFtype,client,tx,amount\ndeposit,1,1,1\n").unwrap();
    assert_eq!(got, vec![(2, Ok(dep(1, 1, 10_000)))]);
    let got = rows(b"deposit,1,1,1\n\xEF\xBB\xBFdeposit,1,2,1\n").unwrap();
    assert_eq!(got[1], (2, Err(Malformed::BadType)));
    // A second BOM right after the first is data.
    let got = rows(b"\xEF\xBB\xBF\xEF\xBB\xBFdeposit,1,1,1\n").unwrap();
    assert_eq!(got, vec![(1, Err(Malformed::BadType))]);
}

#[test]
fn lone_cr_is_data_and_last_line_may_lack_newline() {
    let got =
        rows(b"deposit,1,1,1\r5\ndeposit,1,3,2\r\r\ndeposit,1,4,1\rdeposit,1,5,1\ndeposit,1,3,2\r")
            .unwrap();
    let reasons: Vec<_> = got.into_iter().map(|(line, r)| (line, r.err())).collect();
    let syntax = Some(Malformed::BadAmount(AmountError::Syntax));
    assert_eq!(
        reasons,
        vec![
            (1, syntax),
            (2, syntax),
            (3, Some(Malformed::TooManyFields)),
            (4, syntax)
        ]
    );
    let got = rows(b"deposit,1,3,2").unwrap();
    assert_eq!(got, vec![(1, Ok(dep(1, 3, 20_000)))]);
}

#[test]
fn field_count_rules() {
    let got = rows(
        b"deposit,1,1,1,\ndeposit,1,2\ndispute,1,1\ndispute,1,1,\ndispute,1,1,junk\ndispute,1\n",
    )
    .unwrap();
    let reasons: Vec<_> = got.into_iter().map(|(_, r)| r.err()).collect();
    assert_eq!(
        reasons,
        vec![
            Some(Malformed::TooManyFields),
            Some(Malformed::TooFewFields),
            None,
            None,
            None,
            Some(Malformed::TooFewFields),
        ]
    );
}

#[test]
fn value_rules() {
    use Malformed::*;
    let table: &[(&str, Result<Tx, Malformed>)] = &[
        (
            "deposit,65535,4294967295,1",
            Ok(dep(65_535, u32::MAX, 10_000)),
        ),
        ("deposit,0,0,1", Ok(dep(0, 0, 10_000))),
        ("deposit,00001,0007,1", Ok(dep(1, 7, 10_000))),
        ("deposit,65536,1,1", Err(BadClient)),
        ("deposit,-1,1,1", Err(BadClient)),
        ("deposit,+1,1,1", Err(BadClient)),
        ("deposit,1.0,1,1", Err(BadClient)),
        ("deposit,,1,1", Err(BadClient)),
        ("deposit,1,4294967296,1", Err(BadTx)),
        ("deposit,1,99999999999999999999999,1", Err(BadTx)),
        ("deposit,1,-5,1", Err(BadTx)),
        ("deposit,1,1,", Err(BadAmount(AmountError::Empty))),
        ("deposit,1,1,0", Err(BadAmount(AmountError::Zero))),
        ("deposit,1,1,-1", Err(BadAmount(AmountError::Syntax))),
        ("deposit,1,1,\" 1\"", Ok(dep(1, 1, 10_000))),
        ("\"DePoSiT\",\"1\",\"1\",\"1.5\"", Ok(dep(1, 1, 15_000))),
        ("deposits,1,1,1", Err(BadType)),
        (",1,1,1", Err(BadType)),
    ];
    for &(line, expected) in table {
        let got = rows(line.as_bytes()).unwrap();
        assert_eq!(got, vec![(1, expected)], "line {line:?}");
    }
}

#[test]
fn unbalanced_quote_costs_one_line() {
    let got = rows(b"deposit,1,1,\"1\ndeposit,1,2,2\n").unwrap();
    assert_eq!(
        got,
        vec![
            (1, Err(Malformed::UnbalancedQuote)),
            (2, Ok(dep(1, 2, 20_000)))
        ]
    );
}

#[test]
fn long_lines_are_malformed_and_reading_goes_on() {
    let ok_line = format!("deposit,1,1,1{}", " ".repeat(MAX_LINE - 13));
    assert_eq!(ok_line.len(), MAX_LINE);
    let long_line = format!("{ok_line} ");
    // Longer than a whole block too.
    let huge_line = ",".repeat(READ_SIZE * 3 + 17);
    let input = format!("{ok_line}\r\n{long_line}\n{huge_line}\ndeposit,1,2,1\n{long_line}");
    let mut parser = Parser::new(input.as_bytes());
    let mut got = Vec::new();
    while let Some(row) = parser.next_row().unwrap() {
        got.push((row.line, row.raw.len(), row.parsed.err()));
    }
    assert_eq!(
        got,
        vec![
            (1, MAX_LINE, None),
            (2, MAX_LINE, Some(Malformed::LineTooLong)),
            (3, MAX_LINE, Some(Malformed::LineTooLong)),
            (4, 13, None),
            (5, MAX_LINE, Some(Malformed::LineTooLong)),
        ]
    );
}

/// A reader that returns one byte per read: every line and the BOM are
/// split across reads.
struct Trickle<'a>(&'a [u8]);
impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.0.is_empty() || buf.is_empty() {
            return Ok(0);
        }
        buf[0] = self.0[0];
        self.0 = &self.0[1..];
        Ok(1)
    }
}

#[test]
fn reads_split_anywhere_give_the_same_rows() {
    let input = b"\xEF\xBB\xBFtype,client,tx,amount\r\ndeposit,1,1,1.5\r\n\nwithdrawal,1,2,0.5";
    let mut parser = Parser::new(Trickle(input));
    let mut got = Vec::new();
    while let Some(row) = parser.next_row().unwrap() {
        got.push((row.line, row.raw.to_vec(), row.parsed));
    }
    assert_eq!(got.len(), 2);
    assert_eq!(
        got[0],
        (2, b"deposit,1,1,1.5".to_vec(), Ok(dep(1, 1, 15_000)))
    );
    assert_eq!(got[1].0, 4);
}

#[test]
fn empty_and_header_only_inputs_have_no_rows() {
    assert_eq!(rows(b"").unwrap(), vec![]);
    assert_eq!(rows(b"\xEF\xBB\xBF").unwrap(), vec![]);
    assert_eq!(rows(b"type,client,tx,amount").unwrap(), vec![]);
    assert_eq!(rows(b"\n\n,,,\n").unwrap(), vec![]);
}

type Owned = (u64, Vec<u8>, Result<Tx, Malformed>);

fn collect(parser: &mut Parser<impl Read>, limit: usize) -> Vec<Owned> {
    let mut got = Vec::new();
    while got.len() < limit {
        match parser.next_row().unwrap() {
            Some(row) => got.push((row.line, row.raw.to_vec(), row.parsed)),
            None => break,
        }
    }
    got
}

/// A checkpoint taken after any row, resumed over the same input, goes
/// on exactly as the original parser did: line numbers, the header's
/// column map, CRLF, blank and over-long lines, reads split anywhere.
#[test]
fn a_parser_resumed_after_any_row_goes_on_exactly_as_the_original() {
    let mut input = b"\xEF\xBB\xBFtx,Type,client,amount\r\n1,deposit,1,1.5\r\n\n".to_vec();
    input.extend_from_slice(b"2,withdrawal,1,0.5\n3,deposit,2,\"7\"\n");
    input.extend_from_slice(&vec![b'x'; 5_000]);
    input.extend_from_slice(b"\n4,dispute,1,1\r\n,,\n5,bogus,1,1\n6,deposit,3,1");
    let all = collect(
        &mut ParserBuilder::default()
            .hashing(true)
            .build(Trickle(&input)),
        usize::MAX,
    );
    assert_eq!(all.len(), 7);
    for k in 0..=all.len() {
        let mut first = ParserBuilder::default()
            .hashing(true)
            .build(Trickle(&input));
        assert_eq!(collect(&mut first, k), all[..k]);
        let at = first.state();
        let mut resumed = ParserBuilder::default()
            .resume(Trickle(&input), &at)
            .unwrap();
        assert_eq!(resumed.state(), at, "after {k} rows");
        assert_eq!(
            collect(&mut resumed, usize::MAX),
            all[k..],
            "after {k} rows"
        );
    }
    // Another input (one byte differs in the prefix, or it is shorter).
    let mut first = ParserBuilder::default().hashing(true).build(&input[..]);
    collect(&mut first, 3);
    let at = first.state();
    let mut other = input.clone();
    other[20] ^= 1;
    for wrong in [&other[..], &input[..at.at.offset as usize - 1]] {
        assert!(matches!(
            ParserBuilder::default().resume(wrong, &at).err(),
            Some(InputError::NotTheCheckpointedInput { offset }) if offset == at.at.offset
        ));
    }
}

/// A reader that returns at most `size` bytes per read.
struct Chunked<'a> {
    data: &'a [u8],
    size: usize,
}
impl Read for Chunked<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.size.min(self.data.len()).min(buf.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

/// Every row the way the engine reads them: batches from the fast path,
/// the general path whenever the fast path takes nothing. Also the
/// parser's state at the end.
fn rows_batched(parser: &mut Parser<impl Read>) -> (Vec<Owned>, ParserState, usize) {
    let (mut got, mut fast) = (Vec::new(), 0);
    loop {
        let rows = parser.fast_rows().unwrap();
        fast += rows.txs().len();
        for (i, tx) in rows.txs().iter().enumerate() {
            got.push((rows.line(i), rows.raw(i).to_vec(), Ok(*tx)));
        }
        if !rows.txs().is_empty() {
            continue;
        }
        match parser.next_row().unwrap() {
            Some(row) => got.push((row.line, row.raw.to_vec(), row.parsed)),
            None => return (got, parser.state(), fast),
        }
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(3_000))]
    /// Whole inputs read with the fast path's batches give exactly the rows
    /// (line numbers, original lines, records or reasons) and the end state
    /// of the general path alone, whatever the reads' sizes: lines cross
    /// buffer boundaries, CRLF and lone CRs, blank lines, lines with every
    /// field in quotes, headers in SPEC order or not.
    #[test]
    fn batches_of_fast_rows_give_the_general_path_s_rows(
        header in proptest::sample::select(vec!["", "type,client,tx,amount\n", "tx,type,client,amount\n"]),
        lines in proptest::collection::vec(
            (
                near_plain_line(),
                proptest::sample::select(vec!["\n", "\r\n", "\n\n", "\r\r\n"]),
                proptest::bool::weighted(0.3),
            ),
            0..60,
        ),
        common in proptest::collection::vec(0u32..100_000, 0..80),
        size in 1usize..300,
    ) {
        let mut input = header.as_bytes().to_vec();
        for ((line, end, quoted), extra) in lines.iter().zip(common.iter().chain(std::iter::repeat(&0))) {
            if *quoted {
                input.extend(every_field_quoted(line));
            } else {
                input.extend_from_slice(line);
            }
            input.extend_from_slice(end.as_bytes());
            // Runs of common lines between the unusual ones, so that
            // batches start and stop everywhere.
            for i in 0..extra % 4 {
                input.extend_from_slice(format!("deposit, {}, {}, {}.{}\n", extra, i, extra % 977, i).as_bytes());
            }
        }
        let mut general = Parser::new(Chunked { data: &input, size });
        let expected = collect(&mut general, usize::MAX);
        let (got, state, _) = rows_batched(&mut Parser::new(Chunked { data: &input, size }));
        proptest::prop_assert_eq!(&got, &expected);
        proptest::prop_assert_eq!(state, general.state());
        // The same bytes as a mapped file, read in place.
        let (mapped, _, _) = rows_batched(&mut mapped_parser(&input));
        proptest::prop_assert_eq!(mapped, expected);
    }
}

/// A parser over `input` written to a file and mapped, as the engine
/// reads a plain file on the calling thread.
fn mapped_parser(input: &[u8]) -> Parser<io::Empty> {
    use std::io::Write;
    let mut file = tempfile::tempfile().unwrap();
    file.write_all(input).unwrap();
    let map = super::mapped::Mapped::open(&file).unwrap();
    ParserBuilder::default().over_map(map)
}

/// A mapped file of several megabytes (its passed pages given back every
/// megabyte on the way) gives the rows a read one gives, BOM, CRLF, blank
/// and over-long lines included, and the last line without a line end.
#[test]
fn a_mapped_file_gives_the_rows_of_a_read_one() {
    let text = datagen::generate_vec(datagen::Config {
        rows: 120_000,
        ..datagen::Config::default()
    });
    let mut input = b"\xEF\xBB\xBF".to_vec();
    for (i, line) in text.split_inclusive(|&b| b == b'\n').enumerate() {
        input.extend_from_slice(line);
        match i % 10_007 {
            1 => input.extend_from_slice(b"\r\n"),
            2 => input.extend_from_slice(&[b'x'; MAX_LINE + 10]),
            3 => input.extend_from_slice(b"\ndeposit,1,77,1.5\r\n"),
            _ => {}
        }
    }
    input.extend_from_slice(b"withdrawal,2,3,0.5");
    assert!(input.len() > 3 << 20);
    let expected = collect(&mut Parser::new(&input[..]), usize::MAX);
    let (got, state, fast) = rows_batched(&mut mapped_parser(&input));
    assert_eq!(got, expected);
    assert!(fast >= 119_900, "{fast} rows took the fast path");
    assert_eq!(state.at.offset, input.len() as u64);
}

/// Every row of a realistic file goes through the fast path's batches,
/// and they give the general path's rows.
#[test]
fn every_row_of_a_datagen_file_is_read_in_batches() {
    let text = datagen::generate_vec(datagen::Config {
        rows: 20_000,
        ..datagen::Config::default()
    });
    let expected = collect(&mut Parser::new(&text[..]), usize::MAX);
    let (got, _, fast) = rows_batched(&mut Parser::new(Chunked {
        data: &text,
        size: 100_003,
    }));
    assert_eq!(got, expected);
    // All but the lines within a window's length of the end of a read.
    assert!(fast >= 19_990, "{fast} of 20000 rows took the fast path");
}

/// `line` (no line end) with every field between commas in double
/// quotes, as many CSV writers write them.
fn every_field_quoted(line: &[u8]) -> Vec<u8> {
    let mut quoted = Vec::with_capacity(line.len() + 8);
    for (k, field) in line.split(|&b| b == b',').enumerate() {
        quoted.extend_from_slice(if k == 0 { b"\"" } else { b",\"" });
        quoted.extend_from_slice(field);
        quoted.push(b'"');
    }
    quoted
}

/// The same with every field of every line in quotes (the header too):
/// the fast path takes the rows, and they are the general path's.
#[test]
fn every_row_of_a_quoted_datagen_file_is_read_in_batches() {
    let text = datagen::generate_vec(datagen::Config {
        rows: 20_000,
        ..datagen::Config::default()
    });
    let mut quoted = Vec::with_capacity(text.len() * 2);
    for line in text.split_inclusive(|&b| b == b'\n') {
        let body = line.strip_suffix(b"\n").unwrap_or(line);
        quoted.extend(every_field_quoted(body));
        quoted.extend_from_slice(&line[body.len()..]);
    }
    assert!(quoted.starts_with(b"\"type\",\"client\""));
    let expected = collect(&mut Parser::new(&quoted[..]), usize::MAX);
    assert_eq!(expected.len(), 20_000);
    let (got, _, fast) = rows_batched(&mut Parser::new(Chunked {
        data: &quoted,
        size: 100_003,
    }));
    assert_eq!(got, expected);
    assert!(fast >= 19_980, "{fast} of 20000 rows took the fast path");
}
