//! CPU time per thread role, for the run's summary: which role (reader,
//! parsers, workers, the calling thread) spent the machine's time.
//!
//! A thread that ends charges its whole CPU time (user + system, read from
//! its own clock) to its role; [`by_role`] reads the sums, since the process
//! started. The counters are process-wide: a process that runs one engine
//! (the command line) reads that run's threads. Where the thread clock is
//! unknown (not Linux), nothing is charged and every role reads zero.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

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
}

/// Threads ended and CPU seconds spent by one role.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Spent {
    /// Threads of the role that have ended (and charged their time).
    pub threads: u64,
    /// Their CPU time, user + system, in seconds.
    pub cpu_s: f64,
}

/// What every role's ended threads spent, since the process started.
pub fn by_role() -> [(Role, Spent); 3] {
    ROLES.map(|role| {
        let (ns, threads) = &SPENT[role as usize];
        let spent = Spent {
            threads: threads.load(Relaxed),
            cpu_s: ns.load(Relaxed) as f64 / 1e9,
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

#[cfg(test)]
mod tests {
    use super::*;

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
