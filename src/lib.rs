//! An exact, sharded payments engine: deposits, withdrawals, disputes,
//! resolves and chargebacks in, every client's balances out.
//!
//! # Module map
//!
//! Data flows one way, and each module imports only those above it:
//!
//! | module | what it holds |
//! |---|---|
//! | [`cpu`] | CPU time per thread role, charged as threads end |
//! | `amount`, `tx` | the value types: [`Amount`], [`Tx`], [`Kind`] |
//! | `store` | the compact stores keyed by tx id (claimed ids, deposits) |
//! | `ledger` | SPEC's rules as a single-threaded state machine: [`Ledger`] |
//! | `parse` | bytes to rows: lines, fields, records, the block-parallel reader |
//! | `report` | outcomes, the [`Tally`], per-row logs merged in line order |
//! | `engine` | [`EngineBuilder`], the CSV loop, the sequential and sharded paths, [`Finished`] |
//! | [`durable`] | atomic files, the state file, checkpoints (the engine's supervisor) |
//! | [`cluster`] | one run across processes on timely-dataflow (feature `cluster`) |
//!
//! Threads live in `engine::sharded` (router and workers) and
//! `parse::blocks` (reader and parsers); the cluster's are timely's. The
//! binary (`src/bin/payments-engine/`: arguments, input opening, progress,
//! the commit sequence, the allocator's budget) is one user of this library
//! among others; nothing here knows it exists.
//!
//! Money is an [`Amount`]: a signed 64-bit count of ten-thousandths with
//! checked arithmetic. The ledger's whole state is a value, a [`Ledger`]:
//! start an engine from one, and take one back when it finishes.
//!
//! # Example
//!
//! Build an engine with two worker threads, submit transactions
//! from any source, finish (drain and join), then read the accounts, the
//! tally and the state:
//!
//! ```
//! use payments_engine::Engine;
//! use payments_engine::{Amount, Kind, Record, Tx};
//!
//! let amount = |text: &str| Amount::parse(text.as_bytes()).unwrap();
//! let mut engine = Engine::new(2)?;
//! engine.submit(Tx { kind: Kind::Deposit, client: 1, tx: 1, amount: amount("1.5") })?;
//! engine.submit(Tx { kind: Kind::Deposit, client: 2, tx: 2, amount: amount("2") })?;
//! // A record may carry the line it came from, for diagnostics.
//! let dispute = Tx { kind: Kind::Dispute, client: 1, tx: 1, amount: Amount::ZERO };
//! engine.submit(Record::at_line(dispute, 3))?;
//! // Rejected: tx 1 is client 1's, not client 2's.
//! engine.submit(Tx { kind: Kind::Dispute, client: 2, tx: 1, amount: Amount::ZERO })?;
//! let finished = engine.finish()?;
//!
//! let tally = finished.tally();
//! assert_eq!((tally.applied, tally.rejected(), tally.malformed()), (3, 1, 0));
//! let mut out = Vec::new();
//! finished.write_accounts(&mut out)?;
//! print!("{}", String::from_utf8_lossy(&out));
//! assert_eq!(
//!     out,
//!     b"client,available,held,total,locked\n\
//!       1,0.0000,1.5000,1.5000,false\n\
//!       2,2.0000,0.0000,2.0000,false\n"
//! );
//! let state = finished.into_state(); // start tomorrow's run from it
//! assert_eq!(state.claimed_ids().collect::<Vec<_>>(), [1, 2]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod amount;
mod batch;
#[cfg(feature = "cluster")]
pub mod cluster;
pub mod cpu;
pub mod durable;
mod engine;
mod ledger;
mod parse;
mod report;
mod store;
mod tx;

pub use amount::{Amount, AmountError};
pub use engine::{Diagnostics, Engine, EngineBuilder, Error, Finished, Measures, Record};
pub use ledger::{Account, Ledger, Reject, StateError};
pub use parse::{InputError, Malformed};
pub use report::{Tally, Verbosity, REJECTS_HEADER};
pub use store::Deposit;
pub use tx::{ClientId, Kind, Tx, TxId};

/// The line the CSV loop of any run in this process read last (0 before
/// the first): for a message that must be written without allocating, such
/// as an out-of-memory handler's. The engine updates it with one relaxed
/// store per row.
pub fn last_line_read() -> u64 {
    engine::LINE_REACHED.load(std::sync::atomic::Ordering::Relaxed)
}

/// Internals exposed only for the benches; not part of the API.
#[cfg(feature = "bench")]
#[doc(hidden)]
pub mod bench_support {
    pub use crate::durable::state::read as load_state;
    pub use crate::parse::Parser;
    pub use crate::store::TxIdSet;

    /// Writes `ledger` as a state file with no inputs recorded; its length.
    pub fn save_state(
        ledger: &crate::ledger::Ledger,
        out: &mut (impl std::io::Write + std::io::Seek),
    ) -> std::io::Result<u64> {
        let (ids, books) = ledger.parts();
        crate::durable::state::write(out, ids, &books, &[])
    }

    /// Rows of `data` handed out in file order by a block-parallel parse
    /// with `parsers` parser threads, counted on the calling thread.
    pub fn block_rows(data: &[u8], parsers: usize, block: usize) -> u64 {
        use crate::parse::{BlockOptions, BlockRows, RowSource};
        let options = BlockOptions {
            parsers,
            block,
            hashing: false,
            split: None,
            file: None,
        };
        std::thread::scope(|scope| {
            let (mut rows, _threads) = BlockRows::start(scope, data, options, None).unwrap();
            let mut count = 0;
            while let Some(row) = rows.next_row().unwrap() {
                count += u64::from(row.parsed.is_ok());
            }
            count
        })
    }
}
