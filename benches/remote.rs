//! W5 through a remote (feature `s3`): W5's 50 snapshots (`../shared/bench/WORKLOADS.md`)
//! written to one key of a store, checkpointed and pushed one by one to moto's S3 server on
//! loopback; then the last checkpoint pulled into an empty store. Reports the bytes
//! uploaded against the logical bytes (Σ of the snapshots' pickle sizes), the requests per
//! push, and the time of the pull (into a new store) against the time to open the store
//! and read the value locally.
//!
//! ```text
//! cargo bench --features s3 --bench remote [-- --repeat N]
//! ```

#[path = "workloads/generate.rs"]
mod generate;
#[path = "workloads/refpickle.rs"]
mod refpickle;
#[path = "../tests/s3server/mod.rs"]
mod s3server;

use std::time::Instant;

use anyhow::{Context, Result};
use generate::SplitMix64;
use pickleshelf::Shelf;

const ENTRIES: u64 = 5_000;
const SNAPSHOTS: u64 = 50;
const CHANGES: u64 = ENTRIES / 100;

fn run(s3: &s3server::S3Server, round: usize) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let bucket = format!("w5-{round}");
    s3.create_bucket(&bucket);
    let url = format!("s3://{bucket}/w5");
    let shelf = Shelf::open(dir.path().join("state.db"))?;
    let remote = s3.remote(&url).build()?;
    let mut rng = SplitMix64::new(generate::SEED_W5);
    let mut plain = generate::w5_initial(ENTRIES, &mut rng);
    let keys: Vec<String> = (0..plain.len()).map(generate::w5_key).collect();
    let labels: Vec<String> = (0..plain.len()).map(generate::w5_label).collect();
    let (mut logical, mut uploaded) = (0u64, 0u64);
    let mut requests = Vec::new();
    let t0 = Instant::now();
    for n in 0..SNAPSHOTS {
        if n > 0 {
            generate::w5_mutate(ENTRIES, CHANGES, &mut rng, |j, v| {
                plain[j].rev += 1;
                plain[j].value = v;
            });
        }
        let pickle = refpickle::dumps(&refpickle::w5_obj(&plain, &keys, &labels));
        logical += pickle.len() as u64;
        shelf.insert_pickle("state", &pickle)?;
        let name = format!("snapshot-{n}");
        shelf.checkpoint(&name)?;
        let before = remote.stats().requests;
        let report = shelf.push(&remote, &name)?;
        requests.push(remote.stats().requests - before);
        uploaded += report.bytes_uploaded;
    }
    let push_s = t0.elapsed().as_secs_f64();
    let last = format!("snapshot-{}", SNAPSHOTS - 1);

    // The local read, from a store opened afresh (no cache warm).
    shelf.close()?;
    let t0 = Instant::now();
    let shelf = Shelf::open(dir.path().join("state.db"))?;
    let local = shelf.get_pickle_at(&last, "state")?.context("the last snapshot")?;
    let local_s = t0.elapsed().as_secs_f64();
    let puller = s3.remote(&url).build()?;
    let t0 = Instant::now();
    let pulled = Shelf::pull(&puller, &last, dir.path().join("pulled.db"))?;
    let pull_s = t0.elapsed().as_secs_f64();
    assert_eq!(pulled.get_pickle("state")?.as_deref(), Some(local.as_slice()));
    let (min_r, max_r) = (requests.iter().min().copied().unwrap_or(0), requests.iter().max().copied().unwrap_or(0));
    println!(
        "W5 push: logical {logical} B, uploaded {uploaded} B ({:.3}x), requests per push {min_r}-{max_r}, \
         50 pushes {push_s:.2} s; pull of the last {:.1} ms vs local open + read {:.2} ms",
        uploaded as f64 / logical as f64,
        pull_s * 1e3,
        local_s * 1e3
    );
    Ok(())
}

fn main() -> Result<()> {
    let repeat = std::env::args()
        .skip_while(|a| a != "--repeat")
        .nth(1)
        .map(|r| r.parse::<usize>())
        .transpose()
        .context("--repeat N")?
        .unwrap_or(3);
    let Some(s3) = s3server::S3Server::start() else { return Ok(()) };
    for round in 0..repeat {
        run(&s3, round)?;
    }
    Ok(())
}
