//! Calls of Python's built-in types that CPython's unpickler turns into native values:
//! `set([1, 2])` written with `REDUCE`, `INST builtins list`, `_codecs.encode(s,
//! 'utf-8')`, `NEWOBJ` of `tuple`, ...
//!
//! Invariant: [`call`] gives a native value only when CPython's result is that value
//! exactly — the same type, the same content, and the very same object where CPython
//! returns its argument (`tuple(t) is t`); for anything it does not model (an argument
//! of another type, an encoding it does not know, text the encoding cannot carry) it
//! gives `None` and the call stays an object, as before. It never copies more than the
//! budget it is given, and whether a call is native never depends on the value of an
//! int or a float argument (only on its type), so that `check`, which keeps no numbers,
//! decides exactly as `decode` does.

use crate::value::{Global, Node, NodeId, PyStr};

/// How the type is applied.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum How {
    /// `cls(*args)`: `REDUCE`, and `INST`/`OBJ` (CPython's `_instantiate` calls the class
    /// when there are arguments, and `cls.__new__(cls)` otherwise, which for the built-in
    /// types is the same empty value).
    Call,
    /// `cls.__new__(cls, *args)`: `NEWOBJ`. The mutable types ignore the arguments
    /// (their `__init__` would fill them in).
    New,
}

/// What a call makes.
pub(crate) enum Made {
    /// A new node.
    New(Node),
    /// The argument itself (`str(s) is s`, `tuple(t) is t`, ...).
    Same(NodeId),
    /// `True` or `False` (one object each).
    Bool(bool),
    /// A list or tuple of a dict's keys (`list(d)`), which the decoder must still rid of
    /// keys that repeat an earlier one ([`crate::pyhash::dedup_items`]): the dict itself
    /// is given CPython's content only once decoding ends.
    DictKeys(Node),
}

impl Made {
    /// Items or bytes the call copies (see the decoder's copy budget).
    pub(crate) fn copied(&self) -> usize {
        match self {
            Made::New(Node::Bytes(b) | Node::ByteArray(b)) => b.len(),
            Made::New(Node::List(v) | Node::Tuple(v) | Node::Set(v) | Node::FrozenSet(v))
            | Made::DictKeys(Node::List(v) | Node::Tuple(v)) => v.len(),
            Made::New(Node::Dict(v)) => v.len(),
            _ => 0,
        }
    }
}

/// The native value of `module.name(*args)` (or `__new__`), when CPython's result is
/// one and it copies at most `budget` items or bytes.
pub(crate) fn call(nodes: &[Node], g: &Global, args: &[NodeId], how: How, budget: usize) -> Option<Made> {
    let node = |id: NodeId| nodes.get(id.index());
    let items = |id: NodeId| -> Option<Vec<NodeId>> {
        match node(id)? {
            Node::List(v) | Node::Tuple(v) | Node::Set(v) | Node::FrozenSet(v) if v.len() <= budget => Some(v.clone()),
            Node::Dict(p) if p.len() <= budget => Some(p.iter().map(|&(k, _)| k).collect()),
            _ => None,
        }
    };
    // `list(x)` and `tuple(x)` keep the order of `x`: a list's, a tuple's, a dict's
    // keys. Not a set's, which CPython iterates in the order of its hash table.
    let ordered = |x: NodeId, make: fn(Vec<NodeId>) -> Node| -> Option<Made> {
        match node(x)? {
            Node::List(v) | Node::Tuple(v) if v.len() <= budget => Some(Made::New(make(v.clone()))),
            Node::Dict(p) if p.len() <= budget => Some(Made::DictKeys(make(p.iter().map(|&(k, _)| k).collect()))),
            _ => None,
        }
    };
    let module = g.module.as_str();
    if module == "_codecs" && g.name == "encode" {
        return match args {
            [s] => encode(nodes, *s, None, None, budget).map(|b| Made::New(Node::Bytes(b))),
            [s, e] => encode(nodes, *s, Some(*e), None, budget).map(|b| Made::New(Node::Bytes(b))),
            [s, e, r] => encode(nodes, *s, Some(*e), Some(*r), budget).map(|b| Made::New(Node::Bytes(b))),
            _ => None,
        };
    }
    if module != "builtins" {
        return None;
    }
    let name = g.name.as_str();
    if how == How::New && matches!(name, "list" | "dict" | "set" | "bytearray") {
        return Some(Made::New(empty(name)?));
    }
    match (name, args) {
        (_, []) => match name {
            "bool" => Some(Made::Bool(false)),
            "int" => Some(Made::New(Node::Int(0))),
            "float" => Some(Made::New(Node::Float(0.0))),
            "str" => Some(Made::New(Node::Str(PyStr::from("")))),
            _ => Some(Made::New(empty(name)?)),
        },
        ("list", &[x]) => ordered(x, Node::List),
        ("tuple", &[x]) => match node(x)? {
            Node::Tuple(_) => Some(Made::Same(x)),
            _ => ordered(x, Node::Tuple),
        },
        ("set", &[x]) => items(x).map(|v| Made::New(Node::Set(v))),
        ("frozenset", &[x]) => match node(x)? {
            Node::FrozenSet(_) => Some(Made::Same(x)),
            _ => items(x).map(|v| Made::New(Node::FrozenSet(v))),
        },
        ("dict", &[x]) => match node(x)? {
            Node::Dict(p) if p.len() <= budget => Some(Made::New(Node::Dict(p.clone()))),
            Node::List(v) | Node::Tuple(v) if v.len() <= budget => {
                let mut pairs = Vec::with_capacity(v.len());
                for &item in v {
                    match node(item)? {
                        Node::List(kv) | Node::Tuple(kv) if kv.len() == 2 => pairs.push((kv[0], kv[1])),
                        _ => return None,
                    }
                }
                Some(Made::New(Node::Dict(pairs)))
            }
            _ => None,
        },
        ("str", &[x]) => matches!(node(x)?, Node::Str(_)).then_some(Made::Same(x)),
        ("bytes" | "bytearray", &[x]) => {
            // Not `bytes(n)` nor `bytes([ints])`: whether those are native depends on
            // the ints' values, which `check` does not keep (see the decoder).
            let data = match node(x)? {
                Node::Bytes(_) if name == "bytes" => return Some(Made::Same(x)),
                Node::Bytes(b) | Node::ByteArray(b) if b.len() <= budget => b.clone(),
                _ => return None,
            };
            Some(Made::New(if name == "bytes" { Node::Bytes(data) } else { Node::ByteArray(data) }))
        }
        ("bytes" | "bytearray", &[s, e]) | ("bytes" | "bytearray", &[s, e, _]) => {
            let errors = args.get(2).copied();
            let data = encode(nodes, s, Some(e), errors, budget)?;
            Some(Made::New(if name == "bytes" { Node::Bytes(data) } else { Node::ByteArray(data) }))
        }
        ("int", &[x]) => match node(x)? {
            Node::Int(_) | Node::BigInt(_) => Some(Made::Same(x)),
            Node::Bool(b) => Some(Made::New(Node::Int(i64::from(*b)))),
            _ => None,
        },
        ("float", &[x]) => match node(x)? {
            Node::Float(_) => Some(Made::Same(x)),
            Node::Bool(b) => Some(Made::New(Node::Float(f64::from(u8::from(*b))))),
            Node::Int(i) => Some(Made::New(Node::Float(*i as f64))),
            _ => None,
        },
        ("bool", &[x]) => truth(node(x)?).map(Made::Bool),
        _ => None,
    }
}

/// The empty value of a built-in container type.
fn empty(name: &str) -> Option<Node> {
    Some(match name {
        "list" => Node::List(Vec::new()),
        "tuple" => Node::Tuple(Vec::new()),
        "dict" => Node::Dict(Vec::new()),
        "set" => Node::Set(Vec::new()),
        "frozenset" => Node::FrozenSet(Vec::new()),
        "bytes" => Node::Bytes(Vec::new()),
        "bytearray" => Node::ByteArray(Vec::new()),
        _ => return None,
    })
}

/// `bool(x)` of a native node; `None` for objects (their `__bool__` is unknown).
fn truth(node: &Node) -> Option<bool> {
    Some(match node {
        Node::None => false,
        Node::Bool(b) => *b,
        Node::Int(i) => *i != 0,
        Node::BigInt(_) => true,
        Node::Float(x) => *x != 0.0,
        Node::Str(s) => !s.as_surrogatepass().is_empty(),
        Node::Bytes(b) | Node::ByteArray(b) => !b.is_empty(),
        Node::List(v) | Node::Tuple(v) | Node::Set(v) | Node::FrozenSet(v) => !v.is_empty(),
        Node::Dict(p) => !p.is_empty(),
        _ => return None,
    })
}

/// The codecs [`encode`] knows.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Codec {
    Utf8,
    Latin1,
    Ascii,
}

/// A codec name as Python's codec registry resolves it: lower case, runs of other
/// characters than letters, digits and `.` as one `_` (`encodings.normalize_encoding`),
/// then the aliases of `encodings.aliases` for the three codecs.
fn codec(name: &str) -> Option<Codec> {
    let mut norm = String::with_capacity(name.len());
    let mut gap = false;
    for c in name.chars() {
        if c.is_ascii_alphanumeric() || c == '.' {
            if gap && !norm.is_empty() {
                norm.push('_');
            }
            gap = false;
            norm.push(c.to_ascii_lowercase());
        } else {
            gap = true;
        }
    }
    Some(match norm.as_str() {
        "utf_8" | "utf8" | "u8" | "utf" | "utf8_ucs2" | "utf8_ucs4" | "cp65001" => Codec::Utf8,
        "latin_1" | "latin1" | "latin" | "l1" | "iso8859_1" | "iso_8859_1" | "iso_8859_1_1987" | "8859" | "cp819"
        | "iso_ir_100" | "csisolatin1" | "ibm819" => Codec::Latin1,
        "ascii" | "us_ascii" | "646" | "us" | "ansi_x3.4_1968" | "ansi_x3_4_1968" | "ansi_x3.4_1986" | "cp367"
        | "csascii" | "ibm367" | "iso646_us" | "iso_646.irv_1991" | "iso_ir_6" => Codec::Ascii,
        _ => return None,
    })
}

/// `_codecs.encode(text, encoding='utf-8', errors='strict')` for the UTF-8, Latin-1 and
/// ASCII codecs: `None` when the arguments are not strs, the codec is another, the
/// result is over `budget` bytes, or the text does not fit the codec (where CPython
/// raises, or applies an error handler other than `surrogatepass`).
fn encode(
    nodes: &[Node],
    text: NodeId,
    encoding: Option<NodeId>,
    errors: Option<NodeId>,
    budget: usize,
) -> Option<Vec<u8>> {
    let str_of = |id: NodeId| match nodes.get(id.index()) {
        Some(Node::Str(s)) => Some(s),
        _ => None,
    };
    let s = str_of(text)?;
    let codec = match encoding {
        None => Codec::Utf8,
        Some(e) => codec(str_of(e)?.as_str()?)?,
    };
    let errors = match errors {
        None => "strict",
        Some(r) => str_of(r)?.as_str()?,
    };
    match codec {
        Codec::Utf8 => {
            let bytes = s.as_surrogatepass();
            if bytes.len() > budget || (s.has_surrogates() && errors != "surrogatepass") {
                return None;
            }
            Some(bytes.to_vec())
        }
        Codec::Latin1 | Codec::Ascii => {
            let limit = if codec == Codec::Latin1 { 0xFF } else { 0x7F };
            s.code_points()
                .take(budget.saturating_add(1))
                .map(|c| if c <= limit { Some(c as u8) } else { None })
                .collect::<Option<Vec<u8>>>()
                .filter(|b| b.len() <= budget)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codec_names_resolve_like_python() {
        for n in ["UTF-8", "utf_8", "Utf8", "utf--8", "u8", "UtF_8", "utf 8"] {
            assert!(codec(n) == Some(Codec::Utf8), "{n}");
        }
        for n in ["latin", "cp819", "ISO-8859-1", "iso_8859_1:1987", "8859", "L1", "latin-1"] {
            assert!(codec(n) == Some(Codec::Latin1), "{n}");
        }
        for n in ["ascii", "US-ASCII", "646", "us"] {
            assert!(codec(n) == Some(Codec::Ascii), "{n}");
        }
        for n in ["utf-16", "cp1252", "", "-"] {
            assert!(codec(n).is_none(), "{n}");
        }
    }
}
