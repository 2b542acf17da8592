//! Fields: one line split at its commas (by hand when it holds no quote,
//! by csv-core when it does), each field trimmed of spaces and tabs.

use super::error::Malformed;
use super::lines::MAX_LINE;

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
    pub(super) spans: Box<[(u32, u32)]>,
}

/// The fields of one line, trimmed of spaces and tabs on access.
pub struct Fields<'a> {
    pub(super) bytes: &'a [u8],
    pub(super) spans: &'a [(u32, u32)],
}

impl<'a> Fields<'a> {
    /// Number of fields.
    pub fn len(&self) -> usize {
        self.spans.len()
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
pub(super) fn is_blank(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

#[inline]
pub(super) fn trim(mut field: &[u8]) -> &[u8] {
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
    pub(super) fn split_plain(&mut self, line: &[u8]) -> Option<usize> {
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
    pub(super) fn split_csv_core(&mut self, line: &[u8]) -> Result<Fields<'_>, Malformed> {
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
pub(super) fn drop_blanks_before_quotes(line: &[u8], out: &mut [u8]) -> usize {
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
