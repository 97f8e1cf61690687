//! serde's compound-serializer traits, forwarded to a serializer's own methods.
//!
//! The three serializers of the crate (the pickle writer and the value builder in
//! [`crate::ser`], the canonical writer in `canon_ser`) each keep the logic of a
//! sequence, tuple, map or struct in two or three inherent methods; serde wants it under
//! six trait names that differ only in the method's name. [`forward_compound!`] writes
//! those impls once:
//!
//! - `seq`: `serialize_element` / `serialize_field(value)` call `self.element(value)`;
//! - `struct`: `serialize_field(key, value)` calls `self.field(key, value)`;
//!
//! and `end` calls `self.finish()`, which returns the serializer's `Ok` type.
//!
//! [`forward_serializer!`] writes, inside an `impl Serializer`, its associated types and
//! the methods that only pass their value on in a wider or plainer form, as Python sees
//! no difference: the small ints to `serialize_i64`, `f32` to `serialize_f64`, unit and
//! unit structs to `serialize_none`, newtype structs to their content (except the
//! reserved newtypes of [`crate::serde_types`], which go to the serializer's
//! `serialize_pytype`), tuple structs to tuples.

/// `forward_compound!(seq Type => Ok: Trait, ...)` or
/// `forward_compound!(struct Type => Ok: Trait, ...)` (see the module docs); `Type` has
/// one lifetime parameter.
macro_rules! forward_compound {
    (seq $ty:ident => $ok:ty: $($tr:ident),+ $(,)?) => {$(
        forward_compound!(@seq $tr $ty $ok);
    )+};
    (struct $ty:ident => $ok:ty: $($tr:ident),+ $(,)?) => {$(
        forward_compound!(@struct $tr $ty $ok);
    )+};
    (@seq SerializeSeq $ty:ident $ok:ty) => { forward_compound!(@element SerializeSeq serialize_element $ty $ok); };
    (@seq SerializeTuple $ty:ident $ok:ty) => { forward_compound!(@element SerializeTuple serialize_element $ty $ok); };
    (@seq SerializeTupleStruct $ty:ident $ok:ty) => {
        forward_compound!(@element SerializeTupleStruct serialize_field $ty $ok);
    };
    (@seq SerializeTupleVariant $ty:ident $ok:ty) => {
        forward_compound!(@element SerializeTupleVariant serialize_field $ty $ok);
    };
    (@element $tr:ident $method:ident $ty:ident $ok:ty) => {
        impl ::serde::ser::$tr for $ty<'_> {
            type Ok = $ok;
            type Error = $crate::Error;

            fn $method<T: ::serde::Serialize + ?Sized>(&mut self, value: &T) -> $crate::Result<()> {
                self.element(value)
            }

            fn end(self) -> $crate::Result<$ok> {
                self.finish()
            }
        }
    };
    (@struct $tr:ident $ty:ident $ok:ty) => {
        impl ::serde::ser::$tr for $ty<'_> {
            type Ok = $ok;
            type Error = $crate::Error;

            fn serialize_field<T: ::serde::Serialize + ?Sized>(
                &mut self,
                key: &'static str,
                value: &T,
            ) -> $crate::Result<()> {
                self.field(key, value)
            }

            fn end(self) -> $crate::Result<$ok> {
                self.finish()
            }
        }
    };
}

/// `forward_serializer!(ok: Ok, seq: Seq, tuple: Tuple, map: Map)` inside
/// `impl Serializer` (see the module docs): the associated types (`Tuple` serves tuples,
/// tuple structs and tuple variants; `Map` maps, structs and struct variants) and the
/// forwarding methods.
macro_rules! forward_serializer {
    (ok: $ok:ty, seq: $seq:ty, tuple: $tuple:ty, map: $map:ty) => {
        type Ok = $ok;
        type Error = $crate::Error;
        type SerializeSeq = $seq;
        type SerializeTuple = $tuple;
        type SerializeTupleStruct = $tuple;
        type SerializeTupleVariant = $tuple;
        type SerializeMap = $map;
        type SerializeStruct = $map;
        type SerializeStructVariant = $map;

        forward_serializer!(@widen $ok, serialize_i64 i64: serialize_i8 i8, serialize_i16 i16, serialize_i32 i32,
            serialize_u8 u8, serialize_u16 u16, serialize_u32 u32);
        forward_serializer!(@widen $ok, serialize_f64 f64: serialize_f32 f32);

        fn serialize_unit(self) -> $crate::Result<$ok> {
            self.serialize_none()
        }

        fn serialize_unit_struct(self, _name: &'static str) -> $crate::Result<$ok> {
            self.serialize_none()
        }

        fn serialize_newtype_struct<T: ::serde::Serialize + ?Sized>(
            self,
            name: &'static str,
            value: &T,
        ) -> $crate::Result<$ok> {
            // The adapters of `serde_types` carry a Python object's text in a newtype
            // with a reserved name.
            if let Some(kind) = $crate::serde_types::Kind::from_newtype_name(name) {
                return self.serialize_pytype(kind, value);
            }
            self.serialize_some(value)
        }

        fn serialize_tuple_struct(self, _name: &'static str, len: usize) -> $crate::Result<$tuple> {
            self.serialize_tuple(len)
        }
    };
    (@widen $ok:ty, $to:ident $wide:ident: $($method:ident $narrow:ident),+) => {$(
        fn $method(self, v: $narrow) -> $crate::Result<$ok> {
            self.$to($wide::from(v))
        }
    )+};
}

pub(crate) use {forward_compound, forward_serializer};
