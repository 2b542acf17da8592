//! `--cluster`: one run across several processes, on timely-dataflow.
//!
//! Every process reads the same input file (the same path on shared
//! storage, or the same file on each host) and parses only its share of
//! it. The file is cut into blocks at fixed byte offsets (`k x block
//! size`), each moved forward to the next line start, so every process
//! finds the same cuts without reading anything but the bytes around them;
//! block 0 always holds the first non-blank line (the header, if any),
//! whose columns every process learns by reading that line. Timely worker
//! `w` of `W` (all processes together) parses blocks `w, w + W, ...`, so
//! all advance together.
//!
//! The dataflow, with a record's block as its timestamp and its line within
//! the block as its order:
//!
//! 1. deposits and withdrawals are exchanged by tx id; once timely says a
//!    block is complete at a claim stage, that stage sorts the block's
//!    records by line and makes SPEC rule 2's claims (blocks in order), so
//!    each id is claimed by its first record in file order;
//! 2. every record is exchanged by client; once a block is complete, the
//!    owning worker sorts its records by line and applies them to its
//!    book (the ledger, unchanged), blocks in order: a client's records
//!    in file order;
//! 3. at the end every worker sends its accounts, its rows that were not
//!    applied (rejected by the ledger, malformed to its parser) with their
//!    (block, line), and its blocks' line counts to worker 0 (on process
//!    0), which numbers the lines (a prefix sum of the counts) and builds
//!    the same [`Finished`](crate::Finished) a single-machine run gives: the same stdout,
//!    stderr and rejects file, byte for byte.
//!
//! Connections are made here, not by timely (whose own set-up prints on
//! stdout and retries forever): each process listens on its line of the
//! host file, connects to the processes before it, accepts the ones after
//! it, and checks with each that they run with the same settings, all
//! within `--connect-timeout`. A peer that goes away makes timely's network
//! threads panic; the panic hook turns that into one line on stderr and
//! exit status 1, so a dead process stops every other within moments.
//!
//! With `--state`, workers save checkpoints at block boundaries and
//! `--resume` goes on from the last one every process completed
//! (`restart.rs`).

mod auth;
mod connect;
mod dataflow;
mod error;
mod gather;
mod hello;
mod input;
mod options;
mod restart;
mod run;

pub use error::{Error, Stopped};
pub use options::{ClusterOptions, Event, Settings};
pub use restart::CheckpointOptions;
pub use run::run;
