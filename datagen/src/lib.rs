//! Deterministic synthetic load for payments-engine.
//!
//! [`Generator`] writes a transactions CSV row by row. Its memory is fixed by
//! the number of clients and the id window, never by the number of rows: each
//! client keeps a small window of recent deposits (to dispute) and of open
//! disputes (to resolve or charge back). The same [`Config`] gives the same
//! bytes (the PRNG is PCG-64 MCG, whose output is fixed by its seed); a
//! different seed gives different bytes.
//!
//! The default is a realistic, valid file (nothing in it is malformed under
//! SPEC): 10,000 clients spread over the u16 space, 60% deposits, 30%
//! withdrawals (some overdrawing), 5% disputes of a recent deposit of the same
//! client, 5% resolves of an open dispute and one chargeback in 20,000 rows,
//! sequential tx ids, amounts with 0 to 4 decimals, a space after each comma in
//! half the rows. Every knob is a field of [`Config`]; [`Preset`]s set several.

use std::io::{self, Write};

use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;

/// How rows are spread over clients.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Skew {
    Uniform,
    /// Zipf with this exponent: client k (from 0) has weight 1 / (k + 1)^s.
    Zipf(f64),
}

/// How tx ids are chosen for deposits and withdrawals. Every order gives
/// each row a distinct id (duplicates come only from `duplicate_rate`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdOrder {
    /// 1, 2, 3, ...
    Sequential,
    /// Sequential ids shuffled within a sliding window of this many ids.
    Shuffled(u32),
    /// A fixed bijective scramble of the counter: random-looking over all of u32.
    Sparse,
    /// Random-looking over `0..2^bits` (16 <= bits < 32): fewer leaves of
    /// 65,536 ids, each filling up together (at most 2^bits - 1 distinct ids).
    SparseBelow(u32),
    /// Multiples of 65,536 first (0, 65536, 131072, ...), then the next
    /// residue: the counter with its halves swapped. Hostile to any table
    /// that hashes or pages by the low bits.
    Stride65536,
}

/// Where spaces go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Spaces {
    None,
    /// A space after each comma in a random half of the rows.
    Half,
    /// A space after each comma, and a tab before the line end, in every row.
    All,
}

/// Relative weights of the five row types.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Mix {
    pub deposit: f64,
    pub withdrawal: f64,
    pub dispute: f64,
    pub resolve: f64,
    pub chargeback: f64,
}

impl Mix {
    pub const REALISTIC: Mix = Mix {
        deposit: 60.0,
        withdrawal: 30.0,
        dispute: 5.0,
        resolve: 5.0,
        chargeback: 0.005,
    };
    pub const DISPUTE_HEAVY: Mix = Mix {
        deposit: 40.0,
        withdrawal: 15.0,
        dispute: 25.0,
        resolve: 20.0,
        chargeback: 0.01,
    };

    /// Parses `D,W,DI,R,C` (five non-negative weights, not all zero).
    pub fn parse(text: &str) -> Result<Mix, String> {
        let parts: Vec<f64> = text
            .split(',')
            .map(|p| {
                p.trim()
                    .parse::<f64>()
                    .map_err(|e| format!("bad weight {p:?}: {e}"))
            })
            .collect::<Result<_, _>>()?;
        let [deposit, withdrawal, dispute, resolve, chargeback] = parts[..] else {
            return Err(format!(
                "expected 5 weights (deposit,withdrawal,dispute,resolve,chargeback), got {}",
                parts.len()
            ));
        };
        if parts.iter().any(|w| !w.is_finite() || *w < 0.0) || parts.iter().sum::<f64>() <= 0.0 {
            return Err("weights must be non-negative and not all zero".into());
        }
        Ok(Mix {
            deposit,
            withdrawal,
            dispute,
            resolve,
            chargeback,
        })
    }

    fn cumulative(&self) -> [f64; 5] {
        let total = self.deposit + self.withdrawal + self.dispute + self.resolve + self.chargeback;
        let mut acc = 0.0;
        [
            self.deposit,
            self.withdrawal,
            self.dispute,
            self.resolve,
            self.chargeback,
        ]
        .map(|w| {
            acc += w / total;
            acc
        })
    }
}

/// Named sets of knobs for the common cases.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Preset {
    /// The defaults: a valid, realistic file.
    Realistic,
    /// Zipf(1.5) over clients, the hottest getting about 40% of rows, and no
    /// chargebacks (one would lock the hot client for the rest of the file).
    HotClient,
    /// Sparse random ids, CRLF, all spaces, 1% malformed rows, 1% duplicate
    /// ids, 2% disputes naming another client's deposit.
    Adversarial,
    /// 45% of rows are disputes and resolves (chargebacks stay rare: each
    /// locks an account for good).
    DisputeHeavy,
}

impl Preset {
    pub fn parse(text: &str) -> Result<Preset, String> {
        match text {
            "realistic" => Ok(Preset::Realistic),
            "hot-client" => Ok(Preset::HotClient),
            "adversarial" => Ok(Preset::Adversarial),
            "dispute-heavy" => Ok(Preset::DisputeHeavy),
            other => Err(format!(
                "unknown preset {other:?} (realistic, hot-client, adversarial, dispute-heavy)"
            )),
        }
    }
}

/// What to generate.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub rows: u64,
    pub seed: u64,
    /// Distinct clients, spread over the u16 id space (1..=65536).
    pub clients: u32,
    /// Write the `type,client,tx,amount` header first.
    pub header: bool,
    pub skew: Skew,
    pub mix: Mix,
    pub ids: IdOrder,
    pub spaces: Spaces,
    pub crlf: bool,
    /// Share of rows replaced by a malformed row.
    pub malformed_rate: f64,
    /// Share of deposits and withdrawals that reuse an earlier tx id.
    pub duplicate_rate: f64,
    /// Share of disputes, resolves and chargebacks naming another client's tx.
    pub cross_client_rate: f64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            rows: 1_000_000,
            seed: 1,
            clients: 10_000,
            header: true,
            skew: Skew::Uniform,
            mix: Mix::REALISTIC,
            ids: IdOrder::Sequential,
            spaces: Spaces::Half,
            crlf: false,
            malformed_rate: 0.0,
            duplicate_rate: 0.0,
            cross_client_rate: 0.0,
        }
    }
}

impl Config {
    /// The defaults with a preset's knobs applied.
    pub fn preset(preset: Preset) -> Config {
        let base = Config::default();
        match preset {
            Preset::Realistic => base,
            // No chargebacks: one would lock the hot client for the rest of the file.
            Preset::HotClient => Config {
                skew: Skew::Zipf(1.5),
                mix: Mix {
                    chargeback: 0.0,
                    ..Mix::REALISTIC
                },
                ..base
            },
            Preset::Adversarial => Config {
                ids: IdOrder::Sparse,
                spaces: Spaces::All,
                crlf: true,
                malformed_rate: 0.01,
                duplicate_rate: 0.01,
                cross_client_rate: 0.02,
                ..base
            },
            Preset::DisputeHeavy => Config {
                mix: Mix::DISPUTE_HEAVY,
                ..base
            },
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

/// Lines that are malformed under SPEC, for `malformed_rate`.
const MALFORMED: &[&[u8]] = &[
    b"deposit,1,1,-1",
    b"deposit,1,2,0",
    b"withdrawal,1,3,1.00001",
    b"deposit,1,4,1e3",
    b"refund,1,5,1",
    b"deposit,65536,6,1",
    b"deposit,1,4294967296,1",
    b"deposit,1,7",
    b"deposit,1,8,1,1",
    b"deposit,1,9,\"1",
    b"dispute,x,1,",
];

/// Streams rows of a transactions CSV.
pub struct Generator {
    config: Config,
    rng: Pcg64Mcg,
    clients: Vec<ClientState>,
    /// Cumulative client weights (Zipf only).
    client_cdf: Vec<f64>,
    mix: [f64; 5],
    counter: u32,
    /// Upcoming ids for `IdOrder::Shuffled`.
    window: Vec<u32>,
    /// Recently used money ids, for duplicates.
    used: [u32; 64],
    written: u64,
}

impl Generator {
    pub fn new(config: Config) -> Self {
        assert!(
            (1..=65_536).contains(&config.clients),
            "clients must be in 1..=65536"
        );
        let client_cdf = match config.skew {
            Skew::Uniform => Vec::new(),
            Skew::Zipf(s) => {
                let weights: Vec<f64> = (1..=config.clients)
                    .map(|k| 1.0 / f64::from(k).powf(s))
                    .collect();
                let total: f64 = weights.iter().sum();
                let mut acc = 0.0;
                weights
                    .iter()
                    .map(|w| {
                        acc += w / total;
                        acc
                    })
                    .collect()
            }
        };
        let window = match config.ids {
            IdOrder::Shuffled(w) => (1..=w.max(1)).collect(),
            _ => Vec::new(),
        };
        let counter = match config.ids {
            IdOrder::Shuffled(w) => w.max(1),
            _ => 0,
        };
        Generator {
            rng: Pcg64Mcg::seed_from_u64(config.seed),
            clients: vec![ClientState::default(); config.clients as usize],
            client_cdf,
            mix: config.mix.cumulative(),
            counter,
            window,
            used: [1; 64],
            written: 0,
            config,
        }
    }

    /// The client id of client number `k`: spread evenly over 0..=65535.
    fn client_id(&self, k: usize) -> u16 {
        ((k as u64 * 65_536) / u64::from(self.config.clients)) as u16
    }

    fn pick_client(&mut self) -> usize {
        if self.client_cdf.is_empty() {
            self.rng.random_range(0..self.clients.len())
        } else {
            let u: f64 = self.rng.random();
            self.client_cdf
                .partition_point(|&c| c < u)
                .min(self.clients.len() - 1)
        }
    }

    /// The next fresh id in the configured order.
    fn fresh_id(&mut self) -> u32 {
        self.counter = self.counter.wrapping_add(1);
        let n = self.counter;
        match self.config.ids {
            IdOrder::Sequential => n,
            IdOrder::Shuffled(_) => {
                let i = self.rng.random_range(0..self.window.len());
                std::mem::replace(&mut self.window[i], n)
            }
            // lowbias32 (xor-shifts and odd multipliers): a bijection on u32.
            IdOrder::Sparse => {
                let mut x = n;
                x ^= x >> 16;
                x = x.wrapping_mul(0x7feb_352d);
                x ^= x >> 15;
                x = x.wrapping_mul(0x846c_a68b);
                x ^ (x >> 16)
            }
            // A bijection on `bits` bits: an xor-shift and an odd multiplier
            // mod 2^bits, twice.
            IdOrder::SparseBelow(bits) => {
                let mask = u32::MAX >> (32 - bits);
                let mut x = n & mask;
                x ^= x >> (bits / 2);
                x = x.wrapping_mul(0x7feb_352d) & mask;
                x ^= x >> (bits / 2 - 1);
                x = x.wrapping_mul(0x846c_a68b) & mask;
                x ^ (x >> (bits / 2))
            }
            IdOrder::Stride65536 => n.rotate_left(16),
        }
    }

    /// Appends the next row (with its line end) to `out`; false when all are written.
    pub fn next_row(&mut self, out: &mut Vec<u8>) -> bool {
        if self.written == self.config.rows {
            return false;
        }
        self.written += 1;
        let sep: &[u8] = match self.config.spaces {
            Spaces::None => b",",
            Spaces::Half if self.rng.random::<bool>() => b", ",
            Spaces::Half => b",",
            Spaces::All => b", ",
        };
        if self.config.malformed_rate > 0.0 && self.rng.random::<f64>() < self.config.malformed_rate
        {
            out.extend_from_slice(MALFORMED[self.rng.random_range(0..MALFORMED.len())]);
            self.end_line(out);
            return true;
        }
        let k = self.pick_client();
        let client = self.client_id(k);
        let roll: f64 = self.rng.random();
        let mut kind = self.mix.iter().position(|&c| roll < c).unwrap_or(4);
        // With nothing to dispute or settle, the row becomes a deposit.
        let state = self.clients[k];
        if (kind == 2 && state.recent_len == 0) || (kind >= 3 && state.disputed_len == 0) {
            kind = 0;
        }
        let (name, tx): (&[u8], u32) = match kind {
            0 | 1 => {
                let duplicate = self.config.duplicate_rate > 0.0
                    && self.rng.random::<f64>() < self.config.duplicate_rate;
                let tx = if duplicate {
                    self.used[self.rng.random_range(0..self.used.len())]
                } else {
                    let tx = self.fresh_id();
                    self.used[(self.counter as usize) % self.used.len()] = tx;
                    tx
                };
                if kind == 0 {
                    let state = &mut self.clients[k];
                    push(&mut state.recent, &mut state.recent_len, tx);
                    (b"deposit", tx)
                } else {
                    (b"withdrawal", tx)
                }
            }
            2 => {
                let i = self.rng.random_range(0..state.recent_len as usize);
                let state = &mut self.clients[k];
                let tx = take(&mut state.recent, &mut state.recent_len, i);
                push(&mut state.disputed, &mut state.disputed_len, tx);
                (b"dispute", tx)
            }
            _ => {
                let i = self.rng.random_range(0..state.disputed_len as usize);
                let state = &mut self.clients[k];
                let tx = take(&mut state.disputed, &mut state.disputed_len, i);
                if kind == 4 {
                    (b"chargeback", tx)
                } else {
                    push(&mut state.recent, &mut state.recent_len, tx);
                    (b"resolve", tx)
                }
            }
        };
        // Disputes of another client's deposit (rejected `unknown_tx`).
        let client = if kind >= 2
            && self.config.cross_client_rate > 0.0
            && self.rng.random::<f64>() < self.config.cross_client_rate
        {
            client.wrapping_add(1)
        } else {
            client
        };
        let mut ints = itoa::Buffer::new();
        out.extend_from_slice(name);
        out.extend_from_slice(sep);
        out.extend_from_slice(ints.format(client).as_bytes());
        out.extend_from_slice(sep);
        out.extend_from_slice(ints.format(tx).as_bytes());
        out.extend_from_slice(sep);
        match kind {
            0 => self.amount(out, 1_000),
            1 => self.amount(out, 500),
            _ => {}
        }
        self.end_line(out);
        true
    }

    fn end_line(&self, out: &mut Vec<u8>) {
        if self.config.spaces == Spaces::All {
            out.push(b'\t');
        }
        out.extend_from_slice(if self.config.crlf { b"\r\n" } else { b"\n" });
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
    let crlf = config.crlf;
    let mut generator = Generator::new(config);
    let mut buf = Vec::with_capacity((1 << 20) + 4096);
    if header {
        buf.extend_from_slice(b"type,client,tx,amount");
        buf.extend_from_slice(if crlf { b"\r\n" } else { b"\n" });
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

    fn small(config: Config) -> String {
        String::from_utf8(generate_vec(Config {
            rows: 20_000,
            clients: 50,
            ..config
        }))
        .unwrap()
    }

    #[test]
    fn same_seed_same_bytes_other_seed_other_bytes() {
        for preset in [
            Preset::Realistic,
            Preset::HotClient,
            Preset::Adversarial,
            Preset::DisputeHeavy,
        ] {
            let config = Config::preset(preset);
            assert_eq!(small(config.clone()), small(config.clone()), "{preset:?}");
            assert_ne!(
                small(config.clone()),
                small(Config { seed: 2, ..config }),
                "{preset:?}"
            );
        }
    }

    #[test]
    fn default_rows_are_valid_and_every_type_appears() {
        let text = String::from_utf8(generate_vec(Config {
            rows: 200_000,
            clients: 20,
            ..Config::default()
        }))
        .unwrap();
        assert_eq!(text.lines().count(), 200_001);
        for kind in ["deposit", "withdrawal", "dispute", "resolve", "chargeback"] {
            assert!(text.lines().any(|l| l.starts_with(kind)), "no {kind}");
        }
        let mut ids = std::collections::HashSet::new();
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split(',').map(str::trim).collect();
            assert_eq!(fields.len(), 4, "{line}");
            let amount = fields[3];
            if line.starts_with("deposit") || line.starts_with("withdrawal") {
                assert!(ids.insert(fields[2].to_string()), "duplicate id: {line}");
                let (int, frac) = amount.split_once('.').unwrap_or((amount, ""));
                assert!(frac.len() <= 4, "{line}");
                assert!(int.chars().chain(frac.chars()).any(|c| c != '0'), "{line}");
            } else {
                assert!(amount.is_empty(), "{line}");
            }
        }
    }

    #[test]
    fn id_orders_give_distinct_ids_in_their_patterns() {
        for ids in [
            IdOrder::Sequential,
            IdOrder::Shuffled(1000),
            IdOrder::Sparse,
            IdOrder::SparseBelow(20),
            IdOrder::Stride65536,
        ] {
            let mut generator = Generator::new(Config {
                ids,
                ..Config::default()
            });
            let got: Vec<u32> = (0..100_000).map(|_| generator.fresh_id()).collect();
            let distinct: std::collections::HashSet<_> = got.iter().collect();
            assert_eq!(distinct.len(), got.len(), "{ids:?}");
            match ids {
                IdOrder::Sequential => assert_eq!(got[..3], [1, 2, 3]),
                IdOrder::Stride65536 => assert!(got[..1000].iter().all(|id| id % 65_536 == 0)),
                IdOrder::Sparse => {
                    assert!(got.iter().filter(|&&id| id > u32::MAX / 2).count() > 40_000)
                }
                IdOrder::SparseBelow(bits) => {
                    assert!(got.iter().all(|&id| id < 1 << bits));
                    assert!(got.iter().filter(|&&id| id >= 1 << (bits - 1)).count() > 40_000)
                }
                IdOrder::Shuffled(_) => assert_ne!(got[..10], (1001..1011).collect::<Vec<_>>()[..]),
            }
        }
    }

    #[test]
    fn hot_client_concentrates_rows() {
        let text = small(Config::preset(Preset::HotClient));
        let hottest = text
            .lines()
            .filter(|l| l.split(',').nth(1).map(str::trim) == Some("0"))
            .count();
        assert!(
            hottest > 20_000 / 4,
            "hottest client has {hottest} of 20000 rows"
        );
    }

    #[test]
    fn adversarial_preset_injects_errors_and_crlf() {
        let text = small(Config::preset(Preset::Adversarial));
        assert!(text.ends_with("\r\n"));
        let malformed = text
            .lines()
            .filter(|l| MALFORMED.iter().any(|m| l.as_bytes().starts_with(m)))
            .count();
        assert!(
            (100..400).contains(&malformed),
            "{malformed} malformed rows of 20000"
        );
    }

    #[test]
    fn mix_parsing() {
        assert_eq!(Mix::parse("60,30,5,5,0.005"), Ok(Mix::REALISTIC));
        assert!(Mix::parse("1,2,3").is_err());
        assert!(Mix::parse("0,0,0,0,0").is_err());
        assert!(Mix::parse("1,-1,0,0,0").is_err());
    }
}
