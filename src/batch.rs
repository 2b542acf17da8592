//! A block of well-formed records split for the workers ([`Parts`]): each
//! worker's records (its clients', by [`shard`]) in file order, and the
//! deposits' and withdrawals' claims on their tx ids (SPEC rule 2) by the
//! worker that owns each id ([`IdShards`]).
//!
//! Parser threads build one per block, and the calling thread one per run
//! of rows it is handed one by one; either way no thread but a parser sees
//! every row. A worker makes the claims it owns for each block in block
//! order and answers with the claims that repeat an id already claimed (few:
//! only they change an outcome); it applies its records once every owner
//! has answered for the block (`engine::sharded`).
//!
//! A block whose claims come with ascending ids (every file whose ids count
//! up) carries them as ranges of consecutive ids, not one by one
//! ([`Parts::claim_ranges`]): its owners claim a range a bitset word at a
//! time, and only a repeated id is looked for among the records.

use std::sync::Arc;

use crossbeam_queue::ArrayQueue;

use crate::ledger::shard;
use crate::store::RUN_BITS;
use crate::tx::{Tx, TxId};

/// Splits whose blocks every worker has applied, kept for new blocks: their
/// vectors keep their capacity, so a block's split allocates nothing, and
/// the memory is not handed back to the system and faulted in again for
/// every block (the page faults and TLB shootdowns were 3% of a
/// `--parsers 2 --workers 2` run's samples, perf.md). Shared by the threads
/// that split blocks and the workers that finish with them.
#[derive(Clone, Debug)]
pub(crate) struct Recycler(Arc<ArrayQueue<Parts>>);

/// Splits a recycler keeps at most: the blocks in flight and those being
/// split.
const RECYCLED: usize = 16;

/// The most ranges a block's claims travel as ([`Parts::claim_ranges`]):
/// every owner walks every range of its block, so ids that ascend with
/// gaps (a range a claim) are listed instead, where each owner sees only
/// its own claims.
const MAX_RANGES: usize = 256;

impl Recycler {
    pub fn new() -> Recycler {
        Recycler(Arc::new(ArrayQueue::new(RECYCLED)))
    }

    /// An empty split for `plan`, its lines counted from `base`: a recycled
    /// one if there is one, else a new one with room for about `rows`.
    pub fn take(&self, plan: Plan, base: u64, rows: usize) -> Parts {
        match self.0.pop() {
            Some(mut parts) if parts.plan() == plan => {
                parts.clear();
                parts.base = base;
                parts.reserve(rows);
                parts
            }
            _ => Parts::new(plan, base, rows),
        }
    }

    /// Keeps `parts` for a later block (dropped if enough are kept).
    pub fn give(&self, parts: Parts) {
        let _ = self.0.push(parts);
    }
}

/// How a block is split: among how many workers, and whether the original
/// lines travel with the records (only a rejects file needs them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    pub workers: usize,
    pub keep_raw: bool,
}

/// How the tx ids' claims are shared among the workers: runs of 512 ids
/// ([`RUN_BITS`]) dealt round-robin, worker `run % workers` owning run `run`. A worker
/// numbers its ids within its share (`local`: its runs side by side), so
/// that its claim set is as dense as the file's ids: with ascending ids its
/// leaves are bitsets from the start and its memory a 1/workers part of the
/// single-threaded set's. (Hashed runs, as before, left each worker 1/W of
/// every leaf: a sorted list for each leaf's first 1,536 claims, then a
/// full 8 KiB bitset. With 16 workers: 2,732M -> 2,675M instructions on 4M
/// rows, a 226 -> 184 MB peak on 20M rows; perf.md.)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct IdShards {
    workers: u32,
    /// floor(2^40 / workers) + 1: `run / workers` as a multiply and a shift,
    /// exact for every run (< 2^23) and every worker count up to 2^17
    /// (the error, run x (inverse x workers - 2^40) / 2^40, stays under
    /// 1 / workers).
    inverse: u64,
}

impl IdShards {
    pub fn new(workers: usize) -> IdShards {
        let workers = u32::try_from(workers.max(1)).expect("workers fit in u32");
        assert!(workers < 1 << 17, "IdShards' division is exact below 2^17");
        IdShards {
            workers,
            inverse: (1u64 << 40) / u64::from(workers) + 1,
        }
    }

    /// The worker that owns `id`'s claim, and `id` as that worker numbers
    /// it.
    #[inline]
    pub fn split(self, id: TxId) -> (usize, TxId) {
        let run = u64::from(id >> RUN_BITS);
        let local_run = (run * self.inverse) >> 40;
        let owner = run - local_run * u64::from(self.workers);
        let local = ((local_run as u32) << RUN_BITS) | (id & ((1 << RUN_BITS) - 1));
        (owner as usize, local)
    }

    /// The run of the whole id space that is `owner`'s run `local_run`.
    #[inline]
    pub fn global_run(self, owner: usize, local_run: u32) -> u32 {
        local_run * self.workers + owner as u32
    }

    /// The ids from `first` to `last` that `owner` owns, as it numbers
    /// them: runs of consecutive ids, ascending (the parts of its runs that
    /// follow each other in the range are one run of its ids).
    pub fn owned(
        self,
        (first, last): (TxId, TxId),
        owner: usize,
    ) -> impl Iterator<Item = (TxId, TxId)> {
        let offset = (1u32 << RUN_BITS) - 1;
        let (workers, owner) = (self.workers, owner as u32);
        let start = first >> RUN_BITS;
        // The owner's first run from `start` on, then every `workers`-th.
        let run = start + (owner + workers - start % workers) % workers;
        let runs = (u64::from(run)..=u64::from(last >> RUN_BITS)).step_by(workers as usize);
        let mut pieces = runs.map(move |run| {
            let run = run as u32;
            let from = first.max(run << RUN_BITS);
            let to = last.min(run << RUN_BITS | offset);
            let local = (run / workers) << RUN_BITS;
            (local | (from & offset), local | (to & offset))
        });
        let mut pending = pieces.next();
        std::iter::from_fn(move || {
            let (from, mut to) = pending?;
            pending = None;
            for (next_from, next_to) in pieces.by_ref() {
                if to.checked_add(1) == Some(next_from) {
                    to = next_to;
                } else {
                    pending = Some((next_from, next_to));
                    break;
                }
            }
            Some((from, to))
        })
    }
}

/// One worker's records of a block, in file order, in columns: what it
/// reads for every record apart from what it reads only for the ones it
/// reports.
#[derive(Debug, Default)]
pub(crate) struct Share {
    pub txs: Vec<Tx>,
    /// Each record's line number, less the block's [`Parts::base`].
    pub lines: Vec<u32>,
    /// Each record's original line in `raw` (start, length), when kept.
    raws: Vec<(u32, u16)>,
    raw: Vec<u8>,
}

impl Share {
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
}

/// A claim to make: the id, as its owner numbers it ([`IdShards::split`]),
/// and the record (its worker, its index in that worker's [`Share`]) whose
/// outcome it decides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Claim {
    pub id: TxId,
    pub worker: u32,
    pub index: u32,
}

/// A block's well-formed records, split (see the module docs).
#[derive(Debug)]
pub(crate) struct Parts {
    /// The line number that the shares' line offsets count from.
    pub base: u64,
    pub shares: Vec<Share>,
    /// The claims each worker owns, in file order, once they are listed
    /// (none with one worker, [`Parts::claims_travel`], nor while the
    /// block's claims are [`Parts::claim_ranges`]).
    pub claims: Vec<Vec<Claim>>,
    /// While `ranged`: the block's claimed ids, ascending, in runs of
    /// consecutive ids (first, last).
    ranges: Vec<(TxId, TxId)>,
    /// Whether every claim so far came with a higher id than the one
    /// before, so that `ranges` holds them all (and `claims` none).
    ranged: bool,
    ids: IdShards,
    rows: usize,
    keep_raw: bool,
}

impl Parts {
    /// An empty split for `plan`, its lines counted from `base`; room for
    /// about `rows` records.
    pub fn new(plan: Plan, base: u64, rows: usize) -> Parts {
        let mut parts = Parts {
            base,
            shares: (0..plan.workers).map(|_| Share::default()).collect(),
            claims: vec![Vec::new(); plan.workers],
            ranges: Vec::new(),
            ranged: true,
            ids: IdShards::new(plan.workers),
            rows: 0,
            keep_raw: plan.keep_raw,
        };
        parts.reserve(rows);
        parts
    }

    /// Room for about `rows` more records (a share's worth and a sixteenth
    /// each, so that uneven shares seldom grow): a recycled split may
    /// come from a smaller batch (the router's), and growing it record by
    /// record cost the parser threads 3% of their instructions (reallocs
    /// and their copies, callgrind, `--parsers 2 --workers 2`, perf.md).
    ///
    /// Only on an empty split: a vector with too little room is replaced,
    /// not grown (growing copies the old room, contents or not).
    fn reserve(&mut self, rows: usize) {
        debug_assert_eq!(self.rows, 0, "room is made before records come");
        fn room<T>(vector: &mut Vec<T>, at_least: usize) {
            if vector.capacity() < at_least {
                *vector = Vec::with_capacity(at_least);
            }
        }
        let workers = self.shares.len();
        let each = rows / workers.max(1) + rows / 16;
        for share in &mut self.shares {
            room(&mut share.txs, each);
            room(&mut share.lines, each);
        }
        if workers > 1 {
            for claims in &mut self.claims {
                room(claims, each * 9 / 10);
            }
        }
    }

    /// Empties it, keeping its vectors' capacity.
    fn clear(&mut self) {
        for share in &mut self.shares {
            share.txs.clear();
            share.lines.clear();
            share.raws.clear();
            share.raw.clear();
        }
        self.claims.iter_mut().for_each(Vec::clear);
        self.ranges.clear();
        self.ranged = true;
        self.rows = 0;
    }

    /// The plan it was made for.
    pub fn plan(&self) -> Plan {
        Plan {
            workers: self.shares.len(),
            keep_raw: self.keep_raw,
        }
    }

    /// Records in the block.
    #[inline]
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// `line`'s offset from the base, if it has one that fits.
    #[inline]
    pub fn offset(&self, line: u64) -> Option<u32> {
        line.checked_sub(self.base)
            .and_then(|d| u32::try_from(d).ok())
    }

    /// Whether the claims travel with the block (in [`Parts::claims`] or
    /// as [`Parts::claim_ranges`]): with one worker it owns every id and
    /// applies every record, so it claims each id as it applies its record,
    /// as the single-threaded path does.
    #[inline]
    pub fn claims_travel(&self) -> bool {
        self.shares.len() > 1
    }

    /// The block's claims as runs of consecutive ids (first, last),
    /// ascending, when they came so (then [`Parts::claims`] is empty);
    /// `None` when they are listed.
    pub fn claim_ranges(&self) -> Option<&[(TxId, TxId)]> {
        (self.claims_travel() && self.ranged).then_some(&self.ranges[..])
    }

    /// The ids of `range` (see [`Parts::claim_ranges`]) that `owner` owns,
    /// as it numbers them: runs of consecutive ids, ascending.
    pub fn owned(&self, range: (TxId, TxId), owner: usize) -> impl Iterator<Item = (TxId, TxId)> {
        self.ids.owned(range, owner)
    }

    /// The records (worker, index in its share) whose claims `owner` found
    /// repeated, `repeated` being their ids as `owner` numbers them,
    /// ascending: for a block whose claims are ranges, where each id comes
    /// once. (A look through every record when any repeated: repeats are few;
    /// none when none did.)
    pub fn claimants(&self, owner: usize, repeated: &[TxId]) -> Vec<(u32, u32)> {
        let mut found = Vec::new();
        if repeated.is_empty() {
            return found;
        }
        for (worker, share) in self.shares.iter().enumerate() {
            for (index, tx) in share.txs.iter().enumerate() {
                if !tx.kind.claims_id() {
                    continue;
                }
                let (to, local) = self.ids.split(tx.tx);
                if to == owner && repeated.binary_search(&local).is_ok() {
                    found.push((worker as u32, index as u32));
                }
            }
        }
        found
    }

    /// Adds a record found `offset` lines after the base, its original
    /// line `raw` (kept only if the plan says so).
    #[inline]
    pub fn push(&mut self, offset: u32, tx: &Tx, raw: &[u8]) {
        let worker = self.place(tx);
        let share = &mut self.shares[worker];
        share.lines.push(offset);
        if self.keep_raw {
            // A raw line is at most `MAX_LINE` (4 KiB) bytes; a block's
            // arena at most its input (1 GiB).
            share.raws.push((share.raw.len() as u32, raw.len() as u16));
            share.raw.extend_from_slice(raw);
        }
        self.rows += 1;
    }

    /// Adds records found on consecutive lines from `first` (after the
    /// base), their original lines not kept: one worker's run is copied
    /// whole (2.5x fewer instructions a row than [`Parts::push`]'s).
    pub fn push_run(&mut self, first: u32, txs: &[Tx]) {
        debug_assert!(!self.keep_raw, "runs are pushed without their lines");
        let lines = first..first + txs.len() as u32;
        if self.shares.len() == 1 {
            let share = &mut self.shares[0];
            share.txs.extend_from_slice(txs);
            share.lines.extend(lines);
        } else if self.extend_ranges(txs) {
            // Every claim of the run extends the ranges: the rows need only
            // their places (`push_run` 52 instructions a row where it took
            // 64, callgrind, `--parsers 2 --workers 2`, 1M rows).
            let workers = self.shares.len();
            for (tx, line) in txs.iter().zip(lines) {
                let share = &mut self.shares[shard(tx.client, workers)];
                share.txs.push(*tx);
                share.lines.push(line);
            }
        } else {
            for (tx, line) in txs.iter().zip(lines) {
                let worker = self.place(tx);
                self.shares[worker].lines.push(line);
            }
        }
        self.rows += txs.len();
    }

    /// Adds the claims of `txs` to the ranges if each comes with a higher
    /// id than the one before; else leaves the ranges as they were and
    /// says no.
    fn extend_ranges(&mut self, txs: &[Tx]) -> bool {
        if !self.ranged {
            return false;
        }
        let (count, before) = (self.ranges.len(), self.ranges.last().copied());
        for tx in txs.iter().filter(|tx| tx.kind.claims_id()) {
            if !self.extend_range(tx.tx) {
                self.ranges.truncate(count);
                if let (Some(was), Some(range)) = (before, self.ranges.last_mut()) {
                    *range = was;
                }
                return false;
            }
        }
        true
    }

    /// Adds `id` to the ranges if it is higher than every id in them and
    /// they have room ([`MAX_RANGES`]); else changes nothing and says no.
    #[inline(always)]
    fn extend_range(&mut self, id: TxId) -> bool {
        let full = self.ranges.len() >= MAX_RANGES;
        match self.ranges.last_mut() {
            Some((_, last)) if last.checked_add(1) == Some(id) => *last = id,
            Some(&mut (_, last)) if id <= last || full => return false,
            _ => self.ranges.push((id, id)),
        }
        true
    }

    /// Puts `tx` into its worker's share, and its claim (if it makes one and
    /// claims are listed) into its id owner's list; returns the worker.
    ///
    /// A claim with a higher id than the one before extends the block's
    /// ranges (one comparison, where a listed claim took 25 instructions
    /// here and 45 in its owner: callgrind, perf.md); the first that does
    /// not lists them all.
    #[inline(always)]
    fn place(&mut self, tx: &Tx) -> usize {
        let workers = self.shares.len();
        let worker = shard(tx.client, workers);
        if workers > 1 && tx.kind.claims_id() {
            let index = self.shares[worker].txs.len() as u32;
            let id = tx.tx;
            if self.ranged && !self.extend_range(id) {
                self.list_ranges();
            }
            if !self.ranged {
                self.list(id, worker as u32, index);
            }
        }
        self.shares[worker].txs.push(*tx);
        worker
    }

    /// Lists the claim on `id` of record `index` of `worker`'s share.
    #[inline(always)]
    fn list(&mut self, id: TxId, worker: u32, index: u32) {
        let (owner, local) = self.ids.split(id);
        self.claims[owner].push(Claim {
            id: local,
            worker,
            index,
        });
    }

    /// Lists the claims the ranges held, which are every claim so far: in
    /// id order, which is their file order (each came with a higher id).
    #[cold]
    #[inline(never)]
    fn list_ranges(&mut self) {
        self.ranged = false;
        self.ranges.clear();
        let mut all: Vec<(TxId, u32, u32)> = Vec::new();
        for (worker, share) in self.shares.iter().enumerate() {
            let claims = share.txs.iter().enumerate();
            let claims = claims.filter(|(_, tx)| tx.kind.claims_id());
            all.extend(claims.map(|(index, tx)| (tx.tx, worker as u32, index as u32)));
        }
        all.sort_unstable();
        for (id, worker, index) in all {
            self.list(id, worker, index);
        }
    }

    /// Every record with its line number and original line, in file order
    /// (a merge of the shares): for a path that applies them one by one.
    pub fn in_order(&self) -> impl Iterator<Item = (u64, &Tx, &[u8])> + '_ {
        let mut next = vec![0usize; self.shares.len()];
        std::iter::from_fn(move || {
            let (worker, _) = self
                .shares
                .iter()
                .zip(&next)
                .enumerate()
                .filter_map(|(w, (share, &n))| share.lines.get(n).map(|&line| (w, line)))
                .min_by_key(|&(_, line)| line)?;
            let n = next[worker];
            next[worker] += 1;
            let share = &self.shares[worker];
            let line = self.base + u64::from(share.lines[n]);
            Some((line, &share.txs[n], share.raw(n)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::amount::Amount;
    use crate::tx::Kind;

    fn tx(kind: Kind, client: u16, id: u32) -> Tx {
        Tx {
            kind,
            client,
            tx: id,
            amount: Amount::from_raw(1),
        }
    }

    #[test]
    fn records_go_to_their_clients_worker_and_claims_to_their_ids_owner() {
        let plan = Plan {
            workers: 3,
            keep_raw: true,
        };
        let mut parts = Parts::new(plan, 10, 0);
        let kinds = [
            Kind::Deposit,
            Kind::Withdrawal,
            Kind::Dispute,
            Kind::Resolve,
        ];
        let mut all = Vec::new();
        for n in 0..400u32 {
            let record = tx(kinds[n as usize % 4], (n * 7 % 50) as u16, n * 131);
            let raw = format!("line {n}");
            parts.push(n * 2, &record, raw.as_bytes());
            all.push((10 + u64::from(n) * 2, record, raw));
        }
        assert_eq!(parts.rows(), 400);
        for (worker, share) in parts.shares.iter().enumerate() {
            assert!(share.txs.iter().all(|t| shard(t.client, 3) == worker));
            assert!(share.lines.windows(2).all(|w| w[0] < w[1]), "file order");
        }
        assert_eq!(
            parts.claim_ranges().map(<[_]>::len),
            Some(200),
            "ascending ids, 262 apart: one range each"
        );
        parts.list_ranges();
        for (owner, claims) in parts.claims.iter().enumerate() {
            for claim in claims {
                let share = &parts.shares[claim.worker as usize];
                let record = share.txs[claim.index as usize];
                assert!(record.kind.claims_id());
                assert_eq!(IdShards::new(3).split(record.tx), (owner, claim.id));
            }
        }
        let claims: usize = parts.claims.iter().map(Vec::len).sum();
        assert_eq!(claims, 200, "deposits and withdrawals only");
        let merged: Vec<_> = parts
            .in_order()
            .map(|(line, t, raw)| (line, *t, String::from_utf8(raw.to_vec()).unwrap()))
            .collect();
        assert_eq!(merged, all);
        assert_eq!(parts.offset(9), None);
        assert_eq!(parts.offset(10 + u64::from(u32::MAX) + 1), None);
        assert_eq!(parts.offset(12), Some(2));
    }

    #[test]
    fn a_run_pushed_whole_is_split_as_its_rows_one_by_one() {
        let kinds = [Kind::Deposit, Kind::Withdrawal, Kind::Chargeback];
        let txs: Vec<Tx> = (0..300u32)
            .map(|n| tx(kinds[n as usize % 3], (n * 11 % 40) as u16, n * 977))
            .collect();
        for workers in [1, 2, 5] {
            let plan = Plan {
                workers,
                keep_raw: false,
            };
            let (mut one, mut run) = (Parts::new(plan, 5, 0), Parts::new(plan, 5, 10));
            for (n, record) in txs.iter().enumerate() {
                one.push(7 + n as u32, record, b"");
            }
            run.push_run(7, &txs[..100]);
            run.push_run(107, &txs[100..]);
            assert_eq!(run.rows(), one.rows());
            assert_eq!(run.claim_ranges(), one.claim_ranges());
            if workers > 1 {
                assert_eq!(run.claim_ranges().map(<[_]>::len), Some(200));
                run.list_ranges();
                one.list_ranges();
            }
            assert_eq!(run.claims, one.claims);
            assert_eq!(run.claims_travel(), workers > 1);
            assert_eq!(
                one.claims.iter().map(Vec::len).sum::<usize>(),
                match workers {
                    1 => 0,
                    _ => 200,
                }
            );
            for (a, b) in run.shares.iter().zip(&one.shares) {
                assert!(a.txs == b.txs && a.lines == b.lines);
            }
        }
    }

    /// The claims of `txs` split as the workers would list them one by
    /// one: each owner's, in file order.
    fn listed_one_by_one(txs: &[Tx], workers: usize) -> Vec<Vec<Claim>> {
        let mut claims = vec![Vec::new(); workers];
        let mut counts = vec![0u32; workers];
        for tx in txs {
            let worker = shard(tx.client, workers);
            if tx.kind.claims_id() {
                let (owner, id) = IdShards::new(workers).split(tx.tx);
                claims[owner].push(Claim {
                    id,
                    worker: worker as u32,
                    index: counts[worker],
                });
            }
            counts[worker] += 1;
        }
        claims
    }

    #[test]
    fn claims_are_ranges_while_ids_ascend_and_listed_from_the_first_that_does_not() {
        let kinds = [Kind::Deposit, Kind::Withdrawal, Kind::Dispute];
        // Consecutive ids with a gap, then (row 250, a withdrawal) an id
        // seen before.
        let ids = (1..=100).chain(150..300).chain([120]).chain(300..400);
        let txs: Vec<Tx> = ids
            .enumerate()
            .map(|(n, id)| tx(kinds[n % 3], (n * 13 % 31) as u16, id))
            .collect();
        let claimed: Vec<TxId> = (txs.iter())
            .filter(|t| t.kind.claims_id())
            .map(|t| t.tx)
            .collect();
        let plan = Plan {
            workers: 3,
            keep_raw: false,
        };
        for cut in [0, 1, 100, 250, 251, txs.len()] {
            // Up to row 250 the claims ascend: ranges; past it, lists.
            let mut parts = Parts::new(plan, 0, 0);
            parts.push_run(0, &txs[..cut.min(250)]);
            let ranges = parts.claim_ranges().expect("ascending so far").to_vec();
            let ranged: Vec<TxId> = ranges.iter().flat_map(|&(a, b)| a..=b).collect();
            let upto = txs[..cut.min(250)].iter().filter(|t| t.kind.claims_id());
            assert_eq!(ranged, upto.map(|t| t.tx).collect::<Vec<_>>());
            assert!(parts.claims.iter().all(Vec::is_empty));
            for (n, tx) in txs
                .iter()
                .enumerate()
                .skip(cut.min(250))
                .take(cut.saturating_sub(250))
            {
                parts.push(n as u32, tx, b"");
            }
            if cut > 250 {
                assert_eq!(parts.claim_ranges(), None);
                assert_eq!(parts.claims, listed_one_by_one(&txs[..cut], 3));
            }
        }
        // A run that breaks the ascent is listed whole, from its start.
        let mut parts = Parts::new(plan, 0, 0);
        parts.push_run(0, &txs[..200]);
        parts.push_run(200, &txs[200..]);
        assert_eq!(parts.claim_ranges(), None);
        assert_eq!(parts.claims, listed_one_by_one(&txs, 3));
        assert_eq!(
            claimed.len(),
            parts.claims.iter().map(Vec::len).sum::<usize>()
        );
        // Each owner finds its repeated claims' records among the rows.
        let mut parts = Parts::new(plan, 0, 0);
        parts.push_run(0, &txs[..250]);
        let listed = listed_one_by_one(&txs[..250], 3);
        for (owner, claims) in listed.iter().enumerate() {
            let pick: Vec<&Claim> = claims.iter().step_by(7).collect();
            let ids: Vec<TxId> = pick.iter().map(|c| c.id).collect();
            let mut found = parts.claimants(owner, &ids);
            found.sort_unstable();
            let mut want: Vec<(u32, u32)> = pick.iter().map(|c| (c.worker, c.index)).collect();
            want.sort_unstable();
            assert_eq!(found, want);
        }
    }

    #[test]
    fn claims_with_gaps_are_listed_past_the_most_ranges() {
        // Ascending ids two apart: a range each, up to `MAX_RANGES` of them.
        let txs: Vec<Tx> = (0..MAX_RANGES as u32 + 10)
            .map(|n| tx(Kind::Deposit, (n % 7) as u16, 2 * n + 1))
            .collect();
        let plan = Plan {
            workers: 3,
            keep_raw: false,
        };
        let mut runs = Parts::new(plan, 0, 0);
        runs.push_run(0, &txs[..MAX_RANGES]);
        assert_eq!(runs.claim_ranges().map(<[_]>::len), Some(MAX_RANGES));
        runs.push_run(MAX_RANGES as u32, &txs[MAX_RANGES..]);
        assert_eq!(runs.claim_ranges(), None);
        assert_eq!(runs.claims, listed_one_by_one(&txs, 3));
        let mut rows = Parts::new(plan, 0, 0);
        for (n, tx) in txs.iter().enumerate() {
            rows.push(n as u32, tx, b"");
        }
        assert_eq!(rows.claim_ranges(), None);
        assert_eq!(rows.claims, listed_one_by_one(&txs, 3));
    }

    #[test]
    fn an_owners_part_of_a_range_is_its_ids_as_it_numbers_them() {
        let ranges = [
            (0, 0),
            (0, 511),
            (5, 1_000),
            (511, 512),
            (700, 20_000),
            (100_000, 100_000),
            (u32::MAX - 2_000, u32::MAX),
        ];
        for workers in [1usize, 2, 3, 7, 16] {
            let shards = IdShards::new(workers);
            for range in ranges {
                for owner in 0..workers {
                    let want: Vec<TxId> = (range.0..=range.1)
                        .map(|id| shards.split(id))
                        .filter(|&(to, _)| to == owner)
                        .map(|(_, local)| local)
                        .collect();
                    let pieces: Vec<(TxId, TxId)> = shards.owned(range, owner).collect();
                    let got: Vec<TxId> = pieces.iter().flat_map(|&(a, b)| a..=b).collect();
                    assert_eq!(got, want, "{range:?} {workers} {owner}");
                    let joined = pieces.windows(2).all(|p| p[0].1 + 1 < p[1].0);
                    assert!(joined, "runs that follow each other are one");
                }
            }
        }
    }

    #[test]
    fn a_recycled_split_comes_back_empty_with_its_room() {
        let plan = Plan {
            workers: 2,
            keep_raw: true,
        };
        let recycler = Recycler::new();
        let mut parts = recycler.take(plan, 0, 100);
        for n in 0..100u32 {
            parts.push(n, &tx(Kind::Deposit, n as u16, n), b"deposit");
        }
        let room = parts.shares[0].txs.capacity();
        recycler.give(parts);
        let again = recycler.take(plan, 42, 0);
        assert_eq!((again.rows(), again.base), (0, 42));
        assert!(again
            .shares
            .iter()
            .all(|s| s.txs.is_empty() && s.raw(0).is_empty()));
        assert!(again.claims.iter().all(Vec::is_empty));
        assert_eq!(again.shares[0].txs.capacity(), room);
        recycler.give(again);
        // A split recycled from a smaller batch gets room for the rows asked.
        let bigger = recycler.take(plan, 0, 10_000);
        assert!(bigger
            .shares
            .iter()
            .all(|s| s.txs.capacity() >= 10_000 / plan.workers
                && s.lines.capacity() >= 10_000 / plan.workers));
        recycler.give(bigger);
        let other = Plan {
            workers: 3,
            keep_raw: false,
        };
        assert_eq!(
            recycler.take(other, 0, 0).plan(),
            other,
            "a split for its plan"
        );
    }

    #[test]
    fn ids_are_owned_in_runs_of_512_dealt_round_robin() {
        let runs = (0u32..3000).chain((1 << 23) - 3000..1 << 23);
        for workers in [1usize, 2, 3, 5, 7, 16, 63, 255, 256] {
            let shards = IdShards::new(workers);
            for run in runs.clone() {
                for id in [run << 9, run << 9 | 1, run << 9 | 511] {
                    let (owner, local) = shards.split(id);
                    assert_eq!(owner, run as usize % workers, "{id}, {workers}");
                    assert_eq!(local >> 9, run / workers as u32, "{id}, {workers}");
                    assert_eq!(local & 511, id & 511);
                    assert_eq!(shards.global_run(owner, local >> 9), run);
                }
            }
        }
        // A worker's share of ascending ids is dense: worker 1 of 3 holds
        // runs 1, 4, 7, ... as its runs 0, 1, 2, ...
        let locals: Vec<u32> = (0..3 * 512 * 4)
            .filter_map(|id| match IdShards::new(3).split(id) {
                (1, local) => Some(local),
                _ => None,
            })
            .collect();
        assert_eq!(locals, (0..512 * 4).collect::<Vec<_>>());
    }
}
