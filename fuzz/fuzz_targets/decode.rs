//! Fuzz target: arbitrary bytes through everything a reader does with an untrusted
//! pickle. Nothing may panic, hang or use memory beyond linear in the input.
//!
//! decode (default limits, then tight ones) → Display → validate → serde
//! (`IgnoredAny`, a walk of the whole value through `deserialize_any`, a typed record)
//! → encode at protocol 4.
#![no_main]

use std::fmt;

use libfuzzer_sys::fuzz_target;
use pickleshelf::pickle::{self, Limits, Value};
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
    // TODO(after the encoder lands): check that decode(encode(v)) is the same value.
    let _ = pickle::encode(v, 4);
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
