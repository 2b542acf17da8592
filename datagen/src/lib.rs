//! Deterministic synthetic load for payments-engine.
//!
//! [`Generator`] writes a valid transactions CSV (nothing in it is malformed
//! under SPEC) row by row. Its memory is fixed by the number of clients, not
//! by the number of rows: each client keeps a small window of recent deposits
//! (to dispute) and of open disputes (to resolve or charge back). The same
//! [`Config`] gives the same bytes; a different seed gives different bytes.
//!
//! Default mix, close to a real card-processing file: 60% deposits, 30%
//! withdrawals (some overdrawing), 5% disputes of a recent deposit of the same
//! client, 5% resolves of an open dispute, of which one in a thousand is a
//! chargeback instead. Tx ids are sequential; amounts have 0 to 4 decimals;
//! half the rows have a space after each comma.

use std::io::{self, Write};

use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;

/// What to generate.
#[derive(Clone, Debug)]
pub struct Config {
    pub rows: u64,
    pub seed: u64,
    /// Distinct clients, spread over the u16 id space (1..=65536).
    pub clients: u32,
    /// Write the `type,client,tx,amount` header first.
    pub header: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            rows: 1_000_000,
            seed: 1,
            clients: 10_000,
            header: true,
        }
    }
}

/// Recent deposits and open disputes kept per client.
const WINDOW: usize = 4;

#[derive(Clone, Copy, Default)]
struct ClientState {
    recent: [u32; WINDOW],
    recent_len: u8,
    disputed: [u32; WINDOW],
    disputed_len: u8,
}

/// Streams rows of a transactions CSV.
pub struct Generator {
    config: Config,
    rng: Pcg64Mcg,
    clients: Vec<ClientState>,
    next_tx: u32,
    written: u64,
}

impl Generator {
    pub fn new(config: Config) -> Self {
        assert!(
            (1..=65_536).contains(&config.clients),
            "clients must be in 1..=65536"
        );
        Generator {
            rng: Pcg64Mcg::seed_from_u64(config.seed),
            clients: vec![ClientState::default(); config.clients as usize],
            next_tx: 1,
            written: 0,
            config,
        }
    }

    /// The client id of client number `k`: spread evenly over 0..=65535.
    fn client_id(&self, k: usize) -> u16 {
        ((k as u64 * 65_536) / u64::from(self.config.clients)) as u16
    }

    /// Appends the next row (with its LF) to `out`; false when all are written.
    pub fn next_row(&mut self, out: &mut Vec<u8>) -> bool {
        if self.written == self.config.rows {
            return false;
        }
        self.written += 1;
        let k = self.rng.random_range(0..self.clients.len());
        let client = self.client_id(k);
        let roll: u32 = self.rng.random_range(0..1000);
        let sep: &[u8] = if self.rng.random::<bool>() {
            b", "
        } else {
            b","
        };
        let state = &mut self.clients[k];
        // Per mille: 600 deposits, 300 withdrawals, 50 disputes, 50 settles
        // (resolve, or one time in a thousand a chargeback). With nothing to
        // dispute or settle, the row becomes a deposit.
        let roll = match roll {
            900..950 if state.recent_len == 0 => 0,
            950.. if state.disputed_len == 0 => 0,
            _ => roll,
        };
        let (kind, tx): (&[u8], u32) = match roll {
            0..900 => {
                let tx = self.next_tx;
                self.next_tx = self.next_tx.wrapping_add(1);
                if roll < 600 {
                    push(&mut state.recent, &mut state.recent_len, tx);
                    (b"deposit", tx)
                } else {
                    (b"withdrawal", tx)
                }
            }
            900..950 => {
                let i = self.rng.random_range(0..state.recent_len as usize);
                let tx = take(&mut state.recent, &mut state.recent_len, i);
                push(&mut state.disputed, &mut state.disputed_len, tx);
                (b"dispute", tx)
            }
            _ => {
                let i = self.rng.random_range(0..state.disputed_len as usize);
                let tx = take(&mut state.disputed, &mut state.disputed_len, i);
                if self.rng.random_range(0..1000) == 0 {
                    (b"chargeback", tx)
                } else {
                    push(&mut state.recent, &mut state.recent_len, tx);
                    (b"resolve", tx)
                }
            }
        };
        let mut ints = itoa::Buffer::new();
        out.extend_from_slice(kind);
        out.extend_from_slice(sep);
        out.extend_from_slice(ints.format(client).as_bytes());
        out.extend_from_slice(sep);
        out.extend_from_slice(ints.format(tx).as_bytes());
        out.extend_from_slice(sep);
        match kind {
            b"deposit" => self.amount(out, 1_000),
            b"withdrawal" => self.amount(out, 500),
            _ => {}
        }
        out.push(b'\n');
        true
    }

    /// A positive amount below `max_units` with 0 to 4 decimals.
    fn amount(&mut self, out: &mut Vec<u8>, max_units: u32) {
        let mut units = self.rng.random_range(0..max_units);
        let decimals = self.rng.random_range(0..=4u32);
        let fraction = self.rng.random_range(0..10u32.pow(decimals));
        if units == 0 && fraction == 0 {
            units = 1; // zero is malformed under SPEC
        }
        let mut ints = itoa::Buffer::new();
        out.extend_from_slice(ints.format(units).as_bytes());
        if decimals > 0 {
            out.push(b'.');
            let digits = ints.format(fraction);
            out.extend(std::iter::repeat_n(b'0', decimals as usize - digits.len()));
            out.extend_from_slice(digits.as_bytes());
        }
    }
}

fn push(window: &mut [u32; WINDOW], len: &mut u8, tx: u32) {
    if (*len as usize) < WINDOW {
        window[*len as usize] = tx;
        *len += 1;
    } else {
        // Forget the oldest.
        window.copy_within(1.., 0);
        window[WINDOW - 1] = tx;
    }
}

fn take(window: &mut [u32; WINDOW], len: &mut u8, i: usize) -> u32 {
    let tx = window[i];
    window.copy_within(i + 1..*len as usize, i);
    *len -= 1;
    tx
}

/// Writes the whole file described by `config` to `out`, in 1 MiB chunks.
pub fn generate<W: Write>(config: Config, mut out: W) -> io::Result<()> {
    let header = config.header;
    let mut generator = Generator::new(config);
    let mut buf = Vec::with_capacity(1 << 20 | 4096);
    if header {
        buf.extend_from_slice(b"type,client,tx,amount\n");
    }
    while generator.next_row(&mut buf) {
        if buf.len() >= 1 << 20 {
            out.write_all(&buf)?;
            buf.clear();
        }
    }
    out.write_all(&buf)?;
    out.flush()
}

/// The whole file in memory (for tests and benches).
pub fn generate_vec(config: Config) -> Vec<u8> {
    let mut out = Vec::new();
    generate(config, &mut out).expect("writing to a Vec cannot fail");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small(seed: u64) -> Vec<u8> {
        generate_vec(Config {
            rows: 5_000,
            seed,
            clients: 50,
            header: true,
        })
    }

    #[test]
    fn same_seed_same_bytes_other_seed_other_bytes() {
        assert_eq!(small(1), small(1));
        assert_ne!(small(1), small(2));
    }

    #[test]
    fn rows_are_counted_and_every_type_appears() {
        let text = String::from_utf8(generate_vec(Config {
            rows: 200_000,
            seed: 3,
            clients: 20,
            header: true,
        }))
        .unwrap();
        assert_eq!(text.lines().count(), 200_001);
        for kind in ["deposit", "withdrawal", "dispute", "resolve", "chargeback"] {
            assert!(text.lines().any(|l| l.starts_with(kind)), "no {kind}");
        }
        // Amounts are never zero and carry at most 4 decimals.
        for line in text.lines().skip(1) {
            let amount = line.rsplit(',').next().unwrap().trim();
            if line.starts_with("deposit") || line.starts_with("withdrawal") {
                let (int, frac) = amount.split_once('.').unwrap_or((amount, ""));
                assert!(frac.len() <= 4, "{line}");
                assert!(int.chars().chain(frac.chars()).any(|c| c != '0'), "{line}");
            } else {
                assert!(amount.is_empty(), "{line}");
            }
        }
    }
}
