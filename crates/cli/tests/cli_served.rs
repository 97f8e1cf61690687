//! A served store through the command line: `get`, `put`, `rm`, `ls` and `verify` with a
//! `redis://` address instead of a directory, against a server started here on loopback;
//! the commands that need the directory refuse an address; passwords come from the
//! address or `REDISCLI_AUTH` and never show in messages.

mod common;

use std::net::TcpListener;

use common::cli::*;
use pickleshelf::Shelf;
use pickleshelf_server::{Config, Password, Running, Server};
use serde_json::{Value as Json, json};

/// A server on an ephemeral loopback port over a fresh store, stopped when dropped.
struct Served {
    url: String,
    shelf: Shelf,
    running: Option<Running>,
    _dir: tempfile::TempDir,
}

impl Served {
    fn start(config: Config) -> Served {
        let dir = tmp();
        let shelf = Shelf::open(dir.path().join("store")).unwrap_or_else(|e| panic!("{e}"));
        let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
        let url = format!("redis://{}", listener.local_addr().unwrap_or_else(|e| panic!("{e}")));
        let running = Server::new(shelf.clone(), config).listen(listener).spawn().unwrap_or_else(|e| panic!("{e}"));
        Served { url, shelf, running: Some(running), _dir: dir }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(r) = self.running.take() {
            let _ = r.stop();
        }
    }
}

fn parse(bytes: &[u8]) -> Json {
    serde_json::from_slice(bytes).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(bytes)))
}

#[test]
fn get_put_rm_ls_and_verify_work_on_a_served_store() {
    let served = Served::start(Config::new());
    let url = served.url.as_str();
    ok_in(&["put", url, "user:1", "-"], Some(br#"{"name": "Ada", "langs": ["en", "fr"]}"#.to_vec()));
    ok_in(&["put", url, "user:2", "--json", "-"], Some(br#"{"name": "Bob"}"#.to_vec()));
    // The server's store holds the value the CLI wrote, as the same object.
    let stored = served.shelf.get_value("user:1").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        stored.map(|v| pickleshelf::pickle::to_plain_json(&v).unwrap_or_default()).as_deref(),
        Some(r#"{"name":"Ada","langs":["en","fr"]}"#)
    );
    // And what the application writes, the CLI reads.
    served.shelf.insert("count", &41_i64).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(ok_text(&["get", url, "count", "--json"]), "41\n");
    assert_eq!(parse(&ok(&["get", url, "user:1", "--json"])), json!({"name": "Ada", "langs": ["en", "fr"]}));
    assert_eq!(ok_text(&["get", url, "user:2", "--repr"]), "{'name': 'Bob'}\n");
    let raw = ok(&["get", url, "count", "--raw"]);
    assert_eq!(Some(raw), served.shelf.get_pickle("count").unwrap_or_else(|e| panic!("{e}")));

    assert_eq!(parse(&ok(&["ls", url, "--json"])), json!(["count", "user:1", "user:2"]));
    assert_eq!(ok_text(&["ls", url, "--prefix", "user:"]), "user:1\nuser:2\n");
    assert_eq!(ok(&["ls", url, "-0", "--prefix", "user:"]), b"user:1\0user:2\0");

    let report = parse(&ok(&["verify", url, "--json"]));
    assert_eq!(
        (report["ok"].clone(), report["keys"].clone(), report["problems"].clone()),
        (json!(true), json!(3), json!([]))
    );
    assert_eq!(report["store"], url);
    assert_eq!(ok_text(&["verify", url]), "ok: 3 keys, 0 objects, 0 object files checked\n");

    // rm: all or nothing, as on a directory; absent keys exit 3.
    let err = absent(&["rm", url, "user:1", "nobody"]);
    assert_eq!(err, format!("pickleshelf: {url}: no key \"nobody\" (nothing removed)\n"));
    assert!(served.shelf.contains_key("user:1").unwrap_or_else(|e| panic!("{e}")));
    ok(&["rm", url, "user:1", "nobody", "--force"]);
    assert!(!served.shelf.contains_key("user:1").unwrap_or_else(|e| panic!("{e}")));
    let err = absent(&["get", url, "user:1"]);
    assert_eq!(err, format!("pickleshelf: {url}: no key \"user:1\"\n"));
}

#[test]
fn bad_input_to_a_served_store_changes_nothing() {
    let served = Served::start(Config::new());
    let url = served.url.as_str();
    served.shelf.insert("k", &1_i64).unwrap_or_else(|e| panic!("{e}"));
    let err = fails_in(&["put", url, "k", "--pickle", "-"], Some(b"not a pickle".to_vec()));
    assert!(err.contains("<stdin>"), "{err}");
    let err = fails_in(&["put", url, "k", "--json", "-"], Some(b"{\"a\": ".to_vec()));
    assert!(err.contains("<stdin>"), "{err}");
    assert_eq!(served.shelf.get::<i64>("k").unwrap_or_else(|e| panic!("{e}")), Some(1));
    let err = fails_in(&["put", url, "k", "--read-only", "-"], Some(b"2".to_vec()));
    assert!(err.contains("--read-only"), "{err}");
    assert_eq!(served.shelf.get::<i64>("k").unwrap_or_else(|e| panic!("{e}")), Some(1));
}

#[test]
fn commands_that_need_the_directory_refuse_an_address() {
    let served = Served::start(Config::new());
    let url = served.url.as_str();
    for args in [
        vec!["stats", url],
        vec!["gc", url],
        vec!["checkpoint", "ls", url],
        vec!["memo", "ls", url],
        vec!["export", url, "--dir", "never-written"],
    ] {
        let err = fails_quietly(&args);
        assert!(err.contains("a served store") && err.contains("get, put, rm, ls and verify"), "{args:?}: {err}");
    }
    assert!(!std::path::Path::new("never-written").exists());
    let err = fails_quietly(&["ls", url, "--long"]);
    assert!(err.contains("--long needs the store's directory"), "{err}");
    let err = fails_quietly(&["get", url, "k", "--at", "v1"]);
    assert!(err.contains("--at needs the store's directory"), "{err}");
    let err = fails_quietly(&["get", url, "k", "--auth-key-file", "key"]);
    assert!(err.contains("--auth-key-file is for a store's directory"), "{err}");
}

#[test]
fn passwords_come_from_the_address_or_the_environment_and_never_show() {
    let secret = "correct horse battery staple";
    let password = Password::new(secret).unwrap_or_else(|e| panic!("{e}"));
    let served = Served::start(Config::new().password(Some(password)));
    let host = served.url.trim_start_matches("redis://").to_owned();
    served.shelf.insert("k", &7_i64).unwrap_or_else(|e| panic!("{e}"));

    // No password: the server's refusal, exit 2.
    let err = fails_quietly(&["get", &served.url, "k"]);
    assert!(err.contains(&format!("redis://{host}: cannot use the served store")), "{err}");
    // A wrong one in the address: refused, and not shown.
    let wrong = format!("redis://:wrong-password@{host}");
    let err = fails_quietly(&["get", &wrong, "k"]);
    assert!(!err.contains("wrong-password") && err.contains(&format!("redis://{host}")), "{err}");
    // The right one in the address, or in REDISCLI_AUTH.
    let right = format!("redis://:{secret}@{host}");
    assert_eq!(ok_text(&["get", &right, "k", "--json"]), "7\n");
    let out = bin().env("REDISCLI_AUTH", secret).args(["get", &served.url, "k", "--json"]).assert().success();
    assert_eq!(out.get_output().stdout, b"7\n");
    // A message about a key on it does not show it either.
    let err = absent(&["get", &right, "nobody"]);
    assert!(!err.contains(secret), "{err}");
}

#[test]
fn an_address_nothing_listens_on_is_a_clear_error() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
        l.local_addr().unwrap_or_else(|e| panic!("{e}")).port()
    };
    let url = format!("redis://127.0.0.1:{port}");
    let err = fails_quietly(&["get", &url, "k"]);
    assert!(err.starts_with(&format!("pickleshelf: {url}: cannot use the served store")), "{err}");
    let err = fails_quietly(&["ls", "unix:///nonexistent/pickleshelf.sock"]);
    assert!(err.contains("unix:///nonexistent/pickleshelf.sock: cannot use the served store"), "{err}");
}
