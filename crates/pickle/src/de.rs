//! pickle → serde: any `T: Deserialize` from a decoded [`Value`] ([`from_value`]); the
//! mapping here is also the one [`crate::from_slice`] reads pickle bytes with.
//!
//! Invariant: deserialization terminates in time and stack bounded by the value's size,
//! whatever the graph: it nests at most `max_depth` containers deep (default
//! [`DEFAULT_MAX_DEPTH`], 128 like `serde_json`), a cycle is reported as an error instead
//! of being followed, and it visits at most `max(16 × value.len(), 1,000,000)` nodes, so
//! a graph that shares nodes heavily (60 nested levels of a tuple holding the previous
//! one twice is 2^60 leaves in 61 nodes) fails cleanly instead of expanding.
//!
//! # The mapping
//!
//! It is the inverse of the serializer ([`super::ser`]):
//!
//! | Rust (serde data model)            | Python (pickle)                                        |
//! |------------------------------------|--------------------------------------------------------|
//! | `bool`                             | `bool`                                                 |
//! | `i8`…`i64`, `u8`…`u64`             | `int`, range-checked                                   |
//! | `i128`, `u128`                     | `int` (beyond `i64` too), range-checked                |
//! | `f32`, `f64`                       | `float`; also an `int` the float type holds exactly    |
//! | `char`                             | `str` of one character                                 |
//! | `str`, `String`                    | `str` (a `str` holding lone surrogates is an error)    |
//! | bytes (`serde_bytes`)              | `bytes` or `bytearray`                                 |
//! | `Option`                           | `None` → `None`, anything else → `Some`                |
//! | `()`, unit struct                  | `None`                                                 |
//! | newtype struct                     | its content                                            |
//! | sequence (`Vec`, `HashSet`, …)     | `list`, `tuple`, `set`, `frozenset`; also `bytes` and `bytearray`, as ints (`Vec<u8>`) |
//! | tuple, tuple struct, array         | `tuple` or `list` of exactly that length               |
//! | map                                | `dict`                                                 |
//! | struct                             | `dict` with `str` keys (unknown keys go to the visitor)|
//! | enum unit variant                  | `str`: the variant's name                              |
//! | enum newtype/tuple/struct variant  | `{name: content}`, a one-entry `dict` (externally tagged, like `serde_json`) |
//!
//! Self-describing types (`deserialize_any`: untagged enums, `serde_json::Value`, …) see
//! `None` as unit, an `int` as `u64`/`i64` (or `u128`/`i128` when beyond 64 bits, an
//! error beyond 128), `bytes`/`bytearray` as bytes, the four sequence types as
//! sequences and `dict` as a map. Objects the codec keeps as data (class instances,
//! globals, persistent ids, out-of-band buffers, extensions) cannot become Rust values
//! and give an error naming their Python type; they can still be skipped (an unknown
//! struct field holding one is fine, as is [`serde::de::IgnoredAny`]). `str` is
//! borrowed from the value where the target type allows it ([`from_value_borrowed`]).
//!
//! The deserializer is human-readable (serde's default; the serializer must say the same), so types
//! such as `IpAddr` or `SystemTime` read the forms they write for text formats.
//!
//! Errors are [`crate::Error::Serde`] and end with where in the value they happened, as a
//! path from the root `$`: `int 300 is out of range for u8, at $['scores'][3]`; a dict
//! key that failed is shown as `{key 'name'}`.
//!
//! # From bytes, without a `Value`
//!
//! [`crate::from_slice`] gives what `from_value(&decode(bytes)?)` gives, value or error,
//! with the same mapping and limits, but for plain data it reads `T` straight from the
//! opcodes (the `direct` module), without building the graph: W1's records in about 0.6
//! of the time, a list of floats in the memory of the input and the output (not a
//! 32-byte node per float). Whatever it cannot stream — objects, shared or cyclic values,
//! protocol-0 text opcodes, … — and every error take `decode` + [`from_value`] from the
//! start, which is why errors are exactly those described here. `docs/PICKLE.md` has
//! the details.

use std::fmt;

use serde::de::{self, DeserializeSeed, Unexpected, Visitor};

use super::int::{BigInt, Int128, big_to_128, big_to_float_exact};
use super::repr::{float_repr, str_repr};
use super::value::{Node, NodeId, Value};
use crate::{Error, Result};

/// The default nesting limit of [`from_value`] and [`crate::from_slice`]: 128
/// containers, like `serde_json`.
pub const DEFAULT_MAX_DEPTH: usize = 128;

/// The smallest node budget: deserializing may visit `max(16 × value.len(), this)` nodes.
pub const MIN_NODE_BUDGET: usize = 1_000_000;

/// Deserializes any `T: DeserializeOwned` from a decoded [`Value`] (see the [module
/// docs](self) for the mapping), nesting at most [`DEFAULT_MAX_DEPTH`] containers.
///
/// ```
/// use pickleshelf_pickle::{decode, from_value};
/// #[derive(serde::Deserialize)]
/// struct Rec {
///     id: u32,
///     tags: Vec<String>,
/// }
/// // pickle.dumps({"id": 7, "tags": ["us"], "extra": None}, protocol=4)
/// let v = decode(b"\x80\x04\x95\x24\x00\x00\x00\x00\x00\x00\x00}\x94(\x8c\x02id\x94K\x07\x8c\x04tags\x94]\x94\x8c\x02us\x94a\x8c\x05extra\x94Nu.")?;
/// let rec: Rec = from_value(&v)?;
/// assert_eq!((rec.id, rec.tags), (7, vec!["us".to_string()]));
/// # Ok::<(), pickleshelf_pickle::Error>(())
/// ```
///
/// # Errors
/// [`crate::Error::Serde`] when the value does not fit `T`, nests deeper than the limit,
/// is cyclic where `T` would have to follow the cycle, or needs more than the node
/// budget (see the [module docs](self)).
pub fn from_value<T: serde::de::DeserializeOwned>(value: &Value) -> Result<T> {
    from_value_with(value, DEFAULT_MAX_DEPTH)
}

/// Like [`from_value`], but `T` may borrow from the value (`&str`, `&[u8]`).
///
/// ```
/// use pickleshelf_pickle::{decode, from_value_borrowed};
/// // pickle.dumps(("ab", b"c"), protocol=3)
/// let v = decode(b"\x80\x03X\x02\x00\x00\x00abq\x00C\x01cq\x01\x86q\x02.")?;
/// let (s, b): (&str, &[u8]) = from_value_borrowed(&v)?;
/// assert_eq!((s, b), ("ab", &b"c"[..]));
/// # Ok::<(), pickleshelf_pickle::Error>(())
/// ```
///
/// # Errors
/// As [`from_value`].
pub fn from_value_borrowed<'a, T: serde::Deserialize<'a>>(value: &'a Value) -> Result<T> {
    from_value_with(value, DEFAULT_MAX_DEPTH)
}

/// Like [`from_value_borrowed`], with another nesting limit: at most `max_depth`
/// containers (`list`, `tuple`, `set`, `frozenset`, `dict`) are entered one inside the
/// other.
///
/// Deserialization recurses once per level, so a very large limit can overflow the
/// thread's stack on a deeply nested value (each level takes a few hundred bytes of
/// stack, depending on `T`).
///
/// ```
/// use pickleshelf_pickle::{decode, from_value_with};
/// // pickle.dumps([[[1]]], protocol=2)
/// let v = decode(b"\x80\x02]q\x00]q\x01]q\x02K\x01aaa.")?;
/// let deep: Vec<Vec<Vec<u8>>> = from_value_with(&v, 3)?;
/// assert_eq!(deep, [[[1]]]);
/// let err = from_value_with::<Vec<Vec<Vec<u8>>>>(&v, 2).unwrap_err();
/// assert!(err.to_string().contains("nesting deeper than 2"));
/// # Ok::<(), pickleshelf_pickle::Error>(())
/// ```
///
/// # Errors
/// As [`from_value`].
pub fn from_value_with<'a, T: serde::Deserialize<'a>>(value: &'a Value, max_depth: usize) -> Result<T> {
    let budget = value.len().saturating_mul(16).max(MIN_NODE_BUDGET);
    let mut cx = Ctx { value, max_depth, budget, budget_total: budget, depth: 0 };
    T::deserialize(De { cx: &mut cx, id: value.root() }).map_err(DeError::into_crate)
}

// ----- errors -----

/// The error inside the deserializer: a message and the path to where it happened,
/// innermost segment first (filled in as the error travels up).
struct DeError(Box<ErrInner>);

struct ErrInner {
    msg: String,
    path: Vec<String>,
    /// For a nesting error: the container that was one too deep, and once it turned out
    /// to be one of the containers it is inside of (a cycle), the number of path
    /// segments of one turn of the cycle.
    too_deep: Option<(NodeId, Option<usize>)>,
}

impl DeError {
    fn new(msg: String) -> Self {
        DeError(Box::new(ErrInner { msg, path: Vec::new(), too_deep: None }))
    }

    fn too_deep(max_depth: usize, id: NodeId) -> Self {
        let mut e = DeError::new(format!("nesting deeper than {max_depth} containers (the depth limit)"));
        e.0.too_deep = Some((id, None));
        e
    }

    /// Notes that the error passed up through the container `id`. For a cycle, the path
    /// keeps one turn of it, from the outermost time the container was entered.
    fn passing(mut self, id: NodeId) -> Self {
        let inner = &mut *self.0;
        if let Some((deep, turn)) = &mut inner.too_deep
            && *deep == id
        {
            match turn {
                None => {
                    *turn = Some(inner.path.len());
                    inner.msg =
                        "the value is cyclic (a container contains itself) and the target type would follow the cycle"
                            .into();
                }
                Some(n) => inner.path.truncate(*n),
            }
        }
        self
    }

    fn at(mut self, segment: impl FnOnce() -> String) -> Self {
        self.0.path.push(segment());
        self
    }

    fn into_crate(self) -> Error {
        let mut path = String::from("$");
        for seg in self.0.path.iter().rev() {
            path.push_str(seg);
        }
        Error::Serde(format!("{}, at {path}", self.0.msg))
    }
}

impl fmt::Debug for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.msg)
    }
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.msg)
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError::new(msg.to_string())
    }
}

type R<T> = std::result::Result<T, DeError>;

/// How a key appears in an error path: `['name']`, `[3]`, `[<tuple>]`.
fn key_segment(value: &Value, key: NodeId) -> String {
    match value.get(key) {
        Some(Node::Str(s)) => {
            let mut r = str_repr(s);
            if r.chars().count() > 60 {
                r = r.chars().take(57).collect::<String>() + "...";
            }
            format!("[{r}]")
        }
        Some(Node::Int(i)) => format!("[{i}]"),
        Some(Node::BigInt(b)) => {
            let text = big_text(b);
            match text.strip_prefix("int ") {
                Some(digits) => format!("[{digits}]"),
                None => format!("[<{text}>]"),
            }
        }
        Some(Node::Bool(b)) => format!("[{}]", if *b { "True" } else { "False" }),
        Some(Node::None) => "[None]".into(),
        Some(Node::Float(x)) => format!("[{}]", float_repr(*x)),
        Some(other) => format!("[<{}>]", other.type_name()),
        None => "[<invalid id>]".into(),
    }
}

/// A big int for messages: `int 123...` up to 4,096 bits, else `a positive (negative)
/// int of N bits` (the decimal conversion is quadratic).
fn big_text(b: &BigInt) -> String {
    if b.bit_length() <= 4096 {
        format!("int {}", b.to_decimal())
    } else {
        format!("a {} int of {} bits", if b.is_negative() { "negative" } else { "positive" }, b.bit_length())
    }
}

fn out_of_range(what: &str, ty: &str) -> DeError {
    DeError::new(format!("{what} is out of range for {ty}"))
}

/// What serde's messages call a node ("invalid type: {this}, expected ...").
fn unexpected(node: &Node) -> Unexpected<'_> {
    match node {
        Node::None => Unexpected::Other("None"),
        Node::Bool(b) => Unexpected::Bool(*b),
        Node::Int(i) => Unexpected::Signed(*i),
        Node::Float(x) => Unexpected::Float(*x),
        Node::Str(s) => match s.as_str() {
            Some(t) => Unexpected::Str(t),
            None => Unexpected::Other("str"),
        },
        Node::Bytes(b) => Unexpected::Bytes(b),
        Node::BigInt(_) => Unexpected::Other("int"),
        Node::ByteArray(_) => Unexpected::Other("bytearray"),
        Node::List(_) => Unexpected::Other("list"),
        Node::Tuple(_) => Unexpected::Other("tuple"),
        Node::Dict(_) => Unexpected::Other("dict"),
        Node::Set(_) => Unexpected::Other("set"),
        Node::FrozenSet(_) => Unexpected::Other("frozenset"),
        Node::Global(_) | Node::Object(_) => Unexpected::Other("Python object"),
        Node::PersistentId(_) => Unexpected::Other("persistent id"),
        Node::Buffer { .. } => Unexpected::Other("out-of-band buffer"),
        Node::Extension(_) => Unexpected::Other("extension"),
    }
}

// ----- the deserializer -----

/// State shared by the whole deserialization.
struct Ctx<'a> {
    value: &'a Value,
    max_depth: usize,
    /// Nodes that may still be visited.
    budget: usize,
    budget_total: usize,
    /// Containers being deserialized, one inside the other.
    depth: usize,
}

/// A cursor on one node: the `serde::Deserializer`.
struct De<'c, 'a> {
    cx: &'c mut Ctx<'a>,
    id: NodeId,
}

impl<'a> De<'_, 'a> {
    /// The node, without counting a visit.
    #[inline]
    fn peek(&self) -> R<&'a Node> {
        let value: &'a Value = self.cx.value;
        match value.get(self.id) {
            Some(node) => Ok(node),
            None => Err(self.dangling()),
        }
    }

    /// The node, counting a visit against the budget.
    #[inline]
    fn node(&mut self) -> R<&'a Node> {
        if self.cx.budget == 0 {
            return Err(self.over_budget());
        }
        self.cx.budget -= 1;
        self.peek()
    }

    #[cold]
    fn dangling(&self) -> DeError {
        DeError::new(format!("node id {} is outside the value's {} nodes", self.id.index(), self.cx.value.len()))
    }

    #[cold]
    fn over_budget(&self) -> DeError {
        DeError::new(format!(
            "more than {} nodes visited: the value shares nodes so heavily that it expands beyond the node budget \
             (max(16 × its {} nodes, {MIN_NODE_BUDGET}))",
            self.cx.budget_total,
            self.cx.value.len()
        ))
    }

    /// The text of a Python object that reads as a string (a `datetime`, `Decimal`,
    /// `UUID`, ...: [`crate::pytypes::plain_text`]), counting the visit; `None` for any
    /// other node.
    fn object_text(&mut self) -> R<Option<String>> {
        if !matches!(self.peek()?, Node::Object(_)) {
            return Ok(None);
        }
        match crate::pytypes::plain_text(self.cx.value, self.id) {
            Some(text) => {
                self.node()?;
                Ok(Some(text))
            }
            None => Ok(None),
        }
    }

    /// The error for a node that the visitor does not take.
    fn mismatch(&self, node: &'a Node, exp: &dyn de::Expected) -> DeError {
        match node {
            Node::Global(_) | Node::Object(_) | Node::PersistentId(_) | Node::Buffer { .. } | Node::Extension(_) => {
                let what = match self.cx.value.object_type(self.id) {
                    Some((module, name)) => format!("a Python object of type {module}.{name}"),
                    None => format!("a Python {}", node.type_name()),
                };
                DeError::new(format!("cannot deserialize {what} into a Rust value (expected {exp})"))
            }
            _ => de::Error::invalid_type(unexpected(node), exp),
        }
    }

    /// Enters a container: checks the nesting limit.
    fn enter(&mut self) -> R<()> {
        if self.cx.depth >= self.cx.max_depth {
            return Err(DeError::too_deep(self.cx.max_depth, self.id));
        }
        self.cx.depth += 1;
        Ok(())
    }

    /// Leaves the container entered last; on the way up, an error from too deep tells
    /// whether this container was the one it tried to enter again (a cycle).
    fn leave<T>(&mut self, out: R<T>) -> R<T> {
        self.cx.depth -= 1;
        out.map_err(|e| e.passing(self.id))
    }

    fn visit_seq<V: Visitor<'a>>(mut self, items: &'a [NodeId], visitor: V) -> R<V::Value> {
        self.enter()?;
        let mut seq = Seq { cx: &mut *self.cx, items: items.iter(), index: 0 };
        let out = visitor.visit_seq(&mut seq);
        let left = seq.items.len();
        let out = self.leave(out)?;
        if left > 0 {
            let read = format!("{} elements in sequence", items.len() - left);
            return Err(de::Error::invalid_length(items.len(), &read.as_str()));
        }
        Ok(out)
    }

    fn visit_map<V: Visitor<'a>>(mut self, entries: &'a [(NodeId, NodeId)], visitor: V) -> R<V::Value> {
        self.enter()?;
        let mut map = Map { cx: &mut *self.cx, entries: entries.iter(), pending: None };
        let out = visitor.visit_map(&mut map);
        let left = map.entries.len();
        let out = self.leave(out)?;
        if left > 0 {
            let read = format!("{} entries in dict", entries.len() - left);
            return Err(de::Error::invalid_length(entries.len(), &read.as_str()));
        }
        Ok(out)
    }
}

fn int_text(node: &Node) -> String {
    match node {
        Node::Int(i) => format!("int {i}"),
        Node::BigInt(b) => big_text(b),
        _ => String::new(),
    }
}

macro_rules! de_int {
    ($($method:ident $ty:ident $visit:ident;)*) => {$(
        fn $method<V: Visitor<'a>>(mut self, visitor: V) -> R<V::Value> {
            let node = self.node()?;
            let wide = match node {
                Node::Int(i) => {
                    return match $ty::try_from(*i) {
                        Ok(v) => visitor.$visit(v),
                        Err(_) => Err(out_of_range(&format!("int {i}"), stringify!($ty))),
                    };
                }
                Node::BigInt(b) => big_to_128(b),
                _ => return Err(self.mismatch(node, &visitor)),
            };
            let fits = match wide {
                Some(Int128::Signed(x)) => $ty::try_from(x).ok(),
                Some(Int128::Unsigned(x)) => $ty::try_from(x).ok(),
                None => None,
            };
            match fits {
                Some(x) => visitor.$visit(x),
                None => Err(out_of_range(&int_text(node), stringify!($ty))),
            }
        }
    )*};
}

impl<'a> de::Deserializer<'a> for De<'_, 'a> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'a>>(mut self, visitor: V) -> R<V::Value> {
        if let Some(text) = self.object_text()? {
            return visitor.visit_string(text);
        }
        let node = self.node()?;
        match node {
            Node::None => visitor.visit_unit(),
            Node::Bool(b) => visitor.visit_bool(*b),
            Node::Int(i) => match u64::try_from(*i) {
                Ok(u) => visitor.visit_u64(u),
                Err(_) => visitor.visit_i64(*i),
            },
            Node::BigInt(b) => match big_to_128(b) {
                Some(Int128::Signed(x)) => match u64::try_from(x) {
                    Ok(u) => visitor.visit_u64(u),
                    Err(_) => visitor.visit_i128(x),
                },
                Some(Int128::Unsigned(x)) => visitor.visit_u128(x),
                None => Err(DeError::new(format!(
                    "{} does not fit in 128 bits (expected {})",
                    big_text(b),
                    &visitor as &dyn de::Expected
                ))),
            },
            Node::Float(x) => visitor.visit_f64(*x),
            Node::Str(_) => self.deserialize_str(visitor),
            Node::Bytes(b) | Node::ByteArray(b) => visitor.visit_borrowed_bytes(b),
            Node::List(items) | Node::Tuple(items) | Node::Set(items) | Node::FrozenSet(items) => {
                self.visit_seq(items, visitor)
            }
            Node::Dict(entries) => self.visit_map(entries, visitor),
            _ => Err(self.mismatch(node, &visitor)),
        }
    }

    fn deserialize_bool<V: Visitor<'a>>(mut self, visitor: V) -> R<V::Value> {
        match self.node()? {
            Node::Bool(b) => visitor.visit_bool(*b),
            node => Err(self.mismatch(node, &visitor)),
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

    fn deserialize_f32<V: Visitor<'a>>(mut self, visitor: V) -> R<V::Value> {
        match self.node()? {
            Node::Float(x) => visitor.visit_f64(*x),
            Node::Int(i) => {
                let f = *i as f32;
                if f as i128 == i128::from(*i) {
                    visitor.visit_f32(f)
                } else {
                    Err(DeError::new(format!("int {i} cannot be represented exactly as f32")))
                }
            }
            Node::BigInt(b) => match big_to_float_exact(b, 24, 128) {
                Some(x) => visitor.visit_f32(x as f32),
                None => Err(DeError::new(format!("{} cannot be represented exactly as f32", big_text(b)))),
            },
            node => Err(self.mismatch(node, &visitor)),
        }
    }

    fn deserialize_f64<V: Visitor<'a>>(mut self, visitor: V) -> R<V::Value> {
        match self.node()? {
            Node::Float(x) => visitor.visit_f64(*x),
            Node::Int(i) => {
                let f = *i as f64;
                if f as i128 == i128::from(*i) {
                    visitor.visit_f64(f)
                } else {
                    Err(DeError::new(format!("int {i} cannot be represented exactly as f64")))
                }
            }
            Node::BigInt(b) => match big_to_float_exact(b, 53, 1024) {
                Some(x) => visitor.visit_f64(x),
                None => Err(DeError::new(format!("{} cannot be represented exactly as f64", big_text(b)))),
            },
            node => Err(self.mismatch(node, &visitor)),
        }
    }

    fn deserialize_char<V: Visitor<'a>>(self, visitor: V) -> R<V::Value> {
        // serde's char visitor takes a one-character str and rejects the rest.
        self.deserialize_str(visitor)
    }

    fn deserialize_str<V: Visitor<'a>>(mut self, visitor: V) -> R<V::Value> {
        if let Some(text) = self.object_text()? {
            return visitor.visit_string(text);
        }
        match self.node()? {
            Node::Str(s) => match s.as_str() {
                Some(t) => visitor.visit_borrowed_str(t),
                None => {
                    let mut r = str_repr(s);
                    if r.chars().count() > 80 {
                        r = r.chars().take(77).collect::<String>() + "...";
                    }
                    Err(DeError::new(format!("str {r} holds lone surrogates, which a Rust string cannot hold")))
                }
            },
            node => Err(self.mismatch(node, &visitor)),
        }
    }

    fn deserialize_string<V: Visitor<'a>>(self, visitor: V) -> R<V::Value> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'a>>(self, visitor: V) -> R<V::Value> {
        match self.peek()? {
            Node::Bytes(b) | Node::ByteArray(b) => {
                let mut this = self;
                this.node()?;
                visitor.visit_borrowed_bytes(b)
            }
            // Byte-buffer visitors also take a sequence of ints or a str.
            _ => self.deserialize_any(visitor),
        }
    }

    fn deserialize_byte_buf<V: Visitor<'a>>(self, visitor: V) -> R<V::Value> {
        self.deserialize_bytes(visitor)
    }

    fn deserialize_option<V: Visitor<'a>>(mut self, visitor: V) -> R<V::Value> {
        match self.peek()? {
            Node::None => {
                self.node()?;
                visitor.visit_none()
            }
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_unit<V: Visitor<'a>>(mut self, visitor: V) -> R<V::Value> {
        match self.node()? {
            Node::None => visitor.visit_unit(),
            node => Err(self.mismatch(node, &visitor)),
        }
    }

    fn deserialize_unit_struct<V: Visitor<'a>>(self, _name: &'static str, visitor: V) -> R<V::Value> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'a>>(mut self, name: &'static str, visitor: V) -> R<V::Value> {
        // An adapter of `serde_types` asks for a Python object's wire text.
        if let Some(kind) = crate::serde_types::Kind::from_newtype_name(name)
            && let Node::Object(_) = self.peek()?
        {
            self.node()?;
            let text =
                crate::serde_types::wire_text(kind, self.cx.value, self.id).map_err(|e| DeError::new(e.to_string()))?;
            return visitor.visit_newtype_struct(de::value::StringDeserializer::<DeError>::new(text));
        }
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'a>>(mut self, visitor: V) -> R<V::Value> {
        match self.node()? {
            Node::List(items) | Node::Tuple(items) | Node::Set(items) | Node::FrozenSet(items) => {
                self.visit_seq(items, visitor)
            }
            // `Vec<u8>` (what `to_vec` writes as bytes) reads bytes as a sequence of ints.
            Node::Bytes(b) | Node::ByteArray(b) => {
                visitor.visit_seq(de::value::SeqDeserializer::<_, DeError>::new(b.iter().copied()))
            }
            node => Err(self.mismatch(node, &visitor)),
        }
    }

    fn deserialize_tuple<V: Visitor<'a>>(mut self, len: usize, visitor: V) -> R<V::Value> {
        match self.node()? {
            Node::List(items) | Node::Tuple(items) => {
                if items.len() != len {
                    return Err(de::Error::invalid_length(items.len(), &visitor));
                }
                self.visit_seq(items, visitor)
            }
            node => Err(self.mismatch(node, &visitor)),
        }
    }

    fn deserialize_tuple_struct<V: Visitor<'a>>(self, _name: &'static str, len: usize, visitor: V) -> R<V::Value> {
        self.deserialize_tuple(len, visitor)
    }

    fn deserialize_map<V: Visitor<'a>>(mut self, visitor: V) -> R<V::Value> {
        match self.node()? {
            Node::Dict(entries) => self.visit_map(entries, visitor),
            node => Err(self.mismatch(node, &visitor)),
        }
    }

    fn deserialize_struct<V: Visitor<'a>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> R<V::Value> {
        // Keys go through `deserialize_identifier`, which takes only a str.
        self.deserialize_map(visitor)
    }

    fn deserialize_enum<V: Visitor<'a>>(
        mut self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> R<V::Value> {
        // A bare name is counted as a visit when it is read as the identifier.
        match self.peek()? {
            Node::Str(_) => visitor.visit_enum(Enum { cx: self.cx, variant: self.id, content: None }),
            Node::Dict(entries) => {
                self.node()?;
                let &[(name, content)] = entries.as_slice() else {
                    return Err(DeError::new(format!(
                        "expected a str or a dict of one entry for {}, found a dict of {} entries",
                        &visitor as &dyn de::Expected,
                        entries.len()
                    )));
                };
                self.enter()?;
                let out = visitor.visit_enum(Enum { cx: &mut *self.cx, variant: name, content: Some(content) });
                self.leave(out)
            }
            node => {
                self.node()?;
                Err(self.mismatch(node, &visitor))
            }
        }
    }

    fn deserialize_identifier<V: Visitor<'a>>(self, visitor: V) -> R<V::Value> {
        self.deserialize_str(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'a>>(mut self, visitor: V) -> R<V::Value> {
        // Nothing needs to be walked: skipping is constant time, whatever the node.
        self.node()?;
        visitor.visit_unit()
    }
}

/// The items of a `list`, `tuple`, `set` or `frozenset`.
struct Seq<'c, 'a> {
    cx: &'c mut Ctx<'a>,
    items: std::slice::Iter<'a, NodeId>,
    index: usize,
}

impl<'a> de::SeqAccess<'a> for Seq<'_, 'a> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'a>>(&mut self, seed: T) -> R<Option<T::Value>> {
        let Some(&id) = self.items.next() else {
            return Ok(None);
        };
        let index = self.index;
        self.index += 1;
        match seed.deserialize(De { cx: &mut *self.cx, id }) {
            Ok(v) => Ok(Some(v)),
            Err(e) => Err(e.at(|| format!("[{index}]"))),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

/// The entries of a `dict`.
struct Map<'c, 'a> {
    cx: &'c mut Ctx<'a>,
    entries: std::slice::Iter<'a, (NodeId, NodeId)>,
    /// The entry whose key was just read.
    pending: Option<(NodeId, NodeId)>,
}

impl<'a> de::MapAccess<'a> for Map<'_, 'a> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'a>>(&mut self, seed: K) -> R<Option<K::Value>> {
        let Some(&(key, val)) = self.entries.next() else {
            return Ok(None);
        };
        self.pending = Some((key, val));
        let value = self.cx.value;
        match seed.deserialize(De { cx: &mut *self.cx, id: key }) {
            Ok(k) => Ok(Some(k)),
            Err(e) => Err(e.at(|| format!("{{key {}}}", key_segment(value, key)))),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'a>>(&mut self, seed: V) -> R<V::Value> {
        let Some((key, val)) = self.pending.take() else {
            return Err(de::Error::custom("a dict value was asked for before its key"));
        };
        let value = self.cx.value;
        seed.deserialize(De { cx: &mut *self.cx, id: val }).map_err(|e| e.at(|| key_segment(value, key)))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}

/// An enum: a variant name, and its content for a `{name: content}` dict.
struct Enum<'c, 'a> {
    cx: &'c mut Ctx<'a>,
    variant: NodeId,
    content: Option<NodeId>,
}

impl<'c, 'a> de::EnumAccess<'a> for Enum<'c, 'a> {
    type Error = DeError;
    type Variant = Variant<'c, 'a>;

    fn variant_seed<T: DeserializeSeed<'a>>(self, seed: T) -> R<(T::Value, Self::Variant)> {
        let value = self.cx.value;
        let name = self.variant;
        let v = seed.deserialize(De { cx: &mut *self.cx, id: name }).map_err(|e| {
            if self.content.is_some() { e.at(|| format!("{{key {}}}", key_segment(value, name))) } else { e }
        })?;
        Ok((v, Variant { cx: self.cx, name, content: self.content }))
    }
}

struct Variant<'c, 'a> {
    cx: &'c mut Ctx<'a>,
    name: NodeId,
    content: Option<NodeId>,
}

impl<'a> Variant<'_, 'a> {
    /// The content of a `{name: content}` variant, or the error for a bare name.
    fn content(&self, exp: &'static str) -> R<NodeId> {
        self.content.ok_or_else(|| de::Error::invalid_type(Unexpected::UnitVariant, &exp))
    }

    fn segment(&self) -> impl FnOnce() -> String + 'a {
        let (value, name) = (self.cx.value, self.name);
        move || key_segment(value, name)
    }
}

impl<'a> de::VariantAccess<'a> for Variant<'_, 'a> {
    type Error = DeError;

    fn unit_variant(self) -> R<()> {
        match self.content {
            None => Ok(()),
            Some(id) => {
                let seg = self.segment();
                de::Deserialize::deserialize(De { cx: self.cx, id }).map_err(|e: DeError| e.at(seg))
            }
        }
    }

    fn newtype_variant_seed<T: DeserializeSeed<'a>>(self, seed: T) -> R<T::Value> {
        let id = self.content("newtype variant")?;
        let seg = self.segment();
        seed.deserialize(De { cx: self.cx, id }).map_err(|e| e.at(seg))
    }

    fn tuple_variant<V: Visitor<'a>>(self, len: usize, visitor: V) -> R<V::Value> {
        let id = self.content("tuple variant")?;
        let seg = self.segment();
        de::Deserializer::deserialize_tuple(De { cx: self.cx, id }, len, visitor).map_err(|e| e.at(seg))
    }

    fn struct_variant<V: Visitor<'a>>(self, fields: &'static [&'static str], visitor: V) -> R<V::Value> {
        let id = self.content("struct variant")?;
        let seg = self.segment();
        de::Deserializer::deserialize_struct(De { cx: self.cx, id }, "", fields, visitor).map_err(|e| e.at(seg))
    }
}
