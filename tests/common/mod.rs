//! Fixtures shared by the store's test files (`mod common;` in each): the ones of the
//! codec crate's tests, included from there so that each is defined once (the
//! conformance corpus, python3, the seedable `Rng`), and pickles the store's tests build
//! by hand.
#![allow(dead_code, unused_imports)]

#[path = "../../crates/pickle/tests/common/mod.rs"]
mod fixtures;

pub use fixtures::*;

/// `pickle.dumps(payload, 4)` for a `bytes` payload: BINBYTES8, MEMOIZE, STOP (as CPython
/// writes large ones).
pub fn bytes_pickle(payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0x80, 4, 0x8e];
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(payload);
    out.extend_from_slice(b"\x94.");
    out
}

/// `pickle.dumps(text, 4)` of a str: `head`, then words of `words` that `rng` picks, cut to
/// 20 to 19 + `spread` bytes (`spread` at most 236: SHORT_BINUNICODE, MEMOIZE, STOP).
pub fn words_pickle(rng: &mut Rng, head: String, words: &[&str], spread: u64) -> Vec<u8> {
    let target = 20 + rng.below(spread) as usize;
    let mut text = head;
    while text.len() < target {
        text.push(' ');
        text.push_str(words[rng.below(words.len() as u64) as usize]);
    }
    text.truncate(target);
    let mut out = vec![0x80, 4, 0x8c, text.len() as u8];
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(b"\x94.");
    out
}
