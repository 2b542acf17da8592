//! The hand-off between the router and one worker: a *lane*, two bounded
//! queues of record batches, full ones forward and empty ones back. Its two
//! ends are two types ([`RouterEnd`], [`WorkerEnd`]), so that each thread
//! can only do its own half.
//!
//! A fixed number of batches ([`BATCHES`]) circulate per worker: the router
//! takes an empty one, fills it with up to its limit of records (by default
//! [`BATCH`]; tests use 1, 2 and 7), sends it; the worker applies it and gives
//! it back. Two `crossbeam_queue::ArrayQueue`s of that capacity carry them,
//! so a push never fails, nothing is allocated in steady state, and
//! backpressure is natural: when every batch is in flight the router waits
//! for one to come back. A lane never drops and never grows.
//!
//! Waiting spins briefly, then yields, then parks (`crossbeam_utils::Backoff`,
//! then `Parker::park_timeout`). Pure spinning collapses when threads outnumber
//! cores (8 to 30 times slower with 3 threads on 2 cores, measured here);
//! parking lets the thread that has work run. `Parker`'s token makes a wake-up
//! between "queue empty" and "park" impossible to lose; the timeout only bounds
//! how long a wait can take to notice an abort.
//!
//! When every thread has a core of its own, a waiter first yields for up to
//! a budget ([`lane`]'s `yield_budget`) before it parks: a parked worker costs the
//! router a futex wake-up per batch on its critical path (5% of the router's
//! time on the 20M-row file, perf.md). Oversubscribed, the budget is zero.
//!
//! End of input is an explicit message: the last batch sent has `end` set.

use std::cell::Cell;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_queue::ArrayQueue;
use crossbeam_utils::sync::{Parker, Unparker};
use crossbeam_utils::Backoff;

#[cfg(any(test, feature = "bench"))]
use crate::engine::config::BATCH;
use crate::engine::config::MAX_BATCH;
use crate::tx::Tx;

/// Batches in circulation per worker (the lane's capacity).
pub(crate) const BATCHES: usize = 4;
/// Longest single park; a wait re-checks the abort flag at least this often.
pub(crate) const PARK: Duration = Duration::from_millis(20);

/// A batch of records for one worker, in columns: what the worker reads for
/// every record (the record, its claim) apart from what it reads only for
/// the records it reports (the line number, the original line). The
/// router's stores to a batch wait for cache lines the worker read last,
/// on another core: 17 bytes a record cross over, not 32 (perf.md, "A
/// batch in columns").
#[derive(Debug)]
pub(crate) struct Batch {
    pub txs: Vec<Tx>,
    /// The outcome of rule 2's claim on each record's tx id (deposits,
    /// withdrawals); set by the router before the batch is sent.
    pub fresh: Vec<bool>,
    /// Each record's physical line number.
    pub lines: Vec<u64>,
    /// Each record's original line in `raw` (start, length), only with
    /// `--rejects`.
    raws: Vec<(u32, u16)>,
    /// Original lines, when the rejects file needs them.
    raw: Vec<u8>,
    /// When the router parsed the first record (the latency sample).
    pub stamp: Option<Instant>,
    /// The last batch: no more will come.
    pub end: bool,
    /// A checkpoint's barrier: once it has applied this batch, the worker
    /// lends its book and log to the router and waits for them back.
    pub barrier: bool,
    /// Records that make the batch full.
    limit: usize,
}

impl Batch {
    fn new(limit: usize) -> Box<Batch> {
        debug_assert!((1..=MAX_BATCH).contains(&limit));
        Box::new(Batch {
            txs: Vec::with_capacity(limit),
            fresh: Vec::with_capacity(limit),
            lines: Vec::with_capacity(limit),
            raws: Vec::new(),
            raw: Vec::new(),
            stamp: None,
            end: false,
            barrier: false,
            limit,
        })
    }

    /// Adds a record found at `line`, its claim `fresh`, and its original
    /// line if `keep_raw`.
    #[inline]
    pub fn push(&mut self, line: u64, tx: &Tx, fresh: bool, raw: Option<&[u8]>) {
        self.txs.push(*tx);
        self.fresh.push(fresh);
        self.lines.push(line);
        if let Some(raw) = raw {
            self.raws.push((self.raw.len() as u32, raw.len() as u16));
            self.raw.extend_from_slice(raw);
        }
    }

    /// Records in the batch.
    #[inline]
    pub fn len(&self) -> usize {
        self.txs.len()
    }

    /// True when no more records fit.
    #[inline]
    pub fn is_full(&self) -> bool {
        self.len() >= self.limit
    }

    /// The original line of record `n` (empty unless lines are kept).
    pub fn raw(&self, n: usize) -> &[u8] {
        let Some(&(start, len)) = self.raws.get(n) else {
            return &[];
        };
        let start = start as usize;
        self.raw
            .get(start..start + usize::from(len))
            .unwrap_or_default()
    }

    fn clear(&mut self) {
        self.txs.clear();
        self.fresh.clear();
        self.lines.clear();
        self.raws.clear();
        self.raw.clear();
        self.stamp = None;
        self.end = false;
        self.barrier = false;
    }
}

/// The wait ended because the run is being torn down.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Aborted;

/// What both ends of a lane share: its full and its empty batches.
struct Queues {
    full: ArrayQueue<Box<Batch>>,
    empty: ArrayQueue<Box<Batch>>,
}

/// Makes a lane with [`BATCHES`] empty batches of `batch` records ready for
/// the router, and returns its two ends, as rtrb's `RingBuffer::new` does:
/// the router's, which fills and sends, and the worker's, which receives
/// and recycles. Each end is `Send` but not `Sync`, so each has one owner;
/// `yield_budget` is how long a waiter yields before it parks (zero unless
/// every thread has a core of its own).
pub(crate) fn lane(
    wake_router: Unparker,
    wake_worker: Unparker,
    batch: usize,
    yield_budget: Duration,
) -> (RouterEnd, WorkerEnd) {
    let queues = Arc::new(Queues {
        full: ArrayQueue::new(BATCHES),
        empty: ArrayQueue::new(BATCHES),
    });
    for _ in 0..BATCHES {
        queues
            .empty
            .push(Batch::new(batch))
            .expect("capacity is BATCHES");
    }
    let router = RouterEnd {
        queues: Arc::clone(&queues),
        wake_worker,
        yield_budget,
        _one_owner: PhantomData,
    };
    let worker = WorkerEnd {
        queues,
        wake_router,
        yield_budget,
        _one_owner: PhantomData,
    };
    (router, worker)
}

/// The router's end of a lane: takes empty batches, sends full ones.
pub(crate) struct RouterEnd {
    queues: Arc<Queues>,
    wake_worker: Unparker,
    yield_budget: Duration,
    /// `Send`, not `Sync`: one thread owns this end.
    _one_owner: PhantomData<Cell<()>>,
}

impl RouterEnd {
    /// An empty batch to fill, waiting while all are in flight.
    pub fn take_empty(&self, parker: &Parker, abort: &AtomicBool) -> Result<Box<Batch>, Aborted> {
        wait(&self.queues.empty, parker, abort, self.yield_budget)
    }

    /// Hands a filled batch to the worker.
    pub fn send(&self, batch: Box<Batch>) {
        self.queues
            .full
            .push(batch)
            .expect("at most BATCHES batches exist per lane");
        self.wake_worker.unpark();
    }
}

/// The worker's end of a lane: receives full batches, recycles them.
pub(crate) struct WorkerEnd {
    queues: Arc<Queues>,
    wake_router: Unparker,
    yield_budget: Duration,
    /// `Send`, not `Sync`: one thread owns this end.
    _one_owner: PhantomData<Cell<()>>,
}

impl WorkerEnd {
    /// The next filled batch, in the order sent.
    pub fn recv(&self, parker: &Parker, abort: &AtomicBool) -> Result<Box<Batch>, Aborted> {
        wait(&self.queues.full, parker, abort, self.yield_budget)
    }

    /// Gives a processed batch back for reuse.
    pub fn recycle(&self, mut batch: Box<Batch>) {
        batch.clear();
        self.queues
            .empty
            .push(batch)
            .expect("at most BATCHES batches exist per lane");
        self.wake_router.unpark();
    }
}

/// Pops from `queue`: spin, then yield (for up to `yield_budget` once the
/// backoff is done), then park; gives up on abort.
fn wait<T>(
    queue: &ArrayQueue<T>,
    parker: &Parker,
    abort: &AtomicBool,
    yield_budget: Duration,
) -> Result<T, Aborted> {
    let backoff = Backoff::new();
    let mut yield_until = None;
    loop {
        if let Some(value) = queue.pop() {
            return Ok(value);
        }
        if abort.load(Ordering::Acquire) {
            return Err(Aborted);
        }
        if !backoff.is_completed() {
            backoff.snooze();
            continue;
        }
        let deadline = *yield_until.get_or_insert_with(|| Instant::now() + yield_budget);
        if Instant::now() < deadline {
            std::thread::yield_now();
        } else {
            parker.park_timeout(PARK);
        }
    }
}

/// The lane's hand-off alone, for the `lane/handoff` bench: sends `batches`
/// full batches of default size from this thread to a consumer thread that
/// sums their line numbers, and returns the sum. Not part of the API.
#[cfg(feature = "bench")]
pub fn handoff(batches: u64, tx: Tx) -> u64 {
    let (router, worker) = (Parker::new(), Parker::new());
    let abort = AtomicBool::new(false);
    let (sender, receiver) = lane(
        router.unparker().clone(),
        worker.unparker().clone(),
        BATCH,
        Duration::from_micros(200),
    );
    std::thread::scope(|scope| {
        let abort = &abort;
        let consumer = scope.spawn(move || {
            let mut seen = 0u64;
            loop {
                let batch = receiver.recv(&worker, abort).expect("no abort");
                seen += batch.lines.iter().sum::<u64>();
                let end = batch.end;
                receiver.recycle(batch);
                if end {
                    return seen;
                }
            }
        });
        for n in 0..batches {
            let mut batch = sender.take_empty(&router, abort).expect("no abort");
            for _ in 0..BATCH {
                batch.push(1, &tx, true, None);
            }
            batch.end = n + 1 == batches;
            sender.send(batch);
        }
        consumer.join().expect("the consumer does not panic")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::amount::Amount;
    use crate::tx::Kind;

    /// Adds a deposit found at `line` to `batch`.
    fn push(batch: &mut Batch, line: u64) {
        let tx = Tx {
            kind: Kind::Deposit,
            client: 1,
            tx: line as u32,
            amount: Amount::from_raw(1),
        };
        batch.push(line, &tx, true, None);
    }

    /// A lane's two ends with the router's and the worker's parkers and an
    /// abort flag.
    fn lane_for_test(batch: usize) -> (Parker, Parker, AtomicBool, RouterEnd, WorkerEnd) {
        let (router, worker) = (Parker::new(), Parker::new());
        let (sender, receiver) = lane(
            router.unparker().clone(),
            worker.unparker().clone(),
            batch,
            Duration::ZERO,
        );
        (router, worker, AtomicBool::new(false), sender, receiver)
    }

    #[test]
    fn full_lane_makes_the_router_wait_and_end_of_stream_arrives_last() {
        let (router, worker, abort, sender, receiver) = lane_for_test(BATCH);
        // Every batch in flight: the lane is full.
        for n in 0..BATCHES as u64 {
            let mut batch = sender.take_empty(&router, &abort).unwrap();
            push(&mut batch, n);
            sender.send(batch);
        }
        assert!(sender.queues.empty.is_empty() && sender.queues.full.is_full());
        // A full lane makes the producer wait; here it gives up on abort.
        abort.store(true, Ordering::Release);
        assert_eq!(sender.take_empty(&router, &abort).unwrap_err(), Aborted);
        abort.store(false, Ordering::Release);
        // Batches arrive in order, and wrap around through recycling.
        for round in 0..3u64 {
            for n in 0..BATCHES as u64 {
                let batch = receiver.recv(&worker, &abort).unwrap();
                assert_eq!(batch.lines[0], round * 100 + n);
                receiver.recycle(batch);
                let mut batch = sender.take_empty(&router, &abort).unwrap();
                assert!(
                    batch.len() == 0 && batch.raw(0).is_empty() && !batch.end,
                    "recycled batches are clean"
                );
                push(&mut batch, (round + 1) * 100 + n);
                batch.end = round == 2 && n == BATCHES as u64 - 1;
                sender.send(batch);
            }
        }
        let mut last = None;
        for _ in 0..BATCHES {
            last = Some(receiver.recv(&worker, &abort).unwrap());
        }
        assert!(last.unwrap().end);
    }

    #[test]
    fn empty_lane_makes_the_worker_wait_until_a_batch_or_abort() {
        let (router, worker, abort, sender, receiver) = lane_for_test(BATCH);
        std::thread::scope(|scope| {
            let abort = &abort;
            // The consumer owns its parker and its end (Send, not Sync).
            let consumer = scope.spawn(move || {
                let mut lines = Vec::new();
                loop {
                    let batch = receiver.recv(&worker, abort).unwrap();
                    lines.extend_from_slice(&batch.lines);
                    let end = batch.end;
                    receiver.recycle(batch);
                    if end {
                        return lines;
                    }
                }
            });
            // More batches than the lane holds: the producer waits for
            // recycled ones; the consumer parks when it catches up.
            for n in 0..50u64 {
                let mut batch = sender.take_empty(&router, abort).unwrap();
                for i in 0..BATCH as u64 {
                    push(&mut batch, n * BATCH as u64 + i);
                }
                batch.end = n == 49;
                if n % 7 == 0 {
                    std::thread::sleep(Duration::from_millis(2));
                }
                sender.send(batch);
            }
            let lines = consumer.join().unwrap();
            assert_eq!(lines, (0..50 * BATCH as u64).collect::<Vec<_>>());
        });
    }

    #[test]
    fn an_idle_worker_wakes_up_on_abort() {
        let (_router, worker, abort, _sender, receiver) = lane_for_test(BATCH);
        std::thread::scope(|scope| {
            let abort_ref = &abort;
            let wake = worker.unparker().clone();
            let waiter = scope.spawn(move || receiver.recv(&worker, abort_ref).map(|_| ()));
            std::thread::sleep(Duration::from_millis(30));
            abort.store(true, Ordering::Release);
            wake.unpark();
            assert_eq!(waiter.join().unwrap(), Err(Aborted));
        });
    }

    #[test]
    fn raw_lines_round_trip_through_the_arena() {
        let mut batch = Batch::new(BATCH);
        let tx = Tx {
            kind: Kind::Deposit,
            client: 1,
            tx: 1,
            amount: Amount::from_raw(1),
        };
        batch.push(1, &tx, true, Some(b"deposit,1,1,1"));
        batch.push(2, &tx, false, Some(b"withdrawal,1,2,1"));
        batch.push(3, &tx, true, Some(b""));
        assert_eq!(batch.raw(0), b"deposit,1,1,1");
        assert_eq!(batch.raw(1), b"withdrawal,1,2,1");
        assert_eq!(batch.raw(2), b"");
        assert_eq!(batch.raw(3), b"", "no record 3");
        assert_eq!(
            (batch.lines.as_slice(), batch.fresh.as_slice()),
            (&[1, 2, 3][..], &[true, false, true][..])
        );
    }
}
