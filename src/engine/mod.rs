//! The engine core: its configuration, its state, both execution paths, and
//! the result of a run. The binary is one user of it; an embedder is another.
//!
//! # Shape
//!
//! An [`EngineBuilder`] holds the configuration (workers, pinning, strict
//! mode, what to keep for reports, batch size). It builds an [`Engine`] from a
//! starting [`Ledger`](crate::Ledger) (empty, or one a previous run handed back), or runs a
//! whole CSV input in one call ([`EngineBuilder::run_csv`]). Either way the
//! run ends in a [`Finished`]: the accounts, the tally of outcomes, the
//! engine's own measures, the per-row diagnostics, and the ledger's state as a
//! value for the next run.
//!
//! # Two paths, one contract
//!
//! As in ripgrep's `search` / `search_parallel`, the two execution paths are
//! siblings behind one entry point, chosen by the worker count:
//!
//! * `workers == 0`: the sequential path (`sequential.rs`), every record
//!   applied on the calling thread by one [`Ledger`](crate::Ledger). The
//!   baseline every speed-up is measured against, kept forever.
//! * `workers >= 1`: the sharded path (`sharded/`): the calling thread
//!   claims tx ids in file order and routes each record by client to the
//!   worker thread that owns it, over a lane whose two ends are two types.
//!
//! Both implement one internal trait (`Executor`, in `drive.rs`: apply a
//! record, log a malformed one, pause at a barrier, finish), so the CSV loop
//! (`drive`) is written once and compiled once per path, and the push API
//! ([`Engine::submit`]) is a thin dispatch over the two. Their outputs are
//! byte-identical for every worker count: the tests prove it on fixtures
//! and generated streams. The cluster (`crate::cluster`) is a third sibling
//! with its own driver (timely's), and shares the ledger's rules, the
//! outcomes and the result type with these two.
//!
//! # Files
//!
//! `config.rs` (settings and limits) <- `builder.rs` (the builder and the
//! CSV entry points) and `push.rs` (the push API); `drive.rs` (the loop and
//! the `Executor` and `Supervise` traits) <- `sequential.rs`, `sharded/`;
//! `finished.rs` (the result) and `error.rs` below all of them. The
//! engine imports `parse`, `ledger`, `store` and `report`, never `durable`
//! or `cluster`: a supervisor (`durable`'s checkpoints) is handed in.

mod builder;
mod config;
mod drive;
mod error;
mod finished;
mod push;
mod sequential;
mod sharded;

pub use builder::EngineBuilder;
pub(crate) use drive::LINE_REACHED;
#[cfg(feature = "cluster")]
pub(crate) use drive::{block_size_text, EarlyRows};
pub(crate) use drive::{Executor, Paused, Supervise};
#[cfg(feature = "cluster")]
pub(crate) use error::chain as error_chain;
pub use error::Error;
pub use finished::{Diagnostics, Finished, Measures};
pub use push::{Engine, Record};
