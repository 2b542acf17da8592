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
//! csv-core sees only lines with a quote. Three fast paths come first, each
//! checked against the slower one by a proptest: a quote-free line is split
//! at its commas in place (`FieldSplitter::split_plain`); before that, a
//! plain line with the columns in SPEC order is read in a single pass
//! (`plain_record`); and before both, once the header is behind it, the
//! parser reads runs of common lines straight from its buffer, many per
//! call (`fast.rs`, `Parser::fast_rows`): the commonest from a bitmask
//! index of each line's commas, spaces and end (SSE2, or AVX2 where the
//! processor has it), which places every field before any is read, the
//! others field after field, eight digits at a time. Every row of a typical
//! file takes that path, and the engine applies them as a batch.
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

mod blocks;
mod error;
mod fast;
mod fields;
mod lines;
#[cfg(unix)]
mod mapped;
mod parser;
mod record;
#[cfg(test)]
mod tests;

pub(crate) use blocks::{BlockOptions, BlockRows};
pub use blocks::{DEFAULT_BLOCK, MAX_BLOCK};
pub use error::{InputError, Malformed};
#[cfg(feature = "cluster")]
pub(crate) use lines::LineReader;
pub(crate) use lines::{Position, MAX_LINE};
#[cfg(unix)]
pub(crate) use mapped::Mapped;
#[cfg(feature = "cluster")]
pub(crate) use parser::first_line_end;
#[cfg(not(any(test, feature = "bench")))]
pub(crate) use parser::FastRows;
pub(crate) use parser::ParserBuilder;
#[cfg(any(test, feature = "bench"))]
pub use parser::{FastRows, Parser};
pub(crate) use parser::{ParserState, RowSource};
pub(crate) use record::Columns;
