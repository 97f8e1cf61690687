//! The `checkpoint` subcommands (`create`, `ls`, `diff`, `restore`, `rm`) and `get --at`
//! run as a user runs them: output, exit status (0 success, 1 operational error with one
//! line on stderr, 2 usage error), what they leave in the store, and a store left
//! unchanged by every failure.

mod common;

use std::fs;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use common::cli::*;
use pickleshelf::{CheckpointInfo, Shelf};

/// The store's checkpoints, as the library lists them.
fn checkpoints(store: &Path) -> Vec<CheckpointInfo> {
    let shelf = Shelf::builder(store).read_only(true).open().unwrap_or_else(|e| panic!("{e}"));
    shelf.checkpoints().unwrap_or_else(|e| panic!("{e}"))
}

/// Everything `ls --long` and `checkpoint ls` show: to check a store did not change.
fn state(store: &Path) -> String {
    let st = s(store);
    ok_text(&["ls", &st, "--long"]) + &ok_text(&["checkpoint", "ls", &st])
}

/// Every key with its size and digest (`ls --long` less its sharing column, which counts
/// the references checkpoints hold too).
fn values(store: &Path) -> Vec<String> {
    let long = ok_text(&["ls", &s(store), "--long"]);
    long.lines()
        .map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            format!("{} {} {}", cols[0], cols[4], cols[5..].join(" "))
        })
        .collect()
}

/// `human_bytes` of the CLI for sizes of at least 1 KiB and under 1 MiB.
fn kib(n: u64) -> String {
    format!("{:.1} KiB", n as f64 / 1024.0)
}

/// Seconds since 1970 of `2025-03-01T09:30:00Z`: the inverse of the CLI's conversion,
/// by another route (days before each year and month).
fn parse_utc(t: &str) -> u64 {
    let b = t.as_bytes();
    assert!(t.len() == 20 && b[4] == b'-' && b[7] == b'-' && b[10] == b'T' && b[19] == b'Z', "{t}");
    assert!(b[13] == b':' && b[16] == b':', "{t}");
    let n = |r: std::ops::Range<usize>| t[r].parse::<u64>().unwrap_or_else(|e| panic!("{t}: {e}"));
    let (year, month, day) = (n(0..4), n(5..7), n(8..10));
    let leap = |y: u64| y.is_multiple_of(4) && (!y.is_multiple_of(100) || y.is_multiple_of(400));
    let mut days: u64 = (1970..year).map(|y| if leap(y) { 366 } else { 365 }).sum();
    let lengths = [31, if leap(year) { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    days += lengths[..(month - 1) as usize].iter().sum::<u64>() + day - 1;
    days * 86_400 + n(11..13) * 3600 + n(14..16) * 60 + n(17..19)
}

fn secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[test]
fn every_checkpoint_subcommand_has_a_manual_with_an_example() {
    let top = ok_text(&["--help"]);
    assert!(top.contains("\n  checkpoint "), "{top}");
    let group = ok_text(&["checkpoint", "--help"]);
    assert!(group.contains("Examples:") && group.contains("Exit status:"), "{group}");
    for sub in ["create", "ls", "diff", "restore", "rm"] {
        assert!(group.contains(&format!("\n  {sub} ")), "{sub} missing from checkpoint --help:\n{group}");
        let text = ok_text(&["checkpoint", sub, "--help"]);
        assert!(text.contains(&format!("Usage: pickleshelf checkpoint {sub} STORE")), "{sub}:\n{text}");
        assert!(text.contains("Examples:") && text.contains("Exit status:"), "{sub}:\n{text}");
        assert!(ok_text(&["checkpoint", sub, "-h"]).contains("Examples:"), "{sub} -h");
        assert_eq!(ok_text(&["help", "checkpoint", sub]), text);
    }
}

#[test]
fn usage_errors_exit_2() {
    let cases: &[&[&str]] = &[
        &["checkpoint"],
        &["checkpoint", "frobnicate", "s.db"],
        &["checkpoint", "create", "s.db"],
        &["checkpoint", "create", "s.db", "a", "b"],
        &["checkpoint", "ls"],
        &["checkpoint", "ls", "s.db", "extra"],
        &["checkpoint", "diff", "s.db"],
        &["checkpoint", "diff", "s.db", "v1", "v2", "v3"],
        &["checkpoint", "restore", "s.db"],
        &["checkpoint", "restore", "s.db", "v1", "v2"],
        &["checkpoint", "rm", "s.db"],
    ];
    for args in cases {
        let out = bin().args(*args).assert().code(2).get_output().clone();
        assert!(out.stdout.is_empty(), "{args:?}");
        assert!(!out.stderr.is_empty(), "{args:?}");
    }
}

#[test]
fn create_records_the_store_and_ls_lists_checkpoints() {
    let dir = tmp();
    let store = sample_store(dir.path());
    let st = s(&store);
    let keys = values(&store);
    assert_eq!(ok_text(&["checkpoint", "ls", &st]), "", "no checkpoints yet");

    let start = secs(SystemTime::now());
    let said = ok_text(&["checkpoint", "create", &st, "v2-later"]);
    let end = secs(SystemTime::now());
    let cps = checkpoints(&store);
    assert_eq!(cps.len(), 1);
    let (name, n, bytes) = (cps[0].name.as_str(), cps[0].keys, cps[0].bytes);
    assert_eq!((name, n), ("v2-later", 6));
    // The big value (20 KB) once, though two keys share it.
    assert!((20_000..30_000).contains(&bytes), "{bytes}");
    assert_eq!(said, format!("created checkpoint v2-later: 6 keys ({})\n", kib(bytes)));
    assert_eq!(values(&store), keys, "taking a checkpoint changes no key");

    ok(&["rm", &st, "a", "b"]);
    assert_eq!(
        ok_text(&["checkpoint", "create", &st, "v1 earlier name"]),
        format!("created checkpoint v1 earlier name: 4 keys ({})\n", kib(bytes))
    );

    // Name order; the time in UTC to the second, the key count, the size, the name.
    let listed = ok_text(&["checkpoint", "ls", &st]);
    let lines: Vec<&str> = listed.lines().collect();
    assert_eq!(lines.len(), 2, "{listed}");
    for (line, (name, keys)) in lines.iter().zip([("v1 earlier name", 4), ("v2-later", 6)]) {
        assert_eq!(line[20..], format!(" {keys:>10} {:>10} {name}", kib(bytes)), "{line}");
        let taken = parse_utc(&line[..20]);
        assert!(start <= taken && taken <= secs(SystemTime::now()), "{line}: {start}..");
    }
    let cps = checkpoints(&store);
    assert_eq!(parse_utc(&lines[1][..20]), secs(cps[1].created), "{listed}");
    assert!(parse_utc(&lines[1][..20]) <= end);
    // Listing is read-only.
    assert_eq!(ok_text(&["checkpoint", "ls", &st, "--read-only"]), listed);
}

#[test]
fn failures_name_what_is_wrong_and_change_nothing() {
    let dir = tmp();
    let store = sample_store(dir.path());
    let st = s(&store);
    ok(&["checkpoint", "create", &st, "v1"]);
    let before = state(&store);

    let err = fails_quietly(&["checkpoint", "create", &st, "v1"]);
    assert!(err.ends_with(&format!("{st}: checkpoint \"v1\": a checkpoint of this name exists\n")), "{err}");
    let err = fails_quietly(&["checkpoint", "create", &st, ""]);
    assert!(err.ends_with(&format!("{st}: checkpoint \"\": invalid name: it is empty\n")), "{err}");
    let err = fails_quietly(&["checkpoint", "create", &st, &"n".repeat(256)]);
    assert!(err.ends_with("invalid name: it is longer than 255 bytes\n"), "{err}");
    for args in [
        ["checkpoint", "create", &st, "v2", "--read-only"],
        ["checkpoint", "restore", &st, "v1", "--read-only"],
        ["checkpoint", "rm", &st, "v1", "--read-only"],
    ] {
        let err = fails_quietly(&args);
        assert!(err.ends_with(&format!("store is open read-only: {st}\n")), "{args:?}: {err}");
    }
    // Unknown checkpoints, wherever they are named.
    for args in [
        vec!["checkpoint", "diff", &st, "ghost"],
        vec!["checkpoint", "diff", &st, "ghost", "v1"],
        vec!["checkpoint", "diff", &st, "v1", "ghost"],
        vec!["checkpoint", "restore", &st, "ghost"],
        vec!["checkpoint", "restore", &st, "ghost", "--dry-run"],
        vec!["checkpoint", "restore", &st, ""],
    ] {
        let err = absent(&args);
        let name = if args.contains(&"") { "" } else { "ghost" };
        assert!(err.ends_with(&format!("{st}: checkpoint {name:?}: no such checkpoint\n")), "{args:?}: {err}");
    }
    assert_eq!(state(&store), before);
    ok(&["checkpoint", "create", &st, &"n".repeat(255)]);

    // A missing store is named, and not created.
    let missing = dir.path().join("nope.db");
    let m = s(&missing);
    for args in [
        vec!["checkpoint", "create", &m, "v1"],
        vec!["checkpoint", "ls", &m],
        vec!["checkpoint", "diff", &m, "v1"],
        vec!["checkpoint", "diff", &m, "v1", "v2"],
        vec!["checkpoint", "restore", &m, "v1"],
        vec!["checkpoint", "restore", &m, "v1", "--dry-run"],
        vec!["checkpoint", "rm", &m, "v1"],
        vec!["checkpoint", "rm", &m, "v1", "--force"],
        vec!["get", &m, "a", "--at", "v1"],
    ] {
        let err = fails_quietly(&args);
        assert!(err.ends_with("nope.db: no such store\n"), "{args:?}: {err}");
    }
    assert!(!missing.exists());

    // A locked store.
    let held = Shelf::open(&store).unwrap_or_else(|e| panic!("{e}"));
    for args in [
        vec!["checkpoint", "create", &st, "v3"],
        vec!["checkpoint", "ls", &st],
        vec!["checkpoint", "diff", &st, "v1"],
        vec!["checkpoint", "restore", &st, "v1"],
        vec!["checkpoint", "rm", &st, "v1"],
    ] {
        let err = fails_quietly(&args);
        assert!(
            err.contains(&format!("store is locked by another process (pid {}", std::process::id())),
            "{args:?}: {err}"
        );
    }
    drop(held);
    assert_eq!(checkpoints(&store).len(), 2);
}

/// Changes the sample store: a small value replaced, one removed, one added, and the
/// large shared value replaced under one key and removed under the other.
fn change_sample(store: &Path) {
    let shelf = Shelf::open(store).unwrap_or_else(|e| panic!("{e}"));
    shelf.insert("user:1", &("Ada", 37)).unwrap_or_else(|e| panic!("{e}"));
    shelf.remove("a").unwrap_or_else(|e| panic!("{e}"));
    shelf.insert("c", &"new").unwrap_or_else(|e| panic!("{e}"));
    shelf.insert_pickle("big", &bytes_pickle(&noise(30_000, 8))).unwrap_or_else(|e| panic!("{e}"));
    shelf.remove("big2").unwrap_or_else(|e| panic!("{e}"));
    shelf.close().unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn diff_between_checkpoints_and_since_one() {
    let dir = tmp();
    let store = sample_store(dir.path());
    let st = s(&store);
    ok(&["checkpoint", "create", &st, "v1"]);
    assert_eq!(ok_text(&["checkpoint", "diff", &st, "v1"]), "", "nothing changed: no output, exit 0");
    change_sample(&store);
    let since = "- a\n~ big\n- big2\n+ c\n~ user:1\n";
    assert_eq!(ok_text(&["checkpoint", "diff", &st, "v1"]), since);
    ok(&["checkpoint", "create", &st, "v2"]);
    assert_eq!(ok_text(&["checkpoint", "diff", &st, "v1", "v2"]), since);
    assert_eq!(ok_text(&["checkpoint", "diff", &st, "v2", "v1"]), "+ a\n~ big\n+ big2\n- c\n~ user:1\n");
    assert_eq!(ok_text(&["checkpoint", "diff", &st, "v2"]), "");
    assert_eq!(ok_text(&["checkpoint", "diff", &st, "v1", "v1"]), "");
    assert_eq!(ok(&["checkpoint", "diff", &st, "v1", "v2", "-0"]), since.replace('\n', "\0").into_bytes());
    // A key holding a newline is printed as it is (not on a terminal).
    let shelf = Shelf::open(&store).unwrap_or_else(|e| panic!("{e}"));
    shelf.insert("two\nlines", &1).unwrap_or_else(|e| panic!("{e}"));
    shelf.close().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(ok_text(&["checkpoint", "diff", &st, "v2"]), "+ two\nlines\n");
    assert_eq!(ok(&["checkpoint", "diff", &st, "v2", "--null"]), b"+ two\nlines\0");
}

/// Every key's pickle, as `get --raw` prints it.
fn pickles(store: &Path) -> Vec<(String, Vec<u8>)> {
    let st = s(store);
    let keys = ok_text(&["ls", &st]);
    keys.lines().map(|k| (k.to_owned(), ok(&["get", &st, k, "--raw"]))).collect()
}

#[test]
fn restore_puts_every_value_back() {
    let dir = tmp();
    let store = sample_store(dir.path());
    let st = s(&store);
    let then = pickles(&store);
    let values_then = values(&store);
    ok(&["checkpoint", "create", &st, "v1"]);
    change_sample(&store);
    let now = state(&store);

    // A dry run says what would change, and changes nothing, even on a read-only store.
    let would = ok_text(&["checkpoint", "restore", &st, "v1", "--dry-run"]);
    let lines = "+ a\n~ big\n+ big2\n- c\n~ user:1\n";
    assert_eq!(would, format!("{lines}would restore checkpoint v1: 2 added, 1 removed, 2 changed\n"));
    assert_eq!(ok_text(&["checkpoint", "restore", &st, "v1", "-n", "--read-only"]), would);
    assert_eq!(state(&store), now);

    let done = ok_text(&["checkpoint", "restore", &st, "v1"]);
    assert_eq!(done, format!("{lines}restored checkpoint v1: 2 added, 1 removed, 2 changed\n"));
    assert_eq!(pickles(&store), then, "every value is back, byte for byte");
    assert_eq!(values(&store), values_then);
    assert_eq!(ok_text(&["get", &st, "user:1", "--repr"]), "('Ada', 36)\n");
    assert_eq!(ok_text(&["checkpoint", "diff", &st, "v1"]), "");
    assert!(ok_text(&["checkpoint", "ls", &st]).ends_with(" v1\n"), "the checkpoint stays");
    assert!(ok_text(&["verify", &st]).starts_with("ok: 6 keys, "));
    // Again: nothing to do.
    assert_eq!(
        ok_text(&["checkpoint", "restore", &st, "v1"]),
        "restored checkpoint v1: 0 added, 0 removed, 0 changed\n"
    );
    assert_eq!(
        ok_text(&["checkpoint", "restore", &st, "v1", "-n"]),
        "would restore checkpoint v1: 0 added, 0 removed, 0 changed\n"
    );
}

/// The object files of a store (values of more than 4 KiB each have one).
fn object_files(store: &Path) -> usize {
    let Ok(dirs) = fs::read_dir(store.join("objects")) else { return 0 };
    dirs.flatten()
        .filter(|d| d.file_name() != "tmp")
        .map(|d| fs::read_dir(d.path()).map_or(0, |f| f.flatten().count()))
        .sum()
}

fn stats(store: &Path, field: &str) -> u64 {
    let json: serde_json::Value =
        serde_json::from_slice(&ok(&["stats", &s(store), "--json"])).unwrap_or_else(|e| panic!("{e}"));
    json.get(field).and_then(serde_json::Value::as_u64).unwrap_or_else(|| panic!("{field} in {json}"))
}

#[test]
fn rm_deletes_all_named_or_none_and_frees_their_values() {
    let dir = tmp();
    let store = sample_store(dir.path());
    let st = s(&store);
    ok(&["checkpoint", "create", &st, "v1"]);
    change_sample(&store);
    ok(&["checkpoint", "create", &st, "v2"]);
    ok(&["checkpoint", "create", &st, "v3"]);
    // The old large value is named by v1 only, the new one by "big", v2 and v3; of the
    // keys, only "big" holds an object.
    assert_eq!((stats(&store, "objects"), object_files(&store)), (2, 2));
    assert_eq!((stats(&store, "checkpoints"), stats(&store, "object_refs")), (3, 1));
    assert!(ok_text(&["stats", &st]).contains("\ncheckpoints        3\n"));
    let before = state(&store);

    let err = absent(&["checkpoint", "rm", &st, "v1", "ghost", "v2"]);
    assert!(err.ends_with(&format!("{st}: no checkpoint \"ghost\" (nothing deleted)\n")), "{err}");
    assert_eq!(state(&store), before);

    assert_eq!(ok_text(&["checkpoint", "rm", &st, "v1", "v1"]), "");
    assert_eq!(checkpoints(&store).iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["v2", "v3"]);
    // Its value is gone, record and file; nothing else changed.
    assert_eq!((stats(&store, "objects"), object_files(&store)), (1, 1));
    assert_eq!(ok_text(&["verify", &st]), "ok: 5 keys, 1 objects, 1 object files checked\n");
    assert_eq!(ok_text(&["gc", &st]), "gc: 5 keys checked, 0 repaired, 0 problems left\n");
    assert!(absent(&["checkpoint", "diff", &st, "v1"]).contains("checkpoint \"v1\": no such checkpoint"));
    assert_eq!(ok_text(&["checkpoint", "diff", &st, "v2", "v3"]), "");

    // --force ignores names that are not checkpoints.
    assert_eq!(ok_text(&["checkpoint", "rm", &st, "--force", "v2", "ghost", "v3"]), "");
    assert_eq!(ok_text(&["checkpoint", "ls", &st]), "");
    assert_eq!(stats(&store, "checkpoints"), 0);
    assert!(!ok_text(&["stats", &st]).contains("checkpoints"));
    assert_eq!(ok_text(&["checkpoint", "rm", &st, "-f", "v2"]), "");
    assert!(absent(&["checkpoint", "rm", &st, "v2"]).ends_with("no checkpoint \"v2\" (nothing deleted)\n"));
    // The keys' values stay: the large one is the key's own now.
    assert_eq!((stats(&store, "objects"), object_files(&store)), (1, 1));
    assert_eq!(ok(&["get", &st, "big", "--raw"]), bytes_pickle(&noise(30_000, 8)));
    assert_eq!(ok_text(&["verify", &st]), "ok: 5 keys, 1 objects, 1 object files checked\n");
    assert_eq!(ok_text(&["gc", &st]), "gc: 5 keys checked, 0 repaired, 0 problems left\n");
}

#[test]
fn get_at_reads_a_value_as_a_checkpoint_recorded_it() {
    let dir = tmp();
    let store = sample_store(dir.path());
    let st = s(&store);
    let then = pickles(&store);
    ok(&["checkpoint", "create", &st, "v1"]);
    change_sample(&store);
    let now = state(&store);
    for (key, pickle) in &then {
        assert_eq!(&ok(&["get", &st, key, "--at", "v1", "--raw"]), pickle, "{key}");
    }
    assert_eq!(ok_text(&["get", &st, "user:1", "--at", "v1", "--repr"]), "('Ada', 36)\n");
    assert_eq!(ok_text(&["get", &st, "user:1", "--repr"]), "('Ada', 37)\n");
    // "c" was added since; "ghost" is no checkpoint.
    let err = absent(&["get", &st, "c", "--at", "v1"]);
    assert!(err.ends_with(&format!("{st}: no key \"c\" in checkpoint \"v1\"\n")), "{err}");
    let err = absent(&["get", &st, "a", "--at", "ghost"]);
    assert!(err.ends_with(&format!("{st}: checkpoint \"ghost\": no such checkpoint\n")), "{err}");
    assert_eq!(state(&store), now, "reading changes nothing");
}

/// What a command shows on a pseudo-terminal, with its line ends as `\n`.
fn on_a_terminal(command: &str) -> Option<String> {
    common::cli::on_a_terminal(command).map(|screen| screen.replace("\r\n", "\n"))
}

#[test]
fn control_characters_in_keys_and_names_are_escaped_on_a_terminal() {
    let dir = tmp();
    let store = dir.path().join("s.db");
    let shelf = Shelf::open(&store).unwrap_or_else(|e| panic!("{e}"));
    shelf.insert("a", &1).unwrap_or_else(|e| panic!("{e}"));
    shelf.checkpoint("v\n1").unwrap_or_else(|e| panic!("{e}"));
    shelf.insert("two\nlines", &2).unwrap_or_else(|e| panic!("{e}"));
    shelf.close().unwrap_or_else(|e| panic!("{e}"));
    let (b, st) = (s(&assert_cmd::cargo::cargo_bin("pickleshelf")), s(&store));
    let Some(screen) = on_a_terminal(&format!("{b} checkpoint diff {st} 'v\n1'")) else { return };
    assert_eq!(screen, "+ 'two\\nlines'\n");
    let Some(screen) = on_a_terminal(&format!("{b} checkpoint restore {st} 'v\n1' --dry-run")) else { return };
    assert_eq!(screen, "- 'two\\nlines'\nwould restore checkpoint 'v\\n1': 0 added, 1 removed, 0 changed\n");
    let Some(screen) = on_a_terminal(&format!("{b} checkpoint ls {st}")) else { return };
    assert!(screen.ends_with("          1        8 B 'v\\n1'\n"), "{screen:?}");
    // Not on a terminal: as they are.
    assert_eq!(ok_text(&["checkpoint", "diff", &st, "v\n1"]), "+ two\nlines\n");
    assert!(ok_text(&["checkpoint", "ls", &st]).ends_with(" v\n1\n"));
}
