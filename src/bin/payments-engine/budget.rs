//! The binary's allocator: mimalloc, under a memory budget, with a clean
//! error instead of an abort when memory runs out.
//!
//! Rust's default answer to a failed allocation is `memory allocation of N
//! bytes failed` and an abort (exit 134, sometimes a backtrace). A payments
//! run that cannot hold its state should fail like every other fatal error:
//! one line, exit 1, nothing on stdout, outputs untouched. So every
//! allocation goes through [`Budget`], which counts the bytes the program
//! holds and, when an allocation would pass the budget (`--max-memory`, by
//! default the cgroup's limit or the machine's memory) or the system refuses
//! it (an address-space limit, `prlimit --as`), prints that one line and
//! ends the process at once with `_exit(1)`.
//!
//! It cannot return to the caller: a failed allocation has no recovery path
//! in the engine, and unwinding from inside an allocator is not allowed. So
//! the line is formatted into a stack buffer and written with `write(2)`:
//! nothing on the way out allocates. Output files are only ever written to
//! temporaries and renamed at the end, so an exit here leaves them as they
//! were.
//!
//! The counting costs one relaxed atomic add per allocation; the engine does
//! not allocate per record, so it is not on the hot path.
#![deny(unsafe_op_in_unsafe_fn)]

use std::alloc::{GlobalAlloc, Layout};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use mimalloc::MiMalloc;

/// Bytes the program holds now.
static HELD: AtomicUsize = AtomicUsize::new(0);
/// The most it may hold (`usize::MAX`: no budget).
static LIMIT: AtomicUsize = AtomicUsize::new(usize::MAX);

/// mimalloc's option `purge_delay` (milliseconds): how long freed memory
/// stays committed before it is given back. Its index in mimalloc 3's
/// `mi_option_t` (not in the bindings' constants); the lock file pins the
/// version.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Tunes mimalloc for a run: freed memory goes back to the system after
/// 10 ms instead of 1 s. The stores grow by many small reallocations; with
/// the default delay their freed blocks stayed resident, and peak RSS on
/// 5M scattered deposits was 10-35 MiB higher (perf.md, "Memory").
pub fn tune_allocator() {
    set_purge_delay_ms(10);
}

/// Tunes mimalloc for a cluster run: freed memory stays for mimalloc's
/// default 1 s. Timely allocates and frees a batch container for every
/// few records it moves; with the 10 ms delay those pages went back to the
/// system and faulted in again, a third of the run's time (10M rows, one
/// process: 3.0-3.95 s -> 1.76-1.96 s, system time 1.3 -> 0.2 s, peak RSS
/// 115 -> 142 MiB; perf.md, "Cluster mode").
pub fn tune_allocator_for_dataflow() {
    set_purge_delay_ms(1000);
}

/// How long mimalloc keeps freed memory before giving it back.
fn set_purge_delay_ms(ms: std::ffi::c_long) {
    // SAFETY: mi_option_set only stores the value mimalloc reads when it
    // decides to purge; any value is valid for this option.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, ms) };
}

/// Sets the budget, in bytes.
pub fn set_limit(bytes: u64) {
    LIMIT.store(
        usize::try_from(bytes).unwrap_or(usize::MAX),
        Ordering::Relaxed,
    );
}

/// The default budget: the cgroup's memory limit, else the machine's memory.
pub fn default_limit() -> Option<u64> {
    let read = |path: &str| std::fs::read_to_string(path).ok();
    let cgroup = read("/sys/fs/cgroup/memory.max")
        .or_else(|| read("/sys/fs/cgroup/memory/memory.limit_in_bytes"))
        .and_then(|text| text.trim().parse::<u64>().ok())
        // cgroup v1 writes a huge number for "no limit".
        .filter(|&bytes| bytes < 1 << 60);
    cgroup.or_else(|| {
        let meminfo = read("/proc/meminfo")?;
        let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    })
}

/// mimalloc, counted and capped.
pub struct Budget;

// SAFETY: every method forwards to MiMalloc with the same arguments, so the
// GlobalAlloc contract holds as it does for MiMalloc; the counting only
// reads and adds sizes, and `out_of_memory` never returns.
unsafe impl GlobalAlloc for Budget {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        admit(layout.size());
        // SAFETY: the caller's layout, passed on unchanged.
        let ptr = unsafe { MiMalloc.alloc(layout) };
        if ptr.is_null() {
            out_of_memory(Some(layout.size()), Refused::BySystem);
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        admit(layout.size());
        // SAFETY: the caller's layout, passed on unchanged.
        let ptr = unsafe { MiMalloc.alloc_zeroed(layout) };
        if ptr.is_null() {
            out_of_memory(Some(layout.size()), Refused::BySystem);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        HELD.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: `ptr` was allocated by this allocator (so by MiMalloc)
        // with `layout`, as the caller guarantees.
        unsafe { MiMalloc.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > layout.size() {
            admit(new_size - layout.size());
        } else {
            HELD.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
        }
        // SAFETY: `ptr` and `layout` are the caller's, allocated here (so by
        // MiMalloc); `new_size` is the caller's, valid for the layout's align.
        let grown = unsafe { MiMalloc.realloc(ptr, layout, new_size) };
        if grown.is_null() {
            out_of_memory(Some(new_size), Refused::BySystem);
        }
        grown
    }
}

/// Counts `size` more bytes, or ends the run if they pass the budget.
#[inline]
fn admit(size: usize) {
    let held = HELD.fetch_add(size, Ordering::Relaxed) + size;
    if held > LIMIT.load(Ordering::Relaxed) {
        out_of_memory(Some(size), Refused::ByBudget);
    }
}

/// A fixed buffer to format the message in, without allocating.
struct Line {
    bytes: [u8; 512],
    len: usize,
}

impl std::fmt::Write for Line {
    fn write_str(&mut self, text: &str) -> std::fmt::Result {
        let room = self.bytes.len() - self.len;
        let n = text.len().min(room);
        self.bytes[self.len..self.len + n].copy_from_slice(&text.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

/// Who refused an allocation.
#[derive(Clone, Copy)]
enum Refused {
    /// It would have passed `--max-memory` (or its default).
    ByBudget,
    /// The system returned no memory (an address-space limit, say).
    BySystem,
}

/// Set by the first thread to run out: the others wait for its exit, so
/// there is one line.
static EXITING: AtomicBool = AtomicBool::new(false);

/// Reports a thread that the system would not start for want of memory
/// (its stack: `spawn` failed with `EAGAIN` or `ENOMEM`, as under an
/// address-space limit) as running out of memory is reported: the one
/// line, exit status 1.
pub fn thread_refused() -> ! {
    out_of_memory(None, Refused::BySystem)
}

/// Prints the one line and exits with status 1, allocating nothing. `size`
/// is the allocation refused; `None` for a thread's stack.
#[cold]
#[inline(never)]
fn out_of_memory(size: Option<usize>, refused: Refused) -> ! {
    if EXITING.swap(true, Ordering::AcqRel) {
        loop {
            // SAFETY: pause(2) only waits; the first thread's _exit ends
            // the process.
            unsafe { libc::pause() };
        }
    }
    let mib = |bytes: usize| bytes as f64 / (1024.0 * 1024.0);
    let mut line = Line {
        bytes: [0; 512],
        len: 0,
    };
    let held = HELD
        .load(Ordering::Relaxed)
        .saturating_sub(size.unwrap_or(0));
    let _ = write!(
        line,
        "payments-engine: error: out of memory after line {}: the engine held {:.1} MiB \
         and asked for ",
        payments_engine::last_line_read(),
        mib(held),
    );
    let _ = match size {
        Some(size) => write!(line, "{size} bytes more"),
        None => write!(line, "a new thread's stack"),
    };
    let _ = match refused {
        Refused::BySystem => write!(line, "; the system refused them"),
        Refused::ByBudget => write!(
            line,
            "; the budget is {:.1} MiB (--max-memory)",
            mib(LIMIT.load(Ordering::Relaxed))
        ),
    };
    let _ = line.write_str("\n");
    // SAFETY: write(2) on stderr from a valid buffer of `line.len` bytes,
    // then _exit(2): neither allocates, and _exit does not return.
    unsafe {
        libc::write(2, line.bytes.as_ptr().cast(), line.len);
        libc::_exit(1)
    }
}
