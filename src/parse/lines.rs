//! Lines: the input read in large reads, cut at line ends with `memchr`,
//! a BOM and CRs handled, each line numbered, over-long lines skipped
//! through to their end.

use std::io::{self, Read};
use std::ops::Deref;

use xxhash_rust::xxh3::Xxh3;

use super::error::InputError;
#[cfg(unix)]
use super::mapped::Mapped;

/// The longest legal line, line end excluded.
pub const MAX_LINE: usize = 4096;
/// Bytes requested from the input per read.
pub const READ_SIZE: usize = 256 * 1024;

/// Reads the first `at.offset` bytes of `src` and checks that they hash to
/// `at.prefix_hash` (the input is the one the position was taken on); the
/// hasher, to go on hashing from there.
pub fn skip_prefix(src: &mut impl Read, at: &Position) -> Result<Box<Xxh3>, InputError> {
    let mut hasher = Box::new(Xxh3::new());
    let mut buf = vec![0u8; READ_SIZE];
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

/// A [`LineReader`]'s bytes: a buffer of its own, which reads refill, or
/// a whole file mapped (read in place, nothing copied).
enum Buf {
    Owned(Box<[u8]>),
    #[cfg(unix)]
    Mapped(Mapped),
}

impl Deref for Buf {
    type Target = [u8];

    #[inline]
    fn deref(&self) -> &[u8] {
        match self {
            Buf::Owned(buf) => buf,
            #[cfg(unix)]
            Buf::Mapped(map) => map.bytes(),
        }
    }
}

/// Splits a byte stream into lines, reading in [`READ_SIZE`]-sized reads.
pub struct LineReader<R> {
    src: R,
    buf: Buf,
    /// A mapped reader gives back the pages before `start` once `start`
    /// reaches this (`usize::MAX`: never; see `Mapped::release_before`).
    release_at: usize,
    pub(super) start: usize,
    end: usize,
    eof: bool,
    started: bool,
    pub(super) number: u64,
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
    /// A reader of `src` that starts at a line start: the very start of
    /// the input (where a BOM may come) when `at_input_start`, else in its
    /// middle. Lines are numbered from 1. With `hashing`, it also hashes
    /// what it consumes, for [`Self::position`].
    pub fn new(src: R, at_input_start: bool, hashing: bool) -> Self {
        LineReader {
            src,
            buf: Buf::Owned(vec![0u8; READ_SIZE + MAX_LINE + 2].into()),
            release_at: usize::MAX,
            start: 0,
            end: 0,
            eof: false,
            started: !at_input_start,
            number: 0,
            long_prefix: vec![0u8; MAX_LINE].into(),
            dropped: 0,
            hasher: hashing.then(|| Box::new(Xxh3::new())),
            hashed: 0,
        }
    }

    /// A hashing reader that continues at `at`: it reads the first
    /// `at.offset` bytes of `src` and checks they hash to `at.prefix_hash`
    /// (the input is the one the position was taken on), then numbers lines
    /// from `at.line + 1`.
    pub fn resume(mut src: R, at: &Position) -> Result<Self, InputError> {
        let hasher = skip_prefix(&mut src, at)?;
        let mut reader = LineReader::new(src, true, false);
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
        // A reader over bytes in memory has none to read (it is at EOF
        // from the start, so this is not reached).
        let Buf::Owned(buf) = &mut self.buf else {
            self.eof = true;
            return Ok(false);
        };
        self.hashed = 0;
        self.dropped += self.start as u64;
        buf.copy_within(self.start..self.end, 0);
        self.end -= self.start;
        self.start = 0;
        loop {
            match self.src.read(&mut buf[self.end..]) {
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

    /// The bytes not yet handed out, after making sure there are at least
    /// `want` of them unless the input ends first (reading more, which
    /// moves them to the front of the buffer), and their offset in the
    /// buffer. Only for a reader past the input's start (BOM looked for).
    pub fn pending(&mut self, want: usize) -> io::Result<(&[u8], usize)> {
        debug_assert!(self.started && want <= MAX_LINE);
        self.release_passed();
        while self.end - self.start < want && !self.eof {
            self.refill()?;
        }
        Ok((&self.buf[..self.end], self.start))
    }

    /// Hands out `lines` lines that end before `buf[start]`, all read by
    /// the caller from [`Self::pending`]'s bytes.
    pub fn consume(&mut self, start: usize, lines: u64) {
        debug_assert!(start <= self.end);
        self.start = start;
        self.number += lines;
    }

    /// Lines handed out so far.
    pub fn lines_handed_out(&self) -> u64 {
        self.number
    }

    /// The whole buffer ([`Self::pending`]'s bytes, and those before).
    pub fn buffer(&self) -> &[u8] {
        &self.buf[..self.end]
    }

    /// Whether the reader is past the input's start (its BOM looked for).
    pub fn started(&self) -> bool {
        self.started
    }

    /// The bytes of `line` (line end excluded, cut at [`MAX_LINE`]).
    pub fn bytes(&self, line: &Line) -> &[u8] {
        let buf: &[u8] = if line.in_prefix {
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

    /// A mapped reader past [`Self::release_at`] gives back the pages
    /// before its start: no line handed out, nor anything the caller
    /// borrowed, lies there (`&mut self`).
    #[inline]
    fn release_passed(&mut self) {
        if self.start >= self.release_at {
            #[cfg(unix)]
            if let Buf::Mapped(map) = &mut self.buf {
                map.release_before(self.start);
                self.release_at = map.next_release();
            }
        }
    }

    /// The next line, or `None` at the end of the input.
    pub fn next_line(&mut self) -> io::Result<Option<Line>> {
        self.release_passed();
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
    /// A reader over a whole mapped file, read in place: nothing is read
    /// or copied, the lines are slices of the map, and the pages behind
    /// the lines handed out are given back as it goes. At the input's start
    /// (a BOM looked for); lines are numbered from 1.
    /// The buffer of a reader made [`Self::over_block`], for reuse (a
    /// mapped reader has none: an empty one).
    pub fn into_buf(self) -> Box<[u8]> {
        match self.buf {
            Buf::Owned(buf) => buf,
            #[cfg(unix)]
            Buf::Mapped(_) => Box::default(),
        }
    }

    #[cfg(unix)]
    pub fn over_map(map: Mapped) -> Self {
        let (len, release_at) = (map.bytes().len(), map.next_release());
        LineReader {
            src: io::empty(),
            buf: Buf::Mapped(map),
            release_at,
            start: 0,
            end: len,
            eof: true,
            started: false,
            number: 0,
            long_prefix: Box::default(),
            dropped: 0,
            hasher: None,
            hashed: 0,
        }
    }

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
            buf: Buf::Owned(buf),
            release_at: usize::MAX,
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
