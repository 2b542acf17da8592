//! An exact, sharded payments engine: deposits, withdrawals, disputes,
//! resolves and chargebacks in, every client's balances out.
//!
//! Data flows one way: bytes -> [`parse`] -> [`engine`] -> (the sharded
//! pipeline's threads, or the calling thread) -> [`ledger`] -> [`report`].
//! The binary's `app` and `cli` modules (the default `cli` feature) open
//! files, draw progress and print; everything else is this library.
//!
//! Money is an [`Amount`]: a signed 64-bit count of ten-thousandths with
//! checked arithmetic. The ledger's whole state is a value, a [`Ledger`]:
//! start an engine from one, and take one back when it finishes.
//!
//! # Example
//!
//! Build an engine with two shards (worker threads), submit transactions
//! from any source, finish (drain and join), then read the accounts, the
//! tally and the state:
//!
//! ```
//! use payments_engine::engine::Engine;
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

pub mod amount;
#[cfg(feature = "cli")]
pub mod app;
#[cfg(feature = "cli")]
pub mod budget;
pub mod checkpoint;
#[cfg(feature = "cli")]
pub mod cli;
#[cfg(feature = "cli")]
pub use pipeline::cluster;
pub mod deposits;
pub mod durable;
pub mod engine;
pub mod ledger;
pub mod parse;
pub(crate) mod pipeline;
pub mod report;
pub mod state;
pub mod store;
pub mod tx;

pub use amount::Amount;
pub use engine::{Engine, EngineBuilder, Error, Finished, Record};
pub use ledger::{Account, Ledger, Reject};
pub use tx::{ClientId, Kind, Tx, TxId};

/// Limits of the engine's configuration.
pub mod limits {
    pub use crate::pipeline::{
        BATCH, DEFAULT_BLOCK, MAX_BATCH, MAX_BLOCK, MAX_PARSERS, MAX_WORKERS,
    };
}

/// Internals exposed only for the benches; not part of the API.
#[doc(hidden)]
pub mod bench_support {
    pub use crate::pipeline::handoff as lane_handoff;

    /// Rows of `data` handed out in file order by a block-parallel parse
    /// with `parsers` parser threads, counted on the calling thread.
    pub fn block_rows(data: &[u8], parsers: usize, block: usize) -> u64 {
        use crate::parse::RowSource;
        use crate::pipeline::{BlockOptions, BlockRows};
        let options = BlockOptions {
            parsers,
            block,
            hashing: false,
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
