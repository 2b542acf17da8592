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
//!    [`Book`] (the ledger, unchanged), blocks in order: a client's records
//!    in file order;
//! 3. at the end every worker sends its accounts, its rows that were not
//!    applied (rejected by the ledger, malformed to its parser) with their
//!    (block, line), and its blocks' line counts to worker 0 (on process
//!    0), which numbers the lines (a prefix sum of the counts) and builds
//!    the same [`Finished`] a single-machine run gives: the same stdout,
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

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::slice::IterMut;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use timely::communication::allocator::zero_copy::initialize::initialize_networking_from_sockets;
use timely::communication::allocator::ProcessBuilder;
use timely::communication::{AllocatorBuilder, Hooks};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::vec::Partition;
use timely::dataflow::operators::{Capability, Concat, Input, InputCapability, Probe};
use timely::dataflow::{InputHandle, ProbeHandle};
use timely::progress::frontier::MutableAntichain;
use timely::WorkerConfig;

pub use restart::CheckpointOptions;
use restart::{BookSnapshot, Due, Pending, Schedule, Snapshot};

use crate::deposits::Deposit;
use crate::engine::{block_size_text, early_malformed_warning, Error, Finished, EARLY_ROWS};
use crate::ledger::{Account, Book};
use crate::parse::{first_line_end, Columns, Parser, Position};
use crate::report::{EventLog, Outcome, Verbosity};
use crate::store::TxIdSet;
use crate::tx::{ClientId, Tx, TxId};

mod restart;

/// How this process takes part in a cluster run.
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    /// One `host:port` per line, one line per process, the same file for all.
    pub hostfile: PathBuf,
    /// This process's line in the host file, from 0.
    pub process: usize,
    /// How long to wait for every other process to connect.
    pub connect_timeout: Duration,
}

/// What every process of a run must agree on, besides the input.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Timely workers per process.
    pub workers: usize,
    /// Target block size in bytes.
    pub block: usize,
    /// What the stderr report keeps (process 0's choice counts).
    pub verbosity: Verbosity,
    /// Keep every row that was not applied, for a rejects file.
    pub keep_rejects: bool,
    /// The first malformed row is fatal (`--strict`).
    pub strict: bool,
    /// Checkpoints, and going on from one (`--state`).
    pub checkpoints: Option<CheckpointOptions>,
}

/// Blocks in flight per worker before a worker waits for the dataflow.
const LAG_ROUNDS: u64 = 4;

/// The handshake's first bytes: the program and the version of this
/// protocol.
const MAGIC: &[u8; 8] = b"PAYENG\x00\x01";

/// The host file's addresses, one per non-blank line (`#` starts a
/// comment).
pub fn read_hostfile(path: &Path) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read host file {}", path.display()))?;
    let hosts: Vec<String> = text
        .lines()
        .map(|line| line.split('#').next().unwrap_or("").trim().to_string())
        .filter(|line| !line.is_empty())
        .collect();
    if hosts.is_empty() {
        bail!("host file {} lists no host:port", path.display());
    }
    Ok(hosts)
}

/// How the input is cut: the same on every process.
#[derive(Clone, Copy, Debug)]
struct Plan {
    len: u64,
    block: u64,
    blocks: u64,
    /// Where the first non-blank line ends: no block but block 0 starts
    /// before it.
    first_end: u64,
    /// The columns that line names.
    columns: Columns,
}

impl Plan {
    fn of(path: &Path, block: usize) -> Result<Plan, Error> {
        let file = File::open(path).map_err(|e| Error::Input(e.into()))?;
        let len = file.metadata().map_err(|e| Error::Input(e.into()))?.len();
        let (first_end, columns) = first_line_end(&file).map_err(Error::Input)?;
        let block = block as u64;
        Ok(Plan {
            len,
            block,
            blocks: len.div_ceil(block).max(1),
            first_end,
            columns,
        })
    }
}

/// A worker's reader of the input: where its blocks start, and their rows.
struct Cuts {
    file: File,
    plan: Plan,
    /// The last scan for a line start: from where, and what it found. A
    /// long line spans many blocks; each worker scans it once.
    last: Option<(u64, u64)>,
    /// Keep each row's line (only a rejects file needs it).
    keep_raw: bool,
    /// The buffer line starts are scanned in, allocated once.
    scan: Vec<u8>,
}

impl Cuts {
    /// Where block `k` starts: the first line start at or after both
    /// `k x block` and the end of the first non-blank line.
    fn start(&mut self, k: u64) -> io::Result<u64> {
        let plan = self.plan;
        if k == 0 {
            return Ok(0);
        }
        let at = k.saturating_mul(plan.block).max(plan.first_end);
        if at >= plan.len {
            return Ok(plan.len);
        }
        if let Some((from, found)) = self.last {
            if (from..=found).contains(&at) {
                return Ok(found);
            }
        }
        // A line starts at `at` if the byte before it ends a line.
        self.file.seek(SeekFrom::Start(at - 1))?;
        self.scan.resize(64 * 1024, 0);
        let mut pos = at - 1;
        let found = loop {
            let n = self.file.read(&mut self.scan)?;
            if n == 0 {
                break plan.len;
            }
            if let Some(i) = memchr::memchr(b'\n', &self.scan[..n]) {
                break (pos + i as u64 + 1).min(plan.len);
            }
            pos += n as u64;
        };
        self.last = Some((at, found));
        Ok(found)
    }
}

/// A well-formed record on its way through the dataflow; its block is its
/// timestamp.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Rec {
    /// Line within the block, from 1.
    line: u64,
    tx: Tx,
    /// The outcome of its claim (deposits and withdrawals).
    fresh: bool,
    /// The original line, for the rejects file (empty without one).
    raw: Vec<u8>,
}

/// An operator's records, stashed by block until timely says the block is
/// complete (no record of it or of a block before it is still on its way),
/// each block holding a capability so that the blocks after it wait.
#[derive(Default)]
struct Blocks {
    stash: BTreeMap<u64, (Capability<u64>, Vec<Rec>)>,
}

impl Blocks {
    /// Stashes what arrived at `cap`'s block.
    fn take(&mut self, cap: &InputCapability<u64>, data: IterMut<'_, Vec<Rec>>, port: usize) {
        if let Some(cap) = cap.retain_least(port) {
            let entry = self.stash.entry(*cap.time()).or_insert((cap, Vec::new()));
            for batch in data {
                entry.1.append(batch);
            }
        }
    }

    /// The first stashed block if it is complete, its records in line
    /// order: blocks come out in order, each once.
    fn next_complete(
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

/// The cluster a run had, for `--verbose`.
#[derive(Clone, Copy, Debug)]
struct Shape {
    processes: usize,
    workers: usize,
    /// The checkpoint block it went on from (0: the start).
    start: u64,
}

/// Each worker's share (in `mine`) of the ledger saved in `state`, as
/// block-0 snapshots: claimed ids by the worker their claims go to, accounts
/// and deposits by the worker their client's records go to.
fn initial_state(
    state: &Path,
    peers: usize,
    mine: Range<usize>,
) -> anyhow::Result<Vec<Option<Snapshot>>> {
    let Some(saved) =
        crate::state::load(state).with_context(|| format!("state file {}", state.display()))?
    else {
        return Ok(mine.map(|_| None).collect());
    };
    let ledger = saved.ledger;
    let mut shares: Vec<Snapshot> = mine.clone().map(|_| Snapshot::default()).collect();
    let share = |key: u64| {
        let worker = exchange_target(key, peers);
        mine.contains(&worker).then(|| worker - mine.start)
    };
    for id in ledger.claimed_ids() {
        if let Some(i) = share(u64::from(id)) {
            shares[i].ids.push(id);
        }
    }
    for (client, account) in ledger.accounts() {
        if let Some(i) = share(u64::from(client)) {
            shares[i].accounts.push((client, account));
        }
    }
    for (id, deposit) in ledger.deposits() {
        if let Some(i) = share(u64::from(deposit.client)) {
            shares[i].deposits.push((id, deposit));
        }
    }
    Ok(shares.into_iter().map(Some).collect())
}

/// The worker timely's `Exchange` sends a record with `hash` to among
/// `peers` (as timely 0.32 computes it: a mask for a power of two, else the
/// remainder). The loaded state must be split the same way; the state
/// tests would fail if timely changed it.
fn exchange_target(hash: u64, peers: usize) -> usize {
    let peers = peers as u64;
    let target = if peers.is_power_of_two() {
        hash & (peers - 1)
    } else {
        hash % peers
    };
    target as usize
}

/// Where a worker starts and how it checkpoints.
struct Restart {
    schedule: Schedule,
    /// The checkpoint block it goes on from (0: the start).
    start: u64,
    /// Its state at `start`.
    snapshot: Option<Snapshot>,
}

/// What one worker sends to worker 0 at the end.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Part {
    accounts: Vec<(ClientId, Account)>,
    /// Rows not applied: (block, line within it, outcome, raw line).
    events: Vec<(u64, u64, Outcome, Vec<u8>)>,
    applied: u64,
    deposits: u64,
    /// (block, lines in it) for the blocks this worker parsed.
    lines: Vec<(u64, u64)>,
    /// The header's warnings (block 0's parser).
    warnings: Vec<String>,
    /// (block, line of its first well-formed row) for the blocks this
    /// worker parsed that have one.
    first_ok: Vec<(u64, u64)>,
    /// The error that ended the input at a block: (block, message).
    error: Option<(u64, String)>,
    /// With a state file: the ids this worker claimed and the deposits it
    /// stores, for process 0 to save the whole ledger.
    ids: Vec<TxId>,
    stored: Vec<(TxId, Deposit)>,
}

impl Part {
    /// What the parse side kept of the blocks before `c` (the stages'
    /// share is snapshotted by the stages themselves).
    fn before(&self, c: u64) -> Part {
        let early = |v: &[(u64, u64)]| v.iter().copied().filter(|&(k, _)| k < c).collect();
        Part {
            accounts: Vec::new(),
            events: self.events.iter().filter(|e| e.0 < c).cloned().collect(),
            applied: self.applied,
            deposits: 0,
            lines: early(&self.lines),
            warnings: self.warnings.clone(),
            first_ok: early(&self.first_ok),
            error: None,
            ids: Vec::new(),
            stored: Vec::new(),
        }
    }
}

/// Parses block `k`: well-formed records into `recs`, malformed rows as
/// events, its line count (when it has lines) and its warnings into `part`.
fn parse_block(cuts: &mut Cuts, k: u64, recs: &mut Vec<Rec>, part: &mut Part) -> Result<(), Error> {
    let io = |e: io::Error| Error::Input(e.into());
    let start = cuts.start(k).map_err(io)?;
    let end = cuts.start(k + 1).map_err(io)?;
    if start >= end {
        // Inside a long line, or past the end: no lines.
        return Ok(());
    }
    cuts.file.seek(SeekFrom::Start(start)).map_err(io)?;
    let range = (&cuts.file).take(end - start);
    let mut parser = if k == 0 {
        Parser::within(range, true, Columns::POSITIONAL, false)
    } else {
        Parser::within(range, false, cuts.plan.columns, true)
    };
    let mut first_ok = None;
    let keep_raw = cuts.keep_raw;
    while let Some(row) = parser.next_row().map_err(Error::Input)? {
        let raw = if keep_raw {
            row.raw.to_vec()
        } else {
            Vec::new()
        };
        match row.parsed {
            Ok(tx) => {
                first_ok.get_or_insert(row.line);
                recs.push(Rec {
                    line: row.line,
                    tx,
                    fresh: false,
                    raw,
                });
            }
            Err(reason) => {
                let outcome = Outcome::Malformed(reason);
                part.events.push((k, row.line, outcome, raw));
            }
        }
    }
    part.lines.push((k, parser.lines_read()));
    part.warnings.extend(parser.take_warnings());
    part.first_ok.extend(first_ok.map(|line| (k, line)));
    Ok(())
}

/// Runs this process's share of a cluster run over the file at `input`.
/// Process 0 returns the whole run's result; the others `None`.
pub fn run(
    cluster: &ClusterOptions,
    input: &Path,
    settings: Settings,
    warn: &mut dyn FnMut(String),
) -> anyhow::Result<Option<Finished>> {
    let hosts = read_hostfile(&cluster.hostfile)?;
    let processes = hosts.len();
    if cluster.process >= processes {
        bail!(
            "--process {} is not a line of host file {} ({} processes: 0 to {})",
            cluster.process,
            cluster.hostfile.display(),
            processes,
            processes - 1
        );
    }
    let workers = settings.workers.max(1);
    let plan = Plan::of(input, settings.block).map_err(anyhow::Error::from)?;
    let mine = cluster.process * workers..(cluster.process + 1) * workers;
    let schedule = match &settings.checkpoints {
        Some(options) => {
            restart::check_writable(&options.state)?;
            let schedule = Schedule::new(
                options,
                cluster.process,
                processes * workers,
                settings.block,
                plan.blocks,
            );
            Some(schedule)
        }
        None => None,
    };
    // The checkpoints every worker of this process completed, newest last.
    let complete = match &schedule {
        Some(schedule) => schedule
            .complete(mine.clone())
            .context("listing checkpoint files")?,
        None => Vec::new(),
    };
    let resume = settings.checkpoints.as_ref().is_some_and(|c| c.resume);
    if let (Some(options), false, Some(&last)) = (&settings.checkpoints, resume, complete.last()) {
        bail!(
            "process {} has a checkpoint of an interrupted run at block {last} beside state file {}: \
             --resume goes on from it (on every process), or remove {}.cluster-p{}-*",
            cluster.process,
            options.state.display(),
            options.state.display(),
            cluster.process
        );
    }
    let newest = |i: usize| complete.len().checked_sub(i).map_or(0, |i| complete[i]);
    let hello = Hello {
        index: cluster.process as u64,
        processes: processes as u64,
        workers: workers as u64,
        block: settings.block as u64,
        input_len: plan.len,
        raw: u64::from(settings.keep_rejects),
        every: schedule.as_ref().map_or(0, |s| s.every),
        resume: u64::from(resume),
        last: newest(1),
        prev: newest(2),
    };
    let (sockets, keep_raw, peers) = connect(&hosts, &hello, cluster.connect_timeout)?;
    // Go on from the latest checkpoint every process completed.
    let start = [hello.last, hello.prev]
        .into_iter()
        .filter(|&c| c > 0 && peers.iter().all(|p| p.last == c || p.prev == c))
        .max()
        .unwrap_or(0);
    let mut snapshots = Vec::new();
    if let (Some(schedule), Some(options)) = (&schedule, &settings.checkpoints) {
        // Checkpoints past the one taken (a newer one some process missed)
        // would be mistaken for this run's.
        schedule
            .remove(Some(start))
            .context("removing checkpoint files")?;
        if start > 0 {
            for worker in mine.clone() {
                snapshots.push(Some(schedule.load(worker, start)?));
            }
        } else {
            snapshots = initial_state(&options.state, processes * workers, mine.clone())?;
        }
    }
    let snapshots = Arc::new(Mutex::new(snapshots));
    install_peer_loss_hook(cluster.process);
    // Process 0's stderr is the run's report; the others may say this.
    if cluster.process != 0 && settings.verbosity == Verbosity::Verbose {
        eprintln!(
            "payments-engine: cluster process {}: connected to {} other processes",
            cluster.process,
            processes - 1
        );
    }

    let builders = ProcessBuilder::new_typed_vector(workers, Hooks::default().refill, None);
    let (builders, comms) = initialize_networking_from_sockets(
        builders,
        sockets,
        cluster.process,
        workers,
        Hooks::default(),
    )
    .context("starting the cluster's network threads")?;
    let builders = builders.into_iter().map(AllocatorBuilder::Tcp).collect();
    let path = Arc::new(input.to_path_buf());
    let first = mine.start;
    let restart_schedule = schedule.clone();
    let guards = timely::execute::execute_from(
        builders,
        Box::new(comms),
        WorkerConfig::default(),
        move |worker| {
            let snapshot = snapshots
                .lock()
                .expect("no worker panics holding it")
                .get_mut(worker.index() - first)
                .and_then(Option::take);
            let restart = restart_schedule.clone().map(|schedule| Restart {
                schedule,
                start,
                snapshot,
            });
            run_worker(worker, &path, plan, keep_raw, restart)
        },
    )
    .map_err(|e| anyhow::anyhow!("starting the cluster's workers: {e}"))?;
    let mut parts = None;
    for result in guards.join() {
        match result {
            Ok(Some(gathered)) => parts = Some(gathered),
            Ok(None) => {}
            Err(e) => bail!("a cluster worker failed: {e}"),
        }
    }
    let result = match parts {
        Some(parts) => {
            let shape = Shape {
                processes,
                workers,
                start,
            };
            gather(input, parts, &plan, &settings, shape, warn).map(Some)
        }
        None => Ok(None),
    };
    // The run is whole: its checkpoints are of no more use.
    if let (Ok(_), Some(schedule)) = (&result, &schedule) {
        schedule.remove(None).context("removing checkpoint files")?;
    }
    result
}

/// One timely worker: its blocks in, the claim and apply stages, its part
/// out; worker 0 returns every part.
fn run_worker(
    worker: &mut timely::worker::Worker,
    path: &Path,
    plan: Plan,
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
    let pending = Rc::new(RefCell::new(Pending::default()));
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
                    let mut blocks = Blocks::default();
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
                        let mut blocks = Blocks::default();
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
                let parsed = parse_block(&mut cuts, k, &mut recs, &mut part.borrow_mut());
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
fn message(error: Error) -> String {
    format!("{:#}", anyhow::Error::from(error))
}

/// The xxh3-128 of a whole file.
fn hash_file(path: &Path) -> io::Result<u128> {
    let mut file = File::open(path)?;
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match file.read(&mut buf)? {
            0 => return Ok(hasher.digest128()),
            n => hasher.update(&buf[..n]),
        }
    }
}

/// Worker 0's view of every part: the run's result.
fn gather(
    input: &Path,
    parts: Vec<Part>,
    plan: &Plan,
    settings: &Settings,
    shape: Shape,
    warn: &mut dyn FnMut(String),
) -> anyhow::Result<Finished> {
    // The input ends at the first block that failed, as it would have in
    // one process.
    if let Some((_, text)) = parts.iter().filter_map(|p| p.error.clone()).min() {
        bail!("{text}");
    }
    // Lines per block (a block inside a long line has none and is not
    // listed), then the lines before each block.
    let mut before = vec![0u64; plan.blocks as usize];
    for &(k, lines) in parts.iter().flat_map(|p| &p.lines) {
        before[k as usize] = lines;
    }
    let mut sum = 0u64;
    for count in before.iter_mut() {
        (*count, sum) = (sum, sum + *count);
    }
    for text in parts.iter().flat_map(|p| p.warnings.iter()) {
        warn(text.clone());
    }
    // The first well-formed row: are the rows before it many and all
    // malformed, as a single run would warn?
    let first_ok = parts
        .iter()
        .flat_map(|p| &p.first_ok)
        .map(|&(k, line)| before[k as usize] + line)
        .min()
        .unwrap_or(u64::MAX);
    let mut events: Vec<(u64, Outcome, Vec<u8>)> = Vec::new();
    let mut accounts = Vec::new();
    let (mut applied, mut deposits) = (0, 0);
    let (mut ids, mut stored) = (Vec::new(), Vec::new());
    for part in parts {
        ids.extend(part.ids);
        stored.extend(part.stored);
        for (k, line, outcome, raw) in part.events {
            events.push((before[k as usize] + line, outcome, raw));
        }
        accounts.extend(part.accounts);
        applied += part.applied;
        deposits += part.deposits;
    }
    events.sort_unstable_by_key(|event| event.0);
    if settings.strict {
        let first = events.iter().find_map(|&(line, outcome, _)| match outcome {
            Outcome::Malformed(reason) => Some((line, reason)),
            _ => None,
        });
        if let Some((line, reason)) = first {
            return Err(Error::Strict { line, reason }.into());
        }
    }
    let early = EARLY_ROWS as usize;
    if let Some(&(line, Outcome::Malformed(reason), _)) = events.get(early - 1) {
        let all = events[..early]
            .iter()
            .all(|e| matches!(e.1, Outcome::Malformed(_)));
        if all && line < first_ok {
            warn(early_malformed_warning(line, reason.describe()));
        }
    }
    let mut log =
        EventLog::new(settings.verbosity, settings.keep_rejects).map_err(Error::CreateSpool)?;
    for (line, outcome, raw) in &events {
        log.record(*line, *outcome, raw)
            .map_err(Error::WriteSpool)?;
    }
    log.tally.applied += applied;
    let block = block_size_text(plan.block);
    let Shape {
        processes,
        workers,
        start,
    } = shape;
    let mut note = format!("cluster: {processes} processes x {workers} workers, blocks of {block}");
    if start > 0 {
        note.push_str(&format!(", resumed from the checkpoint at block {start}"));
    }
    let notes = vec![note];
    let mut end = Position {
        offset: plan.len,
        line: sum,
        prefix_hash: 0,
    };
    // With a state file: the whole ledger, and the input's identity (the
    // hash of all its bytes, as a single run records it).
    let state = match &settings.checkpoints {
        Some(_) => {
            end.prefix_hash = hash_file(input).context("hashing the input for the state file")?;
            let ledger =
                crate::ledger::Ledger::from_parts(accounts.iter().copied(), stored, ids)
                    .map_err(|e| anyhow::anyhow!("the cluster's ledger does not add up: {e}"))?;
            Some(ledger)
        }
        None => None,
    };
    Ok(Finished::gathered(
        accounts,
        log,
        deposits as usize,
        notes,
        end,
        state,
    ))
}

/// What each side of a connection says first: who it is and what it runs
/// with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Hello {
    index: u64,
    processes: u64,
    workers: u64,
    block: u64,
    input_len: u64,
    /// Process 0 keeps the rejected rows' lines (for `--rejects`): 1, else
    /// 0. Process 0's answer decides whether records carry their line.
    raw: u64,
    /// Blocks between checkpoints (0: none).
    every: u64,
    /// 1 with `--resume`.
    resume: u64,
    /// The last two checkpoints every worker of the process completed (0:
    /// none).
    last: u64,
    prev: u64,
}

impl Hello {
    fn write(&self, out: &mut impl Write) -> io::Result<()> {
        let mut bytes = MAGIC.to_vec();
        for value in [
            self.index,
            self.processes,
            self.workers,
            self.block,
            self.input_len,
            self.raw,
            self.every,
            self.resume,
            self.last,
            self.prev,
        ] {
            bytes.extend_from_slice(&value.to_le_bytes());
        }
        out.write_all(&bytes)
    }

    fn read(src: &mut impl Read) -> io::Result<Option<Hello>> {
        let mut bytes = [0u8; 8 + 10 * 8];
        src.read_exact(&mut bytes)?;
        if &bytes[..8] != MAGIC {
            return Ok(None);
        }
        let value = |i: usize| u64::from_le_bytes(bytes[8 + 8 * i..16 + 8 * i].try_into().unwrap());
        Ok(Some(Hello {
            index: value(0),
            processes: value(1),
            workers: value(2),
            block: value(3),
            input_len: value(4),
            raw: value(5),
            every: value(6),
            resume: value(7),
            last: value(8),
            prev: value(9),
        }))
    }

    /// Why `peer` cannot run with this process, if it cannot.
    fn mismatch(&self, peer: &Hello) -> Option<String> {
        let settings = [
            ("a host file of processes", self.processes, peer.processes),
            ("--workers", self.workers, peer.workers),
            ("--block-size", self.block, peer.block),
            ("an input of bytes", self.input_len, peer.input_len),
            (
                "checkpoints every blocks (--state, --checkpoint-every)",
                self.every,
                peer.every,
            ),
            ("--resume (1) or not (0)", self.resume, peer.resume),
        ];
        let (what, mine, theirs) = settings.into_iter().find(|s| s.1 != s.2)?;
        Some(format!(
            "process {} runs with {what} {theirs}, process {} with {mine}: every process needs \
             the same host file, --workers, --block-size, --state settings and input",
            peer.index, self.index
        ))
    }
}

/// Connects to every other process (before `me`: connect; after: accept),
/// checking each says hello with the same settings; a socket per process,
/// `None` at `me`, and whether process 0 keeps rejected rows' lines.
fn connect(
    hosts: &[String],
    me: &Hello,
    timeout: Duration,
) -> anyhow::Result<(Vec<Option<TcpStream>>, bool, Vec<Hello>)> {
    let mut keep_raw = me.raw != 0;
    let mut peers = Vec::new();
    let index = me.index as usize;
    let deadline = Instant::now() + timeout;
    let listener = TcpListener::bind(&hosts[index])
        .with_context(|| format!("process {index} cannot listen on {}", hosts[index]))?;
    listener.set_nonblocking(true)?;
    let mut sockets: Vec<Option<TcpStream>> = (0..hosts.len()).map(|_| None).collect();
    let late = |what: String| {
        anyhow::anyhow!(
            "{what} within {} (--connect-timeout); is every process of the host file started?",
            humantime::format_duration(timeout)
        )
    };
    for (peer, host) in hosts.iter().enumerate().take(index) {
        let mut stream = loop {
            let addresses: Vec<_> = host
                .to_socket_addrs()
                .with_context(|| format!("process {peer}'s address {host}"))?
                .collect();
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(late(format!(
                    "process {index} could not connect to process {peer} at {host}"
                )));
            }
            let attempt = addresses.iter().find_map(|address| {
                TcpStream::connect_timeout(address, left.min(Duration::from_secs(1))).ok()
            });
            match attempt {
                Some(stream) => break stream,
                None => std::thread::sleep(Duration::from_millis(50)),
            }
        };
        stream.set_read_timeout(Some(
            deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1)),
        ))?;
        me.write(&mut stream)?;
        let hello = Hello::read(&mut stream)
            .map_err(|e| late(format!("process {peer} at {host} did not answer ({e})")))?;
        check_peer(me, hello, peer, host)?;
        if peer == 0 {
            keep_raw = hello.is_some_and(|h| h.raw != 0);
        }
        peers.extend(hello);
        sockets[peer] = Some(stream);
    }
    let mut waiting = hosts.len() - index - 1;
    while waiting > 0 {
        match listener.accept() {
            Ok((mut stream, from)) => {
                stream.set_nonblocking(false)?;
                stream.set_read_timeout(Some(
                    deadline
                        .saturating_duration_since(Instant::now())
                        .max(Duration::from_millis(1)),
                ))?;
                let hello = match Hello::read(&mut stream) {
                    Ok(hello) => hello,
                    // Not one of ours (a port scan, a health check): ignore.
                    Err(_) => continue,
                };
                let Some(peer) = hello.map(|h| h.index as usize) else {
                    continue;
                };
                if peer <= index || peer >= hosts.len() || sockets[peer].is_some() {
                    bail!("process {index} got a connection from {from} claiming to be process {peer}");
                }
                // Answer first, so that the peer can tell what differs too.
                me.write(&mut stream)?;
                check_peer(me, hello, peer, &hosts[peer])?;
                peers.extend(hello);
                sockets[peer] = Some(stream);
                waiting -= 1;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if Instant::now() >= deadline {
                    let missing: Vec<String> = (index + 1..hosts.len())
                        .filter(|&p| sockets[p].is_none())
                        .map(|p| p.to_string())
                        .collect();
                    return Err(late(format!(
                        "process {index} heard from no process {}",
                        missing.join(", ")
                    )));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(e).context("accepting a connection"),
        }
    }
    for stream in sockets.iter().flatten() {
        stream.set_read_timeout(None)?;
        stream.set_nodelay(true)?;
    }
    Ok((sockets, keep_raw, peers))
}

fn check_peer(me: &Hello, hello: Option<Hello>, peer: usize, host: &str) -> anyhow::Result<()> {
    let Some(hello) = hello else {
        bail!("{host} (process {peer} of the host file) is not a payments-engine of this version");
    };
    if hello.index != peer as u64 {
        bail!(
            "{host} answers as process {}, but the host file has it as process {peer}",
            hello.index
        );
    }
    if let Some(why) = me.mismatch(&hello) {
        bail!("{why}");
    }
    Ok(())
}

/// From here on a panic (timely's network threads panic when a peer goes
/// away) is one line on stderr and exit status 1, at once: no trace, no
/// hang of the threads left waiting for the peer. Only the first panicking
/// thread writes.
fn install_peer_loss_hook(process: usize) {
    static FIRST: AtomicBool = AtomicBool::new(true);
    std::panic::set_hook(Box::new(move |info| {
        if !FIRST.swap(false, Ordering::SeqCst) {
            // Another thread is reporting and ending the process.
            loop {
                std::thread::park();
            }
        }
        let text = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("a panic");
        // timely names its network threads `timely:recv-N` and `send-N`.
        let peer = std::thread::current()
            .name()
            .and_then(|name| name.rsplit_once('-'))
            .and_then(|(_, n)| n.parse::<usize>().ok());
        let what = match (text.starts_with("timely communication error"), peer) {
            (true, Some(peer)) => {
                format!("lost the connection to process {peer}")
            }
            (true, None) => "lost the connection to another process".to_string(),
            (false, _) => "a cluster thread failed".to_string(),
        };
        let line = format!(
            "payments-engine: error: cluster process {process}: {what} ({text}); stopping\n"
        );
        // Straight to fd 2 and out: the run's thread holds the stderr and
        // stdout locks, which `eprintln!` and `process::exit` would wait for.
        // SAFETY: write(2) reads `line` only; _exit(2) does not return.
        unsafe {
            libc::write(2, line.as_ptr().cast(), line.len());
            libc::_exit(1)
        }
    }));
}
