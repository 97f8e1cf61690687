//! Fuzz target: arbitrary bytes through everything a reader does with an untrusted
//! pickle. Nothing may panic, hang or use memory beyond linear in the input.
//!
//! decode (default limits, then tight ones) → Display → validate → serde
//! (`IgnoredAny`, a walk of the whole value through `deserialize_any`, a typed record)
//! → the round trip: for protocols 2–5, `encode` must not panic (it may refuse, e.g.
//! an out-of-band buffer before protocol 5), and what it writes must decode, to a value
//! [`equivalent`] to the first, and encode again to the same bytes.
#![no_main]

use std::collections::HashMap;
use std::fmt;

use libfuzzer_sys::fuzz_target;
use pickleshelf_pickle::{self as pickle, Construct, Global, Limits, Node, NodeId, Value};
use serde::de::{self, Deserialize, Deserializer, IgnoredAny, Visitor};

fuzz_target!(|data: &[u8]| {
    if let Ok(v) = pickle::decode(data) {
        exercise(&v);
    }
    let tight = Limits::default().max_marks(4).max_depth(8).max_int_digits(20);
    if let Ok(v) = pickle::decode_with(data, &tight) {
        exercise(&v);
    }
});

fn exercise(v: &Value) {
    let _ = v.to_string();
    assert!(v.validate().is_ok(), "the decoder made an id outside the arena");
    let _ = pickle::from_value::<IgnoredAny>(v);
    let _ = pickle::from_value::<Any>(v);
    let _ = pickle::from_value::<Record>(v);
    for protocol in 2..=5 {
        round_trip(v, protocol);
    }
}

fn round_trip(v: &Value, protocol: u8) {
    let Ok(bytes) = pickle::encode(v, protocol) else { return };
    let back = decode_ours(&bytes, protocol, v);
    if protocol <= 2 && renames_globals(v) {
        // At protocol 2 the encoder writes Python 3 names as their Python 2 names and
        // the decoder maps Python 2 names to Python 3 ones (CPython's `fix_imports`), and
        // the two mappings are not inverses (`_pickle` is written `pickle`, which stays
        // `pickle`; `copy_reg` in a protocol-4 pickle comes back `copyreg`). Renaming a
        // built-in can also turn a call of it into a native value
        // (`__builtin__.set(...)` → a set). So the first trip may change such a value;
        // from the second on it must be exact.
        let again = pickle::encode(&back, protocol)
            .unwrap_or_else(|e| panic!("protocol {protocol}: the decoded value does not encode: {e}"));
        return exact(&back, &again, protocol);
    }
    exact(v, &bytes, protocol);
}

/// `bytes`, which is `encode(v, protocol)`, decodes to a value equivalent to `v` that
/// encodes to the same bytes.
fn exact(v: &Value, bytes: &[u8], protocol: u8) {
    let back = decode_ours(bytes, protocol, v);
    assert!(
        equivalent(v, &back, protocol),
        "protocol {protocol}: the round trip changed the value\nbefore: {v}\nafter:  {back}"
    );
    let again = pickle::encode(&back, protocol)
        .unwrap_or_else(|e| panic!("protocol {protocol}: the decoded value does not encode: {e}"));
    assert!(again == bytes, "protocol {protocol}: encoding the decoded value gave other bytes\nvalue: {v}");
}

fn decode_ours(bytes: &[u8], protocol: u8, v: &Value) -> Value {
    pickle::decode(bytes)
        .unwrap_or_else(|e| panic!("protocol {protocol}: our own pickle does not decode: {e}\nvalue: {v}"))
}

/// Whether a protocol-2 round trip renames a global of `v`.
fn renames_globals(v: &Value) -> bool {
    v.nodes().iter().any(|n| match n {
        Node::Global(g) => protocol_2_name(&g.module, &g.name) != (g.module.clone(), g.name.clone()),
        _ => false,
    })
}

/// Equal up to atom identity: a one-to-one map between the two graphs' containers and
/// objects (list, non-empty tuple, dict, set, frozenset, bytearray, object) that
/// matches their kinds and maps children to children, and atoms (None, bool, int,
/// float by bits, str, bytes, empty tuple, global, extension, buffer; a persistent id
/// by its id object) equal by value wherever they are. A pickle does not keep the
/// identity of atoms: ints and floats are never memoized, and `None`, `True`, `''`,
/// `()`, one-character strs and a global's name are one object each in Python (see
/// `crates/pickle/tests/roundtrip_props.rs`, which checks those rules exactly on plain data).
///
/// Before protocol 4 a global with a dotted (nested) name is written as CPython writes
/// it, `getattr(parent, 'last')`, and comes back as that call: such a global matches
/// that object. At protocol 2 a global matches the global a protocol-2 round trip makes
/// of it (see [`round_trip`] on names).
fn equivalent(a: &Value, b: &Value, protocol: u8) -> bool {
    let mut fwd: HashMap<NodeId, NodeId> = HashMap::new();
    let mut back: HashMap<NodeId, NodeId> = HashMap::new();
    let mut work = vec![(a.root(), b.root())];
    let mut steps = 0usize;
    while let Some((x, y)) = work.pop() {
        let (Some(nx), Some(ny)) = (a.get(x), b.get(y)) else { return false };
        if let Node::Global(g) = nx
            && protocol < 4
            && g.name.contains('.')
        {
            if !nested_global(b, y, &g.module, &g.name, protocol) {
                return false;
            }
            continue;
        }
        if let (Node::Global(g), Node::Global(h)) = (nx, ny)
            && protocol <= 2
        {
            if protocol_2_name(&g.module, &g.name) != (h.module.clone(), h.name.clone()) {
                return false;
            }
            continue;
        }
        if has_identity(nx) {
            match (fwd.get(&x), back.get(&y)) {
                (Some(&y2), Some(&x2)) if y2 == y && x2 == x => continue,
                (None, None) => {
                    fwd.insert(x, y);
                    back.insert(y, x);
                }
                _ => return false,
            }
        }
        if !shallow_equal(nx, ny) {
            return false;
        }
        // Atoms with children (persistent ids) are compared by value each time they
        // are reached: bound the walk, as sharing could make it exponential.
        steps += 1;
        if steps > 16 * (a.len() + b.len()) + 1000 {
            return true;
        }
        let (mut cx, mut cy) = (Vec::new(), Vec::new());
        nx.for_each_child(|c| cx.push(c));
        ny.for_each_child(|c| cy.push(c));
        if cx.len() != cy.len() {
            return false;
        }
        work.extend(cx.into_iter().zip(cy));
    }
    true
}

/// The module and name a global comes back with from a protocol-2 round trip (the
/// codec's own mappings: checking them against CPython's tables is for the
/// conformance tests). A name the round trip does not give back as a global (a dotted
/// one, a non-ASCII one that protocol 2 cannot write) is returned as it is.
fn protocol_2_name(module: &str, name: &str) -> (String, String) {
    let g = Value::new(Node::Global(Box::new(Global { module: module.to_owned(), name: name.to_owned() })));
    let back = pickle::encode(&g, 2).and_then(|b| pickle::decode(&b));
    match back.as_ref().map(|v| v.root_node()) {
        Ok(Node::Global(g)) => (g.module.clone(), g.name.clone()),
        _ => (module.to_owned(), name.to_owned()),
    }
}

/// Whether `id` in `v` is the global `module.name`, or for a dotted name
/// `getattr(<the parent>, 'last')`.
fn nested_global(v: &Value, id: NodeId, module: &str, name: &str, protocol: u8) -> bool {
    let Some((parent, last)) = name.rsplit_once('.') else {
        let (m, n) = if protocol <= 2 { protocol_2_name(module, name) } else { (module.to_owned(), name.to_owned()) };
        return matches!(v.get(id), Some(Node::Global(g)) if g.module == m && g.name == n);
    };
    let Some(Node::Object(o)) = v.get(id) else { return false };
    let Construct::Reduce { callable, args } = o.construct else { return false };
    let getattr = matches!(v.get(callable), Some(Node::Global(g)) if g.module == "builtins" && g.name == "getattr");
    match v.as_seq(args) {
        Some(&[p, l]) if getattr && o.ops.is_empty() && v.as_str(l) == Some(last) => {
            nested_global(v, p, module, parent, protocol)
        }
        _ => false,
    }
}

fn has_identity(n: &Node) -> bool {
    match n {
        Node::Tuple(items) => !items.is_empty(),
        Node::List(_) | Node::Dict(_) | Node::Set(_) | Node::FrozenSet(_) | Node::ByteArray(_) | Node::Object(_) => {
            true
        }
        _ => false,
    }
}

/// Kind and atom content, not children. An out-of-band buffer's index is its position
/// among the pickle's `NEXT_BUFFER`s, which a round trip renumbers: the encoder writes
/// one per reference, in the order it reaches them, as CPython's pickler does (a buffer
/// that was popped, or reached twice, shifts the others).
fn shallow_equal(a: &Node, b: &Node) -> bool {
    match (a, b) {
        (Node::Float(x), Node::Float(y)) => x.to_bits() == y.to_bits(),
        (Node::Buffer { readonly: r, .. }, Node::Buffer { readonly: s, .. }) => r == s,
        (Node::List(_), Node::List(_))
        | (Node::Tuple(_), Node::Tuple(_))
        | (Node::Dict(_), Node::Dict(_))
        | (Node::Set(_), Node::Set(_))
        | (Node::FrozenSet(_), Node::FrozenSet(_))
        | (Node::PersistentId(_), Node::PersistentId(_)) => true,
        (Node::Object(x), Node::Object(y)) => {
            std::mem::discriminant(&x.construct) == std::mem::discriminant(&y.construct)
                && x.ops.len() == y.ops.len()
                && x.ops.iter().zip(&y.ops).all(|(p, q)| std::mem::discriminant(p) == std::mem::discriminant(q))
        }
        _ => a == b,
    }
}

/// A typed record, the store's `get::<T>` read path.
#[derive(serde::Deserialize)]
#[allow(dead_code)]
struct Record {
    id: u64,
    name: String,
    scores: Vec<f64>,
    tags: Vec<String>,
    active: bool,
    kind: Option<Kind>,
}

#[derive(serde::Deserialize)]
#[allow(dead_code)]
enum Kind {
    Unit,
    New(i8),
    Tup(u8, char),
    Rec { x: u128 },
}

/// Anything, through `deserialize_any`: walks the whole value.
struct Any;

impl<'de> Deserialize<'de> for Any {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Any;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("anything")
            }
            fn visit_unit<E>(self) -> Result<Any, E> {
                Ok(Any)
            }
            fn visit_bool<E>(self, _: bool) -> Result<Any, E> {
                Ok(Any)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Any, E> {
                Ok(Any)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Any, E> {
                Ok(Any)
            }
            fn visit_i128<E>(self, _: i128) -> Result<Any, E> {
                Ok(Any)
            }
            fn visit_u128<E>(self, _: u128) -> Result<Any, E> {
                Ok(Any)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Any, E> {
                Ok(Any)
            }
            fn visit_str<E>(self, _: &str) -> Result<Any, E> {
                Ok(Any)
            }
            fn visit_bytes<E>(self, _: &[u8]) -> Result<Any, E> {
                Ok(Any)
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut a: A) -> Result<Any, A::Error> {
                while a.next_element::<Any>()?.is_some() {}
                Ok(Any)
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut a: A) -> Result<Any, A::Error> {
                while a.next_entry::<Any, Any>()?.is_some() {}
                Ok(Any)
            }
        }
        d.deserialize_any(V)
    }
}
