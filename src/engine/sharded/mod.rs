//! The sharded path (`--workers N`): a router on the calling thread and `N`
//! worker threads. Threads live here and in the block-parallel reader
//! (`parse/blocks.rs`); the ledger, the stores and the reports know none.
//!
//! The calling thread is the *router* ([`Router`]): for each record it is
//! given, it applies the one rule that needs global file order (SPEC rule 2:
//! a deposit's or withdrawal's tx id is claimed by the first well-formed
//! record that uses it, whatever its client), and routes the record by client
//! to exactly one *worker*. Each worker owns the accounts and the deposits of
//! its clients in a [`Book`] and applies the ledger's rules unchanged. A
//! client's records reach its worker in file order, and a dispute can only
//! ever name a deposit of its own client, so the outcome of every record is
//! the one the single-threaded ledger gives it.
//!
//! Records travel in batches over one lane per worker (two bounded queues:
//! full batches forward, empty ones back; the router and the worker each hold
//! their own end); nothing is allocated per record.
//!
//! Every row's report goes to its source's [`EventLog`] (the router's for
//! malformed rows, the worker's for the rest), each in line order, and the
//! engine merges them by line: stdout, stderr and the rejects file are
//! byte-identical for every worker count. Every log is created before any
//! thread starts, so a failure to create one reads the same on both paths.
//!
//! Failure: a worker that panics or fails sets the abort flag on its way out
//! (a drop guard), which wakes everyone; the router notices at its next batch
//! hand-off, joins every thread, and returns the worker's error. A router
//! dropped before it finishes (an input error, say) aborts and joins its
//! workers. Nothing waits without a bounded park that re-checks the flag, so
//! nothing hangs.

mod lane;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_utils::sync::{Parker, Unparker};
use hdrhistogram::Histogram;

use super::config::{Config, MAX_WORKERS};
use super::drive::{Executor, Paused};
use super::error::Error;
use super::finished::Finished;
use crate::cpu::{charged, Role};
use crate::ledger::{claim, shard, Book, Ledger};
use crate::parse::{FastRows, Malformed};
use crate::report::{EventLog, Outcome};
use crate::store::TxIdSet;
use crate::tx::{Tx, TxId};

#[cfg(feature = "bench")]
pub use lane::handoff;
use lane::{lane, Aborted, Batch, RouterEnd, WorkerEnd, PARK};

/// How many records the router parses ahead of its tx-id claims. Each
/// parsed record's list or bitset word is prefetched; with scattered ids the claims'
/// cache misses then overlap instead of stalling the router one at a time
/// (perf.md, "Sparse ids, third step").
const LOOKAHEAD: usize = 8;

/// How many records of its batch a worker looks ahead to prefetch the
/// deposit store: the chunk header this far ahead, the chunk's entries half
/// as far (`DepositStore::prefetch`).
const PREFETCH_AHEAD: usize = 16;

/// How long an idle thread yields before parking, when not oversubscribed.
const YIELD_BUDGET: Duration = Duration::from_micros(200);

/// A new latency histogram: nanoseconds from 1 ns to 1 minute, 3 significant
/// digits, allocated once (recording never allocates).
fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid histogram bounds")
}

/// Which core each worker is pinned to, and a line saying so.
fn pin_plan(workers: usize, pin: bool) -> (Vec<Option<core_affinity::CoreId>>, String) {
    let none = vec![None; workers];
    if !pin {
        return (none, "not pinned (--no-pin)".into());
    }
    match core_affinity::get_core_ids() {
        // Worker i gets core i + 1. Core 0 is left free for the router,
        // which is not pinned itself (it also reads the input, and the OS
        // may place it where the page cache is warm).
        Some(ids) if ids.len() > workers => {
            let plan: Vec<_> = ids[1..=workers].iter().copied().map(Some).collect();
            let list: Vec<String> = ids[1..=workers]
                .iter()
                .map(|id| id.id.to_string())
                .collect();
            (plan, format!("pinned to cores {}", list.join(",")))
        }
        Some(ids) => (
            none,
            format!("not pinned: {} threads on {} cores", workers + 1, ids.len()),
        ),
        None => (none, "not pinned: core ids unavailable".into()),
    }
}

/// What the router and the workers share: the abort flag, and a way to
/// wake every one of them.
struct Shared {
    abort: AtomicBool,
    /// The router's unparker, then each worker's.
    wake: Vec<Unparker>,
}

impl Shared {
    /// Sets the abort flag and wakes every thread.
    fn abort(&self) {
        self.abort.store(true, Ordering::Release);
        for thread in &self.wake {
            thread.unpark();
        }
    }
}

/// Aborts the run when dropped, unless disarmed: a worker that returns an
/// error or unwinds from a panic wakes everyone on its way out.
struct AbortGuard<'a> {
    shared: &'a Shared,
    armed: bool,
}

impl Drop for AbortGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.shared.abort();
        }
    }
}

/// What a worker hands back.
struct WorkerOutput {
    book: Book,
    log: EventLog,
    latency: Histogram<u64>,
}

enum WorkerError {
    /// Stopped because something else failed.
    Aborted,
    Spool(std::io::Error),
}

type Worker = JoinHandle<Result<WorkerOutput, WorkerError>>;

/// The worker threads, with what they share. Dropped before they were
/// joined (an input error, a strict violation, an embedder's early return),
/// they are stopped and joined: no thread outlives its engine.
struct Workers {
    shared: Arc<Shared>,
    handles: Vec<Worker>,
}

impl Workers {
    /// Joins every worker: their outputs in worker order, or the first
    /// failure's cause ([`Error::Stopped`] if none is left to name).
    fn join(&mut self) -> Result<Vec<WorkerOutput>, Error> {
        // One unparker per worker, after the router's.
        let expected = self.shared.wake.len() - 1;
        let mut outputs = Vec::with_capacity(expected);
        let mut failure = None;
        for (index, handle) in self.handles.drain(..).enumerate() {
            match joined(index, handle) {
                Ok(output) => outputs.push(output),
                Err(cause) => failure = failure.or(cause),
            }
        }
        match failure {
            Some(error) => Err(error),
            None if outputs.len() < expected => Err(Error::Stopped),
            None => Ok(outputs),
        }
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        if !self.handles.is_empty() {
            self.shared.abort();
            for handle in self.handles.drain(..) {
                let _ = handle.join();
            }
        }
    }
}

/// The calling thread's side of the pipeline: claims tx ids, fills one batch
/// per worker, and hands full batches over.
pub(crate) struct Router {
    workers: Workers,
    /// The router's end of each worker's lane.
    lanes: Vec<RouterEnd>,
    /// The router's own parker; every lane's worker wakes it.
    parker: Parker,
    /// The batch being filled for each worker. Boxed because batches travel
    /// through the lanes' queues: a hand-off moves a pointer, not a batch.
    #[allow(clippy::vec_box)]
    batches: Vec<Box<Batch>>,
    claims: Claims,
    log: EventLog,
    /// Workers lend their book and log here at a barrier (the sender is
    /// cloned into each worker)...
    lent: (mpsc::Sender<Lent>, mpsc::Receiver<Lent>),
    /// ...and get them back this way, one channel per worker.
    give_back: Vec<mpsc::Sender<(Book, EventLog)>>,
    keep_raw: bool,
    sent: u64,
    notes: Vec<String>,
}

impl Router {
    /// Splits `ledger` for `config.workers` (>= 1) workers and starts them.
    pub fn start(config: &Config, ledger: Ledger) -> Result<Router, Error> {
        let workers = config.workers;
        assert!((1..=MAX_WORKERS).contains(&workers), "workers out of range");
        let new_log =
            || EventLog::new(config.diagnostics, config.keep_rejects).map_err(Error::CreateSpool);
        let log = new_log()?;
        let mut worker_logs = Vec::with_capacity(workers);
        for _ in 0..workers {
            worker_logs.push(new_log()?);
        }
        let (ids, books) = ledger.split(workers);

        let parker = Parker::new();
        let worker_parkers: Vec<Parker> = (0..workers).map(|_| Parker::new()).collect();
        let cores_available = thread::available_parallelism().map_or(1, |n| n.get());
        // Yield before parking only when every thread has a core of its own.
        let yield_budget = if workers < cores_available {
            YIELD_BUDGET
        } else {
            Duration::ZERO
        };
        let (lanes, ends): (Vec<RouterEnd>, Vec<WorkerEnd>) = worker_parkers
            .iter()
            .map(|p| {
                let wake_router = parker.unparker().clone();
                lane(
                    wake_router,
                    p.unparker().clone(),
                    config.batch,
                    yield_budget,
                )
            })
            .unzip();
        let wake = std::iter::once(&parker)
            .chain(&worker_parkers)
            .map(|p| p.unparker().clone())
            .collect();
        let shared = Arc::new(Shared {
            abort: AtomicBool::new(false),
            wake,
        });
        let (cores, pin_text) = pin_plan(workers, config.pin);
        let mut router = Router {
            workers: Workers {
                shared,
                handles: Vec::with_capacity(workers),
            },
            lanes,
            parker,
            batches: Vec::with_capacity(workers),
            claims: Claims::new(ids),
            log,
            lent: mpsc::channel(),
            give_back: Vec::with_capacity(workers),
            keep_raw: config.keep_rejects,
            sent: 0,
            notes: vec![format!("workers: {workers}, {pin_text}")],
        };
        let parts = worker_parkers
            .into_iter()
            .zip(ends)
            .zip(cores)
            .zip(books.into_iter().zip(worker_logs));
        for (index, (((parker, end), core), (book, log))) in parts.enumerate() {
            let shared = Arc::clone(&router.workers.shared);
            let lend = router.lent.0.clone();
            let (give_back, returned) = mpsc::channel();
            router.give_back.push(give_back);
            let spawned = thread::Builder::new()
                .name(format!("worker-{index}"))
                .spawn(move || {
                    let mut guard = AbortGuard {
                        shared: &shared,
                        armed: true,
                    };
                    if let Some(core) = core {
                        core_affinity::set_for_current(core);
                    }
                    let worker = WorkerState {
                        index,
                        book,
                        log,
                        latency: latency_histogram(),
                        lend,
                        returned,
                    };
                    let output = charged(Role::Worker, || worker.run(&end, &parker, &shared.abort));
                    guard.armed = output.is_err();
                    output
                });
            match spawned {
                Ok(handle) => router.workers.handles.push(handle),
                // Dropping the router aborts and joins the workers started.
                Err(error) => return Err(Error::StartWorker(error)),
            }
        }
        for lane in &router.lanes {
            // Every batch is empty at the start: this never waits.
            let batch = lane.take_empty(&router.parker, &router.workers.shared.abort);
            router
                .batches
                .push(batch.expect("a new lane has empty batches"));
        }
        Ok(router)
    }

    /// Puts a record into its worker's batch (`fresh`: its claim, when
    /// already made); returns the worker and whether the batch is full.
    #[inline]
    fn push(&mut self, line: u64, tx: &Tx, raw: &[u8], fresh: bool) -> (usize, bool) {
        let worker = shard(tx.client, self.batches.len());
        let batch = &mut self.batches[worker];
        if batch.len() == 0 {
            batch.stamp = Some(Instant::now());
        }
        batch.push(line, tx, fresh, self.keep_raw.then_some(raw));
        (worker, batch.is_full())
    }

    /// Hands worker `worker`'s full batch over, after making every pending
    /// claim, and takes an empty one (waiting while all are in flight).
    #[inline(never)]
    fn send_full(&mut self, worker: usize) -> Result<(), Error> {
        let shared = &self.workers.shared;
        if shared.abort.load(Ordering::Acquire) {
            return Err(self.failure());
        }
        self.claims.settle(&mut self.batches);
        let lane = &self.lanes[worker];
        let Ok(next) = lane.take_empty(&self.parker, &shared.abort) else {
            return Err(self.failure());
        };
        lane.send(std::mem::replace(&mut self.batches[worker], next));
        self.sent += 1;
        Ok(())
    }

    /// After an abort: joins every worker and returns the first one's error
    /// (the cause), or [`Error::Stopped`] once the workers are gone.
    #[cold]
    fn failure(&mut self) -> Error {
        self.workers.shared.abort();
        match self.workers.join() {
            Err(error) => error,
            Ok(_) => Error::Stopped,
        }
    }
}

/// A worker's result: its output, or `Err(Some(cause))` when it failed, or
/// `Err(None)` when it stopped because something else failed.
fn joined(index: usize, handle: Worker) -> Result<WorkerOutput, Option<Error>> {
    match handle.join() {
        Ok(Ok(output)) => Ok(output),
        Ok(Err(WorkerError::Aborted)) => Err(None),
        Ok(Err(WorkerError::Spool(error))) => Err(Some(Error::WriteSpool(error))),
        Err(payload) => Err(Some(Error::WorkerPanicked {
            worker: index,
            message: panic_text(&*payload),
        })),
    }
}

impl Executor for Router {
    #[inline]
    fn apply(&mut self, line: u64, tx: &Tx, raw: &[u8]) -> Result<(), Error> {
        // `fresh` is set by its claim, before the batch is sent.
        let (worker, full) = self.push(line, tx, raw, false);
        if tx.kind.claims_id() {
            let index = self.batches[worker].len() - 1;
            self.claims.add(tx.tx, (worker, index), &mut self.batches);
        }
        if full {
            self.send_full(worker)?;
        }
        Ok(())
    }

    /// A batch of common lines: each row to its worker's batch, its line
    /// sliced out of the input only when the rejects file needs it (it
    /// cost the router 4% of the run's samples on the 20M-row file, perf.md).
    /// The rows are known ahead, so each row's claim is made as it goes
    /// into its batch, its id prefetched [`LOOKAHEAD`] rows before: no
    /// queue of pending claims to walk back to (perf.md).
    fn apply_rows(&mut self, rows: &FastRows<'_>) -> Result<(), Error> {
        // Claims pending from rows before these are older in file order.
        self.claims.settle(&mut self.batches);
        let txs = rows.txs();
        let id = |tx: &Tx| tx.kind.claims_id().then_some(tx.tx);
        for early in txs.iter().take(LOOKAHEAD).filter_map(id) {
            self.claims.ids.prefetch(early);
        }
        for (i, tx) in txs.iter().enumerate() {
            if let Some(ahead) = txs.get(i + LOOKAHEAD).and_then(id) {
                self.claims.ids.prefetch(ahead);
            }
            let fresh = claim(&mut self.claims.ids, tx);
            let raw = if self.keep_raw { rows.raw(i) } else { &[] };
            let (worker, full) = self.push(rows.line(i), tx, raw, fresh);
            if full {
                self.send_full(worker)?;
            }
        }
        Ok(())
    }

    fn malformed(&mut self, line: u64, reason: Malformed, raw: &[u8]) -> Result<(), Error> {
        self.log
            .record(line, Outcome::Malformed(reason), raw)
            .map_err(Error::WriteSpool)
    }

    fn pause(&mut self, f: &mut dyn FnMut(Paused<'_>) -> Result<(), Error>) -> Result<(), Error> {
        // The barrier: every pending claim made, every worker's batch sent.
        self.claims.settle(&mut self.batches);
        for worker in 0..self.batches.len() {
            let shared = &self.workers.shared;
            let Ok(next) = self.lanes[worker].take_empty(&self.parker, &shared.abort) else {
                return Err(self.failure());
            };
            let mut batch = std::mem::replace(&mut self.batches[worker], next);
            batch.barrier = true;
            self.lanes[worker].send(batch);
            self.sent += 1;
        }
        // Each worker lends its book and log once it has applied its batch.
        let mut lent: Vec<Option<(Book, EventLog)>> =
            (0..self.batches.len()).map(|_| None).collect();
        let mut waiting = lent.len();
        while waiting > 0 {
            match self.lent.1.recv_timeout(PARK) {
                Ok((index, book, log)) => {
                    lent[index] = Some((book, log));
                    waiting -= 1;
                }
                Err(_) if self.workers.shared.abort.load(Ordering::Acquire) => {
                    return Err(self.failure());
                }
                Err(_) => {}
            }
        }
        let mut lent: Vec<(Book, EventLog)> = lent.into_iter().flatten().collect();
        let result = {
            let mut books = Vec::with_capacity(lent.len());
            let mut logs = vec![&mut self.log];
            for (book, log) in lent.iter_mut() {
                books.push(&*book);
                logs.push(log);
            }
            f(Paused {
                ids: &self.claims.ids,
                books,
                logs,
            })
        };
        for (give_back, parts) in self.give_back.iter().zip(lent) {
            // A worker that is gone has failed: the next hand-off says so.
            let _ = give_back.send(parts);
        }
        result
    }

    fn finish(mut self) -> Result<Finished, Error> {
        self.claims.settle(&mut self.batches);
        for (lane, mut batch) in self.lanes.iter().zip(self.batches.drain(..)) {
            batch.end = true;
            lane.send(batch);
            self.sent += 1;
        }
        let outputs = self.workers.join()?;
        let mut latency = latency_histogram();
        let mut books = Vec::with_capacity(outputs.len());
        let mut logs = vec![self.log];
        for output in outputs {
            latency.add(&output.latency).expect("same bounds");
            books.push(output.book);
            logs.push(output.log);
        }
        let mut notes = self.notes;
        notes.push(format!("pipeline: {} batches routed", self.sent));
        Ok(Finished::new(
            self.claims.ids,
            books,
            logs,
            Some(latency),
            notes,
        ))
    }
}

fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}

/// SPEC rule 2's claims, made up to [`LOOKAHEAD`] records behind parsing:
/// a record goes into its batch at once, its id's memory is prefetched, and
/// its claim, made in file order, fills in its `fresh` flag. Every pending
/// claim is made before a batch is sent.
pub(crate) struct Claims {
    ids: TxIdSet,
    /// (worker, index in its batch) of the records not claimed yet, oldest first.
    pending: VecDeque<(usize, usize)>,
}

impl Claims {
    fn new(ids: TxIdSet) -> Claims {
        Claims {
            ids,
            pending: VecDeque::with_capacity(LOOKAHEAD),
        }
    }

    /// Queues the claim of `id` for the record at `at`.
    #[inline]
    fn add(&mut self, id: TxId, at: (usize, usize), batches: &mut [Box<Batch>]) {
        self.ids.prefetch(id);
        if self.pending.len() == LOOKAHEAD {
            if let Some(oldest) = self.pending.pop_front() {
                self.claim(oldest, batches);
            }
        }
        self.pending.push_back(at);
    }

    /// Makes every pending claim.
    fn settle(&mut self, batches: &mut [Box<Batch>]) {
        while let Some(oldest) = self.pending.pop_front() {
            self.claim(oldest, batches);
        }
    }

    #[inline]
    fn claim(&mut self, (worker, index): (usize, usize), batches: &mut [Box<Batch>]) {
        let batch = &mut batches[worker];
        batch.fresh[index] = claim(&mut self.ids, &batch.txs[index]);
    }
}

/// A worker's own state: its clients' book, its log, its latency samples.
struct WorkerState {
    index: usize,
    book: Book,
    log: EventLog,
    latency: Histogram<u64>,
    /// At a barrier: the book and log go to the router this way...
    lend: mpsc::Sender<Lent>,
    /// ...and come back this way.
    returned: mpsc::Receiver<(Book, EventLog)>,
}

/// A worker's book and log, lent to the router at a barrier.
type Lent = (usize, Book, EventLog);

impl WorkerState {
    /// At a barrier: lends the book and the log to the router and waits for
    /// them back (or for an abort).
    fn lend_until_returned(&mut self, abort: &AtomicBool) -> Result<(), WorkerError> {
        let book = std::mem::take(&mut self.book);
        let log = std::mem::replace(&mut self.log, EventLog::empty());
        if self.lend.send((self.index, book, log)).is_err() {
            return Err(WorkerError::Aborted);
        }
        loop {
            match self.returned.recv_timeout(PARK) {
                Ok((book, log)) => {
                    self.book = book;
                    self.log = log;
                    return Ok(());
                }
                Err(mpsc::RecvTimeoutError::Timeout) if !abort.load(Ordering::Acquire) => {}
                Err(_) => return Err(WorkerError::Aborted),
            }
        }
    }

    /// Applies each batch in order until the end-of-stream batch.
    fn run(
        mut self,
        lane: &WorkerEnd,
        parker: &Parker,
        abort: &AtomicBool,
    ) -> Result<WorkerOutput, WorkerError> {
        loop {
            let batch = lane
                .recv(parker, abort)
                .map_err(|Aborted| WorkerError::Aborted)?;
            // (Stamped as its first record went in: an empty batch has none.)
            if let Some(stamp) = batch.stamp {
                self.latency
                    .saturating_record(stamp.elapsed().as_nanos() as u64);
            }
            let txs = &batch.txs;
            for (n, (tx, &fresh)) in txs.iter().zip(&batch.fresh).enumerate() {
                // Two-stage prefetch of the deposit store (its docs say why).
                if let Some(ahead) = txs.get(n + PREFETCH_AHEAD) {
                    self.book.prefetch(ahead, false, true);
                }
                if let Some(ahead) = txs.get(n + PREFETCH_AHEAD / 2) {
                    self.book.prefetch(ahead, true, true);
                }
                let outcome = Outcome::of(tx, self.book.apply(tx, fresh));
                // An applied record's line is not read: the router wrote
                // it, and it stays in the router's cache.
                if outcome == Outcome::Applied {
                    self.log.count(outcome);
                } else {
                    self.log
                        .record(batch.lines[n], outcome, batch.raw(n))
                        .map_err(WorkerError::Spool)?;
                }
            }
            let (end, barrier) = (batch.end, batch.barrier);
            lane.recycle(batch);
            if barrier {
                self.lend_until_returned(abort)?;
            }
            if end {
                self.book.check_invariants();
                return Ok(WorkerOutput {
                    book: self.book,
                    log: self.log,
                    latency: self.latency,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::Router;
    use crate::amount::Amount;
    use crate::engine::{EngineBuilder, Error, Executor};
    use crate::ledger::Ledger;
    use crate::parse::Parser;
    use crate::tx::{Kind, Tx};

    fn input(rows: u64) -> Vec<u8> {
        datagen::generate_vec(datagen::Config {
            rows,
            seed: 7,
            ..datagen::Config::default()
        })
    }

    /// Runs on another thread, failing the test after 60 s (a hang).
    fn bounded<T: Send + 'static>(run: impl FnOnce() -> T + Send + 'static) -> T {
        let (send, receive) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = send.send(run());
        });
        receive
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("the run hung: no result within 60 s")
    }

    /// A record no caller can hand the engine (the parser and
    /// [`Engine::submit`](crate::Engine::submit) make it malformed): a
    /// deposit of zero, on which the ledger panics as on any broken
    /// precondition. Routed by hand, it makes a worker panic, with no
    /// test-only code in the worker. Its tx id is its line, for the message.
    fn poison(client: u16, line: u64) -> Tx {
        Tx {
            kind: Kind::Deposit,
            client,
            tx: line as u32,
            amount: Amount::ZERO,
        }
    }

    /// What a worker's panic reads as, for the record at `line`.
    fn poisoned(line: u64) -> String {
        format!("must be positive: Tx {{ kind: Deposit, client: 7, tx: {line},")
    }

    /// Routes every row of `data`, the one at `line` replaced by poison,
    /// and returns the run's error.
    fn panics_at(workers: usize, line: u64, batch: usize, data: Vec<u8>) -> Error {
        let config = EngineBuilder::new()
            .workers(workers)
            .batch_size(batch)
            .config;
        bounded(move || {
            let mut router = Router::start(&config, Ledger::new())?;
            let mut parser = Parser::new(&data[..]);
            while let Some(row) = parser.next_row().map_err(Error::Input)? {
                match row.parsed {
                    _ if row.line == line => router.apply(line, &poison(7, line), b"")?,
                    Ok(tx) => router.apply(row.line, &tx, b"")?,
                    Err(reason) => router.malformed(row.line, reason, b"")?,
                }
            }
            router.finish().map(drop)
        })
        .expect_err("a worker panicked: the run must fail")
    }

    #[test]
    fn a_worker_panic_early_in_a_large_input_fails_the_run_without_hanging() {
        // 300k rows: the router soon waits on the dead worker's full lane.
        for (workers, batch) in [(1, 1024), (2, 1024), (3, 7), (8, 1)] {
            let error = panics_at(workers, 10, batch, input(300_000));
            let text = error.to_string();
            assert!(matches!(error, Error::WorkerPanicked { .. }), "{text}");
            assert!(text.contains("panicked: ledger precondition"), "{text}");
            assert!(text.contains(&poisoned(10)), "{text}");
        }
    }

    #[test]
    fn a_worker_panic_on_the_last_line_fails_the_run() {
        let last_line = 5_001; // the header is line 1
        for batch in [1, 2, 1024] {
            let error = panics_at(4, last_line, batch, input(5_000));
            assert!(error.to_string().contains(&poisoned(last_line)), "{error}");
        }
    }

    /// What `Engine::submit` reaches: a failed worker makes the router's
    /// next hand-off (or its finish) return the panic, and every later call
    /// `Stopped`.
    #[test]
    fn after_a_worker_panic_the_router_reports_it_once_then_stopped() {
        let result = bounded(|| {
            let config = EngineBuilder::new().workers(2).batch_size(2).config;
            let mut router = Router::start(&config, Ledger::new()).unwrap();
            let mut errors = Vec::new();
            for id in 1..=10_000u32 {
                let line = u64::from(id);
                let tx = match id {
                    3 => poison(7, line),
                    _ => Tx {
                        kind: Kind::Deposit,
                        client: 7,
                        tx: id,
                        amount: Amount::from_raw(1),
                    },
                };
                if let Err(error) = router.apply(line, &tx, b"") {
                    errors.push(error.to_string());
                }
            }
            (errors, router.finish().map(drop).map_err(|e| e.to_string()))
        });
        let (errors, finished) = result;
        assert!(errors[0].contains(&poisoned(3)), "{errors:?}");
        assert!(
            errors[1..].iter().all(|e| e.contains("stopped")),
            "{errors:?}"
        );
        assert!(finished.unwrap_err().contains("stopped"));
    }

    /// A strict violation after many batches ends the run without hanging.
    #[test]
    fn a_strict_violation_mid_run_ends_the_run() {
        let mut data = input(20_000);
        data.extend_from_slice(b"deposit,1,x,1\n");
        for workers in [1, 3] {
            let engine = EngineBuilder::new().workers(workers).strict(true);
            let data = data.clone();
            let error = bounded(move || engine.run_csv(Ledger::new(), &data[..]).map(drop));
            assert!(matches!(error, Err(Error::Strict { line: 20_002, .. })));
        }
    }

    /// A router dropped mid-run stops and joins its workers: once the drop
    /// returns, no worker holds the shared state any more.
    #[test]
    fn a_router_dropped_mid_run_joins_its_workers() {
        let config = EngineBuilder::new().workers(3).batch_size(2);
        let mut router = Router::start(&config.config, Ledger::new()).unwrap();
        let shared = std::sync::Arc::downgrade(&router.workers.shared);
        for id in 1..=100u32 {
            let tx = Tx {
                kind: Kind::Deposit,
                client: id as u16,
                tx: id,
                amount: Amount::from_raw(1),
            };
            router.apply(u64::from(id), &tx, b"").unwrap();
        }
        assert!(shared.upgrade().is_some(), "the workers are running");
        bounded(move || drop(router));
        assert!(shared.upgrade().is_none(), "every worker was joined");
    }
}
