//! Dict keys and set elements, with CPython as the oracle: pickles that set a key
//! twice, or keys Python finds equal across types (`1`, `1.0`, `True`, `1+0j`; `0`,
//! `-0.0`, `False`; `(1, 2)` and `(1.0, 2)`; frozensets), or keys Python cannot hash (a
//! list, a dict, a set, a bytearray, a tuple holding a list). Each pickle is decoded
//! here and loaded by CPython's `pickle.loads`; the two must agree: both fail, or our
//! tagged JSON matches CPython's value (the first key object and its type, the value set
//! last, the order, set contents). The pickles are random combinations of a vocabulary
//! of keys in every container form (`SETITEMS`, `SETITEM`, `DICT`, `dict(pairs)`,
//! `ADDITEMS`, `FROZENSET`, `set(list)`, `frozenset(list)`), plus fixed cases.
//!
//! The same pickles also check the serde paths: `from_slice` streaming straight from the
//! opcodes gives exactly what `from_value(&decode(..))` gives (here a dict that repeats
//! a key makes the stream give up), and `check` accepts and refuses what `decode` does.

mod common;

use common::{OracleCase, Rng, cpython_compare};
use pickleshelf_pickle::{self as pickle, direct_testing};
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// Hashable keys: (name, opcodes).
const KEYS: &[(&str, &[u8])] = &[
    ("1", b"K\x01"),
    ("1.0", b"G?\xf0\x00\x00\x00\x00\x00\x00"),
    ("True", b"\x88"),
    ("0", b"K\x00"),
    ("0.0", b"G\x00\x00\x00\x00\x00\x00\x00\x00"),
    ("-0.0", b"G\x80\x00\x00\x00\x00\x00\x00\x00"),
    ("False", b"\x89"),
    ("None", b"N"),
    ("'a'", b"\x8c\x01a"),
    ("'a' (BINUNICODE)", b"X\x01\x00\x00\x00a"),
    ("b'a'", b"C\x01a"),
    ("(1, 2)", b"K\x01K\x02\x86"),
    ("(1.0, 2)", b"G?\xf0\x00\x00\x00\x00\x00\x00K\x02\x86"),
    ("(True, 2.0)", b"\x88G@\x00\x00\x00\x00\x00\x00\x00\x86"),
    ("2**64", b"\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x00\x01"),
    ("2.0**64", b"GC\xf0\x00\x00\x00\x00\x00\x00"),
    ("2**63", b"\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x80\x00"),
    ("-2**63", b"\x8a\x08\x00\x00\x00\x00\x00\x00\x00\x80"),
    ("-2.0**63", b"G\xc3\xe0\x00\x00\x00\x00\x00\x00"),
    ("frozenset({1})", b"(K\x01\x91"),
    ("frozenset({1.0, True})", b"(G?\xf0\x00\x00\x00\x00\x00\x00\x88\x91"),
    ("frozenset({1, 2})", b"(K\x01K\x02\x91"),
    ("frozenset({2, 1.0})", b"(K\x02G?\xf0\x00\x00\x00\x00\x00\x00\x91"),
    ("2", b"K\x02"),
    ("'b'", b"\x8c\x01b"),
    ("nan", b"G\x7f\xf8\x00\x00\x00\x00\x00\x00"),
    ("inf", b"G\x7f\xf0\x00\x00\x00\x00\x00\x00"),
    ("builtins.int", b"\x8c\x08builtins\x8c\x03int\x93"),
    ("int (GLOBAL)", b"cbuiltins\nint\n"),
];

/// Keys CPython refuses: `unhashable type`.
const UNHASHABLE: &[(&str, &[u8])] = &[
    ("[]", b"]"),
    ("{}", b"}"),
    ("set()", b"\x8f"),
    ("bytearray(b'x')", b"\x96\x01\x00\x00\x00\x00\x00\x00\x00x"),
    ("(1, [])", b"K\x01]\x86"),
    ("frozenset({(1, [])})", b"(K\x01]\x86\x91"),
];

/// How the container is written.
#[derive(Clone, Copy, Debug)]
enum Form {
    SetItems,
    SetItem,
    DictOp,
    TwoBatches,
    DictCall,
    AddItems,
    FrozenSetOp,
    SetCall,
    FrozenSetCall,
}

const FORMS: [Form; 9] = [
    Form::SetItems,
    Form::SetItem,
    Form::DictOp,
    Form::TwoBatches,
    Form::DictCall,
    Form::AddItems,
    Form::FrozenSetOp,
    Form::SetCall,
    Form::FrozenSetCall,
];

/// A distinct value for entry `i`: `M` (BININT2) 1000 + i, equal to no key.
fn value(i: usize) -> Vec<u8> {
    let v = 1000 + i as u16;
    let b = v.to_le_bytes();
    vec![b'M', b[0], b[1]]
}

fn assemble(form: Form, keys: &[&[u8]]) -> Vec<u8> {
    let mut p = b"\x80\x04".to_vec();
    let pairs = |p: &mut Vec<u8>, keys: &[&[u8]], offset: usize| {
        for (i, k) in keys.iter().enumerate() {
            p.extend_from_slice(k);
            p.extend(value(i + offset));
        }
    };
    match form {
        Form::SetItems => {
            p.extend_from_slice(b"}(");
            pairs(&mut p, keys, 0);
            p.push(b'u');
        }
        Form::SetItem => {
            p.push(b'}');
            for (i, k) in keys.iter().enumerate() {
                p.extend_from_slice(k);
                p.extend(value(i));
                p.push(b's');
            }
        }
        Form::DictOp => {
            p.push(b'(');
            pairs(&mut p, keys, 0);
            p.push(b'd');
        }
        Form::TwoBatches => {
            let half = keys.len() / 2;
            p.extend_from_slice(b"}(");
            pairs(&mut p, &keys[..half], 0);
            p.extend_from_slice(b"u(");
            pairs(&mut p, &keys[half..], half);
            p.push(b'u');
        }
        Form::DictCall => {
            p.extend_from_slice(b"\x8c\x08builtins\x8c\x04dict\x93](");
            for (i, k) in keys.iter().enumerate() {
                p.extend_from_slice(k);
                p.extend(value(i));
                p.push(0x86);
            }
            p.extend_from_slice(b"e\x85R");
        }
        Form::AddItems => {
            p.extend_from_slice(b"\x8f(");
            keys.iter().for_each(|k| p.extend_from_slice(k));
            p.push(0x90);
        }
        Form::FrozenSetOp => {
            p.push(b'(');
            keys.iter().for_each(|k| p.extend_from_slice(k));
            p.push(0x91);
        }
        Form::SetCall | Form::FrozenSetCall => {
            let name: &[u8] = if matches!(form, Form::SetCall) { b"\x8c\x03set" } else { b"\x8c\x09frozenset" };
            p.extend_from_slice(b"\x8c\x08builtins");
            p.extend_from_slice(name);
            p.extend_from_slice(b"\x93](");
            keys.iter().for_each(|k| p.extend_from_slice(k));
            p.extend_from_slice(b"e\x85R");
        }
    }
    p.push(b'.');
    p
}

/// Fixed cases: (name, pickle, keys written).
fn fixed() -> Vec<(String, Vec<u8>, usize)> {
    let nan = b"G\x7f\xf8\x00\x00\x00\x00\x00\x00";
    let cases: Vec<(String, Vec<u8>)> = vec![
        // The example: {1: 'a', 1.0: 'b', True: 'c'} -> {1: 'c'}
        (
            "1, 1.0, True".into(),
            b"\x80\x02}(K\x01X\x01\x00\x00\x00aG?\xf0\x00\x00\x00\x00\x00\x00X\x01\x00\x00\x00b\x88X\x01\x00\x00\x00cu."
                .to_vec(),
        ),
        // Protocol 0: SETITEM per entry, key 1 twice.
        ("protocol 0 twice".into(), b"(dp0\nI1\nVa\nsI1\nVb\ns.".to_vec()),
        // The same NaN object twice is one key; two NaN objects are two.
        ("one nan object".into(), [&b"\x80\x04}("[..], nan, b"\x94K\x01h\x00K\x02u."].concat()),
        ("two nan objects".into(), [&b"\x80\x04}("[..], nan, b"K\x01", nan, b"K\x02u."].concat()),
        // A key fetched from the memo (the same str object) set twice.
        ("memo key".into(), b"\x80\x04}(\x8c\x01k\x94K\x01h\x00K\x02u.".to_vec()),
        // A list shared as two values of one key: the last stays, sharing kept.
        ("shared values".into(), b"\x80\x04](]\x94}(K\x01h\x00K\x01h\x00ue.".to_vec()),
        // A set whose repeated element is a tuple made twice.
        ("tuple elements".into(), b"\x80\x04\x8f(K\x01K\x02\x86K\x01K\x02\x86G?\xf0\x00\x00\x00\x00\x00\x00K\x02\x86\x90.".to_vec()),
        // Keys repeated inside a dict nested in a set's tuple... and a dict in a list.
        ("nested".into(), b"\x80\x04](}(K\x01K\x05\x88K\x06u}(\x89K\x07K\x00K\x08ue.".to_vec()),
        // Unhashable keys arriving through SETITEM on a dict fetched from the memo.
        ("memo dict, list key".into(), b"\x80\x04}\x94K\x01K\x02sh\x00]K\x03s.".to_vec()),
        // An object as a key is kept (its hashability is unknown to the codec, CPython's
        // class here is a plain one, hashable by identity).
        ("object keys".into(), b"\x80\x04}(\x8c\x08builtins\x8c\x06object\x93)\x81K\x01\x8c\x08builtins\x8c\x06object\x93)\x81K\x02u.".to_vec()),
    ];
    let mut out: Vec<(String, Vec<u8>, usize)> = cases.into_iter().map(|(n, p)| (n, p, 0)).collect();
    // 2,000 keys, all equal in pairs (ints then floats): the seeded map's path.
    let mut p = b"\x80\x04}(".to_vec();
    for i in 0..1000u16 {
        p.push(b'M');
        p.extend(i.to_le_bytes());
        p.extend(value(usize::from(i)));
    }
    p.extend_from_slice(b"u(");
    for i in 0..1000u16 {
        p.push(b'G');
        p.extend(f64::from(i).to_be_bytes());
        p.extend(value(usize::from(i) + 1000));
    }
    p.extend_from_slice(b"u.");
    out.push(("2000 keys".into(), p, 2000));
    out
}

/// Random cases: keys drawn (with repeats) from the vocabulary, sometimes one
/// unhashable, in each container form.
fn random(rng: &mut Rng, count: usize) -> Vec<(String, Vec<u8>, usize)> {
    let mut out = Vec::new();
    for n in 0..count {
        let len = 1 + rng.index(7);
        let mut names = Vec::new();
        let mut keys: Vec<&[u8]> = Vec::new();
        for _ in 0..len {
            // Often from the first half of the vocabulary only, so that keys repeat.
            let vocabulary = &KEYS[..KEYS.len() / 2 + rng.index(KEYS.len() / 2 + 1)];
            let (name, k) = if rng.chance(8) { *rng.pick(UNHASHABLE) } else { *rng.pick(vocabulary) };
            names.push(name);
            keys.push(k);
        }
        let form = FORMS[n % FORMS.len()];
        out.push((format!("{form:?} [{}]", names.join(", ")), assemble(form, &keys), len));
    }
    out
}

/// A self-describing value, to compare the two serde paths: dicts as entry lists.
#[derive(Debug, PartialEq)]
enum Tree {
    Unit,
    Bool(bool),
    Int(i128),
    Float(u64),
    Str(String),
    Bytes(Vec<u8>),
    Seq(Vec<Tree>),
    Map(Vec<(Tree, Tree)>),
}

impl<'de> Deserialize<'de> for Tree {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Tree, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Tree;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("anything")
            }
            fn visit_unit<E>(self) -> Result<Tree, E> {
                Ok(Tree::Unit)
            }
            fn visit_bool<E>(self, v: bool) -> Result<Tree, E> {
                Ok(Tree::Bool(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Tree, E> {
                Ok(Tree::Int(v.into()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Tree, E> {
                Ok(Tree::Int(v.into()))
            }
            fn visit_i128<E>(self, v: i128) -> Result<Tree, E> {
                Ok(Tree::Int(v))
            }
            fn visit_u128<E: de::Error>(self, v: u128) -> Result<Tree, E> {
                i128::try_from(v).map(Tree::Int).map_err(E::custom)
            }
            fn visit_f64<E>(self, v: f64) -> Result<Tree, E> {
                Ok(Tree::Float(v.to_bits()))
            }
            fn visit_str<E>(self, v: &str) -> Result<Tree, E> {
                Ok(Tree::Str(v.into()))
            }
            fn visit_bytes<E>(self, v: &[u8]) -> Result<Tree, E> {
                Ok(Tree::Bytes(v.into()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Tree, A::Error> {
                let mut v = Vec::new();
                while let Some(x) = a.next_element()? {
                    v.push(x);
                }
                Ok(Tree::Seq(v))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Tree, A::Error> {
                let mut v = Vec::new();
                while let Some(e) = a.next_entry()? {
                    v.push(e);
                }
                Ok(Tree::Map(v))
            }
        }
        d.deserialize_any(V)
    }
}

#[test]
fn keys_and_elements_match_cpython() {
    let mut rng = Rng::new(21);
    let mut cases = fixed();
    cases.extend(random(&mut rng, 1800));
    let mut oracle = Vec::new();
    let (mut merged, mut refused) = (0, 0);
    for (name, bytes, written) in &cases {
        let decoded = pickle::decode(bytes);
        // `check` decides as `decode` does.
        assert_eq!(pickle::check(bytes).is_ok(), decoded.is_ok(), "{name}: check and decode disagree");
        // The direct serde path gives the `Value` path's result, or gives up.
        let via = direct_testing::via_value::<Tree>(bytes);
        if let Some(direct) = direct_testing::direct::<Tree>(bytes) {
            assert_eq!(Some(&direct), via.as_ref().ok(), "{name}: from_slice differs from from_value");
        }
        let ours = match &decoded {
            Ok(v) => {
                let kept = match v.root_node() {
                    pickle::Node::Dict(p) => p.len(),
                    pickle::Node::Set(items) | pickle::Node::FrozenSet(items) => items.len(),
                    _ => usize::MAX,
                };
                merged += usize::from(kept < *written);
                Ok(pickle::to_tagged_json(v))
            }
            Err(e) => {
                refused += 1;
                Err(e.to_string())
            }
        };
        oracle.push(OracleCase { name: name.clone(), pickle: bytes.clone(), ours });
    }
    let Some(mismatches) = cpython_compare(&oracle) else { return };
    eprintln!(
        "{} pickles: {merged} with entries merged, {refused} refused; CPython agreed on {}",
        oracle.len(),
        oracle.len() - mismatches.len()
    );
    assert!(merged > 300 && refused > 100, "too few interesting cases: {merged} merged, {refused} refused");
    assert!(
        mismatches.is_empty(),
        "{} of {} differ from CPython:\n{}",
        mismatches.len(),
        oracle.len(),
        mismatches.join("\n")
    );
}

#[test]
fn unhashable_keys_name_the_opcode_type_and_offset() {
    let cases: &[(&[u8], usize, &str)] = &[
        (b"\x80\x02}(]K\x01u.", 7, "SETITEMS: unhashable type: 'list' as a dict key"),
        (b"\x80\x04\x8f(]\x90.", 5, "ADDITEMS: unhashable type: 'list' as a set element"),
        (b"\x80\x04(K\x01]\x86\x91.", 7, "FROZENSET: unhashable type: 'list' as a set element"),
        (b"\x80\x02}}K\x01s.", 6, "SETITEM: unhashable type: 'dict' as a dict key"),
        (b"((lp0\nI3\nd.", 9, "DICT: unhashable type: 'list' as a dict key"),
        (b"\x80\x02c__builtin__\nset\n]]a\x85R.", 23, "REDUCE: unhashable type: 'list' as a set element"),
    ];
    for &(bytes, offset, message) in cases {
        let err = pickle::decode(bytes).err().map(|e| e.to_string()).unwrap_or_default();
        assert_eq!(err, format!("pickle decode failed at byte {offset}: {message}"), "{bytes:?}");
    }
}
