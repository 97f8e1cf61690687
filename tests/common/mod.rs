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
