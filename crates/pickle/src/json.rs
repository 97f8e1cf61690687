//! Tagged JSON: the language-neutral form of a value defined by the conformance corpus
//! (`shared/conformance/README.md`), written and read without recursion.
//!
//! Invariant: for a value made only of plain data (no object nodes), reading back what
//! [`to_tagged_json`] wrote gives a value that writes the same text: every container
//! keeps its sharing and cycles (one node per `id`), while atoms the original shared
//! (the format gives them no ids) come back as separate nodes. Both directions use
//! explicit stacks, so nesting depth costs heap, never stack.
//!
//! The writer follows the corpus byte for byte: `json.dumps(node, ensure_ascii=False,
//! separators=(",", ":"))` (no newline). A container (list, dict, set, bytearray,
//! non-empty tuple, non-empty frozenset) reached more than once along the displayed
//! edges is written `{"id":"N","value":...}` at its first occurrence in document order
//! and `{"ref":"N"}` afterwards. Edges inside objects are not displayed, so they do not
//! count.
//!
//! Nodes the format has no tag for are written as `object` nodes with a `module` and
//! `name` (the Python type, as [`Value::object_type`] gives it) and a `kind` saying what
//! the codec holds:
//!
//! | node | `module`, `name` | extra fields |
//! |---|---|---|
//! | [`Node::Object`] | its type, e.g. `datetime`, `datetime` | `"kind"`: `"reduce"`, `"newobj"`, `"newobj_ex"` or `"instantiate"`; `"python_repr"` for the types of [`crate::pytypes`] that print without their contents (as [`crate::pytypes::python_repr`]) |
//! | [`Node::Global`] | `builtins`, `type` | `"kind":"global"`, `"global"`: `"module.name"` |
//! | [`Node::PersistentId`] | `pickle`, `PersistentId` | `"kind":"persistent_id"` |
//! | [`Node::Buffer`] | `pickle`, `PickleBuffer` | `"kind":"buffer"`, `"index"`, `"readonly"` |
//! | [`Node::Extension`] | `copyreg`, `extension` | `"kind":"extension"`, `"code"` |
//!
//! An object whose type the pickle does not name with a global (a call of something
//! other than a global) gets `pickle`, `Unknown`.

use std::collections::HashMap;
use std::fmt::Write;

use super::decode::{DEFAULT_LIMITS, remove_repeated_keys};
use super::int::Int;
use super::pyhash::Hashable;
use super::repr::float_repr;
use super::value::{Construct, Node, NodeId, PyStr, Value, push_code_point};
use crate::{Error, Result};

// ===================================================================================
// Writer
// ===================================================================================

/// Writes a value as tagged JSON, in the corpus's compact form (no trailing newline).
///
/// Never fails: nodes without a tag of their own become `object` nodes (see the module
/// docs), and an id outside the value's arena (possible only in a graph built by hand
/// and not checked with [`Value::validate`]) becomes an `object` node of kind
/// `"invalid"`.
///
/// ```
/// use pickleshelf_pickle::{self as pickle, Node, Value};
/// // a = [1]; a.append(a)
/// let mut v = Value::new(Node::List(Vec::new()));
/// let one = v.push(Node::Int(1));
/// let root = v.root();
/// *v.node_mut(root) = Node::List(vec![one, root]);
/// assert_eq!(pickle::to_tagged_json(&v), r#"{"id":"1","value":{"list":[{"int":"1"},{"ref":"1"}]}}"#);
/// # Ok::<(), pickleshelf_pickle::Error>(())
/// ```
pub fn to_tagged_json(value: &Value) -> String {
    let counts = displayed_in_degrees(value);
    let mut w = Writer { value, out: String::new(), ids: vec![0; value.len()], next_id: 0 };
    w.run(&counts);
    w.out
}

/// True for the nodes the format numbers with `id`/`ref` when they are reached twice.
fn is_tracked(node: &Node) -> bool {
    match node {
        Node::List(_) | Node::Dict(_) | Node::Set(_) | Node::ByteArray(_) => true,
        Node::Tuple(items) | Node::FrozenSet(items) => !items.is_empty(),
        _ => false,
    }
}

/// How often each tracked node is reached along displayed edges (the root counts once),
/// walking the children of each tracked node once.
fn displayed_in_degrees(value: &Value) -> Vec<u32> {
    let mut counts = vec![0u32; value.len()];
    let mut stack = vec![value.root()];
    while let Some(id) = stack.pop() {
        let Some(node) = value.get(id) else { continue };
        if !is_tracked(node) {
            continue;
        }
        let Some(count) = counts.get_mut(id.index()) else { continue };
        *count = count.saturating_add(1);
        if *count > 1 {
            continue;
        }
        match node {
            Node::List(items) | Node::Tuple(items) | Node::Set(items) | Node::FrozenSet(items) => {
                stack.extend(items.iter().rev())
            }
            Node::Dict(pairs) => {
                for &(k, v) in pairs.iter().rev() {
                    stack.push(v);
                    stack.push(k);
                }
            }
            _ => {}
        }
    }
    counts
}

/// An open container in the writer: what is left to write and how to close it.
struct Open<'a> {
    items: Items<'a>,
    next: usize,
    /// Written after the last item: `]}`, plus `}` when the container had an `id`.
    close: &'static str,
}

enum Items<'a> {
    Seq(&'a [NodeId]),
    Pairs(&'a [(NodeId, NodeId)]),
    /// One dict entry, written as the two-item array `[key,value]`.
    PairOf(NodeId, NodeId),
}

struct Writer<'a> {
    value: &'a Value,
    out: String,
    /// The id written for a node (0: none yet).
    ids: Vec<u32>,
    next_id: u32,
}

impl<'a> Writer<'a> {
    fn run(&mut self, counts: &[u32]) {
        let mut stack: Vec<Open<'a>> = Vec::new();
        self.node(self.value.root(), counts, &mut stack);
        while let Some(top) = stack.last_mut() {
            let next = top.next;
            top.next += 1;
            match top.items {
                Items::Seq(items) => match items.get(next) {
                    Some(&child) => {
                        if next > 0 {
                            self.out.push(',');
                        }
                        self.node(child, counts, &mut stack);
                    }
                    None => {
                        self.out.push_str(top.close);
                        stack.pop();
                    }
                },
                Items::Pairs(pairs) => match pairs.get(next) {
                    Some(&(k, v)) => {
                        if next > 0 {
                            self.out.push(',');
                        }
                        // A pair is itself a two-item sequence: `[key,value]`.
                        self.out.push('[');
                        stack.push(Open { items: Items::PairOf(k, v), next: 0, close: "]" });
                    }
                    None => {
                        self.out.push_str(top.close);
                        stack.pop();
                    }
                },
                Items::PairOf(k, v) => match next {
                    0 => self.node(k, counts, &mut stack),
                    1 => {
                        self.out.push(',');
                        self.node(v, counts, &mut stack);
                    }
                    _ => {
                        self.out.push_str(top.close);
                        stack.pop();
                    }
                },
            }
        }
    }

    /// Writes one node: atoms completely, containers up to their first item (pushing
    /// what remains on `stack`).
    fn node(&mut self, id: NodeId, counts: &[u32], stack: &mut Vec<Open<'a>>) {
        let value = self.value;
        let Some(node) = value.get(id) else {
            let _ = write!(
                self.out,
                r#"{{"object":{{"module":"pickle","name":"InvalidNodeId","kind":"invalid","node":{}}}}}"#,
                id.index()
            );
            return;
        };
        let mut wrapped = false;
        if is_tracked(node) {
            let slot = self.ids.get(id.index()).copied().unwrap_or(0);
            if slot != 0 {
                let _ = write!(self.out, r#"{{"ref":"{slot}"}}"#);
                return;
            }
            if counts.get(id.index()).copied().unwrap_or(0) > 1 {
                self.next_id += 1;
                if let Some(s) = self.ids.get_mut(id.index()) {
                    *s = self.next_id;
                }
                let _ = write!(self.out, r#"{{"id":"{}","value":"#, self.next_id);
                wrapped = true;
            }
        }
        let close = if wrapped { "]}}" } else { "]}" };
        match node {
            Node::None => self.out.push_str(r#"{"none":null}"#),
            Node::Bool(b) => {
                let _ = write!(self.out, r#"{{"bool":{b}}}"#);
            }
            Node::Int(i) => {
                let _ = write!(self.out, r#"{{"int":"{i}"}}"#);
            }
            Node::BigInt(b) => {
                let _ = match b.to_decimal_bounded() {
                    Some(text) => write!(self.out, r#"{{"int":"{text}"}}"#),
                    None => write!(
                        self.out,
                        r#"{{"object":{{"module":"builtins","name":"int","kind":"int_too_large","bits":"{}"}}}}"#,
                        b.bit_length()
                    ),
                };
            }
            Node::Float(x) => {
                let _ = write!(self.out, r#"{{"float":"{}"}}"#, float_repr(*x));
            }
            Node::Str(s) => match s.as_str() {
                Some(text) => {
                    self.out.push_str(r#"{"str":"#);
                    write_json_str(&mut self.out, text);
                    self.out.push('}');
                }
                None => {
                    self.out.push_str(r#"{"str_utf8_surrogatepass_hex":""#);
                    write_hex(&mut self.out, s.as_surrogatepass());
                    self.out.push_str("\"}");
                }
            },
            Node::Bytes(b) => {
                self.out.push_str(r#"{"bytes":""#);
                write_hex(&mut self.out, b);
                self.out.push_str("\"}");
            }
            Node::ByteArray(b) => {
                self.out.push_str(r#"{"bytearray":""#);
                write_hex(&mut self.out, b);
                self.out.push_str("\"}");
            }
            Node::List(items) | Node::Tuple(items) | Node::Set(items) | Node::FrozenSet(items) => {
                let tag = match node {
                    Node::List(_) => "list",
                    Node::Tuple(_) => "tuple",
                    Node::Set(_) => "set",
                    _ => "frozenset",
                };
                let _ = write!(self.out, r#"{{"{tag}":["#);
                stack.push(Open { items: Items::Seq(items), next: 0, close });
                return;
            }
            Node::Dict(pairs) => {
                self.out.push_str(r#"{"dict":["#);
                stack.push(Open { items: Items::Pairs(pairs), next: 0, close });
                return;
            }
            Node::Global(g) => {
                self.object_head("builtins", "type", "global");
                self.out.push_str(r#","global":"#);
                write_json_str(&mut self.out, &format!("{}.{}", g.module, g.name));
                self.out.push_str("}}");
            }
            Node::Object(o) => {
                let kind = match o.construct {
                    Construct::Reduce { .. } => "reduce",
                    Construct::NewObj { .. } => "newobj",
                    Construct::NewObjEx { .. } => "newobj_ex",
                    Construct::Instantiate { .. } => "instantiate",
                };
                let (module, name) = value.object_type(id).unwrap_or(("pickle", "Unknown"));
                self.object_head(module, name, kind);
                if let Some(text) = crate::pytypes::python_repr(value, id) {
                    self.out.push_str(r#","python_repr":"#);
                    write_json_str(&mut self.out, &text);
                }
                self.out.push_str("}}");
            }
            Node::PersistentId(_) => {
                self.object_head("pickle", "PersistentId", "persistent_id");
                self.out.push_str("}}");
            }
            Node::Buffer { index, readonly } => {
                self.object_head("pickle", "PickleBuffer", "buffer");
                let _ = write!(self.out, r#","index":{index},"readonly":{readonly}}}}}"#);
            }
            Node::Extension(code) => {
                self.object_head("copyreg", "extension", "extension");
                let _ = write!(self.out, r#","code":{code}}}}}"#);
            }
        }
        if wrapped {
            self.out.push('}');
        }
    }

    /// Writes `{"object":{"module":M,"name":N,"kind":K` (left open for more fields).
    fn object_head(&mut self, module: &str, name: &str, kind: &str) {
        self.out.push_str(r#"{"object":{"module":"#);
        write_json_str(&mut self.out, module);
        self.out.push_str(r#","name":"#);
        write_json_str(&mut self.out, name);
        self.out.push_str(r#","kind":"#);
        write_json_str(&mut self.out, kind);
    }
}

/// Writes a JSON string literal as Python's `json.dumps(s, ensure_ascii=False)` does:
/// `"` `\` and control characters escaped (`\n`, `\r`, `\t`, `\b`, `\f`, else `\u00xx`),
/// everything else raw.
pub(crate) fn write_json_str(out: &mut String, s: &str) {
    out.push('"');
    let mut start = 0;
    for (i, c) in s.char_indices() {
        let esc = match c {
            '"' => "\\\"",
            '\\' => "\\\\",
            '\n' => "\\n",
            '\r' => "\\r",
            '\t' => "\\t",
            '\u{8}' => "\\b",
            '\u{c}' => "\\f",
            c if (c as u32) < 0x20 => "",
            _ => continue,
        };
        out.push_str(s.get(start..i).unwrap_or(""));
        if esc.is_empty() {
            let _ = write!(out, "\\u{:04x}", c as u32);
        } else {
            out.push_str(esc);
        }
        start = i + c.len_utf8();
    }
    out.push_str(s.get(start..).unwrap_or(""));
    out.push('"');
}

fn write_hex(out: &mut String, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.reserve(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
}

// ===================================================================================
// Reader
// ===================================================================================

/// Reads tagged JSON (plain values) into a value.
///
/// Accepts any JSON whitespace and any order of the keys `id` and `value`. `ref`s may
/// point forwards or backwards: every `id` is collected before `ref`s are resolved, and
/// a `ref` yields the very node its `id` names, so shared containers and cycles come
/// back as shared node ids. Strings may carry lone surrogates either as
/// `str_utf8_surrogatepass_hex` or as `\udxxx` escapes in a `str`. Hex may be upper or
/// lower case. Floats are read with Rust's parser (`nan`, `inf`, `-inf`, `-0.0` work).
/// Dict keys and set elements are taken as CPython's `pickle.loads` would take them: an
/// unhashable one (a list, dict, set, bytearray, or a tuple holding one) is an error, and
/// keys Python finds equal (`1`, `1.0`, `true`) are merged, the first key kept with the
/// last value.
///
/// ```
/// use pickleshelf_pickle as pickle;
/// let v = pickle::from_tagged_json(r#"{"list":[{"id":"1","value":{"list":[]}},{"ref":"1"}]}"#)?;
/// let items = v.as_seq(v.root()).unwrap_or_default();
/// assert_eq!(items[0], items[1]); // one list, reached twice
/// assert_eq!(v.to_string(), "[[], []]");
/// # Ok::<(), pickleshelf_pickle::Error>(())
/// ```
///
/// # Errors
/// [`crate::Error::Json`] naming the byte offset and the problem: malformed JSON, a node
/// that is not an object with exactly one known tag, bad hex, int or float text, a `ref`
/// to an id never defined, an id defined twice, an int of more than 4,300 digits
/// ([`super::Limits::max_int_digits`]'s default), or an `object` node (objects cannot be
/// built from JSON: it does not record their state).
pub fn from_tagged_json(text: &str) -> Result<Value> {
    let doc = Doc::parse(text)?;
    Builder::new(&doc).build()
}

fn json_err(offset: usize, message: impl Into<String>) -> Error {
    Error::Json { offset, message: message.into() }
}

/// A parsed JSON document: a flat arena, children before their parents, so nothing
/// about it (parsing, walking, dropping) recurses.
pub(crate) struct Doc {
    pub(crate) nodes: Vec<JNode>,
    pub(crate) root: usize,
}

pub(crate) struct JNode {
    /// Byte offset of the node's first character.
    pub(crate) offset: usize,
    pub(crate) kind: J,
}

pub(crate) enum J {
    Null,
    Bool(bool),
    Number,
    /// A string, in the `surrogatepass` encoding (lone `\udxxx` escapes kept).
    Str(Vec<u8>),
    Arr(Vec<usize>),
    Obj(Vec<Member>),
}

pub(crate) struct Member {
    pub(crate) key: Vec<u8>,
    pub(crate) key_offset: usize,
    pub(crate) value: usize,
}

impl J {
    fn describe(&self) -> &'static str {
        match self {
            J::Null => "null",
            J::Bool(_) => "a boolean",
            J::Number => "a number",
            J::Str(_) => "a string",
            J::Arr(_) => "an array",
            J::Obj(_) => "an object",
        }
    }
}

/// A container being parsed.
enum Frame {
    Arr { offset: usize, items: Vec<usize> },
    Obj { offset: usize, members: Vec<Member>, key: Vec<u8>, key_offset: usize },
}

struct Parser<'t> {
    text: &'t [u8],
    pos: usize,
    nodes: Vec<JNode>,
}

impl Doc {
    pub(crate) fn parse(text: &str) -> Result<Doc> {
        let mut p = Parser { text: text.as_bytes(), pos: 0, nodes: Vec::new() };
        let root = p.document()?;
        Ok(Doc { nodes: p.nodes, root })
    }
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.text.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    fn found(&self) -> String {
        match self.peek() {
            None => "the end of the input".into(),
            Some(b) if b.is_ascii_graphic() => format!("'{}'", char::from(b)),
            Some(b) => format!("byte 0x{b:02x}"),
        }
    }

    fn expect(&mut self, byte: u8, what: &str) -> Result<()> {
        self.skip_ws();
        if self.peek() == Some(byte) {
            self.pos += 1;
            Ok(())
        } else {
            Err(json_err(self.pos, format!("expected {what}, found {}", self.found())))
        }
    }

    fn add(&mut self, offset: usize, kind: J) -> usize {
        self.nodes.push(JNode { offset, kind });
        self.nodes.len() - 1
    }

    /// Reads `"key" :` at an object member's start.
    fn key(&mut self) -> Result<(Vec<u8>, usize)> {
        self.skip_ws();
        let offset = self.pos;
        if self.peek() != Some(b'"') {
            return Err(json_err(offset, format!("expected a string key, found {}", self.found())));
        }
        let key = self.string()?;
        self.expect(b':', "':' after an object key")?;
        Ok((key, offset))
    }

    /// The whole document: one value and nothing but whitespace after it.
    fn document(&mut self) -> Result<usize> {
        let mut stack: Vec<Frame> = Vec::new();
        loop {
            // Read a value, or open a container and go read its first value.
            self.skip_ws();
            let offset = self.pos;
            let mut done = match self.peek() {
                Some(b'{') => {
                    self.pos += 1;
                    self.skip_ws();
                    if self.peek() == Some(b'}') {
                        self.pos += 1;
                        self.add(offset, J::Obj(Vec::new()))
                    } else {
                        let (key, key_offset) = self.key()?;
                        stack.push(Frame::Obj { offset, members: Vec::new(), key, key_offset });
                        continue;
                    }
                }
                Some(b'[') => {
                    self.pos += 1;
                    self.skip_ws();
                    if self.peek() == Some(b']') {
                        self.pos += 1;
                        self.add(offset, J::Arr(Vec::new()))
                    } else {
                        stack.push(Frame::Arr { offset, items: Vec::new() });
                        continue;
                    }
                }
                Some(b'"') => {
                    let s = self.string()?;
                    self.add(offset, J::Str(s))
                }
                Some(b't') => self.literal(b"true", J::Bool(true))?,
                Some(b'f') => self.literal(b"false", J::Bool(false))?,
                Some(b'n') => self.literal(b"null", J::Null)?,
                Some(b'-' | b'0'..=b'9') => {
                    self.number()?;
                    self.add(offset, J::Number)
                }
                _ => return Err(json_err(offset, format!("expected a JSON value, found {}", self.found()))),
            };
            // Hand the finished value to its container; close containers that end here.
            loop {
                self.skip_ws();
                match stack.last_mut() {
                    None => {
                        if self.pos < self.text.len() {
                            return Err(json_err(
                                self.pos,
                                format!("unexpected {} after the end of the JSON value", self.found()),
                            ));
                        }
                        return Ok(done);
                    }
                    Some(Frame::Arr { offset, items }) => {
                        items.push(done);
                        match self.peek() {
                            Some(b',') => {
                                self.pos += 1;
                                break;
                            }
                            Some(b']') => {
                                self.pos += 1;
                                let (offset, items) = (*offset, std::mem::take(items));
                                stack.pop();
                                done = self.add(offset, J::Arr(items));
                            }
                            _ => {
                                return Err(json_err(
                                    self.pos,
                                    format!("expected ',' or ']' in an array, found {}", self.found()),
                                ));
                            }
                        }
                    }
                    Some(Frame::Obj { offset, members, key, key_offset }) => {
                        members.push(Member { key: std::mem::take(key), key_offset: *key_offset, value: done });
                        match self.peek() {
                            Some(b',') => {
                                self.pos += 1;
                                let (k, ko) = self.key()?;
                                if let Some(Frame::Obj { key, key_offset, .. }) = stack.last_mut() {
                                    *key = k;
                                    *key_offset = ko;
                                }
                                break;
                            }
                            Some(b'}') => {
                                self.pos += 1;
                                let (offset, members) = (*offset, std::mem::take(members));
                                stack.pop();
                                done = self.add(offset, J::Obj(members));
                            }
                            _ => {
                                return Err(json_err(
                                    self.pos,
                                    format!("expected ',' or '}}' in an object, found {}", self.found()),
                                ));
                            }
                        }
                    }
                }
            }
        }
    }

    fn literal(&mut self, word: &[u8], kind: J) -> Result<usize> {
        let offset = self.pos;
        if self.text.get(offset..offset + word.len()) != Some(word) {
            return Err(json_err(offset, format!("expected a JSON value, found {}", self.found())));
        }
        self.pos += word.len();
        Ok(self.add(offset, kind))
    }

    /// Checks a number against JSON's grammar (the value itself is never needed).
    fn number(&mut self) -> Result<()> {
        let start = self.pos;
        let bad = |p: &Self| json_err(p.pos, format!("malformed number starting at byte {start}"));
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(bad(self)),
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(bad(self));
            }
            self.digits();
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(bad(self));
            }
            self.digits();
        }
        Ok(())
    }

    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.peek() {
            self.pos += 1;
        }
    }

    /// Reads a string literal at `"`; returns its text in the `surrogatepass` encoding
    /// (a `\ud83d\ude00` pair becomes one code point, a lone surrogate stays one).
    fn string(&mut self) -> Result<Vec<u8>> {
        self.pos += 1; // the opening quote
        let mut out = Vec::new();
        loop {
            let start = self.pos;
            // Copy the run of plain characters in one go.
            while let Some(b) = self.peek() {
                if b == b'"' || b == b'\\' || b < 0x20 {
                    break;
                }
                self.pos += 1;
            }
            out.extend_from_slice(self.text.get(start..self.pos).unwrap_or(&[]));
            match self.peek() {
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    let esc_at = self.pos;
                    self.pos += 1;
                    let e = self.peek();
                    self.pos += 1;
                    let simple = match e {
                        Some(b'"') => b'"',
                        Some(b'\\') => b'\\',
                        Some(b'/') => b'/',
                        Some(b'b') => 8,
                        Some(b'f') => 12,
                        Some(b'n') => b'\n',
                        Some(b'r') => b'\r',
                        Some(b't') => b'\t',
                        Some(b'u') => {
                            let mut cp = self.hex4(esc_at)?;
                            // A high surrogate followed by an escaped low one is one code point.
                            if (0xD800..0xDC00).contains(&cp)
                                && self.text.get(self.pos..self.pos + 2) == Some(b"\\u".as_slice())
                            {
                                let save = self.pos;
                                self.pos += 2;
                                let low = self.hex4(save)?;
                                if (0xDC00..0xE000).contains(&low) {
                                    cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
                                } else {
                                    self.pos = save;
                                }
                            }
                            push_code_point(&mut out, cp);
                            continue;
                        }
                        _ => {
                            return Err(json_err(esc_at, "invalid escape in a string"));
                        }
                    };
                    out.push(simple);
                }
                Some(b) => {
                    return Err(json_err(self.pos, format!("control character 0x{b:02x} must be escaped in a string")));
                }
                None => return Err(json_err(self.pos, "unterminated string")),
            }
        }
    }

    /// Reads the 4 hex digits of a `\u` escape that started at `esc_at`.
    fn hex4(&mut self, esc_at: usize) -> Result<u32> {
        let digits = self.text.get(self.pos..self.pos + 4).ok_or_else(|| json_err(esc_at, "truncated \\u escape"))?;
        let mut v = 0u32;
        for &d in digits {
            let x = char::from(d).to_digit(16).ok_or_else(|| json_err(esc_at, "invalid \\u escape"))?;
            v = v * 16 + x;
        }
        self.pos += 4;
        Ok(v)
    }
}

/// The shape of one tagged node.
enum Tagged<'d> {
    Ref { id: &'d [u8] },
    Id { id: &'d [u8], value: usize },
    Plain { tag: Tag, arg: usize },
}

#[derive(Copy, Clone, PartialEq, Eq)]
enum Tag {
    None,
    Bool,
    Int,
    Float,
    Str,
    StrHex,
    Bytes,
    ByteArray,
    List,
    Tuple,
    Dict,
    Set,
    FrozenSet,
    Object,
}

impl Tag {
    fn from_key(key: &[u8]) -> Option<Tag> {
        Some(match key {
            b"none" => Tag::None,
            b"bool" => Tag::Bool,
            b"int" => Tag::Int,
            b"float" => Tag::Float,
            b"str" => Tag::Str,
            b"str_utf8_surrogatepass_hex" => Tag::StrHex,
            b"bytes" => Tag::Bytes,
            b"bytearray" => Tag::ByteArray,
            b"list" => Tag::List,
            b"tuple" => Tag::Tuple,
            b"dict" => Tag::Dict,
            b"set" => Tag::Set,
            b"frozenset" => Tag::FrozenSet,
            b"object" => Tag::Object,
            _ => return None,
        })
    }
}

/// Where a built node's id goes.
#[derive(Copy, Clone)]
enum Slot {
    Root,
    /// Item `index` of a list, tuple, set or frozenset node.
    Item(NodeId, usize),
    /// Pair `index` of a dict node, key (`false`) or value (`true`).
    Pair(NodeId, usize, bool),
}

struct Builder<'d> {
    doc: &'d Doc,
    nodes: Vec<Node>,
    /// Each `id` name and the node made for it.
    ids: HashMap<&'d [u8], NodeId>,
    /// The same nodes by the index of the JSON `{"id":..,"value":..}` node.
    defs: HashMap<usize, NodeId>,
    /// Dicts, sets and frozensets with their offsets in the text: their keys are checked
    /// once the graph is complete.
    keyed: Vec<(NodeId, usize)>,
}

fn key_text(key: &[u8]) -> String {
    String::from_utf8_lossy(key).into_owned()
}

impl<'d> Builder<'d> {
    fn new(doc: &'d Doc) -> Self {
        Builder { doc, nodes: Vec::new(), ids: HashMap::new(), defs: HashMap::new(), keyed: Vec::new() }
    }

    fn jnode(&self, at: usize) -> Result<&'d JNode> {
        self.doc.nodes.get(at).ok_or_else(|| json_err(0, format!("internal: JSON node {at} missing")))
    }

    /// Reads the shape of the tagged node at `at`.
    fn tagged(&self, at: usize) -> Result<Tagged<'d>> {
        let n = self.jnode(at)?;
        let J::Obj(members) = &n.kind else {
            return Err(json_err(
                n.offset,
                format!("expected a tagged node (a JSON object), found {}", n.kind.describe()),
            ));
        };
        let string = |m: &Member, what: &str| -> Result<&'d [u8]> {
            let v = self.jnode(m.value)?;
            match &v.kind {
                J::Str(s) => Ok(s.as_slice()),
                other => Err(json_err(v.offset, format!("{what} must be a string, found {}", other.describe()))),
            }
        };
        match members.as_slice() {
            [m] if m.key == b"ref" => Ok(Tagged::Ref { id: string(m, "a ref")? }),
            [a, b] if (a.key == b"id" && b.key == b"value") || (a.key == b"value" && b.key == b"id") => {
                let (id, value) = if a.key == b"id" { (a, b) } else { (b, a) };
                Ok(Tagged::Id { id: string(id, "an id")?, value: value.value })
            }
            [m] => match Tag::from_key(&m.key) {
                Some(tag) => Ok(Tagged::Plain { tag, arg: m.value }),
                None => Err(json_err(m.key_offset, format!("unknown tag \"{}\"", key_text(&m.key)))),
            },
            [] => Err(json_err(n.offset, "empty object: a tagged node needs exactly one tag")),
            [_, extra, ..] => {
                let keys: Vec<String> = members.iter().map(|m| key_text(&m.key)).collect();
                Err(json_err(
                    extra.key_offset,
                    format!("a tagged node needs exactly one tag (or \"id\" and \"value\"), found keys {keys:?}"),
                ))
            }
        }
    }

    fn array(&self, at: usize, what: &str) -> Result<&'d [usize]> {
        let n = self.jnode(at)?;
        match &n.kind {
            J::Arr(items) => Ok(items),
            other => Err(json_err(n.offset, format!("{what} must be an array, found {}", other.describe()))),
        }
    }

    /// The key and value of a dict entry (`[key, value]`).
    fn pair(&self, at: usize) -> Result<(usize, usize)> {
        let n = self.jnode(at)?;
        match &n.kind {
            J::Arr(kv) => match kv.as_slice() {
                &[k, v] => Ok((k, v)),
                _ => Err(json_err(n.offset, format!("a dict entry must be [key, value], found {} items", kv.len()))),
            },
            other => Err(json_err(n.offset, format!("a dict entry must be [key, value], found {}", other.describe()))),
        }
    }

    /// First pass: every `id` gets a node (filled in by the second pass), so that a
    /// `ref` can be resolved wherever it stands.
    fn collect_ids(&mut self) -> Result<()> {
        let mut stack = vec![self.doc.root];
        while let Some(at) = stack.pop() {
            match self.tagged(at)? {
                Tagged::Ref { .. } => {}
                Tagged::Id { id, value } => {
                    let node = NodeId(self.nodes.len() as u32);
                    if self.ids.insert(id, node).is_some() {
                        let offset = self.jnode(at)?.offset;
                        return Err(json_err(offset, format!("id \"{}\" is defined twice", key_text(id))));
                    }
                    self.nodes.push(Node::None);
                    self.defs.insert(at, node);
                    stack.push(value);
                }
                Tagged::Plain { tag, arg } => match tag {
                    Tag::List | Tag::Tuple | Tag::Set | Tag::FrozenSet => {
                        stack.extend(self.array(arg, "the items of a container")?.iter().rev())
                    }
                    Tag::Dict => {
                        for &entry in self.array(arg, "the entries of a dict")?.iter().rev() {
                            let (k, v) = self.pair(entry)?;
                            stack.push(v);
                            stack.push(k);
                        }
                    }
                    _ => {}
                },
            }
        }
        Ok(())
    }

    fn build(mut self) -> Result<Value> {
        self.collect_ids()?;
        let mut root = NodeId(0);
        let mut work: Vec<(usize, Slot)> = vec![(self.doc.root, Slot::Root)];
        while let Some((at, slot)) = work.pop() {
            let id = match self.tagged(at)? {
                Tagged::Ref { id } => self.ids.get(id).copied().ok_or_else(|| {
                    let offset = self.jnode(at).map(|j| j.offset).unwrap_or(0);
                    json_err(offset, format!("ref \"{}\" names no id in this document", key_text(id)))
                })?,
                Tagged::Id { value, .. } => {
                    let node = self.defs.get(&at).copied().ok_or_else(|| json_err(0, "internal: id not collected"))?;
                    match self.tagged(value)? {
                        Tagged::Plain { tag, arg } => self.plain(tag, arg, Some(node), &mut work)?,
                        _ => {
                            let offset = self.jnode(value).map(|j| j.offset).unwrap_or(0);
                            return Err(json_err(
                                offset,
                                "the value of an id must be a plain node, not an id or a ref",
                            ));
                        }
                    }
                }
                Tagged::Plain { tag, arg } => self.plain(tag, arg, None, &mut work)?,
            };
            self.fill(slot, id, &mut root);
        }
        let mut value = Value::from_nodes(self.nodes, root).map_err(|e| json_err(0, format!("internal: {e}")))?;
        // Keys as CPython takes them: hashable, and equal ones merged.
        let mut hashable = Hashable::default();
        for &(id, offset) in &self.keyed {
            let (keys, role): (Vec<NodeId>, &str) = match value.get(id) {
                Some(Node::Dict(pairs)) => (pairs.iter().map(|p| p.0).collect(), "dict key"),
                Some(Node::Set(items) | Node::FrozenSet(items)) => (items.clone(), "set element"),
                _ => continue,
            };
            for k in keys {
                if let Err(type_name) = hashable.check(value.nodes(), k) {
                    return Err(json_err(offset, format!("unhashable type: '{type_name}' as a {role}")));
                }
            }
        }
        let keyed: Vec<u32> = self.keyed.iter().map(|&(id, _)| id.0).collect();
        remove_repeated_keys(&mut value, &keyed);
        Ok(value)
    }

    /// Stores a finished node's id in its slot.
    fn fill(&mut self, slot: Slot, id: NodeId, root: &mut NodeId) {
        match slot {
            Slot::Root => *root = id,
            Slot::Item(parent, i) => {
                if let Some(Node::List(items) | Node::Tuple(items) | Node::Set(items) | Node::FrozenSet(items)) =
                    self.nodes.get_mut(parent.index())
                    && let Some(s) = items.get_mut(i)
                {
                    *s = id;
                }
            }
            Slot::Pair(parent, i, is_value) => {
                if let Some(Node::Dict(pairs)) = self.nodes.get_mut(parent.index())
                    && let Some(p) = pairs.get_mut(i)
                {
                    if is_value {
                        p.1 = id;
                    } else {
                        p.0 = id;
                    }
                }
            }
        }
    }

    /// Builds a plain node (into `into` when it has an id); containers are made with
    /// their slots to fill and their children queued on `work`.
    fn plain(&mut self, tag: Tag, arg: usize, into: Option<NodeId>, work: &mut Vec<(usize, Slot)>) -> Result<NodeId> {
        let j = self.jnode(arg)?;
        let offset = j.offset;
        let tag_name = match tag {
            Tag::None => "none",
            Tag::Bool => "bool",
            Tag::Int => "int",
            Tag::Float => "float",
            Tag::Str => "str",
            Tag::StrHex => "str_utf8_surrogatepass_hex",
            Tag::Bytes => "bytes",
            Tag::ByteArray => "bytearray",
            Tag::List => "list",
            Tag::Tuple => "tuple",
            Tag::Dict => "dict",
            Tag::Set => "set",
            Tag::FrozenSet => "frozenset",
            Tag::Object => "object",
        };
        let wrong =
            |expected: &str| json_err(offset, format!("\"{tag_name}\" needs {expected}, found {}", j.kind.describe()));
        let text = || -> Result<&'d [u8]> {
            match &j.kind {
                J::Str(s) => Ok(s),
                _ => Err(wrong("a string")),
            }
        };
        let ascii = |s: &'d [u8]| std::str::from_utf8(s).unwrap_or("");
        let id = into.unwrap_or(NodeId(self.nodes.len() as u32));
        let mut children: Option<&'d [usize]> = None;
        let node = match tag {
            Tag::None => match j.kind {
                J::Null => Node::None,
                _ => return Err(wrong("null")),
            },
            Tag::Bool => match j.kind {
                J::Bool(b) => Node::Bool(b),
                _ => return Err(wrong("true or false")),
            },
            Tag::Int => {
                let s = text()?;
                let digits = s.strip_prefix(b"-").unwrap_or(s);
                if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
                    return Err(json_err(offset, format!("bad int text {:?}: expected decimal digits", key_text(s))));
                }
                let max = DEFAULT_LIMITS.max_int_digits;
                if digits.len() > max {
                    return Err(json_err(
                        offset,
                        format!("int has {} digits, over the limit of {max} (max_int_digits)", digits.len()),
                    ));
                }
                match Int::parse_decimal(ascii(s), max) {
                    Some(Int::Small(v)) => Node::Int(v),
                    Some(Int::Big(b)) => Node::BigInt(Box::new(b)),
                    None => return Err(json_err(offset, format!("bad int text {:?}", key_text(s)))),
                }
            }
            Tag::Float => {
                let s = text()?;
                match ascii(s).parse::<f64>() {
                    Ok(x) if !s.is_empty() => Node::Float(x),
                    _ => return Err(json_err(offset, format!("bad float text {:?}", key_text(s)))),
                }
            }
            Tag::Str => {
                let s = text()?;
                let s = PyStr::from_surrogatepass(s).ok_or_else(|| json_err(offset, "invalid text in a string"))?;
                Node::Str(s)
            }
            Tag::StrHex => {
                let bytes = hex(text()?, offset)?;
                let s = PyStr::from_surrogatepass_vec(bytes).ok_or_else(|| {
                    json_err(offset, "str_utf8_surrogatepass_hex: the bytes are not UTF-8 (with surrogates allowed)")
                })?;
                Node::Str(s)
            }
            Tag::Bytes => Node::Bytes(hex(text()?, offset)?),
            Tag::ByteArray => Node::ByteArray(hex(text()?, offset)?),
            Tag::List | Tag::Tuple | Tag::Set | Tag::FrozenSet => {
                let items = self.array(arg, &format!("\"{tag_name}\""))?;
                children = Some(items);
                if matches!(tag, Tag::Set | Tag::FrozenSet) {
                    self.keyed.push((id, offset));
                }
                let placeholders = vec![id; items.len()];
                match tag {
                    Tag::List => Node::List(placeholders),
                    Tag::Tuple => Node::Tuple(placeholders),
                    Tag::Set => Node::Set(placeholders),
                    _ => Node::FrozenSet(placeholders),
                }
            }
            Tag::Dict => {
                let entries = self.array(arg, "\"dict\"")?;
                children = Some(entries);
                self.keyed.push((id, offset));
                Node::Dict(vec![(id, id); entries.len()])
            }
            Tag::Object => {
                return Err(json_err(
                    offset,
                    "object nodes cannot be built from tagged JSON: the JSON does not record an object's \
                     construction or state (decode the original pickle instead)",
                ));
            }
        };
        match into {
            Some(slot) => {
                if let Some(n) = self.nodes.get_mut(slot.index()) {
                    *n = node;
                }
            }
            None => self.nodes.push(node),
        }
        if let Some(items) = children {
            if tag == Tag::Dict {
                for (i, &entry) in items.iter().enumerate().rev() {
                    let (k, v) = self.pair(entry)?;
                    work.push((v, Slot::Pair(id, i, true)));
                    work.push((k, Slot::Pair(id, i, false)));
                }
            } else {
                for (i, &item) in items.iter().enumerate().rev() {
                    work.push((item, Slot::Item(id, i)));
                }
            }
        }
        Ok(id)
    }
}

/// Decodes hex text (either case) from a string that starts at `offset`.
fn hex(s: &[u8], offset: usize) -> Result<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return Err(json_err(offset, format!("bad hex: odd number of digits ({})", s.len())));
    }
    let mut out = Vec::with_capacity(s.len() / 2);
    for (i, pair) in s.chunks_exact(2).enumerate() {
        let digit = |k: usize| -> Result<u8> {
            let b = pair.get(k).copied().unwrap_or(0);
            char::from(b).to_digit(16).map(|d| d as u8).ok_or_else(|| {
                json_err(offset, format!("bad hex: {:?} at position {} is not a hex digit", char::from(b), 2 * i + k))
            })
        };
        out.push((digit(0)? << 4) | digit(1)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BigInt, Global, Object, ObjectOp};

    fn read(text: &str) -> Value {
        from_tagged_json(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn err(text: &str) -> (usize, String) {
        match from_tagged_json(text) {
            Err(Error::Json { offset, message }) => (offset, message),
            Err(e) => panic!("{text}: wrong error {e}"),
            Ok(v) => panic!("{text}: expected an error, got {v}"),
        }
    }

    /// Writes, reads back, writes again: same text, same graph.
    fn round_trip(v: &Value) -> String {
        let text = to_tagged_json(v);
        let back = read(&text);
        assert_eq!(to_tagged_json(&back), text);
        assert!(back.same_as(v), "{text}");
        text
    }

    fn list(v: &mut Value, items: Vec<NodeId>) -> NodeId {
        v.push(Node::List(items))
    }

    #[test]
    fn atoms() {
        let one = |n: Node| round_trip(&Value::new(n));
        assert_eq!(one(Node::None), r#"{"none":null}"#);
        assert_eq!(one(Node::Bool(false)), r#"{"bool":false}"#);
        assert_eq!(one(Node::Int(i64::MIN)), r#"{"int":"-9223372036854775808"}"#);
        assert_eq!(one(Node::Float(-0.0)), r#"{"float":"-0.0"}"#);
        assert_eq!(one(Node::Float(f64::INFINITY)), r#"{"float":"inf"}"#);
        assert_eq!(one(Node::Float(f64::NEG_INFINITY)), r#"{"float":"-inf"}"#);
        assert_eq!(one(Node::Float(1e16)), r#"{"float":"1e+16"}"#);
        assert_eq!(to_tagged_json(&Value::new(Node::Float(f64::NAN))), r#"{"float":"nan"}"#);
        assert!(read(r#"{"float":"nan"}"#).as_f64(NodeId(0)).is_some_and(f64::is_nan));
        assert_eq!(one(Node::Bytes(vec![0, 0xab, 0xff])), r#"{"bytes":"00abff"}"#);
        assert_eq!(one(Node::ByteArray(Vec::new())), r#"{"bytearray":""}"#);
        assert_eq!(read(r#"{"bytes":"ABcd"}"#).nodes(), &[Node::Bytes(vec![0xab, 0xcd])]);
    }

    #[test]
    fn big_ints() {
        for text in ["18446744073709551616", "-9223372036854775809", &format!("1{}", "0".repeat(4299))] {
            let v = read(&format!(r#"{{"int":"{text}"}}"#));
            assert!(matches!(v.root_node(), Node::BigInt(_)), "{text}");
            assert_eq!(to_tagged_json(&v), format!(r#"{{"int":"{text}"}}"#));
        }
        assert_eq!(read(r#"{"int":"-0"}"#).nodes(), &[Node::Int(0)]);
        let big = BigInt::parse_decimal("-340282366920938463463374607431768211456", 100);
        assert!(matches!(big, Some(crate::Int::Big(_))));
        let (_, m) = err(&format!(r#"{{"int":"{}"}}"#, "9".repeat(4301)));
        assert!(m.contains("max_int_digits"), "{m}");
    }

    #[test]
    fn strings_escape_like_python() {
        let s = "back\\slash\nnew\rline\u{1a}end\t'\"\u{8}\u{c}\u{7f}é한😀\u{2028}";
        let text = round_trip(&Value::new(Node::Str(s.into())));
        assert_eq!(text, "{\"str\":\"back\\\\slash\\nnew\\rline\\u001aend\\t'\\\"\\b\\f\u{7f}é한😀\u{2028}\"}");
        // Escapes a JSON writer may use, including a surrogate pair and "\/".
        let v = read(r#"{"str":"\u00e9\ud83d\ude00\/\u0041"}"#);
        assert_eq!(v.as_str(v.root()), Some("é😀/A"));
    }

    #[test]
    fn lone_surrogates() {
        let s = PyStr::from_code_points(&[0x61, 0xD800, 0x62, 0xDFFF, 0x63]).unwrap_or_else(|| panic!("str"));
        let text = round_trip(&Value::new(Node::Str(s.clone())));
        assert_eq!(text, r#"{"str_utf8_surrogatepass_hex":"61eda08062edbfbf63"}"#);
        // The same text as JSON escapes reads to the same str.
        assert_eq!(read(r#"{"str":"a\ud800b\udfffc"}"#).nodes(), &[Node::Str(s)]);
        // A high surrogate followed by a non-low escape stays alone.
        let v = read(r#"{"str":"\ud800\u0041"}"#);
        assert_eq!(to_tagged_json(&v), r#"{"str_utf8_surrogatepass_hex":"eda08041"}"#);
        let (_, m) = err(r#"{"str_utf8_surrogatepass_hex":"ff"}"#);
        assert!(m.contains("not UTF-8"), "{m}");
    }

    #[test]
    fn shared_list_twice() {
        let mut v = Value::new(Node::None);
        let one = v.push(Node::Int(1));
        let two = v.push(Node::Int(2));
        let a = list(&mut v, vec![one, two]);
        let root = list(&mut v, vec![a, a]);
        v.set_root(root);
        let text = round_trip(&v);
        assert_eq!(text, r#"{"list":[{"id":"1","value":{"list":[{"int":"1"},{"int":"2"}]}},{"ref":"1"}]}"#);
        let back = read(&text);
        let items = back.as_seq(back.root()).unwrap_or_default();
        assert_eq!(items.first(), items.get(1));
    }

    #[test]
    fn self_references_and_cycles() {
        // a = [1]; a.append(a)
        let mut v = Value::new(Node::List(Vec::new()));
        let one = v.push(Node::Int(1));
        *v.node_mut(NodeId(0)) = Node::List(vec![one, NodeId(0)]);
        assert_eq!(round_trip(&v), r#"{"id":"1","value":{"list":[{"int":"1"},{"ref":"1"}]}}"#);

        // d = {"self": d}
        let mut v = Value::new(Node::Dict(Vec::new()));
        let k = v.push(Node::Str("self".into()));
        *v.node_mut(NodeId(0)) = Node::Dict(vec![(k, NodeId(0))]);
        assert_eq!(round_trip(&v), r#"{"id":"1","value":{"dict":[[{"str":"self"},{"ref":"1"}]]}}"#);

        // a = []; b = [a]; a.append(b); [a, b]
        let mut v = Value::new(Node::None);
        let a = list(&mut v, Vec::new());
        let b = list(&mut v, vec![a]);
        *v.node_mut(a) = Node::List(vec![b]);
        let root = list(&mut v, vec![a, b]);
        v.set_root(root);
        assert_eq!(
            round_trip(&v),
            r#"{"list":[{"id":"1","value":{"list":[{"id":"2","value":{"list":[{"ref":"1"}]}}]}},{"ref":"2"}]}"#
        );
    }

    #[test]
    fn numbering_follows_document_order_keys_before_values() {
        // {k: x, "v": k} where k = (x,) is a tuple shared as key and value, and x a
        // frozenset shared inside the key and as a value.
        let mut v = Value::new(Node::None);
        let one = v.push(Node::Int(1));
        let x = v.push(Node::FrozenSet(vec![one]));
        let k = v.push(Node::Tuple(vec![x]));
        let s = v.push(Node::Str("v".into()));
        let root = v.push(Node::Dict(vec![(k, x), (s, k)]));
        v.set_root(root);
        assert_eq!(
            round_trip(&v),
            r#"{"dict":[[{"id":"1","value":{"tuple":[{"id":"2","value":{"frozenset":[{"int":"1"}]}}]}},{"ref":"2"}],[{"str":"v"},{"ref":"1"}]]}"#
        );
    }

    #[test]
    fn atoms_and_empty_tuples_never_get_ids() {
        let mut v = Value::new(Node::None);
        let s = v.push(Node::Str("s".into()));
        let b = v.push(Node::Bytes(vec![1]));
        let t = v.push(Node::Tuple(Vec::new()));
        let f = v.push(Node::FrozenSet(Vec::new()));
        let root = list(&mut v, vec![s, s, b, b, t, t, f, f]);
        v.set_root(root);
        let text = to_tagged_json(&v);
        assert!(!text.contains("\"id\"") && !text.contains("\"ref\""), "{text}");
        assert_eq!(to_tagged_json(&read(&text)), text);
    }

    #[test]
    fn edges_inside_objects_are_not_displayed() {
        // [obj, l] where obj = Point(); obj.__setstate__(l): l is displayed once only.
        let mut v = Value::new(Node::None);
        let l = list(&mut v, Vec::new());
        let cls = v.push(Node::Global(Box::new(Global { module: "m".into(), name: "Point".into() })));
        let args = v.push(Node::Tuple(Vec::new()));
        let obj = v.push(Node::Object(Box::new(Object {
            construct: Construct::NewObj { cls, args },
            ops: vec![ObjectOp::Build(l)],
        })));
        let pid = v.push(Node::PersistentId(l));
        let buf = v.push(Node::Buffer { index: 2, readonly: true });
        let ext = v.push(Node::Extension(7));
        let root = list(&mut v, vec![obj, l, cls, pid, buf, ext]);
        v.set_root(root);
        assert_eq!(
            to_tagged_json(&v),
            concat!(
                r#"{"list":[{"object":{"module":"m","name":"Point","kind":"newobj"}},{"list":[]},"#,
                r#"{"object":{"module":"builtins","name":"type","kind":"global","global":"m.Point"}},"#,
                r#"{"object":{"module":"pickle","name":"PersistentId","kind":"persistent_id"}},"#,
                r#"{"object":{"module":"pickle","name":"PickleBuffer","kind":"buffer","index":2,"readonly":true}},"#,
                r#"{"object":{"module":"copyreg","name":"extension","kind":"extension","code":7}}]}"#
            )
        );
        // An object whose callable is not a global, and an id outside the arena.
        let mut v = Value::new(Node::None);
        let args = v.push(Node::Tuple(Vec::new()));
        let call = v.push(Node::Object(Box::new(Object {
            construct: Construct::Reduce { callable: args, args },
            ops: Vec::new(),
        })));
        let root = list(&mut v, vec![call, NodeId(99)]);
        v.set_root(root);
        let text = to_tagged_json(&v);
        assert!(text.contains(r#""module":"pickle","name":"Unknown""#), "{text}");
        assert!(text.contains(r#""name":"InvalidNodeId""#), "{text}");
    }

    #[test]
    fn ids_may_come_in_any_order() {
        // "value" before "id", a ref before its id in document order, whitespace.
        let v = read(" { \"list\" : [ {\"ref\":\"x\"} ,\n {\"value\":{\"set\":[]},\"id\":\"x\"} ] } \n");
        let items = v.as_seq(v.root()).unwrap_or_default();
        assert_eq!(items.len(), 2);
        assert_eq!(items.first(), items.get(1));
        assert_eq!(to_tagged_json(&v), r#"{"list":[{"id":"1","value":{"set":[]}},{"ref":"1"}]}"#);
    }

    #[test]
    fn errors_name_offset_and_problem() {
        let cases: &[(&str, usize, &str)] = &[
            ("", 0, "expected a JSON value"),
            ("{\"none\":null} x", 14, "after the end"),
            ("{\"nope\":1}", 1, "unknown tag \"nope\""),
            ("[]", 0, "expected a tagged node"),
            ("{}", 0, "exactly one tag"),
            ("{\"int\":\"1\",\"str\":\"a\"}", 11, "exactly one tag"),
            ("{\"int\":\"12a\"}", 7, "bad int text"),
            ("{\"int\":\"+1\"}", 7, "bad int text"),
            ("{\"int\":1}", 7, "needs a string"),
            ("{\"float\":\"x\"}", 9, "bad float text"),
            ("{\"bytes\":\"abc\"}", 9, "odd number"),
            ("{\"bytes\":\"zz\"}", 9, "not a hex digit"),
            ("{\"none\":0}", 8, "needs null"),
            ("{\"list\":{}}", 8, "must be an array"),
            ("{\"dict\":[[{\"none\":null}]]}", 9, "[key, value]"),
            ("{\"list\":[{\"ref\":\"7\"}]}", 9, "ref \"7\""),
            (
                "{\"list\":[{\"id\":\"1\",\"value\":{\"list\":[]}},{\"id\":\"1\",\"value\":{\"list\":[]}}]}",
                40,
                "defined twice",
            ),
            ("{\"id\":\"1\",\"value\":{\"ref\":\"1\"}}", 18, "plain node"),
            ("{\"object\":{\"module\":\"m\",\"name\":\"n\"}}", 10, "cannot be built"),
            ("{\"str\":\"a", 9, "unterminated"),
            ("{\"str\":\"\\q\"}", 8, "invalid escape"),
            ("{\"str\":\"\\u12\"}", 8, "\\u escape"),
            ("{\"str\":\"\n\"}", 8, "control character"),
            ("{\"list\":[1,]}", 11, "expected a JSON value"),
            ("{\"list\":[{\"none\":null}}", 22, "expected ',' or ']'"),
            ("{\"none\" null}", 8, "':'"),
            ("{\"list\":[-]}", 10, "malformed number"),
            ("{\"none\":nul}", 8, "expected a JSON value"),
        ];
        for &(text, offset, needle) in cases {
            let (o, m) = err(text);
            assert!(m.contains(needle), "{text}: {m}");
            assert_eq!(o, offset, "{text}: {m}");
        }
        let e = from_tagged_json("{\"nope\":1}").err().map(|e| e.to_string()).unwrap_or_default();
        assert_eq!(e, "tagged JSON invalid at byte 1: unknown tag \"nope\"");
    }

    #[test]
    fn keys_are_taken_as_cpython_takes_them() {
        let v =
            read(r#"{"dict":[[{"int":"1"},{"str":"a"}],[{"float":"1.0"},{"str":"b"}],[{"bool":true},{"str":"c"}]]}"#);
        assert_eq!(v.to_string(), "{1: 'c'}");
        let v = read(r#"{"set":[{"int":"0"},{"float":"-0.0"},{"tuple":[{"int":"1"}]},{"tuple":[{"bool":true}]}]}"#);
        assert_eq!(v.to_string(), "{0, (1,)}");
        for (text, offset, what) in [
            (r#"{"dict":[[{"list":[]},{"none":null}]]}"#, 8, "unhashable type: 'list' as a dict key"),
            (r#"{"set":[{"tuple":[{"dict":[]}]}]}"#, 7, "unhashable type: 'dict' as a set element"),
            (r#"{"frozenset":[{"bytearray":""}]}"#, 13, "unhashable type: 'bytearray' as a set element"),
        ] {
            assert_eq!(err(text), (offset, what.to_string()), "{text}");
        }
    }

    #[test]
    fn damaged_json_errors_and_never_panics() {
        let good = concat!(
            r#"{"id":"1","value":{"dict":[[{"str":"k\u00e9\n"},{"list":[{"ref":"1"},{"int":"-12"},"#,
            r#"{"float":"-0.0"},{"bytes":"00ff"},{"tuple":[{"none":null},{"bool":true}]},"#,
            r#"{"str_utf8_surrogatepass_hex":"eda080"},{"set":[]},{"frozenset":[{"int":"1"}]}]}]]}}"#
        );
        assert!(from_tagged_json(good).is_ok());
        // Every strict prefix fails with an offset inside the text.
        for end in 0..good.len() {
            if let Some(prefix) = good.get(..end) {
                match from_tagged_json(prefix) {
                    Err(Error::Json { offset, .. }) => assert!(offset <= end, "{prefix}: offset {offset}"),
                    other => panic!("{prefix}: {:?}", other.map(|v| v.to_string())),
                }
            }
        }
        // Every byte replaced by a few others: an error or a value, never a panic.
        for i in 0..good.len() {
            for b in [b'"', b'{', b'}', b'[', b']', b',', b':', b'\\', b'x', b'0'] {
                let mut bytes = good.as_bytes().to_vec();
                bytes[i] = b;
                if let Ok(text) = std::str::from_utf8(&bytes) {
                    let _ = from_tagged_json(text).map(|v| to_tagged_json(&v));
                }
            }
        }
    }

    #[test]
    fn sharing_bombs_stay_linear() {
        // 60 levels of DUP + TUPLE2: 2^60 leaves as a tree, 61 nodes as a graph.
        let mut p = b"\x80\x02N".to_vec();
        for _ in 0..60 {
            p.extend_from_slice(b"2\x86");
        }
        p.push(b'.');
        let v = crate::decode(&p).unwrap_or_else(|e| panic!("{e}"));
        let text = to_tagged_json(&v);
        assert!(text.len() < 5000, "{} bytes", text.len());
        let back = read(&text);
        assert_eq!(to_tagged_json(&back), text);
    }

    #[test]
    fn a_million_deep_list_round_trips_without_recursion() {
        const DEPTH: u32 = 1_000_000;
        // Node i is a list holding node i + 1; the last is [None].
        let mut nodes: Vec<Node> = (1..DEPTH).map(|i| Node::List(vec![NodeId(i)])).collect();
        nodes.push(Node::List(vec![NodeId(DEPTH)]));
        nodes.push(Node::None);
        let v = Value::from_nodes(nodes, NodeId(0)).unwrap_or_else(|e| panic!("{e}"));
        let text = to_tagged_json(&v);
        assert_eq!(text.len(), DEPTH as usize * 11 + 13);
        let back = read(&text);
        assert_eq!(back.len(), v.len());
        assert!(back.same_as(&v));
        assert_eq!(to_tagged_json(&back), text);
        // Nesting of plain JSON arrays is no problem either (an error, not a crash).
        let arrays = "[".repeat(1_000_000);
        assert_eq!(err(&arrays).0, 1_000_000);
    }
}
