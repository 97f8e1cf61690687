//! Rust byte sequences (`Vec<u8>`, `&[u8]`, `VecDeque<u8>`) as Python `bytes`.
//!
//! Invariant: [`is_byte_seq`] is true exactly when serde hands a serializer's
//! `collect_seq` a collection other than a set whose items are `u8` (or `&u8`),
//! recognized by the item type's name; then [`collect_bytes`] gathers the bytes, each item serializing itself
//! through [`ByteOf`], which accepts a `u8` and nothing else. All three serializers
//! (pickle writer, value builder, canonical writer) ask the same question, so they
//! agree on what is `bytes`.

use serde::ser::{self, Impossible, Serialize};

use crate::{Error, Result};

/// Whether the items of `I` are bytes (and `I` is not a set: a `BTreeSet<u8>` stays a
/// collection of ints).
pub(crate) fn is_byte_seq<I: IntoIterator>() -> bool {
    matches!(std::any::type_name::<I::Item>(), "u8" | "&u8") && !crate::ser::is_set_type::<I>()
}

/// The bytes of a collection [`is_byte_seq`] accepted.
pub(crate) fn collect_bytes<I>(iter: I) -> Result<Vec<u8>>
where
    I: IntoIterator,
    I::Item: Serialize,
{
    iter.into_iter().map(|x| x.serialize(ByteOf)).collect()
}

/// What serde's default `collect_seq` does: the items as a sequence, its length given
/// when the iterator knows it exactly. The serializers' own `collect_seq` come here once
/// they have ruled out bytes (and sets).
pub(crate) fn collect_as_seq<S, I>(s: S, iter: I) -> std::result::Result<S::Ok, S::Error>
where
    S: ser::Serializer,
    I: IntoIterator,
    I::Item: Serialize,
{
    let iter = iter.into_iter();
    let (lo, hi) = iter.size_hint();
    let mut seq = s.serialize_seq(if hi == Some(lo) { Some(lo) } else { None })?;
    for x in iter {
        ser::SerializeSeq::serialize_element(&mut seq, &x)?;
    }
    ser::SerializeSeq::end(seq)
}

/// A serializer that takes one `u8`.
struct ByteOf;

fn not_a_byte<T>() -> Result<T> {
    Err(Error::Serde("an item of a byte sequence is not a u8".into()))
}

macro_rules! refuse {
    ($($method:ident($($arg:ty),*) -> $ret:ty;)*) => {$(
        fn $method(self $(, _: $arg)*) -> Result<$ret> {
            not_a_byte()
        }
    )*};
}

impl ser::Serializer for ByteOf {
    type Ok = u8;
    type Error = Error;
    type SerializeSeq = Impossible<u8, Error>;
    type SerializeTuple = Impossible<u8, Error>;
    type SerializeTupleStruct = Impossible<u8, Error>;
    type SerializeTupleVariant = Impossible<u8, Error>;
    type SerializeMap = Impossible<u8, Error>;
    type SerializeStruct = Impossible<u8, Error>;
    type SerializeStructVariant = Impossible<u8, Error>;

    fn serialize_u8(self, v: u8) -> Result<u8> {
        Ok(v)
    }

    refuse! {
        serialize_bool(bool) -> u8;
        serialize_i8(i8) -> u8;
        serialize_i16(i16) -> u8;
        serialize_i32(i32) -> u8;
        serialize_i64(i64) -> u8;
        serialize_u16(u16) -> u8;
        serialize_u32(u32) -> u8;
        serialize_u64(u64) -> u8;
        serialize_f32(f32) -> u8;
        serialize_f64(f64) -> u8;
        serialize_char(char) -> u8;
        serialize_str(&str) -> u8;
        serialize_bytes(&[u8]) -> u8;
        serialize_none() -> u8;
        serialize_unit() -> u8;
        serialize_unit_struct(&'static str) -> u8;
        serialize_unit_variant(&'static str, u32, &'static str) -> u8;
        serialize_seq(Option<usize>) -> Impossible<u8, Error>;
        serialize_tuple(usize) -> Impossible<u8, Error>;
        serialize_tuple_struct(&'static str, usize) -> Impossible<u8, Error>;
        serialize_tuple_variant(&'static str, u32, &'static str, usize) -> Impossible<u8, Error>;
        serialize_map(Option<usize>) -> Impossible<u8, Error>;
        serialize_struct(&'static str, usize) -> Impossible<u8, Error>;
        serialize_struct_variant(&'static str, u32, &'static str, usize) -> Impossible<u8, Error>;
    }

    fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<u8> {
        not_a_byte()
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _: &'static str, v: &T) -> Result<u8> {
        v.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<u8> {
        not_a_byte()
    }
}
