//! The single-threaded path (`--workers 0`): one [`Ledger`] applies every
//! record on the calling thread, in order. The baseline every speed-up is
//! measured against, and the twin whose output every parallel path must
//! match byte for byte.

use super::config::Config;
use super::drive::{Executor, Paused};
use super::error::Error;
use super::finished::Finished;
use crate::ledger::{Ledger, Reject, PREFETCH_AHEAD};
use crate::parse::{FastRows, Malformed};
use crate::report::{EventLog, Outcome};
use crate::tx::{Tx, TxId};

pub(crate) struct Sequential {
    ledger: Ledger,
    log: EventLog,
    /// The ids [`Ledger::claim_run`] found claimed before, for the batch
    /// being applied.
    repeated: Vec<TxId>,
}

impl Sequential {
    pub fn new(config: &Config, ledger: Ledger) -> Result<Sequential, Error> {
        let log =
            EventLog::new(config.diagnostics, config.keep_rejects).map_err(Error::CreateSpool)?;
        Ok(Sequential {
            ledger,
            log,
            repeated: Vec::new(),
        })
    }

    /// [`Executor::apply_rows`], compiled once for each `INSERTS` and
    /// `CLAIMED` (the batch's ids claimed by [`Ledger::claim_run`]): the
    /// check a runtime flag took in the loop was 10 instructions a row
    /// for `INSERTS` and 3.7 for `CLAIMED` (callgrind), where ascending
    /// ids, the common case, need none.
    #[inline(always)]
    fn apply_rows_with<const INSERTS: bool, const CLAIMED: bool>(
        &mut self,
        rows: &FastRows<'_>,
    ) -> Result<(), Error> {
        let txs = rows.txs();
        // Rows with a full lookahead after them first, with no check of
        // whether the rows ahead exist; then the last few, which prefetch
        // what is left of their lookahead.
        let full = txs.len().saturating_sub(PREFETCH_AHEAD);
        for (i, window) in txs.windows(PREFETCH_AHEAD + 1).enumerate() {
            self.ledger
                .prefetch(&window[PREFETCH_AHEAD], false, INSERTS);
            self.ledger
                .prefetch(&window[PREFETCH_AHEAD / 2], true, INSERTS);
            self.apply_row(rows, i, &window[0], CLAIMED)?;
        }
        for (i, tx) in txs.iter().enumerate().skip(full) {
            if let Some(ahead) = txs.get(i + PREFETCH_AHEAD / 2) {
                self.ledger.prefetch(ahead, true, INSERTS);
            }
            self.apply_row(rows, i, tx, CLAIMED)?;
        }
        Ok(())
    }

    /// Applies row `i` of `rows` (its id claimed already if `claimed`) and
    /// counts or records its outcome.
    #[inline(always)]
    fn apply_row(
        &mut self,
        rows: &FastRows<'_>,
        i: usize,
        tx: &Tx,
        claimed: bool,
    ) -> Result<(), Error> {
        let result = if claimed {
            self.ledger.apply_claimed(tx, &self.repeated)
        } else {
            self.ledger.apply_ref(tx)
        };
        match result {
            Ok(()) => {
                self.log.count(Outcome::Applied);
                Ok(())
            }
            Err(reason) => self.reject(rows, i, tx, reason),
        }
    }

    /// Records row `i`'s rejection. Out of line: built in the loop, the
    /// outcome was copied through the stack on every rejected row (one in
    /// 26 of the realistic file's) in overlapping stores and loads that
    /// stalled (2% of `--workers 0`'s samples, `perf annotate`).
    #[inline(never)]
    fn reject(
        &mut self,
        rows: &FastRows<'_>,
        i: usize,
        tx: &Tx,
        reason: Reject,
    ) -> Result<(), Error> {
        self.log
            .record_with(rows.line(i), Outcome::of(tx, Err(reason)), || rows.raw(i))
            .map_err(Error::WriteSpool)
    }
}

impl Executor for Sequential {
    #[inline]
    fn apply(&mut self, line: u64, tx: &Tx, raw: &[u8]) -> Result<(), Error> {
        let outcome = Outcome::of(tx, self.ledger.apply_ref(tx));
        self.log
            .record(line, outcome, raw)
            .map_err(Error::WriteSpool)
    }

    /// With a lookahead: the memory the record [`PREFETCH_AHEAD`] rows on
    /// will read (its id's claim word, its account, its deposit's chunk,
    /// where a deposit goes if ids come scattered) starts loading now, so
    /// that its cache misses overlap with this row's work.
    fn apply_rows(&mut self, rows: &FastRows<'_>) -> Result<(), Error> {
        let claimed = self.ledger.claim_run(rows.txs(), &mut self.repeated);
        match (self.ledger.inserts_scattered(), claimed) {
            (true, true) => self.apply_rows_with::<true, true>(rows),
            (true, false) => self.apply_rows_with::<true, false>(rows),
            (false, true) => self.apply_rows_with::<false, true>(rows),
            (false, false) => self.apply_rows_with::<false, false>(rows),
        }
    }

    fn malformed(&mut self, line: u64, reason: Malformed, raw: &[u8]) -> Result<(), Error> {
        self.log
            .record(line, Outcome::Malformed(reason), raw)
            .map_err(Error::WriteSpool)
    }

    fn pause(&mut self, f: &mut dyn FnMut(Paused<'_>) -> Result<(), Error>) -> Result<(), Error> {
        let (ids, books) = self.ledger.parts();
        f(Paused {
            ids,
            books,
            logs: vec![&mut self.log],
        })
    }

    fn finish(self) -> Result<Finished, Error> {
        self.ledger.check_invariants();
        let (ids, books) = self.ledger.split(1);
        let notes = vec!["workers: 0 (the single-threaded path)".into()];
        Ok(Finished::new(ids, books, vec![self.log], None, notes))
    }
}
