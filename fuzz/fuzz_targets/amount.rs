//! The amount parser against a simple string-based oracle.
#![no_main]

use libfuzzer_sys::fuzz_target;
use payments_engine::Amount;

/// SPEC's amount grammar, the slow and obvious way.
fn oracle(text: &str) -> Option<i64> {
    if text.matches('.').count() > 1 {
        return None;
    }
    let (int, frac) = text.split_once('.').unwrap_or((text, ""));
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    if !int.chars().chain(frac.chars()).all(|c| c.is_ascii_digit()) {
        return None;
    }
    let significant = &frac[..frac.len().min(4)];
    if frac[significant.len()..].chars().any(|c| c != '0') {
        return None;
    }
    let int = int.trim_start_matches('0');
    if int.len() > 20 {
        return None;
    }
    let units: u128 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let fraction: u128 = format!("{significant:0<4}").parse().ok()?;
    let value = units * 10_000 + fraction;
    (value > 0 && value <= i64::MAX as u128).then_some(value as i64)
}

fuzz_target!(|data: &[u8]| {
    let got = Amount::parse(data).ok().map(Amount::raw);
    match std::str::from_utf8(data) {
        Ok(text) => assert_eq!(got, oracle(text), "{text:?}"),
        // Non-ASCII bytes are never digits.
        Err(_) => assert_eq!(got, None),
    }
    if let Some(raw) = got {
        // Printing and parsing again gives the same amount.
        let text = Amount::from_raw(raw).to_string();
        assert_eq!(Amount::parse(text.as_bytes()).map(Amount::raw), Ok(raw));
    }
});
