//! The input as every process sees it: cut into blocks at fixed offsets
//! moved to line starts, each block parsed by the worker it falls to, and
//! what a worker keeps of its blocks for worker 0.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::columns::{Claim, Claims, Packed, Rows};
use crate::engine::Error;
use crate::ledger::{shard, shard_key, Account};
use crate::parse::{first_line_end, Columns, LineReader, ParserBuilder};
use crate::report::Outcome;
use crate::tx::{ClientId, Tx, TxId};

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
    /// The buffer line starts are scanned in, allocated once.
    pub(super) scan: Vec<u8>,
}

impl Cuts {
    pub(super) fn new(file: File, plan: InputPlan) -> Cuts {
        Cuts {
            file,
            plan,
            last: None,
            scan: Vec::new(),
        }
    }

    /// Block `k`'s bytes, from the start of its first line to the start of
    /// the next block's: empty inside a long line, or past the end.
    fn block(&mut self, k: u64) -> io::Result<io::Take<&File>> {
        let start = self.start(k)?;
        let end = self.start(k + 1)?.max(start);
        self.file.seek(SeekFrom::Start(start))?;
        Ok((&self.file).take(end - start))
    }

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
        // A page at a time: the line end is most often a few bytes on, and
        // reading 64 KiB for it at both ends of every 1 MiB block read the
        // input an eighth more than once.
        self.scan.resize(4096, 0);
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

/// The worker among `peers` that applies `client`'s records.
pub(super) fn applier(client: ClientId, peers: usize) -> usize {
    shard(client, peers)
}

/// The worker among `peers` that owns tx id `id`'s claim.
pub(super) fn owner(id: TxId, peers: usize) -> usize {
    shard_key(id, peers)
}

/// A block's well-formed records as they leave the worker that parsed it:
/// by the worker that applies each (its client's), and the deposits' and
/// withdrawals' claims by the worker that owns each id. A block is parsed
/// by one worker, so each batch holds its rows in line order.
pub(super) struct Outgoing {
    pub(super) rows: Vec<Rows>,
    pub(super) claims: Vec<Claims>,
}

impl Outgoing {
    /// Batches for `peers` workers, each with room for its share of a
    /// block of the `plan`'s size at 32 bytes a row (each block's batches
    /// then start as large as the last one's).
    pub(super) fn new(peers: usize, plan: &InputPlan) -> Outgoing {
        let to = |w: usize| u32::try_from(w).expect("fewer than 2^32 workers");
        let n = usize::try_from(plan.block.min(plan.len) / 32).unwrap_or(0) / peers;
        Outgoing {
            rows: (0..peers).map(|w| Rows::new(to(w), n)).collect(),
            claims: (0..peers).map(|w| Claims::new(to(w), n)).collect(),
        }
    }

    /// A record read at `line` of its block. Inline: called, it took ~93 instructions a
    /// row (perf.md, "One exchange").
    #[inline]
    fn push(&mut self, line: u64, tx: &Tx) {
        let line = u32::try_from(line).expect("a block holds fewer than 2^32 lines");
        let peers = self.rows.len();
        let applier = applier(tx.client, peers);
        self.rows[applier].push(line, tx);
        if tx.kind.claims_id() {
            self.claims[owner(tx.tx, peers)].claims.push(Claim {
                line,
                tx: tx.tx,
                applier: applier as u32,
            });
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.rows.iter().all(|rows| rows.len() == 0)
    }

    /// The batches that hold anything, leaving empty ones in their place.
    pub(super) fn take(&mut self) -> (Vec<Packed<Rows>>, Vec<Packed<Claims>>) {
        // The next block's batches start as large as this one's: grown
        // from empty, they were copied ~twice over as they doubled.
        let rows = (self.rows.iter_mut())
            .filter(|rows| rows.len() != 0)
            .map(|rows| {
                let next = Rows::new(rows.to, rows.len());
                Packed::new(std::mem::replace(rows, next))
            })
            .collect();
        let claims = (self.claims.iter_mut())
            .filter(|claims| !claims.claims.is_empty())
            .map(|claims| {
                let next = Claims::new(claims.to, claims.claims.len());
                Packed::new(std::mem::replace(claims, next))
            })
            .collect();
        (rows, claims)
    }
}

/// What one worker sends to worker 0 at the end.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(super) struct Part {
    pub(super) accounts: Vec<(ClientId, Account)>,
    /// Rows not applied: (block, line within it, outcome). A rejects
    /// file's lines are read back from the input by process 0
    /// ([`read_back`]).
    pub(super) events: Vec<(u64, u64, Outcome)>,
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
    /// With a state file: this worker's share of the claimed ids and its
    /// book, as the state file's sections (`durable::state::write_kind`),
    /// for process 0 to save the whole ledger; empty without one.
    #[serde(with = "byte_string")]
    pub(super) state: Vec<u8>,
}

impl Part {
    /// What the parse side kept of the blocks from `from` to before `c`
    /// (a whole checkpoint's share from 0, a delta's from its base; the
    /// stages' share is snapshotted by the stages themselves), with every
    /// warning so far and the rows applied so far.
    pub(super) fn between(&self, from: u64, c: u64) -> Part {
        let blocks = from..c;
        let early = |v: &[(u64, u64)]| {
            v.iter()
                .copied()
                .filter(|e| blocks.contains(&e.0))
                .collect()
        };
        Part {
            accounts: Vec::new(),
            events: self
                .events
                .iter()
                .filter(|e| blocks.contains(&e.0))
                .copied()
                .collect(),
            applied: self.applied,
            deposits: 0,
            lines: early(&self.lines),
            warnings: self.warnings.clone(),
            first_ok: early(&self.first_ok),
            error: None,
            state: Vec::new(),
        }
    }

    /// Lays a delta checkpoint's part (from [`Part::between`] its base and
    /// its block) over this one, the part of the checkpoint it is based on.
    pub(super) fn extend(&mut self, delta: Part) {
        self.events.extend(delta.events);
        self.lines.extend(delta.lines);
        self.first_ok.extend(delta.first_ok);
        self.warnings = delta.warnings;
        self.applied = delta.applied;
    }
}

/// A `Vec<u8>` as one byte string (serde's `serialize_bytes`): serde's
/// default for it is a sequence, which bincode reads back a byte at a time.
mod byte_string {
    use std::fmt;

    use serde::de::{self, Visitor};
    use serde::{Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(bytes)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<u8>, D::Error> {
        struct Bytes;
        impl Visitor<'_> for Bytes {
            type Value = Vec<u8>;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a byte string")
            }

            fn visit_bytes<E: de::Error>(self, bytes: &[u8]) -> Result<Vec<u8>, E> {
                Ok(bytes.to_vec())
            }

            fn visit_byte_buf<E: de::Error>(self, bytes: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(bytes)
            }
        }
        deserializer.deserialize_byte_buf(Bytes)
    }
}

/// Parses block `k`: well-formed records into `out`, malformed rows as
/// events, its line count (when it has lines) and its warnings into `part`.
pub(super) fn read_block(
    cuts: &mut Cuts,
    k: u64,
    out: &mut Outgoing,
    part: &mut Part,
) -> Result<(), Error> {
    let columns = cuts.plan.columns;
    let range = cuts.block(k).map_err(|e| Error::Input(e.into()))?;
    if range.limit() == 0 {
        // Inside a long line, or past the end: no lines.
        return Ok(());
    }
    let mut parser = if k == 0 {
        ParserBuilder::default().build(range)
    } else {
        ParserBuilder::default()
            .after(false, columns, true)
            .build(range)
    };
    let mut first_ok = None;
    loop {
        // The fast path first, as the CSV loop reads: a batch of common
        // lines, else one row the general way.
        let rows = parser.fast_rows().map_err(Error::Input)?;
        if !rows.txs().is_empty() {
            first_ok.get_or_insert(rows.line(0));
            for (i, tx) in rows.txs().iter().enumerate() {
                out.push(rows.line(i), tx);
            }
            continue;
        }
        let Some(row) = parser.next_row().map_err(Error::Input)? else {
            break;
        };
        match row.parsed {
            Ok(tx) => {
                first_ok.get_or_insert(row.line);
                out.push(row.line, &tx);
            }
            Err(reason) => part.events.push((k, row.line, Outcome::Malformed(reason))),
        }
    }
    part.lines.push((k, parser.lines_read()));
    part.warnings.extend(parser.take_warnings());
    part.first_ok.extend(first_ok.map(|line| (k, line)));
    Ok(())
}

/// The original lines of the rows at `wanted` ((block, line within it),
/// ascending), read back from the input as the parser read them: a rejects
/// file's lines. Records never carry their line between processes; process
/// 0 reads the few it needs here at the end, block by block, with the
/// parser's own line reader (the same line ends, BOM, CR and long-line
/// rules).
pub(super) fn read_back(
    path: &Path,
    plan: InputPlan,
    wanted: &[(u64, u64)],
) -> Result<Vec<Vec<u8>>, Error> {
    let io = |e: io::Error| Error::Input(e.into());
    let mut cuts = Cuts::new(File::open(path).map_err(io)?, plan);
    let mut raws = Vec::with_capacity(wanted.len());
    let mut rest = wanted;
    while let Some(&(k, _)) = rest.first() {
        let here = rest.iter().take_while(|w| w.0 == k).count();
        let mut lines = LineReader::new(cuts.block(k).map_err(io)?, k == 0, false);
        for &(_, number) in &rest[..here] {
            let line = loop {
                match lines.next_line().map_err(io)? {
                    Some(line) if line.number == number => break line,
                    Some(line) if line.number < number => continue,
                    _ => {
                        return Err(io(io::Error::other(format!(
                            "the input changed during the run: line {number} of block {k} is gone"
                        ))))
                    }
                }
            };
            raws.push(lines.bytes(&line).to_vec());
        }
        rest = &rest[here..];
    }
    Ok(raws)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A rejects file's lines read back at every block size are the lines
    /// the whole-file parser hands out with its rows: a BOM, CRLF and lone
    /// CR line ends, a final CR with no line end, blank, quoted, malformed
    /// and over-long lines.
    #[test]
    fn lines_read_back_are_the_parsers_lines() {
        let mut text =
            b"\xEF\xBB\xBFwithdrawal,1,1,5.0\r\ndeposit,1,2,1.0\r\nbogus,line\r\n\r\n".to_vec();
        text.extend_from_slice(b"\"deposit\",1,3,\"2.0\"\ndeposit,1,4,1\rdeposit,1,5,1\n");
        text.extend(std::iter::repeat_n(b'x', 5000));
        text.extend_from_slice(b"\r\n\nwithdrawal,1,6,100\r");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.csv");
        std::fs::write(&path, &text).unwrap();
        let mut parser = ParserBuilder::default().build(File::open(&path).unwrap());
        let mut rows = Vec::new();
        while let Some(row) = parser.next_row().unwrap() {
            rows.push((row.line, row.raw.to_vec()));
        }
        assert_eq!(rows.len(), 7, "{rows:?}");
        // Where each physical line starts in the file.
        let starts: Vec<u64> = std::iter::once(0)
            .chain(memchr::memchr_iter(b'\n', &text).map(|i| i as u64 + 1))
            .collect();
        for block in [1, 3, 16, 64, 4096, 1 << 20] {
            let plan = InputPlan::of(&path, block).unwrap();
            let mut cuts = Cuts::new(File::open(&path).unwrap(), plan);
            let cut: Vec<u64> = (0..=plan.blocks).map(|k| cuts.start(k).unwrap()).collect();
            // Each row's block, and its line within it.
            let wanted: Vec<(u64, u64)> = (rows.iter())
                .map(|&(line, _)| {
                    let at = starts[line as usize - 1];
                    let k = cut
                        .iter()
                        .rposition(|&c| c <= at)
                        .unwrap()
                        .min(plan.blocks as usize - 1);
                    let before = starts.iter().filter(|&&s| s <= cut[k]).count() as u64 - 1;
                    (k as u64, line - before)
                })
                .collect();
            let raws = read_back(&path, plan, &wanted).unwrap();
            let expected: Vec<Vec<u8>> = rows.iter().map(|(_, raw)| raw.clone()).collect();
            assert_eq!(raws, expected, "blocks of {block}");
        }
    }
}
