//! One process's share of a cluster run: read the host file, plan the
//! input, connect, load the state or a checkpoint, run the timely workers,
//! and on process 0 gather the result.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context};
use timely::communication::allocator::zero_copy::initialize::initialize_networking_from_sockets;
use timely::communication::allocator::ProcessBuilder;
use timely::communication::{AllocatorBuilder, Hooks};
use timely::WorkerConfig;

use super::connect::{connect, install_peer_loss_hook, read_hostfile, Hello};
use super::dataflow::{run_worker, Restart};
use super::gather::{gather, Shape};
use super::input::InputPlan;
use super::restart::{CheckpointOptions, Schedule, Snapshot};
use crate::engine::Finished;
use crate::report::Verbosity;

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

/// Each worker's share (in `mine`) of the ledger saved in `state`, as
/// block-0 snapshots: claimed ids by the worker their claims go to, accounts
/// and deposits by the worker their client's records go to.
pub(super) fn initial_state(
    state: &Path,
    peers: usize,
    mine: Range<usize>,
) -> anyhow::Result<Vec<Option<Snapshot>>> {
    let Some(saved) = crate::durable::state::load(state)
        .with_context(|| format!("state file {}", state.display()))?
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
pub(super) fn exchange_target(hash: u64, peers: usize) -> usize {
    let peers = peers as u64;
    let target = if peers.is_power_of_two() {
        hash & (peers - 1)
    } else {
        hash % peers
    };
    target as usize
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
    let plan = InputPlan::of(input, settings.block).map_err(anyhow::Error::from)?;
    let mine = cluster.process * workers..(cluster.process + 1) * workers;
    let schedule = match &settings.checkpoints {
        Some(options) => {
            super::restart::check_writable(&options.state)?;
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
