//! Code shared by several test files (`mod common;` in each): the CLI helpers
//! ([`cli`]), and the fixtures of the codec crate's tests, included from there so that
//! each is defined once (the conformance corpus, python3, the seedable `Rng`).
#![allow(dead_code, unused_imports)]

pub mod cli;

#[path = "../../../pickle/tests/common/mod.rs"]
mod fixtures;

pub use fixtures::*;
