//! Exit statuses, command by command (docs/CLI.md, "Exit status"): 0 success, 1 the
//! store is damaged or `diff --exit-code` found differences, 2 the command failed
//! (usage, missing or locked store, bad input), 3 the key, checkpoint or memo namespace
//! named is not there. Every status but 0 (and `diff --exit-code`'s 1) comes with one
//! line on stderr.

mod common;

use std::fs;

use common::cli::*;
use pickleshelf::Shelf;

/// Runs `args` and checks the exit status, and that stderr is one `pickleshelf: ` line
/// when the status is not 0 (empty for `diff --exit-code`'s 1; clap's own text for a
/// usage error).
fn status(code: i32, args: &[&str]) {
    let out = bin().args(args).output().unwrap_or_else(|e| panic!("{e}"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
    if code == 0 {
        assert_eq!(err, "", "{args:?}");
        return;
    }
    if code == 1 && (args.contains(&"--exit-code") || args.contains(&"-q")) {
        assert_eq!(err, "", "differences are not an error: {args:?}");
    } else if !(code == 2 && err.starts_with("error:")) {
        // (clap's usage errors are several lines, with a hint.)
        assert!(err.starts_with("pickleshelf: ") && err.lines().count() == 1, "{args:?}: {err:?}");
    }
}

#[test]
fn every_command_says_absent_broken_or_failed_by_its_status() {
    let dir = tmp();
    let store = sample_store(dir.path());
    let st = s(&store);
    let nope = s(&dir.path().join("nope.db"));
    let shelve = s(&dir.path().join("py"));
    let export = s(&dir.path().join("out"));
    let junk = dir.path().join("junk.dat");
    fs::write(&junk, b"junk").unwrap_or_else(|e| panic!("{e}"));
    fs::write(dir.path().join("junk.dir"), b"'k', (0, 99)\n").unwrap_or_else(|e| panic!("{e}"));
    let junk = s(&dir.path().join("junk"));
    let value = dir.path().join("v.json");
    fs::write(&value, b"{\"a\": 1}").unwrap_or_else(|e| panic!("{e}"));
    let value = s(&value);
    status(0, &["checkpoint", "create", &st, "v1"]);

    // 0: success.
    for args in [
        vec!["ls", &st],
        vec!["get", &st, "a"],
        vec!["get", &st, "a", "--at", "v1"],
        vec!["stats", &st],
        vec!["verify", &st],
        vec!["gc", &st],
        vec!["export", &st, "--shelve", &shelve],
        vec!["import", &st, "--shelve", &shelve],
        vec!["checkpoint", "ls", &st],
        vec!["checkpoint", "diff", &st, "v1", "--exit-code"],
        vec!["checkpoint", "diff", &st, "v1", "v1", "-q"],
        vec!["put", &st, "new", &value],
        vec!["rm", &st, "new", "ghost", "--force"],
        vec!["checkpoint", "restore", &st, "v1", "--dry-run"],
        vec!["memo", "ls", &st],
        vec!["memo", "clear", &st, "--all"],
        vec!["memo", "clear", &st, "ghost", "--force"],
        vec!["completions", "bash"],
    ] {
        status(0, &args);
    }

    // 3: a key or checkpoint that is not there.
    for args in [
        vec!["get", &st, "ghost"],
        vec!["get", &st, "ghost", "--at", "v1"],
        vec!["get", &st, "a", "--at", "v9"],
        vec!["rm", &st, "a", "ghost"],
        vec!["checkpoint", "diff", &st, "v9"],
        vec!["checkpoint", "diff", &st, "v1", "v9", "--exit-code"],
        vec!["checkpoint", "restore", &st, "v9"],
        vec!["checkpoint", "rm", &st, "v9"],
        vec!["memo", "clear", &st, "ghost"],
    ] {
        status(3, &args);
    }

    // 2: the command failed: usage, missing store, bad input, a name in use, read-only.
    for args in [
        vec!["get", &st],
        vec!["frobnicate"],
        vec!["ls", &nope],
        vec!["get", &nope, "a"],
        vec!["stats", &nope],
        vec!["verify", &nope],
        vec!["checkpoint", "diff", &nope, "v1", "--exit-code"],
        vec!["import", &st, "--shelve", &junk],
        vec!["import", &st, "--dir", &nope],
        vec!["export", &st, "--shelve", &shelve],
        vec!["checkpoint", "create", &st, "v1"],
        vec!["rm", &st, "a", "--read-only"],
        vec!["put", &st, "k", &nope],
        vec!["pickle", "decode", &nope],
        vec!["memo", "ls", &nope],
        vec!["memo", "clear", &st, "--all", "--read-only"],
        vec!["completions", "tcsh"],
    ] {
        status(2, &args);
    }
    let held = Shelf::open(&store).unwrap_or_else(|e| panic!("{e}"));
    status(2, &["get", &st, "a"]);
    status(2, &["checkpoint", "diff", &st, "v1", "--exit-code"]);
    drop(held);

    // 1: differences (silent with --exit-code), then a damaged store.
    status(0, &["rm", &st, "a"]);
    status(1, &["checkpoint", "diff", &st, "v1", "--exit-code"]);
    status(1, &["checkpoint", "diff", &st, "v1", "-q"]);
    status(0, &["checkpoint", "diff", &st, "v1"]);
    damage_object(&store);
    for args in [vec!["verify", &st], vec!["gc", &st], vec!["get", &st, "big"], vec!["export", &st, "--dir", &export]] {
        status(1, &args);
    }
    // Absent stays absent in a damaged store; undamaged keys still read.
    status(3, &["get", &st, "a"]);
    status(0, &["get", &st, "b"]);
}

#[test]
fn diff_exit_code_prints_the_diff_and_quiet_prints_nothing() {
    let dir = tmp();
    let store = sample_store(dir.path());
    let st = s(&store);
    ok(&["checkpoint", "create", &st, "v1"]);
    ok(&["rm", &st, "a"]);
    let out = bin().args(["checkpoint", "diff", &st, "v1", "--exit-code"]).assert().code(1).get_output().clone();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "- a\n");
    assert!(out.stderr.is_empty());
    let out = bin().args(["checkpoint", "diff", &st, "v1", "--quiet"]).assert().code(1).get_output().clone();
    assert!(out.stdout.is_empty() && out.stderr.is_empty());
    // Without --exit-code the status is 0 either way.
    assert_eq!(ok_text(&["checkpoint", "diff", &st, "v1"]), "- a\n");
    ok(&["checkpoint", "restore", &st, "v1"]);
    assert_eq!(ok_text(&["checkpoint", "diff", &st, "v1", "--exit-code"]), "");
}
