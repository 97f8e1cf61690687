//! Hostile pickles ("bombs"): each gives a clean error or a correct value, in bounded
//! time and memory.
//!
//! Each bomb runs in a child process (this test binary re-run with `PICKLESHELF_BOMB`
//! naming it): the child builds the input, resets its peak RSS (`/proc/self/clear_refs`),
//! reads `VmRSS`, decodes, checks the result, reads `VmHWM` and prints one line. The
//! parent asserts the growth against the bomb's bound and prints a table
//! (`cargo test --release --test bombs -- --nocapture`).
//!
//! The project's goal is a growth of at most 2 × the input + 1 MiB. The decoder's own
//! invariant is weaker — a constant amount per input byte — and some bombs show the
//! constant: a one-byte opcode that makes a node costs a 32-byte `Node` (plus a 4-byte
//! stack slot or memo entry). Those bombs assert the bound that holds, with the reason
//! next to it; every bound is still linear in the input.

use std::fmt;
use std::process::Command;
use std::time::{Duration, Instant};

use pickleshelf_pickle::{DecodeErrorKind, Error};
use pickleshelf_pickle::{Limits, Value, decode_with, from_value};
use serde::de::{self, Deserialize, Deserializer, Visitor};

const BOMB_ENV: &str = "PICKLESHELF_BOMB";
const MIB: u64 = 1 << 20;

/// One hostile input.
struct Bomb {
    name: &'static str,
    /// What it is, for the table.
    about: &'static str,
    make: fn() -> Vec<u8>,
    /// What is measured.
    phase: Phase,
    /// Allowed peak RSS growth in bytes per input byte (the project's goal is 2)...
    per_byte: u64,
    /// ... plus this (the goal's 1 MiB unless said otherwise).
    fixed: u64,
}

/// What a bomb measures; each returns the outcome in words and panics when it is wrong.
enum Phase {
    /// Decoding the input.
    Decode(fn(&[u8]) -> String),
    /// Using the value: the input is decoded first (with `max_depth` 2,000,000), not
    /// measured.
    After(fn(&Value) -> String),
}

use Phase::{After, Decode};

// ----- inputs -----

fn with_capacity(n: usize) -> Vec<u8> {
    Vec::with_capacity(n)
}

fn proto(p: u8, n: usize) -> Vec<u8> {
    let mut v = with_capacity(n + 2);
    v.extend_from_slice(&[0x80, p]);
    v
}

/// `N`, then `levels` × (DUP, TUPLE2): 2^levels leaves.
fn dup_tuple2(levels: usize) -> Vec<u8> {
    let mut p = proto(2, 2 * levels + 2);
    p.push(b'N');
    for _ in 0..levels {
        p.extend_from_slice(b"2\x86");
    }
    p.push(b'.');
    p
}

/// 60 levels of a list holding the previous list twice, by memo: `BINPUT 0`, MARK,
/// `BINGET 0` twice, LIST.
fn nested_lists_twice() -> Vec<u8> {
    let mut p = proto(2, 8 * 60 + 2);
    p.push(b']');
    for _ in 0..60 {
        p.extend_from_slice(b"q\x00(h\x00h\x00l");
    }
    p.push(b'.');
    p
}

/// `]` then 500,000 × (DUP, APPEND): a list holding itself 500,000 times.
fn self_append() -> Vec<u8> {
    let mut p = proto(2, 1_000_002);
    p.push(b']');
    for _ in 0..500_000 {
        p.extend_from_slice(b"2a");
    }
    p.push(b'.');
    p
}

fn repeat(prefix: &[u8], byte: u8, n: usize, suffix: &[u8]) -> Vec<u8> {
    let mut p = with_capacity(prefix.len() + n + suffix.len());
    p.extend_from_slice(prefix);
    p.extend(std::iter::repeat_n(byte, n));
    p.extend_from_slice(suffix);
    p
}

/// `]` × n, `a` × (n - 1), `.`: a list nested n deep.
fn deep_lists(n: usize) -> Vec<u8> {
    let mut p = proto(2, 2 * n + 1);
    p.extend(std::iter::repeat_n(b']', n));
    p.extend(std::iter::repeat_n(b'a', n - 1));
    p.push(b'.');
    p
}

/// An opcode followed by a declared length.
fn declared(opcode: u8, len: &[u8]) -> Vec<u8> {
    let mut p = proto(4, 1 + len.len() + 16);
    p.push(opcode);
    p.extend_from_slice(len);
    p.extend_from_slice(b"abcdefgh.");
    p
}

/// `N`, then 200,000 × LONG_BINPUT with scattered huge indices, then LONG_BINGET of the
/// largest.
fn long_binput_huge() -> Vec<u8> {
    let n = 200_000u32;
    let mut p = proto(2, 5 * n as usize + 8);
    p.push(b'N');
    let mut x = 0xffff_ffffu32;
    for _ in 0..n {
        p.push(b'r');
        p.extend_from_slice(&x.to_le_bytes());
        x = x.wrapping_mul(2_654_435_761).wrapping_add(12345) | 0x8000_0000;
    }
    p.extend_from_slice(b"j\xff\xff\xff\xff.");
    p
}

/// A list of `items` Nones stored in the memo, then `calls` × `builtins.set(list)` on it.
fn set_of_shared_list(items: usize, calls: usize) -> Vec<u8> {
    let mut p = proto(2, items + 7 * calls + 64);
    p.extend_from_slice(b"cbuiltins\nset\nq\x000]q\x01(");
    p.extend(std::iter::repeat_n(b'N', items));
    p.extend_from_slice(b"e0");
    for _ in 0..calls {
        p.extend_from_slice(b"h\x00h\x01\x85R0");
    }
    p.extend_from_slice(b"N.");
    p
}

/// `len` bytes stored in the memo, then `calls` × `builtins.bytearray(bytes)` on them.
fn bytearray_of_shared_bytes(len: usize, calls: usize) -> Vec<u8> {
    let mut p = proto(3, len + 7 * calls + 64);
    p.extend_from_slice(b"cbuiltins\nbytearray\nq\x000B");
    p.extend_from_slice(&(len as u32).to_le_bytes());
    p.extend(std::iter::repeat_n(b'x', len));
    p.extend_from_slice(b"q\x010");
    for _ in 0..calls {
        p.extend_from_slice(b"h\x00h\x01\x85R0");
    }
    p.extend_from_slice(b"N.");
    p
}

/// A list holding `n` empty lists: wide, and enough containers for the depth check.
fn wide_list(n: usize) -> Vec<u8> {
    let mut p = proto(2, n + 8);
    p.extend_from_slice(b"](");
    p.extend(std::iter::repeat_n(b']', n));
    p.extend_from_slice(b"e.");
    p
}

// ----- checks -----

fn decode_err(bytes: &[u8], limits: &Limits) -> DecodeErrorKind {
    match decode_with(bytes, limits) {
        Err(Error::Decode { kind, .. }) => kind,
        Err(e) => panic!("expected a decode error, got {e}"),
        Ok(v) => panic!("expected a decode error, got a value of {} nodes", v.len()),
    }
}

fn limit_err(bytes: &[u8], limits: &Limits, want: &str) -> String {
    match decode_err(bytes, limits) {
        k @ DecodeErrorKind::Limit { limit, .. } if limit == want => format!("Err: {k}"),
        DecodeErrorKind::BadText { detail, .. } if detail.contains(want) => format!("Err: {}", short(&detail)),
        other => panic!("expected limit {want}, got {other}"),
    }
}

fn truncated(bytes: &[u8]) -> String {
    match decode_err(bytes, &Limits::default()) {
        k @ DecodeErrorKind::Truncated { .. } => format!("Err: {k}"),
        other => panic!("expected a truncation error, got {other}"),
    }
}

fn short(s: &str) -> String {
    if s.len() > 60 { format!("{}...", &s[..57]) } else { s.to_string() }
}

fn ok_nodes(bytes: &[u8], limits: &Limits, max_nodes: usize) -> String {
    let v = decode_with(bytes, limits).unwrap_or_else(|e| panic!("{e}"));
    assert!(v.len() <= max_nodes, "{} nodes", v.len());
    format!("Ok: {} nodes", v.len())
}

fn display(v: &Value) -> String {
    format!("Display: {} chars", v.to_string().len())
}

/// Anything, through `deserialize_any`, keeping what it reads (so it allocates).
#[derive(Debug)]
#[allow(dead_code)]
enum Any {
    Unit,
    Int(i128),
    Float(f64),
    Str(String),
    Seq(Vec<Any>),
    Map(Vec<(Any, Any)>),
}

impl<'de> Deserialize<'de> for Any {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Any;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("anything")
            }
            fn visit_unit<E>(self) -> Result<Any, E> {
                Ok(Any::Unit)
            }
            fn visit_bool<E>(self, v: bool) -> Result<Any, E> {
                Ok(Any::Int(v.into()))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Any, E> {
                Ok(Any::Int(v.into()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Any, E> {
                Ok(Any::Int(v.into()))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Any, E> {
                Ok(Any::Float(v))
            }
            fn visit_str<E>(self, v: &str) -> Result<Any, E> {
                Ok(Any::Str(v.into()))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut a: A) -> Result<Any, A::Error> {
                let mut out = Vec::new();
                while let Some(x) = a.next_element()? {
                    out.push(x);
                }
                Ok(Any::Seq(out))
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut a: A) -> Result<Any, A::Error> {
                let mut out = Vec::new();
                while let Some(kv) = a.next_entry()? {
                    out.push(kv);
                }
                Ok(Any::Map(out))
            }
        }
        d.deserialize_any(V)
    }
}

fn serde_err(v: &Value, want: &str) -> String {
    match from_value::<Any>(v) {
        Err(Error::Serde(msg)) if msg.contains(want) => format!("serde Err: {}", short(&msg)),
        other => panic!("expected a serde error with {want:?}, got {other:?}"),
    }
}

const TWO_62: &[u8] = &[0, 0, 0, 0, 0, 0, 0, 0x40];
const MAX_64: &[u8] = &[0xff; 8];
const MAX_I32: &[u8] = &[0xff, 0xff, 0xff, 0x7f];

fn bombs() -> Vec<Bomb> {
    fn bomb(name: &'static str, about: &'static str, make: fn() -> Vec<u8>, phase: Phase) -> Bomb {
        Bomb { name, about, make, phase, per_byte: 2, fixed: MIB }
    }
    vec![
        bomb(
            "dup_tuple2_60",
            "N, 60 x (DUP TUPLE2): 2^60 leaves",
            || dup_tuple2(60),
            Decode(|b| ok_nodes(b, &Limits::default(), 61)),
        ),
        bomb("dup_tuple2_60 display", "the value's Display (budgeted)", || dup_tuple2(60), After(display)),
        Bomb {
            // The node budget (1,000,000 visits) bounds what the target type builds before
            // the error; here 1,000,000 `Any`s of 32 bytes, in Vecs that double: ~70 MiB,
            // whatever the input's size.
            fixed: 80 * MIB,
            ..bomb(
                "dup_tuple2_60 serde",
                "from_value::<Any>: node budget",
                || dup_tuple2(60),
                After(|v| serde_err(v, "nodes visited")),
            )
        },
        bomb(
            "nested_lists_twice",
            "60 x [prev, prev] by BINPUT/BINGET",
            nested_lists_twice,
            Decode(|b| ok_nodes(b, &Limits::default(), 62)),
        ),
        Bomb {
            // One 4-byte id in the list per 2-byte DUP+APPEND.
            per_byte: 4,
            ..bomb(
                "self_append_500k",
                "], 500k x (DUP APPEND): list in itself",
                self_append,
                Decode(|b| ok_nodes(b, &Limits::default(), 1)),
            )
        },
        Bomb {
            // Display's task stack takes every item of an open list (two 24-byte tasks per
            // item) before its output budget stops it.
            per_byte: 32,
            ..bomb("self_append_500k display", "the value's Display", self_append, After(display))
        },
        bomb("self_append_500k serde", "from_value::<Any>: cycle", self_append, After(|v| serde_err(v, "cyclic"))),
        bomb(
            "unclosed_marks_1e6",
            "1,000,000 x MARK",
            || repeat(b"", b'(', 1_000_000, b""),
            Decode(|b| limit_err(b, &Limits::default(), "max_marks")),
        ),
        Bomb {
            // Every list is built before the depth check: a 32-byte Node, its 1-item Vec
            // (a 16-byte allocation, 32 with malloc's header) and a 4-byte stack slot per
            // 2 input bytes.
            per_byte: 40,
            ..bomb(
                "deep_lists_1e6",
                "]x1e6 ax(1e6-1), default limits",
                || deep_lists(1_000_000),
                Decode(|b| limit_err(b, &Limits::default(), "max_depth")),
            )
        },
        Bomb {
            // As above, and the depth check walks all 1e6 levels (a bool, an 8-byte
            // frame and a 4-byte pending id per level).
            per_byte: 48,
            ..bomb(
                "deep_lists_1e6_allowed",
                "the same with max_depth = 2,000,000",
                || deep_lists(1_000_000),
                Decode(|b| ok_nodes(b, &Limits::default().max_depth(2_000_000), 1_000_000)),
            )
        },
        Bomb {
            // A 24-byte closing task per open list (one per 2 input bytes) and the
            // 2,000,000-character text.
            per_byte: 16,
            ..bomb("deep_lists_1e6 display", "the 1e6-deep value's Display", || deep_lists(1_000_000), After(display))
        },
        bomb("binbytes8_2^62", "BINBYTES8 of 2^62 bytes", || declared(0x8e, TWO_62), Decode(truncated)),
        bomb("binbytes8_2^64-1", "BINBYTES8 of 2^64-1 bytes", || declared(0x8e, MAX_64), Decode(truncated)),
        bomb("binunicode8_2^62", "BINUNICODE8 of 2^62 bytes", || declared(0x8d, TWO_62), Decode(truncated)),
        bomb("binunicode8_2^64-1", "BINUNICODE8 of 2^64-1 bytes", || declared(0x8d, MAX_64), Decode(truncated)),
        bomb("bytearray8_2^62", "BYTEARRAY8 of 2^62 bytes", || declared(0x96, TWO_62), Decode(truncated)),
        bomb("bytearray8_2^64-1", "BYTEARRAY8 of 2^64-1 bytes", || declared(0x96, MAX_64), Decode(truncated)),
        bomb("frame_2^62", "FRAME of 2^62 bytes", || declared(0x95, TWO_62), Decode(truncated)),
        bomb("frame_2^64-1", "FRAME of 2^64-1 bytes", || declared(0x95, MAX_64), Decode(truncated)),
        bomb("binunicode_2^31-1", "BINUNICODE of 2^31-1 bytes", || declared(b'X', MAX_I32), Decode(truncated)),
        bomb("long4_2^31-1", "LONG4 of 2^31-1 bytes", || declared(0x8b, MAX_I32), Decode(truncated)),
        Bomb {
            // One hash-map entry (an 8-byte index and a 4-byte id, 16 bytes with padding,
            // and the table's slack up to 2x) per 5-byte opcode.
            per_byte: 8,
            ..bomb(
                "long_binput_huge",
                "200k x LONG_BINPUT at indices >= 2^31",
                long_binput_huge,
                Decode(|b| ok_nodes(b, &Limits::default(), 1)),
            )
        },
        bomb(
            "long_text_int_1MB",
            "L + 1,000,000 digits + L",
            || repeat(b"L", b'9', 1_000_000, b"L\n."),
            Decode(|b| limit_err(b, &Limits::default(), "max_int_digits")),
        ),
        bomb(
            "int_text_1MB",
            "I + 1,000,000 digits",
            || repeat(b"I", b'9', 1_000_000, b"\n."),
            Decode(|b| limit_err(b, &Limits::default(), "max_int_digits")),
        ),
        Bomb {
            // A 4-byte memo entry per 1-byte MEMOIZE.
            per_byte: 5,
            ..bomb(
                "memoize_1e6",
                "N, 1,000,000 x MEMOIZE",
                || repeat(b"\x80\x04N", 0x94, 1_000_000, b"."),
                Decode(|b| ok_nodes(b, &Limits::default(), 1)),
            )
        },
        Bomb {
            // A 32-byte Node and a 4-byte stack slot per 1-byte opcode.
            per_byte: 40,
            ..bomb(
                "next_buffer_1e6",
                "1,000,000 x NEXT_BUFFER",
                || repeat(b"\x80\x05", 0x97, 1_000_000, b"."),
                Decode(|b| ok_nodes(b, &Limits::default(), 1_000_000)),
            )
        },
        Bomb {
            // Copies are limited to twice the input's length (4-byte ids here: 8 bytes per
            // input byte); per 7-byte call a 32-byte tuple node and its 1-item Vec, and a
            // 32-byte set node (or, past the copy limit, an object node and its boxed
            // construction).
            per_byte: 32,
            ..bomb(
                "set_of_shared_list",
                "100k-item list in memo, 20k x set(list)",
                || set_of_shared_list(100_000, 20_000),
                Decode(|b| ok_nodes(b, &Limits::default(), 200_000)),
            )
        },
        Bomb {
            // Copies are limited to twice the input's length; per 7-byte call a 32-byte
            // tuple node and its 1-item Vec, and a bytearray or object node.
            per_byte: 24,
            ..bomb(
                "bytearray_of_shared_bytes",
                "100 KB bytes in memo, 20k x bytearray(b)",
                || bytearray_of_shared_bytes(100_000, 20_000),
                Decode(|b| ok_nodes(b, &Limits::default(), 200_000)),
            )
        },
        Bomb {
            // A 32-byte Node, a 4-byte stack slot and two 4-byte item copies (APPENDS) per
            // 1-byte opcode, then the depth check's bookkeeping. (The depth check used to
            // be quadratic here: many minutes for this input.)
            per_byte: 64,
            ..bomb(
                "wide_list_1e6",
                "a list of 1e6 empty lists (depth check)",
                || wide_list(1_000_000),
                Decode(|b| ok_nodes(b, &Limits::default(), 1_000_001)),
            )
        },
    ]
}

// ----- the child -----

/// `VmRSS` or `VmHWM` of this process in bytes, from `/proc/self/status`.
fn proc_status(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Runs the bomb named by `PICKLESHELF_BOMB` (only in a child started by the test below).
#[test]
fn bomb_child() {
    let Ok(name) = std::env::var(BOMB_ENV) else { return };
    let bomb = bombs().into_iter().find(|b| b.name == name).unwrap_or_else(|| panic!("no bomb {name}"));
    let input = (bomb.make)();
    let value = match bomb.phase {
        Decode(_) => None,
        After(_) => {
            Some(decode_with(&input, &Limits::default().max_depth(2_000_000)).unwrap_or_else(|e| panic!("{e}")))
        }
    };
    // Reset the peak to the current RSS, so that what came before does not count.
    let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let before = proc_status("VmRSS:").unwrap_or(0);
    let start = Instant::now();
    let outcome = match (&bomb.phase, &value) {
        (Decode(run), _) => run(&input),
        (After(run), Some(v)) => run(v),
        (After(_), None) => unreachable!(),
    };
    let elapsed = start.elapsed();
    let peak = proc_status("VmHWM:").unwrap_or(0);
    println!(
        "BOMB\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
        bomb.name,
        input.len(),
        before,
        peak,
        reset,
        elapsed.as_micros(),
        outcome.replace(['\t', '\n'], " ")
    );
}

// ----- the parent -----

struct Measured {
    input: u64,
    growth: Option<u64>,
    micros: u64,
    outcome: String,
}

fn run_child(name: &str) -> Result<Measured, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut child = Command::new(exe)
        .args(["--exact", "bomb_child", "--nocapture", "--test-threads=1"])
        .env(BOMB_ENV, name)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    // A hang guard, not a timing assertion: a bomb takes well under a second.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        match child.try_wait().map_err(|e| e.to_string())? {
            Some(_) => break,
            None if Instant::now() > deadline => {
                let _ = child.kill();
                return Err("still running after 120 s".into());
            }
            None => std::thread::sleep(Duration::from_millis(5)),
        }
    }
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!("child failed: {}{}", stdout, String::from_utf8_lossy(&out.stderr)));
    }
    let line = stdout
        .lines()
        .find_map(|l| l.find("BOMB\t").map(|i| &l[i..]))
        .ok_or_else(|| format!("no result line: {stdout}"))?;
    let f: Vec<&str> = line.split('\t').collect();
    let num = |i: usize| f.get(i).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
    let measurable = f.get(5) == Some(&"true") && num(3) > 0 && num(4) > 0;
    Ok(Measured {
        input: num(2),
        growth: measurable.then(|| num(4).saturating_sub(num(3))),
        micros: num(6),
        outcome: f.get(7).unwrap_or(&"").to_string(),
    })
}

#[test]
fn bombs_in_bounded_memory() {
    if std::env::var_os(BOMB_ENV).is_some() {
        return;
    }
    let mut failures = Vec::new();
    println!(
        "\n{:<26} {:<42} {:>10} {:>12} {:>7} {:>12} {:>9}  result",
        "bomb", "input", "bytes", "rss growth", "x in", "bound", "ms"
    );
    for bomb in bombs() {
        match run_child(bomb.name) {
            Err(e) => failures.push(format!("{}: {e}", bomb.name)),
            Ok(m) => {
                let bound = bomb.per_byte * m.input + bomb.fixed;
                let (growth, ratio) = match m.growth {
                    Some(g) => {
                        (format!("{:.2} MiB", g as f64 / MIB as f64), format!("{:.1}", g as f64 / m.input as f64))
                    }
                    None => ("n/a".into(), "-".into()),
                };
                println!(
                    "{:<26} {:<42} {:>10} {:>12} {:>7} {:>12} {:>9.1}  {}",
                    bomb.name,
                    bomb.about,
                    m.input,
                    growth,
                    ratio,
                    format!("{}x+{}MiB", bomb.per_byte, bomb.fixed / MIB),
                    m.micros as f64 / 1000.0,
                    m.outcome
                );
                if let Some(g) = m.growth
                    && g > bound
                {
                    failures.push(format!(
                        "{}: peak RSS grew {g} bytes for {} input bytes, over the bound {bound}",
                        bomb.name, m.input
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
