//! Everything the engine writes: the accounts CSV (stdout), the rejects file,
//! the per-row diagnostics and the summary (stderr).

use std::fs::File;
use std::io::{self, Seek, Write};
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
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum Outcome {
    Applied,
    /// A well-formed record that a rule rejected.
    Rejected {
        tx: Tx,
        reason: Reject,
    },
    Malformed(Malformed),
}

impl Outcome {
    /// The outcome of applying a well-formed `tx`: every path (the
    /// single-threaded ledger, a worker's book, a cluster's apply stage)
    /// names it this one way.
    #[inline]
    pub fn of(tx: &Tx, applied: Result<(), Reject>) -> Outcome {
        match applied {
            Ok(()) => Outcome::Applied,
            Err(reason) => Outcome::Rejected { tx: *tx, reason },
        }
    }

    /// The SPEC reason code (`malformed`, `duplicate_tx`, ...); `None` when applied.
    pub fn code(self) -> Option<&'static str> {
        match self {
            Outcome::Applied => None,
            Outcome::Rejected { reason, .. } => Some(reason.code()),
            Outcome::Malformed(_) => Some("malformed"),
        }
    }
}

/// Counts of every outcome. `rows_read()` is their sum, so the identity
/// rows read = applied + rejected + malformed holds by construction, and the
/// summary prints all three terms.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub applied: u64,
    /// Indexed like [`Reject::ALL`].
    pub rejected_by: [u64; Reject::ALL.len()],
    /// Indexed by [`Malformed::index`].
    pub malformed_by: [u64; Malformed::COUNT],
}

/// Every count by its reason's name: `Tally { applied: 3, rejected:
/// {"duplicate_tx": 1, ...}, malformed: {"bad_type": 0, ...} }`.
impl std::fmt::Debug for Tally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        struct Named<'a, I>(&'a I);
        impl<'a, I> std::fmt::Debug for Named<'a, I>
        where
            I: Clone + Iterator<Item = (&'static str, u64)>,
        {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_map().entries(self.0.clone()).finish()
            }
        }
        let rejected = Reject::ALL
            .iter()
            .map(|r| (r.code(), self.rejected_by[*r as usize]));
        let malformed = Malformed::CODES.iter().copied().zip(self.malformed_by);
        f.debug_struct("Tally")
            .field("applied", &self.applied)
            .field("rejected", &Named(&rejected))
            .field("malformed", &Named(&malformed))
            .finish()
    }
}

impl Tally {
    pub fn count(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Applied => self.applied += 1,
            Outcome::Rejected { reason, .. } => self.rejected_by[reason as usize] += 1,
            Outcome::Malformed(reason) => self.malformed_by[reason.index()] += 1,
        }
    }

    /// Adds another source's counts.
    pub fn add(&mut self, other: &Tally) {
        self.applied += other.applied;
        for (mine, theirs) in self.rejected_by.iter_mut().zip(other.rejected_by) {
            *mine += theirs;
        }
        for (mine, theirs) in self.malformed_by.iter_mut().zip(other.malformed_by) {
            *mine += theirs;
        }
    }

    pub fn rejected(&self) -> u64 {
        self.rejected_by.iter().sum()
    }

    pub fn malformed(&self) -> u64 {
        self.malformed_by.iter().sum()
    }

    pub fn rows_read(&self) -> u64 {
        self.applied + self.rejected() + self.malformed()
    }

    /// The end-of-run summary for stderr: the identity, then every reason
    /// with a count.
    pub fn summary(&self, elapsed: Duration) -> String {
        let rows = self.rows_read();
        let mut text = format!(
            "summary: {rows} {} read = {} applied + {} rejected + {} malformed\n",
            if rows == 1 { "row" } else { "rows" },
            self.applied,
            self.rejected(),
            self.malformed()
        );
        for reject in Reject::ALL {
            let n = self.rejected_by[reject as usize];
            if n > 0 {
                text.push_str(&format!("  rejected {:<18} {n}\n", reject.code()));
            }
        }
        for (code, &n) in Malformed::CODES.iter().zip(&self.malformed_by) {
            if n > 0 {
                text.push_str(&format!("  malformed {code:<17} {n}\n"));
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
pub fn describe(outcome: Outcome) -> String {
    match outcome {
        Outcome::Malformed(reason) => format!("malformed record: {reason}"),
        Outcome::Rejected { tx, reason } if tx.kind.claims_id() => format!(
            "{} of {} for client {} rejected: {reason}",
            tx.kind.name(),
            tx.amount,
            tx.client,
        ),
        Outcome::Rejected { tx, reason } => format!(
            "{} of tx {} for client {} rejected: {reason}",
            tx.kind.name(),
            tx.tx,
            tx.client,
        ),
        Outcome::Applied => "applied".to_string(),
    }
}

/// The `detail` column of the rejects file.
pub fn detail(outcome: Outcome) -> String {
    match outcome {
        Outcome::Malformed(reason) => reason.to_string(),
        Outcome::Rejected { tx, reason } => reason.detail(&tx),
        Outcome::Applied => String::new(),
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
    /// The first 10 lines of each reason, then the summary.
    Default,
    /// Every per-row line, then the summary.
    Verbose,
}

/// Rows shown per reason on stderr by default.
pub const CAP: u32 = 10;

/// Reasons a row can be reported under: malformed, then the rejects.
const SLOTS: usize = Reject::ALL.len() + 1;

fn slot(outcome: Outcome) -> usize {
    match outcome {
        Outcome::Applied | Outcome::Malformed(_) => 0,
        Outcome::Rejected { reason, .. } => 1 + reason as usize,
    }
}

/// A log's every-row output: an anonymous temporary file, merged by line
/// number at the end.
pub(crate) type Spool = io::BufWriter<std::fs::File>;

/// A new, empty spool.
pub(crate) fn spool() -> io::Result<Spool> {
    Ok(io::BufWriter::with_capacity(
        64 * 1024,
        tempfile::tempfile()?,
    ))
}

/// One source's record of its rows, written in that source's line order:
/// the tally, the first `CAP + 1` stderr lines of each reason (enough to show
/// `CAP` and know that more follow), and, when asked, every stderr line
/// (`--verbose`) and every rejects row (`--rejects`).
///
/// The single-threaded path has one source. The sharded pipeline has one per
/// thread (the calling thread's malformed rows, each worker's rejections), and
/// [`finish`] merges them by line number, so stderr and the rejects file are
/// byte-identical for every worker count.
pub(crate) struct EventLog {
    pub tally: Tally,
    verbosity: Verbosity,
    first: Vec<(u64, usize, String)>,
    seen: [u32; SLOTS],
    verbose: Option<Spool>,
    rejects: Option<Spool>,
}

impl EventLog {
    /// A log that spools every stderr line when `verbosity` is verbose, and
    /// every rejects row when `rejects` is true.
    pub fn new(verbosity: Verbosity, rejects: bool) -> io::Result<Self> {
        let verbose = if verbosity == Verbosity::Verbose {
            Some(spool()?)
        } else {
            None
        };
        let rejects = if rejects { Some(spool()?) } else { None };
        Ok(EventLog {
            tally: Tally::default(),
            verbosity,
            first: Vec::new(),
            seen: [0; SLOTS],
            verbose,
            rejects,
        })
    }

    /// A log that keeps nothing: a placeholder while a worker's log is lent
    /// out at a checkpoint.
    pub fn empty() -> Self {
        EventLog {
            tally: Tally::default(),
            verbosity: Verbosity::Quiet,
            first: Vec::new(),
            seen: [0; SLOTS],
            verbose: None,
            rejects: None,
        }
    }

    /// Counts an outcome that needs no line (an applied row).
    #[inline]
    pub fn count(&mut self, outcome: Outcome) {
        self.tally.count(outcome);
    }

    /// Records one row. `raw` is the original line (needed only for rejects).
    pub fn record(&mut self, line: u64, outcome: Outcome, raw: &[u8]) -> io::Result<()> {
        self.record_with(line, outcome, || raw)
    }

    /// [`EventLog::record`] with the original line cut out only if a
    /// rejects file needs it: the ledger loops' rejected rows (a sixth of
    /// the realistic file's) had each called `FastRows::raw` for nothing,
    /// 1.2% of a `--workers 0` run's samples.
    pub fn record_with<'r>(
        &mut self,
        line: u64,
        outcome: Outcome,
        raw: impl FnOnce() -> &'r [u8],
    ) -> io::Result<()> {
        self.tally.count(outcome);
        if outcome == Outcome::Applied {
            return Ok(());
        }
        if let Some(out) = self.rejects.as_mut() {
            let code = outcome.code().unwrap_or_default();
            write_reject(out, line, code, &detail(outcome), raw())?;
        }
        match self.verbosity {
            Verbosity::Quiet => {}
            Verbosity::Verbose => {
                if let Some(out) = self.verbose.as_mut() {
                    writeln!(out, "line {line}: {}", describe(outcome))?;
                }
            }
            Verbosity::Default => {
                let slot = slot(outcome);
                if self.seen[slot] <= CAP {
                    self.seen[slot] += 1;
                    self.first.push((line, slot, describe(outcome)));
                }
            }
        }
        Ok(())
    }
}

/// The per-row output of the rows before a checkpoint, kept on disk beside
/// the state file: every stderr line (`--verbose`) and every rejects row, in
/// line order. A checkpoint appends the rows logged since the last one.
#[derive(Default)]
pub(crate) struct Journals {
    pub verbose: Option<File>,
    pub rejects: Option<File>,
}

/// What a checkpoint carries of the rows before it, besides the journals:
/// their tally, and the first `CAP + 1` stderr lines of each reason.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Carried {
    pub tally: Tally,
    /// (line, reason slot, text), in line order.
    pub first: Vec<(u64, u8, String)>,
}

impl Carried {
    /// The rows of `carried` (an earlier checkpoint's) and of `logs`
    /// together: tallies added, first lines merged and capped per reason.
    pub(crate) fn of<'a>(
        carried: &Carried,
        logs: impl IntoIterator<Item = &'a EventLog>,
    ) -> Carried {
        let mut tally = carried.tally;
        let mut first = carried.first.clone();
        for log in logs {
            tally.add(&log.tally);
            first.extend(
                log.first
                    .iter()
                    .map(|(line, slot, text)| (*line, *slot as u8, text.clone())),
            );
        }
        first.sort_by_key(|&(line, ..)| line);
        let mut kept = [0u32; SLOTS];
        first.retain(|&(_, slot, _)| {
            kept[usize::from(slot)] += 1;
            kept[usize::from(slot)] <= CAP + 1
        });
        Carried { tally, first }
    }
}

impl EventLog {
    /// The rows before a checkpoint as one more source for [`finish`]: their
    /// tally and first lines, and the journals as its spools.
    pub(crate) fn carried(verbosity: Verbosity, carried: Carried, journals: Journals) -> EventLog {
        let mut seen = [0u32; SLOTS];
        let first = carried
            .first
            .into_iter()
            .map(|(line, slot, text)| {
                seen[usize::from(slot)] += 1;
                (line, usize::from(slot), text)
            })
            .collect();
        let spool = |file: File| io::BufWriter::with_capacity(64 * 1024, file);
        EventLog {
            tally: carried.tally,
            verbosity,
            first,
            seen,
            verbose: journals.verbose.map(spool),
            rejects: journals.rejects.map(spool),
        }
    }
}

/// At a checkpoint: moves every row that `logs` have spooled to the end of
/// the journals, merged in line order, fsyncs them, and empties the spools.
/// Every row logged before a checkpoint precedes every row logged after it,
/// so the journals stay in line order.
pub(crate) fn drain(logs: &mut [&mut EventLog], journals: &mut Journals) -> io::Result<()> {
    let (mut verbose, mut rejects) = (Vec::new(), Vec::new());
    for log in logs.iter_mut() {
        verbose.extend(log.verbose.as_mut());
        rejects.extend(log.rejects.as_mut());
    }
    for (spools, journal, key) in [
        (
            verbose,
            &mut journals.verbose,
            verbose_key as fn(&[u8]) -> &[u8],
        ),
        (rejects, &mut journals.rejects, rejects_key),
    ] {
        let Some(journal) = journal else { continue };
        let mut files = Vec::with_capacity(spools.len());
        for spool in spools {
            spool.flush()?;
            files.push(spool.get_mut());
        }
        journal.seek(io::SeekFrom::End(0))?;
        let mut out = io::BufWriter::with_capacity(64 * 1024, &mut *journal);
        merge_by_line(&mut files, &mut out, key)?;
        out.flush()?;
        drop(out);
        journal.sync_data()?;
        for file in files {
            file.set_len(0)?;
            file.seek(io::SeekFrom::Start(0))?;
        }
    }
    Ok(())
}

fn verbose_key(text: &[u8]) -> &[u8] {
    text.strip_prefix(b"line ").unwrap_or(text)
}

fn rejects_key(row: &[u8]) -> &[u8] {
    row
}

/// Merges the logs of all sources into the final stderr lines and rejects
/// rows (after the rejects header, which the caller wrote), in line order,
/// and returns the summed tally. Everything written here is identical
/// whatever the number of sources.
pub(crate) fn finish(
    logs: Vec<EventLog>,
    stderr: &mut dyn Write,
    rejects: Option<&mut dyn Write>,
) -> io::Result<Tally> {
    let mut tally = Tally::default();
    let mut first = Vec::new();
    let (mut verbose_spools, mut reject_spools) = (Vec::new(), Vec::new());
    for log in logs {
        tally.add(&log.tally);
        first.extend(log.first);
        verbose_spools.extend(log.verbose);
        reject_spools.extend(log.rejects);
    }
    if let Some(out) = rejects {
        merge_by_line(&mut files(&mut reject_spools)?, out, rejects_key)?;
    }
    // Diagnostics to stderr are best effort: a closed stderr must not fail
    // the run.
    if let Ok(mut files) = files(&mut verbose_spools) {
        let _ = merge_by_line(&mut files, stderr, verbose_key);
    }
    first.sort_by_key(|&(line, ..)| line);
    let mut shown = [0u32; SLOTS];
    for (line, slot, text) in first {
        // Each source kept its first CAP + 1 of a reason, so the union holds
        // at least the global first CAP + 1: show CAP, then one note.
        shown[slot] += 1;
        let _ = match shown[slot] {
            n if n <= CAP => writeln!(stderr, "line {line}: {text}"),
            n if n == CAP + 1 => {
                let code = if slot == 0 {
                    "malformed"
                } else {
                    Reject::ALL[slot - 1].code()
                };
                writeln!(stderr, "(further {code} rows are not shown; --verbose or --rejects FILE lists them all)")
            }
            _ => Ok(()),
        };
    }
    Ok(tally)
}

/// The files under `spools`, flushed.
fn files(spools: &mut [Spool]) -> io::Result<Vec<&mut File>> {
    spools.iter_mut().try_for_each(|spool| spool.flush())?;
    Ok(spools.iter_mut().map(|spool| spool.get_mut()).collect())
}

/// K-way merge of spooled text lines, each starting (after `key_start`
/// strips a prefix) with its line number; each file is already in order and
/// is read from its start.
fn merge_by_line(
    files: &mut [&mut File],
    out: &mut dyn Write,
    key_start: fn(&[u8]) -> &[u8],
) -> io::Result<()> {
    use std::io::BufRead;
    let mut readers = Vec::with_capacity(files.len());
    for file in files.iter_mut() {
        file.seek(io::SeekFrom::Start(0))?;
        readers.push(io::BufReader::with_capacity(64 * 1024, &mut **file));
    }
    let key = |row: &[u8]| -> u64 {
        key_start(row)
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .fold(0u64, |n, &d| n * 10 + u64::from(d - b'0'))
    };
    let mut heads: Vec<Option<Vec<u8>>> = Vec::with_capacity(readers.len());
    for reader in &mut readers {
        let mut row = Vec::new();
        heads.push((reader.read_until(b'\n', &mut row)? > 0).then_some(row));
    }
    // Few sources (at most workers + 2): a linear scan beats a heap here.
    while let Some(next) = (0..heads.len())
        .filter(|&i| heads[i].is_some())
        .min_by_key(|&i| heads[i].as_deref().map(key))
    {
        let mut row = heads[next].take().expect("filtered on is_some");
        out.write_all(&row)?;
        row.clear();
        heads[next] = (readers[next].read_until(b'\n', &mut row)? > 0).then_some(row);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::amount::Amount;
    use crate::tx::Kind;

    #[test]
    fn tally_debug_names_its_reasons_and_one_row_is_a_row() {
        let mut tally = Tally::default();
        tally.count(Outcome::Malformed(Malformed::BadType));
        let text = format!("{tally:?}");
        for needle in ["applied: 0", "\"duplicate_tx\": 0", "\"bad_type\": 1"] {
            assert!(text.contains(needle), "{needle}: {text}");
        }
        let summary = tally.summary(Duration::from_secs(1));
        assert!(
            summary.starts_with("summary: 1 row read = 0 applied"),
            "{summary}"
        );
    }

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

    fn withdrawal(client: u16) -> Tx {
        Tx {
            kind: Kind::Withdrawal,
            client,
            tx: 9,
            amount: Amount::from_raw(20_000),
        }
    }

    /// Runs rows through logs (rows split among `sources` round-robin) and
    /// returns (stderr, rejects rows, tally).
    fn through_logs(
        verbosity: Verbosity,
        sources: usize,
        rows: &[(u64, Outcome)],
    ) -> (String, String, Tally) {
        let mut logs: Vec<EventLog> = (0..sources)
            .map(|_| EventLog::new(verbosity, true).unwrap())
            .collect();
        for (i, &(line, outcome)) in rows.iter().enumerate() {
            logs[i % sources]
                .record(line, outcome, b"raw,line")
                .unwrap();
        }
        let (mut err, mut rejects) = (Vec::new(), Vec::new());
        let tally = finish(logs, &mut err, Some(&mut rejects)).unwrap();
        (
            String::from_utf8(err).unwrap(),
            String::from_utf8(rejects).unwrap(),
            tally,
        )
    }

    #[test]
    fn diagnostics_are_capped_per_reason_and_identical_for_any_source_count() {
        let insufficient = Outcome::Rejected {
            tx: withdrawal(3),
            reason: Reject::InsufficientFunds,
        };
        let mut rows: Vec<(u64, Outcome)> = (1..=15).map(|n| (n, insufficient)).collect();
        rows.push((16, Outcome::Malformed(Malformed::BadType)));
        rows.push((17, Outcome::Applied));
        let (err, rejects, tally) = through_logs(Verbosity::Default, 1, &rows);
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines.len(), 12, "{err}");
        assert_eq!(
            lines[0],
            "line 1: withdrawal of 2.0000 for client 3 rejected: insufficient funds"
        );
        assert!(lines[10].contains("further insufficient_funds rows are not shown"));
        assert_eq!(
            lines[11],
            "line 16: malformed record: type is not deposit, withdrawal, dispute, resolve or chargeback"
        );
        assert_eq!(rejects.lines().count(), 16);
        assert!(rejects.starts_with(
            "1,insufficient_funds,withdrawal of 2.0000 exceeds the available funds,\"raw,line\"\n"
        ));
        assert_eq!(tally.rows_read(), 17);
        for sources in [2, 3, 7] {
            assert_eq!(
                through_logs(Verbosity::Default, sources, &rows),
                (err.clone(), rejects.clone(), tally)
            );
        }
        let (verbose, ..) = through_logs(Verbosity::Verbose, 1, &rows);
        assert_eq!(verbose.lines().count(), 16);
        for sources in [2, 5] {
            assert_eq!(through_logs(Verbosity::Verbose, sources, &rows).0, verbose);
        }
        let (quiet, ..) = through_logs(Verbosity::Quiet, 3, &rows);
        assert_eq!(quiet, "");
    }

    #[test]
    fn tally_identity_and_summary() {
        let mut tally = Tally::default();
        tally.count(Outcome::Applied);
        tally.count(Outcome::Applied);
        tally.count(Outcome::Rejected {
            tx: withdrawal(1),
            reason: Reject::UnknownTx,
        });
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
