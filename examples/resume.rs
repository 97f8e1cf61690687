//! Resume after a restart: a long deterministic computation that checkpoints its state
//! into a pickleshelf store and, when run again after being killed at any moment, picks
//! up from its last checkpoint and prints the same result as an uninterrupted run.
//!
//! ```sh
//! cargo run --release --example resume                      # ~10-20 s, prints checkpoints, then the result
//! cargo run --release --example resume -- --steps 500 --every 50 --db run.db
//! ```
//!
//! Output: `checkpoint <step>` after each checkpoint is durable (synced), then
//! `result <value>`. Kill it (Ctrl-C, `kill -9`) and run it again: it continues from the
//! last `checkpoint` line printed. `--fresh` discards a previous run's state.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use serde::{Deserialize, Serialize};

#[derive(Parser)]
#[command(about = "A long computation that checkpoints to a pickleshelf store and resumes after a restart")]
struct Args {
    /// Store directory.
    #[arg(long, default_value = "state.db")]
    db: PathBuf,
    /// Number of steps of the computation.
    #[arg(long, default_value_t = 3000)]
    steps: u64,
    /// Checkpoint every this many steps.
    #[arg(long, default_value_t = 100)]
    every: u64,
    /// Start over, discarding a previous run's state in the store.
    #[arg(long)]
    fresh: bool,
}

/// The program's whole state: what a Python program would pickle into a shelve.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
struct State {
    /// Total steps of this run (a store holds one run).
    steps: u64,
    /// Steps done.
    step: u64,
    /// The generator's state.
    rng: u64,
    /// How often each of 64 buckets was hit.
    histogram: Vec<u64>,
    /// The last 32 samples, in [0, 1).
    recent: Vec<f64>,
    /// Running sum of all samples.
    total: f64,
}

impl State {
    fn new(steps: u64) -> State {
        State { steps, step: 0, rng: 2026, histogram: vec![0; 64], recent: Vec::new(), total: 0.0 }
    }

    fn next_u64(&mut self) -> u64 {
        // splitmix64
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// One step: a few milliseconds of deterministic work.
    fn advance(&mut self) {
        let mut best = u64::MAX;
        for _ in 0..2_500_000 {
            best = best.min(self.next_u64());
        }
        let sample = (best >> 11) as f64 * (1.0 / (1u64 << 53) as f64) * 1e4 % 1.0;
        self.histogram[(best % 64) as usize] += 1;
        self.recent.push(sample);
        if self.recent.len() > 32 {
            self.recent.remove(0);
        }
        self.total += sample;
        self.step += 1;
    }

    fn result(&self) -> String {
        let h = self.histogram.iter().fold(0u64, |acc, &c| acc.wrapping_mul(31).wrapping_add(c));
        format!("{:016x}-{:.9}", h ^ self.rng, self.total)
    }
}

fn run(args: &Args) -> anyhow::Result<String> {
    if args.every == 0 {
        anyhow::bail!("--every must be at least 1");
    }
    let shelf = pickleshelf::Shelf::open(&args.db)?;
    if args.fresh {
        shelf.remove("state")?;
    }
    let mut state = match shelf.get::<State>("state")? {
        Some(s) if s.steps == args.steps => {
            eprintln!("resuming at step {} of {}", s.step, s.steps);
            s
        }
        Some(s) => {
            anyhow::bail!(
                "{} holds a run of {} steps, not {}; use --fresh or another --db",
                args.db.display(),
                s.steps,
                args.steps
            );
        }
        None => State::new(args.steps),
    };
    let mut out = std::io::stdout().lock();
    while state.step < state.steps {
        state.advance();
        if state.step % args.every == 0 || state.step == state.steps {
            shelf.insert("state", &state)?;
            shelf.sync()?;
            let _ = writeln!(out, "checkpoint {}", state.step);
            let _ = out.flush();
        }
    }
    shelf.close()?;
    Ok(state.result())
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(result) => {
            println!("result {result}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
