//! A sharded-ready payments engine with exact decimal money.
//!
//! Data flows one way: bytes -> [`parse`] -> [`ledger`] -> [`report`].
//! [`app`] wires them together for the binary; [`cli`] is its arguments.

pub mod amount;
pub mod app;
pub mod cli;
pub mod ledger;
pub mod parse;
pub mod report;
pub mod store;
pub mod tx;

pub use amount::Amount;
pub use ledger::{Account, Ledger, Reject};
pub use tx::{ClientId, Kind, Tx, TxId};
