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
//! the block as its order, moves every record once:
//!
//! 1. the worker that parses a block splits its records into one batch
//!    per worker, by client, and the deposits' and withdrawals' tx ids into
//!    one batch of claims per worker, by id; each batch is one timely
//!    record, in columns (`columns.rs`), so timely's per-record work is
//!    paid once a block per worker;
//! 2. once timely says a block is complete at the claim stage, each id's
//!    owner makes SPEC rule 2's claims (blocks in order, a block's claims
//!    in line order, so each id is claimed by its first record in file
//!    order) and tells the worker that applies a record only when its id
//!    was already claimed;
//! 3. once a block is complete at the apply stage (its records and the
//!    claim stage's answers), the client's worker applies its records to
//!    its book (the ledger, unchanged), blocks in order: a client's
//!    records in file order;
//! 4. at the end every worker sends its accounts, its rows that were not
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
mod columns;
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
pub use options::{ClusterOptions, Event, Settings, DEFAULT_BLOCK};
pub use restart::CheckpointOptions;
pub use run::run;
