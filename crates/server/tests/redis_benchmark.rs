//! redis-benchmark against the server: `-t ping,set,get,mset,incr` runs to the end with
//! no error, unpipelined and pipelined, in RESP2 and RESP3, and what it wrote is there.
//! (Throughput is measured by scripts/bench-server.sh, not here.)
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;

use common::{TestServer, run, tool};
use pickleshelf_server::Config;

#[test]
fn runs_without_errors() {
    let Some(_) = tool("redis-benchmark") else { return };
    let s = TestServer::start(Config::new());
    for extra in [&[][..], &["-P", "16"], &["-3"]] {
        let (ok, out, err) = run(Command::new("redis-benchmark")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &s.port(),
                "-t",
                "ping,set,get,mset,incr",
                "-n",
                "4000",
                "-r",
                "1000",
                "-c",
                "20",
                "--csv",
            ])
            .args(extra));
        assert!(ok, "redis-benchmark {extra:?} failed:\n{out}\n{err}");
        let text = format!("{out}\n{err}");
        for name in ["PING_INLINE", "PING_MBULK", "SET", "GET", "INCR", "MSET (10 keys)"] {
            assert!(out.contains(&format!("\"{name}\"")), "{name} missing from redis-benchmark {extra:?}:\n{text}");
        }
        for bad in ["ERR", "Error", "WARNING", "error"] {
            assert!(!text.contains(bad), "redis-benchmark {extra:?} reported {bad:?}:\n{text}");
        }
    }
    // SET and MSET wrote `key:NNNNNNNNNNNN` keys holding 3 bytes (-d 3); INCR counted in
    // `counter:...`.
    let key = s.shelf.keys_with_prefix("key:").next().unwrap().unwrap();
    let Some(pickleshelf::pickle::Node::Bytes(v)) = s.shelf.get_value(&key).unwrap().map(|v| v.root_node().clone())
    else {
        panic!("{key} does not hold bytes")
    };
    assert_eq!(v.len(), 3, "{v:?}");
    let total: i64 =
        s.shelf.keys_with_prefix("counter:").map(|k| s.shelf.get::<i64>(&k.unwrap()).unwrap().unwrap()).sum();
    assert_eq!(total, 3 * 4000, "every INCR of the three runs counted");
}
