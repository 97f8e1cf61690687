//! Encode → decode round trips, as properties.
//!
//! 1. Random plain `Value` graphs (every native kind, big ints, any float bits, strs with
//!    lone surrogates, bytes and bytearrays around the opcode-size edges, nested
//!    containers, shared nodes and cycles) at protocols 2–5: `decode(encode(v, p))` is
//!    `same_as` [`expected`]`(v, p)`, and encoding the decoded value again gives the same
//!    bytes.
//! 2. Random serde data (`Vec`, `HashMap<String, _>`, `Option`, nested structs and enums,
//!    `i128`/`u128`, `f64`/`f32` with any bits, bytes, chars, tuples): `from_slice(to_vec(x))
//!    == x`, and `to_vec_with_protocol(x, p) == encode(&to_value(x)?, p)`.
//!
//! Why `expected(v, p)` and not `v` itself: `Value::same_as` demands a one-to-one map
//! between the two graphs' nodes, atoms included, but a pickle does not carry the
//! identity of every atom, and the encoder writes atoms as CPython's pickler does
//! (`encode.rs`, `emit.rs`): ints and floats are never memoized, so an int node reached
//! twice comes back as two nodes; `None`, `True`, `False` and `()` are one object each in
//! Python, so the decoder makes one node of each; `''`, the one-character strs below
//! U+0100, `b''` and (at protocol 2) one-byte bytes are singletons, so two such nodes
//! with the same content come back as one. Every other node — containers, other strs
//! and bytes — keeps its identity exactly: shared stays shared, distinct stays distinct.
//! `expected` applies just those rules to `v`, so the comparison still checks sharing and
//! cycles in full, and checks the atom identity rules themselves.
//!
//! Graphs are generated so that every cycle passes through a list or dict, the objects
//! a pickler memoizes before their items (a cycle through tuples only cannot be
//! pickled; the encoder's error for it has its own unit test), and so that dict keys and
//! set elements are hashable and distinct by Python's equality, as CPython's are (the
//! decoder refuses unhashable keys and merges equal ones; `tests/cpython_keys.rs`
//! checks that against CPython).
//! `encode(decode(b)) == b` for the corpus is `tests/encode_cpython.rs`'s.

use std::collections::HashMap;
use std::fmt;

use pickleshelf_pickle::{
    self as pickle, BigInt, Int, Node, NodeId, PyStr, Value, decode, encode, from_slice, to_value, to_vec,
    to_vec_with_protocol,
};
use proptest::collection::vec;
use proptest::prelude::*;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

// ----- 1. Value graphs -----

#[derive(Debug, Clone)]
enum Atom {
    None,
    Bool(bool),
    Int(i64),
    /// Sign and little-endian 32-bit limbs (often beyond i64).
    Big(bool, Vec<u32>),
    /// The bits of a float.
    Float(u64),
    /// Code points, lone surrogates included.
    Str(Vec<u32>),
    Bytes(Vec<u8>),
    ByteArray(Vec<u8>),
}

#[derive(Debug, Clone, Copy)]
enum Shape {
    List,
    Tuple,
    Dict,
    Set,
    FrozenSet,
}

/// Nodes `0..atoms.len()` are the atoms, then one per container. A container's child
/// picks name nodes modulo the node count (lists, dicts, and sets if allowed: any node,
/// so cycles) or modulo its own index (the others: earlier nodes only).
#[derive(Debug, Clone)]
struct Graph {
    atoms: Vec<Atom>,
    containers: Vec<(Shape, Vec<u32>)>,
    /// An extra container with this many items, around the 1,000-item batch size.
    wide: Option<(Shape, usize)>,
    root: u32,
}

fn code_point() -> impl Strategy<Value = u32> {
    prop_oneof![
        6 => 0x20u32..0x7f,
        1 => 0u32..0x20,
        2 => 0x80u32..0x100,
        1 => 0x100u32..0xD800,
        2 => 0xD800u32..0xE000,
        1 => 0xE000u32..0x11_0000,
    ]
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => vec(any::<u8>(), 0..=2),
        4 => vec(any::<u8>(), 3..max.min(40)),
        1 => vec(any::<u8>(), 250..=260),
    ]
}

fn atom() -> impl Strategy<Value = Atom> {
    prop_oneof![
        1 => Just(Atom::None),
        1 => any::<bool>().prop_map(Atom::Bool),
        3 => prop_oneof![
            any::<i64>(),
            -300i64..300,
            Just(i64::MIN),
            Just(i64::MAX),
            Just(i64::from(i32::MIN)),
            Just(1 << 31),
        ]
        .prop_map(Atom::Int),
        1 => (any::<bool>(), vec(any::<u32>(), 2..6)).prop_map(|(n, m)| Atom::Big(n, m)),
        3 => prop_oneof![
            any::<u64>(),
            Just((-0.0f64).to_bits()),
            Just(f64::NAN.to_bits()),
            Just(0x7FF0_0000_0000_0001), // a signalling NaN
            Just(f64::INFINITY.to_bits()),
            Just(1),                     // the smallest subnormal
        ]
        .prop_map(Atom::Float),
        4 => prop_oneof![
            3 => vec(code_point(), 0..=1),
            3 => vec(code_point(), 2..40),
            1 => vec(code_point(), 250..300),
        ]
        .prop_map(Atom::Str),
        2 => bytes(300).prop_map(Atom::Bytes),
        1 => bytes(40).prop_map(Atom::ByteArray),
    ]
}

fn shape() -> impl Strategy<Value = Shape> {
    prop_oneof![Just(Shape::List), Just(Shape::Tuple), Just(Shape::Dict), Just(Shape::Set), Just(Shape::FrozenSet)]
}

fn graph() -> impl Strategy<Value = Graph> {
    (
        vec(atom(), 1..16),
        vec((shape(), vec(any::<u32>(), 0..8)), 0..12),
        prop::option::weighted(0.05, (shape(), 995usize..1006)),
        any::<u32>(),
    )
        .prop_map(|(atoms, containers, wide, root)| Graph { atoms, containers, wide, root })
}

fn atom_node(a: &Atom) -> Node {
    match a {
        Atom::None => Node::None,
        Atom::Bool(b) => Node::Bool(*b),
        Atom::Int(i) => Node::Int(*i),
        Atom::Big(neg, mag) => match BigInt::from_sign_magnitude(*neg, mag.clone()) {
            Int::Small(i) => Node::Int(i),
            Int::Big(b) => Node::BigInt(Box::new(b)),
        },
        Atom::Float(bits) => Node::Float(f64::from_bits(*bits)),
        Atom::Str(cps) => Node::Str(PyStr::from_code_points(cps).unwrap_or_else(|| PyStr::from("?"))),
        Atom::Bytes(b) => Node::Bytes(b.clone()),
        Atom::ByteArray(b) => Node::ByteArray(b.clone()),
    }
}

/// A key's value as Python compares it (`1 == 1.0 == True`, `-0.0 == 0`, a NaN equal
/// only to itself, tuples item by item, frozensets as sets), written as text; `None`
/// for an unhashable node (a list, dict, set, bytearray, or a tuple or frozenset holding
/// one). A model independent of the codec's, for building dicts and sets whose keys are
/// distinct and hashable, as CPython's are. Tuples and frozensets only hold earlier
/// nodes here, so the walk ends.
fn key_text(v: &Value, id: NodeId) -> Option<String> {
    Some(match &v[id] {
        Node::None => "N".into(),
        Node::Bool(b) => u8::from(*b).to_string(),
        Node::Int(i) => i.to_string(),
        Node::BigInt(b) => b.to_decimal(),
        Node::Float(x) if x.is_nan() => format!("nan#{}", id.index()),
        Node::Float(x) if x.is_finite() && x.fract() == 0.0 => {
            let t = format!("{x:.0}");
            if t == "-0" { "0".into() } else { t }
        }
        Node::Float(x) => format!("f{}", x.to_bits()),
        Node::Str(s) => format!("s{:?}", s.as_surrogatepass()),
        Node::Bytes(b) => format!("b{b:?}"),
        Node::Tuple(items) => {
            let parts: Option<Vec<String>> = items.iter().map(|&c| key_text(v, c)).collect();
            format!("({})", parts?.join(","))
        }
        Node::FrozenSet(items) => {
            let mut parts: Vec<String> = items.iter().map(|&c| key_text(v, c)).collect::<Option<_>>()?;
            parts.sort();
            parts.dedup();
            format!("{{{}}}", parts.join(","))
        }
        _ => return None,
    })
}

/// Builds the value. Dict keys and set elements are earlier nodes that Python can hash,
/// each distinct (picks that would repeat one or be unhashable are left out); dict
/// values and list items may be any node, so cycles pass through lists and dicts.
fn build(g: &Graph) -> Value {
    let mut v = Value::new(atom_node(&g.atoms[0]));
    let mut ids = vec![v.root()];
    for a in &g.atoms[1..] {
        ids.push(v.push(atom_node(a)));
    }
    let mut shapes: Vec<Shape> = g.containers.iter().map(|(s, _)| *s).collect();
    shapes.extend(g.wide.map(|(s, _)| s));
    for s in &shapes {
        ids.push(v.push(match s {
            Shape::List => Node::List(Vec::new()),
            Shape::Tuple => Node::Tuple(Vec::new()),
            Shape::Dict => Node::Dict(Vec::new()),
            Shape::Set => Node::Set(Vec::new()),
            Shape::FrozenSet => Node::FrozenSet(Vec::new()),
        }));
    }
    let total = ids.len() as u32;
    let mut children: Vec<Vec<u32>> = g.containers.iter().map(|(_, c)| c.clone()).collect();
    if let Some((_, n)) = g.wide {
        // Many items: the atoms and earlier containers over and over.
        children.push((0..n as u32).map(|i| i.wrapping_mul(2_654_435_761)).collect());
    }
    for (j, (s, picks)) in shapes.iter().zip(&children).enumerate() {
        let me = g.atoms.len() + j;
        let earlier = |p: &u32| ids[(p % me as u32) as usize];
        let anywhere = |p: &u32| ids[(p % total) as usize];
        let mut seen = std::collections::HashSet::new();
        let mut key = |v: &Value, k: NodeId| key_text(v, k).is_some_and(|t| seen.insert(t));
        let node = match s {
            Shape::List => Node::List(picks.iter().map(anywhere).collect()),
            Shape::Tuple => Node::Tuple(picks.iter().map(earlier).collect()),
            Shape::Dict => Node::Dict(
                picks.chunks_exact(2).map(|p| (earlier(&p[0]), anywhere(&p[1]))).filter(|&(k, _)| key(&v, k)).collect(),
            ),
            Shape::Set | Shape::FrozenSet => {
                let items: Vec<NodeId> = picks.iter().map(earlier).filter(|&k| key(&v, k)).collect();
                if matches!(s, Shape::Set) { Node::Set(items) } else { Node::FrozenSet(items) }
            }
        };
        *v.node_mut(ids[me]) = node;
    }
    v.set_root(ids[(g.root % total) as usize]);
    v
}

/// How an atom comes back from a pickle: one node per reference, one per content
/// (singletons), or itself.
#[derive(PartialEq, Eq, Hash)]
enum Identity {
    PerReference,
    Singleton(Vec<u8>),
    Own,
}

fn identity(node: &Node, protocol: u8) -> Identity {
    match node {
        Node::Int(_) | Node::BigInt(_) | Node::Float(_) => Identity::PerReference,
        Node::None => Identity::Singleton(b"N".to_vec()),
        Node::Bool(b) => Identity::Singleton(vec![b'B', u8::from(*b)]),
        Node::Tuple(items) if items.is_empty() => Identity::Singleton(b"T".to_vec()),
        Node::Str(s) => {
            let mut cps = s.code_points();
            match (cps.next(), cps.next()) {
                (None, _) => Identity::Singleton(b"S".to_vec()),
                (Some(c), None) if c < 0x100 => Identity::Singleton([b"S", s.as_surrogatepass()].concat()),
                _ => Identity::Own,
            }
        }
        Node::Bytes(b) if b.is_empty() || (protocol == 2 && b.len() == 1) => {
            Identity::Singleton([b"b", b.as_slice()].concat())
        }
        _ => Identity::Own,
    }
}

/// What `decode(encode(v, protocol))` must be, up to `same_as`: `v`'s reachable graph
/// with the atom identity a pickle round trip gives (see the module docs).
fn expected(v: &Value, protocol: u8) -> Value {
    let mut out = Value::new(Node::None); // node 0 stays unreachable
    let mut own: HashMap<NodeId, NodeId> = HashMap::new();
    let mut singles: HashMap<Identity, NodeId> = HashMap::new();
    let mut todo: Vec<NodeId> = Vec::new();
    let mut copy = |old: NodeId, out: &mut Value, todo: &mut Vec<NodeId>| -> NodeId {
        let node = &v[old];
        match identity(node, protocol) {
            Identity::PerReference => out.push(node.clone()),
            Identity::Own => *own.entry(old).or_insert_with(|| {
                let id = out.push(node.clone());
                todo.push(id);
                id
            }),
            single => *singles.entry(single).or_insert_with(|| out.push(node.clone())),
        }
    };
    let root = copy(v.root(), &mut out, &mut todo);
    out.set_root(root);
    // Containers were copied with the old ids inside; map them to the new ones.
    while let Some(id) = todo.pop() {
        let mut node = out[id].clone();
        match &mut node {
            Node::List(items) | Node::Tuple(items) | Node::Set(items) | Node::FrozenSet(items) => {
                for c in items.iter_mut() {
                    *c = copy(*c, &mut out, &mut todo);
                }
            }
            Node::Dict(pairs) => {
                for (k, x) in pairs.iter_mut() {
                    *k = copy(*k, &mut out, &mut todo);
                    *x = copy(*x, &mut out, &mut todo);
                }
            }
            _ => {}
        }
        *out.node_mut(id) = node;
    }
    out
}

fn check_graph(g: &Graph) -> Result<(), TestCaseError> {
    for protocol in 2..=5u8 {
        let v = build(g);
        let bytes = encode(&v, protocol).map_err(|e| TestCaseError::fail(format!("p{protocol}: {e}")))?;
        let back = decode(&bytes).map_err(|e| TestCaseError::fail(format!("p{protocol}: {e}")))?;
        let want = expected(&v, protocol);
        prop_assert!(back.same_as(&want), "protocol {}: decoded {} expected {}", protocol, back, want);
        let again = encode(&back, protocol).map_err(|e| TestCaseError::fail(format!("p{protocol}: {e}")))?;
        prop_assert!(again == bytes, "protocol {}: re-encoding the decoded value changed the bytes", protocol);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: if cfg!(debug_assertions) { 300 } else { 10_000 },
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn value_graphs_survive_encode_then_decode(g in graph()) {
        check_graph(&g)?;
    }
}

#[test]
fn expected_follows_the_identity_rules() {
    // [a, a, 1-node, 1-node, 'x', 'x'(other node), None, None(other node), 'long', 'long'(other node)]
    let mut v = Value::new(Node::List(Vec::new()));
    let a = v.push(Node::List(Vec::new()));
    let one = v.push(Node::Int(1));
    let x1 = v.push(Node::Str("x".into()));
    let x2 = v.push(Node::Str("x".into()));
    let n1 = v.push(Node::None);
    let n2 = v.push(Node::None);
    let l1 = v.push(Node::Str("long".into()));
    let l2 = v.push(Node::Str("long".into()));
    let root = v.root();
    if let Node::List(items) = v.node_mut(root) {
        items.extend([a, a, one, one, x1, x2, n1, n2, l1, l2, root]);
    }
    let e = expected(&v, 4);
    let items = e.as_seq(e.root()).unwrap_or_default();
    assert_eq!(items[0], items[1], "a shared list stays shared");
    assert_ne!(items[2], items[3], "an int reached twice becomes two");
    assert_eq!(items[4], items[5], "one-character strs are one");
    assert_eq!(items[6], items[7], "None is one");
    assert_ne!(items[8], items[9], "other strs keep their identity");
    assert_eq!(items[10], e.root(), "the cycle stays");
    let back = decode(&encode(&v, 4).unwrap_or_default()).unwrap_or_else(|err| panic!("{err}"));
    assert!(back.same_as(&e));
    assert!(!back.same_as(&v), "without the rules the round trip would not compare equal");
}

// ----- 2. serde data -----

/// An `f64` compared by its bits (so NaN equals the same NaN).
#[derive(Clone, Copy)]
struct F64(f64);

impl PartialEq for F64 {
    fn eq(&self, other: &F64) -> bool {
        self.0.to_bits() == other.0.to_bits()
    }
}

impl fmt::Debug for F64 {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{:?} ({:#x})", self.0, self.0.to_bits())
    }
}

impl Serialize for F64 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(self.0)
    }
}

impl<'de> Deserialize<'de> for F64 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        f64::deserialize(d).map(F64)
    }
}

/// An `f32`; any NaN equals any NaN (widening to a Python float may quiet a signalling
/// NaN).
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
struct F32(f32);

impl PartialEq for F32 {
    fn eq(&self, other: &F32) -> bool {
        self.0.to_bits() == other.0.to_bits() || (self.0.is_nan() && other.0.is_nan())
    }
}

/// Bytes through `serialize_bytes` (a Python `bytes`).
#[derive(Clone, Debug, PartialEq)]
struct Bytes(Vec<u8>);

impl Serialize for Bytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Bytes;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E>(self, b: &[u8]) -> Result<Bytes, E> {
                Ok(Bytes(b.to_vec()))
            }
        }
        d.deserialize_bytes(V)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
enum Kind {
    Unit,
    New(i16),
    Tup(u8, String),
    Struct { x: F64, y: Option<String> },
}

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
    kind: Kind,
    pair: (u8, char, bool),
    unit: (),
    data: Bytes,
    children: Vec<Rec>,
}

fn f64_bits() -> impl Strategy<Value = F64> {
    prop_oneof![
        any::<u64>().prop_map(|b| F64(f64::from_bits(b))),
        Just(F64(-0.0)),
        Just(F64(f64::NAN)),
        Just(F64(f64::from_bits(0x7FF0_0000_0000_0001))),
        any::<f64>().prop_map(F64),
    ]
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        Just(Kind::Unit),
        any::<i16>().prop_map(Kind::New),
        (any::<u8>(), ".{0,8}").prop_map(|(a, b)| Kind::Tup(a, b)),
        (f64_bits(), proptest::option::of(".{0,40}")).prop_map(|(x, y)| Kind::Struct { x, y }),
    ]
}

fn rec_leaf() -> impl Strategy<Value = Rec> {
    (
        (any::<u64>(), ".{0,40}", any::<i8>(), any::<i128>(), any::<u128>(), f64_bits(), any::<u32>()),
        (
            vec(".{0,6}", 0..5),
            proptest::option::of(any::<i32>()),
            proptest::collection::hash_map(".{0,6}", vec(any::<u16>(), 0..4), 0..4),
            kind(),
            (any::<u8>(), any::<char>(), any::<bool>()),
            bytes(300),
        ),
    )
        .prop_map(|((id, name, small, big, ubig, score, ratio), (tags, opt, map, kind, pair, data))| Rec {
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
            data: Bytes(data),
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

fn check_serde<T>(x: &T) -> Result<(), TestCaseError>
where
    T: Serialize + serde::de::DeserializeOwned + PartialEq + fmt::Debug,
{
    let fail = |e: pickleshelf_pickle::Error| TestCaseError::fail(e.to_string());
    let bytes = to_vec(x).map_err(fail)?;
    let back: T = from_slice(&bytes).map_err(fail)?;
    prop_assert_eq!(&back, x);
    let value = to_value(x).map_err(fail)?;
    prop_assert!(bytes == encode(&value, 4).map_err(fail)?, "to_vec differs from encode(to_value)");
    for protocol in [2u8, 3, 5] {
        let bytes = to_vec_with_protocol(x, protocol).map_err(fail)?;
        prop_assert!(bytes == encode(&value, protocol).map_err(fail)?, "protocol {}", protocol);
        let back: T = from_slice(&bytes).map_err(fail)?;
        prop_assert_eq!(&back, x, "protocol {}", protocol);
    }
    // The value the serializer builds is what decoding its bytes gives.
    prop_assert!(pickle::decode(&bytes).map_err(fail)?.same_as(&value));
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: if cfg!(debug_assertions) { 200 } else { 3_000 },
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn serde_records_survive_to_vec_then_from_slice(x in rec()) {
        check_serde(&x)?;
    }

    #[test]
    fn serde_collections_survive_to_vec_then_from_slice(
        x in (
            vec(proptest::option::of(f64_bits()), 0..20),
            proptest::collection::hash_map(".{0,12}", (any::<i128>(), vec(kind(), 0..3)), 0..8),
            vec(vec(any::<u8>(), 0..4), 0..3),
        ),
    ) {
        check_serde(&x)?;
    }
}
