//! Arbitrary bytes through the parser and the engine: no panic, and no row
//! lost: the rows read equal the non-blank lines (counted here independently),
//! less one when the first of them was a header.
#![no_main]

use libfuzzer_sys::fuzz_target;
use payments_engine::{EngineBuilder, Error, Ledger};

/// Non-blank lines, by SPEC's definitions, written without the engine's code.
fn non_blank_lines(data: &[u8]) -> u64 {
    let data = data.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(data);
    if data.is_empty() {
        return 0;
    }
    let body = data.strip_suffix(b"\n").unwrap_or(data);
    let ended = body.len() < data.len();
    let segments: Vec<&[u8]> = body.split(|&b| b == b'\n').collect();
    let last = segments.len() - 1;
    segments
        .iter()
        .enumerate()
        .filter(|&(i, line)| {
            // A CR right before an LF is part of the line end.
            let line = if i < last || ended { line.strip_suffix(b"\r").unwrap_or(line) } else { line };
            line.len() > 4096 || !line.iter().all(|&b| b == b' ' || b == b'\t' || b == b',')
        })
        .count() as u64
}

fuzz_target!(|data: &[u8]| {
    match EngineBuilder::new().run_csv(Ledger::new(), data) {
        Ok(finished) => {
            let mut out = Vec::new();
            finished.write_accounts(&mut out).unwrap();
            assert!(out.starts_with(b"client,available,held,total,locked\n"));
            let rows = finished.tally().rows_read();
            let lines = non_blank_lines(data);
            assert!(rows == lines || rows + 1 == lines, "rows {rows}, non-blank lines {lines}");
        }
        Err(error) => {
            assert!(matches!(error, Error::Input(_)), "unexpected fatal error: {error}");
            assert!(error.to_string().contains("bad header"), "unexpected fatal error: {error}");
        }
    }
});
