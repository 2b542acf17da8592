//! CPU time per thread role, for the run's summary: which role (reader,
//! parsers, workers, the calling thread) spent the machine's time, and how
//! long each role waited, and for what.
//!
//! A thread that ends charges its whole CPU time (user + system, read from
//! its own clock) to its role; [`by_role`] reads the sums, since the process
//! started. The counters are process-wide: a process that runs one engine
//! (the command line) reads that run's threads. Where the thread clock is
//! unknown (not Linux), nothing is charged and every role reads zero.
//!
//! Waits are wall time, counted by the thread that waits ([`Waiting`]) from
//! the moment it finds nothing to do until it has something, per
//! [`Wait`] kind, and charged with its CPU time. Where threads outnumber
//! cores a wait also holds time the thread spent descheduled. They tell
//! which stage a run waited on: on many cores, whether workers sat idle
//! for want of blocks (the parsers' pace, the in-order hand-out) or for
//! their peers' claims, and whether the hand-out waited for room.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

/// The roles of the threads that the library starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The thread that reads the input and cuts it into blocks.
    Reader,
    /// A thread that parses blocks (`--parsers N`).
    Parser,
    /// A thread that applies its clients' rows (`--workers N`).
    Worker,
}

const ROLES: [Role; 3] = [Role::Reader, Role::Parser, Role::Worker];

/// Nanoseconds charged and threads ended, per role.
static SPENT: [(AtomicU64, AtomicU64); 3] = [
    (AtomicU64::new(0), AtomicU64::new(0)),
    (AtomicU64::new(0), AtomicU64::new(0)),
    (AtomicU64::new(0), AtomicU64::new(0)),
];

/// What a thread waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// Work from the stage before: a block to cut into (reader: none), a
    /// cut to parse (parsers), the next parsed block in file order (the
    /// calling thread), a block to apply (workers).
    Input,
    /// Room in the stage after: a free buffer or a parser's queue (reader),
    /// fewer blocks in flight (the calling thread).
    Room,
    /// Peers of the same stage: the workers' claims on the block a worker
    /// would apply next.
    Peers,
}

const WAITS: usize = 3;

/// Nanoseconds waited, per role and [`Wait`] kind, by threads that ended.
static WAITED: [[AtomicU64; WAITS]; 3] = [
    [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)],
    [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)],
    [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)],
];

thread_local! {
    /// This thread's waits so far, nanoseconds per [`Wait`] kind.
    static THREAD_WAITED: [Cell<u64>; WAITS] = const { [Cell::new(0), Cell::new(0), Cell::new(0)] };
}

/// A wait in progress on this thread: started when the thread first finds
/// nothing to do, counted when it ends or changes kind. Free while nothing
/// is waited for (no clock read until [`Waiting::pending`]).
#[derive(Debug, Default)]
pub struct Waiting {
    since: Option<(Wait, Instant)>,
}

impl Waiting {
    /// No wait yet.
    pub fn new() -> Waiting {
        Waiting::default()
    }

    /// The thread found nothing to do, for want of `kind`.
    pub fn pending(&mut self, kind: Wait) {
        match self.since {
            Some((waited, _)) if waited == kind => {}
            _ => {
                self.done();
                self.since = Some((kind, Instant::now()));
            }
        }
    }

    /// The wait is over (also when dropped).
    pub fn done(&mut self) {
        if let Some((kind, since)) = self.since.take() {
            let ns = since.elapsed().as_nanos().min(u128::from(u64::MAX)) as u64;
            THREAD_WAITED.with(|waited| {
                let cell = &waited[kind as usize];
                cell.set(cell.get().saturating_add(ns));
            });
        }
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.done();
    }
}

/// Runs `wait`, a call that may block for want of `kind`, and counts its
/// wall time as this thread's wait (for channel receives and sends; try
/// the call without blocking first where a ready answer is common, so that
/// the clock is read only when the thread really waits).
pub fn waited<T>(kind: Wait, wait: impl FnOnce() -> T) -> T {
    let mut waiting = Waiting::new();
    waiting.pending(kind);
    wait()
}

/// The calling thread's waits so far, in seconds per [`Wait`] kind
/// (input, room, peers).
pub fn thread_waits_s() -> [f64; WAITS] {
    THREAD_WAITED.with(|waited| waited.each_ref().map(|cell| cell.get() as f64 / 1e9))
}

/// The calling thread's CPU time so far, in nanoseconds (None where the
/// platform has no thread clock).
pub fn thread_ns() -> Option<u64> {
    #[cfg(target_os = "linux")]
    {
        let mut now = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `now` is a valid timespec for the call to fill in.
        let read = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
        (read == 0).then(|| now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64)
    }
    #[cfg(not(target_os = "linux"))]
    {
        None
    }
}

/// Runs a thread's body, then charges the thread's whole CPU time to
/// `role`: wrap the whole body of a thread in it, once.
pub fn charged<T>(role: Role, body: impl FnOnce() -> T) -> T {
    let out = body();
    charge(role);
    out
}

fn charge(role: Role) {
    let (ns, threads) = &SPENT[role as usize];
    ns.fetch_add(thread_ns().unwrap_or(0), Relaxed);
    threads.fetch_add(1, Relaxed);
    THREAD_WAITED.with(|waited| {
        for (total, cell) in WAITED[role as usize].iter().zip(waited) {
            total.fetch_add(cell.get(), Relaxed);
        }
    });
}

/// Threads ended and CPU seconds spent by one role.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Spent {
    /// Threads of the role that have ended (and charged their time).
    pub threads: u64,
    /// Their CPU time, user + system, in seconds.
    pub cpu_s: f64,
    /// Their waits, wall seconds per [`Wait`] kind (input, room, peers).
    pub waits_s: [f64; WAITS],
}

/// What every role's ended threads spent, since the process started.
pub fn by_role() -> [(Role, Spent); 3] {
    ROLES.map(|role| {
        let (ns, threads) = &SPENT[role as usize];
        let spent = Spent {
            threads: threads.load(Relaxed),
            cpu_s: ns.load(Relaxed) as f64 / 1e9,
            waits_s: WAITED[role as usize]
                .each_ref()
                .map(|ns| ns.load(Relaxed) as f64 / 1e9),
        };
        (role, spent)
    })
}

impl Role {
    /// The role's name, as its threads are named (`worker-0`...).
    pub fn name(self) -> &'static str {
        match self {
            Role::Reader => "reader",
            Role::Parser => "parser",
            Role::Worker => "worker",
        }
    }
}

impl Wait {
    /// The kinds, in the order of [`Spent::waits_s`].
    pub const ALL: [Wait; WAITS] = [Wait::Input, Wait::Room, Wait::Peers];

    /// The kind's name, as the JSON summary names its seconds
    /// (`input_wait_s`...).
    pub fn name(self) -> &'static str {
        match self {
            Wait::Input => "input",
            Wait::Room => "room",
            Wait::Peers => "peers",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A thread's waits are charged to its role by kind, as wall time.
    #[test]
    fn an_ended_thread_charges_its_waits_to_its_role() {
        let before = by_role()[1].1;
        std::thread::spawn(|| {
            charged(Role::Parser, || {
                use std::time::Duration;
                let sleep = |ms| std::thread::sleep(Duration::from_millis(ms));
                let start = Instant::now();
                waited(Wait::Room, || sleep(30));
                let room_section = start.elapsed().as_secs_f64();
                let start = Instant::now();
                let mut waiting = Waiting::new();
                waiting.pending(Wait::Peers);
                sleep(20);
                waiting.pending(Wait::Peers);
                sleep(20);
                waiting.done();
                let peers_section = start.elapsed().as_secs_f64();
                // Nothing more is counted once the wait is done.
                sleep(50);
                drop(waiting);
                let [input, room, peers] = thread_waits_s();
                assert_eq!(input, 0.0);
                assert!(0.03 <= room && room <= room_section, "{room}");
                assert!(0.04 <= peers && peers <= peers_section, "{peers}");
            })
        })
        .join()
        .unwrap();
        let after = by_role()[1].1;
        // Other tests may end parser threads meanwhile: the sums only grow.
        assert!(after.waits_s[1] >= before.waits_s[1] + 0.03, "{after:?}");
        assert!(after.waits_s[2] >= before.waits_s[2] + 0.04, "{after:?}");
    }

    /// A thread that burns CPU and ends is charged to its role; the counts
    /// only grow (other tests in this process may start threads too).
    #[test]
    fn an_ended_thread_charges_its_cpu_time_to_its_role() {
        let before = by_role()[2].1;
        std::thread::spawn(|| {
            charged(Role::Worker, || {
                let start = thread_ns();
                let mut x = 1u64;
                while thread_ns()
                    .zip(start)
                    .is_some_and(|(now, s)| now - s < 20_000_000)
                {
                    x = std::hint::black_box(x.wrapping_mul(3));
                }
            })
        })
        .join()
        .unwrap();
        let after = by_role()[2].1;
        assert!(after.threads > before.threads);
        if cfg!(target_os = "linux") {
            assert!(
                after.cpu_s >= before.cpu_s + 0.02,
                "{before:?} -> {after:?}"
            );
        }
    }
}
