//! Everything the engine writes: the accounts CSV (stdout), the rejects file,
//! the per-row diagnostics and the summary (stderr).

use std::io::{self, Write};
use std::time::Duration;

use crate::ledger::{Account, Reject};
use crate::parse::Malformed;
use crate::tx::{ClientId, Tx};

/// The accounts CSV header.
pub const ACCOUNTS_HEADER: &str = "client,available,held,total,locked\n";
/// The rejects CSV header.
pub const REJECTS_HEADER: &str = "line,reason,detail,record\n";

/// Writes the accounts CSV: one row per account in the order given (the
/// caller sorts by client), four fractional digits, LF line ends.
pub fn write_accounts<W: Write>(accounts: &[(ClientId, Account)], mut out: W) -> io::Result<()> {
    out.write_all(ACCOUNTS_HEADER.as_bytes())?;
    for (client, account) in accounts {
        writeln!(
            out,
            "{client},{},{},{},{}",
            account.available,
            account.held,
            account.total(),
            account.locked
        )?;
    }
    out.flush()
}

/// What happened to one row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Applied,
    Rejected(Reject),
    Malformed(Malformed),
}

impl Outcome {
    /// The SPEC reason code (`malformed`, `duplicate_tx`, ...); `None` when applied.
    pub fn code(self) -> Option<&'static str> {
        match self {
            Outcome::Applied => None,
            Outcome::Rejected(reject) => Some(reject.code()),
            Outcome::Malformed(_) => Some("malformed"),
        }
    }
}

/// Counts of every outcome. `rows_read()` is their sum, so the identity
/// rows read = applied + rejected + malformed holds by construction, and the
/// summary prints all three terms.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub applied: u64,
    /// Indexed like [`Reject::ALL`].
    pub rejected_by: [u64; Reject::ALL.len()],
    pub malformed: u64,
}

impl Tally {
    pub fn count(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Applied => self.applied += 1,
            Outcome::Rejected(reject) => self.rejected_by[reject as usize] += 1,
            Outcome::Malformed(_) => self.malformed += 1,
        }
    }

    pub fn rejected(&self) -> u64 {
        self.rejected_by.iter().sum()
    }

    pub fn rows_read(&self) -> u64 {
        self.applied + self.rejected() + self.malformed
    }

    /// The end-of-run summary for stderr.
    pub fn summary(&self, elapsed: Duration) -> String {
        let mut text = format!(
            "summary: {} rows read = {} applied + {} rejected + {} malformed\n",
            self.rows_read(),
            self.applied,
            self.rejected(),
            self.malformed
        );
        for reject in Reject::ALL {
            let n = self.rejected_by[reject as usize];
            if n > 0 {
                text.push_str(&format!("  rejected {:<18} {n}\n", reject.code()));
            }
        }
        let seconds = elapsed.as_secs_f64();
        let rate = if seconds > 0.0 {
            self.rows_read() as f64 / seconds
        } else {
            0.0
        };
        text.push_str(&format!("  elapsed {seconds:.3} s, {rate:.0} rows/s\n"));
        text
    }
}

/// The human line for one rejected or malformed row, without the `line N: `
/// prefix: `withdrawal of 2.0000 for client 3 rejected: insufficient funds`.
pub fn describe(tx: Option<&Tx>, outcome: Outcome) -> String {
    match (tx, outcome) {
        (_, Outcome::Malformed(reason)) => format!("malformed record: {}", reason.describe()),
        (Some(tx), Outcome::Rejected(reject)) if tx.kind.moves_money() => format!(
            "{} of {} for client {} rejected: {}",
            tx.kind.name(),
            tx.amount,
            tx.client,
            reject.describe()
        ),
        (Some(tx), Outcome::Rejected(reject)) => format!(
            "{} of tx {} for client {} rejected: {}",
            tx.kind.name(),
            tx.tx,
            tx.client,
            reject.describe()
        ),
        (None, Outcome::Rejected(reject)) => format!("rejected: {}", reject.describe()),
        (_, Outcome::Applied) => "applied".to_string(),
    }
}

/// The `detail` column of the rejects file.
pub fn detail(tx: Option<&Tx>, outcome: Outcome) -> String {
    match (tx, outcome) {
        (_, Outcome::Malformed(reason)) => reason.describe().to_string(),
        (Some(tx), Outcome::Rejected(reject)) => reject.detail(tx),
        (None, Outcome::Rejected(reject)) => reject.describe().to_string(),
        (_, Outcome::Applied) => String::new(),
    }
}

/// Writes one CSV field, quoted only when it holds a comma, quote, CR or LF.
pub fn write_csv_field<W: Write>(out: &mut W, field: &[u8]) -> io::Result<()> {
    let needs_quotes = field
        .iter()
        .any(|&b| matches!(b, b',' | b'"' | b'\r' | b'\n'));
    if !needs_quotes {
        return out.write_all(field);
    }
    out.write_all(b"\"")?;
    for (i, part) in field.split(|&b| b == b'"').enumerate() {
        if i > 0 {
            out.write_all(b"\"\"")?;
        }
        out.write_all(part)?;
    }
    out.write_all(b"\"")
}

/// Writes one row of the rejects file.
pub fn write_reject<W: Write>(
    out: &mut W,
    line: u64,
    code: &str,
    detail: &str,
    record: &[u8],
) -> io::Result<()> {
    write!(out, "{line},{code},")?;
    write_csv_field(out, detail.as_bytes())?;
    out.write_all(b",")?;
    write_csv_field(out, record)?;
    out.write_all(b"\n")
}

/// How much goes to stderr per row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verbosity {
    /// No per-row lines and no summary.
    Quiet,
    /// The first [`Diagnostics::CAP`] lines of each reason, then the summary.
    Default,
    /// Every per-row line, then the summary.
    Verbose,
}

/// Per-row stderr lines, capped per reason.
pub struct Diagnostics {
    verbosity: Verbosity,
    /// Lines shown so far, per reason: `[malformed, rejects...]`.
    shown: [u32; Reject::ALL.len() + 1],
}

impl Diagnostics {
    /// Lines shown per reason by default.
    pub const CAP: u32 = 10;

    pub fn new(verbosity: Verbosity) -> Self {
        Diagnostics {
            verbosity,
            shown: [0; Reject::ALL.len() + 1],
        }
    }

    /// The stderr text for one rejected or malformed row, if it is to be
    /// shown: the line itself, and once per reason a note that more follow.
    pub fn line_for(&mut self, line: u64, tx: Option<&Tx>, outcome: Outcome) -> Option<String> {
        let slot = match outcome {
            Outcome::Applied => return None,
            Outcome::Malformed(_) => 0,
            Outcome::Rejected(reject) => 1 + reject as usize,
        };
        let text = format!("line {line}: {}\n", describe(tx, outcome));
        match self.verbosity {
            Verbosity::Quiet => None,
            Verbosity::Verbose => Some(text),
            Verbosity::Default => {
                self.shown[slot] += 1;
                match self.shown[slot] {
                    n if n <= Self::CAP => Some(text),
                    n if n == Self::CAP + 1 => Some(format!(
                        "(further {} rows are not shown; --verbose or --rejects FILE lists them all)\n",
                        outcome.code().unwrap_or_default()
                    )),
                    _ => None,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::amount::Amount;
    use crate::tx::Kind;

    #[test]
    fn accounts_csv_format() {
        let accounts = vec![
            (
                1,
                Account {
                    available: Amount::from_raw(15_000),
                    held: Amount::ZERO,
                    locked: false,
                },
            ),
            (
                2,
                Account {
                    available: Amount::from_raw(-5),
                    held: Amount::from_raw(20_000),
                    locked: true,
                },
            ),
        ];
        let mut out = Vec::new();
        write_accounts(&accounts, &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "client,available,held,total,locked\n\
             1,1.5000,0.0000,1.5000,false\n\
             2,-0.0005,2.0000,1.9995,true\n"
        );
    }

    #[test]
    fn csv_fields_are_quoted_only_when_needed() {
        let table: &[(&[u8], &[u8])] = &[
            (b"plain", b"plain"),
            (b"a,b", b"\"a,b\""),
            (b"say \"hi\"", b"\"say \"\"hi\"\"\""),
            (b"cr\rhere", b"\"cr\rhere\""),
            (b" spaced ", b" spaced "),
            (b"", b""),
        ];
        for &(field, expected) in table {
            let mut out = Vec::new();
            write_csv_field(&mut out, field).unwrap();
            assert_eq!(out, expected);
        }
    }

    #[test]
    fn diagnostics_are_capped_per_reason() {
        let tx = Tx {
            kind: Kind::Withdrawal,
            client: 3,
            tx: 9,
            amount: Amount::from_raw(20_000),
        };
        let outcome = Outcome::Rejected(Reject::InsufficientFunds);
        let mut diagnostics = Diagnostics::new(Verbosity::Default);
        let lines: Vec<_> = (1..=15)
            .filter_map(|n| diagnostics.line_for(n, Some(&tx), outcome))
            .collect();
        assert_eq!(lines.len(), 11);
        assert_eq!(
            lines[0],
            "line 1: withdrawal of 2.0000 for client 3 rejected: insufficient funds\n"
        );
        assert!(lines[10].contains("further insufficient_funds rows are not shown"));
        // Another reason has its own cap.
        let other = diagnostics.line_for(16, None, Outcome::Malformed(Malformed::BadType));
        assert_eq!(
            other.as_deref(),
            Some("line 16: malformed record: type is not deposit, withdrawal, dispute, resolve or chargeback\n")
        );
        let mut quiet = Diagnostics::new(Verbosity::Quiet);
        assert_eq!(quiet.line_for(1, Some(&tx), outcome), None);
        let mut verbose = Diagnostics::new(Verbosity::Verbose);
        assert_eq!(
            (1..=15)
                .filter_map(|n| verbose.line_for(n, Some(&tx), outcome))
                .count(),
            15
        );
    }

    #[test]
    fn tally_identity_and_summary() {
        let mut tally = Tally::default();
        tally.count(Outcome::Applied);
        tally.count(Outcome::Applied);
        tally.count(Outcome::Rejected(Reject::UnknownTx));
        tally.count(Outcome::Malformed(Malformed::BadTx));
        assert_eq!(tally.rows_read(), 4);
        let summary = tally.summary(Duration::from_millis(2));
        assert!(
            summary.starts_with("summary: 4 rows read = 2 applied + 1 rejected + 1 malformed\n")
        );
        assert!(summary.contains("rejected unknown_tx"));
        assert!(!summary.contains("duplicate_tx"));
    }
}
