//! Why a record is malformed (an outcome, counted), and why an input cannot
//! be read at all (an error, fatal).

use std::io;

use crate::amount::AmountError;

/// Why a record was malformed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
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
    /// The system would not start a reading or parsing thread (`--parsers`):
    /// the error from `spawn`, out of memory for its stack as a rule.
    StartThread(io::Error),
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
            InputError::StartThread(_) => f.write_str("starting a reading thread"),
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
            InputError::Io(error) | InputError::StartThread(error) => Some(error),
            InputError::BadHeader { .. } | InputError::NotTheCheckpointedInput { .. } => None,
        }
    }
}

impl From<io::Error> for InputError {
    fn from(error: io::Error) -> Self {
        InputError::Io(error)
    }
}
