//! The fast path against the general parser: arbitrary bytes read with
//! the fast path's batches (and the general path for what they leave) give
//! exactly the rows of the general path alone, line numbers, original
//! lines and records included, whatever the reads' sizes.
#![no_main]

use std::io::Read;

use libfuzzer_sys::fuzz_target;
use payments_engine::bench_support::Parser;

/// Returns at most `size` bytes per read, so lines cross buffer refills.
struct Chunked<'a>(&'a [u8], usize);
impl Read for Chunked<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.1.min(self.0.len()).min(buf.len());
        buf[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Ok(n)
    }
}

type Row = (u64, Vec<u8>, String);

fn general(data: &[u8], size: usize) -> Option<Vec<Row>> {
    let mut parser = Parser::new(Chunked(data, size));
    let mut rows = Vec::new();
    while let Some(row) = parser.next_row().ok()? {
        rows.push((row.line, row.raw.to_vec(), format!("{:?}", row.parsed)));
    }
    Some(rows)
}

fn batched(data: &[u8], size: usize) -> Option<Vec<Row>> {
    let mut parser = Parser::new(Chunked(data, size));
    let mut rows = Vec::new();
    loop {
        let fast = parser.fast_rows().ok()?;
        for (i, tx) in fast.txs().iter().enumerate() {
            rows.push((fast.line(i), fast.raw(i).to_vec(), format!("{:?}", Ok::<_, ()>(*tx))));
        }
        if !fast.txs().is_empty() {
            continue;
        }
        match parser.next_row().ok()? {
            Some(row) => rows.push((row.line, row.raw.to_vec(), format!("{:?}", row.parsed))),
            None => return Some(rows),
        }
    }
}

fuzz_target!(|input: (u16, &[u8])| {
    let (size, data) = input;
    let size = usize::from(size % 512) + 1;
    assert_eq!(batched(data, size), general(data, size));
});
