//! Integers beyond `i64`: sign and magnitude, with the conversions pickle needs.
//!
//! Python ints have arbitrary precision. The codec keeps ints that fit in `i64` as
//! [`crate::Node::Int`] and only larger ones as a [`BigInt`]; a `BigInt` built
//! through [`BigInt::from_le_twos_complement`] or [`BigInt::parse_decimal`] is always
//! normalized, so two equal ints compare equal. Conversions are the ones pickle needs:
//! little-endian two's complement (LONG1/LONG4) and decimal text (protocol 0, JSON).
//! Decimal conversion is quadratic, which is why decimal text is capped (4,300 digits by
//! default, like CPython's `int_max_str_digits`).

use std::fmt;

/// Largest int (in bits, about 39,000 decimal digits) that display and tagged JSON write
/// as decimal text; larger ones are shown by their size. Converting takes milliseconds at
/// this size and grows with its square.
pub const DECIMAL_MAX_BITS: u64 = 1 << 17;

/// An integer outside the `i64` range, as sign and magnitude.
///
/// Invariant: `mag` has no trailing (most significant) zero limbs, and the value does not
/// fit in an `i64` — smaller values are always [`crate::Node::Int`].
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct BigInt {
    negative: bool,
    /// Little-endian base-2^32 limbs.
    mag: Vec<u32>,
}

/// Either a small or a big integer: the result of the parsing and conversion functions.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Int {
    /// Fits in `i64`.
    Small(i64),
    /// Does not fit in `i64`.
    Big(BigInt),
}

impl BigInt {
    /// True when the value is below zero.
    pub fn is_negative(&self) -> bool {
        self.negative
    }

    /// The magnitude as little-endian base-2^32 limbs.
    pub fn magnitude(&self) -> &[u32] {
        &self.mag
    }

    /// Builds an integer from sign and magnitude (little-endian limbs), normalizing it.
    pub fn from_sign_magnitude(negative: bool, mut mag: Vec<u32>) -> Int {
        while mag.last() == Some(&0) {
            mag.pop();
        }
        if mag.len() <= 2 {
            let m = u64::from(mag.first().copied().unwrap_or(0)) | (u64::from(mag.get(1).copied().unwrap_or(0)) << 32);
            if !negative && m <= i64::MAX as u64 {
                return Int::Small(m as i64);
            }
            if negative && m <= 1u64 << 63 {
                return Int::Small((m as i64).wrapping_neg());
            }
        }
        Int::Big(BigInt { negative, mag })
    }

    /// Decodes little-endian two's complement bytes (the LONG1/LONG4 payload).
    /// Empty input is zero.
    pub fn from_le_twos_complement(bytes: &[u8]) -> Int {
        if bytes.len() <= 8 {
            if bytes.is_empty() {
                return Int::Small(0);
            }
            let negative = bytes[bytes.len() - 1] & 0x80 != 0;
            let mut buf = if negative { [0xffu8; 8] } else { [0u8; 8] };
            buf[..bytes.len()].copy_from_slice(bytes);
            return Int::Small(i64::from_le_bytes(buf));
        }
        let negative = bytes[bytes.len() - 1] & 0x80 != 0;
        let mut limbs: Vec<u32> = bytes
            .chunks(4)
            .map(|c| {
                let mut b = if negative { [0xffu8; 4] } else { [0u8; 4] };
                b[..c.len()].copy_from_slice(c);
                u32::from_le_bytes(b)
            })
            .collect();
        if negative {
            // magnitude = !x + 1
            let mut carry = 1u64;
            for l in limbs.iter_mut() {
                let v = u64::from(!*l) + carry;
                *l = v as u32;
                carry = v >> 32;
            }
        }
        Self::from_sign_magnitude(negative, limbs)
    }

    /// Encodes as little-endian two's complement the way CPython's `encode_long` does:
    /// `nbits / 8 + 1` bytes, minus one redundant sign byte for some negatives.
    pub fn to_le_twos_complement(&self) -> Vec<u8> {
        twos_complement_bytes(self.negative, &self.mag)
    }

    /// Parses decimal digits with an optional sign (`+`/`-`) and `_` separators between
    /// digits, as Python's `int(text)` does. Returns `None` when the text is not a
    /// decimal integer or has more than `max_digits` digits (the caller reports which).
    pub fn parse_decimal(text: &str, max_digits: usize) -> Option<Int> {
        let t = text.trim_matches(|c: char| c.is_ascii_whitespace());
        let (negative, digits) = match t.as_bytes().first()? {
            b'-' => (true, &t[1..]),
            b'+' => (false, &t[1..]),
            _ => (false, t),
        };
        let b = digits.as_bytes();
        if b.is_empty() || !b[0].is_ascii_digit() || !b[b.len() - 1].is_ascii_digit() {
            return None;
        }
        let mut count = 0usize;
        let mut prev_underscore = false;
        for &c in b {
            if c == b'_' {
                if prev_underscore {
                    return None;
                }
                prev_underscore = true;
            } else if c.is_ascii_digit() {
                prev_underscore = false;
                count += 1;
            } else {
                return None;
            }
        }
        if count > max_digits {
            return None;
        }
        // Python forbids leading zeros in non-zero decimal literals only for source code;
        // int("007") is 7, so they are accepted here.
        let mut mag: Vec<u32> = Vec::with_capacity(count / 9 + 1);
        let mut chunk = 0u32;
        let mut chunk_len = 0u32;
        for &c in b.iter().filter(|c| c.is_ascii_digit()) {
            chunk = chunk * 10 + u32::from(c - b'0');
            chunk_len += 1;
            if chunk_len == 9 {
                mul_add(&mut mag, 1_000_000_000, chunk);
                chunk = 0;
                chunk_len = 0;
            }
        }
        if chunk_len > 0 {
            mul_add(&mut mag, 10u32.pow(chunk_len), chunk);
        }
        Some(Self::from_sign_magnitude(negative, mag))
    }

    /// The decimal text, or `None` when the value has more than [`DECIMAL_MAX_BITS`]
    /// bits (decimal conversion is quadratic; CPython refuses such conversions too, past
    /// its `int_max_str_digits`).
    pub fn to_decimal_bounded(&self) -> Option<String> {
        (self.bit_length() <= DECIMAL_MAX_BITS).then(|| self.to_decimal())
    }

    /// The decimal text of the value, with a leading `-` when negative. Quadratic in the
    /// size: see [`BigInt::to_decimal_bounded`] for untrusted values.
    pub fn to_decimal(&self) -> String {
        let mut mag = self.mag.clone();
        let mut chunks: Vec<u32> = Vec::new();
        while !mag.is_empty() {
            chunks.push(div_rem_small(&mut mag, 1_000_000_000));
            while mag.last() == Some(&0) {
                mag.pop();
            }
        }
        let mut out = String::with_capacity(chunks.len() * 9 + 1);
        if self.negative {
            out.push('-');
        }
        let mut iter = chunks.iter().rev();
        if let Some(first) = iter.next() {
            out.push_str(&first.to_string());
        }
        for c in iter {
            out.push_str(&format!("{c:09}"));
        }
        out
    }

    /// Number of significant bits of the magnitude.
    pub fn bit_length(&self) -> u64 {
        match self.mag.last() {
            Some(top) => (self.mag.len() as u64 - 1) * 32 + u64::from(32 - top.leading_zeros()),
            None => 0,
        }
    }
}

impl Int {
    /// Parses decimal text (see [`BigInt::parse_decimal`]).
    pub fn parse_decimal(text: &str, max_digits: usize) -> Option<Int> {
        BigInt::parse_decimal(text, max_digits)
    }

    /// The decimal text of the value.
    pub fn to_decimal(&self) -> String {
        match self {
            Int::Small(v) => v.to_string(),
            Int::Big(b) => b.to_decimal(),
        }
    }
}

/// CPython's `encode_long` for an `i64`: two's complement, `bit_length/8 + 1` bytes,
/// trimmed by one byte for negatives whose top byte is a redundant sign byte; zero is empty.
pub fn i64_to_le_twos_complement(v: i64) -> Vec<u8> {
    if v == 0 {
        return Vec::new();
    }
    let mag = v.unsigned_abs();
    twos_complement_bytes(v < 0, &[mag as u32, (mag >> 32) as u32])
}

fn twos_complement_bytes(negative: bool, mag: &[u32]) -> Vec<u8> {
    let mut mag = mag.to_vec();
    while mag.last() == Some(&0) {
        mag.pop();
    }
    let Some(top) = mag.last() else {
        return Vec::new();
    };
    let nbits = (mag.len() as u64 - 1) * 32 + u64::from(32 - top.leading_zeros());
    let nbytes = (nbits / 8 + 1) as usize;
    let mut bytes: Vec<u8> = mag.iter().flat_map(|l| l.to_le_bytes()).collect();
    bytes.resize(nbytes, 0);
    if negative {
        let mut carry = 1u16;
        for b in bytes.iter_mut() {
            let v = u16::from(!*b) + carry;
            *b = v as u8;
            carry = v >> 8;
        }
        let n = bytes.len();
        if n > 1 && bytes[n - 1] == 0xff && bytes[n - 2] & 0x80 != 0 {
            bytes.pop();
        }
    }
    bytes
}

/// mag = mag * m + a
fn mul_add(mag: &mut Vec<u32>, m: u32, a: u32) {
    let mut carry = u64::from(a);
    for l in mag.iter_mut() {
        let v = u64::from(*l) * u64::from(m) + carry;
        *l = v as u32;
        carry = v >> 32;
    }
    if carry != 0 {
        mag.push(carry as u32);
    }
}

/// mag = mag / d, returning the remainder.
fn div_rem_small(mag: &mut [u32], d: u32) -> u32 {
    let mut rem = 0u64;
    for l in mag.iter_mut().rev() {
        let cur = (rem << 32) | u64::from(*l);
        *l = (cur / u64::from(d)) as u32;
        rem = cur % u64::from(d);
    }
    rem as u32
}

impl fmt::Debug for BigInt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_decimal())
    }
}

impl fmt::Display for BigInt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_decimal())
    }
}

// ----- 128-bit and float views (for serde) -----

/// An `int` node's value when it fits in 128 bits.
#[derive(Copy, Clone)]
pub(crate) enum Int128 {
    /// Fits in `i128`.
    Signed(i128),
    /// Above `i128::MAX`, at most `u128::MAX`.
    Unsigned(u128),
}

/// The magnitude of a big int when it fits in `u128`.
fn magnitude_u128(b: &BigInt) -> Option<u128> {
    let mag = b.magnitude();
    if mag.len() > 4 {
        return None;
    }
    Some(mag.iter().rev().fold(0u128, |acc, &limb| (acc << 32) | u128::from(limb)))
}

pub(crate) fn big_to_128(b: &BigInt) -> Option<Int128> {
    let m = magnitude_u128(b)?;
    if b.is_negative() {
        0i128.checked_sub_unsigned(m).map(Int128::Signed)
    } else {
        Some(i128::try_from(m).map_or(Int128::Unsigned(m), Int128::Signed))
    }
}

/// A big int as a float when the float type holds it exactly: at most `mantissa`
/// significant bits and fewer than `max_bits` bits in all.
pub(crate) fn big_to_float_exact(b: &BigInt, mantissa: u64, max_bits: u64) -> Option<f64> {
    let bits = b.bit_length();
    let mag = b.magnitude();
    let mut trailing = 0u64;
    for &limb in mag {
        if limb == 0 {
            trailing += 32;
        } else {
            trailing += u64::from(limb.trailing_zeros());
            break;
        }
    }
    if bits > max_bits || bits.saturating_sub(trailing) > mantissa {
        return None;
    }
    // Each partial sum is the value shifted right, so it has at most `mantissa`
    // significant bits too: every step is exact.
    let m = mag.iter().rev().fold(0f64, |acc, &limb| acc * 4_294_967_296.0 + f64::from(limb));
    Some(if b.is_negative() { -m } else { m })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn big(text: &str) -> BigInt {
        match BigInt::parse_decimal(text, 10_000) {
            Some(Int::Big(b)) => b,
            other => panic!("{text} parsed as {other:?}"),
        }
    }

    #[test]
    fn small_values_stay_small() {
        assert_eq!(Int::parse_decimal("-9223372036854775808", 100), Some(Int::Small(i64::MIN)));
        assert_eq!(Int::parse_decimal("9223372036854775807", 100), Some(Int::Small(i64::MAX)));
        assert_eq!(Int::parse_decimal("1_000", 100), Some(Int::Small(1000)));
        assert_eq!(Int::parse_decimal(" 007 ", 100), Some(Int::Small(7)));
        assert_eq!(BigInt::from_le_twos_complement(&[0xff]), Int::Small(-1));
        assert_eq!(BigInt::from_le_twos_complement(&[]), Int::Small(0));
    }

    #[test]
    fn rejects_bad_text() {
        for t in ["", "-", "1__0", "_1", "1_", "0x10", "1.0", "--1", "1e5"] {
            assert_eq!(Int::parse_decimal(t, 100), None, "{t:?}");
        }
        assert_eq!(Int::parse_decimal("12345", 4), None);
    }

    #[test]
    fn decimal_round_trip() {
        for t in [
            "9223372036854775808",
            "-9223372036854775809",
            "18446744073709551616",
            "-340282366920938463463374607431768211456",
            "123456789012345678901234567890123456789012345678901234567890",
        ] {
            assert_eq!(big(t).to_decimal(), t);
        }
    }

    #[test]
    fn twos_complement_matches_cpython() {
        // Values and bytes from CPython's pickle.encode_long.
        assert_eq!(big("9223372036854775808").to_le_twos_complement(), vec![0, 0, 0, 0, 0, 0, 0, 0x80, 0]);
        assert_eq!(
            big("-9223372036854775809").to_le_twos_complement(),
            vec![0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, 0xff]
        );
        assert_eq!(i64_to_le_twos_complement(i64::MIN), vec![0, 0, 0, 0, 0, 0, 0, 0x80]);
        assert_eq!(i64_to_le_twos_complement(-2_147_483_649), vec![0xff, 0xff, 0xff, 0x7f, 0xff]);
        assert_eq!(i64_to_le_twos_complement(2_147_483_648), vec![0, 0, 0, 0x80, 0]);
        assert_eq!(i64_to_le_twos_complement(255), vec![0xff, 0]);
        assert_eq!(i64_to_le_twos_complement(-128), vec![0x80]);
        assert_eq!(i64_to_le_twos_complement(-256), vec![0, 0xff]);
        assert_eq!(i64_to_le_twos_complement(0), Vec::<u8>::new());
    }

    #[test]
    fn twos_complement_round_trip_i128() {
        let samples: [i128; 10] = [
            1 << 64,
            -(1 << 64),
            (1 << 100) + 12345,
            -(1 << 100) - 1,
            i128::MAX,
            i128::MIN,
            (1 << 63) + 1,
            -(1 << 63) - 1,
            -(1 << 71),
            (1 << 71) - 1,
        ];
        for v in samples {
            let t = v.to_string();
            let b = big(&t);
            let bytes = b.to_le_twos_complement();
            match BigInt::from_le_twos_complement(&bytes) {
                Int::Big(back) => assert_eq!(back.to_decimal(), t),
                other => panic!("{t}: {other:?}"),
            }
        }
    }

    #[test]
    fn huge_ints_are_not_converted_to_text() {
        let mut bytes = vec![0x55u8; 200_000];
        bytes.push(0x01);
        match BigInt::from_le_twos_complement(&bytes) {
            Int::Big(b) => {
                assert!(b.bit_length() > DECIMAL_MAX_BITS);
                assert_eq!(b.to_decimal_bounded(), None);
            }
            other => panic!("{other:?}"),
        }
    }

    fn big_sm(neg: bool, mag: Vec<u32>) -> BigInt {
        match BigInt::from_sign_magnitude(neg, mag) {
            Int::Big(b) => b,
            Int::Small(v) => panic!("{v} is small"),
        }
    }

    #[test]
    fn big_ints_to_128_bits() {
        assert!(
            matches!(big_to_128(&big_sm(false, vec![0, 0, 0, 0x8000_0000])), Some(Int128::Unsigned(x)) if x == 1 << 127)
        );
        assert!(matches!(big_to_128(&big_sm(true, vec![0, 0, 0, 0x8000_0000])), Some(Int128::Signed(i128::MIN))));
        assert!(big_to_128(&big_sm(true, vec![1, 0, 0, 0x8000_0000])).is_none());
        assert!(big_to_128(&big_sm(false, vec![0, 0, 0, 0, 1])).is_none());
        assert!(matches!(big_to_128(&big_sm(false, vec![0, 0, 1])), Some(Int128::Signed(x)) if x == 1 << 64));
    }

    #[test]
    fn big_ints_to_floats_only_when_exact() {
        // 2^64 and 2^1000 are exact; 2^64 + 1 is not; 2^1024 overflows.
        assert_eq!(big_to_float_exact(&big_sm(false, vec![0, 0, 1]), 53, 1024), Some(2f64.powi(64)));
        let mut m = vec![0u32; 31];
        m.push(1 << 8);
        assert_eq!(big_to_float_exact(&big_sm(true, m), 53, 1024), Some(-(2f64.powi(1000))));
        assert_eq!(big_to_float_exact(&big_sm(false, vec![1, 0, 1]), 53, 1024), None);
        let mut m = vec![0u32; 32];
        m.push(1);
        assert_eq!(big_to_float_exact(&big_sm(false, m), 53, 1024), None);
    }
}
