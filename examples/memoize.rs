//! A persistent memo: an expensive function whose results survive the process.
//!
//! ```sh
//! cargo run --release --example memoize    # first run: computes (a few seconds)
//! cargo run --release --example memoize    # second run: every call is a stored hit
//! ```
//!
//! The function counts primes below `n` for a few large `n`, naively. Its results are
//! memoized in `./memo.db` (`--db` to change) keyed by the pickled arguments; `--version`
//! invalidates earlier results, as a changed function would need.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;

#[derive(Parser)]
#[command(about = "An expensive function memoized in a pickleshelf store")]
struct Args {
    /// Store directory.
    #[arg(long, default_value = "memo.db")]
    db: PathBuf,
    /// Version of the function: a new one recomputes everything.
    #[arg(long, default_value = "1")]
    version: String,
}

/// Primes below `n`, by trial division (deliberately slow).
fn count_primes(n: u64) -> u64 {
    (2..n).filter(|&k| (2..).take_while(|d| d * d <= k).all(|d| k % d != 0)).count() as u64
}

fn run(args: &Args) -> pickleshelf::Result<()> {
    let shelf = pickleshelf::Shelf::open(&args.db)?;
    let memo = shelf.memo_builder("count_primes").version(args.version.clone()).open()?;
    let start = Instant::now();
    for n in [1_000_000u64, 2_000_000, 3_000_000, 4_000_000] {
        let t = Instant::now();
        let primes: u64 = memo.get_or_compute(&(n,), || count_primes(n))?;
        println!("count_primes({n}) = {primes}  [{:.1} ms]", t.elapsed().as_secs_f64() * 1e3);
    }
    let s = memo.stats();
    println!(
        "{} hits, {} misses in {:.1} ms{}",
        s.hits,
        s.misses,
        start.elapsed().as_secs_f64() * 1e3,
        if s.misses == 0 { " (all results came from the store)" } else { "; run again: the results are stored" }
    );
    memo.sync()
}

fn main() -> ExitCode {
    match run(&Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
