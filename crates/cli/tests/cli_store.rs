//! The store subcommands (`ls`, `get`, `put`, `rm`, `stats`, `verify`, `gc`, `import`,
//! `export`) run as a user runs them: output, exit status (0 success, 1 a damaged
//! store, 2 a failure with one line on stderr or a usage error, 3 a key that is not
//! there), nothing on stderr when it is not a terminal, progress bars when it is (under `script`), and a store left unchanged by
//! every failure.

mod common;

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command as StdCommand, Stdio};

use common::cli::*;
use pickleshelf::{Shelf, pickle};

fn pickle_of(shelf_path: &Path, key: &str) -> Option<Vec<u8>> {
    let shelf = Shelf::builder(shelf_path).read_only(true).open().unwrap_or_else(|e| panic!("{e}"));
    shelf.get_pickle(key).unwrap_or_else(|e| panic!("{e}"))
}

/// Everything `ls --long` shows: to check a store did not change.
fn listing(store: &Path) -> String {
    ok_text(&["ls", &s(store), "--long"])
}

#[test]
fn every_subcommand_has_a_manual_with_an_example() {
    for sub in subcommands() {
        let sub = sub.as_str();
        // `serve`'s manual is docs/SERVER.md: its --help has no examples or exit statuses yet.
        if sub == "serve" {
            continue;
        }
        let text = ok_text(&[sub, "--help"]);
        assert!(text.contains("Example"), "{sub} --help has no example:\n{text}");
        if sub != "pickle" {
            assert!(text.contains("Usage: pickleshelf ") && text.contains("Exit status:"), "{sub}:\n{text}");
            let short = ok_text(&[sub, "-h"]);
            assert!(short.contains("Examples:"), "{sub} -h:\n{short}");
        }
    }
    assert!(ok_text(&["help", "export"]).contains("shelve.open"));
}

#[test]
fn usage_errors_exit_2() {
    let cases: &[&[&str]] = &[
        &[],
        &["ls"],
        &["get", "s.db"],
        &["get", "s.db", "k", "--json", "--raw"],
        &["get", "s.db", "k", "--tagged", "--format", "json"],
        &["get", "s.db", "k", "--format", "yaml"],
        &["put", "s.db", "k"],
        &["put", "s.db", "k", "--json", "a", "--pickle", "b"],
        &["put", "s.db", "k", "--json", "a", "-"],
        &["put", "s.db", "k", "-", "--format", "repr"],
        &["put", "s.db", "k", "--tagged", "a", "--format", "json"],
        &["put", "s.db", "k", "-", "--protocol", "6"],
        &["rm", "s.db"],
        &["import", "s.db"],
        &["import", "s.db", "--shelve", "x", "--dir", "y"],
        &["export", "s.db", "--dbm", "sqlite3", "--dir", "d"],
        &["export", "s.db", "--shelve", "x", "--dbm", "gdbm"],
        &["stats", "s.db", "--frobnicate"],
        &["salvage", "s.db"],
        &["repair"],
    ];
    for args in cases {
        let out = bin().args(*args).assert().code(2).get_output().clone();
        assert!(out.stdout.is_empty(), "{args:?}");
        assert!(!out.stderr.is_empty(), "{args:?}");
    }
}

#[test]
fn ls_lists_keys_in_order() {
    let dir = tmp();
    let store = sample_store(dir.path());
    let st = s(&store);
    assert_eq!(ok_text(&["ls", &st]), "a\nb\nbig\nbig2\nuser:1\nuser:2\n");
    assert_eq!(ok_text(&["ls", &st, "--prefix", "user:"]), "user:1\nuser:2\n");
    assert_eq!(ok_text(&["ls", &st, "-p", "nothing"]), "");
    assert_eq!(ok(&["ls", &st, "-0", "-p", "user"]), b"user:1\0user:2\0");

    let long = ok_text(&["ls", &st, "--long"]);
    let shelf = Shelf::builder(&store).read_only(true).open().unwrap_or_else(|e| panic!("{e}"));
    let lines: Vec<&str> = long.lines().collect();
    assert_eq!(lines.len(), 6, "{long}");
    for line in lines {
        let cols: Vec<&str> = line.split_whitespace().collect();
        let key = cols[5];
        let bytes = shelf.get_pickle(key).unwrap_or_else(|e| panic!("{e}")).unwrap_or_default();
        assert_eq!(cols[0], bytes.len().to_string(), "{line}");
        let digest = shelf.digest(key).unwrap_or_else(|e| panic!("{e}")).map(|d| d.to_string());
        assert_eq!(Some(cols[4].to_owned()), digest, "{line}");
        if key.starts_with("big") {
            assert_eq!(cols[3], "2", "shared by two keys: {line}");
        } else {
            assert_eq!((cols[2], cols[3]), ("raw", "-"), "{line}");
        }
    }
}

#[test]
fn commands_on_a_missing_store_fail_without_creating_it() {
    let dir = tmp();
    let missing = dir.path().join("nope.db");
    let m = s(&missing);
    for args in [
        vec!["ls", &m],
        vec!["get", &m, "k"],
        vec!["rm", &m, "k"],
        vec!["stats", &m],
        vec!["verify", &m],
        vec!["gc", &m],
        vec!["export", &m, "--dir", "x"],
    ] {
        let err = fails(&args);
        assert!(err.ends_with("nope.db: no such store\n"), "{args:?}: {err}");
    }
    assert!(!missing.exists());
    // A directory that is not a store is named as such, and never turned into one.
    let plain = dir.path().join("plain");
    fs::create_dir(&plain).unwrap_or_else(|e| panic!("{e}"));
    fs::write(plain.join("notes.txt"), b"x").unwrap_or_else(|e| panic!("{e}"));
    assert!(fails(&["ls", &s(&plain)]).contains("plain: not a pickleshelf store"));
    let err = fails_in(&["put", &s(&plain), "k", "-"], Some(b"\x80\x04K\x01.".to_vec()));
    assert!(err.contains("exists and is not a pickleshelf store; not turning it into one"), "{err}");
    assert!(!plain.join("sled").exists());
}

#[test]
fn get_prints_json_repr_or_raw() {
    let dir = tmp();
    let store = sample_store(dir.path());
    let st = s(&store);
    let raw = pickle_of(&store, "user:1").unwrap_or_default();
    assert_eq!(ok(&["get", &st, "user:1", "--raw"]), raw);
    let value = pickle::decode(&raw).unwrap_or_else(|e| panic!("{e}"));
    let json = format!("{}\n", pickle::to_tagged_json(&value));
    assert_eq!(ok_text(&["get", &st, "user:1", "--tagged"]), json);
    assert_eq!(ok_text(&["get", &st, "user:1", "--format", "tagged"]), json);
    assert_eq!(ok_text(&["get", &st, "user:1"]), json, "tagged JSON is the default when stdout is not a terminal");
    assert_eq!(ok_text(&["get", &st, "user:1", "--repr"]), "('Ada', 36)\n");
    assert_eq!(ok_text(&["get", &st, "user:1", "-f", "repr"]), "('Ada', 36)\n");
    // Plain JSON: a tuple is an array.
    assert_eq!(ok_text(&["get", &st, "user:1", "--json"]), "[\"Ada\",36]\n");
    assert_eq!(ok_text(&["get", &st, "user:1", "--format", "json"]), "[\"Ada\",36]\n");
    assert_eq!(ok(&["get", &st, "user:1", "--format", "pickle"]), raw);
    let big = ok(&["get", &st, "big", "--raw"]);
    assert_eq!(big, bytes_pickle(&noise(20_000, 7)));

    let err = absent(&["get", &st, "user:3"]);
    assert!(err.ends_with("state.db: no key \"user:3\"\n"), "{err}");
    // A key that looks like an option, after --.
    assert!(absent(&["get", &st, "--", "-x"]).contains("no key \"-x\""));
}

#[test]
fn put_stores_json_pickles_and_stdin() {
    let dir = tmp();
    let store = dir.path().join("new.db");
    let st = s(&store);
    // JSON from a file, into a store that does not exist yet.
    let json_file = dir.path().join("v.json");
    fs::write(&json_file, r#"{"dict":[[{"str":"a"},{"list":[{"int":"1"},{"float":"2.5"}]}]]}"#)
        .unwrap_or_else(|e| panic!("{e}"));
    ok(&["put", &st, "cfg", "--tagged", &s(&json_file)]);
    assert_eq!(ok_text(&["get", &st, "cfg", "--repr"]), "{'a': [1, 2.5]}\n");
    assert!(pickle_of(&store, "cfg").unwrap_or_default().starts_with(b"\x80\x04"));
    // ...with another protocol.
    ok(&["put", &st, "cfg2", "--tagged", &s(&json_file), "--protocol", "2"]);
    assert!(pickle_of(&store, "cfg2").unwrap_or_default().starts_with(b"\x80\x02"));
    // A pickle, byte for byte (protocol 0, which the encoder never writes).
    let p0 = b"(lp0\nI1\naI2\na.".to_vec();
    let pkl = dir.path().join("v.pkl");
    fs::write(&pkl, &p0).unwrap_or_else(|e| panic!("{e}"));
    ok(&["put", &st, "p0", "--pickle", &s(&pkl)]);
    assert_eq!(pickle_of(&store, "p0"), Some(p0.clone()));
    // stdin (or a file): a pickle, or plain JSON when it starts as JSON does.
    ok_in(&["put", &st, "from-stdin", "-"], Some(p0.clone()));
    assert_eq!(pickle_of(&store, "from-stdin"), Some(p0.clone()));
    ok(&["put", &st, "from-file", &s(&pkl)]);
    assert_eq!(pickle_of(&store, "from-file"), Some(p0));
    ok_in(&["put", &st, "json-stdin", "-"], Some(b"  \n{\"a\": 1, \"b\": [true, null, 2.5]}".to_vec()));
    assert_eq!(ok_text(&["get", &st, "json-stdin", "--repr"]), "{'a': 1, 'b': [True, None, 2.5]}\n");
    // What Python's pickle.dumps({'a': 1, 'b': [True, None, 2.5]}, 4) writes.
    let python = b"\x80\x04\x95\x1e\x00\x00\x00\x00\x00\x00\x00}\x94(\x8c\x01a\x94K\x01\x8c\x01b\x94]\x94(\x88NG@\x04\x00\x00\x00\x00\x00\x00eu.";
    assert_eq!(pickle_of(&store, "json-stdin").as_deref(), Some(&python[..]));
    for (text, repr) in [
        ("[1, 2]", "[1, 2]"),
        ("\"s\"", "'s'"),
        ("-7", "-7"),
        ("3.5", "3.5"),
        ("true", "True"),
        ("false", "False"),
        ("null", "None"),
    ] {
        ok_in(&["put", &st, "plain", "-"], Some(text.as_bytes().to_vec()));
        assert_eq!(ok_text(&["get", &st, "plain", "--repr"]), format!("{repr}\n"), "{text}");
        assert_eq!(ok_text(&["get", &st, "plain", "--json"]), format!("{}\n", text.replace(' ', "")), "{text}");
    }
    let plain_file = dir.path().join("plain.json");
    fs::write(&plain_file, "{\"x\": [1]}").unwrap_or_else(|e| panic!("{e}"));
    ok(&["put", &st, "pf", &s(&plain_file)]);
    ok(&["put", &st, "pf2", "--json", &s(&plain_file)]);
    ok(&["put", &st, "pf3", &s(&plain_file), "--format", "json"]);
    for k in ["pf", "pf2", "pf3"] {
        assert_eq!(ok_text(&["get", &st, k, "--json"]), "{\"x\":[1]}\n");
    }
    // Tagged JSON only when asked for: the same text read as plain JSON is a dict.
    ok_in(&["put", &st, "json-dash", "--tagged", "-"], Some(b"{\"none\":null}".to_vec()));
    assert_eq!(ok_text(&["get", &st, "json-dash", "--repr"]), "None\n");
    ok_in(&["put", &st, "json-dash", "-", "--format", "tagged"], Some(b"{\"bool\":true}".to_vec()));
    assert_eq!(ok_text(&["get", &st, "json-dash", "--repr"]), "True\n");
    ok_in(&["put", &st, "json-dash", "-"], Some(b"{\"bool\":true}".to_vec()));
    assert_eq!(ok_text(&["get", &st, "json-dash", "--repr"]), "{'bool': True}\n");
    // A pickle given as --format pickle, and a tagged round trip of get --tagged.
    ok_in(&["put", &st, "fp", "-", "-f", "pickle"], Some(b"\x80\x04K\x07.".to_vec()));
    assert_eq!(ok_text(&["get", &st, "fp", "--json"]), "7\n");
    let tagged = ok(&["get", &st, "json-stdin", "--tagged"]);
    ok_in(&["put", &st, "copy", "--tagged", "-"], Some(tagged));
    assert_eq!(pickle_of(&store, "copy").as_deref(), Some(&python[..]));
}

#[test]
fn get_json_refuses_what_json_cannot_hold() {
    let dir = tmp();
    let store = sample_store(dir.path());
    let st = s(&store);
    // "big" holds bytes: plain JSON has no form for them; tagged JSON does.
    let (stdout, err) = fails_with(FAILED, &["get", &st, "big", "--json"], None);
    assert!(stdout.is_empty());
    assert!(
        err.ends_with(
            "state.db: key \"big\": plain JSON: a bytes value has no JSON form, at $ (tagged JSON keeps it)\n"
        ),
        "{err}"
    );
    assert!(ok_text(&["get", &st, "big", "--tagged"]).starts_with("{\"bytes\":\""));
}

#[test]
fn put_rejects_bad_input_and_changes_nothing() {
    let dir = tmp();
    let store = dir.path().join("s.db");
    let st = s(&store);
    // Nothing valid: the store is not even created.
    let err = fails_in(&["put", &st, "k", "-"], Some(b"\x80\x04\xff".to_vec()));
    assert!(err.contains("<stdin>: pickle decode failed at byte 2: unknown opcode 0xff"), "{err}");
    assert!(!store.exists());
    ok_in(&["put", &st, "k", "-"], Some(b"\x80\x04K\x01.".to_vec()));
    let before = listing(&store);
    // Plain JSON (detected, or asked for), tagged JSON, a pickle: each way in refuses
    // bad input with one line naming the input, the offset and the problem.
    let bad: &[(&[&str], &[u8], &str)] = &[
        (&["-"], b"{\"int\": oops}", "<stdin>: plain JSON: invalid at byte 8: expected a JSON value, found 'o'"),
        (&["-"], b"[1, 2", "<stdin>: plain JSON: invalid at byte 5: expected ',' or ']' in an array, found the end"),
        (&["-"], b"1e999", "<stdin>: plain JSON: invalid at byte 0: number 1e999 is out of the range of a float"),
        (&["-"], b"{\"a\": \"\xff\"}", "<stdin>: the text is not UTF-8 (invalid byte at offset 7)"),
        (&["-", "--format", "json"], b"\x80\x04K\x01.", "<stdin>: the text is not UTF-8 (invalid byte at offset 0)"),
        (
            &["-", "--format", "json"],
            b"NaN",
            "<stdin>: plain JSON: invalid at byte 0: expected a JSON value, found 'N'",
        ),
        (&["-", "--format", "tagged"], b"{\"a\": 1}", "<stdin>: tagged JSON invalid at byte 1: unknown tag \"a\""),
        (&["--tagged", "-"], br#"{"object":{"module":"m","name":"n"}}"#, "object nodes cannot be built"),
        (&["-", "--format", "pickle"], b"{\"a\": 1}", "<stdin>: pickle decode failed at byte 0"),
        (&["-"], b"", "<stdin>: pickle decode failed at byte 0"),
    ];
    for (args, input, want) in bad {
        let mut all = vec!["put", st.as_str(), "k"];
        all.extend_from_slice(args);
        let err = fails_in(&all, Some(input.to_vec()));
        assert!(err.contains(want), "{args:?} {:?}: {err}", String::from_utf8_lossy(input));
    }
    let digits = format!("[{}]", "1".repeat(4301));
    let err = fails_in(&["put", &st, "k", "-"], Some(digits.into_bytes()));
    assert!(err.contains("int has 4301 digits, over the limit of 4300"), "{err}");
    let bad_file = dir.path().join("bad.json");
    fs::write(&bad_file, "{\"a\": [1,}").unwrap_or_else(|e| panic!("{e}"));
    let err = fails(&["put", &st, "k", &s(&bad_file)]);
    assert!(err.contains("bad.json: plain JSON: invalid at byte 9: expected a JSON value, found '}'"), "{err}");
    let err = fails(&["put", &st, "k", "--json", &s(&bad_file)]);
    assert!(err.contains("bad.json: plain JSON: invalid at byte 9"), "{err}");
    let err = fails(&["put", &st, "k", &s(&dir.path().join("absent.json"))]);
    assert!(err.contains("cannot read") && err.contains("absent.json"), "{err}");
    let err = fails(&["put", &st, "k", "--pickle", &s(&dir.path().join("absent.pkl"))]);
    assert!(err.contains("cannot read") && err.contains("absent.pkl"), "{err}");
    let long_key = "k".repeat(1025);
    let err = fails_in(&["put", &st, &long_key, "-"], Some(b"\x80\x04K\x01.".to_vec()));
    assert!(err.contains("1025 bytes long; at most 1024"), "{err}");
    assert_eq!(listing(&store), before);
}

#[test]
fn rm_removes_all_keys_or_none() {
    let dir = tmp();
    let store = sample_store(dir.path());
    let st = s(&store);
    ok(&["rm", &st, "a", "b"]);
    assert_eq!(ok_text(&["ls", &st]), "big\nbig2\nuser:1\nuser:2\n");
    let err = absent(&["rm", &st, "user:1", "ghost"]);
    assert!(err.ends_with("state.db: no key \"ghost\" (nothing removed)\n"), "{err}");
    assert_eq!(ok_text(&["ls", &st]), "big\nbig2\nuser:1\nuser:2\n");
    ok(&["rm", &st, "--force", "user:1", "ghost"]);
    assert_eq!(ok_text(&["ls", &st]), "big\nbig2\nuser:2\n");
    // Removing both keys of a shared object frees it.
    ok(&["rm", &st, "big", "big2"]);
    assert!(ok_text(&["stats", &st]).contains("values in objects  0 (0 objects)"));
}

#[test]
fn stats_in_text_and_json() {
    let dir = tmp();
    let store = sample_store(dir.path());
    let st = s(&store);
    let text = ok_text(&["stats", &st]);
    for want in
        ["format version     4\n", "keys               6\n", "values in objects  2 (1 objects)\n", "dedup ratio"]
    {
        assert!(text.contains(want), "{want:?} in\n{text}");
    }
    let json: serde_json::Value =
        serde_json::from_slice(&ok(&["stats", &st, "--json"])).unwrap_or_else(|e| panic!("{e}"));
    let n = |k: &str| json.get(k).and_then(serde_json::Value::as_u64).unwrap_or(u64::MAX);
    assert_eq!((n("format_version"), n("keys"), n("objects"), n("object_refs"), n("inline_values")), (4, 6, 1, 2, 4));
    let big = bytes_pickle(&noise(20_000, 7)).len() as u64;
    assert!(n("logical_bytes") > 2 * big && n("unique_bytes") < n("logical_bytes"), "{json}");
    let dedup = json.get("dedup_ratio").and_then(serde_json::Value::as_f64).unwrap_or(0.0);
    assert!(dedup > 1.8, "{json}");
}

#[test]
fn verify_and_gc_report_and_exit_1_on_damage() {
    let dir = tmp();
    let store = sample_store(dir.path());
    let st = s(&store);
    assert_eq!(ok_text(&["verify", &st]), "ok: 6 keys, 1 objects, 1 object files checked\n");
    assert_eq!(ok_text(&["gc", &st]), "gc: 6 keys checked, 0 repaired, 0 problems left\n");
    damage_object(&store);
    let out = bin().args(["verify", &st]).assert().code(1).get_output().clone();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.lines().filter(|l| l.starts_with("problem: key \"big")).count(), 2, "{stdout}");
    assert_eq!(String::from_utf8_lossy(&out.stderr), format!("pickleshelf: {st}: verify found 2 problems\n"));
    // gc reports a damaged value and leaves it (it is not repairable).
    let out = bin().args(["gc", &st]).assert().code(1).get_output().clone();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.ends_with("gc: 6 keys checked, 0 repaired, 2 problems left\n"), "{stdout}");
    assert_eq!(String::from_utf8_lossy(&out.stderr), format!("pickleshelf: {st}: 2 problems gc cannot repair\n"));
    // Reading the damaged key is an error naming it (status 1: damaged); the others
    // still read.
    let err = fails_quietly_with(DAMAGED, &["get", &st, "big"]);
    assert!(err.contains("corrupted object") && err.contains("of key \"big\""), "{err}");
    ok(&["get", &st, "a"]);
}

#[test]
fn a_locked_store_is_one_clear_line() {
    let dir = tmp();
    let store = sample_store(dir.path());
    let st = s(&store);
    let held = Shelf::open(&store).unwrap_or_else(|e| panic!("{e}"));
    for args in [vec!["ls", st.as_str()], vec!["put", &st, "k", "--json", "-"], vec!["verify", &st]] {
        let err = fails_in(&args, Some(b"{\"none\":null}".to_vec()));
        assert!(
            err.contains(&format!("store is locked by another process (pid {}", std::process::id())),
            "{args:?}: {err}"
        );
    }
    drop(held);
    ok(&["ls", &st]);
}

#[test]
fn auth_key_file_opens_authenticated_stores() {
    let dir = tmp();
    let store = dir.path().join("auth.db");
    let st = s(&store);
    let key = dir.path().join("key");
    fs::write(&key, b"correct horse battery staple\n").unwrap_or_else(|e| panic!("{e}"));
    let k = s(&key);
    ok_in(&["put", &st, "secret", "-", "--auth-key-file", &k], Some(b"\x80\x04K\x2a.".to_vec()));
    assert_eq!(ok_text(&["get", &st, "secret", "--repr", "--auth-key-file", &k]), "42\n");
    // The file's trailing newline is not part of the key: the library opens it with the bare bytes.
    let shelf = Shelf::builder(&store).read_only(true).auth_key(&b"correct horse battery staple"[..]).open();
    assert!(shelf.is_ok());
    drop(shelf);
    let err = fails(&["ls", &st]);
    assert!(err.contains("auth key mismatch") && err.contains("requires an auth key"), "{err}");
    let wrong = dir.path().join("wrong");
    fs::write(&wrong, b"incorrect horse battery staple").unwrap_or_else(|e| panic!("{e}"));
    assert!(fails(&["ls", &st, "--auth-key-file", &s(&wrong)]).contains("not the store's key"));
    let short = dir.path().join("short");
    fs::write(&short, b"tiny\n").unwrap_or_else(|e| panic!("{e}"));
    assert!(fails(&["ls", &st, "--auth-key-file", &s(&short)]).contains("at least 16 are needed"));
    assert!(fails(&["ls", &st, "--auth-key-file", &s(&dir.path().join("none"))]).contains("cannot read auth key file"));
}

#[test]
fn read_only_refuses_every_write() {
    let dir = tmp();
    let store = sample_store(dir.path());
    let st = s(&store);
    let before = listing(&store);
    let shelve = dir.path().join("py");
    ok(&["export", &st, "--shelve", &s(&shelve)]);
    for args in [
        vec!["put", st.as_str(), "k", "-", "--read-only"],
        vec!["rm", &st, "a", "--read-only"],
        vec!["gc", &st, "--read-only"],
        vec!["import", &st, "--shelve", shelve.to_str().unwrap_or_default(), "--read-only"],
    ] {
        let err = fails_in(&args, Some(b"\x80\x04K\x01.".to_vec()));
        assert!(err.ends_with(&format!("store is open read-only: {st}\n")), "{args:?}: {err}");
    }
    assert_eq!(listing(&store), before);
    ok(&["ls", &st, "--read-only"]);
}

#[test]
fn a_closed_pipe_exits_quietly() {
    let dir = tmp();
    let store = dir.path().join("many.db");
    let shelf = Shelf::open(&store).unwrap_or_else(|e| panic!("{e}"));
    let mut batch = pickleshelf::Batch::new();
    for i in 0..20_000 {
        batch.insert_pickle(&format!("key-{i:06}-with-some-length"), b"\x80\x04N.").unwrap_or_else(|e| panic!("{e}"));
    }
    shelf.apply(batch).unwrap_or_else(|e| panic!("{e}"));
    shelf.close().unwrap_or_else(|e| panic!("{e}"));
    for args in [vec!["ls"], vec!["ls", "--long"]] {
        let mut child = StdCommand::new(bin_path())
            .args(&args)
            .arg(&store)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{e}"));
        let stdout = child.stdout.take().unwrap_or_else(|| panic!("no stdout"));
        let mut first = String::new();
        BufReader::new(stdout).read_line(&mut first).unwrap_or_else(|e| panic!("{e}"));
        // The reader is dropped here: the pipe closes with most of the output unread.
        let out = child.wait_with_output().unwrap_or_else(|e| panic!("{e}"));
        assert!(first.contains("key-000000"), "{first}");
        assert!(out.status.success(), "{args:?}: {:?}", out.status);
        assert_eq!(String::from_utf8_lossy(&out.stderr), "", "{args:?}");
    }
}

#[test]
fn export_and_import_round_trip_through_every_format() {
    let dir = tmp();
    let store = sample_store(dir.path());
    let st = s(&store);
    let before = listing(&store);
    let targets: [(&str, Vec<&str>); 3] =
        [("shelve", vec!["--shelve"]), ("sqlite", vec!["--dbm", "sqlite3", "--shelve"]), ("dir", vec!["--dir"])];
    for (name, flags) in targets {
        let out = dir.path().join(format!("out-{name}"));
        let mut args = vec!["export", st.as_str()];
        args.extend(&flags);
        let o = s(&out);
        args.push(&o);
        let said = ok_text(&args);
        assert!(said.starts_with("exported 6 keys ("), "{said}");
        // Not twice without --force; with it, replaced.
        let err = fails(&args);
        assert!(err.contains("already exists; use --force to replace it"), "{err}");
        args.push("--force");
        ok(&args);

        let copy = dir.path().join(format!("copy-{name}.db"));
        let mut imp = vec!["import", copy.to_str().unwrap_or_default()];
        imp.push(if name == "dir" { "--dir" } else { "--shelve" });
        imp.push(&o);
        let said = ok_text(&imp);
        assert!(said.starts_with("imported 6 keys (") && said.ends_with("; 0 replaced\n"), "{said}");
        assert_eq!(listing(&copy), before, "{name}");
        // Again: every key is replaced by the same value.
        assert!(ok_text(&imp).ends_with("; 6 replaced\n"));
        assert_eq!(listing(&copy), before, "{name}");
    }
    // --prefix exports a part.
    let part = dir.path().join("part");
    ok(&["export", &st, "--dir", &s(&part), "--prefix", "user:"]);
    let copy = dir.path().join("part.db");
    ok(&["import", &s(&copy), "--dir", &s(&part)]);
    assert_eq!(ok_text(&["ls", &s(&copy)]), "user:1\nuser:2\n");
}

#[test]
fn bad_import_files_leave_the_store_unchanged() {
    let dir = tmp();
    let store = sample_store(dir.path());
    let st = s(&store);
    let before = listing(&store);
    let d = dir.path();
    let write = |name: &str, bytes: &[u8]| fs::write(d.join(name), bytes).unwrap_or_else(|e| panic!("{e}"));

    // A .dir cut short in its last line (the first keys are fine and must not go in).
    write("cut.dat", &[b"\x80\x04K\x01.".as_slice(), &[0; 507], b"\x80\x04K\x02."].concat());
    write("cut.dir", b"'a', (0, 5)\n'new', (512, 5)\n'c', (51");
    let err = fails(&["import", &st, "--shelve", &s(&d.join("cut"))]);
    assert!(err.contains("cut.dir: line 3: expected ',' after the offset") && err.contains("cut short"), "{err}");
    // A .dat offset past the end.
    write("short.dat", b"\x80\x04K\x01.");
    write("short.dir", b"'a', (0, 5)\n'b', (512, 5)\n");
    let err = fails(&["import", &st, "--shelve", &s(&d.join("short"))]);
    assert!(err.contains("short.dir: line 2: key \"b\" has its value at bytes 512..517, past the end of"), "{err}");
    // A value that is not a pickle.
    write("junk.dat", b"\x80\x04K\x01.not a pickle");
    write("junk.dir", b"'a', (0, 5)\n'b', (5, 12)\n");
    let err = fails(&["import", &st, "--shelve", &s(&d.join("junk"))]);
    assert!(err.contains("junk: key \"b\": pickle decode failed at byte 0"), "{err}");
    // An SQLite file that is not a shelve.
    let other = d.join("other.sqlite");
    let conn = rusqlite::Connection::open(&other).unwrap_or_else(|e| panic!("{e}"));
    conn.execute_batch("CREATE TABLE users (id INTEGER, name TEXT)").unwrap_or_else(|e| panic!("{e}"));
    drop(conn);
    let err = fails(&["import", &st, "--shelve", &s(&other)]);
    assert!(err.contains("other.sqlite: an SQLite database but not a dbm.sqlite3 shelve: no table Dict"), "{err}");
    // Not a shelve at all; a dbm.dumb file named with its suffix.
    write("text", b"hello");
    assert!(fails(&["import", &st, "--shelve", &s(&d.join("text"))]).contains("not a shelve pickleshelf reads"));
    assert!(fails(&["import", &st, "--shelve", &s(&d.join("cut.dir"))]).contains("without its .dat/.dir suffix"));
    assert!(fails(&["import", &st, "--shelve", &s(&d.join("absent"))]).contains("no shelve here"));
    // An export directory whose manifest points outside it.
    fs::create_dir(d.join("evil")).unwrap_or_else(|e| panic!("{e}"));
    write("evil/manifest.json", br#"{"format":"pickleshelf-dir/1","entries":[{"key":"a","file":"../cut.dat"}]}"#);
    let err = fails(&["import", &st, "--dir", &s(&d.join("evil"))]);
    assert!(err.contains("entry 0: file \"../cut.dat\" is not a plain file name in this directory"), "{err}");

    assert_eq!(listing(&store), before);
    // Nothing valid, no store: none is created.
    let fresh = d.join("fresh.db");
    fails(&["import", &s(&fresh), "--shelve", &s(&d.join("cut"))]);
    assert!(!fresh.exists());
}

#[test]
fn export_refuses_to_replace_a_foreign_directory() {
    let dir = tmp();
    let store = sample_store(dir.path());
    let home = dir.path().join("home");
    fs::create_dir(&home).unwrap_or_else(|e| panic!("{e}"));
    fs::write(home.join("precious.txt"), b"keep").unwrap_or_else(|e| panic!("{e}"));
    let err = fails(&["export", &s(&store), "--dir", &s(&home), "--force"]);
    assert!(err.contains("home: exists and is not an export directory; not replacing it"), "{err}");
    assert_eq!(fs::read(home.join("precious.txt")).unwrap_or_default(), b"keep");
    // An empty directory is fine.
    let empty = dir.path().join("empty");
    fs::create_dir(&empty).unwrap_or_else(|e| panic!("{e}"));
    ok(&["export", &s(&store), "--dir", &s(&empty)]);
    assert!(empty.join("manifest.json").is_file());
}

#[test]
fn progress_bars_and_repr_show_on_a_terminal() {
    let dir = tmp();
    let store = dir.path().join("big.db");
    let shelf = Shelf::open(&store).unwrap_or_else(|e| panic!("{e}"));
    let mut batch = pickleshelf::Batch::new();
    for i in 0..3_000u64 {
        batch.insert_pickle(&format!("k{i:05}"), &bytes_pickle(&noise(2_000, i))).unwrap_or_else(|e| panic!("{e}"));
    }
    shelf.apply(batch).unwrap_or_else(|e| panic!("{e}"));
    shelf.close().unwrap_or_else(|e| panic!("{e}"));
    let b = s(&bin_path());
    let st = s(&store);
    let shelve = s(&dir.path().join("py"));
    let copy = s(&dir.path().join("copy.db"));
    // Without a terminal: nothing on stderr (the helpers assert it).
    ok(&["verify", &st]);
    let commands = [
        (format!("{b} export {st} --shelve {shelve}"), "exporting"),
        (format!("{b} import {copy} --shelve {shelve}"), "importing"),
        (format!("{b} verify {copy}"), "verifying"),
        (format!("{b} gc {copy}"), "collecting"),
    ];
    for (command, phase) in commands {
        let Some(screen) = on_a_terminal(&command) else { return };
        assert!(screen.contains(phase) && screen.contains("] "), "{command}: no {phase} bar in {screen:?}");
        assert!(screen.contains("/3000") || screen.contains("/3,000"), "{command}: {screen:?}");
    }
    // `get` prints a repr for people on a terminal, JSON otherwise.
    let Some(screen) = on_a_terminal(&format!("{b} get {st} k00001")) else { return };
    assert!(screen.starts_with("b'"), "{screen:?}");
    assert!(ok_text(&["get", &st, "k00001"]).starts_with("{\"bytes\":\""));
}
