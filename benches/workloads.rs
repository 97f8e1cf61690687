//! placeholder
mod checks;
mod generate;
mod refpickle;
fn main() {}
