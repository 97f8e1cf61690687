//! serde → pickle: `to_vec` against CPython's `pickle.dumps` of the equivalent Python
//! literal, `to_vec` against `encode(to_value(x))`, and the errors.
//!
//! The CPython checks run one `python3` for all cases; without `python3` they are
//! skipped, unless `CI` is set, where they fail.

mod common;

use std::collections::BTreeMap;
use std::process::Command;

use common::python3;
use pickleshelf_pickle::Error;
use pickleshelf_pickle::{self as pickle, Value};
use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};

/// Bytes through `serialize_bytes` (what `serde_bytes` does).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Debug)]
struct Bytes(Vec<u8>);

impl Serialize for Bytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

#[derive(Serialize)]
struct Unit;

#[derive(Serialize)]
struct Meters(f64);

#[derive(Serialize)]
struct Pair(i32, String);

#[derive(Serialize)]
enum Shape {
    Empty,
    Circle(f64),
    Rect(u32, u32),
    Poly { sides: u8, name: String },
    Nothing(),
    Blank {},
}

#[derive(Serialize)]
struct Record {
    id: u64,
    name: String,
    scores: Vec<f64>,
    tags: Vec<String>,
    active: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    nick: Option<String>,
    #[serde(skip)]
    _secret: u8,
    shape: Shape,
    blob: Bytes,
}

#[derive(Serialize)]
struct Inner {
    a: i32,
    b: Option<i32>,
}

#[derive(Serialize)]
struct Flat {
    id: i32,
    #[serde(flatten)]
    inner: Inner,
}

/// More field names than the serializer keeps in its short list.
#[derive(Serialize)]
struct Wide {
    f00: u8,
    f01: u8,
    f02: u8,
    f03: u8,
    f04: u8,
    f05: u8,
    f06: u8,
    f07: u8,
    f08: u8,
    f09: u8,
    f10: u8,
    f11: u8,
    f12: u8,
    f13: u8,
    f14: u8,
    f15: u8,
    f16: u8,
    f17: u8,
    f18: u8,
    f19: u8,
}

fn wide(x: u8) -> Wide {
    Wide {
        f00: x,
        f01: x,
        f02: x,
        f03: x,
        f04: x,
        f05: x,
        f06: x,
        f07: x,
        f08: x,
        f09: x,
        f10: x,
        f11: x,
        f12: x,
        f13: x,
        f14: x,
        f15: x,
        f16: x,
        f17: x,
        f18: x,
        f19: x,
    }
}

/// A sequence whose length serde does not know in advance (`serialize_seq(None)`).
struct Unsized<T>(Vec<T>);

impl<T: Serialize> Serialize for Unsized<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().filter(|_| true))
    }
}

/// A map of unknown length.
struct UnsizedMap(Vec<(String, i32)>);

impl Serialize for UnsizedMap {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        for (k, v) in &self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

fn record(i: u64) -> Record {
    Record {
        id: i,
        name: format!("user{i}"),
        scores: vec![56.65615751722809, 0.5, -0.0, f64::INFINITY],
        tags: vec![format!("us{i}"), "red".repeat(i as usize % 3)],
        active: i.is_multiple_of(2),
        nick: if i.is_multiple_of(3) { Some(format!("n{i}")) } else { None },
        _secret: 7,
        shape: Shape::Poly { sides: 3, name: format!("tri{i}") },
        blob: Bytes(vec![0, 1, 255, i as u8]),
    }
}

fn record_py(i: u64) -> String {
    let nick = if i.is_multiple_of(3) { format!(", 'nick': 'n{i}'") } else { String::new() };
    format!(
        "{{'id': {i}, 'name': 'user{i}', 'scores': [56.65615751722809, 0.5, -0.0, float('inf')], \
         'tags': ['us{i}', {red}], 'active': {}{nick}, 'shape': {{'Poly': {{'sides': 3, 'name': 'tri{i}'}}}}, \
         'blob': b'\\x00\\x01\\xff' + bytes([{i}])}}",
        if i.is_multiple_of(2) { "True" } else { "False" },
        red = ["''", "'red'", "'redred'"][i as usize % 3],
    )
}

/// A case: the bytes of `to_vec` for protocols 2–5, and the equivalent Python literal.
struct Case {
    python: String,
    pickles: Vec<Vec<u8>>,
}

fn case<T: Serialize + ?Sized>(value: &T, python: impl Into<String>) -> Case {
    let python = python.into();
    let mut pickles = Vec::new();
    for p in 2..=5u8 {
        let bytes = pickle::to_vec_with_protocol(value, p).unwrap_or_else(|e| panic!("{python}: {e}"));
        // The direct serializer and the value path agree.
        let v = pickle::to_value(value).unwrap_or_else(|e| panic!("{python}: {e}"));
        assert_eq!(pickle::encode(&v, p).unwrap(), bytes, "encode(to_value(x)) != to_vec(x) for {python} p{p}");
        pickles.push(bytes);
    }
    assert_eq!(pickle::to_vec(value).unwrap(), pickles[2], "to_vec uses protocol 4");
    Case { python, pickles }
}

fn cases() -> Vec<Case> {
    let mut big_map = BTreeMap::new();
    for i in 0..2000 {
        big_map.insert(format!("key{i:05}"), i);
    }
    vec![
        case(&true, "True"),
        case(&false, "False"),
        case(&0u8, "0"),
        case(&-1i8, "-1"),
        case(&255u8, "255"),
        case(&256u16, "256"),
        case(&65535u16, "65535"),
        case(&65536u32, "65536"),
        case(&-2147483648i32, "-2147483648"),
        case(&2147483648u32, "2147483648"),
        case(&i64::MIN, "-9223372036854775808"),
        case(&u64::MAX, "18446744073709551615"),
        case(&i128::MIN, "-170141183460469231731687303715884105728"),
        case(&i128::MAX, "170141183460469231731687303715884105727"),
        case(&u128::MAX, "340282366920938463463374607431768211455"),
        case(&(1u128 << 64), "18446744073709551616"),
        case(&-(1i128 << 64), "-18446744073709551616"),
        case(&1.5f32, "1.5"),
        case(&f64::NAN, "float('nan')"),
        case(&-0.0f64, "-0.0"),
        case(&'x', "'x'"),
        case(&'é', "'é'"),
        case(&'\u{1F600}', "'\\U0001F600'"),
        case("", "''"),
        case("héllo wörld", "'héllo wörld'"),
        case(&"x".repeat(70_000), "'x' * 70000"),
        case(&Bytes(vec![]), "b''"),
        case(&Bytes(b"a".to_vec()), "b'a'"),
        case(&Bytes(vec![0xe9; 300]), "b'\\xe9' * 300"),
        case(&Bytes(vec![7; 70_000]), "b'\\x07' * 70000"),
        case(&(), "None"),
        case(&Unit, "None"),
        case(&None::<i32>, "None"),
        case(&Some(5), "5"),
        case(&Some(Some(())), "None"),
        case(&Meters(2.5), "2.5"),
        case(&Pair(-3, "p".into()), "(-3, 'p')"),
        case(&Shape::Empty, "'Empty'"),
        case(&Shape::Circle(1.0), "{'Circle': 1.0}"),
        case(&Shape::Rect(2, 3), "{'Rect': (2, 3)}"),
        case(&Shape::Poly { sides: 5, name: "pent".into() }, "{'Poly': {'sides': 5, 'name': 'pent'}}"),
        case(&Shape::Nothing(), "{'Nothing': ()}"),
        case(&Shape::Blank {}, "{'Blank': {}}"),
        case(&vec![Shape::Empty, Shape::Empty, Shape::Circle(0.5)], "['Empty', 'Empty', {'Circle': 0.5}]"),
        case(&Vec::<i32>::new(), "[]"),
        case(&vec![1], "[1]"),
        case(&vec![1, 2], "[1, 2]"),
        case(&(0..1000).collect::<Vec<_>>(), "list(range(1000))"),
        case(&(0..1001).collect::<Vec<_>>(), "list(range(1001))"),
        case(&(0..100_000).collect::<Vec<_>>(), "list(range(100000))"),
        case(&(), "None"),
        case(&(1,), "(1,)"),
        case(&(1, "a", 2.5), "(1, 'a', 2.5)"),
        case(&(1, 2, 3, 4, (5, 6)), "(1, 2, 3, 4, (5, 6))"),
        case(&BTreeMap::<String, i32>::new(), "{}"),
        case(&BTreeMap::from([(1, "one")]), "{1: 'one'}"),
        case(&BTreeMap::from([((1, 2), vec![3]), ((4, 5), vec![])]), "{(1, 2): [3], (4, 5): []}"),
        case(&big_map, "{f'key{i:05}': i for i in range(2000)}"),
        case(&record(0), record_py(0)),
        case(&record(1), record_py(1)),
        case(
            &(0..3).map(record).collect::<Vec<_>>(),
            format!("[{}, {}, {}]", record_py(0), record_py(1), record_py(2)),
        ),
        case(&Flat { id: 1, inner: Inner { a: 2, b: None } }, "{'id': 1, 'a': 2, 'b': None}"),
        case(&Unsized(Vec::<i32>::new()), "[]"),
        case(&Unsized(vec![Inner { a: 1, b: Some(2) }]), "[{'a': 1, 'b': 2}]"),
        case(&Unsized((0..1001).collect()), "list(range(1001))"),
        case(
            &(
                Inner { a: 0, b: None },
                Unsized(vec![Inner { a: 1, b: Some(2) }, Inner { a: 3, b: None }]),
                Inner { a: 4, b: None },
            ),
            "({'a': 0, 'b': None}, [{'a': 1, 'b': 2}, {'a': 3, 'b': None}], {'a': 4, 'b': None})",
        ),
        case(&UnsizedMap(vec![("k".into(), 1)]), "{'k': 1}"),
        case(&UnsizedMap((0..1000).map(|i| (format!("k{i}"), i)).collect()), "{f'k{i}': i for i in range(1000)}"),
        case(&vec![Bytes(b"ab".to_vec()), Bytes(b"cd".to_vec())], "[b'ab', b'cd']"),
        // `K` is one list of 20 key strs, so the dicts share their keys as ours do.
        case(&vec![wide(1), wide(2)], "[{k: 1 for k in K}, {k: 2 for k in K}]"),
        case(
            &(wide(3), Unsized(vec![wide(4)]), wide(5)),
            "({k: 3 for k in K}, [{k: 4 for k in K}], {k: 5 for k in K})",
        ),
    ]
}

#[test]
fn to_vec_matches_cpython_dumps() {
    let cases = cases();
    let Some(py) = python3() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let mut script = String::from(
        "import pickle, sys\nK = [f'f{i:02}' for i in range(20)]\nbad = 0\ndef check(n, literal, v):\n    global bad\n    for p in range(2, 6):\n        \
         ours = open(f'{sys.argv[1]}/{n}.p{p}.pkl', 'rb').read()\n        ref = pickle.dumps(v, protocol=p)\n        \
         again = pickle.dumps(pickle.loads(ours), protocol=p)\n        \
         if ref != ours or again != ours:\n            bad += 1\n            \
         at = next((i for i, (a, b) in enumerate(zip(ref, ours)) if a != b), min(len(ref), len(ours)))\n            \
         print(f'case {n} p{p} {literal[:60]!r}: differs at byte {at}; reload-identical={again == ours}')\n",
    );
    for (n, c) in cases.iter().enumerate() {
        for (p, bytes) in (2..=5).zip(&c.pickles) {
            std::fs::write(tmp.path().join(format!("{n}.p{p}.pkl")), bytes).unwrap();
        }
        script.push_str(&format!("check({n}, {lit:?}, {lit})\n", lit = c.python));
    }
    script.push_str("print(f'{bad} mismatches')\nsys.exit(1 if bad else 0)\n");
    let out = Command::new(py).arg("-c").arg(&script).arg(tmp.path()).output().unwrap();
    assert!(
        out.status.success(),
        "CPython disagrees:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn to_value_equals_decode_of_to_vec() {
    let values: Vec<Value> = vec![
        pickle::to_value(&record(3)).unwrap(),
        pickle::to_value(&(0..5).map(record).collect::<Vec<_>>()).unwrap(),
        pickle::to_value(&Flat { id: 1, inner: Inner { a: 2, b: Some(3) } }).unwrap(),
        pickle::to_value(&Unsized(vec![Inner { a: 10, b: None }, Inner { a: 11, b: None }])).unwrap(),
    ];
    for (i, v) in values.iter().enumerate() {
        for p in 2..=5 {
            let decoded = pickle::decode(&pickle::encode(v, p).unwrap()).unwrap();
            assert_eq!(&decoded, v, "value {i} p{p}: {v}");
        }
    }
    let rec = record(3);
    for p in 2..=5 {
        let decoded = pickle::decode(&pickle::to_vec_with_protocol(&rec, p).unwrap()).unwrap();
        assert_eq!(decoded, pickle::to_value(&rec).unwrap(), "p{p}");
    }
    // Field names are one shared node; strings with the same text are not.
    let v = pickle::to_value(&vec![Inner { a: 1, b: None }, Inner { a: 2, b: None }]).unwrap();
    assert_eq!(v.to_string(), "[{'a': 1, 'b': None}, {'a': 2, 'b': None}]");
}

/// A list nested `depth` levels: `Some(Box<Nest>)` counts one level per `Some`.
#[derive(Serialize)]
struct Nest(Option<Box<Nest>>);

fn nest(depth: usize) -> Nest {
    let mut n = Nest(None);
    for _ in 0..depth {
        n = Nest(Some(Box::new(n)));
    }
    n
}

/// Drops without recursion.
fn drop_nest(mut n: Nest) {
    while let Some(inner) = n.0.take() {
        n = *inner;
    }
}

#[derive(Serialize)]
enum Tree {
    Leaf,
    Node(Vec<Tree>),
}

fn tree(depth: usize) -> Tree {
    let mut t = Tree::Leaf;
    for _ in 0..depth {
        t = Tree::Node(vec![t]);
    }
    t
}

#[test]
fn nesting_beyond_the_limit_is_an_error() {
    // Each level of `Nest` is a newtype struct and a Some: two levels, and one more for
    // the innermost `Nest(None)`.
    let ok = nest((pickle::ser::MAX_DEPTH - 1) / 2);
    assert!(pickle::to_vec(&ok).is_ok());
    assert!(pickle::to_value(&ok).is_ok());
    drop_nest(ok);
    let deep = nest(pickle::ser::MAX_DEPTH / 2);
    assert!(matches!(pickle::to_vec(&deep), Err(Error::Serde(m)) if m.contains("nesting deeper than")));
    assert!(matches!(pickle::to_value(&deep), Err(Error::Serde(m)) if m.contains("nesting deeper than")));
    drop_nest(deep);

    // A variant holding a list: two levels each; the limit is reached on the default
    // 2 MiB test-thread stack without overflowing it.
    let t = tree(pickle::ser::MAX_DEPTH / 2);
    assert!(pickle::to_vec_with_protocol(&t, 2).is_ok());
    assert!(pickle::to_value(&t).is_ok());
    let mut t = tree(pickle::ser::MAX_DEPTH / 2 + 1);
    assert!(matches!(pickle::to_vec(&t), Err(Error::Serde(_))));
    assert!(matches!(pickle::to_value(&t), Err(Error::Serde(_))));
    while let Tree::Node(mut v) = t {
        t = v.pop().unwrap_or(Tree::Leaf);
    }
}

#[test]
fn unhashable_keys_and_wrong_lengths_are_errors() {
    let m = BTreeMap::from([(vec![1], 2)]);
    assert!(matches!(pickle::to_vec(&m), Err(Error::Serde(e)) if e.contains("cannot be a dict key")));
    assert!(matches!(pickle::to_value(&m), Err(Error::Serde(e)) if e.contains("cannot be a dict key")));
    let m = BTreeMap::from([((1, vec![2]), 3)]);
    assert!(pickle::to_vec(&m).is_err());
    assert!(pickle::to_value(&m).is_err());
    // Tuples, strings, bytes and None are fine keys.
    let m = BTreeMap::from([((Some(1), "a", Bytes(vec![1])), 3)]);
    assert!(pickle::to_vec(&m).is_ok());

    struct Liar;
    impl Serialize for Liar {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            use serde::ser::SerializeSeq;
            let mut seq = s.serialize_seq(Some(1))?;
            seq.serialize_element(&1)?;
            seq.serialize_element(&2)?;
            seq.end()
        }
    }
    assert!(matches!(pickle::to_vec(&Liar), Err(Error::Serde(e)) if e.contains("announced 1")));
    assert!(matches!(pickle::to_value(&Liar), Err(Error::Serde(e)) if e.contains("announced 1")));

    struct Custom;
    impl Serialize for Custom {
        fn serialize<S: Serializer>(&self, _s: S) -> Result<S::Ok, S::Error> {
            Err(serde::ser::Error::custom("no way"))
        }
    }
    assert!(matches!(pickle::to_vec(&Custom), Err(Error::Serde(e)) if e == "no way"));
    assert!(matches!(pickle::to_vec_with_protocol(&1, 6), Err(Error::Encode(_))));
    assert!(matches!(pickle::to_vec_with_protocol(&1, 1), Err(Error::Encode(_))));
}
