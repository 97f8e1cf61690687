//! Large values never pile up on disk: after 200 open/write/close cycles of W4-style
//! values (2 MB float lists and compressible 2 MB blobs, overwriting earlier ones), the
//! store's disk usage stays within 1.2× the live data. (sled 0.34 keeps large values in
//! blob files that leak across reopens, 2.85× after 200 cycles; pickleshelf keeps them in
//! object files of its own and deletes them once their removal is durable.)

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use common::Rng;
use pickleshelf::{Error, Shelf};

fn du(p: &Path) -> u64 {
    let mut total = 0;
    if let Ok(entries) = std::fs::read_dir(p) {
        for e in entries.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => total += du(&e.path()),
                Ok(m) => total += m.blocks() * 512,
                Err(_) => {}
            }
        }
    }
    total
}

/// A W4-style value: even k a list of 250,000 floats, odd k 2,000,000 bytes of log-like
/// records (WORKLOADS.md §5), as pickle protocol 4 bytes.
fn value(rng: &mut Rng, k: u64) -> Vec<u8> {
    if k.is_multiple_of(2) {
        let floats: Vec<f64> = (0..250_000).map(|_| (rng.next() >> 11) as f64 / (1u64 << 53) as f64).collect();
        pickleshelf::pickle::to_vec(&floats).unwrap_or_else(|e| panic!("{e}"))
    } else {
        let mut blob = Vec::with_capacity(2_000_000);
        for r in 0..31_250u64 {
            let u = rng.next();
            blob.extend_from_slice(&r.to_le_bytes());
            blob.extend_from_slice(&(u as u32).to_le_bytes());
            blob.extend_from_slice(&(((u >> 32) as u32) & 0x0F0F_0F0F).to_le_bytes());
            let text = ["level=INFO component=api msg=request served", "level=DEBUG component=cache msg=lookup hit"]
                [(u >> 63) as usize];
            blob.extend_from_slice(format!("{text:<47}\n").as_bytes());
        }
        let mut p = vec![0x80, 4, 0x8e];
        p.extend_from_slice(&(blob.len() as u64).to_le_bytes());
        p.extend_from_slice(&blob);
        p.extend_from_slice(b"\x94.");
        p
    }
}

#[test]
fn two_hundred_cycles_keep_disk_near_live_data() -> Result<(), Error> {
    let dir = tempfile::tempdir().map_err(|e| Error::Config(e.to_string()))?;
    let path = dir.path().join("s");
    let mut rng = Rng(4);
    let keys = 8u64;
    let mut live: Vec<usize> = vec![0; keys as usize];
    for cycle in 0..200u64 {
        let shelf = Shelf::open(&path)?;
        let k = if cycle < keys { cycle } else { rng.next() % keys };
        let v = value(&mut rng, cycle);
        live[k as usize] = v.len();
        shelf.insert_pickle(&format!("large:{k}"), &v)?;
        shelf.close()?;
    }
    let shelf = Shelf::open(&path)?;
    let report = shelf.verify()?;
    assert!(report.is_ok(), "{report:?}");
    drop(shelf);
    let live_bytes: usize = live.iter().sum();
    let disk = du(&path);
    let ratio = disk as f64 / live_bytes as f64;
    println!("after 200 cycles: disk {disk} bytes, live {live_bytes} bytes, ratio {ratio:.3}");
    assert!(ratio <= 1.2, "disk {disk} is {ratio:.2}x the live data {live_bytes}");
    Ok(())
}
