//! serde → pickle: any `T: Serialize` to pickle bytes ([`to_vec`]) or to a [`Value`]
//! ([`to_value`]).
//!
//! [`to_vec`] writes opcodes directly, without building a [`Value`], through the same
//! writer as [`crate::encode`]; for every `x`, `to_vec_with_protocol(x, p)`
//! equals `encode(&to_value(x)?, p)`, and both equal CPython's `pickle.dumps(v,
//! protocol=p)` of the Python value `v` below.
//!
//! # Mapping
//!
//! | serde | Python |
//! |---|---|
//! | `bool` | `bool` |
//! | `i8`–`i128`, `u8`–`u128` | `int` |
//! | `f32`, `f64` | `float` |
//! | `char` | `str` of one character |
//! | `str` | `str` |
//! | bytes (`serialize_bytes`), and a byte sequence (`Vec<u8>`, `&[u8]`, `VecDeque<u8>`: `collect_seq` of `u8` items, not a set) | `bytes` |
//! | `None`, unit `()`, unit struct | `None` |
//! | `Some(x)` | `x` |
//! | unit variant `E::V` | `'V'` (the variant name) |
//! | newtype struct `S(x)` | `x` |
//! | newtype variant `E::V(x)` | `{'V': x}` |
//! | sequence | `list` |
//! | tuple, tuple struct | `tuple` |
//! | tuple variant `E::V(a, b)` | `{'V': (a, b)}` |
//! | map | `dict`, in insertion order |
//! | struct | `dict` with `str` keys in field order; skipped fields are omitted |
//! | struct variant `E::V { a }` | `{'V': {'a': a}}` |
//!
//! Field and variant names are interned: each distinct name is one `str` object,
//! written once per pickle and fetched from the memo afterwards, as CPython does with
//! attribute names. Other strings are distinct objects (except the singletons CPython
//! keeps: `''` and one-character strings below U+0100). The serializer reports itself
//! human-readable (serde's default), so types such as addresses serialize as text.
//!
//! # Errors
//!
//! - Nesting deeper than [`MAX_DEPTH`] levels: every `Some`, newtype, sequence, tuple,
//!   map, struct and enum variant holding data counts one level. This bounds the stack
//!   a recursive type can use; CPython's own `pickle.dumps` stops near 1,000 levels.
//! - A list or dict used as a dict key (Python cannot hash it; use a tuple).
//! - A `Serialize` impl that announces a length and then writes a different number of
//!   elements, entries or fields.
//! - A custom error from a `Serialize` impl.
//!
//! All are [`Error::Serde`] (an unsupported protocol is [`Error::Encode`]).

use std::collections::HashMap;
use std::fmt::Display;

use serde::ser::{self, Serialize};

use super::bytes_seq::{collect_bytes, is_byte_seq};
use super::compound::{forward_compound, forward_serializer};
use super::emit::{BATCH, Emitter, str_singleton};
use super::encode::Encoder;
use super::int::{BigInt, Int};
use super::opcodes as op;
use super::value::{Node, NodeId, PyStr, Value};
use crate::{Error, Result};

/// The deepest nesting [`to_vec`] and [`to_value`] accept.
pub const MAX_DEPTH: usize = 1000;

/// Serializes any `T: Serialize` to pickle bytes with the default protocol (4).
///
/// ```
/// #[derive(serde::Serialize)]
/// struct Point { x: i32, label: String }
///
/// let bytes = pickleshelf_pickle::to_vec(&Point { x: 1, label: "a".into() })?;
/// // pickle.dumps({'x': 1, 'label': 'a'}, protocol=4)
/// assert_eq!(
///     bytes,
///     b"\x80\x04\x95\x17\x00\x00\x00\x00\x00\x00\x00}\x94(\x8c\x01x\x94K\x01\x8c\x05label\x94\x8c\x01a\x94u."
/// );
/// # Ok::<(), pickleshelf_pickle::Error>(())
/// ```
///
/// # Errors
/// [`Error::Serde`] when `T` cannot be represented (see the module docs).
pub fn to_vec<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    to_vec_with_protocol(value, super::DEFAULT_PROTOCOL)
}

/// Serializes any `T: Serialize` to pickle bytes with the given protocol (2–5).
///
/// ```
/// use std::collections::BTreeMap;
///
/// let map = BTreeMap::from([("a", vec![1u16, 2])]);
/// let bytes = pickleshelf_pickle::to_vec_with_protocol(&map, 2)?;
/// // pickle.dumps({'a': [1, 2]}, protocol=2)
/// assert_eq!(bytes, b"\x80\x02}q\x00X\x01\x00\x00\x00aq\x01]q\x02(K\x01K\x02es.");
/// // A Vec<u8> is bytes: pickle.dumps({'a': b'\x01\x02'}, protocol=2)
/// let bytes = pickleshelf_pickle::to_vec_with_protocol(&BTreeMap::from([("a", vec![1u8, 2])]), 2)?;
/// assert_eq!(bytes, b"\x80\x02}q\x00X\x01\x00\x00\x00aq\x01c_codecs\nencode\nq\x02X\x02\x00\x00\x00\x01\x02q\x03X\x06\x00\x00\x00latin1q\x04\x86q\x05Rq\x06s.");
/// # Ok::<(), pickleshelf_pickle::Error>(())
/// ```
///
/// # Errors
/// [`Error::Encode`] for an unsupported protocol; [`Error::Serde`] when `T` cannot be
/// represented (see the module docs).
pub fn to_vec_with_protocol<T: Serialize + ?Sized>(value: &T, protocol: u8) -> Result<Vec<u8>> {
    let mut p = Pickler { em: Emitter::new(protocol)?, depth: 0, in_key: 0 };
    value.serialize(&mut p)?;
    Ok(p.em.finish())
}

/// Converts any `T: Serialize` to a [`Value`] (mapped as in the module docs).
///
/// The value shares nodes where Python shares objects, as [`crate::decode`]
/// would give them: one node per field or variant name, and one each for `None`,
/// `True`, `False`, `()`, `''`, `b''` and each one-character str below U+0100.
///
/// ```
/// let v = pickleshelf_pickle::to_value(&(1, "a", Some(2.5), None::<u8>))?;
/// assert_eq!(v.to_string(), "(1, 'a', 2.5, None)");
/// # Ok::<(), pickleshelf_pickle::Error>(())
/// ```
///
/// # Errors
/// [`Error::Serde`] when `T` cannot be represented (see the module docs).
pub fn to_value<T: Serialize + ?Sized>(value: &T) -> Result<Value> {
    let mut b = Builder::new(0);
    let root = value.serialize(&mut b)?;
    Ok(Value::from_parts_unchecked(b.nodes, root))
}

/// [`to_value`], except that sequences serialized from a `HashSet`, `BTreeSet` or
/// `IndexSet` become Python sets (frozensets when used inside a dict key) instead of
/// lists. serde gives a serializer no other way to tell a set from a list, so the type is
/// recognized by its name (`std::any::type_name` of the collection serde hands over):
/// other set types stay lists. Used for memoization keys, where a set's iteration order
/// must not matter.
pub(crate) fn to_value_with_sets<T: Serialize + ?Sized>(value: &T) -> Result<Value> {
    let mut b = Builder::new(0);
    b.sets = true;
    let root = value.serialize(&mut b)?;
    Ok(Value::from_parts_unchecked(b.nodes, root))
}

/// Whether `collect_seq` was handed a set (see [`to_value_with_sets`]); the direct
/// canonical serializer ([`super::canon_ser`]) asks the same question.
pub(crate) fn is_set_type<I>() -> bool {
    let name = std::any::type_name::<I>();
    name.contains("HashSet") || name.contains("BTreeSet") || name.contains("IndexSet")
}

impl ser::Error for Error {
    fn custom<T: Display>(msg: T) -> Self {
        Error::Serde(msg.to_string())
    }
}

fn too_deep() -> Error {
    Error::Serde(format!("nesting deeper than {MAX_DEPTH} levels"))
}

fn unhashable_key(what: &str) -> Error {
    Error::Serde(format!("a {what} cannot be a dict key: Python cannot hash it (use a tuple)"))
}

fn wrong_len(what: &str, announced: usize, written: usize) -> Error {
    Error::Serde(format!("Serialize impl announced {announced} {what} but wrote {written}"))
}

/// Minimal-length little-endian two's complement limbs of a 128-bit magnitude.
fn int_from_u128(negative: bool, magnitude: u128) -> Int {
    let limbs = (0..4).map(|i| (magnitude >> (32 * i)) as u32).collect();
    BigInt::from_sign_magnitude(negative, limbs)
}

// ----- the direct serializer -----

/// Writes a `T: Serialize` straight to pickle opcodes.
struct Pickler {
    em: Emitter,
    depth: usize,
    /// Above zero while a dict key is being written.
    in_key: u32,
}

impl Pickler {
    /// Writes the Python object an adapter of [`crate::serde_types`] carries.
    fn serialize_pytype<T: Serialize + ?Sized>(&mut self, kind: crate::serde_types::Kind, content: &T) -> Result<()> {
        let text = crate::serde_types::captured_text(kind, content)?;
        let object = crate::serde_types::object_from_wire(kind, &text)?;
        Encoder::new(&mut self.em, object.nodes()).run(object.root())
    }

    fn enter(&mut self) -> Result<()> {
        if self.depth >= MAX_DEPTH {
            return Err(too_deep());
        }
        self.depth += 1;
        Ok(())
    }

    fn leave(&mut self) {
        self.depth -= 1;
    }

    /// Checks that a dict may start here, and enters one nesting level.
    fn enter_dict(&mut self) -> Result<()> {
        if self.in_key > 0 {
            return Err(unhashable_key("dict"));
        }
        self.enter()
    }

    /// `EMPTY_DICT`, memoized, and the key of a one-entry `{variant: ...}` dict.
    fn open_variant(&mut self, variant: &'static str) -> Result<()> {
        self.em.begin_save();
        self.em.op(op::EMPTY_DICT);
        self.em.memoize()?;
        self.em.save_name(variant)?;
        Ok(())
    }

    /// Closes a one-entry variant dict.
    fn close_variant(&mut self) {
        self.em.op(op::SETITEM);
    }

    /// Starts a dict of `len` entries (known in advance).
    fn open_dict(&mut self, len: usize) -> Result<()> {
        self.em.begin_save();
        self.em.op(op::EMPTY_DICT);
        self.em.memoize()?;
        if len > 1 {
            self.em.op(op::MARK);
        }
        Ok(())
    }

    /// Closes a dict of `len` entries, batched as CPython's `batch_dict_exact`.
    fn close_dict(&mut self, len: usize) {
        match len {
            0 => {}
            1 => self.em.op(op::SETITEM),
            _ => {
                self.em.op(op::SETITEMS);
                if len.is_multiple_of(BATCH) {
                    self.em.raw(&[op::MARK, op::SETITEMS]);
                }
            }
        }
    }

    /// Writes the buffered part of an unknown-length sequence or map, sharing memo and
    /// interned names with the rest of the pickle.
    fn emit_built(&mut self, b: &Builder, root: NodeId) -> Result<()> {
        let presets: Vec<(NodeId, u32)> =
            b.names.iter().filter_map(|(&name, &id)| self.em.name_index(name).map(|idx| (id, idx))).collect();
        let mut enc = Encoder::new(&mut self.em, &b.nodes);
        for (id, idx) in presets {
            enc.preset(id, idx);
        }
        enc.run(root)?;
        let written: Vec<(&'static str, u32)> =
            b.names.iter().filter_map(|(&name, &id)| enc.memo_index(id).map(|idx| (name, idx))).collect();
        for (name, idx) in written {
            self.em.set_name_index(name, idx);
        }
        Ok(())
    }
}

/// A sequence being written.
enum SeqWriter<'a> {
    /// Known length: written as it comes.
    Direct { p: &'a mut Pickler, len: usize, count: usize },
    /// Unknown length: built as a value, then written (CPython's batching needs to know
    /// whether there is exactly one item before writing the first).
    Built { p: &'a mut Pickler, b: Box<Builder>, items: Vec<NodeId> },
}

/// A tuple (or tuple variant, when `variant`) being written.
struct TupleWriter<'a> {
    p: &'a mut Pickler,
    len: usize,
    count: usize,
    variant: bool,
}

/// A map or struct (or struct variant, when `variant`) being written.
enum MapWriter<'a> {
    /// Known length.
    Direct { p: &'a mut Pickler, len: usize, count: usize, variant: bool },
    /// Unknown length (see [`SeqWriter::Built`]).
    Built { p: &'a mut Pickler, b: Box<Builder>, pairs: Vec<(NodeId, NodeId)>, key: Option<NodeId> },
}

impl<'a> ser::Serializer for &'a mut Pickler {
    forward_serializer!(ok: (), seq: SeqWriter<'a>, tuple: TupleWriter<'a>, map: MapWriter<'a>);

    fn serialize_bool(self, v: bool) -> Result<()> {
        self.em.save_bool(v);
        Ok(())
    }
    fn serialize_i64(self, v: i64) -> Result<()> {
        self.em.save_i64(v);
        Ok(())
    }
    fn serialize_i128(self, v: i128) -> Result<()> {
        self.em.save_i128(v);
        Ok(())
    }
    fn serialize_u64(self, v: u64) -> Result<()> {
        self.em.save_u128(u128::from(v));
        Ok(())
    }
    fn serialize_u128(self, v: u128) -> Result<()> {
        self.em.save_u128(v);
        Ok(())
    }
    fn serialize_f64(self, v: f64) -> Result<()> {
        self.em.save_f64(v);
        Ok(())
    }
    fn serialize_char(self, v: char) -> Result<()> {
        self.em.save_str(v.encode_utf8(&mut [0u8; 4]).as_bytes())?;
        Ok(())
    }
    fn serialize_str(self, v: &str) -> Result<()> {
        self.em.save_str(v.as_bytes())?;
        Ok(())
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<()> {
        self.em.save_bytes(v)?;
        Ok(())
    }
    /// A byte sequence (`Vec<u8>`, `&[u8]`) is `bytes`; other sequences are lists.
    fn collect_seq<I>(self, iter: I) -> Result<()>
    where
        I: IntoIterator,
        <I as IntoIterator>::Item: Serialize,
    {
        if is_byte_seq::<I>() {
            return self.serialize_bytes(&collect_bytes(iter)?);
        }
        crate::bytes_seq::collect_as_seq(self, iter)
    }
    fn serialize_none(self) -> Result<()> {
        self.em.save_none();
        Ok(())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<()> {
        self.enter()?;
        value.serialize(&mut *self)?;
        self.leave();
        Ok(())
    }
    fn serialize_unit_variant(self, _name: &'static str, _index: u32, variant: &'static str) -> Result<()> {
        self.em.save_name(variant)?;
        Ok(())
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<()> {
        self.enter_dict()?;
        self.open_variant(variant)?;
        value.serialize(&mut *self)?;
        self.close_variant();
        self.leave();
        Ok(())
    }

    fn serialize_seq(self, len: Option<usize>) -> Result<SeqWriter<'a>> {
        if self.in_key > 0 {
            return Err(unhashable_key("list"));
        }
        self.enter()?;
        match len {
            Some(len) => {
                self.em.begin_save();
                self.em.op(op::EMPTY_LIST);
                self.em.memoize()?;
                if len > 1 {
                    self.em.op(op::MARK);
                }
                Ok(SeqWriter::Direct { p: self, len, count: 0 })
            }
            None => {
                let b = Box::new(Builder::new(self.depth));
                Ok(SeqWriter::Built { p: self, b, items: Vec::new() })
            }
        }
    }

    fn serialize_tuple(self, len: usize) -> Result<TupleWriter<'a>> {
        self.enter()?;
        self.em.begin_save();
        if len > 3 {
            self.em.op(op::MARK);
        }
        Ok(TupleWriter { p: self, len, count: 0, variant: false })
    }

    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<TupleWriter<'a>> {
        self.enter_dict()?;
        self.open_variant(variant)?;
        self.em.begin_save();
        if len > 3 {
            self.em.op(op::MARK);
        }
        Ok(TupleWriter { p: self, len, count: 0, variant: true })
    }

    fn serialize_map(self, len: Option<usize>) -> Result<MapWriter<'a>> {
        self.enter_dict()?;
        match len {
            Some(len) => {
                self.open_dict(len)?;
                Ok(MapWriter::Direct { p: self, len, count: 0, variant: false })
            }
            None => {
                let b = Box::new(Builder::new(self.depth));
                Ok(MapWriter::Built { p: self, b, pairs: Vec::new(), key: None })
            }
        }
    }

    fn serialize_struct(self, _name: &'static str, len: usize) -> Result<MapWriter<'a>> {
        self.enter_dict()?;
        self.open_dict(len)?;
        Ok(MapWriter::Direct { p: self, len, count: 0, variant: false })
    }

    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<MapWriter<'a>> {
        self.enter_dict()?;
        self.open_variant(variant)?;
        self.open_dict(len)?;
        Ok(MapWriter::Direct { p: self, len, count: 0, variant: true })
    }
}

impl ser::SerializeSeq for SeqWriter<'_> {
    type Ok = ();
    type Error = Error;

    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        match self {
            SeqWriter::Direct { p, len, count } => {
                if *count == *len {
                    return Err(wrong_len("elements", *len, *count + 1));
                }
                if *count > 0 && *count % BATCH == 0 {
                    p.em.raw(&[op::APPENDS, op::MARK]);
                }
                *count += 1;
                value.serialize(&mut **p)
            }
            SeqWriter::Built { b, items, .. } => {
                items.push(value.serialize(&mut **b)?);
                Ok(())
            }
        }
    }

    fn end(self) -> Result<()> {
        match self {
            SeqWriter::Direct { p, len, count } => {
                if count != len {
                    return Err(wrong_len("elements", len, count));
                }
                match len {
                    0 => {}
                    1 => p.em.op(op::APPEND),
                    _ => p.em.op(op::APPENDS),
                }
                p.leave();
            }
            SeqWriter::Built { p, mut b, items } => {
                let root = b.push(Node::List(items));
                p.emit_built(&b, root)?;
                p.leave();
            }
        }
        Ok(())
    }
}

impl TupleWriter<'_> {
    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        if self.count == self.len {
            return Err(wrong_len("tuple items", self.len, self.count + 1));
        }
        self.count += 1;
        value.serialize(&mut *self.p)
    }

    fn finish(self) -> Result<()> {
        let TupleWriter { p, len, count, variant } = self;
        if count != len {
            return Err(wrong_len("tuple items", len, count));
        }
        if len == 0 {
            p.em.op(op::EMPTY_TUPLE);
        } else {
            p.em.op(match len {
                1 => op::TUPLE1,
                2 => op::TUPLE2,
                3 => op::TUPLE3,
                _ => op::TUPLE,
            });
            p.em.memoize()?;
        }
        if variant {
            p.close_variant();
        }
        p.leave();
        Ok(())
    }
}

forward_compound!(seq TupleWriter => (): SerializeTuple, SerializeTupleStruct, SerializeTupleVariant);
forward_compound!(struct MapWriter => (): SerializeStruct, SerializeStructVariant);

impl MapWriter<'_> {
    /// A struct field: its name as the key, then the value.
    fn field<T: Serialize + ?Sized>(&mut self, name: &'static str, value: &T) -> Result<()> {
        self.key(|p| p.em.save_name(name).map(|_| ()))?;
        self.value(value)
    }

    /// Starts an entry of a known-length dict; the key is written by `write_key`.
    fn key(&mut self, write_key: impl FnOnce(&mut Pickler) -> Result<()>) -> Result<()> {
        match self {
            MapWriter::Direct { p, len, count, .. } => {
                if *count == *len {
                    return Err(wrong_len("entries", *len, *count + 1));
                }
                if *count > 0 && *count % BATCH == 0 {
                    p.em.raw(&[op::SETITEMS, op::MARK]);
                }
                *count += 1;
                p.in_key += 1;
                let r = write_key(p);
                p.in_key -= 1;
                r
            }
            MapWriter::Built { .. } => Err(Error::Serde("internal: key of a built map".into())),
        }
    }

    fn value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        match self {
            MapWriter::Direct { p, .. } => value.serialize(&mut **p),
            MapWriter::Built { b, pairs, key, .. } => {
                let k = key.take().ok_or_else(|| Error::Serde("map value without a key".into()))?;
                pairs.push((k, value.serialize(&mut **b)?));
                Ok(())
            }
        }
    }

    fn finish(self) -> Result<()> {
        match self {
            MapWriter::Direct { p, len, count, variant } => {
                if count != len {
                    return Err(wrong_len("entries", len, count));
                }
                p.close_dict(len);
                if variant {
                    p.close_variant();
                }
                p.leave();
            }
            MapWriter::Built { p, mut b, pairs, key } => {
                if key.is_some() {
                    return Err(Error::Serde("map key without a value".into()));
                }
                let root = b.push(Node::Dict(pairs));
                p.emit_built(&b, root)?;
                p.leave();
            }
        }
        Ok(())
    }
}

impl ser::SerializeMap for MapWriter<'_> {
    type Ok = ();
    type Error = Error;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<()> {
        if let MapWriter::Built { b, key: slot, .. } = self {
            b.in_key += 1;
            let k = key.serialize(&mut **b);
            b.in_key -= 1;
            *slot = Some(k?);
            return Ok(());
        }
        self.key(|p| key.serialize(p))
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        self.value(value)
    }

    fn end(self) -> Result<()> {
        self.finish()
    }
}

// ----- the value builder -----

/// Builds a [`Value`] from a `T: Serialize`; nodes are pushed children first.
struct Builder {
    nodes: Vec<Node>,
    /// The shared node of each field and variant name.
    names: HashMap<&'static str, NodeId>,
    /// The shared nodes of `None`, `True`, `False`, `()` and `b''`.
    atoms: [Option<NodeId>; 5],
    /// The shared nodes of the singleton strs, by `str_singleton` slot.
    small_strs: HashMap<usize, NodeId>,
    depth: usize,
    in_key: u32,
    /// Build `HashSet`/`BTreeSet`/`IndexSet` sequences as Python sets (see
    /// [`to_value_with_sets`]).
    sets: bool,
}

const NONE_ATOM: usize = 0;
const TRUE_ATOM: usize = 1;
const FALSE_ATOM: usize = 2;
const EMPTY_TUPLE_ATOM: usize = 3;
const EMPTY_BYTES_ATOM: usize = 4;

impl Builder {
    /// Adds the Python object an adapter of [`crate::serde_types`] carries.
    fn serialize_pytype<T: Serialize + ?Sized>(
        &mut self,
        kind: crate::serde_types::Kind,
        content: &T,
    ) -> Result<NodeId> {
        let text = crate::serde_types::captured_text(kind, content)?;
        let object = crate::serde_types::object_from_wire(kind, &text)?;
        Ok(crate::value::graft(&mut self.nodes, &object))
    }

    fn new(depth: usize) -> Builder {
        Builder {
            nodes: Vec::new(),
            names: HashMap::new(),
            atoms: [None; 5],
            small_strs: HashMap::new(),
            depth,
            in_key: 0,
            sets: false,
        }
    }

    fn atom(&mut self, which: usize, node: Node) -> NodeId {
        if let Some(&Some(id)) = self.atoms.get(which) {
            return id;
        }
        let id = self.push(node);
        if let Some(slot) = self.atoms.get_mut(which) {
            *slot = Some(id);
        }
        id
    }

    fn str_node(&mut self, s: &str) -> NodeId {
        match str_singleton(s.as_bytes()) {
            None => self.push(Node::Str(PyStr::from(s))),
            Some(slot) => {
                if let Some(&id) = self.small_strs.get(&slot) {
                    return id;
                }
                let id = self.push(Node::Str(PyStr::from(s)));
                self.small_strs.insert(slot, id);
                id
            }
        }
    }

    fn push(&mut self, node: Node) -> NodeId {
        let id = NodeId(self.nodes.len() as u32);
        self.nodes.push(node);
        id
    }

    fn name(&mut self, name: &'static str) -> NodeId {
        if let Some(&id) = self.names.get(name) {
            return id;
        }
        let id = self.str_node(name);
        self.names.insert(name, id);
        id
    }

    fn int(&mut self, v: Int) -> NodeId {
        match v {
            Int::Small(i) => self.push(Node::Int(i)),
            Int::Big(b) => self.push(Node::BigInt(Box::new(b))),
        }
    }

    fn enter(&mut self) -> Result<()> {
        if self.depth >= MAX_DEPTH {
            return Err(too_deep());
        }
        self.depth += 1;
        Ok(())
    }

    fn leave(&mut self) {
        self.depth -= 1;
    }

    fn variant(&mut self, variant: &'static str, value: NodeId) -> NodeId {
        let key = self.name(variant);
        self.push(Node::Dict(vec![(key, value)]))
    }
}

/// A sequence or tuple being built.
struct SeqBuilder<'a> {
    b: &'a mut Builder,
    items: Vec<NodeId>,
    /// The announced length, checked as the direct serializer checks it.
    len: Option<usize>,
    tuple: bool,
    variant: Option<&'static str>,
}

/// A map or struct being built.
struct MapBuilder<'a> {
    b: &'a mut Builder,
    pairs: Vec<(NodeId, NodeId)>,
    key: Option<NodeId>,
    len: Option<usize>,
    variant: Option<&'static str>,
}

impl<'a> ser::Serializer for &'a mut Builder {
    forward_serializer!(ok: NodeId, seq: SeqBuilder<'a>, tuple: SeqBuilder<'a>, map: MapBuilder<'a>);

    fn serialize_bool(self, v: bool) -> Result<NodeId> {
        Ok(self.atom(if v { TRUE_ATOM } else { FALSE_ATOM }, Node::Bool(v)))
    }
    fn serialize_i64(self, v: i64) -> Result<NodeId> {
        Ok(self.push(Node::Int(v)))
    }
    fn serialize_i128(self, v: i128) -> Result<NodeId> {
        Ok(self.int(int_from_u128(v < 0, v.unsigned_abs())))
    }
    fn serialize_u64(self, v: u64) -> Result<NodeId> {
        Ok(self.int(int_from_u128(false, u128::from(v))))
    }
    fn serialize_u128(self, v: u128) -> Result<NodeId> {
        Ok(self.int(int_from_u128(false, v)))
    }
    fn serialize_f64(self, v: f64) -> Result<NodeId> {
        Ok(self.push(Node::Float(v)))
    }
    fn serialize_char(self, v: char) -> Result<NodeId> {
        Ok(self.str_node(v.encode_utf8(&mut [0u8; 4])))
    }
    fn serialize_str(self, v: &str) -> Result<NodeId> {
        Ok(self.str_node(v))
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<NodeId> {
        if v.is_empty() {
            return Ok(self.atom(EMPTY_BYTES_ATOM, Node::Bytes(Vec::new())));
        }
        Ok(self.push(Node::Bytes(v.to_vec())))
    }
    fn serialize_none(self) -> Result<NodeId> {
        Ok(self.atom(NONE_ATOM, Node::None))
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<NodeId> {
        self.enter()?;
        let id = value.serialize(&mut *self)?;
        self.leave();
        Ok(id)
    }
    fn serialize_unit_variant(self, _name: &'static str, _index: u32, variant: &'static str) -> Result<NodeId> {
        Ok(self.name(variant))
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<NodeId> {
        if self.in_key > 0 {
            return Err(unhashable_key("dict"));
        }
        self.enter()?;
        let v = value.serialize(&mut *self)?;
        self.leave();
        Ok(self.variant(variant, v))
    }

    fn collect_seq<I>(self, iter: I) -> Result<NodeId>
    where
        I: IntoIterator,
        <I as IntoIterator>::Item: Serialize,
    {
        if is_byte_seq::<I>() {
            return self.serialize_bytes(&collect_bytes(iter)?);
        }
        if self.sets && is_set_type::<I>() {
            self.enter()?;
            let mut items = Vec::new();
            for x in iter {
                items.push(x.serialize(&mut *self)?);
            }
            self.leave();
            let node = if self.in_key > 0 { Node::FrozenSet(items) } else { Node::Set(items) };
            return Ok(self.push(node));
        }
        crate::bytes_seq::collect_as_seq(self, iter)
    }

    fn serialize_seq(self, len: Option<usize>) -> Result<SeqBuilder<'a>> {
        if self.in_key > 0 {
            return Err(unhashable_key("list"));
        }
        self.enter()?;
        Ok(SeqBuilder {
            b: self,
            items: Vec::with_capacity(len.unwrap_or(0).min(4096)),
            len,
            tuple: false,
            variant: None,
        })
    }

    fn serialize_tuple(self, len: usize) -> Result<SeqBuilder<'a>> {
        self.enter()?;
        Ok(SeqBuilder { b: self, items: Vec::with_capacity(len.min(4096)), len: Some(len), tuple: true, variant: None })
    }

    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<SeqBuilder<'a>> {
        if self.in_key > 0 {
            return Err(unhashable_key("dict"));
        }
        self.enter()?;
        Ok(SeqBuilder {
            b: self,
            items: Vec::with_capacity(len.min(4096)),
            len: Some(len),
            tuple: true,
            variant: Some(variant),
        })
    }

    fn serialize_map(self, len: Option<usize>) -> Result<MapBuilder<'a>> {
        if self.in_key > 0 {
            return Err(unhashable_key("dict"));
        }
        self.enter()?;
        Ok(MapBuilder { b: self, pairs: Vec::with_capacity(len.unwrap_or(0).min(4096)), key: None, len, variant: None })
    }

    fn serialize_struct(self, _name: &'static str, len: usize) -> Result<MapBuilder<'a>> {
        self.serialize_map(Some(len))
    }

    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<MapBuilder<'a>> {
        if self.in_key > 0 {
            return Err(unhashable_key("dict"));
        }
        self.enter()?;
        Ok(MapBuilder {
            b: self,
            pairs: Vec::with_capacity(len.min(4096)),
            key: None,
            len: Some(len),
            variant: Some(variant),
        })
    }
}

impl SeqBuilder<'_> {
    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        if let Some(len) = self.len
            && self.items.len() == len
        {
            let what = if self.tuple { "tuple items" } else { "elements" };
            return Err(wrong_len(what, len, len + 1));
        }
        let id = value.serialize(&mut *self.b)?;
        self.items.push(id);
        Ok(())
    }

    fn finish(self) -> Result<NodeId> {
        let SeqBuilder { b, items, len, tuple, variant } = self;
        if let Some(len) = len
            && items.len() != len
        {
            return Err(wrong_len(if tuple { "tuple items" } else { "elements" }, len, items.len()));
        }
        let id = match (tuple, items.is_empty()) {
            (true, true) => b.atom(EMPTY_TUPLE_ATOM, Node::Tuple(items)),
            (true, false) => b.push(Node::Tuple(items)),
            (false, _) => b.push(Node::List(items)),
        };
        b.leave();
        Ok(match variant {
            Some(name) => b.variant(name, id),
            None => id,
        })
    }
}

forward_compound!(seq SeqBuilder => NodeId: SerializeSeq, SerializeTuple, SerializeTupleStruct, SerializeTupleVariant);
forward_compound!(struct MapBuilder => NodeId: SerializeStruct, SerializeStructVariant);

impl MapBuilder<'_> {
    /// A struct field: its (shared) name node as the key, then the value.
    fn field<T: Serialize + ?Sized>(&mut self, name: &'static str, value: &T) -> Result<()> {
        self.check_room()?;
        let k = self.b.name(name);
        self.value(k, value)
    }

    fn check_room(&self) -> Result<()> {
        match self.len {
            Some(len) if self.pairs.len() == len => Err(wrong_len("entries", len, len + 1)),
            _ => Ok(()),
        }
    }

    fn value<T: Serialize + ?Sized>(&mut self, key: NodeId, value: &T) -> Result<()> {
        let v = value.serialize(&mut *self.b)?;
        self.pairs.push((key, v));
        Ok(())
    }

    fn finish(self) -> Result<NodeId> {
        let MapBuilder { b, pairs, key, len, variant } = self;
        if key.is_some() {
            return Err(Error::Serde("map key without a value".into()));
        }
        if let Some(len) = len
            && pairs.len() != len
        {
            return Err(wrong_len("entries", len, pairs.len()));
        }
        let id = b.push(Node::Dict(pairs));
        b.leave();
        Ok(match variant {
            Some(name) => b.variant(name, id),
            None => id,
        })
    }
}

impl ser::SerializeMap for MapBuilder<'_> {
    type Ok = NodeId;
    type Error = Error;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<()> {
        self.check_room()?;
        self.b.in_key += 1;
        let k = key.serialize(&mut *self.b);
        self.b.in_key -= 1;
        self.key = Some(k?);
        Ok(())
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        let k = self.key.take().ok_or_else(|| Error::Serde("map value without a key".into()))?;
        self.value(k, value)
    }

    fn end(self) -> Result<NodeId> {
        self.finish()
    }
}
