//! Python-like text for values: `repr` of floats, strings and bytes, and the
//! `Display`/`Debug` of a whole [`Value`].
//!
//! Printing walks the graph with an explicit stack (no recursion, whatever the depth),
//! prints a container that contains itself as `[...]` like Python, and stops with `...`
//! after a budget linear in the graph's size, so a graph that shares one node many times
//! cannot make the output exponential.

use std::fmt::{self, Write};

use super::value::{Construct, Node, NodeId, ObjectOp, PyStr, Value};

/// Python's `repr(float)`: the shortest text that reads back as the same double, in
/// fixed notation for exponents -5 < e < 16 and scientific (`1e+16`, `5e-324`) otherwise.
///
/// ```
/// use pickleshelf_pickle::float_repr;
/// assert_eq!(float_repr(0.1), "0.1");
/// assert_eq!(float_repr(1e16), "1e+16");
/// assert_eq!(float_repr(1e15), "1000000000000000.0");
/// assert_eq!(float_repr(-0.0), "-0.0");
/// assert_eq!(float_repr(1e-5), "1e-05");
/// assert_eq!(float_repr(f64::NAN), "nan");
/// ```
pub fn float_repr(x: f64) -> String {
    if x.is_nan() {
        return "nan".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf".into() } else { "-inf".into() };
    }
    // `{:e}` gives the shortest round-trip digits: "d.ddde<exp>".
    let sci = format!("{x:e}");
    let (mantissa, exp) = match sci.split_once('e') {
        Some((m, e)) => (m, e.parse::<i32>().unwrap_or(0)),
        None => (sci.as_str(), 0),
    };
    let (neg, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => (true, m),
        None => (false, mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| c.is_ascii_digit()).collect();
    let mut out = String::with_capacity(24);
    if neg {
        out.push('-');
    }
    if (-4..16).contains(&exp) {
        // Fixed notation: the decimal point sits after `exp + 1` digits.
        let point = exp + 1;
        if point <= 0 {
            out.push_str("0.");
            out.extend(std::iter::repeat_n('0', (-point) as usize));
            out.push_str(&digits);
        } else {
            let point = point as usize;
            if digits.len() <= point {
                out.push_str(&digits);
                out.extend(std::iter::repeat_n('0', point - digits.len()));
                out.push_str(".0");
            } else {
                out.push_str(&digits[..point]);
                out.push('.');
                out.push_str(&digits[point..]);
            }
        }
    } else {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let _ = write!(out, "e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.unsigned_abs());
    }
    out
}

/// Python's `repr(str)` for a [`PyStr`] (surrogates shown as `\udxxx`).
pub fn str_repr(s: &PyStr) -> String {
    let has_single = s.code_points().any(|c| c == u32::from(b'\''));
    let has_double = s.code_points().any(|c| c == u32::from(b'"'));
    let quote = if has_single && !has_double { '"' } else { '\'' };
    let mut out = String::new();
    out.push(quote);
    for cp in s.code_points() {
        match cp {
            0x5C => out.push_str("\\\\"),
            0x09 => out.push_str("\\t"),
            0x0A => out.push_str("\\n"),
            0x0D => out.push_str("\\r"),
            c if c == quote as u32 => {
                out.push('\\');
                out.push(quote);
            }
            c if c < 0x20 || (0x7F..=0xA0).contains(&c) || c == 0xAD => {
                let _ = write!(out, "\\x{c:02x}");
            }
            c if (0xD800..=0xDFFF).contains(&c) || c == 0x2028 || c == 0x2029 || c == 0xFEFF => {
                let _ = write!(out, "\\u{c:04x}");
            }
            c => out.push(char::from_u32(c).unwrap_or('\u{FFFD}')),
        }
    }
    out.push(quote);
    out
}

/// Python's `repr(bytes)`: `b'...'`.
pub fn bytes_repr(b: &[u8]) -> String {
    let quote = if b.contains(&b'\'') && !b.contains(&b'"') { '"' } else { '\'' };
    let mut out = String::with_capacity(b.len() + 3);
    out.push('b');
    out.push(quote);
    for &c in b {
        match c {
            b'\\' => out.push_str("\\\\"),
            b'\t' => out.push_str("\\t"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            c if c == quote as u8 => {
                out.push('\\');
                out.push(quote);
            }
            0x20..=0x7E => out.push(c as char),
            c => {
                let _ = write!(out, "\\x{c:02x}");
            }
        }
    }
    out.push(quote);
    out
}

enum Task {
    Node(NodeId),
    Text(&'static str),
    /// Text made at run time (a `Box<str>` keeps a task at 24 bytes: a million-deep
    /// list stacks a task per level).
    Owned(Box<str>),
    Close(NodeId, &'static str),
}

impl Value {
    /// Writes the Python-like repr of the value (see the module docs).
    fn write_repr(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut open = vec![false; self.len()];
        let mut budget = self.len().saturating_mul(4).saturating_add(10_000);
        let mut stack = vec![Task::Node(self.root())];
        // Pushes `items` separated by ", " in order onto the (reversed) task stack.
        fn push_seq(stack: &mut Vec<Task>, items: &[NodeId]) {
            for (i, &id) in items.iter().enumerate().rev() {
                stack.push(Task::Node(id));
                if i > 0 {
                    stack.push(Task::Text(", "));
                }
            }
        }
        while let Some(task) = stack.pop() {
            let id = match task {
                Task::Text(t) => {
                    f.write_str(t)?;
                    continue;
                }
                Task::Owned(t) => {
                    f.write_str(&t)?;
                    continue;
                }
                Task::Close(id, t) => {
                    open[id.index()] = false;
                    f.write_str(t)?;
                    continue;
                }
                Task::Node(id) => id,
            };
            if budget == 0 {
                return f.write_str("...");
            }
            budget -= 1;
            let Some(node) = self.get(id) else {
                f.write_str("<invalid id>")?;
                continue;
            };
            let is_open = open.get(id.index()).copied().unwrap_or(false);
            match node {
                Node::None => f.write_str("None")?,
                Node::Bool(true) => f.write_str("True")?,
                Node::Bool(false) => f.write_str("False")?,
                Node::Int(v) => write!(f, "{v}")?,
                Node::BigInt(b) => match b.to_decimal_bounded() {
                    Some(text) => f.write_str(&text)?,
                    None => write!(f, "<int of {} bits>", b.bit_length())?,
                },
                Node::Float(x) => f.write_str(&float_repr(*x))?,
                Node::Str(s) => f.write_str(&str_repr(s))?,
                Node::Bytes(b) => f.write_str(&bytes_repr(b))?,
                Node::ByteArray(b) => write!(f, "bytearray({})", bytes_repr(b))?,
                Node::List(items) => {
                    if is_open {
                        f.write_str("[...]")?;
                        continue;
                    }
                    open[id.index()] = true;
                    f.write_str("[")?;
                    stack.push(Task::Close(id, "]"));
                    push_seq(&mut stack, items);
                }
                Node::Tuple(items) => {
                    if is_open {
                        f.write_str("(...)")?;
                        continue;
                    }
                    open[id.index()] = true;
                    f.write_str("(")?;
                    stack.push(Task::Close(id, if items.len() == 1 { ",)" } else { ")" }));
                    push_seq(&mut stack, items);
                }
                Node::Set(items) | Node::FrozenSet(items) => {
                    let frozen = matches!(node, Node::FrozenSet(_));
                    if is_open {
                        f.write_str("...")?;
                        continue;
                    }
                    if items.is_empty() {
                        f.write_str(if frozen { "frozenset()" } else { "set()" })?;
                        continue;
                    }
                    open[id.index()] = true;
                    f.write_str(if frozen { "frozenset({" } else { "{" })?;
                    stack.push(Task::Close(id, if frozen { "})" } else { "}" }));
                    push_seq(&mut stack, items);
                }
                Node::Dict(items) => {
                    if is_open {
                        f.write_str("{...}")?;
                        continue;
                    }
                    open[id.index()] = true;
                    f.write_str("{")?;
                    stack.push(Task::Close(id, "}"));
                    for (i, &(k, v)) in items.iter().enumerate().rev() {
                        stack.push(Task::Node(v));
                        stack.push(Task::Text(": "));
                        stack.push(Task::Node(k));
                        if i > 0 {
                            stack.push(Task::Text(", "));
                        }
                    }
                }
                Node::Global(g) => write!(f, "<class '{}.{}'>", g.module, g.name)?,
                Node::Object(_) if let Some(text) = crate::pytypes::python_repr(self, id) => f.write_str(&text)?,
                Node::Object(_) if !is_open && let Some(tasks) = self.collection_tasks(id) => {
                    open[id.index()] = true;
                    stack.extend(tasks.into_iter().rev());
                }
                Node::Object(o) => {
                    if is_open {
                        f.write_str("<...>")?;
                        continue;
                    }
                    open[id.index()] = true;
                    match self.object_type(id) {
                        Some((m, n)) => write!(f, "{m}.{n}(")?,
                        None => f.write_str("<object>(")?,
                    }
                    let mut tail: Vec<Task> = Vec::new();
                    match &o.construct {
                        Construct::Reduce { args, .. } | Construct::NewObj { args, .. } => {
                            let args = self.as_seq(*args).unwrap_or(&[]);
                            // copyreg._reconstructor(cls, base, state): the class is the type.
                            let skip = usize::from(matches!(&o.construct, Construct::Reduce { callable, .. }
                                    if matches!(self.get(*callable), Some(Node::Global(g)) if g.module == "copyreg")));
                            push_seq(&mut tail, args.get(skip..).unwrap_or(&[]));
                        }
                        Construct::NewObjEx { args, kwargs, .. } => {
                            tail.push(Task::Node(*kwargs));
                            tail.push(Task::Text(", **"));
                            push_seq(&mut tail, self.as_seq(*args).unwrap_or(&[]));
                        }
                        Construct::Instantiate { args, .. } => push_seq(&mut tail, args),
                    }
                    let mut ops: Vec<Task> = Vec::new();
                    for op in o.ops.iter().rev() {
                        match *op {
                            ObjectOp::Build(s) => {
                                ops.push(Task::Node(s));
                                ops.push(Task::Text(", state="));
                            }
                            ObjectOp::Append(x) => {
                                ops.push(Task::Node(x));
                                ops.push(Task::Text(", append="));
                            }
                            ObjectOp::AddItem(x) => {
                                ops.push(Task::Node(x));
                                ops.push(Task::Text(", add="));
                            }
                            ObjectOp::SetItem(k, v) => {
                                ops.push(Task::Node(v));
                                ops.push(Task::Text("]="));
                                ops.push(Task::Node(k));
                                ops.push(Task::Text(", ["));
                            }
                        }
                    }
                    stack.push(Task::Close(id, ")"));
                    stack.extend(ops);
                    stack.extend(tail);
                }
                Node::PersistentId(pid) => {
                    f.write_str("persistent_id(")?;
                    stack.push(Task::Text(")"));
                    stack.push(Task::Node(*pid));
                }
                Node::Buffer { index, readonly } => {
                    write!(f, "<out-of-band buffer {index}{}>", if *readonly { ", read-only" } else { "" })?
                }
                Node::Extension(code) => write!(f, "<extension {code}>")?,
            }
        }
        Ok(())
    }
}

impl Value {
    /// The tasks that print a `collections` object as its items, in print order:
    /// `collections.OrderedDict({'a': 1})`, `collections.deque([1, 2], maxlen=5)`,
    /// `collections.Counter({'a': 2})`, `collections.defaultdict(<class 'builtins.list'>, {})`.
    /// `None` for other objects, and for these when their pickle has another shape.
    fn collection_tasks(&self, id: NodeId) -> Option<Vec<Task>> {
        use crate::pytypes::{Counter, DefaultDict, Deque, OrderedDict, PyObject};
        fn pairs(tasks: &mut Vec<Task>, items: &[(NodeId, NodeId)]) {
            for (i, &(k, v)) in items.iter().enumerate() {
                if i > 0 {
                    tasks.push(Task::Text(", "));
                }
                tasks.push(Task::Node(k));
                tasks.push(Task::Text(": "));
                tasks.push(Task::Node(v));
            }
        }
        let (module, name) = self.object_type(id)?;
        if module != "collections" {
            return None;
        }
        let mut t = Vec::new();
        match name {
            "OrderedDict" => {
                let d = OrderedDict::read(self, id).ok()?;
                t.push(Task::Text("collections.OrderedDict({"));
                pairs(&mut t, &d.items);
                t.push(Task::Close(id, "})"));
            }
            "Counter" => {
                let c = Counter::read(self, id).ok()?;
                t.push(Task::Text("collections.Counter({"));
                pairs(&mut t, &c.items);
                t.push(Task::Close(id, "})"));
            }
            "defaultdict" => {
                let d = DefaultDict::read(self, id).ok()?;
                let factory = d.factory.map_or("None".to_owned(), |g| format!("<class '{}.{}'>", g.module, g.name));
                t.push(Task::Owned(format!("collections.defaultdict({factory}, {{").into()));
                pairs(&mut t, &d.items);
                t.push(Task::Close(id, "})"));
            }
            "deque" => {
                let d = Deque::read(self, id).ok()?;
                t.push(Task::Text("collections.deque(["));
                for (i, &x) in d.items.iter().enumerate() {
                    if i > 0 {
                        t.push(Task::Text(", "));
                    }
                    t.push(Task::Node(x));
                }
                t.push(Task::Text("]"));
                if let Some(m) = d.maxlen {
                    t.push(Task::Owned(format!(", maxlen={m}").into()));
                }
                t.push(Task::Close(id, ")"));
            }
            _ => return None,
        }
        Some(t)
    }
}

impl fmt::Display for Value {
    /// Python-like repr: `{'a': [1, 2.5, None]}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_repr(f)
    }
}

impl fmt::Debug for Value {
    /// Same as `Display`, prefixed with `Value`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Value(")?;
        self.write_repr(f)?;
        f.write_str(")")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_like_python() {
        let cases: [(f64, &str); 16] = [
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (1.5, "1.5"),
            (-2.25, "-2.25"),
            (0.1, "0.1"),
            (1e16, "1e+16"),
            (1e308, "1e+308"),
            (f64::MAX, "1.7976931348623157e+308"),
            (2.2250738585072014e-308, "2.2250738585072014e-308"),
            (5e-324, "5e-324"),
            (f64::INFINITY, "inf"),
            (f64::NEG_INFINITY, "-inf"),
            (0.0001, "0.0001"),
            (123456789.125, "123456789.125"),
            (1234567890123456.7, "1234567890123456.8"),
            (56.65615751722809, "56.65615751722809"),
        ];
        for (x, want) in cases {
            assert_eq!(float_repr(x), want, "{x:e}");
        }
    }

    #[test]
    fn strings_like_python() {
        assert_eq!(str_repr(&"it's".into()), "\"it's\"");
        assert_eq!(str_repr(&"a\nb\\".into()), "'a\\nb\\\\'");
        assert_eq!(str_repr(&"\u{7}é".into()), "'\\x07é'");
        assert_eq!(bytes_repr(b"a'\x00\xff"), "b\"a'\\x00\\xff\"");
    }

    #[test]
    fn deep_value_prints_without_recursion() {
        let mut v = Value::new(Node::List(Vec::new()));
        let mut inner = v.root();
        for _ in 0..1_000_000 {
            let next = v.push(Node::List(Vec::new()));
            if let Node::List(items) = v.node_mut(inner) {
                items.push(next);
            }
            inner = next;
        }
        let text = v.to_string();
        assert!(text.starts_with("[[[[") && text.ends_with("]]]]"));
        assert_eq!(text.len(), 2_000_002);
    }

    #[test]
    fn shared_nodes_cannot_blow_up_output() {
        // Each level holds the previous one twice: 2^60 leaves when printed naively.
        let mut v = Value::new(Node::Int(0));
        let mut prev = v.root();
        for _ in 0..60 {
            prev = v.push(Node::List(vec![prev, prev]));
        }
        v.set_root(prev);
        let text = v.to_string();
        assert!(text.len() < 200_000, "{}", text.len());
        assert!(text.ends_with("..."));
    }
}
