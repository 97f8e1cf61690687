//! serde's side: the `Deserializer` on [`Stream`] and its sequence, map and enum
//! accessors.
//!
//! Invariant: every visitor call is the one `crate::de` makes for the same node, in the
//! same order and with the same arguments; anything else is a [`Bail`].

use serde::de::{self, DeserializeSeed, Visitor};

use super::stream::{Bail, Body, Head, KeyLog, Kind, R, Step, Stream};
use crate::int::Int128;
use crate::opcodes as op;

/// serde's view of a list, tuple, set or frozenset.
pub(super) struct Seq<'s, 'a> {
    pub(super) st: &'s mut Stream<'a>,
    pub(super) body: Body,
    /// The length `deserialize_tuple` demands.
    pub(super) len: Option<usize>,
    pub(super) count: usize,
    /// A set's or frozenset's elements so far.
    pub(super) keys: Option<KeyLog>,
}

impl<'a> Seq<'_, 'a> {
    /// Notes the hash of a set's or frozenset's element that started at `at` (out of
    /// line: lists, the common case, do not pay for it).
    #[inline(never)]
    fn note_element(&mut self, at: usize) -> R<()> {
        match &mut self.keys {
            Some(keys) => keys.add(self.st, at, self.st.pos),
            None => Ok(()),
        }
    }

    /// After the visitor: every item was read, and there were `len` of them.
    pub(super) fn finish(&mut self) -> R<()> {
        if self.body.step(self.st)? != Step::End || self.len.is_some_and(|n| n != self.count) {
            return Err(Bail);
        }
        Ok(())
    }
}

impl<'a> de::SeqAccess<'a> for Seq<'_, 'a> {
    type Error = Bail;

    #[inline(always)]
    fn next_element_seed<T: DeserializeSeed<'a>>(&mut self, seed: T) -> R<Option<T::Value>> {
        match self.body.step(self.st)? {
            Step::End => {
                if self.len.is_some_and(|n| n != self.count) {
                    return Err(Bail);
                }
                Ok(None)
            }
            Step::Item => {
                if let Some(n) = self.len {
                    if n == self.count {
                        return Err(Bail);
                    }
                    self.count += 1;
                }
                // One call of `deserialize` only, so that it is inlined for lists.
                let at = self.body.item_at;
                let out = seed.deserialize(&mut *self.st)?;
                if self.keys.is_some() {
                    self.note_element(at)?;
                }
                Ok(Some(out))
            }
        }
    }

    fn size_hint(&self) -> Option<usize> {
        self.body.size_hint(self.st)
    }
}

/// serde's view of a dict.
pub(super) struct Map<'s, 'a> {
    pub(super) st: &'s mut Stream<'a>,
    pub(super) body: Body,
    /// Its keys so far; `None` for a struct (see [`Stream::visit_map`]).
    pub(super) keys: Option<KeyLog>,
}

impl<'a> de::MapAccess<'a> for Map<'_, 'a> {
    type Error = Bail;

    #[inline(always)]
    fn next_key_seed<K: DeserializeSeed<'a>>(&mut self, seed: K) -> R<Option<K::Value>> {
        if self.body.value_next {
            return Err(Bail);
        }
        match self.body.step(self.st)? {
            Step::End => Ok(None),
            Step::Item => {
                let at = self.body.item_at;
                let key = seed.deserialize(&mut *self.st)?;
                if let Some(keys) = &mut self.keys {
                    keys.add(self.st, at, self.st.pos)?;
                }
                Ok(Some(key))
            }
        }
    }

    #[inline(always)]
    fn next_value_seed<V: DeserializeSeed<'a>>(&mut self, seed: V) -> R<V::Value> {
        if !self.body.value_next || self.body.step(self.st)? != Step::Item {
            return Err(Bail);
        }
        seed.deserialize(&mut *self.st)
    }

    fn size_hint(&self) -> Option<usize> {
        self.body.size_hint(self.st)
    }
}

/// An enum written as its variant's name.
pub(super) struct NameEnum<'s, 'a> {
    pub(super) st: &'s mut Stream<'a>,
}

impl<'s, 'a> de::EnumAccess<'a> for NameEnum<'s, 'a> {
    type Error = Bail;
    type Variant = NameVariant;

    fn variant_seed<T: DeserializeSeed<'a>>(self, seed: T) -> R<(T::Value, NameVariant)> {
        Ok((seed.deserialize(self.st)?, NameVariant))
    }
}

pub(super) struct NameVariant;

impl<'a> de::VariantAccess<'a> for NameVariant {
    type Error = Bail;

    fn unit_variant(self) -> R<()> {
        Ok(())
    }

    fn newtype_variant_seed<T: DeserializeSeed<'a>>(self, _seed: T) -> R<T::Value> {
        Err(Bail)
    }

    fn tuple_variant<V: Visitor<'a>>(self, _len: usize, _visitor: V) -> R<V::Value> {
        Err(Bail)
    }

    fn struct_variant<V: Visitor<'a>>(self, _fields: &'static [&'static str], _visitor: V) -> R<V::Value> {
        Err(Bail)
    }
}

/// An enum written as `{name: content}`.
pub(super) struct DictEnum<'s, 'a> {
    pub(super) st: &'s mut Stream<'a>,
    pub(super) body: &'s mut Body,
}

impl<'s, 'a> de::EnumAccess<'a> for DictEnum<'s, 'a> {
    type Error = Bail;
    type Variant = &'s mut Stream<'a>;

    fn variant_seed<T: DeserializeSeed<'a>>(self, seed: T) -> R<(T::Value, &'s mut Stream<'a>)> {
        let name = seed.deserialize(&mut *self.st)?;
        if self.body.step(self.st)? != Step::Item {
            return Err(Bail);
        }
        Ok((name, self.st))
    }
}

/// The content of a `{name: content}` enum.
impl<'a> de::VariantAccess<'a> for &mut Stream<'a> {
    type Error = Bail;

    fn unit_variant(self) -> R<()> {
        de::Deserialize::deserialize(self)
    }

    fn newtype_variant_seed<T: DeserializeSeed<'a>>(self, seed: T) -> R<T::Value> {
        seed.deserialize(self)
    }

    fn tuple_variant<V: Visitor<'a>>(self, len: usize, visitor: V) -> R<V::Value> {
        de::Deserializer::deserialize_tuple(self, len, visitor)
    }

    fn struct_variant<V: Visitor<'a>>(self, fields: &'static [&'static str], visitor: V) -> R<V::Value> {
        de::Deserializer::deserialize_struct(self, "", fields, visitor)
    }
}

macro_rules! de_int {
    ($($method:ident $ty:ident $visit:ident;)*) => {$(
        #[inline]
        fn $method<V: Visitor<'a>>(self, visitor: V) -> R<V::Value> {
            if let Some(i) = self.fast_int()? {
                return visitor.$visit($ty::try_from(i).map_err(|_| Bail)?);
            }
            let h = self.head()?;
            self.visits += 1;
            let v = match h {
                Head::Int(i) => $ty::try_from(i).ok(),
                Head::Big(i) => match self.big(i)?.int {
                    Some(Int128::Signed(x)) => $ty::try_from(x).ok(),
                    Some(Int128::Unsigned(x)) => $ty::try_from(x).ok(),
                    None => None,
                },
                _ => None,
            };
            visitor.$visit(v.ok_or(Bail)?)
        }
    )*};
}

impl<'a> de::Deserializer<'a> for &mut Stream<'a> {
    type Error = Bail;

    fn deserialize_any<V: Visitor<'a>>(self, visitor: V) -> R<V::Value> {
        let h = self.head()?;
        self.visits += 1;
        match h {
            Head::None => visitor.visit_unit(),
            Head::Bool(b) => visitor.visit_bool(b),
            Head::Int(i) => match u64::try_from(i) {
                Ok(u) => visitor.visit_u64(u),
                Err(_) => visitor.visit_i64(i),
            },
            Head::Big(i) => match self.big(i)?.int {
                Some(Int128::Signed(x)) => match u64::try_from(x) {
                    Ok(u) => visitor.visit_u64(u),
                    Err(_) => visitor.visit_i128(x),
                },
                Some(Int128::Unsigned(x)) => visitor.visit_u128(x),
                None => Err(Bail),
            },
            Head::Float(x) => visitor.visit_f64(x),
            Head::Str(s) => {
                // `de.rs` reads the node again through `deserialize_str`.
                self.visits += 1;
                visitor.visit_borrowed_str(s)
            }
            Head::Surrogates => Err(Bail),
            Head::Bytes(b) => visitor.visit_borrowed_bytes(b),
            Head::Seq(kind, n) => self.visit_seq(Body::new(kind, n), None, visitor),
            Head::Map(kind) => self.visit_map(Body::new(kind, 0), true, visitor),
        }
    }

    fn deserialize_bool<V: Visitor<'a>>(self, visitor: V) -> R<V::Value> {
        if let Some((w, p)) = self.fast_start()
            && let Some(&code @ (op::NEWTRUE | op::NEWFALSE)) = w.get(p)
        {
            let b = code == op::NEWTRUE;
            self.fast_end(w, p, p + 1, &Head::Bool(b))?;
            return visitor.visit_bool(b);
        }
        let h = self.head()?;
        self.visits += 1;
        match h {
            Head::Bool(b) => visitor.visit_bool(b),
            _ => Err(Bail),
        }
    }

    de_int! {
        deserialize_i8 i8 visit_i8;
        deserialize_i16 i16 visit_i16;
        deserialize_i32 i32 visit_i32;
        deserialize_i64 i64 visit_i64;
        deserialize_u8 u8 visit_u8;
        deserialize_u16 u16 visit_u16;
        deserialize_u32 u32 visit_u32;
        deserialize_u64 u64 visit_u64;
        deserialize_i128 i128 visit_i128;
        deserialize_u128 u128 visit_u128;
    }

    fn deserialize_f32<V: Visitor<'a>>(self, visitor: V) -> R<V::Value> {
        if let Some(x) = self.fast_float()? {
            return visitor.visit_f64(x);
        }
        let h = self.head()?;
        self.visits += 1;
        match h {
            Head::Float(x) => visitor.visit_f64(x),
            Head::Int(i) => {
                let f = i as f32;
                if f as i128 != i128::from(i) {
                    return Err(Bail);
                }
                visitor.visit_f32(f)
            }
            Head::Big(i) => visitor.visit_f32(self.big(i)?.f32.ok_or(Bail)?),
            _ => Err(Bail),
        }
    }

    #[inline(always)]
    fn deserialize_f64<V: Visitor<'a>>(self, visitor: V) -> R<V::Value> {
        if let Some(x) = self.fast_float()? {
            return visitor.visit_f64(x);
        }
        let h = self.head()?;
        self.visits += 1;
        match h {
            Head::Float(x) => visitor.visit_f64(x),
            Head::Int(i) => {
                let f = i as f64;
                if f as i128 != i128::from(i) {
                    return Err(Bail);
                }
                visitor.visit_f64(f)
            }
            Head::Big(i) => visitor.visit_f64(self.big(i)?.f64.ok_or(Bail)?),
            _ => Err(Bail),
        }
    }

    fn deserialize_char<V: Visitor<'a>>(self, visitor: V) -> R<V::Value> {
        self.deserialize_str(visitor)
    }

    #[inline(always)]
    fn deserialize_str<V: Visitor<'a>>(self, visitor: V) -> R<V::Value> {
        if let Some(s) = self.fast_str()? {
            return visitor.visit_borrowed_str(s);
        }
        let h = self.head()?;
        self.visits += 1;
        match h {
            Head::Str(s) => visitor.visit_borrowed_str(s),
            _ => Err(Bail),
        }
    }

    #[inline(always)]
    fn deserialize_string<V: Visitor<'a>>(self, visitor: V) -> R<V::Value> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'a>>(self, visitor: V) -> R<V::Value> {
        match self.head()? {
            Head::Bytes(b) => {
                self.visits += 1;
                visitor.visit_borrowed_bytes(b)
            }
            // Byte-buffer visitors also take a sequence of ints or a str.
            h => {
                self.pending = Some(h);
                self.deserialize_any(visitor)
            }
        }
    }

    fn deserialize_byte_buf<V: Visitor<'a>>(self, visitor: V) -> R<V::Value> {
        self.deserialize_bytes(visitor)
    }

    fn deserialize_option<V: Visitor<'a>>(self, visitor: V) -> R<V::Value> {
        match self.head()? {
            Head::None => {
                self.visits += 1;
                visitor.visit_none()
            }
            h => {
                self.pending = Some(h);
                let out = visitor.visit_some(&mut *self)?;
                // The content was read (a visitor may not read it at all).
                if self.pending.is_some() {
                    return Err(Bail);
                }
                Ok(out)
            }
        }
    }

    fn deserialize_unit<V: Visitor<'a>>(self, visitor: V) -> R<V::Value> {
        let h = self.head()?;
        self.visits += 1;
        match h {
            Head::None => visitor.visit_unit(),
            _ => Err(Bail),
        }
    }

    fn deserialize_unit_struct<V: Visitor<'a>>(self, _name: &'static str, visitor: V) -> R<V::Value> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'a>>(self, _name: &'static str, visitor: V) -> R<V::Value> {
        visitor.visit_newtype_struct(self)
    }

    #[inline(always)]
    fn deserialize_seq<V: Visitor<'a>>(self, visitor: V) -> R<V::Value> {
        let h = self.head()?;
        self.visits += 1;
        match h {
            Head::Seq(kind, n) => self.visit_seq(Body::new(kind, n), None, visitor),
            // Bytes as a sequence of ints, as the `Value` path reads them (`Vec<u8>`).
            Head::Bytes(b) => visitor.visit_seq(de::value::SeqDeserializer::<_, Bail>::new(b.iter().copied())),
            _ => Err(Bail),
        }
    }

    fn deserialize_tuple<V: Visitor<'a>>(self, len: usize, visitor: V) -> R<V::Value> {
        let h = self.head()?;
        self.visits += 1;
        let Head::Seq(kind, n) = h else {
            return Err(Bail);
        };
        let body = Body::new(kind, n);
        // A known length that differs fails at once (`Seq` would find it at the end).
        if !body.tuple_like() || body.fixed_len().is_some_and(|n| n != len) {
            return Err(Bail);
        }
        self.visit_seq(body, Some(len), visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'a>>(self, _name: &'static str, len: usize, visitor: V) -> R<V::Value> {
        self.deserialize_tuple(len, visitor)
    }

    #[inline(always)]
    fn deserialize_map<V: Visitor<'a>>(self, visitor: V) -> R<V::Value> {
        let h = self.head()?;
        self.visits += 1;
        match h {
            Head::Map(kind) => self.visit_map(Body::new(kind, 0), true, visitor),
            _ => Err(Bail),
        }
    }

    #[inline(always)]
    fn deserialize_struct<V: Visitor<'a>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> R<V::Value> {
        let h = self.head()?;
        self.visits += 1;
        match h {
            Head::Map(kind) => self.visit_map(Body::new(kind, 0), false, visitor),
            _ => Err(Bail),
        }
    }

    fn deserialize_enum<V: Visitor<'a>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> R<V::Value> {
        match self.head()? {
            // The name is counted as a visit when it is read as the identifier.
            h @ (Head::Str(_) | Head::Surrogates) => {
                self.pending = Some(h);
                let out = visitor.visit_enum(NameEnum { st: &mut *self })?;
                if self.pending.is_some() {
                    return Err(Bail); // the name was not read
                }
                Ok(out)
            }
            Head::Map(kind) => {
                let mut body = Body::new(kind, 0);
                self.visits += 1;
                self.enter()?;
                if body.step(self)? != Step::Item {
                    return Err(Bail); // an empty dict
                }
                let out = visitor.visit_enum(DictEnum { st: &mut *self, body: &mut body })?;
                // Exactly one entry, read whole.
                if body.step(self)? != Step::End {
                    return Err(Bail);
                }
                self.depth -= 1;
                Ok(out)
            }
            _ => Err(Bail),
        }
    }

    #[inline(always)]
    fn deserialize_identifier<V: Visitor<'a>>(self, visitor: V) -> R<V::Value> {
        self.deserialize_str(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'a>>(self, visitor: V) -> R<V::Value> {
        self.skip()?;
        self.visits += 1;
        visitor.visit_unit()
    }
}

impl<'a> Stream<'a> {
    pub(super) fn visit_seq<V: Visitor<'a>>(&mut self, body: Body, len: Option<usize>, visitor: V) -> R<V::Value> {
        self.enter()?;
        let keys = matches!(body.kind, Kind::Set | Kind::MarkFrozenSet).then(|| KeyLog::new(self));
        let mut seq = Seq { st: &mut *self, body, len, count: 0, keys };
        let out = visitor.visit_seq(&mut seq)?;
        seq.finish()?;
        if let Some(keys) = seq.keys.take() {
            keys.end(self);
        }
        self.depth -= 1;
        Ok(out)
    }

    /// A dict read as a map, or (`logged` false) as a struct. A map's keys are logged, so
    /// that a repeated one (which the `Value` path merges) gives up. A struct's are not:
    /// its keys are strs read as field names, and serde's derived visitors refuse a
    /// field named twice (which gives up) and ignore an unknown one however often it
    /// comes, so that a repeat changes nothing there; this saves a fifth of the time of
    /// reading W1's records. Only a hand-written visitor behind `deserialize_struct` that
    /// keeps the first of two values for one field could read a pickle that repeats a
    /// key (which CPython never writes) differently from the `Value` path.
    #[inline(always)]
    pub(super) fn visit_map<V: Visitor<'a>>(&mut self, body: Body, logged: bool, visitor: V) -> R<V::Value> {
        self.enter()?;
        let keys = logged.then(|| KeyLog::new(self));
        let mut map = Map { st: &mut *self, body, keys };
        let out = visitor.visit_map(&mut map)?;
        if map.body.step(map.st)? != Step::End {
            return Err(Bail);
        }
        if let Some(keys) = map.keys.take() {
            keys.end(self);
        }
        self.depth -= 1;
        Ok(out)
    }
}
