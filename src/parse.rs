//! Bytes in, transactions or malformed-record reasons out. No threads.
//!
//! # Why lines first, then csv-core
//!
//! SPEC makes one line one record: no field spans lines, so a stray quote can
//! never swallow the rest of the file, and a line over 4096 bytes is malformed
//! without costing memory. csv-core on its own would let a quoted field run
//! across newlines and would treat a lone CR as a record end. So the work is
//! split in two:
//!
//! 1. [`LineReader`] reads the input in large blocks, finds line ends with
//!    `memchr`, strips the CR of a CRLF, strips a BOM at the very start, and
//!    hands out each line as a slice of its block with its physical line
//!    number. A line longer than [`MAX_LINE`] is skipped through to its end
//!    (only its first 4096 bytes are kept, for the rejects file).
//! 2. [`FieldSplitter`] gives one line at a time to a csv-core reader whose
//!    terminator is `\n` (so a CR inside a line is an ordinary byte). csv-core
//!    is allocation-free but not zero-copy: it copies the unescaped field bytes
//!    into a buffer owned here, sized once for the longest legal line.
//!
//! csv-core sees only lines with a quote. Two fast paths come first, each
//! checked against the slower one by a proptest: a quote-free line is split
//! at its commas in place (`FieldSplitter::split_plain`), and before that, a
//! plain line with the columns in SPEC order is read in a single pass
//! (`plain_record`): every row of a typical file takes that one.
//!
//! # Quotes
//!
//! SPEC: trim each field of spaces and tabs, then remove wrapping quotes
//! (`""` inside stands for one quote). csv-core only treats a quote as opening
//! a quoted field at the very start of a field, so for the rare line that
//! contains a `"`, blanks between a field's start and its opening quote are
//! dropped first (in a line-sized scratch buffer): ` "a,b" ` is then one field
//! `a,b`, as SPEC reads it. A line with an odd number of quotes, or one that
//! ends inside a quoted field, is malformed (`unbalanced quote`).
//!
//! Nothing here allocates per record: every buffer is sized at start-up.

use std::io::{self, Read};

use xxhash_rust::xxh3::Xxh3;

use crate::amount::{Amount, AmountError, FRACTION_DIGITS, SCALE};
use crate::tx::{Kind, Tx};

/// The longest legal line, line end excluded.
pub const MAX_LINE: usize = 4096;
/// Bytes requested from the input per read.
pub const BLOCK: usize = 256 * 1024;

/// Why a record was malformed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(serde::Serialize, serde::Deserialize))]
pub enum Malformed {
    LineTooLong,
    UnbalancedQuote,
    TooManyFields,
    TooFewFields,
    BadType,
    BadClient,
    BadTx,
    BadAmount(AmountError),
}

impl Malformed {
    /// How many distinct [`Malformed::code`]s there are.
    pub const COUNT: usize = 12;

    /// Every code, indexed by [`Malformed::index`].
    pub const CODES: [&'static str; Malformed::COUNT] = [
        "line_too_long",
        "unbalanced_quote",
        "too_many_fields",
        "too_few_fields",
        "bad_type",
        "bad_client",
        "bad_tx",
        "amount_missing",
        "amount_syntax",
        "amount_too_precise",
        "amount_out_of_range",
        "amount_zero",
    ];

    /// The reason's place in [`Malformed::CODES`].
    pub fn index(self) -> usize {
        match self {
            Malformed::LineTooLong => 0,
            Malformed::UnbalancedQuote => 1,
            Malformed::TooManyFields => 2,
            Malformed::TooFewFields => 3,
            Malformed::BadType => 4,
            Malformed::BadClient => 5,
            Malformed::BadTx => 6,
            Malformed::BadAmount(AmountError::Empty) => 7,
            Malformed::BadAmount(AmountError::Syntax) => 8,
            Malformed::BadAmount(AmountError::TooPrecise) => 9,
            Malformed::BadAmount(AmountError::OutOfRange) => 10,
            Malformed::BadAmount(AmountError::Zero) => 11,
        }
    }

    /// A short code for summaries (`bad_tx`, `amount_zero`, ...).
    pub fn code(self) -> &'static str {
        Malformed::CODES[self.index()]
    }

    /// A short explanation, for stderr and the rejects file.
    pub fn describe(self) -> &'static str {
        match self {
            Malformed::LineTooLong => "line longer than 4096 bytes",
            Malformed::UnbalancedQuote => "unbalanced quote",
            Malformed::TooManyFields => "more fields than the header (or than 4 without one)",
            Malformed::TooFewFields => "too few fields for its type",
            Malformed::BadType => "type is not deposit, withdrawal, dispute, resolve or chargeback",
            Malformed::BadClient => "client is not an integer in 0..=65535",
            Malformed::BadTx => "tx is not an integer in 0..=4294967295",
            Malformed::BadAmount(error) => error.describe(),
        }
    }
}

impl std::fmt::Display for Malformed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.describe())
    }
}

/// No `source`: a bad amount's reason is already the whole message.
impl std::error::Error for Malformed {}

/// A fatal input error: the run cannot go on.
#[derive(Debug)]
pub enum InputError {
    /// Reading failed; the I/O error is the [`source`](std::error::Error::source).
    Io(io::Error),
    /// The header lacks a required column or names one twice.
    BadHeader { line: u64, reason: String },
    /// A resumed input's first `offset` bytes are not the ones the
    /// checkpoint was taken on.
    NotTheCheckpointedInput { offset: u64 },
}

impl std::fmt::Display for InputError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            // One context per layer: the I/O error's own text comes from
            // `source`, so a chain prints it once.
            InputError::Io(_) => f.write_str("reading input"),
            InputError::BadHeader { line, reason } => {
                write!(f, "line {line}: bad header: {reason}")
            }
            InputError::NotTheCheckpointedInput { offset } => write!(
                f,
                "the input is not the one the checkpoint was taken on: \
                 its first {offset} bytes differ, or it is shorter"
            ),
        }
    }
}

impl std::error::Error for InputError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            InputError::Io(error) => Some(error),
            InputError::BadHeader { .. } | InputError::NotTheCheckpointedInput { .. } => None,
        }
    }
}

impl From<io::Error> for InputError {
    fn from(error: io::Error) -> Self {
        InputError::Io(error)
    }
}

/// Reads the first `at.offset` bytes of `src` and checks that they hash to
/// `at.prefix_hash` (the input is the one the position was taken on); the
/// hasher, to go on hashing from there.
pub fn skip_prefix(src: &mut impl Read, at: &Position) -> Result<Box<Xxh3>, InputError> {
    let mut hasher = Box::new(Xxh3::new());
    let mut buf = vec![0u8; BLOCK];
    let mut left = at.offset;
    while left > 0 {
        let want = left.min(buf.len() as u64) as usize;
        let n = match src.read(&mut buf[..want]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(InputError::Io(e)),
        };
        hasher.update(&buf[..n]);
        left -= n as u64;
    }
    if left > 0 || hasher.digest128() != at.prefix_hash {
        return Err(InputError::NotTheCheckpointedInput { offset: at.offset });
    }
    Ok(hasher)
}

/// One physical line, as a place in the [`LineReader`]'s buffers; read its
/// bytes with [`LineReader::bytes`] (valid until the next line is read).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Line {
    /// Physical line number, from 1.
    pub number: u64,
    /// True when the line was longer than [`MAX_LINE`]: its bytes are then
    /// its first [`MAX_LINE`] bytes only.
    pub too_long: bool,
    start: usize,
    len: usize,
    /// The bytes sit in the long-line prefix buffer, not the block buffer.
    in_prefix: bool,
}

/// Splits a byte stream into lines, reading in [`BLOCK`]-sized reads.
pub struct LineReader<R> {
    src: R,
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    eof: bool,
    started: bool,
    number: u64,
    /// The first [`MAX_LINE`] bytes of the over-long line being skipped.
    long_prefix: Box<[u8]>,
    /// Bytes consumed and dropped from the front of `buf` so far.
    dropped: u64,
    /// A hash of the bytes consumed, when checkpoints need one: everything
    /// before `buf[hashed]` is in it.
    hasher: Option<Box<Xxh3>>,
    hashed: usize,
}

/// Where a reader stands at a record boundary: what a checkpoint records to
/// continue from, and what a resumed reader checks its input against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Position {
    /// Bytes of the input consumed: everything before the next line.
    pub offset: u64,
    /// Physical lines read (the next line's number is one more).
    pub line: u64,
    /// xxh3-128 of the `offset` bytes consumed (0 when not hashing).
    pub prefix_hash: u128,
}

impl<R: Read> LineReader<R> {
    pub fn new(src: R) -> Self {
        LineReader {
            src,
            buf: vec![0u8; BLOCK + MAX_LINE + 2].into(),
            start: 0,
            end: 0,
            eof: false,
            started: false,
            number: 0,
            long_prefix: vec![0u8; MAX_LINE].into(),
            dropped: 0,
            hasher: None,
            hashed: 0,
        }
    }

    /// A reader that starts at the start of a line of the input, in the
    /// middle of it when `at_input_start` is false (no BOM is looked for
    /// there). Lines are numbered from 1.
    pub fn from_line_start(src: R, at_input_start: bool) -> Self {
        LineReader {
            started: !at_input_start,
            ..LineReader::new(src)
        }
    }

    /// A reader that also hashes what it consumes, for [`Self::position`].
    pub fn hashing(src: R) -> Self {
        LineReader {
            hasher: Some(Box::new(Xxh3::new())),
            ..LineReader::new(src)
        }
    }

    /// A hashing reader that continues at `at`: it reads the first
    /// `at.offset` bytes of `src` and checks they hash to `at.prefix_hash`
    /// (the input is the one the position was taken on), then numbers lines
    /// from `at.line + 1`.
    pub fn resume(mut src: R, at: &Position) -> Result<Self, InputError> {
        let hasher = skip_prefix(&mut src, at)?;
        let mut reader = LineReader::new(src);
        reader.hasher = Some(hasher);
        // Nothing read yet: the BOM check is still to come.
        reader.started = at.offset > 0 || at.line > 0;
        reader.number = at.line;
        reader.dropped = at.offset;
        Ok(reader)
    }

    /// Where the reader stands: right after the last line it handed out.
    pub fn position(&self) -> Position {
        let prefix_hash = self.hasher.as_ref().map_or(0, |hasher| {
            let mut hasher = hasher.clone();
            hasher.update(&self.buf[self.hashed..self.start]);
            hasher.digest128()
        });
        Position {
            offset: self.dropped + self.start as u64,
            line: self.number,
            prefix_hash,
        }
    }

    /// Moves the unread tail to the front and reads more. Returns false at EOF.
    fn refill(&mut self) -> io::Result<bool> {
        if let Some(hasher) = &mut self.hasher {
            hasher.update(&self.buf[self.hashed..self.start]);
        }
        self.hashed = 0;
        self.dropped += self.start as u64;
        self.buf.copy_within(self.start..self.end, 0);
        self.end -= self.start;
        self.start = 0;
        loop {
            match self.src.read(&mut self.buf[self.end..]) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(false);
                }
                Ok(n) => {
                    self.end += n;
                    return Ok(true);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// The bytes of `line` (line end excluded, cut at [`MAX_LINE`]).
    pub fn bytes(&self, line: &Line) -> &[u8] {
        let buf = if line.in_prefix {
            &self.long_prefix
        } else {
            &self.buf
        };
        &buf[line.start..line.start + line.len]
    }

    fn line(&mut self, start: usize, mut len: usize) -> Line {
        self.number += 1;
        let too_long = len > MAX_LINE;
        len = len.min(MAX_LINE);
        Line {
            number: self.number,
            too_long,
            start,
            len,
            in_prefix: false,
        }
    }

    /// The next line, or `None` at the end of the input.
    pub fn next_line(&mut self) -> io::Result<Option<Line>> {
        if !self.started {
            self.started = true;
            // A BOM may arrive split across reads: gather 3 bytes first.
            while self.end < 3 && self.refill()? {}
            if self.buf[..self.end].starts_with(b"\xEF\xBB\xBF") {
                self.start = 3;
            }
        }
        loop {
            let pending = &self.buf[self.start..self.end];
            if let Some(pos) = memchr::memchr(b'\n', pending) {
                let line_start = self.start;
                self.start += pos + 1;
                let crlf = pos > 0 && self.buf[line_start + pos - 1] == b'\r';
                return Ok(Some(self.line(line_start, pos - usize::from(crlf))));
            }
            if self.eof {
                if pending.is_empty() {
                    return Ok(None);
                }
                // The last line, without a line end: a final CR is data.
                let line_start = self.start;
                self.start = self.end;
                return Ok(Some(self.line(line_start, pending.len())));
            }
            // No line end yet. More than MAX_LINE + 1 pending bytes (the +1
            // for a CR that may precede the LF) cannot be a legal line.
            if pending.len() > MAX_LINE + 1 {
                return self.skip_long_line().map(Some);
            }
            self.refill()?;
        }
    }

    /// Skips the rest of an over-long line without buffering it.
    fn skip_long_line(&mut self) -> io::Result<Line> {
        self.long_prefix
            .copy_from_slice(&self.buf[self.start..self.start + MAX_LINE]);
        self.start = self.end;
        loop {
            if !self.refill()? {
                break;
            }
            if let Some(pos) = memchr::memchr(b'\n', &self.buf[self.start..self.end]) {
                self.start += pos + 1;
                break;
            }
            self.start = self.end;
        }
        let mut line = self.line(0, MAX_LINE + 1);
        line.in_prefix = true;
        Ok(line)
    }
}

impl LineReader<io::Empty> {
    /// A reader over one block of whole lines, `buf[..len]`, already in
    /// memory: nothing is read or copied, the lines are slices of `buf`, and
    /// the last line of the block needs no line end. Only the block at the
    /// very start of the input looks for a BOM. Lines are numbered from 1.
    pub fn over_block(buf: Box<[u8]>, len: usize, at_input_start: bool) -> Self {
        assert!(
            len <= buf.len(),
            "a block of {len} bytes in a {}-byte buffer",
            buf.len()
        );
        LineReader {
            src: io::empty(),
            buf,
            start: 0,
            end: len,
            eof: true,
            started: !at_input_start,
            number: 0,
            long_prefix: Box::default(),
            dropped: 0,
            hasher: None,
            hashed: 0,
        }
    }
}

/// Splits one line into trimmed, unquoted fields.
///
/// A line holding a `"` goes through csv-core. A line without one, nearly
/// every line, is split by hand at its commas, without copying: with no quote
/// in it csv-core would split at every comma and copy every other byte, so the
/// fields are the same, and `plain_lines_split_exactly_as_csv_core_does`
/// checks it. Written by hand because it measured 1.3x faster for whole-row
/// parsing (perf.md, "quote-free fast path").
pub struct FieldSplitter {
    reader: csv_core::Reader,
    /// The line with blanks before opening quotes dropped, plus its `\n`.
    scratch: Box<[u8]>,
    /// csv-core's unescaped field bytes.
    out: Box<[u8]>,
    /// csv-core's field end offsets into `out`.
    ends: Box<[usize]>,
    /// `(start, end)` of each field, into the line or into `out`.
    spans: Box<[(u32, u32)]>,
}

/// The fields of one line, trimmed of spaces and tabs on access.
pub struct Fields<'a> {
    bytes: &'a [u8],
    spans: &'a [(u32, u32)],
}

impl<'a> Fields<'a> {
    /// Number of fields.
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// True when there is no field (never, for a split line).
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// Field `i`, trimmed of spaces and tabs. Panics if `i >= len()`.
    #[inline]
    pub fn get(&self, i: usize) -> &'a [u8] {
        let (start, end) = self.spans[i];
        trim(&self.bytes[start as usize..end as usize])
    }
}

impl Default for FieldSplitter {
    fn default() -> Self {
        let mut splitter = FieldSplitter {
            reader: Self::fresh_reader(),
            scratch: vec![0u8; MAX_LINE + 1].into(),
            out: vec![0u8; MAX_LINE + 1].into(),
            ends: vec![0usize; MAX_LINE + 1].into(),
            spans: vec![(0, 0); MAX_LINE + 1].into(),
        };
        splitter.prime();
        splitter
    }
}

#[inline]
fn is_blank(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

#[inline]
fn trim(mut field: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = field {
        if !is_blank(*first) {
            break;
        }
        field = rest;
    }
    while let [rest @ .., last] = field {
        if !is_blank(*last) {
            break;
        }
        field = rest;
    }
    field
}

/// True for a line whose every field is empty after trimming (SPEC: skipped).
pub fn is_blank_line(line: &[u8]) -> bool {
    line.iter().all(|&b| is_blank(b) || b == b',')
}

impl FieldSplitter {
    fn fresh_reader() -> csv_core::Reader {
        csv_core::ReaderBuilder::new()
            .terminator(csv_core::Terminator::Any(b'\n'))
            .build()
    }

    /// csv-core strips a BOM from its very first input; the BOM rule is
    /// handled by [`LineReader`], so spend that first read on an empty line.
    fn prime(&mut self) {
        let (result, ..) = self
            .reader
            .read_record(b"\n", &mut self.out, &mut self.ends);
        debug_assert_eq!(result, csv_core::ReadRecordResult::InputEmpty);
    }

    /// Splits `line`: at most [`MAX_LINE`] bytes, no line end, not empty
    /// (blank lines never reach the splitter; csv-core would skip an empty one).
    pub fn split<'a>(&'a mut self, line: &'a [u8]) -> Result<Fields<'a>, Malformed> {
        debug_assert!(!line.is_empty() && line.len() <= MAX_LINE);
        if let Some(count) = self.split_plain(line) {
            return Ok(Fields {
                bytes: line,
                spans: &self.spans[..count],
            });
        }
        if memchr::memchr_iter(b'"', line).count() % 2 == 1 {
            return Err(Malformed::UnbalancedQuote);
        }
        self.split_csv_core(line)
    }

    /// The fast path: fields are the spans between commas of `line` itself.
    /// Returns the field count, or `None` at the first quote (the line is
    /// then csv-core's), so one pass both splits and looks for quotes.
    fn split_plain(&mut self, line: &[u8]) -> Option<usize> {
        let (mut count, mut start) = (0, 0);
        for (i, &b) in line.iter().enumerate() {
            if b == b',' {
                self.spans[count] = (start, i as u32);
                count += 1;
                start = i as u32 + 1;
            } else if b == b'"' {
                return None;
            }
        }
        self.spans[count] = (start, line.len() as u32);
        Some(count + 1)
    }

    /// csv-core over the line, after dropping blanks before opening quotes.
    fn split_csv_core(&mut self, line: &[u8]) -> Result<Fields<'_>, Malformed> {
        let len = drop_blanks_before_quotes(line, &mut self.scratch);
        // With its `\n`, csv-core finishes the record in one call.
        self.scratch[len] = b'\n';
        let input = &self.scratch[..=len];
        let (result, nin, _, count) = self
            .reader
            .read_record(input, &mut self.out, &mut self.ends);
        debug_assert_eq!(nin, input.len());
        if result != csv_core::ReadRecordResult::Record {
            // The line ended inside a quoted field: csv-core took the `\n`
            // as data and waits for more. Start afresh for the next line.
            self.reader = Self::fresh_reader();
            self.prime();
            return Err(Malformed::UnbalancedQuote);
        }
        let mut start = 0;
        for (span, &end) in self.spans.iter_mut().zip(&self.ends[..count]) {
            *span = (start, end as u32);
            start = end as u32;
        }
        Ok(Fields {
            bytes: &self.out,
            spans: &self.spans[..count],
        })
    }
}

/// Copies `line` to `out`, dropping blanks that sit between the start of a
/// field and its opening quote, so csv-core sees the quote at field start.
/// Mirrors csv-core's own states for where a field starts. Returns the length.
fn drop_blanks_before_quotes(line: &[u8], out: &mut [u8]) -> usize {
    #[derive(PartialEq)]
    enum State {
        StartField,
        InField,
        InQuoted,
        QuoteInQuoted,
    }
    let mut state = State::StartField;
    let mut len = 0;
    let mut blanks = 0; // blanks seen at the start of the current field
    for &b in line {
        match state {
            State::StartField if is_blank(b) => {
                blanks += 1;
                continue;
            }
            State::StartField if b == b'"' => {
                blanks = 0;
                state = State::InQuoted;
            }
            State::StartField | State::QuoteInQuoted if b == b',' => state = State::StartField,
            State::StartField => state = State::InField,
            State::InField if b == b',' => state = State::StartField,
            State::InField => {}
            State::InQuoted if b == b'"' => state = State::QuoteInQuoted,
            State::InQuoted => {}
            State::QuoteInQuoted if b == b'"' => state = State::InQuoted,
            State::QuoteInQuoted => state = State::InField,
        }
        for _ in 0..std::mem::take(&mut blanks) {
            out[len] = b' ';
            len += 1;
        }
        out[len] = b;
        len += 1;
    }
    // Trailing blanks of an empty last field: keep them (they trim away).
    for _ in 0..blanks {
        out[len] = b' ';
        len += 1;
    }
    len
}

/// Where each column sits in a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Columns {
    pub kind: usize,
    pub client: usize,
    pub tx: usize,
    pub amount: Option<usize>,
    /// Fields in the header (4 without one); a record with more is malformed.
    pub width: usize,
}

impl Columns {
    /// No header: `type,client,tx,amount`.
    pub const POSITIONAL: Columns = Columns {
        kind: 0,
        client: 1,
        tx: 2,
        amount: Some(3),
        width: 4,
    };

    /// Maps a header by name (ASCII case-insensitive, any order, other
    /// columns ignored). `None` if no field is `type`: then it is no header.
    fn from_header(fields: &Fields<'_>) -> Option<Result<Columns, String>> {
        let names: Vec<&[u8]> = (0..fields.len()).map(|i| fields.get(i)).collect();
        if !names.iter().any(|name| name.eq_ignore_ascii_case(b"type")) {
            return None;
        }
        let find = |wanted: &str| -> Result<Option<usize>, String> {
            let mut hits = names
                .iter()
                .enumerate()
                .filter(|(_, name)| name.eq_ignore_ascii_case(wanted.as_bytes()));
            let first = hits.next().map(|(i, _)| i);
            if hits.next().is_some() {
                return Err(format!("column `{wanted}` appears more than once"));
            }
            Ok(first)
        };
        let required = |wanted: &str| -> Result<usize, String> {
            find(wanted)?.ok_or_else(|| match near_miss(&names, wanted) {
                Some(typo) => {
                    format!("missing column `{wanted}` (is `{typo}` meant to be `{wanted}`?)")
                }
                None => format!("missing column `{wanted}`"),
            })
        };
        Some((|| {
            Ok(Columns {
                kind: required("type")?,
                client: required("client")?,
                tx: required("tx")?,
                amount: find("amount")?,
                width: names.len(),
            })
        })())
    }
}

/// A name among `names` within a couple of edits of `wanted` but not it:
/// probably a typo of it (`amout`, `clinet`, `Typ`).
fn near_miss(names: &[&[u8]], wanted: &str) -> Option<String> {
    let limit = if wanted.len() <= 2 { 1 } else { 2 };
    names.iter().find_map(|name| {
        let name = String::from_utf8_lossy(name).to_ascii_lowercase();
        let close =
            !name.is_empty() && name != wanted && strsim::levenshtein(&name, wanted) <= limit;
        close.then_some(name)
    })
}

/// What the header (or a first line that looks like a misspelt one) says
/// that will cost the run: one line each, for the user before the run.
fn header_warnings(fields: &Fields<'_>, columns: Option<&Columns>, line: u64) -> Vec<String> {
    let names: Vec<&[u8]> = (0..fields.len()).map(|i| fields.get(i)).collect();
    match columns {
        Some(columns) if columns.amount.is_none() => vec![match near_miss(&names, "amount") {
            Some(typo) => format!(
                "line {line}: header column `{typo}` looks like `amount`, which is missing: \
                 every deposit and withdrawal will be malformed"
            ),
            None => format!(
                "line {line}: the header has no `amount` column: every deposit and withdrawal \
                 will be malformed"
            ),
        }],
        Some(_) => Vec::new(),
        None => near_miss(&names, "type")
            .map(|typo| {
                format!(
                    "line {line} looks like a header with `{typo}` for `type`; without a `type` \
                     column it is read as a record"
                )
            })
            .into_iter()
            .collect(),
    }
}

/// Parses an unsigned decimal integer (digits only, leading zeros allowed).
fn parse_uint(field: &[u8], max: u64) -> Option<u64> {
    if field.is_empty() {
        return None;
    }
    let mut value: u64 = 0;
    for &b in field {
        if !b.is_ascii_digit() {
            return None;
        }
        value = value * 10 + u64::from(b - b'0');
        if value > max {
            return None;
        }
    }
    Some(value)
}

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
pub struct Checkpoint {
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
    pub fn resume(src: R, at: &Checkpoint) -> Result<Self, InputError> {
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
    pub fn checkpoint(&self) -> Checkpoint {
        Checkpoint {
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
    fn checkpoint(&self) -> Checkpoint;
    /// Warnings about the header found so far (once each).
    fn take_warnings(&mut self) -> Vec<String>;
}

impl<R: Read> RowSource for Parser<R> {
    #[inline]
    fn next_row(&mut self) -> Result<Option<Row<'_>>, InputError> {
        Parser::next_row(self)
    }

    fn checkpoint(&self) -> Checkpoint {
        Parser::checkpoint(self)
    }

    fn take_warnings(&mut self) -> Vec<String> {
        Parser::take_warnings(self)
    }
}

/// The one-pass fast path for the common line: no quotes, the columns in
/// SPEC order, a lowercase type, plain numbers. It returns `None` for
/// anything else, and the general path (split, trim, [`record`]) decides;
/// where it returns a record, the general path returns the same one (a
/// proptest checks this). One pass instead of a split, a trim per field and a
/// parse per field: `parse/rows` 61.7 -> 41.4 ms per million rows (perf.md,
/// step 10). Its digit loops repeat what `parse_uint` and [`Amount::parse`]
/// do, by hand: taking each field's span and calling those two measured
/// 50-52 ms (the values are read while scanning, not in a second pass).
#[inline]
fn plain_record(line: &[u8]) -> Option<Tx> {
    let mut at = Cursor { line, i: 0 };
    at.blanks();
    let kind = at.kind()?;
    at.separator()?;
    let client = at.uint(5).filter(|&v| v <= u64::from(u16::MAX))? as u16;
    at.separator()?;
    let tx = at.uint(10).filter(|&v| v <= u64::from(u32::MAX))? as u32;
    at.blanks();
    let amount = if kind.claims_id() {
        at.separator()?;
        let amount = at.amount()?;
        at.blanks();
        amount
    } else {
        // An amount field on a dispute, resolve or chargeback is ignored.
        if at.i < line.len() {
            at.byte(b',')?;
            if line[at.i..].iter().any(|&b| b == b',' || b == b'"') {
                return None;
            }
            at.i = line.len();
        }
        Amount::ZERO
    };
    (at.i == line.len()).then_some(Tx {
        kind,
        client,
        tx,
        amount,
    })
}

/// A read position in a line, for [`plain_record`].
struct Cursor<'a> {
    line: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    #[inline]
    fn peek(&self) -> Option<u8> {
        self.line.get(self.i).copied()
    }

    #[inline]
    fn byte(&mut self, wanted: u8) -> Option<()> {
        (self.peek()? == wanted).then(|| self.i += 1)
    }

    #[inline]
    fn blanks(&mut self) {
        while self.peek().is_some_and(is_blank) {
            self.i += 1;
        }
    }

    /// Blanks, a comma, blanks.
    #[inline]
    fn separator(&mut self) -> Option<()> {
        self.blanks();
        self.byte(b',')?;
        self.blanks();
        Some(())
    }

    #[inline]
    fn kind(&mut self) -> Option<Kind> {
        let start = self.i;
        while self.peek().is_some_and(|b| b.is_ascii_lowercase()) {
            self.i += 1;
        }
        match &self.line[start..self.i] {
            b"deposit" => Some(Kind::Deposit),
            b"withdrawal" => Some(Kind::Withdrawal),
            b"dispute" => Some(Kind::Dispute),
            b"resolve" => Some(Kind::Resolve),
            b"chargeback" => Some(Kind::Chargeback),
            _ => None,
        }
    }

    /// 1 to `max_digits` ASCII digits.
    #[inline]
    fn digits(&mut self, max_digits: usize) -> Option<(u64, usize)> {
        let start = self.i;
        let mut value = 0u64;
        while let Some(b) = self.peek().filter(u8::is_ascii_digit) {
            value = value * 10 + u64::from(b - b'0');
            self.i += 1;
            if self.i - start > max_digits {
                return None;
            }
        }
        let count = self.i - start;
        (count > 0).then_some((value, count))
    }

    #[inline]
    fn uint(&mut self, max_digits: usize) -> Option<u64> {
        self.digits(max_digits).map(|(value, _)| value)
    }

    /// `D[.F]`: 1 to 14 integer digits (below [`Amount::MAX`]), 1 to 4
    /// fractional digits, not zero.
    #[inline]
    fn amount(&mut self) -> Option<Amount> {
        let units = self.uint(14)?;
        let mut fraction = 0;
        if self.byte(b'.').is_some() {
            let (digits, count) = self.digits(FRACTION_DIGITS)?;
            fraction = digits * 10u64.pow((FRACTION_DIGITS - count) as u32);
        }
        let raw = units * SCALE as u64 + fraction;
        (raw > 0).then(|| Amount::from_raw(raw as i64))
    }
}

/// Turns split fields into a transaction.
fn record(fields: &Fields<'_>, columns: &Columns) -> Result<Tx, Malformed> {
    let n = fields.len();
    if n > columns.width {
        return Err(Malformed::TooManyFields);
    }
    if columns.kind >= n {
        return Err(Malformed::TooFewFields);
    }
    let kind = Kind::parse(fields.get(columns.kind)).ok_or(Malformed::BadType)?;
    let amount_column = if kind.claims_id() {
        Some(columns.amount.ok_or(Malformed::TooFewFields)?)
    } else {
        None
    };
    if columns.client >= n || columns.tx >= n || amount_column.is_some_and(|i| i >= n) {
        return Err(Malformed::TooFewFields);
    }
    let client =
        parse_uint(fields.get(columns.client), u64::from(u16::MAX)).ok_or(Malformed::BadClient)?;
    let tx = parse_uint(fields.get(columns.tx), u64::from(u32::MAX)).ok_or(Malformed::BadTx)?;
    let amount = match amount_column {
        Some(i) => Amount::parse(fields.get(i)).map_err(Malformed::BadAmount)?,
        None => Amount::ZERO,
    };
    Ok(Tx {
        kind,
        client: client as u16,
        tx: tx as u32,
        amount,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let got =
            rows(b"deposit,1,1,1.0\n\nwithdrawal, 2, 2, 0.5\r\n  ,\t, \ndispute,1,1\n").unwrap();
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
        let got = rows(b"\n  \nAmount , TX,note, Client,TYPE\n1.5,7,hi,3,deposit\n,8,,3,dispute\n")
            .unwrap();
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
        let got = rows(
            b"deposit,1,1,1\r5\ndeposit,1,3,2\r\r\ndeposit,1,4,1\rdeposit,1,5,1\ndeposit,1,3,2\r",
        )
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
        let got = rows(b"deposit,1,1,1,\ndeposit,1,2\ndispute,1,1\ndispute,1,1,\ndispute,1,1,junk\ndispute,1\n").unwrap();
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
        let huge_line = ",".repeat(BLOCK * 3 + 17);
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
        let all = collect(&mut Parser::hashing(Trickle(&input)), usize::MAX);
        assert_eq!(all.len(), 7);
        for k in 0..=all.len() {
            let mut first = Parser::hashing(Trickle(&input));
            assert_eq!(collect(&mut first, k), all[..k]);
            let at = first.checkpoint();
            let mut resumed = Parser::resume(Trickle(&input), &at).unwrap();
            assert_eq!(resumed.checkpoint(), at, "after {k} rows");
            assert_eq!(
                collect(&mut resumed, usize::MAX),
                all[k..],
                "after {k} rows"
            );
        }
        // Another input (one byte differs in the prefix, or it is shorter).
        let mut first = Parser::hashing(&input[..]);
        collect(&mut first, 3);
        let at = first.checkpoint();
        let mut other = input.clone();
        other[20] ^= 1;
        for wrong in [&other[..], &input[..at.at.offset as usize - 1]] {
            assert!(matches!(
                Parser::resume(wrong, &at).err(),
                Some(InputError::NotTheCheckpointedInput { offset }) if offset == at.at.offset
            ));
        }
    }
}
