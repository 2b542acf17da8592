//! [`Finished`]: what a run hands back (accounts, tally, measures,
//! diagnostics, the ledger's state), and how it is written.

use std::io::{self, Write};

use hdrhistogram::Histogram;

use crate::ledger::{sorted_accounts, Account, Book, Ledger};
use crate::parse::Position;
use crate::report::{self, EventLog, Tally};
use crate::store::TxIdSet;
use crate::tx::ClientId;

/// What an engine run measured about itself, for `--verbose` and `--latency`.
#[derive(Clone, Debug, Default)]
pub struct Measures {
    /// Applied deposits kept for disputes.
    pub deposits: usize,
    /// Bytes held by the deposit stores.
    pub deposit_bytes: usize,
    /// Bytes held by the set of claimed tx ids.
    pub id_set_bytes: usize,
    /// Bytes held by the accounts tables.
    pub account_bytes: usize,
    /// Queue-to-applied latency samples (the sharded pipeline only).
    pub latency: Option<Histogram<u64>>,
    /// Lines for `--verbose` (workers, pinning, batches).
    pub notes: Vec<String>,
}

impl Measures {
    /// The whole ledger state's bytes: deposits, claimed ids, accounts.
    pub fn state_bytes(&self) -> usize {
        self.deposit_bytes + self.id_set_bytes + self.account_bytes
    }

    /// The latency percentiles in one line, in µs.
    pub fn latency_text(&self) -> String {
        match &self.latency {
            None => "latency: not measured on the single-threaded path (--workers 0)".into(),
            Some(h) if h.is_empty() => "latency: no samples".into(),
            Some(h) => {
                let us = |ns: u64| ns as f64 / 1_000.0;
                format!(
                    "latency (parse to applied, each block's first record, per worker, {} samples): \
                     p50 {:.1} us, p90 {:.1} us, p99 {:.1} us, p99.9 {:.1} us, max {:.1} us",
                    h.len(),
                    us(h.value_at_quantile(0.50)),
                    us(h.value_at_quantile(0.90)),
                    us(h.value_at_quantile(0.99)),
                    us(h.value_at_quantile(0.999)),
                    us(h.max()),
                )
            }
        }
    }
}

/// The per-row diagnostics of a run, one log per source (the calling
/// thread, each worker), each in its own line order until written.
pub struct Diagnostics {
    logs: Vec<EventLog>,
}

impl Diagnostics {
    /// Writes the kept per-row lines to `stderr` (best effort: a closed
    /// stderr is not an error) and, when rejects were kept, every malformed
    /// or rejected row to `rejects` (after its header, which the caller
    /// writes), all merged into line order: byte-identical for every worker
    /// count.
    pub fn write_to(
        self,
        stderr: &mut dyn Write,
        rejects: Option<&mut dyn Write>,
    ) -> io::Result<()> {
        report::finish(self.logs, stderr, rejects).map(drop)
    }
}

/// The result of a run: accounts, tally, measures, diagnostics, and the
/// ledger's state, in parts until [`Finished::into_state`] joins them.
pub struct Finished {
    accounts: Vec<(ClientId, Account)>,
    tally: Tally,
    pub(super) measures: Measures,
    diagnostics: Option<Diagnostics>,
    ids: TxIdSet,
    books: Vec<Book>,
    /// Where the CSV input ended (its size, and its hash when hashed).
    pub(super) input: Option<Position>,
}

impl Finished {
    /// Gathers a run's parts: the claimed ids, the books (one, or one per
    /// worker), the logs of every source.
    pub(crate) fn new(
        ids: TxIdSet,
        books: Vec<Book>,
        logs: Vec<EventLog>,
        latency: Option<Histogram<u64>>,
        notes: Vec<String>,
    ) -> Finished {
        let mut tally = Tally::default();
        for log in &logs {
            tally.add(&log.tally);
        }
        let (deposits, deposit_bytes) = books.iter().fold((0, 0), |(n, bytes), book| {
            (
                n + book.deposits().len(),
                bytes + book.deposits().heap_bytes(),
            )
        });
        let measures = Measures {
            deposits,
            deposit_bytes,
            id_set_bytes: ids.heap_bytes(),
            account_bytes: books.iter().map(Book::account_bytes).sum(),
            latency,
            notes,
        };
        Finished {
            accounts: sorted_accounts(&books),
            tally,
            measures,
            diagnostics: Some(Diagnostics { logs }),
            ids,
            books,
            input: None,
        }
    }

    /// A run gathered from several processes (`--cluster`): every account
    /// (in any order), one log of every row, in line order, and with a
    /// state file the whole ledger.
    #[cfg(feature = "cluster")]
    pub(crate) fn gathered(
        mut accounts: Vec<(ClientId, Account)>,
        log: EventLog,
        deposits: usize,
        notes: Vec<String>,
        input: Position,
        state: Option<(TxIdSet, Vec<Book>)>,
    ) -> Finished {
        accounts.sort_unstable_by_key(|&(client, _)| client);
        let (ids, books) = state.unwrap_or_default();
        Finished {
            accounts,
            tally: log.tally,
            measures: Measures {
                deposits,
                deposit_bytes: 0,
                id_set_bytes: 0,
                account_bytes: 0,
                latency: None,
                notes,
            },
            diagnostics: Some(Diagnostics { logs: vec![log] }),
            ids,
            books,
            input: Some(input),
        }
    }

    /// Adds one more source of rows: the rows before a checkpoint.
    pub(crate) fn add_source(&mut self, log: EventLog) {
        self.tally.add(&log.tally);
        if let Some(diagnostics) = &mut self.diagnostics {
            diagnostics.logs.push(log);
        }
    }

    /// Where the CSV input ended: its size in bytes (`offset`), its lines,
    /// and, for a run that could checkpoint, the xxh3-128 of all its bytes.
    pub fn input_end(&self) -> Option<Position> {
        self.input
    }

    /// Every account, in ascending client order.
    pub fn accounts(&self) -> &[(ClientId, Account)] {
        &self.accounts
    }

    /// Writes the accounts CSV (SPEC's output format) to `out`.
    pub fn write_accounts(&self, out: impl Write) -> io::Result<()> {
        report::write_accounts(&self.accounts, out)
    }

    /// Counts of every outcome: rows read = applied + rejected + malformed.
    pub fn tally(&self) -> &Tally {
        &self.tally
    }

    /// Memory, latency and notes about the run.
    pub fn measures(&self) -> &Measures {
        &self.measures
    }

    /// The per-row diagnostics, to write once; `None` once taken.
    pub fn take_diagnostics(&mut self) -> Option<Diagnostics> {
        self.diagnostics.take()
    }

    /// The ledger's state at the end of the run, in parts: the claimed ids
    /// and one book per worker (what the state file is written from).
    pub(crate) fn state_parts(&self) -> (&TxIdSet, Vec<&Book>) {
        (&self.ids, self.books.iter().collect())
    }

    /// The ledger's state at the end of the run: start the next run from it
    /// to continue where this one stopped.
    pub fn into_state(self) -> Ledger {
        Ledger::merge(self.ids, self.books)
    }
}
