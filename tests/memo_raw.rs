//! The memo's pickle-bytes entry points (used by the Python package): keys of pickled
//! arguments equal the typed keys whatever protocol or order the bytes were written in,
//! raw results are stored byte-exact and read by typed calls (and back), bad bytes are
//! refused without storing anything, errors are not cached, equal calls compute once.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use pickleshelf::pickle::{Node, Value, encode, to_value, to_vec, to_vec_with_protocol};
use pickleshelf::{Error, Shelf, pickle};

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn keys_of_pickled_arguments_equal_typed_keys() -> Result<(), Error> {
    let dir = tempdir();
    let shelf = Shelf::open(dir.path().join("s"))?;
    let m = shelf.memo("f")?;
    let mut opts = HashMap::new();
    opts.insert("mode".to_string(), "fast".to_string());
    opts.insert("limit".to_string(), "3".to_string());
    let args = (3i64, "q3".to_string(), opts, vec![5i64, 1, 3]);
    let typed = m.key(&args)?;
    for protocol in 2..=5 {
        assert_eq!(m.key_of_pickle(&to_vec_with_protocol(&args, protocol)?)?, typed, "protocol {protocol}");
    }
    // The same arguments with the dict's items in another order.
    let mut value = to_value(&args)?;
    let root = value.root();
    let items = value.as_seq(root).map(<[_]>::to_vec).unwrap_or_default();
    for id in items {
        match value.node_mut(id) {
            Node::Dict(pairs) => pairs.reverse(),
            Node::Set(elems) | Node::FrozenSet(elems) => elems.reverse(),
            _ => {}
        }
    }
    let reordered = encode(&value, 4)?;
    assert_ne!(reordered, to_vec(&args)?, "the reordering changed nothing");
    assert_eq!(m.key_of_pickle(&reordered)?, typed);
    // Again: now from the memo's table of recent argument pickles.
    assert_eq!(m.key_of_pickle(&reordered)?, typed);
    assert_eq!(m.key_of_pickle(&to_vec(&args)?)?, typed);
    Ok(())
}

#[test]
fn bad_argument_bytes_are_errors() -> Result<(), Error> {
    let dir = tempdir();
    let shelf = Shelf::open(dir.path().join("s"))?;
    let m = shelf.memo("f")?;
    assert!(matches!(m.key_of_pickle(b"not a pickle"), Err(Error::Pickle(pickle::Error::Decode { .. }))));
    // A cyclic list has no canonical pickle.
    let mut v = Value::new(Node::List(Vec::new()));
    let root = v.root();
    if let Node::List(items) = v.node_mut(root) {
        items.push(root);
    }
    assert!(matches!(m.key_of_pickle(&encode(&v, 4)?), Err(Error::Pickle(pickle::Error::Encode(_)))));
    let r = m.get_or_compute_pickle(b"\x80\x04junk", || Ok::<_, ()>(b"K\x01.".to_vec()));
    assert!(matches!(r, Err(Error::Pickle(pickle::Error::Decode { .. }))));
    assert_eq!(m.stats().entries, 0);
    Ok(())
}

#[test]
fn raw_results_are_byte_exact_and_shared_with_typed_calls() -> Result<(), Error> {
    let dir = tempdir();
    let path = dir.path().join("s");
    // Protocol 2 bytes, as Python's pickle.dumps(49, protocol=2) writes them.
    let result = b"\x80\x02K1.".to_vec();
    {
        let shelf = Shelf::open(&path)?;
        let m = shelf.memo("square")?;
        let args = to_vec(&(7i64,))?;
        let r = m.get_or_compute_pickle(&args, || Ok::<_, Error>(result.clone()))??;
        assert_eq!(r, result);
        assert_eq!(m.get_pickle(&args)?, Some(result.clone()));
        // Typed: the stored bytes are read as an i64, without running the function.
        assert_eq!(m.get_or_compute(&(7i64,), || 0i64)?, 49);
        // A typed result is returned raw as the bytes the Rust side wrote.
        let typed = m.get_or_compute(&(8i64,), || 64i64)?;
        assert_eq!(typed, 64);
        let raw = m.get_or_compute_pickle(&to_vec(&(8i64,))?, || Err::<Vec<u8>, _>("must not run"))?;
        assert_eq!(raw, Ok(to_vec(&64i64)?));
        drop(m);
        shelf.close()?;
    }
    let shelf = Shelf::open(&path)?;
    let m = shelf.memo("square")?;
    let calls = AtomicU32::new(0);
    let again = m.get_or_compute_pickle(&to_vec_with_protocol(&(7i64,), 5)?, || {
        calls.fetch_add(1, Ordering::SeqCst);
        Ok::<_, Error>(Vec::new())
    })??;
    assert_eq!((again, calls.load(Ordering::SeqCst)), (result, 0));
    assert_eq!(m.stats().hits, 1);
    Ok(())
}

#[test]
fn non_pickle_results_and_errors_store_nothing() -> Result<(), Error> {
    let dir = tempdir();
    let shelf = Shelf::open(dir.path().join("s"))?;
    let m = shelf.memo("f")?;
    let args = to_vec(&(1i64,))?;
    let r = m.get_or_compute_pickle(&args, || Ok::<_, ()>(b"garbage".to_vec()));
    assert!(matches!(r, Err(Error::Pickle(pickle::Error::Decode { .. }))), "{r:?}");
    let r = m.get_or_compute_pickle(&args, || Err::<Vec<u8>, _>("failed"))?;
    assert_eq!(r, Err("failed"));
    assert_eq!(m.stats().entries, 0);
    assert_eq!(m.get_pickle(&args)?, None);
    Ok(())
}

#[test]
fn concurrent_raw_callers_compute_once() -> Result<(), Error> {
    let dir = tempdir();
    let shelf = Shelf::open(dir.path().join("s"))?;
    let m = shelf.memo("slow")?;
    let calls = Arc::new(AtomicU32::new(0));
    let args = to_vec(&("same",))?;
    std::thread::scope(|s| {
        for _ in 0..8 {
            let (m, calls, args) = (m.clone(), Arc::clone(&calls), args.clone());
            s.spawn(move || {
                let r = m.get_or_compute_pickle(&args, || {
                    calls.fetch_add(1, Ordering::SeqCst);
                    std::thread::sleep(std::time::Duration::from_millis(100));
                    to_vec(&"done")
                });
                assert!(matches!(r, Ok(Ok(_))));
            });
        }
    });
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    Ok(())
}
