//! Code shared by several test files (`mod common;` in each).
pub mod cli;
