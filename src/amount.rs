//! Exact decimal money: a signed 64-bit count of ten-thousandths.
//!
//! Every amount and every balance in the engine is an [`Amount`]. It is parsed
//! straight from the input bytes (no float, no `str::parse`, no decimal crate),
//! printed with exactly four fractional digits, and combined only through
//! `checked_*` operations, so a result that would leave the range is a value
//! (`None`) the ledger turns into an `overflow` rejection, never a wrap or a
//! panic.
//!
//! Binary floating point and binary fixed point cannot hold 0.1 exactly, which
//! is why neither ever holds money here.

use std::fmt;

/// Ten-thousandths per unit: four fractional digits.
pub const SCALE: i64 = 10_000;
/// Fractional digits that carry value.
pub const FRACTION_DIGITS: usize = 4;

/// An exact decimal with four fractional digits, stored as `i64` ten-thousandths.
///
/// Range: `-922337203685477.5808 ..= 922337203685477.5807`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Amount(i64);

/// Why an amount field was not a valid transaction amount.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum AmountError {
    /// The field is empty.
    Empty,
    /// A byte other than an ASCII digit or one `.` (signs, exponents,
    /// separators, spaces, non-ASCII digits all land here), or no digit at all.
    Syntax,
    /// A non-zero digit after the fourth fractional digit.
    TooPrecise,
    /// Larger than `922337203685477.5807`.
    OutOfRange,
    /// The value is zero; deposit and withdrawal amounts must be positive
    /// (a dispute, resolve or chargeback takes [`Amount::ZERO`] instead of
    /// a parsed amount).
    Zero,
}

impl AmountError {
    /// A short explanation, used in diagnostics and the rejects file.
    pub fn describe(self) -> &'static str {
        match self {
            AmountError::Empty => "amount is missing",
            AmountError::Syntax => "amount is not a plain positive decimal",
            AmountError::TooPrecise => "amount has more than 4 significant fractional digits",
            AmountError::OutOfRange => "amount exceeds 922337203685477.5807",
            AmountError::Zero => "amount is zero",
        }
    }
}

impl fmt::Display for AmountError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

impl std::error::Error for AmountError {}

impl Amount {
    /// Zero.
    pub const ZERO: Amount = Amount(0);
    /// The largest representable value, `922337203685477.5807`.
    pub const MAX: Amount = Amount(i64::MAX);
    /// The smallest representable value, `-922337203685477.5808`.
    pub const MIN: Amount = Amount(i64::MIN);

    /// Builds an amount from a count of ten-thousandths.
    pub const fn from_raw(ten_thousandths: i64) -> Amount {
        Amount(ten_thousandths)
    }

    /// The count of ten-thousandths.
    pub const fn raw(self) -> i64 {
        self.0
    }

    /// `self + rhs`, or `None` if the result leaves the range.
    #[inline]
    pub fn checked_add(self, rhs: Amount) -> Option<Amount> {
        self.0.checked_add(rhs.0).map(Amount)
    }

    /// `self - rhs`, or `None` if the result leaves the range.
    #[inline]
    pub fn checked_sub(self, rhs: Amount) -> Option<Amount> {
        self.0.checked_sub(rhs.0).map(Amount)
    }

    /// True when strictly below zero.
    pub const fn is_negative(self) -> bool {
        self.0 < 0
    }

    /// True when strictly above zero.
    pub const fn is_positive(self) -> bool {
        self.0 > 0
    }

    /// Parses a transaction amount: ASCII digits with at most one `.`
    /// (`5`, `5.`, `.5`, `5.25`), leading zeros allowed, at most four
    /// significant fractional digits (zeros past the fourth are exact and
    /// allowed), strictly positive, at most [`Amount::MAX`].
    ///
    /// The caller has already trimmed and unquoted the field.
    ///
    /// Zero is refused ([`AmountError::Zero`]): a deposit or a withdrawal
    /// must move money. Disputes, resolves and chargebacks carry no amount;
    /// give their [`Tx`](crate::Tx) [`Amount::ZERO`] (the ledger ignores it):
    ///
    /// ```
    /// use payments_engine::{Amount, AmountError, Kind, Tx};
    ///
    /// assert_eq!(Amount::parse(b"2.5"), Ok(Amount::from_raw(25_000)));
    /// assert_eq!(Amount::parse(b"0"), Err(AmountError::Zero));
    /// let dispute = Tx { kind: Kind::Dispute, client: 1, tx: 7, amount: Amount::ZERO };
    /// # let _ = dispute;
    /// ```
    pub fn parse(bytes: &[u8]) -> Result<Amount, AmountError> {
        if bytes.is_empty() {
            return Err(AmountError::Empty);
        }
        // One pass. `units` saturates in u64 (any saturated value is out of
        // range), so syntax and precision are judged first and range last.
        let mut units: u64 = 0;
        let mut i = 0;
        while let Some(&b) = bytes.get(i) {
            if !b.is_ascii_digit() {
                break;
            }
            units = units.saturating_mul(10).saturating_add(u64::from(b - b'0'));
            i += 1;
        }
        let int_digits = i;
        let mut fraction: u64 = 0;
        let mut frac_digits = 0;
        if bytes.get(i) == Some(&b'.') {
            i += 1;
            while let Some(&b) = bytes.get(i) {
                if !b.is_ascii_digit() {
                    // Also catches a second `.`.
                    return Err(AmountError::Syntax);
                }
                if frac_digits < FRACTION_DIGITS {
                    fraction = fraction * 10 + u64::from(b - b'0');
                } else if b != b'0' {
                    return Err(AmountError::TooPrecise);
                }
                frac_digits += 1;
                i += 1;
            }
        }
        if i != bytes.len() || int_digits + frac_digits == 0 {
            return Err(AmountError::Syntax);
        }
        for _ in frac_digits.min(FRACTION_DIGITS)..FRACTION_DIGITS {
            fraction *= 10;
        }
        let total = units
            .checked_mul(SCALE as u64)
            .and_then(|v| v.checked_add(fraction))
            .filter(|&v| v <= i64::MAX as u64)
            .ok_or(AmountError::OutOfRange)?;
        if total == 0 {
            return Err(AmountError::Zero);
        }
        Ok(Amount(total as i64))
    }
}

impl fmt::Display for Amount {
    /// Exactly four fractional digits, a leading `-` when negative.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        // unsigned_abs: i64::MIN has no positive i64 counterpart.
        let magnitude = self.0.unsigned_abs();
        let scale = SCALE as u64;
        write!(f, "{sign}{}.{:04}", magnitude / scale, magnitude % scale)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `parses!(input => raw ten-thousandths)` / `parses!(input => error)`.
    fn check(input: &str, expected: Result<i64, AmountError>) {
        let got = Amount::parse(input.as_bytes()).map(Amount::raw);
        assert_eq!(got, expected, "parsing {input:?}");
    }

    #[test]
    fn valid_forms() {
        let table: &[(&str, i64)] = &[
            ("5", 50_000),
            ("5.", 50_000),
            (".5", 5_000),
            ("5.25", 52_500),
            ("0.0001", 1),
            (".0001", 1),
            ("1.5", 15_000),
            ("1.500000", 15_000),
            ("1.00000000000000000000", 10_000),
            ("007.5", 75_000),
            ("0000000000000000000000000000000000000001", 10_000),
            ("100", 1_000_000),
            ("2.7182", 27_182),
            ("922337203685477.5807", i64::MAX),
            ("922337203685477.58070000", i64::MAX),
            ("922337203685477", 9_223_372_036_854_770_000),
            ("0.1", 1_000),
            ("0.2", 2_000),
        ];
        for &(input, raw) in table {
            check(input, Ok(raw));
        }
    }

    #[test]
    fn invalid_forms() {
        use AmountError::*;
        let table: &[(&str, AmountError)] = &[
            ("", Empty),
            (".", Syntax),
            ("-1", Syntax),
            ("-0", Syntax),
            ("+1", Syntax),
            ("1e3", Syntax),
            ("1E3", Syntax),
            ("1_000", Syntax),
            ("1,000", Syntax),
            ("NaN", Syntax),
            ("inf", Syntax),
            ("0x10", Syntax),
            ("1.2.3", Syntax),
            ("1..2", Syntax),
            (" 1", Syntax),
            ("1 ", Syntax),
            ("1 000", Syntax),
            ("\u{0661}", Syntax), // ARABIC-INDIC DIGIT ONE
            ("１", Syntax),       // FULLWIDTH DIGIT ONE
            ("1.00001", TooPrecise),
            ("0.00001", TooPrecise),
            ("1.23456", TooPrecise),
            ("1.000010", TooPrecise),
            ("0", Zero),
            ("0.0", Zero),
            ("0000", Zero),
            (".0000", Zero),
            ("0.", Zero),
            ("0.000000", Zero),
            ("922337203685477.5808", OutOfRange),
            ("922337203685478", OutOfRange),
            ("9223372036854775808", OutOfRange),
            ("1234567890123456789012345678901234567890", OutOfRange),
            ("18446744073709551616", OutOfRange),
            ("1234567890123456789012345678901234567890x", Syntax),
            ("1234567890123456789012345678901234567890.00001", TooPrecise),
        ];
        for &(input, error) in table {
            check(input, Err(error));
        }
    }

    #[test]
    fn display_has_four_fraction_digits() {
        let table: &[(i64, &str)] = &[
            (0, "0.0000"),
            (1, "0.0001"),
            (15_000, "1.5000"),
            (-1, "-0.0001"),
            (-5_000, "-0.5000"),
            (-15_000, "-1.5000"),
            (i64::MAX, "922337203685477.5807"),
            (i64::MIN, "-922337203685477.5808"),
        ];
        for &(raw, text) in table {
            assert_eq!(Amount::from_raw(raw).to_string(), text);
        }
    }

    #[test]
    fn display_round_trips_through_parse() {
        for raw in [1, 9, 10, 9_999, 10_000, 123_456_789, i64::MAX] {
            let text = Amount::from_raw(raw).to_string();
            assert_eq!(Amount::parse(text.as_bytes()), Ok(Amount::from_raw(raw)));
        }
    }

    #[test]
    fn checked_arithmetic_reports_overflow() {
        assert_eq!(Amount::MAX.checked_add(Amount::from_raw(1)), None);
        assert_eq!(Amount::MIN.checked_sub(Amount::from_raw(1)), None);
        assert_eq!(
            Amount::from_raw(1).checked_add(Amount::from_raw(2)),
            Some(Amount::from_raw(3))
        );
        assert_eq!(
            Amount::ZERO.checked_sub(Amount::MAX),
            Some(Amount::from_raw(-i64::MAX))
        );
    }
}
