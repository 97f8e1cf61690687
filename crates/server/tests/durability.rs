//! Stopping and durability of a server process: SHUTDOWN and SIGTERM close cleanly (the
//! store synced, the process exits 0, every acknowledged write there on reopening);
//! with `--appendfsync always`, every acknowledged write survives SIGKILL.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::ServerProcess;
use pickleshelf::Shelf;
use pickleshelf_server::RemoteShelf;
use rustix::process::{Pid, Signal, kill_process};

fn write_keys(server: &ServerProcess, n: usize) {
    let c = RemoteShelf::connect(&format!("redis://{}", server.addr)).unwrap();
    for i in 0..n {
        c.insert(&format!("k{i}"), &(i as i64)).unwrap();
    }
}

fn check_keys(store: &std::path::Path, n: usize) {
    let shelf = Shelf::open(store).unwrap();
    assert_eq!(shelf.len().unwrap(), n);
    for i in 0..n {
        assert_eq!(shelf.get::<i64>(&format!("k{i}")).unwrap(), Some(i as i64), "k{i}");
    }
    assert!(shelf.verify().unwrap().is_ok());
}

fn signal(server: &ServerProcess, sig: Signal) {
    kill_process(Pid::from_raw(server.pid()).unwrap(), sig).unwrap();
}

#[test]
fn sigterm_closes_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let mut server = ServerProcess::start(Some(&store), &["--appendfsync", "no"]);
    write_keys(&server, 500);
    signal(&server, Signal::TERM);
    assert_eq!(server.wait(Duration::from_secs(20)), Some(0), "{}", server.log_text());
    assert!(server.log_text().contains("stopped; store synced"), "{}", server.log_text());
    check_keys(&store, 500);
}

#[test]
fn shutdown_closes_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let mut server = ServerProcess::start(Some(&store), &[]);
    write_keys(&server, 300);
    let c = RemoteShelf::connect(&format!("redis://{}", server.addr)).unwrap();
    // SHUTDOWN closes the connection without a reply, as Redis does.
    assert!(c.command(&[b"SHUTDOWN"]).is_err());
    assert_eq!(server.wait(Duration::from_secs(20)), Some(0), "{}", server.log_text());
    check_keys(&store, 300);
}

#[test]
fn appendfsync_always_survives_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let mut server = ServerProcess::start(Some(&store), &["--appendfsync", "always"]);
    // Several clients at once: their writes share syncs (group commit).
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let url = format!("redis://{}", server.addr);
            std::thread::spawn(move || {
                let c = RemoteShelf::connect(&url).unwrap();
                for i in 0..100 {
                    c.insert(&format!("k{}", t * 100 + i), &((t * 100 + i) as i64)).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    signal(&server, Signal::KILL);
    server.wait(Duration::from_secs(20));
    check_keys(&store, 400);
}
