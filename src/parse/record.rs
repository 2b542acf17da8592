//! Records: the header's column map, and one line's fields turned into a
//! transaction (with a one-pass fast path for the common line).

use super::error::Malformed;
use super::fields::{is_blank, Fields};
use crate::amount::{Amount, FRACTION_DIGITS, SCALE};
use crate::tx::{Kind, Tx};

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
    pub(super) fn from_header(fields: &Fields<'_>) -> Option<Result<Columns, String>> {
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
pub(super) fn near_miss(names: &[&[u8]], wanted: &str) -> Option<String> {
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
pub(super) fn header_warnings(
    fields: &Fields<'_>,
    columns: Option<&Columns>,
    line: u64,
) -> Vec<String> {
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
        None => {
            if let Some(text) = other_delimiter(&names, line) {
                return vec![text];
            }
            let text = match near_miss(&names, "type") {
                Some(typo) => format!(
                    "line {line} looks like a header with `{typo}` for `type`; without a `type` \
                     column it is read as a record"
                ),
                None if looks_like_names(&names) => format!(
                    "line {line} looks like a header but names none of the columns type, \
                     client, tx, amount; it is read as a record (a header needs at least \
                     `type`, `client` and `tx`)"
                ),
                None => return Vec::new(),
            };
            vec![text]
        }
    }
}

/// A first line with no comma but another separator: the file is probably
/// not comma-separated, and every row will be malformed.
fn other_delimiter(names: &[&[u8]], line: u64) -> Option<String> {
    let [only] = names else { return None };
    let (byte, name) = [(b';', "semicolon"), (b'\t', "tab"), (b'|', "pipe")]
        .into_iter()
        .max_by_key(|&(byte, _)| only.iter().filter(|&&b| b == byte).count())?;
    let count = only.iter().filter(|&&b| b == byte).count();
    (count > 0).then(|| {
        format!(
            "line {line} has no comma but {count} {name}{}: the input looks {name}-separated, \
             and this program reads comma-separated CSV (type,client,tx,amount), so every row \
             will be malformed",
            if count == 1 { "" } else { "s" }
        )
    })
}

/// Fields that read as column names, not values: two or more, each with a
/// letter and no digit, the first not a transaction type.
fn looks_like_names(names: &[&[u8]]) -> bool {
    const TYPES: [&str; 5] = ["deposit", "withdrawal", "dispute", "resolve", "chargeback"];
    let wordy = |name: &&[u8]| {
        name.iter().any(u8::is_ascii_alphabetic) && !name.iter().any(u8::is_ascii_digit)
    };
    names.len() >= 2
        && names.iter().all(wordy)
        && !TYPES
            .iter()
            .any(|t| names[0].eq_ignore_ascii_case(t.as_bytes()))
}

/// Parses an unsigned decimal integer (digits only, leading zeros allowed).
pub(super) fn parse_uint(field: &[u8], max: u64) -> Option<u64> {
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
pub(super) fn plain_record(line: &[u8]) -> Option<Tx> {
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
pub(super) fn record(fields: &Fields<'_>, columns: &Columns) -> Result<Tx, Malformed> {
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
