//! Plain JSON: a value as Python's `json` module writes it, and JSON text read as
//! `json.loads` reads it — the form scripts and tools such as `jq` expect. Lossy by
//! nature (a tuple and a list both become an array); [`crate::to_tagged_json`] is the
//! lossless form.
//!
//! Invariant: [`to_plain_json`] writes what `json.dumps(v, ensure_ascii=False,
//! allow_nan=False, separators=(",", ":"))` writes for the same value — plus arrays for
//! sets and frozensets, which `json.dumps` refuses — and fails, naming the node's type
//! and its path from the root (`$['a'][2]`), wherever `json.dumps` would raise. Reading
//! back what it wrote gives a value that writes the same text. Neither direction
//! recurses.
//!
//! | Python | JSON |
//! |---|---|
//! | `None`, `True`, `False` | `null`, `true`, `false` |
//! | `int` (any size with a decimal form) | a number without fraction or exponent |
//! | `float` (finite) | a number as `repr` writes it (`2.5`, `1e+16`, `-0.0`) |
//! | `str` | a string (a lone surrogate as a `\udxxx` escape) |
//! | `list`, `tuple`, `set`, `frozenset` | an array (reading gives a `list`) |
//! | `dict` | an object in the dict's order; keys `str`, or `int`, `float`, `bool`, `None` written as text (`1` → `"1"`, `None` → `"null"`), as `json.dumps` does |
//! | `collections.OrderedDict`, `defaultdict`, `Counter` | an object, as for a `dict` (they are `dict` subclasses) |
//!
//! What has no plain JSON form is an error: `bytes`, `bytearray`, NaN and infinities,
//! dict keys of other types, objects (class instances, `datetime`, ...), a container
//! that holds itself, and a value that shares containers so heavily that writing each
//! reference out would exceed `max(16 × nodes, 1,000,000)` nodes. Shared containers
//! are written once per reference (JSON has no references).
//!
//! Reading: `null`, `true`/`false`, strings, arrays and objects become `None`, `bool`,
//! `str`, `list` and `dict`; a number without `.`, `e` or `E` becomes an `int` (at most
//! 4,300 digits, CPython's default `int_max_str_digits`), any other a `float` (an error
//! when it overflows). An object naming a key twice keeps the last value at the first
//! position, as a Python dict does.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt::Write;

use super::decode::DEFAULT_LIMITS;
use super::int::Int;
use super::json::{Doc, J, write_json_str};
use super::pytypes::{self, Deque, PyObject, TimeDelta};
use super::repr::{float_repr, str_repr};
use super::value::{Construct, Node, NodeId, Object, ObjectOp, PyStr, Value};
use crate::{Error, Result};

/// Writes a value as plain JSON, compactly (no spaces, no trailing newline): what
/// Python's `json.dumps` writes for it (see `docs/PICKLE.md`, "Plain JSON").
///
/// ```
/// use pickleshelf_pickle as pickle;
/// // Python: pickle.dumps({'name': 'Ada', 'langs': ('en', 'fr'), 7: None}, 4)
/// let v = pickle::from_plain_json(r#"{"name":"Ada","langs":["en","fr"],"7":null}"#)?;
/// assert_eq!(pickle::to_plain_json(&v)?, r#"{"name":"Ada","langs":["en","fr"],"7":null}"#);
/// let bytes = pickle::from_tagged_json(r#"{"list":[{"bytes":"00ff"}]}"#)?;
/// assert_eq!(
///     pickle::to_plain_json(&bytes).unwrap_err().to_string(),
///     "plain JSON: a bytes value has no JSON form, at $[0] (tagged JSON keeps it)"
/// );
/// # Ok::<(), pickleshelf_pickle::Error>(())
/// ```
///
/// # Errors
/// [`Error::PlainJson`] naming the first node (in document order) that has no JSON
/// form, its type and its path.
pub fn to_plain_json(value: &Value) -> Result<String> {
    let mut w = Writer {
        value,
        out: String::new(),
        open: vec![false; value.len()],
        budget: value.len().saturating_mul(16).max(1_000_000),
    };
    w.run()?;
    Ok(w.out)
}

/// A container being written: what is left and where the writer is in it.
enum Frame<'a> {
    Seq { id: NodeId, items: Cow<'a, [NodeId]>, next: usize },
    Map { id: NodeId, pairs: Cow<'a, [(NodeId, NodeId)]>, next: usize },
}

struct Writer<'a> {
    value: &'a Value,
    out: String,
    /// Containers on the path from the root to the node being written (a cycle if one
    /// is reached again).
    open: Vec<bool>,
    /// Nodes left to write before the output is refused as too large.
    budget: usize,
}

impl<'a> Writer<'a> {
    fn run(&mut self) -> Result<()> {
        let mut stack: Vec<Frame<'a>> = Vec::new();
        self.node(self.value.root(), &mut stack)?;
        // A frame's `next` is one past the item being written, so that an error's path
        // names that item.
        while let Some(top) = stack.last_mut() {
            match top {
                Frame::Seq { id, items, next } => {
                    let (id, i) = (*id, *next);
                    match items.get(i) {
                        Some(&child) => {
                            *next += 1;
                            if i > 0 {
                                self.out.push(',');
                            }
                            self.node(child, &mut stack)?;
                        }
                        None => {
                            self.out.push(']');
                            self.close(id);
                            stack.pop();
                        }
                    }
                }
                Frame::Map { id, pairs, next } => {
                    let (id, i) = (*id, *next);
                    match pairs.get(i) {
                        Some(&(k, v)) => {
                            *next += 1;
                            if i > 0 {
                                self.out.push(',');
                            }
                            self.key(k, &stack)?;
                            self.out.push(':');
                            self.node(v, &mut stack)?;
                        }
                        None => {
                            self.out.push('}');
                            self.close(id);
                            stack.pop();
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn close(&mut self, id: NodeId) {
        if let Some(o) = self.open.get_mut(id.index()) {
            *o = false;
        }
    }

    /// Writes one node: atoms completely, containers up to their opening bracket
    /// (pushing a frame for the rest).
    fn node(&mut self, id: NodeId, stack: &mut Vec<Frame<'a>>) -> Result<()> {
        let value = self.value;
        let Some(node) = value.get(id) else {
            return Err(self.no_form(stack, &format!("node id {} (outside the value)", id.index()), ""));
        };
        self.budget = match self.budget.checked_sub(1) {
            Some(b) => b,
            None => {
                return Err(self.no_form(
                    stack,
                    "the value",
                    " when each shared reference is written out; it shares containers too heavily (tagged JSON \
                     keeps the sharing)",
                ));
            }
        };
        match node {
            Node::None => self.out.push_str("null"),
            Node::Bool(b) => self.out.push_str(if *b { "true" } else { "false" }),
            Node::Int(i) => {
                let _ = write!(self.out, "{i}");
            }
            Node::BigInt(b) => match big_decimal(b) {
                Some(text) => self.out.push_str(&text),
                None => {
                    let what = format!("an int of {} bits", b.bit_length());
                    return Err(self.no_form(stack, &what, TOO_MANY_DIGITS));
                }
            },
            Node::Float(x) if x.is_finite() => self.out.push_str(&float_repr(*x)),
            Node::Float(x) => {
                return Err(self.no_form(stack, &format!("the float {}", float_repr(*x)), ""));
            }
            Node::Str(s) => write_py_str(&mut self.out, s),
            Node::List(items) | Node::Tuple(items) | Node::Set(items) | Node::FrozenSet(items) => {
                self.enter(id, stack)?;
                self.out.push('[');
                stack.push(Frame::Seq { id, items: Cow::Borrowed(items), next: 0 });
            }
            Node::Dict(pairs) => {
                self.enter(id, stack)?;
                self.out.push('{');
                stack.push(Frame::Map { id, pairs: Cow::Borrowed(pairs), next: 0 });
            }
            Node::Bytes(_) | Node::ByteArray(_) => {
                let what = format!("a {} value", node.type_name());
                return Err(self.no_form(stack, &what, " (tagged JSON keeps it)"));
            }
            Node::Object(o) if dict_like(value, id, o).is_some() => match dict_like(value, id, o) {
                Some(DictLike::Items(pairs)) => {
                    self.enter(id, stack)?;
                    self.out.push('{');
                    stack.push(Frame::Map { id, pairs: Cow::Owned(pairs), next: 0 });
                }
                Some(DictLike::Dict(dict)) => {
                    self.budget += 1;
                    return self.node(dict, stack);
                }
                None => {}
            },
            Node::Object(_) if value.object_type(id) == Some(("collections", "deque")) => {
                let Ok(deque) = Deque::read(value, id) else { return Err(self.object_error(id, node, stack)) };
                self.enter(id, stack)?;
                self.out.push('[');
                stack.push(Frame::Seq { id, items: Cow::Owned(deque.items), next: 0 });
            }
            Node::Object(_) if value.object_type(id) == Some(("datetime", "timedelta")) => {
                let Ok(td) = TimeDelta::read(value, id) else { return Err(self.object_error(id, node, stack)) };
                // timedelta.total_seconds(), as Python computes it
                self.out.push_str(&float_repr(td.total_microseconds() as f64 / 1e6));
            }
            Node::Object(_) => match pytypes::plain_text(value, id) {
                Some(text) => write_json_str(&mut self.out, &text),
                None => return Err(self.object_error(id, node, stack)),
            },
            _ => return Err(self.object_error(id, node, stack)),
        }
        Ok(())
    }

    /// The error for an object (or other node kind) that has no JSON form.
    fn object_error(&self, id: NodeId, node: &Node, stack: &[Frame<'a>]) -> Error {
        let what = match self.value.object_type(id) {
            Some((module, name)) => format!("a {module}.{name} object"),
            None => format!("a {}", node_kind(node)),
        };
        self.no_form(stack, &what, " (tagged JSON shows it)")
    }

    /// Marks a container as being written; reaching it again inside itself is a cycle.
    fn enter(&mut self, id: NodeId, stack: &[Frame<'a>]) -> Result<()> {
        match self.open.get_mut(id.index()) {
            Some(o) if *o => {
                let what = format!("a {} that contains itself", self.value.get(id).map_or("value", Node::type_name));
                Err(self.no_form(stack, &what, " (tagged JSON keeps cycles)"))
            }
            Some(o) => {
                *o = true;
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Writes a dict key as JSON text, as `json.dumps` converts it.
    fn key(&mut self, k: NodeId, stack: &[Frame<'a>]) -> Result<()> {
        let text = match self.value.get(k) {
            Some(Node::Str(s)) => {
                write_py_str(&mut self.out, s);
                return Ok(());
            }
            Some(Node::Int(i)) => i.to_string(),
            Some(Node::BigInt(b)) => match big_decimal(b) {
                Some(t) => t,
                None => {
                    let what = format!("a dict key that is an int of {} bits", b.bit_length());
                    return Err(self.no_form(stack, &what, TOO_MANY_DIGITS));
                }
            },
            Some(Node::Float(x)) if x.is_finite() => float_repr(*x),
            Some(Node::Bool(b)) => (if *b { "true" } else { "false" }).to_owned(),
            Some(Node::None) => "null".to_owned(),
            Some(Node::Float(x)) => {
                return Err(self.no_form(stack, &format!("the dict key {}", float_repr(*x)), ""));
            }
            Some(node) => {
                let what =
                    format!("a dict key of type {}", self.value.object_type(k).map_or(node.type_name(), |t| t.1));
                return Err(self.no_form(
                    stack,
                    &what,
                    " (JSON keys are strings; str, int, float, bool and None keys are written as text)",
                ));
            }
            None => return Err(self.no_form(stack, "a dict key outside the value", "")),
        };
        write_json_str(&mut self.out, &text);
        Ok(())
    }

    /// The error for `what`, found at the position `stack` describes.
    fn no_form(&self, stack: &[Frame<'a>], what: &str, why: &str) -> Error {
        Error::PlainJson(format!("{what} has no JSON form, at {}{why}", self.path(stack)))
    }

    /// The path from the root to the item being written: `$['a'][2]`.
    fn path(&self, stack: &[Frame<'a>]) -> String {
        let mut p = String::from("$");
        for frame in stack {
            match *frame {
                Frame::Seq { next, .. } => {
                    let _ = write!(p, "[{}]", next.saturating_sub(1));
                }
                Frame::Map { ref pairs, next, .. } => {
                    let Some(&(k, _)) = pairs.get(next.saturating_sub(1)) else { continue };
                    match self.value.get(k) {
                        Some(Node::Str(s)) => {
                            let _ = write!(p, "[{}]", str_repr(s));
                        }
                        Some(Node::Int(i)) => {
                            let _ = write!(p, "[{i}]");
                        }
                        Some(node) => {
                            let _ = write!(p, "[<{} key>]", node.type_name());
                        }
                        None => p.push_str("[?]"),
                    }
                }
            }
        }
        p
    }
}

/// A `dict` subclass of `collections` that `json.dumps` writes as a dict, and where its
/// items are.
enum DictLike {
    /// `OrderedDict` or `defaultdict`: the items the pickle sets after the call.
    Items(Vec<(NodeId, NodeId)>),
    /// `Counter`: the dict its call takes.
    Dict(NodeId),
}

/// Recognizes the pickles CPython writes for `OrderedDict`, `defaultdict` (its
/// `__reduce__`: a call, then the items set one by one) and `Counter` (a call with a
/// dict of the counts); anything else is not dict-like.
fn dict_like(value: &Value, id: NodeId, o: &Object) -> Option<DictLike> {
    let Construct::Reduce { args, .. } = o.construct else { return None };
    match value.object_type(id)? {
        ("collections", "OrderedDict" | "defaultdict") => {
            let pairs = o.ops.iter().map(|op| match *op {
                ObjectOp::SetItem(k, v) => Some((k, v)),
                _ => None,
            });
            Some(DictLike::Items(pairs.collect::<Option<Vec<_>>>()?))
        }
        ("collections", "Counter") if o.ops.is_empty() => match value.as_seq(args)? {
            [dict] if matches!(value.get(*dict), Some(Node::Dict(_))) => Some(DictLike::Dict(*dict)),
            _ => None,
        },
        _ => None,
    }
}

const TOO_MANY_DIGITS: &str = " (more than 4,300 decimal digits, Python's int_max_str_digits)";

/// The decimal text of a big int of at most [`DEFAULT_LIMITS`]`.max_int_digits` digits
/// (what Python writes as text, and what [`from_plain_json`] reads).
fn big_decimal(b: &crate::BigInt) -> Option<String> {
    // 14,300 bits hold more than 4,300 digits: no need to convert larger ones.
    if b.bit_length() > DEFAULT_LIMITS.max_int_digits as u64 * 10 / 3 + 64 {
        return None;
    }
    let text = b.to_decimal_bounded()?;
    (text.trim_start_matches('-').len() <= DEFAULT_LIMITS.max_int_digits).then_some(text)
}

/// What a node that is neither plain data nor an object with a known type is.
fn node_kind(node: &Node) -> &'static str {
    match node {
        Node::Global(_) => "global (a class or function)",
        Node::PersistentId(_) => "persistent id",
        Node::Buffer { .. } => "pickle buffer",
        Node::Extension(_) => "copyreg extension",
        _ => "object",
    }
}

/// Writes a `str` as a JSON string: UTF-8 as it is, with `json.dumps`'s escapes; a lone
/// surrogate as a `\udxxx` escape.
fn write_py_str(out: &mut String, s: &PyStr) {
    if let Some(text) = s.as_str() {
        write_json_str(out, text);
        return;
    }
    let mut text = String::new();
    let mut pending = String::new();
    out.push('"');
    for cp in s.code_points() {
        match char::from_u32(cp) {
            Some(c) => pending.push(c),
            None => {
                // A surrogate: write what came before it, then its escape.
                write_json_str(&mut text, &pending);
                out.push_str(text.get(1..text.len() - 1).unwrap_or(""));
                text.clear();
                pending.clear();
                let _ = write!(out, "\\u{cp:04x}");
            }
        }
    }
    write_json_str(&mut text, &pending);
    out.push_str(text.get(1..text.len() - 1).unwrap_or(""));
    out.push('"');
}

/// Reads plain JSON as Python's `json.loads` does (see `docs/PICKLE.md`, "Plain JSON").
///
/// ```
/// use pickleshelf_pickle as pickle;
/// let v = pickle::from_plain_json(r#"{"a": 1, "b": [2.5, null, "x"], "big": 123456789012345678901234567890}"#)?;
/// assert_eq!(v.to_string(), "{'a': 1, 'b': [2.5, None, 'x'], 'big': 123456789012345678901234567890}");
/// // What Python's pickle.dumps(..., protocol=4) writes:
/// assert_eq!(pickle::encode(&pickle::from_plain_json("[1]")?, 4)?, b"\x80\x04\x95\x06\x00\x00\x00\x00\x00\x00\x00]\x94K\x01a.");
/// # Ok::<(), pickleshelf_pickle::Error>(())
/// ```
///
/// # Errors
/// [`Error::PlainJson`] naming the byte offset and the problem: text that is not JSON,
/// an int of more than 4,300 digits, a number too large for a float.
pub fn from_plain_json(text: &str) -> Result<Value> {
    let doc = Doc::parse(text).map_err(|e| match e {
        Error::Json { offset, message } => Error::PlainJson(format!("invalid at byte {offset}: {message}")),
        e => e,
    })?;
    let bad = |offset: usize, message: String| Error::PlainJson(format!("invalid at byte {offset}: {message}"));
    // Children come before their parents in the document's arena: one pass, in order.
    let mut ids: Vec<NodeId> = Vec::with_capacity(doc.nodes.len());
    let mut nodes: Vec<Node> = Vec::with_capacity(doc.nodes.len());
    let push = |nodes: &mut Vec<Node>, node: Node| {
        nodes.push(node);
        NodeId(nodes.len() as u32 - 1)
    };
    for j in &doc.nodes {
        let node = match &j.kind {
            J::Null => Node::None,
            J::Bool(b) => Node::Bool(*b),
            J::Number => number(text, j.offset).map_err(|m| bad(j.offset, m))?,
            J::Str(s) => {
                Node::Str(PyStr::from_surrogatepass(s).ok_or_else(|| bad(j.offset, "invalid text in a string".into()))?)
            }
            J::Arr(items) => Node::List(items.iter().map(|&i| ids[i]).collect()),
            J::Obj(members) => {
                let mut pairs: Vec<(NodeId, NodeId)> = Vec::with_capacity(members.len());
                let mut seen: HashMap<&[u8], usize> = HashMap::new();
                for m in members {
                    let v = ids[m.value];
                    if members.len() > 1 {
                        if let Some(&at) = seen.get(m.key.as_slice()) {
                            pairs[at].1 = v;
                            continue;
                        }
                        seen.insert(&m.key, pairs.len());
                    }
                    let key = PyStr::from_surrogatepass(&m.key)
                        .ok_or_else(|| bad(m.key_offset, "invalid text in a string".into()))?;
                    let k = push(&mut nodes, Node::Str(key));
                    pairs.push((k, v));
                }
                Node::Dict(pairs)
            }
        };
        let id = push(&mut nodes, node);
        ids.push(id);
    }
    let root = ids.get(doc.root).copied().unwrap_or(NodeId(0));
    Value::from_nodes(nodes, root)
}

/// The number that starts at `offset` (checked against JSON's grammar by the parser).
fn number(text: &str, offset: usize) -> std::result::Result<Node, String> {
    let rest = text.get(offset..).unwrap_or("");
    let end = rest.find(|c: char| !matches!(c, '0'..='9' | '-' | '+' | '.' | 'e' | 'E')).unwrap_or(rest.len());
    let t = &rest[..end];
    if !t.contains(['.', 'e', 'E']) {
        let max = DEFAULT_LIMITS.max_int_digits;
        let digits = t.trim_start_matches('-').len();
        if digits > max {
            return Err(format!("int has {digits} digits, over the limit of {max} (max_int_digits)"));
        }
        return match Int::parse_decimal(t, max) {
            Some(Int::Small(v)) => Ok(Node::Int(v)),
            Some(Int::Big(b)) => Ok(Node::BigInt(Box::new(b))),
            None => Err(format!("bad int {t:?}")),
        };
    }
    match t.parse::<f64>() {
        Ok(x) if x.is_finite() => Ok(Node::Float(x)),
        _ => Err(format!("number {t} is out of the range of a float")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{from_tagged_json, to_tagged_json};

    fn tagged(text: &str) -> Value {
        from_tagged_json(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn write(v: &Value) -> String {
        to_plain_json(v).unwrap_or_else(|e| panic!("{e}"))
    }

    fn write_err(v: &Value) -> String {
        match to_plain_json(v) {
            Ok(t) => panic!("expected an error, got {t}"),
            Err(e) => e.to_string(),
        }
    }

    fn read(text: &str) -> Value {
        from_plain_json(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn read_err(text: &str) -> String {
        match from_plain_json(text) {
            Ok(v) => panic!("{text}: expected an error, got {v}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn atoms_are_written_as_json_dumps_writes_them() {
        let cases = [
            (r#"{"none":null}"#, "null"),
            (r#"{"bool":true}"#, "true"),
            (r#"{"int":"-7"}"#, "-7"),
            (r#"{"int":"123456789012345678901234567890"}"#, "123456789012345678901234567890"),
            (r#"{"float":"2.5"}"#, "2.5"),
            (r#"{"float":"1e+16"}"#, "1e+16"),
            (r#"{"float":"1e-05"}"#, "1e-05"),
            (r#"{"float":"-0.0"}"#, "-0.0"),
            (r#"{"float":"3.0"}"#, "3.0"),
            (r#"{"str":"a\"b\\c\nd\u0001é🎉"}"#, r#""a\"b\\c\nd\u0001é🎉""#),
            (r#"{"str":"x\udc80y"}"#, r#""x\udc80y""#),
        ];
        for (t, want) in cases {
            assert_eq!(write(&tagged(t)), want, "{t}");
            // ...and read back to the same text.
            assert_eq!(write(&read(want)), want, "{t}");
        }
    }

    #[test]
    fn containers_follow_json_dumps() {
        let v = tagged(
            r#"{"dict":[[{"str":"t"},{"tuple":[{"int":"1"},{"list":[]}]}],[{"int":"7"},{"set":[{"int":"2"}]}],
                [{"float":"1.5"},{"frozenset":[]}],[{"bool":false},{"none":null}],[{"none":null},{"dict":[]}]]}"#,
        );
        assert_eq!(write(&v), r#"{"t":[1,[]],"7":[2],"1.5":[],"false":null,"null":{}}"#);
        // A list shared twice is written twice.
        let shared = tagged(r#"{"list":[{"id":"1","value":{"list":[{"int":"1"}]}},{"ref":"1"}]}"#);
        assert_eq!(write(&shared), "[[1],[1]]");
    }

    #[test]
    fn what_json_cannot_hold_is_an_error_naming_type_and_path() {
        let cases = [
            (r#"{"bytes":"00"}"#, "a bytes value has no JSON form, at $ (tagged JSON keeps it)"),
            (
                r#"{"dict":[[{"str":"a"},{"list":[{"int":"1"},{"bytearray":""}]}]]}"#,
                "a bytearray value has no JSON form, at $['a'][1] (tagged JSON keeps it)",
            ),
            (r#"{"list":[{"float":"nan"}]}"#, "the float nan has no JSON form, at $[0]"),
            (r#"{"list":[{"float":"-inf"}]}"#, "the float -inf has no JSON form, at $[0]"),
            (
                r#"{"dict":[[{"int":"3"},{"dict":[[{"tuple":[]},{"none":null}]]}]]}"#,
                "a dict key of type tuple has no JSON form, at $[3]",
            ),
            (r#"{"dict":[[{"float":"inf"},{"none":null}]]}"#, "the dict key inf has no JSON form, at $"),
            (r#"{"id":"1","value":{"list":[{"ref":"1"}]}}"#, "a list that contains itself has no JSON form, at $[0]"),
        ];
        for (t, want) in cases {
            let got = write_err(&tagged(t));
            assert!(got.starts_with("plain JSON: ") && got.contains(want), "{t}: {got}");
        }
        // Everyday types have a JSON form (`pytypes::plain_text`); other objects name their class.
        let date = crate::decode(
            b"\x80\x04\x95 \x00\x00\x00\x00\x00\x00\x00\x8c\x08datetime\x94\x8c\x04date\x94\x93\x94C\x04\x07\xe8\x01\x02\x94\x85\x94R\x94.",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(write(&date), r#""2024-01-02""#);
        // Python: pickle.dumps(C(), 2) for a class C of __main__
        let obj = crate::decode(b"\x80\x02c__main__\nC\nq\x00)\x81q\x01.").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(write_err(&obj), "plain JSON: a __main__.C object has no JSON form, at $ (tagged JSON shows it)");
        // An int of more than 4,300 digits, as Python refuses to write it.
        for words in [449, 500, 5000] {
            // 32 × 449 = 14,368 bits: 4,326 digits.
            let big = Value::new(Node::BigInt(Box::new(
                match crate::BigInt::from_sign_magnitude(false, vec![u32::MAX; words]) {
                    Int::Big(b) => b,
                    Int::Small(_) => panic!("small"),
                },
            )));
            let err = write_err(&big);
            assert!(err.contains("more than 4,300 decimal digits"), "{err}");
        }
        let ok = format!("-{}", "9".repeat(4300));
        assert_eq!(write(&read(&ok)), ok);
    }

    #[test]
    fn dict_subclasses_of_collections_are_dicts() {
        // Python: pickle.dumps(X, 2) for OrderedDict(a=1), Counter('aab'), defaultdict(int, a=1).
        let cases: [(&[u8], &str); 3] = [
            (b"\x80\x02ccollections\nOrderedDict\nq\x00)Rq\x01X\x01\x00\x00\x00aq\x02K\x01s.", r#"{"a":1}"#),
            (
                b"\x80\x02ccollections\nCounter\nq\x00}q\x01(X\x01\x00\x00\x00aq\x02K\x02X\x01\x00\x00\x00bq\x03K\x01u\x85q\x04Rq\x05.",
                r#"{"a":2,"b":1}"#,
            ),
            (
                b"\x80\x02ccollections\ndefaultdict\nq\x00c__builtin__\nlong\nq\x01\x85q\x02Rq\x03X\x01\x00\x00\x00aq\x04K\x01s.",
                r#"{"a":1}"#,
            ),
        ];
        for (bytes, want) in cases {
            assert_eq!(write(&crate::decode(bytes).unwrap_or_else(|e| panic!("{e}"))), want);
        }
    }

    #[test]
    fn sharing_bombs_are_refused_not_expanded() {
        // 60 levels of DUP + TUPLE2: 2^60 leaves written out.
        let mut p = b"\x80\x02N".to_vec();
        for _ in 0..60 {
            p.extend_from_slice(b"2\x86");
        }
        p.push(b'.');
        let v = crate::decode(&p).unwrap_or_else(|e| panic!("{e}"));
        let err = write_err(&v);
        assert!(err.contains("shares containers too heavily"), "{err}");
        // 15 levels (32,768 leaves) are fine.
        let mut p = b"\x80\x02N".to_vec();
        for _ in 0..15 {
            p.extend_from_slice(b"2\x86");
        }
        p.push(b'.');
        let text = write(&crate::decode(&p).unwrap_or_else(|e| panic!("{e}")));
        assert_eq!(text.matches("null").count(), 1 << 15);
    }

    #[test]
    fn reading_is_json_loads() {
        assert_eq!(
            read(" {\"a\": [1, 2.0, -0, 1E2, \"x\", true, null]} ").to_string(),
            "{'a': [1, 2.0, 0, 100.0, 'x', True, None]}"
        );
        // A key named twice keeps its first place and its last value.
        assert_eq!(read(r#"{"a": 1, "b": 2, "a": 3}"#).to_string(), "{'a': 3, 'b': 2}");
        let big = read("-123456789012345678901234567890");
        assert_eq!(to_tagged_json(&big), r#"{"int":"-123456789012345678901234567890"}"#);
        assert_eq!(
            to_tagged_json(&read(r#""\ud83d\ude00 \udc80""#)),
            r#"{"str_utf8_surrogatepass_hex":"f09f988020edb280"}"#
        );
        // Sharing never comes from text: equal arrays are separate lists.
        let v = read("[[], []]");
        let items = v.as_seq(v.root()).unwrap_or_default();
        assert_ne!(items[0], items[1]);
    }

    #[test]
    fn bad_text_names_the_offset() {
        let cases = [
            ("", "invalid at byte 0: expected a JSON value, found the end of the input"),
            ("{\"a\": }", "invalid at byte 6: expected a JSON value, found '}'"),
            ("[1, 2", "invalid at byte 5: expected ',' or ']' in an array, found the end of the input"),
            ("01", "invalid at byte 1: unexpected '1' after the end of the JSON value"),
            ("NaN", "invalid at byte 0: expected a JSON value, found 'N'"),
            ("1e999", "invalid at byte 0: number 1e999 is out of the range of a float"),
            ("[\"\\x\"]", "invalid at byte 2: invalid escape in a string"),
        ];
        for (text, want) in cases {
            assert_eq!(read_err(text), format!("plain JSON: {want}"), "{text:?}");
        }
        let digits = format!("[{}]", "1".repeat(4301));
        assert_eq!(
            read_err(&digits),
            "plain JSON: invalid at byte 1: int has 4301 digits, over the limit of 4300 (max_int_digits)"
        );
    }

    #[test]
    fn a_million_deep_array_round_trips_without_recursion() {
        let text = format!("{}{}", "[".repeat(1_000_000), "]".repeat(1_000_000));
        let v = read(&text);
        assert_eq!(v.len(), 1_000_000);
        assert_eq!(write(&v), text);
        // Dropping it does not recurse either (a Value is an arena).
    }
}
