//! One timely worker: its blocks in, the claim and apply stages, its part
//! out to worker 0.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fs::File;
use std::path::Path;
use std::rc::Rc;
use std::slice::IterMut;

use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::vec::Partition;
use timely::dataflow::operators::{Capability, Concat, Input, InputCapability, Probe};
use timely::dataflow::{InputHandle, ProbeHandle};
use timely::progress::frontier::MutableAntichain;

use super::input::{read_block, Cuts, InputPlan, Part, Rec};
use super::restart::{Assembling, BookSnapshot, Due, Schedule, Snapshot};
use crate::engine::Error;
use crate::ledger::Book;
use crate::report::Outcome;
use crate::store::TxIdSet;

/// BlockStash in flight per worker before a worker waits for the dataflow.
pub(super) const LAG_ROUNDS: u64 = 4;

/// An operator's records, stashed by block until timely says the block is
/// complete (no record of it or of a block before it is still on its way),
/// each block holding a capability so that the blocks after it wait.
#[derive(Default)]
pub(super) struct BlockStash {
    pub(super) stash: BTreeMap<u64, (Capability<u64>, Vec<Rec>)>,
}

impl BlockStash {
    /// Stashes what arrived at `cap`'s block.
    pub(super) fn take(
        &mut self,
        cap: &InputCapability<u64>,
        data: IterMut<'_, Vec<Rec>>,
        port: usize,
    ) {
        if let Some(cap) = cap.retain_least(port) {
            let entry = self.stash.entry(*cap.time()).or_insert((cap, Vec::new()));
            for batch in data {
                entry.1.append(batch);
            }
        }
    }

    /// The first stashed block if it is complete, its records in line
    /// order: blocks come out in order, each once.
    pub(super) fn next_complete(
        &mut self,
        frontier: &MutableAntichain<u64>,
    ) -> Option<(Capability<u64>, Vec<Rec>)> {
        let entry = self.stash.first_entry()?;
        if frontier.less_equal(entry.key()) {
            return None;
        }
        let (cap, mut recs) = entry.remove();
        // A stable sort: a block arrives as a few sorted runs (one per
        // batch), which it merges.
        recs.sort_by_key(|rec| rec.line);
        Some((cap, recs))
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

/// One timely worker: its blocks in, the claim and apply stages, its part
/// out; worker 0 returns every part.
pub(super) fn run_worker(
    worker: &mut timely::worker::Worker,
    path: &Path,
    plan: InputPlan,
    keep_raw: bool,
    restart: Option<Restart>,
) -> Option<Vec<Part>> {
    // With a state file, process 0 saves the whole ledger.
    let keep_state = restart.is_some();
    let index = worker.index() as u64;
    let peers = worker.peers() as u64;
    let start = restart.as_ref().map_or(0, |r| r.start);
    let snapshot = restart.as_ref().and_then(|r| r.snapshot.as_ref());
    let schedule = restart.as_ref().map(|r| r.schedule.clone());
    let part = Rc::new(RefCell::new(
        snapshot.map_or_else(Part::default, |s| s.part.clone()),
    ));
    let book = Rc::new(RefCell::new(
        snapshot.map_or_else(Book::default, Snapshot::book),
    ));
    let claimed_ids = Rc::new(RefCell::new(
        snapshot.map_or_else(TxIdSet::default, Snapshot::id_set),
    ));
    let pending = Rc::new(RefCell::new(Assembling::default()));
    let mut input = InputHandle::<u64, CapacityContainerBuilder<Vec<Rec>>>::new();
    let probe = ProbeHandle::new();
    {
        let (part, book, ids) = (Rc::clone(&part), Rc::clone(&book), Rc::clone(&claimed_ids));
        let (claim_pending, apply_pending) = (Rc::clone(&pending), Rc::clone(&pending));
        let due = Due::new(schedule.as_ref(), start);
        worker.dataflow::<u64, _, _>(|scope| {
            let mut streams = scope
                .input_from(&mut input)
                .partition(2, |rec: Rec| (u64::from(!rec.tx.kind.claims_id()), rec));
            let others = streams.pop().expect("two streams");
            let claims = streams.pop().expect("two streams");
            let claimed = claims.unary_frontier::<CapacityContainerBuilder<Vec<Rec>>, _, _, _>(
                Exchange::new(|rec: &Rec| u64::from(rec.tx.tx)),
                "Claim",
                |_, _| {
                    let mut blocks = BlockStash::default();
                    let mut due = due;
                    move |(input, frontier), output| {
                        let mut ids = ids.borrow_mut();
                        let port = output.output_index();
                        input.for_each_stamp(|cap, data| blocks.take(&cap, data, port));
                        let snap = |c: u64, ids: &TxIdSet| {
                            claim_pending
                                .borrow_mut()
                                .claims
                                .insert(c, ids.iter().collect());
                        };
                        while let Some((cap, mut recs)) = blocks.next_complete(frontier) {
                            while let Some(c) = due.before(*cap.time()) {
                                snap(c, &ids);
                            }
                            for rec in &mut recs {
                                rec.fresh = ids.claim(rec.tx.tx);
                            }
                            output.session(&cap).give_container(&mut recs);
                        }
                        while let Some(c) = due.passed(frontier) {
                            snap(c, &ids);
                        }
                    }
                },
            );
            claimed
                .concat(others)
                .unary_frontier::<CapacityContainerBuilder<Vec<()>>, _, _, _>(
                    Exchange::new(|rec: &Rec| u64::from(rec.tx.client)),
                    "Apply",
                    |_, _| {
                        let mut blocks = BlockStash::default();
                        let mut due = due;
                        move |(input, frontier), output| {
                            let port = output.output_index();
                            input.for_each_stamp(|cap, data| blocks.take(&cap, data, port));
                            let snap = |c: u64| {
                                let (book, part) = (book.borrow(), part.borrow());
                                let snapshot = BookSnapshot::of(&book, part.applied);
                                apply_pending.borrow_mut().books.insert(c, snapshot);
                            };
                            while let Some((cap, recs)) = blocks.next_complete(frontier) {
                                let block = *cap.time();
                                while let Some(c) = due.before(block) {
                                    snap(c);
                                }
                                let (mut book, mut part) = (book.borrow_mut(), part.borrow_mut());
                                for rec in recs {
                                    match book.apply(&rec.tx, rec.fresh) {
                                        Ok(()) => part.applied += 1,
                                        Err(reason) => {
                                            let outcome = Outcome::Rejected { tx: rec.tx, reason };
                                            part.events.push((block, rec.line, outcome, rec.raw));
                                        }
                                    }
                                }
                            }
                            while let Some(c) = due.passed(frontier) {
                                snap(c);
                            }
                        }
                    },
                )
                // Nothing goes out: the probe follows the blocks held.
                .probe_with(&probe);
        });
    }
    let mut gather_input = InputHandle::<u64, CapacityContainerBuilder<Vec<Part>>>::new();
    let gather_probe = ProbeHandle::new();
    let gathered = Rc::new(RefCell::new(Vec::new()));
    {
        let gathered = Rc::clone(&gathered);
        worker.dataflow::<u64, _, _>(|scope| {
            scope
                .input_from(&mut gather_input)
                .unary_frontier::<CapacityContainerBuilder<Vec<()>>, _, _, _>(
                    Exchange::new(|_: &Part| 0),
                    "Gather",
                    |_, _| {
                        move |(input, _frontier), _output| {
                            input.for_each_stamp(|_cap, data| {
                                for batch in data {
                                    gathered.borrow_mut().append(batch);
                                }
                            });
                        }
                    },
                )
                .probe_with(&gather_probe);
        });
    }

    // Checkpoints whose every part is there, once this worker has parsed
    // its blocks before `parsed`.
    let save_ready = |parsed: u64| {
        let Some(schedule) = &schedule else {
            return;
        };
        let ready = pending.borrow_mut().ready(parsed, &part.borrow());
        for snapshot in ready {
            if let Err(error) = schedule.save(index as usize, &snapshot) {
                let mut part = part.borrow_mut();
                part.error
                    .get_or_insert((snapshot.block, format!("{error:#}")));
            }
        }
    };

    // This worker's blocks from the first at or after `start`, with at most
    // LAG_ROUNDS rounds in flight.
    let mut recs = Vec::new();
    let mut k = index + start.saturating_sub(index).div_ceil(peers) * peers;
    match File::open(path) {
        Err(e) => part.borrow_mut().error = Some((k, message(Error::Input(e.into())))),
        Ok(file) => {
            let mut cuts = Cuts {
                file,
                plan,
                last: None,
                keep_raw,
                scan: Vec::new(),
            };
            while k < plan.blocks {
                input.advance_to(k);
                let parsed = read_block(&mut cuts, k, &mut recs, &mut part.borrow_mut());
                if let Err(error) = parsed {
                    part.borrow_mut().error = Some((k, message(error)));
                    recs.clear();
                    break;
                }
                k += peers;
                // A block without records (inside a long line, or only
                // malformed rows) holds no memory downstream: no step, no
                // wait, however many of them there are.
                if recs.is_empty() {
                    continue;
                }
                input.send_batch(&mut recs);
                recs.clear();
                worker.step();
                save_ready(k);
                let behind = k.saturating_sub(LAG_ROUNDS * peers);
                while probe.less_than(&behind) {
                    worker.step();
                    save_ready(k);
                }
            }
        }
    }
    input.close();
    while !probe.done() {
        worker.step();
        save_ready(u64::MAX);
    }
    let mut part = part.take();
    let book = book.take();
    part.accounts = book
        .accounts()
        .map(|(client, account)| (client, *account))
        .collect();
    part.deposits = book.deposits().len() as u64;
    if keep_state {
        part.ids = claimed_ids.borrow().iter().collect();
        part.stored = book.deposits().iter().collect();
    }
    gather_input.send(part);
    gather_input.close();
    while !gather_probe.done() {
        worker.step();
    }
    (index == 0).then(|| gathered.take())
}

/// An error as the single-machine run prints it.
pub(super) fn message(error: Error) -> String {
    format!("{:#}", anyhow::Error::from(error))
}
