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

mod blocks;
mod error;
mod fields;
mod lines;
mod parser;
mod record;
#[cfg(test)]
mod tests;

pub(crate) use blocks::{BlockOptions, BlockRows};
pub use blocks::{DEFAULT_BLOCK, MAX_BLOCK};
pub use error::{InputError, Malformed};
pub(crate) use lines::{Position, MAX_LINE};
#[cfg(feature = "cluster")]
pub(crate) use parser::first_line_end;
#[cfg(any(test, feature = "bench"))]
pub use parser::Parser;
pub(crate) use parser::ParserBuilder;
pub(crate) use parser::{ParserState, RowSource};
pub(crate) use record::Columns;
