//! The single-threaded path (`--workers 0`): one [`Ledger`] applies every
//! record on the calling thread, in order. The baseline every speed-up is
//! measured against, and the twin whose output every parallel path must
//! match byte for byte.

use super::config::Config;
use super::drive::{Executor, Paused};
use super::error::Error;
use super::finished::Finished;
use crate::ledger::Ledger;
use crate::parse::Malformed;
use crate::report::{EventLog, Outcome};
use crate::tx::Tx;

pub(crate) struct Sequential {
    ledger: Ledger,
    log: EventLog,
}

impl Sequential {
    pub fn new(config: &Config, ledger: Ledger) -> Result<Sequential, Error> {
        let log =
            EventLog::new(config.diagnostics, config.keep_rejects).map_err(Error::CreateSpool)?;
        Ok(Sequential { ledger, log })
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
