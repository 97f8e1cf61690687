//! `push`, `pull` and `remote ls` run as a user runs them, against moto's S3 server on
//! loopback (with the `s3` feature), and the error every one of them gives in a build
//! without it.

mod common;

use common::cli::*;

#[cfg(not(feature = "s3"))]
#[test]
fn without_the_feature_each_command_says_so() {
    let dir = tmp();
    let store = s(&dir.path().join("a.db"));
    for args in [
        vec!["push", store.as_str(), "s3://bkt/p", "--checkpoint", "c"],
        vec!["pull", "s3://bkt/p", "c", store.as_str()],
        vec!["remote", "ls", "s3://bkt/p"],
    ] {
        let out = bin().args(&args).assert().code(FAILED).get_output().clone();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("built without s3 support") && err.lines().count() == 1, "{args:?}: {err}");
    }
    assert!(!dir.path().join("a.db").exists());
}

#[cfg(feature = "s3")]
#[path = "../../../tests/s3server/mod.rs"]
mod s3server;

#[cfg(feature = "s3")]
#[test]
fn push_ls_and_pull_through_the_command_line() {
    use pickleshelf::Shelf;
    let Some(s3) = s3server::S3Server::start() else { return };
    s3.create_bucket("cli-bucket");
    let dir = tmp();
    let src = dir.path().join("a.db");
    {
        let shelf = Shelf::open(&src).unwrap();
        shelf.insert("small", &1).unwrap();
        shelf.insert("large", &vec![3.5f64; 50_000]).unwrap();
        shelf.checkpoint("epoch-1").unwrap();
        shelf.close().unwrap();
    }
    let run = |args: &[&str]| {
        let mut cmd = bin();
        for (k, v) in s3.env() {
            cmd.env(k, v);
        }
        cmd.args(args);
        cmd.assert()
    };
    let url = "s3://cli-bucket/team";
    let out = run(&["push", &s(&src), url, "--checkpoint", "epoch-1"]).success().get_output().clone();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("pushed epoch-1: 2 keys, 1 objects (1 uploaded, 0 already there)"), "{text}");
    let out = run(&["push", &s(&src), url, "--checkpoint", "epoch-1"]).success().get_output().clone();
    assert!(String::from_utf8_lossy(&out.stdout).contains("nothing uploaded"));

    let out = run(&["remote", "ls", url]).success().get_output().clone();
    let text = String::from_utf8_lossy(&out.stdout);
    let fields: Vec<&str> = text.split_whitespace().collect();
    assert_eq!(fields.len(), 5, "{text}"); // date, keys, size and its unit, name
    assert_eq!((fields[1], fields[4]), ("2", "epoch-1"), "{text}");

    let dst = dir.path().join("b.db");
    let out = run(&["pull", url, "epoch-1", &s(&dst)]).success().get_output().clone();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("pulled epoch-1 into"));
    let pulled = Shelf::open(&dst).unwrap();
    assert_eq!(pulled.get::<Vec<f64>>("large").unwrap().unwrap(), vec![3.5f64; 50_000]);
    assert_eq!(pulled.get::<i64>("small").unwrap(), Some(1));
    pulled.close().unwrap();

    // Failures: one line, non-zero, nothing left behind.
    let dst2 = dir.path().join("c.db");
    let out = run(&["pull", url, "nope", &s(&dst2)]).code(ABSENT).get_output().clone();
    assert!(String::from_utf8_lossy(&out.stderr).contains("no checkpoint \"nope\""));
    for key in s3.keys("cli-bucket", "team/objects/") {
        s3.put_object("cli-bucket", &key, b"\x01\x00\x05hello");
    }
    let out = run(&["pull", url, "epoch-1", &s(&dst2)]).code(DAMAGED).get_output().clone();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("corrupted or substituted") && err.lines().count() == 1, "{err}");
    assert!(!dst2.exists());
    let out = run(&["pull", "s3:/bad", "epoch-1", &s(&dst2)]).code(FAILED).get_output().clone();
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad remote url"));
    let out = run(&["push", &s(&src), url, "--checkpoint", "missing"]).code(ABSENT).get_output().clone();
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing"));
    let secret = s3server::SECRET_ACCESS_KEY;
    let out = run(&["remote", "ls", "s3://no-such-bucket/x"]).code(FAILED).get_output().clone();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no-such-bucket") && !err.contains(secret), "{err}");
    assert!(!dst2.exists());
}
