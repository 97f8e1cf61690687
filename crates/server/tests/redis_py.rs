//! redis-py (5 or later) against the server: `tests/python/test_redis_py.py`, run with
//! pytest against a server this test starts on loopback, over RESP2 and RESP3, with and
//! without a password; then Rust reads what Python pickled as the same object.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;

use common::{TestServer, python_with_redis, run};
use pickleshelf_server::{Config, Password};

#[derive(serde::Deserialize, Debug, PartialEq)]
struct Record {
    name: String,
    scores: Vec<f64>,
    age: i64,
}

fn pytest(s: &TestServer, password: Option<&str>, filter: Option<&str>) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/test_redis_py.py");
    let mut cmd = Command::new("python3");
    cmd.args(["-m", "pytest", "-q", "-p", "no:cacheprovider", script])
        .env("PICKLESHELF_TEST_PORT", s.port())
        .env("PICKLESHELF_TEST_PASSWORD", password.unwrap_or(""));
    if let Some(f) = filter {
        cmd.args(["-k", f]);
    }
    let (ok, out, err) = run(&mut cmd);
    println!("{out}");
    assert!(ok, "pytest failed:\n{out}\n{err}");
    assert!(out.contains(" passed"), "{out}");
}

#[test]
fn redis_py() {
    let Some(_) = python_with_redis() else { return };
    let s = TestServer::start(Config::new());
    pytest(&s, None, None);
    // What Python pickled, Rust reads as the same object.
    let rec: Record = s.shelf.get("from-python").unwrap().unwrap();
    assert_eq!(rec, Record { name: "Kim".into(), scores: vec![1.5, 2.5], age: 42 });
    assert_eq!(s.shelf.get::<i64>("proc:counter").unwrap(), Some(1000));
    assert_eq!(s.shelf.get::<(i64, i64)>("proc:3:249").unwrap(), Some((3, 249)));
    assert!(s.shelf.verify().unwrap().is_ok());
}

#[test]
fn redis_py_with_a_password() {
    let Some(_) = python_with_redis() else { return };
    let s = TestServer::start(Config::new().password(Some(Password::new("py-secret").unwrap())));
    pytest(&s, Some("py-secret"), Some("strings or pipelines or default_protocol"));
}
