//! Errors a user can hit: the exact `Error` variant, and a message that names the thing.

use std::fs;
use std::path::Path;

use pickleshelf::{Error, Shelf};

/// The message of `e`, checked to be one line and to contain each of `names`.
fn message(e: &Error, names: &[&str]) -> String {
    let m = e.to_string();
    assert!(!m.contains('\n'), "message is not one line: {m:?}");
    for name in names {
        assert!(m.contains(name), "message {m:?} does not name {name:?}");
    }
    m
}

fn shown(path: &Path) -> String {
    path.display().to_string()
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temporary directory")
}

#[test]
fn missing_store_is_not_found_without_create() {
    let dir = tempdir();
    let path = dir.path().join("missing.db");
    for (how, builder) in [
        ("read_only(true)", Shelf::builder(&path).read_only(true)),
        ("create(false)", Shelf::builder(&path).create(false)),
    ] {
        match builder.open() {
            Err(e @ Error::Io { .. }) => {
                let Error::Io { path: p, source } = &e else { unreachable!() };
                assert_eq!(*p, path, "{how}");
                assert_eq!(source.kind(), std::io::ErrorKind::NotFound, "{how}");
                message(&e, &[&shown(&path)]);
            }
            other => panic!("{how}: expected Io(NotFound), got {:?}", other.map(drop)),
        }
        assert!(!path.exists(), "{how} created something");
    }
}

#[test]
fn directory_that_is_not_a_store_is_not_found_without_create() {
    let dir = tempdir();
    let path = dir.path().join("empty");
    fs::create_dir(&path).expect("mkdir");
    for (how, builder) in [
        ("read_only(true)", Shelf::builder(&path).read_only(true)),
        ("create(false)", Shelf::builder(&path).create(false)),
    ] {
        match builder.open() {
            Err(e @ Error::Io { .. }) => {
                let Error::Io { source, .. } = &e else { unreachable!() };
                assert_eq!(source.kind(), std::io::ErrorKind::NotFound, "{how}");
                message(&e, &[&shown(&path)]);
            }
            other => panic!("{how}: expected Io(NotFound), got {:?}", other.map(drop)),
        }
        let left: Vec<_> = fs::read_dir(&path).expect("read_dir").collect();
        assert!(left.is_empty(), "{how} wrote into the directory: {left:?}");
    }
}
