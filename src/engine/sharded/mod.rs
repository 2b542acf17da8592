//! The sharded path (`--workers N`): `N` worker threads, each owning the
//! accounts and deposits of its clients in a [`Book`] and the claims on a
//! share of the tx ids (SPEC rule 2). Threads live here and in the
//! block-parallel reader (`parse/blocks.rs`); the ledger, the stores and the
//! reports know none.
//!
//! Records reach the workers in *blocks* ([`Parts`], `crate::batch`): each
//! worker's records (its clients', in file order), and each worker's claims
//! (the deposits and withdrawals whose id it owns, in file order). Parser
//! threads split the blocks they parse; the calling thread ([`Router`])
//! splits the rows it is handed one by one (`--parsers 0`, the push API)
//! and hands every block to every worker. No thread sees every row but the
//! one that parses it.
//!
//! A worker, in block order: makes its claims for each block as soon as it
//! arrives, and answers with the claims that repeat an id (few); then, once
//! every worker has answered for a block, applies its own records of it,
//! each deposit or withdrawal *fresh* unless a claim was repeated. The
//! claims on one id are made by one worker in file order, a client's
//! records are applied by one worker in file order, and a dispute can only
//! ever name a deposit of its own client: every outcome is the one the
//! single-threaded ledger gives.
//!
//! Every row's report goes to its source's [`EventLog`] (the router's for
//! malformed rows, the worker's for the rest), each in line order, and the
//! engine merges them by line: stdout, stderr and the rejects file are
//! byte-identical for every worker count.
//!
//! Waiting spins briefly, then parks (`crossbeam_utils::Backoff`, then
//! `Parker::park_timeout`): pure spinning collapses when threads outnumber
//! cores. `Parker`'s token makes a wake-up between "nothing to do" and
//! "park" impossible to lose; the timeout only bounds how long a wait takes
//! to notice an abort. At most [`in_flight_limit`] blocks are handed out and
//! not yet applied by every worker: the calling thread waits for the
//! slowest.
//!
//! Failure: a worker that panics or fails sets the abort flag on its way out
//! (a drop guard), which wakes everyone; the router notices at its next
//! hand-off, joins every thread, and returns the worker's error. A router
//! dropped before it finishes (an input error, say) aborts and joins its
//! workers. Nothing waits without a bounded park that re-checks the flag, so
//! nothing hangs.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Receiver, Sender};
use crossbeam_utils::sync::{Parker, Unparker};
use crossbeam_utils::Backoff;
use hdrhistogram::Histogram;

use super::config::{Config, MAX_WORKERS};
use super::drive::{Executor, Paused};
use super::error::Error;
use super::finished::Finished;
use crate::batch::{Claim, IdShards, Parts, Plan, Recycler};
use crate::cpu::{charged, Role, Wait, Waiting};
use crate::ledger::{claim, Book, Ledger, PREFETCH_AHEAD};
use crate::parse::{FastRows, Malformed};
use crate::report::{EventLog, Outcome};
use crate::store::TxIdSet;
use crate::tx::Tx;

/// How many claims a worker looks ahead to prefetch their ids' memory: with
/// scattered ids the cache misses then overlap (perf.md, "Sparse ids,
/// third step").
const LOOKAHEAD: usize = 8;

/// Blocks handed out and not yet applied by every worker, at most: 8 up to
/// two workers, four a worker from there, 32 from eight workers on. On 16
/// cores (100M rows, 3 interleaved rounds a pair) 32 took 2-7% less wall
/// than 8 in each of seven pairs of runs (15 cores, 6 parsers + 9 workers:
/// 1.104 against 1.187 s); on 2 cores 32 held 10-15 MB more and was no
/// faster with one worker or two, so few workers keep 8 (perf.md,
/// "Measured on 16 cores"). The counts between were not measured.
fn in_flight_limit(workers: usize) -> usize {
    (4 * workers).clamp(8, 32)
}

/// Longest single park; a wait re-checks the abort flag at least this often.
const PARK: Duration = Duration::from_millis(20);

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
        // Worker i gets core i + 1. Core 0 is left free for the calling
        // thread, which is not pinned itself (it also reads the input, and
        // the OS may place it where the page cache is warm).
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

/// Waits until `ready` gives something (or says what it waits for):
/// spins briefly, then parks; gives up when the run is aborted. The wait
/// is counted by kind (`cpu::Waiting`).
fn wait_for<T>(
    parker: &Parker,
    abort: &AtomicBool,
    mut ready: impl FnMut() -> Result<T, Wait>,
) -> Result<T, Aborted> {
    let backoff = Backoff::new();
    let mut waiting = Waiting::new();
    loop {
        match ready() {
            Ok(value) => return Ok(value),
            Err(kind) => waiting.pending(kind),
        }
        if abort.load(Ordering::Acquire) {
            return Err(Aborted);
        }
        if backoff.is_completed() {
            parker.park_timeout(PARK);
        } else {
            backoff.snooze();
        }
    }
}

/// The wait ended because the run is being torn down.
#[derive(Debug, PartialEq, Eq)]
struct Aborted;

/// What the router and the workers share: the abort flag, a way to wake
/// each of them, and the count of blocks in flight.
struct Shared {
    abort: AtomicBool,
    /// The router's unparker, then each worker's.
    wake: Vec<Unparker>,
    /// Blocks handed out and not yet applied by every worker.
    in_flight: AtomicUsize,
    /// At most this many ([`in_flight_limit`]).
    in_flight_limit: usize,
}

impl Shared {
    /// Sets the abort flag and wakes every thread.
    fn abort(&self) {
        self.abort.store(true, Ordering::Release);
        for thread in &self.wake {
            thread.unpark();
        }
    }

    /// Wakes every worker.
    fn wake_workers(&self) {
        for thread in &self.wake[1..] {
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

/// A block handed to every worker, with what they tell each other about it.
struct Block {
    parts: Parts,
    /// Each worker's answer for the claims it owns: the (worker, index) of
    /// each record whose claim repeated an id.
    repeats: Vec<OnceLock<Vec<(u32, u32)>>>,
    /// Workers that have answered.
    claimed: AtomicUsize,
    /// Workers that have applied their share.
    applied: AtomicUsize,
    /// When the block was handed out (its first record, on the calling
    /// thread): the latency sample.
    stamp: Instant,
}

/// What a worker is sent, in order.
enum Msg {
    Block(Arc<Block>),
    /// A checkpoint's barrier: once it has applied every block before, the
    /// worker lends its state to the router and waits for it back.
    Barrier,
    /// The last message.
    End,
}

/// A worker's state, lent to the router at a barrier and handed back at
/// the end: its index, its book, its share of the claimed ids, its log.
type Lent = (usize, Book, TxIdSet, EventLog);

/// What a worker hands back.
struct WorkerOutput {
    book: Book,
    ids: TxIdSet,
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

/// Splits the claimed ids among `workers` ([`IdShards`]: each worker's
/// share numbered its own way).
fn share_ids(ids: TxIdSet, workers: usize) -> Vec<TxIdSet> {
    if workers == 1 {
        return vec![ids];
    }
    let shards = IdShards::new(workers);
    let mut shares = vec![TxIdSet::default(); workers];
    for id in ids.iter() {
        let (owner, local) = shards.split(id);
        shares[owner].claim(local);
    }
    shares
}

/// The workers' shares of the claimed ids (in worker order), as one set.
fn union_of<'a>(mut shares: impl ExactSizeIterator<Item = &'a TxIdSet>) -> TxIdSet {
    let workers = shares.len();
    if workers == 1 {
        // A sole worker numbers its ids as the whole set does.
        return shares.next().cloned().unwrap_or_default();
    }
    let shards = IdShards::new(workers);
    let mut ids = TxIdSet::default();
    for (owner, share) in shares.enumerate() {
        ids.absorb_runs(share, |run| shards.global_run(owner, run));
    }
    ids
}

/// The calling thread's side: splits the rows it is handed into blocks,
/// hands blocks (its own and the parser threads') to every worker, and
/// logs malformed rows.
pub(crate) struct Router {
    workers: Workers,
    /// Each worker's queue.
    senders: Vec<Sender<Msg>>,
    /// The router's own parker; a worker that finishes a block wakes it.
    parker: Parker,
    /// The block being filled from rows handed over one by one.
    building: Parts,
    /// When its first record went in.
    stamp: Option<Instant>,
    /// Records that make such a block full.
    limit: usize,
    recycler: Recycler,
    log: EventLog,
    /// Workers lend their state here at a barrier (the sender is cloned
    /// into each worker)...
    lent: (mpsc::Sender<Lent>, mpsc::Receiver<Lent>),
    /// ...and get it back this way, one channel per worker.
    give_back: Vec<mpsc::Sender<Lent>>,
    sent: u64,
    notes: Vec<String>,
}

impl Router {
    /// Splits `ledger` for `config.workers` (>= 1) workers and starts them.
    pub fn start(config: &Config, ledger: Ledger) -> Result<Router, Error> {
        Router::start_with(config, ledger, Recycler::new())
    }

    /// [`Router::start`], the workers giving the splits they are done with
    /// to `recycler` (the parser threads' too).
    pub fn start_with(
        config: &Config,
        ledger: Ledger,
        recycler: Recycler,
    ) -> Result<Router, Error> {
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
        let ids = share_ids(ids, workers);
        let parker = Parker::new();
        let worker_parkers: Vec<Parker> = (0..workers).map(|_| Parker::new()).collect();
        let wake = std::iter::once(&parker)
            .chain(&worker_parkers)
            .map(|p| p.unparker().clone())
            .collect();
        let shared = Arc::new(Shared {
            abort: AtomicBool::new(false),
            wake,
            in_flight: AtomicUsize::new(0),
            in_flight_limit: in_flight_limit(workers),
        });
        let (cores, pin_text) = pin_plan(workers, config.pin);
        let plan = Plan {
            workers,
            keep_raw: config.keep_rejects,
        };
        let mut router = Router {
            workers: Workers {
                shared,
                handles: Vec::with_capacity(workers),
            },
            senders: Vec::with_capacity(workers),
            parker,
            building: recycler.take(plan, 0, config.batch),
            stamp: None,
            limit: config.batch,
            recycler: recycler.clone(),
            log,
            lent: mpsc::channel(),
            give_back: Vec::with_capacity(workers),
            sent: 0,
            notes: vec![format!("workers: {workers}, {pin_text}")],
        };
        let parts = worker_parkers
            .into_iter()
            .zip(cores)
            .zip(books.into_iter().zip(ids).zip(worker_logs));
        for (index, ((parker, core), ((book, ids), log))) in parts.enumerate() {
            let (send, queue) = unbounded();
            router.senders.push(send);
            let (give_back, returned) = mpsc::channel();
            router.give_back.push(give_back);
            let worker = WorkerState {
                index,
                book,
                ids,
                log,
                latency: latency_histogram(),
                lend: router.lent.0.clone(),
                returned,
                queue,
                pending: VecDeque::with_capacity(router.workers.shared.in_flight_limit + 2),
                recycler: recycler.clone(),
                shared: Arc::clone(&router.workers.shared),
            };
            let spawned = thread::Builder::new()
                .name(format!("worker-{index}"))
                .spawn(move || {
                    if let Some(core) = core {
                        core_affinity::set_for_current(core);
                    }
                    charged(Role::Worker, || worker.run(&parker))
                });
            match spawned {
                Ok(handle) => router.workers.handles.push(handle),
                // Dropping the router aborts and joins the workers started.
                Err(error) => return Err(Error::StartWorker(error)),
            }
        }
        Ok(router)
    }

    /// Puts a record found at `line` into the block being filled, handing
    /// that over first if the line does not fit it, and after if full.
    #[inline]
    fn push(&mut self, line: u64, tx: &Tx, raw: &[u8]) -> Result<(), Error> {
        let offset = self.offset_for(line, line)?;
        self.building.push(offset, tx, raw);
        self.seal_if_full()
    }

    /// The offset of `first` in the block being filled, where the lines
    /// `first..=last` are to go: a new block starts at `first` when the
    /// block is empty, or (handing it over first) when they do not fit its
    /// offsets.
    #[inline]
    fn offset_for(&mut self, first: u64, last: u64) -> Result<u32, Error> {
        let building = &self.building;
        if building.rows() > 0 {
            if let (Some(offset), Some(_)) = (building.offset(first), building.offset(last)) {
                return Ok(offset);
            }
            self.seal()?;
        }
        self.building.base = first;
        self.stamp = Some(Instant::now());
        Ok(0)
    }

    /// Hands the block being filled over once it holds `limit` records.
    #[inline]
    fn seal_if_full(&mut self) -> Result<(), Error> {
        match self.building.rows() >= self.limit {
            true => self.seal(),
            false => Ok(()),
        }
    }

    /// Hands the block being filled over, if it holds anything.
    fn seal(&mut self) -> Result<(), Error> {
        if self.building.rows() == 0 {
            return Ok(());
        }
        let next = self.recycler.take(self.building.plan(), 0, self.limit);
        let parts = std::mem::replace(&mut self.building, next);
        let stamp = self.stamp.take().unwrap_or_else(Instant::now);
        self.hand_out(parts, stamp)
    }

    /// Hands `parts` to every worker, once fewer than [`in_flight_limit`]
    /// blocks are in flight.
    fn hand_out(&mut self, parts: Parts, stamp: Instant) -> Result<(), Error> {
        let shared = Arc::clone(&self.workers.shared);
        let room = wait_for(&self.parker, &shared.abort, || {
            let room = shared.in_flight.load(Ordering::Acquire) < shared.in_flight_limit;
            room.then_some(()).ok_or(Wait::Room)
        });
        if room.is_err() {
            return Err(self.failure());
        }
        let workers = self.senders.len();
        let block = Arc::new(Block {
            parts,
            repeats: (0..workers).map(|_| OnceLock::new()).collect(),
            claimed: AtomicUsize::new(0),
            applied: AtomicUsize::new(0),
            stamp,
        });
        shared.in_flight.fetch_add(1, Ordering::AcqRel);
        self.sent += 1;
        self.tell_all(|| Msg::Block(Arc::clone(&block)))
    }

    /// Sends each worker a message and wakes it.
    fn tell_all(&mut self, msg: impl Fn() -> Msg) -> Result<(), Error> {
        for (worker, sender) in self.senders.iter().enumerate() {
            if sender.send(msg()).is_err() {
                return Err(self.failure());
            }
            self.workers.shared.wake[worker + 1].unpark();
        }
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

    /// Waits for every worker's state, lent at a barrier, in worker order.
    fn borrow_all(&mut self) -> Result<Vec<Lent>, Error> {
        let mut lent: Vec<Option<Lent>> = (0..self.senders.len()).map(|_| None).collect();
        let mut waiting = lent.len();
        while waiting > 0 {
            match self.lent.1.recv_timeout(PARK) {
                Ok(parts) => {
                    let index = parts.0;
                    lent[index] = Some(parts);
                    waiting -= 1;
                }
                Err(_) if self.workers.shared.abort.load(Ordering::Acquire) => {
                    return Err(self.failure());
                }
                Err(_) => {}
            }
        }
        Ok(lent.into_iter().flatten().collect())
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
        self.push(line, tx, raw)
    }

    /// A batch of common lines into the block being filled, each line
    /// sliced out of the input only when the rejects file needs it.
    fn apply_rows(&mut self, rows: &FastRows<'_>) -> Result<(), Error> {
        let txs = rows.txs();
        if self.building.plan().keep_raw || txs.is_empty() {
            for (i, tx) in txs.iter().enumerate() {
                self.push(rows.line(i), tx, rows.raw(i))?;
            }
            return Ok(());
        }
        let offset = self.offset_for(rows.line(0), rows.line(txs.len() - 1))?;
        self.building.push_run(offset, txs);
        self.seal_if_full()
    }

    /// A block a parser thread split: handed on as it is, after the rows
    /// before it.
    fn apply_block(&mut self, parts: Parts) -> Result<(), Error> {
        self.seal()?;
        if parts.rows() == 0 {
            return Ok(());
        }
        debug_assert_eq!(parts.plan(), self.building.plan());
        self.hand_out(parts, Instant::now())
    }

    fn malformed(&mut self, line: u64, reason: Malformed, raw: &[u8]) -> Result<(), Error> {
        self.log
            .record(line, Outcome::Malformed(reason), raw)
            .map_err(Error::WriteSpool)
    }

    fn pause(&mut self, f: &mut dyn FnMut(Paused<'_>) -> Result<(), Error>) -> Result<(), Error> {
        // The barrier: every record handed over is applied before a worker
        // lends its state.
        self.seal()?;
        self.tell_all(|| Msg::Barrier)?;
        let mut lent = self.borrow_all()?;
        let result = {
            let ids = union_of(lent.iter().map(|(_, _, ids, _)| ids));
            let mut books = Vec::with_capacity(lent.len());
            let mut logs = vec![&mut self.log];
            for (_, book, _, log) in lent.iter_mut() {
                books.push(&*book);
                logs.push(log);
            }
            f(Paused {
                ids: &ids,
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
        self.seal()?;
        self.tell_all(|| Msg::End)?;
        let outputs = self.workers.join()?;
        let mut latency = latency_histogram();
        let ids = union_of(outputs.iter().map(|output| &output.ids));
        let mut books = Vec::with_capacity(outputs.len());
        let mut logs = vec![std::mem::replace(&mut self.log, EventLog::empty())];
        for output in outputs {
            latency.add(&output.latency).expect("same bounds");
            books.push(output.book);
            logs.push(output.log);
        }
        let mut notes = std::mem::take(&mut self.notes);
        notes.push(format!("pipeline: {} blocks handed out", self.sent));
        Ok(Finished::new(ids, books, logs, Some(latency), notes))
    }
}

fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}

/// A worker's own state.
struct WorkerState {
    index: usize,
    book: Book,
    /// The claimed ids this worker owns, as it numbers them ([`IdShards`]).
    ids: TxIdSet,
    log: EventLog,
    latency: Histogram<u64>,
    /// At a barrier: the state goes to the router this way...
    lend: mpsc::Sender<Lent>,
    /// ...and comes back this way.
    returned: mpsc::Receiver<Lent>,
    queue: Receiver<Msg>,
    /// Messages received and not yet done with, oldest first (every block
    /// in it is claimed).
    pending: VecDeque<Msg>,
    /// Where a block's split goes once every worker is done with it.
    recycler: Recycler,
    shared: Arc<Shared>,
}

impl WorkerState {
    /// Runs until the end message, aborting the run if it fails or panics.
    fn run(mut self, parker: &Parker) -> Result<WorkerOutput, WorkerError> {
        let shared = Arc::clone(&self.shared);
        let mut guard = AbortGuard {
            shared: &shared,
            armed: true,
        };
        let output = self.work(parker);
        guard.armed = output.is_err();
        output
    }

    /// Claims every block as it arrives; applies them in order, each once
    /// every worker has claimed it.
    fn work(&mut self, parker: &Parker) -> Result<WorkerOutput, WorkerError> {
        let shared = Arc::clone(&self.shared);
        let workers = shared.wake.len() - 1;
        loop {
            let next = wait_for(parker, &shared.abort, || {
                while let Ok(msg) = self.queue.try_recv() {
                    if let Msg::Block(block) = &msg {
                        self.claim(block, workers);
                    }
                    self.pending.push_back(msg);
                }
                match self.pending.front() {
                    None => Err(Wait::Input),
                    Some(Msg::Block(block)) if block.claimed.load(Ordering::Acquire) < workers => {
                        Err(Wait::Peers)
                    }
                    Some(_) => self.pending.pop_front().ok_or(Wait::Input),
                }
            })
            .map_err(|Aborted| WorkerError::Aborted)?;
            match next {
                Msg::Block(block) => {
                    self.apply(&block)?;
                    if block.applied.fetch_add(1, Ordering::AcqRel) + 1 == workers {
                        shared.in_flight.fetch_sub(1, Ordering::AcqRel);
                        shared.wake[0].unpark();
                    }
                    // The last worker to let go of the block recycles it.
                    if let Some(block) = Arc::into_inner(block) {
                        self.recycler.give(block.parts);
                    }
                }
                Msg::Barrier => self.lend_until_returned()?,
                Msg::End => {
                    self.book.check_invariants();
                    return Ok(WorkerOutput {
                        book: std::mem::take(&mut self.book),
                        ids: std::mem::take(&mut self.ids),
                        log: std::mem::replace(&mut self.log, EventLog::empty()),
                        latency: self.latency.clone(),
                    });
                }
            }
        }
    }

    /// Makes the claims of `block` this worker owns, in file order, and
    /// answers with the repeated ones; the last to answer wakes everyone.
    fn claim(&mut self, block: &Block, workers: usize) {
        let parts = &block.parts;
        let repeats = match parts.claim_ranges() {
            Some(ranges) => {
                let mut repeated = Vec::new();
                for &range in ranges {
                    for (first, last) in parts.owned(range, self.index) {
                        self.ids.claim_range(first, last, &mut repeated);
                    }
                }
                parts.claimants(self.index, &repeated)
            }
            None => self.claim_listed(&parts.claims[self.index]),
        };
        let answered = block.repeats[self.index].set(repeats);
        debug_assert!(answered.is_ok(), "one answer per worker");
        if block.claimed.fetch_add(1, Ordering::AcqRel) + 1 == workers {
            self.shared.wake_workers();
        }
    }

    /// Makes `claims` (a block's that this worker owns, listed), in order:
    /// the records (worker, index) whose claims repeat an id.
    fn claim_listed(&mut self, claims: &[Claim]) -> Vec<(u32, u32)> {
        for early in claims.iter().take(LOOKAHEAD) {
            self.ids.prefetch(early.id, true);
        }
        let mut repeats = Vec::new();
        for (n, claim) in claims.iter().enumerate() {
            if let Some(ahead) = claims.get(n + LOOKAHEAD) {
                self.ids.prefetch(ahead.id, true);
            }
            if !self.ids.claim(claim.id) {
                repeats.push((claim.worker, claim.index));
            }
        }
        repeats
    }

    /// Applies this worker's records of `block`, every claim answered.
    fn apply(&mut self, block: &Block) -> Result<(), WorkerError> {
        self.latency
            .saturating_record(block.stamp.elapsed().as_nanos() as u64);
        let me = self.index as u32;
        let mut stale: Vec<u32> = block
            .repeats
            .iter()
            .filter_map(OnceLock::get)
            .flatten()
            .filter(|&&(worker, _)| worker == me)
            .map(|&(_, index)| index)
            .collect();
        stale.sort_unstable();
        let mut stale = stale.into_iter().peekable();
        let share = &block.parts.shares[self.index];
        // The sole worker claims as it applies (`Parts::claims_travel`).
        let sole = !block.parts.claims_travel();
        let txs = &share.txs;
        for (n, tx) in txs.iter().enumerate() {
            // Two-stage prefetch (`Book::prefetch`, `PREFETCH_AHEAD`).
            if let Some(ahead) = txs.get(n + PREFETCH_AHEAD) {
                self.book.prefetch(ahead, false, true);
                if sole && ahead.kind.claims_id() {
                    self.ids.prefetch(ahead.tx, true);
                }
            }
            if let Some(ahead) = txs.get(n + PREFETCH_AHEAD / 2) {
                self.book.prefetch(ahead, true, true);
            }
            let fresh = match sole {
                true => claim(&mut self.ids, tx),
                false => stale.next_if_eq(&(n as u32)).is_none(),
            };
            let outcome = Outcome::of(tx, self.book.apply(tx, fresh));
            if outcome == Outcome::Applied {
                self.log.count(outcome);
            } else {
                let line = block.parts.base + u64::from(share.lines[n]);
                self.log
                    .record_with(line, outcome, || share.raw(n))
                    .map_err(WorkerError::Spool)?;
            }
        }
        Ok(())
    }

    /// At a barrier: lends the state to the router and waits for it back
    /// (or for an abort).
    fn lend_until_returned(&mut self) -> Result<(), WorkerError> {
        let lent = (
            self.index,
            std::mem::take(&mut self.book),
            std::mem::take(&mut self.ids),
            std::mem::replace(&mut self.log, EventLog::empty()),
        );
        if self.lend.send(lent).is_err() {
            return Err(WorkerError::Aborted);
        }
        loop {
            match self.returned.recv_timeout(PARK) {
                Ok((_, book, ids, log)) => {
                    (self.book, self.ids, self.log) = (book, ids, log);
                    return Ok(());
                }
                Err(mpsc::RecvTimeoutError::Timeout)
                    if !self.shared.abort.load(Ordering::Acquire) => {}
                Err(_) => return Err(WorkerError::Aborted),
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

    /// Shared among the workers and joined again, a set of claimed ids is
    /// the same set: bitset leaves (ascending ids, OR-ed run by run), list
    /// leaves (scattered ids), and a share whose runs land in lists.
    #[test]
    fn claimed_ids_shared_among_workers_and_joined_are_the_same_set() {
        use super::{share_ids, union_of};
        use crate::store::TxIdSet;
        let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
        let ids: Vec<u32> = (0..200_000)
            .chain((0..3_000).map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u32
            }))
            .chain((5_000_000..5_000_600).map(|i| i * 3))
            .chain([u32::MAX - 511, u32::MAX])
            .collect();
        let mut set = TxIdSet::default();
        for &id in &ids {
            set.claim(id);
        }
        let expected: Vec<u32> = set.iter().collect();
        for workers in [1, 2, 3, 7, 16] {
            let shares = share_ids(set.clone(), workers);
            assert_eq!(shares.len(), workers);
            let joined = union_of(shares.iter());
            assert!(
                joined.iter().eq(expected.iter().copied()),
                "{workers} workers"
            );
        }
    }

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
        // Row by row, and from parser threads (whose block with the
        // malformed row is read row by row), at any block size.
        for (workers, parsers, block) in [(1, 0, 1), (3, 0, 1), (2, 2, 1_000), (1, 1, 1 << 20)] {
            let engine = EngineBuilder::new()
                .workers(workers)
                .parsers(parsers)
                .block_size(block)
                .strict(true);
            let data = data.clone();
            let error = bounded(move || engine.run_csv(Ledger::new(), &data[..]).map(drop));
            assert!(
                matches!(error, Err(Error::Strict { line: 20_002, .. })),
                "--workers {workers} --parsers {parsers}: {error:?}"
            );
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
