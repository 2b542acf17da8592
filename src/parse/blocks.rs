//! Parsing on several threads: the input cut into blocks of whole lines,
//! the blocks parsed at once, every row handed out in file order.
//!
//! Three roles, on scoped threads:
//!
//! * the *cutter* reads the input in order (a file, a pipe or a
//!   decompressor: anything `Read`) into recycled buffers, cuts each block at
//!   the first line end at or after the target size, hashes the bytes when
//!   checkpoints need it, and settles the header (the columns, and whether
//!   the first non-blank line was seen) for the blocks after it;
//! * *parsers* turn a block into rows with the single-threaded [`Parser`]
//!   itself (`ParserBuilder::over_block`: the same code, the same rows, numbered
//!   from 1 within the block);
//! * the calling thread ([`BlockRows`], a [`RowSource`]) takes the parsed
//!   blocks in block order and hands their rows to the CSV loop with line
//!   numbers offset by the lines of the blocks before (a prefix sum), so the
//!   claims on tx ids (SPEC rule 2) are made in file order, as before.
//!
//! Every row, line number, position and warning is the one the
//! single-threaded parser gives (tests cut inputs at every byte offset).
//! A line too long to fit a block's slack is cut short by the cutter to
//! its first `MAX_LINE + 2` bytes (enough for the parser to call it too
//! long and keep its first 4096 bytes, as the single-threaded reader does)
//! and its remainder is skipped without buffering.
//!
//! Memory: `2 x parsers + 2` buffers of the block size and its slack
//! circulate (the cutter waits for one to come back), so a run holds a few
//! MiB of input however large the file.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{Builder, Scope, ScopedJoinHandle};

use crossbeam_channel::{bounded, unbounded, Receiver, RecvError, Sender, TrySendError};
use xxhash_rust::xxh3::Xxh3;

use super::error::{InputError, Malformed};
use super::lines::{skip_prefix, Position, MAX_LINE};
use super::parser::SplitBlock;
use super::parser::{FastRows, ParserBuilder, ParserState, Row, RowSource};
use super::record::Columns;
use crate::batch::{Parts, Plan, Recycler};
use crate::cpu::{charged, waited, Role, Wait};
use crate::tx::Tx;

/// The default block size: big enough that per-block costs vanish, small
/// enough that a few in flight per parser stay in cache-friendly MiB.
pub const DEFAULT_BLOCK: usize = 1 << 20;

/// The largest block size accepted.
pub const MAX_BLOCK: usize = 1 << 30;

/// Room past the target for the line that crosses it: any line that fits
/// is kept whole; a longer one is over-long by SPEC anyway.
const SLACK: usize = MAX_LINE + 8;

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// How the input is cut and parsed.
#[derive(Clone, Debug)]
pub struct BlockOptions {
    /// Parser threads (at least 1).
    pub parsers: usize,
    /// Target block size in bytes (1 cuts every line into its own block).
    pub block: usize,
    /// Hash the input for checkpoints.
    pub hashing: bool,
    /// Split each block's records for the workers (`--workers` >= 1), into
    /// splits from the recycler.
    pub split: Option<(Plan, Recycler)>,
    /// The source is this file from its first byte, as it is now: once the
    /// header is settled, the reader thread only finds where each block
    /// ends (reading the bytes around its target end) and the parser
    /// threads read their blocks themselves, at their offsets, so the
    /// input's copy out of the page cache runs on every parser instead of
    /// one thread (Unix; not when hashing or resuming, which read every
    /// byte in order).
    pub file: Option<Arc<File>>,
}

impl BlockOptions {
    /// The file the parsers read their blocks from by position, if they
    /// do: a file, neither hashed nor resumed, on Unix.
    pub fn by_position(&self, resume: Option<&ParserState>) -> Option<&Arc<File>> {
        self.file
            .as_ref()
            .filter(|_| !self.hashing && resume.is_none() && cfg!(unix))
    }
}

/// A block's buffer and its rows' vectors, recycled between blocks.
struct Buffers {
    buf: Box<[u8]>,
    /// The rows the fast path did not read, in order (`fast` holds the
    /// others: each row is written once, not also here, which cost the
    /// parser threads a fifth of their instructions, perf.md).
    rows: Vec<ParsedRow>,
    fast: FastRuns,
}

/// The runs of consecutive common lines in a block (read by the fast path),
/// laid out as [`FastRows`] hands them on: each run's records together,
/// and its line starts followed by its end.
#[derive(Default)]
struct FastRuns {
    runs: Vec<Run>,
    txs: Vec<Tx>,
    starts: Vec<u32>,
}

/// One run: where its first row is among all the block's rows, its
/// records in `txs`, its starts in `starts`; how many rows; the line
/// number (within the block) of its first row, the others following it.
#[derive(Clone, Copy)]
struct Run {
    row: usize,
    tx: usize,
    start: usize,
    len: usize,
    line: u32,
}

impl FastRuns {
    fn clear(&mut self) {
        self.runs.clear();
        self.txs.clear();
        self.starts.clear();
    }
}

/// One block of whole lines, as the cutter hands it to a parser.
struct Cut {
    seq: u64,
    buffers: Buffers,
    /// Bytes of `buffers.buf` in the block.
    len: usize,
    /// Input offset of the block's first byte.
    start: u64,
    /// Input bytes the block stands for (more than `len` for a cut-short
    /// over-long line).
    span: u64,
    /// The block is one over-long line cut short.
    long: bool,
    at_input_start: bool,
    columns: Columns,
    seen_first: bool,
    /// The input's hash before the block, and (for a long line) after it.
    hash_start: Option<Box<Xxh3>>,
    hash_end: Option<Box<Xxh3>>,
    /// The file the parser reads the block's bytes from (at `start`, `len`
    /// of them), when the cutter did not ([`BlockOptions::file`]).
    fill: Option<Arc<File>>,
}

/// A row of a parsed block; its raw line is a range of the block's buffer.
#[derive(Clone, Copy, Debug)]
struct ParsedRow {
    parsed: Result<Tx, Malformed>,
    /// Line number within the block, from 1.
    line: u32,
    /// Bytes of the block consumed once the row was read.
    end: u32,
    raw_start: u32,
    raw_len: u16,
}

struct Parsed {
    cut: Cut,
    /// Lines in the block (blank ones and the header included).
    lines: u64,
    /// The columns after the block.
    columns: Columns,
    warnings: Vec<String>,
    /// What stopped the block's parse (a bad header), after its rows.
    error: Option<InputError>,
    /// The block's well-formed records split for the workers, when asked
    /// for; their lines counted from the block's start.
    parts: Option<Parts>,
}

impl Parsed {
    /// The block's runs of common lines.
    fn runs(&self) -> &[Run] {
        &self.cut.buffers.fast.runs
    }

    /// Rows in the block (blank lines and the header are not rows).
    fn rows(&self) -> usize {
        self.cut.buffers.fast.txs.len() + self.cut.buffers.rows.len()
    }

    /// The line (within the block) and the end of its last row, if any.
    fn last_row(&self) -> Option<(u32, u32)> {
        let fast = &self.cut.buffers.fast;
        let run = fast.runs.last().map(|run| {
            let last = run.len - 1;
            (run.line + last as u32, fast.starts[run.start + run.len])
        });
        let general = self.cut.buffers.rows.last().map(|row| (row.line, row.end));
        run.max(general)
    }

    /// The original line of one of the other rows.
    fn raw(&self, row: &ParsedRow) -> &[u8] {
        let start = row.raw_start as usize;
        &self.cut.buffers.buf[start..start + usize::from(row.raw_len)]
    }

    /// The rows of `run`, numbered from `base_line`.
    fn run_rows(&self, run: Run, base_line: u64) -> FastRows<'_> {
        let fast = &self.cut.buffers.fast;
        FastRows::new(
            base_line + u64::from(run.line),
            &fast.txs[run.tx..run.tx + run.len],
            &fast.starts[run.start..=run.start + run.len],
            &self.cut.buffers.buf,
        )
    }
}

enum Done {
    Parsed(Box<Parsed>),
    Failed(io::Error),
    /// The input ended: its length and, when hashing, its hash.
    End {
        offset: u64,
        hasher: Option<Box<Xxh3>>,
    },
}

/// Reads until `buf` has something or the input ends (0).
fn read_some(src: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match src.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

struct Cutter<R> {
    src: R,
    target: usize,
    seq: u64,
    /// Input offset of the next block's first byte.
    offset: u64,
    at_input_start: bool,
    columns: Columns,
    seen_first: bool,
    hasher: Option<Box<Xxh3>>,
    /// Bytes read past the last cut, from `carry_at` on: the next block's
    /// start, read before any more input.
    carry: Vec<u8>,
    carry_at: usize,
    /// The input has ended (what is carried may remain).
    eof: bool,
    pool: Receiver<Buffers>,
    work: Sender<Cut>,
    done: Sender<(u64, Done)>,
    abort: Arc<AtomicBool>,
    /// The file read by position, and its size when the run started
    /// ([`BlockOptions::file`]).
    file: Option<(Arc<File>, u64)>,
}

/// Reads `buf.len()` bytes of `file` at `offset`, or fewer at its end;
/// returns how many.
fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileExt;
        let mut n = 0;
        while n < buf.len() {
            match file.read_at(&mut buf[n..], offset + n as u64) {
                Ok(0) => break,
                Ok(read) => n += read,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(n)
    }
    #[cfg(not(unix))]
    {
        let _ = (file, buf, offset);
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "reading by position is for Unix",
        ))
    }
}

/// Where the cutter found a block's end in its buffer: the block's bytes,
/// the input bytes it stands for, and whether it is an over-long line cut
/// short.
struct Found {
    len: usize,
    span: u64,
    long: bool,
}

impl<R: Read> Cutter<R> {
    fn run(mut self) {
        let result = catch_unwind(AssertUnwindSafe(|| self.cut_all()));
        let failed = match result {
            Ok(Ok(())) => return,
            Ok(Err(error)) => error,
            Err(_) => io::Error::other("the input reader thread panicked"),
        };
        let _ = self.done.send((self.seq, Done::Failed(failed)));
    }

    fn cut_all(&mut self) -> io::Result<()> {
        loop {
            if self.abort.load(Ordering::Relaxed) {
                return Ok(());
            }
            let Ok(mut buffers) = recv_counted(&self.pool, Wait::Room) else {
                return Ok(());
            };
            let hash_start = self.hasher.clone();
            // By position once the header is settled (`settle` needs the
            // block's bytes before then); what sequential reads carried past
            // the last cut is read again by position.
            let positional = match &self.file {
                Some((file, size)) if self.seen_first => Some((Arc::clone(file), *size)),
                _ => None,
            };
            let (found, fill) = match positional {
                Some((file, size)) => {
                    self.carry.clear();
                    self.carry_at = 0;
                    match self.block_at(&file, size, &mut buffers.buf)? {
                        Some((found, filled)) => (Some(found), (!filled).then_some(file)),
                        None => (None, None),
                    }
                }
                None => (self.next_block(&mut buffers.buf)?, None),
            };
            let Some(block) = found else {
                let hasher = self.hasher.take();
                let end = Done::End {
                    offset: self.offset,
                    hasher,
                };
                let _ = self.done.send((self.seq, end));
                return Ok(());
            };
            let (columns, seen_first) = (self.columns, self.seen_first);
            if !self.seen_first {
                self.settle(&buffers.buf[..block.len]);
            }
            let cut = Cut {
                seq: self.seq,
                buffers,
                len: block.len,
                start: self.offset,
                span: block.span,
                long: block.long,
                at_input_start: self.at_input_start,
                columns,
                seen_first,
                hash_start,
                hash_end: if block.long {
                    self.hasher.clone()
                } else {
                    None
                },
                fill,
            };
            self.at_input_start = false;
            self.offset += block.span;
            self.seq += 1;
            let sent = match self.work.try_send(cut) {
                Ok(()) => Ok(()),
                Err(TrySendError::Full(cut)) => {
                    waited(Wait::Room, || self.work.send(cut).map_err(drop))
                }
                Err(TrySendError::Disconnected(_)) => return Ok(()),
            };
            if sent.is_err() {
                return Ok(());
            }
        }
    }

    /// Learns what a block settles about the header, by parsing a copy of
    /// it up to its first row.
    fn settle(&mut self, bytes: &[u8]) {
        let copy: Box<[u8]> = bytes.into();
        let mut parser = ParserBuilder::default()
            .after(self.at_input_start, self.columns, self.seen_first)
            .over_block(copy, bytes.len());
        (self.columns, self.seen_first) = match parser.next_row() {
            Ok(_) => parser.header_state(),
            // A bad header ends the run at this block.
            Err(_) => (self.columns, true),
        };
    }

    /// Bytes for `buf`: the carried bytes first, then the input's; 0 at the
    /// end of both.
    fn read_more(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.carry_at < self.carry.len() {
            let n = buf.len().min(self.carry.len() - self.carry_at);
            buf[..n].copy_from_slice(&self.carry[self.carry_at..self.carry_at + n]);
            self.carry_at += n;
            return Ok(n);
        }
        self.carry.clear();
        self.carry_at = 0;
        if self.eof {
            return Ok(0);
        }
        let n = read_some(&mut self.src, buf)?;
        self.eof = n == 0;
        Ok(n)
    }

    /// Puts `bytes` back in front of what is still carried.
    fn put_back(&mut self, bytes: &[u8]) {
        let mut carry = bytes.to_vec();
        carry.extend_from_slice(&self.carry[self.carry_at..]);
        self.carry = carry;
        self.carry_at = 0;
    }

    /// Fills `buf` with the next block, hashing what it consumes; `None` at
    /// the end of the input.
    fn next_block(&mut self, buf: &mut [u8]) -> io::Result<Option<Found>> {
        let cap = buf.len();
        let mut len = 0;
        let mut ended = false;
        let block = loop {
            if len >= self.target || ended {
                if len == 0 {
                    return Ok(None);
                }
                let from = self.target.min(len) - 1;
                if let Some(at) = memchr::memchr(b'\n', &buf[from..len]) {
                    break from + at + 1;
                }
                if ended {
                    break len;
                }
                if len == cap {
                    // The line across the target does not fit in the slack:
                    // end the block before it, or it is over-long.
                    match memchr::memrchr(b'\n', &buf[..from]) {
                        Some(at) => break at + 1,
                        None => return self.long_line(buf).map(Some),
                    }
                }
            }
            match self.read_more(&mut buf[len..cap])? {
                0 => ended = true,
                n => len += n,
            }
        };
        self.put_back(&buf[block..len]);
        if let Some(hasher) = &mut self.hasher {
            hasher.update(&buf[..block]);
        }
        Ok(Some(Found {
            len: block,
            span: block as u64,
            long: false,
        }))
    }

    /// [`Cutter::next_block`] for a file read by position: where the block
    /// that starts at `offset` ends, found from the bytes around its target
    /// end (the same cut `next_block` makes), and whether its bytes are in
    /// `buf` already (only where the line across the target does not fit
    /// the slack); `None` at the end of the file. Not for hashing.
    fn block_at(
        &mut self,
        file: &File,
        size: u64,
        buf: &mut [u8],
    ) -> io::Result<Option<(Found, bool)>> {
        debug_assert!(self.hasher.is_none(), "hashing reads every byte in order");
        let start = self.offset;
        let whole = |len: u64| Found {
            len: len as usize,
            span: len,
            long: false,
        };
        if start >= size {
            return Ok(None);
        }
        let rest = size - start;
        if rest <= self.target as u64 {
            return Ok(Some((whole(rest), false)));
        }
        // `next_block` looks for a line end from the target's last byte on,
        // through the slack.
        let from = self.target - 1;
        let want = (buf.len() - from).min((rest - from as u64) as usize);
        let window = &mut buf[from..from + want];
        let got = read_at(file, window, start + from as u64)?;
        if let Some(at) = memchr::memchr(b'\n', &window[..got]) {
            return Ok(Some((whole((from + at + 1) as u64), false)));
        }
        if got < want || from + got < buf.len() {
            // The file ends inside the window (it was cut short since the
            // run began): the block is what there is.
            return Ok(Some((whole((from + got) as u64), false)));
        }
        // The line across the target does not fit the slack: end the block
        // before it, or it is over-long.
        let got = read_at(file, &mut buf[..from], start)?;
        if let Some(at) = memchr::memrchr(b'\n', &buf[..got]) {
            return Ok(Some((whole((at + 1) as u64), true)));
        }
        let keep = self.long_line_kept(buf);
        // Skip to the line's end (or the file's).
        let mut span = buf.len() as u64;
        let mut scratch = vec![0u8; 64 * 1024];
        while !self.abort.load(Ordering::Relaxed) {
            let n = read_at(file, &mut scratch, start + span)?;
            if n == 0 {
                break;
            }
            match memchr::memchr(b'\n', &scratch[..n]) {
                Some(at) => {
                    span += at as u64 + 1;
                    break;
                }
                None => span += n as u64,
            }
        }
        let long = Found {
            len: keep,
            span,
            long: true,
        };
        Ok(Some((long, true)))
    }

    /// How much of an over-long line that starts `buf` a block keeps: enough
    /// for the parser to judge it, and its first `MAX_LINE` bytes for the
    /// reports (after the BOM at the input's start).
    fn long_line_kept(&self, buf: &[u8]) -> usize {
        let bom = if self.at_input_start && buf.starts_with(BOM) {
            BOM.len()
        } else {
            0
        };
        bom + MAX_LINE + 2
    }

    /// `buf` is full and holds no line end: the start of an over-long line.
    /// Keeps enough of it for the parser to judge it (and its first
    /// `MAX_LINE` bytes for the reports) and skips the rest.
    fn long_line(&mut self, buf: &[u8]) -> io::Result<Found> {
        let keep = self.long_line_kept(buf);
        if let Some(hasher) = &mut self.hasher {
            hasher.update(buf);
        }
        let mut span = buf.len() as u64;
        let mut scratch = vec![0u8; 64 * 1024];
        while !self.abort.load(Ordering::Relaxed) {
            let n = self.read_more(&mut scratch)?;
            if n == 0 {
                break;
            }
            let (skipped, rest) = match memchr::memchr(b'\n', &scratch[..n]) {
                Some(at) => scratch[..n].split_at(at + 1),
                None => (&scratch[..n], &[][..]),
            };
            if let Some(hasher) = &mut self.hasher {
                hasher.update(skipped);
            }
            span += skipped.len() as u64;
            if skipped.ends_with(b"\n") {
                let rest = rest.to_vec();
                self.put_back(&rest);
                break;
            }
        }
        Ok(Found {
            len: keep,
            span,
            long: true,
        })
    }
}

/// `receiver.recv()`, its wait counted as `kind` (`cpu::waited`) only
/// when nothing is ready: the clock is read only when the thread waits.
fn recv_counted<T>(receiver: &Receiver<T>, kind: Wait) -> Result<T, RecvError> {
    receiver
        .try_recv()
        .or_else(|_| waited(kind, || receiver.recv()))
}

/// Parses blocks until the cutter is done or the reader has gone.
fn parse_blocks(work: Receiver<Cut>, done: Sender<(u64, Done)>, split: Option<(Plan, Recycler)>) {
    while let Ok(mut cut) = recv_counted(&work, Wait::Input) {
        let seq = cut.seq;
        if let Some(file) = &cut.fill {
            // The block's bytes, by position ([`BlockOptions::file`]).
            let bytes = &mut cut.buffers.buf[..cut.len];
            let failed = match read_at(file, bytes, cut.start) {
                Ok(n) if n == cut.len => None,
                Ok(_) => Some(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the input file became shorter while it was read",
                )),
                Err(error) => Some(error),
            };
            if let Some(error) = failed {
                let _ = done.send((seq, Done::Failed(error)));
                return;
            }
        }
        let parsed = match catch_unwind(AssertUnwindSafe(|| parse_block(cut, split.as_ref()))) {
            Ok(parsed) => Done::Parsed(Box::new(parsed)),
            Err(_) => Done::Failed(io::Error::other("a parser thread panicked")),
        };
        if done.send((seq, parsed)).is_err() {
            return;
        }
    }
}

fn parse_block(mut cut: Cut, split: Option<&(Plan, Recycler)>) -> Parsed {
    let Buffers {
        buf,
        mut rows,
        mut fast,
    } = std::mem::replace(
        &mut cut.buffers,
        Buffers {
            buf: Box::default(),
            rows: Vec::new(),
            fast: FastRuns::default(),
        },
    );
    rows.clear();
    fast.clear();
    let base = buf.as_ptr() as usize;
    let mut parser = ParserBuilder::default()
        .after(cut.at_input_start, cut.columns, cut.seen_first)
        .over_block(buf, cut.len);
    let error = loop {
        // Common lines in batches (the fast path), then one line the
        // general way: the rows the serial parser gives, in order.
        match parser.fast_rows() {
            Ok(batch) if !batch.txs().is_empty() => {
                fast.runs.push(Run {
                    // Rows before it: one record or one other row each.
                    row: fast.txs.len() + rows.len(),
                    tx: fast.txs.len(),
                    start: fast.starts.len(),
                    len: batch.txs().len(),
                    line: batch.line(0) as u32,
                });
                fast.txs.extend_from_slice(batch.txs());
                fast.starts.extend_from_slice(batch.starts());
                continue;
            }
            Ok(_) => {}
            Err(error) => break Some(error),
        }
        let (line, raw_start, raw_len, parsed) = match parser.next_row() {
            Ok(Some(row)) => (
                row.line,
                row.raw.as_ptr() as usize - base,
                row.raw.len(),
                row.parsed,
            ),
            Ok(None) => break None,
            Err(error) => break Some(error),
        };
        rows.push(ParsedRow {
            parsed,
            line: line as u32,
            end: parser.consumed() as u32,
            raw_start: raw_start as u32,
            raw_len: raw_len as u16,
        });
    };
    let lines = parser.lines_read();
    let warnings = parser.take_warnings();
    let (columns, _) = parser.header_state();
    cut.buffers = Buffers {
        buf: parser.into_buf(),
        rows,
        fast,
    };
    let mut parsed = Parsed {
        cut,
        lines,
        columns,
        warnings,
        error,
        parts: None,
    };
    parsed.parts = split.map(|(plan, recycler)| split_rows(&parsed, *plan, recycler));
    parsed
}

/// A parsed block's well-formed records split for the workers, in file
/// order: the runs of common lines and the other rows between them.
fn split_rows(block: &Parsed, plan: Plan, recycler: &Recycler) -> Parts {
    let Buffers { rows, fast, .. } = &block.cut.buffers;
    let mut parts = recycler.take(plan, 0, block.rows());
    let mut others = rows.iter().peekable();
    let mut others_before = |parts: &mut Parts, line: u32| {
        while let Some(row) = others.next_if(|row| row.line < line) {
            if let Ok(tx) = &row.parsed {
                let raw = if plan.keep_raw { block.raw(row) } else { &[] };
                parts.push(row.line, tx, raw);
            }
        }
    };
    for run in &fast.runs {
        others_before(&mut parts, run.line);
        let rows = block.run_rows(*run, 0);
        if !plan.keep_raw {
            parts.push_run(run.line, rows.txs());
            continue;
        }
        for (i, tx) in rows.txs().iter().enumerate() {
            parts.push(run.line + i as u32, tx, rows.raw(i));
        }
    }
    others_before(&mut parts, u32::MAX);
    parts
}

/// The rows of a block-parallel parse, in file order (see the module docs).
/// Dropping it stops the other threads; the scope that started them waits
/// for the reader's current read to return.
pub struct BlockRows {
    done: Receiver<(u64, Done)>,
    /// Blocks that arrived before their turn.
    early: BTreeMap<u64, Done>,
    next: u64,
    block: Option<Parsed>,
    /// Rows of `block` handed out.
    index: usize,
    /// The next of `block`'s fast runs not handed out whole.
    run: usize,
    /// The next of `block`'s other rows not handed out.
    general: usize,
    /// The line number (within `block`) and the end of the last row of
    /// `block` handed out.
    handed: Option<(u32, u32)>,
    /// Lines before `block`.
    base_line: u64,
    pool: Sender<Buffers>,
    warnings: Vec<String>,
    /// Where the source stood after the last row of the blocks before.
    last: ParserState,
    end: Option<Position>,
    abort: Arc<AtomicBool>,
    /// Blocks taken so far whose bytes their parser read by position.
    #[cfg_attr(not(test), allow(dead_code))]
    by_position: u64,
}

impl BlockRows {
    /// Starts the cutter and the parsers on `scope`, reading `src` from its
    /// start, or (with `resume`) from a checkpoint: its prefix is checked
    /// here, before any thread starts.
    pub fn start<'scope, R: Read + Send + 'scope>(
        scope: &'scope Scope<'scope, '_>,
        mut src: R,
        options: BlockOptions,
        resume: Option<&ParserState>,
    ) -> Result<(BlockRows, Vec<ScopedJoinHandle<'scope, ()>>), InputError> {
        assert!(options.parsers >= 1 && (1..=MAX_BLOCK).contains(&options.block));
        let (hasher, last) = match resume {
            Some(at) => (Some(skip_prefix(&mut src, &at.at)?), *at),
            None => (
                options.hashing.then(|| Box::new(Xxh3::new())),
                ParserState {
                    at: Position {
                        offset: 0,
                        line: 0,
                        prefix_hash: if options.hashing {
                            Xxh3::new().digest128()
                        } else {
                            0
                        },
                    },
                    columns: Columns::POSITIONAL,
                    seen_first: false,
                },
            ),
        };
        let buffers = 2 * options.parsers + 2;
        let (pool_tx, pool_rx) = bounded(buffers);
        for _ in 0..buffers {
            let buf = vec![0u8; options.block + SLACK].into_boxed_slice();
            pool_tx
                .send(Buffers {
                    buf,
                    rows: Vec::new(),
                    fast: FastRuns::default(),
                })
                .expect("the pool has room for every buffer");
        }
        let (work_tx, work_rx) = bounded(options.parsers);
        let (done_tx, done_rx) = unbounded();
        let abort = Arc::new(AtomicBool::new(false));
        let positional = options
            .by_position(resume)
            .and_then(|file| Some((Arc::clone(file), file.metadata().ok()?.len())));
        let cutter = Cutter {
            src,
            target: options.block,
            seq: 0,
            offset: last.at.offset,
            at_input_start: last.at.offset == 0 && last.at.line == 0,
            columns: last.columns,
            seen_first: last.seen_first,
            hasher,
            carry: Vec::new(),
            carry_at: 0,
            eof: false,
            pool: pool_rx,
            work: work_tx,
            done: done_tx.clone(),
            abort: Arc::clone(&abort),
            file: positional,
        };
        let spawn_failed = InputError::StartThread;
        let mut threads = vec![Builder::new()
            .name("reader".into())
            .spawn_scoped(scope, move || charged(Role::Reader, || cutter.run()))
            .map_err(spawn_failed)?];
        for n in 0..options.parsers {
            let (work, done) = (work_rx.clone(), done_tx.clone());
            let split = options.split.clone();
            let thread = Builder::new()
                .name(format!("parser-{n}"))
                .spawn_scoped(scope, move || {
                    charged(Role::Parser, || parse_blocks(work, done, split))
                });
            threads.push(thread.map_err(spawn_failed)?);
        }
        let rows = BlockRows {
            done: done_rx,
            early: BTreeMap::new(),
            next: 0,
            block: None,
            index: 0,
            run: 0,
            general: 0,
            handed: None,
            base_line: last.at.line,
            pool: pool_tx,
            warnings: Vec::new(),
            last,
            end: None,
            abort,
            by_position: 0,
        };
        Ok((rows, threads))
    }

    /// Where the source stands after the row of `block` at `line` that
    /// ends at `end`.
    fn position_after(&self, block: &Parsed, (line, end): (u32, u32)) -> ParserState {
        let cut = &block.cut;
        let (offset, prefix_hash) = if cut.long {
            let hash = cut.hash_end.as_ref().map_or(0, |h| h.digest128());
            (cut.start + cut.span, hash)
        } else {
            let end = end as usize;
            let hash = cut.hash_start.as_ref().map_or(0, |h| {
                let mut h = h.clone();
                h.update(&cut.buffers.buf[..end]);
                h.digest128()
            });
            (cut.start + end as u64, hash)
        };
        ParserState {
            at: Position {
                offset,
                line: self.base_line + u64::from(line),
                prefix_hash,
            },
            columns: block.columns,
            seen_first: true,
        }
    }

    /// How many of the blocks handed out so far their parser read by
    /// position ([`BlockOptions::file`]).
    #[cfg(test)]
    pub fn blocks_read_by_position(&self) -> u64 {
        self.by_position
    }

    /// Finishes the current block and takes the next one in order.
    fn advance(&mut self) -> Result<(), InputError> {
        if let Some(block) = self.block.take() {
            if let Some(handed) = self.handed {
                self.last = self.position_after(&block, handed);
            }
            self.base_line += block.lines;
            self.by_position += u64::from(block.cut.fill.is_some());
            // The cutter may have stopped; then the buffer is not needed.
            let _ = self.pool.send(block.cut.buffers);
        }
        self.index = 0;
        self.run = 0;
        self.general = 0;
        self.handed = None;
        let done = loop {
            if let Some(done) = self.early.remove(&self.next) {
                break done;
            }
            match recv_counted(&self.done, Wait::Input) {
                Ok((seq, done)) => {
                    self.early.insert(seq, done);
                }
                Err(_) => {
                    return Err(InputError::Io(io::Error::other(
                        "the parser threads stopped",
                    )))
                }
            }
        };
        self.next += 1;
        match done {
            Done::Parsed(mut parsed) => {
                self.warnings.append(&mut parsed.warnings);
                self.block = Some(*parsed);
                Ok(())
            }
            Done::Failed(error) => Err(InputError::Io(error)),
            Done::End { offset, hasher } => {
                self.end = Some(Position {
                    offset,
                    line: self.base_line,
                    prefix_hash: hasher.map_or(0, |h| h.digest128()),
                });
                Ok(())
            }
        }
    }
}

impl RowSource for BlockRows {
    /// A run of common lines that starts at the next row, whole: the rows
    /// a parser thread read in one batch, handed on as one.
    fn fast_rows(&mut self) -> Result<FastRows<'_>, InputError> {
        let Some(block) = &self.block else {
            return Ok(FastRows::EMPTY);
        };
        // (A run that `next_row` began is left to it.)
        let Some(&run) = block.runs().get(self.run).filter(|r| r.row == self.index) else {
            return Ok(FastRows::EMPTY);
        };
        self.run += 1;
        self.index += run.len;
        let rows = block.run_rows(run, self.base_line);
        let last = run.len - 1;
        self.handed = Some((run.line + last as u32, rows.span(last).1 as u32));
        Ok(rows)
    }

    fn next_block(&mut self, strict: bool) -> Result<Option<SplitBlock<'_>>, InputError> {
        loop {
            let Some(block) = &self.block else {
                if self.end.is_some() {
                    return Ok(None);
                }
                self.advance()?;
                continue;
            };
            // Begun, or ending in an error: row by row.
            if block.error.is_some() || (self.index > 0 && self.index < block.rows()) {
                return Ok(None);
            }
            if self.index == 0 && block.rows() > 0 {
                break;
            }
            // Handed out (or no rows): the next one.
            self.advance()?;
        }
        let block = self.block.as_mut().expect("a block with rows");
        let malformed = block.cut.buffers.rows.iter().any(|r| r.parsed.is_err());
        if strict && malformed {
            return Ok(None);
        }
        let Some(mut parts) = block.parts.take() else {
            return Ok(None);
        };
        parts.base = self.base_line;
        let block = self.block.as_ref().expect("a block with rows");
        self.index = block.rows();
        self.run = block.runs().len();
        self.general = block.cut.buffers.rows.len();
        self.handed = block.last_row();
        let base = self.base_line;
        let malformed = block
            .cut
            .buffers
            .rows
            .iter()
            .filter(|row| row.parsed.is_err())
            .map(|row| Row {
                line: base + u64::from(row.line),
                raw: block.raw(row),
                parsed: row.parsed,
            })
            .collect();
        let last_line = base + u64::from(self.handed.map_or(0, |(line, _)| line));
        Ok(Some(SplitBlock {
            parts,
            malformed,
            last_line,
        }))
    }

    #[inline]
    fn next_row(&mut self) -> Result<Option<Row<'_>>, InputError> {
        loop {
            // The next row is in the next run if that has begun, else it is
            // the next of the others, if any is left.
            let (run, general) = match &self.block {
                Some(block) => (
                    block
                        .runs()
                        .get(self.run)
                        .filter(|r| r.row <= self.index)
                        .copied(),
                    self.general < block.cut.buffers.rows.len(),
                ),
                None => (None, false),
            };
            if let Some(run) = run {
                let k = self.index - run.row;
                self.index += 1;
                if k + 1 == run.len {
                    self.run += 1;
                }
                let block = self.block.as_ref().expect("runs come from a block");
                let rows = block.run_rows(run, self.base_line);
                self.handed = Some((run.line + k as u32, rows.span(k).1 as u32));
                return Ok(Some(Row {
                    line: rows.line(k),
                    raw: rows.raw(k),
                    parsed: Ok(rows.txs()[k]),
                }));
            }
            if general {
                let block = self.block.as_ref().expect("rows come from a block");
                let row = block.cut.buffers.rows[self.general];
                self.general += 1;
                self.index += 1;
                self.handed = Some((row.line, row.end));
                return Ok(Some(Row {
                    line: self.base_line + u64::from(row.line),
                    raw: block.raw(&row),
                    parsed: row.parsed,
                }));
            }
            if let Some(error) = self.block.as_mut().and_then(|b| b.error.take()) {
                return Err(error);
            }
            if self.end.is_some() {
                return Ok(None);
            }
            self.advance()?;
        }
    }

    fn state(&self) -> ParserState {
        match (&self.block, self.end, self.handed) {
            (_, Some(at), _) => ParserState { at, ..self.last },
            (Some(block), None, Some(handed)) => self.position_after(block, handed),
            _ => self.last,
        }
    }

    fn take_warnings(&mut self) -> Vec<String> {
        std::mem::take(&mut self.warnings)
    }
}

impl Drop for BlockRows {
    fn drop(&mut self) {
        // The cutter stops at its next block; the parsers when it has.
        self.abort.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every row with the checkpoint after it, then the end position and
    /// every warning, or the error that ended the input.
    type Trace = (Vec<TraceRow>, String);

    /// A row: its line, original line, record, and the state after it.
    type TraceRow = (u64, Vec<u8>, Result<Tx, Malformed>, ParserState);

    fn trace(rows: &mut impl RowSource) -> Trace {
        let mut out = Vec::new();
        let mut warnings = Vec::new();
        let end = loop {
            warnings.extend(rows.take_warnings());
            match rows.next_row() {
                Ok(Some(row)) => {
                    let (line, raw, parsed) = (row.line, row.raw.to_vec(), row.parsed);
                    out.push((line, raw, parsed, rows.state()));
                }
                Ok(None) => break format!("end {:?}", rows.state().at),
                Err(error) => break format!("error {error}"),
            }
        };
        warnings.extend(rows.take_warnings());
        (out, format!("{end}; warnings {warnings:?}"))
    }

    fn serial(input: &[u8]) -> Trace {
        trace(&mut ParserBuilder::default().hashing(true).build(input))
    }

    /// Stands for the state after a row where a trace leaves it out.
    const NO_STATE: ParserState = ParserState {
        at: Position {
            offset: 0,
            line: 0,
            prefix_hash: 0,
        },
        columns: Columns::POSITIONAL,
        seen_first: false,
    };

    /// The rows as the CSV loop reads them (a batch of common lines first,
    /// else one row), without the state after each (a batch has one).
    fn batched(rows: &mut impl RowSource) -> Trace {
        stateless(mixed(rows, |_, batch| usize::from(batch == 0)))
    }

    /// The rows read as batches of common lines, each followed by
    /// `singles(step, batch rows)` rows read one by one, with the state after
    /// each of those (`NO_STATE` after a batch's).
    fn mixed(rows: &mut impl RowSource, singles: fn(usize, usize) -> usize) -> Trace {
        let mut out = Vec::new();
        let mut warnings = Vec::new();
        let mut step = 0;
        let end = 'read: loop {
            step += 1;
            warnings.extend(rows.take_warnings());
            let batch = read_batch(rows, &mut out);
            for _ in 0..singles(step, batch) {
                if let Some(end) = read_single(rows, &mut out) {
                    break 'read end;
                }
            }
        };
        warnings.extend(rows.take_warnings());
        (out, format!("{end}; warnings {warnings:?}"))
    }

    /// A batch of common lines into `out` (`NO_STATE` after each); how many.
    fn read_batch(rows: &mut impl RowSource, out: &mut Vec<TraceRow>) -> usize {
        let batch = rows.fast_rows().unwrap();
        for (i, &tx) in batch.txs().iter().enumerate() {
            out.push((batch.line(i), batch.raw(i).to_vec(), Ok(tx), NO_STATE));
        }
        batch.txs().len()
    }

    /// One row into `out` with the state after it; or how the input ended.
    fn read_single(rows: &mut impl RowSource, out: &mut Vec<TraceRow>) -> Option<String> {
        match rows.next_row() {
            Ok(Some(row)) => {
                let (line, raw, parsed) = (row.line, row.raw.to_vec(), row.parsed);
                out.push((line, raw, parsed, rows.state()));
                None
            }
            Ok(None) => Some(format!("end {:?}", rows.state().at)),
            Err(error) => Some(format!("error {error}")),
        }
    }

    /// A trace without the state after each row.
    fn stateless((rows, end): Trace) -> Trace {
        let rows = rows
            .into_iter()
            .map(|(line, raw, parsed, _)| (line, raw, parsed, NO_STATE))
            .collect();
        (rows, end)
    }

    /// A pipe's short reads: at most 7 bytes each.
    struct Trickle<'a>(&'a [u8]);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(7).min(self.0.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    /// With 3 parsers the input arrives in short reads.
    fn blocks(input: &[u8], parsers: usize, block: usize) -> Trace {
        blocks_read(input, parsers, block, None, trace)
    }

    /// [`blocks`], read by `read`.
    fn blocks_read(
        input: &[u8],
        parsers: usize,
        block: usize,
        split: Option<Plan>,
        read: fn(&mut BlockRows) -> Trace,
    ) -> Trace {
        let options = BlockOptions {
            parsers,
            block,
            hashing: true,
            split: split.map(|plan| (plan, Recycler::new())),
            file: None,
        };
        std::thread::scope(|scope| {
            let source: Box<dyn Read + Send> = match parsers {
                3 => Box::new(Trickle(input)),
                _ => Box::new(input),
            };
            let (mut rows, _threads) = BlockRows::start(scope, source, options, None).unwrap();
            read(&mut rows)
        })
    }

    /// Inputs with every hazard at a block boundary: a BOM, a header, blank
    /// lines, CRLF, quotes, over-long lines of every kind, no final newline.
    fn hostile() -> Vec<Vec<u8>> {
        let long = |n: usize, end: &str| {
            let mut line = "deposit,1,".to_string();
            line.push_str(&"9".repeat(n - line.len()));
            line.push_str(end);
            line.into_bytes()
        };
        let mut inputs: Vec<Vec<u8>> = vec![
            b"\xEF\xBB\xBFtype,client,tx,amount\r\ndeposit,1,1,1.0\r\n\r\ndispute,1,1,\n".to_vec(),
            b"\n\n  \ntype , client,tx,amount\ndeposit,1,1,2\nwithdrawal,1,2,1".to_vec(),
            b"deposit,1,1,1\n\"deposit\",\"1\",\"2\",\"3,5\"\ndeposit,1,\"3,4\n".to_vec(),
            b"amount,tx,client,type\n5,1,1,deposit\r\n6,2,1,withdrawal\r".to_vec(),
            b"type,client,tx\ndeposit,1,1\n".to_vec(),
            b"type,client,client,tx,amount\ndeposit,1,1,1,1\n".to_vec(),
            b"\xEF\xBB".to_vec(),
            b"".to_vec(),
        ];
        for n in [
            MAX_LINE - 1,
            MAX_LINE,
            MAX_LINE + 1,
            MAX_LINE + 2,
            MAX_LINE + 3,
            9_000,
            70_000,
        ] {
            for end in ["\n", "\r\n", ""] {
                let mut input = b"\xEF\xBB\xBF".to_vec();
                input.extend(long(n, end));
                inputs.push(input.clone());
                input.extend(b"deposit,2,2,2\n");
                input.extend(long(n, "\r\n"));
                input.extend(b"deposit,2,3,2");
                input.extend(end.as_bytes());
                inputs.push(input);
            }
        }
        inputs
    }

    /// Every block size for a short input, else the sizes around the
    /// slack and the line limit.
    fn block_sizes_for(len: usize) -> Vec<usize> {
        if len < 200 {
            (1..=len + 1).collect()
        } else {
            [1, 2, 3, 7, 100, 4_000, 4_097, 4_105, 4_200, 9_000, 1 << 20].to_vec()
        }
    }

    #[test]
    fn block_rows_equal_the_serial_parser_at_every_block_size() {
        for input in hostile() {
            let expected = serial(&input);
            let sizes = block_sizes_for(input.len());
            for block in sizes {
                for parsers in [1, 3] {
                    assert!(
                        blocks(&input, parsers, block) == expected,
                        "block {block}, parsers {parsers}, input {:?}",
                        String::from_utf8_lossy(&input[..input.len().min(80)])
                    );
                }
            }
        }
    }

    /// Blocks whose parsers read them by position ([`BlockOptions::file`])
    /// give the serial parser's rows, line numbers, positions and warnings
    /// on every hostile input and a datagen file, at every block size.
    #[test]
    fn blocks_read_by_position_equal_the_serial_parser() {
        let dir = tempfile::tempdir().unwrap();
        let mut inputs = hostile();
        inputs.push(datagen::generate_vec(datagen::Config {
            rows: 20_000,
            seed: 7,
            ..datagen::Config::default()
        }));
        for (n, input) in inputs.iter().enumerate() {
            let path = dir.path().join(format!("{n}.csv"));
            std::fs::write(&path, input).unwrap();
            let expected = trace(&mut ParserBuilder::default().build(&input[..]));
            let sizes = block_sizes_for(input.len());
            for block in sizes {
                for parsers in [1, 3] {
                    let file = File::open(&path).unwrap();
                    let options = BlockOptions {
                        parsers,
                        block,
                        hashing: false,
                        split: None,
                        file: Some(Arc::new(file.try_clone().unwrap())),
                    };
                    let (got, by_position) = std::thread::scope(|scope| {
                        let (mut rows, _threads) =
                            BlockRows::start(scope, file, options, None).unwrap();
                        let got = trace(&mut rows);
                        (got, rows.blocks_read_by_position())
                    });
                    let what = format!(
                        "block {block}, parsers {parsers}, input {:?}",
                        String::from_utf8_lossy(&input[..input.len().min(80)])
                    );
                    assert!(got == expected, "{what}");
                    if n == inputs.len() - 1 && block < input.len() / 4 {
                        assert!(by_position > 0, "{what}: no block was read by position");
                    }
                }
            }
        }
    }

    /// A file cut short under the run: the parser that reads a block by
    /// position finds fewer bytes than the cut says, and the run ends with
    /// an error, never with fewer rows.
    #[test]
    fn a_block_read_short_by_position_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("short.csv");
        std::fs::write(&path, "deposit,1,1,1\n".repeat(5)).unwrap();
        let cut = Cut {
            seq: 0,
            buffers: Buffers {
                buf: vec![0u8; 200].into_boxed_slice(),
                rows: Vec::new(),
                fast: FastRuns::default(),
            },
            len: 140,
            start: 0,
            span: 140,
            long: false,
            at_input_start: true,
            columns: Columns::POSITIONAL,
            seen_first: true,
            hash_start: None,
            hash_end: None,
            fill: Some(Arc::new(File::open(&path).unwrap())),
        };
        let (work_tx, work_rx) = bounded(1);
        let (done_tx, done_rx) = unbounded();
        work_tx.send(cut).unwrap();
        drop(work_tx);
        parse_blocks(work_rx, done_tx, None);
        match done_rx.recv().unwrap() {
            (0, Done::Failed(error)) => {
                assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof, "{error}");
                assert!(error.to_string().contains("became shorter"), "{error}");
            }
            (seq, _) => panic!("block {seq}: not a failure"),
        }
        assert!(done_rx.try_recv().is_err(), "nothing after the failure");
    }

    /// Mostly common lines (which parser threads read in batches, the fast
    /// path) among lines that only the general path reads: the serial
    /// parser's rows, line numbers and positions at any block size.
    #[test]
    fn common_lines_in_batches_give_the_serial_rows_at_any_block_size() {
        let mut input = b"type,client,tx,amount\n".to_vec();
        for i in 0..3_000u32 {
            let client = i % 97;
            let line = match i % 11 {
                0 => format!("deposit, {client}, {i}, {}.{}\n", i, i % 10_000),
                1 => format!("withdrawal,{client},{i},{}\r\n", i % 50),
                2 => format!("dispute,{client},{},\n", i / 2),
                3 => format!("\"deposit\",{client},{i},1\n"),
                4 => "\n".to_string(),
                5 => format!("resolve, {client}, {}\n", i / 3),
                6 => format!("deposit,{client},{i},0.00001\n"),
                _ => format!("deposit,{client},{i},{i}.5\n"),
            };
            input.extend(line.as_bytes());
        }
        let expected = serial(&input);
        let rows = stateless(expected.clone());
        assert!(batched(&mut ParserBuilder::default().build(&input[..])).0 == rows.0);
        for block in [64, 100, 1_000, 4_097, 65_536] {
            for parsers in [1, 3] {
                assert!(
                    blocks(&input, parsers, block) == expected,
                    "block {block}, parsers {parsers}"
                );
                assert!(
                    blocks_read(&input, parsers, block, None, batched) == rows,
                    "in batches: block {block}, parsers {parsers}"
                );
            }
        }
    }

    /// The rows as the CSV loop reads them with workers: whole blocks
    /// split for them (their records merged back by line with their
    /// malformed rows, the state after the block's last row), else a batch
    /// of common lines or one row. `strict` as the loop's.
    fn split_blocks<const STRICT: bool>(rows: &mut BlockRows) -> Trace {
        let mut out = Vec::new();
        let end = loop {
            if let Some(block) = rows.next_block(STRICT).unwrap() {
                let mut all: Vec<_> = block
                    .parts
                    .in_order()
                    .map(|(line, tx, raw)| (line, raw.to_vec(), Ok(*tx), NO_STATE))
                    .chain(
                        block
                            .malformed
                            .iter()
                            .map(|row| (row.line, row.raw.to_vec(), row.parsed, NO_STATE)),
                    )
                    .collect();
                all.sort_by_key(|row| row.0);
                assert!(STRICT.then_some(()).is_none() || block.malformed.is_empty());
                assert_eq!(all.last().map(|row| row.0), Some(block.last_line));
                let last = all.len() - 1;
                all[last].3 = rows.state();
                out.extend(all);
                continue;
            }
            if read_batch(rows, &mut out) > 0 {
                continue;
            }
            if let Some(end) = read_single(rows, &mut out) {
                break end;
            }
        };
        (out, end)
    }

    /// How many blocks are handed out whole (the rest read row by row).
    fn count_whole<const STRICT: bool>(rows: &mut BlockRows) -> Trace {
        let mut whole = 0;
        loop {
            if rows.next_block(STRICT).unwrap().is_some() {
                whole += 1;
            } else if rows.next_row().unwrap().is_none() {
                return (Vec::new(), whole.to_string());
            }
        }
    }

    /// Whole blocks split for the workers hold the serial parser's rows,
    /// and the source stands where the serial parser does after each
    /// block; strict, a block with a malformed row is read row by row.
    #[test]
    fn whole_blocks_split_for_the_workers_give_the_serial_rows() {
        let mut inputs = hostile();
        let mut mixed = b"type,client,tx,amount\n".to_vec();
        for i in 0..2_000u32 {
            let line = match i % 7 {
                0 => format!("deposit,{},{i},1.5\n", i % 13),
                1 => format!("withdrawal, {}, {i}, 0.5\r\n", i % 13),
                2 => format!("dispute,{},{},\n", i % 13, i - 2),
                3 => "deposit,x,1,1\n".to_string(),
                4 => "\n".to_string(),
                5 => format!("\"deposit\",{},{i},2\n", i % 13),
                _ => format!("deposit,{},{},3\n", i % 13, i / 2),
            };
            mixed.extend(line.as_bytes());
        }
        inputs.push(mixed.clone());
        // The blocks are handed out whole, unless strict: each has a
        // malformed row.
        let whole = |strict: bool| {
            let plan = Some(Plan {
                workers: 2,
                keep_raw: false,
            });
            let read = match strict {
                false => count_whole::<false>,
                true => count_whole::<true>,
            };
            blocks_read(&mixed, 2, 1_000, plan, read).1
        };
        assert_eq!((whole(false), whole(true)), ("32".into(), "0".into()));
        for input in inputs {
            let (expected, expected_end) = serial(&input);
            let expected_end = expected_end.split("; warnings").next().unwrap().to_string();
            for (block, parsers, workers) in [(1, 1, 1), (64, 3, 2), (1_000, 2, 3), (1 << 20, 1, 4)]
            {
                let plan = Plan {
                    workers,
                    keep_raw: true,
                };
                for read in [split_blocks::<false>, split_blocks::<true>] {
                    let (rows, end) = blocks_read(&input, parsers, block, Some(plan), read);
                    let context = format!("block {block}, parsers {parsers}, workers {workers}");
                    assert_eq!(end, expected_end, "{context}");
                    assert_eq!(rows.len(), expected.len(), "{context}");
                    for (got, want) in rows.iter().zip(&expected) {
                        assert_eq!(got.0..=got.0, want.0..=want.0, "{context}");
                        assert!(got.1 == want.1 && got.2 == want.2, "{context}");
                        assert!(got.3 == NO_STATE || got.3 == want.3, "{context}");
                    }
                }
            }
        }
    }

    /// The rows read one, two or three at a time between batches: a batch
    /// asked for in the middle of a run of common lines gives nothing, and
    /// the rest of the run comes row by row, with the serial positions.
    fn interleaved(rows: &mut impl RowSource) -> Trace {
        mixed(rows, |step, _| step % 3 + 1)
    }

    #[test]
    fn rows_asked_for_one_by_one_within_a_run_are_the_serial_rows() {
        let mut input = b"type,client,tx,amount\n".to_vec();
        for i in 0..5_000u32 {
            let line = match i % 200 {
                0 => "\n".to_string(),
                1 => format!("deposit, {}, {i}, 1.5\n", i % 7),
                _ => format!("deposit,{},{i},2\n", i % 7),
            };
            input.extend(line.as_bytes());
        }
        let (expected, end) = serial(&input);
        for block in [100, 4_097, 65_536] {
            let (rows, read_end) = blocks_read(&input, 2, block, None, interleaved);
            assert_eq!(read_end, end, "block {block}");
            assert_eq!(rows.len(), expected.len(), "block {block}");
            for (row, want) in rows.iter().zip(&expected) {
                assert_eq!(row.0, want.0, "block {block}");
                assert!(
                    row.1 == want.1 && row.2 == want.2,
                    "line {}, block {block}",
                    row.0
                );
                if row.3 != NO_STATE {
                    assert!(row.3 == want.3, "state after line {}, block {block}", row.0);
                }
            }
        }
    }

    #[test]
    fn a_resumed_block_parse_goes_on_as_the_serial_one() {
        let input = b"type,client,tx,amount\ndeposit,1,1,1\n\ndeposit,1,2,1\r\ndispute,1,1,\n";
        let (rows, _) = serial(input);
        for (_, _, _, at) in &rows {
            let mut parser = ParserBuilder::default().resume(&input[..], at).unwrap();
            let expected = trace(&mut parser);
            for block in [1, 5, 1 << 20] {
                let options = BlockOptions {
                    parsers: 2,
                    block,
                    hashing: true,
                    split: None,
                    file: None,
                };
                let got = std::thread::scope(|scope| {
                    let (mut rows, _threads) =
                        BlockRows::start(scope, &input[..], options, Some(at)).unwrap();
                    trace(&mut rows)
                });
                assert_eq!(got, expected, "from {at:?}, block {block}");
            }
        }
    }
}
