//! Forming the cluster: the host file, a handshake with every other
//! process (who it is, what it runs with), and what a lost peer does.

use std::io;
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::error::{bail, Context, Error as ClusterError};

use super::auth::{self, Key, Refused};
use super::hello::Hello;

/// The host file's addresses, one per non-blank line (`#` starts a
/// comment).
pub(super) fn read_hostfile(path: &Path) -> super::error::Result<Vec<String>> {
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

/// How long one incoming connection has to authenticate: a stranger's
/// silence costs this, on a thread of its own, and nothing else.
const HANDSHAKE: Duration = Duration::from_secs(5);

/// Connects to every other process (before `me`: connect; after: accept),
/// authenticating each with `key` and checking each runs with the same
/// settings; a socket per process, `None` at `me`, whether process 0 keeps
/// rejected rows' lines, and every peer's hello.
pub(super) fn connect(
    hosts: &[String],
    me: &Hello,
    key: &Key,
    timeout: Duration,
) -> super::error::Result<(Vec<Option<TcpStream>>, Vec<Hello>)> {
    let index = me.index as usize;
    let deadline = Instant::now() + timeout;
    let listener = TcpListener::bind(&hosts[index])
        .with_context(|| format!("process {index} cannot listen on {}", hosts[index]))?;
    listener.set_nonblocking(true)?;
    let mut sockets: Vec<Option<TcpStream>> = (0..hosts.len()).map(|_| None).collect();
    let mut peers = Vec::new();
    let late = |what: String| {
        ClusterError::msg(format!(
            "{what} within {} (--connect-timeout); is every process of the host file started?",
            humantime::format_duration(timeout)
        ))
    };
    for (peer, host) in hosts.iter().enumerate().take(index) {
        let (stream, hello) = dial(peer, host, me, key, deadline, &late)?;
        peers.push(hello);
        sockets[peer] = Some(stream);
    }
    for (stream, hello) in accept_all(&listener, hosts, me, key, deadline, &late)? {
        sockets[hello.index as usize] = Some(stream);
        peers.push(hello);
    }
    for stream in sockets.iter().flatten() {
        stream.set_read_timeout(None)?;
        stream.set_nodelay(true)?;
    }
    Ok((sockets, peers))
}

/// Connects to process `peer` at `host` (retrying until it listens) and
/// authenticates it.
fn dial(
    peer: usize,
    host: &str,
    me: &Hello,
    key: &Key,
    deadline: Instant,
    late: &dyn Fn(String) -> ClusterError,
) -> super::error::Result<(TcpStream, Hello)> {
    let index = me.index;
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
    match auth::as_connector(&mut stream, key, me, deadline) {
        Ok(hello) => {
            check_peer(me, &hello, peer, host)?;
            Ok((stream, hello))
        }
        Err(Refused::Stranger) => bail!(
            "process {index}: {host} (process {peer} of the host file) did not authenticate: \
             is it a payments-engine of this version, with the same --cluster-secret?"
        ),
        Err(Refused::Io(e)) => Err(late(format!(
            "process {peer} at {host} did not complete the handshake ({e})"
        ))),
    }
}

/// Accepts the processes after `me` until each has authenticated. Every
/// incoming connection shakes hands on a thread of its own, within
/// [`HANDSHAKE`]: one that is not ours (silent, slow, garbage, another
/// secret) is dropped and the listening goes on.
fn accept_all(
    listener: &TcpListener,
    hosts: &[String],
    me: &Hello,
    key: &Key,
    deadline: Instant,
    late: &dyn Fn(String) -> ClusterError,
) -> super::error::Result<Vec<(TcpStream, Hello)>> {
    let index = me.index as usize;
    let (done, results) = std::sync::mpsc::channel();
    let mut accepted: Vec<(TcpStream, Hello)> = Vec::new();
    let mut strangers = 0;
    while accepted.len() < hosts.len() - index - 1 {
        match listener.accept() {
            Ok((mut stream, _from)) => {
                let (done, key, me) = (done.clone(), key.clone(), *me);
                std::thread::spawn(move || {
                    let by = (Instant::now() + HANDSHAKE).min(deadline);
                    let shaken = stream
                        .set_nonblocking(false)
                        .map_err(Refused::Io)
                        .and_then(|()| auth::as_acceptor(&mut stream, &key, &me, by));
                    let _ = done.send(shaken.map(|hello| (stream, hello)));
                });
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e).context("accepting a connection"),
        }
        match results.recv_timeout(Duration::from_millis(20)) {
            Ok(Ok((stream, hello))) => {
                let peer = hello.index as usize;
                let taken = accepted.iter().any(|(_, h)| h.index == hello.index);
                if peer <= index || peer >= hosts.len() || taken {
                    bail!("process {index} got a connection claiming to be process {peer}");
                }
                check_peer(me, &hello, peer, &hosts[peer])?;
                accepted.push((stream, hello));
            }
            Ok(Err(_)) => strangers += 1,
            Err(_) => {}
        }
        if Instant::now() >= deadline {
            let missing: Vec<String> = (index + 1..hosts.len())
                .filter(|&p| !accepted.iter().any(|(_, h)| h.index as usize == p))
                .map(|p| p.to_string())
                .collect();
            let mut what = format!(
                "process {index} heard from no process {}",
                missing.join(", ")
            );
            if strangers > 0 {
                what.push_str(&format!(
                    " ({strangers} connections did not authenticate: another --cluster-secret?)"
                ));
            }
            return Err(late(what));
        }
    }
    Ok(accepted)
}

fn check_peer(me: &Hello, hello: &Hello, peer: usize, host: &str) -> super::error::Result<()> {
    if hello.index != peer as u64 {
        bail!(
            "{host} answers as process {}, but the host file has it as process {peer}",
            hello.index
        );
    }
    if let Some(why) = me.mismatch(hello) {
        bail!("{why}");
    }
    Ok(())
}

/// Without a secret, every address of the host file must be a loopback
/// one: anyone who reaches a port could otherwise join the run.
pub(super) fn check_loopback(hosts: &[String]) -> super::error::Result<()> {
    for host in hosts {
        let addresses = host
            .to_socket_addrs()
            .with_context(|| format!("address {host} of the host file"))?;
        for address in addresses {
            if !address.ip().is_loopback() {
                bail!(
                    "the host file names {host} ({}), not a loopback address: give every \
                     process --cluster-secret FILE (the same secret), so that only they can join",
                    address.ip()
                );
            }
        }
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
