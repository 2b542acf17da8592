//! The fast path for the common line: a whole line read from a fixed window
//! of bytes, its end included, with eight digits converted at a time (SWAR:
//! eight bytes in one `u64`, no floats, no per-digit branch).
//!
//! What `fast_line` accepts is what [`plain_record`](super::record::plain_record)
//! accepts on a line that ends (`\n`, or `\r\n`) within [`LINE_WINDOW`]
//! bytes, except an amount with eight integer digits or more, which it
//! leaves to the other; and such a line with fields in double quotes
//! where csv-core reads them as those fields. Where it gives a record, it
//! is the record the general path gives for the line, and the line is the
//! line the [`LineReader`](super::lines::LineReader) would cut: proptests
//! here check it line by line, one in `parse/tests.rs` and the `fast_path`
//! fuzz target check whole inputs read in batches against the general
//! path, and the parser hands a line to the general path whenever this
//! one says `None`.
//!
//! Three readers, the first one tried first:
//!
//! - [`plain_line`], for the commonest shape (`deposit, 1, 2, 3.5` or
//!   `deposit,1,2,3.5`: no blank but one space after a comma): a structural
//!   index of the window (its line ends, commas, spaces and points as
//!   bitmasks, SSE2, AVX2 or AVX-512 compares) is the line's [`Shape`],
//!   whose [`Layout`] (every field's place, checked once per shape and
//!   remembered in [`Shapes`]) says where the fields are, so the fields
//!   are read side by side, not each after the one before;
//! - [`spaced_line`], for any other line of the common shape (blanks
//!   anywhere, tabs, an ignored amount after a dispute): field after field,
//!   with no branch on data that real files mix (a space after a comma or
//!   not, a decimal point or not, the type) and no clamped reads;
//! - [`quoted_line`], for a line that starts with a quote: its quotes
//!   checked and dropped, then the line read by the two above.
//!
//! [`read_lines`] reads a batch, compiled once for the baseline target,
//! once for AVX2/BMI and once for AVX-512, chosen at run time (perf.md, "A
//! structural index").

use crate::amount::Amount;
use crate::store::prefetch_at;
use crate::tx::{Kind, Tx};

/// How far ahead of the line being read [`read_lines`] asks for the input
/// to be loaded: a page. A mapped input (`parse::Mapped`) is read from the
/// page cache itself, not from a copy in the cache, and the hardware's
/// prefetchers stop at every page's end; without this the mapped file saved
/// little (20M rows, `--workers 0`, 11 rounds: read 0.75 s of CPU, mapped
/// 0.74, mapped and 1 KiB ahead 0.69, 4 KiB ahead 0.68; perf.md).
const READ_AHEAD: usize = 4096;

/// The longest line (line end included) the fast path reads: longer lines
/// take the general path.
pub const LINE_WINDOW: usize = 64;
/// Bytes a window must hold past its start: the line, plus the 8 bytes a
/// word load may read from the line's last byte.
pub const WINDOW: usize = LINE_WINDOW + 8;

const ZEROS: u64 = u64::from_le_bytes([b'0'; 8]);
const HIGH: u64 = 0x8080_8080_8080_8080;

/// The little-endian word at `w[i..i + 8]`, if the window holds it.
///
/// Checked, not clamped into the window: a clamp is a conditional move on
/// the address of the next load, which lengthens the chain of dependent
/// loads a line is read through (the parser took 1.17x the CPU, perf.md);
/// the check's branch is never taken and costs no latency.
#[inline(always)]
fn word(w: &[u8; WINDOW], i: usize) -> Option<u64> {
    let bytes = w.get(i..i + 8)?;
    Some(u64::from_le_bytes(bytes.try_into().ok()?))
}

/// The byte at `w[i]`, if the window holds it (see [`word`]).
#[inline(always)]
fn byte(w: &[u8; WINDOW], i: usize) -> Option<u8> {
    w.get(i).copied()
}

/// How many ASCII digits `x` starts with (0 to 8), `x` being a word with
/// `'0'` subtracted bytewise by XOR: a digit byte is then 0 to 9.
#[inline(always)]
fn digit_count(x: u64) -> usize {
    non_digits(x).trailing_zeros() as usize / 8
}

/// Bit 7 set in the first byte of `x` (a word with `'0'` XORed out) that
/// is not a digit, and maybe in later bytes; 0 when all eight are digits.
#[inline(always)]
fn non_digits(x: u64) -> u64 {
    // A byte of 10 or more gets bit 7 from the addition, one of 128 or more
    // has it already; a carry out of a flagged byte only reaches bytes after
    // the first flagged one.
    (x.wrapping_add(0x7676_7676_7676_7676) | x) & HIGH
}

/// The value of the first `n` (1 to 8) digits of `x` (digits as 0-9
/// bytes); meaningless for `n == 0`, which callers refuse.
#[inline(always)]
fn digits_value(x: u64, n: usize) -> u64 {
    // Left-align the n digits: the bytes below become leading zeros. (A
    // wrapping shift: for n == 0 the amount, 64, wraps to 0.)
    let x = x.wrapping_shl(8 * (8 - n as u32));
    let x = (x.wrapping_mul(10 * 256 + 1) >> 8) & 0x00FF_00FF_00FF_00FF;
    let x = (x.wrapping_mul(100 * 65_536 + 1) >> 16) & 0x0000_FFFF_0000_FFFF;
    x.wrapping_mul(10_000 * (1 << 32) + 1) >> 32
}

/// Up to 8 digits at `w[i..]`: their value and count (the value is
/// meaningless when the count is 0).
#[inline(always)]
fn digits8(w: &[u8; WINDOW], i: usize) -> Option<(u64, usize)> {
    let x = word(w, i)? ^ ZEROS;
    let n = digit_count(x);
    Some((digits_value(x, n), n))
}

#[inline(always)]
fn is_blank(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

#[inline(always)]
fn blanks(w: &[u8; WINDOW], mut i: usize) -> usize {
    while i < LINE_WINDOW && is_blank(w[i]) {
        i += 1;
    }
    i
}

/// Blanks, a comma, blanks: the position after them. The common case,
/// a comma and at most one space, takes no branch on whether the space is
/// there (files that mix `a,b` and `a, b` lines made that branch a
/// coin toss).
#[inline(always)]
fn separator(w: &[u8; WINDOW], i: usize) -> Option<usize> {
    let i = if byte(w, i)? == b',' {
        i + 1
    } else {
        let i = blanks(w, i);
        if byte(w, i)? != b',' {
            return None;
        }
        i + 1
    };
    let i = i + usize::from(byte(w, i)? == b' ');
    Some(if is_blank(byte(w, i)?) {
        blanks(w, i)
    } else {
        i
    })
}

/// A type name's expected first 8 bytes (under `mask`) and next 2 bytes
/// (under `tail_mask`), and its length; with what its kind asks of a line,
/// looked up with it rather than worked out from the kind on every line.
#[derive(Clone, Copy)]
struct Name {
    head: u64,
    mask: u64,
    tail: u16,
    tail_mask: u16,
    len: u8,
    kind: Kind,
    /// Whether the kind claims an id (and has an amount).
    claims: bool,
    /// [`Layout::keep`] under this: the client's and tx's lanes, and the
    /// amount's for a kind that claims an id.
    keep: u32,
}

/// The type names, indexed by their first two bytes XORed, low 4 bits:
/// distinct for the five names, so one table read and one comparison
/// decide (a chain of comparisons mispredicted on files that mix types).
const NAMES: [Name; 16] = {
    const NONE: Name = Name {
        head: 1,
        mask: 0,
        tail: 0,
        tail_mask: 0,
        len: 0,
        kind: Kind::Deposit,
        claims: false,
        keep: 0,
    };
    const fn name(text: &[u8], kind: Kind) -> (usize, Name) {
        let mut head = [0u8; 8];
        let mut mask = [0u8; 8];
        let mut i = 0;
        while i < 8 && i < text.len() {
            head[i] = text[i];
            mask[i] = 0xFF;
            i += 1;
        }
        let (tail, tail_mask) = if text.len() == 10 {
            (u16::from_le_bytes([text[8], text[9]]), 0xFFFF)
        } else {
            (0, 0)
        };
        let name = Name {
            head: u64::from_le_bytes(head),
            mask: u64::from_le_bytes(mask),
            tail,
            tail_mask,
            len: text.len() as u8,
            kind,
            claims: kind.claims_id(),
            keep: if kind.claims_id() { u32::MAX } else { 0xFFFF },
        };
        (((text[0] ^ text[1]) & 15) as usize, name)
    }
    let mut names = [NONE; 16];
    let all = [
        name(b"deposit", Kind::Deposit),
        name(b"withdrawal", Kind::Withdrawal),
        name(b"dispute", Kind::Dispute),
        name(b"resolve", Kind::Resolve),
        name(b"chargeback", Kind::Chargeback),
    ];
    let mut i = 0;
    while i < all.len() {
        assert!(names[all[i].0].len == 0, "two type names share a slot");
        names[all[i].0] = all[i].1;
        i += 1;
    }
    names
};

/// The lowercase type name at `w[i..]` (followed by no further letter):
/// the kind and the position after it.
#[inline(always)]
fn kind(w: &[u8; WINDOW], i: usize) -> Option<(Kind, usize)> {
    let head = word(w, i)?;
    let tail = (word(w, i + 2)? >> 48) as u16;
    let name = &NAMES[((head ^ (head >> 8)) & 15) as usize];
    let len = usize::from(name.len);
    let next = byte(w, i + len)?;
    let matches = (head & name.mask) == name.head && (tail & name.tail_mask) == name.tail;
    (matches && !next.is_ascii_lowercase()).then_some((name.kind, i + len))
}

/// Blanks, then the line end: the position after it.
#[inline(always)]
fn line_end(w: &[u8; WINDOW], i: usize) -> Option<usize> {
    let i = blanks(w, i);
    match byte(w, i)? {
        b'\n' => Some(i + 1),
        b'\r' if byte(w, i + 1)? == b'\n' => Some(i + 2),
        _ => None,
    }
}

/// `D[.F]`: 1 to 7 integer digits, 1 to 4 fractional ones, not zero; the
/// amount and the position after it.
#[inline(always)]
fn amount(w: &[u8; WINDOW], i: usize) -> Option<(Amount, usize)> {
    const SCALES: [u64; 5] = [10_000, 1_000, 100, 10, 1];
    let (units, n) = digits8(w, i)?;
    if n == 0 || n == 8 {
        return None;
    }
    let at = i + n;
    // The fraction is read whether or not a point comes, and dropped if
    // none does: no branch on the point (files mix `5` and `5.25`).
    let point = byte(w, at)? == b'.';
    let (fraction, count) = digits8(w, at + 1)?;
    let (fraction, count) = if point { (fraction, count) } else { (0, 0) };
    if point && !(1..=4).contains(&count) {
        return None;
    }
    let raw = units * SCALES[0] + fraction * SCALES[count];
    let at = at + usize::from(point) + count;
    (raw > 0).then(|| (Amount::from_raw(raw as i64), at))
}

/// A tx id: 1 to 10 digits, at most `u32::MAX`.
#[inline(always)]
fn tx_id(w: &[u8; WINDOW], i: usize) -> Option<(u32, usize)> {
    let (mut value, n) = digits8(w, i)?;
    let mut at = i + n;
    if n == 0 {
        return None;
    }
    if n == 8 {
        // Ids of 9 and 10 digits: the last ones a byte at a time.
        while let Some(d) = w.get(at).filter(|b| b.is_ascii_digit()) {
            if at - i == 10 {
                return None;
            }
            value = value * 10 + u64::from(d - b'0');
            at += 1;
        }
    }
    Some((u32::try_from(value).ok()?, at))
}

/// Reads the line at the start of `w`: its record and its length, line end
/// included. `None` when the line is not of the common shape (see the
/// module docs), or does not end within [`LINE_WINDOW`] bytes.
///
/// The commonest lines ([`plain_line`]'s) are read from a structural index
/// of the window; the others field after field ([`spaced_line`]).
/// [`read_lines`] reads lines so, a batch at a time.
#[cfg(test)]
pub fn fast_line(w: &[u8; WINDOW]) -> Option<(Tx, usize)> {
    plain_line::<Baseline>(w, &mut Computed)
        .or_else(|| spaced_line(w))
        .or_else(|| quoted_line::<Baseline>(w, &mut Computed))
}

/// Reads common lines from `buf[at..]`, each as `fast_line` does, while a
/// whole window fits in `buf` and until `txs` or `starts` is full: writes
/// the `n`th line's record to `txs[n]` and its start to `starts[n]`, and
/// returns where the first line it did not read starts and how many it
/// read.
///
/// Slots written in place, not pushes to vectors, which checked the
/// capacity on every row: 229 instructions a row here where the pushes
/// took 233 (callgrind, `--workers 0`, 1M rows of `datagen`).
pub fn read_lines(buf: &[u8], at: usize, txs: &mut [Tx], starts: &mut [u32]) -> (usize, usize) {
    // Borrowed here, outside the functions compiled with wider features:
    // a closure in one of them is compiled without its features, and the
    // loop in it called the classifier a line (27 instructions a row more,
    // callgrind, perf.md).
    SHAPES.with_borrow_mut(|shapes| {
        let out = Out {
            txs,
            starts,
            shapes,
        };
        #[cfg(target_arch = "x86_64")]
        if Avx512::detected() {
            // SAFETY: the processor has the features `read_lines_avx512` is
            // compiled for (checked just above).
            return unsafe { read_lines_avx512(buf, at, out) };
        }
        #[cfg(target_arch = "x86_64")]
        if Avx2::detected() {
            // SAFETY: the processor has the features `read_lines_avx2` is
            // compiled for (checked just above).
            return unsafe { read_lines_avx2(buf, at, out) };
        }
        read_lines_with::<Baseline>(buf, at, out)
    })
}

thread_local! {
    /// Each thread's [`Shapes`], kept from batch to batch: a parser is
    /// made per block on the parallel paths, so shapes kept per parser
    /// would start empty on every block.
    static SHAPES: std::cell::RefCell<Shapes> = std::cell::RefCell::new(Shapes::new());
}

/// Where [`read_lines`] writes the records and line starts it reads, and
/// the layouts it remembers.
struct Out<'a> {
    txs: &'a mut [Tx],
    starts: &'a mut [u32],
    shapes: &'a mut Shapes,
}

/// [`read_lines`] compiled for AVX-512 (BW, VBMI) as well as AVX2 and BMI:
/// the structural index from one 64-byte load, each class's mask straight
/// from one compare, the fields from one shuffle
/// (`read_lines_with::<Avx512>` inlined here is what takes the features).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,bmi1,bmi2,popcnt,avx512f,avx512bw,avx512vbmi")]
fn read_lines_avx512(buf: &[u8], at: usize, out: Out<'_>) -> (usize, usize) {
    read_lines_with::<Avx512>(buf, at, out)
}

/// [`read_lines`] compiled for AVX2 and BMI: the structural index in two
/// 32-byte steps, bit scans, masks and counts in one instruction each (the
/// compiler counts a line's commas with POPCNT: 8 instructions a line
/// fewer than without it).
/// `read_lines_with::<Avx2>` inlined here is what takes the features.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,bmi1,bmi2,popcnt")]
fn read_lines_avx2(buf: &[u8], at: usize, out: Out<'_>) -> (usize, usize) {
    read_lines_with::<Avx2>(buf, at, out)
}

#[inline(always)]
fn read_lines_with<C: Classify>(buf: &[u8], mut at: usize, out: Out<'_>) -> (usize, usize) {
    let Out {
        txs,
        starts,
        shapes,
    } = out;
    let mut read = 0;
    for (slot, start) in txs.iter_mut().zip(starts.iter_mut()) {
        let Some(w) = buf.get(at..).and_then(|rest| rest.first_chunk::<WINDOW>()) else {
            break;
        };
        // One hint a line, though two lines share a cache line: cheaper
        // than a test of whether this one starts a new one.
        prefetch_ahead(w);
        // The readers tried one after the other here, not through one
        // `plain_line(w).or_else(|| spaced_line(w))`: that result was
        // built on the stack in narrow stores and copied out with one wide
        // load, which waited for them (a fifth of the parser's samples).
        let (tx, len) = if let Some(plain) = plain_line::<C>(w, shapes) {
            plain
        } else if let Some(spaced) = spaced_line(w) {
            spaced
        } else if let Some(quoted) = quoted_line::<C>(w, shapes) {
            quoted
        } else {
            break;
        };
        *slot = tx;
        *start = at as u32;
        at += len;
        read += 1;
    }
    (at, read)
}

/// Asks the CPU to start loading the input [`READ_AHEAD`] bytes past the
/// start of `w`, wherever that is: the address is only computed (a hint
/// past the input's end is dropped, as any prefetch of an unmapped
/// address is), so no check of the input's length comes with it.
#[inline(always)]
fn prefetch_ahead(w: &[u8; WINDOW]) {
    prefetch_at(w.as_ptr().wrapping_add(READ_AHEAD));
}

/// Where the window's line ends, commas, spaces and decimal points are:
/// bit `i` of each mask is byte `w[i]`, for the first [`LINE_WINDOW`]
/// bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Structure {
    newlines: u64,
    commas: u64,
    spaces: u64,
    dots: u64,
}

/// The bytes a [`Structure`] marks, in the order of its fields.
const STRUCTURAL: [u8; 4] = [b'\n', b',', b' ', b'.'];

impl Structure {
    /// The structure from [`byte_masks`] of [`STRUCTURAL`].
    #[inline(always)]
    fn of([newlines, commas, spaces, dots]: [u64; 4]) -> Structure {
        Structure {
            newlines,
            commas,
            spaces,
            dots,
        }
    }
}

/// How a window's [`Structure`] is found: with the instructions every
/// processor of the target has ([`Baseline`]), or wider ones ([`Avx2`], [`Avx512`]).
trait Classify {
    fn structure(w: &[u8; WINDOW]) -> Structure;

    /// The values of four fields of up to eight digits, each given as an
    /// [`aligned`] word (the digits as 0 to 9 at its top, zeros below);
    /// `None` if a byte of one is not a digit.
    #[inline(always)]
    fn values(words: [u64; 4]) -> Option<[u64; 4]> {
        let digits = words.iter().all(|&x| non_digits(x) == 0);
        digits.then(|| words.map(|x| digits_value(x, 8)))
    }

    /// The values of a plain line's client, tx (0 when it has more than
    /// eight digits: see [`long_tx_id`]), integer digits and fractional
    /// digits in ten-thousandths (0 and 0 unless `claims`), where `layout`
    /// says they are; `None` if a byte of one is not a digit.
    #[inline(always)]
    fn fields(w: &[u8; WINDOW], layout: &Layout, name: &Name) -> Option<[u64; 4]> {
        let claims = name.claims;
        let at = |(at, len): (u8, u8)| (usize::from(at), usize::from(len));
        let field = |place| {
            let (i, n) = at(place);
            aligned(w, i, n)
        };
        // No amount read for the others, whose amount field is empty.
        let fraction = || {
            let (i, n) = at(layout.fraction);
            scaled_fraction(w, i, n)
        };
        let long_tx = layout.tx.1 > 8;
        Self::values([
            field(layout.client)?,
            if long_tx { 0 } else { field(layout.tx)? },
            if claims { field(layout.units)? } else { 0 },
            if claims { fraction()? } else { 0 },
        ])
    }
}

/// SSE2 on x86-64 (part of its baseline: no detection needed), SWAR
/// elsewhere.
struct Baseline;

impl Classify for Baseline {
    #[inline(always)]
    fn structure(w: &[u8; WINDOW]) -> Structure {
        Structure::of(byte_masks(w, STRUCTURAL))
    }
}

/// AVX2, on processors that have it (and BMI1, BMI2, POPCNT, which
/// [`read_lines_avx2`] is compiled with).
#[cfg(target_arch = "x86_64")]
struct Avx2;

#[cfg(target_arch = "x86_64")]
impl Avx2 {
    fn detected() -> bool {
        is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("bmi1")
            && is_x86_feature_detected!("bmi2")
            && is_x86_feature_detected!("popcnt")
    }
}

#[cfg(target_arch = "x86_64")]
impl Classify for Avx2 {
    #[inline(always)]
    fn structure(w: &[u8; WINDOW]) -> Structure {
        // SAFETY: only reached from `read_lines_avx2`, which runs only where
        // `Avx2::detected`.
        unsafe { structure_avx2(w) }
    }

    #[inline(always)]
    fn values(words: [u64; 4]) -> Option<[u64; 4]> {
        // SAFETY: as for `structure`.
        unsafe { values_avx2(words) }
    }
}

/// AVX-512 (F, BW and VBMI) with everything [`Avx2`] has: a window's
/// classes found in one 64-byte register, each compare's mask a `u64` at
/// once (the AVX2 structure takes two compares, two mask moves and a
/// merge a class), and a line's four number fields gathered from it in one
/// byte shuffle ([`fields_avx512`]). Measured on an AMD EPYC (Zen 4 or
/// later: perf.md); Intel's first AVX-512 cores (Skylake-SP, which lack
/// VBMI) take the AVX2 path.
#[cfg(target_arch = "x86_64")]
struct Avx512;

#[cfg(target_arch = "x86_64")]
impl Avx512 {
    fn detected() -> bool {
        Avx2::detected()
            && is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512vbmi")
    }
}

#[cfg(target_arch = "x86_64")]
impl Classify for Avx512 {
    #[inline(always)]
    fn structure(w: &[u8; WINDOW]) -> Structure {
        // SAFETY: only reached from `read_lines_avx512`, which runs only
        // where `Avx512::detected`.
        unsafe { structure_avx512(w) }
    }

    #[inline(always)]
    fn values(words: [u64; 4]) -> Option<[u64; 4]> {
        // SAFETY: as for `structure` (AVX-512 implies AVX2 there).
        unsafe { values_avx2(words) }
    }

    #[inline(always)]
    fn fields(w: &[u8; WINDOW], layout: &Layout, name: &Name) -> Option<[u64; 4]> {
        // The client's and tx's lanes (16 bytes), and the amount's if it has one.
        let keep = layout.keep & name.keep;
        // SAFETY: as for `structure` (VBMI is part of `Avx512::detected`).
        unsafe { fields_avx512(w, &layout.gather, keep) }
    }
}

/// [`Classify::fields`] in one byte shuffle: the window's bytes, `'0'`
/// XORed out, moved to where [`aligned`] would put them in four 8-byte
/// lanes (`gather`, from the layout), the bytes outside the fields
/// zeroed (`keep`); then checked and converted as [`values_avx2`] does.
/// The four words' loads, shifts and moves into a vector register, ~30
/// instructions a line, become a load and a shuffle.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,avx512f,avx512bw,avx512vbmi")]
#[inline]
unsafe fn fields_avx512(w: &[u8; WINDOW], gather: &[u64; 4], keep: u32) -> Option<[u64; 4]> {
    use std::arch::x86_64::{
        __m256i, _mm256_loadu_si256, _mm512_castsi256_si512, _mm512_castsi512_si256,
        _mm512_cmpgt_epu8_mask, _mm512_loadu_si512, _mm512_maskz_sub_epi8, _mm512_permutexvar_epi8,
        _mm512_set1_epi8,
    };
    // SAFETY: the caller runs on a processor with these features; the
    // loads read the window's first 64 bytes (it holds 72) and the
    // layout's 32, unaligned loads allowed.
    let (v, index) = unsafe {
        (
            _mm512_loadu_si512(w.as_ptr().cast()),
            _mm256_loadu_si256(gather.as_ptr().cast::<__m256i>()),
        )
    };
    // The bytes moved, then `'0'` taken from those kept, the others
    // zeroed: lanes past the first 32 bytes of the index are not kept
    // (whatever the cast leaves there picks nothing). (`'0'` XORed out
    // before a zeroing shuffle compiled to two shuffles, a XOR and a
    // masked move.)
    let moved = _mm512_permutexvar_epi8(_mm512_castsi256_si512(index), v);
    let fields = _mm512_maskz_sub_epi8(u64::from(keep), moved, _mm512_set1_epi8(b'0' as i8));
    // (Compared whole: the lanes past 32 bytes are zeros. The 256-bit
    // compare would need AVX-512 VL as well, and was a call a line.)
    if _mm512_cmpgt_epu8_mask(fields, _mm512_set1_epi8(9)) != 0 {
        return None;
    }
    Some(convert_avx2(_mm512_castsi512_si256(fields)))
}

/// [`Structure`] of a window, its 64 bytes in one step.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
#[inline]
unsafe fn structure_avx512(w: &[u8; WINDOW]) -> Structure {
    use std::arch::x86_64::{_mm512_cmpeq_epi8_mask, _mm512_loadu_si512, _mm512_set1_epi8};
    // SAFETY: the caller runs on a processor with AVX-512 F and BW; the
    // load reads the window's first 64 bytes (it holds 72), unaligned
    // loads allowed.
    let v = unsafe { _mm512_loadu_si512(w.as_ptr().cast()) };
    let bits = |byte: u8| _mm512_cmpeq_epi8_mask(v, _mm512_set1_epi8(byte as i8));
    Structure {
        newlines: bits(b'\n'),
        commas: bits(b','),
        spaces: bits(b' '),
        dots: bits(b'.'),
    }
}

/// [`Classify::values`] in one register: the four words checked in one
/// compare, their digits paired, quadrupled and octupled by three
/// multiply-adds (the SWAR conversion takes three multiplies per word).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn values_avx2(words: [u64; 4]) -> Option<[u64; 4]> {
    use std::arch::x86_64::{
        _mm256_cmpeq_epi8, _mm256_max_epu8, _mm256_movemask_epi8, _mm256_set1_epi8,
        _mm256_set_epi64x,
    };
    let [a, b, c, d] = words.map(|x| x as i64);
    let v = _mm256_set_epi64x(d, c, b, a);
    let nine = _mm256_set1_epi8(9);
    if _mm256_movemask_epi8(_mm256_cmpeq_epi8(_mm256_max_epu8(v, nine), nine)) != -1 {
        return None;
    }
    Some(convert_avx2(v))
}

/// The values of four words of digits (0 to 9, the more significant in
/// the lower bytes) in one register: see [`values_avx2`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
fn convert_avx2(v: std::arch::x86_64::__m256i) -> [u64; 4] {
    use std::arch::x86_64::{
        _mm256_castsi256_si128, _mm256_extracti128_si256, _mm256_madd_epi16, _mm256_maddubs_epi16,
        _mm256_packus_epi32, _mm256_set1_epi16, _mm256_set1_epi32, _mm_cvtsi128_si64,
    };
    // A word's lower bytes are its more significant digits: pairs (x10, x1),
    // then pairs of pairs (x100, x1), then of those (x10000, x1).
    let v = _mm256_maddubs_epi16(v, _mm256_set1_epi16(0x010A));
    let v = _mm256_madd_epi16(v, _mm256_set1_epi32(0x0001_0064));
    let v = _mm256_packus_epi32(v, v);
    let v = _mm256_madd_epi16(v, _mm256_set1_epi32(0x0001_2710));
    // Each 128-bit half holds its two words' values in its low 64 bits.
    let low = _mm_cvtsi128_si64(_mm256_castsi256_si128(v)) as u64;
    let high = _mm_cvtsi128_si64(_mm256_extracti128_si256::<1>(v)) as u64;
    [low & 0xFFFF_FFFF, low >> 32, high & 0xFFFF_FFFF, high >> 32]
}

/// [`Structure`] of a window, thirty-two bytes per step.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn structure_avx2(w: &[u8; WINDOW]) -> Structure {
    use std::arch::x86_64::{
        __m256i, _mm256_cmpeq_epi8, _mm256_loadu_si256, _mm256_movemask_epi8, _mm256_set1_epi8,
    };
    // SAFETY: the caller runs on a processor with AVX2; the two loads read
    // the window's first 64 bytes (it holds 72), unaligned loads allowed.
    unsafe {
        let low = _mm256_loadu_si256(w.as_ptr().cast::<__m256i>());
        let high = _mm256_loadu_si256(w.as_ptr().add(32).cast::<__m256i>());
        let bits = |byte: u8| {
            let class = _mm256_set1_epi8(byte as i8);
            let low = _mm256_movemask_epi8(_mm256_cmpeq_epi8(low, class)) as u32;
            let high = _mm256_movemask_epi8(_mm256_cmpeq_epi8(high, class)) as u32;
            u64::from(low) | u64::from(high) << 32
        };
        Structure {
            newlines: bits(b'\n'),
            commas: bits(b','),
            spaces: bits(b' '),
            dots: bits(b'.'),
        }
    }
}

/// [`Structure`] of a window, eight bytes per step (SWAR): the portable
/// version (what [`Baseline`] computes off x86-64), which a test checks
/// against the others.
#[cfg(test)]
fn structure_swar(w: &[u8; WINDOW]) -> Structure {
    Structure::of(byte_masks_swar(w, STRUCTURAL))
}

/// For each of `bytes`, bit `i` set where `w[i]` (of its first
/// [`LINE_WINDOW`]) is that byte: SSE2 on x86-64, SWAR elsewhere.
#[inline(always)]
fn byte_masks<const N: usize>(w: &[u8; WINDOW], bytes: [u8; N]) -> [u64; N] {
    #[cfg(not(target_arch = "x86_64"))]
    return byte_masks_swar(w, bytes);
    #[cfg(target_arch = "x86_64")]
    // SAFETY: SSE2 is part of the x86-64 baseline; each load reads 16 of
    // the window's first 64 bytes (it holds 72), unaligned loads allowed.
    unsafe {
        use std::arch::x86_64::{
            __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_set1_epi8,
        };
        let mut found = [0u64; N];
        for k in 0..LINE_WINDOW / 16 {
            let v = _mm_loadu_si128(w.as_ptr().add(16 * k).cast::<__m128i>());
            for (mask, &b) in found.iter_mut().zip(&bytes) {
                let bits = _mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8(b as i8))) as u16;
                *mask |= u64::from(bits) << (16 * k);
            }
        }
        found
    }
}

/// [`byte_masks`] eight bytes at a time (SWAR): the portable version,
/// which a test checks against the other.
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
#[inline(always)]
fn byte_masks_swar<const N: usize>(w: &[u8; WINDOW], bytes: [u8; N]) -> [u64; N] {
    let mut found = [0u64; N];
    for k in 0..LINE_WINDOW / 8 {
        let x = u64::from_le_bytes(w[8 * k..8 * k + 8].try_into().expect("8 bytes"));
        for (mask, &b) in found.iter_mut().zip(&bytes) {
            *mask |= swar_bits(x, b) << (8 * k);
        }
    }
    found
}

/// Bit `i` set where byte `i` of `x` is `b` (exact: no false positives
/// from borrows, as the plain zero-byte trick has).
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
#[inline(always)]
fn swar_bits(x: u64, b: u8) -> u64 {
    const LOW7: u64 = 0x7F7F_7F7F_7F7F_7F7F;
    let y = x ^ (u64::from(b) * 0x0101_0101_0101_0101);
    let zero = !(((y & LOW7) + LOW7) | y | LOW7);
    // One bit per byte, gathered into the low 8 bits.
    ((zero >> 7).wrapping_mul(0x0102_0408_1020_4080)) >> 56
}

/// The places of a line's commas, spaces and decimal points, and of its
/// end: all that [`layout`] reads. Two lines of one shape have their
/// fields in the same places.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Shape {
    /// The commas, and the line's `\n` (its highest bit).
    ends: u64,
    spaces: u64,
    /// The decimal points, and bit 63 when a `\r` comes before the `\n`
    /// (a line is at most 63 bytes before its `\n`: bit 63 is free).
    dots: u64,
}

impl Shape {
    /// The shape of the line at the window's start; `None` when the
    /// window holds no line end, or a space anywhere but after a comma.
    #[inline(always)]
    fn of(w: &[u8; WINDOW], found: &Structure) -> Option<Shape> {
        if found.newlines == 0 {
            return None;
        }
        let newline = found.newlines.trailing_zeros() as usize;
        let inside = (1u64 << newline) - 1;
        let commas = found.commas & inside;
        let spaces = found.spaces & inside;
        if spaces & !(commas << 1) != 0 {
            return None;
        }
        let cr = newline > 0 && w[newline - 1] == b'\r';
        Some(Shape {
            ends: commas | 1 << newline,
            spaces,
            dots: found.dots & inside | u64::from(cr) << 63,
        })
    }
}

/// Where a line of one [`Shape`] has its fields: start and length of each
/// (`(0, 0)` for none). Found from the shape alone; the bytes are read by
/// [`plain_line`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Layout {
    /// Which type names a line of the shape may start with: bit `i` for
    /// `NAMES[i]`, set where the name is as long as the text before the
    /// first comma and its kind suits the fields after it: [`CLAIMS`]
    /// (three fields and an amount of 1-7 integer digits and 1-4
    /// fractional ones), [`OTHERS`] (two fields, or three and nothing after
    /// the third comma but one space). One bit test a line (a length and a
    /// kind compared took eight instructions).
    names: u16,
    client: (u8, u8),
    tx: (u8, u8),
    units: (u8, u8),
    fraction: (u8, u8),
    /// For [`fields_avx512`]: byte `j` of the four fields' words (client,
    /// tx, integer and fractional digits) is the window's byte numbered by
    /// byte `j` of `gather` (little-endian, word `j / 8`) where bit `j` of
    /// `keep` is set, else zero: each field's bytes at the top of its
    /// word, as [`aligned`] puts them (a tx of more than eight digits kept
    /// out).
    gather: [u64; 4],
    keep: u32,
}

/// The kinds that claim an id, for [`Layout::names`]: deposits and withdrawals.
const CLAIMS: u8 = 1;
/// The other kinds, for [`Layout::names`]: disputes, resolves and chargebacks.
const OTHERS: u8 = 2;

/// Where the fields of a line of `shape` are, as [`Layout`] says; the
/// default layout (`suits` 0: none suited) for a shape no plain line has.
/// What [`plain_line`] checked line by line before [`Shapes`] remembered
/// it per shape.
fn layout(shape: &Shape) -> Layout {
    let newline = 63 - shape.ends.leading_zeros() as usize;
    let commas = shape.ends & !(1 << newline);
    let spaces = shape.spaces;
    let dots = shape.dots & !(1 << 63);
    let end = newline - (shape.dots >> 63) as usize;
    if !(2..=3).contains(&commas.count_ones()) {
        return Layout::default();
    }
    // The commas' places, the third past the line if there are two.
    let mut at = [64; 3];
    let mut rest = commas;
    for place in &mut at {
        if rest != 0 {
            *place = rest.trailing_zeros() as usize;
        }
        rest &= rest.wrapping_sub(1);
    }
    let after = |c: usize| c + 1 + (spaces >> (c + 1) & 1) as usize;
    let client = (after(at[0]), at[1]);
    let three = at[2] < 64;
    let tx = (after(at[1]), if three { at[2] } else { end });
    let amount = three.then(|| (after(at[2]), end));
    let len = |(from, to): (usize, usize)| to.saturating_sub(from);
    if !(1..=5).contains(&len(client)) || !(1..=10).contains(&len(tx)) {
        return Layout::default();
    }
    // Points only in an amount: elsewhere they make no plain line.
    let amount_bits = amount.map_or(0, |(from, to)| (1u64 << to) - (1u64 << from));
    if dots & !amount_bits != 0 || dots.count_ones() > 1 {
        return Layout::default();
    }
    let (units, fraction) = match (amount, dots) {
        (Some((from, to)), 0) => ((from, to), (0, 0)),
        (Some((from, to)), _) => {
            let point = dots.trailing_zeros() as usize;
            ((from, point), (point + 1, to))
        }
        (None, _) => ((0, 0), (0, 0)),
    };
    let claims = amount.is_some()
        && (1..=7).contains(&len(units))
        && (dots == 0 || (1..=4).contains(&len(fraction)));
    let others = amount.is_none_or(|amount| len(amount) == 0) && dots == 0;
    let place = |(from, to): (usize, usize)| (from as u8, len((from, to)) as u8);
    let (mut gather, mut keep) = ([0u64; 4], 0u32);
    let long_tx = len(tx) > 8;
    let fields = [client, if long_tx { (0, 0) } else { tx }, units, fraction];
    for (k, (word, &(from, to))) in gather.iter_mut().zip(&fields).enumerate() {
        let places = (from as u64) * 0x0101_0101_0101_0101 + 0x0706_0504_0302_0100;
        if k == 3 {
            // The fractional digits in bytes 4, 5, ... (as
            // [`scaled_fraction`] puts them): their value in
            // ten-thousandths. More than four make a layout no deposit or
            // withdrawal suits.
            let n = len((from, to)).min(4) as u32;
            *word = places << 32;
            keep |= ((1u32 << n) - 1) << 4 << (8 * k);
            continue;
        }
        // A field of more than eight bytes makes a layout no line suits.
        let n = len((from, to)).min(8) as u32;
        // Bytes `from`, `from + 1`, ... moved up to the word's top `n`
        // bytes (word arithmetic: a layout is made for every new shape,
        // and a file whose every line has its own shape makes one a line).
        *word = places.checked_shl(8 * (8 - n)).unwrap_or(0);
        keep |= u32::from((0xFF00u16 >> n) as u8) << (8 * k);
    }
    Layout {
        gather,
        keep,
        names: names_suited(
            at[0],
            (u8::from(claims) * CLAIMS) | (u8::from(others) * OTHERS),
        ),
        client: place(client),
        tx: place(tx),
        units: place(units),
        fraction: place(fraction),
    }
}

/// [`Layout::names`] for a line whose type name is `len` bytes long and
/// whose fields suit the kinds `suits` says (the slots of no name, of
/// length 0, suit none).
fn names_suited(len: usize, suits: u8) -> u16 {
    let class = |name: &Name| if name.claims { CLAIMS } else { OTHERS };
    NAMES
        .iter()
        .enumerate()
        .filter(|(_, name)| name.len > 0 && usize::from(name.len) == len)
        .filter(|(_, name)| class(name) & suits != 0)
        .fold(0, |names, (i, _)| names | 1 << i)
}

/// How a [`plain_line`] finds the [`Layout`] of a [`Shape`]: remembered
/// ([`Shapes`]: every line read, a quoted one's unquoted copy too), or
/// computed each time (`Computed`: the tests' reference).
trait Layouts {
    fn layout(&mut self, shape: &Shape) -> Layout;
}

/// [`layout`] computed for every line: the tests' reference.
#[cfg(test)]
struct Computed;

#[cfg(test)]
impl Layouts for Computed {
    #[inline(always)]
    fn layout(&mut self, shape: &Shape) -> Layout {
        layout(shape)
    }
}

/// The [`Layout`]s of the shapes seen last, one per slot of a table
/// indexed by a hash of the shape: a file has a few hundred shapes (the
/// type, the digits of its fields, a space after a comma or not), so a
/// line's fields are found with a hash, a load and a comparison, not with
/// the checks [`layout`] makes.
struct Shapes {
    /// Of a fixed length: a slot taken from a hash's top bits needs no
    /// bounds check.
    slots: Box<[(Shape, Layout); Shapes::SLOTS]>,
}

impl Shapes {
    /// Slots in the table: 4,096 of 72 bytes (the shape's 24, the
    /// layout's 48).
    const SLOTS: usize = {
        assert!(std::mem::size_of::<(Shape, Layout)>() == 72);
        1 << 12
    };

    fn new() -> Shapes {
        // An empty slot's shape has no line end: no line's shape.
        Shapes {
            slots: vec![(Shape::default(), Layout::default()); Shapes::SLOTS]
                .into_boxed_slice()
                .try_into()
                .unwrap_or_else(|_| unreachable!("a vector of SLOTS slots")),
        }
    }
}

impl Layouts for Shapes {
    #[inline(always)]
    fn layout(&mut self, shape: &Shape) -> Layout {
        let mixed = shape.ends ^ shape.spaces.rotate_left(21) ^ shape.dots.rotate_left(42);
        let slot = (mixed.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 52) as usize;
        let slot = slot % Shapes::SLOTS;
        if self.slots[slot].0 != *shape {
            self.learn(slot, shape.ends, shape.spaces, shape.dots);
        }
        // Read from the slot whichever way: one place the caller's loads
        // of the layout's fields read from (a layout returned by `learn`
        // as well made the compiler copy it to the stack on every line).
        self.slots[slot].1
    }
}

impl Shapes {
    /// A shape not in its slot: its layout, worked out and remembered
    /// there. Out of line, the shape passed in registers: inlined (or
    /// given by reference), the shape was stored to the stack on every
    /// line for this rare call.
    #[cold]
    #[inline(never)]
    fn learn(&mut self, slot: usize, ends: u64, spaces: u64, dots: u64) {
        let shape = Shape { ends, spaces, dots };
        self.slots[slot] = (shape, layout(&shape));
    }
}

/// The commonest line, read from the window's [`Structure`] rather than
/// field after field: the type name at the line's start, then commas each
/// followed by at most one space, digits (and one decimal point in a
/// deposit's or withdrawal's amount) and nothing else, `\n` or `\r\n` at
/// the end. Where its fields are follows from where its commas, spaces
/// and points are (its [`Shape`]), which `layouts` finds; the fields of a
/// line, and the lines of a batch, are then read side by side rather than
/// one after another. What it gives is what [`spaced_line`] gives (a test
/// and a proptest check it); `None` for anything else, which
/// [`spaced_line`] then reads.
#[inline(always)]
fn plain_line<C: Classify>(w: &[u8; WINDOW], layouts: &mut impl Layouts) -> Option<(Tx, usize)> {
    let found = C::structure(w);
    let shape = Shape::of(w, &found)?;
    // The line's length from its structure, not from its layout: the next
    // line's start must not wait for the layout's load (taken from the
    // layout, it cost more time than the layout saved, perf.md).
    let len = found.newlines.trailing_zeros() as usize + 1;
    let layout = layouts.layout(&shape);
    let head = word(w, 0)?;
    let tail = (word(w, 2)? >> 48) as u16;
    let index = ((head ^ (head >> 8)) & 15) as usize;
    let name = &NAMES[index];
    let claims = name.claims;
    if layout.names >> index & 1 == 0
        || (head & name.mask) != name.head
        || (tail & name.tail_mask) != name.tail
    {
        return None;
    }
    let (tx_at, tx_len) = (usize::from(layout.tx.0), usize::from(layout.tx.1));
    let long_tx = tx_len > 8;
    let [client, tx, units, fraction] = C::fields(w, &layout, name)?;
    let tx = if long_tx {
        long_tx_id(w, tx_at, tx_len)?
    } else {
        tx as u32
    };
    // 0 for the others, whose amount is not read: no branch on the kind
    // here (kinds come mixed; a branch on them mispredicts).
    let raw = units * 10_000 + fraction;
    if claims & (raw == 0) {
        return None;
    }
    let amount = Amount::from_raw(raw as i64);
    Some((
        Tx {
            kind: name.kind,
            client: u16::try_from(client).ok()?,
            tx,
            amount,
        },
        len,
    ))
}

/// The `n` (0 to 8) bytes at `w[i..]` with `'0'` XORed out (digits become
/// 0 to 9), moved to the top of a word, zeros below: what
/// [`Classify::values`] converts. 0 when `n` is 0.
#[inline(always)]
fn aligned(w: &[u8; WINDOW], i: usize, n: usize) -> Option<u64> {
    let x = word(w, i)? ^ ZEROS;
    Some(x.checked_shl(64 - 8 * n as u32).unwrap_or(0))
}

/// The `n` (0 to 4) fractional digits at `w[i..]` with `'0'` XORed out,
/// in bytes 4 to `3 + n` of a word, zeros around them: converted as eight
/// digits by [`Classify::values`], their value in ten-thousandths (`.5`:
/// 5000). No multiply by the digits' scale then.
#[inline(always)]
fn scaled_fraction(w: &[u8; WINDOW], i: usize, n: usize) -> Option<u64> {
    let x = word(w, i)? ^ ZEROS;
    let low = (1u64 << (8 * n.min(4))) - 1;
    Some((x & low) << 32)
}

/// A tx id of `n` (9 or 10) digits at `w[i..]`: two words converted (out
/// of line: rare, ids from 100,000,000 on).
#[inline(never)]
fn long_tx_id(w: &[u8; WINDOW], i: usize, n: usize) -> Option<u32> {
    let words = [aligned(w, i, 8)?, aligned(w, i + 8, n - 8)?, 0, 0];
    let [high, low, ..] = Baseline::values(words)?;
    u32::try_from(high * [10, 100][n - 9] + low).ok()
}

/// [`fast_line`] for any line of the common shape, blanks included: field
/// after field, each step where the last one ended. Not inlined into
/// [`read_lines`]: the compiler would then read its bytes out of the
/// vector registers [`Classify::structure`] loaded, a spill and a byte move
/// each (the parser took 1.85x the instructions).
#[inline(never)]
fn spaced_line(w: &[u8; WINDOW]) -> Option<(Tx, usize)> {
    let (kind, i) = kind(w, blanks(w, 0))?;
    let i = separator(w, i)?;
    let (client, n) = digits8(w, i)?;
    if n == 0 || n > 5 || client > u64::from(u16::MAX) {
        return None;
    }
    let i = separator(w, i + n)?;
    let (tx, i) = tx_id(w, i)?;
    let (amount, end) = if kind.claims_id() {
        let i = separator(w, i)?;
        let (amount, i) = amount(w, i)?;
        (amount, line_end(w, i)?)
    } else {
        (Amount::ZERO, ignored_amount(w, i)?)
    };
    (end <= LINE_WINDOW).then_some((
        Tx {
            kind,
            client: client as u16,
            tx,
            amount,
        },
        end,
    ))
}

/// A common line with its fields in double quotes, as spreadsheets and
/// many CSV writers write them (`"deposit","1","2","3.5"`, or only the
/// type quoted): the record of the same line without its quotes, where
/// csv-core would give exactly those fields. So the line starts with a
/// quote; a quote opens a field only right after the line start or a
/// comma, and closes it only right before a comma or the line end (CR LF
/// or LF); no comma, quote, CR or line end inside. Anything else (an
/// escaped `""`, a comma in quotes, a quote after a blank or inside a
/// field, text after a closing quote) is left to the general path, as is
/// the unquoted line if neither [`plain_line`] nor [`spaced_line`] reads
/// it. Gives the record and the quoted line's length.
///
/// Every line quoted, the general path (csv-core) took 2,846 instructions
/// a row against ~480 for the same file unquoted (callgrind, 1M rows,
/// `--workers 0`, perf.md). Out of line: tried only where the two readers
/// before it said no, which on an unquoted file is the lines the general
/// path takes anyway, and those seldom start with a quote.
#[inline(never)]
fn quoted_line<C: Classify>(w: &[u8; WINDOW], layouts: &mut impl Layouts) -> Option<(Tx, usize)> {
    if w[0] != b'"' {
        return None;
    }
    let [newlines, commas, quotes, crs] = byte_masks(w, [b'\n', b',', b'"', b'\r']);
    if newlines == 0 {
        return None;
    }
    let newline = newlines.trailing_zeros() as usize;
    let inside = (1u64 << newline) - 1;
    let (commas, crs, mut quotes) = (commas & inside, crs & inside, quotes & inside);
    // Where a quote may open (the line start, after a comma) and close
    // (before a comma, the line end, or a CR that ends the line).
    let opens = 1 | commas << 1;
    let line_cr = crs & (1u64 << newline) >> 1;
    let closes = commas >> 1 | (1u64 << newline) >> 1 | line_cr >> 1;
    // The line unquoted; what follows it there is of no consequence (the
    // readers give the same whatever comes after a line end).
    let mut plain = [0u8; WINDOW + 16];
    let (mut n, mut from) = (0, 0);
    while quotes != 0 {
        let open = quotes.trailing_zeros() as usize;
        quotes &= quotes - 1;
        if quotes == 0 {
            return None;
        }
        let close = quotes.trailing_zeros() as usize;
        quotes &= quotes - 1;
        // A CR in quotes is data to csv-core, but before the line end the
        // readers would take it for the line end's.
        let within = (1u64 << close) - (2u64 << open);
        if opens >> open & 1 == 0 || closes >> close & 1 == 0 || (commas | crs) & within != 0 {
            return None;
        }
        n = copy_run(&mut plain, n, w, from..open);
        n = copy_run(&mut plain, n, w, open + 1..close);
        from = close + 1;
    }
    copy_run(&mut plain, n, w, from..newline + 1);
    let plain = plain[..WINDOW].try_into().expect("a window");
    let (tx, _) = plain_line::<C>(plain, layouts).or_else(|| spaced_line(plain))?;
    Some((tx, newline + 1))
}

/// Copies `w[run]` to `to[at..]`; gives `at` + the run's length. A run of
/// up to 16 bytes is copied as 16 bytes in one move, what follows it
/// overwritten by the next run (or left after the line end): a field's
/// run is that short, and a call to `memcpy` for each cost ~16
/// instructions a run.
#[inline(always)]
fn copy_run(
    to: &mut [u8; WINDOW + 16],
    at: usize,
    w: &[u8; WINDOW],
    run: std::ops::Range<usize>,
) -> usize {
    let len = run.len();
    match w.get(run.start..run.start + 16) {
        Some(wide) if len <= 16 => to[at..at + 16].copy_from_slice(wide),
        _ => to[at..at + len].copy_from_slice(&w[run]),
    }
    at + len
}

/// After a dispute's, resolve's or chargeback's tx id: blanks and the line
/// end, or a comma and an ignored field with no comma or quote in it, then
/// the line end. The position after the line end.
#[inline(always)]
fn ignored_amount(w: &[u8; WINDOW], i: usize) -> Option<usize> {
    let i = blanks(w, i);
    if byte(w, i)? != b',' {
        return line_end(w, i);
    }
    let rest = w.get(i + 1..LINE_WINDOW)?;
    let end = memchr::memchr3(b'\n', b',', b'"', rest)?;
    (rest[end] == b'\n').then_some(i + 1 + end + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::record::plain_record;

    fn window(line: &[u8]) -> [u8; WINDOW] {
        let mut w = [b'x'; WINDOW];
        let n = line.len().min(WINDOW);
        w[..n].copy_from_slice(&line[..n]);
        w
    }

    /// The line `LineReader` cuts from `bytes`, which hold a line end.
    fn cut(bytes: &[u8]) -> &[u8] {
        let end = bytes.iter().position(|&b| b == b'\n').unwrap();
        let line = &bytes[..end];
        line.strip_suffix(b"\r").unwrap_or(line)
    }

    #[test]
    fn digits_convert_eight_at_a_time() {
        for text in ["0", "7", "12", "65535", "1234567", "12345678", "00000001"] {
            let w = window(format!("{text},").as_bytes());
            let (value, n) = digits8(&w, 0).unwrap();
            assert_eq!((value, n), (text.parse().unwrap(), text.len()), "{text}");
        }
        assert_eq!(digits8(&window(b"x1"), 0).unwrap().1, 0);
        assert_eq!(digits8(&window(b"1\xb1"), 0), Some((1, 1)));
        assert_eq!(digits8(&window(b"9:"), 0), Some((9, 1)));
        assert_eq!(digits8(&window(b"9/"), 0), Some((9, 1)));
    }

    /// What the general path (csv-core for a line with a quote) makes of
    /// the line `bytes` start with.
    fn general(bytes: &[u8]) -> Option<Tx> {
        use crate::parse::fields::FieldSplitter;
        use crate::parse::record::{record, Columns};
        let mut splitter = FieldSplitter::default();
        let fields = splitter.split(cut(bytes)).ok()?;
        record(&fields, &Columns::POSITIONAL).ok()
    }

    #[test]
    fn quoted_common_lines_read_as_the_general_path_reads_them() {
        for (line, unquoted) in [
            (
                &b"\"deposit\",\"1\",\"2\",\"3.5\"\n"[..],
                &b"deposit,1,2,3.5\n"[..],
            ),
            (
                b"\"deposit\",\" 64441\",\" 2\",\" 612.8709\"\r\n",
                b"deposit,64441,2,612.8709\n",
            ),
            (b"\"withdrawal\",7,8,\"9\"\n", b"withdrawal,7,8,9\n"),
            (b"\"dispute\",\"1\",\"2\",\"\"\n", b"dispute,1,2,\n"),
            (b"\"resolve\",\"1\",\"2\"\n", b"resolve,1,2\n"),
            (b"\"chargeback\", 3 , 4\n", b"chargeback,3,4\n"),
        ] {
            let quoted = fast_line(&window(line));
            assert_eq!(
                quoted.map(|(tx, _)| tx),
                fast_line(&window(unquoted)).map(|(tx, _)| tx),
                "{}",
                String::from_utf8_lossy(line)
            );
            assert_eq!(quoted.map(|(tx, _)| tx), general(line));
            assert_eq!(quoted.map(|(_, len)| len), Some(line.len()));
        }
        // Shapes csv-core reads otherwise, or the readers would misread:
        // left to the general path.
        for line in [
            &b"\"dep\"\"osit\",1,2,3\n"[..],
            b"\"deposit\",\"1,2\",3\n",
            b"\"deposit\", \"1\",2,3\n",
            b"\"deposit\",1\"2\",3,4\n",
            b"\"deposit\" ,1,2,3\n",
            b"\"deposit\",1,2,\"3\r\"\n",
            b"\"deposit\",1,2,\"3\"\r,\n",
            b"\"deposit,1,2,3\n",
            b"\"deposit\",1,2,\"3\n\"\n",
            b" \"deposit\",1,2,3\n",
        ] {
            assert_eq!(
                fast_line(&window(line)),
                None,
                "{}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn common_lines_read_as_plain_record_reads_them() {
        // Each line, and whether the structural reader takes it (the
        // others are the field-after-field reader's).
        for (line, plain) in [
            (&b"deposit, 13094, 1, 260.220\n"[..], true),
            (b"deposit,13094,1,260\n", true),
            (b"withdrawal,1,2,3\r\n", true),
            (b"dispute, 1, 2\n", true),
            (b"resolve,1,2,\n", true),
            (b"resolve,1,2,\r\n", true),
            (b"dispute, 35625, 667, \n", true),
            (b"resolve,65535,4294967295\r\n", true),
            (b"chargeback,0,123456789\n", true),
            (b"deposit,1,1234567890,1234567.1234\n", true),
            (b"chargeback,65535,4294967295, ignored \xff\r\n", false),
            (b" deposit\t,\t1 ,2 , 0.0001 \n", false),
            (b"deposit,  1,2,3\n", false),
            (b" deposit,1,2,3\n", false),
            (b"deposit ,1,2,3\n", false),
            (b"deposit,1,2,3 \n", false),
            (b"deposit,1,2,3\t\n", false),
            (b"resolve,1,2,x\n", false),
            (b"resolve,1,2,  \n", false),
        ] {
            let (tx, len) = fast_line(&window(line)).expect("fast");
            assert_eq!(len, line.len(), "{line:?}");
            assert_eq!(Some(tx), plain_record(cut(line)), "{line:?}");
            let expect = plain.then_some((tx, len));
            assert_eq!(plain_lines(&window(line)), vec![expect; 4], "{line:?}");
        }
    }

    #[test]
    fn unusual_lines_are_left_to_the_general_path() {
        for line in [
            &b"deposit,1,2,0\n"[..],
            b"deposit,1,2,0.0\n",
            b"deposit,1,2,12345678\n",
            // A field longer than a word: the shape's layout suits no
            // line (its making once overflowed in debug builds: fuzzing).
            b"deposit,1,2,123456789012\n",
            b"deposit,1,2,1.234567890123\n",
            b"deposit,1,2,1.23456\n",
            b"deposit,1,2,1.\n",
            b"deposit,1,2,.5\n",
            b"deposit,1,2,1\r\r\n",
            b"deposit,1,2,1\rx\n",
            b"deposit,1,2,1",
            b"deposits,1,2,1\n",
            b"Deposit,1,2,1\n",
            b"deposit,65536,2,1\n",
            b"deposit,000001,2,1\n",
            b"deposit,1,4294967296,1\n",
            b"deposit,1,12345678901,1\n",
            b"deposit,1,2,\"1\"\n",
            b"dispute,1,2,3,4\n",
            b"dispute,1,2,\"3\n",
            b"dispute,1,2 3\n",
            b"\n",
            b"type,client,tx,amount\n",
            b"deposit,1,2\n",
            b"dispute,1\n",
            b"dispute,\n",
            b"deposit,1,2,3,\n",
            b"deposit,1,2,1.2.3\n",
        ] {
            assert_eq!(fast_line(&window(line)), None, "{line:?}");
            assert_eq!(plain_lines(&window(line)), vec![None; 4], "{line:?}");
        }
        let long = format!("deposit,1,2,{}1\n", " ".repeat(60));
        assert_eq!(fast_line(&window(long.as_bytes())), None);
    }

    /// The window's structure from every classifier this processor has.
    fn structures(w: &[u8; WINDOW]) -> Vec<(&'static str, Structure)> {
        let mut all = vec![("baseline", Baseline::structure(w))];
        #[cfg(target_arch = "x86_64")]
        if Avx2::detected() {
            all.push(("avx2", Avx2::structure(w)));
        }
        #[cfg(target_arch = "x86_64")]
        if Avx512::detected() {
            all.push(("avx512", Avx512::structure(w)));
        }
        all
    }

    /// `plain_line` with the baseline classifier and each layout computed,
    /// then with the layouts this thread remembers (across a test's lines,
    /// as a parsing thread remembers them across its batches) and the
    /// baseline and each wider classifier this processor has (the baseline
    /// again in place of one it lacks): four results.
    fn plain_lines(w: &[u8; WINDOW]) -> Vec<Option<(Tx, usize)>> {
        SHAPES.with_borrow_mut(|shapes| {
            let baseline = plain_line::<Baseline>(w, &mut Computed);
            let mut all = vec![
                baseline,
                plain_line::<Baseline>(w, shapes),
                baseline,
                baseline,
            ];
            #[cfg(target_arch = "x86_64")]
            if Avx2::detected() {
                all[2] = plain_line::<Avx2>(w, shapes);
            }
            #[cfg(target_arch = "x86_64")]
            if Avx512::detected() {
                all[3] = plain_line::<Avx512>(w, shapes);
            }
            all
        })
    }

    #[test]
    fn structure_finds_line_ends_commas_spaces_and_points() {
        let mut w = [b'x'; WINDOW];
        for (i, b) in w.iter_mut().enumerate() {
            *b = [b',', b' ', b'\n', b'7', 0xAC, 0x8A, 0xA0, b'.'][(i * 5 + i / 7) % 8];
        }
        let found = Baseline::structure(&w);
        let expect = |c: u8| {
            (0..LINE_WINDOW)
                .filter(|&i| w[i] == c)
                .fold(0u64, |m, i| m | 1 << i)
        };
        assert_eq!(found.newlines, expect(b'\n'));
        assert_eq!(found.commas, expect(b','));
        assert_eq!(found.spaces, expect(b' '));
        assert_eq!(found.dots, expect(b'.'));
        assert_eq!(structure_swar(&w), found);
        for (name, other) in structures(&w) {
            assert_eq!(other, found, "{name}");
        }
    }

    #[test]
    fn a_layout_suits_the_names_of_its_length_and_kind() {
        let bits = |names: &[&str]| {
            names.iter().fold(0u16, |bits, text| {
                let (i, name) = NAMES
                    .iter()
                    .enumerate()
                    .find(|(_, name)| name.len > 0 && name.head == word_of(text))
                    .unwrap_or_else(|| panic!("{text} is in NAMES"));
                assert_eq!(usize::from(name.len), text.len());
                bits | 1 << i
            })
        };
        fn word_of(text: &str) -> u64 {
            let mut head = [0u8; 8];
            for (b, &t) in head.iter_mut().zip(text.as_bytes()) {
                *b = t;
            }
            u64::from_le_bytes(head)
        }
        assert_eq!(names_suited(7, CLAIMS), bits(&["deposit"]));
        assert_eq!(names_suited(7, OTHERS), bits(&["dispute", "resolve"]));
        assert_eq!(names_suited(10, CLAIMS), bits(&["withdrawal"]));
        assert_eq!(names_suited(10, OTHERS), bits(&["chargeback"]));
        assert_eq!(
            names_suited(7, CLAIMS | OTHERS),
            bits(&["deposit", "dispute", "resolve"])
        );
        for len in [0, 1, 6, 8, 9, 11] {
            assert_eq!(names_suited(len, CLAIMS | OTHERS), 0, "{len}");
        }
        assert_eq!(names_suited(7, 0), 0);
    }

    #[test]
    fn batches_read_alike_with_every_classifier() {
        let mut buf = Vec::new();
        for i in 1..=400u32 {
            let line = match i % 5 {
                0 => format!("deposit, {}, {i}, {}.{}\n", i * 7, i, i % 10),
                1 => format!("withdrawal,{},{i},{}\r\n", i * 3, i + 1),
                2 => format!("dispute, {}, {i}, \n", i * 7),
                3 => format!(" resolve ,{},{i}\n", i * 7),
                _ => format!("chargeback,{},{i},\n", i * 7),
            };
            buf.extend_from_slice(line.as_bytes());
        }
        buf.extend_from_slice(&[b'\n'; WINDOW]);
        type ReadLines = fn(&[u8], usize, &mut [Tx], &mut [u32]) -> (usize, usize);
        let read = |all: ReadLines, room: usize| {
            let mut txs = vec![Tx::NONE; room];
            let mut starts = vec![0; room + 1];
            let (end, n) = all(&buf, 0, &mut txs, &mut starts);
            txs.truncate(n);
            starts.truncate(n);
            (txs, starts, end)
        };
        // Each with layouts of its own, none remembered yet.
        fn out<'a>(txs: &'a mut [Tx], starts: &'a mut [u32], shapes: &'a mut Shapes) -> Out<'a> {
            Out {
                txs,
                starts,
                shapes,
            }
        }
        let baseline = read(
            |b, at, t, s| read_lines_with::<Baseline>(b, at, out(t, s, &mut Shapes::new())),
            1000,
        );
        assert_eq!(baseline.0.len(), 400, "every line read");
        assert_eq!(read(read_lines, 1000), baseline);
        #[cfg(target_arch = "x86_64")]
        if Avx2::detected() {
            // SAFETY: the processor has the features (checked just above).
            assert_eq!(
                read(
                    |b, at, t, s| unsafe { read_lines_avx2(b, at, out(t, s, &mut Shapes::new())) },
                    1000
                ),
                baseline
            );
        }
        let some = read(
            |b, at, t, s| read_lines_with::<Baseline>(b, at, out(t, s, &mut Shapes::new())),
            7,
        );
        assert_eq!(some.0[..], baseline.0[..7]);
        assert_eq!(some.1[..], baseline.1[..7]);
        assert_eq!(some.2, baseline.1[7] as usize, "stops at the eighth line");
    }

    mod agrees {
        use super::*;
        use proptest::prelude::*;

        /// Lines near the common shape: every field drawn from valid and
        /// invalid pieces, with blanks, CRs and stray bytes.
        fn line() -> impl Strategy<Value = Vec<u8>> {
            let kind = prop::sample::select(vec![
                "deposit",
                "withdrawal",
                "dispute",
                "resolve",
                "chargeback",
                "deposits",
                "Deposit",
                "charge",
                "",
            ]);
            let number = prop_oneof![
                "[0-9]{1,12}",
                (0u64..=u64::from(u32::MAX) + 2).prop_map(|v| v.to_string()),
                "[0-9]{0,9}\\.[0-9]{0,6}",
                "[0-9 .,\"\r\t-]{0,6}",
            ];
            let blank = "[ \t]{0,2}";
            (
                blank,
                kind,
                blank,
                number.clone(),
                blank,
                number.clone(),
                prop::option::of((blank, number)),
                prop::sample::select(vec!["\n", "\r\n", "\r\r\n", "", "\r"]),
            )
                .prop_map(|(b, kind, b2, client, b3, tx, amount, end)| {
                    let mut line = format!("{b}{kind}{b2},{client}{b3},{tx}");
                    if let Some((b, amount)) = amount {
                        line += &format!(",{b}{amount}");
                    }
                    line += end;
                    line.into_bytes()
                })
        }

        /// Lines of the plain shape and near it: at most one space after
        /// a comma, numbers valid and not.
        fn plain() -> impl Strategy<Value = Vec<u8>> {
            let field = prop_oneof![
                4 => "[0-9]{1,11}",
                2 => "[0-9]{1,8}\\.[0-9]{1,5}",
                1 => "[0-9 .\r\t]{0,3}",
            ];
            (
                prop::sample::select(vec![
                    "deposit",
                    "withdrawal",
                    "dispute",
                    "resolve",
                    "chargeback",
                    "Deposit",
                    "x",
                ]),
                prop::collection::vec((prop::sample::select(vec!["", " "]), field), 1..5),
                prop::sample::select(vec!["\n", "\r\n", "\r", ""]),
            )
                .prop_map(|(kind, fields, end)| {
                    let mut line = kind.to_string();
                    for (space, field) in fields {
                        line += &format!(",{space}{field}");
                    }
                    (line + end).into_bytes()
                })
        }

        /// The window of `line` followed by whatever input comes after it
        /// (`after` holds at least a window).
        fn followed(line: &[u8], after: &[u8]) -> [u8; WINDOW] {
            let mut bytes = line.to_vec();
            bytes.extend_from_slice(after);
            bytes[..WINDOW].try_into().unwrap()
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(20_000))]

            #[test]
            fn plain_line_gives_spaced_line_s_record(
                line in plain(),
                after in prop::collection::vec(any::<u8>(), WINDOW),
            ) {
                let w = followed(&line, &after);
                let [baseline, remembered, avx2, avx512] = plain_lines(&w)[..] else {
                    unreachable!()
                };
                prop_assert_eq!(baseline, remembered);
                prop_assert_eq!(baseline, avx2);
                prop_assert_eq!(baseline, avx512);
                if let Some(plain) = baseline {
                    prop_assert_eq!(Some(plain), spaced_line(&w));
                }
            }

            #[test]
            fn structure_swar_matches_structure(bytes in prop::collection::vec(
                prop::sample::select(vec![b',', b' ', b'\n', b'0', b'\r', b'"', 0x8A, 0xAC, 0xFF, 0]),
                WINDOW,
            )) {
                let w: [u8; WINDOW] = bytes[..].try_into().unwrap();
                let classes = [b'\n', b',', b'"', b'\r', 0xAC];
                prop_assert_eq!(byte_masks(&w, classes), byte_masks_swar(&w, classes));
                let found = structure_swar(&w);
                for (name, other) in structures(&w) {
                    prop_assert_eq!(other, found, "{}", name);
                }
            }

            /// Lines near the common shape with some fields in quotes
            /// (bit `k` of `quote` quotes field `k`), stray quotes, CRs
            /// and commas among them: where the fast path takes one, the
            /// general path (csv-core) makes the same record of it.
            #[test]
            fn quoted_lines_read_as_the_general_path_reads_them(
                line in prop_oneof![
                    1 => line(),
                    1 => plain(),
                    2 => (
                        prop::sample::select(vec!["deposit", "withdrawal", "dispute", "resolve"]),
                        any::<u16>(),
                        any::<u32>(),
                        prop::sample::select(vec!["", " ", "\t"]),
                        "[0-9]{1,7}(\\.[0-9]{1,4})?",
                        prop::sample::select(vec!["\n", "\r\n"]),
                    ).prop_map(|(kind, client, tx, blank, amount, end)| {
                        format!("{kind},{blank}{client},{tx}{blank},{amount}{end}").into_bytes()
                    }),
                ],
                quote in 1u8..,
                after in prop::collection::vec(any::<u8>(), WINDOW),
            ) {
                let text = line.split(|&b| b == b'\n').next().unwrap_or_default();
                let (body, end) = match text.strip_suffix(b"\r") {
                    Some(body) => (body, &b"\r\n"[..]),
                    None => (text, &b"\n"[..]),
                };
                let mut quoted = Vec::new();
                for (k, field) in body.split(|&b| b == b',').enumerate() {
                    if k > 0 {
                        quoted.push(b',');
                    }
                    let q = quote >> (k % 8) & 1 == 1;
                    quoted.extend(q.then_some(b'"'));
                    quoted.extend_from_slice(field);
                    quoted.extend(q.then_some(b'"'));
                }
                quoted.extend_from_slice(end);
                let w = followed(&quoted, &after);
                if let Some((tx, len)) = fast_line(&w) {
                    prop_assert_eq!(len, quoted.len());
                    prop_assert_eq!(Some(tx), general(&w[..len]));
                }
            }

            #[test]
            fn fast_line_gives_plain_record_s_record(
                line in line(),
                after in prop::collection::vec(any::<u8>(), WINDOW),
            ) {
                let w = followed(&line, &after);
                if let Some((tx, len)) = fast_line(&w) {
                    let first_end = w.iter().position(|&b| b == b'\n');
                    prop_assert_eq!(first_end, Some(len - 1));
                    prop_assert_eq!(Some(tx), plain_record(cut(&w[..len])));
                }
            }
        }
    }
}
