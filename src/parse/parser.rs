//! The parser: lines, header, fields and values together, one row at a
//! time, with a state a resumed run can go on from.

use std::io::{self, Read};

use super::error::{InputError, Malformed};
use super::fields::{is_blank_line, FieldSplitter};
use super::lines::{LineReader, Position};
use super::record::{header_warnings, plain_record, record, Columns};
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

/// The whole input side: lines, header, fields, values.
pub struct Parser<R> {
    lines: LineReader<R>,
    fields: FieldSplitter,
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

impl<R: Read> Parser<R> {
    pub fn new(src: R) -> Self {
        Parser {
            lines: LineReader::new(src),
            fields: FieldSplitter::default(),
            columns: Columns::POSITIONAL,
            seen_first: false,
            warnings: Vec::new(),
        }
    }

    /// Warnings about the header found so far (once each).
    pub fn take_warnings(&mut self) -> Vec<String> {
        std::mem::take(&mut self.warnings)
    }

    /// A parser that also hashes what it consumes, so that its
    /// [`checkpoint`](Parser::checkpoint) can later be resumed from.
    pub fn hashing(src: R) -> Self {
        Parser {
            lines: LineReader::hashing(src),
            fields: FieldSplitter::default(),
            columns: Columns::POSITIONAL,
            seen_first: false,
            warnings: Vec::new(),
        }
    }

    #[cfg(feature = "cluster")]
    /// A parser over the lines of a range of the input that starts at a
    /// line start (`src` reads the range only), going on from what the
    /// lines before it settled: the columns, and whether the first non-blank
    /// line was seen. Lines are numbered from 1.
    pub fn within(src: R, at_input_start: bool, columns: Columns, seen_first: bool) -> Self {
        Parser {
            lines: LineReader::from_line_start(src, at_input_start),
            fields: FieldSplitter::default(),
            columns,
            seen_first,
            warnings: Vec::new(),
        }
    }

    /// Lines read so far (blank ones and the header included).
    pub fn lines_read(&self) -> u64 {
        self.lines.number
    }

    /// The columns, and whether the first non-blank line was seen.
    pub fn header_state(&self) -> (Columns, bool) {
        (self.columns, self.seen_first)
    }

    /// A parser that goes on from `at` over the same input, `src` read from
    /// its start (its prefix is checked against the checkpoint's hash).
    pub fn resume(src: R, at: &ParserState) -> Result<Self, InputError> {
        Ok(Parser {
            lines: LineReader::resume(src, &at.at)?,
            fields: FieldSplitter::default(),
            columns: at.columns,
            seen_first: at.seen_first,
            warnings: Vec::new(),
        })
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

    /// The next row, skipping blank lines and the header.
    pub fn next_row(&mut self) -> Result<Option<Row<'_>>, InputError> {
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
            let fields = match self.fields.split(raw) {
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
    /// A parser over one block of whole lines (see
    /// [`LineReader::over_block`]) that starts from what the lines before
    /// the block settled: the columns, and whether the first non-blank line
    /// was seen.
    pub fn for_block(
        buf: Box<[u8]>,
        len: usize,
        at_input_start: bool,
        columns: Columns,
        seen_first: bool,
    ) -> Self {
        Parser {
            lines: LineReader::over_block(buf, len, at_input_start),
            fields: FieldSplitter::default(),
            columns,
            seen_first,
            warnings: Vec::new(),
        }
    }

    /// Bytes of the block consumed: everything before the next line.
    pub fn consumed(&self) -> usize {
        self.lines.start
    }

    /// The block's buffer back, for reuse.
    pub fn into_buf(self) -> Box<[u8]> {
        self.lines.buf
    }
}

#[cfg(feature = "cluster")]
/// Where the input's first non-blank line ends (the bytes up to and
/// including its line end; the input's length when every line is blank),
/// and the columns it names when it is a valid header (positional
/// otherwise: a bad header is reported by the parser that reads it). Reads
/// only as far as that line.
pub fn first_line_end(src: impl Read) -> Result<(u64, Columns), InputError> {
    let mut lines = LineReader::new(src);
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
pub trait RowSource {
    /// The next row, skipping blank lines and the header.
    fn next_row(&mut self) -> Result<Option<Row<'_>>, InputError>;
    /// Where the source stands: right after the last row handed out.
    fn state(&self) -> ParserState;
    /// Warnings about the header found so far (once each).
    fn take_warnings(&mut self) -> Vec<String>;
}

impl<R: Read> RowSource for Parser<R> {
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
