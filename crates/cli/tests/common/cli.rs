//! Helpers shared by the CLI test files: running the binary, sample stores, pickles, and
//! a pseudo-terminal through `script`. Each test file uses the part it needs.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command as StdCommand, Stdio};

use assert_cmd::Command;
use pickleshelf::Shelf;

/// The binary, with `PICKLESHELF_PYTHON` and `REDISCLI_AUTH` cleared (a test that wants
/// an interpreter or a server password names it).
pub fn bin() -> Command {
    let mut cmd = Command::cargo_bin("pickleshelf").unwrap_or_else(|e| panic!("{e}"));
    cmd.env_remove("PICKLESHELF_PYTHON").env_remove("REDISCLI_AUTH");
    cmd
}

pub fn bin_path() -> PathBuf {
    assert_cmd::cargo::cargo_bin("pickleshelf")
}

pub fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"))
}

pub fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// Runs the binary and returns stdout, asserting success and an empty stderr.
pub fn ok(args: &[&str]) -> Vec<u8> {
    ok_in(args, None)
}

pub fn ok_in(args: &[&str], stdin: Option<Vec<u8>>) -> Vec<u8> {
    let mut cmd = bin();
    cmd.args(args);
    if let Some(input) = stdin {
        cmd.write_stdin(input);
    }
    cmd.assert().success().stderr("").get_output().stdout.clone()
}

pub fn ok_text(args: &[&str]) -> String {
    String::from_utf8(ok(args)).unwrap_or_else(|e| panic!("{e}"))
}

/// The subcommands of the CLI's own clap definition, in its order (without `help`), as
/// the `Commands:` section of `pickleshelf --help` lists them: so that a test that goes
/// over every subcommand covers each one added later.
pub fn subcommands() -> Vec<String> {
    let top = ok_text(&["--help"]);
    let Some((_, list)) = top.split_once("\nCommands:\n") else { panic!("no Commands: section in --help:\n{top}") };
    let names: Vec<String> = list
        .lines()
        .take_while(|l| !l.trim().is_empty())
        // A name is indented by two spaces; a wrapped description by more.
        .filter_map(|l| l.strip_prefix("  ").filter(|rest| !rest.starts_with(' ')))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect();
    assert!(names.len() >= 10, "too few subcommands parsed from --help: {names:?}\n{top}");
    names
}

/// Exit statuses (docs/CLI.md): the store is damaged or differs, the command failed, the
/// thing named is absent.
pub const DAMAGED: i32 = 1;
pub const FAILED: i32 = 2;
pub const ABSENT: i32 = 3;

/// Runs the binary expecting exit status `code` and one line on stderr; returns stdout
/// and that line.
fn failure(code: i32, args: &[&str], stdin: Option<Vec<u8>>) -> (Vec<u8>, String) {
    let mut cmd = bin();
    cmd.args(args);
    if let Some(input) = stdin {
        cmd.write_stdin(input);
    }
    let out = cmd.assert().code(code).get_output().clone();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(err.lines().count(), 1, "stderr should be one line: {err:?}");
    assert!(err.starts_with("pickleshelf: ") && err.ends_with('\n'), "{err:?}");
    (out.stdout, err)
}

/// Runs the binary expecting exit status 2 (the command failed) and one line on stderr;
/// returns that line.
pub fn fails(args: &[&str]) -> String {
    fails_in(args, None)
}

pub fn fails_in(args: &[&str], stdin: Option<Vec<u8>>) -> String {
    failure(FAILED, args, stdin).1
}

/// [`fails`], also asserting that nothing was printed on stdout.
pub fn fails_quietly(args: &[&str]) -> String {
    fails_quietly_with(FAILED, args)
}

/// Runs the binary expecting exit status `code`, one line on stderr and nothing on
/// stdout; returns the stderr line.
pub fn fails_quietly_with(code: i32, args: &[&str]) -> String {
    let (stdout, err) = failure(code, args, None);
    assert!(stdout.is_empty(), "{args:?}: {}", String::from_utf8_lossy(&stdout));
    err
}

/// Runs the binary expecting exit status 3 (absent), one line on stderr and nothing on
/// stdout; returns the stderr line.
pub fn absent(args: &[&str]) -> String {
    fails_quietly_with(ABSENT, args)
}

/// Runs the binary expecting exit status `code` and one line on stderr; returns stdout
/// and that line.
pub fn fails_with(code: i32, args: &[&str], stdin: Option<Vec<u8>>) -> (Vec<u8>, String) {
    failure(code, args, stdin)
}

/// Incompressible bytes: stored in an object file, not inline.
pub fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// `pickle.dumps(bytes(b), 4)`.
pub fn bytes_pickle(b: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, 4, 0x8e];
    p.extend_from_slice(&(b.len() as u64).to_le_bytes());
    p.extend_from_slice(b);
    p.extend_from_slice(b"\x94.");
    p
}

/// A store with a few small values and one large one shared by two keys.
pub fn sample_store(dir: &Path) -> PathBuf {
    let path = dir.join("state.db");
    let shelf = Shelf::open(&path).unwrap_or_else(|e| panic!("{e}"));
    shelf.insert("b", &vec![1, 2, 3]).unwrap_or_else(|e| panic!("{e}"));
    shelf.insert("a", &"hello").unwrap_or_else(|e| panic!("{e}"));
    shelf.insert("user:1", &("Ada", 36)).unwrap_or_else(|e| panic!("{e}"));
    shelf.insert("user:2", &("Bob", 41)).unwrap_or_else(|e| panic!("{e}"));
    let big = bytes_pickle(&noise(20_000, 7));
    shelf.insert_pickle("big", &big).unwrap_or_else(|e| panic!("{e}"));
    shelf.insert_pickle("big2", &big).unwrap_or_else(|e| panic!("{e}"));
    shelf.close().unwrap_or_else(|e| panic!("{e}"));
    path
}

/// Flips the last byte of the store's only object file.
pub fn damage_object(store: &Path) {
    let objects = store.join("objects");
    for sub in fs::read_dir(&objects).unwrap_or_else(|e| panic!("{e}")).flatten() {
        if sub.file_name() == "tmp" {
            continue;
        }
        if let Some(f) = fs::read_dir(sub.path()).unwrap_or_else(|e| panic!("{e}")).flatten().next() {
            let mut bytes = fs::read(f.path()).unwrap_or_else(|e| panic!("{e}"));
            if let Some(last) = bytes.last_mut() {
                *last ^= 0xff;
            }
            fs::write(f.path(), bytes).unwrap_or_else(|e| panic!("{e}"));
            return;
        }
    }
    panic!("no object file");
}

/// `script` runs a command on a pseudo-terminal (100 columns) and copies what it shows to
/// stdout; `None` (with a note) where `script` is missing.
pub fn on_a_terminal(command: &str) -> Option<String> {
    let found = StdCommand::new("script").arg("--version").output().is_ok_and(|o| o.status.success());
    if !found {
        eprintln!("skipping the terminal check: `script` (util-linux) not found");
        return None;
    }
    let out = StdCommand::new("script")
        .args(["-q", "-e", "-c", command, "/dev/null"])
        .env("TERM", "xterm")
        .env("COLUMNS", "100")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(out.status.success(), "{command}: {}", String::from_utf8_lossy(&out.stdout));
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}
