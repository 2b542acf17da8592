//! One process's share of a cluster run: read the host file, plan the
//! input, connect, load the state or a checkpoint, run the timely workers,
//! and on process 0 gather the result.

use std::ops::Range;
use std::path::Path;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};

use super::error::{bail, Context, Error as ClusterError};
use timely::communication::allocator::zero_copy::initialize::initialize_networking_from_sockets;
use timely::communication::allocator::ProcessBuilder;
use timely::communication::{AllocatorBuilder, Hooks};
use timely::WorkerConfig;

use super::auth::Key;
use super::connect::{check_loopback, connect, install_peer_loss_hook, read_hostfile};
use super::dataflow::{run_worker, Ended, Restart};
use super::error::Stopped;
use super::gather::{gather, Shape};
use super::hello::Hello;
use super::input::{owner, InputPlan, Part};
use super::options::{ClusterOptions, Event, Settings};
use super::restart::{Binding, Schedule, Snapshot};
use crate::durable::state::file_identity;
use crate::engine::Finished;

/// Each worker's share (in `mine`) of the ledger saved in `state`, as
/// block-0 snapshots: claimed ids by the worker their claims go to, accounts
/// and deposits by the worker their client's records go to.
pub(super) fn initial_state(
    state: &Path,
    peers: usize,
    mine: Range<usize>,
) -> super::error::Result<Vec<Option<Snapshot>>> {
    let Some(saved) = crate::durable::state::load(state)
        .with_context(|| format!("state file {}", state.display()))?
    else {
        return Ok(mine.map(|_| None).collect());
    };
    let (ids, books) = saved.ledger.split(peers);
    let mut shares: Vec<Snapshot> = mine.clone().map(|_| Snapshot::default()).collect();
    for id in ids.iter() {
        let worker = owner(id, peers);
        if mine.contains(&worker) {
            shares[worker - mine.start].ids.claim(id);
        }
    }
    for (share, book) in shares.iter_mut().zip(books.into_iter().skip(mine.start)) {
        share.book = book;
    }
    Ok(shares.into_iter().map(Some).collect())
}

/// Runs this process's share of a cluster run over the file at `input`.
/// Process 0 returns the whole run's result; the others `None`.
pub fn run(
    cluster: &ClusterOptions,
    input: &Path,
    settings: Settings,
    tell: &mut dyn FnMut(Event),
) -> super::error::Result<Option<Finished>> {
    let hosts = read_hostfile(&cluster.hostfile)?;
    let key = match &cluster.secret_file {
        Some(path) => Key::from_file(path)?,
        None => {
            check_loopback(&hosts)?;
            Key::of(b"")
        }
    };
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
    let plan = InputPlan::of(input, settings.block).map_err(ClusterError::from)?;
    let mine = cluster.process * workers..(cluster.process + 1) * workers;
    let stamp = settings
        .checkpoints
        .as_ref()
        .and_then(|c| stamp_of(&c.state));
    let (schedule, complete) = checkpoints(cluster, &settings, (input, processes), &plan)?;
    let newest = |i: usize| complete.len().checked_sub(i).map_or(0, |i| complete[i]);
    let hello = Hello {
        index: cluster.process as u64,
        processes: processes as u64,
        workers: workers as u64,
        block: settings.block as u64,
        input_len: plan.len,
        every: schedule.as_ref().map_or(0, |s| s.every),
        resume: u64::from(settings.checkpoints.as_ref().is_some_and(|c| c.resume)),
        last: newest(1),
        prev: newest(2),
    };
    let (sockets, peers) = connect(&hosts, &hello, &key, cluster.connect_timeout)?;
    // Go on from the latest checkpoint every process completed.
    let start = [hello.last, hello.prev]
        .into_iter()
        .filter(|&c| c > 0 && peers.iter().all(|p| p.last == c || p.prev == c))
        .max()
        .unwrap_or(0);
    let snapshots = match (&schedule, &settings.checkpoints) {
        (Some(schedule), Some(options)) => {
            starting_snapshots(schedule, &options.state, start, processes * workers, mine)?
        }
        _ => Vec::new(),
    };
    install_peer_loss_hook(cluster.process);
    tell(Event::Connected {
        process: cluster.process,
        others: processes - 1,
    });
    let workers_run = Workers {
        process: cluster.process,
        workers,
        input,
        plan,
        restart: schedule.clone().map(|schedule| (schedule, start)),
        stop: settings.stop.clone(),
    };
    let result = match workers_run.execute(sockets, snapshots)? {
        Some(parts) => {
            let shape = Shape {
                processes,
                workers,
                start,
            };
            let mut warn = |text| tell(Event::Warning(text));
            // With a state file, the input's hash, taken at the start.
            let input_hash = schedule.as_ref().map(Schedule::input_hash);
            gather(
                input_hash,
                parts,
                (input, &plan),
                &settings,
                shape,
                &mut warn,
            )
            .map(Some)
        }
        None => Ok(None),
    };
    // The checkpoints stay until process 0 has committed the state file:
    // until then they are what --resume goes on from. Process 0's caller
    // removes its own after its commit (`ClusterOptions::discard_checkpoints`); the others
    // wait a while for that commit to show, then remove theirs (or leave
    // them for their next start to settle).
    if let (Ok(_), Some(options), true) = (&result, &settings.checkpoints, cluster.process != 0) {
        if committed_within(&options.state, stamp, cluster.connect_timeout) {
            super::restart::discard_checkpoints(&options.state, cluster.process)
                .context("removing checkpoint files")?;
        }
    }
    result
}

/// What tells a file was replaced: its device, inode, size and mtime.
type Stamp = Option<(u64, u64, u64, std::time::SystemTime)>;

fn stamp_of(path: &Path) -> Stamp {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.dev(), meta.ino(), meta.len(), meta.modified().ok()?))
}

/// Whether the state file at `state` is replaced (process 0 committed)
/// within `limit` of now.
fn committed_within(state: &Path, before: Stamp, limit: std::time::Duration) -> bool {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if stamp_of(state) != before {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// With `--state`: where this process's checkpoints go, and those every
/// worker of it completed (newest last), refused unless `--resume`.
fn checkpoints(
    cluster: &ClusterOptions,
    settings: &Settings,
    (input, processes): (&Path, usize),
    plan: &InputPlan,
) -> super::error::Result<(Option<Schedule>, Vec<u64>)> {
    let Some(options) = &settings.checkpoints else {
        return Ok((None, Vec::new()));
    };
    super::restart::check_writable(&options.state)?;
    let per_process = settings.workers.max(1);
    let binding = Binding {
        input: file_identity(input).context("hashing the input")?,
        block: settings.block as u64,
        processes: processes as u64,
        workers: per_process as u64,
        base: file_identity(&options.state)
            .with_context(|| format!("state file {}", options.state.display()))?,
    };
    let schedule = Schedule::new(
        options,
        cluster.process,
        processes * per_process,
        settings.block,
        plan.blocks,
        binding,
    );
    schedule.settle(options.resume)?;
    let mine = cluster.process * per_process..(cluster.process + 1) * per_process;
    let complete = schedule
        .complete(mine)
        .context("listing checkpoint files")?;
    if let (false, Some(&last)) = (options.resume, complete.last()) {
        bail!(
            "process {} has a checkpoint of an interrupted run at block {last} beside state file {}: \
             --resume goes on from it (on every process), or remove {}.cluster-p{}-*",
            cluster.process,
            options.state.display(),
            options.state.display(),
            cluster.process
        );
    }
    Ok((Some(schedule), complete))
}

/// Each of this process's workers' state at `start`: a checkpoint's, or
/// (at block 0) its share of the state file's ledger.
fn starting_snapshots(
    schedule: &Schedule,
    state: &Path,
    start: u64,
    peers: usize,
    mine: Range<usize>,
) -> super::error::Result<Vec<Option<Snapshot>>> {
    // Checkpoints past the one taken (a newer one some process missed)
    // would be mistaken for this run's.
    schedule
        .remove(Some(start))
        .context("removing checkpoint files")?;
    if start == 0 {
        return initial_state(state, peers, mine);
    }
    mine.map(|worker| schedule.load(worker, start).map(Some))
        .collect()
}

/// This process's timely workers, as they are started.
struct Workers<'a> {
    process: usize,
    workers: usize,
    input: &'a Path,
    plan: InputPlan,
    /// With `--state`: the schedule, and the checkpoint block to go on from.
    restart: Option<(Schedule, u64)>,
    /// The stop flag a signal raises, if any.
    stop: Option<Arc<AtomicUsize>>,
}

impl Workers<'_> {
    /// Runs the workers over `sockets` (one per other process) until they
    /// finish: every part on process 0, `None` elsewhere.
    fn execute(
        self,
        sockets: Vec<Option<std::net::TcpStream>>,
        snapshots: Vec<Option<Snapshot>>,
    ) -> super::error::Result<Option<Vec<Part>>> {
        let builders =
            ProcessBuilder::new_typed_vector(self.workers, Hooks::default().refill, None);
        let (builders, comms) = initialize_networking_from_sockets(
            builders,
            sockets,
            self.process,
            self.workers,
            Hooks::default(),
        )
        .context("starting the cluster's network threads")?;
        let builders = builders.into_iter().map(AllocatorBuilder::Tcp).collect();
        let snapshots = Arc::new(Mutex::new(snapshots));
        let path = Arc::new(self.input.to_path_buf());
        let first = self.process * self.workers;
        let (plan, restart, stop) = (self.plan, self.restart, self.stop);
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
                let restart = restart.clone().map(|(schedule, start)| Restart {
                    schedule,
                    start,
                    snapshot,
                });
                run_worker(worker, &path, plan, stop.clone(), restart)
            },
        )
        .map_err(|e| ClusterError::msg(format!("starting the cluster's workers: {e}")))?;
        let mut parts = None;
        for result in guards.join() {
            match result {
                Ok(Ended::Gathered(gathered)) => parts = Some(gathered),
                Ok(Ended::Done) => {}
                Ok(Ended::Stopped(signal)) => {
                    return Err(Stopped {
                        signal: signal as i32,
                    }
                    .into())
                }
                Err(e) => bail!("a cluster worker failed: {e}"),
            }
        }
        Ok(parts)
    }
}
