//! The fast path for the common line: a whole line read from a fixed window
//! of bytes, its end included, with eight digits converted at a time (SWAR:
//! eight bytes in one `u64`, no floats, no per-digit branch).
//!
//! [`fast_line`] accepts what [`plain_record`](super::record::plain_record)
//! accepts on a line that ends (`\n`, or `\r\n`) within [`LINE_WINDOW`]
//! bytes, except an amount with eight integer digits or more, which it
//! leaves (returns `None`) to the other. Where it gives a record, it is the
//! record `plain_record` gives for the line, and the line is the line the
//! [`LineReader`](super::lines::LineReader) would cut: a proptest here
//! checks it line by line, one in `parse/tests.rs` and the `fast_path` fuzz
//! target check whole inputs read in batches against the general path, and
//! the parser hands a line to the general path whenever this one says
//! `None`.
//!
//! Each step of a line depends on the one before (where a field starts
//! depends on where the last one ended), so what costs is the length of
//! that chain, not the instruction count alone: no branch on data that
//! real files mix (a space after a comma or not, a decimal point or not,
//! the type), no clamped reads. (Finding every line end of a batch first,
//! SIMD, so that lines would not wait for each other, measured no faster:
//! perf.md, "Per-core speed".)

use crate::amount::Amount;
use crate::tx::{Kind, Tx};

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
    // A byte of 10 or more gets bit 7 from the addition, one of 128 or more
    // has it already; a carry out of a flagged byte only reaches bytes after
    // the first flagged one, which are not looked at.
    let flagged = (x.wrapping_add(0x7676_7676_7676_7676) | x) & HIGH;
    flagged.trailing_zeros() as usize / 8
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
/// (under `tail_mask`), and its length.
#[derive(Clone, Copy)]
struct Name {
    head: u64,
    mask: u64,
    tail: u16,
    tail_mask: u16,
    len: u8,
    kind: Kind,
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
#[inline]
pub fn fast_line(w: &[u8; WINDOW]) -> Option<(Tx, usize)> {
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

    #[test]
    fn common_lines_read_as_plain_record_reads_them() {
        for line in [
            &b"deposit, 13094, 1, 260.220\n"[..],
            b"withdrawal,1,2,3\r\n",
            b"dispute, 1, 2\n",
            b"resolve,1,2,\n",
            b"chargeback,65535,4294967295, ignored \xff\r\n",
            b" deposit\t,\t1 ,2 , 0.0001 \n",
            b"deposit,1,1234567890,1234567.1234\n",
        ] {
            let (tx, len) = fast_line(&window(line)).expect("fast");
            assert_eq!(len, line.len());
            assert_eq!(Some(tx), plain_record(cut(line)), "{line:?}");
        }
    }

    #[test]
    fn unusual_lines_are_left_to_the_general_path() {
        for line in [
            &b"deposit,1,2,0\n"[..],
            b"deposit,1,2,0.0\n",
            b"deposit,1,2,12345678\n",
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
        ] {
            assert_eq!(fast_line(&window(line)), None, "{line:?}");
        }
        let long = format!("deposit,1,2,{}1\n", " ".repeat(60));
        assert_eq!(fast_line(&window(long.as_bytes())), None);
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

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(20_000))]

            #[test]
            fn fast_line_gives_plain_record_s_record(
                line in line(),
                after in prop::collection::vec(any::<u8>(), WINDOW),
            ) {
                // The window is the line and whatever input follows it.
                let mut bytes = line.clone();
                bytes.extend_from_slice(&after);
                let w: [u8; WINDOW] = bytes[..WINDOW].try_into().unwrap();
                if let Some((tx, len)) = fast_line(&w) {
                    let first_end = w.iter().position(|&b| b == b'\n');
                    prop_assert_eq!(first_end, Some(len - 1));
                    prop_assert_eq!(Some(tx), plain_record(cut(&w[..len])));
                }
            }
        }
    }
}
