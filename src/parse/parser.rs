//! The parser: lines, header, fields and values together, one row at a
//! time, with a state a resumed run can go on from.

use std::io::{self, Read};

use super::error::{InputError, Malformed};
use super::fast::{read_lines, WINDOW};
use super::fields::{is_blank_line, FieldSplitter};
use super::lines::{LineReader, Position};
#[cfg(unix)]
use super::mapped::Mapped;
use super::record::{header_warnings, plain_record, record, Columns};
use crate::batch::Parts;
use crate::tx::Tx;

/// One non-blank, non-header line, parsed.
#[derive(Debug)]
pub struct Row<'a> {
    /// Physical line number.
    pub line: u64,
    /// The original line, line end excluded (cut at 4096 bytes if too long).
    pub raw: &'a [u8],
    pub parsed: Result<Tx, Malformed>,
}

/// The most rows [`Parser::fast_rows`] hands out at once: 16 KiB of
/// records, which stay in the first-level cache while they are applied.
/// (256 rows took 3% more CPU on the 20M-row file, `--workers 0`: 0.65 ->
/// 0.63 s, 11 interleaved rounds; 2048 rows, 0.63 s, no faster; perf.md.)
pub const FAST_ROWS: usize = 1024;

/// The most lines the fast path sits out after taking none.
const FAST_PAUSE_MAX: u32 = 64;

/// Consecutive common lines, each one row, read by the fast path: their
/// records, with the lines they came from.
pub struct FastRows<'a> {
    /// The first row's physical line number; the others follow it.
    first_line: u64,
    txs: &'a [Tx],
    /// Where each row's line starts in `buf`, and where the last one ends.
    starts: &'a [u32],
    buf: &'a [u8],
}

impl<'a> FastRows<'a> {
    /// No rows.
    pub const EMPTY: FastRows<'static> = FastRows {
        first_line: 0,
        txs: &[],
        starts: &[0],
        buf: &[],
    };

    /// Rows of consecutive lines from `first_line`: their records, where
    /// each line starts in `buf` followed by where the last one ends.
    pub(super) fn new(first_line: u64, txs: &'a [Tx], starts: &'a [u32], buf: &'a [u8]) -> Self {
        debug_assert_eq!(starts.len(), txs.len() + 1);
        FastRows {
            first_line,
            txs,
            starts,
            buf,
        }
    }

    /// The records, in line order.
    #[inline]
    pub fn txs(&self) -> &'a [Tx] {
        self.txs
    }

    /// Where each line starts in the buffer, then where the last one ends.
    pub(super) fn starts(&self) -> &'a [u32] {
        self.starts
    }

    /// The line number of row `i`.
    #[inline]
    pub fn line(&self, i: usize) -> u64 {
        self.first_line + i as u64
    }

    /// Where row `i`'s line starts in the reader's buffer, and where it
    /// ends, its line end included (the bytes consumed once it is read).
    #[inline]
    pub fn span(&self, i: usize) -> (usize, usize) {
        (self.starts[i] as usize, self.starts[i + 1] as usize)
    }

    /// The original line of row `i`, line end excluded.
    pub fn raw(&self, i: usize) -> &'a [u8] {
        let line = &self.buf[self.starts[i] as usize..self.starts[i + 1] as usize];
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        line.strip_suffix(b"\r").unwrap_or(line)
    }
}

/// The whole input side: lines, header, fields, values.
pub struct Parser<R> {
    lines: LineReader<R>,
    /// The fast path's records and line starts (see [`FastRows`]): slots
    /// for [`FAST_ROWS`] rows, which `read_lines` writes in place.
    fast_txs: Box<[Tx]>,
    fast_starts: Box<[u32]>,
    /// Lines to leave to the general path before the fast path tries
    /// again, after it took none: doubled on every miss up to
    /// [`FAST_PAUSE_MAX`], so that a file of unusual lines (escaped
    /// quotes, say) does not pay for a failed try on every line.
    fast_pause: u32,
    fast_misses: u32,
    /// Made when a line first needs it: a block's parser whose lines all
    /// take the fast path never builds csv-core's reader and buffers (the
    /// build was 0.6% of a `--parsers 2 --workers 2` run, once a block).
    fields: Option<FieldSplitter>,
    columns: Columns,
    /// Whether the first non-blank line has been seen (header detection).
    seen_first: bool,
    /// What the header says that will cost the run (a missing `amount`).
    warnings: Vec<String>,
}

/// Where a parser stands between two records, with what it learned from
/// the header: everything a resumed parser needs to go on exactly as this
/// one would have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParserState {
    pub at: Position,
    pub columns: Columns,
    /// Whether the first non-blank line (the header, if any) was read.
    pub seen_first: bool,
}

/// Where a parser starts, and whether it hashes what it reads: one place
/// for every way a parser begins, as csv-core's `ReaderBuilder` is.
///
/// By default a parser starts at the very start of the input (where a BOM
/// may come and the first non-blank line may be a header), with the
/// columns in SPEC order, and does not hash.
#[derive(Clone, Copy, Debug)]
pub struct ParserBuilder {
    hashing: bool,
    at_input_start: bool,
    columns: Columns,
    seen_first: bool,
}

impl Default for ParserBuilder {
    fn default() -> Self {
        ParserBuilder {
            hashing: false,
            at_input_start: true,
            columns: Columns::POSITIONAL,
            seen_first: false,
        }
    }
}

impl ParserBuilder {
    /// Hashes what the parser consumes, so that its [`state`](Parser::state)
    /// can later be resumed from.
    pub fn hashing(mut self, hashing: bool) -> Self {
        self.hashing = hashing;
        self
    }

    /// Starts at a line start of the input, after lines that settled the
    /// `columns` and whether the first non-blank line was seen; in the
    /// middle of the input (no BOM looked for) unless `at_input_start`.
    /// Lines are numbered from 1.
    pub fn after(mut self, at_input_start: bool, columns: Columns, seen_first: bool) -> Self {
        self.at_input_start = at_input_start;
        self.columns = columns;
        self.seen_first = seen_first;
        self
    }

    /// A parser reading `src`.
    pub fn build<R: Read>(&self, src: R) -> Parser<R> {
        let lines = LineReader::new(src, self.at_input_start, self.hashing);
        self.parser(lines)
    }

    /// A parser that goes on from `at` over the same input, `src` read from
    /// its start: its prefix is checked against the state's hash, then
    /// skipped, and the parser hashes from there.
    pub fn resume<R: Read>(&self, src: R, at: &ParserState) -> Result<Parser<R>, InputError> {
        let builder = self.after(self.at_input_start, at.columns, at.seen_first);
        Ok(builder.parser(LineReader::resume(src, &at.at)?))
    }

    /// A parser over one block of whole lines, `buf[..len]`, already in
    /// memory (see `LineReader::over_block`).
    pub fn over_block(&self, buf: Box<[u8]>, len: usize) -> Parser<io::Empty> {
        self.parser(LineReader::over_block(buf, len, self.at_input_start))
    }

    /// A parser over a whole mapped file, read in place (see
    /// `LineReader::over_map`), from the input's start.
    #[cfg(unix)]
    pub fn over_map(&self, map: Mapped) -> Parser<io::Empty> {
        self.parser(LineReader::over_map(map))
    }

    fn parser<R>(&self, lines: LineReader<R>) -> Parser<R> {
        Parser {
            lines,
            fast_txs: vec![Tx::NONE; FAST_ROWS].into_boxed_slice(),
            fast_starts: vec![0; FAST_ROWS + 1].into_boxed_slice(),
            fast_pause: 0,
            fast_misses: 0,
            fields: None,
            columns: self.columns,
            seen_first: self.seen_first,
            warnings: Vec::new(),
        }
    }
}

impl<R: Read> Parser<R> {
    /// A parser over the whole of `src`, from its start (the benches' and
    /// tests' shorthand for `ParserBuilder::default().build(src)`).
    #[cfg(any(test, feature = "bench"))]
    pub fn new(src: R) -> Self {
        ParserBuilder::default().build(src)
    }

    /// Warnings about the header found so far (once each).
    pub fn take_warnings(&mut self) -> Vec<String> {
        std::mem::take(&mut self.warnings)
    }

    /// Lines read so far (blank ones and the header included).
    pub fn lines_read(&self) -> u64 {
        self.lines.number
    }

    /// The columns, and whether the first non-blank line was seen.
    pub fn header_state(&self) -> (Columns, bool) {
        (self.columns, self.seen_first)
    }

    /// Where the parser stands: right after the last row (or skipped line)
    /// it handed out.
    pub fn state(&self) -> ParserState {
        ParserState {
            at: self.lines.position(),
            columns: self.columns,
            seen_first: self.seen_first,
        }
    }

    /// Up to [`FAST_ROWS`] rows read by the fast path, from the next line
    /// on: none when the next line is not a common one (then
    /// [`Self::next_row`] reads it), or before the first line was read, or
    /// when the header named the columns in another order.
    pub fn fast_rows(&mut self) -> Result<FastRows<'_>, InputError> {
        if !(self.seen_first && self.columns == Columns::POSITIONAL && self.lines.started())
            || self.fast_pause > 0
        {
            return Ok(FastRows::EMPTY);
        }
        let first_line = self.lines.lines_handed_out() + 1;
        let (buf, at) = self.lines.pending(WINDOW)?;
        let (at, rows) = read_lines(buf, at, &mut self.fast_txs, &mut self.fast_starts);
        self.fast_starts[rows] = at as u32;
        if rows == 0 {
            self.fast_misses = (self.fast_misses * 2 + 1).min(FAST_PAUSE_MAX);
            self.fast_pause = self.fast_misses;
        } else {
            self.fast_misses = 0;
        }
        self.lines.consume(at, rows as u64);
        Ok(FastRows {
            first_line,
            txs: &self.fast_txs[..rows],
            starts: &self.fast_starts[..=rows],
            buf: self.lines.buffer(),
        })
    }

    /// The next row, skipping blank lines and the header.
    pub fn next_row(&mut self) -> Result<Option<Row<'_>>, InputError> {
        self.fast_pause = self.fast_pause.saturating_sub(1);
        let (line, parsed) = loop {
            let Some(line) = self.lines.next_line()? else {
                return Ok(None);
            };
            let raw = self.lines.bytes(&line);
            if line.too_long {
                self.seen_first = true;
                break (line, Err(Malformed::LineTooLong));
            }
            // After the first line, with the columns in SPEC order (no
            // header, or one naming them in that order), try the fast path.
            if self.seen_first && self.columns == Columns::POSITIONAL {
                if let Some(tx) = plain_record(raw) {
                    break (line, Ok(tx));
                }
            }
            if is_blank_line(raw) {
                continue;
            }
            let splitter = self.fields.get_or_insert_with(FieldSplitter::default);
            let fields = match splitter.split(raw) {
                Ok(fields) => fields,
                Err(reason) => {
                    self.seen_first = true;
                    break (line, Err(reason));
                }
            };
            if !self.seen_first {
                self.seen_first = true;
                let header = Columns::from_header(&fields);
                if let Some(columns) = header {
                    self.columns = columns.map_err(|reason| InputError::BadHeader {
                        line: line.number,
                        reason,
                    })?;
                    self.warnings = header_warnings(&fields, Some(&self.columns), line.number);
                    continue;
                }
                self.warnings = header_warnings(&fields, None, line.number);
            }
            break (line, record(&fields, &self.columns));
        };
        Ok(Some(Row {
            line: line.number,
            raw: self.lines.bytes(&line),
            parsed,
        }))
    }
}

impl Parser<io::Empty> {
    /// Bytes of the block consumed: everything before the next line.
    pub fn consumed(&self) -> usize {
        self.lines.start
    }

    /// The block's buffer back, for reuse.
    pub fn into_buf(self) -> Box<[u8]> {
        self.lines.into_buf()
    }
}

#[cfg(feature = "cluster")]
/// Where the input's first non-blank line ends (the bytes up to and
/// including its line end; the input's length when every line is blank),
/// and the columns it names when it is a valid header (positional
/// otherwise: a bad header is reported by the parser that reads it). Reads
/// only as far as that line.
pub fn first_line_end(src: impl Read) -> Result<(u64, Columns), InputError> {
    let mut lines = LineReader::new(src, true, false);
    let mut fields = FieldSplitter::default();
    loop {
        let Some(line) = lines.next_line()? else {
            return Ok((lines.position().offset, Columns::POSITIONAL));
        };
        let raw = lines.bytes(&line);
        if !line.too_long && is_blank_line(raw) {
            continue;
        }
        let columns = match (line.too_long, fields.split(raw)) {
            (false, Ok(fields)) => match Columns::from_header(&fields) {
                Some(Ok(columns)) => columns,
                _ => Columns::POSITIONAL,
            },
            _ => Columns::POSITIONAL,
        };
        return Ok((lines.position().offset, columns));
    }
}

/// A stream of rows with positions to checkpoint at: the single-threaded
/// [`Parser`], or the parallel block parser of the pipeline, which hands
/// out exactly the same rows, positions and warnings.
/// A block's rows, handed out whole (see [`RowSource::next_block`]).
pub struct SplitBlock<'a> {
    pub parts: Parts,
    /// The malformed rows, in order.
    pub malformed: Vec<Row<'a>>,
    /// The line number of its last row.
    pub last_line: u64,
}

pub trait RowSource {
    /// Rows read by a fast path, if the source has one and the next lines
    /// suit it; else none, and [`RowSource::next_row`] reads the next line.
    fn fast_rows(&mut self) -> Result<FastRows<'_>, InputError> {
        Ok(FastRows::EMPTY)
    }
    /// The next row, skipping blank lines and the header.
    fn next_row(&mut self) -> Result<Option<Row<'_>>, InputError>;
    /// The next block's rows whole, if the source has split them for the
    /// workers already and no row of the block was handed out yet: its
    /// well-formed records split ([`Parts`]) and its malformed rows, in
    /// order. None otherwise (and, when `strict`, for a block with a
    /// malformed row): then [`RowSource::fast_rows`] and
    /// [`RowSource::next_row`] hand out its rows.
    fn next_block(&mut self, _strict: bool) -> Result<Option<SplitBlock<'_>>, InputError> {
        Ok(None)
    }
    /// Where the source stands: right after the last row handed out.
    fn state(&self) -> ParserState;
    /// Warnings about the header found so far (once each).
    fn take_warnings(&mut self) -> Vec<String>;
}

impl<R: Read> RowSource for Parser<R> {
    #[inline]
    fn fast_rows(&mut self) -> Result<FastRows<'_>, InputError> {
        Parser::fast_rows(self)
    }

    #[inline]
    fn next_row(&mut self) -> Result<Option<Row<'_>>, InputError> {
        Parser::next_row(self)
    }

    fn state(&self) -> ParserState {
        Parser::state(self)
    }

    fn take_warnings(&mut self) -> Vec<String> {
        Parser::take_warnings(self)
    }
}
