//! `from_slice` reads straight from the opcodes (`src/direct/`) and falls back to
//! `decode` + `from_value` where it cannot. Here both paths run on the same bytes and must
//! agree exactly — the same value, or the same error message — for:
//!
//! 1. random trees written in every shape a pickler may choose (`MARK … APPENDS` batches
//!    of any size, single `APPEND`/`SETITEM`, `TUPLE1-3` or `MARK … TUPLE`, `MARK … LIST`,
//!    `MARK … DICT`, `MARK … FROZENSET`, `EMPTY_SET`/`ADDITEMS`, every int, str and bytes
//!    opcode, `BINPUT`/`LONG_BINPUT`/`MEMOIZE` with `BINGET` of strs and other scalars,
//!    frames split anywhere), and a memo reference to a container now and then, read as
//!    two dozen target types;
//! 2. serde records (`to_value` trees, written the same ways) read as their own type;
//! 3. random `Value` graphs (shared and cyclic) through `encode`;
//! 4. truncations and mutations of all of these, deep nesting, MARK bombs, huge length
//!    prefixes, the node budget;
//! 5. the conformance corpus.
//!
//! Where the bytes only use what the direct path streams, it must not fall back (checked
//! with the hidden `direct_testing` hooks), so the comparison covers the direct path and
//! not only the fallback. Last, the memory test: `from_slice::<Vec<f64>>` of a
//! 250,000-float list holds no more than 1.5 × (input + output) bytes, counted by a global
//! allocator, where the `Value` path holds about 3 ×.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicIsize, Ordering};

use common::{Rng, corpus_pickles};
use pickleshelf_pickle::direct_testing::{direct, streamable, via_value};
use pickleshelf_pickle::{
    self as pickle, BigInt, Int, Node, NodeId, PyStr, Value, encode, from_slice, to_value, to_vec,
};
use proptest::collection::vec;
use proptest::prelude::*;
use serde::de::{self, DeserializeOwned, Deserializer, IgnoredAny, Visitor};
use serde::{Deserialize, Serialize};

// ----- target types -----

/// An `f64` compared by its bits.
#[derive(Clone, Copy, Serialize)]
struct F64(f64);

impl PartialEq for F64 {
    fn eq(&self, other: &F64) -> bool {
        self.0.to_bits() == other.0.to_bits()
    }
}

impl fmt::Debug for F64 {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{:?}({:#x})", self.0, self.0.to_bits())
    }
}

impl<'de> Deserialize<'de> for F64 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        f64::deserialize(d).map(F64)
    }
}

/// An `f32` compared by its bits.
#[derive(Clone, Copy, Debug, Serialize)]
struct F32(f32);

impl PartialEq for F32 {
    fn eq(&self, other: &F32) -> bool {
        self.0.to_bits() == other.0.to_bits()
    }
}

impl<'de> Deserialize<'de> for F32 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        f32::deserialize(d).map(F32)
    }
}

/// Anything, through `deserialize_any`, recording each visitor call.
#[derive(Debug, PartialEq, Clone)]
enum Any {
    Unit,
    Bool(bool),
    I64(i64),
    U64(u64),
    I128(i128),
    U128(u128),
    Float(F64),
    Str(String),
    Bytes(Vec<u8>),
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
                Ok(Any::Bool(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Any, E> {
                Ok(Any::I64(v))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Any, E> {
                Ok(Any::U64(v))
            }
            fn visit_i128<E>(self, v: i128) -> Result<Any, E> {
                Ok(Any::I128(v))
            }
            fn visit_u128<E>(self, v: u128) -> Result<Any, E> {
                Ok(Any::U128(v))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Any, E> {
                Ok(Any::Float(F64(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Any, E> {
                Ok(Any::Str(v.into()))
            }
            fn visit_bytes<E>(self, v: &[u8]) -> Result<Any, E> {
                Ok(Any::Bytes(v.into()))
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

/// Skips the value (`deserialize_ignored_any`).
#[derive(Debug, PartialEq)]
struct Skip;

impl<'de> Deserialize<'de> for Skip {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        IgnoredAny::deserialize(d).map(|_| Skip)
    }
}

/// Bytes through `deserialize_byte_buf`.
#[derive(Debug, PartialEq, Clone, Serialize)]
struct ByteBuf(#[serde(with = "as_bytes")] Vec<u8>);

mod as_bytes {
    pub fn serialize<S: serde::Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(b)
    }
}

impl<'de> Deserialize<'de> for ByteBuf {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ByteBuf;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<ByteBuf, E> {
                Ok(ByteBuf(v.to_vec()))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut a: A) -> Result<ByteBuf, A::Error> {
                let mut out = Vec::new();
                while let Some(x) = a.next_element()? {
                    out.push(x);
                }
                Ok(ByteBuf(out))
            }
        }
        d.deserialize_byte_buf(V)
    }
}

/// A W1 record.
#[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
struct Record {
    id: u64,
    name: String,
    scores: Vec<F64>,
    tags: Vec<String>,
    active: bool,
}

#[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
enum E {
    Unit,
    New(i32),
    Tup(i32, String),
    Rec { x: i32, y: Option<String> },
}

#[derive(Deserialize, Debug, PartialEq)]
#[serde(untagged)]
enum Untagged {
    Int(i64),
    Text(String),
    List(Vec<Untagged>),
    Map(BTreeMap<String, Untagged>),
}

#[derive(Deserialize, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
struct Strict {
    a: Option<i64>,
}

/// Runs `same::<T>` for each target type on `bytes`; `streams` lists the failures of
/// "succeeds on the `Value` path but falls back" (the caller decides whether that is
/// allowed for these bytes).
macro_rules! all_targets {
    ($bytes:expr, $streams:expr) => {{
        let b: &[u8] = $bytes;
        let s: &mut Vec<String> = $streams;
        same::<Any>(b, s)?;
        same::<Skip>(b, s)?;
        same::<Vec<Any>>(b, s)?;
        same::<Vec<Skip>>(b, s)?;
        same::<HashMap<String, Any>>(b, s)?;
        same::<BTreeMap<i64, Any>>(b, s)?;
        same::<Vec<(Any, Any)>>(b, s)?;
        same::<(Any, Any)>(b, s)?;
        same::<(Any, Skip, Any)>(b, s)?;
        same::<Vec<i64>>(b, s)?;
        same::<Vec<F64>>(b, s)?;
        same::<Vec<F32>>(b, s)?;
        same::<Vec<Option<String>>>(b, s)?;
        same::<Vec<Vec<Any>>>(b, s)?;
        same::<BTreeSet<i64>>(b, s)?;
        same::<Option<i128>>(b, s)?;
        same::<u128>(b, s)?;
        same::<u8>(b, s)?;
        same::<char>(b, s)?;
        same::<String>(b, s)?;
        same::<bool>(b, s)?;
        same::<()>(b, s)?;
        same::<ByteBuf>(b, s)?;
        same::<Vec<ByteBuf>>(b, s)?;
        same::<Record>(b, s)?;
        same::<E>(b, s)?;
        same::<Vec<E>>(b, s)?;
        same::<Untagged>(b, s)?;
        same::<Strict>(b, s)?;
        same::<serde_json::Value>(b, s)?;
    }};
}

/// Both paths give the same result on `bytes`; the direct path alone, when it answers,
/// gives the `Value` path's value. A `Value`-path success the direct path left to the
/// fallback is noted in `fell_back`.
fn same<T: DeserializeOwned + PartialEq + fmt::Debug>(
    bytes: &[u8],
    fell_back: &mut Vec<String>,
) -> Result<(), TestCaseError> {
    let ty = std::any::type_name::<T>();
    let got = from_slice::<T>(bytes).map_err(|e| e.to_string());
    let want = via_value::<T>(bytes).map_err(|e| e.to_string());
    prop_assert_eq!(&got, &want, "{}: from_slice and the Value path differ on {:?}", ty, Hex(bytes));
    match (direct::<T>(bytes), &want) {
        (Some(d), Ok(w)) => prop_assert_eq!(&d, w, "{}: the direct path's value", ty),
        (Some(d), Err(e)) => {
            return Err(TestCaseError::fail(format!(
                "{ty}: the direct path gave {d:?} where the Value path fails: {e}"
            )));
        }
        (None, Ok(_)) => fell_back.push(ty.to_owned()),
        (None, Err(_)) => {}
    }
    Ok(())
}

struct Hex<'a>(&'a [u8]);

impl fmt::Debug for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        for b in self.0.iter().take(400) {
            write!(f, "{b:02x}")?;
        }
        if self.0.len() > 400 {
            write!(f, "... ({} bytes)", self.0.len())?;
        }
        Ok(())
    }
}

// ----- trees, and a pickler that writes them in every shape -----

#[derive(Debug, Clone)]
enum Tree {
    None,
    Bool(bool),
    Int(i64),
    /// Sign and 32-bit limbs.
    Big(bool, Vec<u32>),
    Float(u64),
    /// Code points, lone surrogates included.
    Str(Vec<u32>),
    Bytes(Vec<u8>),
    ByteArray(Vec<u8>),
    List(Vec<Tree>),
    Tuple(Vec<Tree>),
    Dict(Vec<(Tree, Tree)>),
    Set(Vec<Tree>),
    FrozenSet(Vec<Tree>),
}

fn code_point() -> impl Strategy<Value = u32> {
    prop_oneof![
        8 => 0x61u32..0x67, // few distinct letters: strs repeat, so the memo is used
        2 => 0x20u32..0x7f,
        1 => 0x80u32..0x800,
        1 => 0xD800u32..0xE000,
        1 => 0x1_0000u32..0x11_0000,
    ]
}

fn leaf() -> impl Strategy<Value = Tree> {
    prop_oneof![
        1 => Just(Tree::None),
        1 => any::<bool>().prop_map(Tree::Bool),
        4 => prop_oneof![
            -3i64..300,
            any::<i64>(),
            Just(i64::MIN),
            Just(i64::MAX),
            Just(1 << 53),
            Just((1 << 53) + 1),
            Just(1 << 24),
            Just((1 << 24) + 1),
        ]
        .prop_map(Tree::Int),
        1 => (any::<bool>(), vec(any::<u32>(), 2..6)).prop_map(|(n, m)| Tree::Big(n, m)),
        3 => prop_oneof![any::<u64>(), Just(0x4004_0000_0000_0000), Just((-0.0f64).to_bits()), Just(f64::NAN.to_bits())]
            .prop_map(Tree::Float),
        5 => prop_oneof![4 => vec(code_point(), 0..4), 1 => vec(code_point(), 4..80)].prop_map(Tree::Str),
        1 => vec(any::<u8>(), 0..12).prop_map(Tree::Bytes),
        1 => vec(any::<u8>(), 0..12).prop_map(Tree::ByteArray),
    ]
}

/// A key's value as Python compares it (`1 == 1.0 == True`, tuples item by item,
/// frozensets as sets), as text; `None` for what may not be a key here: an unhashable
/// value (a list, dict, set, bytearray, or a container holding one), or a NaN (equal
/// only to the same object, which a pickler may or may not share).
fn key_text(t: &Tree) -> Option<String> {
    Some(match t {
        Tree::None => "N".into(),
        Tree::Bool(b) => u8::from(*b).to_string(),
        Tree::Int(i) => i.to_string(),
        Tree::Big(neg, mag) => match BigInt::from_sign_magnitude(*neg, mag.clone()) {
            Int::Small(i) => i.to_string(),
            Int::Big(b) => b.to_decimal(),
        },
        Tree::Float(bits) => {
            let x = f64::from_bits(*bits);
            if x.is_nan() {
                return None;
            }
            if x.is_finite() && x.fract() == 0.0 {
                let t = format!("{x:.0}");
                if t == "-0" { "0".into() } else { t }
            } else {
                format!("f{bits}")
            }
        }
        Tree::Str(cps) => format!("s{cps:?}"),
        Tree::Bytes(b) => format!("b{b:?}"),
        Tree::Tuple(items) => format!("({})", items.iter().map(key_text).collect::<Option<Vec<_>>>()?.join(",")),
        Tree::FrozenSet(items) => {
            let mut parts = items.iter().map(key_text).collect::<Option<Vec<_>>>()?;
            parts.sort();
            parts.dedup();
            format!("{{{}}}", parts.join(","))
        }
        Tree::ByteArray(_) | Tree::List(_) | Tree::Dict(_) | Tree::Set(_) => return None,
    })
}

/// The tree with what CPython would refuse or merge left out: dict keys and set
/// elements are hashable and distinct (the decoder refuses unhashable ones and merges
/// equal ones, which the direct path then leaves to it; `tests/cpython_keys.rs` covers
/// those).
fn python_clean(t: Tree) -> Tree {
    let distinct = |seen: &mut std::collections::HashSet<String>, k: &Tree| key_text(k).is_some_and(|x| seen.insert(x));
    match t {
        Tree::List(v) => Tree::List(v.into_iter().map(python_clean).collect()),
        Tree::Tuple(v) => Tree::Tuple(v.into_iter().map(python_clean).collect()),
        Tree::Dict(p) => {
            let mut seen = std::collections::HashSet::new();
            Tree::Dict(
                p.into_iter()
                    .map(|(k, v)| (python_clean(k), python_clean(v)))
                    .filter(|(k, _)| distinct(&mut seen, k))
                    .collect(),
            )
        }
        Tree::Set(v) => {
            let mut seen = std::collections::HashSet::new();
            Tree::Set(v.into_iter().map(python_clean).filter(|k| distinct(&mut seen, k)).collect())
        }
        Tree::FrozenSet(v) => {
            let mut seen = std::collections::HashSet::new();
            Tree::FrozenSet(v.into_iter().map(python_clean).filter(|k| distinct(&mut seen, k)).collect())
        }
        leaf => leaf,
    }
}

fn tree() -> impl Strategy<Value = Tree> {
    raw_tree().prop_map(python_clean)
}

fn raw_tree() -> impl Strategy<Value = Tree> {
    leaf().prop_recursive(5, 64, 8, |inner| {
        prop_oneof![
            3 => vec(inner.clone(), 0..8).prop_map(Tree::List),
            3 => vec(inner.clone(), 0..5).prop_map(Tree::Tuple),
            3 => vec((inner.clone(), inner.clone()), 0..6).prop_map(Tree::Dict),
            1 => vec(inner.clone(), 0..4).prop_map(Tree::Set),
            1 => vec(inner, 0..4).prop_map(Tree::FrozenSet),
        ]
    })
}

/// The tree of a `Value` without cycles (shared nodes are written twice).
fn tree_of(v: &Value, id: NodeId) -> Tree {
    let kids = |ids: &[NodeId]| ids.iter().map(|&c| tree_of(v, c)).collect();
    match &v[id] {
        Node::None => Tree::None,
        Node::Bool(b) => Tree::Bool(*b),
        Node::Int(i) => Tree::Int(*i),
        Node::BigInt(b) => Tree::Big(b.is_negative(), b.magnitude().to_vec()),
        Node::Float(x) => Tree::Float(x.to_bits()),
        Node::Str(s) => Tree::Str(s.code_points().collect()),
        Node::Bytes(b) => Tree::Bytes(b.clone()),
        Node::ByteArray(b) => Tree::ByteArray(b.clone()),
        Node::List(items) => Tree::List(kids(items)),
        Node::Tuple(items) => Tree::Tuple(kids(items)),
        Node::Set(items) => Tree::Set(kids(items)),
        Node::FrozenSet(items) => Tree::FrozenSet(kids(items)),
        Node::Dict(pairs) => Tree::Dict(pairs.iter().map(|&(k, x)| (tree_of(v, k), tree_of(v, x))).collect()),
        other => panic!("no tree for {other:?}"),
    }
}

/// A pickler that picks, at random, one of the ways the format allows for each thing.
struct Writer {
    out: Vec<u8>,
    /// Offsets where opcodes begin (frames may be cut there).
    ops: Vec<usize>,
    rng: Rng,
    memo: u32,
    /// Memoized scalars by their opcode bytes, for `BINGET`.
    seen: HashMap<Vec<u8>, u32>,
    /// Memoized containers, for the `GET` the direct path cannot stream.
    containers: Vec<u32>,
    /// Whether a container may be fetched from the memo (the bytes are then not
    /// streamable).
    share: bool,
    shared: bool,
    proto: u8,
}

fn surrogatepass(cps: &[u32]) -> Vec<u8> {
    let mut out = Vec::new();
    for &cp in cps {
        match cp {
            0..=0x7F => out.push(cp as u8),
            0x80..=0x7FF => out.extend_from_slice(&[0xC0 | (cp >> 6) as u8, 0x80 | (cp & 0x3F) as u8]),
            0x800..=0xFFFF => out.extend_from_slice(&[
                0xE0 | (cp >> 12) as u8,
                0x80 | ((cp >> 6) & 0x3F) as u8,
                0x80 | (cp & 0x3F) as u8,
            ]),
            _ => out.extend_from_slice(&[
                0xF0 | (cp >> 18) as u8,
                0x80 | ((cp >> 12) & 0x3F) as u8,
                0x80 | ((cp >> 6) & 0x3F) as u8,
                0x80 | (cp & 0x3F) as u8,
            ]),
        }
    }
    out
}

impl Writer {
    fn new(seed: u64, share: bool) -> Writer {
        let mut rng = Rng(seed);
        let proto = [1u8, 2, 3, 4, 5][rng.index(5)];
        Writer {
            out: Vec::new(),
            ops: Vec::new(),
            rng,
            memo: 0,
            seen: HashMap::new(),
            containers: Vec::new(),
            share,
            shared: false,
            proto,
        }
    }

    fn op(&mut self, bytes: &[u8]) {
        self.ops.push(self.out.len());
        self.out.extend_from_slice(bytes);
    }

    /// Memoizes the top of the stack; returns the index.
    fn memoize(&mut self) -> u32 {
        let i = self.memo;
        self.memo += 1;
        match self.rng.index(3) {
            0 if self.proto >= 4 => self.op(&[0x94]),
            1 if i < 256 => self.op(&[b'q', i as u8]),
            _ => {
                let mut b = vec![b'r'];
                b.extend_from_slice(&i.to_le_bytes());
                self.op(&b);
            }
        }
        i
    }

    fn get(&mut self, i: u32) {
        if i < 256 && !self.rng.one_in(3) {
            self.op(&[b'h', i as u8]);
        } else {
            let mut b = vec![b'j'];
            b.extend_from_slice(&i.to_le_bytes());
            self.op(&b);
        }
    }

    /// A scalar's opcode: fetched from the memo when it was memoized before (sometimes),
    /// else written and perhaps memoized.
    fn scalar(&mut self, bytes: Vec<u8>) {
        if let Some(&i) = self.seen.get(&bytes)
            && !self.rng.one_in(4)
        {
            return self.get(i);
        }
        self.op(&bytes);
        if self.rng.one_in(2) {
            let i = self.memoize();
            self.seen.insert(bytes, i);
        }
    }

    fn sized(&mut self, short: u8, long4: u8, long8: Option<u8>, body: &[u8]) -> Vec<u8> {
        let n = body.len();
        let mut b = Vec::new();
        match self.rng.index(3) {
            0 if n < 256 => b.extend_from_slice(&[short, n as u8]),
            1 if long8.is_some() => {
                b.push(long8.unwrap_or(long4));
                b.extend_from_slice(&(n as u64).to_le_bytes());
            }
            _ => {
                b.push(long4);
                b.extend_from_slice(&(n as u32).to_le_bytes());
            }
        }
        b.extend_from_slice(body);
        b
    }

    fn int(&mut self, i: i64) -> Vec<u8> {
        let pick = self.rng.index(4);
        if pick == 0 && (0..256).contains(&i) {
            vec![b'K', i as u8]
        } else if pick == 1 && (0..65536).contains(&i) {
            let b = (i as u16).to_le_bytes();
            vec![b'M', b[0], b[1]]
        } else if pick <= 1 && i32::try_from(i).is_ok() {
            let mut b = vec![b'J'];
            b.extend_from_slice(&(i as i32).to_le_bytes());
            b
        } else {
            // LONG1, minimal or padded with sign bytes.
            let mut le = i.to_le_bytes().to_vec();
            while le.len() > 1 && le[le.len() - 1] == if i < 0 { 0xff } else { 0 } && self.rng.one_in(2) {
                le.pop();
            }
            if (le[le.len() - 1] & 0x80 != 0) != (i < 0) {
                le.push(if i < 0 { 0xff } else { 0 });
            }
            if i == 0 && self.rng.one_in(2) {
                le.clear();
            }
            let mut b = vec![0x8a, le.len() as u8];
            b.extend_from_slice(&le);
            b
        }
    }

    fn items(&mut self, items: &[Tree], close: u8) {
        // Batches of random sizes; a batch of one may be a single APPEND.
        let mut rest = items;
        while !rest.is_empty() {
            let n = 1 + self.rng.index(rest.len().min(4));
            let (batch, tail) = rest.split_at(n);
            if n == 1 && close == b'e' && !self.rng.one_in(3) {
                self.tree(&batch[0]);
                self.op(b"a");
            } else {
                self.op(b"(");
                for t in batch {
                    self.tree(t);
                }
                self.op(&[close]);
            }
            rest = tail;
        }
    }

    fn pairs(&mut self, pairs: &[(Tree, Tree)]) {
        let mut rest = pairs;
        while !rest.is_empty() {
            let n = 1 + self.rng.index(rest.len().min(3));
            let (batch, tail) = rest.split_at(n);
            if n == 1 && !self.rng.one_in(3) {
                self.tree(&batch[0].0);
                self.tree(&batch[0].1);
                self.op(b"s");
            } else {
                self.op(b"(");
                for (k, v) in batch {
                    self.tree(k);
                    self.tree(v);
                }
                self.op(b"u");
            }
            rest = tail;
        }
    }

    /// Memoizes a container now and then, and fetches an earlier one now and then.
    fn container_memo(&mut self) {
        if self.rng.one_in(3) {
            let i = self.memoize();
            self.containers.push(i);
        }
    }

    fn tree(&mut self, t: &Tree) {
        if self.share && !self.containers.is_empty() && self.rng.one_in(8) {
            let i = self.containers[self.rng.index(self.containers.len())];
            self.get(i);
            self.shared = true;
            return;
        }
        match t {
            Tree::None => self.op(b"N"),
            Tree::Bool(b) => {
                if self.proto >= 2 {
                    self.op(if *b { &[0x88] } else { &[0x89] })
                } else {
                    self.op(if *b { b"I01\n" } else { b"I00\n" }) // text: the Value path
                }
            }
            Tree::Int(i) => {
                let b = self.int(*i);
                self.scalar(b);
            }
            Tree::Big(neg, mag) => {
                let le = match BigInt::from_sign_magnitude(*neg, mag.clone()) {
                    Int::Small(i) => i.to_le_bytes().to_vec(),
                    Int::Big(b) => b.to_le_twos_complement(),
                };
                let mut b = if le.len() < 256 && !self.rng.one_in(3) {
                    vec![0x8a, le.len() as u8]
                } else {
                    let mut b = vec![0x8b];
                    b.extend_from_slice(&(le.len() as u32).to_le_bytes());
                    b
                };
                b.extend_from_slice(&le);
                self.scalar(b);
            }
            Tree::Float(bits) => {
                let mut b = vec![b'G'];
                b.extend_from_slice(&bits.to_be_bytes());
                self.scalar(b);
            }
            Tree::Str(cps) => {
                let text = surrogatepass(cps);
                let b = if (text.is_ascii() && self.rng.one_in(6)) || self.rng.one_in(200) {
                    // A Python 2 str (an error unless ASCII).
                    self.sized(b'U', b'T', None, &text)
                } else {
                    self.sized(0x8c, b'X', Some(0x8d), &text)
                };
                self.scalar(b);
            }
            Tree::Bytes(body) => {
                let b = self.sized(b'C', b'B', Some(0x8e), body);
                self.scalar(b);
            }
            Tree::ByteArray(body) => {
                let mut b = vec![0x96];
                b.extend_from_slice(&(body.len() as u64).to_le_bytes());
                b.extend_from_slice(body);
                self.scalar(b);
            }
            Tree::List(items) => {
                if self.rng.one_in(4) {
                    // MARK items LIST, then maybe more appended.
                    let k = self.rng.index(items.len() + 1);
                    self.op(b"(");
                    for t in &items[..k] {
                        self.tree(t);
                    }
                    self.op(b"l");
                    self.container_memo();
                    self.items(&items[k..], b'e');
                } else {
                    self.op(b"]");
                    self.container_memo();
                    self.items(items, b'e');
                }
            }
            Tree::Tuple(items) => {
                if items.is_empty() && self.rng.one_in(2) {
                    self.op(b")");
                } else if (1..=3).contains(&items.len()) && self.rng.one_in(2) {
                    for t in items {
                        self.tree(t);
                    }
                    self.op(&[0x84 + items.len() as u8]);
                } else {
                    self.op(b"(");
                    for t in items {
                        self.tree(t);
                    }
                    self.op(b"t");
                }
                if self.rng.one_in(3) {
                    self.memoize();
                }
            }
            Tree::Dict(pairs) => {
                if self.rng.one_in(4) {
                    let k = self.rng.index(pairs.len() + 1);
                    self.op(b"(");
                    for (key, v) in &pairs[..k] {
                        self.tree(key);
                        self.tree(v);
                    }
                    self.op(b"d");
                    self.container_memo();
                    self.pairs(&pairs[k..]);
                } else {
                    self.op(b"}");
                    self.container_memo();
                    self.pairs(pairs);
                }
            }
            Tree::Set(items) => {
                self.op(&[0x8f]);
                self.container_memo();
                self.items(items, 0x90);
            }
            Tree::FrozenSet(items) => {
                self.op(b"(");
                for t in items {
                    self.tree(t);
                }
                self.op(&[0x91]);
                if self.rng.one_in(3) {
                    self.memoize();
                }
            }
        }
    }

    /// The pickle: `PROTO`, the tree, `STOP`, cut into frames at random opcode
    /// boundaries (protocol 4+).
    fn finish(mut self) -> Vec<u8> {
        self.op(b".");
        let body = std::mem::take(&mut self.out);
        let mut out = vec![0x80, self.proto];
        if self.proto < 4 || self.rng.one_in(4) {
            out.extend_from_slice(&body);
            return out;
        }
        let mut cuts: Vec<usize> = self.ops.iter().copied().filter(|_| self.rng.one_in(6)).collect();
        cuts.push(body.len());
        let mut from = 0;
        for &to in &cuts {
            if to > from {
                out.push(0x95);
                out.extend_from_slice(&((to - from) as u64).to_le_bytes());
                out.extend_from_slice(&body[from..to]);
                from = to;
            }
        }
        out
    }
}

/// Writes `t` in a random shape: `(bytes, streamable)`.
fn write(t: &Tree, seed: u64, share: bool) -> (Vec<u8>, bool) {
    let mut w = Writer::new(seed, share);
    w.tree(t);
    let text = w.proto < 2 && has_bool(t);
    let shared = w.shared;
    (w.finish(), !shared && !text)
}

fn has_bool(t: &Tree) -> bool {
    match t {
        Tree::Bool(_) => true,
        Tree::List(v) | Tree::Tuple(v) | Tree::Set(v) | Tree::FrozenSet(v) => v.iter().any(has_bool),
        Tree::Dict(p) => p.iter().any(|(k, v)| has_bool(k) || has_bool(v)),
        _ => false,
    }
}

fn check_tree(t: &Tree, seed: u64, share: bool) -> Result<(), TestCaseError> {
    let (bytes, plain) = write(t, seed, share);
    prop_assert_eq!(streamable(&bytes), plain, "plan of {:?}", Hex(&bytes));
    let mut fell_back = Vec::new();
    all_targets!(&bytes, &mut fell_back);
    if plain {
        prop_assert!(fell_back.is_empty(), "fell back for {:?} on {:?}", fell_back, Hex(&bytes));
    }
    // Cut short and mutated, the bytes still give the same result on both paths.
    let mut rng = Rng(seed ^ 0x5555);
    let mut ignored = Vec::new();
    let cut = rng.index(bytes.len());
    same::<Any>(&bytes[..cut], &mut ignored)?;
    same::<Skip>(&bytes[..cut], &mut ignored)?;
    for _ in 0..3 {
        let mut m = bytes.clone();
        for _ in 0..1 + rng.index(3) {
            let i = rng.index(m.len());
            m[i] = match rng.index(3) {
                0 => m[i] ^ (1 << rng.index(8)),
                1 => rng.next() as u8,
                _ => *b"(.eautsq\x85\x86\x87h\x94\x95)]}N".get(rng.index(18)).unwrap_or(&b'N'),
            };
        }
        all_targets!(&m, &mut ignored);
    }
    Ok(())
}

// ----- serde records -----

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Rec {
    id: u64,
    name: String,
    small: i8,
    big: i128,
    ubig: u128,
    score: F64,
    ratio: F32,
    tags: Vec<String>,
    opt: Option<i32>,
    map: HashMap<String, Vec<u16>>,
    kind: E,
    pair: (u8, char, bool),
    unit: (),
    data: ByteBuf,
    keyed: BTreeMap<(u8, u8), Vec<F64>>,
    children: Vec<Rec>,
}

fn f64_bits() -> impl Strategy<Value = F64> {
    prop_oneof![any::<u64>().prop_map(|b| F64(f64::from_bits(b))), Just(F64(-0.0)), any::<f64>().prop_map(F64)]
}

fn kind() -> impl Strategy<Value = E> {
    prop_oneof![
        Just(E::Unit),
        any::<i32>().prop_map(E::New),
        (any::<i32>(), ".{0,8}").prop_map(|(a, b)| E::Tup(a, b)),
        (any::<i32>(), proptest::option::of("[a-c]{0,3}")).prop_map(|(x, y)| E::Rec { x, y }),
    ]
}

fn rec_leaf() -> impl Strategy<Value = Rec> {
    (
        (any::<u64>(), ".{0,40}", any::<i8>(), any::<i128>(), any::<u128>(), f64_bits(), any::<u32>()),
        (
            vec("[a-d]{0,3}", 0..5),
            proptest::option::of(any::<i32>()),
            proptest::collection::hash_map("[a-d]{0,3}", vec(any::<u16>(), 0..4), 0..4),
            kind(),
            (any::<u8>(), any::<char>(), any::<bool>()),
            vec(any::<u8>(), 0..20),
            proptest::collection::btree_map((any::<u8>(), any::<u8>()), vec(f64_bits(), 0..3), 0..3),
        ),
    )
        .prop_map(|((id, name, small, big, ubig, score, ratio), (tags, opt, map, kind, pair, data, keyed))| Rec {
            id,
            name,
            small,
            big,
            ubig,
            score,
            ratio: F32(f32::from_bits(ratio)),
            tags,
            opt,
            map,
            kind,
            pair,
            unit: (),
            data: ByteBuf(data),
            keyed,
            children: Vec::new(),
        })
}

fn rec() -> impl Strategy<Value = Rec> {
    rec_leaf().prop_recursive(3, 12, 3, |inner| {
        (rec_leaf(), vec(inner, 0..3)).prop_map(|(mut r, children)| {
            r.children = children;
            r
        })
    })
}

fn check_rec(r: &Rec, seed: u64) -> Result<(), TestCaseError> {
    let fail = |e: pickleshelf_pickle::Error| TestCaseError::fail(e.to_string());
    let mut fell_back = Vec::new();
    // The crate's own pickles: streamed from protocol 3 on (protocol 2 writes bytes
    // through REDUCE).
    for protocol in 2..=5u8 {
        let bytes = pickle::to_vec_with_protocol(r, protocol).map_err(fail)?;
        same::<Rec>(&bytes, &mut fell_back)?;
        // (Compared with `r` by `same`'s `Value`-path result: a signalling NaN `f32`
        // comes back quiet on both paths.)
        prop_assert_eq!(direct::<Rec>(&bytes).is_some(), protocol >= 3, "protocol {}", protocol);
    }
    // Any shape a pickler may choose.
    let v = to_value(r).map_err(fail)?;
    let (bytes, plain) = write(&tree_of(&v, v.root()), seed, false);
    same::<Rec>(&bytes, &mut fell_back)?;
    same::<Any>(&bytes, &mut fell_back)?;
    same::<Skip>(&bytes, &mut fell_back)?;
    same::<HashMap<String, Skip>>(&bytes, &mut fell_back)?;
    let decodes = via_value::<Rec>(&bytes).is_ok(); // a non-ASCII Python 2 str does not
    prop_assert_eq!(direct::<Rec>(&bytes).is_some(), plain && decodes, "{:?}", Hex(&bytes));
    // A prefix of the bytes or a changed byte: the same result either way.
    let mut rng = Rng(seed);
    let mut m = bytes.clone();
    let i = rng.index(m.len());
    m[i] = rng.next() as u8;
    same::<Rec>(&m, &mut fell_back)?;
    same::<Rec>(&bytes[..rng.index(bytes.len())], &mut fell_back)?;
    Ok(())
}

// ----- 3. Value graphs, shared and cyclic, through `encode` -----

fn graph_value(atoms: &[Tree], picks: &[(u8, Vec<u32>)], root: u32) -> Value {
    fn atom(v: &mut Value, t: &Tree) -> NodeId {
        v.push(match t {
            Tree::None => Node::None,
            Tree::Bool(b) => Node::Bool(*b),
            Tree::Int(i) => Node::Int(*i),
            Tree::Big(n, m) => match BigInt::from_sign_magnitude(*n, m.clone()) {
                Int::Small(i) => Node::Int(i),
                Int::Big(b) => Node::BigInt(Box::new(b)),
            },
            Tree::Float(b) => Node::Float(f64::from_bits(*b)),
            Tree::Str(cps) => Node::Str(PyStr::from_code_points(cps).unwrap_or_else(|| PyStr::from("?"))),
            Tree::Bytes(b) => Node::Bytes(b.clone()),
            Tree::ByteArray(b) => Node::ByteArray(b.clone()),
            _ => Node::None,
        })
    }
    let mut v = Value::new(Node::None);
    let mut ids = vec![v.root()];
    for t in atoms {
        ids.push(atom(&mut v, t));
    }
    let first = ids.len();
    for (shape, _) in picks {
        ids.push(v.push(match shape % 3 {
            0 => Node::List(Vec::new()),
            1 => Node::Dict(Vec::new()),
            _ => Node::Tuple(Vec::new()),
        }));
    }
    for (j, (shape, kids)) in picks.iter().enumerate() {
        let me = first + j;
        // Lists and dicts may point anywhere (cycles); tuples only at earlier nodes.
        let modulus = if shape % 3 == 2 { me } else { ids.len() } as u32;
        let kids: Vec<NodeId> = kids.iter().map(|k| ids[(k % modulus) as usize]).collect();
        match v.node_mut(ids[me]) {
            Node::List(items) | Node::Tuple(items) => items.extend(kids),
            Node::Dict(pairs) => pairs.extend(kids.chunks_exact(2).map(|p| (p[0], p[1]))),
            _ => {}
        }
    }
    v.set_root(ids[(root % ids.len() as u32) as usize]);
    v
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: if cfg!(debug_assertions) { 64 } else { 2_000 },
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn trees_in_every_shape_read_alike_on_both_paths(t in tree(), seed in any::<u64>()) {
        check_tree(&t, seed, false)?;
    }

    #[test]
    fn memo_references_to_containers_fall_back(t in tree(), seed in any::<u64>()) {
        check_tree(&t, seed, true)?;
    }

    #[test]
    fn records_read_alike_on_both_paths(r in rec(), seed in any::<u64>()) {
        check_rec(&r, seed)?;
    }

    #[test]
    fn encoded_graphs_read_alike_on_both_paths(
        atoms in vec(leaf(), 1..8),
        picks in vec((any::<u8>(), vec(any::<u32>(), 0..6)), 0..8),
        root in any::<u32>(),
    ) {
        let v = graph_value(&atoms, &picks, root);
        for protocol in 2..=5u8 {
            if let Ok(bytes) = encode(&v, protocol) {
                all_targets!(&bytes, &mut Vec::new());
            }
        }
    }
}

// ----- each shape, by hand -----

#[test]
fn each_shape_by_hand_reads_alike() {
    // (pickle, does the direct path read it as `Any`?)
    let cases: &[(&[u8], bool)] = &[
        (b"\x80\x04\x8f(K\x01K\x02\x90.", true),       // {1, 2}: EMPTY_SET, ADDITEMS
        (b"\x80\x04(K\x01K\x02\x91.", true),           // frozenset({1, 2})
        (b"\x80\x02(K\x01K\x02t.", true),              // (1, 2): MARK TUPLE
        (b"\x80\x02(t.", true),                        // (): MARK TUPLE, empty
        (b"\x80\x02).", true),                         // (): EMPTY_TUPLE
        (b"\x80\x02K\x01K\x02\x86.", true),            // (1, 2): TUPLE2
        (b"\x80\x02K\x01\x85\x85.", true),             // ((1,),)
        (b"\x80\x02]K\x01\x85a.", true),               // [(1,)]: APPEND of a tuple
        (b"\x80\x02]q\x00K\x01aK\x02a.", true),        // [1, 2]: two APPENDs
        (b"\x80\x02}X\x01\x00\x00\x00aK\x01s.", true), // {'a': 1}: SETITEM
        (b"\x80\x02(K\x01l(K\x02e.", true),            // [1, 2]: MARK LIST, APPENDS
        (b"\x80\x02(X\x01\x00\x00\x00aK\x01d.", true), // {'a': 1}: MARK DICT
        (b"\x80\x02(X\x01\x00\x00\x00aK\x01dX\x01\x00\x00\x00bK\x02s.", true), // and a SETITEM
        (b"\x80\x02](]q\x00K\x01a]q\x01K\x02ae.", true), // [[1], [2]]
        (b"\x80\x02](]q\x01K\x01ae.", false),          // memo index out of order
        (b"\x80\x02]q\x00(X\x02\x00\x00\x00abq\x01h\x01e.", true), // ['ab', 'ab'] via the memo
        (b"\x80\x02]q\x00(]q\x01h\x01e.", false),      // [[], <the same []>]: shared
        (b"\x80\x02(K\x01K\x02d.", true),              // {1: 2}
        (b"\x80\x02(K\x01d.", false),                  // odd DICT: an error
        (b"\x80\x02K\x01K\x02\x85.", false),           // two values at STOP
        (b"\x80\x02]K\x01K\x02\x85a.", false),         // (2,) appended, 1 left over
        (b"\x80\x02]K\x01\x85\x85a.", true),           // [((1,),)]
        (b"\x80\x05\x96\x02\x00\x00\x00\x00\x00\x00\x00ab.", true), // bytearray(b'ab')
        (b"\x80\x02U\x02ab.", true),                   // Python 2 str
        (b"\x80\x02\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x00\x01.", true), // 2**64
        (b"\x80\x02\x8a\x00.", true),                  // LONG1 of no bytes: 0
    ];
    for &(bytes, streams) in cases {
        let run = || -> Result<(), TestCaseError> {
            all_targets!(bytes, &mut Vec::new());
            Ok(())
        };
        if let Err(e) = run() {
            panic!("{:?}: {e}", Hex(bytes));
        }
        assert_eq!(direct::<Any>(bytes).is_some(), streams, "{:?}", Hex(bytes));
    }
}

// ----- 4. hostile inputs -----

fn agree(bytes: &[u8]) {
    let run = || -> Result<(), TestCaseError> {
        all_targets!(bytes, &mut Vec::new());
        Ok(())
    };
    if let Err(e) = run() {
        panic!("{e}");
    }
}

fn nested_lists(depth: usize) -> Vec<u8> {
    let mut p = b"\x80\x02".to_vec();
    p.extend(std::iter::repeat_n(b']', depth));
    p.extend(std::iter::repeat_n(b'a', depth - 1));
    p.push(b'.');
    p
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(transparent)]
struct Nest(Vec<Nest>);

#[test]
fn deep_nesting_is_refused_where_the_value_path_refuses_it() {
    // serde's limit (128): a recursive type reads 128 levels, not 129.
    for depth in [127, 128, 129, 130] {
        let p = nested_lists(depth);
        assert_eq!(from_slice::<Nest>(&p).map_err(|e| e.to_string()), via_value::<Nest>(&p).map_err(|e| e.to_string()));
        assert_eq!(from_slice::<Nest>(&p).is_ok(), depth <= 128, "{depth}");
        assert_eq!(direct::<Nest>(&p).is_some(), depth <= 128);
        agree(&p);
    }
    // The decoder's limit (100,000): skipping does not recurse and is refused exactly
    // where decoding is.
    for depth in [1000, 99_990, 100_000, 100_001, 200_000] {
        let p = nested_lists(depth);
        let want = via_value::<Skip>(&p).map_err(|e| e.to_string());
        assert_eq!(from_slice::<Skip>(&p).map_err(|e| e.to_string()), want, "{depth}");
        assert_eq!(want.is_ok(), depth <= 100_000, "{depth}: {want:?}");
        assert_eq!(from_slice::<Any>(&p).map_err(|e| e.to_string()), via_value::<Any>(&p).map_err(|e| e.to_string()));
    }
    assert!(direct::<Skip>(&nested_lists(99_990)).is_some(), "skipped on the direct path");
    // Deep tuples (postfix) and dicts as well.
    let mut p = b"\x80\x02N".to_vec();
    p.extend(std::iter::repeat_n(0x85, 150_000));
    p.push(b'.');
    agree(&p);
    let mut p = b"\x80\x02".to_vec();
    for _ in 0..150_000 {
        p.extend_from_slice(b"}X\x01\x00\x00\x00k");
    }
    p.push(b'N');
    p.extend(std::iter::repeat_n(b's', 150_000));
    p.push(b'.');
    agree(&p);
}

#[test]
fn mark_bombs_and_huge_lengths_are_plain_errors() {
    agree(&[b'('; 200_000]);
    let mut p = vec![b']'];
    p.extend(std::iter::repeat_n(b'(', 150_000));
    p.push(b'.');
    agree(&p);
    for p in [
        &b"X\xff\xff\xff\xff"[..],
        b"\x80\x04\x8d\xff\xff\xff\xff\xff\xff\xff\x7f",
        b"\x80\x04\x8e\x00\x00\x00\x00\x00\x00\x00\x80abc.",
        b"\x80\x05\x96\xff\xff\xff\xff\xff\xff\xff\xff.",
        b"\x80\x02\x8b\xff\xff\xff\x7f.",
        b"\x80\x02\x8b\xff\xff\xff\xff.",
        b"\x80\x02T\xff\xff\xff\xff.",
        b"\x80\x04\x95\xff\xff\xff\xff\xff\xff\xff\xff].",
        b"\x80\x04\x95\x02\x00\x00\x00\x00\x00\x00\x00M\x01\x00.",
        b"\x80\x04\x95\x01\x00\x00\x00\x00\x00\x00\x00]\x95\x01\x00\x00\x00\x00\x00\x00\x00.",
        b"\x80\x04\x95\x0b\x00\x00\x00\x00\x00\x00\x00\x95\x01\x00\x00\x00\x00\x00\x00\x00N.",
        b"\x80\x06N.",
        b"\x80\x02]q\x05h\x06a.",
        b"\x80\x02]r\xff\xff\xff\xffK\x01a.",
        b"",
        b".",
        b"\x80\x02",
        // Python 2 strs must be ASCII, even when they are UTF-8; strs must be UTF-8 (or
        // CPython's surrogatepass), even where they are skipped.
        b"\x80\x02U\x02\xc3\xa9.",
        b"\x80\x02T\x02\x00\x00\x00\xc3\xa9.",
        b"\x80\x02}(X\x01\x00\x00\x00aU\x02\xc3\xa9u.",
        b"\x80\x02}(X\x01\x00\x00\x00zX\x01\x00\x00\x00\xffu.",
        b"\x80\x02}(X\x01\x00\x00\x00zX\x03\x00\x00\x00\xed\xa0\x80u.",
    ] {
        agree(p);
    }
}

#[test]
fn the_node_budget_is_the_value_paths() {
    // 1.1 million references to one memoized int: 3 nodes, budget 1,000,000 visits.
    let mut p = b"\x80\x02]q\x00K\x07q\x010".to_vec();
    for chunk in 0..1100 {
        p.push(b'(');
        p.extend(std::iter::repeat_n(*b"h\x01", 1000).flatten());
        p.push(b'e');
        let _ = chunk;
    }
    p.push(b'.');
    // (POP is not streamed; without it the int would be the list's first item.)
    let mut q = b"\x80\x02]q\x00(K\x07q\x01".to_vec();
    q.extend(std::iter::repeat_n(*b"h\x01", 999).flatten());
    q.push(b'e');
    for _ in 0..1100 {
        q.push(b'(');
        q.extend(std::iter::repeat_n(*b"h\x01", 1000).flatten());
        q.push(b'e');
    }
    q.push(b'.');
    for bytes in [&p, &q] {
        let want = via_value::<Vec<u8>>(bytes).map_err(|e| e.to_string());
        assert!(want.as_ref().is_err_and(|e| e.contains("nodes visited")), "{want:?}");
        assert_eq!(from_slice::<Vec<u8>>(bytes).map_err(|e| e.to_string()), want);
        assert_eq!(from_slice::<Skip>(bytes).map_err(|e| e.to_string()), Ok(Skip));
    }
    assert!(streamable(&q) && direct::<Skip>(&q).is_some());
    // A list of 1.1 million Nones: two nodes (the None is shared).
    let mut p = b"\x80\x02](".to_vec();
    p.extend(std::iter::repeat_n(b'N', 1_100_000));
    p.extend_from_slice(b"e.");
    let want = via_value::<Vec<Option<u8>>>(&p).map_err(|e| e.to_string());
    assert!(want.as_ref().is_err_and(|e| e.contains("nodes visited")));
    assert_eq!(from_slice::<Vec<Option<u8>>>(&p).map_err(|e| e.to_string()), want);
    // 1.1 million distinct floats are 1.1 million nodes: well within the budget.
    let floats: Vec<f64> = (0..1_100_000).map(f64::from).collect();
    let p = to_vec(&floats).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(direct::<Vec<f64>>(&p).as_deref(), Some(&floats[..]));
}

#[test]
fn visitors_that_read_nothing_do_not_shift_positions() {
    /// Reads nothing at all.
    #[derive(Debug, PartialEq)]
    struct Nothing;
    impl<'de> Deserialize<'de> for Nothing {
        fn deserialize<D: Deserializer<'de>>(_d: D) -> Result<Self, D::Error> {
            Ok(Nothing)
        }
    }
    /// Takes only the first item.
    #[derive(Debug, PartialEq)]
    struct First(i64);
    impl<'de> Deserialize<'de> for First {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = First;
                fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                    f.write_str("a sequence")
                }
                fn visit_seq<A: de::SeqAccess<'de>>(self, mut a: A) -> Result<First, A::Error> {
                    Ok(First(a.next_element()?.unwrap_or(0)))
                }
            }
            d.deserialize_seq(V)
        }
    }
    /// Accepts a tuple of any length through `deserialize_tuple(3)`.
    #[derive(Debug, PartialEq)]
    struct Loose(Vec<i64>);
    impl<'de> Deserialize<'de> for Loose {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = Loose;
                fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                    f.write_str("a tuple")
                }
                fn visit_seq<A: de::SeqAccess<'de>>(self, mut a: A) -> Result<Loose, A::Error> {
                    let mut v = Vec::new();
                    while let Some(x) = a.next_element()? {
                        v.push(x);
                    }
                    Ok(Loose(v))
                }
            }
            d.deserialize_tuple(3, V)
        }
    }
    let list = to_vec(&vec![1i64, 2, 3]).unwrap_or_default();
    let pair = to_vec(&(1i64, 2i64)).unwrap_or_default();
    let mut s = Vec::new();
    let mut run = || -> Result<(), TestCaseError> {
        for b in [&list, &pair] {
            same::<Nothing>(b, &mut s)?;
            same::<Vec<Nothing>>(b, &mut s)?;
            same::<(Nothing, i64)>(b, &mut s)?;
            same::<(Nothing, Nothing, Nothing)>(b, &mut s)?;
            same::<First>(b, &mut s)?;
            same::<Loose>(b, &mut s)?;
            same::<Option<Nothing>>(b, &mut s)?;
        }
        Ok(())
    };
    if let Err(e) = run() {
        panic!("{e}");
    }
    assert_eq!(from_slice::<Vec<Nothing>>(&list).map_err(|e| e.to_string()), Ok(vec![Nothing, Nothing, Nothing]));
    assert_eq!(from_slice::<Loose>(&list).map_err(|e| e.to_string()), Ok(Loose(vec![1, 2, 3])));
    assert!(from_slice::<Loose>(&pair).is_err());
}

#[test]
fn a_deserialize_impl_may_call_from_slice_itself() {
    /// A pickle inside a pickle's bytes, read while the outer one is being read.
    #[derive(Debug, PartialEq)]
    struct Inner(Vec<u32>);
    impl<'de> Deserialize<'de> for Inner {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            let b = ByteBuf::deserialize(d)?;
            from_slice::<Vec<u32>>(&b.0).map(Inner).map_err(de::Error::custom)
        }
    }
    let inner = to_vec(&vec![1u32, 2, 3]).unwrap_or_default();
    let outer = to_vec(&(ByteBuf(inner), 7u8)).unwrap_or_default();
    assert_eq!(direct::<(Inner, u8)>(&outer), Some((Inner(vec![1, 2, 3]), 7)));
}

// ----- 5. the corpus and CPython's pickles -----

#[test]
fn the_conformance_corpus_reads_alike_on_both_paths() {
    let Some(cases) = corpus_pickles() else { return };
    assert!(cases.len() >= 700, "{} cases", cases.len());
    let mut streamed = 0;
    for (name, bytes) in &cases {
        let run = || -> Result<(), TestCaseError> {
            all_targets!(bytes, &mut Vec::new());
            // Every prefix, and every byte changed once (a few values each); for the
            // few large files (and in debug builds), 64 (24) of each.
            let mut ignored = Vec::new();
            let n = bytes.len();
            let mut rng = Rng(n as u64);
            let (all, some) = if cfg!(debug_assertions) { (24, 24) } else { (2048, 64) };
            let places: Vec<usize> =
                if n <= all { (0..n).collect() } else { (0..some).map(|_| rng.index(n)).collect() };
            for &cut in &places {
                same::<Any>(&bytes[..cut], &mut ignored)?;
            }
            let mut m = bytes.clone();
            for &i in &places {
                let old = m[i];
                for x in [old ^ 1, old ^ 0x80, b'.', b'(', 0x94] {
                    m[i] = x;
                    same::<Any>(&m, &mut ignored)?;
                    same::<Skip>(&m, &mut ignored)?;
                }
                m[i] = old;
            }
            Ok(())
        };
        if let Err(e) = run() {
            panic!("{name}: {e}");
        }
        if direct::<Skip>(bytes).is_some() {
            streamed += 1;
        }
    }
    // Protocol 0 (text opcodes), objects, shared and cyclic values fall back; the rest,
    // over half of the corpus, is streamed.
    assert!(streamed * 2 > cases.len(), "only {streamed} of {} corpus files streamed", cases.len());
}

// ----- memory -----

/// Counts the bytes allocated by the thread that set [`TRACK`].
struct Counting;

thread_local! {
    static TRACK: Cell<bool> = const { Cell::new(false) };
}

static CURRENT: AtomicIsize = AtomicIsize::new(0);
static PEAK: AtomicIsize = AtomicIsize::new(0);

fn track(delta: isize) {
    if TRACK.try_with(Cell::get).unwrap_or(false) {
        let now = CURRENT.fetch_add(delta, Ordering::Relaxed) + delta;
        PEAK.fetch_max(now, Ordering::Relaxed);
    }
}

#[allow(unsafe_code)]
// SAFETY: every call is forwarded to `System` unchanged; only sizes are counted.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as `System.alloc`.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            track(layout.size() as isize);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as `System.alloc_zeroed`.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            track(layout.size() as isize);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as `System.dealloc`.
        unsafe { System.dealloc(ptr, layout) };
        track(-(layout.size() as isize));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as `System.realloc`.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            // Counted as a new block before the old one is freed: the worst case.
            track(new_size as isize);
            track(-(layout.size() as isize));
        }
        p
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// The most bytes `f` held at once beyond what was allocated before it.
fn peak_of<T>(f: impl FnOnce() -> T) -> (T, usize) {
    CURRENT.store(0, Ordering::Relaxed);
    PEAK.store(0, Ordering::Relaxed);
    TRACK.with(|t| t.set(true));
    let out = f();
    TRACK.with(|t| t.set(false));
    (out, PEAK.load(Ordering::Relaxed).max(0) as usize)
}

#[test]
fn a_float_list_is_read_in_the_memory_of_input_and_output() {
    // W4's list: 250,000 floats, 2.25 MB of pickle.
    let mut g = Rng(4);
    let floats: Vec<f64> = (0..250_000).map(|_| (g.next() >> 11) as f64 / (1u64 << 53) as f64).collect();
    let bytes = to_vec(&floats).unwrap_or_else(|e| panic!("{e}"));
    let input = bytes.len();
    let output = floats.len() * size_of::<f64>();
    let bound = (input + output) * 3 / 2;
    let (direct_out, direct_peak) = peak_of(|| from_slice::<Vec<f64>>(&bytes));
    assert_eq!(direct_out.as_deref().map_err(|e| e.to_string()), Ok(&floats[..]));
    let (value_out, value_peak) = peak_of(|| via_value::<Vec<f64>>(&bytes));
    assert_eq!(value_out.as_deref().map_err(|e| e.to_string()), Ok(&floats[..]));
    eprintln!(
        "input {input} B, output {output} B: from_slice held {direct_peak} B more than the input \
         ({:.2}x input + output), the Value path {value_peak} B ({:.2}x)",
        (input + direct_peak) as f64 / (input + output) as f64,
        (input + value_peak) as f64 / (input + output) as f64,
    );
    assert!(input + direct_peak <= bound, "direct path: {} B > 1.5 x {} B", input + direct_peak, input + output);
    // The bound is a real one: the Value path (a 32-byte node per float) exceeds it.
    assert!(input + value_peak > bound, "Value path: {} B", input + value_peak);
}
