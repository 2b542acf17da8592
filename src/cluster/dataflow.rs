//! One timely worker: its blocks in, the claim and apply stages, its part
//! out to worker 0.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::path::Path;
use std::rc::Rc;
use std::slice::IterMut;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::vec::Broadcast;
use timely::dataflow::operators::{Capability, Input, InputCapability, Inspect, Probe};
use timely::dataflow::{InputHandle, ProbeHandle};
use timely::progress::frontier::MutableAntichain;

use super::columns::{Claim, Claims, Packed, Repeats, Rows};
use super::input::{read_block, Cuts, InputPlan, Outgoing, Part};
use super::restart::{Assembling, Checkpoint, Due, Schedule, Snapshot};
use crate::durable::state::{self, KIND_STATE};
use crate::engine::Error;
use crate::ledger::Book;
use crate::report::Outcome;
use crate::store::{set_bits, TxIdSet};
use crate::tx::{ClientId, Kind, TxId};

/// Blocks in flight per worker before a worker waits for the dataflow.
pub(super) const LAG_ROUNDS: u64 = 4;

/// An operator's batches, stashed by block until timely says the block is
/// complete (no batch of it or of a block before it is still on its way),
/// each block holding a capability so that the blocks after it wait.
pub(super) struct BlockStash<T> {
    pub(super) stash: BTreeMap<u64, (Capability<u64>, Vec<T>)>,
}

impl<T> Default for BlockStash<T> {
    fn default() -> Self {
        BlockStash {
            stash: BTreeMap::new(),
        }
    }
}

impl<T> BlockStash<T> {
    /// Stashes what arrived at `cap`'s block.
    pub(super) fn take(
        &mut self,
        cap: &InputCapability<u64>,
        data: IterMut<'_, Vec<T>>,
        port: usize,
    ) {
        if let Some(cap) = cap.retain_least(port) {
            let entry = self.stash.entry(*cap.time()).or_insert((cap, Vec::new()));
            for batch in data {
                entry.1.append(batch);
            }
        }
    }

    /// The first stashed block if it is complete by every one of
    /// `frontiers`: blocks come out in order, each once.
    pub(super) fn next_complete(
        &mut self,
        frontiers: &[&MutableAntichain<u64>],
    ) -> Option<(Capability<u64>, Vec<T>)> {
        let entry = self.stash.first_entry()?;
        if frontiers.iter().any(|f| f.less_equal(entry.key())) {
            return None;
        }
        Some(entry.remove())
    }

    /// What is stashed at `block` (nothing if nothing came).
    pub(super) fn remove(&mut self, block: u64) -> Vec<T> {
        self.stash
            .remove(&block)
            .map(|(_, v)| v)
            .unwrap_or_default()
    }
}

/// Where a worker starts and how it checkpoints.
pub(super) struct Restart {
    pub(super) schedule: Schedule,
    /// The checkpoint block it goes on from (0: the start).
    pub(super) start: u64,
    /// Its state at `start`.
    pub(super) snapshot: Option<Snapshot>,
}

/// What a worker's operators share: timely runs them all on the worker's
/// own thread, so a `RefCell` each is enough.
#[derive(Clone)]
struct Shared {
    /// What goes to worker 0: rows not applied, counts, line counts.
    part: Rc<RefCell<Part>>,
    /// The apply stage's clients.
    book: Rc<RefCell<Book>>,
    /// The claim stage's tx ids.
    ids: Rc<RefCell<TxIdSet>>,
    /// Checkpoint parts waiting for the others of their block.
    pending: Rc<RefCell<Assembling>>,
    /// What changed since the last checkpoint (with checkpoints only).
    changes: Rc<RefCell<Changes>>,
}

/// What the stages changed since the last checkpoint, for one that saves
/// only that ([`Checkpoint::base`]): kept only when checkpoints are taken.
#[derive(Default)]
struct Changes {
    on: bool,
    /// Ids the claim stage claimed.
    ids: Vec<TxId>,
    /// The clients the apply stage touched, a bit each.
    clients: Vec<u64>,
    /// The deposits the apply stage may have stored or flagged: the tx ids
    /// of every record but withdrawals.
    deposits: Vec<TxId>,
}

impl Shared {
    /// A worker's state at the start, or at the checkpoint it resumes from
    /// (`checkpoints`: it will take some).
    fn new(snapshot: Option<Snapshot>, checkpoints: bool) -> Shared {
        let Snapshot {
            ids, book, part, ..
        } = snapshot.unwrap_or_default();
        let changes = Changes {
            on: checkpoints,
            clients: vec![0; (usize::from(ClientId::MAX) + 1) / 64],
            ..Changes::default()
        };
        Shared {
            part: Rc::new(RefCell::new(part)),
            book: Rc::new(RefCell::new(book)),
            ids: Rc::new(RefCell::new(ids)),
            pending: Rc::new(RefCell::new(Assembling::default())),
            changes: Rc::new(RefCell::new(changes)),
        }
    }

    /// The claim stage at checkpoint `c`: the ids claimed so far, or those
    /// since the delta's base.
    fn snap_claims(&self, c: Checkpoint) {
        let mut changes = self.changes.borrow_mut();
        let ids = match c.base {
            None => self.ids.borrow().clone(),
            Some(_) => {
                let mut ids = TxIdSet::default();
                for &id in &changes.ids {
                    ids.claim(id);
                }
                ids
            }
        };
        changes.ids.clear();
        self.pending
            .borrow_mut()
            .claims
            .insert(c.block, (ids, c.base));
    }

    /// The apply stage at checkpoint `c`: the book (or its accounts and
    /// deposits that changed since the delta's base) and the rows applied.
    fn snap_book(&self, c: Checkpoint) {
        let mut changes = self.changes.borrow_mut();
        let book = self.book.borrow();
        let book = match c.base {
            None => book.clone(),
            Some(_) => {
                changes.deposits.sort_unstable();
                changes.deposits.dedup();
                let clients = set_bits(&changes.clients).map(|client| client as ClientId);
                book.part_of(clients, changes.deposits.iter().copied())
            }
        };
        changes.clients.fill(0);
        changes.deposits.clear();
        let snapshot = (book, self.part.borrow().applied);
        self.pending.borrow_mut().books.insert(c.block, snapshot);
    }

    /// SPEC rule 2 for one complete block: its claims, each batch in line
    /// order (a block's claims for this worker come from the one worker
    /// that parsed it, in one batch). Returns the lines whose id was
    /// already claimed, by the worker that applies them.
    fn claim(&self, batches: Vec<Packed<Claims>>) -> Vec<Packed<Repeats>> {
        let mut ids = self.ids.borrow_mut();
        let mut changes = self.changes.borrow_mut();
        let mut repeats: Vec<Repeats> = Vec::new();
        for Packed { batch, .. } in &batches {
            for &Claim { line, tx, applier } in &batch.claims {
                if ids.claim(tx) {
                    if changes.on {
                        changes.ids.push(tx);
                    }
                    continue;
                }
                match repeats.iter_mut().find(|r| r.to == applier) {
                    Some(r) => r.lines.push(line),
                    None => repeats.push(Repeats {
                        to: applier,
                        lines: vec![line],
                    }),
                }
            }
        }
        repeats.into_iter().map(Packed::new).collect()
    }

    /// The ledger's rules for one complete block: its records for this
    /// worker (one batch, in line order, from the worker that parsed the
    /// block), and the lines among them whose id was already claimed.
    fn apply(&self, block: u64, batches: Vec<Packed<Rows>>, repeats: Vec<Packed<Repeats>>) {
        let (mut book, mut part) = (self.book.borrow_mut(), self.part.borrow_mut());
        let mut changes = self.changes.borrow_mut();
        let mut repeated: Vec<u32> = repeats.into_iter().flat_map(|r| r.batch.lines).collect();
        repeated.sort_unstable();
        let mut repeated = repeated.into_iter().peekable();
        for Packed { batch: rows, .. } in batches {
            for (&line, tx) in rows.lines.iter().zip(&rows.txs) {
                let repeat = repeated.next_if_eq(&line).is_some();
                let fresh = tx.kind.claims_id() && !repeat;
                if changes.on {
                    let client = usize::from(tx.client);
                    changes.clients[client / 64] |= 1 << (client % 64);
                    if tx.kind != Kind::Withdrawal {
                        changes.deposits.push(tx.tx);
                    }
                }
                match Outcome::of(tx, book.apply(tx, fresh)) {
                    Outcome::Applied => part.applied += 1,
                    outcome => part.events.push((block, u64::from(line), outcome)),
                }
            }
        }
    }

    /// Saves the checkpoints whose every part is there, once this worker has
    /// parsed its blocks before `parsed`; a failure ends the input there.
    fn save_ready(&self, schedule: Option<&Schedule>, worker: usize, parsed: u64) {
        let Some(schedule) = schedule else {
            return;
        };
        let ready = self.pending.borrow_mut().ready(parsed, &self.part.borrow());
        for snapshot in ready {
            if let Err(error) = schedule.save(worker, &snapshot) {
                let mut part = self.part.borrow_mut();
                part.error
                    .get_or_insert((snapshot.block, format!("{error:#}")));
            }
        }
    }

    /// The worker's part for worker 0, with its accounts and (to save the
    /// whole ledger) its share of the ids and its book, in the state file's
    /// sections: bitsets and leaves, ~10 bytes a deposit and a few bits an
    /// id, where lists of ids and deposits took 4 and ~24 bytes and had to
    /// be stored again one by one (perf.md, "One exchange").
    fn into_part(self, keep_state: bool) -> Part {
        let mut part = self.part.take();
        let book = self.book.take();
        part.accounts = book
            .accounts()
            .map(|(client, account)| (client, *account))
            .collect();
        part.deposits = book.deposits().len() as u64;
        if keep_state {
            let mut bytes = io::Cursor::new(Vec::new());
            let ids = self.ids.borrow();
            match state::write_kind(&mut bytes, KIND_STATE, &ids, &[&book], &[], &[]) {
                Ok(_) => part.state = bytes.into_inner(),
                Err(error) => {
                    part.error
                        .get_or_insert((u64::MAX, format!("encoding the state: {error}")));
                }
            }
        }
        part
    }
}

/// What a worker feeds in, by block: its blocks' records for the workers
/// that apply them, and their claims for the workers that own the ids.
struct Inputs {
    rows: InputHandle<u64, CapacityContainerBuilder<Vec<Packed<Rows>>>>,
    claims: InputHandle<u64, CapacityContainerBuilder<Vec<Packed<Claims>>>>,
}

impl Inputs {
    fn advance_to(&mut self, block: u64) {
        self.rows.advance_to(block);
        self.claims.advance_to(block);
    }

    /// Sends a block's batches, leaving `out` empty.
    fn send(&mut self, out: &mut Outgoing) {
        let (mut rows, mut claims) = out.take();
        self.rows.send_batch(&mut rows);
        self.claims.send_batch(&mut claims);
    }

    fn close(self) {
        self.rows.close();
        self.claims.close();
    }
}

/// A batch's worker, for timely's exchange (below `peers`, which timely
/// takes as it is).
fn to<T>(worker: fn(&T) -> u32) -> impl Fn(&Packed<T>) -> u64 {
    move |packed| u64::from(worker(&packed.batch))
}

/// The main dataflow, one exchange of records: each block's claims go to
/// the workers that own their ids (the claim stage), its records to the
/// workers of their clients (the apply stage), which the claim stage tells
/// which of them repeat a claimed id. Each stage takes complete blocks in
/// order and snapshots itself at checkpoints.
fn claim_and_apply(
    worker: &mut timely::worker::Worker,
    shared: &Shared,
    due: Due,
) -> (Inputs, ProbeHandle<u64>) {
    let mut inputs = Inputs {
        rows: InputHandle::new(),
        claims: InputHandle::new(),
    };
    let probe = ProbeHandle::new();
    let (claiming, applying) = (shared.clone(), shared.clone());
    worker.dataflow::<u64, _, _>(|scope| {
        let rows = scope.input_from(&mut inputs.rows);
        let repeats = scope
            .input_from(&mut inputs.claims)
            .unary_frontier::<CapacityContainerBuilder<Vec<Packed<Repeats>>>, _, _, _>(
                Exchange::new(to(|c: &Claims| c.to)),
                "Claim",
                |_, _| {
                    let (mut blocks, mut due) = (BlockStash::default(), due);
                    move |(input, frontier), output| {
                        let port = output.output_index();
                        input.for_each_stamp(|cap, data| blocks.take(&cap, data, port));
                        while let Some((cap, claims)) = blocks.next_complete(&[frontier]) {
                            while let Some(c) = due.before(*cap.time()) {
                                claiming.snap_claims(c);
                            }
                            let mut repeats = claiming.claim(claims);
                            output.session(&cap).give_container(&mut repeats);
                        }
                        while let Some(c) = due.passed(&[frontier]) {
                            claiming.snap_claims(c);
                        }
                    }
                },
            );
        rows.binary_frontier::<_, CapacityContainerBuilder<Vec<()>>, _, _, _, _>(
            repeats,
            Exchange::new(to(|r: &Rows| r.to)),
            Exchange::new(to(|r: &Repeats| r.to)),
            "Apply",
            |_, _| {
                let (mut blocks, mut repeats, mut due) =
                    (BlockStash::default(), BlockStash::default(), due);
                move |(rows, rows_frontier), (repeated, repeats_frontier), output| {
                    let port = output.output_index();
                    rows.for_each_stamp(|cap, data| blocks.take(&cap, data, port));
                    repeated.for_each_stamp(|cap, data| repeats.take(&cap, data, port));
                    let frontiers = [rows_frontier, repeats_frontier];
                    // Repeats come only for records this worker applies:
                    // a block with repeats has records here.
                    while let Some((cap, batches)) = blocks.next_complete(&frontiers) {
                        let block = *cap.time();
                        while let Some(c) = due.before(block) {
                            applying.snap_book(c);
                        }
                        applying.apply(block, batches, repeats.remove(block));
                    }
                    // Else a repeat was for no record here: its block's
                    // capability would hold the dataflow forever.
                    assert!(
                        repeats.next_complete(&frontiers).is_none(),
                        "a complete block's repeats found no records to apply"
                    );
                    while let Some(c) = due.passed(&frontiers) {
                        applying.snap_book(c);
                    }
                }
            },
        )
        // Nothing goes out: the probe follows the blocks held.
        .probe_with(&probe);
    });
    (inputs, probe)
}

/// Every worker's part, sent to worker 0 at the end.
type Parts = InputHandle<u64, CapacityContainerBuilder<Vec<Part>>>;

/// The gathering dataflow: every part to worker 0, which collects them.
fn gathering(
    worker: &mut timely::worker::Worker,
) -> (Parts, ProbeHandle<u64>, Rc<RefCell<Vec<Part>>>) {
    let mut input = Parts::new();
    let probe = ProbeHandle::new();
    let gathered = Rc::new(RefCell::new(Vec::new()));
    let collect = Rc::clone(&gathered);
    worker.dataflow::<u64, _, _>(|scope| {
        scope
            .input_from(&mut input)
            .unary_frontier::<CapacityContainerBuilder<Vec<()>>, _, _, _>(
                Exchange::new(|_: &Part| 0),
                "Gather",
                |_, _| {
                    move |(input, _frontier), _output| {
                        input.for_each_stamp(|_cap, data| {
                            for batch in data {
                                collect.borrow_mut().append(batch);
                            }
                        });
                    }
                },
            )
            .probe_with(&probe);
    });
    (input, probe, gathered)
}

/// A stop a signal asked for, told to every worker: the signal's number.
type Stops = InputHandle<u64, CapacityContainerBuilder<Vec<u64>>>;

/// The stopping dataflow: a signal's number sent by any worker reaches
/// every worker, which notes the first it sees.
fn stopping(worker: &mut timely::worker::Worker) -> (Stops, ProbeHandle<u64>, Rc<Cell<u64>>) {
    let mut input = Stops::new();
    let probe = ProbeHandle::new();
    let stopped = Rc::new(Cell::new(0));
    let seen = Rc::clone(&stopped);
    worker.dataflow::<u64, _, _>(|scope| {
        scope
            .input_from(&mut input)
            .broadcast()
            .inspect(move |&signal| {
                if seen.get() == 0 {
                    seen.set(signal);
                }
            })
            .probe_with(&probe);
    });
    (input, probe, stopped)
}

/// How a worker's run ended.
pub(super) enum Ended {
    /// Worker 0: every worker's part.
    Gathered(Vec<Part>),
    /// Any other worker: its part went to worker 0.
    Done,
    /// Every worker stopped early, on this signal.
    Stopped(u64),
}

/// One timely worker: its blocks in, the claim and apply stages, its part
/// out; worker 0 returns every part. A signal on any process stops every
/// worker of every process: each stops feeding blocks, the blocks in
/// flight drain (checkpoints complete only where every worker parsed that
/// far), and no part is gathered.
pub(super) fn run_worker(
    worker: &mut timely::worker::Worker,
    path: &Path,
    plan: InputPlan,
    signal: Option<Arc<AtomicUsize>>,
    restart: Option<Restart>,
) -> Ended {
    let keep_state = restart.is_some();
    let (start, schedule, snapshot) = match restart {
        Some(r) => (r.start, Some(r.schedule), r.snapshot),
        None => (0, None, None),
    };
    let checkpoints = schedule.as_ref().is_some_and(|s| s.every > 0);
    let shared = Shared::new(snapshot, checkpoints);
    let (mut inputs, probe) = claim_and_apply(worker, &shared, Due::new(schedule.as_ref(), start));
    let (mut parts, parts_probe, gathered) = gathering(worker);
    let (mut stops, stops_probe, stopped) = stopping(worker);
    let feeder = Feeder {
        shared: &shared,
        schedule: schedule.as_ref(),
        probe: &probe,
        index: worker.index() as u64,
        peers: worker.peers() as u64,
        signal: signal.as_deref(),
        told: Cell::new(false),
        stopped: &stopped,
    };
    let parsed = feeder.feed(worker, (&mut inputs, &mut stops), path, plan, start);
    inputs.close();
    while !probe.done() {
        wait(worker);
        shared.save_ready(schedule.as_ref(), worker.index(), parsed);
    }
    // Every worker agrees whether the run stopped: each tells a signal it
    // got, and once all have closed their stop input, all have seen all.
    feeder.tell(&mut stops);
    stops.close();
    while !stops_probe.done() {
        wait(worker);
    }
    if stopped.get() != 0 {
        return Ended::Stopped(stopped.get());
    }
    // With a state file, process 0 saves the whole ledger.
    parts.send(shared.into_part(keep_state));
    parts.close();
    while !parts_probe.done() {
        wait(worker);
    }
    match worker.index() {
        0 => Ended::Gathered(gathered.take()),
        _ => Ended::Done,
    }
}

/// Feeds a worker's blocks into the dataflow.
struct Feeder<'a> {
    shared: &'a Shared,
    schedule: Option<&'a Schedule>,
    probe: &'a ProbeHandle<u64>,
    index: u64,
    peers: u64,
    /// This process's stop flag (a signal's number), if it has one.
    signal: Option<&'a AtomicUsize>,
    /// Whether this worker told the others of its signal.
    told: Cell<bool>,
    /// The first signal any worker told of (0: none yet).
    stopped: &'a Cell<u64>,
}

impl Feeder<'_> {
    /// Tells every worker of this process's signal, once, if there is one.
    fn tell(&self, stops: &mut Stops) {
        let signal = self.signal.map_or(0, |s| s.load(Ordering::Relaxed));
        if signal != 0 && !self.told.replace(true) {
            stops.send(signal as u64);
            // Sent now, not when the input next advances (it never does).
            stops.flush();
        }
    }

    /// Whether to stop feeding: a signal here, or told of by another worker.
    fn stopping(&self, stops: &mut Stops) -> bool {
        self.tell(stops);
        self.told.get() || self.stopped.get() != 0
    }

    /// This worker's blocks from the first at or after `start`, with at most
    /// [`LAG_ROUNDS`] rounds in flight, until a stop; a block that cannot
    /// be read ends the input there (the error goes to worker 0 in the
    /// part). Returns the first block it did not parse (`u64::MAX` when it
    /// parsed every one of its blocks).
    fn feed(
        &self,
        worker: &mut timely::worker::Worker,
        (inputs, stops): (&mut Inputs, &mut Stops),
        path: &Path,
        plan: InputPlan,
        start: u64,
    ) -> u64 {
        let (index, peers) = (self.index, self.peers);
        let mut k = index + start.saturating_sub(index).div_ceil(peers) * peers;
        let file = match File::open(path) {
            Ok(file) => file,
            Err(e) => {
                self.shared.part.borrow_mut().error = Some((k, message(Error::Input(e.into()))));
                return u64::MAX;
            }
        };
        let mut cuts = Cuts::new(file, plan);
        let mut out = Outgoing::new(peers as usize, &plan);
        while k < plan.blocks {
            if self.stopping(stops) {
                return k;
            }
            inputs.advance_to(k);
            let read = read_block(&mut cuts, k, &mut out, &mut self.shared.part.borrow_mut());
            if let Err(error) = read {
                self.shared.part.borrow_mut().error = Some((k, message(error)));
                return u64::MAX;
            }
            k += peers;
            // A block without records (inside a long line, or only
            // malformed rows) holds no memory downstream: no step, no
            // wait, however many of them there are.
            if out.is_empty() {
                continue;
            }
            inputs.send(&mut out);
            self.step(worker, k, false);
            let behind = k.saturating_sub(LAG_ROUNDS * peers);
            while self.probe.less_than(&behind) {
                self.step(worker, k, true);
            }
        }
        u64::MAX
    }

    /// One step of the worker (`park`: a [`wait`]), then the checkpoints it
    /// completed.
    fn step(&self, worker: &mut timely::worker::Worker, parsed: u64, park: bool) {
        if park {
            wait(worker);
        } else {
            worker.step();
        }
        self.shared
            .save_ready(self.schedule, self.index as usize, parsed);
    }
}

/// The longest a waiting worker sleeps between steps.
const PARK: Duration = Duration::from_millis(10);

/// One step of a worker that waits for the dataflow: if it has nothing to
/// do, it sleeps until a message or an operator wakes it (or [`PARK`]
/// passes) rather than spin. Spinning took a fifth of the CPU of a
/// 3-process run on 2 cores (timely's `poll_events`, `step_or_park` and the
/// network queues' `drain_into` in the profile, perf.md).
fn wait(worker: &mut timely::worker::Worker) {
    worker.step_or_park(Some(PARK));
}

/// An error as the single-machine run prints it.
pub(super) fn message(error: Error) -> String {
    super::error::Error::chain(&error)
}
