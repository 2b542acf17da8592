//! What crosses between workers, in columns: a block's records for the
//! worker of their clients ([`Rows`]), its deposits' and withdrawals' tx
//! ids for the worker that owns each id ([`Claims`]), and that owner's
//! answer, the lines whose id was already claimed ([`Repeats`]).
//!
//! Each is one timely record (a [`Packed`] batch), so timely's per-record
//! work (the exchange's routing, containers of 8 KiB, a bincode call per
//! field) is paid once a block per worker, not once a row. Between
//! processes a batch travels as its columns, each at the narrowest of 1,
//! 2, 4 or 8 bytes a value that holds every value in it; line numbers as
//! gaps from the line before (a worker's share of a block is in line
//! order), amounts zigzag-encoded (a negative amount is malformed input,
//! but the ledger's value type allows one). Within a process a batch moves
//! as it is and is never encoded.

use std::cell::OnceCell;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::amount::Amount;
use crate::tx::{ClientId, Kind, Tx, TxId};

/// One block's well-formed records for one worker, in line order.
#[derive(Clone, Debug, Default, PartialEq)]
pub(super) struct Rows {
    /// The worker they go to.
    pub(super) to: u32,
    /// Lines within the block, from 1, ascending.
    pub(super) lines: Vec<u32>,
    /// The records, whole in memory (two pushes a row where five columns
    /// took five), in columns between processes. Their original lines
    /// never cross: process 0 reads a rejects file's lines back from the
    /// input (`input::read_back`).
    pub(super) txs: Vec<Tx>,
}

impl Rows {
    /// An empty batch for worker `to`, with room for `n` rows.
    pub(super) fn new(to: u32, n: usize) -> Rows {
        Rows {
            to,
            lines: Vec::with_capacity(n),
            txs: Vec::with_capacity(n),
        }
    }

    #[inline]
    pub(super) fn push(&mut self, line: u32, tx: &Tx) {
        self.lines.push(line);
        self.txs.push(*tx);
    }

    pub(super) fn len(&self) -> usize {
        self.lines.len()
    }
}

/// One claim (SPEC rule 2): a record's line, its tx id, and the worker
/// that applies it, which is told if the id was already claimed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Claim {
    pub(super) line: u32,
    pub(super) tx: TxId,
    pub(super) applier: u32,
}

/// One block's claims for the worker that owns their ids, in line order.
#[derive(Clone, Debug, Default, PartialEq)]
pub(super) struct Claims {
    /// The worker that owns the ids.
    pub(super) to: u32,
    pub(super) claims: Vec<Claim>,
}

impl Claims {
    /// An empty batch for worker `to`, with room for `n` claims.
    pub(super) fn new(to: u32, n: usize) -> Claims {
        Claims {
            to,
            claims: Vec::with_capacity(n),
        }
    }
}

/// One block's lines, for the worker that applies them, whose tx id an
/// earlier record had claimed: every other deposit and withdrawal it
/// applies made its claim.
#[derive(Clone, Debug, Default, PartialEq)]
pub(super) struct Repeats {
    /// The worker that applies those lines.
    pub(super) to: u32,
    /// Ascending.
    pub(super) lines: Vec<u32>,
}

/// A batch encoded in columns and decoded back.
pub(super) trait Columnar: Sized {
    fn encode(&self, out: &mut Vec<u8>);
    fn decode(input: &mut Reader<'_>) -> Result<Self, String>;
}

impl Columnar for Rows {
    fn encode(&self, out: &mut Vec<u8>) {
        // At most 19 bytes a row (a 4-byte gap, the type, client, id and
        // an 8-byte amount): one allocation, not one a column.
        out.reserve(64 + self.len() * 19);
        put_len(out, self.len());
        out.extend_from_slice(&self.to.to_le_bytes());
        put_gaps(out, self.lines.iter().copied());
        let txs = self.txs.iter();
        put(out, txs.clone().map(|tx| tx.kind as u64));
        put(out, txs.clone().map(|tx| u64::from(tx.client)));
        put(out, txs.clone().map(|tx| u64::from(tx.tx)));
        put(out, txs.map(|tx| zigzag(tx.amount.raw())));
    }

    fn decode(input: &mut Reader<'_>) -> Result<Rows, String> {
        let n = input.len()?;
        let to = input.u32()?;
        let lines = input.gaps(n)?;
        let mut txs = input.column(n, |k| {
            let kind = *Kind::ALL.get(usize::try_from(k).ok()?)?;
            Some(Tx {
                kind,
                client: 0,
                tx: 0,
                amount: Amount::ZERO,
            })
        })?;
        input.fill(&mut txs, |tx, v| {
            ClientId::try_from(v).map(|c| tx.client = c).is_ok()
        })?;
        input.fill(&mut txs, |tx, v| {
            TxId::try_from(v).map(|id| tx.tx = id).is_ok()
        })?;
        input.fill(&mut txs, |tx, v| {
            tx.amount = Amount::from_raw(unzigzag(v));
            true
        })?;
        Ok(Rows { to, lines, txs })
    }
}

impl Columnar for Claims {
    fn encode(&self, out: &mut Vec<u8>) {
        put_len(out, self.claims.len());
        out.extend_from_slice(&self.to.to_le_bytes());
        put_gaps(out, self.claims.iter().map(|c| c.line));
        put(out, self.claims.iter().map(|c| u64::from(c.tx)));
        put(out, self.claims.iter().map(|c| u64::from(c.applier)));
    }

    fn decode(input: &mut Reader<'_>) -> Result<Claims, String> {
        let n = input.len()?;
        let to = input.u32()?;
        let mut claims = input
            .gaps(n)?
            .into_iter()
            .map(|line| Claim {
                line,
                tx: 0,
                applier: 0,
            })
            .collect::<Vec<_>>();
        input.fill(&mut claims, |c, v| {
            TxId::try_from(v).map(|tx| c.tx = tx).is_ok()
        })?;
        input.fill(&mut claims, |c, v| {
            u32::try_from(v).map(|w| c.applier = w).is_ok()
        })?;
        Ok(Claims { to, claims })
    }
}

impl Columnar for Repeats {
    fn encode(&self, out: &mut Vec<u8>) {
        put_len(out, self.lines.len());
        out.extend_from_slice(&self.to.to_le_bytes());
        put_gaps(out, self.lines.iter().copied());
    }

    fn decode(input: &mut Reader<'_>) -> Result<Repeats, String> {
        let n = input.len()?;
        Ok(Repeats {
            to: input.u32()?,
            lines: input.gaps(n)?,
        })
    }
}

/// A batch as timely moves it: as it is within a process; between
/// processes (bincode, through serde) as one byte string of its columns,
/// encoded once (timely asks for the size, then for the bytes).
#[derive(Clone, Debug)]
pub(super) struct Packed<T> {
    pub(super) batch: T,
    encoded: OnceCell<Vec<u8>>,
}

impl<T> Packed<T> {
    pub(super) fn new(batch: T) -> Packed<T> {
        Packed {
            batch,
            encoded: OnceCell::new(),
        }
    }
}

impl<T: Columnar> Serialize for Packed<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let bytes = self.encoded.get_or_init(|| {
            let mut out = Vec::new();
            self.batch.encode(&mut out);
            out
        });
        serializer.serialize_bytes(bytes)
    }
}

impl<'de, T: Columnar> Deserialize<'de> for Packed<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Packed<T>, D::Error> {
        struct Bytes<T>(PhantomData<T>);
        impl<T: Columnar> Visitor<'_> for Bytes<T> {
            type Value = Packed<T>;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a batch in columns")
            }

            fn visit_bytes<E: de::Error>(self, bytes: &[u8]) -> Result<Packed<T>, E> {
                let mut input = Reader { bytes };
                let batch = T::decode(&mut input).map_err(E::custom)?;
                if !input.bytes.is_empty() {
                    return Err(E::custom(format!(
                        "{} bytes after a batch",
                        input.bytes.len()
                    )));
                }
                Ok(Packed::new(batch))
            }
        }
        deserializer.deserialize_bytes(Bytes(PhantomData))
    }
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    (v >> 1) as i64 ^ -((v & 1) as i64)
}

fn put_len(out: &mut Vec<u8>, n: usize) {
    let n = u32::try_from(n).expect("a batch holds fewer than 2^32 rows");
    out.extend_from_slice(&n.to_le_bytes());
}

/// Ascending lines as their gaps (the first from 0).
fn put_gaps<I: Iterator<Item = u32> + Clone>(out: &mut Vec<u8>, lines: I) {
    let before = std::iter::once(0).chain(lines.clone());
    let gaps = lines
        .zip(before)
        .map(|(line, before)| line.wrapping_sub(before));
    put(out, gaps.map(u64::from));
}

/// A column: one byte for its width (1, 2, 4 or 8), then every value in
/// that many little-endian bytes.
fn put<I: Iterator<Item = u64> + Clone>(out: &mut Vec<u8>, values: I) {
    let width = match values.clone().fold(0, |all, v| all | v) {
        0..=0xff => 1,
        0x100..=0xffff => 2,
        0x1_0000..=0xffff_ffff => 4,
        _ => 8,
    };
    out.push(width as u8);
    out.reserve(values.size_hint().0 * width);
    match width {
        1 => out.extend(values.map(|v| v as u8)),
        2 => values.for_each(|v| out.extend_from_slice(&(v as u16).to_le_bytes())),
        4 => values.for_each(|v| out.extend_from_slice(&(v as u32).to_le_bytes())),
        _ => values.for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
    }
}

/// Encoded columns, read from the front.
pub(super) struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if n > self.bytes.len() {
            return Err(format!(
                "a batch cut short: {n} bytes wanted, {} left",
                self.bytes.len()
            ));
        }
        let (taken, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(taken)
    }

    fn u32(&mut self) -> Result<u32, String> {
        let bytes = self.take(4)?;
        Ok(u32::from_le_bytes(bytes.try_into().expect("4 bytes")))
    }

    fn len(&mut self) -> Result<usize, String> {
        Ok(self.u32()? as usize)
    }

    /// A column of `n` values, each made a `T` by `make` (`None`: out of
    /// range).
    fn column<T>(
        &mut self,
        n: usize,
        mut make: impl FnMut(u64) -> Option<T>,
    ) -> Result<Vec<T>, String> {
        let width = usize::from(self.take(1)?[0]);
        if ![1, 2, 4, 8].contains(&width) {
            return Err(format!("a column {width} bytes wide"));
        }
        let bytes = self.take(n.checked_mul(width).ok_or("a column too long")?)?;
        // One loop per width, each value pushed as it is read: a
        // `collect` into `Result` took 10% of a 3-process run (perf.md).
        let mut values = Vec::with_capacity(n);
        let mut refused = None;
        let mut each = |v: u64| match make(v) {
            Some(value) => values.push(value),
            None => refused = refused.or(Some(v)),
        };
        let le = |c: &[u8]| {
            let mut le = [0; 8];
            le[..c.len()].copy_from_slice(c);
            u64::from_le_bytes(le)
        };
        match width {
            1 => bytes.iter().for_each(|&v| each(u64::from(v))),
            2 => bytes.chunks_exact(2).for_each(|c| each(le(c))),
            4 => bytes.chunks_exact(4).for_each(|c| each(le(c))),
            _ => bytes.chunks_exact(8).for_each(|c| each(le(c))),
        }
        match refused {
            Some(v) => Err(format!("{v} is out of range for its column")),
            None => Ok(values),
        }
    }

    /// A column of one value per item of `items`, each set into its item
    /// by `set` (false: the value does not fit the field).
    fn fill<T>(
        &mut self,
        items: &mut [T],
        set: impl Fn(&mut T, u64) -> bool,
    ) -> Result<(), String> {
        let mut items = items.iter_mut();
        self.column(items.len(), |v| set(items.next()?, v).then_some(()))?;
        Ok(())
    }

    /// `n` lines from their gaps.
    fn gaps(&mut self, n: usize) -> Result<Vec<u32>, String> {
        let mut last = 0u32;
        self.column(n, |gap| {
            last = last.wrapping_add(u32::try_from(gap).ok()?);
            Some(last)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What timely does with a batch between processes (bincode 1).
    fn round_trip<T: Columnar>(batch: T) -> (usize, T) {
        let bytes = bincode::serialize(&Packed::new(batch)).expect("a batch encodes");
        let back: Packed<T> = bincode::deserialize(&bytes).expect("a batch decodes");
        (bytes.len(), back.batch)
    }

    fn rows(n: usize) -> Rows {
        let mut rows = Rows {
            to: 2,
            ..Rows::default()
        };
        for i in 0..n {
            let tx = Tx {
                kind: Kind::ALL[i % 5],
                client: (i * 7919 % 65536) as u16,
                tx: (i as u32).wrapping_mul(2_654_435_761),
                amount: Amount::from_raw(
                    [0, 1, -1, i64::MAX, i64::MIN][i % 5].wrapping_add(i as i64 % 2),
                ),
            };
            rows.push(3 * i as u32 + 1, &tx);
        }
        rows
    }

    #[test]
    fn every_batch_comes_back_whole() {
        for n in [0, 1, 5, 300] {
            let rows = rows(n);
            assert_eq!(round_trip(rows.clone()).1, rows);
            let claims = Claims {
                to: 1,
                claims: (0..n as u32)
                    .map(|i| Claim {
                        line: i * i + 1,
                        tx: u32::MAX - i,
                        applier: i % 3,
                    })
                    .collect(),
            };
            assert_eq!(round_trip(claims.clone()).1, claims);
            let repeats = Repeats {
                to: 0,
                lines: (0..n as u32).map(|i| i * 70_000 + 2).collect(),
            };
            assert_eq!(round_trip(repeats.clone()).1, repeats);
        }
    }

    #[test]
    fn columns_take_the_narrowest_width_that_holds_them() {
        // Lines 1, 4, 7, ... (gaps of 3: one byte), one type byte, clients
        // below 256 (one byte), ids below 65536 (two), amounts below 2^31
        // zigzagged (four): 9 bytes a row, plus the headers.
        let mut rows = Rows::default();
        for i in 0..1000u32 {
            let tx = Tx {
                kind: Kind::Deposit,
                client: (i % 200) as u16,
                tx: i * 50,
                amount: Amount::from_raw(i64::from(i) * 1_000_000),
            };
            rows.push(3 * i + 1, &tx);
        }
        let (size, back) = round_trip(rows.clone());
        assert_eq!(back, rows);
        // bincode's length (8), n and `to` (8), five width bytes.
        assert_eq!(size, 8 + 8 + 5 + 1000 * (1 + 1 + 1 + 2 + 4));
    }

    #[test]
    fn a_damaged_batch_is_refused() {
        let mut bytes = bincode::serialize(&Packed::new(rows(10))).unwrap();
        // The type column: width 1 at offset 8 (length) + 8 + 1 + 10 (lines).
        assert_eq!(bytes[8 + 8 + 1 + 10], 1);
        bytes[8 + 8 + 1 + 10 + 1] = 5;
        let refused = bincode::deserialize::<Packed<Rows>>(&bytes).unwrap_err();
        assert!(
            refused.to_string().contains("5 is out of range"),
            "{refused}"
        );
        let cut = bincode::serialize(&Packed::new(rows(10))).unwrap();
        let mut short = cut[8..cut.len() - 3].to_vec();
        let mut framed = (short.len() as u64).to_le_bytes().to_vec();
        framed.append(&mut short);
        let refused = bincode::deserialize::<Packed<Rows>>(&framed).unwrap_err();
        assert!(refused.to_string().contains("cut short"), "{refused}");
    }

    #[test]
    fn zigzag_keeps_every_amount() {
        for v in [0, 1, -1, 2, -2, i64::MAX, i64::MIN, 123_456_789] {
            assert_eq!(unzigzag(zigzag(v)), v);
        }
        assert_eq!(zigzag(-1), 1);
        assert_eq!(zigzag(1), 2);
    }
}
