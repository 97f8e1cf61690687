//! How the Rust backends turn workload data into pickles and back.
//!
//! Workload data is held the way a Python program holds it: as object graphs
//! ([`pickleshelf::pickle::Value`]) in which a string repeated within one value is one
//! shared node, exactly where CPython's pickle would write a memo reference. Encoding
//! such a graph gives CPython's bytes. Reads decode fully: into typed structs through
//! serde (W1–W3, a Rust user's natural path) or into a `Value` graph (W4, W5).
//!
//! [`Codec::Library`] is the crate's codec. While the crate's encoder or serde support
//! is still a stub, [`Codec::Reference`] stands in so the harness runs: it writes with the
//! reference writer (`refpickle`) and reads with the crate's decoder plus hand-written
//! field access. Every result says which codec it used.

use anyhow::{Context, Result, anyhow};
use pickleshelf::pickle::{self, Node, NodeId, PyStr, Value};
use serde::{Deserialize, Serialize};

use super::checks::Check;
use super::generate::{self, TAGS, W1Record, W3Args, W3Out, W4Value, W5Entry};
use super::refpickle::{self, Obj};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Codec {
    Library,
    Reference,
}

impl Codec {
    /// The crate's codec when its encoder and serde support work, else the reference.
    pub fn detect() -> Codec {
        let encodes = pickle::encode(&Value::new(Node::Int(1)), 4).is_ok();
        let serializes = pickle::to_vec(&1u8).is_ok();
        let deserializes = pickle::from_slice::<u8>(b"\x80\x04K\x01.").is_ok();
        if encodes && serializes && deserializes { Codec::Library } else { Codec::Reference }
    }

    pub fn name(self) -> &'static str {
        match self {
            Codec::Library => "library",
            Codec::Reference => "reference (crate encoder/serde unavailable)",
        }
    }

    /// The pickle-4 bytes of a value graph.
    pub fn encode(self, v: &Value) -> Result<Vec<u8>> {
        match self {
            Codec::Library => pickle::encode(v, 4).context("pickle::encode"),
            Codec::Reference => Ok(refpickle::dumps(&value_obj(v, v.root()))),
        }
    }

    /// Typed decode of pickle bytes.
    pub fn decode_typed<T: Typed>(self, bytes: &[u8]) -> Result<T> {
        match self {
            Codec::Library => pickle::from_slice(bytes).context("pickle::from_slice"),
            Codec::Reference => {
                let v = pickle::decode(bytes).context("pickle::decode")?;
                T::from_graph(&v).ok_or_else(|| anyhow!("value does not have the expected shape"))
            }
        }
    }
}

/// A typed workload value: serde for the library codec, hand-written access for the
/// reference fallback.
pub trait Typed: serde::de::DeserializeOwned {
    fn from_graph(v: &Value) -> Option<Self>;
}

fn str_at(v: &Value, id: NodeId) -> Option<String> {
    v.as_str(id).map(str::to_owned)
}

fn int_at(v: &Value, id: NodeId) -> Option<u64> {
    v.as_i64(id).and_then(|x| u64::try_from(x).ok())
}

fn floats_at(v: &Value, id: NodeId) -> Option<Vec<f64>> {
    v.as_seq(id)?.iter().map(|&x| v.as_f64(x)).collect()
}

// ----- W1 -----

/// A W1 record as a Rust program reads it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Record {
    pub id: u64,
    pub name: String,
    pub scores: Vec<f64>,
    pub tags: Vec<String>,
    pub active: bool,
}

impl Typed for Record {
    fn from_graph(v: &Value) -> Option<Record> {
        let root = v.root();
        let field = |k| v.dict_get(root, k);
        let tags = v.as_seq(field("tags")?)?.iter().map(|&t| str_at(v, t)).collect::<Option<_>>()?;
        Some(Record {
            id: int_at(v, field("id")?)?,
            name: str_at(v, field("name")?)?,
            scores: floats_at(v, field("scores")?)?,
            tags,
            active: matches!(v.get(field("active")?)?, Node::Bool(true)),
        })
    }
}

impl Record {
    pub fn of(r: &W1Record) -> Record {
        Record {
            id: r.id,
            name: r.name.clone(),
            scores: r.scores.to_vec(),
            tags: r.tags.iter().map(|&t| TAGS[t].to_owned()).collect(),
            active: r.active,
        }
    }
}

fn s(v: &mut Value, text: &str) -> NodeId {
    v.push(Node::Str(PyStr::from(text)))
}

/// A W1 record as CPython holds it: a repeated tag is one shared string.
pub fn w1_value(r: &W1Record) -> Value {
    let mut v = Value::new(Node::Dict(Vec::new()));
    let mut items = Vec::with_capacity(5);
    let k = s(&mut v, "id");
    let x = v.push(Node::Int(r.id as i64));
    items.push((k, x));
    let k = s(&mut v, "name");
    let x = s(&mut v, &r.name);
    items.push((k, x));
    let k = s(&mut v, "scores");
    let scores = r.scores.iter().map(|&f| v.push(Node::Float(f))).collect();
    let x = v.push(Node::List(scores));
    items.push((k, x));
    let k = s(&mut v, "tags");
    let mut seen: Vec<(usize, NodeId)> = Vec::new();
    let mut tags = Vec::with_capacity(r.tags.len());
    for &t in &r.tags {
        let id = match seen.iter().find(|(tt, _)| *tt == t) {
            Some(&(_, id)) => id,
            None => {
                let id = s(&mut v, TAGS[t]);
                seen.push((t, id));
                id
            }
        };
        tags.push(id);
    }
    let x = v.push(Node::List(tags));
    items.push((k, x));
    let k = s(&mut v, "active");
    let x = v.push(Node::Bool(r.active));
    items.push((k, x));
    let root = v.root();
    *v.node_mut(root) = Node::Dict(items);
    v
}

// ----- W3 -----

/// The memoized function's result as a Rust program holds it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct W3Result {
    pub n: u64,
    pub label: String,
    pub mode: String,
    pub values: Vec<f64>,
}

impl Typed for W3Result {
    fn from_graph(v: &Value) -> Option<W3Result> {
        let root = v.root();
        let field = |k| v.dict_get(root, k);
        Some(W3Result {
            n: int_at(v, field("n")?)?,
            label: str_at(v, field("label")?)?,
            mode: str_at(v, field("mode")?)?,
            values: floats_at(v, field("values")?)?,
        })
    }
}

impl W3Result {
    pub fn compute(args: &W3Args) -> W3Result {
        let W3Out { n, label, mode, values } = generate::w3_compute(args);
        W3Result { n, label, mode, values }
    }

    fn reference_pickle(&self) -> Vec<u8> {
        let out = W3Out { n: self.n, label: self.label.clone(), mode: self.mode.clone(), values: self.values.clone() };
        refpickle::dumps(&refpickle::w3_out_obj(&out))
    }
}

/// The third argument, `{"mode", "limit", "exact"}`.
#[derive(Serialize)]
pub struct W3Options<'a> {
    pub mode: &'a str,
    pub limit: u64,
    pub exact: bool,
}

impl Codec {
    /// The serialized arguments `(n, "q<n>", {...})` that the memo key hashes.
    pub fn w3_args_pickle(self, a: &W3Args) -> Result<Vec<u8>> {
        match self {
            Codec::Library => {
                let opts = W3Options { mode: a.mode, limit: a.limit, exact: a.exact };
                pickle::to_vec(&(a.n, a.label.as_str(), opts)).context("pickle::to_vec(args)")
            }
            Codec::Reference => Ok(refpickle::dumps(&refpickle::w3_args_obj(a))),
        }
    }

    /// The pickle of a result.
    pub fn w3_result_pickle(self, r: &W3Result) -> Result<Vec<u8>> {
        match self {
            Codec::Library => pickle::to_vec(r).context("pickle::to_vec(result)"),
            Codec::Reference => Ok(r.reference_pickle()),
        }
    }
}

/// `"memo:f:" + hex(first 16 bytes of blake3(pickled args))`.
pub fn memo_key(args_pickle: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let h = blake3::hash(args_pickle);
    let mut key = String::with_capacity(7 + 32);
    key.push_str("memo:f:");
    for &b in &h.as_bytes()[..16] {
        key.push(HEX[(b >> 4) as usize] as char);
        key.push(HEX[(b & 15) as usize] as char);
    }
    key
}

// ----- W4 -----

/// A W4 value as a graph (moves the data in).
pub fn w4_value(v: W4Value) -> Value {
    match v {
        W4Value::Blob(b) => Value::new(Node::Bytes(b)),
        W4Value::Floats(f) => {
            let mut v = Value::new(Node::List(Vec::new()));
            let items = f.into_iter().map(|x| v.push(Node::Float(x))).collect();
            let root = v.root();
            *v.node_mut(root) = Node::List(items);
            v
        }
    }
}

/// The W4 fingerprint of a decoded value.
pub fn w4_fingerprint(v: &Value) -> Option<generate::W4Fingerprint> {
    match v.root_node() {
        Node::Bytes(b) => Some(generate::w4_fingerprint_blob(b)),
        Node::List(items) => generate::w4_fingerprint_floats(items.len(), |i| v.as_f64(*items.get(i)?)),
        _ => None,
    }
}

// ----- W5 -----

/// The W5 program state as a graph: a dict of E entry dicts whose four keys are the
/// same four string objects (constants of the Python source), plus where each entry's
/// `rev` and `value` live so a mutation can change them in place.
pub struct W5State {
    pub value: Value,
    rev: Vec<NodeId>,
    val: Vec<NodeId>,
    revs: Vec<u64>,
}

impl W5State {
    pub fn new(entries: &[W5Entry]) -> W5State {
        let mut v = Value::new(Node::Dict(Vec::new()));
        let keys = [s(&mut v, "rev"), s(&mut v, "label"), s(&mut v, "value"), s(&mut v, "counts")];
        let mut items = Vec::with_capacity(entries.len());
        let (mut rev, mut val) = (Vec::new(), Vec::new());
        for (j, e) in entries.iter().enumerate() {
            let k = s(&mut v, &generate::w5_key(j));
            let r = v.push(Node::Int(e.rev as i64));
            let l = s(&mut v, &generate::w5_label(j));
            let x = v.push(Node::Float(e.value));
            let counts = e.counts.iter().map(|&c| v.push(Node::Int(c as i64))).collect();
            let c = v.push(Node::List(counts));
            let entry = v.push(Node::Dict(vec![(keys[0], r), (keys[1], l), (keys[2], x), (keys[3], c)]));
            items.push((k, entry));
            rev.push(r);
            val.push(x);
        }
        let root = v.root();
        *v.node_mut(root) = Node::Dict(items);
        W5State { value: v, rev, val, revs: entries.iter().map(|e| e.rev).collect() }
    }

    /// `state["item:<j>"].rev += 1; .value = x`.
    pub fn change(&mut self, j: usize, x: f64) {
        self.revs[j] += 1;
        *self.value.node_mut(self.rev[j]) = Node::Int(self.revs[j] as i64);
        *self.value.node_mut(self.val[j]) = Node::Float(x);
    }
}

/// (number of entries, Σ rev) of a decoded W5 snapshot.
pub fn w5_summary(v: &Value) -> Option<(usize, u64)> {
    let Node::Dict(items) = v.root_node() else { return None };
    let mut revs = 0u64;
    for &(_, e) in items {
        revs += int_at(v, v.dict_get(e, "rev")?)?;
    }
    Some((items.len(), revs))
}

// ----- reference encoding of any workload graph -----

/// The reference writer's object for a graph: each str node is one object (shared
/// nodes are memo references).
fn value_obj(v: &Value, id: NodeId) -> Obj<'_> {
    match &v[id] {
        Node::None => Obj::None,
        Node::Bool(b) => Obj::Bool(*b),
        Node::Int(i) => Obj::Int(*i),
        Node::Float(f) => Obj::Float(*f),
        Node::Str(s) => Obj::SharedStr(id.index() as u64, s.as_str().unwrap_or("")),
        Node::Bytes(b) => Obj::Bytes(b),
        Node::List(items) => Obj::List(items.iter().map(|&x| value_obj(v, x)).collect()),
        Node::Tuple(items) => Obj::Tuple(items.iter().map(|&x| value_obj(v, x)).collect()),
        Node::Dict(items) => Obj::Dict(items.iter().map(|&(k, x)| (value_obj(v, k), value_obj(v, x))).collect()),
        _ => Obj::None, // no workload value holds anything else
    }
}

// ----- checks of the crate's codec against the reference (CPython's bytes) -----

fn same_bytes(name: &'static str, got: Result<Vec<u8>>, want: &[u8]) -> Check {
    let outcome = match got {
        Ok(b) if b == want => Ok(()),
        Ok(b) => {
            let at = b.iter().zip(want).position(|(x, y)| x != y).unwrap_or(b.len().min(want.len()));
            Err(format!("{} bytes, CPython writes {}; first difference at byte {at}", b.len(), want.len()))
        }
        Err(e) => Err(format!("{e:#}")),
    };
    Check { name, outcome }
}

/// The crate's encoder, serde serializer and deserializer on the workloads' values:
/// the bytes must be CPython's (as the reference writer, itself checked against
/// CPython, writes them) and typed reads must give the data back.
pub fn library_checks() -> Vec<Check> {
    let codec = Codec::Library;
    let mut out = Vec::new();
    let recs = generate::w1_records(20_000);
    let mut first_bad = None;
    let mut total = 0usize;
    for r in &recs {
        let want = refpickle::dumps(&refpickle::w1_obj(r));
        match codec.encode(&w1_value(r)) {
            Ok(b) => {
                total += b.len();
                if b != want && first_bad.is_none() {
                    first_bad = Some(format!("record {}: {} bytes, CPython writes {}", r.id, b.len(), want.len()));
                }
            }
            Err(e) => {
                first_bad = Some(format!("{e:#}"));
                break;
            }
        }
    }
    out.push(Check { name: "encode: W1 records are CPython's bytes", outcome: first_bad.map_or(Ok(()), Err) });
    out.push(Check {
        name: "encode: W1 pickle-4 total 3,725,436",
        outcome: if total == 3_725_436 { Ok(()) } else { Err(format!("total {total}")) },
    });
    let r0 = &recs[19_999];
    let typed = codec.encode(&w1_value(r0)).and_then(|b| codec.decode_typed::<Record>(&b));
    out.push(Check {
        name: "serde: W1 record read as Record",
        outcome: match typed {
            Ok(r) if r == Record::of(r0) => Ok(()),
            Ok(r) => Err(format!("read {r:?}")),
            Err(e) => Err(format!("{e:#}")),
        },
    });
    for n in [0u64, 7, 10_000] {
        let a = generate::w3_args(n);
        let res = W3Result::compute(&a);
        let name_args = match n {
            0 => "serde: W3 args(0) are CPython's bytes",
            7 => "serde: W3 args(7) are CPython's bytes",
            _ => "serde: W3 args(10000) are CPython's bytes",
        };
        out.push(same_bytes(name_args, codec.w3_args_pickle(&a), &refpickle::dumps(&refpickle::w3_args_obj(&a))));
        let name_res = match n {
            0 => "serde: W3 result(0) is CPython's bytes",
            7 => "serde: W3 result(7) is CPython's bytes",
            _ => "serde: W3 result(10000) is CPython's bytes",
        };
        out.push(same_bytes(name_res, codec.w3_result_pickle(&res), &res.reference_pickle()));
    }
    let res = W3Result::compute(&generate::w3_args(10_000));
    out.push(Check {
        name: "serde: W3 result read back",
        outcome: match codec.w3_result_pickle(&res).and_then(|b| codec.decode_typed::<W3Result>(&b)) {
            Ok(r) if r == res => Ok(()),
            Ok(r) => Err(format!("read n={} with {} values", r.n, r.values.len())),
            Err(e) => Err(format!("{e:#}")),
        },
    });
    let mut w4 = generate::W4Values::new();
    for name in ["encode: W4 v0 (250,000 floats) is CPython's bytes", "encode: W4 v1 (2 MB bytes) is CPython's bytes"] {
        let v = w4.next_value();
        let want = refpickle::dumps(&refpickle::w4_obj(&v));
        out.push(same_bytes(name, codec.encode(&w4_value(v)), &want));
    }
    let mut rng = generate::SplitMix64::new(generate::SEED_W5);
    let entries = generate::w5_initial(5_000, &mut rng);
    let keys: Vec<String> = (0..entries.len()).map(generate::w5_key).collect();
    let labels: Vec<String> = (0..entries.len()).map(generate::w5_label).collect();
    let want = refpickle::dumps(&refpickle::w5_obj(&entries, &keys, &labels));
    out.push(same_bytes(
        "encode: W5 snapshot 0 (5,000 entries, shared keys) is CPython's bytes",
        codec.encode(&W5State::new(&entries).value),
        &want,
    ));
    out
}
