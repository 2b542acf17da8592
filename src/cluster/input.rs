//! The input as every process sees it: cut into blocks at fixed offsets
//! moved to line starts, each block parsed by the worker it falls to, and
//! what a worker keeps of its blocks for worker 0.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::amount::Amount;
use crate::engine::Error;
use crate::ledger::Account;
use crate::parse::{first_line_end, Columns, ParserBuilder};
use crate::report::Outcome;
use crate::store::Deposit;
use crate::tx::{ClientId, Kind, Tx, TxId};

/// How the input is cut: the same on every process.
#[derive(Clone, Copy, Debug)]
pub(super) struct InputPlan {
    pub(super) len: u64,
    pub(super) block: u64,
    pub(super) blocks: u64,
    /// Where the first non-blank line ends: no block but block 0 starts
    /// before it.
    pub(super) first_end: u64,
    /// The columns that line names.
    pub(super) columns: Columns,
}

impl InputPlan {
    pub(super) fn of(path: &Path, block: usize) -> Result<InputPlan, Error> {
        let file = File::open(path).map_err(|e| Error::Input(e.into()))?;
        let len = file.metadata().map_err(|e| Error::Input(e.into()))?.len();
        let (first_end, columns) = first_line_end(&file).map_err(Error::Input)?;
        let block = block as u64;
        Ok(InputPlan {
            len,
            block,
            blocks: len.div_ceil(block).max(1),
            first_end,
            columns,
        })
    }
}

/// A worker's reader of the input: where its blocks start, and their rows.
pub(super) struct Cuts {
    pub(super) file: File,
    pub(super) plan: InputPlan,
    /// The last scan for a line start: from where, and what it found. A
    /// long line spans many blocks; each worker scans it once.
    pub(super) last: Option<(u64, u64)>,
    /// Keep each row's line (only a rejects file needs it).
    pub(super) keep_raw: bool,
    /// The buffer line starts are scanned in, allocated once.
    pub(super) scan: Vec<u8>,
}

impl Cuts {
    /// Where block `k` starts: the first line start at or after both
    /// `k x block` and the end of the first non-blank line.
    pub(super) fn start(&mut self, k: u64) -> io::Result<u64> {
        let plan = self.plan;
        if k == 0 {
            return Ok(0);
        }
        let at = k.saturating_mul(plan.block).max(plan.first_end);
        if at >= plan.len {
            return Ok(plan.len);
        }
        if let Some((from, found)) = self.last {
            if (from..=found).contains(&at) {
                return Ok(found);
            }
        }
        // A line starts at `at` if the byte before it ends a line.
        self.file.seek(SeekFrom::Start(at - 1))?;
        self.scan.resize(64 * 1024, 0);
        let mut pos = at - 1;
        let found = loop {
            let n = self.file.read(&mut self.scan)?;
            if n == 0 {
                break plan.len;
            }
            if let Some(i) = memchr::memchr(b'\n', &self.scan[..n]) {
                break (pos + i as u64 + 1).min(plan.len);
            }
            pos += n as u64;
        };
        self.last = Some((at, found));
        Ok(found)
    }
}

/// A well-formed record on its way through the dataflow; its block is its
/// timestamp. Between processes it travels as a [`Wire`].
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(into = "Wire", try_from = "Wire")]
pub(super) struct Rec {
    /// Line within the block, from 1 (a block is at most `MAX_BLOCK`, 1 GiB,
    /// of input).
    pub(super) line: u32,
    pub(super) tx: Tx,
    /// The outcome of its claim (deposits and withdrawals).
    pub(super) fresh: bool,
    /// The original line, for the rejects file (none without one). 40
    /// bytes a record in all, where a `u64` line and a `Vec` took 56:
    /// records are moved through timely's containers (8 KiB each) and the
    /// block stash by the million (perf.md, "A compact record on the
    /// wire").
    pub(super) raw: Option<Box<[u8]>>,
}

impl Rec {
    /// A record read at `line` of its block (`raw`: its original line, kept
    /// for the rejects file).
    fn new(line: u64, tx: Tx, raw: Option<&[u8]>) -> Rec {
        Rec {
            line: u32::try_from(line).expect("a block holds fewer than 2^32 lines"),
            tx,
            fresh: false,
            raw: raw.map(Box::from),
        }
    }
}

/// A [`Rec`] as timely encodes it (bincode, fixed-width integers): 20
/// bytes and the original line if there is one, where the derived form
/// took 35 (an 8-byte line number, a 4-byte type tag, an 8-byte length for
/// an empty line; perf.md, "A compact record on the wire").
#[derive(Serialize, Deserialize)]
struct Wire {
    line: u32,
    client: ClientId,
    tx: TxId,
    amount: i64,
    /// The type's index in [`Kind::ALL`], and the claim in bit 7.
    kind: u8,
    raw: Option<Box<[u8]>>,
}

/// A claim's bit in [`Wire::kind`].
const FRESH: u8 = 0x80;

impl From<Rec> for Wire {
    fn from(rec: Rec) -> Wire {
        let kind = Kind::ALL
            .iter()
            .position(|&kind| kind == rec.tx.kind)
            .expect("every kind is in Kind::ALL") as u8;
        Wire {
            line: rec.line,
            client: rec.tx.client,
            tx: rec.tx.tx,
            amount: rec.tx.amount.raw(),
            kind: kind | if rec.fresh { FRESH } else { 0 },
            raw: rec.raw,
        }
    }
}

impl TryFrom<Wire> for Rec {
    type Error = String;

    fn try_from(wire: Wire) -> Result<Rec, String> {
        let kind = *Kind::ALL
            .get(usize::from(wire.kind & !FRESH))
            .ok_or_else(|| format!("no transaction type has index {}", wire.kind & !FRESH))?;
        Ok(Rec {
            line: wire.line,
            tx: Tx {
                kind,
                client: wire.client,
                tx: wire.tx,
                amount: Amount::from_raw(wire.amount),
            },
            fresh: wire.kind & FRESH != 0,
            raw: wire.raw,
        })
    }
}

/// What one worker sends to worker 0 at the end.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(super) struct Part {
    pub(super) accounts: Vec<(ClientId, Account)>,
    /// Rows not applied: (block, line within it, outcome, raw line).
    pub(super) events: Vec<(u64, u64, Outcome, Vec<u8>)>,
    pub(super) applied: u64,
    pub(super) deposits: u64,
    /// (block, lines in it) for the blocks this worker parsed.
    pub(super) lines: Vec<(u64, u64)>,
    /// The header's warnings (block 0's parser).
    pub(super) warnings: Vec<String>,
    /// (block, line of its first well-formed row) for the blocks this
    /// worker parsed that have one.
    pub(super) first_ok: Vec<(u64, u64)>,
    /// The error that ended the input at a block: (block, message).
    pub(super) error: Option<(u64, String)>,
    /// With a state file: the ids this worker claimed and the deposits it
    /// stores, for process 0 to save the whole ledger.
    pub(super) ids: Vec<TxId>,
    pub(super) stored: Vec<(TxId, Deposit)>,
}

impl Part {
    /// What the parse side kept of the blocks before `c` (the stages'
    /// share is snapshotted by the stages themselves).
    pub(super) fn before(&self, c: u64) -> Part {
        let early = |v: &[(u64, u64)]| v.iter().copied().filter(|&(k, _)| k < c).collect();
        Part {
            accounts: Vec::new(),
            events: self.events.iter().filter(|e| e.0 < c).cloned().collect(),
            applied: self.applied,
            deposits: 0,
            lines: early(&self.lines),
            warnings: self.warnings.clone(),
            first_ok: early(&self.first_ok),
            error: None,
            ids: Vec::new(),
            stored: Vec::new(),
        }
    }
}

/// Parses block `k`: well-formed records into `recs`, malformed rows as
/// events, its line count (when it has lines) and its warnings into `part`.
pub(super) fn read_block(
    cuts: &mut Cuts,
    k: u64,
    recs: &mut Vec<Rec>,
    part: &mut Part,
) -> Result<(), Error> {
    let io = |e: io::Error| Error::Input(e.into());
    let start = cuts.start(k).map_err(io)?;
    let end = cuts.start(k + 1).map_err(io)?;
    if start >= end {
        // Inside a long line, or past the end: no lines.
        return Ok(());
    }
    cuts.file.seek(SeekFrom::Start(start)).map_err(io)?;
    let range = (&cuts.file).take(end - start);
    let mut parser = if k == 0 {
        ParserBuilder::default().build(range)
    } else {
        ParserBuilder::default()
            .after(false, cuts.plan.columns, true)
            .build(range)
    };
    let mut first_ok = None;
    let keep_raw = cuts.keep_raw;
    loop {
        // The fast path first, as the CSV loop reads: a batch of common
        // lines, else one row the general way.
        let rows = parser.fast_rows().map_err(Error::Input)?;
        if !rows.txs().is_empty() {
            first_ok.get_or_insert(rows.line(0));
            recs.extend(
                (rows.txs().iter().enumerate())
                    .map(|(i, &tx)| Rec::new(rows.line(i), tx, keep_raw.then(|| rows.raw(i)))),
            );
            continue;
        }
        let Some(row) = parser.next_row().map_err(Error::Input)? else {
            break;
        };
        let raw = keep_raw.then_some(row.raw);
        match row.parsed {
            Ok(tx) => {
                first_ok.get_or_insert(row.line);
                recs.push(Rec::new(row.line, tx, raw));
            }
            Err(reason) => {
                let outcome = Outcome::Malformed(reason);
                part.events
                    .push((k, row.line, outcome, raw.unwrap_or_default().to_vec()));
            }
        }
    }
    part.lines.push((k, parser.lines_read()));
    part.warnings.extend(parser.take_warnings());
    part.first_ok.extend(first_ok.map(|line| (k, line)));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What timely does with a record: bincode 1's default encoding.
    fn round_trip(rec: &Rec) -> (usize, Rec) {
        let bytes = bincode::serialize(rec).expect("a record encodes");
        (
            bytes.len(),
            bincode::deserialize(&bytes).expect("a record decodes"),
        )
    }

    #[test]
    #[cfg(target_pointer_width = "64")]
    fn a_record_takes_forty_bytes_in_memory() {
        assert_eq!(std::mem::size_of::<Rec>(), 40);
    }

    #[test]
    fn records_cross_in_twenty_bytes_and_come_back_whole() {
        for (n, &kind) in Kind::ALL.iter().enumerate() {
            for (fresh, raw) in [(true, None), (false, Some(&b"deposit,1,2,3"[..]))] {
                let rec = Rec {
                    line: 1 << 31 | n as u32,
                    tx: Tx {
                        kind,
                        client: u16::MAX - n as u16,
                        tx: u32::MAX - n as u32,
                        amount: Amount::from_raw(i64::MAX - n as i64),
                    },
                    fresh,
                    raw: raw.map(Box::from),
                };
                let (size, back) = round_trip(&rec);
                let with_raw = raw.map_or(0, |raw| 8 + raw.len());
                assert_eq!(size, 20 + with_raw, "{rec:?}");
                assert_eq!(
                    (back.line, back.tx, back.fresh, back.raw),
                    (rec.line, rec.tx, rec.fresh, rec.raw)
                );
            }
        }
    }

    #[test]
    fn a_record_with_an_unknown_type_is_refused() {
        let mut bytes = bincode::serialize(&Rec {
            line: 1,
            tx: Tx {
                kind: Kind::Deposit,
                client: 1,
                tx: 1,
                amount: Amount::from_raw(1),
            },
            fresh: true,
            raw: None,
        })
        .unwrap();
        bytes[18] = 5 | FRESH;
        let refused = bincode::deserialize::<Rec>(&bytes).unwrap_err();
        assert!(
            refused
                .to_string()
                .contains("no transaction type has index 5"),
            "{refused}"
        );
    }
}
