//! The decoded value: a graph of Python objects in an arena.
//!
//! Invariant: every [`NodeId`] stored inside a node of a [`Value`] indexes a node of the
//! same value (the decoder only produces such graphs; [`Value::validate`] checks graphs
//! built by hand). Shared references are two ids pointing at one node, and cycles are
//! ids pointing back up, so identity survives and memory stays linear in the input.
//! Dropping a value frees one `Vec` — no recursion, whatever the nesting depth.

use std::collections::HashMap;

use super::int::BigInt;

/// Index of a node inside a [`Value`].
#[derive(Copy, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct NodeId(pub(crate) u32);

impl NodeId {
    /// The position of the node in [`Value::nodes`].
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// A Python `str`: UTF-8 text, or text holding lone surrogates.
///
/// Python strings may contain unpaired surrogate code points, which UTF-8 cannot carry.
/// Pickle writes strings as UTF-8 with CPython's `surrogatepass` error handler (each
/// surrogate as the 3 bytes `ED xx xx`); a `PyStr` keeps exactly those bytes when the
/// text holds surrogates, and UTF-8 text otherwise. Text of up to 29 bytes (dict keys,
/// names, tags: most strs of most pickles) is stored inline, without an allocation,
/// which keeps a [`Node`] at 32 bytes.
#[derive(Clone)]
pub struct PyStr(StrRepr);

/// UTF-8 text of at most this many bytes is stored inline.
const INLINE: usize = 29;
pub(crate) const INLINE_STR: usize = INLINE;

/// Invariant: UTF-8 text is `Inline` exactly when it has at most [`INLINE`] bytes;
/// `Surrogates` holds bytes that are not UTF-8.
#[derive(Clone)]
enum StrRepr {
    /// UTF-8 text in `buf[off..off + len]`. The other bytes mean nothing: the decoder
    /// copies a whole window of the pickle around the text.
    Inline {
        len: u8,
        off: u8,
        buf: [u8; INLINE],
    },
    Utf8(String),
    Surrogates(Box<[u8]>),
}

impl PyStr {
    /// Text that is known to be UTF-8.
    #[inline]
    fn utf8(s: &str) -> PyStr {
        let b = s.as_bytes();
        if b.len() <= INLINE {
            let mut buf = [0u8; INLINE];
            buf[..b.len()].copy_from_slice(b);
            PyStr(StrRepr::Inline { len: b.len() as u8, off: 0, buf })
        } else {
            PyStr(StrRepr::Utf8(s.to_owned()))
        }
    }

    /// The empty str, stored inline: a node the decoder then fills in place with
    /// [`PyStr::set_utf8_window`].
    #[inline(always)]
    pub(crate) fn empty_inline() -> PyStr {
        PyStr(StrRepr::Inline { len: 0, off: 0, buf: [0; INLINE] })
    }

    /// Makes this the short text `window[off..off + len]`, which is UTF-8 (the caller
    /// checked it; were it not, `as_str` would say `None`, as for surrogates). The
    /// window is copied straight from the caller's memory into this str.
    #[inline(always)]
    pub(crate) fn set_utf8_window(&mut self, window: &[u8; INLINE], off: usize, len: usize) {
        debug_assert!(off + len <= INLINE && std::str::from_utf8(&window[off..off + len]).is_ok());
        if !matches!(self.0, StrRepr::Inline { .. }) {
            *self = PyStr::empty_inline();
        }
        if let StrRepr::Inline { len: l, off: o, buf } = &mut self.0 {
            buf.copy_from_slice(window);
            (*l, *o) = (len as u8, off as u8);
        }
    }

    /// Builds a `PyStr` from bytes in CPython's `utf-8`/`surrogatepass` encoding; `None`
    /// when the bytes are not valid in that encoding.
    #[inline]
    pub fn from_surrogatepass(bytes: &[u8]) -> Option<PyStr> {
        match std::str::from_utf8(bytes) {
            Ok(s) => Some(PyStr::utf8(s)),
            Err(_) => {
                if valid_surrogatepass(bytes) {
                    Some(PyStr(StrRepr::Surrogates(bytes.into())))
                } else {
                    None
                }
            }
        }
    }

    /// Builds a `PyStr` from owned bytes in the `surrogatepass` encoding, without copying
    /// valid UTF-8.
    pub fn from_surrogatepass_vec(bytes: Vec<u8>) -> Option<PyStr> {
        match String::from_utf8(bytes) {
            Ok(s) => Some(PyStr::from(s)),
            Err(e) => {
                let bytes = e.into_bytes();
                if valid_surrogatepass(&bytes) {
                    Some(PyStr(StrRepr::Surrogates(bytes.into_boxed_slice())))
                } else {
                    None
                }
            }
        }
    }

    /// Builds a `PyStr` from a sequence of code points (surrogates allowed); `None` when a
    /// value is above U+10FFFF.
    pub fn from_code_points(points: &[u32]) -> Option<PyStr> {
        let mut out = Vec::with_capacity(points.len());
        for &cp in points {
            if cp > 0x10FFFF {
                return None;
            }
            push_code_point(&mut out, cp);
        }
        PyStr::from_surrogatepass_vec(out)
    }

    /// The text, when it holds no lone surrogates.
    #[inline]
    pub fn as_str(&self) -> Option<&str> {
        match &self.0 {
            // Validated when made; checked again here because this crate has no unsafe
            // code. That costs about 10 ns a call: 13% of `from_slice` of a W1 record,
            // which reads 9 strs.
            StrRepr::Inline { len, off, buf } => std::str::from_utf8(inline_text(*len, *off, buf)).ok(),
            StrRepr::Utf8(s) => Some(s),
            StrRepr::Surrogates(_) => None,
        }
    }

    /// The bytes pickle stores: UTF-8, with surrogates as CPython's `surrogatepass` writes them.
    #[inline]
    pub fn as_surrogatepass(&self) -> &[u8] {
        match &self.0 {
            StrRepr::Inline { len, off, buf } => inline_text(*len, *off, buf),
            StrRepr::Utf8(s) => s.as_bytes(),
            StrRepr::Surrogates(b) => b,
        }
    }

    /// True when the text holds lone surrogates (and so is not valid Unicode text).
    pub fn has_surrogates(&self) -> bool {
        matches!(self.0, StrRepr::Surrogates(_))
    }

    /// The code points of the text (surrogates included).
    pub fn code_points(&self) -> impl Iterator<Item = u32> + '_ {
        CodePoints { bytes: self.as_surrogatepass(), pos: 0 }
    }

    /// The text, with each lone surrogate replaced by U+FFFD.
    pub fn to_string_lossy(&self) -> std::borrow::Cow<'_, str> {
        match self.as_str() {
            Some(s) => std::borrow::Cow::Borrowed(s),
            None => {
                std::borrow::Cow::Owned(self.code_points().map(|c| char::from_u32(c).unwrap_or('\u{FFFD}')).collect())
            }
        }
    }
}

#[inline(always)]
fn inline_text(len: u8, off: u8, buf: &[u8; INLINE]) -> &[u8] {
    &buf[usize::from(off)..usize::from(off) + usize::from(len)]
}

impl From<String> for PyStr {
    fn from(s: String) -> Self {
        if s.len() <= INLINE { PyStr::utf8(&s) } else { PyStr(StrRepr::Utf8(s)) }
    }
}

impl From<&str> for PyStr {
    fn from(s: &str) -> Self {
        PyStr::utf8(s)
    }
}

impl PartialEq for PyStr {
    fn eq(&self, other: &PyStr) -> bool {
        // The bytes say whether the text holds surrogates (they are UTF-8 exactly when
        // it does not), so they decide equality.
        self.as_surrogatepass() == other.as_surrogatepass()
    }
}

impl Eq for PyStr {}

impl std::hash::Hash for PyStr {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_surrogatepass().hash(state);
    }
}

impl std::fmt::Debug for PyStr {
    /// `PyStr(Utf8("text"))`, or `PyStr(Surrogates([bytes]))` for text with surrogates
    /// (however the text is stored).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        struct Utf8<'a>(&'a str);
        impl std::fmt::Debug for Utf8<'_> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_tuple("Utf8").field(&self.0).finish()
            }
        }
        struct Surrogates<'a>(&'a [u8]);
        impl std::fmt::Debug for Surrogates<'_> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_tuple("Surrogates").field(&self.0).finish()
            }
        }
        match self.as_str() {
            Some(s) => f.debug_tuple("PyStr").field(&Utf8(s)).finish(),
            None => f.debug_tuple("PyStr").field(&Surrogates(self.as_surrogatepass())).finish(),
        }
    }
}

/// Appends a code point (surrogates allowed) in the `surrogatepass` encoding.
pub(crate) fn push_code_point(out: &mut Vec<u8>, cp: u32) {
    match cp {
        0..=0x7F => out.push(cp as u8),
        0x80..=0x7FF => out.extend_from_slice(&[0xC0 | (cp >> 6) as u8, 0x80 | (cp & 0x3F) as u8]),
        0x800..=0xFFFF => {
            out.extend_from_slice(&[0xE0 | (cp >> 12) as u8, 0x80 | ((cp >> 6) & 0x3F) as u8, 0x80 | (cp & 0x3F) as u8])
        }
        _ => out.extend_from_slice(&[
            0xF0 | (cp >> 18) as u8,
            0x80 | ((cp >> 12) & 0x3F) as u8,
            0x80 | ((cp >> 6) & 0x3F) as u8,
            0x80 | (cp & 0x3F) as u8,
        ]),
    }
}

/// Checks the `utf-8`/`surrogatepass` grammar: UTF-8 where the 3-byte forms
/// `ED A0..BF xx` (surrogates) are also allowed.
fn valid_surrogatepass(bytes: &[u8]) -> bool {
    let mut it = CodePoints { bytes, pos: 0 };
    loop {
        if it.pos >= bytes.len() {
            return true;
        }
        if it.next_checked().is_none() {
            return false;
        }
    }
}

struct CodePoints<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl CodePoints<'_> {
    /// Decodes the next code point, checking the encoding; `None` when invalid.
    fn next_checked(&mut self) -> Option<u32> {
        let b = self.bytes;
        let p = self.pos;
        let c0 = *b.get(p)?;
        let cont = |i: usize| b.get(p + i).copied().filter(|c| c & 0xC0 == 0x80).map(u32::from);
        let (cp, len) = match c0 {
            0x00..=0x7F => (u32::from(c0), 1),
            0xC2..=0xDF => ((u32::from(c0 & 0x1F) << 6) | (cont(1)? & 0x3F), 2),
            0xE0..=0xEF => {
                let cp = (u32::from(c0 & 0x0F) << 12) | ((cont(1)? & 0x3F) << 6) | (cont(2)? & 0x3F);
                if cp < 0x800 {
                    return None;
                }
                (cp, 3)
            }
            0xF0..=0xF4 => {
                let cp = (u32::from(c0 & 0x07) << 18)
                    | ((cont(1)? & 0x3F) << 12)
                    | ((cont(2)? & 0x3F) << 6)
                    | (cont(3)? & 0x3F);
                if !(0x10000..=0x10FFFF).contains(&cp) {
                    return None;
                }
                (cp, 4)
            }
            _ => return None,
        };
        self.pos += len;
        Some(cp)
    }
}

impl Iterator for CodePoints<'_> {
    type Item = u32;
    fn next(&mut self) -> Option<u32> {
        if self.pos >= self.bytes.len() {
            return None;
        }
        // The bytes were validated on construction; skip a byte if that ever fails.
        self.next_checked().or_else(|| {
            self.pos += 1;
            Some(0xFFFD)
        })
    }
}

/// A reference to a global by module and qualified name (`GLOBAL`, `STACK_GLOBAL`,
/// `INST`): a class, a function, a module attribute. Never imported.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct Global {
    /// The module, with Python 2 names mapped to Python 3 ones (as CPython's
    /// `fix_imports` does for protocols 0–2).
    pub module: String,
    /// The qualified name inside the module.
    pub name: String,
}

/// How an object was constructed by the pickle.
#[derive(Clone, PartialEq, Debug)]
pub enum Construct {
    /// `REDUCE`: `callable(*args)`; `args` is a tuple node.
    Reduce {
        /// The callable (usually a [`Node::Global`]).
        callable: NodeId,
        /// The argument tuple.
        args: NodeId,
    },
    /// `NEWOBJ`: `cls.__new__(cls, *args)`; `args` is a tuple node.
    NewObj {
        /// The class.
        cls: NodeId,
        /// The argument tuple.
        args: NodeId,
    },
    /// `NEWOBJ_EX`: `cls.__new__(cls, *args, **kwargs)`.
    NewObjEx {
        /// The class.
        cls: NodeId,
        /// The argument tuple.
        args: NodeId,
        /// The keyword-argument dict.
        kwargs: NodeId,
    },
    /// `INST` or `OBJ`: `cls(*args)` (protocols 0 and 1).
    Instantiate {
        /// The class.
        cls: NodeId,
        /// The arguments.
        args: Vec<NodeId>,
    },
}

/// An operation the pickle applied to an object after constructing it, in order.
#[derive(Clone, PartialEq, Debug)]
pub enum ObjectOp {
    /// `BUILD`: `__setstate__(state)` or `__dict__` update.
    Build(NodeId),
    /// `APPEND`/`APPENDS`: `append(item)`/`extend(items)`.
    Append(NodeId),
    /// `SETITEM`/`SETITEMS`: `obj[key] = value`.
    SetItem(NodeId, NodeId),
    /// `ADDITEMS`: `add(item)`.
    AddItem(NodeId),
}

/// An object the codec does not know natively (a class instance, `datetime`,
/// `Decimal`, `OrderedDict`, ...), kept as data: how it was constructed and what was
/// applied to it, so that it can be inspected and written back unchanged.
#[derive(Clone, PartialEq, Debug)]
pub struct Object {
    /// The construction.
    pub construct: Construct,
    /// What was applied after construction, in order.
    pub ops: Vec<ObjectOp>,
}

/// One Python object.
#[derive(Clone, PartialEq, Debug)]
pub enum Node {
    /// `None`.
    None,
    /// `True` / `False`.
    Bool(bool),
    /// An `int` that fits in `i64`.
    Int(i64),
    /// An `int` outside the `i64` range.
    BigInt(Box<BigInt>),
    /// A `float`.
    Float(f64),
    /// A `str`.
    Str(PyStr),
    /// A `bytes`.
    Bytes(Vec<u8>),
    /// A `bytearray`.
    ByteArray(Vec<u8>),
    /// A `list`.
    List(Vec<NodeId>),
    /// A `tuple`.
    Tuple(Vec<NodeId>),
    /// A `dict`, in insertion order. Keys are kept as the pickle sets them: a key set
    /// twice appears twice (CPython never writes that).
    Dict(Vec<(NodeId, NodeId)>),
    /// A `set`, elements in the order the pickle stores them.
    Set(Vec<NodeId>),
    /// A `frozenset`, elements in the order the pickle stores them.
    FrozenSet(Vec<NodeId>),
    /// A reference to a global (a class, a function).
    Global(Box<Global>),
    /// An object kept as data.
    Object(Box<Object>),
    /// A persistent id (`PERSID`/`BINPERSID`): a reference the pickle leaves to its
    /// reader. Holds the id object (a str for `PERSID`).
    PersistentId(NodeId),
    /// A protocol-5 out-of-band buffer (`NEXT_BUFFER`): the `index`-th buffer handed to
    /// the reader; its bytes are not in the pickle.
    Buffer {
        /// Position among the pickle's out-of-band buffers.
        index: u32,
        /// Set by `READONLY_BUFFER`.
        readonly: bool,
    },
    /// An object from `copyreg`'s extension registry (`EXT1`/`EXT2`/`EXT4`), by code.
    Extension(i32),
}

impl Node {
    /// The Python type name of a native node, or `"object"` for the rest.
    pub fn type_name(&self) -> &'static str {
        match self {
            Node::None => "NoneType",
            Node::Bool(_) => "bool",
            Node::Int(_) | Node::BigInt(_) => "int",
            Node::Float(_) => "float",
            Node::Str(_) => "str",
            Node::Bytes(_) => "bytes",
            Node::ByteArray(_) => "bytearray",
            Node::List(_) => "list",
            Node::Tuple(_) => "tuple",
            Node::Dict(_) => "dict",
            Node::Set(_) => "set",
            Node::FrozenSet(_) => "frozenset",
            Node::Global(_) => "global",
            Node::Object(_) => "object",
            Node::PersistentId(_) => "persistent id",
            Node::Buffer { .. } => "out-of-band buffer",
            Node::Extension(_) => "extension",
        }
    }

    /// Calls `f` with every child id of this node, in document order (dict keys before
    /// their values; an object's construction before its operations).
    pub fn for_each_child(&self, mut f: impl FnMut(NodeId)) {
        match self {
            Node::List(v) | Node::Tuple(v) | Node::Set(v) | Node::FrozenSet(v) => v.iter().copied().for_each(f),
            Node::Dict(v) => {
                for &(k, val) in v {
                    f(k);
                    f(val);
                }
            }
            Node::PersistentId(id) => f(*id),
            Node::Object(o) => {
                match &o.construct {
                    Construct::Reduce { callable, args } => {
                        f(*callable);
                        f(*args);
                    }
                    Construct::NewObj { cls, args } => {
                        f(*cls);
                        f(*args);
                    }
                    Construct::NewObjEx { cls, args, kwargs } => {
                        f(*cls);
                        f(*args);
                        f(*kwargs);
                    }
                    Construct::Instantiate { cls, args } => {
                        f(*cls);
                        args.iter().copied().for_each(&mut f);
                    }
                }
                for op in &o.ops {
                    match *op {
                        ObjectOp::Build(s) => f(s),
                        ObjectOp::Append(x) | ObjectOp::AddItem(x) => f(x),
                        ObjectOp::SetItem(k, v) => {
                            f(k);
                            f(v);
                        }
                    }
                }
            }
            _ => {}
        }
    }
}

impl Node {
    /// Replaces every child id of this node with `f(id)`.
    pub(crate) fn map_children(&mut self, mut f: impl FnMut(NodeId) -> NodeId) {
        match self {
            Node::List(v) | Node::Tuple(v) | Node::Set(v) | Node::FrozenSet(v) => v.iter_mut().for_each(|c| *c = f(*c)),
            Node::Dict(v) => {
                for (k, val) in v.iter_mut() {
                    *k = f(*k);
                    *val = f(*val);
                }
            }
            Node::PersistentId(id) => *id = f(*id),
            Node::Object(o) => {
                match &mut o.construct {
                    Construct::Reduce { callable: a, args: b } | Construct::NewObj { cls: a, args: b } => {
                        *a = f(*a);
                        *b = f(*b);
                    }
                    Construct::NewObjEx { cls, args, kwargs } => {
                        *cls = f(*cls);
                        *args = f(*args);
                        *kwargs = f(*kwargs);
                    }
                    Construct::Instantiate { cls, args } => {
                        *cls = f(*cls);
                        args.iter_mut().for_each(|c| *c = f(*c));
                    }
                }
                for op in &mut o.ops {
                    match op {
                        ObjectOp::Build(x) | ObjectOp::Append(x) | ObjectOp::AddItem(x) => *x = f(*x),
                        ObjectOp::SetItem(k, v) => {
                            *k = f(*k);
                            *v = f(*v);
                        }
                    }
                }
            }
            _ => {}
        }
    }
}

/// Appends all nodes of `other` to `nodes` (ids shifted past the nodes already there)
/// and returns the id `other`'s root gets.
pub(crate) fn graft(nodes: &mut Vec<Node>, other: &Value) -> NodeId {
    let offset = nodes.len() as u32;
    nodes.extend(other.nodes().iter().map(|n| {
        let mut n = n.clone();
        n.map_children(|c| NodeId(c.0 + offset));
        n
    }));
    NodeId(other.root().0 + offset)
}

/// A decoded pickle: an arena of [`Node`]s and the id of the root.
///
/// ```
/// use pickleshelf_pickle::{Value, Node};
/// let mut v = Value::new(Node::List(Vec::new()));
/// let one = v.push(Node::Int(1));
/// let root = v.root();
/// if let Node::List(items) = v.node_mut(root) {
///     items.push(one);
///     items.push(root); // a list that contains itself
/// }
/// assert_eq!(v.to_string(), "[1, [...]]");
/// ```
#[derive(Clone)]
pub struct Value {
    nodes: Vec<Node>,
    root: NodeId,
}

impl Value {
    /// A value of one node, which is its root.
    pub fn new(root: Node) -> Value {
        Value { nodes: vec![root], root: NodeId(0) }
    }

    /// A value from an arena and its root. Fails when an id points outside the arena.
    ///
    /// # Errors
    /// [`crate::Error::Encode`] naming the first out-of-range id.
    pub fn from_nodes(nodes: Vec<Node>, root: NodeId) -> crate::Result<Value> {
        let v = Value { nodes, root };
        v.validate()?;
        Ok(v)
    }

    /// Builds from parts the decoder already knows to be valid.
    pub(crate) fn from_parts_unchecked(nodes: Vec<Node>, root: NodeId) -> Value {
        Value { nodes, root }
    }

    /// Checks that every id in the graph points inside the arena.
    ///
    /// # Errors
    /// [`crate::Error::Encode`] naming the first out-of-range id.
    pub fn validate(&self) -> crate::Result<()> {
        let n = self.nodes.len();
        if self.root.index() >= n {
            return Err(crate::Error::Encode(format!("root id {} is outside the {n} nodes", self.root.0)));
        }
        for (i, node) in self.nodes.iter().enumerate() {
            let mut bad = None;
            node.for_each_child(|c| {
                if c.index() >= n && bad.is_none() {
                    bad = Some(c);
                }
            });
            if let Some(c) = bad {
                return Err(crate::Error::Encode(format!("node {i} refers to id {} outside the {n} nodes", c.0)));
            }
        }
        Ok(())
    }

    /// Adds a node and returns its id. Children must be pushed before (or patched in
    /// later through [`Value::node_mut`], which is how cycles are made).
    pub fn push(&mut self, node: Node) -> NodeId {
        let id = NodeId(self.nodes.len() as u32);
        self.nodes.push(node);
        id
    }

    /// The root's id.
    pub fn root(&self) -> NodeId {
        self.root
    }

    /// Makes another node the root.
    pub fn set_root(&mut self, root: NodeId) {
        self.root = root;
    }

    /// The root node.
    pub fn root_node(&self) -> &Node {
        &self[self.root]
    }

    /// The node with this id, or `None` when it is outside the arena.
    pub fn get(&self, id: NodeId) -> Option<&Node> {
        self.nodes.get(id.index())
    }

    /// The node with this id, mutably.
    ///
    /// # Panics
    /// When the id is not from this value.
    pub fn node_mut(&mut self, id: NodeId) -> &mut Node {
        &mut self.nodes[id.index()]
    }

    /// All nodes; ids are positions in this slice.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// The number of nodes in the arena.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Never true: a value has at least its root.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The text of a `str` node without surrogates.
    pub fn as_str(&self, id: NodeId) -> Option<&str> {
        match self.get(id)? {
            Node::Str(s) => s.as_str(),
            _ => None,
        }
    }

    /// The value of an `int` node that fits in `i64` (`bool` is not an int here).
    pub fn as_i64(&self, id: NodeId) -> Option<i64> {
        match self.get(id)? {
            Node::Int(v) => Some(*v),
            _ => None,
        }
    }

    /// The value of a `float` node.
    pub fn as_f64(&self, id: NodeId) -> Option<f64> {
        match self.get(id)? {
            Node::Float(v) => Some(*v),
            _ => None,
        }
    }

    /// The items of a `list` or `tuple` node.
    pub fn as_seq(&self, id: NodeId) -> Option<&[NodeId]> {
        match self.get(id)? {
            Node::List(v) | Node::Tuple(v) => Some(v),
            _ => None,
        }
    }

    /// The value stored under a `str` key in a `dict` node (the last one, if the key was
    /// set twice).
    pub fn dict_get(&self, dict: NodeId, key: &str) -> Option<NodeId> {
        match self.get(dict)? {
            Node::Dict(items) => items.iter().rev().find(|(k, _)| self.as_str(*k) == Some(key)).map(|&(_, v)| v),
            _ => None,
        }
    }

    /// The type of an object node as Python reports `type(obj)`: `(module, qualname)`.
    ///
    /// For `REDUCE` the callable is taken as the type, except for the factory functions
    /// `copyreg._reconstructor` and `copyreg.__newobj__`, whose first argument is the
    /// class. A bare global (a class reference) is of type `builtins.type`.
    pub fn object_type(&self, id: NodeId) -> Option<(&str, &str)> {
        let global = |id: NodeId| match self.get(id) {
            Some(Node::Global(g)) => Some((g.module.as_str(), g.name.as_str())),
            _ => None,
        };
        match self.get(id)? {
            Node::Global(_) => Some(("builtins", "type")),
            Node::Object(o) => match &o.construct {
                Construct::Reduce { callable, args } => {
                    let (m, n) = global(*callable)?;
                    if m == "copyreg" && (n == "_reconstructor" || n == "__newobj__" || n == "__newobj_ex__") {
                        let first = *self.as_seq(*args)?.first()?;
                        global(first)
                    } else {
                        Some((m, n))
                    }
                }
                Construct::NewObj { cls, .. }
                | Construct::NewObjEx { cls, .. }
                | Construct::Instantiate { cls, .. } => global(*cls),
            },
            _ => None,
        }
    }

    /// Structural equality that respects sharing: the two graphs are equal when a
    /// one-to-one map between their reachable nodes matches kinds and atoms and maps
    /// children to children. Floats compare by bits (so `-0.0 != 0.0`, and a NaN equals
    /// a NaN with the same bits). Works on cyclic graphs; no recursion.
    pub fn same_as(&self, other: &Value) -> bool {
        let mut fwd: HashMap<NodeId, NodeId> = HashMap::new();
        let mut back: HashMap<NodeId, NodeId> = HashMap::new();
        let mut work = vec![(self.root, other.root)];
        while let Some((a, b)) = work.pop() {
            match (fwd.get(&a), back.get(&b)) {
                (Some(&x), _) if x != b => return false,
                (_, Some(&y)) if y != a => return false,
                (Some(_), Some(_)) => continue,
                _ => {}
            }
            fwd.insert(a, b);
            back.insert(b, a);
            let (Some(na), Some(nb)) = (self.get(a), other.get(b)) else {
                return false;
            };
            if !shallow_equal(na, nb) {
                return false;
            }
            let mut ca = Vec::new();
            let mut cb = Vec::new();
            na.for_each_child(|c| ca.push(c));
            nb.for_each_child(|c| cb.push(c));
            if ca.len() != cb.len() {
                return false;
            }
            work.extend(ca.into_iter().zip(cb));
        }
        true
    }
}

/// Compares a node's kind and atom content, not its children.
fn shallow_equal(a: &Node, b: &Node) -> bool {
    match (a, b) {
        (Node::Float(x), Node::Float(y)) => x.to_bits() == y.to_bits(),
        (Node::List(_), Node::List(_))
        | (Node::Tuple(_), Node::Tuple(_))
        | (Node::Dict(_), Node::Dict(_))
        | (Node::Set(_), Node::Set(_))
        | (Node::FrozenSet(_), Node::FrozenSet(_))
        | (Node::PersistentId(_), Node::PersistentId(_)) => true,
        (Node::Object(x), Node::Object(y)) => {
            std::mem::discriminant(&x.construct) == std::mem::discriminant(&y.construct)
                && x.ops.len() == y.ops.len()
                && x.ops.iter().zip(&y.ops).all(|(p, q)| std::mem::discriminant(p) == std::mem::discriminant(q))
        }
        _ => a == b,
    }
}

impl std::ops::Index<NodeId> for Value {
    type Output = Node;
    /// # Panics
    /// When the id is not from this value.
    fn index(&self, id: NodeId) -> &Node {
        &self.nodes[id.index()]
    }
}

impl PartialEq for Value {
    /// See [`Value::same_as`].
    fn eq(&self, other: &Value) -> bool {
        self.same_as(other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_is_32_bytes_with_inline_strs() {
        assert_eq!(std::mem::size_of::<Node>(), 32);
    }

    #[test]
    fn strs_compare_by_text_however_stored() {
        let long = "x".repeat(INLINE + 1);
        for text in ["", "a", "é", &"y".repeat(INLINE), &long] {
            let a = PyStr::from(text);
            let b = PyStr::from(text.to_owned());
            let c = PyStr::from_surrogatepass(text.as_bytes()).unwrap_or_else(|| panic!("{text}"));
            let d = PyStr::from_surrogatepass_vec(text.as_bytes().to_vec()).unwrap_or_else(|| panic!("{text}"));
            for s in [&a, &b, &c, &d] {
                assert_eq!(s.as_str(), Some(text));
                assert_eq!(s.as_surrogatepass(), text.as_bytes());
                assert_eq!(s, &a);
                assert_eq!(format!("{s:?}"), format!("PyStr(Utf8({text:?}))"));
            }
        }
        let sur = PyStr::from_code_points(&[0x61, 0xD800]).unwrap_or_else(|| panic!("surrogate"));
        assert_eq!(sur.as_str(), None);
        assert!(sur.has_surrogates());
        assert_eq!(format!("{sur:?}"), "PyStr(Surrogates([97, 237, 160, 128]))");
        assert_ne!(sur, PyStr::from("a"));
    }
}
