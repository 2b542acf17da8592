//! The binary's one direct use of the OS besides the allocator: standard
//! input read so that a stop is seen while it waits.
#![deny(unsafe_op_in_unsafe_fn)]

use std::io::{self, Read};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// How often a wait for input looks at the stop flag, in milliseconds.
const POLL_MS: i32 = 100;

/// Standard input, unbuffered, that gives up waiting once `stop` is raised:
/// a signal handler sets the flag, but the kernel restarts the `read` it
/// interrupted, so a run waiting on an idle pipe would notice the signal
/// only when the next bytes came. `poll` with a timeout looks at the flag
/// every [`POLL_MS`]. Giving up is an error (`stopped`): the CSV loop then
/// asks its supervisor, which stops the run at the last row read (with a
/// checkpoint when there is a state file).
pub struct StoppableStdin {
    stop: Arc<AtomicUsize>,
}

impl StoppableStdin {
    pub fn new(stop: Arc<AtomicUsize>) -> StoppableStdin {
        StoppableStdin { stop }
    }
}

impl Read for StoppableStdin {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.stop.load(Ordering::Relaxed) != 0 {
                return Err(io::Error::other(
                    "stopped by a signal while waiting for input",
                ));
            }
            let mut fd = libc::pollfd {
                fd: libc::STDIN_FILENO,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: `fd` is one valid pollfd, and 1 says so.
            let ready = unsafe { libc::poll(&mut fd, 1, POLL_MS) };
            if ready == 0 {
                continue;
            }
            if ready > 0 {
                // Readable, or at its end, or broken: `read` says which.
                // SAFETY: `buf` is valid for writes of `buf.len()` bytes.
                let n =
                    unsafe { libc::read(libc::STDIN_FILENO, buf.as_mut_ptr().cast(), buf.len()) };
                if n >= 0 {
                    return Ok(n as usize);
                }
            }
            let error = io::Error::last_os_error();
            if error.kind() != io::ErrorKind::Interrupted {
                return Err(error);
            }
        }
    }
}
