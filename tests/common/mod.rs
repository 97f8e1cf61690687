//! Fixtures shared by the store's test files (`mod common;` in each): the ones of the
//! codec crate's tests, included from there so that each is defined once (the
//! conformance corpus, python3, the seedable `Rng`).
#![allow(dead_code, unused_imports)]

#[path = "../../crates/pickle/tests/common/mod.rs"]
mod fixtures;

pub use fixtures::*;
