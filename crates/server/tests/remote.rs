//! RemoteShelf against a served store and Shelf on a store of its own, driven through the
//! same `Mapping` code by one sequence of operations: both end in the same state, and
//! the served store holds what the client wrote. `update` from many threads at once
//! loses no increment; a batch is all-or-nothing.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;

use common::TestServer;
use pickleshelf::{Batch, Shelf};
use pickleshelf_server::{Config, Mapping, RemoteShelf};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Insert(u8, i64),
    InsertText(u8, String),
    Remove(u8),
    Bump(u8),
    Batch(Vec<(u8, Option<i64>)>),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..20u8, any::<i64>()).prop_map(|(k, v)| Op::Insert(k, v)),
        (0..20u8, ".{0,20}").prop_map(|(k, v)| Op::InsertText(k, v)),
        (0..20u8).prop_map(Op::Remove),
        (0..20u8).prop_map(Op::Bump),
        proptest::collection::vec((0..20u8, proptest::option::of(any::<i64>())), 0..5).prop_map(Op::Batch),
    ]
}

/// Applies `op` through the shared API; returns what it observed.
fn apply(m: &impl Mapping, op: &Op) -> String {
    let key = |k: u8| format!("key:{k:02}");
    match op {
        Op::Insert(k, v) => format!("{:?}", m.insert(&key(*k), v).map_err(|e| e.to_string())),
        Op::InsertText(k, v) => format!("{:?}", m.insert(&key(*k), v).map_err(|e| e.to_string())),
        Op::Remove(k) => format!("{:?}", m.remove(&key(*k)).map_err(|e| e.to_string())),
        Op::Bump(k) => format!(
            "{:?}",
            m.update(&key(*k), |v: Option<i64>| Some(v.unwrap_or(0).wrapping_add(1))).map_err(|_| "not an int")
        ),
        Op::Batch(items) => {
            let mut b = Batch::new();
            for (k, v) in items {
                match v {
                    Some(v) => b.insert(&key(*k), v).unwrap(),
                    None => b.remove(&key(*k)),
                }
            }
            format!("{:?}", m.apply(b).map_err(|e| e.to_string()))
        }
    }
}

fn state(m: &impl Mapping) -> BTreeMap<String, Vec<u8>> {
    m.keys_with_prefix("key:")
        .unwrap()
        .into_iter()
        .map(|k| {
            let v = m.get_pickle(&k).unwrap().unwrap();
            (k, v)
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]
    #[test]
    fn remote_and_local_agree(ops in proptest::collection::vec(op(), 1..60)) {
        let server = TestServer::start(Config::new());
        let remote = RemoteShelf::connect(&server.url()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let local = Shelf::open(dir.path().join("local")).unwrap();
        for op in &ops {
            prop_assert_eq!(apply(&remote, op), apply(&local, op), "{:?}", op);
        }
        let s = state(&local);
        prop_assert_eq!(state(&remote), s.clone());
        prop_assert_eq!(Mapping::len(&remote).unwrap(), s.len());
        for (k, v) in &s {
            prop_assert_eq!(&server.shelf.get_pickle(k).unwrap().unwrap(), v);
            prop_assert!(Mapping::contains_key(&remote, k).unwrap());
        }
    }
}

#[test]
fn concurrent_updates_lose_nothing() {
    let server = TestServer::start(Config::new());
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let url = server.url();
            std::thread::spawn(move || {
                let c = RemoteShelf::connect(&url).unwrap();
                for _ in 0..100 {
                    c.update("hits", |n: Option<u64>| Some(n.unwrap_or(0) + 1)).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(server.shelf.get::<u64>("hits").unwrap(), Some(400));
}

#[test]
fn typed_values_checkpoints_and_verify() {
    let server = TestServer::start(Config::new());
    let c = RemoteShelf::connect(&server.url()).unwrap();
    c.insert("user:1", &("Kim", vec![1.5, 2.5])).unwrap();
    assert_eq!(c.get::<(String, Vec<f64>)>("user:1").unwrap(), Some(("Kim".into(), vec![1.5, 2.5])));
    assert_eq!(server.shelf.get::<(String, Vec<f64>)>("user:1").unwrap(), Some(("Kim".into(), vec![1.5, 2.5])));
    assert!(c.insert_pickle("bad", b"not a pickle").is_err());
    assert!(!c.contains_key("bad").unwrap());
    assert_eq!(c.checkpoint("v1").unwrap(), 1);
    c.insert("user:2", &1).unwrap();
    assert_eq!(c.changes_since("v1").unwrap(), [('+', "user:2".to_string())]);
    assert_eq!(c.restore("v1").unwrap(), 1);
    assert_eq!(c.keys().unwrap(), ["user:1"]);
    assert!(c.verify().unwrap().is_empty());
    c.sync().unwrap();
    // A prefix with glob characters is matched literally.
    c.insert("a*b", &1).unwrap();
    c.insert("axb", &1).unwrap();
    assert_eq!(c.keys_with_prefix("a*").unwrap(), ["a*b"]);
}

/// Found by `remote_and_local_agree`: an `update` whose value did not fit its type left
/// the key watched, and the next batch's EXEC was aborted.
#[test]
fn failed_update_leaves_no_watch() {
    let server = TestServer::start(Config::new());
    let c = RemoteShelf::connect(&server.url()).unwrap();
    c.insert("k", "text").unwrap();
    assert!(c.update("k", |n: Option<i64>| n.map(|n| n + 1)).is_err());
    let mut b = Batch::new();
    b.remove("k");
    b.insert("k", &1).unwrap();
    c.apply(b).unwrap();
    assert_eq!(c.get::<i64>("k").unwrap(), Some(1));
}
