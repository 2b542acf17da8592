//! The handshake between two cluster processes, authenticated: a mutual
//! challenge-response with fresh random nonces from both sides and a keyed
//! MAC (BLAKE3's keyed mode, the key derived from `--cluster-secret`) over
//! the whole transcript, so that
//!
//! * nobody without the secret gets past it: a stranger cannot end the run,
//!   take a process's index or learn its settings (no setting is sent
//!   before the other side has proved it holds the key);
//! * a recorded handshake cannot be replayed (each side's nonce is new);
//! * every read before authentication has a fixed, small length and a
//!   deadline, so a silent, slow or garbage connection costs its own thread
//!   a few seconds and nothing else.
//!
//! The connecting process `C` (the higher index) and the accepting one `A`:
//!
//! ```text
//! C -> A   MAGIC | nonce_c                                 (40 bytes)
//! A -> C   MAGIC | nonce_a | mac("A", nonce_c, nonce_a)     (72 bytes)
//! C -> A   hello_c | mac("C", nonce_c, nonce_a, hello_c)   (112 bytes)
//! A -> C   hello_a | mac("H", nonce_c, nonce_a, hello_a)   (112 bytes)
//! ```
//!
//! Without a secret the key is derived from the empty one: the same
//! protocol, which the host file may then only use on loopback. What comes
//! after the handshake (timely's data) is neither encrypted nor MACed: run
//! a cluster on a private network.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Instant;

use super::error::{bail, Context};

use super::hello::Hello;

/// The handshake's first bytes: the program and this protocol's version.
const MAGIC: &[u8; 8] = b"PAYENG\x00\x02";
const NONCE: usize = 32;
const MAC: usize = 32;

/// The shortest secret accepted, in bytes.
const MIN_SECRET: usize = 16;

/// The key both sides of a handshake prove they hold.
#[derive(Clone)]
pub(super) struct Key([u8; 32]);

impl Key {
    /// The key of `secret` (the empty one without `--cluster-secret`).
    pub fn of(secret: &[u8]) -> Key {
        Key(blake3::derive_key(
            "payments-engine cluster handshake v2",
            secret,
        ))
    }

    /// The key of the secret in `path` (a final line end is not part of
    /// it).
    pub fn from_file(path: &Path) -> super::error::Result<Key> {
        let bytes = std::fs::read(path)
            .with_context(|| format!("cannot read cluster secret {}", path.display()))?;
        let secret = bytes.strip_suffix(b"\n").unwrap_or(&bytes);
        let secret = secret.strip_suffix(b"\r").unwrap_or(secret);
        if secret.len() < MIN_SECRET {
            bail!(
                "cluster secret {} holds {} bytes; use at least {MIN_SECRET} random bytes \
                 (for example `head -c 32 /dev/urandom | base64 > FILE`)",
                path.display(),
                secret.len()
            );
        }
        Ok(Key::of(secret))
    }

    fn mac(&self, role: &[u8], parts: &[&[u8]]) -> blake3::Hash {
        let mut hasher = blake3::Hasher::new_keyed(&self.0);
        hasher.update(role);
        for part in parts {
            hasher.update(part);
        }
        hasher.finalize()
    }

    /// Whether `tag` is the MAC of `parts` for `role` (constant time).
    fn verify(&self, tag: &[u8], role: &[u8], parts: &[&[u8]]) -> bool {
        <[u8; MAC]>::try_from(tag).is_ok_and(|tag| self.mac(role, parts) == blake3::Hash::from(tag))
    }
}

/// Why a handshake did not authenticate the other side.
#[derive(Debug)]
pub(super) enum Refused {
    /// Not one of ours, or a different secret: drop it.
    Stranger,
    /// It went quiet, or the connection broke.
    Io(io::Error),
}

impl From<io::Error> for Refused {
    fn from(error: io::Error) -> Refused {
        Refused::Io(error)
    }
}

fn nonce() -> io::Result<[u8; NONCE]> {
    let mut nonce = [0u8; NONCE];
    getrandom::fill(&mut nonce).map_err(|e| io::Error::other(e.to_string()))?;
    Ok(nonce)
}

/// Reads exactly `N` bytes by `deadline`.
fn read_by<const N: usize>(stream: &mut TcpStream, deadline: Instant) -> io::Result<[u8; N]> {
    let left = deadline.saturating_duration_since(Instant::now());
    stream.set_read_timeout(Some(left.max(std::time::Duration::from_millis(1))))?;
    let mut bytes = [0u8; N];
    stream.read_exact(&mut bytes)?;
    Ok(bytes)
}

/// The connecting side: proves the key, checks the other side's proof,
/// and swaps hellos. Returns the other side's hello.
pub(super) fn as_connector(
    stream: &mut TcpStream,
    key: &Key,
    me: &Hello,
    deadline: Instant,
) -> Result<Hello, Refused> {
    let nonce_c = nonce()?;
    stream.write_all(&[&MAGIC[..], &nonce_c].concat())?;
    let reply: [u8; 8 + NONCE + MAC] = read_by(stream, deadline)?;
    let (magic, rest) = reply.split_at(8);
    let (nonce_a, tag) = rest.split_at(NONCE);
    if magic != MAGIC || !key.verify(tag, b"A", &[&nonce_c, nonce_a]) {
        return Err(Refused::Stranger);
    }
    let hello = me.encode();
    let tag = key.mac(b"C", &[&nonce_c, nonce_a, &hello]);
    stream.write_all(&[&hello[..], tag.as_bytes()].concat())?;
    let answer: [u8; Hello::LEN + MAC] = read_by(stream, deadline)?;
    let (theirs, tag) = answer.split_at(Hello::LEN);
    if !key.verify(tag, b"H", &[&nonce_c, nonce_a, theirs]) {
        return Err(Refused::Stranger);
    }
    Ok(Hello::decode(theirs))
}

/// The accepting side: checks the connector's proof before it says who it
/// is or what it runs with. Returns the other side's hello.
pub(super) fn as_acceptor(
    stream: &mut TcpStream,
    key: &Key,
    me: &Hello,
    deadline: Instant,
) -> Result<Hello, Refused> {
    let first: [u8; 8 + NONCE] = read_by(stream, deadline)?;
    let (magic, nonce_c) = first.split_at(8);
    if magic != MAGIC {
        return Err(Refused::Stranger);
    }
    let nonce_a = nonce()?;
    let tag = key.mac(b"A", &[nonce_c, &nonce_a]);
    stream.write_all(&[&MAGIC[..], &nonce_a, tag.as_bytes()].concat())?;
    let second: [u8; Hello::LEN + MAC] = read_by(stream, deadline)?;
    let (theirs, tag) = second.split_at(Hello::LEN);
    if !key.verify(tag, b"C", &[nonce_c, &nonce_a, theirs]) {
        return Err(Refused::Stranger);
    }
    // Authenticated: now this side's settings may go out.
    let hello = me.encode();
    let tag = key.mac(b"H", &[nonce_c, &nonce_a, &hello]);
    stream.write_all(&[&hello[..], tag.as_bytes()].concat())?;
    Ok(Hello::decode(theirs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::time::Duration;

    fn hello(index: u64) -> Hello {
        Hello {
            index,
            processes: 2,
            workers: 1,
            block: 1 << 20,
            input_len: 99,
            every: 0,
            resume: 0,
            last: 0,
            prev: 0,
        }
    }

    /// Runs both sides over loopback, each with its key.
    fn shake(connector: Key, acceptor: Key) -> (Result<Hello, Refused>, Result<Hello, Refused>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        let accepting = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            as_acceptor(&mut stream, &acceptor, &hello(0), deadline)
        });
        let mut stream = TcpStream::connect(address).unwrap();
        let connected = as_connector(&mut stream, &connector, &hello(1), deadline);
        drop(stream);
        (connected, accepting.join().unwrap())
    }

    #[test]
    fn the_same_secret_authenticates_both_ways() {
        let key = || Key::of(b"0123456789abcdef");
        let (connected, accepted) = shake(key(), key());
        assert_eq!(connected.unwrap(), hello(0));
        assert_eq!(accepted.unwrap(), hello(1));
    }

    #[test]
    fn another_secret_is_refused_before_any_setting_is_told() {
        let (connected, accepted) = shake(Key::of(b"one secret, 16+ bytes"), Key::of(b"another"));
        assert!(matches!(connected, Err(Refused::Stranger)), "{connected:?}");
        // The acceptor never saw a valid proof: it sent no hello.
        assert!(accepted.is_err(), "{accepted:?}");
    }

    #[test]
    fn a_silent_connection_is_dropped_at_its_deadline() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let _silent = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut stream, _) = listener.accept().unwrap();
        let started = Instant::now();
        let deadline = started + Duration::from_millis(200);
        let result = as_acceptor(&mut stream, &Key::of(b""), &hello(0), deadline);
        assert!(matches!(result, Err(Refused::Io(_))), "{result:?}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn a_replayed_connector_is_refused() {
        // A stranger who recorded a whole session replays C's messages: the
        // acceptor's new nonce makes the recorded MAC worthless.
        let key = Key::of(b"0123456789abcdef");
        let (nonce_a, nonce_c) = ([1u8; NONCE], [2u8; NONCE]);
        let old_hello = hello(1).encode();
        let old_tag = key.mac(b"C", &[&nonce_c, &nonce_a, &old_hello]);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let accepting = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let deadline = Instant::now() + Duration::from_secs(5);
            as_acceptor(&mut stream, &key, &hello(0), deadline)
        });
        let mut stream = TcpStream::connect(address).unwrap();
        stream.write_all(&[&MAGIC[..], &nonce_c].concat()).unwrap();
        let mut reply = [0u8; 8 + NONCE + MAC];
        stream.read_exact(&mut reply).unwrap();
        stream
            .write_all(&[&old_hello[..], old_tag.as_bytes()].concat())
            .unwrap();
        assert!(matches!(accepting.join().unwrap(), Err(Refused::Stranger)));
    }
}
