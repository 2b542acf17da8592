//! A sharded-ready payments engine with exact decimal money.
//!
//! Data flows one way: bytes -> [`parse`] -> [`ledger`] -> [`report`].
//! [`app`] wires them together for the binary; [`cli`] is its arguments;
//! [`pipeline`] is the sharded, multi-threaded path (the only module with threads).

pub mod amount;
pub mod app;
pub mod cli;
pub mod ledger;
pub mod parse;
pub mod pipeline;
pub mod report;
pub mod store;
pub mod tx;

pub use amount::Amount;
pub use ledger::{Account, Ledger, Reject};
pub use tx::{ClientId, Kind, Tx, TxId};
