//! [`Engine`]: the push API. Submit records from any source, one at a time,
//! then finish.

use super::builder::EngineBuilder;
use super::drive::Executor;
use super::error::Error;
use super::finished::Finished;
use super::sequential::Sequential;
use super::sharded::Router;
use crate::amount::AmountError;
use crate::ledger::Ledger;
use crate::parse::Malformed;
use crate::tx::Tx;

/// A transaction to submit, with the line number its diagnostics carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record {
    pub tx: Tx,
    /// Where the record came from (for diagnostics and the rejects file).
    /// `None` numbers it by its place among the records submitted, from 1.
    pub line: Option<u64>,
}

impl Record {
    /// A record found at `line` of some input.
    pub fn at_line(tx: Tx, line: u64) -> Record {
        Record {
            tx,
            line: Some(line),
        }
    }
}

impl From<Tx> for Record {
    fn from(tx: Tx) -> Record {
        Record { tx, line: None }
    }
}

/// The path an engine runs on.
enum Running {
    Sequential(Sequential),
    Sharded(Router),
}

/// A running engine: submit transactions from any source, then
/// [`finish`](Engine::finish).
///
/// Transactions are applied in the order submitted, with SPEC's rules:
/// `submit` returns once a record is queued, not when it is applied, so a
/// rejection is an outcome counted in the [`Finished`] tally, not an error.
/// Dropping an engine without finishing stops its workers.
///
/// ```
/// use payments_engine::Engine;
/// use payments_engine::{Amount, Kind, Tx};
///
/// let mut engine = Engine::new(2)?; // two worker threads
/// let tx = |kind, client, tx, amount: &str| Tx {
///     kind,
///     client,
///     tx,
///     amount: Amount::parse(amount.as_bytes()).unwrap_or(Amount::ZERO),
/// };
/// engine.submit(tx(Kind::Deposit, 1, 1, "10"))?;
/// engine.submit(tx(Kind::Deposit, 2, 2, "5"))?;
/// engine.submit(tx(Kind::Withdrawal, 1, 3, "4"))?;
/// engine.submit(tx(Kind::Dispute, 2, 2, ""))?;
/// engine.submit(tx(Kind::Withdrawal, 2, 4, "1"))?; // rejected: 5.0 is held
/// let finished = engine.finish()?;
///
/// assert_eq!(finished.tally().applied, 4);
/// assert_eq!(finished.tally().rejected(), 1);
/// finished.write_accounts(std::io::stdout())?;
/// // client,available,held,total,locked
/// // 1,6.0000,0.0000,6.0000,false
/// // 2,0.0000,5.0000,5.0000,false
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Engine {
    path: Running,
    strict: bool,
    /// Records submitted so far: the line number of one that has none.
    submitted: u64,
}

impl Engine {
    /// An engine with `workers` worker threads (0: the calling thread does
    /// the work) and an empty ledger; nothing kept for reports but counts.
    /// [`EngineBuilder`] has every other setting.
    pub fn new(workers: usize) -> Result<Engine, Error> {
        EngineBuilder::new().workers(workers).build(Ledger::new())
    }

    /// The configuration to build one with more settings.
    pub fn builder() -> EngineBuilder {
        EngineBuilder::new()
    }

    /// Submits one transaction (a [`Tx`] or a [`Record`] with its line).
    ///
    /// A deposit or withdrawal whose amount is not positive is malformed, as
    /// the CSV parser would have found it: counted, logged, and (in strict
    /// mode) an [`Error::Strict`]. An error means the engine has stopped: a
    /// worker failed, and every later call fails too.
    pub fn submit(&mut self, record: impl Into<Record>) -> Result<(), Error> {
        let Record { tx, line } = record.into();
        self.submitted += 1;
        let line = line.unwrap_or(self.submitted);
        if tx.kind.claims_id() && !tx.amount.is_positive() {
            let reason = Malformed::BadAmount(if tx.amount.is_negative() {
                AmountError::Syntax
            } else {
                AmountError::Zero
            });
            if self.strict {
                return Err(Error::Strict { line, reason });
            }
            return match &mut self.path {
                Running::Sequential(path) => path.malformed(line, reason, &[]),
                Running::Sharded(path) => path.malformed(line, reason, &[]),
            };
        }
        match &mut self.path {
            Running::Sequential(path) => path.apply(line, &tx, &[]),
            Running::Sharded(path) => path.apply(line, &tx, &[]),
        }
    }

    /// Drains every record in flight, stops the workers, and hands back the
    /// result.
    pub fn finish(self) -> Result<Finished, Error> {
        match self.path {
            Running::Sequential(path) => path.finish(),
            Running::Sharded(path) => path.finish(),
        }
    }
}

impl EngineBuilder {
    /// Starts an engine whose state is `ledger` (use [`Ledger::new`] for a
    /// first run). With workers, their threads start now.
    pub fn build(&self, ledger: Ledger) -> Result<Engine, Error> {
        self.config.validate()?;
        let path = match self.config.workers {
            0 => Running::Sequential(Sequential::new(&self.config, ledger)?),
            _ => Running::Sharded(Router::start(&self.config, ledger)?),
        };
        Ok(Engine {
            path,
            strict: self.config.strict,
            submitted: 0,
        })
    }
}
