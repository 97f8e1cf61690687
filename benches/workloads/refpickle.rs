//! A reference pickle writer, independent of the crate's codec: what CPython 3's C pickler
//! (`pickle.dumps(obj, protocol=4)`) writes for the few types the workloads use.
//!
//! It is the benchmark's oracle for "logical bytes" (the size of a Python user's pickle)
//! and for checking that the store keeps *the same pickles* as Python. It is std only and
//! checked byte for byte against CPython by `tests/workload_generators.rs`.
//!
//! Rules followed (CPython `Modules/_pickle.c`, protocol 4): `PROTO 4` outside any frame;
//! then frames (`FRAME` + u64 length) that are committed at the start of saving an object
//! once they hold 64 KiB or more, and at the end; a frame under 4 bytes gets no header;
//! strings and bytes of 64 KiB or more are written outside frames. Every str, bytes, list,
//! tuple and dict is memoized (`MEMOIZE`); a second reference to the same object is a
//! `BINGET`/`LONG_BINGET`. Lists and dicts of more than one item are written in batches of
//! 1,000 between `MARK` and `APPENDS`/`SETITEMS`; one item uses `APPEND`/`SETITEM`; a dict
//! whose size is a multiple of 1,000 ends with an empty batch, as CPython's does.

#![allow(dead_code)] // the test and the bench each use a different part

use std::collections::HashMap;

/// An object to pickle. `SharedStr(id, s)`: every occurrence with the same `id` is the
/// same Python object (pickled once, then referenced through the memo).
#[derive(Clone, Debug)]
pub enum Obj<'a> {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(&'a str),
    SharedStr(u64, &'a str),
    Bytes(&'a [u8]),
    List(Vec<Obj<'a>>),
    Tuple(Vec<Obj<'a>>),
    Dict(Vec<(Obj<'a>, Obj<'a>)>),
}

const FRAME_SIZE_TARGET: usize = 64 * 1024;
const FRAME_SIZE_MIN: usize = 4;
const FRAME_HEADER: usize = 9;
const BATCH: usize = 1000;

struct Pickler {
    out: Vec<u8>,
    framing: bool,
    frame_start: Option<usize>,
    memo_len: u32,
    shared: HashMap<u64, u32>,
}

impl Pickler {
    fn write(&mut self, data: &[u8]) {
        if self.framing && self.frame_start.is_none() {
            self.frame_start = Some(self.out.len());
            self.out.extend_from_slice(&[0xFE; FRAME_HEADER]);
        }
        self.out.extend_from_slice(data);
    }

    fn commit_frame(&mut self) {
        let Some(start) = self.frame_start.take() else {
            return;
        };
        let len = self.out.len() - start - FRAME_HEADER;
        if len >= FRAME_SIZE_MIN {
            self.out[start] = 0x95;
            self.out[start + 1..start + FRAME_HEADER].copy_from_slice(&(len as u64).to_le_bytes());
        } else {
            self.out.drain(start..start + FRAME_HEADER);
        }
    }

    fn boundary(&mut self) {
        if let Some(start) = self.frame_start
            && self.out.len() - start - FRAME_HEADER >= FRAME_SIZE_TARGET
        {
            self.commit_frame();
        }
    }

    /// A header and a payload; a payload of 64 KiB or more goes outside any frame.
    fn write_bytes(&mut self, header: &[u8], data: &[u8]) {
        if data.len() >= FRAME_SIZE_TARGET {
            self.commit_frame();
            let framing = self.framing;
            self.framing = false;
            self.write(header);
            self.write(data);
            self.framing = framing;
        } else {
            self.write(header);
            self.write(data);
        }
    }

    fn memoize(&mut self) -> u32 {
        self.write(&[0x94]);
        self.memo_len += 1;
        self.memo_len - 1
    }

    fn memo_get(&mut self, idx: u32) {
        if idx < 256 {
            self.write(&[b'h', idx as u8]);
        } else {
            let mut op = [b'j', 0, 0, 0, 0];
            op[1..].copy_from_slice(&idx.to_le_bytes());
            self.write(&op);
        }
    }

    fn save(&mut self, obj: &Obj<'_>) {
        self.boundary();
        match obj {
            Obj::None => self.write(b"N"),
            Obj::Bool(b) => self.write(if *b { &[0x88] } else { &[0x89] }),
            Obj::Int(v) => self.save_int(*v),
            Obj::Float(f) => {
                let mut op = [b'G'; 9];
                op[1..].copy_from_slice(&f.to_be_bytes());
                self.write(&op);
            }
            Obj::Str(s) => self.save_str(s),
            Obj::SharedStr(id, s) => match self.shared.get(id) {
                Some(&idx) => self.memo_get(idx),
                None => {
                    self.save_str(s);
                    self.shared.insert(*id, self.memo_len - 1);
                }
            },
            Obj::Bytes(b) => {
                let n = b.len();
                if n <= 0xFF {
                    self.write_bytes(&[b'C', n as u8], b);
                } else if n <= 0xFFFF_FFFF {
                    let mut h = [b'B', 0, 0, 0, 0];
                    h[1..].copy_from_slice(&(n as u32).to_le_bytes());
                    self.write_bytes(&h, b);
                } else {
                    let mut h = [0x8E; 9];
                    h[1..].copy_from_slice(&(n as u64).to_le_bytes());
                    self.write_bytes(&h, b);
                }
                self.memoize();
            }
            Obj::List(items) => {
                self.write(b"]");
                self.memoize();
                self.list_items(items);
            }
            Obj::Dict(items) => {
                self.write(b"}");
                self.memoize();
                let n = items.len();
                let save_item = |p: &mut Self, i: usize| {
                    p.save(&items[i].0);
                    p.save(&items[i].1);
                };
                if n == 1 {
                    save_item(self, 0);
                    self.write(b"s");
                } else if n > 1 {
                    // CPython's dict loop runs again after a full batch, so a dict whose
                    // size is a multiple of 1,000 ends with an empty `MARK SETITEMS`.
                    let mut i = 0;
                    loop {
                        self.write(b"(");
                        let end = (i + BATCH).min(n);
                        let full = end - i == BATCH;
                        while i < end {
                            save_item(self, i);
                            i += 1;
                        }
                        self.write(b"u");
                        if !full {
                            break;
                        }
                    }
                }
            }
            Obj::Tuple(items) => {
                match items.len() {
                    0 => {
                        self.write(b")");
                        return;
                    }
                    n @ 1..=3 => {
                        for it in items {
                            self.save(it);
                        }
                        self.write(&[0x84 + n as u8]);
                    }
                    _ => {
                        self.write(b"(");
                        for it in items {
                            self.save(it);
                        }
                        self.write(b"t");
                    }
                }
                self.memoize();
            }
        }
    }

    fn list_items(&mut self, items: &[Obj<'_>]) {
        match items.len() {
            0 => {}
            1 => {
                self.save(&items[0]);
                self.write(b"a");
            }
            _ => {
                for chunk in items.chunks(BATCH) {
                    self.write(b"(");
                    for it in chunk {
                        self.save(it);
                    }
                    self.write(b"e");
                }
            }
        }
    }

    fn save_int(&mut self, v: i64) {
        if (0..=0xFF).contains(&v) {
            self.write(&[b'K', v as u8]);
        } else if (0..=0xFFFF).contains(&v) {
            let b = (v as u16).to_le_bytes();
            self.write(&[b'M', b[0], b[1]]);
        } else if i32::try_from(v).is_ok() {
            let mut op = [b'J', 0, 0, 0, 0];
            op[1..].copy_from_slice(&(v as i32).to_le_bytes());
            self.write(&op);
        } else {
            // LONG1: the shortest little-endian two's complement.
            let mut bytes = v.to_le_bytes().to_vec();
            while bytes.len() > 1 {
                let last = bytes[bytes.len() - 1];
                let prev_sign = bytes[bytes.len() - 2] & 0x80;
                if (last == 0 && prev_sign == 0) || (last == 0xFF && prev_sign != 0) {
                    bytes.pop();
                } else {
                    break;
                }
            }
            self.write(&[0x8A, bytes.len() as u8]);
            self.write(&bytes);
        }
    }

    fn save_str(&mut self, s: &str) {
        let n = s.len();
        if n <= 0xFF {
            self.write_bytes(&[0x8C, n as u8], s.as_bytes());
        } else if n <= 0xFFFF_FFFF {
            let mut h = [b'X', 0, 0, 0, 0];
            h[1..].copy_from_slice(&(n as u32).to_le_bytes());
            self.write_bytes(&h, s.as_bytes());
        } else {
            let mut h = [0x8D; 9];
            h[1..].copy_from_slice(&(n as u64).to_le_bytes());
            self.write_bytes(&h, s.as_bytes());
        }
        self.memoize();
    }
}

/// `pickle.dumps(obj, protocol=4)` as CPython writes it.
pub fn dumps(obj: &Obj<'_>) -> Vec<u8> {
    let mut p = Pickler { out: vec![0x80, 4], framing: true, frame_start: None, memo_len: 0, shared: HashMap::new() };
    p.save(obj);
    p.write(b".");
    p.commit_frame();
    p.out
}

// ----- the workloads' values as objects -----

use super::generate::{MODES, TAGS, W1Record, W3Args, W3Out, W4Value, W5Entry};

/// Identity of the interned strings shared across a pickle: TAGS[i] is `i`; dict-key
/// constants of the Python source are 100 + their position here.
const KEY_IDS: [&str; 4] = ["rev", "label", "value", "counts"];

fn key_id(k: &'static str) -> u64 {
    100 + KEY_IDS.iter().position(|&x| x == k).unwrap_or(0) as u64
}

pub fn w1_obj(r: &W1Record) -> Obj<'_> {
    Obj::Dict(vec![
        (Obj::Str("id"), Obj::Int(r.id as i64)),
        (Obj::Str("name"), Obj::Str(&r.name)),
        (Obj::Str("scores"), Obj::List(r.scores.iter().map(|&x| Obj::Float(x)).collect())),
        (Obj::Str("tags"), Obj::List(r.tags.iter().map(|&t| Obj::SharedStr(t as u64, TAGS[t])).collect())),
        (Obj::Str("active"), Obj::Bool(r.active)),
    ])
}

pub fn w3_args_obj(a: &W3Args) -> Obj<'_> {
    Obj::Tuple(vec![
        Obj::Int(a.n as i64),
        Obj::Str(&a.label),
        Obj::Dict(vec![
            (Obj::Str("mode"), Obj::SharedStr(MODES.iter().position(|&m| m == a.mode).unwrap_or(0) as u64, a.mode)),
            (Obj::Str("limit"), Obj::Int(a.limit as i64)),
            (Obj::Str("exact"), Obj::Bool(a.exact)),
        ]),
    ])
}

pub fn w3_out_obj(o: &W3Out) -> Obj<'_> {
    Obj::Dict(vec![
        (Obj::Str("n"), Obj::Int(o.n as i64)),
        (Obj::Str("label"), Obj::Str(&o.label)),
        (Obj::Str("mode"), Obj::Str(&o.mode)),
        (Obj::Str("values"), Obj::List(o.values.iter().map(|&x| Obj::Float(x)).collect())),
    ])
}

pub fn w4_obj(v: &W4Value) -> Obj<'_> {
    match v {
        W4Value::Floats(f) => Obj::List(f.iter().map(|&x| Obj::Float(x)).collect()),
        W4Value::Blob(b) => Obj::Bytes(b),
    }
}

/// A W5 snapshot: `{"item:<j>": {"rev", "label", "value", "counts"}}`; the four entry
/// keys are the same four string objects in every entry (constants of the source).
pub fn w5_obj<'a>(state: &'a [W5Entry], keys: &'a [String], labels: &'a [String]) -> Obj<'a> {
    Obj::Dict(
        state
            .iter()
            .enumerate()
            .map(|(j, e)| {
                let entry = Obj::Dict(vec![
                    (Obj::SharedStr(key_id("rev"), "rev"), Obj::Int(e.rev as i64)),
                    (Obj::SharedStr(key_id("label"), "label"), Obj::Str(&labels[j])),
                    (Obj::SharedStr(key_id("value"), "value"), Obj::Float(e.value)),
                    (
                        Obj::SharedStr(key_id("counts"), "counts"),
                        Obj::List(e.counts.iter().map(|&c| Obj::Int(c as i64)).collect()),
                    ),
                ]);
                (Obj::Str(&keys[j]), entry)
            })
            .collect(),
    )
}
