//! Forming the cluster: the host file, a handshake with every other
//! process (who it is, what it runs with), and what a lost peer does.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// The handshake's first bytes: the program and the version of this
/// protocol.
pub(super) const MAGIC: &[u8; 8] = b"PAYENG\x00\x01";

/// The host file's addresses, one per non-blank line (`#` starts a
/// comment).
pub(super) fn read_hostfile(path: &Path) -> anyhow::Result<Vec<String>> {
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

/// What each side of a connection says first: who it is and what it runs
/// with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Hello {
    pub(super) index: u64,
    pub(super) processes: u64,
    pub(super) workers: u64,
    pub(super) block: u64,
    pub(super) input_len: u64,
    /// Process 0 keeps the rejected rows' lines (for `--rejects`): 1, else
    /// 0. Process 0's answer decides whether records carry their line.
    pub(super) raw: u64,
    /// BlockStash between checkpoints (0: none).
    pub(super) every: u64,
    /// 1 with `--resume`.
    pub(super) resume: u64,
    /// The last two checkpoints every worker of the process completed (0:
    /// none).
    pub(super) last: u64,
    pub(super) prev: u64,
}

impl Hello {
    pub(super) fn write(&self, out: &mut impl Write) -> io::Result<()> {
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

    pub(super) fn read(src: &mut impl Read) -> io::Result<Option<Hello>> {
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
    pub(super) fn mismatch(&self, peer: &Hello) -> Option<String> {
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
pub(super) fn connect(
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

pub(super) fn check_peer(
    me: &Hello,
    hello: Option<Hello>,
    peer: usize,
    host: &str,
) -> anyhow::Result<()> {
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
pub(super) fn install_peer_loss_hook(process: usize) {
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
