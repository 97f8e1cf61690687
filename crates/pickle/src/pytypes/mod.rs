//! Python's everyday types as Rust structs, read from and written to the value graph.
//!
//! Invariant: reading never executes anything and never panics. A helper recognizes only
//! the exact shapes CPython 3.9–3.13 writes for its type (a `REDUCE` of the type with
//! its arguments, or `NEWOBJ` + `BUILD` of its state) and checks every field; anything
//! else is an [`Error::PyType`] naming the type and what is wrong. Writing builds the
//! nodes CPython's `__reduce__` gives, so `pickle.loads` of [`crate::encode`]'s output
//! is an equal object.
//!
//! | Python | Rust |
//! |---|---|
//! | `datetime.date`, `time`, `datetime`, `timedelta`, `timezone` | [`Date`], [`Time`], [`DateTime`], [`TimeDelta`], [`TimeZone`] ([`TzInfo`] for a tzinfo) |
//! | `decimal.Decimal` | [`Decimal`] (its text) |
//! | `uuid.UUID` | [`Uuid`] (its 128-bit int) |
//! | `fractions.Fraction` | [`Fraction`] (numerator and denominator as [`Int`]) |
//! | `complex` | [`Complex`] |
//! | `collections.OrderedDict`, `deque`, `Counter`, `defaultdict` | [`OrderedDict`], [`Deque`], [`Counter`], [`DefaultDict`] (items as [`NodeId`]s of the value) |
//! | an `enum` member | [`EnumMember`] (class and value, or class and member name) |
//! | `pathlib.PurePosixPath`, `PosixPath`, `PureWindowsPath`, `WindowsPath` | [`PyPath`] |

mod collections;
mod datetime;
mod misc;
mod numbers;

pub use collections::{Counter, DefaultDict, Deque, OrderedDict};
pub use datetime::{Date, DateTime, Time, TimeDelta, TimeZone, TzInfo};
pub use misc::{EnumMember, EnumRef, PathFlavour, PyPath};
pub use numbers::{Complex, Decimal, Fraction, Uuid};

use crate::int::Int;
use crate::value::{Construct, Global, Node, NodeId, Object, ObjectOp, Value};
use crate::{Error, Result};

/// A Python type with a Rust counterpart: read from a node of a [`Value`], written as
/// new nodes into one.
///
/// ```
/// use pickleshelf_pickle::{self as pickle, pytypes::{Date, PyObject}};
/// // Python: pickle.dumps(datetime.date(2024, 1, 2), 4)
/// let v = pickle::decode(b"\x80\x04\x95 \x00\x00\x00\x00\x00\x00\x00\x8c\x08datetime\x94\x8c\x04date\x94\x93\x94C\x04\x07\xe8\x01\x02\x94\x85\x94R\x94.")?;
/// let date = Date::read(&v, v.root())?;
/// assert_eq!((date.year(), date.month(), date.day()), (2024, 1, 2));
/// assert_eq!(date.to_string(), "datetime.date(2024, 1, 2)");
/// # Ok::<(), pickleshelf_pickle::Error>(())
/// ```
pub trait PyObject: Sized {
    /// The Python type as `module.qualname`, as errors name it.
    const PYTHON_TYPE: &'static str;

    /// Reads the object at `id`.
    ///
    /// # Errors
    /// [`Error::PyType`] when the node is not this type as CPython writes it, or its
    /// state is malformed (naming the type and what is wrong).
    fn read(value: &Value, id: NodeId) -> Result<Self>;

    /// Adds the nodes that make this object to `value` and returns the object's id.
    /// Types that hold [`NodeId`]s (the collections, enum members) must be written into
    /// the value those ids belong to.
    fn write(&self, value: &mut Value) -> NodeId;
}

/// A [`PyObject`] that holds no [`NodeId`]s, and so is a whole pickle by itself.
pub trait PyAtom: PyObject {
    /// A value whose root is this object.
    fn to_value(&self) -> Value {
        let mut v = Value::new(Node::None);
        let id = self.write(&mut v);
        v.set_root(id);
        v
    }

    /// The pickle of this object at `protocol` (2–5).
    ///
    /// # Errors
    /// [`Error::Encode`] for an unsupported protocol.
    fn to_pickle(&self, protocol: u8) -> Result<Vec<u8>> {
        crate::encode(&self.to_value(), protocol)
    }

    /// Reads this object from pickle bytes.
    ///
    /// # Errors
    /// [`Error::Decode`] for bad bytes, [`Error::PyType`] when the pickle holds another
    /// type or a malformed one.
    fn from_pickle(bytes: &[u8]) -> Result<Self> {
        let v = crate::decode(bytes)?;
        Self::read(&v, v.root())
    }
}

/// Python's `repr` of the object at `id` when it is one of the types of this module that
/// print without their contents (the date and time types, `Decimal`, `UUID`, `Fraction`,
/// `complex`, paths), exactly as CPython prints it; `None` for anything else.
pub fn python_repr(value: &Value, id: NodeId) -> Option<String> {
    let (module, name) = value.object_type(id)?;
    match (module, name) {
        ("datetime", "date") => Date::read(value, id).ok().map(|x| x.to_string()),
        ("datetime", "time") => Time::read(value, id).ok().map(|x| x.to_string()),
        ("datetime", "datetime") => DateTime::read(value, id).ok().map(|x| x.to_string()),
        ("datetime", "timedelta") => TimeDelta::read(value, id).ok().map(|x| x.to_string()),
        ("datetime", "timezone") => TimeZone::read(value, id).ok().map(|x| x.to_string()),
        ("decimal", "Decimal") => Decimal::read(value, id).ok().map(|x| x.to_string()),
        ("uuid", "UUID") => Uuid::read(value, id).ok().map(|x| x.to_string()),
        ("fractions", "Fraction") => Fraction::read(value, id).ok().map(|x| x.to_string()),
        ("builtins", "complex") => Complex::read(value, id).ok().map(|x| x.to_string()),
        ("pathlib" | "pathlib._local", _) => PyPath::read(value, id).ok().map(|x| x.to_string()),
        _ => None,
    }
}

/// The text plain JSON writes for the object at `id` when it is one of the types of
/// this module that JSON shows as a string: ISO 8601 for the date and time types
/// (`datetime.isoformat()`), `str()` for `Decimal`, `UUID`, `Fraction`, `complex` and
/// paths. `None` for anything else.
pub fn plain_text(value: &Value, id: NodeId) -> Option<String> {
    let (module, name) = value.object_type(id)?;
    match (module, name) {
        ("datetime", "date") => Date::read(value, id).ok().map(|x| x.isoformat()),
        ("datetime", "time") => Time::read(value, id).ok().map(|x| x.isoformat()),
        ("datetime", "datetime") => DateTime::read(value, id).ok().map(|x| x.isoformat()),
        ("decimal", "Decimal") => Decimal::read(value, id).ok().map(|x| x.as_str().to_owned()),
        ("uuid", "UUID") => Uuid::read(value, id).ok().map(|x| x.hyphenated()),
        ("fractions", "Fraction") => Fraction::read(value, id).ok().map(|x| x.str()),
        ("builtins", "complex") => Complex::read(value, id).ok().map(|x| x.to_string()),
        ("pathlib" | "pathlib._local", _) => PyPath::read(value, id).ok().map(|x| x.as_string()),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------
// Reading helpers shared by the types
// ---------------------------------------------------------------------------------

/// An [`Error::PyType`] for `ty`.
pub(crate) fn bad(ty: &'static str, message: impl Into<String>) -> Error {
    Error::PyType { type_name: ty, message: message.into() }
}

/// What a node is, for error messages: its Python type.
pub(crate) fn describe(value: &Value, id: NodeId) -> String {
    match value.get(id) {
        Some(Node::Object(_)) | Some(Node::Global(_)) => match value.object_type(id) {
            Some((m, n)) => format!("{m}.{n}"),
            None => "an object".into(),
        },
        Some(node) => node.type_name().to_owned(),
        None => "an invalid node id".into(),
    }
}

/// The global at `id`, if it is one.
pub(crate) fn global_at(value: &Value, id: NodeId) -> Option<&Global> {
    match value.get(id)? {
        Node::Global(g) => Some(g),
        _ => None,
    }
}

/// The parts of a `REDUCE` call `module.name(*args)` or `NEWOBJ` of that class: the
/// arguments and the operations applied after. `modules` lists the accepted module
/// names (e.g. `pathlib` and `pathlib._local`), `names` the accepted type names.
pub(crate) struct Call<'v> {
    pub(crate) global: &'v Global,
    pub(crate) args: &'v [NodeId],
    pub(crate) ops: &'v [ObjectOp],
    pub(crate) newobj: bool,
}

/// The object at `id` as a call of a global whose module and name satisfy `accept`.
pub(crate) fn call<'v>(
    value: &'v Value,
    id: NodeId,
    ty: &'static str,
    accept: impl Fn(&str, &str) -> bool,
) -> Result<Call<'v>> {
    let wrong = || bad(ty, format!("expected a {ty} object, found {}", describe(value, id)));
    let Some(Node::Object(o)) = value.get(id) else { return Err(wrong()) };
    let Object { construct, ops } = &**o;
    let (callable, args, newobj) = match construct {
        Construct::Reduce { callable, args } => (*callable, *args, false),
        Construct::NewObj { cls, args } => (*cls, *args, true),
        _ => return Err(wrong()),
    };
    let global = global_at(value, callable).filter(|g| accept(&g.module, &g.name)).ok_or_else(wrong)?;
    let args = match value.get(args) {
        Some(Node::Tuple(items)) => items.as_slice(),
        _ => return Err(bad(ty, "the call's arguments are not a tuple")),
    };
    Ok(Call { global, args, ops, newobj })
}

/// Refuses operations after construction (for types whose pickles have none).
pub(crate) fn no_ops(ty: &'static str, ops: &[ObjectOp]) -> Result<()> {
    if ops.is_empty() { Ok(()) } else { Err(bad(ty, "unexpected state or items after the call")) }
}

/// The bytes of a `bytes` node (what `_codecs.encode(text, 'latin1')` became too).
pub(crate) fn bytes_arg<'v>(value: &'v Value, id: NodeId, ty: &'static str, what: &str) -> Result<&'v [u8]> {
    match value.get(id) {
        Some(Node::Bytes(b)) => Ok(b),
        _ => Err(bad(ty, format!("{what} is {}, not bytes", describe(value, id)))),
    }
}

/// The text of a `str` node.
pub(crate) fn str_arg<'v>(value: &'v Value, id: NodeId, ty: &'static str, what: &str) -> Result<&'v str> {
    match value.get(id) {
        Some(Node::Str(s)) => s.as_str().ok_or_else(|| bad(ty, format!("{what} holds lone surrogates"))),
        _ => Err(bad(ty, format!("{what} is {}, not str", describe(value, id)))),
    }
}

/// An `int` node (a `bool` is refused: CPython never writes one here).
pub(crate) fn int_arg(value: &Value, id: NodeId, ty: &'static str, what: &str) -> Result<Int> {
    match value.get(id) {
        Some(Node::Int(i)) => Ok(Int::Small(*i)),
        Some(Node::BigInt(b)) => Ok(Int::Big((**b).clone())),
        _ => Err(bad(ty, format!("{what} is {}, not int", describe(value, id)))),
    }
}

/// An `int` node that fits in `i64`.
pub(crate) fn i64_arg(value: &Value, id: NodeId, ty: &'static str, what: &str) -> Result<i64> {
    match int_arg(value, id, ty, what)? {
        Int::Small(i) => Ok(i),
        Int::Big(_) => Err(bad(ty, format!("{what} is out of range"))),
    }
}

/// Pushes an int node.
pub(crate) fn push_int(value: &mut Value, i: &Int) -> NodeId {
    match i {
        Int::Small(v) => value.push(Node::Int(*v)),
        Int::Big(b) => value.push(Node::BigInt(Box::new(b.clone()))),
    }
}

/// Pushes a global.
pub(crate) fn push_global(value: &mut Value, module: &str, name: &str) -> NodeId {
    value.push(Node::Global(Box::new(Global { module: module.into(), name: name.into() })))
}

/// Pushes `module.name(*args)` as a `REDUCE`, with `ops` applied after.
pub(crate) fn push_reduce(
    value: &mut Value,
    module: &str,
    name: &str,
    args: Vec<NodeId>,
    ops: Vec<ObjectOp>,
) -> NodeId {
    let callable = push_global(value, module, name);
    push_call(value, callable, args, ops)
}

/// Pushes `callable(*args)` as a `REDUCE`, with `ops` applied after.
pub(crate) fn push_call(value: &mut Value, callable: NodeId, args: Vec<NodeId>, ops: Vec<ObjectOp>) -> NodeId {
    let args = value.push(Node::Tuple(args));
    value.push(Node::Object(Box::new(Object { construct: Construct::Reduce { callable, args }, ops })))
}
