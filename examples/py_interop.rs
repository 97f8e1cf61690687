//! The Rust side of the Python package's cross-language tests (`crates/python/tests`):
//! typed values and memo results written by Rust for Python to read, and values and memo
//! results written by Python read back as Rust types.
//!
//! ```sh
//! cargo run --release --example py_interop -- put STORE            # typed values under rust:*
//! cargo run --release --example py_interop -- get STORE KEY        # a W1 record, printed
//! cargo run --release --example py_interop -- memo STORE NS 0 1 2  # memo calls; prints hit/computed
//! cargo run --release --example py_interop -- memo STORE NS 3 --hits-only  # a miss is an error
//! ```

use std::collections::BTreeMap;
use std::process::ExitCode;

use serde::{Deserialize, Serialize};

/// A W1 record (`../shared/bench/WORKLOADS.md`).
#[derive(Serialize, Deserialize, Debug)]
struct Record {
    id: i64,
    name: String,
    scores: Vec<f64>,
    tags: Vec<String>,
    active: bool,
}

/// W3's result: `{"n": n, "label": s, "mode": d["mode"], "values": [n * 0.5 + j ...]}`.
#[derive(Serialize, Deserialize, Clone, Debug)]
struct Out {
    n: i64,
    label: String,
    mode: String,
    values: Vec<f64>,
}

const MODES: [&str; 4] = ["fast", "slow", "auto", "none"];

/// W3's arguments: `(n, f"q{n}", {"mode": ..., "limit": n % 100, "exact": n % 2 == 0})`.
#[derive(Serialize)]
struct Opts {
    mode: &'static str,
    limit: i64,
    exact: bool,
}

fn args(n: i64) -> (i64, String, Opts) {
    let mode = MODES[n.rem_euclid(4) as usize];
    (n, format!("q{n}"), Opts { mode, limit: n % 100, exact: n % 2 == 0 })
}

fn out(n: i64) -> Out {
    let mode = MODES[n.rem_euclid(4) as usize].to_string();
    Out { n, label: format!("q{n}"), mode, values: (0..110).map(|j| n as f64 * 0.5 + j as f64).collect() }
}

fn run(argv: &[String]) -> Result<(), String> {
    let err = |e: pickleshelf::Error| e.to_string();
    match argv {
        [cmd, store] if cmd == "put" => {
            let shelf = pickleshelf::Shelf::open(store).map_err(err)?;
            let rec = Record {
                id: 7,
                name: "user7".into(),
                scores: vec![0.5, 1.25, -3.0],
                tags: vec!["red".into(), "us".into()],
                active: true,
            };
            shelf.insert("rust:record", &rec).map_err(err)?;
            shelf.insert("rust:tuple", &(1i64, "two", 3.5f64, true, ())).map_err(err)?;
            let mut map = BTreeMap::new();
            map.insert("a".to_string(), vec![1i64, 2]);
            map.insert("b".to_string(), vec![]);
            shelf.insert("rust:map", &map).map_err(err)?;
            shelf.insert("rust:bytes", &RawBytes(b"\x00\xffraw")).map_err(err)?;
            shelf.insert("rust:big", &(0..5000).map(|i| i as f64 / 7.0).collect::<Vec<f64>>()).map_err(err)?;
            shelf.close().map_err(err)
        }
        [cmd, store, key] if cmd == "get" => {
            let shelf = pickleshelf::Shelf::open(store).map_err(err)?;
            let rec: Option<Record> = shelf.get(key).map_err(err)?;
            let rec = rec.ok_or_else(|| format!("no key {key:?}"))?;
            println!("{} {} {:?} {:?} {}", rec.id, rec.name, rec.scores, rec.tags, rec.active);
            Ok(())
        }
        [cmd, store, ns, rest @ ..] if cmd == "memo" => {
            let hits_only = rest.iter().any(|a| a == "--hits-only");
            let shelf = pickleshelf::Shelf::open(store).map_err(err)?;
            let memo = shelf.memo(ns).map_err(err)?;
            for n in rest.iter().filter(|a| !a.starts_with("--")) {
                let n: i64 = n.parse().map_err(|e| format!("{n}: {e}"))?;
                let mut computed = false;
                let r = memo
                    .try_get_or_compute(&args(n), || {
                        computed = true;
                        if hits_only { Err(format!("call {n} was not stored")) } else { Ok(out(n)) }
                    })
                    .map_err(err)??;
                if r.n != n || r.values.len() != 110 {
                    return Err(format!("call {n}: wrong result {r:?}"));
                }
                println!("{n} {}", if computed { "computed" } else { "hit" });
            }
            memo.sync().map_err(err)
        }
        _ => Err("usage: py_interop (put STORE | get STORE KEY | memo STORE NS N... [--hits-only])".into()),
    }
}

/// Bytes that serialize as Python `bytes` (serde's `serialize_bytes`).
struct RawBytes<'a>(&'a [u8]);

impl Serialize for RawBytes<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    match run(&argv) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("py_interop: {e}");
            ExitCode::FAILURE
        }
    }
}
