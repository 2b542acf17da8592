//! The sharded pipeline: the only module that knows threads exist.
//!
//! The calling thread is the *router*: it parses, applies the one rule that
//! needs global file order (SPEC rule 2: a deposit's or withdrawal's tx id is
//! claimed by the first well-formed record that uses it, whatever its client),
//! and routes every well-formed record by client to exactly one *worker*. Each
//! worker owns the accounts and the deposits of its clients in a
//! [`Book`] and applies the ledger's rules unchanged.
//! A client's records reach its worker in file order, and a dispute can only
//! ever name a deposit of its own client, so the outcome of every record is
//! the one the single-threaded ledger gives it.
//!
//! Every row's report goes to its source's [`EventLog`] (the router's for
//! malformed rows, the worker's for the rest), each in line order, and
//! [`report::finish`](crate::report::finish) merges them: stdout, stderr and
//! the rejects file are byte-identical for every worker count.
//!
//! Failure: a worker that panics or fails sets the abort flag on its way out
//! (a drop guard), which wakes everyone; the router stops, every thread is
//! joined, and the run ends with one error and no accounts. Nothing waits
//! without a bounded park that re-checks the flag, so nothing hangs.

pub mod ring;

use std::collections::VecDeque;
use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use crossbeam_utils::sync::Parker;
use hdrhistogram::Histogram;

use crate::app::{strict_check, EngineRun, Measures, Options};
use crate::ledger::{sorted_accounts, Book};
use crate::parse::Parser;
use crate::report::{EventLog, Outcome};
use crate::store::TxIdSet;
use crate::tx::{ClientId, TxId};

use ring::{Aborted, Batch, Item, Ring};

/// The largest worker count accepted (a limit on threads and ring memory).
pub const MAX_WORKERS: usize = 256;

/// How many records the router parses ahead of its tx-id claims. Each
/// parsed record's table slot is prefetched; with scattered ids the claims'
/// cache misses then overlap instead of stalling the router one at a time
/// (perf.md, "Sparse ids, third step").
const LOOKAHEAD: usize = 8;

/// How long an idle thread yields before parking, when not oversubscribed.
const YIELD_BUDGET: Duration = Duration::from_micros(200);

/// The worker that owns `client`. Fibonacci hashing spreads clients that
/// share a residue (every id a multiple of the worker count, say) evenly.
#[inline]
pub fn shard(client: ClientId, workers: usize) -> usize {
    let hash = u64::from(client).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    ((hash >> 32) as usize) % workers
}

/// A new latency histogram: nanoseconds from 1 ns to 1 minute, 3 significant
/// digits, allocated once (recording never allocates).
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid histogram bounds")
}

/// Which core each worker is pinned to, and a line saying so.
fn pin_plan(workers: usize, pin: bool) -> (Vec<Option<core_affinity::CoreId>>, String) {
    let none = vec![None; workers];
    if !pin {
        return (none, "not pinned (--no-pin)".into());
    }
    match core_affinity::get_core_ids() {
        // The router keeps the first core; worker i gets core i + 1.
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

/// Sets the abort flag and wakes every thread when dropped, unless disarmed.
struct AbortGuard<'a> {
    abort: &'a AtomicBool,
    rings: &'a [Ring],
    armed: bool,
}

impl AbortGuard<'_> {
    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for AbortGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.abort.store(true, Ordering::Release);
            for ring in self.rings {
                ring.wake_all();
            }
        }
    }
}

/// What a worker hands back.
struct WorkerOutput {
    book: Book,
    log: EventLog,
    latency: Histogram<u64>,
}

/// Runs the pipeline with `workers` (>= 1) worker threads.
pub fn run(source: impl Read, options: &Options, workers: usize) -> anyhow::Result<EngineRun> {
    assert!((1..=MAX_WORKERS).contains(&workers), "workers out of range");
    let abort = AtomicBool::new(false);
    let router_parker = Parker::new();
    let worker_parkers: Vec<Parker> = (0..workers).map(|_| Parker::new()).collect();
    let cores_available = thread::available_parallelism().map_or(1, |n| n.get());
    // Yield before parking only when every thread has a core of its own.
    let yield_budget = if workers < cores_available {
        YIELD_BUDGET
    } else {
        Duration::ZERO
    };
    let rings: Vec<Ring> = worker_parkers
        .iter()
        .map(|p| {
            Ring::new(router_parker.unparker().clone(), p.unparker().clone())
                .with_yield(yield_budget)
        })
        .collect();
    let (cores, pin_text) = pin_plan(workers, options.pin);
    let mut notes = vec![format!("workers: {workers}, {pin_text}")];

    thread::scope(|scope| -> anyhow::Result<EngineRun> {
        let mut handles = Vec::with_capacity(workers);
        for (index, (parker, core)) in worker_parkers.into_iter().zip(cores).enumerate() {
            let (ring, abort, rings) = (&rings[index], &abort, &rings[..]);
            let spawned = thread::Builder::new()
                .name(format!("worker-{index}"))
                .spawn_scoped(scope, move || {
                    let guard = AbortGuard {
                        abort,
                        rings,
                        armed: true,
                    };
                    if let Some(core) = core {
                        core_affinity::set_for_current(core);
                    }
                    let output = work(index, ring, &parker, abort, options);
                    if output.is_ok() {
                        guard.disarm();
                    }
                    output
                });
            match spawned {
                Ok(handle) => handles.push(handle),
                Err(error) => {
                    abort_all(abort, rings);
                    return Err(error).context("starting a worker thread");
                }
            }
        }

        let routed = {
            let guard = AbortGuard {
                abort: &abort,
                rings: &rings,
                armed: true,
            };
            let routed = route(source, options, &rings, &router_parker, &abort);
            if routed.is_ok() {
                guard.disarm();
            }
            routed
        };

        let mut outputs = Vec::with_capacity(workers);
        let mut failure = None;
        for (index, handle) in handles.into_iter().enumerate() {
            match handle.join() {
                Ok(Ok(output)) => outputs.push(output),
                // Stopped because something else failed.
                Ok(Err(WorkerError::Aborted)) => {}
                Ok(Err(WorkerError::Io(error))) => {
                    failure.get_or_insert(anyhow!(error).context(format!("worker {index} failed")));
                }
                Err(payload) => {
                    failure.get_or_insert(anyhow!(
                        "worker {index} panicked: {}",
                        panic_text(&*payload)
                    ));
                }
            }
        }
        // A worker's failure is the cause of the router's abort, if both.
        if let Some(failure) = failure {
            return Err(failure);
        }
        let router = routed?;

        let mut latency = latency_histogram();
        for output in &outputs {
            latency.add(&output.latency).expect("same bounds");
        }
        notes.push(format!("pipeline: {} batches routed", router.batches));
        let books = || outputs.iter().map(|output| &output.book);
        Ok(EngineRun {
            accounts: sorted_accounts(books()),
            measures: Measures::new(books(), router.id_set_bytes, Some(latency), notes),
            logs: std::iter::once(router.log)
                .chain(outputs.into_iter().map(|o| o.log))
                .collect(),
        })
    })
}

fn abort_all(abort: &AtomicBool, rings: &[Ring]) {
    abort.store(true, Ordering::Release);
    for ring in rings {
        ring.wake_all();
    }
}

fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}

/// What the router hands back.
struct RouterOutput {
    log: EventLog,
    id_set_bytes: usize,
    batches: u64,
}

/// The router: parse, claim tx ids, batch by worker, send; then end-of-stream.
fn route(
    source: impl Read,
    options: &Options,
    rings: &[Ring],
    parker: &Parker,
    abort: &AtomicBool,
) -> anyhow::Result<RouterOutput> {
    let aborted = |_: Aborted| anyhow!("stopped: a worker failed");
    let workers = rings.len();
    let keep_raw = options.rejects.is_some();
    let mut log = EventLog::new(options.verbosity, keep_raw).context("creating a spool file")?;
    let mut claims = Claims::default();
    let mut parser = Parser::new(source);
    let mut batches = Vec::with_capacity(workers);
    for ring in rings {
        batches.push(ring.take_empty(parker, abort).map_err(aborted)?);
    }
    let mut sent = 0u64;
    while let Some(row) = parser.next_row().context("reading input")? {
        let tx = match row.parsed {
            Ok(tx) => tx,
            Err(reason) => {
                strict_check(options, row.line, reason)?;
                log.record(row.line, None, Outcome::Malformed(reason), row.raw)
                    .context("writing a spool file")?;
                continue;
            }
        };
        let worker = shard(tx.client, workers);
        let batch = &mut batches[worker];
        if batch.items.is_empty() {
            batch.stamp = Some(Instant::now());
        }
        let (raw_start, raw_len) = if keep_raw {
            let start = batch.raw.len() as u32;
            batch.raw.extend_from_slice(row.raw);
            (start, row.raw.len() as u16)
        } else {
            (0, 0)
        };
        batch.items.push(Item {
            line: row.line,
            tx,
            fresh: false, // set by its claim, before the batch is sent
            raw_start,
            raw_len,
        });
        let full = batch.is_full();
        if tx.kind.moves_money() {
            let index = batch.items.len() - 1;
            claims.add(tx.tx, (worker, index), &mut batches);
        }
        if full {
            if abort.load(Ordering::Acquire) {
                return Err(aborted(Aborted));
            }
            claims.settle(&mut batches);
            let next = rings[worker].take_empty(parker, abort).map_err(aborted)?;
            rings[worker].send(std::mem::replace(&mut batches[worker], next));
            sent += 1;
        }
    }
    claims.settle(&mut batches);
    for (ring, mut batch) in rings.iter().zip(batches) {
        batch.end = true;
        ring.send(batch);
        sent += 1;
    }
    Ok(RouterOutput {
        log,
        id_set_bytes: claims.ids.heap_bytes(),
        batches: sent,
    })
}

/// SPEC rule 2's claims, made up to [`LOOKAHEAD`] records behind parsing:
/// a record goes into its batch at once, its id's memory is prefetched, and
/// its claim, made in file order, fills in its `fresh` flag. Every pending
/// claim is made before a batch is sent.
#[derive(Default)]
struct Claims {
    ids: TxIdSet,
    /// (worker, index in its batch) of the records not claimed yet, oldest first.
    pending: VecDeque<(usize, usize)>,
}

impl Claims {
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
        let item = &mut batches[worker].items[index];
        item.fresh = self.ids.claim(item.tx.tx);
    }
}

enum WorkerError {
    Aborted,
    Io(std::io::Error),
}

/// A worker: apply each batch in order until the end-of-stream batch.
fn work(
    index: usize,
    ring: &Ring,
    parker: &Parker,
    abort: &AtomicBool,
    options: &Options,
) -> Result<WorkerOutput, WorkerError> {
    let mut book = Book::for_worker_count(options.workers);
    let mut log =
        EventLog::new(options.verbosity, options.rejects.is_some()).map_err(WorkerError::Io)?;
    let mut latency = latency_histogram();
    loop {
        let batch = ring
            .recv(parker, abort)
            .map_err(|Aborted| WorkerError::Aborted)?;
        for (n, item) in batch.items.iter().enumerate() {
            if options.panic_at_line == Some(item.line) {
                panic!("injected panic at line {} in worker {index}", item.line);
            }
            let outcome = match book.apply(item.tx, item.fresh) {
                Ok(()) => Outcome::Applied,
                Err(reject) => Outcome::Rejected(reject),
            };
            log.record(item.line, Some(&item.tx), outcome, batch.raw(item))
                .map_err(WorkerError::Io)?;
            if n == 0 {
                if let Some(stamp) = batch.stamp {
                    latency.saturating_record(stamp.elapsed().as_nanos() as u64);
                }
            }
        }
        let end = batch.end;
        ring.recycle(batch);
        if end {
            book.check_invariants();
            return Ok(WorkerOutput { book, log, latency });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_spreads_clients_over_all_workers() {
        for workers in [1, 2, 3, 4, 8, 15, 16] {
            let mut counts = vec![0u32; workers];
            for client in 0..=u16::MAX {
                counts[shard(client, workers)] += 1;
            }
            let (min, max) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
            assert!(
                *max - *min <= 65_536 / workers as u32 / 10 + 1,
                "{workers}: {counts:?}"
            );
            // Multiples of the worker count also spread.
            let mut multiples = vec![0u32; workers];
            for client in (0..=u16::MAX).step_by(workers.max(2)) {
                multiples[shard(client, workers)] += 1;
            }
            assert!(
                multiples.iter().all(|&n| n > 0) || workers == 1,
                "{workers}: {multiples:?}"
            );
        }
    }
}
