//! The `pickleshelf` command-line tool (thin: all logic lives in the library).
//!
//! Exit status: 0 on success (and when stdout is closed early, as by `| head`), 1 when
//! the input is malformed or cannot be read (one line on stderr saying where and what),
//! 2 on a usage error.

mod cli;

fn main() {
    std::process::exit(cli::run());
}
