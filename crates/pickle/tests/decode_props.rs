//! Decoding never panics: random bytes, random mutations of valid pickles (with or
//! without a protocol header in front), and every truncation of valid pickles, which
//! must all be errors. Values that do decode are printed and deserialized too.

mod common;

use std::fmt;
use std::sync::LazyLock;

use pickleshelf_pickle::{Limits, Value, check, check_with, decode, decode_with, from_value, from_value_with};
use proptest::prelude::*;
use proptest::sample::Index;
use serde::de::{self, Deserialize, Deserializer, IgnoredAny, Visitor};

/// Pickles written by CPython 3.11: a dict holding every common type (shared list,
/// set, frozenset, bytes, bytearray, big and negative ints, a surrogate, a
/// `datetime.date`, an `OrderedDict`) at protocols 0–5, and a list that contains itself.
const SEEDS_HEX: &[&str] = &[
    // protocol 0
    concat!(
        "286470300a56610a70310a286c70320a49310a6146322e350a614e614930310a6156730a70330a61635f636f64656373",
        "0a656e636f64650a70340a2856620a70350a566c6174696e310a70360a7470370a5270380a61635f5f6275696c74696e",
        "5f5f0a6279746561727261790a70390a2867340a285662610a7031300a67360a747031310a527031320a747031330a52",
        "7031340a617356740a7031350a28286c7031360a49310a6149320a616731360a635f5f6275696c74696e5f5f0a736574",
        "0a7031370a28286c7031380a49310a6149320a61747031390a527032300a635f5f6275696c74696e5f5f0a66726f7a65",
        "6e7365740a7032310a28286c7032320a49330a61747032330a527032340a747032350a73566269670a7032360a4c3131",
        "38303539313632303731373431313330333432344c0a73566e65670a7032370a4c2d313039393531313632373737364c",
        "0a7356750a7032380a56e95c5530303031663630305c75646338300a7032390a7356640a7033300a636461746574696d",
        "650a646174650a7033310a2867340a285607e801020a7033320a67360a747033330a527033340a747033350a52703336",
        "0a73566f640a7033370a63636f6c6c656374696f6e730a4f726465726564446963740a7033380a2874527033390a5678",
        "0a7034300a49310a73732e",
    ),
    // protocol 1
    concat!(
        "7d71002858010000006171015d7102284b014740040000000000004e4930310a5801000000737103635f636f64656373",
        "0a656e636f64650a710428580100000062710558060000006c6174696e317106747107527108635f5f6275696c74696e",
        "5f5f0a6279746561727261790a71092868042858020000006261710a680674710b52710c74710d52710e655801000000",
        "74710f285d7110284b014b02656810635f5f6275696c74696e5f5f0a7365740a7111285d7112284b014b026574711352",
        "7114635f5f6275696c74696e5f5f0a66726f7a656e7365740a7115285d71164b03617471175271187471195803000000",
        "626967711a4c313138303539313632303731373431313330333432344c0a58030000006e6567711b4c2d313039393531",
        "313632373737364c0a580100000075711c5809000000c3a9f09f9880edb280711d580100000064711e63646174657469",
        "6d650a646174650a711f28680428580500000007c3a801027120680674712152712274712352712458020000006f6471",
        "2563636f6c6c656374696f6e730a4f726465726564446963740a71262952712758010000007871284b0173752e",
    ),
    // protocol 2
    concat!(
        "80027d71002858010000006171015d7102284b014740040000000000004e885801000000737103635f636f646563730a",
        "656e636f64650a7104580100000062710558060000006c6174696e317106867107527108635f5f6275696c74696e5f5f",
        "0a6279746561727261790a7109680458020000006261710a680686710b52710c85710d52710e65580100000074710f28",
        "5d7110284b014b02656810635f5f6275696c74696e5f5f0a7365740a71115d7112284b014b0265857113527114635f5f",
        "6275696c74696e5f5f0a66726f7a656e7365740a71155d71164b03618571175271187471195803000000626967711a8a",
        "0900000000000000004058030000006e6567711b8a060000000000ff580100000075711c5809000000c3a9f09f9880ed",
        "b280711d580100000064711e636461746574696d650a646174650a711f6804580500000007c3a8010271206806867121",
        "52712285712352712458020000006f64712563636f6c6c656374696f6e730a4f726465726564446963740a7126295271",
        "2758010000007871284b0173752e",
    ),
    // protocol 3
    concat!(
        "80037d71002858010000006171015d7102284b014740040000000000004e885801000000737103430162710463627569",
        "6c74696e730a6279746561727261790a7105430262617106857107527108655801000000747109285d710a284b014b02",
        "65680a636275696c74696e730a7365740a710b5d710c284b014b026585710d52710e636275696c74696e730a66726f7a",
        "656e7365740a710f5d71104b0361857111527112747113580300000062696771148a0900000000000000004058030000",
        "006e656771158a060000000000ff58010000007571165809000000c3a9f09f9880edb280711758010000006471186364",
        "61746574696d650a646174650a7119430407e80102711a85711b52711c58020000006f64711d63636f6c6c656374696f",
        "6e730a4f726465726564446963740a711e2952711f58010000007871204b0173752e",
    ),
    // protocol 4
    concat!(
        "800495e1000000000000007d94288c0161945d94284b014740040000000000004e888c017394430162948c086275696c",
        "74696e73948c09627974656172726179949394430262619485945294658c017494285d94284b014b0265680c8f94284b",
        "014b0290284b03919474948c03626967948a090000000000000000408c036e6567948a060000000000ff8c0175948c09",
        "c3a9f09f9880edb280948c0164948c086461746574696d65948c0464617465949394430407e8010294859452948c026f",
        "64948c0b636f6c6c656374696f6e73948c0b4f726465726564446963749493942952948c0178944b0173752e",
    ),
    // protocol 5
    concat!(
        "800595cb000000000000007d94288c0161945d94284b014740040000000000004e888c01739443016294960200000000",
        "000000626194658c017494285d94284b014b026568078f94284b014b0290284b03919474948c03626967948a09000000",
        "0000000000408c036e6567948a060000000000ff8c0175948c09c3a9f09f9880edb280948c0164948c08646174657469",
        "6d65948c0464617465949394430407e8010294859452948c026f64948c0b636f6c6c656374696f6e73948c0b4f726465",
        "726564446963749493942952948c0178944b0173752e",
    ),
    // a = []; a.append(a), protocols 2 and 0
    "80025d71006800612e",
    "286c70300a67300a612e",
];

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2).map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap_or_else(|e| panic!("{e}"))).collect()
}

/// The seeds above, and the conformance corpus's pickles of at most 4 KiB when
/// `../shared/conformance/cases` is there.
static SEEDS: LazyLock<Vec<Vec<u8>>> = LazyLock::new(|| {
    let mut seeds: Vec<Vec<u8>> = SEEDS_HEX.iter().map(|h| unhex(h)).collect();
    let dir = common::repo_root().join("../shared/conformance/cases");
    if let Ok(entries) = std::fs::read_dir(&dir) {
        let mut files: Vec<_> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        files.sort();
        for path in files {
            if path.extension().is_some_and(|x| x == "pkl")
                && let Ok(bytes) = std::fs::read(&path)
                && bytes.len() <= 4096
            {
                seeds.push(bytes);
            }
        }
    }
    seeds
});

/// Anything, through `deserialize_any` (walks the whole value).
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

/// Everything a reader may do with untrusted bytes; none of it may panic.
/// Checking ([`check`]) accepts and refuses exactly what decoding does, with the same
/// error.
fn exercise(bytes: &[u8]) {
    let full = decode(bytes);
    assert_eq!(check(bytes).err().map(|e| e.to_string()), full.as_ref().err().map(|e| e.to_string()));
    if let Ok(v) = full {
        use_value(&v);
    }
    // Tight limits take the limit paths.
    let tight = Limits::default().max_marks(3).max_depth(4).max_int_digits(5);
    let full = decode_with(bytes, &tight);
    assert_eq!(check_with(bytes, &tight).err().map(|e| e.to_string()), full.as_ref().err().map(|e| e.to_string()));
    if let Ok(v) = full {
        use_value(&v);
    }
}

fn use_value(v: &Value) {
    let _ = v.to_string();
    let _ = v.validate();
    let _ = from_value::<IgnoredAny>(v);
    let _ = from_value::<Any>(v);
    let _ = from_value_with::<Any>(v, 2);
    let _ = from_value::<(String, Vec<f64>, Option<u8>)>(v);
    let _ = from_value::<std::collections::HashMap<String, i64>>(v);
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(Index, u8),
    Set(Index, u8),
    Insert(Index, u8),
    InsertRun(Index, Vec<u8>),
    Delete(Index),
    Truncate(Index),
}

/// Byte strings that tend to matter to a pickle decoder: opcodes that take lengths,
/// huge lengths, MARK/STOP.
fn interesting() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"\xff\xff\xff\xff".to_vec()),
        Just(b"\xff\xff\xff\x7f".to_vec()),
        Just(b"\x00\x00\x00\x80".to_vec()),
        Just(b"\xff\xff\xff\xff\xff\xff\xff\xff".to_vec()),
        Just(b"(".to_vec()),
        Just(b".".to_vec()),
        Just(b"\x95".to_vec()),
        Just(b"2".to_vec()),
        Just(b"\x94".to_vec()),
        Just(b"h\x00".to_vec()),
        Just(b"j\xff\xff\xff\xff".to_vec()),
        Just(b"r\xff\xff\xff\xff".to_vec()),
        prop::collection::vec(any::<u8>(), 1..9),
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<Index>(), 0u8..8).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        (any::<Index>(), interesting()).prop_map(|(i, b)| Mutation::InsertRun(i, b)),
        any::<Index>().prop_map(Mutation::Delete),
        any::<Index>().prop_map(Mutation::Truncate),
    ]
}

fn apply(bytes: &mut Vec<u8>, m: &Mutation) {
    let len = bytes.len();
    match m {
        Mutation::Flip(i, bit) if len > 0 => bytes[i.index(len)] ^= 1 << bit,
        Mutation::Set(i, b) if len > 0 => bytes[i.index(len)] = *b,
        Mutation::Insert(i, b) => bytes.insert(i.index(len + 1), *b),
        Mutation::InsertRun(i, run) => {
            let at = i.index(len + 1);
            bytes.splice(at..at, run.iter().copied());
        }
        Mutation::Delete(i) if len > 0 => {
            bytes.remove(i.index(len));
        }
        Mutation::Truncate(i) => bytes.truncate(i.index(len + 1)),
        _ => {}
    }
}

fn with_header(header: Option<u8>, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 2);
    if let Some(p) = header {
        out.extend_from_slice(&[0x80, p]);
    }
    out.extend_from_slice(body);
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: if cfg!(debug_assertions) { 5_000 } else { 100_000 }, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(
        header in prop::option::of(2u8..=5),
        body in prop::collection::vec(any::<u8>(), 0..256),
    ) {
        exercise(&with_header(header, &body));
    }

    #[test]
    fn random_opcode_soup_never_panics(
        header in prop::option::of(2u8..=5),
        body in prop::collection::vec(
            prop_oneof![
                // Mostly opcodes and small arguments, so the stack machine gets somewhere.
                prop::sample::select(&b"()NK\x01Ma]}etsu\x85\x86\x87\x8f\x90\x91\x94h\x002.01lp\x8c\x02ab\x88\x89Rb\x81\x92\x93"[..]),
                any::<u8>(),
            ],
            0..512,
        ),
    ) {
        exercise(&with_header(header, &body));
    }

    #[test]
    fn mutated_pickles_never_panic(
        seed in any::<Index>(),
        header in prop::option::of(2u8..=5),
        mutations in prop::collection::vec(mutation(), 1..8),
    ) {
        let mut bytes = SEEDS[seed.index(SEEDS.len())].clone();
        for m in &mutations {
            apply(&mut bytes, m);
        }
        exercise(&with_header(header, &bytes));
    }
}

#[test]
fn every_truncation_is_an_error() {
    let mut checked = 0;
    for seed in SEEDS.iter() {
        let full = decode(seed);
        assert!(full.is_ok(), "seed does not decode: {full:?}");
        for n in 0..seed.len() {
            match decode(&seed[..n]) {
                Err(pickleshelf_pickle::Error::Decode { offset, .. }) => assert!(offset <= n),
                other => panic!("prefix of {n} of {} bytes gave {:?}", seed.len(), other.map(|v| v.to_string())),
            }
            checked += 1;
        }
    }
    assert!(checked > 1000);
    eprintln!("{checked} truncations of {} pickles checked", SEEDS.len());
}
